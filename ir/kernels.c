// ir/kernels.c: the reference kernels of the forward ops (POSITIONS through
// ROPE_AT in ops.def). The interpreter driver (interp.c) hands each node its
// operands' values (double arrays, row-major) and concrete shapes; the kernel
// computes the result in double and the driver rounds it to the node's dtype.
// These kernels are the definition of what a graph means: passes and
// backends are tested against them, and they against PyTorch
// (tests/ref/op_refs.py, tests/unit/test_ir_interp.c).
//
// Choices where PyTorch/numpy leave room or differ (the definition is here):
//   - integer DIV truncates toward zero, as C does (torch.div(...,
//     rounding_mode='trunc')); an integer division by zero is a run-time error.
//   - MAXIMUM, MINIMUM, MAX, MIN propagate NaN (torch.maximum, torch.amax).
//   - CAST to an integer or bool dtype converts here (ir_round_to: a float
//     truncates toward zero, wraps around the integer range; NaN and
//     infinities become 0; bool is x != 0), so it holds in exact mode too; a
//     cast to a float dtype is the driver's rounding.
//   - DROPOUT is the identity (inference semantics; training inserts its own).
//   - MAX/MIN over an empty axis give -inf/+inf; MEAN over one gives NaN.
//   - ATTENTION: a query that sees no key (all masked, or causal with S < T)
//     outputs zeros (PyTorch gives NaN there).
//   - XENT with every target ignored is 0 (PyTorch gives NaN).
//   - Run-time errors (a gather index outside the table, a target outside
//     the classes, a slice outside its axis) are diagnostics at the op.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

static const double PI = 3.14159265358979323846;

// ---- shapes and broadcasting ----

static int in_rank(const IrKernelArgs *k, int j) { return k->n->src[j]->ty.rank; }
static int out_rank(const IrKernelArgs *k) { return k->n->ty.rank; }

// Product of d[from..to).
static int64_t prod(const int64_t *d, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= d[i];
  return p;
}

// Row-major strides of a tensor (dims, rank) read as one of rank r under
// numpy broadcasting (right-aligned): st[i] is the step of result axis i,
// 0 on the axes the tensor lacks or has size 1 on.
static void bcast_strides(const int64_t *dims, int rank, int r, int64_t st[IR_MAX_RANK]) {
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    int j = i - (r - rank);
    if (j < 0) {
      st[i] = 0;
      continue;
    }
    st[i] = dims[j] == 1 ? 0 : s;
    s *= dims[j];
  }
}

// The offset under strides st of element i (row-major) of a tensor of dims.
static int64_t offset_of(int64_t i, const int64_t *dims, int r, const int64_t *st) {
  int64_t off = 0;
  for (int a = r - 1; a >= 0; a--) {
    if (dims[a] == 0) return 0;
    off += (i % dims[a]) * st[a];
    i /= dims[a];
  }
  return off;
}

// The strides of operand j broadcast to the result.
static void operand_strides(const IrKernelArgs *k, int j, int64_t st[IR_MAX_RANK]) {
  bcast_strides(k->in_dims[j], in_rank(k, j), out_rank(k), st);
}

// Splits dims around axis: outer (before), n (the axis), inner (after).
static void around_axis(const int64_t *d, int r, int axis, int64_t *outer, int64_t *n, int64_t *inner) {
  *outer = prod(d, 0, axis);
  *n = d[axis];
  *inner = prod(d, axis + 1, r);
}

static bool oom(IrKernelArgs *k) {
  diag_error(k->d, k->n->loc, "out of memory evaluating %s", ir_op_name(k->n->op));
  return false;
}

// ---- elementwise ----

static bool is_int_result(const IrKernelArgs *k) { return ir_dtype_info[k->n->ty.dt].is_int; }

// a / b truncated toward zero (C semantics); b != 0.
static double int_div(double a, double b) {
  if (fabs(a) < 0x1p62 && fabs(b) < 0x1p62) return (double)((int64_t)a / (int64_t)b);
  return trunc(a / b);
}

static double max_nan(double a, double b) { return isnan(a) || isnan(b) ? NAN : a > b ? a : b; }
static double min_nan(double a, double b) { return isnan(a) || isnan(b) ? NAN : a < b ? a : b; }

// (...) op (...) -> broadcast (...)
static bool binary(IrKernelArgs *k) {
  int r = out_rank(k);
  int64_t sa[IR_MAX_RANK], sb[IR_MAX_RANK];
  operand_strides(k, 0, sa);
  operand_strides(k, 1, sb);
  bool idiv = k->n->op == IR_OP_DIV && is_int_result(k);
  for (int64_t i = 0; i < k->numel; i++) {
    double a = k->in[0][offset_of(i, k->dims, r, sa)], b = k->in[1][offset_of(i, k->dims, r, sb)], y = 0;
    switch (k->n->op) {
    case IR_OP_ADD: y = a + b; break;
    case IR_OP_SUB: y = a - b; break;
    case IR_OP_MUL: y = a * b; break;
    case IR_OP_DIV:
      if (idiv && b == 0) {
        diag_error(k->d, k->n->loc, "div: integer division by zero (%.0f / 0)", a);
        return false;
      }
      y = idiv ? int_div(a, b) : a / b;
      break;
    case IR_OP_MAXIMUM: y = max_nan(a, b); break;
    case IR_OP_MINIMUM: y = min_nan(a, b); break;
    default: heed_unreachable();
    }
    k->out[i] = y;
  }
  return true;
}

// where(cond, a, b), all three broadcast to the result.
static bool where(IrKernelArgs *k) {
  int r = out_rank(k);
  int64_t sc[IR_MAX_RANK], sa[IR_MAX_RANK], sb[IR_MAX_RANK];
  operand_strides(k, 0, sc);
  operand_strides(k, 1, sa);
  operand_strides(k, 2, sb);
  for (int64_t i = 0; i < k->numel; i++)
    k->out[i] = k->in[0][offset_of(i, k->dims, r, sc)] != 0 ? k->in[1][offset_of(i, k->dims, r, sa)]
                                                             : k->in[2][offset_of(i, k->dims, r, sb)];
  return true;
}

static double sigmoid(double x) {  // never overflows: exp of a non-positive number only
  if (x >= 0) return 1 / (1 + exp(-x));
  double e = exp(x);
  return e / (1 + e);
}

static double unary1(IrOp op, IrDType to, double x) {
  switch (op) {
  case IR_OP_NEG: return -x;
  case IR_OP_EXP: return exp(x);
  case IR_OP_LOG: return log(x);  // log(0) = -inf, log(<0) = NaN, as torch
  case IR_OP_SQRT: return sqrt(x);
  case IR_OP_RSQRT: return 1 / sqrt(x);
  case IR_OP_TANH: return tanh(x);
  case IR_OP_SIGMOID: return sigmoid(x);
  case IR_OP_RELU: return x < 0 ? 0 : x;  // NaN stays NaN
  case IR_OP_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
  case IR_OP_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / PI) * (x + 0.044715 * x * x * x)));
  case IR_OP_SILU: return x * sigmoid(x);
  case IR_OP_ABS: return fabs(x);
  case IR_OP_CAST: return ir_dtype_info[to].is_float ? x : ir_round_to(to, x);
  case IR_OP_DROPOUT: return x;
  default: heed_unreachable();
  }
}

static bool unary(IrKernelArgs *k) {
  for (int64_t i = 0; i < k->numel; i++) k->out[i] = unary1(k->n->op, k->n->ty.dt, k->in[0][i]);
  return true;
}

// ---- matmul and reductions ----

// (...,M,K) @ (...,K,N) -> (...,M,N); the batch axes broadcast.
static bool matmul(IrKernelArgs *k) {
  int r = out_rank(k), ra = in_rank(k, 0), rb = in_rank(k, 1);
  const int64_t *da = k->in_dims[0], *db = k->in_dims[1];
  int64_t M = da[ra - 2], K = da[ra - 1], N = db[rb - 1];
  int64_t sa[IR_MAX_RANK], sb[IR_MAX_RANK];
  bcast_strides(da, ra - 2, r - 2, sa);  // in units of whole matrices
  bcast_strides(db, rb - 2, r - 2, sb);
  int64_t nbatch = prod(k->dims, 0, r - 2);
  for (int64_t bi = 0; bi < nbatch; bi++) {
    const double *A = k->in[0] + offset_of(bi, k->dims, r - 2, sa) * M * K;
    const double *B = k->in[1] + offset_of(bi, k->dims, r - 2, sb) * K * N;
    double *C = k->out + bi * M * N;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double acc = 0;
        for (int64_t j = 0; j < K; j++) acc += A[m * K + j] * B[j * N + n];
        C[m * N + n] = acc;
      }
  }
  return true;
}

// SUM, MEAN, MAX, MIN over the axes in attr.axes (keepdim only changes the
// result's type, not its layout).
static bool reduce(IrKernelArgs *k) {
  IrOp op = k->n->op;
  int r = in_rank(k, 0);
  const int64_t *d = k->in_dims[0];
  int64_t st[IR_MAX_RANK], s = 1, count = 1;  // st: result step of each operand axis
  for (int i = r - 1; i >= 0; i--) {
    if (k->n->attr.axes >> i & 1) {
      st[i] = 0;
      count *= d[i];
    } else {
      st[i] = s;
      s *= d[i];
    }
  }
  double init = op == IR_OP_MAX ? -INFINITY : op == IR_OP_MIN ? INFINITY : 0;
  for (int64_t i = 0; i < k->numel; i++) k->out[i] = init;
  int64_t total = prod(d, 0, r);
  for (int64_t i = 0; i < total; i++) {
    double x = k->in[0][i], *o = &k->out[offset_of(i, d, r, st)];
    if (op == IR_OP_MAX) *o = max_nan(*o, x);
    else if (op == IR_OP_MIN) *o = min_nan(*o, x);
    else *o += x;
  }
  if (op == IR_OP_MEAN)
    for (int64_t i = 0; i < k->numel; i++) k->out[i] = count ? k->out[i] / (double)count : NAN;
  return true;
}

// SOFTMAX, LOG_SOFTMAX along attr.axis, shifted by the maximum. A row of
// -inf (or holding NaN or +inf) gives NaN, as PyTorch.
static bool softmax(IrKernelArgs *k) {
  int64_t outer, n, inner;
  around_axis(k->in_dims[0], in_rank(k, 0), (int)k->n->attr.axis, &outer, &n, &inner);
  bool log_form = k->n->op == IR_OP_LOG_SOFTMAX;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      const double *x = k->in[0] + o * n * inner + j;
      double *y = k->out + o * n * inner + j, mx = -INFINITY, sum = 0;
      for (int64_t i = 0; i < n; i++) mx = fmax(mx, x[i * inner]);
      for (int64_t i = 0; i < n; i++) sum += exp(x[i * inner] - mx);
      for (int64_t i = 0; i < n; i++)
        y[i * inner] = log_form ? x[i * inner] - mx - log(sum) : exp(x[i * inner] - mx) / sum;
    }
  return true;
}

// LAYERNORM(x (...,C), w (C), b (C)): biased variance; RMSNORM(x, w):
// x / sqrt(mean(x^2) + eps) * w. Both over the last axis.
static bool norm(IrKernelArgs *k) {
  int r = in_rank(k, 0);
  int64_t C = k->in_dims[0][r - 1], rows = C ? k->numel / C : 0;
  bool ln = k->n->op == IR_OP_LAYERNORM;
  const double *w = k->in[1], *b = ln ? k->in[2] : NULL;
  for (int64_t row = 0; row < rows; row++) {
    const double *x = k->in[0] + row * C;
    double *y = k->out + row * C, mean = 0, var = 0;
    if (ln) {
      for (int64_t c = 0; c < C; c++) mean += x[c];
      mean /= (double)C;
    }
    for (int64_t c = 0; c < C; c++) var += (x[c] - mean) * (x[c] - mean);
    double inv = 1 / sqrt(var / (double)C + k->n->attr.eps);
    for (int64_t c = 0; c < C; c++) y[c] = (x[c] - mean) * inv * w[c] + (ln ? b[c] : 0);
  }
  return true;
}

// ---- shape ops ----

// Result axis i is operand axis perm[i].
static bool permute(IrKernelArgs *k) {
  int r = out_rank(k);
  int64_t src[IR_MAX_RANK], st[IR_MAX_RANK];
  bcast_strides(k->in_dims[0], r, r, src);  // the operand's own strides
  for (int i = 0; i < r; i++) st[i] = src[k->n->attr.perm[i]];
  for (int64_t i = 0; i < k->numel; i++) k->out[i] = k->in[0][offset_of(i, k->dims, r, st)];
  return true;
}

// x[..., start:start+len, ...] along attr.axis; len is the result's size.
static bool slice(IrKernelArgs *k) {
  int axis = (int)k->n->attr.axis, r = out_rank(k);
  int64_t size = k->in_dims[0][axis], len = k->dims[axis], start = k->n->attr.start;
  int64_t st = start < 0 ? start + size : start;
  if (st < 0 || st > size || len > size - st) {
    diag_error(k->d, k->n->loc, "slice: %lld elements from %lld%s do not fit axis %d of size %lld", (long long)len,
               (long long)start, start < 0 ? " (from the end)" : "", axis, (long long)size);
    return false;
  }
  int64_t outer = prod(k->dims, 0, axis), inner = prod(k->dims, axis + 1, r);
  for (int64_t o = 0; o < outer; o++)
    memcpy(k->out + o * len * inner, k->in[0] + (o * size + st) * inner, sizeof(double) * (size_t)(len * inner));
  return true;
}

// The operands one after another along attr.axis.
static bool concat(IrKernelArgs *k) {
  int axis = (int)k->n->attr.axis, r = out_rank(k);
  int64_t outer = prod(k->dims, 0, axis), total = k->dims[axis], inner = prod(k->dims, axis + 1, r), at = 0;
  for (int j = 0; j < k->n->nsrc; j++) {
    int64_t nj = k->in_dims[j][axis];
    for (int64_t o = 0; o < outer; o++)
      memcpy(k->out + (o * total + at) * inner, k->in[j] + o * nj * inner, sizeof(double) * (size_t)(nj * inner));
    at += nj;
  }
  return true;
}

// EXPAND: the operand broadcast to the result; SUM_TO: the operand summed
// over the axes the result lacks or has size 1 on (EXPAND's adjoint).
static bool expand(IrKernelArgs *k) {
  int64_t st[IR_MAX_RANK];
  operand_strides(k, 0, st);
  for (int64_t i = 0; i < k->numel; i++) k->out[i] = k->in[0][offset_of(i, k->dims, out_rank(k), st)];
  return true;
}

static bool sum_to(IrKernelArgs *k) {
  int r = in_rank(k, 0);
  int64_t st[IR_MAX_RANK], total = prod(k->in_dims[0], 0, r);
  bcast_strides(k->dims, out_rank(k), r, st);
  for (int64_t i = 0; i < k->numel; i++) k->out[i] = 0;
  for (int64_t i = 0; i < total; i++) k->out[offset_of(i, k->in_dims[0], r, st)] += k->in[0][i];
  return true;
}

// table (N, ...) [idx (...)] -> (idx..., ...): whole rows.
static bool gather(IrKernelArgs *k) {
  int rt = in_rank(k, 0);
  int64_t N = k->in_dims[0][0], row = prod(k->in_dims[0], 1, rt), nidx = prod(k->in_dims[1], 0, in_rank(k, 1));
  for (int64_t i = 0; i < nidx; i++) {
    double v = k->in[1][i];
    if (!(v >= 0 && v < (double)N)) {  // (wpe[positions(tokens)] with T > N: ir_check_sizes, before running)
      diag_error(k->d, k->n->loc, "gather: index %.0f is outside the table of %lld rows", v, (long long)N);
      return false;
    }
    memcpy(k->out + i * row, k->in[0] + (int64_t)v * row, sizeof(double) * (size_t)row);
  }
  return true;
}

// ---- Transformer ops ----

// x (B,T,...) -> (T): 0..T-1
static bool positions(IrKernelArgs *k) {
  for (int64_t t = 0; t < k->numel; t++) k->out[t] = (double)t;
  return true;
}

typedef struct {  // one attention problem's sizes
  int64_t B, T, S, H, KV, D;
  bool causal;
  double scale;
  const double *q, *k, *v, *mask;  // mask: (B,S) or NULL
} Attn;

// Can query t of batch b see key s? Causal alignment is at the end: query t
// is at absolute position t + (S - T), so decode steps (T < S) see the cache.
static bool visible(const Attn *a, int64_t b, int64_t t, int64_t s) {
  if (a->causal && s > t + (a->S - a->T)) return false;
  return !a->mask || a->mask[b * a->S + s] != 0;
}

// One query row: y (D) = softmax(scale * q.k) @ v over the visible keys;
// zeros if none is visible. w: scratch (S).
static void attend_row(const Attn *a, int64_t b, int64_t t, int64_t h, double *w, double *y) {
  int64_t kh = h / (a->H / a->KV), D = a->D, nvis = 0;
  const double *q = a->q + (b * a->T + t) * a->H * D + h * D;
  double mx = -INFINITY, sum = 0;
  for (int64_t s = 0; s < a->S; s++) {
    if (!visible(a, b, t, s)) continue;
    const double *kr = a->k + (b * a->S + s) * a->KV * D + kh * D;
    double dot = 0;
    for (int64_t i = 0; i < D; i++) dot += q[i] * kr[i];
    w[s] = a->scale * dot;
    mx = nvis++ ? fmax(mx, w[s]) : w[s];
  }
  for (int64_t i = 0; i < D; i++) y[i] = 0;
  if (!nvis) return;
  for (int64_t s = 0; s < a->S; s++)
    if (visible(a, b, t, s)) sum += w[s] = exp(w[s] - mx);
  for (int64_t s = 0; s < a->S; s++) {
    if (!visible(a, b, t, s)) continue;
    const double *vr = a->v + (b * a->S + s) * a->KV * D + kh * D;
    for (int64_t i = 0; i < D; i++) y[i] += w[s] / sum * vr[i];
  }
}

// q (B,T,H*D), k, v (B,S,KV*D) [, mask (B,S)] -> (B,T,H*D); query head h
// reads kv head h / (H / KV).
static bool attention(IrKernelArgs *k) {
  const IrAttr *at = &k->n->attr;
  Attn a = {.B = k->in_dims[0][0], .T = k->in_dims[0][1], .S = k->in_dims[1][1], .H = at->heads,
            .KV = at->kv_heads, .causal = at->causal, .scale = at->scale, .q = k->in[0], .k = k->in[1],
            .v = k->in[2], .mask = k->n->nsrc > 3 ? k->in[3] : NULL};
  a.D = k->in_dims[0][2] / a.H;
  double *w = heed_malloc(sizeof(double) * (size_t)(a.S + 1));
  if (!w) return oom(k);
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t t = 0; t < a.T; t++)
      for (int64_t h = 0; h < a.H; h++) attend_row(&a, b, t, h, w, k->out + ((b * a.T + t) * a.H + h) * a.D);
  heed_free(w);
  return true;
}

// The cache length operand of the incremental-decoding ops: an integer in [0, 2^40].
static bool cache_pos(IrKernelArgs *k, int j, int64_t *pos) {
  double p = k->in[j][0];
  if (!(p >= 0 && p <= 0x1p40)) {
    diag_error(k->d, k->n->loc, "%s: cache position %.0f is negative", ir_op_name(k->n->op), p);
    return false;
  }
  *pos = (int64_t)p;
  return true;
}

// cache (B,S,C), new (B,T,C), pos -> cache with rows pos..pos+T-1 replaced.
static bool kv_append(IrKernelArgs *k) {
  int64_t B = k->dims[0], S = k->dims[1], C = k->dims[2], T = k->in_dims[1][1], pos;
  if (!cache_pos(k, 2, &pos)) return false;
  if (pos + T > S) {
    diag_error(k->d, k->n->loc, "kv_append: %lld rows at position %lld overflow the cache of %lld", (long long)T,
               (long long)pos, (long long)S);
    return false;
  }
  memcpy(k->out, k->in[0], sizeof(double) * (size_t)k->numel);
  for (int64_t b = 0; b < B; b++)
    memcpy(k->out + (b * S + pos) * C, k->in[1] + b * T * C, sizeof(double) * (size_t)(T * C));
  return true;
}

// q (B,T,H*D), caches (B,S,KV*D), pos: query t (at position pos + t) attends
// causally over cache rows 0..pos+t, as ATTENTION over the first pos + T rows.
static bool attention_kv(IrKernelArgs *k) {
  const IrAttr *at = &k->n->attr;
  int64_t B = k->in_dims[0][0], T = k->in_dims[0][1], S = k->in_dims[1][1], pos;
  if (!cache_pos(k, 3, &pos)) return false;
  if (pos + T > S) {
    diag_error(k->d, k->n->loc, "attention_kv: positions up to %lld exceed the cache of %lld", (long long)(pos + T),
               (long long)S);
    return false;
  }
  Attn a = {.B = 1, .T = T, .S = pos + T, .H = at->heads, .KV = at->kv_heads, .causal = true, .scale = at->scale};
  a.D = k->in_dims[0][2] / a.H;
  double *w = heed_malloc(sizeof(double) * (size_t)(a.S + 1));
  if (!w) return oom(k);
  for (int64_t b = 0; b < B; b++) {
    a.q = k->in[0] + b * T * a.H * a.D;
    a.k = k->in[1] + b * S * a.KV * a.D;
    a.v = k->in[2] + b * S * a.KV * a.D;
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < a.H; h++) attend_row(&a, 0, t, h, w, k->out + ((b * T + t) * a.H + h) * a.D);
  }
  heed_free(w);
  return true;
}

// x (B,T,H*D): each head's pairs rotated by (off + t) * base^(-2i/D), pair i
// being (i, i + D/2) (GPT-NeoX/HF) or (2i, 2i+1) (interleaved); inverse:
// -angle. ROPE: off 0; ROPE_AT: off = its pos operand.
static bool rope(IrKernelArgs *k) {
  const IrAttr *at = &k->n->attr;
  int64_t off = 0;
  if (k->n->op == IR_OP_ROPE_AT && !cache_pos(k, 1, &off)) return false;
  int64_t B = k->dims[0], T = k->dims[1], C = k->dims[2], D = C / at->heads, half = D / 2;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < at->heads; h++) {
        const double *x = k->in[0] + (b * T + t) * C + h * D;
        double *y = k->out + (b * T + t) * C + h * D;
        for (int64_t i = 0; i < half; i++) {
          double ang = (double)(off + t) * pow(at->base, -2.0 * (double)i / (double)D);
          if (at->inverse) ang = -ang;
          int64_t ia = at->interleaved ? 2 * i : i, ib = at->interleaved ? 2 * i + 1 : i + half;
          double c = cos(ang), s = sin(ang), xa = x[ia], xb = x[ib];
          y[ia] = xa * c - xb * s;
          y[ib] = xa * s + xb * c;
        }
      }
  return true;
}

// logits (...,V), targets (...) -> (): mean over the targets != ignore of
// logsumexp(row) - row[target]; 0 when every target is ignored.
static bool xent(IrKernelArgs *k) {
  int r = in_rank(k, 0);
  int64_t V = k->in_dims[0][r - 1], rows = prod(k->in_dims[1], 0, in_rank(k, 1)), kept = 0;
  double loss = 0;
  for (int64_t i = 0; i < rows; i++) {
    double tg = k->in[1][i];
    if (tg == (double)k->n->attr.ignore) continue;
    if (!(tg >= 0 && tg < (double)V)) {
      diag_error(k->d, k->n->loc, "cross_entropy: target %.0f is outside the %lld classes of the logits "
                 "(ignore index %lld)", tg, (long long)V, (long long)k->n->attr.ignore);
      return false;
    }
    const double *x = k->in[0] + i * V;
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < V; c++) mx = fmax(mx, x[c]);
    for (int64_t c = 0; c < V; c++) sum += exp(x[c] - mx);
    loss += mx + log(sum) - x[(int64_t)tg];
    kept++;
  }
  k->out[0] = kept ? loss / (double)kept : 0;
  return true;
}

bool ir_kernel_forward(IrKernelArgs *k) {
  switch (k->n->op) {
  case IR_OP_POSITIONS: return positions(k);
  case IR_OP_ADD: case IR_OP_SUB: case IR_OP_MUL: case IR_OP_DIV: case IR_OP_MAXIMUM: case IR_OP_MINIMUM:
    return binary(k);
  case IR_OP_WHERE: return where(k);
  case IR_OP_NEG: case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SQRT: case IR_OP_RSQRT: case IR_OP_TANH:
  case IR_OP_SIGMOID: case IR_OP_RELU: case IR_OP_GELU: case IR_OP_GELU_TANH: case IR_OP_SILU: case IR_OP_ABS:
  case IR_OP_CAST: case IR_OP_DROPOUT:
    return unary(k);
  case IR_OP_MATMUL: return matmul(k);
  case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN: return reduce(k);
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: return softmax(k);
  case IR_OP_LAYERNORM: case IR_OP_RMSNORM: return norm(k);
  case IR_OP_RESHAPE:
    memcpy(k->out, k->in[0], sizeof(double) * (size_t)k->numel);
    return true;
  case IR_OP_PERMUTE: return permute(k);
  case IR_OP_SLICE: return slice(k);
  case IR_OP_CONCAT: return concat(k);
  case IR_OP_EXPAND: return expand(k);
  case IR_OP_SUM_TO: return sum_to(k);
  case IR_OP_GATHER: return gather(k);
  case IR_OP_ATTENTION: return attention(k);
  case IR_OP_ROPE: case IR_OP_ROPE_AT: return rope(k);
  case IR_OP_XENT: return xent(k);
  case IR_OP_KV_APPEND: return kv_append(k);
  case IR_OP_ATTENTION_KV: return attention_kv(k);
  default: break;
  }
  // The leaves are the driver's, the gradient ops kernels_grad.c's.
  diag_error(k->d, k->n->loc, "%s: not a forward op with a reference kernel", ir_op_name(k->n->op));
  return false;
}
