// codegen/compile.c: a whole IrGraph's ops to native code. Sits at the end
// of the CPU backend's data flow: IrGraph (verified; forward ops, and the
// gradient ops of a train graph after pass_autodiff) -> sched_build
// (passes/schedule.c, under cg_cpu_caps: which call computes each node,
// fusion, the parallel splits, the dedup keys) -> one LLVM module (llvm.c)
// -> O3 -> LLJIT -> CgProgram, which cg_run calls on caller-allocated
// buffers. This file makes the kernel functions (parameters, the parallel
// wrapper: body, task, dispatch), the entry and the program; the bodies are
// compile_ops.c's (forward ops), compile_grad.c's (gradient ops),
// attention.c's, compile_optim.c's and compile_kv.c's. compile.h holds the
// generator's state and small builders that all of them use.
//
// The module holds
//   - one function per distinct kernel: calls with the same structural key
//     (SchedKernel.fn: op, attributes and operand/result types, dtypes and
//     dims, symbols included) share one function, so the 12 layers of
//     GPT-2 compile each kernel once:
//       i32 kN_op(CgRunCtx *ctx, const i64 *dims, void *out, void *src0, ...)
//     dims holds the concrete dims of src0, src1, ..., then of the result
//     (row-major, rank of each); constant dims are baked into the code and
//     only symbolic ones are read from dims. A kernel returns 0, or a
//     nonzero code after writing what went wrong into ctx->err.
//   - the generated sgemm (gemm.c) for MATMUL, once as A @ B and once as
//     A @ transpose(B) (a MATMUL whose right operand is a PERMUTE swapping
//     the last two axes reads the permute's operand directly).
//   - the entry heed_forward(bufs, symvals, ctx): for each node in order,
//     the concrete dims from symvals (B, T are run-time values: one program
//     serves every B and T), then the kernel's call; returns 0, or the
//     failing node's id + 1.
//
// Numerics: compile_ops.c.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "codegen/compile.h"

static const SrcLoc NOLOC = {0, 0, 0};

void sincos(double x, double *s, double *c);  // glibc (a GNU extension): LLVM pairs sin and cos into it

// ---- kernels: one function per distinct (op, attributes, types) ----

// The dim as the kernel sees it: a constant (1, or any in a kernel that is
// not generic: SchedKernel.generic), or dims[slot] (loaded in the first
// block so that dynamic allocas can use it).
static LLVMValueRef kdim(K *k, IrDim d, LLVMValueRef dims, int slot) {
  if (ir_dim_is_const(d) && (d.n == 1 || !k->ks->generic)) return ci(k, d.n);
  LLVMValueRef i = ci(k, slot);
  return LLVMBuildLoad2(k->ab, k->i64, LLVMBuildInBoundsGEP2(k->ab, k->i64, dims, &i, 1, ""), "");
}

// ---- parallel kernels: units of the outer loop, split across the pool ----

// One factor of a schedule size: a dim, or 1 * the dims of its axes.
static LLVMValueRef dims_value(K *k, SchedDims f) {
  const LLVMValueRef *d = f.t == SCHED_RESULT ? k->odim : k->idim[f.t];
  if (!f.prod) return d[__builtin_ctz(f.axes)];
  LLVMValueRef p = ci(k, 1);
  for (int a = 0; a < IR_MAX_RANK; a++)
    if (f.axes >> a & 1) p = mul(k, p, d[a]);
  return p;
}

static LLVMValueRef size_value(K *k, const SchedSize *sz) {
  LLVMValueRef v = sz->nf == 2 ? mul(k, dims_value(k, sz->f[0]), dims_value(k, sz->f[1]))
                   : sz->nf == 1 ? dims_value(k, sz->f[0])
                                 : NULL;
  if (sz->c) v = v ? mul(k, v, ci(k, sz->c)) : ci(k, sz->c);
  return v ? v : ci(k, 1);
}

LLVMValueRef cg_par_units(K *k, LLVMValueRef *work) {
  const SchedSplit *sp = &k->ks->split;
  *work = ci(k, 1);
  switch (sp->kind) {
  case SCHED_SERIAL: return NULL;
  case SCHED_GEMV: {  // one row (decode): compile_kv.c's gemv over N columns; else 1 unit (the sgemm threads itself)
    const LLVMValueRef *id = k->idim[0];
    int ri = src_rank(k, 0);
    LLVMValueRef Kd = id[ri - 1], rows = prod(k, id, 0, ri - 1);
    LLVMValueRef one = LLVMBuildAnd(k->b, icmp(k, LLVMIntEQ, rows, ci(k, 1)), icmp(k, LLVMIntSGT, Kd, ci(k, 0)), "");
    *work = size_value(k, &sp->work);
    return sel(k, one, size_value(k, &sp->units), ci(k, 1));
  }
  default:
    *work = size_value(k, &sp->work);
    return size_value(k, &sp->units);
  }
}

// A kernel function's parameters: (ctx, dims, out, src...[, lo, hi]).
static LLVMValueRef kernel_fn(K *k, const char *name, int nsrc, bool range) {
  LLVMTypeRef ps[8 + IR_MAX_SRC];
  int np = 3 + nsrc;
  for (int i = 0; i < np; i++) ps[i] = k->ptr;
  if (range) ps[np++] = k->i64, ps[np++] = k->i64;
  LLVMValueRef f = LLVMAddFunction(k->m, name, LLVMFunctionType(k->i32, ps, (unsigned)np, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  cg_llvm_fn_attrs(k->cg, f);
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                          LLVMCreateEnumAttribute(k->c, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
  unsigned na = LLVMGetEnumAttributeKindForName("noalias", 7);
  LLVMAddAttributeAtIndex(f, 3, LLVMCreateEnumAttribute(k->c, na, 0));  // out
  // attention's kernels are explicit vector code (attention.c): O3's
  // unrolling and loop versioning make them several times larger and
  // slower to compile for no measured gain
  if (k->n->op == IR_OP_ATTENTION || k->n->op == IR_OP_ATTENTION_KV || is_attention_grad(k->n->op))
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(k->c, LLVMGetEnumAttributeKindForName("optsize", 7), 0));
  return f;
}

// Starts f's code: its first block (allocas, dims) and the body's block;
// operands and dims as k's fields. Returns the first block (fn_end).
static LLVMBasicBlockRef fn_begin(K *k, LLVMValueRef f, const IrNode *n) {
  k->fn = f;
  LLVMBasicBlockRef first = block(k, "entry"), start = block(k, "start");
  LLVMPositionBuilderAtEnd(k->ab, first);
  at(k, start);
  k->ctx = LLVMGetParam(f, 0);
  LLVMValueRef dims = LLVMGetParam(f, 1);
  k->out = LLVMGetParam(f, 2);
  for (int j = 0; j < k->nopnd; j++) k->src[j] = LLVMGetParam(f, 3 + (unsigned)j);
  for (int j = 0; j < k->nextra; j++) k->xout[j] = LLVMGetParam(f, 3 + (unsigned)(k->nopnd + j));
  int slot = 0;
  for (int j = 0; j < k->nopnd; j++)
    for (int a = 0; a < k->opnd[j]->ty.rank; a++) k->idim[j][a] = kdim(k, k->opnd[j]->ty.dim[a], dims, slot++);
  for (int a = 0; a < n->ty.rank; a++) k->odim[a] = kdim(k, n->ty.dim[a], dims, slot++);
  return first;
}

// Returns rc (NULL: 0) and closes the first block with a branch to the body.
static void fn_end(K *k, LLVMBasicBlockRef first, LLVMValueRef rc) {
  LLVMBuildRet(k->b, rc ? rc : ci32(k, 0));
  LLVMPositionBuilderAtEnd(k->ab, first);
  LLVMBuildBr(k->ab, LLVMGetNextBasicBlock(first));
}

// void kN_task(i64 *clo, i64 task, i32 thread): units [task*u/n,
// (task+1)*u/n) of the body, with a context of its own; a failure's code
// and err go to the task's slot. clo: ctx, dims, out, src..., units,
// ntasks, slots (5 i64 per task).
static LLVMValueRef emit_task(K *k, const char *name, LLVMValueRef body, int nsrc) {
  LLVMTypeRef ps[3] = {k->ptr, k->i64, k->i32};
  LLVMValueRef f = LLVMAddFunction(k->m, name, LLVMFunctionType(k->voidt, ps, 3, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  cg_llvm_fn_attrs(k->cg, f);
  k->fn = f;
  at(k, block(k, "entry"));
  LLVMValueRef clo = LLVMGetParam(f, 0), task = LLVMGetParam(f, 1), args[8 + IR_MAX_SRC];
  for (int i = 0; i < 3 + nsrc; i++) args[i] = load(k, k->ptr, gep(k, k->ptr, clo, ci(k, i)));
  LLVMValueRef units = load(k, k->i64, gep(k, k->i64, clo, ci(k, 3 + nsrc)));
  LLVMValueRef ntasks = load(k, k->i64, gep(k, k->i64, clo, ci(k, 4 + nsrc)));
  LLVMValueRef slots = load(k, k->ptr, gep(k, k->ptr, clo, ci(k, 5 + nsrc)));
  args[3 + nsrc] = LLVMBuildSDiv(k->b, mul(k, task, units), ntasks, "");
  args[4 + nsrc] = LLVMBuildSDiv(k->b, mul(k, add(k, task, ci(k, 1)), units), ntasks, "");
  LLVMValueRef lctx = LLVMBuildAlloca(k->b, k->ctxty, "lctx"), pctx = args[0];
  LLVMBuildMemSet(k->b, lctx, LLVMConstInt(k->i8, 0, 0), ci(k, (int64_t)sizeof(CgRunCtx)), 8);
  k->ctx = pctx;
  LLVMValueRef work = ctx_field(k, 2, k->ptr);
  store(k, work, LLVMBuildStructGEP2(k->b, k->ctxty, lctx, 2, ""));
  store(k, ci32(k, 1), LLVMBuildStructGEP2(k->b, k->ctxty, lctx, 1, ""));
  args[0] = lctx;
  LLVMValueRef rc = LLVMBuildCall2(k->b, LLVMGlobalGetValueType(body), body, args, 5 + (unsigned)nsrc, "");
  LLVMBasicBlockRef bad = block(k, "bad"), done = block(k, "done");
  LLVMBuildCondBr(k->b, icmp(k, LLVMIntNE, rc, ci32(k, 0)), bad, done);
  at(k, bad);
  LLVMValueRef slot = gep(k, k->i64, slots, mul(k, task, ci(k, 5)));
  store(k, LLVMBuildSExt(k->b, rc, k->i64, ""), slot);
  LLVMValueRef err = LLVMBuildStructGEP2(k->b, k->ctxty, lctx, 3, "");
  for (int i = 0; i < 4; i++) store(k, load(k, k->i64, gep(k, k->i64, err, ci(k, i))), gep(k, k->i64, slot, ci(k, 1 + i)));
  LLVMBuildBr(k->b, done);
  at(k, done);
  LLVMBuildRetVoid(k->b);
  return f;
}

enum { PAR_GRAIN = 16384 };  // elements of work per task, at least (by default)

// The wrapper's dispatch: the body over [0, units) on this thread when the
// work is small, else split into tasks on the pool; the first failing task
// (in task order) is the kernel's failure. Returns the status.
static LLVMValueRef emit_dispatch(K *k, LLVMValueRef body, LLVMValueRef task, LLVMValueRef units, LLVMValueRef work,
                                  LLVMValueRef out) {
  LLVMValueRef f = k->fn, ctx = LLVMGetParam(f, 0), args[8 + IR_MAX_SRC];
  int ns = k->nopnd + k->nextra;
  for (int i = 0; i < 3 + ns; i++) args[i] = LLVMGetParam(f, (unsigned)i);
  args[2] = out;
  k->ctx = ctx;
  LLVMValueRef nth = LLVMBuildSExt(k->b, ctx_field(k, 1, k->i32), k->i64, "");
  LLVMValueRef want = imax(k, ci(k, 1), LLVMBuildSDiv(k->b, mul(k, units, imax(k, work, ci(k, 1))), ci(k, k->grain), ""));
  LLVMValueRef ntasks = imin(k, imin(k, nth, units), want);
  LLVMValueRef res = var(k, k->i32, NULL);
  LLVMBasicBlockRef one = block(k, "serial"), many = block(k, "parallel"), done = block(k, "dispatched");
  LLVMBuildCondBr(k->b, icmp(k, LLVMIntSLE, ntasks, ci(k, 1)), one, many);
  at(k, one);
  args[3 + ns] = ci(k, 0), args[4 + ns] = units;
  store(k, LLVMBuildCall2(k->b, LLVMGlobalGetValueType(body), body, args, 5 + (unsigned)ns, ""), res);
  LLVMBuildBr(k->b, done);
  at(k, many);
  LLVMValueRef clo = LLVMBuildArrayAlloca(k->b, k->i64, ci(k, 6 + ns), "clo");
  for (int i = 0; i < 3 + ns; i++) store(k, args[i], gep(k, k->ptr, clo, ci(k, i)));
  store(k, units, gep(k, k->i64, clo, ci(k, 3 + ns)));
  store(k, ntasks, gep(k, k->i64, clo, ci(k, 4 + ns)));
  LLVMValueRef slots = LLVMBuildArrayAlloca(k->b, k->i64, mul(k, ntasks, ci(k, 5)), "slots");
  LLVMBuildMemSet(k->b, slots, LLVMConstInt(k->i8, 0, 0), mul(k, ntasks, ci(k, 40)), 8);
  store(k, slots, gep(k, k->ptr, clo, ci(k, 5 + ns)));
  LLVMValueRef pf = LLVMGetNamedFunction(k->m, "rt_parallel_for");
  if (!pf) {
    LLVMTypeRef pt[4] = {k->ptr, k->i64, k->ptr, k->ptr};
    pf = LLVMAddFunction(k->m, "rt_parallel_for", LLVMFunctionType(k->voidt, pt, 4, 0));
  }
  LLVMValueRef pa[4] = {ctx_field(k, 0, k->ptr), ntasks, task, clo};
  LLVMBuildCall2(k->b, LLVMGlobalGetValueType(pf), pf, pa, 4, "");
  store(k, ci32(k, 0), res);
  Loop l;
  LLVMValueRef t = loop_begin(k, &l, ci(k, 0), ntasks);
  LLVMValueRef slot = gep(k, k->i64, slots, mul(k, t, ci(k, 5)));
  LLVMValueRef st = load(k, k->i64, slot);
  LLVMBasicBlockRef first = if_begin(k, LLVMBuildAnd(k->b, icmp(k, LLVMIntNE, st, ci(k, 0)),
                                                      icmp(k, LLVMIntEQ, get(k, res), ci32(k, 0)), ""));
  store(k, LLVMBuildTrunc(k->b, st, k->i32, ""), res);
  LLVMValueRef err = LLVMBuildStructGEP2(k->b, k->ctxty, ctx, 3, "");
  for (int i = 0; i < 4; i++) store(k, load(k, k->i64, gep(k, k->i64, slot, ci(k, 1 + i))), gep(k, k->i64, err, ci(k, i)));
  if_end(k, first);
  loop_end(k, &l);
  LLVMBuildBr(k->b, done);
  at(k, done);
  return get(k, res);
}

// XENT's wrapper around the dispatch: the body writes each row's loss and
// whether it was kept into a scratch array (2 doubles a row); the mean is
// summed here, rows in order, so the result is the same for any split.
static LLVMValueRef emit_xent_dispatch(K *k, LLVMValueRef body, LLVMValueRef task, LLVMValueRef units,
                                       LLVMValueRef work) {
  LLVMValueRef sc = heap(k, mul(k, imax(k, units, ci(k, 1)), ci(k, 16)));
  LLVMValueRef rc = emit_dispatch(k, body, task, units, work, sc);  // (no extras)
  LLVMValueRef loss = var(k, k->f64, cd(k, 0)), kept = var(k, k->f64, cd(k, 0));
  Loop l;
  LLVMValueRef i = loop_begin(k, &l, ci(k, 0), units);
  store(k, LLVMBuildFAdd(k->b, get(k, loss), load(k, k->f64, gep(k, k->f64, sc, mul(k, i, ci(k, 2)))), ""), loss);
  store(k, LLVMBuildFAdd(k->b, get(k, kept), load(k, k->f64, gep(k, k->f64, sc, add(k, mul(k, i, ci(k, 2)), ci(k, 1)))), ""),
        kept);
  loop_end(k, &l);
  LLVMValueRef kp = get(k, kept);
  LLVMValueRef mean = LLVMBuildFDiv(k->b, get(k, loss), intr2(k, "llvm.maxnum", kp, cd(k, 1)), "");
  LLVMBasicBlockRef ok = if_begin(k, icmp(k, LLVMIntEQ, rc, ci32(k, 0)));
  store(k, trn(k, sel(k, fcmp(k, LLVMRealOEQ, kp, cd(k, 0)), cd(k, 0), mean)), LLVMGetParam(k->fn, 2));
  if_end(k, ok);
  heap_free(k, sc);
  return rc;
}

static LLVMValueRef emit_kernel(K *k, const IrNode *n, int idx) {
  char name[64];
  snprintf(name, sizeof name, "k%d_%s", idx, ir_op_name(n->op));
  k->n = n;
  k->nt = k->ks->trans;
  k->plo = k->phi = NULL;
  k->nextra = k->ks->nxout;
  LLVMValueRef f = kernel_fn(k, name, k->nopnd + k->nextra, false);
  LLVMBasicBlockRef first = fn_begin(k, f, n);
  LLVMValueRef work, units = cg_par_units(k, &work);
  if (!units) {  // serial
    cg_emit_op(k);
    fn_end(k, first, NULL);
    return f;
  }
  LLVMBasicBlockRef wblock = LLVMGetInsertBlock(k->b);
  char bname[80];
  snprintf(bname, sizeof bname, "%s_body", name);
  LLVMValueRef body = kernel_fn(k, bname, k->nopnd + k->nextra, true);
  LLVMBasicBlockRef bfirst = fn_begin(k, body, n);
  k->plo = LLVMGetParam(body, 3 + (unsigned)(k->nopnd + k->nextra));
  k->phi = LLVMGetParam(body, 4 + (unsigned)(k->nopnd + k->nextra));
  cg_emit_op(k);
  fn_end(k, bfirst, NULL);
  k->plo = k->phi = NULL;
  snprintf(bname, sizeof bname, "%s_task", name);
  LLVMValueRef task = emit_task(k, bname, body, k->nopnd + k->nextra);
  k->fn = f;
  k->ctx = LLVMGetParam(f, 0);
  at(k, wblock);
  LLVMPositionBuilderAtEnd(k->ab, first);
  LLVMValueRef rc = n->op == IR_OP_XENT ? emit_xent_dispatch(k, body, task, units, work)
                                        : emit_dispatch(k, body, task, units, work, LLVMGetParam(f, 2));
  fn_end(k, first, rc);
  return f;
}

// The function of call ks (emitted at its kernel's first call); sets the
// kernel's operands in k.
static LLVMValueRef kernel_for(K *k, const SchedKernel *ks) {
  k->ks = ks;
  k->nopnd = ks->nopnd;
  k->inl = ks->inl;
  for (int j = 0; j < ks->nopnd; j++) k->opnd[j] = k->g->nodes.data[ks->opnd[j]];
  if (!k->kfn[ks->fn]) {
    k->kfn[ks->fn] = emit_kernel(k, k->g->nodes.data[ks->root], k->nkern);
    k->nkern++;
  }
  return k->kfn[ks->fn];
}

// ---- the entry: i32 heed_forward(void **bufs, const i64 *symvals, CgRunCtx *ctx) ----

static LLVMValueRef entry_dim(K *k, IrDim d, LLVMValueRef sv) {
  LLVMValueRef v = ci(k, d.n);
  for (int s = 0; s < d.nsym; s++) v = mul(k, v, load(k, k->i64, gep(k, k->i64, sv, ci(k, d.sym[s]))));
  return v;
}

// The dims array's length: the most dims a kernel of any node could take
// (its result's and its kernel operands').
static int max_dims(const IrGraph *g, const Schedule *s) {
  int maxd = 1;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    int nd = n->ty.rank;
    for (int j = 0; j < n->nsrc; j++) {
      const IrNode *v = n->src[j];
      if (s->role[v->id] != SCHED_INLINE) nd += v->ty.rank;
      else
        for (int i2 = 0; i2 < v->nsrc; i2++) nd += v->src[i2]->ty.rank;
    }
    if (nd > maxd) maxd = nd;
  }
  return maxd;
}

// name: calls the schedule's kernels of nodes [0, upto) in order.
// ranged: two more arguments (i32 c0, c1): only the calls c0 <= c < c1
// (cg_run_calls; the data-parallel trainer runs the backward in pieces).
static bool emit_entry(K *k, const IrGraph *g, const char *name, int from, int upto, bool ranged, Diag *d) {
  LLVMTypeRef ps[5] = {k->ptr, k->ptr, k->ptr, k->i32, k->i32};
  LLVMValueRef f = LLVMAddFunction(k->m, name, LLVMFunctionType(k->i32, ps, ranged ? 5 : 3, 0));
  cg_llvm_fn_attrs(k->cg, f);
  // Not optimized (and fast instruction selection): a few hundred calls and
  // their arguments, where O3 took about a tenth of the compile.
  const char *noopt[2] = {"optnone", "noinline"};
  for (int i = 0; i < 2; i++)
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(k->c, LLVMGetEnumAttributeKindForName(noopt[i], strlen(noopt[i])), 0));
  LLVMValueRef bufs = LLVMGetParam(f, 0), sv = LLVMGetParam(f, 1), ctx = LLVMGetParam(f, 2);
  k->fn = f;
  at(k, block(k, "entry"));
  LLVMValueRef dims = LLVMBuildArrayAlloca(k->b, k->i64, ci(k, max_dims(g, k->s)), "dims");
  LLVMValueRef start = ci32(k, -1);
  if (k->prof) LLVMBuildCall2(k->b, LLVMGlobalGetValueType(k->prof), k->prof, &start, 1, "");
  for (int c = 0; c < k->s->nk && k->s->k[c].root < upto; c++) {  // (calls are in node order)
    const SchedKernel *ks = &k->s->k[c];
    if (ks->root < from) continue;
    const IrNode *n = g->nodes.data[ks->root];
    LLVMValueRef kf = kernel_for(k, ks);
    if (!kf) {
      diag_error(d, n->loc, "out of memory compiling %s", ir_op_name(n->op));
      return false;
    }
    k->fn = f;
    at(k, LLVMGetLastBasicBlock(f));
    LLVMBasicBlockRef skip = NULL;
    if (ranged) {  // if (c0 <= c && c < c1) the call
      skip = block(k, "skip");
      LLVMBasicBlockRef run = block(k, "call");
      LLVMValueRef in = LLVMBuildAnd(k->b, icmp(k, LLVMIntSLE, LLVMGetParam(f, 3), ci32(k, c)),
                                     icmp(k, LLVMIntSGT, LLVMGetParam(f, 4), ci32(k, c)), "");
      LLVMBuildCondBr(k->b, in, run, skip);
      at(k, run);
    }
    int slot = 0;
    for (int j = 0; j < k->nopnd; j++)  // kernel_for set the operands
      for (int a = 0; a < k->opnd[j]->ty.rank; a++)
        store(k, entry_dim(k, k->opnd[j]->ty.dim[a], sv), gep(k, k->i64, dims, ci(k, slot++)));
    for (int a = 0; a < n->ty.rank; a++) store(k, entry_dim(k, n->ty.dim[a], sv), gep(k, k->i64, dims, ci(k, slot++)));
    LLVMValueRef args[6 + IR_MAX_SRC];
    args[0] = ctx, args[1] = dims;
    args[2] = load(k, k->ptr, gep(k, k->ptr, bufs, ci(k, n->id)));
    int na = 3 + ks->nopnd;
    for (int j = 3; j < na; j++) args[j] = load(k, k->ptr, gep(k, k->ptr, bufs, ci(k, ks->buf[j - 3])));
    for (int o = 0; o < ks->nxout; o++) {  // the group's outputs
      int m = ks->xout[o];
      args[na++] = m < 0 ? LLVMConstNull(k->ptr) : load(k, k->ptr, gep(k, k->ptr, bufs, ci(k, m)));
    }
    LLVMValueRef rc = LLVMBuildCall2(k->b, LLVMGlobalGetValueType(kf), kf, args, (unsigned)na, "");
    LLVMValueRef id = ci32(k, n->id);
    if (k->prof) LLVMBuildCall2(k->b, LLVMGlobalGetValueType(k->prof), k->prof, &id, 1, "");
    LLVMBasicBlockRef bad = block(k, "fail"), ok = block(k, "next");
    LLVMBuildCondBr(k->b, icmp(k, LLVMIntNE, rc, ci32(k, 0)), bad, ok);
    at(k, bad);
    LLVMBuildRet(k->b, ci32(k, (int64_t)n->id + 1));
    at(k, ok);
    if (skip) {
      LLVMBuildBr(k->b, skip);
      LLVMMoveBasicBlockAfter(skip, ok);
      at(k, skip);
    }
  }
  LLVMBuildRet(k->b, ci32(k, 0));
  return true;
}

// With a split, the tail may read of the head's values only the graph's
// outputs (their bytes are theirs for the whole run; a caller may rewrite
// them between the two, e.g. with summed gradients) and leaves: any other
// head value in the arena may have been overwritten, or belong to another
// micro-batch. Kernels are in node order, so a call is wholly in one part.
static bool split_ok(const IrGraph *g, const Schedule *s, int split, Diag *d) {
  bool *out = heed_calloc((size_t)g->nodes.len + 1, sizeof *out);
  if (!out) return diag_error(d, NOLOC, "out of memory"), false;
  for (int i = 0; i < g->outputs.len; i++) out[g->outputs.data[i]->id] = true;
  bool ok = true;
  for (int c = 0; c < s->nk && ok; c++) {
    const SchedKernel *ks = &s->k[c];
    for (int x = 0; x < ks->nxout; x++)
      ok = ok && (ks->xout[x] < 0 || (ks->xout[x] < split) == (ks->root < split));
    for (int j = 0; j < ks->nopnd && ks->root >= split && ok; j++) {
      const IrNode *n = g->nodes.data[ks->buf[j]];
      ok = (int)n->id >= split || n->op == IR_OP_INPUT || n->op == IR_OP_PARAM || n->op == IR_OP_CONST || out[n->id];
    }
    if (!ok)
      diag_error(d, g->nodes.data[ks->root]->loc, "cpu backend: internal error: %s (node %d) crosses the split at node %d",
                 ir_op_name(g->nodes.data[ks->root]->op), ks->root, split);
  }
  heed_free(out);
  return ok;
}

// ---- the program ----

// Whether this backend compiles node n: no f16/bf16 values, a derivative
// rule for a gradient op's function.
static bool node_supported(const IrNode *n, Diag *d) {
  const IrType *ts[IR_MAX_SRC + 1];
  int nt = 0;
  ts[nt++] = &n->ty;
  for (int j = 0; j < n->nsrc; j++) ts[nt++] = &n->src[j]->ty;
  for (int j = 0; j < nt; j++)
    if (ts[j]->dt == IR_F16 || ts[j]->dt == IR_BF16) {
      diag_error(d, n->loc, "cpu backend: %s is not supported yet; use --interp", ir_dtype_info[ts[j]->dt].name);
      return false;
    }
  bool fn_ok = true;
  switch (n->op) {
  case IR_OP_UNARY_GRAD:
    switch ((IrOp)n->attr.fn) {
    case IR_OP_NEG: case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SQRT: case IR_OP_RSQRT: case IR_OP_TANH:
    case IR_OP_SIGMOID: case IR_OP_RELU: case IR_OP_GELU: case IR_OP_GELU_TANH: case IR_OP_SILU: case IR_OP_ABS:
      break;
    default: fn_ok = false; break;
    }
    break;
  case IR_OP_MAXIMUM_GRAD: fn_ok = n->attr.fn == IR_OP_MAXIMUM || n->attr.fn == IR_OP_MINIMUM; break;
  default: break;
  }
  if (!fn_ok) {
    diag_error(d, n->loc, "cpu backend: %s of %s has no derivative", ir_op_name(n->op),
               n->attr.fn >= 0 && n->attr.fn < IR_OP_COUNT ? ir_op_name((IrOp)n->attr.fn) : "?");
    return false;
  }
  return true;
}

static bool supported(const IrGraph *g, Diag *d) {
  for (int i = 0; i < g->nodes.len; i++) {
    if (!node_supported(g->nodes.data[i], d)) return false;
    if (g->syms.len > IR_MAX_SYMS) {
      diag_error(d, NOLOC, "cpu backend: too many symbolic sizes (%d)", g->syms.len);
      return false;
    }
  }
  return true;
}

bool cg_cpu_supports(const IrGraph *g, const SchedKernel *k, Diag *d) {
  if (!node_supported(g->nodes.data[k->root], d)) return false;
  for (int j = 0; j < k->nopnd; j++)
    if (!node_supported(g->nodes.data[k->opnd[j]], d)) return false;
  for (int j = 0; j < k->nxout; j++)
    if (k->xout[j] >= 0 && !node_supported(g->nodes.data[k->xout[j]], d)) return false;
  return true;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

// The profile's clock: heed_prof_tick(-1) starts a run, heed_prof_tick(id)
// charges the time since the previous tick to node id (cg_run points
// prof_ms at the running program's table).
static _Thread_local double *prof_ms, prof_last;

static void prof_tick(int32_t id) {
  double t = now_ms();
  if (id >= 0 && prof_ms) prof_ms[id] += t - prof_last;
  prof_last = t;
}

// rt_parallel_for when the caller gives none: every task on this thread.
static void serial_for(void *pool, int64_t n, void (*fn)(void *, int64_t, int32_t), void *ctx) {
  (void)pool;
  for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
}

static bool define_symbols(CgLlvm *cg, const CgOptions *o, Diag *d) {
  static const struct {
    const char *name;
    double (*f1)(double);
  } m1[] = {{"exp", exp}, {"log", log}, {"tanh", tanh}, {"erf", erf}, {"sin", sin}, {"cos", cos}};
  for (size_t i = 0; i < sizeof m1 / sizeof m1[0]; i++)
    if (!cg_llvm_define_symbol(cg, m1[i].name, (void *)m1[i].f1, d)) return false;
  // what LLVM may turn calls into (f32 forms, exp2 for pow of a constant, sincos)
  static const struct {
    const char *name;
    float (*f1)(float);
  } mf[] = {{"expf", expf}, {"logf", logf}, {"tanhf", tanhf}, {"erff", erff}, {"sinf", sinf},
            {"cosf", cosf}, {"exp2f", exp2f}};
  for (size_t i = 0; i < sizeof mf / sizeof mf[0]; i++)
    if (!cg_llvm_define_symbol(cg, mf[i].name, (void *)mf[i].f1, d)) return false;
  double (*p)(double, double) = pow, (*e2)(double) = exp2;
  float (*pf32)(float, float) = powf;
  void (*sc)(double, double *, double *) = sincos;
  void *(*mc)(void *, const void *, size_t) = memcpy, *(*mm)(void *, const void *, size_t) = memmove;
  void *(*ms)(void *, int, size_t) = memset;
  void *(*ma)(size_t) = malloc;
  void (*fr)(void *) = free;
  CgParallelFor pf = o && o->parallel_for ? o->parallel_for : serial_for;
  if (o && o->profile && !cg_llvm_define_symbol(cg, "heed_prof_tick", (void *)prof_tick, d)) return false;
  return cg_llvm_define_symbol(cg, "pow", (void *)p, d) && cg_llvm_define_symbol(cg, "exp2", (void *)e2, d) &&
         cg_llvm_define_symbol(cg, "powf", (void *)pf32, d) && cg_llvm_define_symbol(cg, "sincos", (void *)sc, d) &&
         cg_llvm_define_symbol(cg, "memcpy", (void *)mc, d) && cg_llvm_define_symbol(cg, "memmove", (void *)mm, d) &&
         cg_llvm_define_symbol(cg, "memset", (void *)ms, d) && cg_llvm_define_symbol(cg, "malloc", (void *)ma, d) &&
         cg_llvm_define_symbol(cg, "free", (void *)fr, d) &&
         cg_llvm_define_symbol(cg, "rt_parallel_for", (void *)pf, d);
}

// What the CPU emitter can fuse (passes/schedule.h): its map kernels
// (emit_map) and row reductions (red_inner) compute an f32 ADD, SUB or MUL
// inline (the optimizer updates' kernels do not); the fused attention
// backward; the sgemm reads transposed operands; reshapes are not copied;
// the memory-bound kernels read their sizes at run time.
void cg_cpu_caps(SchedCaps *c) {
  *c = (SchedCaps){.inline_max_users = 2, .group_attention_grads = true, .transposed_matmul = true,
                   .alias_reshapes = true, .generic_sizes = true};
  c->inline_op[IR_OP_ADD] = c->inline_op[IR_OP_SUB] = c->inline_op[IR_OP_MUL] = true;
  for (int op = 0; op < IR_OP_COUNT; op++)
    c->inline_into[op] = ir_op_is((IrOp)op, IR_OPF_ELEMENTWISE) && op != IR_OP_OPT_MOMENT && op != IR_OP_OPT_MOMENT2 &&
                         op != IR_OP_OPT_ADAMW;
  c->inline_into[IR_OP_SUM] = c->inline_into[IR_OP_MEAN] = true;
}

CgProgram *cg_compile(const IrGraph *g, const CgOptions *o, Diag *d) {
  if (!supported(g, d)) return NULL;
  SchedCaps caps;
  cg_cpu_caps(&caps);
  Schedule *s = sched_build(g, &caps, d);
  return s ? cg_cpu_emit(g, s, o, d) : NULL;
}

CgProgram *cg_cpu_emit(const IrGraph *g, Schedule *sched, const CgOptions *o, Diag *d) {
  double t0 = now_ms();
  if (!supported(g, d)) {
    sched_free(sched);
    return NULL;
  }
  CgProgram *p = heed_calloc(1, sizeof *p);
  K k = {0};
  if (!p) {
    sched_free(sched);
    goto oom;
  }
  p->sched = sched;
  p->cg = cg_llvm_new(o ? o->cpu : NULL, d);
  if (!p->cg) goto fail;
  p->nthreads = o && o->nthreads > 1 && o->pool ? o->nthreads : 1;
  p->pool = o && o->nthreads > 1 ? o->pool : NULL;
  p->nnodes = g->nodes.len;
  p->nodes = heed_calloc((size_t)p->nnodes + 1, sizeof *p->nodes);
  if (!p->nodes) goto oom;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    p->nodes[i] = (CgNode){n->op, n->ty, n->loc, n->attr};
  }
  if (!ir_size_limits(g, &p->limits, &p->nlimits)) goto oom;
  cg_llvm_module_begin(p->cg, g->name ? g->name : "heed");
  k.cg = p->cg;
  k.m = cg_llvm_module(p->cg);
  k.c = LLVMGetModuleContext(k.m);
  k.b = LLVMCreateBuilderInContext(k.c);
  k.ab = LLVMCreateBuilderInContext(k.c);
  k.i1 = LLVMInt1TypeInContext(k.c);
  k.i8 = LLVMInt8TypeInContext(k.c);
  k.i32 = LLVMInt32TypeInContext(k.c);
  k.i64 = LLVMInt64TypeInContext(k.c);
  k.f32 = LLVMFloatTypeInContext(k.c);
  k.f64 = LLVMDoubleTypeInContext(k.c);
  k.ptr = LLVMPointerTypeInContext(k.c, 0);
  k.voidt = LLVMVoidTypeInContext(k.c);
  k.vw = cg_llvm_vector_width(p->cg);
  k.grain = o && o->par_grain > 0 ? o->par_grain : PAR_GRAIN;
  if (o && o->profile) {
    if (!(p->prof = heed_calloc((size_t)p->nnodes + 1, sizeof *p->prof))) goto oom;
    LLVMTypeRef pt = k.i32;
    k.prof = LLVMAddFunction(k.m, "heed_prof_tick", LLVMFunctionType(k.voidt, &pt, 1, 0));
  }
  LLVMTypeRef ct[4] = {k.ptr, k.i32, k.ptr, LLVMArrayType2(k.i64, 4)};  // CgRunCtx
  k.ctxty = LLVMStructTypeInContext(k.c, ct, 4, 0);
  bool used[4] = {false};  // sgemm variants: nn, nt, tn, tt
  for (int c = 0; c < p->sched->nk; c++)
    if (g->nodes.data[p->sched->k[c].root]->op == IR_OP_MATMUL) used[p->sched->k[c].trans] = true;
  static const char *const gsuffix[4] = {"nn", "nt", "tn", "tt"};
  const char *entry = o && o->entry ? o->entry : "heed_forward";
  char gname[4][64];
  for (int v = 0; v < 4; v++) snprintf(gname[v], sizeof gname[v], "%s_sgemm_%s", o && o->entry ? o->entry : "heed", gsuffix[v]);
  for (int v = 0; v < 4; v++) {
    if (!used[v]) continue;
    CgGemmConfig gc;
    cg_gemm_config_default(p->cg, &gc, gname[v], v & TR_B);
    gc.trans_a = v & TR_A;
    gc.nthreads_max = p->nthreads;
    if (!cg_gemm_emit(p->cg, &gc, d)) goto fail;
    k.gemm[v] = LLVMGetNamedFunction(k.m, gname[v]);
    if (!p->work) {  // the same blocking for every variant: one work area
      p->gemm = gc;
      p->work = heed_aligned_alloc(64, cg_gemm_work_bytes(&gc));
      if (!p->work) goto oom;
    }
  }
  k.g = g;
  k.s = p->sched;
  if (!(k.kfn = heed_calloc((size_t)p->sched->nfn + 1, sizeof *k.kfn))) goto oom;
  if (!emit_entry(&k, g, entry, 0, g->nodes.len, false, d)) goto fail;
  int prefix = o && o->prefix > 0 && o->prefix < g->nodes.len ? o->prefix : 0;
  if (prefix && !emit_entry(&k, g, "heed_prefix", 0, prefix, false, d)) goto fail;
  int split = o && o->split > 0 && o->split < g->nodes.len ? o->split : 0;
  if (split && !split_ok(g, p->sched, split, d)) goto fail;
  p->split = split;
  if (split && (!emit_entry(&k, g, "heed_head", 0, split, false, d) ||
                !emit_entry(&k, g, "heed_tail", split, g->nodes.len, false, d) ||
                !emit_entry(&k, g, "heed_calls", 0, split, true, d)))
    goto fail;
  p->stats.nkernels = k.nkern;
  p->stats.ncalls = p->sched->nk;
  double t1 = now_ms();
  bool dump = o && (o->dump_ir || o->dump_obj || o->dump_asm);
  int parts = dump ? 1 : o && o->compile_threads > 0 ? o->compile_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (parts > 1) {  // O3 and machine code on threads, a part of the module at a time
    cg_llvm_set_cache(p->cg, o ? o->cache_dir : NULL);
    if (!define_symbols(p->cg, o, d) || !cg_llvm_jit_add_split(p->cg, parts > 8 ? 8 : parts, d)) goto fail;
    goto lookup;
  }
  if (!cg_llvm_optimize(p->cg, d)) goto fail;
  if (o && o->dump_ir) {  // in memory first: LLVM's file streams exit on a write error
    char *text = LLVMPrintModuleToString(k.m);
    bool ok = cg_write_file(o->dump_ir, text, strlen(text), d);
    LLVMDisposeMessage(text);
    if (!ok) goto fail;
  }
  if (o && o->dump_obj && !cg_llvm_emit_object(p->cg, o->dump_obj, d)) goto fail;
  if (o && o->dump_asm && !cg_llvm_emit_asm(p->cg, o->dump_asm, d)) goto fail;
  if (!define_symbols(p->cg, o, d) || !cg_llvm_jit_add(p->cg, d)) goto fail;
lookup:;
  double t2 = now_ms();
  p->entry = (CgEntryFn)cg_llvm_lookup(p->cg, entry, d);
  if (!p->entry) goto fail;
  if (prefix && !(p->prefix = (CgEntryFn)cg_llvm_lookup(p->cg, "heed_prefix", d))) goto fail;
  if (split && (!(p->head = (CgEntryFn)cg_llvm_lookup(p->cg, "heed_head", d)) ||
                !(p->tail = (CgEntryFn)cg_llvm_lookup(p->cg, "heed_tail", d)) ||
                !(p->calls = (CgRangeFn)cg_llvm_lookup(p->cg, "heed_calls", d))))
    goto fail;
  double t3 = now_ms();
  p->stats.build_ms = t1 - t0;
  p->stats.opt_ms = t2 - t1;
  p->stats.jit_ms = t3 - t2;
  p->stats.compile_ms = t3 - t0;
  p->stats.parts = cg_llvm_part_stats(p->cg, &p->stats.nparts);
  goto done;
oom:
  diag_error(d, NOLOC, "out of memory compiling %s", g->name ? g->name : "the graph");
fail:
  cg_program_free(p);
  p = NULL;
done:
  heed_free(k.kfn);
  if (k.b) LLVMDisposeBuilder(k.b);
  if (k.ab) LLVMDisposeBuilder(k.ab);
  return p;
}

void cg_program_free(CgProgram *p) {
  if (!p) return;
  cg_llvm_free(p->cg);
  heed_free(p->nodes);
  heed_free(p->limits);
  sched_free(p->sched);
  heed_free(p->work);
  heed_free(p->prof);
  heed_free(p);
}

const double *cg_program_profile(const CgProgram *p) { return p->prof; }

void cg_program_profile_reset(CgProgram *p) {
  if (p->prof) memset(p->prof, 0, sizeof *p->prof * (size_t)p->nnodes);
}

const CgProgramStats *cg_program_stats(const CgProgram *p) { return &p->stats; }

bool cg_node_computed(const CgProgram *p, int node_id) {
  if (node_id < 0 || node_id >= p->nnodes) return false;
  SchedRole r = (SchedRole)p->sched->role[node_id];
  return r == SCHED_CALL || r == SCHED_GROUPED;
}

int cg_node_alias(const CgProgram *p, int node_id) {
  if (node_id < 0 || node_id >= p->nnodes) return -1;
  int a = p->sched->alias[node_id];
  return a != node_id || cg_node_computed(p, node_id) || p->nodes[node_id].op == IR_OP_INPUT ||
                 p->nodes[node_id].op == IR_OP_PARAM
             ? a
             : -1;
}

int64_t cg_buffer_bytes(const CgProgram *p, int node_id, const int64_t *symvals) {
  if (node_id < 0 || node_id >= p->nnodes) return -1;
  int64_t n = ir_type_numel(&p->nodes[node_id].ty, symvals);
  size_t es = ir_dtype_info[p->nodes[node_id].ty.dt].size;
  return n < 0 || n > INT64_MAX / (int64_t)es ? -1 : n * (int64_t)es;
}

static bool run_entry(CgProgram *p, CgEntryFn entry, const int64_t *symvals, void **bufs, const CgRunCtx *with,
                      Diag *d) {
  if (!with && p->work_released) {
    diag_error(d, NOLOC, "cpu backend: internal error: the program's workspace was released (it runs with its caller's)");
    return false;
  }
  if (!ir_check_size_limits(p->limits, p->nlimits, symvals, d)) return false;  // T > ctx, as the interpreter says
  CgRunCtx ctx = {.pool = p->pool, .nthreads = p->nthreads, .work = p->work, .err = {0}};
  if (with) ctx.pool = with->pool, ctx.nthreads = with->nthreads, ctx.work = with->work;
  prof_ms = entry != p->prefix ? p->prof : NULL;  // evaluation (the prefix) is not profiled
  int rc = entry(bufs, symvals, &ctx);
  prof_ms = NULL;
  return rc == 0 || cg_report_status(p, rc, ctx.err, d);
}

bool cg_run(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d) {
  return run_entry(p, p->entry, symvals, bufs, NULL, d);
}

bool cg_run_ctx(CgProgram *p, const int64_t *symvals, void **bufs, void *pool, int nthreads, void *work, Diag *d) {
  bool needs = p->work || p->work_released;
  if (nthreads > p->nthreads || (needs && !work)) {
    diag_error(d, NOLOC, "cpu backend: the program was compiled for %d threads and a workspace; run with %d threads%s",
               p->nthreads, nthreads, needs && !work ? " and none" : "");
    return false;
  }
  return run_entry(p, p->entry, symvals, bufs, &(CgRunCtx){.pool = pool, .nthreads = nthreads, .work = work}, d);
}

int64_t cg_workspace_bytes(const CgProgram *p) {
  return p->work || p->work_released ? (int64_t)cg_gemm_work_bytes(&p->gemm) : 0;
}

void cg_program_release_work(CgProgram *p) {
  if (!p->work) return;
  heed_free(p->work);
  p->work = NULL;
  p->work_released = true;
}

bool cg_run_prefix(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d) {
  if (!p->prefix) {
    diag_error(d, NOLOC, "cpu backend: the program was compiled without a prefix entry");
    return false;
  }
  return run_entry(p, p->prefix, symvals, bufs, NULL, d);
}

static bool run_part(CgProgram *p, CgEntryFn fn, const int64_t *symvals, void **bufs, Diag *d) {
  if (!fn) {
    diag_error(d, NOLOC, "cpu backend: the program was compiled without head and tail entries");
    return false;
  }
  return run_entry(p, fn, symvals, bufs, NULL, d);
}

bool cg_run_head(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d) { return run_part(p, p->head, symvals, bufs, d); }
bool cg_run_tail(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d) { return run_part(p, p->tail, symvals, bufs, d); }

bool cg_run_calls(CgProgram *p, int c0, int c1, const int64_t *symvals, void **bufs, Diag *d) {
  if (!p->calls) return run_part(p, NULL, symvals, bufs, d);
  if (!ir_check_size_limits(p->limits, p->nlimits, symvals, d)) return false;
  CgRunCtx ctx = {.pool = p->pool, .nthreads = p->nthreads, .work = p->work, .err = {0}};
  prof_ms = p->prof;
  int rc = p->calls(bufs, symvals, &ctx, c0, c1);
  prof_ms = NULL;
  return rc == 0 || cg_report_status(p, rc, ctx.err, d);
}

int cg_head_calls(const CgProgram *p) {
  int n = 0;
  for (int c = 0; p->calls && c < p->sched->nk; c++) n += p->sched->k[c].root < p->split;
  return n;
}

int cg_node_call(const CgProgram *p, int node_id) {
  if (node_id < 0 || node_id >= p->nnodes) return -1;
  return p->sched->call[p->sched->alias[node_id]];
}
