// codegen/status.c: what a compiled program's nonzero status means. A kernel
// that fails writes the values its message names into CgRunCtx.err (and, for
// scratch memory, ST_NOMEM in err[3]) and returns; the entry returns the
// failing node's id + 1 (compile.h: the ST_ codes). The message is the
// interpreter's for the same fault (ir/kernels.c), at the node's location.
#include "codegen/cg.h"
#include "codegen/compile.h"

bool cg_report_status(const CgProgram *p, int rc, const int64_t *err, Diag *d) {
  if (rc < 0 || rc > p->nnodes) {
    diag_error(d, (SrcLoc){0}, "cpu backend: the compiled program failed (status %d)", rc);
    return false;
  }
  const CgNode *n = &p->nodes[rc - 1];
  long long e0 = (long long)err[0], e1 = (long long)err[1];
  if (err[3] == ST_NOMEM) {
    diag_error(d, n->loc, "%s: out of memory (%lld bytes of scratch)", ir_op_name(n->op), e0);
    return false;
  }
  switch (n->op) {
  case IR_OP_GATHER:
  case IR_OP_GATHER_GRAD:
    diag_error(d, n->loc, "gather: index %lld is outside the table of %lld rows", e0, e1);
    break;
  case IR_OP_XENT:
  case IR_OP_XENT_GRAD:
    diag_error(d, n->loc, "cross_entropy: target %lld is outside the %lld classes of the logits (ignore index %lld)",
               e0, e1, (long long)n->attr.ignore);
    break;
  case IR_OP_DIV: diag_error(d, n->loc, "div: integer division by zero (%lld / 0)", e0); break;
  case IR_OP_SLICE:
  case IR_OP_SLICE_GRAD:
    diag_error(d, n->loc, "slice: %lld elements from %lld%s do not fit axis %d of size %lld", e0,
               (long long)n->attr.start, n->attr.start < 0 ? " (from the end)" : "", (int)n->attr.axis, e1);
    break;
  default: diag_error(d, n->loc, "%s: run-time error in compiled code", ir_op_name(n->op)); break;
  }
  return false;
}
