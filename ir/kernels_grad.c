// ir/kernels_grad.c: reference kernels of the gradient ops that autodiff
// (passes/autodiff.c) emits: UNARY_GRAD ... MAXIMUM_GRAD in ops.def, and the
// fused optimizer updates (OPT_*) that passes/train_step.c emits. The
// interpreter (interp.c) calls ir_kernel_grad for every op from UNARY_GRAD on;
// like the forward kernels (kernels.c) they compute in double on row-major
// tensors and are the oracle for the backends, never the fast path. Each
// kernel states the math it computes; softmax and attention probabilities are
// recomputed from the forward operands (nothing is saved between kernels).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

static const double PI = 3.14159265358979323846;

static int src_rank(const IrKernelArgs *k, int j) { return k->n->src[j]->ty.rank; }

static int64_t prod(const int64_t *d, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= d[i];
  return p;
}

static bool oom(IrKernelArgs *k) {
  diag_error(k->d, k->n->loc, "out of memory evaluating %s", ir_op_name(k->n->op));
  return false;
}

// Strides for reading operand j at the result's index, numpy broadcasting
// (operand axes aligned right; 0 on an axis the operand broadcasts along).
static void bcast_strides(const IrKernelArgs *k, int j, int64_t st[IR_MAX_RANK]) {
  int r = k->n->ty.rank, rj = src_rank(k, j);
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    int ij = rj - r + i;
    int64_t d = ij >= 0 ? k->in_dims[j][ij] : 1;
    st[i] = d == 1 ? 0 : s;
    s *= d;
  }
}

// Offset of result element i (flat) in an operand with strides st.
static int64_t strided_off(const int64_t *dims, int r, const int64_t *st, int64_t i) {
  int64_t off = 0;
  for (int ax = r - 1; ax >= 0; ax--) {
    off += (i % dims[ax]) * st[ax];
    i /= dims[ax];
  }
  return off;
}

// ---- elementwise ----

// UNARY_GRAD x, y, dy {fn}: dx = dy * f'(x), with y = f(x) where that is simpler.
static bool unary_grad(IrKernelArgs *k) {
  const double *x = k->in[0], *y = k->in[1], *dy = k->in[2];
  double *dx = k->out;
  const double c = sqrt(2.0 / PI), a = 0.044715;
  for (int64_t i = 0; i < k->numel; i++) {
    double xi = x[i], yi = y[i], g = dy[i];
    switch ((IrOp)k->n->attr.fn) {
    case IR_OP_NEG: dx[i] = -g; break;                           // -x
    case IR_OP_EXP: dx[i] = g * yi; break;                       // e^x
    case IR_OP_LOG: dx[i] = g / xi; break;                       // 1/x
    case IR_OP_SQRT: dx[i] = g * 0.5 / yi; break;                // 1/(2 sqrt x)
    case IR_OP_RSQRT: dx[i] = g * -0.5 * yi * yi * yi; break;    // -x^(-3/2)/2
    case IR_OP_TANH: dx[i] = g * (1 - yi * yi); break;           // 1 - tanh^2
    case IR_OP_SIGMOID: dx[i] = g * yi * (1 - yi); break;        // s (1 - s)
    case IR_OP_RELU: dx[i] = xi > 0 ? g : 0; break;              // 0 at x = 0, like torch
    case IR_OP_ABS: dx[i] = xi > 0 ? g : xi < 0 ? -g : 0; break; // sign(x), 0 at 0
    case IR_OP_GELU: {  // x Phi(x): Phi(x) + x phi(x)
      double cdf = 0.5 * (1 + erf(xi / sqrt(2.0))), pdf = exp(-0.5 * xi * xi) / sqrt(2 * PI);
      dx[i] = g * (cdf + xi * pdf);
      break;
    }
    case IR_OP_GELU_TANH: {  // x (1 + tanh u)/2, u = c (x + a x^3)
      double t = tanh(c * (xi + a * xi * xi * xi));
      dx[i] = g * (0.5 * (1 + t) + 0.5 * xi * (1 - t * t) * c * (1 + 3 * a * xi * xi));
      break;
    }
    case IR_OP_SILU: {  // x s(x): s + x s (1 - s)
      double s = 1 / (1 + exp(-xi));
      dx[i] = g * (s + xi * s * (1 - s));
      break;
    }
    default:
      diag_error(k->d, k->n->loc, "unary_grad: no derivative for %s", ir_op_name((IrOp)k->n->attr.fn));
      return false;
    }
  }
  return true;
}

// MAXIMUM_GRAD a, b, dy {fn}: the share of dy that goes to a, in the
// broadcast shape: dy where a wins, dy/2 on a tie, 0 where b wins.
static bool maximum_grad(IrKernelArgs *k) {
  int64_t sa[IR_MAX_RANK], sb[IR_MAX_RANK];
  int r = k->n->ty.rank;
  bool is_max = k->n->attr.fn == IR_OP_MAXIMUM;
  if (!is_max && k->n->attr.fn != IR_OP_MINIMUM) {
    diag_error(k->d, k->n->loc, "maximum_grad: fn must be maximum or minimum");
    return false;
  }
  bcast_strides(k, 0, sa);
  bcast_strides(k, 1, sb);
  for (int64_t i = 0; i < k->numel; i++) {
    double a = k->in[0][strided_off(k->dims, r, sa, i)], b = k->in[1][strided_off(k->dims, r, sb, i)];
    bool wins = is_max ? a > b : a < b;
    k->out[i] = wins ? k->in[2][i] : a == b ? 0.5 * k->in[2][i] : 0;
  }
  return true;
}

// ---- reductions ----

// REDUCE_GRAD x, y, dy {axes, keepdim} of MAX/MIN: every x equal to its
// extremum y gets dy / (number of such x), as torch.amax splits ties.
static bool reduce_grad(IrKernelArgs *k) {
  int r = src_rank(k, 0);
  const int64_t *xd = k->in_dims[0];
  int64_t st[IR_MAX_RANK], s = 1, ny = 1;
  for (int ax = r - 1; ax >= 0; ax--) {  // strides into y with the reduced axes kept as 1
    bool red = k->n->attr.axes >> ax & 1;
    st[ax] = red ? 0 : s;
    if (!red) s *= xd[ax], ny *= xd[ax];
  }
  int64_t *cnt = heed_calloc((size_t)(ny ? ny : 1), sizeof *cnt);
  if (!cnt) return oom(k);
  const double *x = k->in[0], *y = k->in[1], *dy = k->in[2];
  for (int64_t i = 0; i < k->numel; i++) {
    int64_t o = strided_off(xd, r, st, i);
    cnt[o] += x[i] == y[o];
  }
  for (int64_t i = 0; i < k->numel; i++) {
    int64_t o = strided_off(xd, r, st, i);
    k->out[i] = x[i] == y[o] ? dy[o] / (double)cnt[o] : 0;
  }
  heed_free(cnt);
  return true;
}

// SOFTMAX_GRAD y, dy {axis}: dx = y (dy - sum(y dy)) along axis.
// LOG_SOFTMAX_GRAD y, dy {axis}: dx = dy - exp(y) sum(dy) along axis.
static bool softmax_grad(IrKernelArgs *k, bool log) {
  int r = k->n->ty.rank, ax = (int)k->n->attr.axis;
  int64_t outer = prod(k->dims, 0, ax), L = k->dims[ax], inner = prod(k->dims, ax + 1, r);
  const double *y = k->in[0], *dy = k->in[1];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in = 0; in < inner; in++) {
      int64_t base = o * L * inner + in;
      double s = 0;
      for (int64_t l = 0; l < L; l++) s += log ? dy[base + l * inner] : y[base + l * inner] * dy[base + l * inner];
      for (int64_t l = 0; l < L; l++) {
        int64_t j = base + l * inner;
        k->out[j] = log ? dy[j] - exp(y[j]) * s : y[j] * (dy[j] - s);
      }
    }
  return true;
}

// ---- normalisation (over the last axis, C) ----

// LAYERNORM_DX x, w, dy {eps}: with xhat = (x - mean) * rstd and g = dy w,
// dx = rstd (g - mean(g) - xhat mean(g xhat)) per row.
// LAYERNORM_DW x, dy {eps}: dw = sum over rows of dy xhat.
static bool layernorm_grad(IrKernelArgs *k, bool dw) {
  int r = src_rank(k, 0);
  int64_t C = k->in_dims[0][r - 1], rows = C ? prod(k->in_dims[0], 0, r) / C : 0;
  const double *x = k->in[0], *w = dw ? NULL : k->in[1], *dy = k->in[dw ? 1 : 2];
  if (dw) memset(k->out, 0, sizeof(double) * (size_t)k->numel);
  for (int64_t row = 0; row < rows; row++) {
    const double *x_r = x + row * C, *dy_r = dy + row * C;  // (C)
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; c++) mean += x_r[c];
    mean /= (double)C;
    for (int64_t c = 0; c < C; c++) var += (x_r[c] - mean) * (x_r[c] - mean);
    double rstd = 1 / sqrt(var / (double)C + k->n->attr.eps);
    if (dw) {
      for (int64_t c = 0; c < C; c++) k->out[c] += dy_r[c] * (x_r[c] - mean) * rstd;
      continue;
    }
    double mg = 0, mgx = 0;
    for (int64_t c = 0; c < C; c++) {
      double g = dy_r[c] * w[c];
      mg += g;
      mgx += g * (x_r[c] - mean) * rstd;
    }
    mg /= (double)C;
    mgx /= (double)C;
    for (int64_t c = 0; c < C; c++)
      k->out[row * C + c] = rstd * (dy_r[c] * w[c] - mg - (x_r[c] - mean) * rstd * mgx);
  }
  return true;
}

// RMSNORM_DX x, w, dy {eps}: with y = x s w, s = 1/sqrt(mean(x^2) + eps),
// dx = s (dy w) - x s^3 mean(dy w x) per row.
// RMSNORM_DW x, dy {eps}: dw = sum over rows of dy x s.
static bool rmsnorm_grad(IrKernelArgs *k, bool dw) {
  int r = src_rank(k, 0);
  int64_t C = k->in_dims[0][r - 1], rows = C ? prod(k->in_dims[0], 0, r) / C : 0;
  const double *x = k->in[0], *w = dw ? NULL : k->in[1], *dy = k->in[dw ? 1 : 2];
  if (dw) memset(k->out, 0, sizeof(double) * (size_t)k->numel);
  for (int64_t row = 0; row < rows; row++) {
    const double *x_r = x + row * C, *dy_r = dy + row * C;  // (C)
    double ms = 0;
    for (int64_t c = 0; c < C; c++) ms += x_r[c] * x_r[c];
    double s = 1 / sqrt(ms / (double)C + k->n->attr.eps);
    if (dw) {
      for (int64_t c = 0; c < C; c++) k->out[c] += dy_r[c] * x_r[c] * s;
      continue;
    }
    double m = 0;
    for (int64_t c = 0; c < C; c++) m += dy_r[c] * w[c] * x_r[c];
    m /= (double)C;
    for (int64_t c = 0; c < C; c++) k->out[row * C + c] = s * dy_r[c] * w[c] - x_r[c] * s * s * s * m;
  }
  return true;
}

// ---- attention ----

// ATTENTION_DQ/DK/DV q, k, v, dout [, mask]: q, dout (B,T,H*HS); k, v
// (B,S,KV*HS); mask (B,S). The probabilities p are recomputed per query
// row exactly as the forward does (query head h reads kv head h/(H/KV); key
// s visible if s <= t + S - T when causal and mask[b,s] != 0; a row with no
// visible key has p = 0). With dp_s = dout . v_s and ds = p (dp - sum p dp):
// dq = scale sum_s ds k_s, dk_s += scale ds q, dv_s += p dout; dk and dv sum
// over the H/KV query heads that share a kv head.
static bool attention_grad(IrKernelArgs *k) {
  const IrNode *n = k->n;
  const IrAttr *at = &n->attr;
  const double *q = k->in[0], *kk = k->in[1], *v = k->in[2], *dout = k->in[3];
  const double *mask = n->nsrc > 4 ? k->in[4] : NULL;  // (B,S)
  int64_t B = k->in_dims[0][0], T = k->in_dims[0][1], S = k->in_dims[1][1];
  int64_t H = at->heads, KV = at->kv_heads, HS = k->in_dims[0][2] / H, G = H / KV;
  double scale = at->scale;
  memset(k->out, 0, sizeof(double) * (size_t)k->numel);
  double *p = heed_malloc(sizeof(double) * (size_t)(2 * S + 1)), *dp = p + S;  // (S) each
  if (!p) return oom(k);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t t = 0; t < T; t++) {
        int64_t hk = h / G;
        const double *q_bth = q + (b * T + t) * H * HS + h * HS, *do_bth = dout + (b * T + t) * H * HS + h * HS;
        double mx = -INFINITY;
        bool any = false;
        for (int64_t s = 0; s < S; s++) {
          bool vis = (!at->causal || s <= t + (S - T)) && (!mask || mask[b * S + s] != 0);
          p[s] = NAN;  // NaN marks an invisible key below
          if (!vis) continue;
          const double *k_bsh = kk + (b * S + s) * KV * HS + hk * HS;
          double dot = 0;
          for (int64_t d = 0; d < HS; d++) dot += q_bth[d] * k_bsh[d];
          p[s] = scale * dot;
          if (p[s] > mx) mx = p[s];
          any = true;
        }
        if (!any) continue;  // no visible key: the output row is 0, so are its gradients
        double sum = 0, pdp = 0;
        for (int64_t s = 0; s < S; s++) sum += isnan(p[s]) ? 0 : exp(p[s] - mx);
        for (int64_t s = 0; s < S; s++) {
          p[s] = isnan(p[s]) ? 0 : exp(p[s] - mx) / sum;
          const double *v_bsh = v + (b * S + s) * KV * HS + hk * HS;
          dp[s] = 0;
          for (int64_t d = 0; d < HS; d++) dp[s] += do_bth[d] * v_bsh[d];
          pdp += p[s] * dp[s];
        }
        for (int64_t s = 0; s < S; s++) {
          if (p[s] == 0) continue;
          double ds = p[s] * (dp[s] - pdp);
          int64_t kv_off = (b * S + s) * KV * HS + hk * HS;
          if (n->op == IR_OP_ATTENTION_DQ) {
            double *dq = k->out + (b * T + t) * H * HS + h * HS;
            for (int64_t d = 0; d < HS; d++) dq[d] += scale * ds * kk[kv_off + d];
          } else if (n->op == IR_OP_ATTENTION_DK) {
            for (int64_t d = 0; d < HS; d++) k->out[kv_off + d] += scale * ds * q_bth[d];
          } else {
            for (int64_t d = 0; d < HS; d++) k->out[kv_off + d] += p[s] * do_bth[d];
          }
        }
      }
  heed_free(p);
  return true;
}

// ---- loss ----

// XENT_GRAD logits, targets, dloss {ignore}: logits (N...,V), targets (N...).
// dlogits = (softmax(logits) - onehot(target)) dloss / kept per row, where
// kept counts targets != ignore; ignored rows (and all rows if none is kept) get 0.
static bool xent_grad(IrKernelArgs *k) {
  int r = src_rank(k, 0);
  int64_t V = k->in_dims[0][r - 1], N = V ? k->numel / V : 0, kept = 0;
  const double *logits = k->in[0], *tg = k->in[1];
  double dloss = k->in[2][0];
  for (int64_t i = 0; i < N; i++) {
    if (tg[i] == (double)k->n->attr.ignore) continue;
    if (tg[i] < 0 || tg[i] >= (double)V) {
      diag_error(k->d, k->n->loc, "cross_entropy: target %.0f is outside the %lld classes of the logits [0, %lld)",
                 tg[i], (long long)V, (long long)V);
      return false;
    }
    kept++;
  }
  for (int64_t i = 0; i < N; i++) {
    const double *l_i = logits + i * V;  // (V)
    double *dl_i = k->out + i * V;       // (V)
    if (tg[i] == (double)k->n->attr.ignore) {
      memset(dl_i, 0, sizeof(double) * (size_t)V);
      continue;
    }
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < V; j++) mx = l_i[j] > mx ? l_i[j] : mx;
    for (int64_t j = 0; j < V; j++) sum += exp(l_i[j] - mx);
    for (int64_t j = 0; j < V; j++)
      dl_i[j] = (exp(l_i[j] - mx) / sum - (j == (int64_t)tg[i])) * dloss / (double)kept;
  }
  return true;
}

// ---- shape ----

// GATHER_GRAD idx, dy -> dtable (N,...): zeros, then row idx[i] += dy row i.
static bool gather_grad(IrKernelArgs *k) {
  int ri = src_rank(k, 0);
  int64_t N = k->dims[0], row = N ? k->numel / N : 0, nidx = prod(k->in_dims[0], 0, ri);
  const double *idx = k->in[0], *dy = k->in[1];  // (...), (..., row)
  memset(k->out, 0, sizeof(double) * (size_t)k->numel);
  for (int64_t i = 0; i < nidx; i++) {
    if (idx[i] < 0 || idx[i] >= (double)N) {
      diag_error(k->d, k->n->loc, "gather: index %.0f is outside the table of %lld rows", idx[i], (long long)N);
      return false;
    }
    double *t_row = k->out + (int64_t)idx[i] * row;
    for (int64_t j = 0; j < row; j++) t_row[j] += dy[i * row + j];
  }
  return true;
}

// SLICE_GRAD dy {axis, start} -> zeros of the source shape with dy placed at
// start along axis (start < 0 counts from the end).
static bool slice_grad(IrKernelArgs *k) {
  int r = k->n->ty.rank, ax = (int)k->n->attr.axis;
  int64_t D = k->dims[ax], L = k->in_dims[0][ax], st = k->n->attr.start < 0 ? k->n->attr.start + D : k->n->attr.start;
  int64_t outer = prod(k->dims, 0, ax), inner = prod(k->dims, ax + 1, r);
  if (st < 0 || st + L > D) {
    diag_error(k->d, k->n->loc, "slice: start %lld is out of range for length %lld of %lld",
               (long long)k->n->attr.start, (long long)L, (long long)D);
    return false;
  }
  memset(k->out, 0, sizeof(double) * (size_t)k->numel);
  for (int64_t o = 0; o < outer; o++)
    memcpy(k->out + (o * D + st) * inner, k->in[0] + o * L * inner, sizeof(double) * (size_t)(L * inner));
  return true;
}

// ---- optimizer updates: OPT_MOMENT, OPT_MOMENT2, OPT_ADAMW ----

// Every step in f32, as the compiled kernels (compile_optim.c) and the
// unfused ops: a double op on f32 values rounded to f32 is the f32 op.
static float f32r(double v) { return (float)v; }

static bool optim(IrKernelArgs *k) {
  const IrNode *n = k->n;
  const double *x = k->in[0], *y = k->in[1];
  for (int64_t i = 0; i < k->numel; i++) {
    if (n->op == IR_OP_OPT_ADAMW) {  // p, m, v, decay, step_size, bc2_sqrt
      float p1 = f32r(x[i] * k->in[3][0]), nss = f32r(-k->in[4][0]);
      float den = f32r((double)f32r((double)f32r(sqrt(k->in[2][i])) / k->in[5][0]) + (float)n->attr.eps);
      k->out[i] = f32r(p1 + (double)f32r((double)f32r(nss * y[i]) / den));
      continue;
    }
    float gc = f32r(y[i] * k->in[2][0]), t = f32r((float)n->attr.scale * (double)gc);
    if (n->op == IR_OP_OPT_MOMENT2) t = f32r((double)t * gc);
    k->out[i] = f32r((double)f32r(x[i] * (float)n->attr.value) + t);
  }
  return true;
}

bool ir_kernel_grad(IrKernelArgs *k) {
  switch (k->n->op) {
  case IR_OP_UNARY_GRAD: return unary_grad(k);
  case IR_OP_SOFTMAX_GRAD: return softmax_grad(k, false);
  case IR_OP_LOG_SOFTMAX_GRAD: return softmax_grad(k, true);
  case IR_OP_LAYERNORM_DX: return layernorm_grad(k, false);
  case IR_OP_LAYERNORM_DW: return layernorm_grad(k, true);
  case IR_OP_RMSNORM_DX: return rmsnorm_grad(k, false);
  case IR_OP_RMSNORM_DW: return rmsnorm_grad(k, true);
  case IR_OP_ATTENTION_DQ:
  case IR_OP_ATTENTION_DK:
  case IR_OP_ATTENTION_DV: return attention_grad(k);
  case IR_OP_XENT_GRAD: return xent_grad(k);
  case IR_OP_GATHER_GRAD: return gather_grad(k);
  case IR_OP_SLICE_GRAD: return slice_grad(k);
  case IR_OP_REDUCE_GRAD: return reduce_grad(k);
  case IR_OP_MAXIMUM_GRAD: return maximum_grad(k);
  case IR_OP_OPT_MOMENT: case IR_OP_OPT_MOMENT2: case IR_OP_OPT_ADAMW: return optim(k);
  default: break;
  }
  diag_error(k->d, k->n->loc, "%s is not a gradient op", ir_op_name(k->n->op));
  return false;
}
