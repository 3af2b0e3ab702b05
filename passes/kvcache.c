// passes/kvcache.c: derives incremental decoding from a model's forward
// (pass.h, "kvcache.c"). Sits between the frontend's lowered forward
// (FeModel.forward) and the executors of `heed generate` (codegen or the
// interpreter): one "step" graph serves both the prefill over a prompt
// (T = its length, pos = 0) and each decode step (T = 1, pos = the tokens
// seen so far).
//
// The forward is copied node by node with three rewrites, the only places
// where a Transformer written with the builtins depends on where a token
// sits in the sequence (LANGUAGE.md: `positions` and causal `attention`):
//   positions(x)            -> positions(x) + pos
//   rope(x)                 -> rope_at(x, pos)
//   attention(q, k, v, causal=true)
//                           -> kc = kv_append(cache.k.I, k, pos)
//                              vc = kv_append(cache.v.I, v, pos)
//                              attention_kv(q, kc, vc, pos)
// Every other op must act on each position on its own: an op that reduces,
// slices, concatenates or contracts along the sequence axis (axis 1 of the
// tokens, the symbol T), a non-causal or masked attention, or an inverse
// rope makes the forward not incremental, and the pass says why.
#include <stdio.h>
#include <string.h>

#include "passes/pass.h"

typedef struct {
  const IrGraph *f;
  IrGraph *g;
  IrNode **map;    // forward node id -> step node
  IrNode *pos;
  IrNode **kc, **vc;  // per attention (in order): the cache inputs ...
  IrNode **ko, **vo;  // ... and the appended caches (outputs)
  int natt, tsym, output;  // output: the forward's output kept (-1: all)
  bool *live;         // per forward node: the kept outputs need it (params and inputs always)
  char *why;
  size_t whylen;
} Kv;

static bool has_sym(IrDim d, int sym) {
  for (int i = 0; i < d.nsym; i++)
    if (d.sym[i] == sym) return true;
  return false;
}

static bool refuse(Kv *kv, const IrNode *n, const char *what) {
  snprintf(kv->why, kv->whylen, "%s (%s, node %%%u, line %u)", what, ir_op_name(n->op), n->id, n->loc.line);
  return false;
}

// Does n combine values across the sequence axis (other than attention)?
static bool mixes_sequence(const Kv *kv, const IrNode *n) {
  const IrType *x = n->nsrc > 0 ? &n->src[0]->ty : NULL;
  int t = kv->tsym;
  switch (n->op) {
  case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN:
    for (int i = 0; i < x->rank; i++)
      if ((n->attr.axes >> i & 1) && has_sym(x->dim[i], t)) return true;
    return false;
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: case IR_OP_SLICE: case IR_OP_CONCAT:
    return has_sym(x->dim[n->attr.axis], t);
  case IR_OP_MATMUL: return has_sym(x->dim[x->rank - 1], t);
  case IR_OP_XENT: return true;
  default: return false;
  }
}

// The cache inputs, one pair per causal attention: (B, KV, C) like its k.
static bool make_caches(Kv *kv, int kvsym) {
  const IrGraph *f = kv->f;
  for (int i = 0; i < f->nodes.len; i++) kv->natt += f->nodes.data[i]->op == IR_OP_ATTENTION && kv->live[i];
  kv->kc = arena_alloc(kv->g->a, sizeof(IrNode *) * (size_t)(kv->natt + 1));
  kv->vc = arena_alloc(kv->g->a, sizeof(IrNode *) * (size_t)(kv->natt + 1));
  kv->ko = arena_alloc(kv->g->a, sizeof(IrNode *) * (size_t)(kv->natt + 1));
  kv->vo = arena_alloc(kv->g->a, sizeof(IrNode *) * (size_t)(kv->natt + 1));
  if (!kv->kc || !kv->vc || !kv->ko || !kv->vo) return false;
  for (int i = 0, a = 0; i < f->nodes.len; i++) {
    const IrNode *n = f->nodes.data[i];
    if (n->op != IR_OP_ATTENTION || !kv->live[i]) continue;
    IrType ct = n->src[1]->ty;
    ct.dim[1] = ir_dim_sym(kvsym);
    const char *kn = arena_printf(kv->g->a, "cache.k.%d", a), *vn = arena_printf(kv->g->a, "cache.v.%d", a);
    if (!kn || !vn || !(kv->kc[a] = ir_input(kv->g, kn, &ct, n->loc)) || !(kv->vc[a] = ir_input(kv->g, vn, &ct, n->loc)))
      return false;
    a++;
  }
  return true;
}

static IrNode *op2(Kv *kv, IrOp op, IrNode *a, IrNode *b, const IrAttr *at, SrcLoc loc) {
  IrNode *s[2] = {a, b};
  return ir_op(kv->g, op, s, 2, at, NULL, loc);
}

// The step graph's node for forward node n (its operands already mapped).
static IrNode *rewrite(Kv *kv, const IrNode *n, int *att) {
  IrNode *s[IR_MAX_SRC];
  for (int j = 0; j < n->nsrc; j++) s[j] = kv->map[n->src[j]->id];
  switch (n->op) {
  case IR_OP_PARAM:
    return ir_param(kv->g, n->name, &n->ty, n->init, (n->flags & IR_FLAG_BUFFER) != 0, n->loc);
  case IR_OP_CONST: {
    IrNode *c = ir_const(kv->g, n->attr.value, n->ty.dt, n->loc);
    if (c && n->ty.rank) c = ir_op(kv->g, IR_OP_EXPAND, &c, 1, NULL, &n->ty, n->loc);
    return c;
  }
  case IR_OP_POSITIONS: {
    IrNode *p = ir_op(kv->g, IR_OP_POSITIONS, s, 1, &n->attr, NULL, n->loc);
    return p ? op2(kv, IR_OP_ADD, p, kv->pos, NULL, n->loc) : NULL;
  }
  case IR_OP_ROPE:
    if (n->attr.inverse) return refuse(kv, n, "an inverse rope"), NULL;
    return op2(kv, IR_OP_ROPE_AT, s[0], kv->pos, &n->attr, n->loc);
  case IR_OP_ATTENTION: {
    if (!n->attr.causal) return refuse(kv, n, "attention is not causal"), NULL;
    if (n->nsrc > 3) return refuse(kv, n, "attention has a mask"), NULL;
    IrNode *a[3] = {kv->kc[*att], s[1], kv->pos}, *b[3] = {kv->vc[*att], s[2], kv->pos};
    IrNode *kc = ir_op(kv->g, IR_OP_KV_APPEND, a, 3, NULL, NULL, n->loc);
    IrNode *vc = kc ? ir_op(kv->g, IR_OP_KV_APPEND, b, 3, NULL, NULL, n->loc) : NULL;
    if (!vc) return NULL;
    kv->ko[*att] = kc, kv->vo[*att] = vc;
    (*att)++;
    IrNode *q[4] = {s[0], kc, vc, kv->pos};
    return ir_op(kv->g, IR_OP_ATTENTION_KV, q, 4, &n->attr, NULL, n->loc);
  }
  default:
    if (mixes_sequence(kv, n)) return refuse(kv, n, "an op combines positions along the sequence axis"), NULL;
    return ir_op(kv->g, n->op, s, n->nsrc, &n->attr, &n->ty, n->loc);
  }
}

// The forward's one input must be integer tokens (B, T) with T a symbol.
static bool check_input(Kv *kv) {
  const IrGraph *f = kv->f;
  const IrNode *in = f->inputs.len == 1 ? f->inputs.data[0] : NULL;
  IrDim t = in && in->ty.rank == 2 ? in->ty.dim[1] : ir_dim_const(0);
  if (!in || !ir_dtype_info[in->ty.dt].is_int || t.nsym != 1 || t.n != 1) {
    snprintf(kv->why, kv->whylen, "the forward must take one integer token tensor (B, T)");
    return false;
  }
  kv->tsym = t.sym[0];
  for (int i = 0; i < f->outputs.len; i++) {
    if (kv->output >= 0 && i != kv->output) continue;
    const IrType *o = &f->outputs.data[i]->ty;
    if (o->rank < 2 || !ir_dim_eq(o->dim[1], t)) {
      snprintf(kv->why, kv->whylen, "output '%s' is not per position (B, T, ...)", f->output_names.data[i]);
      return false;
    }
  }
  return true;
}

// A name for the cache length that the forward does not use.
static int new_sym(IrGraph *g) {
  static const char *names[] = {"KV", "KV_LEN", "KV_CACHE"};
  for (int i = 0; i < 3; i++) {
    bool used = false;
    for (int s = 0; s < g->syms.len; s++) used = used || !strcmp(g->syms.data[s], names[i]);
    if (!used) return ir_symtab_intern(&g->syms, g->a, names[i]);
  }
  return -1;
}

// Which forward nodes the kept outputs need (params and inputs: all).
static bool mark_live(Kv *kv) {
  const IrGraph *f = kv->f;
  if (!(kv->live = arena_alloc(f->a, sizeof(bool) * (size_t)(f->nodes.len + 1)))) return false;
  for (int i = 0; i < f->nodes.len; i++) {
    IrOp op = f->nodes.data[i]->op;
    kv->live[i] = kv->output < 0 || op == IR_OP_PARAM || op == IR_OP_INPUT;
  }
  if (kv->output >= 0) kv->live[f->outputs.data[kv->output]->id] = true;
  for (int i = f->nodes.len - 1; i >= 0; i--)  // operands come before their users
    for (int j = 0; kv->live[i] && j < f->nodes.data[i]->nsrc; j++) kv->live[f->nodes.data[i]->src[j]->id] = true;
  return true;
}

IrGraph *pass_kvcache(const IrGraph *f, char *why, size_t whylen) { return pass_kvcache_output(f, -1, why, whylen); }

IrGraph *pass_kvcache_output(const IrGraph *f, int output, char *why, size_t whylen) {
  Kv kv = {.f = f, .why = why, .whylen = whylen, .output = output < f->outputs.len ? output : -1};
  why[0] = 0;
  if (!mark_live(&kv)) return snprintf(why, whylen, "out of memory"), NULL;
  for (int i = 0; i < f->nodes.len; i++) {  // the attentions first: the usual reason, and the clearest
    const IrNode *n = f->nodes.data[i];
    if (!kv.live[i]) continue;
    if (n->op == IR_OP_ATTENTION && !n->attr.causal) return refuse(&kv, n, "attention is not causal"), NULL;
    if (n->op == IR_OP_ATTENTION && n->nsrc > 3) return refuse(&kv, n, "attention has a mask"), NULL;
  }
  if (!check_input(&kv)) return NULL;
  kv.g = ir_graph_new(f->a, f->diag, arena_printf(f->a, "%s.step", f->name ? f->name : "forward"));
  kv.map = arena_alloc(f->a, sizeof(IrNode *) * (size_t)(f->nodes.len + 1));
  const IrNode *tok = f->inputs.data[0];
  bool ok = kv.g && kv.map;
  for (int s = 0; ok && s < f->syms.len; s++) ok = ir_symtab_intern(&kv.g->syms, kv.g->a, f->syms.data[s]) == s;
  int kvsym = ok ? new_sym(kv.g) : -1;
  IrType pt = {.dt = IR_I32};
  ok = ok && kvsym >= 0 && (kv.map[tok->id] = ir_input(kv.g, tok->name, &tok->ty, tok->loc)) &&
       (kv.pos = ir_input(kv.g, "pos", &pt, tok->loc)) && make_caches(&kv, kvsym);
  int att = 0;
  for (int i = 0; ok && i < f->nodes.len; i++) {
    const IrNode *n = f->nodes.data[i];
    if (n->op == IR_OP_INPUT || !kv.live[i]) continue;
    ok = (kv.map[n->id] = rewrite(&kv, n, &att)) != NULL;
  }
  for (int i = 0; ok && i < f->outputs.len; i++)
    if (kv.output < 0 || i == kv.output) ok = ir_output(kv.g, f->output_names.data[i], kv.map[f->outputs.data[i]->id]);
  for (int a = 0; ok && a < kv.natt; a++)
    ok = ir_output(kv.g, kv.kc[a]->name, kv.ko[a]) && ir_output(kv.g, kv.vc[a]->name, kv.vo[a]);
  if (ok && !ir_verify(kv.g)) {
    snprintf(why, whylen, "internal error: the step graph does not verify");
    return NULL;
  }
  if (!ok && !why[0]) snprintf(why, whylen, "out of memory or an op the pass cannot copy");
  return ok ? kv.g : NULL;
}

int64_t pass_kv_context(const IrGraph *f) {
  int64_t ctx = 0;
  for (int i = 0; i < f->nodes.len; i++) {
    const IrNode *n = f->nodes.data[i];
    if (n->op != IR_OP_GATHER || n->src[1]->op != IR_OP_POSITIONS || !ir_dim_is_const(n->src[0]->ty.dim[0])) continue;
    int64_t rows = n->src[0]->ty.dim[0].n;
    if (!ctx || rows < ctx) ctx = rows;
  }
  return ctx;
}
