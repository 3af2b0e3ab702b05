// codegen/compile.c: a whole IrGraph's ops to native code. Sits at the end
// of the CPU backend's data flow: IrGraph (verified; forward ops, and the
// gradient ops of a train graph after pass_autodiff, whose kernels are in
// compile_grad.c) -> one LLVM module (llvm.c) -> O3 -> LLJIT -> CgProgram,
// which cg_run calls on caller-allocated buffers. compile.h holds the
// generator's state and small builders that both files use.
//
// The module holds
//   - one function per distinct kernel: nodes with the same op, attributes
//     and operand/result types (dtypes and dims, symbols included) share one
//     function, so the 12 layers of GPT-2 compile each kernel once:
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
// Numerics: the interpreter (ir/kernels.c) computes in double and rounds
// each node to f32. Here elementwise float ops are f32 where f32 is exact
// (+ - * / sqrt) and double through libm otherwise; reductions, softmax and
// norm statistics, attention's weighted sums and cross entropy accumulate
// in double; exp in softmax, attention, xent, EXP, SIGMOID, SILU and
// GELU_TANH is an f32 polynomial (fexp, 1-2 ulp) that the loop vectorizer
// widens; TANH, GELU (erf), LOG, ROPE's sin/cos stay in double libm.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cg.h"
#include "codegen/compile.h"

static const SrcLoc NOLOC = {0, 0, 0};

void sincos(double x, double *s, double *c);  // glibc (a GNU extension): LLVM pairs sin and cos into it

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
  CgNode *nodes;
  int nnodes;
  bool *skip;  // per node: not computed (skipped_nodes)
  CgGemmConfig gemm;
  float *work;  // the sgemm's packing buffers
  void *pool;
  int nthreads;
  CgProgramStats stats;
};


// ---- elementwise (and EXPAND, PERMUTE, CAST, DROPOUT) ----

// One element of the node's result from its operands' values.
static LLVMValueRef elem(K *k, const LLVMValueRef *v) {
  LLVMBuilderRef b = k->b;
  IrOp op = k->n->op;
  bool fl = LLVMTypeOf(v[0]) == k->f32;
  switch (op) {
  case IR_OP_ADD: return fl ? LLVMBuildFAdd(b, v[0], v[1], "") : LLVMBuildAdd(b, v[0], v[1], "");
  case IR_OP_SUB: return fl ? LLVMBuildFSub(b, v[0], v[1], "") : LLVMBuildSub(b, v[0], v[1], "");
  case IR_OP_MUL: return fl ? LLVMBuildFMul(b, v[0], v[1], "") : LLVMBuildMul(b, v[0], v[1], "");
  case IR_OP_DIV: {
    if (fl) return LLVMBuildFDiv(b, v[0], v[1], "");
    fail_if(k, icmp(k, LLVMIntEQ, v[1], ci(k, 0)), ST_DIVZ, v[0], ci(k, 0));
    LLVMValueRef m1 = icmp(k, LLVMIntEQ, v[1], ci(k, -1));  // INT64_MIN / -1 would trap
    LLVMValueRef q = LLVMBuildSDiv(b, v[0], sel(k, m1, ci(k, 1), v[1]), "");
    return sel(k, m1, LLVMBuildSub(b, ci(k, 0), v[0], ""), q);
  }
  case IR_OP_MAXIMUM:
    return fl ? intr2(k, "llvm.maximum", v[0], v[1]) : imax(k, v[0], v[1]);
  case IR_OP_MINIMUM:
    return fl ? intr2(k, "llvm.minimum", v[0], v[1]) : imin(k, v[0], v[1]);
  case IR_OP_WHERE: return sel(k, icmp(k, LLVMIntNE, v[0], ci(k, 0)), v[1], v[2]);
  case IR_OP_NEG: return fl ? LLVMBuildFNeg(b, v[0], "") : LLVMBuildSub(b, ci(k, 0), v[0], "");
  case IR_OP_ABS:
    if (fl) return intr1(k, "llvm.fabs", v[0]);
    return sel(k, icmp(k, LLVMIntSLT, v[0], ci(k, 0)), LLVMBuildSub(b, ci(k, 0), v[0], ""), v[0]);
  case IR_OP_RELU:
    return fl ? sel(k, fcmp(k, LLVMRealOLT, v[0], cf(k, 0)), cf(k, 0), v[0])
              : sel(k, icmp(k, LLVMIntSLT, v[0], ci(k, 0)), ci(k, 0), v[0]);
  case IR_OP_SQRT: return intr1(k, "llvm.sqrt", v[0]);  // correctly rounded, as sqrt in double then f32
  // f32 through fexp (vectorized): 1 / (1 + exp(-x)) has no cancellation
  case IR_OP_EXP: return fexp(k, v[0]);
  case IR_OP_SIGMOID: case IR_OP_SILU: {
    LLVMValueRef e = fexp(k, LLVMBuildFNeg(b, v[0], ""));
    LLVMValueRef sg = LLVMBuildFDiv(b, cf(k, 1), LLVMBuildFAdd(b, cf(k, 1), e, ""), "");
    return op == IR_OP_SILU ? LLVMBuildFMul(b, v[0], sg, "") : sg;
  }
  case IR_OP_GELU_TANH: {  // 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)
    LLVMValueRef x2 = LLVMBuildFMul(b, v[0], v[0], "");
    LLVMValueRef x3 = LLVMBuildFMul(b, LLVMBuildFMul(b, cf(k, 0.044715), v[0], ""), x2, "");
    LLVMValueRef u2 = LLVMBuildFAdd(b, v[0], x3, "");
    u2 = LLVMBuildFMul(b, cf(k, -2 * sqrt(2 / 3.14159265358979323846)), u2, "");
    return LLVMBuildFDiv(b, v[0], LLVMBuildFAdd(b, cf(k, 1), fexp(k, u2), ""), "");
  }
  case IR_OP_CAST: return convert(k, v[0], k->n->ty.dt);
  case IR_OP_UNARY_GRAD: case IR_OP_MAXIMUM_GRAD: return cg_grad_elem(k, v);
  case IR_OP_DROPOUT: case IR_OP_EXPAND: case IR_OP_PERMUTE: return v[0];
  default: break;
  }
  // The transcendental ones: in double through libm, as the reference.
  LLVMValueRef x = ext(k, v[0]), y;
  switch (op) {
  case IR_OP_LOG: y = libm(k, "log", x, NULL); break;
  case IR_OP_RSQRT: y = LLVMBuildFDiv(b, cd(k, 1), intr1(k, "llvm.sqrt", x), ""); break;
  case IR_OP_TANH: y = libm(k, "tanh", x, NULL); break;
  case IR_OP_GELU: {
    LLVMValueRef e = libm(k, "erf", LLVMBuildFDiv(b, x, cd(k, sqrt(2.0)), ""), NULL);
    y = LLVMBuildFMul(b, LLVMBuildFMul(b, cd(k, 0.5), x, ""), LLVMBuildFAdd(b, cd(k, 1), e, ""), "");
    break;
  }
  default: heed_unreachable();
  }
  return trn(k, y);
}

static void map_body(K *k, const LLVMValueRef *off, void *ud) {
  (void)ud;
  const IrNode *n = k->n;
  LLVMValueRef v[IR_MAX_SRC];
  for (int j = 0; j < n->nsrc; j++) v[j] = ld(k, n->src[j]->ty.dt, k->src[j], off[j]);
  st(k, n->ty.dt, k->out, off[n->nsrc], elem(k, v));
}

static void emit_map(K *k) {
  const IrNode *n = k->n;
  int r = n->ty.rank, ns = n->nsrc;
  bool flat = n->op != IR_OP_PERMUTE;
  for (int j = 0; j < ns; j++) flat = flat && same_dims(&n->src[j]->ty, &n->ty);
  LLVMValueRef zero[IR_MAX_SRC + 1];
  for (int j = 0; j <= ns; j++) zero[j] = ci(k, 0);
  LLVMValueRef st[IR_MAX_SRC + 1][IR_MAX_RANK];
  if (flat) {  // one loop over every element, the same offset everywhere
    LLVMValueRef numel = prod(k, k->odim, 0, r);
    for (int j = 0; j <= ns; j++) st[j][0] = ci(k, 1);
    nest(k, 0, 1, &numel, ns + 1, st, zero, map_body, NULL);
    return;
  }
  if (n->op == IR_OP_PERMUTE) {
    LLVMValueRef own[IR_MAX_RANK];
    bcast_strides(k, &n->src[0]->ty, k->idim[0], r, own);
    for (int i = 0; i < r; i++) st[0][i] = own[n->attr.perm[i]];
  } else {
    for (int j = 0; j < ns; j++) bcast_strides(k, &n->src[j]->ty, k->idim[j], r, st[j]);
  }
  bcast_strides(k, &n->ty, k->odim, r, st[ns]);  // the result's own (a size-1 axis steps 0: index 0 only)
  nest(k, 0, r, k->odim, ns + 1, st, zero, map_body, NULL);
}

// ---- reductions (SUM, MEAN, MAX, MIN, SUM_TO), accumulated in double ----

typedef struct {
  uint32_t axes;
  int nred;
  LLVMValueRef rdims[IR_MAX_RANK], rst[1][IR_MAX_RANK], count, acc;
  IrOp op;
} Red;

static void red_inner(K *k, const LLVMValueRef *off, void *ud) {
  Red *rd = ud;
  LLVMValueRef x = ld(k, k->n->src[0]->ty.dt, k->src[0], off[0]);
  x = LLVMTypeOf(x) == k->f32 ? ext(k, x) : sitofp(k, x, k->f64);
  LLVMValueRef a = get(k, rd->acc), y;
  if (rd->op == IR_OP_MAX) y = intr2(k, "llvm.maximum", a, x);
  else if (rd->op == IR_OP_MIN) y = intr2(k, "llvm.minimum", a, x);
  else y = reassoc(LLVMBuildFAdd(k->b, a, x, ""));
  store(k, y, rd->acc);
}

static void red_outer(K *k, const LLVMValueRef *off, void *ud) {
  Red *rd = ud;
  double init = rd->op == IR_OP_MAX ? -INFINITY : rd->op == IR_OP_MIN ? INFINITY : 0;
  store(k, cd(k, init), rd->acc);
  nest(k, 0, rd->nred, rd->rdims, 1, rd->rst, off, red_inner, rd);
  LLVMValueRef y = get(k, rd->acc);
  if (rd->op == IR_OP_MEAN) y = LLVMBuildFDiv(k->b, y, sitofp(k, rd->count, k->f64), "");
  st(k, k->n->ty.dt, k->out, off[1], y);
}

static void emit_reduce(K *k, uint32_t axes) {
  const IrType *x = &k->n->src[0]->ty;
  Red rd = {.axes = axes, .op = k->n->op == IR_OP_SUM_TO ? IR_OP_SUM : k->n->op, .count = ci(k, 1)};
  rd.acc = var(k, k->f64, NULL);
  int r = x->rank, nkept = 0;
  LLVMValueRef kdims[IR_MAX_RANK], kst[2][IR_MAX_RANK], s = ci(k, 1), in_st[IR_MAX_RANK];
  for (int i = r - 1; i >= 0; i--) {
    in_st[i] = s;
    s = mul(k, s, k->idim[0][i]);
  }
  // the kept axes' result strides, innermost last
  LLVMValueRef os = ci(k, 1), ost[IR_MAX_RANK];
  for (int i = r - 1; i >= 0; i--) {
    if (axes >> i & 1) continue;
    ost[i] = os;
    os = mul(k, os, k->idim[0][i]);
  }
  for (int i = 0; i < r; i++) {
    if (axes >> i & 1) {
      rd.rdims[rd.nred] = k->idim[0][i];
      rd.rst[0][rd.nred++] = in_st[i];
      rd.count = mul(k, rd.count, k->idim[0][i]);
    } else {
      kdims[nkept] = k->idim[0][i];
      kst[0][nkept] = in_st[i];
      kst[1][nkept++] = ost[i];
    }
  }
  LLVMValueRef zero[2] = {ci(k, 0), ci(k, 0)};
  nest(k, 0, nkept, kdims, 2, kst, zero, red_outer, &rd);
}

// ---- softmax, log_softmax along an axis ----

static void emit_softmax(K *k) {
  const IrNode *n = k->n;
  int r = src_rank(k, 0), axis = (int)n->attr.axis;
  bool lg = n->op == IR_OP_LOG_SOFTMAX;
  LLVMValueRef outer = prod(k, k->idim[0], 0, axis), len = k->idim[0][axis];
  LLVMValueRef inner = prod(k, k->idim[0], axis + 1, r);
  LLVMValueRef mx = var(k, k->f32, NULL), sum = var(k, k->f64, NULL);
  Loop lo, lj, li;
  LLVMValueRef o = loop_begin(k, &lo, ci(k, 0), outer);
  LLVMValueRef j = loop_begin(k, &lj, ci(k, 0), inner);
  LLVMValueRef base = add(k, mul(k, mul(k, o, len), inner), j);
  LLVMValueRef xp = gep(k, k->f32, k->src[0], base), yp = gep(k, k->f32, k->out, base);
  store(k, cf(k, -INFINITY), mx);
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), len);
  LLVMValueRef x = load(k, k->f32, gep(k, k->f32, xp, mul(k, i, inner)));
  store(k, fmaxr(k, get(k, mx), x), mx);
  loop_end(k, &li);
  LLVMValueRef m = get(k, mx);
  store(k, cd(k, 0), sum);
  i = loop_begin(k, &li, ci(k, 0), len);
  x = load(k, k->f32, gep(k, k->f32, xp, mul(k, i, inner)));
  LLVMValueRef e = fexp(k, LLVMBuildFSub(k->b, x, m, ""));
  if (!lg) store(k, e, gep(k, k->f32, yp, mul(k, i, inner)));
  store(k, reassoc(LLVMBuildFAdd(k->b, get(k, sum), ext(k, e), "")), sum);
  loop_end(k, &li);
  LLVMValueRef s = get(k, sum);
  LLVMValueRef f = lg ? trn(k, LLVMBuildFAdd(k->b, ext(k, m), libm(k, "log", s, NULL), ""))
                      : trn(k, LLVMBuildFDiv(k->b, cd(k, 1), s, ""));
  i = loop_begin(k, &li, ci(k, 0), len);
  LLVMValueRef p = gep(k, k->f32, yp, mul(k, i, inner));
  if (lg) {
    x = load(k, k->f32, gep(k, k->f32, xp, mul(k, i, inner)));
    store(k, LLVMBuildFSub(k->b, x, f, ""), p);
  } else {
    store(k, LLVMBuildFMul(k->b, load(k, k->f32, p), f, ""), p);
  }
  loop_end(k, &li);
  loop_end(k, &lj);
  loop_end(k, &lo);
}

// ---- layernorm, rmsnorm over the last axis ----

static void emit_norm(K *k) {
  const IrNode *n = k->n;
  bool ln = n->op == IR_OP_LAYERNORM;
  int r = src_rank(k, 0);
  LLVMValueRef C = k->idim[0][r - 1], numel = prod(k, k->idim[0], 0, r);
  LLVMValueRef rows = sel(k, icmp(k, LLVMIntEQ, C, ci(k, 0)), ci(k, 0),
                          LLVMBuildSDiv(k->b, numel, imax(k, C, ci(k, 1)), ""));
  LLVMValueRef acc = var(k, k->f64, NULL), Cd = sitofp(k, C, k->f64);
  Loop lr, lc;
  LLVMValueRef row = loop_begin(k, &lr, ci(k, 0), rows);
  LLVMValueRef xp = gep(k, k->f32, k->src[0], mul(k, row, C)), yp = gep(k, k->f32, k->out, mul(k, row, C));
  LLVMValueRef mean = cf(k, 0);
  if (ln) {
    store(k, cd(k, 0), acc);
    LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), C);
    store(k, reassoc(LLVMBuildFAdd(k->b, get(k, acc), ext(k, load(k, k->f32, gep(k, k->f32, xp, c))), "")), acc);
    loop_end(k, &lc);
    mean = LLVMBuildFDiv(k->b, get(k, acc), Cd, "");
  } else {
    mean = cd(k, 0);
  }
  store(k, cd(k, 0), acc);
  LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), C);
  LLVMValueRef d = LLVMBuildFSub(k->b, ext(k, load(k, k->f32, gep(k, k->f32, xp, c))), mean, "");
  store(k, reassoc(LLVMBuildFAdd(k->b, get(k, acc), LLVMBuildFMul(k->b, d, d, ""), "")), acc);
  loop_end(k, &lc);
  LLVMValueRef inv = LLVMBuildFDiv(k->b, cd(k, 1),
                                   intr1(k, "llvm.sqrt", LLVMBuildFAdd(k->b, LLVMBuildFDiv(k->b, get(k, acc), Cd, ""),
                                                                       cd(k, n->attr.eps), "")), "");
  LLVMValueRef mf = trn(k, mean), invf = trn(k, inv);
  c = loop_begin(k, &lc, ci(k, 0), C);
  LLVMValueRef x = load(k, k->f32, gep(k, k->f32, xp, c));
  LLVMValueRef y = LLVMBuildFMul(k->b, LLVMBuildFMul(k->b, LLVMBuildFSub(k->b, x, mf, ""), invf, ""),
                                 load(k, k->f32, gep(k, k->f32, k->src[1], c)), "");
  if (ln) y = LLVMBuildFAdd(k->b, y, load(k, k->f32, gep(k, k->f32, k->src[2], c)), "");
  store(k, y, gep(k, k->f32, yp, c));
  loop_end(k, &lc);
  loop_end(k, &lr);
}

// ---- matmul: the generated sgemm per batch (broadcast batch axes) ----

typedef struct {
  LLVMValueRef M, N, K;
} Mm;

static void mm_body(K *k, const LLVMValueRef *off, void *ud) {
  Mm *mm = ud;
  LLVMValueRef A = gep(k, k->f32, k->src[0], off[0]), B = gep(k, k->f32, k->src[1], off[1]);
  LLVMValueRef C = gep(k, k->f32, k->out, off[2]);
  LLVMValueRef args[13] = {mm->M, mm->N, mm->K, A, mm->K, B, k->nt ? mm->K : mm->N, C, mm->N, ci32(k, 0),
                           ctx_field(k, 0, k->ptr), ctx_field(k, 1, k->i32), ctx_field(k, 2, k->ptr)};
  LLVMValueRef g = k->gemm[k->nt];
  LLVMBuildCall2(k->b, LLVMGlobalGetValueType(g), g, args, 13, "");
}

static void emit_matmul(K *k) {
  const IrNode *n = k->n;
  int r = n->ty.rank, ra = src_rank(k, 0);
  Mm mm = {.M = k->idim[0][ra - 2], .K = k->idim[0][ra - 1], .N = k->odim[r - 1]};
  IrType ba = n->src[0]->ty, bb = n->src[1]->ty, bc = n->ty;
  ba.rank -= 2, bb.rank -= 2, bc.rank -= 2;
  LLVMValueRef st[3][IR_MAX_RANK];
  bcast_strides(k, &ba, k->idim[0], r - 2, st[0]);
  bcast_strides(k, &bb, k->idim[1], r - 2, st[1]);
  bcast_strides(k, &bc, k->odim, r - 2, st[2]);
  LLVMValueRef mk = mul(k, mm.M, mm.K), kn = mul(k, mm.K, mm.N), mn = mul(k, mm.M, mm.N);
  for (int i = 0; i < r - 2; i++) {
    st[0][i] = mul(k, st[0][i], mk);
    st[1][i] = mul(k, st[1][i], kn);
    st[2][i] = mul(k, st[2][i], mn);
  }
  // K = 0: zeros (the sgemm is not asked)
  LLVMValueRef total = mul(k, prod(k, k->odim, 0, r), ci(k, 4));
  LLVMBasicBlockRef join = if_begin(k, icmp(k, LLVMIntEQ, mm.K, ci(k, 0)));
  LLVMBuildMemSet(k->b, k->out, LLVMConstInt(k->i8, 0, 0), total, 4);
  LLVMBuildRet(k->b, ci32(k, 0));
  at(k, join);
  LLVMValueRef zero[3] = {ci(k, 0), ci(k, 0), ci(k, 0)};
  nest(k, 0, r - 2, k->odim, 3, st, zero, mm_body, &mm);
}

// ---- shape ops ----

static void emit_slice(K *k) {
  const IrNode *n = k->n;
  int a = (int)n->attr.axis, r = n->ty.rank;
  IrDType dt = n->ty.dt;
  LLVMValueRef size = k->idim[0][a], len = k->odim[a], start = ci(k, n->attr.start);
  LLVMValueRef s0 = n->attr.start < 0 ? add(k, start, size) : start;
  LLVMValueRef bad = LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, s0, ci(k, 0)), icmp(k, LLVMIntSGT, s0, size), "");
  bad = LLVMBuildOr(k->b, bad, icmp(k, LLVMIntSGT, len, sub(k, size, s0)), "");
  fail_if(k, bad, ST_SLICE, len, size);
  LLVMValueRef outer = prod(k, k->odim, 0, a), inner = prod(k, k->odim, a + 1, r);
  Loop l;
  LLVMValueRef o = loop_begin(k, &l, ci(k, 0), outer);
  LLVMValueRef from = mul(k, add(k, mul(k, o, size), s0), inner);
  copy(k, byte_gep(k, k->out, mul(k, mul(k, o, len), inner), dt), byte_gep(k, k->src[0], from, dt),
       mul(k, len, inner), dt);
  loop_end(k, &l);
}

static void emit_concat(K *k) {
  const IrNode *n = k->n;
  int a = (int)n->attr.axis, r = n->ty.rank;
  IrDType dt = n->ty.dt;
  LLVMValueRef outer = prod(k, k->odim, 0, a), total = k->odim[a], inner = prod(k, k->odim, a + 1, r);
  LLVMValueRef pos = ci(k, 0);
  for (int j = 0; j < n->nsrc; j++) {
    LLVMValueRef nj = k->idim[j][a];
    Loop l;
    LLVMValueRef o = loop_begin(k, &l, ci(k, 0), outer);
    copy(k, byte_gep(k, k->out, mul(k, add(k, mul(k, o, total), pos), inner), dt),
         byte_gep(k, k->src[j], mul(k, mul(k, o, nj), inner), dt), mul(k, nj, inner), dt);
    loop_end(k, &l);
    pos = add(k, pos, nj);
  }
}

static void emit_gather(K *k) {
  const IrNode *n = k->n;
  IrDType dt = n->ty.dt, it = n->src[1]->ty.dt;
  LLVMValueRef N = k->idim[0][0], row = prod(k, k->idim[0], 1, src_rank(k, 0));
  LLVMValueRef nidx = prod(k, k->idim[1], 0, src_rank(k, 1));
  Loop l;
  LLVMValueRef i = loop_begin(k, &l, ci(k, 0), nidx);
  LLVMValueRef v = ld(k, it, k->src[1], i);
  fail_if(k, LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, v, ci(k, 0)), icmp(k, LLVMIntSGE, v, N), ""), ST_INDEX, v, N);
  copy(k, byte_gep(k, k->out, mul(k, i, row), dt), byte_gep(k, k->src[0], mul(k, v, row), dt), row, dt);
  loop_end(k, &l);
}

// ---- Transformer ops ----

// q (B,T,H*D), k, v (B,S,KV*D) [, mask (B,S)] -> (B,T,H*D). Per query row:
// scores (f32 dot products, vectorized over D) into w (S), the maximum over
// the visible keys, p = exp(score - max) (summed in double), then y = sum of
// p/sum * v accumulated in double; zeros when no key is visible. Causal:
// query t sees keys s <= t + (S - T).
static void emit_attention(K *k) {
  const IrNode *n = k->n;
  LLVMBuilderRef b = k->b;
  int64_t H = n->attr.heads, KV = n->attr.kv_heads, D = n->ty.dim[2].n / H;
  LLVMValueRef B = k->idim[0][0], T = k->idim[0][1], S = k->idim[1][1];
  bool masked = n->nsrc > 3;
  // scratch in the first block, where the dims are loaded
  LLVMValueRef s1 = LLVMBuildSelect(k->ab, LLVMBuildICmp(k->ab, LLVMIntSGT, S, ci(k, 1), ""), S, ci(k, 1), "");
  LLVMValueRef w = LLVMBuildArrayAlloca(k->ab, k->f32, s1, "w");
  LLVMValueRef acc = LLVMBuildArrayAlloca(k->ab, k->f64, ci(k, D), "acc");
  LLVMValueRef mx = var(k, k->f32, NULL), nvis = var(k, k->i64, NULL), dot = var(k, k->f32, NULL);
  LLVMValueRef sum = var(k, k->f64, NULL);
  Loop lb, lt, lh, ls, li;
  LLVMValueRef bi = loop_begin(k, &lb, ci(k, 0), B);
  LLVMValueRef t = loop_begin(k, &lt, ci(k, 0), T);
  LLVMValueRef h = loop_begin(k, &lh, ci(k, 0), ci(k, H));
  LLVMValueRef kh = LLVMBuildSDiv(b, h, ci(k, H / KV), "");
  LLVMValueRef q = gep(k, k->f32, k->src[0], mul(k, add(k, mul(k, add(k, mul(k, bi, T), t), ci(k, H)), h), ci(k, D)));
  LLVMValueRef y = gep(k, k->f32, k->out, mul(k, add(k, mul(k, add(k, mul(k, bi, T), t), ci(k, H)), h), ci(k, D)));
  LLVMValueRef kbase = mul(k, add(k, mul(k, mul(k, bi, S), ci(k, KV)), kh), ci(k, D));  // row s adds s*KV*D
  LLVMValueRef lim = n->attr.causal ? imax(k, ci(k, 0), imin(k, S, add(k, t, add(k, sub(k, S, T), ci(k, 1))))) : S;
  LLVMValueRef mrow = masked ? gep(k, k->i8, k->src[3], mul(k, bi, S)) : NULL;
  store(k, cf(k, -INFINITY), mx);
  store(k, ci(k, 0), nvis);
  // scores
  LLVMValueRef s = loop_begin(k, &ls, ci(k, 0), lim);
  LLVMBasicBlockRef join = NULL;
  if (masked) join = if_begin(k, icmp(k, LLVMIntNE, load(k, k->i8, gep(k, k->i8, mrow, s)), LLVMConstInt(k->i8, 0, 0)));
  LLVMValueRef kr = gep(k, k->f32, k->src[1], add(k, kbase, mul(k, s, ci(k, KV * D))));
  store(k, cf(k, 0), dot);
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  LLVMValueRef pr = LLVMBuildFMul(b, load(k, k->f32, gep(k, k->f32, q, i)), load(k, k->f32, gep(k, k->f32, kr, i)), "");
  store(k, reassoc(LLVMBuildFAdd(b, get(k, dot), reassoc(pr), "")), dot);
  loop_end(k, &li);
  LLVMValueRef sc = LLVMBuildFMul(b, get(k, dot), cf(k, n->attr.scale), "");
  store(k, sc, gep(k, k->f32, w, s));
  store(k, intr2(k, "llvm.maxnum", get(k, mx), sc), mx);
  store(k, add(k, get(k, nvis), ci(k, 1)), nvis);
  if (masked) if_end(k, join);
  loop_end(k, &ls);
  // zeros, then the weighted sum of v when some key is visible
  i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  store(k, cd(k, 0), gep(k, k->f64, acc, i));
  loop_end(k, &li);
  LLVMBasicBlockRef any = if_begin(k, icmp(k, LLVMIntSGT, get(k, nvis), ci(k, 0)));
  LLVMValueRef m = get(k, mx);
  store(k, cd(k, 0), sum);
  s = loop_begin(k, &ls, ci(k, 0), lim);
  LLVMValueRef e = fexp(k, LLVMBuildFSub(b, load(k, k->f32, gep(k, k->f32, w, s)), m, ""));
  if (masked)  // a hidden key adds nothing
    e = sel(k, icmp(k, LLVMIntNE, load(k, k->i8, gep(k, k->i8, mrow, s)), LLVMConstInt(k->i8, 0, 0)), e, cf(k, 0));
  store(k, e, gep(k, k->f32, w, s));
  store(k, reassoc(LLVMBuildFAdd(b, get(k, sum), ext(k, e), "")), sum);
  loop_end(k, &ls);
  LLVMValueRef inv = LLVMBuildFDiv(b, cd(k, 1), get(k, sum), "");
  s = loop_begin(k, &ls, ci(k, 0), lim);
  LLVMValueRef p = LLVMBuildFMul(b, ext(k, load(k, k->f32, gep(k, k->f32, w, s))), inv, "");
  LLVMBasicBlockRef nz = if_begin(k, fcmp(k, LLVMRealONE, p, cd(k, 0)));
  LLVMValueRef vr = gep(k, k->f32, k->src[2], add(k, kbase, mul(k, s, ci(k, KV * D))));
  i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  LLVMValueRef ap = gep(k, k->f64, acc, i);
  LLVMValueRef pv = LLVMBuildFMul(b, p, ext(k, load(k, k->f32, gep(k, k->f32, vr, i))), "");
  store(k, LLVMBuildFAdd(b, load(k, k->f64, ap), pv, ""), ap);
  loop_end(k, &li);
  if_end(k, nz);
  loop_end(k, &ls);
  if_end(k, any);
  i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  store(k, trn(k, load(k, k->f64, gep(k, k->f64, acc, i))), gep(k, k->f32, y, i));
  loop_end(k, &li);
  loop_end(k, &lh);
  loop_end(k, &lt);
  loop_end(k, &lb);
}

// x (B,T,H*D): pairs (i, i + D/2) or (2i, 2i+1) rotated by t * base^(-2i/D),
// angles and sin/cos in double (as the reference; t * freq reaches 1e3).
static void emit_rope(K *k) {
  const IrNode *n = k->n;
  LLVMBuilderRef b = k->b;
  int64_t H = n->attr.heads, C = n->ty.dim[2].n, D = C / H, half = D / 2;
  LLVMValueRef B = k->odim[0], T = k->odim[1];
  Loop lt, li, lb, lh;
  LLVMValueRef t = loop_begin(k, &lt, ci(k, 0), T);
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), ci(k, half));
  LLVMValueRef ex = LLVMBuildFDiv(b, LLVMBuildFMul(b, cd(k, -2.0), sitofp(k, i, k->f64), ""), cd(k, (double)D), "");
  LLVMValueRef ang = LLVMBuildFMul(b, sitofp(k, t, k->f64), libm(k, "pow", cd(k, n->attr.base), ex), "");
  if (n->attr.inverse) ang = LLVMBuildFNeg(b, ang, "");
  LLVMValueRef c = libm(k, "cos", ang, NULL), s = libm(k, "sin", ang, NULL);
  LLVMValueRef ia = n->attr.interleaved ? mul(k, i, ci(k, 2)) : i;
  LLVMValueRef ib = n->attr.interleaved ? add(k, ia, ci(k, 1)) : add(k, i, ci(k, half));
  LLVMValueRef bi = loop_begin(k, &lb, ci(k, 0), B);
  LLVMValueRef h = loop_begin(k, &lh, ci(k, 0), ci(k, H));
  LLVMValueRef base = add(k, mul(k, add(k, mul(k, bi, T), t), ci(k, C)), mul(k, h, ci(k, D)));
  LLVMValueRef pa = add(k, base, ia), pb = add(k, base, ib);
  LLVMValueRef xa = ext(k, load(k, k->f32, gep(k, k->f32, k->src[0], pa)));
  LLVMValueRef xb = ext(k, load(k, k->f32, gep(k, k->f32, k->src[0], pb)));
  store(k, trn(k, LLVMBuildFSub(b, LLVMBuildFMul(b, xa, c, ""), LLVMBuildFMul(b, xb, s, ""), "")),
        gep(k, k->f32, k->out, pa));
  store(k, trn(k, LLVMBuildFAdd(b, LLVMBuildFMul(b, xa, s, ""), LLVMBuildFMul(b, xb, c, ""), "")),
        gep(k, k->f32, k->out, pb));
  loop_end(k, &lh);
  loop_end(k, &lb);
  loop_end(k, &li);
  loop_end(k, &lt);
}

// logits (...,V), targets (...) -> (): the mean over kept targets of
// logsumexp(row) - row[target], in double; 0 when all are ignored.
static void emit_xent(K *k) {
  const IrNode *n = k->n;
  LLVMBuilderRef b = k->b;
  int r = src_rank(k, 0);
  LLVMValueRef V = k->idim[0][r - 1], rows = prod(k, k->idim[1], 0, src_rank(k, 1));
  LLVMValueRef loss = var(k, k->f64, cd(k, 0)), kept = var(k, k->i64, ci(k, 0));
  LLVMValueRef mx = var(k, k->f32, NULL), sum = var(k, k->f64, NULL);
  Loop li, lc;
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), rows);
  LLVMValueRef tg = ld(k, n->src[1]->ty.dt, k->src[1], i);
  LLVMBasicBlockRef join = if_begin(k, icmp(k, LLVMIntNE, tg, ci(k, n->attr.ignore)));
  fail_if(k, LLVMBuildOr(b, icmp(k, LLVMIntSLT, tg, ci(k, 0)), icmp(k, LLVMIntSGE, tg, V), ""), ST_TARGET, tg, V);
  LLVMValueRef x = gep(k, k->f32, k->src[0], mul(k, i, V));
  store(k, cf(k, -INFINITY), mx);
  LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), V);
  store(k, fmaxr(k, get(k, mx), load(k, k->f32, gep(k, k->f32, x, c))), mx);
  loop_end(k, &lc);
  LLVMValueRef m = get(k, mx);
  store(k, cd(k, 0), sum);
  c = loop_begin(k, &lc, ci(k, 0), V);
  LLVMValueRef e = fexp(k, LLVMBuildFSub(b, load(k, k->f32, gep(k, k->f32, x, c)), m, ""));
  store(k, reassoc(LLVMBuildFAdd(b, get(k, sum), ext(k, e), "")), sum);
  loop_end(k, &lc);
  LLVMValueRef l = LLVMBuildFAdd(b, ext(k, m), libm(k, "log", get(k, sum), NULL), "");
  l = LLVMBuildFSub(b, l, ext(k, load(k, k->f32, gep(k, k->f32, x, tg))), "");
  store(k, LLVMBuildFAdd(b, get(k, loss), l, ""), loss);
  store(k, add(k, get(k, kept), ci(k, 1)), kept);
  if_end(k, join);
  loop_end(k, &li);
  LLVMValueRef kp = get(k, kept);
  LLVMValueRef mean = LLVMBuildFDiv(b, get(k, loss), sitofp(k, imax(k, kp, ci(k, 1)), k->f64), "");
  store(k, trn(k, sel(k, icmp(k, LLVMIntEQ, kp, ci(k, 0)), cd(k, 0), mean)), k->out);
}

static void emit_positions(K *k) {
  Loop l;
  LLVMValueRef t = loop_begin(k, &l, ci(k, 0), k->odim[0]);
  st(k, k->n->ty.dt, k->out, t, t);
  loop_end(k, &l);
}

static void emit_const(K *k) {
  const IrNode *n = k->n;
  double v = ir_round_to(n->ty.dt, n->attr.value);
  LLVMValueRef c = n->ty.dt == IR_F32 ? cf(k, v) : ci(k, (int64_t)v);
  Loop l;
  LLVMValueRef i = loop_begin(k, &l, ci(k, 0), prod(k, k->odim, 0, n->ty.rank));
  st(k, n->ty.dt, k->out, i, c);
  loop_end(k, &l);
}

// ---- kernels: one function per distinct (op, attributes, types) ----

static bool node_nt(const IrNode *n) {  // MATMUL whose B is a permute of the last two axes
  if (n->op != IR_OP_MATMUL || n->src[1]->op != IR_OP_PERMUTE) return false;
  const IrNode *p = n->src[1];
  int r = p->ty.rank;
  for (int i = 0; i < r - 2; i++)
    if (p->attr.perm[i] != i) return false;
  return p->attr.perm[r - 2] == r - 1 && p->attr.perm[r - 1] == r - 2;
}

static void key_type(char *buf, size_t cap, size_t *len, const IrType *t) {
  *len += (size_t)snprintf(buf + *len, cap - *len, "|%d:", (int)t->dt);
  for (int i = 0; i < t->rank && *len < cap; i++) {
    const IrDim *d = &t->dim[i];
    *len += (size_t)snprintf(buf + *len, cap - *len, "%lld", (long long)d->n);
    for (int s = 0; s < d->nsym && *len < cap; s++)
      *len += (size_t)snprintf(buf + *len, cap - *len, "*s%d", d->sym[s]);
    if (*len < cap) *len += (size_t)snprintf(buf + *len, cap - *len, ",");
  }
}

// Everything a kernel's code depends on, as a string.
static char *kernel_key(const IrNode *n, bool nt) {
  char buf[2048];
  size_t len = 0, cap = sizeof buf;
  const IrAttr *a = &n->attr;
  len += (size_t)snprintf(buf, cap, "%d/%d/%d/%lld,%lld,%u,%d%d%d%d,%a,%a,%a,%a,%lld,%lld,%lld,%d,p", (int)n->op,
                          n->nsrc, nt, (long long)a->axis, (long long)a->start, a->axes, a->keepdim, a->causal,
                          a->interleaved, a->inverse, a->value, a->eps, a->scale, a->base, (long long)a->heads,
                          (long long)a->kv_heads, (long long)a->ignore, a->fn);
  for (int i = 0; i < IR_MAX_RANK && len < cap; i++) len += (size_t)snprintf(buf + len, cap - len, "%d.", a->perm[i]);
  for (int j = 0; j < n->nsrc && len < cap; j++) key_type(buf, cap, &len, &n->src[j]->ty);
  if (len < cap) key_type(buf, cap, &len, &n->ty);
  return strdup(buf);
}

// The dim as the kernel sees it: a constant, or dims[slot] (loaded in the
// first block so that dynamic allocas can use it).
static LLVMValueRef kdim(K *k, IrDim d, LLVMValueRef dims, int slot) {
  if (ir_dim_is_const(d)) return ci(k, d.n);
  LLVMValueRef i = ci(k, slot);
  return LLVMBuildLoad2(k->ab, k->i64, LLVMBuildInBoundsGEP2(k->ab, k->i64, dims, &i, 1, ""), "");
}

static LLVMValueRef emit_kernel(K *k, const IrNode *n, bool nt, int idx) {
  char name[64];
  snprintf(name, sizeof name, "k%d_%s", idx, ir_op_name(n->op));
  LLVMTypeRef ps[3 + IR_MAX_SRC];
  for (int i = 0; i < 3 + n->nsrc; i++) ps[i] = k->ptr;
  LLVMValueRef f = LLVMAddFunction(k->m, name, LLVMFunctionType(k->i32, ps, 3 + (unsigned)n->nsrc, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  cg_llvm_fn_attrs(k->cg, f);
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                          LLVMCreateEnumAttribute(k->c, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
  unsigned na = LLVMGetEnumAttributeKindForName("noalias", 7);
  LLVMAddAttributeAtIndex(f, 3, LLVMCreateEnumAttribute(k->c, na, 0));  // out
  k->fn = f;
  k->n = n;
  k->nt = nt;
  LLVMBasicBlockRef first = block(k, "entry"), start = block(k, "start");
  LLVMPositionBuilderAtEnd(k->ab, first);
  at(k, start);
  k->ctx = LLVMGetParam(f, 0);
  LLVMValueRef dims = LLVMGetParam(f, 1);
  k->out = LLVMGetParam(f, 2);
  for (int j = 0; j < n->nsrc; j++) k->src[j] = LLVMGetParam(f, 3 + (unsigned)j);
  int slot = 0;
  for (int j = 0; j < n->nsrc; j++)
    for (int a = 0; a < n->src[j]->ty.rank; a++) k->idim[j][a] = kdim(k, n->src[j]->ty.dim[a], dims, slot++);
  for (int a = 0; a < n->ty.rank; a++) k->odim[a] = kdim(k, n->ty.dim[a], dims, slot++);
  switch (n->op) {
  case IR_OP_CONST: emit_const(k); break;
  case IR_OP_POSITIONS: emit_positions(k); break;
  case IR_OP_MATMUL: cg_emit_gemv(k); emit_matmul(k); break;  // one row: compile_kv.c's gemv
  case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN: emit_reduce(k, n->attr.axes); break;
  case IR_OP_SUM_TO: {
    uint32_t axes = 0;
    int r = src_rank(k, 0), ro = n->ty.rank;
    for (int i = 0; i < r; i++) {
      int j = i - (r - ro);
      if (j < 0 || (ir_dim_is_const(n->ty.dim[j]) && n->ty.dim[j].n == 1)) axes |= 1u << i;
    }
    emit_reduce(k, axes);
    break;
  }
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: emit_softmax(k); break;
  case IR_OP_LAYERNORM: case IR_OP_RMSNORM: emit_norm(k); break;
  case IR_OP_RESHAPE: copy(k, k->out, k->src[0], prod(k, k->odim, 0, n->ty.rank), n->ty.dt); break;
  case IR_OP_SLICE: emit_slice(k); break;
  case IR_OP_CONCAT: emit_concat(k); break;
  case IR_OP_GATHER: emit_gather(k); break;
  case IR_OP_ATTENTION: emit_attention(k); break;
  case IR_OP_ROPE: emit_rope(k); break;
  case IR_OP_XENT: emit_xent(k); break;
  case IR_OP_KV_APPEND: case IR_OP_ATTENTION_KV: case IR_OP_ROPE_AT: cg_emit_kv(k); break;
  case IR_OP_UNARY_GRAD: case IR_OP_MAXIMUM_GRAD: emit_map(k); break;
  default:
    if (n->op > IR_OP_UNARY_GRAD) cg_emit_grad(k);
    else emit_map(k);
    break;
  }
  LLVMBuildRet(k->b, ci32(k, 0));
  LLVMPositionBuilderAtEnd(k->ab, first);
  LLVMBuildBr(k->ab, start);
  return f;
}

static LLVMValueRef kernel_for(K *k, const IrNode *n, bool nt) {
  char *key = kernel_key(n, nt);
  if (!key) return NULL;
  for (int i = 0; i < k->nkern; i++)
    if (!strcmp(k->kern[i].key, key)) {
      free(key);
      return k->kern[i].fn;
    }
  if (k->nkern == k->capkern) {
    int cap = k->capkern ? 2 * k->capkern : 32;
    Kernel *nk = realloc(k->kern, sizeof *nk * (size_t)cap);
    if (!nk) {
      free(key);
      return NULL;
    }
    k->kern = nk, k->capkern = cap;
  }
  LLVMValueRef f = emit_kernel(k, n, nt, k->nkern);
  k->kern[k->nkern++] = (Kernel){key, f};
  return f;
}

// ---- the entry: i32 heed_forward(void **bufs, const i64 *symvals, CgRunCtx *ctx) ----

static LLVMValueRef entry_dim(K *k, IrDim d, LLVMValueRef sv) {
  LLVMValueRef v = ci(k, d.n);
  for (int s = 0; s < d.nsym; s++) v = mul(k, v, load(k, k->i64, gep(k, k->i64, sv, ci(k, d.sym[s]))));
  return v;
}

static bool is_leaf(IrOp op) { return op == IR_OP_INPUT || op == IR_OP_PARAM; }

// skip[i]: node i is a PERMUTE that only MATMULs read, as their transposed
// operand (the nt sgemm reads its operand), and not a graph output: its
// buffer is left unwritten.
static bool *skipped_nodes(const IrGraph *g) {
  bool *skip = calloc((size_t)g->nodes.len + 1, sizeof *skip);
  bool *other = calloc((size_t)g->nodes.len + 1, sizeof *other);
  if (!skip || !other) {
    free(skip);
    free(other);
    return NULL;
  }
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    bool nt = node_nt(n);
    for (int j = 0; j < n->nsrc; j++) {
      if (nt && j == 1) skip[n->src[j]->id] = true;
      else other[n->src[j]->id] = true;
    }
  }
  for (int i = 0; i < g->outputs.len; i++) other[g->outputs.data[i]->id] = true;
  for (int i = 0; i < g->nodes.len; i++) skip[i] = skip[i] && !other[i];
  free(other);
  return skip;
}

static bool emit_entry(K *k, const IrGraph *g, const bool *skip, Diag *d) {
  LLVMTypeRef ps[3] = {k->ptr, k->ptr, k->ptr};
  LLVMValueRef f = LLVMAddFunction(k->m, "heed_forward", LLVMFunctionType(k->i32, ps, 3, 0));
  cg_llvm_fn_attrs(k->cg, f);
  LLVMValueRef bufs = LLVMGetParam(f, 0), sv = LLVMGetParam(f, 1), ctx = LLVMGetParam(f, 2);
  int maxd = 1;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    int nd = n->ty.rank;
    for (int j = 0; j < n->nsrc; j++) nd += n->src[j]->ty.rank;
    if (nd > maxd) maxd = nd;
  }
  k->fn = f;
  at(k, block(k, "entry"));
  LLVMValueRef dims = LLVMBuildArrayAlloca(k->b, k->i64, ci(k, maxd), "dims");
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (is_leaf(n->op) || skip[i]) continue;
    bool nt = node_nt(n);
    LLVMValueRef kf = kernel_for(k, n, nt);
    if (!kf) {
      diag_error(d, n->loc, "out of memory compiling %s", ir_op_name(n->op));
      return false;
    }
    k->fn = f;
    at(k, LLVMGetLastBasicBlock(f));
    int slot = 0;
    for (int j = 0; j < n->nsrc; j++)
      for (int a = 0; a < n->src[j]->ty.rank; a++)
        store(k, entry_dim(k, n->src[j]->ty.dim[a], sv), gep(k, k->i64, dims, ci(k, slot++)));
    for (int a = 0; a < n->ty.rank; a++) store(k, entry_dim(k, n->ty.dim[a], sv), gep(k, k->i64, dims, ci(k, slot++)));
    LLVMValueRef args[3 + IR_MAX_SRC];
    args[0] = ctx, args[1] = dims;
    args[2] = load(k, k->ptr, gep(k, k->ptr, bufs, ci(k, n->id)));
    for (int j = 0; j < n->nsrc; j++) {
      const IrNode *s = nt && j == 1 ? n->src[1]->src[0] : n->src[j];
      args[3 + j] = load(k, k->ptr, gep(k, k->ptr, bufs, ci(k, s->id)));
    }
    LLVMValueRef rc = LLVMBuildCall2(k->b, LLVMGlobalGetValueType(kf), kf, args, 3 + (unsigned)n->nsrc, "");
    LLVMBasicBlockRef bad = block(k, "fail"), ok = block(k, "next");
    LLVMBuildCondBr(k->b, icmp(k, LLVMIntNE, rc, ci32(k, 0)), bad, ok);
    at(k, bad);
    LLVMBuildRet(k->b, ci32(k, (int64_t)n->id + 1));
    at(k, ok);
  }
  LLVMBuildRet(k->b, ci32(k, 0));
  return true;
}

// ---- the program ----

static bool supported(const IrGraph *g, Diag *d) {
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
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
    if (g->syms.len > IR_MAX_SYMS) {
      diag_error(d, NOLOC, "cpu backend: too many symbolic sizes (%d)", g->syms.len);
      return false;
    }
  }
  return true;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
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
  return cg_llvm_define_symbol(cg, "pow", (void *)p, d) && cg_llvm_define_symbol(cg, "exp2", (void *)e2, d) &&
         cg_llvm_define_symbol(cg, "powf", (void *)pf32, d) && cg_llvm_define_symbol(cg, "sincos", (void *)sc, d) &&
         cg_llvm_define_symbol(cg, "memcpy", (void *)mc, d) && cg_llvm_define_symbol(cg, "memmove", (void *)mm, d) &&
         cg_llvm_define_symbol(cg, "memset", (void *)ms, d) && cg_llvm_define_symbol(cg, "malloc", (void *)ma, d) &&
         cg_llvm_define_symbol(cg, "free", (void *)fr, d) &&
         cg_llvm_define_symbol(cg, "rt_parallel_for", (void *)pf, d);
}

CgProgram *cg_compile(const IrGraph *g, const CgOptions *o, Diag *d) {
  double t0 = now_ms();
  if (!supported(g, d)) return NULL;
  CgProgram *p = calloc(1, sizeof *p);
  K k = {0};
  if (!p) goto oom;
  p->cg = cg_llvm_new(o ? o->cpu : NULL, d);
  if (!p->cg) goto fail;
  p->nthreads = o && o->nthreads > 1 && o->pool ? o->nthreads : 1;
  p->pool = o && o->nthreads > 1 ? o->pool : NULL;
  p->nnodes = g->nodes.len;
  p->nodes = calloc((size_t)p->nnodes + 1, sizeof *p->nodes);
  if (!p->nodes) goto oom;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    p->nodes[i] = (CgNode){n->op, n->ty, n->loc, n->attr};
  }
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
  LLVMTypeRef ct[4] = {k.ptr, k.i32, k.ptr, LLVMArrayType2(k.i64, 4)};  // CgRunCtx
  k.ctxty = LLVMStructTypeInContext(k.c, ct, 4, 0);
  bool mm = false;
  for (int i = 0; i < g->nodes.len; i++) mm = mm || g->nodes.data[i]->op == IR_OP_MATMUL;
  if (mm) {
    CgGemmConfig nt;
    cg_gemm_config_default(p->cg, &p->gemm, "heed_sgemm_nn", false);
    cg_gemm_config_default(p->cg, &nt, "heed_sgemm_nt", true);
    p->gemm.nthreads_max = nt.nthreads_max = p->nthreads;
    if (!cg_gemm_emit(p->cg, &p->gemm, d) || !cg_gemm_emit(p->cg, &nt, d)) goto fail;
    k.gemm[0] = LLVMGetNamedFunction(k.m, "heed_sgemm_nn");
    k.gemm[1] = LLVMGetNamedFunction(k.m, "heed_sgemm_nt");
    p->work = aligned_alloc(64, cg_gemm_work_bytes(&p->gemm));
    if (!p->work) goto oom;
  }
  p->skip = skipped_nodes(g);
  if (!p->skip) goto oom;
  if (!emit_entry(&k, g, p->skip, d)) goto fail;
  p->stats.nkernels = k.nkern;
  for (int i = 0; i < g->nodes.len; i++) p->stats.ncalls += !is_leaf(g->nodes.data[i]->op) && !p->skip[i];
  double t1 = now_ms();
  if (!cg_llvm_optimize(p->cg, d)) goto fail;
  char *msg = NULL;
  if (o && o->dump_ir && LLVMPrintModuleToFile(k.m, o->dump_ir, &msg)) {
    diag_error(d, (SrcLoc){0}, "cannot write '%s': %s", o->dump_ir, msg ? msg : "?");
    LLVMDisposeMessage(msg);
    goto fail;
  }
  if (o && o->dump_obj && !cg_llvm_emit_object(p->cg, o->dump_obj, d)) goto fail;
  if (o && o->dump_asm && !cg_llvm_emit_asm(p->cg, o->dump_asm, d)) goto fail;
  double t2 = now_ms();
  if (!define_symbols(p->cg, o, d) || !cg_llvm_jit_add(p->cg, d)) goto fail;
  p->entry = (CgEntryFn)cg_llvm_lookup(p->cg, "heed_forward", d);
  if (!p->entry) goto fail;
  double t3 = now_ms();
  p->stats.build_ms = t1 - t0;
  p->stats.opt_ms = t2 - t1;
  p->stats.jit_ms = t3 - t2;
  p->stats.compile_ms = t3 - t0;
  goto done;
oom:
  diag_error(d, NOLOC, "out of memory compiling %s", g->name ? g->name : "the graph");
fail:
  cg_program_free(p);
  p = NULL;
done:
  for (int i = 0; i < k.nkern; i++) free(k.kern[i].key);
  free(k.kern);
  if (k.b) LLVMDisposeBuilder(k.b);
  if (k.ab) LLVMDisposeBuilder(k.ab);
  return p;
}

void cg_program_free(CgProgram *p) {
  if (!p) return;
  cg_llvm_free(p->cg);
  free(p->nodes);
  free(p->skip);
  free(p->work);
  free(p);
}

const CgProgramStats *cg_program_stats(const CgProgram *p) { return &p->stats; }

bool cg_node_computed(const CgProgram *p, int node_id) {
  if (node_id < 0 || node_id >= p->nnodes) return false;
  IrOp op = p->nodes[node_id].op;
  return op != IR_OP_INPUT && op != IR_OP_PARAM && !p->skip[node_id];
}

int64_t cg_buffer_bytes(const CgProgram *p, int node_id, const int64_t *symvals) {
  if (node_id < 0 || node_id >= p->nnodes) return -1;
  int64_t n = ir_type_numel(&p->nodes[node_id].ty, symvals);
  size_t es = ir_dtype_info[p->nodes[node_id].ty.dt].size;
  return n < 0 || n > INT64_MAX / (int64_t)es ? -1 : n * (int64_t)es;
}

bool cg_run(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d) {
  CgRunCtx ctx = {.pool = p->pool, .nthreads = p->nthreads, .work = p->work, .err = {0}};
  int rc = p->entry(bufs, symvals, &ctx);
  if (rc == 0) return true;
  if (rc < 0 || rc > p->nnodes) {
    diag_error(d, NOLOC, "cpu backend: the compiled program failed (status %d)", rc);
    return false;
  }
  const CgNode *n = &p->nodes[rc - 1];
  long long e0 = (long long)ctx.err[0], e1 = (long long)ctx.err[1];
  if (ctx.err[3] == ST_NOMEM) {
    diag_error(d, n->loc, "%s: out of memory (%lld bytes of scratch)", ir_op_name(n->op), e0);
    return false;
  }
  switch (n->op) {
  case IR_OP_GATHER:
  case IR_OP_GATHER_GRAD:
    diag_error(d, n->loc, "gather: index %lld is outside the table of %lld rows", e0, e1);
    break;
  case IR_OP_XENT:
  case IR_OP_XENT_GRAD:
    diag_error(d, n->loc, "cross_entropy: target %lld is outside the %lld classes of the logits (ignore index %lld)",
               e0, e1, (long long)n->attr.ignore);
    break;
  case IR_OP_DIV: diag_error(d, n->loc, "div: integer division by zero (%lld / 0)", e0); break;
  case IR_OP_SLICE:
  case IR_OP_SLICE_GRAD:
    diag_error(d, n->loc, "slice: %lld elements from %lld%s do not fit axis %d of size %lld", e0,
               (long long)n->attr.start, n->attr.start < 0 ? " (from the end)" : "", (int)n->attr.axis, e1);
    break;
  default: diag_error(d, n->loc, "%s: run-time error in compiled code", ir_op_name(n->op)); break;
  }
  return false;
}
