// codegen/compile.h: internal to the graph compiler (compile.c, the kernel
// functions, entry and program; compile_ops.c, the forward ops' bodies;
// compile_grad.c, the gradient ops'). Sits between the IrGraph and the
// LLVM module: the generator's state (one kernel function at a time) and the
// small builders every kernel uses (loops, loads and stores by dtype, f32
// exp, broadcast strides). Everything is static inline: no symbols leak.
#ifndef HEED_CG_COMPILE_H
#define HEED_CG_COMPILE_H

#include <math.h>
#include <string.h>

#include "codegen/cg_llvm.h"
#include "passes/schedule.h"

enum { TR_B = SCHED_TRANS_B, TR_A = SCHED_TRANS_A };

enum {  // kernel status codes (ctx->err holds the values named)
  ST_OK = 0,
  ST_INDEX = 1,   // gather: err = {index, rows}
  ST_TARGET = 2,  // xent: err = {target, classes}
  ST_DIVZ = 3,    // integer div: err = {numerator}
  ST_SLICE = 4,   // slice: err = {len, size}
  ST_NOMEM = 5,   // scratch memory (gradient kernels): err = {bytes}
};

// ---- the compiled program (compile.c builds it, plan.c plans its memory) ----

// What the program keeps of each node (the graph need not outlive it).
typedef struct {
  IrOp op;
  IrType ty;
  SrcLoc loc;
  IrAttr attr;
} CgNode;

struct CgProgram {
  CgLlvm *cg;
  CgEntryFn entry;
  CgEntryFn prefix;  // CgOptions.prefix: the nodes before it only; else NULL
  CgEntryFn head, tail;  // CgOptions.split: the nodes before it, the rest; else NULL
  CgRangeFn calls;       // CgOptions.split: the head's calls c0 <= c < c1 (cg_run_calls); else NULL
  int split;
  CgNode *nodes;
  int nnodes;
  IrSizeLimit *limits;  // checked before each run (ir_size_limits: T <= the rows of a position table)
  int nlimits;
  Schedule *sched;  // what each node is (a call's root, inline, grouped, an alias, ...), the
                    // calls, and the memory plan's lifetimes (sched->def, end: call positions)
  CgGemmConfig gemm;
  float *work;  // the sgemm's packing buffers
  bool work_released;  // cg_program_release_work: runs only with a caller's workspace (cg_run_ctx)
  void *pool;
  int nthreads;
  CgProgramStats stats;
  double *prof;    // CgOptions.profile: per node, ms in its kernel call
};


// status.c: the diagnostic for a compiled program's nonzero status rc (the
// failing node's id + 1) and the err words its kernel wrote; false.
bool cg_report_status(const CgProgram *p, int rc, const int64_t *err, Diag *d);

// p->sched->def[i]: the position (node id) of the call that writes node i
// (its attention group's root for a grouped node); end[i]: the last call
// that reads it; graph outputs span the whole run (def 0, end INT_MAX), so
// no other node ever shares their bytes; def -1 for the nodes that have no
// buffer of the plan's (leaves, inline values, aliases, permutes the sgemm
// reads through).

// ---- the generator's state ----

typedef struct {
  CgLlvm *cg;
  LLVMContextRef c;
  LLVMModuleRef m;
  LLVMBuilderRef b, ab;  // b: the body; ab: the function's first block (allocas, dims)
  LLVMValueRef fn;
  LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr, voidt, ctxty;
  LLVMValueRef gemm[4];  // A @ B, A @ B^T, A^T @ B, A^T @ B^T (index: TR_A | TR_B)
  LLVMValueRef prof;     // CgOptions.profile: void heed_prof_tick(i32 node id or -1); else NULL
  int vw;
  // the node being compiled
  const IrNode *n;
  int nt;   // MATMUL: TR_B, TR_A: B, A read transposed from the permute's operand
  LLVMValueRef ctx, out, src[IR_MAX_SRC];
  LLVMValueRef idim[IR_MAX_SRC][IR_MAX_RANK], odim[IR_MAX_RANK];
  const IrGraph *g;
  const Schedule *s;       // the decisions (passes/schedule.h): the generator makes none
  const SchedKernel *ks;   // the kernel being compiled
  LLVMValueRef *kfn;       // per distinct kernel (SchedKernel.fn): its function, once emitted
  int nkern;               // emitted so far
  // a parallel kernel's body runs units [plo, phi) of its outer loop
  // (cg_par_units); NULL in a serial kernel (every unit)
  LLVMValueRef plo, phi;
  int64_t grain;  // CgOptions.par_grain
  // the kernel's operands (ks->opnd): n's, but an elementwise operand that
  // is computed inline (bit j of inl: n->src[j], SCHED_INLINE) is replaced
  // by its own operands
  const IrNode *opnd[IR_MAX_SRC];
  int nopnd;
  uint32_t inl;
  int nextra;          // pointer parameters after the operands (fused attention backward: 3)
  LLVMValueRef xout[3];  // ... their values: dq, dk, dv
} K;

// ---- small builders ----

static inline LLVMValueRef ci(K *k, int64_t v) { return LLVMConstInt(k->i64, (unsigned long long)v, 1); }
static inline LLVMValueRef ci32(K *k, int64_t v) { return LLVMConstInt(k->i32, (unsigned long long)v, 1); }
static inline LLVMValueRef cf(K *k, double v) { return LLVMConstReal(k->f32, v); }
static inline LLVMValueRef cd(K *k, double v) { return LLVMConstReal(k->f64, v); }
static inline LLVMValueRef add(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(k->b, a, b, ""); }
static inline LLVMValueRef sub(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWSub(k->b, a, b, ""); }
static inline LLVMValueRef mul(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(k->b, a, b, ""); }
static inline LLVMValueRef icmp(K *k, LLVMIntPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildICmp(k->b, p, a, b, "");
}
static inline LLVMValueRef fcmp(K *k, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(k->b, p, a, b, "");
}
static inline LLVMValueRef sel(K *k, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(k->b, c, a, b, "");
}
static inline LLVMValueRef ext(K *k, LLVMValueRef x) { return LLVMBuildFPExt(k->b, x, k->f64, ""); }
static inline LLVMValueRef trn(K *k, LLVMValueRef x) { return LLVMBuildFPTrunc(k->b, x, k->f32, ""); }
static inline LLVMValueRef sitofp(K *k, LLVMValueRef x, LLVMTypeRef t) { return LLVMBuildSIToFP(k->b, x, t, ""); }

// Floating-point op allowed to reassociate (vectorized reductions).
static inline LLVMValueRef reassoc(LLVMValueRef v) {
  LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
  return v;
}

static inline LLVMValueRef gep(K *k, LLVMTypeRef t, LLVMValueRef p, LLVMValueRef i) {
  return LLVMBuildInBoundsGEP2(k->b, t, p, &i, 1, "");
}
static inline LLVMValueRef load(K *k, LLVMTypeRef t, LLVMValueRef p) { return LLVMBuildLoad2(k->b, t, p, ""); }
static inline void store(K *k, LLVMValueRef v, LLVMValueRef p) { LLVMBuildStore(k->b, v, p); }

static inline LLVMBasicBlockRef block(K *k, const char *name) {
  return LLVMAppendBasicBlockInContext(k->c, k->fn, name);
}
static inline void at(K *k, LLVMBasicBlockRef bb) { LLVMPositionBuilderAtEnd(k->b, bb); }

// A local variable (an alloca in the first block; mem2reg makes it SSA).
static inline LLVMValueRef var(K *k, LLVMTypeRef t, LLVMValueRef init) {
  LLVMValueRef v = LLVMBuildAlloca(k->ab, t, "");
  if (init) store(k, init, v);
  return v;
}
static inline LLVMValueRef get(K *k, LLVMValueRef v) { return load(k, LLVMGetAllocatedType(v), v); }

static inline LLVMValueRef intr(K *k, const char *name, LLVMTypeRef *tys, int ntys, LLVMValueRef *args, int nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(k->m, id, tys, (size_t)ntys);
  return LLVMBuildCall2(k->b, LLVMIntrinsicGetType(k->c, id, tys, (size_t)ntys), f, args, (unsigned)nargs, "");
}
static inline LLVMValueRef intr1(K *k, const char *name, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return intr(k, name, &t, 1, &x, 1);
}
static inline LLVMValueRef intr2(K *k, const char *name, LLVMValueRef x, LLVMValueRef y) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef a[2] = {x, y};
  return intr(k, name, &t, 1, a, 2);
}
// maxnum marked no-NaNs so that row maxima vectorize (a NaN in a row makes
// its softmax NaN either way, through the sum of exps).
static inline LLVMValueRef fmaxr(K *k, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef v = intr2(k, "llvm.maxnum", a, b);
  LLVMSetFastMathFlags(v, LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
  return v;
}
static inline LLVMValueRef imin(K *k, LLVMValueRef a, LLVMValueRef b) {
  return sel(k, icmp(k, LLVMIntSLT, a, b), a, b);
}
static inline LLVMValueRef imax(K *k, LLVMValueRef a, LLVMValueRef b) {
  return sel(k, icmp(k, LLVMIntSGT, a, b), a, b);
}

// double name(double[, double]) from libm (the symbols cg_compile defines).
static inline LLVMValueRef libm(K *k, const char *name, LLVMValueRef x, LLVMValueRef y) {
  LLVMTypeRef ps[2] = {k->f64, k->f64};
  LLVMTypeRef ft = LLVMFunctionType(k->f64, ps, y ? 2 : 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(k->m, name);
  if (!f) f = LLVMAddFunction(k->m, name, ft);
  LLVMValueRef a[2] = {x, y};
  return LLVMBuildCall2(k->b, ft, f, a, y ? 2 : 1, "");
}

// for (iv = lo; iv < hi; iv++): loop_begin returns iv and leaves the
// builder in the body; loop_end closes it and moves to the exit.
typedef struct {
  LLVMValueRef var, iv;
  LLVMBasicBlockRef head, exit;
} Loop;

static inline LLVMValueRef loop_begin(K *k, Loop *l, LLVMValueRef lo, LLVMValueRef hi) {
  l->var = var(k, k->i64, NULL);
  store(k, lo, l->var);
  l->head = block(k, "loop");
  LLVMBasicBlockRef body = block(k, "body");
  l->exit = block(k, "exit");
  LLVMBuildBr(k->b, l->head);
  at(k, l->head);
  l->iv = get(k, l->var);
  LLVMBuildCondBr(k->b, icmp(k, LLVMIntSLT, l->iv, hi), body, l->exit);
  at(k, body);
  return l->iv;
}

static inline void loop_end(K *k, Loop *l) {
  store(k, add(k, l->iv, ci(k, 1)), l->var);
  LLVMBuildBr(k->b, l->head);
  at(k, l->exit);
}

// if (cond) { ... }
static inline LLVMBasicBlockRef if_begin(K *k, LLVMValueRef cond) {
  LLVMBasicBlockRef then = block(k, "then"), join = block(k, "join");
  LLVMBuildCondBr(k->b, cond, then, join);
  at(k, then);
  return join;
}

static inline void if_end(K *k, LLVMBasicBlockRef join) {
  LLVMBuildBr(k->b, join);
  at(k, join);
}

// if (cond) { ctx->err = {e0, e1}; return code; }
static inline void fail_if(K *k, LLVMValueRef cond, int code, LLVMValueRef e0, LLVMValueRef e1) {
  LLVMBasicBlockRef bad = block(k, "fail"), ok = block(k, "ok");
  LLVMBuildCondBr(k->b, cond, bad, ok);
  at(k, bad);
  LLVMValueRef err = LLVMBuildStructGEP2(k->b, k->ctxty, k->ctx, 3, "");
  store(k, e0, gep(k, k->i64, err, ci(k, 0)));
  store(k, e1, gep(k, k->i64, err, ci(k, 1)));
  store(k, ci(k, code), gep(k, k->i64, err, ci(k, 3)));  // which kind of error (cg_run)
  LLVMBuildRet(k->b, ci32(k, code));
  at(k, ok);
}

// malloc(bytes) (ST_NOMEM if it fails) and free
static inline LLVMValueRef heap(K *k, LLVMValueRef bytes) {
  LLVMTypeRef ft = LLVMFunctionType(k->ptr, &k->i64, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(k->m, "malloc");
  if (!f) f = LLVMAddFunction(k->m, "malloc", ft);
  LLVMValueRef b1 = imax(k, bytes, ci(k, 8));
  LLVMValueRef p = LLVMBuildCall2(k->b, ft, f, &b1, 1, "");
  fail_if(k, LLVMBuildIsNull(k->b, p, ""), ST_NOMEM, bytes, ci(k, 0));
  return p;
}
static inline void heap_free(K *k, LLVMValueRef p) {
  LLVMTypeRef ft = LLVMFunctionType(k->voidt, &k->ptr, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(k->m, "free");
  if (!f) f = LLVMAddFunction(k->m, "free", ft);
  LLVMBuildCall2(k->b, ft, f, &p, 1, "");
}

static inline LLVMValueRef ctx_field(K *k, unsigned i, LLVMTypeRef t) {
  return load(k, t, LLVMBuildStructGEP2(k->b, k->ctxty, k->ctx, i, ""));
}

// ---- dtypes: a float tensor is computed as f32 (or f64), an integer or
// bool one as i64 (wrapped to its width when stored) ----

static inline LLVMTypeRef store_type(K *k, IrDType dt) {
  switch (dt) {
  case IR_F32: return k->f32;
  case IR_I32: return k->i32;
  case IR_I64: return k->i64;
  default: return k->i8;  // I8, U8, BOOL
  }
}

static inline LLVMValueRef ld(K *k, IrDType dt, LLVMValueRef base, LLVMValueRef i) {
  LLVMTypeRef t = store_type(k, dt);
  LLVMValueRef v = load(k, t, gep(k, t, base, i));
  if (dt == IR_F32 || dt == IR_I64) return v;
  return dt == IR_U8 || dt == IR_BOOL ? LLVMBuildZExt(k->b, v, k->i64, "") : LLVMBuildSExt(k->b, v, k->i64, "");
}

// A double as an integer dtype holds it (ir_round_to): truncated toward
// zero, wrapped around the width; NaN and infinities are 0; bool is != 0.
static inline LLVMValueRef f64_to_int(K *k, LLVMValueRef v, IrDType dt) {
  if (dt == IR_BOOL) return LLVMBuildZExt(k->b, fcmp(k, LLVMRealUNE, v, cd(k, 0)), k->i64, "");
  LLVMValueRef fin = fcmp(k, LLVMRealONE, intr1(k, "llvm.fabs", v), cd(k, INFINITY));
  LLVMValueRef t = intr1(k, "llvm.trunc", v), r;
  if (dt == IR_I64) {
    LLVMTypeRef tys[2] = {k->i64, k->f64};
    r = intr(k, "llvm.fptosi.sat", tys, 2, &t, 1);
  } else {
    double m = dt == IR_I32 ? 0x1p32 : 256.0;
    LLVMValueRef q = LLVMBuildFRem(k->b, t, cd(k, m), "");
    q = sel(k, fcmp(k, LLVMRealOLT, q, cd(k, 0)), LLVMBuildFAdd(k->b, q, cd(k, m), ""), q);
    r = LLVMBuildFPToSI(k->b, sel(k, fin, q, cd(k, 0)), k->i64, "");
  }
  return sel(k, fin, r, ci(k, 0));
}

// v (f32, f64 or i64) as a value of dtype dt (f32 or i64).
static inline LLVMValueRef convert(K *k, LLVMValueRef v, IrDType dt) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (dt == IR_F32) return t == k->f32 ? v : t == k->f64 ? trn(k, v) : sitofp(k, v, k->f32);
  if (t == k->f32) v = ext(k, v), t = k->f64;
  if (t == k->f64) return f64_to_int(k, v, dt);
  if (dt == IR_BOOL) return LLVMBuildZExt(k->b, icmp(k, LLVMIntNE, v, ci(k, 0)), k->i64, "");
  return v;
}

static inline void st(K *k, IrDType dt, LLVMValueRef base, LLVMValueRef i, LLVMValueRef v) {
  LLVMTypeRef t = store_type(k, dt);
  v = convert(k, v, dt);
  if (dt != IR_F32 && dt != IR_I64) v = LLVMBuildTrunc(k->b, v, t, "");
  store(k, v, gep(k, t, base, i));
}

static inline LLVMValueRef byte_gep(K *k, LLVMValueRef p, LLVMValueRef elems, IrDType dt) {
  return gep(k, k->i8, p, mul(k, elems, ci(k, (int64_t)ir_dtype_info[dt].size)));
}

static inline void copy(K *k, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef elems, IrDType dt) {
  LLVMBuildMemCpy(k->b, dst, 1, src, 1, mul(k, elems, ci(k, (int64_t)ir_dtype_info[dt].size)));
}

static inline LLVMValueRef prod(K *k, const LLVMValueRef *d, int from, int to) {
  LLVMValueRef p = ci(k, 1);
  for (int i = from; i < to; i++) p = mul(k, p, d[i]);
  return p;
}

static inline int src_rank(K *k, int j) { return k->n->src[j]->ty.rank; }

static inline bool is_attention_grad(IrOp op) {
  return op == IR_OP_ATTENTION_DQ || op == IR_OP_ATTENTION_DK || op == IR_OP_ATTENTION_DV;
}

// ---- exp on f32 (Cephes expf: 2^n * p(r), r = x - n ln 2; about 1 ulp):
// plain arithmetic and bit casts, so that loops calling it vectorize ----

static inline LLVMValueRef fexp(K *k, LLVMValueRef x) {
  LLVMBuilderRef b = k->b;
  LLVMValueRef xc = intr2(k, "llvm.minnum", intr2(k, "llvm.maxnum", x, cf(k, -87.5)), cf(k, 88.5));
  LLVMValueRef n = intr1(k, "llvm.rint", LLVMBuildFMul(b, xc, cf(k, 1.44269504088896341), ""));
  LLVMValueRef r = LLVMBuildFSub(b, xc, LLVMBuildFMul(b, n, cf(k, 0.693359375), ""), "");
  r = LLVMBuildFSub(b, r, LLVMBuildFMul(b, n, cf(k, -2.12194440e-4), ""), "");
  static const double c[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMValueRef p = cf(k, c[0]);
  for (int i = 1; i < 6; i++) p = LLVMBuildFAdd(b, LLVMBuildFMul(b, p, r, ""), cf(k, c[i]), "");
  LLVMValueRef r2 = LLVMBuildFMul(b, r, r, "");
  p = LLVMBuildFAdd(b, LLVMBuildFAdd(b, LLVMBuildFMul(b, p, r2, ""), r, ""), cf(k, 1), "");
  // 2^n: n in [-127, 128] after the clamp; split in two factors to stay normal
  LLVMValueRef ni = LLVMBuildFPToSI(b, n, k->i32, "");
  LLVMValueRef h = LLVMBuildAShr(b, ni, ci32(k, 1), ""), l = LLVMBuildSub(b, ni, h, "");
  LLVMValueRef sh = LLVMBuildShl(b, LLVMBuildAdd(b, h, ci32(k, 127), ""), ci32(k, 23), "");
  LLVMValueRef sl = LLVMBuildShl(b, LLVMBuildAdd(b, l, ci32(k, 127), ""), ci32(k, 23), "");
  sh = LLVMBuildBitCast(b, sh, k->f32, "");
  sl = LLVMBuildBitCast(b, sl, k->f32, "");
  LLVMValueRef y = LLVMBuildFMul(b, LLVMBuildFMul(b, p, sh, ""), sl, "");
  // below -87.5: 0 (exp(-inf) = 0); above 88.5: inf; NaN stays NaN
  y = sel(k, fcmp(k, LLVMRealOLT, x, cf(k, -87.5)), cf(k, 0), y);
  y = sel(k, fcmp(k, LLVMRealOGT, x, cf(k, 88.5)), cf(k, INFINITY), y);
  return sel(k, fcmp(k, LLVMRealUNO, x, x), x, y);
}

// ---- loop nests ----

typedef void (*BodyFn)(K *k, const LLVMValueRef *off, void *ud);

// Every index of dims[a..r) in row-major order; off[j] = base[j] + sum over
// axes of idx * st[j][axis].
static inline void nest(K *k, int a, int r, const LLVMValueRef *dims, int nops, LLVMValueRef (*st)[IR_MAX_RANK],
                        const LLVMValueRef *base, BodyFn body, void *ud) {
  if (a == r || a >= IR_MAX_RANK) {  // (the second: a bound GCC can see through the recursion)
    body(k, base, ud);
    return;
  }
  Loop l;
  LLVMValueRef i = loop_begin(k, &l, ci(k, 0), dims[a]), off[IR_MAX_SRC + 2];
  for (int j = 0; j < nops; j++) off[j] = add(k, base[j], mul(k, i, st[j][a]));
  nest(k, a + 1, r, dims, nops, st, off, body, ud);
  loop_end(k, &l);
}

// Strides of operand j (type t, dims d) read as the result (rank r) under
// numpy broadcasting; a constant 1 (or missing) axis steps 0.
static inline void bcast_strides(K *k, const IrType *t, const LLVMValueRef *d, int r, LLVMValueRef *st) {
  LLVMValueRef s = ci(k, 1);
  for (int i = r - 1; i >= 0; i--) {
    int j = i - (r - t->rank);
    if (j < 0 || (ir_dim_is_const(t->dim[j]) && t->dim[j].n == 1)) {
      st[i] = ci(k, 0);
      continue;
    }
    st[i] = s;
    s = mul(k, s, d[j]);
  }
}

static inline bool same_dims(const IrType *a, const IrType *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

// ---- parallel kernels (compile.c) ----
// The number of independent units of node k->n's outer loop (rows, columns,
// query rows, ...) and the work of one unit in elements (*work): the
// schedule's split (k->ks->split) evaluated on k->idim/odim; NULL for a
// kernel that runs serially.
HEED_INTERNAL LLVMValueRef cg_par_units(K *k, LLVMValueRef *work);

// for (u = plo; u < phi; u++) in a parallel body, else over all units.
static inline LLVMValueRef par_begin(K *k, Loop *l) {
  if (k->plo) return loop_begin(k, l, k->plo, k->phi);
  LLVMValueRef w;
  return loop_begin(k, l, ci(k, 0), cg_par_units(k, &w));
}

// ---- compile_ops.c ----
// The body of node k->n's kernel (its forward op's; the gradient ops go to
// compile_grad.c, ...) into k->fn, whose operands and dims are set up.
HEED_INTERNAL void cg_emit_op(K *k);

// ---- compile_grad.c ----
// The gradient ops (UNARY_GRAD ... MAXIMUM_GRAD) into k->fn, whose operands and
// dims are set up; UNARY_GRAD and MAXIMUM_GRAD are elementwise (compile.c's
// emit_map calls cg_grad_elem for one element).
HEED_INTERNAL void cg_emit_grad(K *k);
HEED_INTERNAL LLVMValueRef cg_grad_elem(K *k, const LLVMValueRef *v);
// ---- compile_optim.c: the fused optimizer updates (OPT_MOMENT, OPT_MOMENT2, OPT_ADAMW) ----
HEED_INTERNAL void cg_emit_optim(K *k);

// ---- attention.c ----
// ATTENTION and ATTENTION_KV (a parallel body over units (b, head)), and the
// fused ATTENTION_DQ/_DK/_DV (units (b, kv head); k->xout = dq, dk, dv).
HEED_INTERNAL void cg_emit_attention(K *k);

// ---- compile_kv.c ----
// The incremental-decoding ops (KV_APPEND; ATTENTION_KV, ROPE_AT are compile.c's) into k->fn;
// cg_emit_gemv: before a MATMUL's sgemm, a branch that handles a left
// operand of one row against a matrix and returns.
HEED_INTERNAL void cg_emit_kv(K *k);
HEED_INTERNAL void cg_emit_gemv(K *k);

#endif
