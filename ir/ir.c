// ir/ir.c: the graph IR: the op table (from ops.def), graph construction and
// shape inference. The frontend's lowering (frontend/lower.c) builds graphs
// with these builders, autodiff extends them, the interpreter (interp.c)
// runs them. Every builder checks types through ir_infer and reports a
// diagnostic instead of asserting.
#include <string.h>

#include "ir/ir.h"

#define EW IR_OPF_ELEMENTWISE
#define RD IR_OPF_REDUCTION
#define IP IR_OPF_INPLACE
const IrOpInfo ir_op_info[IR_OP_COUNT] = {
#define OP(n, k, fl, at) [IR_OP_##n] = {.nsrc = k, .flags = (fl), .attrs = at},
#include "ir/ops.def"
#undef OP
};
#undef EW
#undef RD
#undef IP
_Static_assert(sizeof ir_op_info / sizeof ir_op_info[0] == IR_OP_COUNT, "ir_op_info must cover every op");

static const char *const op_names[IR_OP_COUNT] = {
#define OP(n, k, fl, at) [IR_OP_##n] = #n,
#include "ir/ops.def"
#undef OP
};

// Lower-case names, made once (the table above holds the upper-case ones).
static char lower_names[IR_OP_COUNT][24];
const char *ir_op_name(IrOp op) {
  if (op >= IR_OP_COUNT) return "?";
  if (!lower_names[op][0]) {
    const char *s = op_names[op];
    size_t i = 0;
    for (; s[i] && i < sizeof lower_names[op] - 1; i++)
      lower_names[op][i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] | 0x20 : s[i]);
    lower_names[op][i] = 0;
  }
  return lower_names[op];
}

int ir_op_from_name(const char *s) {
  for (int i = 0; i < IR_OP_COUNT; i++)
    if (strcmp(ir_op_name((IrOp)i), s) == 0) return i;
  return -1;
}

IrGraph *ir_graph_new(Arena *a, Diag *d, const char *name) {
  IrGraph *g = arena_alloc(a, sizeof(IrGraph));
  if (!g) return NULL;
  g->a = a;
  g->diag = d;
  g->name = arena_strdup(a, name ? name : "graph");
  return g;
}

static IrNode *add_node(IrGraph *g, IrOp op, const IrType *ty, SrcLoc loc) {
  IrNode *n = arena_alloc(g->a, sizeof(IrNode));
  if (!n || !vec_push(g->a, &g->nodes, n)) {
    diag_error(g->diag, loc, "out of memory building the IR");
    return NULL;
  }
  n->op = op;
  n->ty = *ty;
  n->id = (uint32_t)(g->nodes.len - 1);
  n->loc = loc;
  return n;
}

IrNode *ir_input(IrGraph *g, const char *name, const IrType *ty, SrcLoc loc) {
  IrNode *n = add_node(g, IR_OP_INPUT, ty, loc);
  if (!n) return NULL;
  n->name = arena_strdup(g->a, name);
  n->flags = IR_FLAG_INPUT;
  return vec_push(g->a, &g->inputs, n) ? n : NULL;
}

IrNode *ir_param(IrGraph *g, const char *name, const IrType *ty, IrInit init, bool buffer, SrcLoc loc) {
  IrNode *n = add_node(g, IR_OP_PARAM, ty, loc);
  if (!n) return NULL;
  n->name = arena_strdup(g->a, name);
  n->init = init;
  n->init.kind = arena_strdup(g->a, init.kind ? init.kind : "zeros");
  n->flags = buffer ? IR_FLAG_BUFFER : IR_FLAG_PARAM;
  return vec_push(g->a, &g->params, n) ? n : NULL;
}

IrNode *ir_const(IrGraph *g, double value, IrDType dt, SrcLoc loc) {
  IrType t = {.dt = dt};
  IrNode *n = add_node(g, IR_OP_CONST, &t, loc);
  if (n) n->attr.value = value;
  return n;
}

bool ir_output(IrGraph *g, const char *name, IrNode *n) {
  n->flags |= IR_FLAG_OUTPUT;
  return vec_push(g->a, &g->outputs, n) && vec_push(g->a, &g->output_names, arena_strdup(g->a, name));
}

IrNode *ir_op(IrGraph *g, IrOp op, IrNode *const *src, int nsrc, const IrAttr *attr, const IrType *ty,
              SrcLoc loc) {
  IrAttr none = {0};
  IrType t;
  for (int i = 0; i < nsrc; i++)
    if (!src[i]) return NULL;  // an operand already failed
  if (!ir_infer(g, op, src, nsrc, attr ? attr : &none, ty, &t, loc)) return NULL;
  IrNode *n = add_node(g, op, &t, loc);
  if (!n) return NULL;
  memcpy(n->src, src, sizeof(IrNode *) * (size_t)nsrc);
  n->nsrc = nsrc;
  n->attr = attr ? *attr : none;
  return n;
}

IrNode *ir_unary(IrGraph *g, IrOp op, IrNode *x, SrcLoc loc) { return ir_op(g, op, &x, 1, NULL, NULL, loc); }

IrNode *ir_binary(IrGraph *g, IrOp op, IrNode *a, IrNode *b, SrcLoc loc) {
  IrNode *s[2] = {a, b};
  return ir_op(g, op, s, 2, NULL, NULL, loc);
}

int64_t ir_dim_value(IrDim d, const int64_t *symvals) {
  int64_t v = d.n;
  for (int i = 0; i < d.nsym; i++)
    if (!symvals || __builtin_mul_overflow(v, symvals[d.sym[i]], &v)) return -1;
  return v;
}

int64_t ir_type_numel(const IrType *t, const int64_t *symvals) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    int64_t d = ir_dim_value(t->dim[i], symvals);
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  }
  return n;
}

bool ir_broadcast_type(const IrType *a, const IrType *b, IrType *out) {
  int rank = a->rank > b->rank ? a->rank : b->rank;
  IrType r = {.dt = a->dt, .rank = rank};
  for (int i = 0; i < rank; i++) {
    int ia = a->rank - rank + i, ib = b->rank - rank + i;
    IrDim da = ia >= 0 ? a->dim[ia] : ir_dim_const(1);
    IrDim db = ib >= 0 ? b->dim[ib] : ir_dim_const(1);
    if (ir_dim_eq(da, db) || (ir_dim_is_const(db) && db.n == 1)) r.dim[i] = da;
    else if (ir_dim_is_const(da) && da.n == 1) r.dim[i] = db;
    else return false;
  }
  *out = r;
  return true;
}
