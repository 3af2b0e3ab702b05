// frontend/check.c: semantic analysis, the third stage of the frontend:
// FeAst -> FeModel. It evaluates config constants (with --set overrides),
// instantiates blocks into an instance tree with hierarchical parameter
// names, and checks each forward by evaluating it over types: every tensor
// expression gets a dtype and a shape (symbolic sizes such as B and T are
// shared by name). Sub-block forwards are checked at each call with the
// argument types (memoized per instance), so their parameters need no types.
// Errors are reported where they happen and evaluation continues with an
// error value (FV_ERR) that silences follow-on errors.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_internal.h"

// ---- scopes ----

FeEnv *fe_env_new(FeCk *ck, FeEnv *parent, int kind);
static FeEnv *env_new(FeCk *ck, FeEnv *parent, int kind) { return fe_env_new(ck, parent, kind); }
FeEnv *fe_env_new(FeCk *ck, FeEnv *parent, int kind) {
  FeEnv *e = arena_alloc(ck->a, sizeof(FeEnv));
  if (!e) return NULL;
  e->parent = parent;
  e->kind = kind;
  return e;
}

static uint32_t name_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

// Scopes can be large (a generated config of 50k values): small ones are
// searched in order, large ones through a hash table.
static int env_find_local(FeEnv *env, const char *name) {
  if (!env->hcap) {
    for (int i = env->names.len - 1; i >= 0; i--)
      if (strcmp(env->names.data[i], name) == 0) return i;
    return -1;
  }
  for (uint32_t h = name_hash(name) & (uint32_t)(env->hcap - 1);; h = (h + 1) & (uint32_t)(env->hcap - 1)) {
    int i = env->hash[h] - 1;
    if (i < 0) return -1;
    if (strcmp(env->names.data[i], name) == 0) return i;
  }
}

static void env_index(FeCk *ck, FeEnv *env, int i) {
  enum { LINEAR = 16 };
  if (env->names.len <= LINEAR) return;
  if (2 * env->names.len > env->hcap) {  // (re)build at twice the size
    int cap = env->hcap ? env->hcap * 2 : 64;
    while (cap < 2 * env->names.len) cap *= 2;
    int *h = arena_alloc(ck->a, sizeof(int) * (size_t)cap);
    if (!h) return;  // stays linear
    env->hash = h;
    env->hcap = cap;
    for (int j = 0; j < env->names.len; j++) env_index(ck, env, j);
    return;
  }
  uint32_t h = name_hash(env->names.data[i]) & (uint32_t)(env->hcap - 1);
  while (env->hash[h]) h = (h + 1) & (uint32_t)(env->hcap - 1);
  env->hash[h] = i + 1;
}

static void env_bind(FeCk *ck, FeEnv *env, const char *name, FeVal v, SrcLoc loc) { fe_env_bind(ck, env, name, v, loc); }
void fe_env_bind(FeCk *ck, FeEnv *env, const char *name, FeVal v, SrcLoc loc) {
  int i = env_find_local(env, name);
  if (i >= 0) {
    env->vals.data[i] = v;
    env->locs.data[i] = loc;
    return;
  }
  int n0 = env->names.len;
  if (!vec_push(ck->a, &env->names, name) || !vec_push(ck->a, &env->vals, v) ||
      !vec_push(ck->a, &env->locs, loc)) {
    env->names.len = env->vals.len = env->locs.len = n0;  // never a name without its value
    diag_error(ck->d, loc, "out of memory");
    return;
  }
  env_index(ck, env, env->names.len - 1);
}

bool fe_env_lookup(FeEnv *env, const char *name, FeVal *out, SrcLoc *loc) {
  for (; env; env = env->parent) {
    int i = env_find_local(env, name);
    if (i >= 0) {
      if (out) *out = env->vals.data[i];
      if (loc) *loc = env->locs.data[i];
      return true;
    }
  }
  return false;
}

static FeEnv *env_of_kind(FeEnv *env, int kind, const char *name, int *idx) {
  for (; env; env = env->parent) {
    if (env->kind != kind) continue;
    int i = env_find_local(env, name);
    if (i >= 0) {
      *idx = i;
      return env;
    }
  }
  return NULL;
}

// All names visible from env plus the builtins, for "did you mean".
static const char *suggest_name(FeCk *ck, FeEnv *env, const char *name, bool builtins) {
  Vec(const char *) c = {0};
  for (FeEnv *e = env; e; e = e->parent)
    for (int i = 0; i < e->names.len; i++) (void)vec_push(ck->a, &c, e->names.data[i]);
  if (builtins)
    for (int i = 0; i < fe_builtin_count; i++) (void)vec_push(ck->a, &c, fe_builtin_names[i]);
  for (int i = 0; strlen(name) > 1 && i < ck->ast->ndecls; i++)  // 'T' is no typo of model 'M'
    if (ck->ast->decls[i] && ck->ast->decls[i]->name) (void)vec_push(ck->a, &c, ck->ast->decls[i]->name);
  static const char *const torch_dtypes[][2] = {
      {"float32", "f32"}, {"float", "f32"},  {"float16", "f16"}, {"half", "f16"},   {"bfloat16", "bf16"},
      {"int32", "i32"},   {"int", "i32"},    {"int64", "i64"},   {"long", "i64"},   {"int8", "i8"},
      {"uint8", "u8"},    {"bool_", "bool"}, {"float64", "f32 (heed has no f64)"}, {"double", "f32 (heed has no f64)"}};
  for (size_t i = 0; i < sizeof torch_dtypes / sizeof torch_dtypes[0]; i++)
    if (!strcmp(name, torch_dtypes[i][0])) return arena_printf(ck->a, "; the dtype is spelled %s", torch_dtypes[i][1]);
  return fe_suggest(ck, name, c.data, c.len);
}

// Blocks and models by name (the first definition; duplicates are reported
// by check_toplevel), through ck->blocks, an FeEnv used as a name table.
static const FeDecl *find_block(FeCk *ck, const char *name) {
  int i = env_find_local(ck->blocks, name);
  return i >= 0 ? ck->blocks->vals.data[i].block : NULL;
}

// ---- expressions ----

static FeVal call_inst(FeCk *ck, FeInst *in, FeVal *args, int nargs, SrcLoc loc);

static FeVal eval_name(FeCk *ck, FeEnv *env, const FeExpr *e) {
  FeVal v;
  if (fe_env_lookup(env, e->name, &v, NULL)) {
    v.loc = e->loc;
    // a block's own parameter becomes its node under the current instance
    // path; a parameter passed in or out of a block already has its node
    if (ck->g && v.k == FV_TENSOR && v.param && !v.node && !(v.node = fe_lower_param(ck, v.param, e->loc)))
      return fe_val_err();
    return v;
  }
  int dt = ir_dtype_from_name(e->name);
  if (dt >= 0) return (FeVal){.k = FV_DTYPE, .i = dt, .loc = e->loc};
  const FeDecl *b = find_block(ck, e->name);
  if (b) return (FeVal){.k = FV_BLOCK, .block = b, .loc = e->loc};
  int bi = fe_builtin_find(e->name);
  if (bi >= 0) return (FeVal){.k = FV_BUILTIN, .i = bi, .loc = e->loc};
  for (int i = 0; i < ck->ast->ndecls; i++) {  // a config value defined further down
    const FeDecl *cd = ck->ast->decls[i];
    for (int j = 0; cd && cd->kind == FE_DECL_CONFIG && j < cd->nitems; j++)
      if (cd->items[j]->kind == FE_IT_BIND && !strcmp(cd->items[j]->name, e->name)) {
        diag_error(ck->d, e->loc, "config value '%s' is used before its definition (config is evaluated in order)",
                   e->name);
        diag_note(ck->d, cd->items[j]->name_loc, "'%s' is defined here", e->name);
        return fe_val_err();
      }
  }
  diag_error(ck->d, e->loc, "unknown name '%s'%s", e->name, suggest_name(ck, env, e->name, false));
  return fe_val_err();
}

static FeVal eval_call(FeCk *ck, FeEnv *env, const FeExpr *e) {
  FeVal callee;
  bool local = fe_env_lookup(env, e->name, &callee, NULL);
  if (local && callee.k == FV_INST) {
    FeVal *args = arena_alloc(ck->a, sizeof(FeVal) * (size_t)(e->nargs + 1));
    if (!args) return fe_val_err();
    for (int i = 0; i < e->nargs; i++) {
      if (e->args[i].kw) {
        diag_error(ck->d, e->args[i].kwloc, "block instances take positional arguments only");
        return fe_val_err();
      }
      args[i] = fe_eval(ck, env, e->args[i].e);
      if (args[i].k == FV_ERR) return fe_val_err();
    }
    return call_inst(ck, callee.inst, args, e->nargs, e->loc);
  }
  if (local && callee.k != FV_BUILTIN) {
    if (callee.k == FV_ERR) return fe_val_err();
    diag_error(ck->d, e->loc, "'%s' is %s, not something to call", e->name,
               fe_val_describe(ck, &callee));
    return fe_val_err();
  }
  int bi = fe_builtin_find(e->name);
  if (bi >= 0) return fe_builtin_call(ck, bi, env, e);
  const FeDecl *b = find_block(ck, e->name);
  if (b) {
    diag_error(ck->d, e->loc,
               "'%s' is a block: declare an instance as a block item (name = %s(...)) and call "
               "the instance",
               e->name, e->name);
    diag_note(ck->d, b->name_loc, "'%s' is declared here", e->name);
    return fe_val_err();
  }
  diag_error(ck->d, e->loc, "unknown function '%s'%s", e->name, suggest_name(ck, env, e->name, true));
  return fe_val_err();
}

// x[idx] (gather rows), x[i] / x[a:b] / x[:, -1] (select and slice).
static FeVal eval_index(FeCk *ck, FeEnv *env, const FeExpr *e) {
  FeVal x = fe_eval(ck, env, e->lhs);
  if (x.k == FV_ERR) return x;
  if (x.k == FV_TUPLE || x.k == FV_LIST) {  // picking one result: qkv[0]
    if (e->nidx != 1 || e->idx[0].is_slice) {
      diag_error(ck->d, e->loc, "a %s is indexed with one integer", x.k == FV_TUPLE ? "tuple" : "list");
      return fe_val_err();
    }
    FeVal i = fe_eval(ck, env, e->idx[0].e);
    if (i.k == FV_ERR) return i;
    if (i.k != FV_INT) {
      diag_error(ck->d, e->idx[0].loc, "a %s is indexed with an integer constant, got %s",
                 x.k == FV_TUPLE ? "tuple" : "list", fe_val_describe(ck, &i));
      return fe_val_err();
    }
    if (i.i < -x.n || i.i >= x.n) {
      diag_error(ck->d, e->idx[0].loc, "index %lld is out of range for %s", (long long)i.i,
                 fe_val_describe(ck, &x));
      return fe_val_err();
    }
    return x.elems[i.i < 0 ? i.i + x.n : i.i];
  }
  if (x.k != FV_TENSOR) {
    diag_error(ck->d, e->loc, "cannot index %s", fe_val_describe(ck, &x));
    return fe_val_err();
  }
  if (e->nidx == 1 && !e->idx[0].is_slice) {
    FeVal i = fe_eval(ck, env, e->idx[0].e);
    if (i.k == FV_ERR) return i;
    if (i.k == FV_TENSOR) {  // gather: idx.shape + x.shape[1:]
      if (!ir_dtype_info[i.ty.dt].is_int) {
        diag_error(ck->d, e->idx[0].loc, "gather index must be an integer tensor, got %s",
                   fe_type_str(ck, &i.ty));
        return fe_val_err();
      }
      if (x.ty.rank == 0 || i.ty.rank + x.ty.rank - 1 > IR_MAX_RANK) {
        diag_error(ck->d, e->loc, "cannot gather rows of %s with %s", fe_type_str(ck, &x.ty),
                   fe_type_str(ck, &i.ty));
        return fe_val_err();
      }
      IrType t = {.dt = x.ty.dt, .rank = i.ty.rank + x.ty.rank - 1};
      memcpy(t.dim, i.ty.dim, sizeof(IrDim) * (size_t)i.ty.rank);
      memcpy(t.dim + i.ty.rank, x.ty.dim + 1, sizeof(IrDim) * (size_t)(x.ty.rank - 1));
      return with_node(ck, fe_val_tensor(&t, e->loc), ck->g ? ir_binary(ck->g, IR_OP_GATHER, x.node, i.node, e->loc) : NULL);
    }
  }
  if (e->nidx > x.ty.rank) {
    diag_error(ck->d, e->loc, "too many indices (%d) for %s", e->nidx, fe_type_str(ck, &x.ty));
    return fe_val_err();
  }
  IrType t = {.dt = x.ty.dt};
  IrNode *cur = x.node;  // lowering: slices along each axis, then one reshape
  for (int ax = 0; ax < x.ty.rank; ax++) {
    IrDim d = x.ty.dim[ax];
    if (ax >= e->nidx) {
      t.dim[t.rank++] = d;
      continue;
    }
    const FeIndexItem *s = &e->idx[ax];
    FeVal lo = {.k = FV_NONE}, hi = {.k = FV_NONE};
    if (!s->is_slice) lo = fe_eval(ck, env, s->e);
    if (s->lo) lo = fe_eval(ck, env, s->lo);
    if (s->hi) hi = fe_eval(ck, env, s->hi);
    if (lo.k == FV_ERR || hi.k == FV_ERR) return fe_val_err();
    if ((lo.k != FV_NONE && lo.k != FV_INT) || (hi.k != FV_NONE && hi.k != FV_INT)) {
      const FeVal *bad = lo.k != FV_NONE && lo.k != FV_INT ? &lo : &hi;
      diag_error(ck->d, s->loc, "an index must be an integer constant, got %s%s",
                 fe_val_describe(ck, bad),
                 bad->k == FV_TENSOR ? " (gather with x[idx] takes one index tensor)" : "");
      return fe_val_err();
    }
    const char *ds = fe_dim_str(ck, d);
    if (!s->is_slice) {  // select: the axis goes away
      if (ir_dim_is_const(d) && (lo.i < -d.n || lo.i >= d.n)) {
        diag_error(ck->d, s->loc, "index %lld is out of range for axis %d of size %s",
                   (long long)lo.i, ax, ds);
        return fe_val_err();
      }
      if (ck->g) cur = fe_lower_slice(ck, cur, ax, lo.i, ir_dim_const(1), s->loc);
      continue;
    }
    bool has_lo = lo.k == FV_INT, has_hi = hi.k == FV_INT;
    if (ir_dim_is_const(d)) {
      int64_t a = has_lo ? lo.i : 0, b = has_hi ? hi.i : d.n;
      if (a < 0) a += d.n;
      if (b < 0) b += d.n;
      if (a < 0 || b > d.n || a >= b) {
        diag_error(ck->d, s->loc, "slice %s%lld:%lld is empty or out of range for axis %d of size %s",
                   "", (long long)(has_lo ? lo.i : 0), (long long)(has_hi ? hi.i : d.n), ax, ds);
        return fe_val_err();
      }
      t.dim[t.rank++] = ir_dim_const(b - a);
      if (ck->g) cur = fe_lower_slice(ck, cur, ax, a, ir_dim_const(b - a), s->loc);
      continue;
    } else if (!has_lo && !has_hi) {
      t.dim[t.rank++] = d;
    } else if (has_lo && has_hi && lo.i >= 0 && hi.i > lo.i && hi.i - lo.i <= ((int64_t)1 << 40)) {
      t.dim[t.rank++] = ir_dim_const(hi.i - lo.i);  // checked against the size at run time
    } else if (has_lo && !has_hi && lo.i < 0 && lo.i > -((int64_t)1 << 40)) {
      t.dim[t.rank++] = ir_dim_const(-lo.i);
    } else if (!has_lo && has_hi && hi.i > 0 && hi.i <= ((int64_t)1 << 40)) {
      t.dim[t.rank++] = ir_dim_const(hi.i);
    } else {
      diag_error(ck->d, s->loc,
                 "a slice of the symbolic axis %s needs a constant length (x[a:b] with 0 <= a < b, "
                 "x[:b] or x[-n:])",
                 ds);
      return fe_val_err();
    }
    if (ck->g) cur = fe_lower_slice(ck, cur, ax, has_lo ? lo.i : 0, t.dim[t.rank - 1], s->loc);
  }
  return with_node(ck, fe_val_tensor(&t, e->loc), ck->g ? fe_lower_reshape(ck, cur, &t, e->loc) : NULL);
}

static FeVal eval_seq(FeCk *ck, FeEnv *env, const FeExpr *e) {
  FeVal v = {.k = e->kind == FE_EX_LIST ? FV_LIST : FV_TUPLE, .loc = e->loc, .n = e->nargs};
  v.elems = arena_alloc(ck->a, sizeof(FeVal) * (size_t)(e->nargs + 1));
  if (!v.elems) return fe_val_err();
  for (int i = 0; i < e->nargs; i++) {
    v.elems[i] = fe_eval(ck, env, e->args[i].e);
    if (v.elems[i].k == FV_ERR) return fe_val_err();
  }
  return v;
}

static FeVal eval_neg(FeCk *ck, FeEnv *env, const FeExpr *e) {
  FeVal x = fe_eval(ck, env, e->lhs);
  switch (x.k) {
  case FV_ERR: return x;
  case FV_INT:
    if (x.i == INT64_MIN) {
      diag_error(ck->d, e->loc, "integer overflow in negation");
      return fe_val_err();
    }
    return fe_val_int(-x.i, e->loc);
  case FV_FLOAT: return fe_val_float(-x.f, e->loc);
  case FV_TENSOR:
    if (x.ty.dt == IR_BOOL || x.ty.dt == IR_U8) {
      diag_error(ck->d, e->loc, "unary '-' is not defined on %s tensors", ir_dtype_info[x.ty.dt].name);
      return fe_val_err();
    }
    x.loc = e->loc;
    return with_node(ck, x, ck->g ? ir_unary(ck->g, IR_OP_NEG, x.node, e->loc) : NULL);
  default:
    diag_error(ck->d, e->loc, "unary '-' needs a number or a tensor, got %s", fe_val_describe(ck, &x));
    return fe_val_err();
  }
}

// Recursion is bounded by FE_MAX_EXPR_DEPTH (enforced by the parser).
FeVal fe_eval(FeCk *ck, FeEnv *env, const FeExpr *e) {
  if (!e) return fe_val_err();
  switch (e->kind) {
  case FE_EX_ERROR: return fe_val_err();
  case FE_EX_INT: return fe_val_int(e->ival, e->loc);
  case FE_EX_FLOAT: return fe_val_float(e->fval, e->loc);
  case FE_EX_BOOL: return fe_val_bool(e->ival != 0, e->loc);
  case FE_EX_STR: return (FeVal){.k = FV_STR, .s = e->name, .loc = e->loc};
  case FE_EX_NAME: return eval_name(ck, env, e);
  case FE_EX_NEG: return eval_neg(ck, env, e);
  case FE_EX_CALL: return eval_call(ck, env, e);
  case FE_EX_INDEX: return eval_index(ck, env, e);
  case FE_EX_LIST:
  case FE_EX_TUPLE: return eval_seq(ck, env, e);
  case FE_EX_BIN: {
    FeVal l = fe_eval(ck, env, e->lhs);
    FeVal r = fe_eval(ck, env, e->rhs);
    if (l.k == FV_ERR || r.k == FV_ERR) return fe_val_err();
    if (fe_val_is_const(&l) && fe_val_is_const(&r)) return fe_const_binop(ck, e->op, &l, &r, e->loc);
    if (l.k == FV_TENSOR || r.k == FV_TENSOR) return fe_tensor_binop(ck, e->op, &l, &r, e->loc);
    const FeVal *bad = fe_val_is_const(&l) ? &r : &l;
    diag_error(ck->d, e->loc, "'%c' needs numbers or tensors, got %s", e->op, fe_val_describe(ck, bad));
    return fe_val_err();
  }
  }
  return fe_val_err();
}

// Does e mention a name that would be a symbolic size? (Bounded recursion:
// the parser caps expression depth.)
static bool has_unbound_name(FeCk *ck, FeEnv *env, const FeExpr *e) {
  if (!e) return false;
  if (e->kind == FE_EX_NAME)
    return !fe_env_lookup(env, e->name, NULL, NULL) && ir_dtype_from_name(e->name) < 0 && !find_block(ck, e->name);
  if (e->kind == FE_EX_BIN) return has_unbound_name(ck, env, e->lhs) || has_unbound_name(ck, env, e->rhs);
  if (e->kind == FE_EX_NEG) return has_unbound_name(ck, env, e->lhs);
  return false;
}

// A dimension: an int constant expression, or (allow_sym) a product of
// symbolic sizes and constants such as B * T. Unbound names are symbolic.
bool fe_eval_dim(FeCk *ck, FeEnv *env, const FeExpr *e, bool allow_sym, bool allow_neg1, IrDim *out) {
  if (!e) return false;
  if (e->kind == FE_EX_NAME && allow_sym && !fe_env_lookup(env, e->name, NULL, NULL) &&
      ir_dtype_from_name(e->name) < 0) {
    int s = ir_symtab_intern(ck->syms, ck->a, e->name);
    if (s < 0) {
      diag_error(ck->d, e->loc, "too many symbolic sizes");
      return false;
    }
    *out = ir_dim_sym(s);
    return true;
  }
  if (e->kind == FE_EX_BIN && (e->op == '+' || e->op == '-') && allow_sym && has_unbound_name(ck, env, e)) {
    IrDim a, b;
    if (!fe_eval_dim(ck, env, e->lhs, true, false, &a) || !fe_eval_dim(ck, env, e->rhs, true, false, &b)) return false;
    IrDim nb = b;
    nb.n = e->op == '-' ? -b.n : b.n;
    if (!ir_dim_add(a, nb, out) || (ir_dim_is_const(*out) && out->n < 1) || out->n == 0) {
      diag_error(ck->d, e->loc, "dimension %s %c %s is not a size (symbolic sizes can be multiplied and divided, "
                 "not added)", fe_dim_str(ck, a), e->op, fe_dim_str(ck, b));
      return false;
    }
    return true;
  }
  if (e->kind == FE_EX_BIN && (e->op == '*' || e->op == '/') && allow_sym) {
    IrDim a, b;
    if (!fe_eval_dim(ck, env, e->lhs, true, false, &a) || !fe_eval_dim(ck, env, e->rhs, true, false, &b))
      return false;
    bool ok = e->op == '*' ? ir_dim_mul(a, b, out) : ir_dim_div(a, b, out);
    if (!ok && e->op == '*')
      diag_error(ck->d, e->loc, "dimension %s * %s is too large (at most %d symbolic factors, 64-bit sizes)",
                 fe_dim_str(ck, a), fe_dim_str(ck, b), IR_MAX_DIMSYM);
    else if (!ok)
      diag_error(ck->d, e->loc, "dimension %s / %s is not exact", fe_dim_str(ck, a), fe_dim_str(ck, b));
    else if (ir_dim_is_const(*out) && out->n < 1) {
      diag_error(ck->d, e->loc, "a dimension must be positive, got %lld", (long long)out->n);
      return false;
    }
    return ok;
  }
  FeVal v = fe_eval(ck, env, e);
  if (v.k == FV_ERR) return false;
  if (v.k == FV_FLOAT && v.s) {
    diag_error(ck->d, e->loc, "dimension is not an integer: %s = %g is not exact", v.s, v.f);
    return false;
  }
  if (v.k != FV_INT) {
    diag_error(ck->d, e->loc, "a dimension must be an integer, got %s", fe_val_describe(ck, &v));
    return false;
  }
  if (v.i < 1 && !(allow_neg1 && v.i == -1)) {
    diag_error(ck->d, e->loc, "a dimension must be positive, got %lld", (long long)v.i);
    return false;
  }
  *out = ir_dim_const(v.i);
  return true;
}

// f32[B, T, dim] -> IrType. Parameter and buffer shapes (allow_sym false)
// must be constant: an unbound name there is most likely a typo.
static bool eval_type(FeCk *ck, FeEnv *env, const FeTypeExpr *te, bool allow_sym, IrType *out) {
  if (!te) return false;
  int dt = ir_dtype_from_name(te->dtype);
  if (dt < 0) {
    static const char *names[IR_DT_COUNT];
    for (int i = 0; i < IR_DT_COUNT; i++) names[i] = ir_dtype_info[i].name;
    diag_error(ck->d, te->dtloc, "unknown dtype '%s'%s (dtypes: f32 f16 bf16 i32 i64 i8 u8 bool)",
               te->dtype, fe_suggest(ck, te->dtype, names, IR_DT_COUNT));
    return false;
  }
  if (te->ndims > IR_MAX_RANK) {
    diag_error(ck->d, te->loc, "rank %d is above the limit of %d", te->ndims, IR_MAX_RANK);
    return false;
  }
  IrType t = {.dt = (IrDType)dt, .rank = te->ndims};
  bool ok = true;
  for (int i = 0; i < te->ndims; i++) {
    const FeExpr *de = te->dims[i];
    if (!allow_sym && de && de->kind == FE_EX_NAME && !fe_env_lookup(env, de->name, NULL, NULL)) {
      diag_error(ck->d, de->loc,
                 "'%s' is not a config value or block argument; parameter and buffer shapes must be "
                 "constant%s",
                 de->name, suggest_name(ck, env, de->name, false));
      ok = false;
      continue;
    }
    ok &= fe_eval_dim(ck, env, de, allow_sym, false, &t.dim[i]);
  }
  *out = t;
  return ok;
}

// ---- functions: forward bodies and the train loss ----

bool fe_is_config_name(FeCk *ck, const char *name, SrcLoc *where) {
  int idx;
  FeEnv *e = env_of_kind(ck->config, FE_ENV_CONFIG, name, &idx);
  if (e && where) *where = e->locs.data[idx];
  return e != NULL;
}

static bool reject_config_name(FeCk *ck, const char *name, SrcLoc loc, const char *what) {
  SrcLoc prev;
  if (!fe_is_config_name(ck, name, &prev)) return false;
  diag_error(ck->d, loc, "%s '%s' reuses the name of a config value", what, name);
  diag_note(ck->d, prev, "'%s' is defined in config here", name);
  return true;
}

// Runs statements in env (whose innermost frame holds the parameters and
// receives the locals). Returns the value of the return statement.
FeVal fe_run_body(FeCk *ck, FeEnv *env, const FeItem *fn, FeEnv *members) {
  for (int i = 0; i < fn->nbody; i++) {
    const FeStmt *st = fn->body[i];
    if (st->kind == FE_ST_RETURN) {
      if (i + 1 < fn->nbody) diag_error(ck->d, fn->body[i + 1]->loc, "statement after return is never run");
      if (st->nexprs == 1) return fe_eval(ck, env, st->exprs[0]);
      FeVal t = {.k = FV_TUPLE, .n = st->nexprs, .loc = st->loc};
      t.elems = arena_alloc(ck->a, sizeof(FeVal) * (size_t)st->nexprs);
      if (!t.elems) return fe_val_err();
      for (int j = 0; j < st->nexprs; j++) {
        t.elems[j] = fe_eval(ck, env, st->exprs[j]);
        if (t.elems[j].k == FV_ERR) return fe_val_err();
      }
      return t;
    }
    FeVal v = fe_eval(ck, env, st->exprs[0]);
    bool bad = false;
    for (int j = 0; j < st->nnames; j++) {
      const char *nm = st->names[j];
      SrcLoc nl = st->name_locs ? st->name_locs[j] : st->loc;
      int idx;
      if (reject_config_name(ck, nm, nl, "local")) bad = true;
      else if (members && env_of_kind(members, FE_ENV_MEMBERS, nm, &idx)) {
        diag_error(ck->d, nl, "'%s' is a parameter, buffer or instance of this block; a local needs "
                              "another name", nm);
        diag_note(ck->d, members->locs.data[idx], "'%s' is declared here", nm);
        bad = true;
      }
    }
    if (v.k == FV_ERR || bad) {
      for (int j = 0; j < st->nnames; j++) env_bind(ck, env, st->names[j], fe_val_err(), st->loc);
      continue;
    }
    if (st->nnames == 1) {
      env_bind(ck, env, st->names[0], v, st->name_locs ? st->name_locs[0] : st->loc);
      continue;
    }
    if (v.k != FV_TUPLE || v.n != st->nnames) {
      diag_error(ck->d, st->loc, "cannot unpack %s into %d names", fe_val_describe(ck, &v), st->nnames);
      for (int j = 0; j < st->nnames; j++) env_bind(ck, env, st->names[j], fe_val_err(), st->loc);
      continue;
    }
    for (int j = 0; j < st->nnames; j++)
      env_bind(ck, env, st->names[j], v.elems[j], st->name_locs ? st->name_locs[j] : st->loc);
  }
  diag_error(ck->d, fn->loc, "%s has no return statement", ck->fn_label);
  return fe_val_err();
}

// Checks declared result types (-> TYPES) against what the body returned.
static void check_results(FeCk *ck, FeEnv *env, const FeItem *fn, const FeVal *res) {
  if (res->k == FV_ERR || fn->nrets == 0) return;
  int n = res->k == FV_TUPLE ? res->n : 1;
  if (n != fn->nrets) {
    diag_error(ck->d, fn->rets[0]->loc, "%s declares %d result%s but returns %d", ck->fn_label,
               fn->nrets, fn->nrets == 1 ? "" : "s", n);
    return;
  }
  for (int i = 0; i < n; i++) {
    const FeVal *r = res->k == FV_TUPLE ? &res->elems[i] : res;
    IrType want;
    if (!eval_type(ck, env, fn->rets[i], true, &want)) continue;
    if (r->k != FV_TENSOR || !ir_type_eq(&want, &r->ty)) {
      diag_error(ck->d, fn->rets[i]->loc, "%s is declared to return %s but returns %s", ck->fn_label,
                 fe_type_str(ck, &want), fe_val_describe(ck, r));
      diag_note(ck->d, r->loc, "the returned value is computed here");
    }
  }
}

static const FeItem *find_func(const FeDecl *d, const char *name) {
  for (int i = 0; i < d->nitems; i++)
    if (d->items[i]->kind == FE_IT_FUNC && strcmp(d->items[i]->name, name) == 0) return d->items[i];
  return NULL;
}

static FeEnv *inst_env(FeCk *ck, FeInst *in);

// An instance's name for messages (the root is named after its model).
static const char *inst_label(const FeInst *in) { return in->name[0] ? in->name : in->block->name; }

// Calls an instance's forward with argument values: checks the body with
// those types, once per distinct argument list.
static FeVal call_inst(FeCk *ck, FeInst *in, FeVal *args, int nargs, SrcLoc loc) {
  if (in->repeat > 0 && ck->g) {  // lowering: every layer, with its own parameters
    size_t saved = ck->plen;
    FeVal x = args[0];
    for (int i = 0; i < in->repeat && x.k != FV_ERR; i++) {
      ck->plen += (size_t)snprintf(ck->prefix + ck->plen, sizeof ck->prefix - ck->plen, "%s%s.%d",
                                   saved ? "." : "", in->name, i);
      args[0] = x;
      x = call_inst(ck, in->children[0], args, nargs, loc);
      ck->plen = saved;
      ck->prefix[saved] = 0;
    }
    return x;
  }
  if (in->repeat > 0) {  // apply the layers in order, extra arguments unchanged
    if (nargs < 1) {
      diag_error(ck->d, loc, "'%s' (repeat of %s) needs at least one argument", in->name,
                 in->children[0]->block->name);
      return fe_val_err();
    }
    FeVal r = call_inst(ck, in->children[0], args, nargs, loc);
    if (r.k == FV_ERR || in->repeat == 1) return r;
    if (!fe_val_same(&r, &args[0])) {
      diag_error(ck->d, loc,
                 "'%s' repeats %s %d times, so it must return what it is given: it takes %s and "
                 "returns %s",
                 in->name, in->children[0]->block->name, in->repeat, fe_val_describe(ck, &args[0]),
                 fe_val_describe(ck, &r));
      return fe_val_err();
    }
    return r;
  }
  for (struct FeMemo *m = ck->g ? NULL : in->memo; m; m = m->next) {
    if (m->nargs != nargs) continue;
    bool same = true;
    for (int i = 0; i < nargs && same; i++) same = fe_val_same(&m->args[i], &args[i]);
    if (same) return m->result;
  }
  const FeItem *fn = find_func(in->block, "forward");
  bool misnamed = false;  // a function item with another name was reported already
  for (int i = 0; !fn && i < in->block->nitems; i++) misnamed |= in->block->items[i]->kind == FE_IT_FUNC;
  if (!fn && misnamed) return fe_val_err();
  if (!fn) {
    diag_error(ck->d, loc, "block '%s' has no forward, so '%s' cannot be called", in->block->name, inst_label(in));
    diag_note(ck->d, in->block->name_loc, "'%s' is declared here", in->block->name);
    return fe_val_err();
  }
  if (nargs != fn->nparams) {
    diag_error(ck->d, loc, "'%s' (%s) takes %d argument%s, got %d", inst_label(in), in->block->name, fn->nparams,
               fn->nparams == 1 ? "" : "s", nargs);
    diag_note(ck->d, fn->loc, "%s.forward is declared here", in->block->name);
    return fe_val_err();
  }
  char saved[sizeof ck->fn_label];
  memcpy(saved, ck->fn_label, sizeof saved);
  size_t saved_plen = ck->plen;
  // the path of this instance; a repeat template ("0", never a user name) was
  // given "h.3" by its group above
  if (ck->g && in->name[0] && strcmp(in->name, "0") != 0)
    ck->plen += (size_t)snprintf(ck->prefix + ck->plen, sizeof ck->prefix - ck->plen, "%s%s", ck->plen ? "." : "",
                                 in->name);
  snprintf(ck->fn_label, sizeof ck->fn_label, "%s.forward", in->block->name);
  FeEnv *env = env_new(ck, inst_env(ck, in), FE_ENV_LOCALS);
  FeVal res = fe_val_err();
  bool ok = env != NULL;
  for (int i = 0; ok && i < nargs; i++) {
    const FeParam *p = &fn->params[i];
    if (reject_config_name(ck, p->name, p->loc, "forward parameter")) ok = false;
    if (p->type && args[i].k != FV_ERR) {
      IrType want;
      if (eval_type(ck, env, p->type, true, &want) &&
          (args[i].k != FV_TENSOR || !ir_type_eq(&want, &args[i].ty))) {
        diag_error(ck->d, args[i].loc, "argument %d of '%s' must be %s, got %s", i + 1, inst_label(in),
                   fe_type_str(ck, &want), fe_val_describe(ck, &args[i]));
        diag_note(ck->d, p->loc, "parameter '%s' of %s.forward is declared here", p->name, in->block->name);
        ok = false;
      }
    }
    env_bind(ck, env, p->name, args[i], p->loc);
  }
  if (ok) {
    res = fe_run_body(ck, env, fn, inst_env(ck, in));
    check_results(ck, env, fn, &res);
  }
  memcpy(ck->fn_label, saved, sizeof saved);
  ck->plen = saved_plen;
  ck->prefix[saved_plen] = 0;
  struct FeMemo *m = ck->g ? NULL : arena_alloc(ck->a, sizeof *m);
  if (m) {
    m->args = args;
    m->nargs = nargs;
    m->result = res;
    m->next = in->memo;
    in->memo = m;
  }
  return res;
}

// ---- elaboration: blocks -> instances ----

static FeEnv *inst_env(FeCk *ck, FeInst *in) {
  (void)ck;
  return in->env;
}

// Block arguments are compile-time values.
static bool is_static(const FeVal *v) {
  if (fe_val_is_const(v) || v->k == FV_DTYPE || v->k == FV_STR) return true;
  if (v->k == FV_LIST || v->k == FV_TUPLE) {
    for (int i = 0; i < v->n; i++)
      if (!is_static(&v->elems[i])) return false;
    return true;
  }
  return false;
}

// Binds the arguments of a block instantiation into argenv.
static bool bind_block_args(FeCk *ck, FeEnv *caller, const FeDecl *blk, const FeArg *args, int nargs,
                            SrcLoc loc, FeEnv *argenv) {
  bool ok = true;
  FeVal *vals = arena_alloc(ck->a, sizeof(FeVal) * (size_t)(blk->nargs + 1));
  bool *given = arena_alloc(ck->a, (size_t)blk->nargs + 1);
  if (!vals || !given) return false;
  int npos = 0;
  for (int i = 0; i < nargs; i++) {
    int slot = -1;
    if (args[i].kw) {
      for (int j = 0; j < blk->nargs; j++)
        if (strcmp(blk->args[j].name, args[i].kw) == 0) slot = j;
      if (slot < 0) {
        const char *cands[64];
        int nc = blk->nargs < 64 ? blk->nargs : 64;
        for (int j = 0; j < nc; j++) cands[j] = blk->args[j].name;
        diag_error(ck->d, args[i].kwloc, "block '%s' has no argument '%s'%s", blk->name, args[i].kw,
                   fe_suggest(ck, args[i].kw, cands, nc));
        ok = false;
        continue;
      }
    } else {
      slot = npos++;
      if (slot >= blk->nargs) {
        diag_error(ck->d, args[i].e ? args[i].e->loc : loc, "block '%s' takes %d argument%s, got %d",
                   blk->name, blk->nargs, blk->nargs == 1 ? "" : "s", nargs);
        diag_note(ck->d, blk->name_loc, "'%s' is declared here", blk->name);
        return false;
      }
    }
    if (given[slot]) {
      diag_error(ck->d, args[i].kwloc, "argument '%s' of block '%s' is given twice", blk->args[slot].name,
                 blk->name);
      ok = false;
      continue;
    }
    given[slot] = true;
    vals[slot] = fe_eval(ck, caller, args[i].e);
    if (vals[slot].k == FV_ERR) {
      ok = false;
    } else if (!is_static(&vals[slot])) {
      diag_error(ck->d, args[i].e->loc,
                 "block arguments are compile-time values, got %s; pass tensors to the forward instead",
                 fe_val_describe(ck, &vals[slot]));
      ok = false;
    }
  }
  for (int j = 0; j < blk->nargs && ok; j++) {
    if (!given[j] && !blk->defaults[j]) {
      diag_error(ck->d, loc, "block '%s' needs a value for its argument '%s'", blk->name, blk->args[j].name);
      diag_note(ck->d, blk->args[j].loc, "'%s' is declared here without a default", blk->args[j].name);
      ok = false;
      break;
    }
    if (!given[j]) {  // defaults see the config and the earlier arguments
      vals[j] = fe_eval(ck, argenv, blk->defaults[j]);
      if (vals[j].k == FV_ERR) ok = false;
    }
    env_bind(ck, argenv, blk->args[j].name, vals[j], blk->args[j].loc);
  }
  return ok;
}

static FeInst *elaborate(FeCk *ck, FeEnv *caller, const FeDecl *blk, const char *name, const FeArg *args,
                         int nargs, SrcLoc loc);

static bool declare_member(FeCk *ck, FeEnv *members, const char *name, SrcLoc loc, const char *what) {
  int idx = env_find_local(members, name);
  if (idx >= 0) {
    diag_error(ck->d, loc, "'%s' is already declared in this block", name);
    diag_note(ck->d, members->locs.data[idx], "the earlier declaration of '%s' is here", name);
    return false;
  }
  return !reject_config_name(ck, name, loc, what);
}

static bool eval_init(FeCk *ck, FeEnv *env, const FeExpr *e, IrDType dt, FeInit *out);

static void add_child(FeCk *ck, FeInst *in, FeInst *child) {
  if (in->nchildren < in->cap_children || vec_grow_(ck->a, (void **)&in->children, &in->cap_children, sizeof(FeInst *)))
    in->children[in->nchildren++] = child;
}

static void add_param(FeCk *ck, FeInst *in, FeParamDecl p) {
  if (in->nparams < in->cap_params || vec_grow_(ck->a, (void **)&in->params, &in->cap_params, sizeof(FeParamDecl)))
    in->params[in->nparams++] = p;
}

// NAME = BLOCK, NAME = BLOCK(ARGS): the block, if the value names one that
// no local name shadows.
static const FeDecl *instance_block(FeCk *ck, FeEnv *env, const FeExpr *e) {
  if (!e || (e->kind != FE_EX_NAME && e->kind != FE_EX_CALL)) return NULL;
  const FeDecl *b = find_block(ck, e->name);
  int idx;
  // a block named like a config value is an error reported once (check_toplevel);
  // here the block wins, so its instance does not turn into a number
  bool local = fe_env_lookup(env, e->name, NULL, NULL) && !(b && env_of_kind(env, FE_ENV_CONFIG, e->name, &idx) &&
                                                            !env_of_kind(env, FE_ENV_ARGS, e->name, &idx) &&
                                                            !env_of_kind(env, FE_ENV_MEMBERS, e->name, &idx));
  return local ? NULL : b;
}

static void elab_item(FeCk *ck, FeInst *in, FeEnv *members, const FeItem *it, const FeItem **fwd) {
  switch (it->kind) {
  case FE_IT_PARAM:
  case FE_IT_BUFFER: {
    bool ok = declare_member(ck, members, it->name, it->name_loc,
                             it->kind == FE_IT_PARAM ? "parameter" : "buffer");
    FeParamDecl p = {.name = it->name, .is_buffer = it->kind == FE_IT_BUFFER, .loc = it->name_loc};
    ok = eval_type(ck, members, it->type, false, &p.type) && ok;
    ok = ok && eval_init(ck, members, it->expr, p.type.dt, &p.init);
    FeVal pv = fe_val_err();
    FeParamDecl *keep = ok ? arena_alloc(ck->a, sizeof *keep) : NULL;
    if (keep) {
      add_param(ck, in, p);
      *keep = p;
      pv = fe_val_tensor(&p.type, it->name_loc);
      pv.param = keep;
    }
    env_bind(ck, members, it->name, pv, it->name_loc);
    return;
  }
  case FE_IT_REPEAT: {
    bool ok = declare_member(ck, members, it->name, it->name_loc, "instance");
    FeVal n = fe_eval(ck, members, it->expr);
    const FeDecl *b = find_block(ck, it->block);
    if (n.k != FV_ERR && (n.k != FV_INT || n.i < 1 || n.i > FE_MAX_REPEAT)) {
      diag_error(ck->d, it->expr->loc, "repeat count must be an integer from 1 to %d, got %s", FE_MAX_REPEAT,
                 fe_val_describe(ck, &n));
      ok = false;
    }
    if (!b) {
      diag_error(ck->d, it->block_loc, "unknown block '%s'%s", it->block, suggest_name(ck, members, it->block, false));
      ok = false;
    }
    FeInst *g = NULL;
    if (ok && n.k == FV_INT) {
      g = arena_alloc(ck->a, sizeof(FeInst));
      FeInst *t = g ? elaborate(ck, members, b, "0", it->args, it->nargs, it->block_loc) : NULL;
      if (t) {
        g->name = it->name;
        g->block = b;
        g->repeat = (int)n.i;
        add_child(ck, g, t);
        add_child(ck, in, g);
      } else {
        g = NULL;
      }
    }
    env_bind(ck, members, it->name, g ? (FeVal){.k = FV_INST, .inst = g, .loc = it->name_loc} : fe_val_err(),
             it->name_loc);
    return;
  }
  case FE_IT_BIND: {
    const FeDecl *b = instance_block(ck, members, it->expr);
    bool ok = declare_member(ck, members, it->name, it->name_loc, b ? "instance" : "constant");
    if (b) {
      const FeExpr *e = it->expr;
      FeInst *c = ok ? elaborate(ck, members, b, it->name, e->args, e->kind == FE_EX_CALL ? e->nargs : 0, e->loc)
                     : NULL;
      if (c) add_child(ck, in, c);
      env_bind(ck, members, it->name, c ? (FeVal){.k = FV_INST, .inst = c, .loc = it->name_loc} : fe_val_err(),
               it->name_loc);
      return;
    }
    FeVal v = fe_eval(ck, members, it->expr);
    if (v.k != FV_ERR && !is_static(&v)) {
      diag_error(ck->d, it->expr->loc,
                 "a block item must be a param, buffer, instance or constant, but this is %s; compute "
                 "tensors inside forward",
                 fe_val_describe(ck, &v));
      v = fe_val_err();
    }
    env_bind(ck, members, it->name, ok ? v : fe_val_err(), it->name_loc);
    return;
  }
  case FE_IT_FUNC:
    if (strcmp(it->name, "forward") != 0) {
      static const char *const fwd_name[] = {"forward"};
      diag_error(ck->d, it->loc, "a block defines 'forward', not '%s'%s", it->name,
                 strcmp(it->name, "loss") == 0 ? " (a loss belongs in a train section)"
                                               : fe_suggest(ck, it->name, fwd_name, 1));
    } else if (*fwd) {
      diag_error(ck->d, it->loc, "block '%s' defines forward twice", in->block->name);
      diag_note(ck->d, (*fwd)->loc, "the first forward is here");
    } else {
      *fwd = it;
    }
    return;
  }
}

static FeInst *elaborate(FeCk *ck, FeEnv *caller, const FeDecl *blk, const char *name, const FeArg *args,
                         int nargs, SrcLoc loc) {
  for (int i = 0; i < ck->nstack; i++) {
    if (ck->stack[i] != blk) continue;
    diag_error(ck->d, loc, "block '%s' contains itself", blk->name);
    for (int j = i + 1; j < ck->nstack; j++)
      diag_note(ck->d, ck->stack_loc[j], "'%s' is instantiated in '%s' here", ck->stack[j]->name,
                ck->stack[j - 1]->name);
    return NULL;
  }
  if (ck->nstack >= FE_MAX_BLOCK_DEPTH) {
    diag_error(ck->d, loc, "blocks nested more than %d deep", FE_MAX_BLOCK_DEPTH);
    return NULL;
  }
  if (++ck->ninst > FE_MAX_INSTANCES) {
    if (ck->ninst == FE_MAX_INSTANCES + 1)
      diag_error(ck->d, loc, "the model has more than %d block instances (not counting repeats)",
                 FE_MAX_INSTANCES);
    return NULL;
  }
  FeInst *in = arena_alloc(ck->a, sizeof(FeInst));
  FeEnv *argenv = env_new(ck, ck->config, FE_ENV_ARGS);
  FeEnv *members = env_new(ck, argenv, FE_ENV_MEMBERS);
  if (!in || !argenv || !members) return NULL;
  in->name = name;
  in->block = blk;
  in->env = members;
  if (!bind_block_args(ck, caller, blk, args, nargs, loc, argenv)) return NULL;
  ck->stack[ck->nstack] = blk;
  ck->stack_loc[ck->nstack++] = loc;
  const FeItem *fwd = NULL;
  for (int i = 0; i < blk->nitems && !diag_full(ck->d); i++) elab_item(ck, in, members, blk->items[i], &fwd);
  ck->nstack--;
  return in;
}

// zeros | ones | constant(v) | normal(std) | normal(mean, std) | uniform(lo, hi)
static bool eval_init(FeCk *ck, FeEnv *env, const FeExpr *e, IrDType dt, FeInit *out) {
  static const char *kinds[] = {"zeros", "ones", "constant", "normal", "uniform"};
  static const int nargs[] = {0, 0, 1, 2, 2};
  if (!e || e->kind == FE_EX_ERROR) return false;
  if (e->kind != FE_EX_NAME && e->kind != FE_EX_CALL) {
    diag_error(ck->d, e->loc, "an initializer is zeros, ones, constant(v), normal(std), normal(mean, std) or "
                              "uniform(lo, hi)");
    return false;
  }
  int k = -1;
  for (int i = 0; i < 5; i++)
    if (strcmp(e->name, kinds[i]) == 0) k = i;
  if (k < 0) {
    diag_error(ck->d, e->loc, "unknown initializer '%s'%s (zeros, ones, constant, normal, uniform)", e->name,
               fe_suggest(ck, e->name, kinds, 5));
    return false;
  }
  int n = e->kind == FE_EX_CALL ? e->nargs : 0;
  int lo = k == 3 ? 1 : nargs[k];
  if (n < lo || n > nargs[k]) {
    diag_error(ck->d, e->loc, "'%s' takes %s, got %d argument%s", kinds[k],
               k < 2 ? "no arguments" : k == 2 ? "one value" : k == 3 ? "(std) or (mean, std)" : "(lo, hi)", n,
               n == 1 ? "" : "s");
    return false;
  }
  double v[2] = {0, 0};
  for (int i = 0; i < n; i++) {
    if (e->args[i].kw) {
      diag_error(ck->d, e->args[i].kwloc, "initializer arguments are positional");
      return false;
    }
    FeVal a = fe_eval(ck, env, e->args[i].e);
    if (a.k == FV_ERR) return false;
    if (!fe_val_is_num(&a)) {
      diag_error(ck->d, e->args[i].e->loc, "'%s' needs numbers, got %s", kinds[k], fe_val_describe(ck, &a));
      return false;
    }
    v[i] = fe_val_num(&a);
  }
  out->kind = kinds[k];
  if (k == 2) out->a = v[0];
  if (k == 3) {
    out->a = n == 2 ? v[0] : 0;
    out->b = n == 2 ? v[1] : v[0];
    if (out->b < 0) {
      diag_error(ck->d, e->loc, "normal: std must not be negative, got %g", out->b);
      return false;
    }
  }
  if (k == 4) {
    out->a = v[0];
    out->b = v[1];
    if (!(v[0] < v[1])) {
      diag_error(ck->d, e->loc, "uniform: lo must be below hi, got (%g, %g)", v[0], v[1]);
      return false;
    }
  }
  if (k >= 3 && !ir_dtype_info[dt].is_float) {
    diag_error(ck->d, e->loc, "'%s' initializes float tensors, not %s", kinds[k], ir_dtype_info[dt].name);
    return false;
  }
  return true;
}

// ---- config and --set ----

FeOverride *fe_find_override(FeCk *ck, const char *key) {
  for (int i = 0; ck->opts && i < ck->opts->noverrides; i++)
    if (strcmp(ck->opts->overrides[i].key, key) == 0) return &ck->opts->overrides[i];
  return NULL;
}

// Parses VALUE of --set KEY=VALUE to the kind of want (int, float, bool).
bool fe_parse_override(FeCk *ck, FeOverride *o, const FeVal *want, FeVal *out) {
  const char *s = o->value;
  char *end;
  o->used = true;
  if (want->k == FV_BOOL) {
    if (strcmp(s, "true") && strcmp(s, "false")) {
      diag_error(ck->d, (SrcLoc){0}, "--set %s=%s: '%s' is a boolean: use true or false", o->key, s, o->key);
      return false;
    }
    *out = fe_val_bool(s[0] == 't', want->loc);
    return true;
  }
  errno = 0;
  long long iv = strtoll(s, &end, 10);
  if (*s && !*end && errno == 0) {
    *out = want->k == FV_FLOAT ? fe_val_float((double)iv, want->loc) : fe_val_int(iv, want->loc);
    return true;
  }
  double fv = strtod(s, &end);
  if (*s && !*end && isfinite(fv)) {
    if (want->k == FV_INT) {
      diag_error(ck->d, (SrcLoc){0}, "--set %s=%s: '%s' is an integer", o->key, s, o->key);
      return false;
    }
    *out = fe_val_float(fv, want->loc);
    return true;
  }
  diag_error(ck->d, (SrcLoc){0}, "--set %s=%s: '%s' is not a number", o->key, s, s);
  return false;
}

static void eval_config(FeCk *ck, const FeDecl *d) {
  for (int i = 0; i < d->nitems; i++) {
    const FeItem *it = d->items[i];
    if (it->kind != FE_IT_BIND) {
      diag_error(ck->d, it->loc, "config holds constants only (NAME = VALUE)");
      continue;
    }
    int prev = env_find_local(ck->config, it->name);
    if (prev >= 0) {
      diag_error(ck->d, it->name_loc, "config value '%s' is defined twice", it->name);
      diag_note(ck->d, ck->config->locs.data[prev], "the first definition is here");
      continue;
    }
    FeVal v = fe_eval(ck, ck->config, it->expr);
    if (v.k != FV_ERR && !fe_val_is_const(&v)) {
      diag_error(ck->d, it->expr->loc, "a config value is an integer, a number or a boolean, got %s",
                 fe_val_describe(ck, &v));
      v = fe_val_err();
    }
    FeOverride *o = fe_find_override(ck, it->name);
    if (o && v.k != FV_ERR && !fe_parse_override(ck, o, &v, &v)) v = fe_val_err();
    if (o) o->used = true;
    env_bind(ck, ck->config, it->name, v, it->name_loc);
  }
}

// ---- models ----

static bool numel(FeCk *ck, const FeParamDecl *p, int64_t *out) {
  int64_t n = 1;
  for (int i = 0; i < p->type.rank; i++)
    if (__builtin_mul_overflow(n, p->type.dim[i].n, &n) || n > ((int64_t)1 << 40)) {
      diag_error(ck->d, p->loc, "'%s' is too large: %s has more than 2^40 elements", p->name,
                 fe_type_str(ck, &p->type));
      return false;
    }
  *out = n;
  return true;
}

// Trainable parameters below in (repeats counted), with overflow checks.
static bool count_params(FeCk *ck, const FeInst *in, int64_t *tensors, int64_t *elems) {
  int64_t t = 0, e = 0, n;
  for (int i = 0; i < in->nparams; i++) {
    if (in->params[i].is_buffer) continue;
    if (!numel(ck, &in->params[i], &n) || __builtin_add_overflow(e, n, &e)) return false;
    t++;
  }
  for (int i = 0; i < in->nchildren; i++) {
    int64_t ct, ce;
    if (!count_params(ck, in->children[i], &ct, &ce)) return false;
    if (__builtin_add_overflow(t, ct, &t) || __builtin_add_overflow(e, ce, &e)) return false;
  }
  if (in->repeat > 0 && (__builtin_mul_overflow(t, in->repeat, &t) || __builtin_mul_overflow(e, in->repeat, &e))) {
    diag_error(ck->d, in->block->name_loc, "'%s': the parameter count overflows", in->name);
    return false;
  }
  *tensors = t;
  *elems = e;
  return true;
}

// Typed parameters of a model forward or a train loss: bound in env.
bool fe_bind_typed_params(FeCk *ck, FeEnv *env, const FeItem *fn, IrType **types, const char ***names) {
  bool ok = true;
  *types = arena_alloc(ck->a, sizeof(IrType) * (size_t)(fn->nparams + 1));
  *names = arena_alloc(ck->a, sizeof(char *) * (size_t)(fn->nparams + 1));
  if (!*types || !*names) return false;
  for (int i = 0; i < fn->nparams; i++) {
    const FeParam *p = &fn->params[i];
    (*names)[i] = p->name;
    if (reject_config_name(ck, p->name, p->loc, "parameter")) ok = false;
    if (env_find_local(env, p->name) >= 0) {
      diag_error(ck->d, p->loc, "parameter '%s' is declared twice", p->name);
      ok = false;
    }
    if (!p->type) {
      diag_error(ck->d, p->loc, "the inputs of %s need types, e.g. '%s: i32[B, T]'", ck->fn_label, p->name);
      ok = false;
      env_bind(ck, env, p->name, fe_val_err(), p->loc);
      continue;
    }
    if (!eval_type(ck, env, p->type, true, &(*types)[i])) {
      ok = false;
      env_bind(ck, env, p->name, fe_val_err(), p->loc);
      continue;
    }
    IrDim n = ir_dim_const(1);
    bool fits = true;
    for (int k = 0; k < (*types)[i].rank && fits; k++) fits = ir_dim_mul(n, (*types)[i].dim[k], &n);
    if (!fits || n.n > ((int64_t)1 << 48)) {
      diag_error(ck->d, p->type->loc, "input '%s' is too large: %s", p->name, fe_type_str(ck, &(*types)[i]));
      ok = false;
    }
    env_bind(ck, env, p->name, fe_val_tensor(&(*types)[i], p->loc), p->loc);
  }
  return ok;
}

static FeModel *check_model(FeCk *ck, const FeDecl *md) {
  FeModel *m = arena_alloc(ck->a, sizeof(FeModel));
  if (!m) return NULL;
  m->decl = md;
  ck->ninst = 0;
  if (md->nargs > 0)
    for (int i = 0; i < md->nargs; i++)
      if (!md->defaults[i]) {
        diag_error(ck->d, md->args[i].loc, "model argument '%s' needs a default value (models are entry points)",
                   md->args[i].name);
        return NULL;
      }
  FeInst *root = elaborate(ck, ck->config, md, "", NULL, 0, md->name_loc);
  if (!root) return NULL;
  m->root = root;
  const FeItem *fn = find_func(md, "forward");
  if (!fn) {
    diag_error(ck->d, md->name_loc, "model '%s' has no forward", md->name);
    return NULL;
  }
  snprintf(ck->fn_label, sizeof ck->fn_label, "%s.forward", md->name);
  FeEnv *env = env_new(ck, root->env, FE_ENV_LOCALS);
  if (!env || !fe_bind_typed_params(ck, env, fn, &m->inputs, &m->input_names)) return NULL;
  m->ninputs = fn->nparams;
  int nerr = ck->d->nerr;
  FeVal res = fe_run_body(ck, env, fn, root->env);
  check_results(ck, env, fn, &res);
  if (ck->d->nerr > nerr) res = fe_val_err();
  // a train loss calling the model gets this result instead of checking (and
  // reporting) the forward again
  struct FeMemo *memo = arena_alloc(ck->a, sizeof *memo);
  FeVal *args = arena_alloc(ck->a, sizeof(FeVal) * (size_t)(fn->nparams + 1));
  if (memo && args) {
    for (int i = 0; i < fn->nparams; i++) args[i] = fe_val_tensor(&m->inputs[i], fn->params[i].loc);
    *memo = (struct FeMemo){.next = root->memo, .args = args, .nargs = fn->nparams, .result = res};
    root->memo = memo;
  }
  if (res.k == FV_ERR) return NULL;
  int n = res.k == FV_TUPLE ? res.n : 1;
  m->outputs = arena_alloc(ck->a, sizeof(IrType) * (size_t)n);
  if (!m->outputs) return NULL;
  for (int i = 0; i < n; i++) {
    const FeVal *r = res.k == FV_TUPLE ? &res.elems[i] : &res;
    if (r->k != FV_TENSOR) {
      diag_error(ck->d, r->loc, "model '%s' must return tensors, but this is %s", md->name, fe_val_describe(ck, r));
      return NULL;
    }
    m->outputs[m->noutputs++] = r->ty;
  }
  if (!count_params(ck, root, &m->nparam_tensors, &m->nparam_elems)) return NULL;
  return m;
}

// ---- the whole file ----

// Top-level names are unique, and distinct from config names.
static void check_toplevel(FeCk *ck) {
  for (int i = 0; i < ck->ast->ndecls; i++) {
    const FeDecl *a = ck->ast->decls[i];
    if (!a || !a->name || a->kind == FE_DECL_TRAIN) continue;
    const FeDecl *b = find_block(ck, a->name);
    if (b != a) {
      diag_error(ck->d, a->name_loc, "'%s' is defined twice", a->name);
      diag_note(ck->d, b->name_loc, "the first definition is here");
    }
    reject_config_name(ck, a->name, a->name_loc, a->kind == FE_DECL_MODEL ? "model" : "block");
    for (int j = 0; j < a->nargs; j++)
      for (int k = 0; k < j; k++)
        if (strcmp(a->args[j].name, a->args[k].name) == 0) {
          diag_error(ck->d, a->args[j].loc, "argument '%s' is declared twice", a->args[j].name);
          break;
        }
  }
}

static const FeDecl *find_model(FeCk *ck, const char *name) {
  const FeDecl *last = NULL;
  for (int i = 0; i < ck->ast->ndecls; i++) {
    const FeDecl *d = ck->ast->decls[i];
    if (d && d->kind == FE_DECL_MODEL && (!name || strcmp(d->name, name) == 0)) last = d;
  }
  return last;
}

static void model_not_found(FeCk *ck, const char *name, SrcLoc loc, const char *prefix) {
  const char *names[64];
  int n = 0;
  for (int i = 0; i < ck->ast->ndecls && n < 64; i++)
    if (ck->ast->decls[i] && ck->ast->decls[i]->kind == FE_DECL_MODEL) names[n++] = ck->ast->decls[i]->name;
  char list[512] = "";
  for (int i = 0; i < n; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
  diag_error(ck->d, loc, "%sno model named '%s'%s (models in this file: %s)", prefix, name, fe_suggest(ck, name, names, n),
             n ? list : "none");
}

FeModel *fe_check(Arena *a, Diag *d, const FeAst *ast, FeCheckOpts *opts) {
  FeCk ck = {.a = a, .d = d, .ast = ast, .opts = opts};
  ck.syms = arena_alloc(a, sizeof(IrSymTab));
  ck.config = env_new(&ck, NULL, FE_ENV_CONFIG);
  ck.blocks = env_new(&ck, NULL, FE_ENV_CONFIG);
  if (!ck.syms || !ck.config || !ck.blocks) return NULL;
  for (int i = 0; i < ast->ndecls; i++) {
    const FeDecl *bd = ast->decls[i];
    if (bd && (bd->kind == FE_DECL_BLOCK || bd->kind == FE_DECL_MODEL) && env_find_local(ck.blocks, bd->name) < 0)
      env_bind(&ck, ck.blocks, bd->name, (FeVal){.k = FV_BLOCK, .block = bd}, bd->name_loc);
  }
  for (int i = 0; i < ast->ndecls; i++)
    if (ast->decls[i] && ast->decls[i]->kind == FE_DECL_CONFIG) eval_config(&ck, ast->decls[i]);
  check_toplevel(&ck);
  const char *want = opts ? opts->model_name : NULL;
  const FeDecl *chosen = find_model(&ck, want);
  if (!chosen) {
    if (want) model_not_found(&ck, want, (SrcLoc){0}, "--model: ");
    else diag_error(d, (SrcLoc){.file = ast->file, .line = 1, .col = 1}, "%s has no model (model NAME { ... })",
                    ast->path);
  }
  FeModel *result = NULL;
  FeModel **models = arena_alloc(a, sizeof(FeModel *) * (size_t)(ast->ndecls + 1));
  if (!models) return NULL;
  for (int i = 0; i < ast->ndecls && !diag_full(d); i++) {  // every model, so check sees all errors
    const FeDecl *md = ast->decls[i];
    if (!md || md->kind != FE_DECL_MODEL) continue;
    models[i] = check_model(&ck, md);
    if (models[i]) models[i]->syms = *ck.syms;
    if (md == chosen) result = models[i];
  }
  for (int i = 0; i < ast->ndecls && !diag_full(d); i++) {
    const FeDecl *td = ast->decls[i];
    if (!td || td->kind != FE_DECL_TRAIN) continue;
    const FeDecl *md = find_model(&ck, td->name);
    if (!md) {
      model_not_found(&ck, td->name, td->name_loc, "train: ");
      continue;
    }
    int mi = 0;
    while (ast->decls[mi] != md) mi++;
    FeModel *m = models[mi];
    if (m && m->train) {
      diag_error(d, td->name_loc, "model '%s' has two train sections", td->name);
      diag_note(d, m->train->decl->name_loc, "the first one is here");
      continue;
    }
    FeTrain *t = fe_check_train(&ck, td, m);
    if (m) m->train = t;
  }
  for (int i = 0; opts && i < opts->noverrides; i++) {
    if (opts->overrides[i].used) continue;
    const char *cands[128];
    int n = 0;
    for (int j = 0; j < ck.config->names.len && n < 100; j++) cands[n++] = ck.config->names.data[j];
    for (int j = 0; j < FE_NTRAIN_SETTINGS; j++) cands[n++] = fe_train_settings[j];
    static const char *const extra[] = {"lr", "weight_decay", "momentum", "warmup", "min_lr", "beta1", "beta2", "eps"};
    for (int j = 0; j < 8; j++) cands[n++] = extra[j];
    diag_error(d, (SrcLoc){0}, "--set %s: no config value or train setting has this name%s",
               opts->overrides[i].key, fe_suggest(&ck, opts->overrides[i].key, cands, n));
  }
  if (result && !d->nerr && opts && opts->lower) fe_lower_model(&ck, result);
  if (result) result->syms = *ck.syms;
  return d->nerr ? NULL : result;
}

// ---- parameter listing ----

typedef struct {
  FeParamFn fn;
  void *ud;
  char name[1024];
} Walk;

static void walk(Walk *w, const FeInst *in, size_t len) {
  for (int i = 0; i < in->nparams; i++) {
    int n = snprintf(w->name + len, sizeof w->name - len, "%s%s", len ? "." : "", in->params[i].name);
    if (n > 0) w->fn(w->ud, w->name, &in->params[i]);
  }
  for (int i = 0; i < in->nchildren; i++) {
    const FeInst *c = in->children[i];
    int n = snprintf(w->name + len, sizeof w->name - len, "%s%s", len ? "." : "", c->name);
    if (n < 0 || (size_t)n >= sizeof w->name - len) continue;
    if (c->repeat == 0) {
      walk(w, c, len + (size_t)n);
      continue;
    }
    for (int r = 0; r < c->repeat; r++) {
      int m = snprintf(w->name + len + n, sizeof w->name - len - (size_t)n, ".%d", r);
      if (m > 0) walk(w, c->children[0], len + (size_t)n + (size_t)m);
    }
  }
  w->name[len] = 0;
}

void fe_model_each_param(const FeModel *m, FeParamFn fn, void *ud) {
  Walk w = {.fn = fn, .ud = ud};
  if (m && m->root) walk(&w, m->root, 0);
}
