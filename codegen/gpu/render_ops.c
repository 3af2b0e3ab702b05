// codegen/gpu/render_ops.c: one kernel body per op, as text shared by both
// dialects (render.c's preludes spell the differences). The reference
// semantics are ir/kernels.c's; each kernel says how it is split:
//   elementwise, shape ops, gather, rope, kv append: a work-item per element
//   reductions (sum/mean/max/min, sum_to): a work-item per result element,
//     the reduced elements in row-major order (the interpreter's order)
//   softmax, layernorm, rmsnorm: a work-group per row, tree reductions in
//     local memory (fixed order: deterministic, no atomics)
//   matmul: 16 x 16 tiles of C per work-group, A and B tiles in local memory
//   attention: a work-item per (batch, query, head), online softmax over
//     the keys (no T x S matrix), grouped-query heads, causal or masked
//   cross entropy: one work-group, rows over its items, a tree reduction
#include <math.h>
#include <string.h>

#include "codegen/gpu/render.h"

bool gr_op_supported(IrOp op) {
  if ((ir_op_is(op, IR_OPF_ELEMENTWISE) && op < IR_OP_UNARY_GRAD) || gr_grad_supported(op)) return true;
  switch (op) {
  case IR_OP_CONST: case IR_OP_POSITIONS: case IR_OP_MATMUL: case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX:
  case IR_OP_MIN: case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: case IR_OP_LAYERNORM: case IR_OP_RMSNORM:
  case IR_OP_RESHAPE: case IR_OP_PERMUTE: case IR_OP_SLICE: case IR_OP_CONCAT: case IR_OP_EXPAND:
  case IR_OP_SUM_TO: case IR_OP_GATHER: case IR_OP_ATTENTION: case IR_OP_ROPE: case IR_OP_XENT:
  case IR_OP_KV_APPEND: case IR_OP_ATTENTION_KV: case IR_OP_ROPE_AT:
    return true;
  default: return false;
  }
}

static const IrNode *node(const GpuR *r, int id) { return r->g->nodes.data[id]; }
static const IrNode *opnd(const GpuR *r, const SchedKernel *k, int j) { return node(r, k->opnd[j]); }

// "I64 i = GID0; if (i >= n) return;"
static void elem_head(GpuR *r, CgGpuLaunch *l, int64_t n) {
  gr_printf(r, "  I64 i = GID0;\n  if (i >= %lldL) return;\n", (long long)n);
  gr_launch_1d(l, n, 64);
}

// ---- elementwise ----

static const char *unary_expr(IrOp op) {
  switch (op) {
  case IR_OP_NEG: return "-a";
  case IR_OP_EXP: return "F_EXP(a)";
  case IR_OP_LOG: return "F_LOG(a)";
  case IR_OP_SQRT: return "F_SQRT(a)";
  case IR_OP_RSQRT: return "1.0f / F_SQRT(a)";
  case IR_OP_TANH: return "F_TANH(a)";
  case IR_OP_SIGMOID: return "H_SIGMOID(a)";
  case IR_OP_RELU: return "(a < 0 ? 0 : a)";
  case IR_OP_GELU: return "0.5f * a * (1.0f + F_ERF(a * 0.70710678118654752f))";
  case IR_OP_GELU_TANH: return "0.5f * a * (1.0f + F_TANH(0.79788456080286536f * (a + 0.044715f * a * a * a)))";
  case IR_OP_SILU: return "a * H_SIGMOID(a)";
  case IR_OP_ABS: return "(a < 0 ? -a : a)";
  default: return "a";  // CAST, DROPOUT (identity outside training)
  }
}

static void elementwise(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t od[IR_MAX_RANK], xd[IR_MAX_RANK], st[IR_MAX_RANK];
  gr_dims(r, n, od);
  int64_t numel = gr_prod(od, 0, n->ty.rank);
  bool fl = ir_dtype_info[n->ty.dt].is_float;
  const char *ct = fl ? "float" : gr_ctype(n->ty.dt), *vn[3] = {"a", "b", "c"};
  elem_head(r, l, numel);
  for (int j = 0; j < k->nopnd; j++) {
    const IrNode *x = opnd(r, k, j);
    gr_dims(r, x, xd);
    gr_bcast_strides(xd, x->ty.rank, n->ty.rank, st);
    bool cond = n->op == IR_OP_WHERE && j == 0;
    const char *xt = cond ? "bool" : n->op == IR_OP_CAST ? gr_ctype(x->ty.dt) : ct;
    if (n->op == IR_OP_CAST && ir_dtype_info[x->ty.dt].is_float) xt = "float";
    gr_printf(r, "  %s %s = %s(x%d[", xt, vn[j], cond ? "0 != " : n->op == IR_OP_CAST ? "" : "(", j);
    gr_offset(r, "i", od, n->ty.rank, st);
    gr_printf(r, "]%s);\n", cond || n->op == IR_OP_CAST ? "" : ")");
  }
  const char *e;
  switch (n->op) {
  case IR_OP_ADD: e = "a + b"; break;
  case IR_OP_SUB: e = "a - b"; break;
  case IR_OP_MUL: e = "a * b"; break;
  case IR_OP_DIV: e = "a / b"; break;
  case IR_OP_MAXIMUM: e = fl ? "H_MAXNAN(a, b)" : "(a > b ? a : b)"; break;
  case IR_OP_MINIMUM: e = fl ? "H_MINNAN(a, b)" : "(a < b ? a : b)"; break;
  case IR_OP_WHERE: e = "a ? b : c"; break;
  case IR_OP_CAST: e = n->ty.dt == IR_BOOL ? "(a != 0)" : "a"; break;
  default: e = unary_expr(n->op); break;
  }
  gr_printf(r, "  y[i] = (%s)(%s);\n}\n", gr_ctype(n->ty.dt), e);
}

// ---- leaves computed on the device, shape ops ----

static void fill(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t od[IR_MAX_RANK];
  gr_dims(r, n, od);
  elem_head(r, l, gr_prod(od, 0, n->ty.rank));
  if (n->op == IR_OP_POSITIONS) gr_printf(r, "  y[i] = (%s)i;\n}\n", gr_ctype(n->ty.dt));
  else gr_printf(r, "  y[i] = (%s)(%.9g);\n}\n", gr_ctype(n->ty.dt), n->attr.value);
}

// PERMUTE, EXPAND, SLICE, RESHAPE: y[i] = x0[start + sum of coordinate * stride].
static void strided_copy(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *x = opnd(r, k, 0);
  int rank = n->ty.rank;
  int64_t od[IR_MAX_RANK], xd[IR_MAX_RANK], own[IR_MAX_RANK], st[IR_MAX_RANK], start = 0;
  gr_dims(r, n, od);
  gr_dims(r, x, xd);
  int64_t numel = gr_prod(od, 0, rank);
  elem_head(r, l, numel);
  if (n->op == IR_OP_RESHAPE) {
    gr_printf(r, "  y[i] = x0[i];\n}\n");
    return;
  }
  if (n->op == IR_OP_EXPAND) {
    gr_bcast_strides(xd, x->ty.rank, rank, st);
  } else {
    int64_t s = 1;  // the operand's own strides (no broadcasting)
    for (int a = x->ty.rank - 1; a >= 0; a--) own[a] = s, s *= xd[a];
    for (int a = 0; a < rank; a++) st[a] = n->op == IR_OP_PERMUTE ? own[n->attr.perm[a]] : own[a];
    if (n->op == IR_OP_SLICE) {
      int ax = (int)n->attr.axis;
      int64_t s0 = n->attr.start < 0 ? n->attr.start + xd[ax] : n->attr.start;
      start = s0 * own[ax];
    }
  }
  for (int a = 0; a < rank; a++)
    if (od[a] == 1) st[a] = 0;
  gr_printf(r, "  y[i] = x0[%lldL + ", (long long)start);
  gr_offset(r, "i", od, rank, st);
  gr_printf(r, "];\n}\n");
}

static void concat(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t od[IR_MAX_RANK], xd[IR_MAX_RANK];
  gr_dims(r, n, od);
  int ax = (int)n->attr.axis;
  int64_t inner = gr_prod(od, ax + 1, n->ty.rank), total = od[ax], at = 0;
  elem_head(r, l, gr_prod(od, 0, n->ty.rank));
  gr_printf(r, "  I64 o = i / %lldL, c = (i / %lldL) %% %lldL, e = i %% %lldL;\n", (long long)(inner * total),
            (long long)inner, (long long)total, (long long)inner);
  for (int j = 0; j < k->nopnd; j++) {
    gr_dims(r, opnd(r, k, j), xd);
    int64_t nj = xd[ax];
    gr_printf(r, "  %sif (c < %lldL) y[i] = x%d[(o * %lldL + c - %lldL) * %lldL + e];\n", j ? "else " : "",
              (long long)(at + nj), j, (long long)nj, (long long)at, (long long)inner);
    at += nj;
  }
  gr_printf(r, "}\n");
}

// table (N, ...) [idx (...)]: an index outside the table gives zeros.
static void gather(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *t = opnd(r, k, 0);
  int64_t od[IR_MAX_RANK], td[IR_MAX_RANK];
  gr_dims(r, n, od);
  gr_dims(r, t, td);
  int64_t row = gr_prod(td, 1, t->ty.rank);
  elem_head(r, l, gr_prod(od, 0, n->ty.rank));
  gr_printf(r, "  I64 v = (I64)x1[i / %lldL];\n  y[i] = v >= 0 && v < %lldL ? x0[v * %lldL + i %% %lldL] : 0;\n}\n",
            (long long)row, (long long)td[0], (long long)row, (long long)row);
}

// ---- reductions: a work-item per result element ----

static void reduce(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *x = opnd(r, k, 0);
  int rank = x->ty.rank;
  int64_t xd[IR_MAX_RANK], od[IR_MAX_RANK], own[IR_MAX_RANK], kd[IR_MAX_RANK], ks[IR_MAX_RANK], rd[IR_MAX_RANK],
      rs[IR_MAX_RANK];
  gr_dims(r, x, xd);
  gr_dims(r, n, od);
  uint32_t mask = sched_reduce_axes(n);
  if (n->op == IR_OP_SUM_TO) {  // the axes the result lacks or has size 1 on
    mask = 0;
    for (int a = 0; a < rank; a++) {
      int j = a - (rank - n->ty.rank);
      if (j < 0 || od[j] == 1) mask |= 1u << a;
    }
  }
  int nk = 0, nr = 0;
  int64_t s = 1, count = 1;
  for (int a = rank - 1; a >= 0; a--) own[a] = s, s *= xd[a];
  for (int a = 0; a < rank; a++) {
    if (mask >> a & 1) rd[nr] = xd[a], rs[nr++] = own[a], count *= xd[a];
    else kd[nk] = xd[a], ks[nk++] = own[a];
  }
  int64_t numel = gr_prod(kd, 0, nk);
  const char *ct = ir_dtype_info[n->ty.dt].is_float ? "float" : gr_ctype(n->ty.dt);
  bool mx = n->op == IR_OP_MAX, mn = n->op == IR_OP_MIN;
  elem_head(r, l, numel);
  gr_printf(r, "  I64 base = ");
  gr_offset(r, "i", kd, nk, ks);
  gr_printf(r, ";\n  %s acc = %s;\n  for (I64 j = 0; j < %lldL; j++) {\n    %s v = (%s)x0[base + ", ct,
            mx ? "-H_INF" : mn ? "H_INF" : "0", (long long)count, ct, ct);
  gr_offset(r, "j", rd, nr, rs);
  gr_printf(r, "];\n    acc = %s;\n  }\n", mx ? "H_MAXNAN(acc, v)" : mn ? "H_MINNAN(acc, v)" : "acc + v");
  if (n->op == IR_OP_MEAN) gr_printf(r, "  acc = acc / (float)%lld;\n", (long long)count);
  gr_printf(r, "  y[i] = (%s)acc;\n}\n", gr_ctype(n->ty.dt));
}

// ---- row kernels: a work-group per row, tree reductions in local memory ----

// v = the group's reduction of v (op: "+" or "max") over its GR_WG items.
static void tree(GpuR *r, const char *v, bool max) {
  gr_printf(r, "  red[t] = %s;\n  BARRIER();\n  for (int h = %d; h > 0; h >>= 1) {\n"
               "    if (t < h) red[t] = %s;\n    BARRIER();\n  }\n  %s = red[0];\n  BARRIER();\n",
            v, GR_WG / 2, max ? "F_MAX(red[t], red[t + h])" : "red[t] + red[t + h]", v);
}

static void row_head(GpuR *r, CgGpuLaunch *l, int64_t rows) {
  gr_printf(r, "  LOCAL float red[%d];\n  int t = (int)LID0;\n  I64 row = GRP0;\n", GR_WG);
  l->global[0] = (size_t)(rows < 1 ? 1 : rows) * GR_WG;
  l->global[1] = l->global[2] = 1;
  l->local[0] = GR_WG, l->local[1] = l->local[2] = 1;
}

static void softmax(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  int ax = (int)n->attr.axis;
  int64_t outer = gr_prod(d, 0, ax), len = d[ax], inner = gr_prod(d, ax + 1, n->ty.rank);
  row_head(r, l, outer * inner);
  gr_printf(r, "  I64 at = (row / %lldL) * %lldL + row %% %lldL;\n", (long long)inner, (long long)(len * inner),
            (long long)inner);
  gr_printf(r, "  float mx = -H_INF, sum = 0.0f;\n  for (I64 c = t; c < %lldL; c += %d) mx = F_MAX(mx, x0[at + c * %lldL]);\n",
            (long long)len, GR_WG, (long long)inner);
  tree(r, "mx", true);
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) sum += F_EXP(x0[at + c * %lldL] - mx);\n", (long long)len,
            GR_WG, (long long)inner);
  tree(r, "sum", false);
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) {\n    float v = x0[at + c * %lldL] - mx;\n", (long long)len,
            GR_WG, (long long)inner);
  gr_printf(r, "    y[at + c * %lldL] = %s;\n  }\n}\n", (long long)inner,
            n->op == IR_OP_LOG_SOFTMAX ? "v - F_LOG(sum)" : "F_EXP(v) / sum");
}

static void norm(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  int64_t C = d[n->ty.rank - 1], rows = C ? gr_prod(d, 0, n->ty.rank) / C : 0;
  bool ln = n->op == IR_OP_LAYERNORM;
  row_head(r, l, rows);
  gr_printf(r, "  GLOBAL const float *x = x0 + row * %lldL;\n  float mean = 0.0f, var = 0.0f;\n", (long long)C);
  if (ln) {
    gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) mean += x[c];\n", (long long)C, GR_WG);
    tree(r, "mean", false);
    gr_printf(r, "  mean = mean / (float)%lld;\n", (long long)C);
  }
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) var += (x[c] - mean) * (x[c] - mean);\n", (long long)C, GR_WG);
  tree(r, "var", false);
  gr_printf(r, "  float inv = 1.0f / F_SQRT(var / (float)%lld + %.9ef);\n", (long long)C, n->attr.eps);
  gr_printf(r, "  for (I64 c = t; c < %lldL; c += %d) y[row * %lldL + c] = (x[c] - mean) * inv * x1[c]%s;\n}\n",
            (long long)C, GR_WG, (long long)C, ln ? " + x2[c]" : "");
}

// logits (rows, V), targets (rows) -> the mean over kept rows, one group.
static void xent(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *x = opnd(r, k, 0), *tg = opnd(r, k, 1);
  int64_t xd[IR_MAX_RANK], td[IR_MAX_RANK];
  gr_dims(r, x, xd);
  gr_dims(r, tg, td);
  int64_t V = xd[x->ty.rank - 1], rows = gr_prod(td, 0, tg->ty.rank);
  row_head(r, l, 1);
  (void)n;
  gr_printf(r, "  float loss = 0.0f, kept = 0.0f;\n  for (I64 i = t; i < %lldL; i += %d) {\n"
               "    I64 c0 = (I64)x1[i];\n    if (c0 == %lldL || c0 < 0 || c0 >= %lldL) continue;\n"
               "    GLOBAL const float *x = x0 + i * %lldL;\n    float mx = -H_INF, sum = 0.0f;\n"
               "    for (I64 c = 0; c < %lldL; c++) mx = F_MAX(mx, x[c]);\n"
               "    for (I64 c = 0; c < %lldL; c++) sum += F_EXP(x[c] - mx);\n"
               "    loss += mx + F_LOG(sum) - x[c0];\n    kept += 1.0f;\n  }\n",
            (long long)rows, GR_WG, (long long)n->attr.ignore, (long long)V, (long long)V, (long long)V, (long long)V);
  tree(r, "loss", false);
  tree(r, "kept", false);
  gr_printf(r, "  if (t == 0) y[0] = kept > 0.0f ? loss / kept : 0.0f;\n}\n");
}

// ---- matmul: 16 x 16 tiles, local memory ----

static void matmul(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *a = opnd(r, k, 0), *b = opnd(r, k, 1);
  int rr = n->ty.rank;
  int64_t od[IR_MAX_RANK], ad[IR_MAX_RANK], bd[IR_MAX_RANK], sa[IR_MAX_RANK], sb[IR_MAX_RANK];
  gr_dims(r, n, od);
  gr_dims(r, a, ad);
  gr_dims(r, b, bd);
  int64_t M = ad[a->ty.rank - 2], K = ad[a->ty.rank - 1], N = bd[b->ty.rank - 1], nb = gr_prod(od, 0, rr - 2);
  gr_bcast_strides(ad, a->ty.rank - 2, rr - 2, sa);
  gr_bcast_strides(bd, b->ty.rank - 2, rr - 2, sb);
  gr_printf(r, "  LOCAL float ta[16][17];\n  LOCAL float tb[16][17];\n  int tx = (int)LID0, ty = (int)LID1;\n"
               "  I64 z = GRP2, col = GRP0 * 16 + tx, row = GRP1 * 16 + ty;\n  GLOBAL const float *A = x0 + (");
  gr_offset(r, "z", od, rr - 2, sa);
  gr_printf(r, ") * %lldL;\n  GLOBAL const float *B = x1 + (", (long long)(M * K));
  gr_offset(r, "z", od, rr - 2, sb);
  gr_printf(r, ") * %lldL;\n  float acc = 0.0f;\n  for (I64 k0 = 0; k0 < %lldL; k0 += 16) {\n"
               "    ta[ty][tx] = row < %lldL && k0 + tx < %lldL ? A[row * %lldL + k0 + tx] : 0.0f;\n"
               "    tb[ty][tx] = k0 + ty < %lldL && col < %lldL ? B[(k0 + ty) * %lldL + col] : 0.0f;\n"
               "    BARRIER();\n    for (int kk = 0; kk < 16; kk++) acc += ta[ty][kk] * tb[kk][tx];\n"
               "    BARRIER();\n  }\n  if (row < %lldL && col < %lldL) y[z * %lldL + row * %lldL + col] = acc;\n}\n",
            (long long)(K * N), (long long)K, (long long)M, (long long)K, (long long)K, (long long)K, (long long)N,
            (long long)N, (long long)M, (long long)N, (long long)(M * N), (long long)N);
  l->global[0] = (size_t)((N + 15) / 16 * 16), l->global[1] = (size_t)((M + 15) / 16 * 16);
  l->global[2] = (size_t)(nb < 1 ? 1 : nb);
  l->local[0] = l->local[1] = 16, l->local[2] = 1;
}

// ---- Transformer ops ----

// q (B,T,H*D), k, v (B,S,KV*D) [, mask (B,S)]; ATTENTION_KV: caches
// (B,S,KV*D) and pos: query t sees rows 0..pos+t.
static void attention(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *q = opnd(r, k, 0), *kk = opnd(r, k, 1);
  int64_t qd[IR_MAX_RANK], kd[IR_MAX_RANK];
  gr_dims(r, q, qd);
  gr_dims(r, kk, kd);
  bool kv = n->op == IR_OP_ATTENTION_KV, causal = kv || n->attr.causal, mask = !kv && k->nopnd > 3;
  int64_t B = qd[0], T = qd[1], S = kd[1], H = n->attr.heads, KV = n->attr.kv_heads, D = qd[2] / H;
  elem_head(r, l, B * T * H);
  gr_printf(r, "  I64 h = i %% %lldL, t = (i / %lldL) %% %lldL, b = i / %lldL, kh = h / %lldL;\n", (long long)H,
            (long long)H, (long long)T, (long long)(H * T), (long long)(H / KV));
  if (kv) gr_printf(r, "  I64 len = (I64)x3[0] + %lldL;\n", (long long)T);  // the rows in use: pos + T
  else gr_printf(r, "  I64 len = %lldL;\n", (long long)S);
  gr_printf(r, "  GLOBAL const float *qr = x0 + ((b * %lldL + t) * %lldL + h) * %lldL;\n  float acc[%lld];\n"
               "  for (int d = 0; d < %lld; d++) acc[d] = 0.0f;\n  float m = -H_INF, sum = 0.0f;\n"
               "  for (I64 s = 0; s < len; s++) {\n",
            (long long)T, (long long)H, (long long)D, (long long)D, (long long)D);
  if (causal) gr_printf(r, "    if (s > t + (len - %lldL)) break;\n", (long long)T);
  if (mask) gr_printf(r, "    if (x3[b * %lldL + s] == 0) continue;\n", (long long)S);
  gr_printf(r, "    I64 kr = ((b * %lldL + s) * %lldL + kh) * %lldL;\n    float dot = 0.0f;\n"
               "    for (int d = 0; d < %lld; d++) dot += qr[d] * x1[kr + d];\n    float sc = %.9ef * dot;\n"
               "    if (sc > m) {\n      float f = F_EXP(m - sc);\n      sum *= f;\n"
               "      for (int d = 0; d < %lld; d++) acc[d] *= f;\n      m = sc;\n    }\n"
               "    float p = F_EXP(sc - m);\n    sum += p;\n"
               "    for (int d = 0; d < %lld; d++) acc[d] += p * x2[kr + d];\n  }\n"
               "  GLOBAL float *o = y + i * %lldL;\n"
               "  for (int d = 0; d < %lld; d++) o[d] = sum > 0.0f ? acc[d] / sum : 0.0f;\n}\n",
            (long long)S, (long long)KV, (long long)D, (long long)D, n->attr.scale, (long long)D, (long long)D,
            (long long)D, (long long)D);
}

// x (B,T,H*D): pairs rotated by (off + t) * base^(-2i/D); the frequencies
// are computed here in double, as the interpreter does.
static void rope(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  int64_t d[IR_MAX_RANK];
  gr_dims(r, n, d);
  int64_t T = d[1], C = d[2], D = C / n->attr.heads, half = D / 2;
  elem_head(r, l, gr_prod(d, 0, 3));
  gr_printf(r, "  const float fr[%lld] = {", (long long)(half ? half : 1));
  for (int64_t i = 0; i < half; i++) gr_printf(r, "%s%.9ef", i ? ", " : "", pow(n->attr.base, -2.0 * (double)i / (double)D));
  gr_printf(r, "%s};\n", half ? "" : "0");
  gr_printf(r, "  I64 c = i %% %lldL, t = (i / %lldL) %% %lldL, j = c %% %lldL, hb = i - j;\n", (long long)C,
            (long long)C, (long long)T, (long long)D);
  if (n->attr.interleaved)
    gr_printf(r, "  I64 p = j / 2, ia = hb + 2 * p, ib = ia + 1;\n  bool first = j %% 2 == 0;\n");
  else
    gr_printf(r, "  I64 p = j < %lldL ? j : j - %lldL, ia = hb + p, ib = ia + %lldL;\n  bool first = j < %lldL;\n",
              (long long)half, (long long)half, (long long)half, (long long)half);
  gr_printf(r, "  float ang = (float)(%s + t) * fr[p];\n", n->op == IR_OP_ROPE_AT ? "(I64)x1[0]" : "0");
  if (n->attr.inverse) gr_printf(r, "  ang = -ang;\n");
  gr_printf(r, "  float cs = F_COS(ang), sn = F_SIN(ang), xa = x0[ia], xb = x0[ib];\n"
               "  y[i] = first ? xa * cs - xb * sn : xa * sn + xb * cs;\n}\n");
}

// cache (B,S,C), new (B,T,C), pos -> the cache with rows pos..pos+T-1 = new.
static void kv_append(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root), *nw = opnd(r, k, 1);
  int64_t d[IR_MAX_RANK], nd[IR_MAX_RANK];
  gr_dims(r, n, d);
  gr_dims(r, nw, nd);
  int64_t S = d[1], C = d[2], T = nd[1];
  elem_head(r, l, gr_prod(d, 0, 3));
  gr_printf(r, "  I64 pos = (I64)x2[0], c = i %% %lldL, s = (i / %lldL) %% %lldL, b = i / %lldL;\n"
               "  y[i] = s >= pos && s < pos + %lldL ? x1[(b * %lldL + s - pos) * %lldL + c] : x0[i];\n}\n",
            (long long)C, (long long)C, (long long)S, (long long)(S * C), (long long)T, (long long)T, (long long)C);
}

void gr_kernel(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = node(r, k->root);
  gr_printf(r, "\n// %s: node %d\n", ir_op_name(n->op), k->root);
  gr_signature(r, l, k);
  switch (n->op) {
  case IR_OP_CONST: case IR_OP_POSITIONS: fill(r, l, k); break;
  case IR_OP_MATMUL: matmul(r, l, k); break;
  case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN: case IR_OP_SUM_TO: reduce(r, l, k); break;
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: softmax(r, l, k); break;
  case IR_OP_LAYERNORM: case IR_OP_RMSNORM: norm(r, l, k); break;
  case IR_OP_RESHAPE: case IR_OP_PERMUTE: case IR_OP_SLICE: case IR_OP_EXPAND: strided_copy(r, l, k); break;
  case IR_OP_CONCAT: concat(r, l, k); break;
  case IR_OP_GATHER: gather(r, l, k); break;
  case IR_OP_ATTENTION: case IR_OP_ATTENTION_KV: attention(r, l, k); break;
  case IR_OP_ROPE: case IR_OP_ROPE_AT: rope(r, l, k); break;
  case IR_OP_XENT: xent(r, l, k); break;
  case IR_OP_KV_APPEND: kv_append(r, l, k); break;
  default:
    if (gr_grad_supported(n->op)) gr_grad_kernel(r, l, k);
    else elementwise(r, l, k);
    break;
  }
}
