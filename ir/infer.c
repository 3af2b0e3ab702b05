// ir/infer.c: shape and dtype inference for every IR op (ir_infer). The
// frontend has already checked the user's program with friendlier messages;
// these rules guard the IR itself: builders, autodiff, passes and the IR
// text parser all go through them, and ir_verify re-runs them after passes.
#include <string.h>

#include "ir/ir.h"



static bool fail(IrGraph *g, SrcLoc loc, IrOp op, const char *what, const IrType *a, const IrType *b) {
  char s1[256], s2[256];
  if (b)
    diag_error(g->diag, loc, "%s: %s: %s and %s", ir_op_name(op), what, ir_type_str(a, &g->syms, true, s1, sizeof s1),
               ir_type_str(b, &g->syms, true, s2, sizeof s2));
  else if (a)
    diag_error(g->diag, loc, "%s: %s: %s", ir_op_name(op), what, ir_type_str(a, &g->syms, true, s1, sizeof s1));
  else
    diag_error(g->diag, loc, "%s: %s", ir_op_name(op), what);
  return false;
}

static bool is_float(const IrType *t) { return ir_dtype_info[t->dt].is_float; }

// x (..., C) with weight (C) [and bias (C)]
static bool norm_ok(const IrType *x, const IrType *w) {
  return x->rank >= 1 && w->rank == 1 && ir_dim_eq(w->dim[0], x->dim[x->rank - 1]) && w->dt == x->dt;
}

static bool attention_ok(IrGraph *g, IrOp op, IrNode *const *s, int n, const IrAttr *at, SrcLoc loc) {
  int base = op == IR_OP_ATTENTION ? 3 : 4;  // q, k, v [, dout]
  if (n != base && n != base + 1) return fail(g, loc, op, "wrong operand count", NULL, NULL);
  const IrType *q = &s[0]->ty, *k = &s[1]->ty, *v = &s[2]->ty;
  if (q->rank != 3 || k->rank != 3 || !ir_type_eq(k, v) || q->dt != k->dt || !is_float(q))
    return fail(g, loc, op, "q, k, v must be float (B,T,NH*HS), k and v alike", q, k);
  if (at->heads < 1 || at->kv_heads < 1 || at->heads % at->kv_heads)
    return fail(g, loc, op, "heads must be a positive multiple of kv_heads", NULL, NULL);
  IrDim qc = q->dim[2], kc = k->dim[2];
  if (!ir_dim_is_const(qc) || !ir_dim_is_const(kc) || qc.n % at->heads || kc.n % at->kv_heads ||
      qc.n / at->heads != kc.n / at->kv_heads || !ir_dim_eq(q->dim[0], k->dim[0]))
    return fail(g, loc, op, "head sizes of q and k differ", q, k);
  if (op != IR_OP_ATTENTION && !ir_type_eq(&s[3]->ty, q)) return fail(g, loc, op, "dout must match q", &s[3]->ty, q);
  if (n == base + 1) {
    const IrType *m = &s[base]->ty;
    bool keep = m->dt == IR_BOOL || ir_dtype_info[m->dt].is_int;  // bool or integer: non-zero keeps
    if (m->rank != 2 || !keep || !ir_dim_eq(m->dim[0], k->dim[0]) || !ir_dim_eq(m->dim[1], k->dim[1]))
      return fail(g, loc, op, "mask must be bool or integer (B,S)", m, k);
  }
  return true;
}

static bool is_pos(const IrType *t) { return t->rank == 0 && ir_dtype_info[t->dt].is_int; }

// KV_APPEND, ATTENTION_KV: caches (B,S,C) of q's batch and dtype; pos an integer scalar.
static bool kv_ok(IrGraph *g, IrOp op, IrNode *const *s, const IrAttr *at, SrcLoc loc) {
  const IrType *x = &s[0]->ty, *y = &s[1]->ty, *p = &s[op == IR_OP_KV_APPEND ? 2 : 3]->ty;
  if (!is_pos(p)) return fail(g, loc, op, "pos must be an integer scalar", p, NULL);
  if (op == IR_OP_KV_APPEND) {
    if (x->rank != 3 || y->rank != 3 || x->dt != y->dt || !is_float(x) || !ir_dim_eq(x->dim[0], y->dim[0]) ||
        !ir_dim_eq(x->dim[2], y->dim[2]))
      return fail(g, loc, op, "needs a float cache (B,S,C) and new rows (B,T,C)", x, y);
    return true;
  }
  const IrType *k = y, *v = &s[2]->ty;
  if (x->rank != 3 || k->rank != 3 || !ir_type_eq(k, v) || x->dt != k->dt || !is_float(x) ||
      !ir_dim_eq(x->dim[0], k->dim[0]))
    return fail(g, loc, op, "q (B,T,NH*HS) and caches (B,S,KV*HS) alike", x, k);
  if (at->heads < 1 || at->kv_heads < 1 || at->heads % at->kv_heads)
    return fail(g, loc, op, "heads must be a positive multiple of kv_heads", NULL, NULL);
  IrDim qc = x->dim[2], kc = k->dim[2];
  if (!ir_dim_is_const(qc) || !ir_dim_is_const(kc) || qc.n % at->heads || kc.n % at->kv_heads ||
      qc.n / at->heads != kc.n / at->kv_heads)
    return fail(g, loc, op, "head sizes of q and k differ", x, k);
  return true;
}

static bool reduce_ok(const IrType *x, const IrAttr *at, IrType *out) {
  if (at->axes >> x->rank) return false;
  IrType t = {.dt = x->dt};
  for (int i = 0; i < x->rank; i++) {
    if (!(at->axes >> i & 1)) t.dim[t.rank++] = x->dim[i];
    else if (at->keepdim) t.dim[t.rank++] = ir_dim_const(1);
  }
  *out = t;
  return true;
}

static bool concat_type(IrNode *const *s, int n, int64_t axis, IrType *out) {
  IrType t = s[0]->ty;
  if (axis < 0 || axis >= t.rank) return false;
  for (int i = 1; i < n; i++) {
    const IrType *y = &s[i]->ty;
    if (y->rank != t.rank || y->dt != t.dt) return false;
    for (int j = 0; j < t.rank; j++)
      if (j != axis && !ir_dim_eq(y->dim[j], t.dim[j])) return false;
    if (!ir_dim_add(t.dim[axis], y->dim[axis], &t.dim[axis])) return false;
  }
  *out = t;
  return true;
}

static bool matmul_type(const IrType *a, const IrType *b, IrType *out) {
  if (a->rank < 2 || b->rank < 2 || a->dt != b->dt || !ir_dtype_info[a->dt].is_float) return false;
  if (!ir_dim_eq(a->dim[a->rank - 1], b->dim[b->rank - 2])) return false;
  IrType ba = {.dt = a->dt, .rank = a->rank - 2}, bb = {.dt = b->dt, .rank = b->rank - 2}, t;
  memcpy(ba.dim, a->dim, sizeof(IrDim) * (size_t)ba.rank);
  memcpy(bb.dim, b->dim, sizeof(IrDim) * (size_t)bb.rank);
  if (!ir_broadcast_type(&ba, &bb, &t)) return false;
  t.dim[t.rank++] = a->dim[a->rank - 2];
  t.dim[t.rank++] = b->dim[b->rank - 1];
  *out = t;
  return true;
}

// Is `from` broadcastable to `to` (numpy rules, result exactly `to`)?
static bool expands_to(const IrType *from, const IrType *to) {
  IrType t;
  return from->dt == to->dt && ir_broadcast_type(to, from, &t) && ir_type_eq(&t, to);
}

static bool same_numel(const IrType *a, const IrType *b) {
  IrDim na = ir_dim_const(1), nb = ir_dim_const(1);
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_mul(na, a->dim[i], &na)) return false;
  for (int i = 0; i < b->rank; i++)
    if (!ir_dim_mul(nb, b->dim[i], &nb)) return false;
  return ir_dim_eq(na, nb);
}

bool ir_infer(IrGraph *g, IrOp op, IrNode *const *s, int n, const IrAttr *at, const IrType *hint, IrType *out,
              SrcLoc loc) {
  const IrOpInfo *info = &ir_op_info[op];
  if ((info->nsrc >= 0 && n != info->nsrc) || (info->nsrc < 0 && (n < 1 || n > IR_MAX_SRC)))
    return fail(g, loc, op, "wrong operand count", NULL, NULL);
  const IrType *x = n > 0 ? &s[0]->ty : NULL, *y = n > 1 ? &s[1]->ty : NULL;
  switch (op) {
  case IR_OP_INPUT:
  case IR_OP_PARAM:
  case IR_OP_CONST: return fail(g, loc, op, "is a leaf, built by its own builder", NULL, NULL);
  case IR_OP_POSITIONS:
    if (x->rank < 2) return fail(g, loc, op, "needs a sequence axis", x, NULL);
    *out = (IrType){.dt = IR_I32, .rank = 1, .dim = {x->dim[1]}};
    return true;
  case IR_OP_ADD: case IR_OP_SUB: case IR_OP_MUL: case IR_OP_DIV: case IR_OP_MAXIMUM: case IR_OP_MINIMUM:
    if (x->dt != y->dt || x->dt == IR_BOOL) return fail(g, loc, op, "operands need one numeric dtype", x, y);
    if (!ir_broadcast_type(x, y, out)) return fail(g, loc, op, "shapes do not broadcast", x, y);
    return true;
  case IR_OP_WHERE: {
    IrType c = *x, t;
    if (x->dt != IR_BOOL || y->dt != s[2]->ty.dt) return fail(g, loc, op, "needs bool, T, T", x, y);
    c.dt = y->dt;
    if (!ir_broadcast_type(&c, y, &t) || !ir_broadcast_type(&t, &s[2]->ty, out))
      return fail(g, loc, op, "shapes do not broadcast", y, &s[2]->ty);
    return true;
  }
  case IR_OP_NEG: case IR_OP_ABS: case IR_OP_RELU:
    if (x->dt == IR_BOOL) return fail(g, loc, op, "not defined on bool", x, NULL);
    *out = *x;
    return true;
  case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SQRT: case IR_OP_RSQRT: case IR_OP_TANH: case IR_OP_SIGMOID:
  case IR_OP_GELU: case IR_OP_GELU_TANH: case IR_OP_SILU: case IR_OP_DROPOUT: case IR_OP_SOFTMAX:
  case IR_OP_LOG_SOFTMAX:
    if (!is_float(x)) return fail(g, loc, op, "needs a float tensor", x, NULL);
    if ((op == IR_OP_SOFTMAX || op == IR_OP_LOG_SOFTMAX) && (at->axis < 0 || at->axis >= x->rank))
      return fail(g, loc, op, "axis out of range", x, NULL);
    *out = *x;
    return true;
  case IR_OP_CAST:
    if (!hint) return fail(g, loc, op, "needs a target dtype", NULL, NULL);
    *out = *x;
    out->dt = hint->dt;
    return true;
  case IR_OP_MATMUL:
    if (!matmul_type(x, y, out)) return fail(g, loc, op, "shapes do not multiply", x, y);
    return true;
  case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN:
    if (!reduce_ok(x, at, out) || x->dt == IR_BOOL) return fail(g, loc, op, "bad axes", x, NULL);
    return true;
  case IR_OP_LAYERNORM:
    if (!is_float(x) || !norm_ok(x, y) || !norm_ok(x, &s[2]->ty)) return fail(g, loc, op, "weight/bias must be (C)", x, y);
    *out = *x;
    return true;
  case IR_OP_RMSNORM:
    if (!is_float(x) || !norm_ok(x, y)) return fail(g, loc, op, "weight must be (C)", x, y);
    *out = *x;
    return true;
  case IR_OP_RESHAPE:
    if (!hint || hint->dt != x->dt || !same_numel(x, hint)) return fail(g, loc, op, "element counts differ", x, hint);
    *out = *hint;
    return true;
  case IR_OP_PERMUTE: {
    bool seen[IR_MAX_RANK] = {0};
    IrType t = *x;
    for (int i = 0; i < x->rank; i++) {
      int p = at->perm[i];
      if (p < 0 || p >= x->rank || seen[p]) return fail(g, loc, op, "not a permutation", x, NULL);
      seen[p] = true;
      t.dim[i] = x->dim[p];
    }
    *out = t;
    return true;
  }
  case IR_OP_SLICE: case IR_OP_SLICE_GRAD: {
    // SLICE: x -> hint; SLICE_GRAD: dy (the slice) -> hint (the source)
    const IrType *big = op == IR_OP_SLICE ? x : hint, *small = op == IR_OP_SLICE ? hint : x;
    if (!hint || at->axis < 0 || at->axis >= x->rank || big->rank != small->rank || big->dt != small->dt)
      return fail(g, loc, op, "bad slice", x, hint);
    for (int i = 0; i < big->rank; i++)
      if (i != at->axis && !ir_dim_eq(big->dim[i], small->dim[i])) return fail(g, loc, op, "bad slice", x, hint);
    IrDim d = big->dim[at->axis], l = small->dim[at->axis];
    if (!ir_dim_is_const(l) && !ir_dim_eq(d, l)) return fail(g, loc, op, "slice length must be constant", x, hint);
    if (ir_dim_is_const(d) && ir_dim_is_const(l)) {
      int64_t st = at->start < 0 ? at->start + d.n : at->start;
      if (st < 0 || st + l.n > d.n) return fail(g, loc, op, "slice out of range", x, hint);
    }
    *out = *hint;
    return true;
  }
  case IR_OP_CONCAT:
    if (!concat_type(s, n, at->axis, out)) return fail(g, loc, op, "operands do not concatenate", x, y);
    return true;
  case IR_OP_EXPAND:
    if (!hint || !expands_to(x, hint)) return fail(g, loc, op, "cannot broadcast", x, hint);
    *out = *hint;
    return true;
  case IR_OP_SUM_TO:
    if (!hint || !expands_to(hint, x)) return fail(g, loc, op, "cannot sum to", x, hint);
    *out = *hint;
    return true;
  case IR_OP_GATHER:
    if (x->rank < 1 || !ir_dtype_info[y->dt].is_int || y->rank + x->rank - 1 > IR_MAX_RANK)
      return fail(g, loc, op, "needs a table and integer indices", x, y);
    *out = (IrType){.dt = x->dt, .rank = y->rank + x->rank - 1};
    memcpy(out->dim, y->dim, sizeof(IrDim) * (size_t)y->rank);
    memcpy(out->dim + y->rank, x->dim + 1, sizeof(IrDim) * (size_t)(x->rank - 1));
    return true;
  case IR_OP_GATHER_GRAD:  // idx, dy -> table
    if (!hint || !ir_dtype_info[x->dt].is_int) return fail(g, loc, op, "needs indices and a table type", x, hint);
    *out = *hint;
    return true;
  case IR_OP_ATTENTION: case IR_OP_ATTENTION_DQ: case IR_OP_ATTENTION_DK: case IR_OP_ATTENTION_DV:
    if (!attention_ok(g, op, s, n, at, loc)) return false;
    *out = op == IR_OP_ATTENTION_DK ? *y : op == IR_OP_ATTENTION_DV ? s[2]->ty : *x;
    return true;
  case IR_OP_KV_APPEND: case IR_OP_ATTENTION_KV:
    if (!kv_ok(g, op, s, at, loc)) return false;
    *out = *x;
    return true;
  case IR_OP_ROPE: case IR_OP_ROPE_AT:
    if (op == IR_OP_ROPE_AT && !is_pos(y)) return fail(g, loc, op, "pos must be an integer scalar", y, NULL);
    if (x->rank != 3 || !is_float(x) || at->heads < 1 || !ir_dim_is_const(x->dim[2]) || x->dim[2].n % at->heads ||
        (x->dim[2].n / at->heads) % 2)
      return fail(g, loc, op, "needs (B,T,NH*HS) with an even head size", x, NULL);
    *out = *x;
    return true;
  case IR_OP_XENT: case IR_OP_XENT_GRAD: {
    IrType want = {.dt = y->dt, .rank = x->rank - 1};
    memcpy(want.dim, x->dim, sizeof(IrDim) * (size_t)(x->rank > 0 ? x->rank - 1 : 0));
    if (x->rank < 1 || !is_float(x) || !ir_dtype_info[y->dt].is_int || !ir_type_eq(&want, y))
      return fail(g, loc, op, "needs logits (...,V) and integer targets (...)", x, y);
    if (op == IR_OP_XENT_GRAD && s[2]->ty.rank != 0) return fail(g, loc, op, "dloss must be a scalar", &s[2]->ty, NULL);
    *out = op == IR_OP_XENT ? (IrType){.dt = IR_F32} : *x;
    return true;
  }
  case IR_OP_UNARY_GRAD: case IR_OP_REDUCE_GRAD:
    if (op == IR_OP_UNARY_GRAD && !ir_type_eq(x, &s[2]->ty)) return fail(g, loc, op, "x and dy differ", x, &s[2]->ty);
    if (op == IR_OP_REDUCE_GRAD && !ir_type_eq(y, &s[2]->ty)) return fail(g, loc, op, "y and dy differ", y, &s[2]->ty);
    *out = *x;
    return true;
  case IR_OP_SOFTMAX_GRAD: case IR_OP_LOG_SOFTMAX_GRAD:
    if (!ir_type_eq(x, y) || at->axis < 0 || at->axis >= x->rank) return fail(g, loc, op, "y and dy differ", x, y);
    *out = *x;
    return true;
  case IR_OP_LAYERNORM_DX: case IR_OP_RMSNORM_DX:
    if (!norm_ok(x, y) || !ir_type_eq(x, &s[2]->ty)) return fail(g, loc, op, "needs x, weight (C), dy", x, y);
    *out = *x;
    return true;
  case IR_OP_LAYERNORM_DW: case IR_OP_RMSNORM_DW:
    if (!ir_type_eq(x, y) || x->rank < 1) return fail(g, loc, op, "needs x and dy alike", x, y);
    *out = (IrType){.dt = x->dt, .rank = 1, .dim = {x->dim[x->rank - 1]}};
    return true;
  case IR_OP_MAXIMUM_GRAD: {
    IrType t;
    if (!ir_broadcast_type(x, y, &t) || !ir_type_eq(&t, &s[2]->ty)) return fail(g, loc, op, "dy must be a, b broadcast", x, y);
    *out = t;
    return true;
  }
  case IR_OP_OPT_MOMENT: case IR_OP_OPT_MOMENT2: case IR_OP_OPT_ADAMW: {
    int nt = op == IR_OP_OPT_ADAMW ? 3 : 2;  // tensor operands, then scalars
    for (int j = 0; j < n; j++)
      if (s[j]->ty.dt != IR_F32 || (j < nt ? !ir_type_eq(&s[j]->ty, x) : s[j]->ty.rank != 0))
        return fail(g, loc, op, "needs f32 tensors of one shape, then f32 scalars", x, &s[j]->ty);
    *out = *x;
    return true;
  }
  case IR_OP_COUNT: break;
  }
  return fail(g, loc, op, "unknown op", NULL, NULL);
}
