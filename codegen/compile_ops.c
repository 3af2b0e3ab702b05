// codegen/compile_ops.c: the forward ops' kernel bodies (elementwise maps,
// reductions, softmax, norms, matmul, shape ops, rope, cross entropy,
// positions, constants) and cg_emit_op, which picks the body for a node.
// Sits inside the CPU emitter: compile.c makes each kernel's function (its
// parameters, the parallel wrapper around the body) for a call of the
// Schedule (passes/schedule.h) and calls cg_emit_op to fill it; the gradient
// ops' bodies are compile_grad.c's, attention's attention.c's.
//
// Numerics: the interpreter (ir/kernels.c) computes in double and rounds
// each node to f32. Here elementwise float ops are f32 where f32 is exact
// (+ - * / sqrt) and double through libm otherwise; reductions, softmax and
// norm statistics and cross entropy accumulate in double; exp in softmax,
// xent, EXP, SIGMOID, SILU and GELU_TANH is an f32 polynomial (fexp, 1-2
// ulp) that the loop vectorizer widens; TANH, GELU (erf), LOG, ROPE's
// sin/cos stay in double libm. Attention (attention.c) is f32 throughout,
// on explicit vectors.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "codegen/compile.h"

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

// An inlined operand's value (SCHED_INLINE, passes/schedule.c): its op,
// src, on its own operands' values v, in the kernel of the node that reads it.
static LLVMValueRef elem_inlined(K *k, const IrNode *src, const LLVMValueRef *v) {
  const IrNode *n = k->n;
  k->n = src;
  LLVMValueRef y = elem(k, v);
  k->n = n;
  return y;
}

static void map_body(K *k, const LLVMValueRef *off, void *ud) {
  (void)ud;
  const IrNode *n = k->n;
  LLVMValueRef x[IR_MAX_SRC], v[IR_MAX_SRC];
  for (int j = 0; j < k->nopnd; j++) x[j] = ld(k, k->opnd[j]->ty.dt, k->src[j], off[j]);
  for (int j = 0, o = 0; j < n->nsrc; j++) {
    if (!(k->inl >> j & 1)) {
      v[j] = x[o++];
      continue;
    }
    v[j] = elem_inlined(k, n->src[j], x + o);
    o += n->src[j]->nsrc;
  }
  st(k, n->ty.dt, k->out, off[k->nopnd], elem(k, v));
}

// Every index of dims[0..r) in row-major order, as nest(); the leading
// r - 1 axes are the parallel units (their product; 1 unit when r is 0).
static void nest_par(K *k, int r, const LLVMValueRef *dims, int nops, LLVMValueRef (*st)[IR_MAX_RANK], BodyFn body,
                     void *ud) {
  Loop l;
  LLVMValueRef u = par_begin(k, &l), rem = u, off[IR_MAX_SRC + 2];
  for (int j = 0; j < nops; j++) off[j] = ci(k, 0);
  for (int a = r - 2; a >= 0; a--) {
    LLVMValueRef i = a == 0 ? rem : LLVMBuildURem(k->b, rem, dims[a], "");
    if (a) rem = LLVMBuildUDiv(k->b, rem, dims[a], "");
    for (int j = 0; j < nops; j++) off[j] = add(k, off[j], mul(k, i, st[j][a]));
  }
  if (r >= 1) nest(k, r - 1, r, dims, nops, st, off, body, ud);
  else body(k, off, ud);
  loop_end(k, &l);
}

static void emit_map(K *k) {
  const IrNode *n = k->n;
  int r = n->ty.rank, ns = k->nopnd;
  LLVMValueRef st[IR_MAX_SRC + 1][IR_MAX_RANK];
  if (k->ks->split.kind == SCHED_ELEMENTS) {  // one loop over every element (the units), the same offset everywhere
    Loop l;
    LLVMValueRef u = par_begin(k, &l), off[IR_MAX_SRC + 1];
    for (int j = 0; j <= ns; j++) off[j] = u;
    map_body(k, off, NULL);
    loop_end(k, &l);
    return;
  }
  if (n->op == IR_OP_PERMUTE) {
    LLVMValueRef own[IR_MAX_RANK];
    bcast_strides(k, &n->src[0]->ty, k->idim[0], r, own);
    for (int i = 0; i < r; i++) st[0][i] = own[n->attr.perm[i]];
  } else {
    for (int j = 0; j < ns; j++) bcast_strides(k, &k->opnd[j]->ty, k->idim[j], r, st[j]);
  }
  bcast_strides(k, &n->ty, k->odim, r, st[ns]);  // the result's own (a size-1 axis steps 0: index 0 only)
  nest_par(k, r, k->odim, ns + 1, st, map_body, NULL);
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
  LLVMValueRef x;
  if (k->inl & 1) {  // an inlined f32 op of operands shaped like it (SCHED_INLINE): x * x of a squared norm
    LLVMValueRef v[2] = {ld(k, IR_F32, k->src[0], off[0]), ld(k, IR_F32, k->src[1], off[0])};
    x = elem_inlined(k, k->n->src[0], v);
  } else {
    x = ld(k, k->n->src[0]->ty.dt, k->src[0], off[0]);
  }
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

enum { LEAD_BLOCK = 64 };  // columns per block

// Columns [plo, phi) in blocks: for each row, acc[c] += x[row, c] in
// double, rows in order (the same order for any split of the columns).
static void emit_reduce_lead(K *k, int j) {
  int r = src_rank(k, 0);
  LLVMValueRef rows = prod(k, k->idim[0], 0, j), cols = prod(k, k->idim[0], j, r);
  LLVMValueRef acc = LLVMBuildArrayAlloca(k->ab, k->f64, ci(k, LEAD_BLOCK), "acc");
  LLVMValueRef lo = k->plo ? k->plo : ci(k, 0), hi = k->phi ? k->phi : cols;
  Loop lb, lr, lc;
  LLVMValueRef nb = LLVMBuildSDiv(k->b, add(k, sub(k, hi, lo), ci(k, LEAD_BLOCK - 1)), ci(k, LEAD_BLOCK), "");
  LLVMValueRef bi = loop_begin(k, &lb, ci(k, 0), nb);
  LLVMValueRef c0 = add(k, lo, mul(k, bi, ci(k, LEAD_BLOCK))), w = imin(k, ci(k, LEAD_BLOCK), sub(k, hi, c0));
  LLVMBuildMemSet(k->b, acc, LLVMConstInt(k->i8, 0, 0), ci(k, 8 * LEAD_BLOCK), 8);
  LLVMValueRef row = loop_begin(k, &lr, ci(k, 0), rows);
  LLVMValueRef xp = gep(k, k->f32, k->src[0], add(k, mul(k, row, cols), c0));
  LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), w);
  LLVMValueRef ap = gep(k, k->f64, acc, c);
  store(k, LLVMBuildFAdd(k->b, load(k, k->f64, ap), ext(k, load(k, k->f32, gep(k, k->f32, xp, c))), ""), ap);
  loop_end(k, &lc);
  loop_end(k, &lr);
  c = loop_begin(k, &lc, ci(k, 0), w);
  LLVMValueRef y = load(k, k->f64, gep(k, k->f64, acc, c));
  if (k->n->op == IR_OP_MEAN) y = LLVMBuildFDiv(k->b, y, sitofp(k, rows, k->f64), "");
  store(k, trn(k, y), gep(k, k->f32, k->out, add(k, c0, c)));
  loop_end(k, &lc);
  loop_end(k, &lb);
}

static void emit_reduce(K *k) {
  if (k->ks->lead) {  // a sum over leading axes, in column blocks (SCHED_COLUMNS)
    emit_reduce_lead(k, k->ks->lead);
    return;
  }
  uint32_t axes = sched_reduce_axes(k->n);
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
  nest_par(k, nkept, kdims, 2, kst, red_outer, &rd);
}

// ---- softmax, log_softmax along an axis ----

static void emit_softmax(K *k) {
  const IrNode *n = k->n;
  int r = src_rank(k, 0), axis = (int)n->attr.axis;
  bool lg = n->op == IR_OP_LOG_SOFTMAX;
  LLVMValueRef outer = prod(k, k->idim[0], 0, axis), len = k->idim[0][axis];
  LLVMValueRef inner = prod(k, k->idim[0], axis + 1, r);
  LLVMValueRef mx = var(k, k->f32, NULL), sum = var(k, k->f64, NULL);
  (void)outer;
  Loop lu, li;
  LLVMValueRef u = par_begin(k, &lu);  // u = o * inner + j
  LLVMValueRef o = LLVMBuildSDiv(k->b, u, inner, ""), j = LLVMBuildSRem(k->b, u, inner, "");
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
  loop_end(k, &lu);
}

// ---- layernorm, rmsnorm over the last axis ----

static void emit_norm(K *k) {
  const IrNode *n = k->n;
  bool ln = n->op == IR_OP_LAYERNORM;
  int r = src_rank(k, 0);
  LLVMValueRef C = k->idim[0][r - 1];
  LLVMValueRef acc = var(k, k->f64, NULL), Cd = sitofp(k, C, k->f64);
  Loop lr, lc;
  LLVMValueRef row = par_begin(k, &lr);  // rows: the leading axes
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
  bool tb = k->nt & TR_B, ta = k->nt & TR_A;
  LLVMValueRef args[13] = {mm->M, mm->N, mm->K, A, ta ? mm->M : mm->K, B, tb ? mm->K : mm->N, C, mm->N, ci32(k, 0),
                           ctx_field(k, 0, k->ptr), ctx_field(k, 1, k->i32), ctx_field(k, 2, k->ptr)};
  LLVMValueRef g = k->gemm[k->nt & 3];
  LLVMBuildCall2(k->b, LLVMGlobalGetValueType(g), g, args, 13, "");
}

// [.., M, K] @ [K, N] where the left operand's batch axes are the result's
// and the right one has none (the Linear layers' x @ W): the batch is one
// sgemm over all its rows, not one small sgemm per batch entry.
static bool mm_folds(const IrNode *n, int nt) {
  const IrType *a = &n->src[0]->ty, *b = &n->src[1]->ty;
  if ((nt & TR_A) || a->rank != n->ty.rank) return false;
  for (int i = 0; i < b->rank - 2; i++)
    if (!ir_dim_is_const(b->dim[i]) || b->dim[i].n != 1) return false;
  for (int i = 0; i < a->rank - 2; i++)
    if (!ir_dim_eq(a->dim[i], n->ty.dim[i])) return false;
  return true;
}

static void emit_matmul(K *k) {
  const IrNode *n = k->n;
  int r = n->ty.rank, ra = src_rank(k, 0);
  Mm mm = {.M = k->idim[0][ra - 2], .K = k->idim[0][ra - 1], .N = k->odim[r - 1]};
  bool fold = mm_folds(n, k->nt);
  if (fold) mm.M = prod(k, k->odim, 0, r - 1);
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
  if (fold) mm_body(k, zero, &mm);
  else nest(k, 0, r - 2, k->odim, 3, st, zero, mm_body, &mm);
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
  LLVMValueRef inner = prod(k, k->odim, a + 1, r);
  Loop l;
  LLVMValueRef o = par_begin(k, &l);  // units: the outer axes
  LLVMValueRef from = mul(k, add(k, mul(k, o, size), s0), inner);
  copy(k, byte_gep(k, k->out, mul(k, mul(k, o, len), inner), dt), byte_gep(k, k->src[0], from, dt),
       mul(k, len, inner), dt);
  loop_end(k, &l);
}

static void emit_concat(K *k) {
  const IrNode *n = k->n;
  int a = (int)n->attr.axis, r = n->ty.rank;
  IrDType dt = n->ty.dt;
  LLVMValueRef total = k->odim[a], inner = prod(k, k->odim, a + 1, r);
  Loop l;
  LLVMValueRef o = par_begin(k, &l);  // units: the outer axes
  LLVMValueRef pos = ci(k, 0);
  for (int j = 0; j < n->nsrc; j++) {
    LLVMValueRef nj = k->idim[j][a];
    copy(k, byte_gep(k, k->out, mul(k, add(k, mul(k, o, total), pos), inner), dt),
         byte_gep(k, k->src[j], mul(k, mul(k, o, nj), inner), dt), mul(k, nj, inner), dt);
    pos = add(k, pos, nj);
  }
  loop_end(k, &l);
}

static void emit_gather(K *k) {
  const IrNode *n = k->n;
  IrDType dt = n->ty.dt, it = n->src[1]->ty.dt;
  LLVMValueRef N = k->idim[0][0], row = prod(k, k->idim[0], 1, src_rank(k, 0));
  Loop l;
  LLVMValueRef i = par_begin(k, &l);  // units: the indices
  LLVMValueRef v = ld(k, it, k->src[1], i);
  fail_if(k, LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, v, ci(k, 0)), icmp(k, LLVMIntSGE, v, N), ""), ST_INDEX, v, N);
  copy(k, byte_gep(k, k->out, mul(k, i, row), dt), byte_gep(k, k->src[0], mul(k, v, row), dt), row, dt);
  loop_end(k, &l);
}

// ---- Transformer ops ----

// x (B,T,H*D): pairs (i, i + D/2) or (2i, 2i+1) rotated by (off + t) *
// base^(-2i/D), angles and sin/cos in double (as the reference; t * freq
// reaches 1e3). ROPE: off 0; ROPE_AT (decode): off = its pos operand (a
// negative one is the kv kernels' error, ST_SLICE).
static void emit_rope(K *k) {
  const IrNode *n = k->n;
  LLVMBuilderRef b = k->b;
  int64_t H = n->attr.heads, C = n->ty.dim[2].n, D = C / H, half = D / 2;
  LLVMValueRef B = k->odim[0], T = k->odim[1], off = ci(k, 0);
  if (n->op == IR_OP_ROPE_AT) {
    off = ld(k, n->src[1]->ty.dt, k->src[1], ci(k, 0));
    fail_if(k, icmp(k, LLVMIntSLT, off, ci(k, 0)), ST_SLICE, off, ci(k, 0));
  }
  Loop lt, li, lb, lh;
  LLVMValueRef t = par_begin(k, &lt);  // units: T
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), ci(k, half));
  LLVMValueRef ex = LLVMBuildFDiv(b, LLVMBuildFMul(b, cd(k, -2.0), sitofp(k, i, k->f64), ""), cd(k, (double)D), "");
  LLVMValueRef ang = LLVMBuildFMul(b, sitofp(k, add(k, off, t), k->f64), libm(k, "pow", cd(k, n->attr.base), ex), "");
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

// logits (...,V), targets (...) -> (): per row, logsumexp(row) -
// row[target] in double into out[2 row] and 1 (kept) or 0 into
// out[2 row + 1]; out is the wrapper's scratch (emit_xent_dispatch sums it).
static void emit_xent(K *k) {
  const IrNode *n = k->n;
  LLVMBuilderRef b = k->b;
  int r = src_rank(k, 0);
  LLVMValueRef V = k->idim[0][r - 1];
  LLVMValueRef mx = var(k, k->f32, NULL), sum = var(k, k->f64, NULL);
  Loop li, lc;
  LLVMValueRef i = par_begin(k, &li);
  LLVMValueRef tg = ld(k, n->src[1]->ty.dt, k->src[1], i), lp = gep(k, k->f64, k->out, mul(k, i, ci(k, 2)));
  store(k, cd(k, 0), lp);
  store(k, cd(k, 0), gep(k, k->f64, lp, ci(k, 1)));
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
  store(k, l, lp);
  store(k, cd(k, 1), gep(k, k->f64, lp, ci(k, 1)));
  if_end(k, join);
  loop_end(k, &li);
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

void cg_emit_op(K *k) {
  const IrNode *n = k->n;
  switch (n->op) {
  case IR_OP_CONST: emit_const(k); break;
  case IR_OP_POSITIONS: emit_positions(k); break;
  case IR_OP_MATMUL: cg_emit_gemv(k); emit_matmul(k); break;  // one row: compile_kv.c's gemv
  case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN: case IR_OP_SUM_TO: emit_reduce(k); break;
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: emit_softmax(k); break;
  case IR_OP_LAYERNORM: case IR_OP_RMSNORM: emit_norm(k); break;
  case IR_OP_RESHAPE: copy(k, k->out, k->src[0], prod(k, k->odim, 0, n->ty.rank), n->ty.dt); break;
  case IR_OP_SLICE: emit_slice(k); break;
  case IR_OP_CONCAT: emit_concat(k); break;
  case IR_OP_GATHER: emit_gather(k); break;
  case IR_OP_ATTENTION: case IR_OP_ATTENTION_KV: cg_emit_attention(k); break;
  case IR_OP_ROPE: case IR_OP_ROPE_AT: emit_rope(k); break;
  case IR_OP_XENT: emit_xent(k); break;
  case IR_OP_KV_APPEND: cg_emit_kv(k); break;
  case IR_OP_UNARY_GRAD: case IR_OP_MAXIMUM_GRAD: emit_map(k); break;
  case IR_OP_OPT_MOMENT: case IR_OP_OPT_MOMENT2: case IR_OP_OPT_ADAMW: cg_emit_optim(k); break;
  default:  // the elementwise maps (emit_map), else the gradient ops (compile_grad.c)
    if (ir_op_is(n->op, IR_OPF_ELEMENTWISE) || n->op == IR_OP_EXPAND || n->op == IR_OP_PERMUTE) emit_map(k);
    else cg_emit_grad(k);
    break;
  }
}
