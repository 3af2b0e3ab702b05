// codegen/compile_grad.c: the gradient ops that autodiff (passes/autodiff.c)
// appends to a graph, as kernels of the module compile.c builds. Sits beside
// compile.c at the end of the CPU backend's data flow: a train graph
// (forward + backward, after pass_autodiff) -> one LLVM module -> LLJIT. The
// reference semantics are ir/kernels_grad.c; each kernel below states the
// math it computes.
//
// Numerics: row statistics (norms, softmax, cross entropy) and every sum
// (dot products, sums over rows) are accumulated in double; exp is the f32
// polynomial fexp (its argument is <= 0 where it weighs a sum, so the
// absolute error stays near 1e-8). Sums over rows (LAYERNORM_DW,
// RMSNORM_DW) and the scatter-add of GATHER_GRAD run in a fixed order on
// the calling thread: results do not depend on the thread count. Scratch
// that grows with the sizes (GATHER_GRAD's row lists) is malloc'd per call
// and freed before the kernel returns; a failing malloc is the status
// ST_NOMEM. The fused attention backward (ATTENTION_DQ, _DK, _DV) is
// attention.c's.
#include <math.h>

#include "codegen/compile.h"

static const double PI = 3.14159265358979323846;

static LLVMValueRef fadd(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(k->b, a, b, ""); }
static LLVMValueRef fsub(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(k->b, a, b, ""); }
static LLVMValueRef fmul(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(k->b, a, b, ""); }
static LLVMValueRef fdiv(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(k->b, a, b, ""); }

// base[i] as f32, as f64 (widened), and f64 loads and stores
static LLVMValueRef ldf(K *k, LLVMValueRef base, LLVMValueRef i) { return load(k, k->f32, gep(k, k->f32, base, i)); }
static LLVMValueRef ldw(K *k, LLVMValueRef base, LLVMValueRef i) { return ext(k, ldf(k, base, i)); }
static LLVMValueRef ldd(K *k, LLVMValueRef base, LLVMValueRef i) { return load(k, k->f64, gep(k, k->f64, base, i)); }
static void stf(K *k, LLVMValueRef base, LLVMValueRef i, LLVMValueRef v) {
  store(k, LLVMTypeOf(v) == k->f64 ? trn(k, v) : v, gep(k, k->f32, base, i));
}
static void std_(K *k, LLVMValueRef base, LLVMValueRef i, LLVMValueRef v) { store(k, v, gep(k, k->f64, base, i)); }

// acc += v (an f64 accumulator that may be reassociated: vectorized sums)
static void accum(K *k, LLVMValueRef acc, LLVMValueRef v) { store(k, reassoc(fadd(k, get(k, acc), v)), acc); }

// An array of n values of type t in the first block (n: a constant or a dim
// loaded there), at least one element.
static LLVMValueRef scratch(K *k, LLVMTypeRef t, LLVMValueRef n) {
  LLVMValueRef n1 = LLVMBuildSelect(k->ab, LLVMBuildICmp(k->ab, LLVMIntSGT, n, ci(k, 1), ""), n, ci(k, 1), "");
  return LLVMBuildArrayAlloca(k->ab, t, n1, "");
}

// exp(x) for an f64 x through the f32 fexp, widened back
static LLVMValueRef dexp(K *k, LLVMValueRef x) { return ext(k, fexp(k, trn(k, x))); }

// ---- elementwise: UNARY_GRAD x, y, dy; MAXIMUM_GRAD a, b, dy ----

// One element (operands f32): UNARY_GRAD dx = dy f'(x) in double, MAXIMUM_GRAD
// the share of dy that goes to a (all of it, half on a tie, none).
LLVMValueRef cg_grad_elem(K *k, const LLVMValueRef *v) {
  const IrNode *n = k->n;
  if (n->op == IR_OP_MAXIMUM_GRAD) {
    bool mx = n->attr.fn == IR_OP_MAXIMUM;
    LLVMValueRef wins = fcmp(k, mx ? LLVMRealOGT : LLVMRealOLT, v[0], v[1]);
    LLVMValueRef tie = fcmp(k, LLVMRealOEQ, v[0], v[1]);
    return sel(k, wins, v[2], sel(k, tie, fmul(k, v[2], cf(k, 0.5)), cf(k, 0)));
  }
  if (n->attr.fn == IR_OP_GELU_TANH) {  // in f32 (8 lanes, not 4): r + x (1 - t^2) c (1 + 3a x^2)/2,
    // r = (1 + t)/2 = 1/(1 + e), t = tanh(u), e = exp(-2u) (at most e^80), 1 - t^2 = 4 e r^2
    const double c = sqrt(2.0 / PI), a = 0.044715;
    LLVMBuilderRef b = k->b;
    LLVMValueRef x = v[0], x2 = LLVMBuildFMul(b, x, x, ""), one = cf(k, 1);
    LLVMValueRef u = LLVMBuildFMul(b, cf(k, c), LLVMBuildFAdd(b, x, LLVMBuildFMul(b, cf(k, a), LLVMBuildFMul(b, x2, x, ""), ""), ""), "");
    LLVMValueRef e = fexp(k, intr2(k, "llvm.minnum", LLVMBuildFMul(b, cf(k, -2), u, ""), cf(k, 80)));
    LLVMValueRef r = LLVMBuildFDiv(b, one, LLVMBuildFAdd(b, one, e, ""), "");
    LLVMValueRef sech2 = LLVMBuildFMul(b, LLVMBuildFMul(b, cf(k, 4), LLVMBuildFMul(b, e, r, ""), ""), r, "");
    LLVMValueRef du = LLVMBuildFMul(b, cf(k, c), LLVMBuildFAdd(b, one, LLVMBuildFMul(b, cf(k, 3 * a), x2, ""), ""), "");
    LLVMValueRef dt = LLVMBuildFMul(b, LLVMBuildFMul(b, LLVMBuildFMul(b, cf(k, 0.5), x, ""), sech2, ""), du, "");
    return LLVMBuildFMul(b, v[2], LLVMBuildFAdd(b, r, dt, ""), "");
  }
  LLVMValueRef x = ext(k, v[0]), y = ext(k, v[1]), g = ext(k, v[2]), one = cd(k, 1), r;
  switch ((IrOp)n->attr.fn) {
  case IR_OP_NEG: return LLVMBuildFNeg(k->b, v[2], "");
  case IR_OP_EXP: r = fmul(k, g, y); break;                     // e^x
  case IR_OP_LOG: r = fdiv(k, g, x); break;                     // 1/x
  case IR_OP_SQRT: r = fdiv(k, fmul(k, g, cd(k, 0.5)), y); break;  // 1/(2 sqrt x)
  case IR_OP_RSQRT: r = fmul(k, fmul(k, fmul(k, fmul(k, g, cd(k, -0.5)), y), y), y); break;
  case IR_OP_TANH: r = fmul(k, g, fsub(k, one, fmul(k, y, y))); break;
  case IR_OP_SIGMOID: r = fmul(k, fmul(k, g, y), fsub(k, one, y)); break;
  case IR_OP_RELU: return sel(k, fcmp(k, LLVMRealOGT, v[0], cf(k, 0)), v[2], cf(k, 0));
  case IR_OP_ABS:
    return sel(k, fcmp(k, LLVMRealOGT, v[0], cf(k, 0)), v[2],
               sel(k, fcmp(k, LLVMRealOLT, v[0], cf(k, 0)), LLVMBuildFNeg(k->b, v[2], ""), cf(k, 0)));
  case IR_OP_GELU: {  // Phi(x) + x phi(x)
    LLVMValueRef e = libm(k, "erf", fdiv(k, x, cd(k, sqrt(2.0))), NULL);
    LLVMValueRef cdf = fmul(k, cd(k, 0.5), fadd(k, one, e));
    LLVMValueRef pdf = fdiv(k, libm(k, "exp", fmul(k, cd(k, -0.5), fmul(k, x, x)), NULL), cd(k, sqrt(2 * PI)));
    r = fmul(k, g, fadd(k, cdf, fmul(k, x, pdf)));
    break;
  }
  case IR_OP_SILU: {  // s + x s (1 - s)
    LLVMValueRef s = fdiv(k, one, fadd(k, one, dexp(k, LLVMBuildFNeg(k->b, x, ""))));
    r = fmul(k, g, fadd(k, s, fmul(k, fmul(k, x, s), fsub(k, one, s))));
    break;
  }
  default: heed_unreachable();  // cg_compile rejects the others
  }
  return trn(k, r);
}

// ---- REDUCE_GRAD x, y, dy {axes, keepdim} of MAX/MIN ----

// Every x equal to its extremum y gets dy / (number of such x): per kept
// index, count the ties over the reduced axes, then write.
typedef struct {
  int nred;
  LLVMValueRef rdims[IR_MAX_RANK], rst[1][IR_MAX_RANK], cnt, yo;
  bool write;
} Rg;

static void rg_inner(K *k, const LLVMValueRef *off, void *ud) {
  Rg *rg = ud;
  LLVMValueRef x = ldf(k, k->src[0], off[0]), y = ldf(k, k->src[1], rg->yo);
  LLVMValueRef eq = fcmp(k, LLVMRealOEQ, x, y);
  if (!rg->write) {
    store(k, add(k, get(k, rg->cnt), LLVMBuildZExt(k->b, eq, k->i64, "")), rg->cnt);
    return;
  }
  LLVMValueRef g = fdiv(k, ldw(k, k->src[2], rg->yo), sitofp(k, get(k, rg->cnt), k->f64));
  stf(k, k->out, off[0], sel(k, eq, trn(k, g), cf(k, 0)));
}

static void rg_outer(K *k, const LLVMValueRef *off, void *ud) {
  Rg *rg = ud;
  rg->yo = off[1];
  store(k, ci(k, 0), rg->cnt);
  rg->write = false;
  nest(k, 0, rg->nred, rg->rdims, 1, rg->rst, off, rg_inner, rg);
  rg->write = true;
  nest(k, 0, rg->nred, rg->rdims, 1, rg->rst, off, rg_inner, rg);
}

static void emit_reduce_grad(K *k) {
  uint32_t axes = k->n->attr.axes;
  int r = src_rank(k, 0), nkept = 0;
  Rg rg = {0};
  rg.cnt = var(k, k->i64, NULL);
  LLVMValueRef in_st[IR_MAX_RANK], ost[IR_MAX_RANK], s = ci(k, 1), os = ci(k, 1);
  for (int i = r - 1; i >= 0; i--) {
    in_st[i] = s;
    s = mul(k, s, k->idim[0][i]);
    if (axes >> i & 1) continue;
    ost[i] = os;
    os = mul(k, os, k->idim[0][i]);
  }
  LLVMValueRef kdims[IR_MAX_RANK], kst[2][IR_MAX_RANK];
  for (int i = 0; i < r; i++) {
    if (axes >> i & 1) {
      rg.rdims[rg.nred] = k->idim[0][i];
      rg.rst[0][rg.nred++] = in_st[i];
    } else {
      kdims[nkept] = k->idim[0][i];
      kst[0][nkept] = in_st[i];
      kst[1][nkept++] = ost[i];
    }
  }
  LLVMValueRef zero[2] = {ci(k, 0), ci(k, 0)};
  nest(k, 0, nkept, kdims, 2, kst, zero, rg_outer, &rg);
}

// ---- SOFTMAX_GRAD y, dy: dx = y (dy - sum(y dy)); LOG_SOFTMAX_GRAD y, dy:
// dx = dy - exp(y) sum(dy); along axis ----

static void emit_softmax_grad(K *k) {
  const IrNode *n = k->n;
  int r = n->ty.rank, axis = (int)n->attr.axis;
  bool lg = n->op == IR_OP_LOG_SOFTMAX_GRAD;
  LLVMValueRef len = k->odim[axis], inner = prod(k, k->odim, axis + 1, r);
  LLVMValueRef sum = var(k, k->f64, NULL);
  Loop lu, li;
  LLVMValueRef u = par_begin(k, &lu);  // u = o * inner + j
  LLVMValueRef o = LLVMBuildSDiv(k->b, u, inner, ""), j = LLVMBuildSRem(k->b, u, inner, "");
  LLVMValueRef base = add(k, mul(k, mul(k, o, len), inner), j);
  LLVMValueRef yp = gep(k, k->f32, k->src[0], base), dyp = gep(k, k->f32, k->src[1], base);
  LLVMValueRef xp = gep(k, k->f32, k->out, base);
  store(k, cd(k, 0), sum);
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), len), ii = mul(k, i, inner);
  accum(k, sum, lg ? ldw(k, dyp, ii) : fmul(k, ldw(k, yp, ii), ldw(k, dyp, ii)));
  loop_end(k, &li);
  LLVMValueRef s = get(k, sum);
  i = loop_begin(k, &li, ci(k, 0), len), ii = mul(k, i, inner);
  LLVMValueRef dy = ldw(k, dyp, ii), dx;
  if (lg) dx = fsub(k, dy, fmul(k, ext(k, fexp(k, ldf(k, yp, ii))), s));
  else dx = fmul(k, ldw(k, yp, ii), fsub(k, dy, s));
  stf(k, xp, ii, dx);
  loop_end(k, &li);
  loop_end(k, &lu);
}

// ---- layernorm, rmsnorm over the last axis C ----

// The row's statistics in double: layernorm mean and rstd = 1/sqrt(var + eps);
// rmsnorm mean 0 and s = 1/sqrt(mean(x^2) + eps).
static void row_stats(K *k, bool ln, LLVMValueRef xp, LLVMValueRef C, LLVMValueRef *mean, LLVMValueRef *rstd) {
  LLVMValueRef acc = var(k, k->f64, NULL), Cd = sitofp(k, C, k->f64);
  Loop lc;
  *mean = cd(k, 0);
  if (ln) {
    store(k, cd(k, 0), acc);
    LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), C);
    accum(k, acc, ldw(k, xp, c));
    loop_end(k, &lc);
    *mean = fdiv(k, get(k, acc), Cd);
  }
  store(k, cd(k, 0), acc);
  LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), C);
  LLVMValueRef d = fsub(k, ldw(k, xp, c), *mean);
  accum(k, acc, fmul(k, d, d));
  loop_end(k, &lc);
  LLVMValueRef v = fadd(k, fdiv(k, get(k, acc), Cd), cd(k, k->n->attr.eps));
  *rstd = fdiv(k, cd(k, 1), intr1(k, "llvm.sqrt", v));
}

static LLVMValueRef norm_rows(K *k, LLVMValueRef *C) {
  int r = src_rank(k, 0);
  *C = k->idim[0][r - 1];
  LLVMValueRef numel = prod(k, k->idim[0], 0, r);
  return sel(k, icmp(k, LLVMIntEQ, *C, ci(k, 0)), ci(k, 0), LLVMBuildSDiv(k->b, numel, imax(k, *C, ci(k, 1)), ""));
}

// LAYERNORM_DX x, w, dy: with xhat = (x - mean) rstd and g = dy w,
// dx = rstd (g - mean(g) - xhat mean(g xhat)).
// RMSNORM_DX x, w, dy: dx = s (dy w) - x s^3 mean(dy w x).
static void emit_norm_dx(K *k) {
  bool ln = k->n->op == IR_OP_LAYERNORM_DX;
  LLVMValueRef C = k->idim[0][src_rank(k, 0) - 1], Cd = sitofp(k, C, k->f64);
  LLVMValueRef mg = var(k, k->f64, NULL), mgx = var(k, k->f64, NULL);
  Loop lr, lc;
  LLVMValueRef row = par_begin(k, &lr), ro = mul(k, row, C);  // units: rows
  LLVMValueRef xp = gep(k, k->f32, k->src[0], ro), w = k->src[1], dyp = gep(k, k->f32, k->src[2], ro);
  LLVMValueRef dxp = gep(k, k->f32, k->out, ro), mean, rstd;
  row_stats(k, ln, xp, C, &mean, &rstd);
  store(k, cd(k, 0), mg);
  store(k, cd(k, 0), mgx);
  LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), C);
  LLVMValueRef g = fmul(k, ldw(k, dyp, c), ldw(k, w, c)), xc = fsub(k, ldw(k, xp, c), mean);
  if (ln) accum(k, mg, g);
  accum(k, mgx, fmul(k, g, xc));
  loop_end(k, &lc);
  // layernorm: mean(g), mean(g xhat); rmsnorm: mean(g x)
  LLVMValueRef m1 = fdiv(k, get(k, mg), Cd), m2 = fdiv(k, get(k, mgx), Cd);
  if (ln) m2 = fmul(k, m2, rstd);
  LLVMValueRef s3 = fmul(k, fmul(k, rstd, rstd), rstd);
  c = loop_begin(k, &lc, ci(k, 0), C);
  g = fmul(k, ldw(k, dyp, c), ldw(k, w, c));
  xc = fsub(k, ldw(k, xp, c), mean);
  LLVMValueRef dx = ln ? fmul(k, rstd, fsub(k, fsub(k, g, m1), fmul(k, fmul(k, xc, rstd), m2)))
                       : fsub(k, fmul(k, rstd, g), fmul(k, fmul(k, xc, s3), m2));
  stf(k, dxp, c, dx);
  loop_end(k, &lc);
  loop_end(k, &lr);
}

// LAYERNORM_DW x, dy: dw = sum over rows of dy xhat; RMSNORM_DW x, dy:
// dw = sum over rows of dy x s. Rows in order, accumulated in double.
static void emit_norm_dw(K *k) {
  bool ln = k->n->op == IR_OP_LAYERNORM_DW;
  LLVMValueRef C, rows = norm_rows(k, &C);
  LLVMValueRef acc = scratch(k, k->f64, C);
  LLVMValueRef lo = k->plo ? k->plo : ci(k, 0), hi = k->phi ? k->phi : C;  // units: columns
  Loop lr, lc;
  LLVMValueRef c = loop_begin(k, &lc, lo, hi);
  std_(k, acc, c, cd(k, 0));
  loop_end(k, &lc);
  LLVMValueRef row = loop_begin(k, &lr, ci(k, 0), rows), ro = mul(k, row, C);
  LLVMValueRef xp = gep(k, k->f32, k->src[0], ro), dyp = gep(k, k->f32, k->src[1], ro), mean, rstd;
  row_stats(k, ln, xp, C, &mean, &rstd);
  c = loop_begin(k, &lc, lo, hi);
  LLVMValueRef v = fmul(k, fmul(k, ldw(k, dyp, c), fsub(k, ldw(k, xp, c), mean)), rstd);
  std_(k, acc, c, fadd(k, ldd(k, acc, c), v));
  loop_end(k, &lc);
  loop_end(k, &lr);
  c = loop_begin(k, &lc, lo, hi);
  stf(k, k->out, c, ldd(k, acc, c));
  loop_end(k, &lc);
}

// ---- XENT_GRAD logits (...,V), targets (...), dloss (): dlogits =
// (softmax(row) - onehot(target)) dloss / kept, 0 on ignored rows ----

static void emit_xent_grad(K *k) {
  const IrNode *n = k->n;
  int r = src_rank(k, 0);
  IrDType tdt = n->src[1]->ty.dt;
  LLVMValueRef V = k->idim[0][r - 1], rows = prod(k, k->idim[1], 0, src_rank(k, 1)), ign = ci(k, n->attr.ignore);
  LLVMValueRef kept = var(k, k->i64, ci(k, 0)), mx = var(k, k->f32, NULL), sum = var(k, k->f64, NULL);
  Loop li, lc;
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), rows);
  LLVMValueRef tg = ld(k, tdt, k->src[1], i);
  LLVMBasicBlockRef join = if_begin(k, icmp(k, LLVMIntNE, tg, ign));
  fail_if(k, LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, tg, ci(k, 0)), icmp(k, LLVMIntSGE, tg, V), ""), ST_TARGET, tg, V);
  store(k, add(k, get(k, kept), ci(k, 1)), kept);
  if_end(k, join);
  loop_end(k, &li);
  LLVMValueRef f = fdiv(k, ldw(k, k->src[2], ci(k, 0)), sitofp(k, imax(k, get(k, kept), ci(k, 1)), k->f64));
  i = par_begin(k, &li);  // units: rows (every task counts the kept rows first)
  tg = ld(k, tdt, k->src[1], i);
  LLVMValueRef x = gep(k, k->f32, k->src[0], mul(k, i, V)), y = gep(k, k->f32, k->out, mul(k, i, V));
  LLVMValueRef ig = icmp(k, LLVMIntEQ, tg, ign);
  LLVMBasicBlockRef keep = block(k, "keep"), zero = block(k, "zero"), done = block(k, "done");
  LLVMBuildCondBr(k->b, ig, zero, keep);
  at(k, zero);
  LLVMBuildMemSet(k->b, y, LLVMConstInt(k->i8, 0, 0), mul(k, V, ci(k, 4)), 4);
  LLVMBuildBr(k->b, done);
  at(k, keep);
  store(k, cf(k, -INFINITY), mx);
  LLVMValueRef c = loop_begin(k, &lc, ci(k, 0), V);
  store(k, fmaxr(k, get(k, mx), ldf(k, x, c)), mx);
  loop_end(k, &lc);
  LLVMValueRef m = get(k, mx);
  store(k, cd(k, 0), sum);
  c = loop_begin(k, &lc, ci(k, 0), V);
  LLVMValueRef e = fexp(k, LLVMBuildFSub(k->b, ldf(k, x, c), m, ""));
  stf(k, y, c, e);
  accum(k, sum, ext(k, e));
  loop_end(k, &lc);
  LLVMValueRef inv = fdiv(k, cd(k, 1), get(k, sum));
  c = loop_begin(k, &lc, ci(k, 0), V);
  LLVMValueRef oh = sel(k, icmp(k, LLVMIntEQ, c, tg), cd(k, 1), cd(k, 0));
  stf(k, y, c, fmul(k, fsub(k, fmul(k, ldw(k, y, c), inv), oh), f));
  loop_end(k, &lc);
  LLVMBuildBr(k->b, done);
  at(k, done);
  loop_end(k, &li);
}

// ---- GATHER_GRAD idx (...), dy (..., row) -> dtable (N, row): row r is the
// sum of the dy rows i with idx[i] = r, i ascending, in double ----
//
// A list per table row (head[N], next[nidx], built backwards so that each
// lists its i ascending) makes it one pass over the table.
static void emit_gather_grad(K *k) {
  const IrNode *n = k->n;
  IrDType it = n->src[0]->ty.dt;
  LLVMValueRef N = k->odim[0], row = prod(k, k->odim, 1, n->ty.rank), nidx = prod(k, k->idim[0], 0, src_rank(k, 0));
  Loop li, lr, lj;
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), nidx);
  LLVMValueRef v = ld(k, it, k->src[0], i);
  fail_if(k, LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, v, ci(k, 0)), icmp(k, LLVMIntSGE, v, N), ""), ST_INDEX, v, N);
  loop_end(k, &li);
  LLVMValueRef mem = heap(k, mul(k, add(k, add(k, N, nidx), row), ci(k, 8)));
  LLVMValueRef head = mem, next = gep(k, k->i64, mem, N), acc = gep(k, k->i64, next, nidx);
  LLVMValueRef r = loop_begin(k, &lr, ci(k, 0), N);
  store(k, ci(k, -1), gep(k, k->i64, head, r));
  loop_end(k, &lr);
  i = loop_begin(k, &li, ci(k, 0), nidx);
  LLVMValueRef ii = sub(k, sub(k, nidx, ci(k, 1)), i);
  v = ld(k, it, k->src[0], ii);
  LLVMValueRef hp = gep(k, k->i64, head, v);
  store(k, load(k, k->i64, hp), gep(k, k->i64, next, ii));
  store(k, ii, hp);
  loop_end(k, &li);
  LLVMValueRef cur = var(k, k->i64, NULL);
  r = loop_begin(k, &lr, ci(k, 0), N);
  LLVMValueRef y = gep(k, k->f32, k->out, mul(k, r, row));
  LLVMValueRef j = loop_begin(k, &lj, ci(k, 0), row);
  std_(k, acc, j, cd(k, 0));
  loop_end(k, &lj);
  store(k, load(k, k->i64, gep(k, k->i64, head, r)), cur);
  LLVMBasicBlockRef wh = block(k, "walk"), body = block(k, "step"), done = block(k, "walked");
  LLVMBuildBr(k->b, wh);
  at(k, wh);
  LLVMValueRef c = get(k, cur);
  LLVMBuildCondBr(k->b, icmp(k, LLVMIntSGE, c, ci(k, 0)), body, done);
  at(k, body);
  LLVMValueRef dy = gep(k, k->f32, k->src[1], mul(k, c, row));
  j = loop_begin(k, &lj, ci(k, 0), row);
  std_(k, acc, j, fadd(k, ldd(k, acc, j), ldw(k, dy, j)));
  loop_end(k, &lj);
  store(k, load(k, k->i64, gep(k, k->i64, next, c)), cur);
  LLVMBuildBr(k->b, wh);
  at(k, done);
  j = loop_begin(k, &lj, ci(k, 0), row);
  stf(k, y, j, ldd(k, acc, j));
  loop_end(k, &lj);
  loop_end(k, &lr);
  heap_free(k, mem);
}

// ---- SLICE_GRAD dy {axis, start}: zeros of the result's shape with dy
// placed at start along axis (start < 0 counts from the end) ----

static void emit_slice_grad(K *k) {
  const IrNode *n = k->n;
  int a = (int)n->attr.axis, r = n->ty.rank;
  IrDType dt = n->ty.dt;
  LLVMValueRef size = k->odim[a], len = k->idim[0][a], start = ci(k, n->attr.start);
  LLVMValueRef s0 = n->attr.start < 0 ? add(k, start, size) : start;
  LLVMValueRef bad = LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, s0, ci(k, 0)), icmp(k, LLVMIntSGT, s0, size), "");
  bad = LLVMBuildOr(k->b, bad, icmp(k, LLVMIntSGT, len, sub(k, size, s0)), "");
  fail_if(k, bad, ST_SLICE, len, size);
  LLVMValueRef outer = prod(k, k->odim, 0, a), inner = prod(k, k->odim, a + 1, r);
  LLVMValueRef total = mul(k, prod(k, k->odim, 0, r), ci(k, (int64_t)ir_dtype_info[dt].size));
  LLVMBuildMemSet(k->b, k->out, LLVMConstInt(k->i8, 0, 0), total, 4);
  Loop l;
  LLVMValueRef o = loop_begin(k, &l, ci(k, 0), outer);
  LLVMValueRef to = mul(k, add(k, mul(k, o, size), s0), inner);
  copy(k, byte_gep(k, k->out, to, dt), byte_gep(k, k->src[0], mul(k, mul(k, o, len), inner), dt),
       mul(k, len, inner), dt);
  loop_end(k, &l);
}

void cg_emit_grad(K *k) {
  switch (k->n->op) {
  case IR_OP_SOFTMAX_GRAD: case IR_OP_LOG_SOFTMAX_GRAD: emit_softmax_grad(k); break;
  case IR_OP_LAYERNORM_DX: case IR_OP_RMSNORM_DX: emit_norm_dx(k); break;
  case IR_OP_LAYERNORM_DW: case IR_OP_RMSNORM_DW: emit_norm_dw(k); break;
  case IR_OP_ATTENTION_DQ: case IR_OP_ATTENTION_DK: case IR_OP_ATTENTION_DV: cg_emit_attention(k); break;
  case IR_OP_XENT_GRAD: emit_xent_grad(k); break;
  case IR_OP_GATHER_GRAD: emit_gather_grad(k); break;
  case IR_OP_SLICE_GRAD: emit_slice_grad(k); break;
  case IR_OP_REDUCE_GRAD: emit_reduce_grad(k); break;
  default: heed_unreachable();
  }
}
