// passes/train_step.c: the training step as one IR graph (pass.h). Runs on
// a lowered loss graph (frontend -> FeModel.loss): pass_autodiff appends the
// backward, then this file appends the global gradient norm, clipping and
// the optimizer update (AdamW or SGD with momentum): the fused ops OPT_MOMENT,
// OPT_MOMENT2, OPT_ADAMW (ir/ops.def; kernels in ir/kernels_grad.c and
// codegen/compile_optim.c) where they apply, ordinary IR ops elsewhere (and
// everywhere with PassTrainOpts.unfused, the same values bit for bit).
// The trainer (engine/trainer.c) binds the step's scalars and swaps each
// parameter's buffer with its "new.NAME" output after a step.
//
// Every elementwise op mirrors the order of operations of PyTorch 1.13's
// single-tensor AdamW/SGD and clip_grad_norm_, so that f32 roundings match.
#include <string.h>

#include "passes/pass.h"

typedef struct {
  IrGraph *g;
  SrcLoc loc;
} Tb;  // the train-step builder

static IrNode *cst(Tb *b, double v) { return ir_const(b->g, v, IR_F32, b->loc); }
static IrNode *bin(Tb *b, IrOp op, IrNode *x, IrNode *y) { return ir_binary(b->g, op, x, y, b->loc); }

static IrNode *scalar_input(Tb *b, const char *name) {
  IrType t = {.dt = IR_F32, .rank = 0};
  return ir_input(b->g, name, &t, b->loc);
}

// |x|^2 as an f32 scalar: the sum over every axis of x * x.
static IrNode *sumsq(Tb *b, IrNode *x) {
  IrNode *sq = bin(b, IR_OP_MUL, x, x);
  if (!sq || x->ty.rank == 0) return sq;
  IrAttr at = {.axes = (uint32_t)((1u << x->ty.rank) - 1), .keepdim = false};
  return ir_op(b->g, IR_OP_SUM, &sq, 1, &at, NULL, b->loc);
}

static bool named_output(Tb *b, const char *prefix, const char *name, IrNode *n) {
  const char *full = arena_printf(b->g->a, "%s%s", prefix, name);
  return n && full && ir_output(b->g, full, n);
}

// A zero-initialised state leaf "opt.K.NAME" shaped like p.
static IrNode *state_leaf(Tb *b, const char *kind, const IrNode *p) {
  const char *name = arena_printf(b->g->a, "opt.%s.%s", kind, p->name);
  IrInit zeros = {.kind = "zeros"};
  return name ? ir_param(b->g, name, &p->ty, zeros, true, p->loc) : NULL;
}

// norm = sqrt(sum_i |grad_i|^2) with per-parameter norms first, as
// clip_grad_norm_ (torch.norm of the stacked torch.norm of each gradient).
static IrNode *global_norm(Tb *b, PassTrainStep *ts) {
  IrNode *total = NULL;
  for (int i = 0; i < ts->nparams; i++) {
    IrNode *ni = ir_unary(b->g, IR_OP_SQRT, sumsq(b, ts->params[i].grad), b->loc);
    IrNode *sq = bin(b, IR_OP_MUL, ni, ni);
    total = total ? bin(b, IR_OP_ADD, total, sq) : sq;
  }
  return ir_unary(b->g, IR_OP_SQRT, total ? total : cst(b, 0), b->loc);
}

static IrNode *opt_op(Tb *b, IrOp op, IrNode *const *src, int n, double value, double scale, double eps) {
  IrAttr at = {.value = value, .scale = scale, .eps = eps};
  return ir_op(b->g, op, src, n, &at, NULL, b->loc);
}

// AdamW for one parameter: m, v leaves and the three new values. g: the
// gradient, c: the clip coefficient (NULL: none).
static bool adamw(Tb *b, const PassTrainOpts *o, const PassTrainStep *ts, PassTrainParam *tp, IrNode *g, IrNode *c) {
  IrNode *p = tp->param;
  IrNode *m = state_leaf(b, "m", p), *v = state_leaf(b, "v", p), *m2, *v2, *p2;
  bool decay = p->ty.rank >= 2 && o->weight_decay != 0;
  if (o->unfused) {
    IrNode *gc = c ? bin(b, IR_OP_MUL, g, c) : g;
    IrNode *p1 = decay ? bin(b, IR_OP_MUL, p, ts->decay) : p;
    // m' = m * beta1 + (1 - beta1) * g          (exp_avg.mul_(beta1).add_(grad, alpha=1-beta1))
    m2 = bin(b, IR_OP_ADD, bin(b, IR_OP_MUL, m, cst(b, o->beta1)), bin(b, IR_OP_MUL, cst(b, 1 - o->beta1), gc));
    // v' = v * beta2 + ((1 - beta2) * g) * g    (addcmul_(grad, grad, value=1-beta2))
    IrNode *gg = bin(b, IR_OP_MUL, bin(b, IR_OP_MUL, cst(b, 1 - o->beta2), gc), gc);
    v2 = bin(b, IR_OP_ADD, bin(b, IR_OP_MUL, v, cst(b, o->beta2)), gg);
    // denom = sqrt(v') / bc2_sqrt + eps; p' = p1 + (-step_size * m') / denom   (addcdiv_)
    IrNode *denom = bin(b, IR_OP_ADD, bin(b, IR_OP_DIV, ir_unary(b->g, IR_OP_SQRT, v2, b->loc), ts->bc2_sqrt),
                        cst(b, o->eps));
    IrNode *nss = ir_unary(b->g, IR_OP_NEG, ts->step_size, b->loc);
    p2 = bin(b, IR_OP_ADD, p1, bin(b, IR_OP_DIV, bin(b, IR_OP_MUL, nss, m2), denom));
  } else {  // the same values, bit for bit, in three kernels (c = 1, decay = 1: exact no-ops)
    IrNode *c1 = c ? c : cst(b, 1);
    IrNode *sm[3] = {m, g, c1}, *sv[3] = {v, g, c1};
    m2 = opt_op(b, IR_OP_OPT_MOMENT, sm, 3, o->beta1, 1 - o->beta1, 0);
    v2 = opt_op(b, IR_OP_OPT_MOMENT2, sv, 3, o->beta2, 1 - o->beta2, 0);
    IrNode *sp[6] = {p, m2, v2, decay ? ts->decay : cst(b, 1), ts->step_size, ts->bc2_sqrt};
    p2 = opt_op(b, IR_OP_OPT_ADAMW, sp, 6, 0, 0, o->eps);
  }
  *tp = (PassTrainParam){.param = p, .grad = tp->grad, .next = p2, .nstate = 2,
                         .state = {m, v}, .state_next = {m2, v2}};
  return m && v && p2;
}

// SGD with momentum (or without: no state) for one parameter.
static bool sgd(Tb *b, const PassTrainOpts *o, PassTrainParam *tp, IrNode *g, IrNode *c, IrNode *neg_lr) {
  IrNode *p = tp->param, *d = c ? bin(b, IR_OP_MUL, g, c) : g;
  tp->nstate = 0;
  if (o->momentum != 0) {  // buf.mul_(momentum).add_(grad)
    IrNode *buf = state_leaf(b, "b", p);
    if (o->unfused) {
      d = bin(b, IR_OP_ADD, bin(b, IR_OP_MUL, buf, cst(b, o->momentum)), d);
    } else {  // 1 * (g * c) is g * c exactly
      IrNode *s[3] = {buf, g, c ? c : cst(b, 1)};
      d = opt_op(b, IR_OP_OPT_MOMENT, s, 3, o->momentum, 1, 0);
    }
    tp->nstate = 1;
    tp->state[0] = buf;
    tp->state_next[0] = d;
  }
  tp->next = bin(b, IR_OP_ADD, p, bin(b, IR_OP_MUL, neg_lr, d));  // param.add_(d, alpha=-lr)
  return tp->next != NULL;
}

// The trainable parameters and their gradients (grad.NAME outputs).
static bool collect(Tb *b, PassTrainStep *ts) {
  IrGraph *g = b->g;
  ts->params = arena_alloc(g->a, sizeof(PassTrainParam) * ((size_t)ts->nmodel_params + 1));
  if (!ts->params) return false;
  for (int i = 0; i < ts->nmodel_params; i++) {
    IrNode *p = g->params.data[i];
    if (!(p->flags & IR_FLAG_PARAM) || !ir_dtype_info[p->ty.dt].is_float) continue;
    IrNode *grad = NULL;
    for (int j = 0; j < g->outputs.len && !grad; j++) {
      const char *on = g->output_names.data[j];
      if (!strncmp(on, "grad.", 5) && !strcmp(on + 5, p->name)) grad = g->outputs.data[j];
    }
    if (!grad) {
      diag_error(g->diag, p->loc, "train step: internal error: no gradient for '%s'", p->name);
      return false;
    }
    if (p->ty.dt != IR_F32) {
      diag_error(g->diag, p->loc, "train step: parameter '%s' is %s; training needs f32 parameters", p->name,
                 ir_dtype_info[p->ty.dt].name);
      return false;
    }
    ts->params[ts->nparams++] = (PassTrainParam){.param = p, .grad = grad};
  }
  return true;
}

bool pass_train_step(IrGraph *g, IrNode *loss, const PassTrainOpts *o, PassTrainStep *ts) {
  bool is_adam = o->optimizer && !strcmp(o->optimizer, "adamw");
  if (!is_adam && !(o->optimizer && !strcmp(o->optimizer, "sgd"))) {
    diag_error(g->diag, loss ? loss->loc : (SrcLoc){0}, "train step: unknown optimizer '%s'",
               o->optimizer ? o->optimizer : "(none)");
    return false;
  }
  *ts = (PassTrainStep){.nfwd = g->nodes.len, .nloss_inputs = g->inputs.len, .nmodel_params = g->params.len,
                        .loss = loss};
  return pass_autodiff(g, loss, false) && pass_train_update(g, loss, o, ts);
}

bool pass_train_update(IrGraph *g, IrNode *loss, const PassTrainOpts *o, PassTrainStep *ts) {
  bool is_adam = o->optimizer && !strcmp(o->optimizer, "adamw");
  if (!is_adam && !(o->optimizer && !strcmp(o->optimizer, "sgd"))) {
    diag_error(g->diag, loss ? loss->loc : (SrcLoc){0}, "train step: unknown optimizer '%s'",
               o->optimizer ? o->optimizer : "(none)");
    return false;
  }
  ts->loss = loss;
  ts->ngrad = g->nodes.len;
  Tb b = {.g = g, .loc = loss->loc};
  if (!collect(&b, ts)) return false;
  if (is_adam) {
    ts->decay = scalar_input(&b, "opt.decay");
    ts->step_size = scalar_input(&b, "opt.step_size");
    ts->bc2_sqrt = scalar_input(&b, "opt.bc2_sqrt");
  } else {
    ts->lr = scalar_input(&b, "opt.lr");
  }
  ts->grad_norm = global_norm(&b, ts);
  if (!named_output(&b, "", "grad_norm", ts->grad_norm)) return false;
  IrNode *coef = NULL;
  if (o->clip > 0) {  // clip / (norm + 1e-6) as torch evaluates it: reciprocal(norm + 1e-6) * clip
    IrNode *r = bin(&b, IR_OP_DIV, cst(&b, 1), bin(&b, IR_OP_ADD, ts->grad_norm, cst(&b, 1e-6)));
    coef = bin(&b, IR_OP_MINIMUM, bin(&b, IR_OP_MUL, r, cst(&b, o->clip)), cst(&b, 1));
  }
  IrNode *neg_lr = is_adam ? NULL : ir_unary(g, IR_OP_NEG, ts->lr, b.loc);
  for (int i = 0; i < ts->nparams; i++) {
    PassTrainParam *tp = &ts->params[i];
    if (!(is_adam ? adamw(&b, o, ts, tp, tp->grad, coef) : sgd(&b, o, tp, tp->grad, coef, neg_lr))) return false;
    if (!named_output(&b, "new.", tp->param->name, tp->next)) return false;
    for (int k = 0; k < tp->nstate; k++)
      if (!named_output(&b, "new.", tp->state[k]->name, tp->state_next[k])) return false;
  }
  return ir_verify(g);
}
