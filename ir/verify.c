// ir/verify.c: the IR verifier (QBE's ssacheck). Run after lowering and after
// every pass in tests and debug builds: ids are positions, operands come
// before their users, arity and attributes are what ops.def says, and every
// node's type is what ir_infer computes from its operands.
#include "ir/ir.h"

bool ir_verify(IrGraph *g) {
  char b1[256], b2[256];
  for (int i = 0; i < g->nodes.len; i++) {
    IrNode *n = g->nodes.data[i];
    if (!n || n->id != (uint32_t)i || n->op >= IR_OP_COUNT) {
      diag_error(g->diag, n ? n->loc : (SrcLoc){0}, "IR verifier: node %d is malformed", i);
      return false;
    }
    for (int j = 0; j < n->nsrc; j++)
      if (!n->src[j] || n->src[j]->id >= n->id || g->nodes.data[n->src[j]->id] != n->src[j]) {
        diag_error(g->diag, n->loc, "IR verifier: %%%d: operand %d is not an earlier node", i, j);
        return false;
      }
    if (n->op == IR_OP_INPUT || n->op == IR_OP_PARAM || n->op == IR_OP_CONST) {
      if (n->nsrc != 0 || (n->op != IR_OP_CONST && !n->name)) {
        diag_error(g->diag, n->loc, "IR verifier: %%%d: a leaf has operands or no name", i);
        return false;
      }
      continue;
    }
    IrType t;
    const IrType *hint = &n->ty;
    if (!ir_infer(g, n->op, n->src, n->nsrc, &n->attr, hint, &t, n->loc)) {
      diag_error(g->diag, n->loc, "IR verifier: %%%d (%s) has operands of the wrong types", i, ir_op_name(n->op));
      return false;
    }
    if (!ir_type_eq(&t, &n->ty)) {
      diag_error(g->diag, n->loc, "IR verifier: %%%d (%s) has type %s but its operands give %s", i,
                 ir_op_name(n->op), ir_type_str(&n->ty, &g->syms, true, b1, sizeof b1),
                 ir_type_str(&t, &g->syms, true, b2, sizeof b2));
      return false;
    }
  }
  for (int i = 0; i < g->outputs.len; i++)
    if (!g->outputs.data[i] || g->outputs.data[i]->id >= (uint32_t)g->nodes.len) {
      diag_error(g->diag, (SrcLoc){0}, "IR verifier: output %d is not a node", i);
      return false;
    }
  return true;
}
