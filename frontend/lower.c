// frontend/lower.c: lowering, the last stage of the frontend: a checked
// model -> IrGraph (ir/ir.h). The checker (check.c, builtins.c, value.c)
// evaluates the forward a second time with ck->g set; each tensor value then
// carries the IR node computing it, built here. Block instances are inlined,
// every layer of a repeat gets its own parameters (full dotted names), and
// Transformer builtins stay single ops (attention, layernorm, rope, ...).
#include <string.h>

#include "frontend/fe_internal.h"

IrNode *fe_lower_const(FeCk *ck, const FeVal *v, IrDType dt, SrcLoc loc) {
  if (v->k == FV_TENSOR) return v->node;
  if (fe_val_is_const(v)) return ir_const(ck->g, v->k == FV_FLOAT ? v->f : (double)v->i, dt, loc);
  return NULL;
}

static uint32_t pmap_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  h ^= h >> 16;  // FNV's low bits see only the low bits of each byte: mix
  h *= 0x85ebca6bu;
  return h ^ (h >> 13);
}

// The slot of name (hash h) in the map: its node, or the empty slot where it goes.
static struct FeParamSlot *pmap_slot(const FeParamMap *m, const char *name, uint32_t h) {
  uint32_t mask = m->cap - 1;
  for (uint32_t i = h & mask;; i = (i + 1) & mask) {
    struct FeParamSlot *s = &m->slot[i];
    if (!s->node || (s->hash == h && !strcmp(s->node->name, name))) return s;
  }
}

// Makes room for one more name (the table at most half full); false on OOM.
static bool pmap_reserve(FeCk *ck, FeParamMap *m) {
  if (2 * (m->n + 1) <= m->cap) return true;
  uint32_t cap = m->cap ? 2 * m->cap : 256;
  if (cap > (1u << 30)) return false;
  FeParamMap nm = {.slot = arena_alloc(ck->a, sizeof *nm.slot * cap), .cap = cap, .n = m->n};
  if (!nm.slot) return false;
  for (uint32_t i = 0; i < m->cap; i++)
    if (m->slot[i].node) {
      uint32_t mask = cap - 1, j = m->slot[i].hash & mask;
      while (nm.slot[j].node) j = (j + 1) & mask;
      nm.slot[j] = m->slot[i];
    }
  *m = nm;
  return true;
}

// The graph's parameter named name, created on first use (with p's type and
// initializer); NULL after a reported error.
static IrNode *param_node(FeCk *ck, const char *name, const FeParamDecl *p) {
  if (ck->a->failed) return NULL;  // out of memory already: fe_check reports it once
  if (!pmap_reserve(ck, &ck->pmap)) {
    if (!ck->a->failed) diag_error(ck->d, p->loc, "too many parameters in one graph (%u)", ck->pmap.n);
    return NULL;
  }
  uint32_t h = pmap_hash(name);
  struct FeParamSlot *s = pmap_slot(&ck->pmap, name, h);
  if (s->node) return s->node;
  IrInit init = {.kind = p->init.kind, .a = p->init.a, .b = p->init.b};
  IrNode *n = ir_param(ck->g, name, &p->type, init, p->is_buffer, p->loc);
  if (!n) return NULL;  // out of memory (fe_check reports it)
  *s = (struct FeParamSlot){.node = n, .hash = h};
  ck->pmap.n++;
  return n;
}

IrNode *fe_lower_param(FeCk *ck, const FeParamDecl *p, SrcLoc loc) {
  char name[1200];
  snprintf(name, sizeof name, "%.*s%s%s", (int)ck->plen, ck->prefix, ck->plen ? "." : "", p->name);
  (void)loc;
  return param_node(ck, name, p);
}

IrNode *fe_lower_binop(FeCk *ck, int op, const FeVal *l, const FeVal *r, const IrType *ty, SrcLoc loc) {
  IrOp o = op == '+' ? IR_OP_ADD : op == '-' ? IR_OP_SUB : op == '*' ? IR_OP_MUL : IR_OP_DIV;
  IrNode *a = fe_lower_const(ck, l, ty->dt, loc), *b = fe_lower_const(ck, r, ty->dt, loc);
  return ir_binary(ck->g, o, a, b, loc);
}

IrNode *fe_lower_reshape(FeCk *ck, IrNode *x, const IrType *ty, SrcLoc loc) {
  if (!x) return NULL;
  if (ir_type_eq(&x->ty, ty)) return x;
  return ir_op(ck->g, IR_OP_RESHAPE, &x, 1, NULL, ty, loc);
}

IrNode *fe_lower_slice(FeCk *ck, IrNode *x, int axis, int64_t start, IrDim len, SrcLoc loc) {
  if (!x) return NULL;
  if (start == 0 && ir_dim_eq(x->ty.dim[axis], len)) return x;
  IrType t = x->ty;
  t.dim[axis] = len;
  IrAttr at = {.axis = axis, .start = start};
  return ir_op(ck->g, IR_OP_SLICE, &x, 1, &at, &t, loc);
}

// Binds typed inputs as INPUT nodes, runs the body, marks the outputs.
static bool lower_fn(FeCk *ck, FeEnv *env, const FeItem *fn, const IrType *types, FeEnv *members,
                     const char *out_name) {
  for (int i = 0; i < fn->nparams; i++) {
    FeVal v = fe_val_tensor(&types[i], fn->params[i].loc);
    v.node = ir_input(ck->g, fn->params[i].name, &types[i], fn->params[i].loc);
    if (!v.node) return false;
    fe_env_bind(ck, env, fn->params[i].name, v, fn->params[i].loc);
  }
  FeVal r = fe_run_body(ck, env, fn, members);
  int n = r.k == FV_TUPLE ? r.n : 1;
  for (int i = 0; i < n; i++) {
    const FeVal *x = r.k == FV_TUPLE ? &r.elems[i] : &r;
    char nm[32];
    snprintf(nm, sizeof nm, n == 1 ? "%s" : "%s%d", out_name, i);
    if (x->k != FV_TENSOR || !x->node || !ir_output(ck->g, nm, x->node)) {
      if (!ck->d->nerr && !ck->a->failed) diag_error(ck->d, fn->loc, "internal error: lowering produced no value for %s", nm);
      return false;
    }
  }
  ck->g->syms = *ck->syms;
  return ir_verify(ck->g);
}

// Every declared parameter is in the graph, used or not, so that init writes
// it, a checkpoint holding it loads, and grad gives it a (zero) gradient.
static void add_unused(void *ud, const char *name, const FeParamDecl *p) {
  FeCk *ck = ud;
  if (!ck->d->nerr) (void)param_node(ck, name, p);
}

static IrGraph *new_graph(FeCk *ck, const char *name) {
  IrGraph *g = ir_graph_new(ck->a, ck->d, name);
  if (g) g->syms = *ck->syms;
  ck->pmap = (FeParamMap){0};
  return g;
}

void fe_lower_model(FeCk *ck, FeModel *m) {
  const FeItem *fwd = NULL;
  for (int i = 0; i < m->decl->nitems; i++)
    if (m->decl->items[i]->kind == FE_IT_FUNC && !strcmp(m->decl->items[i]->name, "forward")) fwd = m->decl->items[i];
  char name[300];
  snprintf(name, sizeof name, "%s.forward", m->decl->name);
  ck->g = new_graph(ck, name);
  ck->plen = 0;
  ck->prefix[0] = 0;
  FeEnv *env = fe_env_new(ck, m->root->env, FE_ENV_LOCALS);
  if (ck->g && env && fwd && lower_fn(ck, env, fwd, m->inputs, m->root->env, "out")) {
    m->forward = ck->g;
    fe_model_each_param(m, add_unused, ck);
  }
  if (m->train && m->train->loss_fn && m->forward) {
    snprintf(name, sizeof name, "%s.loss", m->decl->name);
    ck->g = new_graph(ck, name);
    FeEnv *tenv = fe_env_new(ck, ck->config, FE_ENV_LOCALS);
    if (ck->g && tenv) {
      fe_env_bind(ck, tenv, m->decl->name, (FeVal){.k = FV_INST, .inst = m->root, .loc = m->decl->name_loc},
                  m->decl->name_loc);
      FeEnv *locals = fe_env_new(ck, tenv, FE_ENV_LOCALS);
      if (locals && lower_fn(ck, locals, m->train->loss_fn, m->train->loss_inputs, NULL, "loss")) {
        m->loss = ck->g;
        fe_model_each_param(m, add_unused, ck);
      }
    }
  }
  ck->g = NULL;
}
