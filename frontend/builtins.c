// frontend/builtins.c: the language's builtin functions for the checker
// (check.c): one table row per builtin with its signature, and a shape rule
// that infers the result type or reports what is wrong, naming the shapes.
// Compile-time math (sqrt, exp, log, min, max ...) on numbers is here too.
// The IR (a later stage) gives each of these an op with the same semantics.
#include <math.h>
#include <string.h>

#include "frontend/fe_internal.h"

enum { MAXP = 8 };

typedef struct {
  const char *name;
  FeVal v[MAXP];           // bound arguments (k == FV_NONE: not given)
  const FeExpr *e[MAXP];   // their expressions (NULL: not given)
  FeVal *rest;             // variadic arguments (concat)
  int nrest;
  SrcLoc loc;              // the call
  FeEnv *env;
} Args;

typedef FeVal (*BuiltinFn)(FeCk *ck, Args *a);

typedef struct {
  const char *name;
  const char *params;      // "x,weight,bias,eps=": '=' optional, '*' variadic,
                           // '#' a shape list (dims, evaluated by fe_eval_dim)
  BuiltinFn fn;
} Builtin;

static SrcLoc at(Args *a, int i) { return a->e[i] ? a->e[i]->loc : a->loc; }

static bool tensor(FeCk *ck, Args *a, int i, const char *pname) {
  if (a->v[i].k == FV_TENSOR) return true;
  diag_error(ck->d, at(a, i), "%s: '%s' must be a tensor, got %s", a->name, pname, fe_val_describe(ck, &a->v[i]));
  return false;
}

static bool float_tensor(FeCk *ck, Args *a, int i, const char *pname) {
  if (!tensor(ck, a, i, pname)) return false;
  if (ir_dtype_info[a->v[i].ty.dt].is_float) return true;
  diag_error(ck->d, at(a, i), "%s: '%s' must be a float tensor, got %s; use cast(x, f32)", a->name, pname,
             fe_type_str(ck, &a->v[i].ty));
  return false;
}

static bool int_arg(FeCk *ck, Args *a, int i, const char *pname, int64_t dflt, int64_t *out) {
  if (a->v[i].k == FV_NONE) {
    *out = dflt;
    return true;
  }
  if (a->v[i].k == FV_INT) {
    *out = a->v[i].i;
    return true;
  }
  diag_error(ck->d, at(a, i), "%s: '%s' must be an integer, got %s", a->name, pname, fe_val_describe(ck, &a->v[i]));
  return false;
}

static bool num_arg(FeCk *ck, Args *a, int i, const char *pname, double dflt, double *out) {
  if (a->v[i].k == FV_NONE) {
    *out = dflt;
    return true;
  }
  if (fe_val_is_num(&a->v[i])) {
    *out = fe_val_num(&a->v[i]);
    return true;
  }
  diag_error(ck->d, at(a, i), "%s: '%s' must be a number, got %s", a->name, pname, fe_val_describe(ck, &a->v[i]));
  return false;
}

static bool bool_arg(FeCk *ck, Args *a, int i, const char *pname, bool *out) {
  if (a->v[i].k == FV_NONE) {
    *out = false;
    return true;
  }
  if (a->v[i].k == FV_BOOL) {
    *out = a->v[i].i != 0;
    return true;
  }
  diag_error(ck->d, at(a, i), "%s: '%s' must be true or false, got %s", a->name, pname, fe_val_describe(ck, &a->v[i]));
  return false;
}

static FeVal result(const IrType *t, Args *a) { return fe_val_tensor(t, a->loc); }

// ---- elementwise ----

static FeVal bi_unary(FeCk *ck, Args *a) {
  const FeVal *x = &a->v[0];
  const char *n = a->name;
  if (fe_val_is_num(x)) {  // compile-time math
    double v = fe_val_num(x), r;
    if ((!strcmp(n, "sqrt") || !strcmp(n, "rsqrt")) && v < 0) {
      diag_error(ck->d, at(a, 0), "%s of a negative number (%g)", n, v);
      return fe_val_err();
    }
    if ((!strcmp(n, "log") && v <= 0) || (!strcmp(n, "rsqrt") && v == 0)) {
      diag_error(ck->d, at(a, 0), "%s(%g) is undefined", n, v);
      return fe_val_err();
    }
    if (!strcmp(n, "abs") && x->k == FV_INT) return fe_val_int(x->i < 0 && x->i != INT64_MIN ? -x->i : x->i, a->loc);
    if (!strcmp(n, "relu") && x->k == FV_INT) return fe_val_int(x->i < 0 ? 0 : x->i, a->loc);
    if (!strcmp(n, "exp")) r = exp(v);
    else if (!strcmp(n, "log")) r = log(v);
    else if (!strcmp(n, "sqrt")) r = sqrt(v);
    else if (!strcmp(n, "rsqrt")) r = 1 / sqrt(v);
    else if (!strcmp(n, "tanh")) r = tanh(v);
    else if (!strcmp(n, "sigmoid")) r = 1 / (1 + exp(-v));
    else if (!strcmp(n, "abs")) r = fabs(v);
    else if (!strcmp(n, "relu")) r = v < 0 ? 0 : v;
    else {
      diag_error(ck->d, a->loc, "%s needs a tensor, got %s", n, fe_val_describe(ck, x));
      return fe_val_err();
    }
    if (!isfinite(r)) {
      diag_error(ck->d, a->loc, "%s(%g) is out of range", n, v);
      return fe_val_err();
    }
    return fe_val_float(r, a->loc);
  }
  bool int_ok = !strcmp(n, "abs") || !strcmp(n, "relu");
  if (!tensor(ck, a, 0, "x")) return fe_val_err();
  if (!int_ok && !float_tensor(ck, a, 0, "x")) return fe_val_err();
  if (x->ty.dt == IR_BOOL) {
    diag_error(ck->d, at(a, 0), "%s is not defined on bool tensors", n);
    return fe_val_err();
  }
  return result(&x->ty, a);
}

// The common dtype of tensors and numbers (numbers adapt to the tensors).
static bool join(FeCk *ck, Args *a, int *idx, int n, IrType *out) {
  const IrType *first = NULL;
  int fi = -1;
  for (int j = 0; j < n; j++) {
    const FeVal *v = &a->v[idx[j]];
    if (v->k == FV_TENSOR) {
      if (!first) {
        first = &v->ty;
        fi = idx[j];
      } else if (v->ty.dt != first->dt) {
        diag_error(ck->d, at(a, idx[j]), "%s: dtypes differ: %s and %s; use cast()", a->name,
                   fe_type_str(ck, first), fe_type_str(ck, &v->ty));
        return false;
      }
    } else if (!fe_val_is_num(v)) {
      diag_error(ck->d, at(a, idx[j]), "%s: expected a tensor or a number, got %s", a->name, fe_val_describe(ck, v));
      return false;
    }
  }
  if (!first) {
    diag_error(ck->d, a->loc, "%s needs at least one tensor", a->name);
    return false;
  }
  IrType t = *first;
  for (int j = 0; j < n; j++) {
    const FeVal *v = &a->v[idx[j]];
    if (v->k == FV_FLOAT && !ir_dtype_info[t.dt].is_float) {
      diag_error(ck->d, at(a, idx[j]), "%s: the number %g does not fit %s tensors", a->name, v->f,
                 ir_dtype_info[t.dt].name);
      return false;
    }
    if (v->k == FV_TENSOR && idx[j] != fi && !fe_broadcast(ck, a->name, &t, &v->ty, &t, a->loc, at(a, idx[j])))
      return false;
  }
  *out = t;
  return true;
}

static FeVal bi_minmax2(FeCk *ck, Args *a) {  // maximum(a, b), minimum(a, b)
  int idx[] = {0, 1};
  IrType t;
  if (fe_val_is_num(&a->v[0]) && fe_val_is_num(&a->v[1])) {
    diag_error(ck->d, a->loc, "%s is elementwise on tensors; use %s(a, b) for numbers", a->name,
               a->name[1] == 'a' ? "max" : "min");
    return fe_val_err();
  }
  if (!join(ck, a, idx, 2, &t)) return fe_val_err();
  if (t.dt == IR_BOOL) {
    diag_error(ck->d, a->loc, "%s is not defined on bool tensors", a->name);
    return fe_val_err();
  }
  return result(&t, a);
}

static FeVal bi_where(FeCk *ck, Args *a) {
  if (!tensor(ck, a, 0, "cond")) return fe_val_err();
  if (a->v[0].ty.dt != IR_BOOL) {
    diag_error(ck->d, at(a, 0), "where: the condition must be a bool tensor, got %s", fe_type_str(ck, &a->v[0].ty));
    return fe_val_err();
  }
  int idx[] = {1, 2};
  IrType t;
  if (!join(ck, a, idx, 2, &t)) return fe_val_err();
  IrType c = a->v[0].ty;
  c.dt = t.dt;
  if (!fe_broadcast(ck, "where", &c, &t, &t, a->loc, at(a, 1))) return fe_val_err();
  return result(&t, a);
}

static FeVal bi_cast(FeCk *ck, Args *a) {
  if (!tensor(ck, a, 0, "x")) return fe_val_err();
  if (a->v[1].k != FV_DTYPE) {
    diag_error(ck->d, at(a, 1), "cast: the second argument must be a dtype (f32 f16 bf16 i32 i64 i8 u8 bool), got %s",
               fe_val_describe(ck, &a->v[1]));
    return fe_val_err();
  }
  IrType t = a->v[0].ty;
  t.dt = (IrDType)a->v[1].i;
  return result(&t, a);
}

// ---- reductions ----

// axis= an integer, a list of integers, or absent (all axes).
static bool axes(FeCk *ck, Args *a, int i, int rank, bool mask[IR_MAX_RANK]) {
  memset(mask, 0, sizeof(bool) * IR_MAX_RANK);
  const FeVal *v = &a->v[i];
  if (v->k == FV_NONE) {
    for (int j = 0; j < rank; j++) mask[j] = true;
    return true;
  }
  const FeVal *list = v->k == FV_LIST || v->k == FV_TUPLE ? v->elems : v;
  int n = v->k == FV_LIST || v->k == FV_TUPLE ? v->n : 1;
  for (int j = 0; j < n; j++) {
    int ax;
    if (list[j].k != FV_INT) {
      diag_error(ck->d, at(a, i), "%s: axis must be an integer or a list of integers, got %s", a->name,
                 fe_val_describe(ck, &list[j]));
      return false;
    }
    if (!fe_check_axis(ck, list[j].i, rank, at(a, i), a->name, &ax)) return false;
    if (mask[ax]) {
      diag_error(ck->d, at(a, i), "%s: axis %lld is given twice", a->name, (long long)list[j].i);
      return false;
    }
    mask[ax] = true;
  }
  return true;
}

static FeVal bi_reduce(FeCk *ck, Args *a) {
  const char *n = a->name;
  if ((!strcmp(n, "max") || !strcmp(n, "min")) && fe_val_is_num(&a->v[0])) {  // max(a, b) on numbers
    if (!fe_val_is_num(&a->v[1])) {
      diag_error(ck->d, a->v[1].k == FV_NONE ? a->loc : at(a, 1), "%s of numbers takes two numbers", n);
      return fe_val_err();
    }
    const FeVal *x = &a->v[0], *y = &a->v[1];
    bool pick_x = !strcmp(n, "max") ? fe_val_num(x) >= fe_val_num(y) : fe_val_num(x) <= fe_val_num(y);
    FeVal r = pick_x ? *x : *y;
    if (x->k == FV_FLOAT || y->k == FV_FLOAT) r = fe_val_float(fe_val_num(&r), a->loc);
    r.loc = a->loc;
    return r;
  }
  if (!tensor(ck, a, 0, "x")) return fe_val_err();
  const IrType *x = &a->v[0].ty;
  if (!strcmp(n, "mean") && !ir_dtype_info[x->dt].is_float) {
    diag_error(ck->d, at(a, 0), "mean needs a float tensor, got %s; use cast(x, f32)", fe_type_str(ck, x));
    return fe_val_err();
  }
  if (x->dt == IR_BOOL) {
    diag_error(ck->d, at(a, 0), "%s is not defined on bool tensors", n);
    return fe_val_err();
  }
  bool mask[IR_MAX_RANK], keep;
  int axis_slot = 1, keep_slot = 2;
  if (!axes(ck, a, axis_slot, x->rank, mask) || !bool_arg(ck, a, keep_slot, "keepdim", &keep)) return fe_val_err();
  IrType t = {.dt = x->dt};
  for (int i = 0; i < x->rank; i++) {
    if (!mask[i]) t.dim[t.rank++] = x->dim[i];
    else if (keep) t.dim[t.rank++] = ir_dim_const(1);
  }
  return result(&t, a);
}

static FeVal bi_softmax(FeCk *ck, Args *a) {
  int64_t axis;
  int ax;
  if (!float_tensor(ck, a, 0, "x") || !int_arg(ck, a, 1, "axis", -1, &axis) ||
      !fe_check_axis(ck, axis, a->v[0].ty.rank, at(a, 1), a->name, &ax))
    return fe_val_err();
  return result(&a->v[0].ty, a);
}

// ---- normalisation ----

// weight (and bias) must be [C] with C the last axis of x, same dtype.
static bool norm_vec(FeCk *ck, Args *a, int i, const char *pname) {
  const IrType *x = &a->v[0].ty;
  if (!tensor(ck, a, i, pname)) return false;
  const IrType *w = &a->v[i].ty;
  if (w->rank != 1 || !ir_dim_eq(w->dim[0], x->dim[x->rank - 1]) || w->dt != x->dt) {
    IrType want = {.dt = x->dt, .rank = 1, .dim = {x->dim[x->rank - 1]}};
    diag_error(ck->d, at(a, i), "%s: '%s' must be %s (the last axis of x: %s), got %s", a->name, pname,
               fe_type_str(ck, &want), fe_type_str(ck, x), fe_type_str(ck, w));
    return false;
  }
  return true;
}

static FeVal bi_norm(FeCk *ck, Args *a) {
  bool ln = !strcmp(a->name, "layernorm");
  if (!float_tensor(ck, a, 0, "x")) return fe_val_err();
  if (a->v[0].ty.rank == 0) {
    diag_error(ck->d, at(a, 0), "%s needs a tensor of rank 1 or more", a->name);
    return fe_val_err();
  }
  double eps;
  if (!norm_vec(ck, a, 1, "weight") || (ln && !norm_vec(ck, a, 2, "bias")) ||
      !num_arg(ck, a, ln ? 3 : 2, "eps", ln ? 1e-5 : 1e-6, &eps))
    return fe_val_err();
  if (!(eps > 0)) {
    diag_error(ck->d, at(a, ln ? 3 : 2), "%s: eps must be positive, got %g", a->name, eps);
    return fe_val_err();
  }
  return result(&a->v[0].ty, a);
}

// ---- shape ----

static FeVal bi_transpose(FeCk *ck, Args *a) {
  if (!tensor(ck, a, 0, "x")) return fe_val_err();
  IrType t = a->v[0].ty;
  if (t.rank < 2) {
    diag_error(ck->d, at(a, 0), "transpose swaps the last two axes and needs rank 2 or more, got %s",
               fe_type_str(ck, &t));
    return fe_val_err();
  }
  IrDim d = t.dim[t.rank - 1];
  t.dim[t.rank - 1] = t.dim[t.rank - 2];
  t.dim[t.rank - 2] = d;
  return result(&t, a);
}

static FeVal bi_permute(FeCk *ck, Args *a) {
  if (!tensor(ck, a, 0, "x")) return fe_val_err();
  const IrType *x = &a->v[0].ty;
  const FeVal *p = &a->v[1];
  if ((p->k != FV_LIST && p->k != FV_TUPLE) || p->n != x->rank) {
    diag_error(ck->d, at(a, 1), "permute: expected a list of %d axes for %s, got %s", x->rank, fe_type_str(ck, x),
               fe_val_describe(ck, p));
    return fe_val_err();
  }
  bool seen[IR_MAX_RANK] = {0};
  IrType t = {.dt = x->dt, .rank = x->rank};
  for (int i = 0; i < p->n; i++) {
    int ax;
    if (p->elems[i].k != FV_INT) {
      diag_error(ck->d, at(a, 1), "permute: axes must be integers, got %s", fe_val_describe(ck, &p->elems[i]));
      return fe_val_err();
    }
    if (!fe_check_axis(ck, p->elems[i].i, x->rank, at(a, 1), "permute", &ax)) return fe_val_err();
    if (seen[ax]) {
      diag_error(ck->d, at(a, 1), "permute: axis %d appears twice; a permutation names each axis once", ax);
      return fe_val_err();
    }
    seen[ax] = true;
    t.dim[i] = x->dim[ax];
  }
  return result(&t, a);
}

// Total element count as a monomial; false when a product overflows.
static bool numel(const IrType *t, IrDim *out) {
  IrDim n = ir_dim_const(1);
  for (int i = 0; i < t->rank; i++)
    if (!ir_dim_mul(n, t->dim[i], &n)) return false;
  *out = n;
  return true;
}

static FeVal bi_reshape(FeCk *ck, Args *a) {
  if (!tensor(ck, a, 0, "x")) return fe_val_err();
  const IrType *x = &a->v[0].ty;
  const FeExpr *le = a->e[1];
  if (!le || le->kind != FE_EX_LIST) {
    diag_error(ck->d, at(a, 1), "reshape: the shape must be a list such as [B, T, -1]");
    return fe_val_err();
  }
  if (le->nargs > IR_MAX_RANK) {
    diag_error(ck->d, le->loc, "reshape: rank %d is above the limit of %d", le->nargs, IR_MAX_RANK);
    return fe_val_err();
  }
  IrType t = {.dt = x->dt, .rank = le->nargs};
  int infer = -1;
  for (int i = 0; i < le->nargs; i++) {
    if (le->args[i].kw || !fe_eval_dim(ck, a->env, le->args[i].e, true, true, &t.dim[i])) return fe_val_err();
    if (ir_dim_is_const(t.dim[i]) && t.dim[i].n == -1) {
      if (infer >= 0) {
        diag_error(ck->d, le->args[i].e->loc, "reshape: only one dimension may be -1");
        return fe_val_err();
      }
      infer = i;
    }
  }
  IrDim have, known = ir_dim_const(1);
  for (int i = 0; i < t.rank; i++)
    if (i != infer && !ir_dim_mul(known, t.dim[i], &known)) goto overflow;
  if (!numel(x, &have)) goto overflow;
  if (infer >= 0) {
    if (!ir_dim_div(have, known, &t.dim[infer]) || (ir_dim_is_const(t.dim[infer]) && t.dim[infer].n < 1)) {
      diag_error(ck->d, le->loc, "reshape: cannot infer -1: %s (%s elements) is not a multiple of %s",
                 fe_shape_str(ck, x), fe_dim_str(ck, have), fe_dim_str(ck, known));
      return fe_val_err();
    }
  } else if (!ir_dim_eq(have, known)) {
    diag_error(ck->d, le->loc, "reshape: %s has %s elements but %s has %s", fe_shape_str(ck, x), fe_dim_str(ck, have),
               fe_shape_str(ck, &t), fe_dim_str(ck, known));
    return fe_val_err();
  }
  return result(&t, a);
overflow:
  diag_error(ck->d, le->loc, "reshape: the element count is too large to represent");
  return fe_val_err();
}

static FeVal bi_split(FeCk *ck, Args *a) {
  int64_t axis;
  int ax;
  if (!tensor(ck, a, 0, "x") || !int_arg(ck, a, 2, "axis", -1, &axis) ||
      !fe_check_axis(ck, axis, a->v[0].ty.rank, at(a, 2), "split", &ax))
    return fe_val_err();
  const IrType *x = &a->v[0].ty;
  IrDim d = x->dim[ax];
  const FeVal *s = &a->v[1];
  FeVal r = {.k = FV_TUPLE, .loc = a->loc};
  if (s->k == FV_INT) {
    IrDim part;
    if (s->i < 1) {
      diag_error(ck->d, at(a, 1), "split: the number of parts must be positive, got %lld", (long long)s->i);
      return fe_val_err();
    }
    if (s->i > 4096 || !ir_dim_div(d, ir_dim_const(s->i), &part)) {
      diag_error(ck->d, at(a, 1), "split: axis %d of %s (size %s) does not split into %lld equal parts", ax,
                 fe_shape_str(ck, x), fe_dim_str(ck, d), (long long)s->i);
      return fe_val_err();
    }
    r.n = (int)s->i;
    r.elems = arena_alloc(ck->a, sizeof(FeVal) * (size_t)r.n);
    if (!r.elems) return fe_val_err();
    for (int i = 0; i < r.n; i++) {
      IrType t = *x;
      t.dim[ax] = part;
      r.elems[i] = result(&t, a);
    }
    return r;
  }
  if ((s->k != FV_LIST && s->k != FV_TUPLE) || s->n < 1) {
    diag_error(ck->d, at(a, 1), "split: expected a number of parts or a list of sizes, got %s", fe_val_describe(ck, s));
    return fe_val_err();
  }
  int64_t total = 0;
  r.n = s->n;
  r.elems = arena_alloc(ck->a, sizeof(FeVal) * (size_t)r.n);
  if (!r.elems) return fe_val_err();
  for (int i = 0; i < s->n; i++) {
    if (s->elems[i].k != FV_INT || s->elems[i].i < 1) {
      diag_error(ck->d, at(a, 1), "split: sizes must be positive integers, got %s", fe_val_describe(ck, &s->elems[i]));
      return fe_val_err();
    }
    if (__builtin_add_overflow(total, s->elems[i].i, &total)) {
      diag_error(ck->d, at(a, 1), "split: the sizes add up to more than a 64-bit size");
      return fe_val_err();
    }
    IrType t = *x;
    t.dim[ax] = ir_dim_const(s->elems[i].i);
    r.elems[i] = result(&t, a);
  }
  if (!ir_dim_eq(d, ir_dim_const(total))) {
    diag_error(ck->d, at(a, 1), "split: sizes add up to %lld but axis %d of %s has size %s", (long long)total, ax,
               fe_shape_str(ck, x), fe_dim_str(ck, d));
    return fe_val_err();
  }
  return r;
}

static FeVal bi_concat(FeCk *ck, Args *a) {
  FeVal *xs = a->rest;
  int n = a->nrest;
  if (n == 1 && (xs[0].k == FV_LIST || xs[0].k == FV_TUPLE)) {  // concat([a, b])
    n = xs[0].n;
    xs = xs[0].elems;
  }
  int64_t axis;
  if (!int_arg(ck, a, 0, "axis", 0, &axis)) return fe_val_err();
  if (n < 1) {
    diag_error(ck->d, a->loc, "concat needs at least one tensor");
    return fe_val_err();
  }
  for (int i = 0; i < n; i++)
    if (xs[i].k != FV_TENSOR) {
      diag_error(ck->d, xs[i].loc, "concat: expected tensors, got %s", fe_val_describe(ck, &xs[i]));
      return fe_val_err();
    }
  int ax;
  IrType t = xs[0].ty;
  if (!fe_check_axis(ck, axis, t.rank, a->loc, "concat", &ax)) return fe_val_err();
  for (int i = 1; i < n; i++) {
    const IrType *y = &xs[i].ty;
    bool ok = y->rank == t.rank && y->dt == t.dt;
    for (int j = 0; ok && j < t.rank; j++) ok = j == ax || ir_dim_eq(y->dim[j], t.dim[j]);
    IrDim sum = t.dim[ax];
    if (ok && !ir_dim_add(t.dim[ax], y->dim[ax], &sum)) {
      diag_error(ck->d, xs[i].loc, "concat: cannot add the sizes %s and %s of axis %d", fe_dim_str(ck, t.dim[ax]),
                 fe_dim_str(ck, y->dim[ax]), ax);
      return fe_val_err();
    }
    if (!ok) {
      diag_error(ck->d, xs[i].loc, "concat: %s does not match %s outside axis %d", fe_type_str(ck, y),
                 fe_type_str(ck, &xs[0].ty), ax);
      return fe_val_err();
    }
    t.dim[ax] = sum;
  }
  return result(&t, a);
}

static FeVal bi_unsqueeze(FeCk *ck, Args *a) {
  int64_t axis;
  int ax;
  if (!tensor(ck, a, 0, "x") || !int_arg(ck, a, 1, "axis", 0, &axis)) return fe_val_err();
  IrType t = a->v[0].ty;
  if (t.rank >= IR_MAX_RANK) {
    diag_error(ck->d, a->loc, "unsqueeze: rank %d is the limit", IR_MAX_RANK);
    return fe_val_err();
  }
  if (!fe_check_axis(ck, axis, t.rank + 1, at(a, 1), "unsqueeze", &ax)) return fe_val_err();
  memmove(&t.dim[ax + 1], &t.dim[ax], sizeof(IrDim) * (size_t)(t.rank - ax));
  t.dim[ax] = ir_dim_const(1);
  t.rank++;
  return result(&t, a);
}

// ---- Transformer ----

static bool head_dim(FeCk *ck, Args *a, int i, const char *pname, int64_t heads, int64_t *d) {
  const IrType *t = &a->v[i].ty;
  IrDim last = t->dim[2];
  if (!ir_dim_is_const(last) || last.n % heads != 0) {
    diag_error(ck->d, at(a, i), "%s: the last axis of '%s' %s (size %s) does not split into %lld heads", a->name,
               pname, fe_shape_str(ck, t), fe_dim_str(ck, last), (long long)heads);
    return false;
  }
  *d = last.n / heads;
  return true;
}

static bool rank3(FeCk *ck, Args *a, int i, const char *pname) {
  if (!float_tensor(ck, a, i, pname)) return false;
  if (a->v[i].ty.rank == 3) return true;
  diag_error(ck->d, at(a, i), "%s: '%s' must be [B, T, heads * head_dim] (packed heads), got %s", a->name, pname,
             fe_type_str(ck, &a->v[i].ty));
  return false;
}

// attention(q, k, v, heads, kv_heads=heads, causal=false, mask=, scale=1/sqrt(d))
// q (B,T,H*d), k and v (B,S,KV*d), mask (B,S) keep-mask -> (B,T,H*d)
static FeVal bi_attention(FeCk *ck, Args *a) {
  if (!rank3(ck, a, 0, "q") || !rank3(ck, a, 1, "k") || !rank3(ck, a, 2, "v")) return fe_val_err();
  const IrType *q = &a->v[0].ty, *k = &a->v[1].ty, *v = &a->v[2].ty;
  int64_t heads, kvh, d, dk;
  if (a->v[3].k == FV_NONE) {
    diag_error(ck->d, a->loc, "attention: 'heads' is required, e.g. attention(q, k, v, heads = 12)");
    return fe_val_err();
  }
  if (!int_arg(ck, a, 3, "heads", 1, &heads)) return fe_val_err();
  if (!int_arg(ck, a, 4, "kv_heads", heads, &kvh)) return fe_val_err();
  if (heads < 1 || kvh < 1 || heads % kvh != 0) {
    diag_error(ck->d, at(a, kvh != heads ? 4 : 3),
               "attention: heads (%lld) must be a positive multiple of kv_heads (%lld)", (long long)heads, (long long)kvh);
    return fe_val_err();
  }
  if (!head_dim(ck, a, 0, "q", heads, &d) || !head_dim(ck, a, 1, "k", kvh, &dk)) return fe_val_err();
  if (dk != d) {
    diag_error(ck->d, at(a, 1), "attention: k %s has head size %lld but q %s has %lld (%lld kv heads, %lld heads)",
               fe_shape_str(ck, k), (long long)dk, fe_shape_str(ck, q), (long long)d, (long long)kvh, (long long)heads);
    return fe_val_err();
  }
  if (!ir_type_eq(k, v) && !(ir_dim_eq(k->dim[0], v->dim[0]) && ir_dim_eq(k->dim[1], v->dim[1]) &&
                              ir_dim_eq(k->dim[2], v->dim[2]) && k->dt == v->dt)) {
    diag_error(ck->d, at(a, 2), "attention: v %s must have the shape of k %s", fe_type_str(ck, v), fe_type_str(ck, k));
    return fe_val_err();
  }
  if (!ir_dim_eq(q->dim[0], k->dim[0]) || q->dt != k->dt) {
    diag_error(ck->d, at(a, 1), "attention: q %s and k %s differ in batch size or dtype", fe_type_str(ck, q),
               fe_type_str(ck, k));
    return fe_val_err();
  }
  bool causal;
  double scale;
  if (!bool_arg(ck, a, 5, "causal", &causal) || !num_arg(ck, a, 7, "scale", 1 / sqrt((double)d), &scale))
    return fe_val_err();
  if (!(scale > 0)) {
    diag_error(ck->d, at(a, 7), "attention: scale must be positive, got %g", scale);
    return fe_val_err();
  }
  if (a->v[6].k != FV_NONE) {
    const FeVal *m = &a->v[6];
    // bool or any integer (Hugging Face's attention_mask is int64): non-zero keeps
    IrType want = {.dt = IR_BOOL, .rank = 2, .dim = {k->dim[0], k->dim[1]}}, got = want;
    if (m->k == FV_TENSOR) got = m->ty;
    if (ir_dtype_info[got.dt].is_int) got.dt = IR_BOOL;
    if (m->k != FV_TENSOR || !ir_type_eq(&got, &want)) {
      diag_error(ck->d, at(a, 6),
                 "attention: mask must be %s or integer (keep-mask over the keys, non-zero keeps), got %s",
                 fe_type_str(ck, &want), fe_val_describe(ck, m));
      return fe_val_err();
    }
  }
  return result(q, a);
}

// rope(x, heads, base=10000, interleaved=false): x (B,T,H*d), d even
static FeVal bi_rope(FeCk *ck, Args *a) {
  if (!rank3(ck, a, 0, "x")) return fe_val_err();
  int64_t heads, d;
  double base;
  bool inter;
  if (a->v[1].k == FV_NONE) {
    diag_error(ck->d, a->loc, "rope: 'heads' is required, e.g. rope(q, heads = 8)");
    return fe_val_err();
  }
  if (!int_arg(ck, a, 1, "heads", 1, &heads) || !num_arg(ck, a, 2, "base", 10000, &base) ||
      !bool_arg(ck, a, 3, "interleaved", &inter))
    return fe_val_err();
  if (heads < 1) {
    diag_error(ck->d, at(a, 1), "rope: heads must be positive, got %lld", (long long)heads);
    return fe_val_err();
  }
  if (!head_dim(ck, a, 0, "x", heads, &d)) return fe_val_err();
  if (d % 2 != 0) {
    diag_error(ck->d, at(a, 0), "rope: the head size %lld is odd; rotary pairs need an even head size", (long long)d);
    return fe_val_err();
  }
  if (!(base > 0)) {
    diag_error(ck->d, at(a, 2), "rope: base must be positive, got %g", base);
    return fe_val_err();
  }
  return result(&a->v[0].ty, a);
}

static FeVal bi_positions(FeCk *ck, Args *a) {
  if (!tensor(ck, a, 0, "x")) return fe_val_err();
  if (a->v[0].ty.rank < 2) {
    diag_error(ck->d, at(a, 0), "positions: x must have a sequence axis (axis 1), got %s", fe_type_str(ck, &a->v[0].ty));
    return fe_val_err();
  }
  IrType t = {.dt = IR_I32, .rank = 1, .dim = {a->v[0].ty.dim[1]}};
  return result(&t, a);
}

// cross_entropy(logits (..., V), targets (...), ignore=-1) -> f32 scalar
static FeVal bi_xent(FeCk *ck, Args *a) {
  int64_t ignore;
  if (!float_tensor(ck, a, 0, "logits") || !tensor(ck, a, 1, "targets") || !int_arg(ck, a, 2, "ignore", -1, &ignore))
    return fe_val_err();
  const IrType *l = &a->v[0].ty, *t = &a->v[1].ty;
  IrType want = {.dt = t->dt, .rank = l->rank - 1};
  memcpy(want.dim, l->dim, sizeof(IrDim) * (size_t)(l->rank > 0 ? l->rank - 1 : 0));
  if (l->rank < 1 || !ir_dtype_info[t->dt].is_int || !ir_type_eq(&want, t)) {
    if (ir_dtype_info[t->dt].is_int == false) want.dt = IR_I32;
    diag_error(ck->d, at(a, 1), "cross_entropy: targets must be an integer tensor %s for logits %s, got %s",
               fe_shape_str(ck, &want), fe_type_str(ck, l), fe_type_str(ck, t));
    return fe_val_err();
  }
  IrType s = {.dt = IR_F32};
  return result(&s, a);
}

static FeVal bi_dropout(FeCk *ck, Args *a) {
  double p;
  if (!float_tensor(ck, a, 0, "x") || !num_arg(ck, a, 1, "p", 0, &p)) return fe_val_err();
  if (a->v[1].k == FV_NONE) {
    diag_error(ck->d, a->loc, "dropout: the probability p is required, e.g. dropout(x, 0.1)");
    return fe_val_err();
  }
  if (!(p >= 0 && p < 1)) {
    diag_error(ck->d, at(a, 1), "dropout: p must be in [0, 1), got %g", p);
    return fe_val_err();
  }
  return result(&a->v[0].ty, a);
}


// ---- lowering: the IR for a checked builtin call (ck->g set) ----

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

static const struct { const char *name; IrOp op; } unary_ops[] = {
    {"exp", IR_OP_EXP},         {"log", IR_OP_LOG},       {"sqrt", IR_OP_SQRT}, {"rsqrt", IR_OP_RSQRT},
    {"tanh", IR_OP_TANH},       {"sigmoid", IR_OP_SIGMOID}, {"relu", IR_OP_RELU}, {"gelu", IR_OP_GELU},
    {"gelu_tanh", IR_OP_GELU_TANH}, {"silu", IR_OP_SILU}, {"abs", IR_OP_ABS},
};

static IrNode *lower_reduce(FeCk *ck, Args *a, const FeVal *r) {
  bool mask[IR_MAX_RANK], keep = false;
  axes(ck, a, 1, a->v[0].ty.rank, mask);
  bool_arg(ck, a, 2, "keepdim", &keep);
  IrAttr at = {.keepdim = keep};
  for (int i = 0; i < a->v[0].ty.rank; i++)
    if (mask[i]) at.axes |= 1u << i;
  IrOp op = !strcmp(a->name, "sum") ? IR_OP_SUM : !strcmp(a->name, "mean") ? IR_OP_MEAN
            : !strcmp(a->name, "max") ? IR_OP_MAX : IR_OP_MIN;
  IrNode *x = a->v[0].node;
  return ir_op(ck->g, op, &x, 1, &at, &r->ty, a->loc);
}

static IrNode *lower_concat(FeCk *ck, Args *a, const FeVal *r) {
  FeVal *xs = a->rest;
  int n = a->nrest;
  if (n == 1 && (xs[0].k == FV_LIST || xs[0].k == FV_TUPLE)) n = xs[0].n, xs = xs[0].elems;
  int64_t axis = a->v[0].k == FV_INT ? a->v[0].i : 0;
  IrAttr at = {.axis = norm_axis(axis, r->ty.rank)};
  IrNode *acc = xs[0].node;
  for (int i = 1; i < n; i += IR_MAX_SRC - 1) {  // chains of at most IR_MAX_SRC operands
    IrNode *src[IR_MAX_SRC] = {acc};
    int k = 1;
    for (int j = i; j < n && k < IR_MAX_SRC; j++) src[k++] = xs[j].node;
    acc = ir_op(ck->g, IR_OP_CONCAT, src, k, &at, NULL, a->loc);
  }
  return acc;
}

static IrNode *lower_attention(FeCk *ck, Args *a, const FeVal *r) {
  int64_t heads = a->v[3].i, kvh = a->v[4].k == FV_INT ? a->v[4].i : heads;
  int64_t d = r->ty.dim[2].n / heads;
  IrAttr at = {.heads = heads, .kv_heads = kvh, .causal = a->v[5].k == FV_BOOL && a->v[5].i,
               .scale = a->v[7].k != FV_NONE ? fe_val_num(&a->v[7]) : 1 / sqrt((double)d)};
  IrNode *src[4] = {a->v[0].node, a->v[1].node, a->v[2].node, a->v[6].node};
  return ir_op(ck->g, IR_OP_ATTENTION, src, a->v[6].k == FV_TENSOR ? 4 : 3, &at, NULL, a->loc);
}

// Builds the node(s) for a call the shape rule accepted; r gets them.
static FeVal lower_builtin(FeCk *ck, Args *a, FeVal r) {
  const char *n = a->name;
  IrNode *x = a->v[0].node, *out = NULL;
  IrAttr at = {0};
  if (r.k == FV_TUPLE) {  // split: slices at running offsets
    int axis = norm_axis(a->v[2].k == FV_INT ? a->v[2].i : -1, a->v[0].ty.rank);
    int64_t off = 0;
    for (int i = 0; i < r.n; i++) {
      r.elems[i] = with_node(ck, r.elems[i], fe_lower_slice(ck, x, axis, off, r.elems[i].ty.dim[axis], a->loc));
      if (r.elems[i].k == FV_ERR) return fe_val_err();
      off += r.elems[i].ty.dim[axis].n;  // split parts of a symbolic axis: one part, offset unused
    }
    return r;
  }
  if (r.k != FV_TENSOR) return r;  // compile-time math
  for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++)
    if (!strcmp(n, unary_ops[i].name)) return with_node(ck, r, ir_unary(ck->g, unary_ops[i].op, x, a->loc));
  if (!strcmp(n, "maximum") || !strcmp(n, "minimum")) {
    IrNode *l = fe_lower_const(ck, &a->v[0], r.ty.dt, a->loc), *rr = fe_lower_const(ck, &a->v[1], r.ty.dt, a->loc);
    out = ir_binary(ck->g, n[1] == 'a' ? IR_OP_MAXIMUM : IR_OP_MINIMUM, l, rr, a->loc);
  } else if (!strcmp(n, "where")) {
    IrNode *src[3] = {x, fe_lower_const(ck, &a->v[1], r.ty.dt, a->loc), fe_lower_const(ck, &a->v[2], r.ty.dt, a->loc)};
    out = ir_op(ck->g, IR_OP_WHERE, src, 3, NULL, NULL, a->loc);
  } else if (!strcmp(n, "cast")) {
    out = ir_op(ck->g, IR_OP_CAST, &x, 1, NULL, &r.ty, a->loc);
  } else if (!strcmp(n, "sum") || !strcmp(n, "mean") || !strcmp(n, "max") || !strcmp(n, "min")) {
    out = lower_reduce(ck, a, &r);
  } else if (!strcmp(n, "softmax") || !strcmp(n, "log_softmax")) {
    at.axis = norm_axis(a->v[1].k == FV_INT ? a->v[1].i : -1, r.ty.rank);
    out = ir_op(ck->g, n[0] == 's' ? IR_OP_SOFTMAX : IR_OP_LOG_SOFTMAX, &x, 1, &at, NULL, a->loc);
  } else if (!strcmp(n, "layernorm") || !strcmp(n, "rmsnorm")) {
    bool ln = n[0] == 'l';
    const FeVal *e = &a->v[ln ? 3 : 2];
    at.eps = e->k != FV_NONE ? fe_val_num(e) : ln ? 1e-5 : 1e-6;
    IrNode *src[3] = {x, a->v[1].node, ln ? a->v[2].node : NULL};
    out = ir_op(ck->g, ln ? IR_OP_LAYERNORM : IR_OP_RMSNORM, src, ln ? 3 : 2, &at, NULL, a->loc);
  } else if (!strcmp(n, "transpose") || !strcmp(n, "permute")) {
    int rank = r.ty.rank;
    for (int i = 0; i < rank; i++) at.perm[i] = n[0] == 't' ? i : norm_axis(a->v[1].elems[i].i, rank);
    if (n[0] == 't') at.perm[rank - 1] = rank - 2, at.perm[rank - 2] = rank - 1;
    out = ir_op(ck->g, IR_OP_PERMUTE, &x, 1, &at, NULL, a->loc);
  } else if (!strcmp(n, "reshape") || !strcmp(n, "unsqueeze")) {
    out = fe_lower_reshape(ck, x, &r.ty, a->loc);
  } else if (!strcmp(n, "concat")) {
    out = lower_concat(ck, a, &r);
  } else if (!strcmp(n, "attention")) {
    out = lower_attention(ck, a, &r);
  } else if (!strcmp(n, "rope")) {
    at.heads = a->v[1].i;
    at.base = a->v[2].k != FV_NONE ? fe_val_num(&a->v[2]) : 10000;
    at.interleaved = a->v[3].k == FV_BOOL && a->v[3].i;
    out = ir_op(ck->g, IR_OP_ROPE, &x, 1, &at, NULL, a->loc);
  } else if (!strcmp(n, "positions")) {
    out = ir_op(ck->g, IR_OP_POSITIONS, &x, 1, NULL, NULL, a->loc);
  } else if (!strcmp(n, "cross_entropy")) {
    at.ignore = a->v[2].k == FV_INT ? a->v[2].i : -1;
    IrNode *src[2] = {x, a->v[1].node};
    out = ir_op(ck->g, IR_OP_XENT, src, 2, &at, NULL, a->loc);
  } else if (!strcmp(n, "dropout")) {
    at.value = fe_val_num(&a->v[1]);
    out = ir_op(ck->g, IR_OP_DROPOUT, &x, 1, &at, NULL, a->loc);
  }
  if (!out && !ck->d->nerr) diag_error(ck->d, a->loc, "internal error: no IR for builtin '%s'", n);
  return with_node(ck, r, out);
}

// ---- the table ----

static const Builtin builtins[] = {
    {"exp", "x", bi_unary},           {"log", "x", bi_unary},
    {"sqrt", "x", bi_unary},          {"rsqrt", "x", bi_unary},
    {"tanh", "x", bi_unary},          {"sigmoid", "x", bi_unary},
    {"relu", "x", bi_unary},          {"gelu", "x", bi_unary},
    {"gelu_tanh", "x", bi_unary},     {"silu", "x", bi_unary},
    {"abs", "x", bi_unary},           {"maximum", "a,b", bi_minmax2},
    {"minimum", "a,b", bi_minmax2},   {"where", "cond,a,b", bi_where},
    {"cast", "x,dtype", bi_cast},     {"sum", "x,axis=,keepdim=", bi_reduce},
    {"mean", "x,axis=,keepdim=", bi_reduce},
    {"max", "x,axis=,keepdim=", bi_reduce},
    {"min", "x,axis=,keepdim=", bi_reduce},
    {"softmax", "x,axis=", bi_softmax},
    {"log_softmax", "x,axis=", bi_softmax},
    {"layernorm", "x,weight,bias,eps=", bi_norm},
    {"rmsnorm", "x,weight,eps=", bi_norm},
    {"transpose", "x", bi_transpose}, {"permute", "x,dims", bi_permute},
    {"reshape", "x,#shape", bi_reshape},
    {"split", "x,sections,axis=", bi_split},
    {"concat", "*xs,axis=", bi_concat},
    {"unsqueeze", "x,axis", bi_unsqueeze},
    {"attention", "q,k,v,heads=,kv_heads=,causal=,mask=,scale=", bi_attention},
    {"rope", "x,heads=,base=,interleaved=", bi_rope},
    {"positions", "x", bi_positions},
    {"cross_entropy", "logits,targets,ignore=", bi_xent},
    {"dropout", "x,p=", bi_dropout},
};
enum { NBUILTINS = sizeof builtins / sizeof builtins[0] };
const int fe_builtin_count = NBUILTINS;
const char *const fe_builtin_names[] = {
    "exp",  "log",     "sqrt",     "rsqrt",  "tanh",      "sigmoid",   "relu",    "gelu",      "gelu_tanh",
    "silu", "abs",     "maximum",  "minimum", "where",    "cast",      "sum",     "mean",      "max",
    "min",  "softmax", "log_softmax", "layernorm", "rmsnorm", "transpose", "permute", "reshape", "split",
    "concat", "unsqueeze", "attention", "rope", "positions", "cross_entropy", "dropout",
};
_Static_assert(sizeof fe_builtin_names / sizeof fe_builtin_names[0] == NBUILTINS,
               "fe_builtin_names must list every builtin");

int fe_builtin_find(const char *name) {
  for (int i = 0; i < NBUILTINS; i++)
    if (strcmp(builtins[i].name, name) == 0) return i;
  return -1;
}

typedef struct {
  char name[MAXP][24];
  bool optional[MAXP], shape[MAXP];
  int n, variadic;  // variadic: index of the '*' parameter or -1
} Sig;

static void parse_sig(const char *s, Sig *g) {
  memset(g, 0, sizeof *g);
  g->variadic = -1;
  while (*s && g->n < MAXP) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    char *dst = g->name[g->n];
    if (*s == '*') g->variadic = g->n, s++, len--;
    if (*s == '#') g->shape[g->n] = true, s++, len--;
    if (len > 0 && s[len - 1] == '=') g->optional[g->n] = true, len--;
    memcpy(dst, s, len < 23 ? len : 23);
    g->n++;
    s += len + (s[len] == '=') + (e ? 1 : 0);
    if (!e) break;
  }
}

// Matches positional and keyword arguments to the signature, evaluates
// them, and runs the shape rule.
FeVal fe_builtin_call(FeCk *ck, int idx, FeEnv *env, const FeExpr *call) {
  const Builtin *b = &builtins[idx];
  Sig g;
  parse_sig(b->params, &g);
  Args a = {.name = b->name, .loc = call->loc, .env = env};
  // the variadic parameter swallows all positionals; the rest shift down
  int nfixed = g.variadic >= 0 ? g.n - 1 : g.n;
  const char *names[MAXP];
  bool opt[MAXP], shp[MAXP];
  for (int i = 0, j = 0; i < g.n; i++)
    if (i != g.variadic) names[j] = g.name[i], opt[j] = g.optional[i], shp[j++] = g.shape[i];
  a.rest = arena_alloc(ck->a, sizeof(FeVal) * (size_t)(call->nargs + 1));
  if (!a.rest) return fe_val_err();
  int npos = 0;
  bool ok = true;
  for (int i = 0; i < call->nargs; i++) {
    const FeArg *arg = &call->args[i];
    int slot = -1;
    if (arg->kw) {
      for (int j = 0; j < nfixed; j++)
        if (strcmp(names[j], arg->kw) == 0) slot = j;
      if (slot < 0) {
        static const char *const torch_kw[][2] = {{"dim", "axis"}, {"keepdims", "keepdim"}, {"num_heads", "heads"},
                                                  {"n_head", "heads"}, {"n_kv_heads", "kv_heads"}, {"is_causal", "causal"},
                                                  {"attn_mask", "mask"}, {"ignore_index", "ignore"}, {"theta", "base"}};
        const char *alt = NULL;
        for (size_t t = 0; t < sizeof torch_kw / sizeof torch_kw[0]; t++)
          for (int j = 0; j < nfixed; j++)
            if (!strcmp(arg->kw, torch_kw[t][0]) && !strcmp(names[j], torch_kw[t][1])) alt = torch_kw[t][1];
        diag_error(ck->d, arg->kwloc, "%s has no argument '%s'%s", b->name, arg->kw,
                   alt ? arena_printf(ck->a, "; heed calls it '%s'", alt) : fe_suggest(ck, arg->kw, names, nfixed));
        ok = false;
        continue;
      }
    } else if (g.variadic >= 0) {
      a.rest[a.nrest] = fe_eval(ck, env, arg->e);
      if (a.rest[a.nrest++].k == FV_ERR) ok = false;
      continue;
    } else if ((slot = npos++) >= nfixed) {
      diag_error(ck->d, arg->e ? arg->e->loc : call->loc, "%s takes at most %d argument%s, got %d", b->name, nfixed,
                 nfixed == 1 ? "" : "s", call->nargs);
      return fe_val_err();
    }
    if (a.e[slot]) {
      diag_error(ck->d, arg->kw ? arg->kwloc : arg->e->loc, "%s: argument '%s' is given twice", b->name, names[slot]);
      ok = false;
      continue;
    }
    a.e[slot] = arg->e;
    if (!shp[slot]) {
      a.v[slot] = fe_eval(ck, env, arg->e);
      if (a.v[slot].k == FV_ERR) ok = false;
    } else {
      a.v[slot].k = FV_LIST;
    }
  }
  if (!ok) return fe_val_err();
  for (int j = 0; j < nfixed; j++)
    if (!a.e[j] && !opt[j]) {
      char sig[128];
      size_t k = 0;
      for (const char *c = b->params; *c && k + 5 < sizeof sig; c++)  // "x,#shape,eps=" -> "x, shape, eps=..."
        if (*c == ',') sig[k++] = ',', sig[k++] = ' ';
        else if (*c == '=') memcpy(sig + k, "=...", 4), k += 4;
        else if (*c != '#' && *c != '*') sig[k++] = *c;
      sig[k] = 0;
      diag_error(ck->d, call->loc, "%s: missing argument '%s' (%s(%s))", b->name, names[j], b->name, sig);
      return fe_val_err();
    }
  for (int j = 0; j < nfixed; j++)
    if (!a.e[j]) a.v[j].k = FV_NONE;
  FeVal r = b->fn(ck, &a);
  return ck->g && r.k != FV_ERR ? lower_builtin(ck, &a, r) : r;
}
