// frontend/train.c: the train section (LANGUAGE.md "train"), checked after
// its model in check.c: settings with their defaults and --set overrides,
// the optimizer and schedule, and the loss(...) evaluated over types like a
// forward (it must be a float scalar). Data flow: FeAst -> FeTrain (in
// FeModel), later the trainer.
#include <math.h>
#include <string.h>

#include "frontend/fe_internal.h"

const char *const fe_train_settings[FE_NTRAIN_SETTINGS] = {"optimizer", "schedule", "clip",       "batch",
                                                           "seq",       "steps",    "eval_every", "seed"};

// Evaluates NAME or NAME(args) against a keyword list; vals get the given
// numbers (NAN where not given), tuples flattened into consecutive slots.
static const char *eval_choice(FeCk *ck, FeEnv *env, const FeExpr *e, const char *what,
                               const char *const *choices, int nchoices, const char *const *kw,
                               const int *nkw, double vals[][4]) {
  if (!e || e->kind == FE_EX_ERROR) return NULL;
  int c = -1;
  if (e->kind == FE_EX_NAME || e->kind == FE_EX_CALL)
    for (int i = 0; i < nchoices; i++)
      if (strcmp(e->name, choices[i]) == 0) c = i;
  if (c < 0) {
    char list[128] = "";
    for (int i = 0; i < nchoices; i++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", choices[i]);
    const char *name = e->kind == FE_EX_NAME || e->kind == FE_EX_CALL ? e->name : "";
    diag_error(ck->d, e->loc, "unknown %s%s%s%s%s (one of: %s)", what, *name ? " '" : "", name, *name ? "'" : "",
               fe_suggest(ck, name, (const char **)choices, nchoices), list);
    return NULL;
  }
  const char *const *names = kw + 4 * c;
  for (int i = 0; i < 4; i++) vals[i][0] = NAN;
  int npos = 0;
  for (int i = 0; e->kind == FE_EX_CALL && i < e->nargs; i++) {
    int slot = -1;
    if (e->args[i].kw) {
      for (int j = 0; j < nkw[c]; j++)
        if (strcmp(names[j], e->args[i].kw) == 0) slot = j;
      if (slot < 0) {
        diag_error(ck->d, e->args[i].kwloc, "%s has no setting '%s'%s", choices[c], e->args[i].kw,
                   fe_suggest(ck, e->args[i].kw, (const char **)names, nkw[c]));
        return NULL;
      }
    } else if ((slot = npos++) >= nkw[c]) {
      diag_error(ck->d, e->args[i].e->loc, "%s takes at most %d argument%s", choices[c], nkw[c], nkw[c] == 1 ? "" : "s");
      return NULL;
    }
    FeVal v = fe_eval(ck, env, e->args[i].e);
    if (v.k == FV_ERR) return NULL;
    if (v.k == FV_TUPLE && strcmp(names[slot], "betas") == 0 && v.n == 2 && fe_val_is_num(&v.elems[0]) &&
        fe_val_is_num(&v.elems[1])) {
      vals[slot][0] = fe_val_num(&v.elems[0]);
      vals[slot][1] = fe_val_num(&v.elems[1]);
      continue;
    }
    if (!fe_val_is_num(&v) || strcmp(names[slot], "betas") == 0) {
      diag_error(ck->d, e->args[i].e->loc, "%s: '%s' must be %s, got %s", choices[c], names[slot],
                 strcmp(names[slot], "betas") == 0 ? "a pair of numbers like (0.9, 0.999)" : "a number",
                 fe_val_describe(ck, &v));
      return NULL;
    }
    vals[slot][0] = fe_val_num(&v);
  }
  return choices[c];
}

static double pick(double given, double dflt) { return isnan(given) ? dflt : given; }

static void train_optimizer(FeCk *ck, FeEnv *env, FeTrain *t, const FeExpr *e) {
  static const char *const opts[] = {"adamw", "sgd"};
  static const char *const kw[] = {"lr", "betas", "eps", "weight_decay", "lr", "momentum", NULL, NULL};
  static const int nkw[] = {4, 2};
  double v[4][4];
  for (int i = 0; i < 4; i++) v[i][0] = v[i][1] = NAN;
  const char *o = e ? eval_choice(ck, env, e, "optimizer", opts, 2, kw, nkw, v) : "adamw";
  if (!o) return;
  t->optimizer = o;
  SrcLoc loc = e ? e->loc : t->decl->name_loc;
  if (strcmp(o, "adamw") == 0) {
    t->lr = pick(v[0][0], 1e-3);
    t->beta1 = isnan(v[1][0]) ? 0.9 : v[1][0];
    t->beta2 = isnan(v[1][0]) ? 0.999 : v[1][1];
    t->eps = pick(v[2][0], 1e-8);
    t->weight_decay = pick(v[3][0], 0.01);
  } else {
    t->lr = pick(v[0][0], 0.1);  // (a default only to keep later checks quiet)
    if (isnan(v[0][0]) && !fe_find_override(ck, "lr")) {
      diag_error(ck->d, loc, "sgd needs a learning rate: sgd(lr = 0.1)");
      return;
    }
    t->momentum = pick(v[1][0], 0);
  }
}

static void train_schedule(FeCk *ck, FeEnv *env, FeTrain *t, const FeExpr *e) {
  static const char *const scheds[] = {"constant", "cosine", "linear"};
  static const char *const kw[] = {NULL, NULL, NULL, NULL, "warmup", "min_lr", NULL, NULL, "warmup", NULL, NULL, NULL};
  static const int nkw[] = {0, 2, 1};
  double v[4][4];
  for (int i = 0; i < 4; i++) v[i][0] = v[i][1] = NAN;
  const char *s = e ? eval_choice(ck, env, e, "schedule", scheds, 3, kw, nkw, v) : "constant";
  if (!s) return;
  t->schedule = s;
  t->warmup = e && strcmp(s, "constant") ? pick(v[0][0], 0) : 0;
  t->min_lr = e && strcmp(s, "cosine") == 0 ? pick(v[1][0], 0) : 0;
}

// --set optimizer=NAME, --set schedule=NAME: a choice among names.
static void set_choice(FeCk *ck, const char *key, const char **field, const char *const *names, int n) {
  FeOverride *o = fe_find_override(ck, key);
  if (!o || fe_is_config_name(ck, key, NULL)) return;
  o->used = true;
  for (int i = 0; i < n; i++)
    if (!strcmp(o->value, names[i])) {
      *field = names[i];
      return;
    }
  diag_error(ck->d, (SrcLoc){0}, "--set %s=%s: unknown %s%s", key, o->value, key, fe_suggest(ck, o->value, (const char **)names, n));
}

// Applies --set for train settings and validates the final values. Each
// error points at the setting that holds the value (the optimizer or
// schedule expression, or NAME = VALUE), or has no location when the value
// came from --set.
typedef struct { SrcLoc opt, sched, item[FE_NTRAIN_SETTINGS]; } TrainLocs;

static void train_settle(FeCk *ck, FeTrain *t, const TrainLocs *tl) {
  static const char *const opts[] = {"adamw", "sgd"}, *const scheds[] = {"constant", "cosine", "linear"};
  set_choice(ck, "optimizer", &t->optimizer, opts, 2);
  set_choice(ck, "schedule", &t->schedule, scheds, 3);
  bool sgd = !strcmp(t->optimizer, "sgd");
  SrcLoc none = {0};
  enum { POS, UNIT, GE1, NONNEG, MINLR };  // the valid range of each setting
  static const char *const rule_text[] = {"must be positive", "must be in [0, 1)", "must be at least 1",
                                          "must not be negative", "must be in [0, lr]"};
  struct { const char *key; double *f; int64_t *i; SrcLoc loc; int rule; } keys[] = {
      {"lr", &t->lr, NULL, tl->opt, POS},          {"weight_decay", &t->weight_decay, NULL, tl->opt, NONNEG},
      {"momentum", &t->momentum, NULL, tl->opt, UNIT}, {"beta1", &t->beta1, NULL, tl->opt, UNIT},
      {"beta2", &t->beta2, NULL, tl->opt, UNIT},   {"eps", &t->eps, NULL, tl->opt, POS},
      {"warmup", &t->warmup, NULL, tl->sched, NONNEG}, {"min_lr", &t->min_lr, NULL, tl->sched, MINLR},
      {"clip", &t->clip, NULL, tl->item[2], NONNEG}, {"batch", NULL, &t->batch, tl->item[3], GE1},
      {"seq", NULL, &t->seq, tl->item[4], GE1},    {"steps", NULL, &t->steps, tl->item[5], GE1},
      {"eval_every", NULL, &t->eval_every, tl->item[6], NONNEG}, {"seed", NULL, &t->seed, tl->item[7], NONNEG},
  };
  enum { NKEYS = sizeof keys / sizeof keys[0] };
  for (size_t i = 0; i < NKEYS; i++) {
    if (!keys[i].loc.line) keys[i].loc = t->decl->name_loc;  // a default: the train section
    FeOverride *o = fe_find_override(ck, keys[i].key);
    if (!o || fe_is_config_name(ck, keys[i].key, NULL)) continue;
    const char *k = keys[i].key;
    keys[i].loc = none;
    bool adam_only = !strcmp(k, "beta1") || !strcmp(k, "beta2") || !strcmp(k, "eps") || !strcmp(k, "weight_decay");
    if ((sgd && adam_only) || (!sgd && !strcmp(k, "momentum"))) {
      o->used = true;
      diag_error(ck->d, none, "--set %s: this train section uses %s, which has no %s", k, t->optimizer, k);
      continue;
    }
    FeVal want = keys[i].f ? fe_val_float(0, none) : fe_val_int(0, none), v;
    if (!fe_parse_override(ck, o, &want, &v)) continue;
    if (keys[i].f) *keys[i].f = v.f;
    else *keys[i].i = v.i;
  }
  for (size_t i = 0; i < NKEYS; i++) {  // ranges
    double v = keys[i].f ? *keys[i].f : (double)*keys[i].i;
    int r = keys[i].rule;
    bool ok = r == POS ? v > 0 && isfinite(v) : r == UNIT ? v >= 0 && v < 1 : r == GE1 ? v >= 1
              : r == NONNEG ? v >= 0 : !(t->lr > 0) || (v >= 0 && v <= t->lr);
    if (!ok && !(sgd && !strcmp(keys[i].key, "eps")))
      diag_error(ck->d, keys[i].loc, "%s %s, got %g", keys[i].key, rule_text[r], v);
  }
}

static bool train_int(FeCk *ck, FeEnv *env, const FeItem *it, int64_t *out) {
  FeVal v = fe_eval(ck, env, it->expr);
  if (v.k == FV_ERR) return false;
  if (v.k != FV_INT) {
    diag_error(ck->d, it->expr->loc, "'%s' must be an integer, got %s", it->name, fe_val_describe(ck, &v));
    return false;
  }
  *out = v.i;
  return true;
}

FeTrain *fe_check_train(FeCk *ck, const FeDecl *td, FeModel *m) {
  FeTrain *t = arena_alloc(ck->a, sizeof(FeTrain));
  FeEnv *env = fe_env_new(ck, ck->config, FE_ENV_LOCALS);
  if (!t || !env) return NULL;
  t->decl = td;
  *t = (FeTrain){.decl = td, .optimizer = "adamw", .schedule = "constant", .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999,
                 .eps = 1e-8, .weight_decay = 0.01, .clip = 0, .batch = 8, .seq = 64, .steps = 1000,
                 .eval_every = 100, .seed = 1337};
  const FeItem *loss = NULL, *opt = NULL, *sched = NULL, *seen[FE_NTRAIN_SETTINGS] = {0};
  for (int i = 0; i < td->nitems; i++) {
    const FeItem *it = td->items[i];
    if (it->kind == FE_IT_FUNC) {
      if (strcmp(it->name, "loss") != 0) {
        diag_error(ck->d, it->loc, "a train section defines loss(...), not '%s'", it->name);
      } else if (loss) {
        diag_error(ck->d, it->loc, "loss is defined twice");
        diag_note(ck->d, loss->loc, "the first definition is here");
      } else {
        loss = it;
      }
      continue;
    }
    if (it->kind != FE_IT_BIND) {
      diag_error(ck->d, it->loc, "a train section holds loss(...) and settings (NAME = VALUE) only");
      continue;
    }
    int k = -1;
    for (int j = 0; j < FE_NTRAIN_SETTINGS; j++)
      if (strcmp(it->name, fe_train_settings[j]) == 0) k = j;
    if (k < 0) {
      static const char *const inner[] = {"lr", "betas", "eps", "weight_decay", "momentum", "warmup", "min_lr"};
      bool in_opt = false, sched = !strcmp(it->name, "warmup") || !strcmp(it->name, "min_lr");
      for (int j = 0; j < 7; j++) in_opt |= !strcmp(it->name, inner[j]);
      if (in_opt) {
        const char *what = sched ? "schedule" : "optimizer";
        diag_error(ck->d, it->name_loc, "'%s' is an argument of the %s, e.g. %s = %s(%s = ...)", it->name, what, what,
                   sched ? "cosine" : "adamw", it->name);
        continue;
      }
      diag_error(ck->d, it->name_loc, "unknown train setting '%s'%s", it->name,
                 fe_suggest(ck, it->name, (const char **)fe_train_settings, FE_NTRAIN_SETTINGS));
      continue;
    }
    if (seen[k]) {
      diag_error(ck->d, it->name_loc, "'%s' is set twice", it->name);
      diag_note(ck->d, seen[k]->name_loc, "the first setting is here");
      continue;
    }
    seen[k] = it;
    if (k == 0) opt = it;
    else if (k == 1) sched = it;
    else if (k == 2) {
      FeVal v = fe_eval(ck, env, it->expr);
      if (v.k != FV_ERR && !fe_val_is_num(&v))
        diag_error(ck->d, it->expr->loc, "clip must be a number, got %s", fe_val_describe(ck, &v));
      else if (v.k != FV_ERR) t->clip = fe_val_num(&v);
    } else {
      int64_t *dst[] = {&t->batch, &t->seq, &t->steps, &t->eval_every, &t->seed};
      train_int(ck, env, it, dst[k - 3]);
    }
  }
  train_optimizer(ck, env, t, opt ? opt->expr : NULL);
  train_schedule(ck, env, t, sched ? sched->expr : NULL);
  TrainLocs tl = {.opt = opt ? opt->expr->loc : (SrcLoc){0}, .sched = sched ? sched->expr->loc : (SrcLoc){0}};
  for (int k = 0; k < FE_NTRAIN_SETTINGS; k++)
    if (seen[k]) tl.item[k] = seen[k]->expr->loc;
  train_settle(ck, t, &tl);
  if (!loss) {
    diag_error(ck->d, td->name_loc, "train section for '%s' has no loss(...)", td->name);
    return t;
  }
  if (!m) return t;  // the model itself failed to check
  fe_env_bind(ck, env, m->decl->name, (FeVal){.k = FV_INST, .inst = m->root, .loc = m->decl->name_loc},
           m->decl->name_loc);
  snprintf(ck->fn_label, sizeof ck->fn_label, "loss");
  FeEnv *locals = fe_env_new(ck, env, FE_ENV_LOCALS);
  if (!locals || !fe_bind_typed_params(ck, locals, loss, &t->loss_inputs, &t->loss_input_names)) return t;
  t->nloss_inputs = loss->nparams;
  t->loss_fn = loss;
  FeVal r = fe_run_body(ck, locals, loss, NULL);
  const FeStmt *ret = loss->nbody ? loss->body[loss->nbody - 1] : NULL;
  SrcLoc where = ret && ret->kind == FE_ST_RETURN && ret->nexprs ? ret->exprs[0]->loc : loss->loc;
  if (r.k != FV_ERR && (r.k != FV_TENSOR || r.ty.rank != 0 || !ir_dtype_info[r.ty.dt].is_float))
    diag_error(ck->d, where, "the loss must be a float scalar, got %s%s", fe_val_describe(ck, &r),
               r.k == FV_TENSOR && r.ty.rank > 0 ? " (reduce it with mean() or cross_entropy())" : "");
  return t;
}

