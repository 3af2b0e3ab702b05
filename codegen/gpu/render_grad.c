// codegen/gpu/render_grad.c: the kernels of the gradient ops autodiff emits
// and of the optimizer updates pass_train_step emits (reference semantics:
// ir/kernels_grad.c). Splits:
//   unary_grad, maximum_grad, slice_grad, reduce_grad, the optimizer: a
//     work-item per element (reduce_grad counts the ties of its group)
//   softmax/log_softmax grad, layernorm/rmsnorm dx, cross entropy grad: a
//     work-group per row, tree reductions in local memory
//   layernorm/rmsnorm dw: one work-group, rows in order, each item its columns
//   gather_grad: a work-item per table element, the indices in order (no
//     atomics: the sum's order is the interpreter's)
//   attention dq: a work-item per (batch, query, head); dk, dv: a work-item
//     per (batch, key, kv head), the query rows' softmax recomputed (no T x S
//     matrix in memory; O(T S D) per item: correct, not yet fast)
// Every sum runs in a fixed order: the same run gives the same bits.
#include <string.h>

#include "codegen/gpu/render.h"

static const IrNode *node(const GpuR *r, int id) { return r->g->nodes.data[id]; }
static const IrNode *opnd(const GpuR *r, const SchedKernel *k, int j) { return node(r, k->opnd[j]); }

bool gr_grad_supported(IrOp op) {
  switch (op) {
  case IR_OP_UNARY_GRAD: case IR_OP_SOFTMAX_GRAD: case IR_OP_LOG_SOFTMAX_GRAD: case IR_OP_LAYERNORM_DX:
  case IR_OP_LAYERNORM_DW: case IR_OP_RMSNORM_DX: case IR_OP_RMSNORM_DW: case IR_OP_ATTENTION_DQ:
  case IR_OP_ATTENTION_DK: case IR_OP_ATTENTION_DV: case IR_OP_XENT_GRAD: case IR_OP_GATHER_GRAD:
  case IR_OP_SLICE_GRAD: case IR_OP_REDUCE_GRAD: case IR_OP_MAXIMUM_GRAD: case IR_OP_OPT_MOMENT:
  case IR_OP_OPT_MOMENT2: case IR_OP_OPT_ADAMW:
    return true;
  default: return false;
  }
}

static int64_t numel(const GpuR *r, const IrNode *n) {
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  return gr_prod(d, 0, n->ty.rank);
}

static void elem_head(GpuR *r, CgGpuLaunch *l, int64_t n) {
  gr_printf(r, "  I64 i = GID0;\n  if (i >= %lldL) return;\n", (long long)n);
  gr_launch_1d(l, n, 64);
}

static void row_head(GpuR *r, CgGpuLaunch *l, int64_t rows) {
  gr_printf(r, "  LOCAL float red[%d];\n  int t = (int)LID0;\n  I64 row = GRP0;\n", GR_WG);
  l->global[0] = (size_t)(rows < 1 ? 1 : rows) * GR_WG;
  l->global[1] = l->global[2] = 1;
  l->local[0] = GR_WG, l->local[1] = l->local[2] = 1;
}

static void tree_sum(GpuR *r, const char *v) {
  gr_printf(r, "  red[t] = %s;\n  BARRIER();\n  for (int h = %d; h > 0; h >>= 1) {\n"
               "    if (t < h) red[t] = red[t] + red[t + h];\n    BARRIER();\n  }\n  %s = red[0];\n  BARRIER();\n",
            v, GR_WG / 2, v);
}

static void unary_grad(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  elem_head(r, l, numel(r, n));
  gr_printf(r, "  float x = x0[i], yv = x1[i], g = x2[i], dx;\n");
  const char *e;
  switch ((IrOp)n->attr.fn) {
  case IR_OP_NEG: e = "-g"; break;
  case IR_OP_EXP: e = "g * yv"; break;
  case IR_OP_LOG: e = "g / x"; break;
  case IR_OP_SQRT: e = "g * 0.5f / yv"; break;
  case IR_OP_RSQRT: e = "g * -0.5f * yv * yv * yv"; break;
  case IR_OP_TANH: e = "g * (1.0f - yv * yv)"; break;
  case IR_OP_SIGMOID: e = "g * yv * (1.0f - yv)"; break;
  case IR_OP_RELU: e = "x > 0 ? g : 0.0f"; break;
  case IR_OP_ABS: e = "x > 0 ? g : x < 0 ? -g : 0.0f"; break;
  case IR_OP_GELU:
    e = "g * (0.5f * (1.0f + F_ERF(x * 0.70710678118654752f)) + x * F_EXP(-0.5f * x * x) * 0.39894228040143268f)";
    break;
  case IR_OP_GELU_TANH:
    gr_printf(r, "  float u = F_TANH(0.79788456080286536f * (x + 0.044715f * x * x * x));\n");
    e = "g * (0.5f * (1.0f + u) + 0.5f * x * (1.0f - u * u) * 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x))";
    break;
  case IR_OP_SILU:
    gr_printf(r, "  float s = 1.0f / (1.0f + F_EXP(-x));\n");
    e = "g * (s + x * s * (1.0f - s))";
    break;
  default: e = "0.0f"; break;  // cg_gpu_supports refuses the others
  }
  gr_printf(r, "  dx = %s;\n  y[i] = dx;\n}\n", e);
}

static void maximum_grad(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t od[IR_MAX_RANK], xd[IR_MAX_RANK], st[IR_MAX_RANK];
  gr_dims(r, n, od);
  elem_head(r, l, numel(r, n));
  for (int j = 0; j < 2; j++) {
    gr_dims(r, opnd(r, k, j), xd);
    gr_bcast_strides(xd, opnd(r, k, j)->ty.rank, n->ty.rank, st);
    gr_printf(r, "  float %c = x%d[", "ab"[j], j);
    gr_offset(r, "i", od, n->ty.rank, st);
    gr_printf(r, "];\n");
  }
  gr_printf(r, "  y[i] = (%s) ? x2[i] : a == b ? 0.5f * x2[i] : 0.0f;\n}\n",
            n->attr.fn == IR_OP_MAXIMUM ? "a > b" : "a < b");
}

// x, y, dy of MAX/MIN -> dx: dy split evenly among the ties of each group.
static void reduce_grad(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *x = opnd(r, k, 0);
  int rank = x->ty.rank;
  int64_t xd[IR_MAX_RANK], own[IR_MAX_RANK], yst[IR_MAX_RANK], kst[IR_MAX_RANK], rd[IR_MAX_RANK], rs[IR_MAX_RANK];
  gr_dims(r, x, xd);
  int64_t s = 1, ys = 1, count = 1;
  int nr = 0;
  for (int a = rank - 1; a >= 0; a--) own[a] = s, s *= xd[a];
  for (int a = rank - 1; a >= 0; a--) {
    bool red = n->attr.axes >> a & 1;
    yst[a] = red ? 0 : ys;
    kst[a] = red ? 0 : own[a];
    if (!red) ys *= xd[a];
  }
  for (int a = 0; a < rank; a++)
    if (n->attr.axes >> a & 1) rd[nr] = xd[a], rs[nr++] = own[a], count *= xd[a];
  elem_head(r, l, numel(r, n));
  gr_printf(r, "  I64 o = ");
  gr_offset(r, "i", xd, rank, yst);
  gr_printf(r, ", base = ");
  gr_offset(r, "i", xd, rank, kst);
  gr_printf(r, ";\n  float m = x1[o];\n  int cnt = 0;\n  for (I64 j = 0; j < %lldL; j++) cnt += x0[base + ",
            (long long)count);
  gr_offset(r, "j", rd, nr, rs);
  gr_printf(r, "] == m;\n  y[i] = x0[i] == m ? x2[o] / (float)cnt : 0.0f;\n}\n");
}

static void softmax_grad(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  int ax = (int)n->attr.axis;
  long long outer = gr_prod(d, 0, ax), len = d[ax], in = gr_prod(d, ax + 1, n->ty.rank);
  bool lg = n->op == IR_OP_LOG_SOFTMAX_GRAD;
  row_head(r, l, outer * in);
  gr_printf(r, "  I64 at = (row / %lldL) * %lldL + row %% %lldL;\n  float s = 0.0f;\n"
               "  for (I64 c = t; c < %lldL; c += %d) {\n    I64 j = at + c * %lldL;\n    s += %s;\n  }\n",
            in, len * in, in, len, GR_WG, in, lg ? "x1[j]" : "x0[j] * x1[j]");
  tree_sum(r, "s");
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) {\n    I64 j = at + c * %lldL;\n    y[j] = %s;\n  }\n}\n",
            len, GR_WG, in, lg ? "x1[j] - F_EXP(x0[j]) * s" : "x0[j] * (x1[j] - s)");
}

// x, weight, dy -> dx (a work-group per row).
static void norm_dx(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  int64_t C = d[n->ty.rank - 1], rows = C ? gr_prod(d, 0, n->ty.rank) / C : 0;
  bool ln = n->op == IR_OP_LAYERNORM_DX;
  row_head(r, l, rows);
  gr_printf(r, "  GLOBAL const float *x = x0 + row * %lldL, *dy = x2 + row * %lldL;\n"
               "  float mean = 0.0f, var = 0.0f, a = 0.0f, b = 0.0f;\n", (long long)C, (long long)C);
  if (ln) {
    gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) mean += x[c];\n", (long long)C, GR_WG);
    tree_sum(r, "mean");
    gr_printf(r, "  mean = mean / (float)%lld;\n", (long long)C);
  }
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) var += (x[c] - mean) * (x[c] - mean);\n", (long long)C, GR_WG);
  tree_sum(r, "var");
  gr_printf(r, "  float rs = 1.0f / F_SQRT(var / (float)%lld + %.9ef);\n", (long long)C, n->attr.eps);
  if (ln) {
    gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) {\n    float g = dy[c] * x1[c];\n    a += g;\n"
                 "    b += g * (x[c] - mean) * rs;\n  }\n", (long long)C, GR_WG);
    tree_sum(r, "a");
    tree_sum(r, "b");
    gr_printf(r, "  a = a / (float)%lld;\n  b = b / (float)%lld;\n  for (I64 c = t; c < %lldL; c += %d)\n"
                 "    y[row * %lldL + c] = rs * (dy[c] * x1[c] - a - (x[c] - mean) * rs * b);\n}\n",
              (long long)C, (long long)C, (long long)C, GR_WG, (long long)C);
  } else {
    gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) a += dy[c] * x1[c] * x[c];\n", (long long)C, GR_WG);
    tree_sum(r, "a");
    gr_printf(r, "  a = a / (float)%lld;\n  for (I64 c = t; c < %lldL; c += %d)\n"
                 "    y[row * %lldL + c] = rs * dy[c] * x1[c] - x[c] * rs * rs * rs * a;\n}\n",
              (long long)C, (long long)C, GR_WG, (long long)C);
  }
}

// x, dy -> dweight (C): one work-group; the rows in order, item t owns
// columns t, t + GR_WG, ... (each column's sum in row order, as the interpreter).
static void norm_dw(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *x = opnd(r, k, 0), *n = node(r, k->root);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, x, d);
  int64_t C = d[x->ty.rank - 1], rows = C ? gr_prod(d, 0, x->ty.rank) / C : 0, nc = (C + GR_WG - 1) / GR_WG;
  bool ln = n->op == IR_OP_LAYERNORM_DW;
  row_head(r, l, 1);
  gr_printf(r, "  float acc[%lld];\n  for (int j = 0; j < %lld; j++) acc[j] = 0.0f;\n"
               "  for (I64 rw = 0; rw < %lldL; rw++) {\n    GLOBAL const float *x = x0 + rw * %lldL, *dy = x1 + rw * %lldL;\n"
               "    float mean = 0.0f, var = 0.0f;\n",
            (long long)(nc ? nc : 1), (long long)nc, (long long)rows, (long long)C, (long long)C);
  if (ln) {
    gr_printf(r, "    for (I64 c = t; c < %lldL; c += %d) mean += x[c];\n", (long long)C, GR_WG);
    tree_sum(r, "mean");
    gr_printf(r, "    mean = mean / (float)%lld;\n", (long long)C);
  }
  gr_printf(r, "    for (I64 c = t; c < %lldL; c += %d) var += (x[c] - mean) * (x[c] - mean);\n", (long long)C, GR_WG);
  tree_sum(r, "var");
  gr_printf(r, "    float rs = 1.0f / F_SQRT(var / (float)%lld + %.9ef);\n"
               "    for (int j = 0; j < %lld; j++) {\n      I64 c = t + (I64)j * %d;\n"
               "      if (c < %lldL) acc[j] += dy[c] * (x[c] - mean) * rs;\n    }\n  }\n"
               "  for (int j = 0; j < %lld; j++) {\n    I64 c = t + (I64)j * %d;\n    if (c < %lldL) y[c] = acc[j];\n  }\n}\n",
            (long long)C, n->attr.eps, (long long)nc, GR_WG, (long long)C, (long long)nc, GR_WG, (long long)C);
}

// logits, targets, dloss -> dlogits (a work-group per row).
static void xent_grad(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *tg = opnd(r, k, 1);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  int64_t V = d[n->ty.rank - 1], N = V ? gr_prod(d, 0, n->ty.rank) / V : 0;
  (void)tg;
  row_head(r, l, N);
  gr_printf(r, "  float kept = 0.0f, mx = -H_INF, sum = 0.0f;\n  for (I64 i = t; i < %lldL; i += %d) kept += (I64)x1[i] != %lldL;\n",
            (long long)N, GR_WG, (long long)n->attr.ignore);
  tree_sum(r, "kept");
  gr_printf(r, "  GLOBAL const float *x = x0 + row * %lldL;\n  GLOBAL float *o = y + row * %lldL;\n"
               "  I64 tgt = (I64)x1[row];\n  if (tgt == %lldL) {\n"
               "    for (I64 c = t; c < %lldL; c += %d) o[c] = 0.0f;\n    return;\n  }\n"
               "  for (I64 c = t; c < %lldL; c += %d) mx = F_MAX(mx, x[c]);\n",
            (long long)V, (long long)V, (long long)n->attr.ignore, (long long)V, GR_WG, (long long)V, GR_WG);
  gr_printf(r, "  red[t] = mx;\n  BARRIER();\n  for (int h = %d; h > 0; h >>= 1) {\n"
               "    if (t < h) red[t] = F_MAX(red[t], red[t + h]);\n    BARRIER();\n  }\n  mx = red[0];\n  BARRIER();\n",
            GR_WG / 2);
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) sum += F_EXP(x[c] - mx);\n", (long long)V, GR_WG);
  tree_sum(r, "sum");
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d)\n"
               "    o[c] = (F_EXP(x[c] - mx) / sum - (c == tgt ? 1.0f : 0.0f)) * x2[0] / kept;\n}\n",
            (long long)V, GR_WG);
}

// idx (...), dy (..., row) -> dtable (N, row): the rows of equal index summed in order.
static void gather_grad(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *ix = opnd(r, k, 0);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  int64_t row = gr_prod(d, 1, n->ty.rank), nidx = numel(r, ix);
  elem_head(r, l, numel(r, n));
  gr_printf(r, "  I64 rw = i / %lldL, c = i %% %lldL;\n  float acc = 0.0f;\n"
               "  for (I64 j = 0; j < %lldL; j++)\n    if ((I64)x0[j] == rw) acc += x1[j * %lldL + c];\n  y[i] = acc;\n}\n",
            (long long)row, (long long)row, (long long)nidx, (long long)row);
}

static void slice_grad(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *x = opnd(r, k, 0);
  int64_t d[IR_MAX_RANK], xd[IR_MAX_RANK];
  gr_dims(r, n, d);
  gr_dims(r, x, xd);
  int ax = (int)n->attr.axis;
  int64_t D = d[ax], L = xd[ax], st = n->attr.start < 0 ? n->attr.start + D : n->attr.start;
  int64_t inner = gr_prod(d, ax + 1, n->ty.rank);
  elem_head(r, l, numel(r, n));
  gr_printf(r, "  I64 o = i / %lldL, c = (i / %lldL) %% %lldL - %lldL, e = i %% %lldL;\n"
               "  y[i] = c >= 0 && c < %lldL ? x0[(o * %lldL + c) * %lldL + e] : 0.0f;\n}\n",
            (long long)(D * inner), (long long)inner, (long long)D, (long long)st, (long long)inner, (long long)L,
            (long long)L, (long long)inner);
}

// The optimizer: every intermediate rounded to f32 (H_MUL, H_ADD, H_DIV are
// never contracted into fused multiply-adds), PyTorch's order of operations.
static void optim(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  elem_head(r, l, numel(r, n));
  if (n->op == IR_OP_OPT_ADAMW) {
    gr_printf(r, "  float p1 = H_MUL(x0[i], x3[0]), nss = -x4[0];\n"
                 "  float den = H_ADD(H_DIV(F_SQRT(x2[i]), x5[0]), %.9ef);\n"
                 "  y[i] = H_ADD(p1, H_DIV(H_MUL(nss, x1[i]), den));\n}\n", n->attr.eps);
    return;
  }
  gr_printf(r, "  float gc = H_MUL(x1[i], x2[0]), t = H_MUL(%.9ef, gc);\n", n->attr.scale);
  if (n->op == IR_OP_OPT_MOMENT2) gr_printf(r, "  t = H_MUL(t, gc);\n");
  gr_printf(r, "  y[i] = H_ADD(H_MUL(x0[i], %.9ef), t);\n}\n", n->attr.value);
}

// q (B,T,H*D), k, v (B,S,KV*D), dout (B,T,H*D)[, mask (B,S)].
static void attn_common(GpuR *r, const SchedKernel *k, int64_t *B, int64_t *T, int64_t *S, int64_t *H, int64_t *KV,
                        int64_t *D) {
  const IrNode *n = node(r, k->root);
  int64_t qd[IR_MAX_RANK], kd[IR_MAX_RANK];
  gr_dims(r, opnd(r, k, 0), qd);
  gr_dims(r, opnd(r, k, 1), kd);
  *B = qd[0], *T = qd[1], *S = kd[1], *H = n->attr.heads, *KV = n->attr.kv_heads, *D = qd[2] / *H;
}

// Emits the statistics of query row (b, t, h): m, sum (softmax), pdp
// (sum of p * (dout . v)); VIS(s) is the visibility test.
static void attn_row_stats(GpuR *r, const SchedKernel *k, int64_t T, int64_t S, int64_t H, int64_t KV, int64_t D,
                           const char *ind) {
  const IrNode *n = node(r, k->root);
  gr_printf(r, "%sGLOBAL const float *qr = x0 + ((b * %lldL + t) * %lldL + h) * %lldL, *dor = x3 + ((b * %lldL + t) * %lldL + h) * %lldL;\n"
               "%sfloat m = -H_INF, sum = 0.0f, pdp = 0.0f;\n",
            ind, (long long)T, (long long)H, (long long)D, (long long)T, (long long)H, (long long)D, ind);
  for (int pass = 0; pass < 2; pass++) {
    gr_printf(r, "%sfor (I64 s2 = 0; s2 < %lldL; s2++) {\n", ind, (long long)S);
    if (n->attr.causal) gr_printf(r, "%s  if (s2 > t + %lldL) break;\n", ind, (long long)(S - T));
    if (k->nopnd > 4) gr_printf(r, "%s  if (x4[b * %lldL + s2] == 0) continue;\n", ind, (long long)S);
    gr_printf(r, "%s  I64 kr = ((b * %lldL + s2) * %lldL + kh) * %lldL;\n%s  float dot = 0.0f;\n"
                 "%s  for (int d = 0; d < %lld; d++) dot += qr[d] * x1[kr + d];\n%s  float sc = %.9ef * dot;\n",
              ind, (long long)S, (long long)KV, (long long)D, ind, ind, (long long)D, ind, n->attr.scale);
    if (pass == 0)
      gr_printf(r, "%s  if (sc > m) {\n%s    sum = sum * F_EXP(m - sc);\n%s    m = sc;\n%s  }\n%s  sum += F_EXP(sc - m);\n",
                ind, ind, ind, ind, ind);
    else
      gr_printf(r, "%s  float dp = 0.0f;\n%s  for (int d = 0; d < %lld; d++) dp += dor[d] * x2[kr + d];\n"
                   "%s  pdp += F_EXP(sc - m) / sum * dp;\n",
                ind, ind, (long long)D, ind);
    gr_printf(r, "%s}\n", ind);
  }
}

static void attention_dq(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t B, T, S, H, KV, D;
  attn_common(r, k, &B, &T, &S, &H, &KV, &D);
  elem_head(r, l, B * T * H);
  gr_printf(r, "  I64 h = i %% %lldL, t = (i / %lldL) %% %lldL, b = i / %lldL, kh = h / %lldL;\n", (long long)H,
            (long long)H, (long long)T, (long long)(H * T), (long long)(H / KV));
  attn_row_stats(r, k, T, S, H, KV, D, "  ");
  gr_printf(r, "  float acc[%lld];\n  for (int d = 0; d < %lld; d++) acc[d] = 0.0f;\n"
               "  for (I64 s = 0; s < %lldL && sum > 0.0f; s++) {\n", (long long)D, (long long)D, (long long)S);
  if (n->attr.causal) gr_printf(r, "    if (s > t + %lldL) break;\n", (long long)(S - T));
  if (k->nopnd > 4) gr_printf(r, "    if (x4[b * %lldL + s] == 0) continue;\n", (long long)S);
  gr_printf(r, "    I64 kr = ((b * %lldL + s) * %lldL + kh) * %lldL;\n    float dot = 0.0f, dp = 0.0f;\n"
               "    for (int d = 0; d < %lld; d++) {\n      dot += qr[d] * x1[kr + d];\n      dp += dor[d] * x2[kr + d];\n    }\n"
               "    float p = F_EXP(%.9ef * dot - m) / sum, ds = p * (dp - pdp);\n"
               "    for (int d = 0; d < %lld; d++) acc[d] += %.9ef * ds * x1[kr + d];\n  }\n"
               "  for (int d = 0; d < %lld; d++) y[i * %lldL + d] = acc[d];\n}\n",
            (long long)S, (long long)KV, (long long)D, (long long)D, n->attr.scale, (long long)D, n->attr.scale,
            (long long)D, (long long)D);
}

// dk, dv of key row s, kv head kh: over the query heads of the group and
// the query rows that see s, in the interpreter's order (h, then t).
static void attention_dkv(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t B, T, S, H, KV, D;
  attn_common(r, k, &B, &T, &S, &H, &KV, &D);
  bool dk = n->op == IR_OP_ATTENTION_DK;
  elem_head(r, l, B * S * KV);
  gr_printf(r, "  I64 kh = i %% %lldL, s = (i / %lldL) %% %lldL, b = i / %lldL;\n  float acc[%lld];\n"
               "  for (int d = 0; d < %lld; d++) acc[d] = 0.0f;\n",
            (long long)KV, (long long)KV, (long long)S, (long long)(KV * S), (long long)D, (long long)D);
  if (k->nopnd > 4) gr_printf(r, "  if (x4[b * %lldL + s] != 0)\n", (long long)S);
  gr_printf(r, "  for (I64 h = kh * %lldL; h < (kh + 1) * %lldL; h++)\n  for (I64 t = 0; t < %lldL; t++) {\n",
            (long long)(H / KV), (long long)(H / KV), (long long)T);
  if (n->attr.causal) gr_printf(r, "    if (s > t + %lldL) continue;\n", (long long)(S - T));
  attn_row_stats(r, k, T, S, H, KV, D, "    ");
  gr_printf(r, "    I64 kr = ((b * %lldL + s) * %lldL + kh) * %lldL;\n    float dot = 0.0f, dp = 0.0f;\n"
               "    for (int d = 0; d < %lld; d++) {\n      dot += qr[d] * x1[kr + d];\n      dp += dor[d] * x2[kr + d];\n    }\n"
               "    float p = F_EXP(%.9ef * dot - m) / sum, ds = p * (dp - pdp);\n",
            (long long)S, (long long)KV, (long long)D, (long long)D, n->attr.scale);
  if (dk) gr_printf(r, "    for (int d = 0; d < %lld; d++) acc[d] += %.9ef * ds * qr[d];\n  }\n", (long long)D, n->attr.scale);
  else gr_printf(r, "    for (int d = 0; d < %lld; d++) acc[d] += p * dor[d];\n  }\n", (long long)D);
  gr_printf(r, "  for (int d = 0; d < %lld; d++) y[i * %lldL + d] = acc[d];\n}\n", (long long)D, (long long)D);
}

void gr_grad_kernel(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  switch (node(r, k->root)->op) {
  case IR_OP_UNARY_GRAD: unary_grad(r, l, k); break;
  case IR_OP_MAXIMUM_GRAD: maximum_grad(r, l, k); break;
  case IR_OP_REDUCE_GRAD: reduce_grad(r, l, k); break;
  case IR_OP_SOFTMAX_GRAD: case IR_OP_LOG_SOFTMAX_GRAD: softmax_grad(r, l, k); break;
  case IR_OP_LAYERNORM_DX: case IR_OP_RMSNORM_DX: norm_dx(r, l, k); break;
  case IR_OP_LAYERNORM_DW: case IR_OP_RMSNORM_DW: norm_dw(r, l, k); break;
  case IR_OP_XENT_GRAD: xent_grad(r, l, k); break;
  case IR_OP_GATHER_GRAD: gather_grad(r, l, k); break;
  case IR_OP_SLICE_GRAD: slice_grad(r, l, k); break;
  case IR_OP_ATTENTION_DQ: attention_dq(r, l, k); break;
  case IR_OP_ATTENTION_DK: case IR_OP_ATTENTION_DV: attention_dkv(r, l, k); break;
  default: optim(r, l, k); break;
  }
}
