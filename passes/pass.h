// passes/pass.h: passes over the IR (ir/ir.h). Each pass is a function over
// an IrGraph that returns a status and reports into the graph's Diag. Data
// flow: fe_lower (frontend) -> passes (autodiff, KV-cache derivation, later
// fusion and memory planning) -> codegen.
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

// ---- kvcache.c ----
// Incremental decoding derived from a forward that takes integer tokens
// (B, T) and returns per-position outputs (B, T, ...). The step graph
// computes the forward on T new tokens at positions pos .. pos+T-1, with
// the keys and values of earlier positions read from caches:
//   inputs:  the tokens (B, T), as the forward names them
//            pos: i32 (), the number of positions already in the caches
//            cache.k.I, cache.v.I: (B, KV, C) per causal attention I (in
//              graph order), C its k/v width; KV a new symbolic size, the
//              caches' capacity (pos + T <= KV)
//   params:  the forward's, same names and order
//   outputs: the forward's outputs (over the T new positions), then
//            cache.k.I, cache.v.I: the caches with rows pos..pos+T-1
//            written (KV_APPEND; a compiled caller may give an output the
//            same buffer as its input: the append is then in place)
// Prefill: T = the prompt's length, pos = 0; decode: T = 1. Returns NULL
// and writes the reason into why when the forward is not incremental (a
// non-causal or masked attention, an op mixing positions; see kvcache.c).
// The graph lives in f's arena and reports into f's Diag.
IrGraph *pass_kvcache(const IrGraph *f, char *why, size_t whylen);
// The context a forward supports: the rows of the smallest table it
// gathers with positions (wpe[positions(x)]); 0 if it has none.
int64_t pass_kv_context(const IrGraph *f);

#endif
