// frontend/value.c: the values the checker computes with (check.c): compile-
// time numbers with overflow checks and exact division, and tensor types with
// numpy broadcasting and matmul shape rules. Every rule that rejects a
// program reports a located diagnostic naming the shapes concretely.
#include <math.h>
#include <string.h>

#include "frontend/fe_internal.h"

FeVal fe_val_err(void) { return (FeVal){.k = FV_ERR}; }
FeVal fe_val_int(int64_t v, SrcLoc loc) { return (FeVal){.k = FV_INT, .i = v, .loc = loc}; }
FeVal fe_val_float(double v, SrcLoc loc) { return (FeVal){.k = FV_FLOAT, .f = v, .loc = loc}; }
FeVal fe_val_bool(bool v, SrcLoc loc) { return (FeVal){.k = FV_BOOL, .i = v, .loc = loc}; }
FeVal fe_val_tensor(const IrType *t, SrcLoc loc) {
  return (FeVal){.k = FV_TENSOR, .ty = *t, .loc = loc};
}

bool fe_val_is_num(const FeVal *v) { return v->k == FV_INT || v->k == FV_FLOAT; }
bool fe_val_is_const(const FeVal *v) { return fe_val_is_num(v) || v->k == FV_BOOL; }
double fe_val_num(const FeVal *v) { return v->k == FV_INT ? (double)v->i : v->f; }

const char *fe_val_kind_name(const FeVal *v) {
  switch (v->k) {
  case FV_ERR: return "an erroneous value";
  case FV_NONE: return "nothing";
  case FV_INT: return "an integer";
  case FV_FLOAT: return "a number";
  case FV_BOOL: return "a boolean";
  case FV_STR: return "a string";
  case FV_DTYPE: return "a dtype";
  case FV_TENSOR: return "a tensor";
  case FV_TUPLE: return "a tuple";
  case FV_LIST: return "a list";
  case FV_INST: return "a block instance";
  case FV_BLOCK: return "a block";
  case FV_BUILTIN: return "a builtin function";
  }
  return "a value";
}

const char *fe_dim_str(FeCk *ck, IrDim d) {
  char buf[128];
  return arena_strdup(ck->a, ir_dim_str(d, ck->syms, buf, sizeof buf));
}

const char *fe_type_str(FeCk *ck, const IrType *t) {
  char buf[512];
  return arena_strdup(ck->a, ir_type_str(t, ck->syms, true, buf, sizeof buf));
}

const char *fe_shape_str(FeCk *ck, const IrType *t) {
  char buf[512];
  return arena_strdup(ck->a, ir_type_str(t, ck->syms, false, buf, sizeof buf));
}

// "a tensor f32[B, T]", "the integer 3", "a tuple of 2 values"
const char *fe_val_describe(FeCk *ck, const FeVal *v) {
  switch (v->k) {
  case FV_TENSOR: return arena_printf(ck->a, "a tensor %s", fe_type_str(ck, &v->ty));
  case FV_INT: return arena_printf(ck->a, "the integer %lld", (long long)v->i);
  case FV_FLOAT: {  // 4.0, not 4: the reader must see it is not an integer
    char b[64];
    snprintf(b, sizeof b, "%g", v->f);
    return arena_printf(ck->a, "the number %s%s", b, strpbrk(b, ".einf") ? "" : ".0");
  }
  case FV_BOOL: return v->i ? "true" : "false";
  case FV_TUPLE: return arena_printf(ck->a, "a tuple of %d values", v->n);
  case FV_LIST: return arena_printf(ck->a, "a list of %d values", v->n);
  case FV_INST: return arena_printf(ck->a, "the block instance '%s'", v->inst->name);
  case FV_BLOCK: return arena_printf(ck->a, "the block '%s'", v->block->name);
  case FV_DTYPE: return arena_printf(ck->a, "the dtype %s", ir_dtype_info[v->i].name);
  default: return fe_val_kind_name(v);
  }
}

bool fe_val_same(const FeVal *a, const FeVal *b) {
  if (a->k != b->k) return false;
  switch (a->k) {
  case FV_INT:
  case FV_BOOL:
  case FV_DTYPE: return a->i == b->i;
  case FV_FLOAT: return a->f == b->f;
  case FV_STR: return strcmp(a->s, b->s) == 0;
  case FV_TENSOR: return ir_type_eq(&a->ty, &b->ty);
  case FV_INST: return a->inst == b->inst;
  case FV_TUPLE:
  case FV_LIST:
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; i++)
      if (!fe_val_same(&a->elems[i], &b->elems[i])) return false;
    return true;
  default: return false;
  }
}

static const char *op_name(int op) {
  switch (op) {
  case '+': return "'+'";
  case '-': return "'-'";
  case '*': return "'*'";
  case '/': return "'/'";
  case '@': return "'@'";
  }
  return "operator";
}

// Compile-time arithmetic: int op int stays int (checked for overflow), '/'
// of ints is int when exact and a float otherwise (like Python's true
// division); a dimension that needs an int then reports the inexact division.
FeVal fe_const_binop(FeCk *ck, int op, const FeVal *l, const FeVal *r, SrcLoc loc) {
  if (l->k == FV_BOOL || r->k == FV_BOOL) {
    diag_error(ck->d, loc, "%s is not defined on booleans", op_name(op));
    return fe_val_err();
  }
  if (op == '@') {
    diag_error(ck->d, loc, "'@' needs two tensors, got %s and %s", fe_val_describe(ck, l),
               fe_val_describe(ck, r));
    return fe_val_err();
  }
  if (l->k == FV_INT && r->k == FV_INT) {
    int64_t a = l->i, b = r->i, v = 0;
    bool ovf = false;
    switch (op) {
    case '+': ovf = __builtin_add_overflow(a, b, &v); break;
    case '-': ovf = __builtin_sub_overflow(a, b, &v); break;
    case '*': ovf = __builtin_mul_overflow(a, b, &v); break;
    case '/':
      if (b == 0) {
        diag_error(ck->d, loc, "division by zero: %lld / 0", (long long)a);
        return fe_val_err();
      }
      if (a == INT64_MIN && b == -1) {
        ovf = true;
        break;
      }
      if (a % b == 0) return fe_val_int(a / b, loc);
      FeVal f = fe_val_float((double)a / (double)b, loc);
      f.s = arena_printf(ck->a, "%lld / %lld", (long long)a, (long long)b);
      return f;
    }
    if (ovf) {
      diag_error(ck->d, loc, "integer overflow in %lld %c %lld", (long long)a, op, (long long)b);
      return fe_val_err();
    }
    return fe_val_int(v, loc);
  }
  double a = fe_val_num(l), b = fe_val_num(r), v = 0;
  switch (op) {
  case '+': v = a + b; break;
  case '-': v = a - b; break;
  case '*': v = a * b; break;
  case '/':
    if (b == 0) {
      diag_error(ck->d, loc, "division by zero: %g / 0", a);
      return fe_val_err();
    }
    v = a / b;
    break;
  }
  if (!isfinite(v)) {
    diag_error(ck->d, loc, "number out of range: %g %c %g", a, op, b);
    return fe_val_err();
  }
  return fe_val_float(v, loc);
}

// numpy broadcasting (ir_broadcast_type); on failure, names the first pair
// of axes (from the right) that do not fit.
bool fe_broadcast(FeCk *ck, const char *what, const IrType *a, const IrType *b, IrType *out,
                  SrcLoc loc, SrcLoc bloc) {
  if (ir_broadcast_type(a, b, out)) return true;
  IrDim da = ir_dim_const(1), db = ir_dim_const(1);
  for (int i = 1; i <= a->rank && i <= b->rank; i++) {
    da = a->dim[a->rank - i];
    db = b->dim[b->rank - i];
    if (!ir_dim_eq(da, db) && !(ir_dim_is_const(da) && da.n == 1) && !(ir_dim_is_const(db) && db.n == 1)) break;
  }
  diag_error(ck->d, loc, "%s: shapes %s and %s do not broadcast (%s vs %s)", what, fe_shape_str(ck, a),
             fe_shape_str(ck, b), fe_dim_str(ck, da), fe_dim_str(ck, db));
  if (bloc.line) diag_note(ck->d, bloc, "this operand has shape %s", fe_shape_str(ck, b));
  return false;
}

// A number next to a tensor takes the tensor's dtype (as a Python scalar
// does in PyTorch); a float constant next to an integer tensor is an error.
static bool scalar_fits(FeCk *ck, const FeVal *s, const IrType *t, SrcLoc loc, const char *what) {
  if (s->k == FV_BOOL) {
    diag_error(ck->d, loc, "%s: a boolean cannot be combined with a tensor", what);
    return false;
  }
  if (s->k == FV_FLOAT && !ir_dtype_info[t->dt].is_float) {
    diag_error(ck->d, loc, "%s: the number %g does not fit the %s tensor; use cast(x, f32) first",
               what, s->f, ir_dtype_info[t->dt].name);
    return false;
  }
  return true;
}

static bool numeric_dtype(FeCk *ck, const IrType *t, SrcLoc loc, const char *what) {
  if (t->dt == IR_BOOL) {
    diag_error(ck->d, loc, "%s is not defined on bool tensors; use cast(x, f32) or where()", what);
    return false;
  }
  return true;
}

// While lowering, a tensor value must come with its node (else the IR
// builder has reported why).
FeVal with_node(FeCk *ck, FeVal v, IrNode *n) {
  if (!ck->g) return v;
  if (!n) return fe_val_err();
  v.node = n;
  return v;
}

// (...,M,K) @ (...,K,N) in IR: 1-d operands get their unit axis and lose it.
static IrNode *lower_matmul(FeCk *ck, const FeVal *l, const FeVal *r, const IrType *out, SrcLoc loc) {
  IrNode *a = l->node, *b = r->node;
  if (l->ty.rank == 1) {
    IrType t = {.dt = l->ty.dt, .rank = 2, .dim = {ir_dim_const(1), l->ty.dim[0]}};
    a = fe_lower_reshape(ck, a, &t, loc);
  }
  if (r->ty.rank == 1) {
    IrType t = {.dt = r->ty.dt, .rank = 2, .dim = {r->ty.dim[0], ir_dim_const(1)}};
    b = fe_lower_reshape(ck, b, &t, loc);
  }
  IrNode *c = ir_binary(ck->g, IR_OP_MATMUL, a, b, loc);
  return fe_lower_reshape(ck, c, out, loc);
}

FeVal fe_tensor_binop(FeCk *ck, int op, const FeVal *l, const FeVal *r, SrcLoc loc) {
  const char *what = op_name(op);
  if (op == '@') return fe_matmul(ck, l, r, loc);
  if (l->k == FV_TENSOR && r->k == FV_TENSOR) {
    if (!numeric_dtype(ck, &l->ty, loc, what) || !numeric_dtype(ck, &r->ty, loc, what))
      return fe_val_err();
    if (l->ty.dt != r->ty.dt) {
      diag_error(ck->d, loc, "%s: dtypes differ: %s and %s; use cast() to convert one", what,
                 fe_type_str(ck, &l->ty), fe_type_str(ck, &r->ty));
      return fe_val_err();
    }
    IrType t;
    if (!fe_broadcast(ck, what, &l->ty, &r->ty, &t, loc, r->loc)) return fe_val_err();
    return with_node(ck, fe_val_tensor(&t, loc), ck->g ? fe_lower_binop(ck, op, l, r, &t, loc) : NULL);
  }
  const FeVal *t = l->k == FV_TENSOR ? l : r, *s = l->k == FV_TENSOR ? r : l;
  if (!fe_val_is_const(s)) {
    diag_error(ck->d, s->loc, "%s: expected a tensor or a number, got %s", what,
               fe_val_describe(ck, s));
    return fe_val_err();
  }
  if (!numeric_dtype(ck, &t->ty, loc, what) || !scalar_fits(ck, s, &t->ty, loc, what))
    return fe_val_err();
  return with_node(ck, fe_val_tensor(&t->ty, loc), ck->g ? fe_lower_binop(ck, op, l, r, &t->ty, loc) : NULL);
}

// numpy matmul: [..., M, K] @ [..., K, N] -> [..., M, N]; a 1-d operand gets
// a unit axis that is dropped again; batch axes broadcast.
FeVal fe_matmul(FeCk *ck, const FeVal *l, const FeVal *r, SrcLoc loc) {
  if (l->k != FV_TENSOR || r->k != FV_TENSOR) {
    const FeVal *bad = l->k != FV_TENSOR ? l : r;
    diag_error(ck->d, loc, "'@' needs two tensors, got %s", fe_val_describe(ck, bad));
    return fe_val_err();
  }
  const IrType *a = &l->ty, *b = &r->ty;
  if (a->rank == 0 || b->rank == 0) {
    diag_error(ck->d, loc, "'@' needs tensors of rank 1 or more, got %s @ %s", fe_shape_str(ck, a),
               fe_shape_str(ck, b));
    return fe_val_err();
  }
  if (!ir_dtype_info[a->dt].is_float || a->dt != b->dt) {
    diag_error(ck->d, loc, "'@' needs two float tensors of one dtype, got %s @ %s",
               fe_type_str(ck, a), fe_type_str(ck, b));
    return fe_val_err();
  }
  IrDim k1 = a->dim[a->rank - 1], k2 = b->dim[b->rank >= 2 ? b->rank - 2 : 0];
  if (!ir_dim_eq(k1, k2)) {
    diag_error(ck->d, loc, "matmul: inner dimensions differ: %s @ %s (%s vs %s)",
               fe_shape_str(ck, a), fe_shape_str(ck, b), fe_dim_str(ck, k1), fe_dim_str(ck, k2));
    diag_note(ck->d, r->loc, "the right operand has shape %s", fe_shape_str(ck, b));
    return fe_val_err();
  }
  IrType ba = {.dt = a->dt, .rank = a->rank > 2 ? a->rank - 2 : 0};
  IrType bb = {.dt = b->dt, .rank = b->rank > 2 ? b->rank - 2 : 0};
  memcpy(ba.dim, a->dim, sizeof(IrDim) * (size_t)ba.rank);
  memcpy(bb.dim, b->dim, sizeof(IrDim) * (size_t)bb.rank);
  IrType out;
  if (!ir_broadcast_type(&ba, &bb, &out)) {
    diag_error(ck->d, loc, "matmul: the batch axes of %s @ %s do not broadcast (%s vs %s)", fe_shape_str(ck, a),
               fe_shape_str(ck, b), fe_shape_str(ck, &ba), fe_shape_str(ck, &bb));
    return fe_val_err();
  }
  if (a->rank >= 2) out.dim[out.rank++] = a->dim[a->rank - 2];
  if (b->rank >= 2) out.dim[out.rank++] = b->dim[b->rank - 1];
  if (out.rank > IR_MAX_RANK) {
    diag_error(ck->d, loc, "matmul: result rank above %d", IR_MAX_RANK);
    return fe_val_err();
  }
  return with_node(ck, fe_val_tensor(&out, loc), ck->g ? lower_matmul(ck, l, r, &out, loc) : NULL);
}

bool fe_check_axis(FeCk *ck, int64_t axis, int rank, SrcLoc loc, const char *what, int *out) {
  if (axis < -rank || axis >= rank || rank == 0) {
    if (rank == 0)
      diag_error(ck->d, loc, "%s: a scalar has no axis %lld", what, (long long)axis);
    else
      diag_error(ck->d, loc, "%s: axis %lld is out of range for rank %d (valid: %d..%d)", what,
                 (long long)axis, rank, -rank, rank - 1);
    return false;
  }
  *out = (int)(axis < 0 ? axis + rank : axis);
  return true;
}

const char *fe_suggest(FeCk *ck, const char *name, const char *const *cands, int n) {
  const char *best = NULL;
  int bestd = 1000, max = (int)strlen(name) / 3;
  if (max < 1) max = 1;
  if (max > 3) max = 3;
  for (int i = 0; i < n; i++) {
    if (!cands[i] || strcmp(cands[i], name) == 0) continue;
    int d = diag_edit_distance(name, cands[i], max);
    if (d <= max && d < bestd) {
      bestd = d;
      best = cands[i];
    }
  }
  return best ? arena_printf(ck->a, "; did you mean '%s'?", best) : "";
}
