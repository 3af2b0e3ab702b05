// passes/pass.h: passes over the IR (ir/ir.h). Each pass is a function over
// an IrGraph that returns a status and reports into the graph's Diag. Data
// flow: fe_lower (frontend) -> passes (autodiff, later fusion, memory
// planning, KV-cache derivation) -> codegen.
#ifndef HEED_PASS_H
#define HEED_PASS_H

#include "ir/ir.h"

// ---- autodiff.c ----
// Reverse-mode differentiation: appends to g the gradient of the scalar
// `loss` with respect to every trainable PARAM (not buffers) and, when
// inputs_too, every float INPUT. Each gradient becomes an output named
// "grad.NAME" (flag IR_FLAG_GRAD); a parameter the loss does not depend on
// gets a zero gradient. The loss itself is added as output "loss" if it is
// not one already. Returns false with a diagnostic if an op on the path
// from the parameters to the loss has no gradient rule (an integer op feeding
// a float one is not an error: it carries no gradient).
bool pass_autodiff(IrGraph *g, IrNode *loss, bool inputs_too);

#endif
