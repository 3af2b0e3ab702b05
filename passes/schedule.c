// passes/schedule.c: builds the Schedule (schedule.h) of a verified
// IrGraph under a target's SchedCaps. Sits between the passes and every
// backend's emitter: the decisions made here (which node is computed by
// which call, fusion, aliases, the parallel split, the dedup key, the
// lifetimes) are made once; an emitter turns each kernel into code and
// re-decides nothing. Printing is schedule_print.c.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "passes/schedule.h"

static bool is_attention_grad(IrOp op) {
  return op == IR_OP_ATTENTION_DQ || op == IR_OP_ATTENTION_DK || op == IR_OP_ATTENTION_DV;
}

static bool same_dims(const IrType *a, const IrType *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

// ---- structure: transposed operands, reductions, generic sizes ----

static bool swaps_last_two(const IrNode *p) {  // a PERMUTE of the last two axes
  if (p->op != IR_OP_PERMUTE) return false;
  int r = p->ty.rank;
  for (int i = 0; i < r - 2; i++)
    if (p->attr.perm[i] != i) return false;
  return p->attr.perm[r - 2] == r - 1 && p->attr.perm[r - 1] == r - 2;
}

// A MATMUL reads an operand that is such a permute transposed, from the
// permute's own operand: TRANS_B (B^T, the tied LM head, dx = dy W^T),
// TRANS_A (A^T, the weight gradients x^T dy). 0 for every other node.
static int node_trans(const SchedCaps *caps, const IrNode *n) {
  if (n->op != IR_OP_MATMUL || !caps->transposed_matmul) return 0;
  return (swaps_last_two(n->src[1]) ? SCHED_TRANS_B : 0) | (swaps_last_two(n->src[0]) ? SCHED_TRANS_A : 0);
}

uint32_t sched_reduce_axes(const IrNode *n) {
  if (n->op != IR_OP_SUM_TO) return n->attr.axes;
  uint32_t axes = 0;
  int r = n->src[0]->ty.rank, ro = n->ty.rank;
  for (int i = 0; i < r; i++) {
    int j = i - (r - ro);
    if (j < 0 || (ir_dim_is_const(n->ty.dim[j]) && n->ty.dim[j].n == 1)) axes |= 1u << i;
  }
  return axes;
}

// A sum or mean over leading axes 0..j-1 of f32 (bias gradients): the kept
// trailing block is contiguous, so it is split in column blocks (j; else 0).
static int lead_axes(const IrNode *n) {
  IrOp op = n->op;
  if ((op != IR_OP_SUM && op != IR_OP_MEAN && op != IR_OP_SUM_TO) || n->src[0]->ty.dt != IR_F32 || n->ty.dt != IR_F32)
    return 0;
  uint32_t axes = sched_reduce_axes(n);
  int r = n->src[0]->ty.rank, j = 0;
  while (j < r && (axes >> j & 1)) j++;
  return j > 0 && j < r && axes == (1u << j) - 1 ? j : 0;
}

// Ops whose kernels read every size but 1 at run time: one kernel serves
// e.g. the bias adds of every width (memory-bound loops). The others
// (attention: the head size; the norms, softmax, cross entropy: the row
// length) keep constant sizes.
static bool generic_dims(const SchedCaps *caps, IrOp op) {
  switch (op) {
  case IR_OP_ATTENTION: case IR_OP_ATTENTION_KV: case IR_OP_ATTENTION_DQ: case IR_OP_ATTENTION_DK:
  case IR_OP_ATTENTION_DV: case IR_OP_ROPE: case IR_OP_ROPE_AT: case IR_OP_LAYERNORM: case IR_OP_RMSNORM:
  case IR_OP_LAYERNORM_DX: case IR_OP_RMSNORM_DX: case IR_OP_LAYERNORM_DW: case IR_OP_RMSNORM_DW:
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: case IR_OP_SOFTMAX_GRAD: case IR_OP_LOG_SOFTMAX_GRAD:
  case IR_OP_XENT: case IR_OP_XENT_GRAD: case IR_OP_KV_APPEND:
    return false;
  default: return caps->generic_sizes;
  }
}

// ---- which call computes each node ----

// TRANSPOSED: a PERMUTE that only MATMULs read, as their transposed operand
// (they read its operand), and not a graph output. false: out of memory.
static bool mark_transposed(Schedule *s, const IrGraph *g, const SchedCaps *caps, bool *other) {
  bool *tr = heed_calloc((size_t)g->nodes.len + 1, 1);
  if (!tr) return false;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    int nt = node_trans(caps, n);
    for (int j = 0; j < n->nsrc; j++) {
      if (((nt & SCHED_TRANS_B) && j == 1) || ((nt & SCHED_TRANS_A) && j == 0)) tr[n->src[j]->id] = true;
      else other[n->src[j]->id] = true;
    }
  }
  for (int i = 0; i < g->nodes.len; i++)
    if (tr[i] && !other[i]) s->role[i] = SCHED_TRANSPOSED;
  heed_free(tr);
  return true;
}

// ALIAS: a RESHAPE that is not a graph output; alias[i] is its source's
// (through chains of them): row-major data does not move, so the reshape is
// not called and its readers read the source's buffer. (A permute it reads
// is never TRANSPOSED.)
static void mark_aliases(Schedule *s, const IrGraph *g, const SchedCaps *caps, const bool *out) {
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    s->alias[i] = i;
    if (caps->alias_reshapes && n->op == IR_OP_RESHAPE && !out[i]) {
      s->alias[i] = s->alias[n->src[0]->id];
      s->role[i] = SCHED_ALIAS;
    }
  }
}

// A reduction kernel that computes an inlined operand: split in rows (not
// column blocks) and of f32.
static bool red_user(const SchedCaps *caps, const IrNode *u) {
  return ir_op_is(u->op, IR_OPF_REDUCTION) && caps->inline_into[u->op] && u->src[0]->ty.dt == IR_F32 &&
         !lead_axes(u);
}

// INLINE: an f32 value of an inline_op (cpu: ADD, SUB, MUL) that is not a
// graph output, whose users (at most inline_max_users) all compute it: an
// elementwise kernel of its own shape, or a reduction (red_user) when its
// operands are shaped like it (a reduction reads them at its own offsets).
// E.g. the bias add of x @ W + b inside the GELU after it and inside the
// GELU's gradient; a residual add of a projection's bias add; the x * x of
// the optimizer's squared norms inside their sums. Its operands are not
// inlined themselves (one level). Runs on the roles so far (TRANSPOSED,
// ALIAS nodes are not users that can).
static bool fuse_elementwise(Schedule *s, const IrGraph *g, const SchedCaps *caps, const bool *out) {
  int nn = g->nodes.len;
  int *users = heed_calloc((size_t)nn + 1, sizeof *users);
  bool *bad = heed_calloc((size_t)nn + 1, sizeof *bad);  // some user cannot compute it inline
  bool *red = heed_calloc((size_t)nn + 1, sizeof *red);  // a user is a reduction (red_user)
  bool ok = users && bad && red;
  for (int i = 0; ok && i < nn; i++) {
    const IrNode *u = g->nodes.data[i];
    bool called = s->role[i] == SCHED_CALL;
    for (int j = 0; j < u->nsrc; j++) {
      int v = u->src[j]->id;
      users[v]++;
      if (red_user(caps, u) && called) red[v] = true;
      else if (!caps->inline_into[u->op] || ir_op_is(u->op, IR_OPF_REDUCTION) || !called ||
               !same_dims(&u->ty, &u->src[j]->ty))
        bad[v] = true;
    }
  }
  for (int i = 0; ok && i < nn; i++) {
    const IrNode *n = g->nodes.data[i];
    bool in = caps->inline_op[n->op] && n->ty.dt == IR_F32 && !out[i] && s->role[i] == SCHED_CALL && !bad[i] &&
              users[i] >= 1 && users[i] <= caps->inline_max_users;
    for (int j = 0; in && j < n->nsrc; j++)
      in = s->role[n->src[j]->id] != SCHED_INLINE &&
           (!red[i] || (n->src[j]->ty.dt == IR_F32 && same_dims(&n->src[j]->ty, &n->ty)));
    if (in) s->role[i] = SCHED_INLINE;
  }
  heed_free(users);
  heed_free(bad);
  heed_free(red);
  return ok;
}

// ATTENTION_DQ, _DK, _DV nodes over the same operands and attributes form a
// group; its first node (the root) runs one kernel that writes all three and
// the others are GROUPED. grp[3 i + o], for a root i: the group's DQ, DK, DV
// node ids (-1 where it has none).
static bool same_attention(const IrNode *a, const IrNode *b) {
  if (a->nsrc != b->nsrc || a->attr.heads != b->attr.heads || a->attr.kv_heads != b->attr.kv_heads ||
      a->attr.causal != b->attr.causal || a->attr.scale != b->attr.scale)
    return false;
  for (int j = 0; j < a->nsrc; j++)
    if (a->src[j] != b->src[j]) return false;
  return true;
}

static void group_attention_grads(Schedule *s, const IrGraph *g, const SchedCaps *caps, int *grp) {
  for (int i = 0; i < 3 * g->nodes.len; i++) grp[i] = -1;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (!is_attention_grad(n->op)) continue;
    int o = n->op - IR_OP_ATTENTION_DQ, lead = i;
    for (int j = 0; j < i && lead == i && caps->group_attention_grads; j++) {
      const IrNode *m = g->nodes.data[j];
      if (is_attention_grad(m->op) && s->role[j] != SCHED_GROUPED && grp[3 * j + o] < 0 && same_attention(m, n))
        lead = j;
    }
    grp[3 * lead + o] = i;
    if (lead != i) s->role[i] = SCHED_GROUPED;
  }
}

// ---- the parallel split ----

static SchedDims prod_of(int t, int lo, int hi) {  // 1 * axes lo..hi-1 of t
  uint32_t m = 0;
  for (int a = lo; a < hi; a++) m |= 1u << a;
  return (SchedDims){(int8_t)t, true, m};
}
static SchedDims dim_of(int t, int a) { return (SchedDims){(int8_t)t, false, 1u << a}; }
static SchedSize size1(SchedDims a) { return (SchedSize){1, {a}, 0}; }
static SchedSize size2(SchedDims a, SchedDims b, int64_t c) { return (SchedSize){2, {a, b}, c}; }
static SchedSize sizec(SchedDims a, int64_t c) { return (SchedSize){1, {a}, c}; }

// The reductions over axes that are not only leading ones: units are the
// kept axes but the last, the work one row of the reduced axes times the
// last kept axis.
static SchedSplit split_reduce(const IrNode *n, int lead) {
  int ri = n->src[0]->ty.rank;
  if (lead) return (SchedSplit){SCHED_COLUMNS, size1(prod_of(0, lead, ri)), size1(prod_of(0, 0, lead))};
  uint32_t axes = sched_reduce_axes(n) & ((1u << ri) - 1), kept = ~axes & ((1u << ri) - 1);
  SchedSplit sp = {SCHED_ROWS, {0}, size1((SchedDims){0, true, axes})};
  if (!kept) return sp;
  int last = 31 - __builtin_clz(kept);
  sp.work = size2(sp.work.f[0], dim_of(0, last), 0);
  sp.units = size1((SchedDims){0, true, kept & ~(1u << last)});
  return sp;
}

// The units of ks's kernel and their work, as sizes of its operands
// (kernel operand 0, 1) and result (R).
static SchedSplit split_of(const IrNode *n, const SchedKernel *ks, const IrGraph *g) {
  enum { R = SCHED_RESULT };
  int r = n->ty.rank, ri = n->nsrc ? n->src[0]->ty.rank : 0;
  SchedSize none = {0};
  switch (n->op) {
  case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN: case IR_OP_SUM_TO: return split_reduce(n, ks->lead);
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: case IR_OP_SOFTMAX_GRAD: case IR_OP_LOG_SOFTMAX_GRAD: {
    int a = (int)n->attr.axis;
    return (SchedSplit){SCHED_ROWS, size2(prod_of(R, 0, a), prod_of(R, a + 1, r), 0), size1(dim_of(R, a))};
  }
  case IR_OP_LAYERNORM: case IR_OP_RMSNORM: case IR_OP_LAYERNORM_DX: case IR_OP_RMSNORM_DX:
    return (SchedSplit){SCHED_ROWS, size1(prod_of(0, 0, ri - 1)), size1(dim_of(0, ri - 1))};
  case IR_OP_LAYERNORM_DW: case IR_OP_RMSNORM_DW:
    return (SchedSplit){SCHED_COLUMNS, size1(dim_of(0, ri - 1)), size1(prod_of(0, 0, ri - 1))};
  case IR_OP_ATTENTION: case IR_OP_ATTENTION_KV:  // q (B,T,NH*HS): (b, head), a query row's keys
    return (SchedSplit){SCHED_HEADS, sizec(dim_of(0, 0), n->attr.heads),
                        size2(dim_of(0, 1), dim_of(1, 1), n->src[0]->ty.dim[2].n / n->attr.heads * 2)};
  case IR_OP_ATTENTION_DQ: case IR_OP_ATTENTION_DK: case IR_OP_ATTENTION_DV:  // fused: (b, kv head)
    return (SchedSplit){SCHED_KV_HEADS, sizec(dim_of(0, 0), n->attr.kv_heads),
                        size2(dim_of(0, 1), dim_of(1, 1), n->src[0]->ty.dim[2].n / n->attr.kv_heads * 5)};
  case IR_OP_ROPE: case IR_OP_ROPE_AT:  // x (B,T,NH*HS): positions t
    return (SchedSplit){SCHED_ROWS, size1(dim_of(R, 1)), sizec(dim_of(R, 0), n->ty.dim[2].n)};
  case IR_OP_XENT: case IR_OP_XENT_GRAD:  // rows of logits (...,V)
    return (SchedSplit){SCHED_ROWS, size1(prod_of(1, 0, n->src[1]->ty.rank)), size1(dim_of(0, ri - 1))};
  case IR_OP_GATHER:  // the indices
    return (SchedSplit){SCHED_ROWS, size1(prod_of(1, 0, n->src[1]->ty.rank)), size1(prod_of(0, 1, ri))};
  case IR_OP_SLICE: case IR_OP_CONCAT: {
    int a = (int)n->attr.axis;
    return (SchedSplit){SCHED_ROWS, size1(prod_of(R, 0, a)), size1(prod_of(R, a, r))};
  }
  case IR_OP_OPT_MOMENT: case IR_OP_OPT_MOMENT2: case IR_OP_OPT_ADAMW:  // elementwise with scalars
    return (SchedSplit){SCHED_ELEMENTS, size1(prod_of(R, 0, r)), none};
  case IR_OP_MATMUL:  // one row (decode): a gemv over N columns; else 1 unit (the sgemm threads itself)
    if (n->src[1]->ty.rank != 2 || n->ty.dt != IR_F32 || (ks->trans & SCHED_TRANS_A)) break;
    return (SchedSplit){SCHED_GEMV, size1(dim_of(R, r - 1)), size1(dim_of(0, ri - 1))};
  case IR_OP_CONST: case IR_OP_POSITIONS: case IR_OP_RESHAPE: case IR_OP_GATHER_GRAD:
  case IR_OP_SLICE_GRAD: case IR_OP_REDUCE_GRAD: case IR_OP_KV_APPEND:
    break;
  default: {  // elementwise maps (and EXPAND, PERMUTE); any other op runs serially
    if (!ir_op_is(n->op, IR_OPF_ELEMENTWISE) && n->op != IR_OP_EXPAND && n->op != IR_OP_PERMUTE) break;
    bool flat = n->op != IR_OP_PERMUTE;
    for (int j = 0; j < ks->nopnd; j++) flat = flat && same_dims(&g->nodes.data[ks->opnd[j]]->ty, &n->ty);
    if (flat) return (SchedSplit){SCHED_ELEMENTS, size1(prod_of(R, 0, r)), none};
    if (r == 0) return (SchedSplit){SCHED_ROWS, none, none};
    return (SchedSplit){SCHED_ROWS, size1(prod_of(R, 0, r - 1)), size1(dim_of(R, r - 1))};
  }
  }
  return (SchedSplit){SCHED_SERIAL, none, none};
}

// ---- the dedup key: everything a kernel's code depends on, as a string ----

// generic: sizes other than 1 are all "d" (read at run time); broadcasting
// makes dims that are not 1 agree, so the code is the same for all of them.
static void key_type(char *buf, size_t cap, size_t *len, const IrType *t, bool generic) {
  *len += (size_t)snprintf(buf + *len, cap - *len, "|%d:", (int)t->dt);
  for (int i = 0; i < t->rank && *len < cap; i++) {
    const IrDim *d = &t->dim[i];
    if (generic && !(ir_dim_is_const(*d) && d->n == 1)) {
      *len += (size_t)snprintf(buf + *len, cap - *len, "d,");
      continue;
    }
    *len += (size_t)snprintf(buf + *len, cap - *len, "%lld", (long long)d->n);
    for (int s = 0; s < d->nsym && *len < cap; s++)
      *len += (size_t)snprintf(buf + *len, cap - *len, "*s%d", d->sym[s]);
    if (*len < cap) *len += (size_t)snprintf(buf + *len, cap - *len, ",");
  }
}

static char *key_one(const SchedCaps *caps, const IrNode *n, int nt) {
  char buf[2048];
  size_t len = 0, cap = sizeof buf;
  const IrAttr *a = &n->attr;
  len += (size_t)snprintf(buf, cap, "%d/%d/%d/%lld,%lld,%u,%d%d%d%d,%a,%a,%a,%a,%lld,%lld,%lld,%d,p", (int)n->op,
                          n->nsrc, nt, (long long)a->axis, (long long)a->start, a->axes, a->keepdim, a->causal,
                          a->interleaved, a->inverse, a->value, a->eps, a->scale, a->base, (long long)a->heads,
                          (long long)a->kv_heads, (long long)a->ignore, a->fn);
  for (int i = 0; i < IR_MAX_RANK && len < cap; i++) len += (size_t)snprintf(buf + len, cap - len, "%d.", a->perm[i]);
  bool gen = generic_dims(caps, n->op);
  for (int j = 0; j < n->nsrc && len < cap; j++) key_type(buf, cap, &len, &n->src[j]->ty, gen);
  if (len < cap) key_type(buf, cap, &len, &n->ty, gen);
  return heed_strdup(buf);
}

// ... with the keys of its inlined operands.
static char *kernel_key(const SchedCaps *caps, const IrNode *n, const SchedKernel *ks) {
  char *key = key_one(caps, n, ks->trans);
  for (int j = 0; key && j < n->nsrc; j++) {
    if (!(ks->inl >> j & 1)) continue;
    char *in = key_one(caps, n->src[j], 0);
    char *both = in ? heed_malloc(strlen(key) + strlen(in) + 16) : NULL;
    if (both) sprintf(both, "%s{%d:%s}", key, j, in);
    heed_free(in);
    heed_free(key);
    key = both;
  }
  return key;
}

// ---- the kernels ----

// Root n's kernel: its operands (an inlined source replaced by its own
// sources), the buffers they are read from, its group, split and key.
static bool make_kernel(Schedule *s, const IrGraph *g, const SchedCaps *caps, const IrNode *n, const int *grp,
                        SchedKernel *ks) {
  *ks = (SchedKernel){.root = (int)n->id, .trans = node_trans(caps, n)};
  for (int j = 0; j < n->nsrc; j++) {
    const IrNode *v = n->src[j];
    if (s->role[v->id] != SCHED_INLINE) {
      ks->opnd[ks->nopnd++] = (int)v->id;
      continue;
    }
    ks->inl |= 1u << j;
    for (int i = 0; i < v->nsrc; i++) ks->opnd[ks->nopnd++] = (int)v->src[i]->id;
  }
  for (int j = 0; j < ks->nopnd; j++) {
    const IrNode *o = g->nodes.data[ks->opnd[j]];
    bool tr = !ks->inl && (((ks->trans & SCHED_TRANS_B) && j == 1) || ((ks->trans & SCHED_TRANS_A) && j == 0));
    ks->buf[j] = s->alias[(tr ? o->src[0] : o)->id];
  }
  if (is_attention_grad(n->op)) {
    ks->nxout = 3;
    for (int o = 0; o < 3; o++) ks->xout[o] = grp[3 * n->id + o];
  }
  ks->generic = generic_dims(caps, n->op);
  ks->lead = lead_axes(n);
  ks->split = split_of(n, ks, g);
  char *key = kernel_key(caps, n, ks);
  if (!key) return false;
  for (ks->fn = 0; ks->fn < s->nfn && strcmp(s->key[ks->fn], key); ks->fn++) {}
  if (ks->fn < s->nfn) heed_free(key);
  else s->key[s->nfn++] = key;
  return true;
}

// def and end (schedule.h), from the calls and what each reads.
static void lifetimes(Schedule *s, const IrGraph *g) {
  for (int i = 0; i < s->nnodes; i++) s->def[i] = s->end[i] = -1;
  for (int c = 0; c < s->nk; c++) {
    const SchedKernel *ks = &s->k[c];
    int i = ks->root;
    s->def[i] = s->end[i] = i;
    for (int o = 0; o < ks->nxout; o++)
      if (ks->xout[o] >= 0) s->def[ks->xout[o]] = s->end[ks->xout[o]] = i;
    for (int j = 0; j < ks->nopnd; j++)
      if (s->end[ks->buf[j]] < i) s->end[ks->buf[j]] = i;
  }
  for (int i = 0; i < g->outputs.len; i++) {  // own bytes for the whole run (callers swap them in as inputs)
    int id = (int)g->outputs.data[i]->id;
    s->end[id] = INT_MAX;
    if (s->def[id] >= 0) s->def[id] = 0;
  }
}

static bool build_kernels(Schedule *s, const IrGraph *g, const SchedCaps *caps, const int *grp) {
  int nn = g->nodes.len;
  for (int i = 0; i < nn; i++) {
    s->call[i] = -1;
    if (s->role[i] != SCHED_CALL) continue;
    s->call[i] = s->nk;
    if (!make_kernel(s, g, caps, g->nodes.data[i], grp, &s->k[s->nk++])) return false;
  }
  for (int c = 0; c < s->nk; c++)  // a group's other members are written by its root's call
    for (int o = 0; o < s->k[c].nxout; o++)
      if (s->k[c].xout[o] >= 0) s->call[s->k[c].xout[o]] = c;
  lifetimes(s, g);
  return true;
}

Schedule *sched_build(const IrGraph *g, const SchedCaps *caps, Diag *d) {
  int nn = g->nodes.len;
  size_t n1 = (size_t)nn + 1;
  Schedule *s = heed_calloc(1, sizeof *s);
  bool *out = heed_calloc(n1, sizeof *out), *other = heed_calloc(n1, sizeof *other);
  int *grp = heed_malloc(sizeof *grp * 3 * n1);
  bool ok = s && out && other && grp;
  if (ok) {
    s->nnodes = nn;
    s->role = heed_calloc(n1, sizeof *s->role);
    s->alias = heed_malloc(sizeof *s->alias * n1);
    s->call = heed_malloc(sizeof *s->call * n1);
    s->k = heed_malloc(sizeof *s->k * n1);
    s->key = heed_malloc(sizeof *s->key * n1);
    s->def = heed_malloc(sizeof *s->def * n1);
    s->end = heed_malloc(sizeof *s->end * n1);
    ok = s->role && s->alias && s->call && s->k && s->key && s->def && s->end;
  }
  if (ok) {
    for (int i = 0; i < nn; i++) {
      IrOp op = g->nodes.data[i]->op;
      s->role[i] = op == IR_OP_INPUT || op == IR_OP_PARAM ? SCHED_LEAF : SCHED_CALL;
    }
    for (int i = 0; i < g->outputs.len; i++) out[g->outputs.data[i]->id] = other[g->outputs.data[i]->id] = true;
    ok = mark_transposed(s, g, caps, other);  // without it the kernels differ: out of memory is an error
    if (ok) mark_aliases(s, g, caps, out);
    ok = ok && fuse_elementwise(s, g, caps, out);
  }
  if (ok) {
    group_attention_grads(s, g, caps, grp);
    ok = build_kernels(s, g, caps, grp);
  }
  heed_free(out);
  heed_free(other);
  heed_free(grp);
  if (ok) return s;
  diag_error(d, (SrcLoc){0, 0, 0}, "out of memory scheduling %s", g->name ? g->name : "the graph");
  sched_free(s);
  return NULL;
}

void sched_free(Schedule *s) {
  if (!s) return;
  for (int i = 0; i < s->nfn; i++) heed_free(s->key[i]);
  heed_free(s->key);
  heed_free(s->role);
  heed_free(s->alias);
  heed_free(s->call);
  heed_free(s->k);
  heed_free(s->def);
  heed_free(s->end);
  heed_free(s);
}
