// passes/pass.h: passes over the IR (ir/ir.h). Each pass is a function over
// an IrGraph that returns a status and reports into the graph's Diag. Data
// flow: fe_lower (frontend) -> pass_run over a named pipeline (autodiff,
// train_step, kvcache) -> the schedule (schedule.h) and the memory plan ->
// a codegen target (codegen/cg.h: CgTarget).
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

// ---- train_step.c ----
// The whole training step as one graph: pass_train_step runs pass_autodiff
// on the loss graph g, then appends global-gradient-norm clipping and the
// optimizer update, so that one compiled graph does forward, backward, clip
// and update, and serves every step (step-dependent values are inputs).
//
// Semantics (PyTorch 1.13's, single-tensor paths, all in f32):
//   norm   = sqrt(sum over trainable P of |grad.P|^2), as clip_grad_norm_:
//            the 2-norm of the per-parameter 2-norms
//   clip   > 0: g = grad * min(1, clip / (norm + 1e-6)); clip == 0: g = grad
//   AdamW  (decoupled weight decay only on parameters of rank >= 2):
//            p1 = rank >= 2 ? p * decay : p      decay = 1 - lr * weight_decay
//            m' = m * beta1 + (1 - beta1) * g
//            v' = v * beta2 + ((1 - beta2) * g) * g
//            p' = p1 + (-step_size * m') / (sqrt(v') / bc2_sqrt + eps)
//            step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t)
//   SGD    (dampening 0, no nesterov, no weight decay):
//            momentum > 0: b' = b * momentum + g; p' = p - lr * b'
//            (b starts at zero, so step 1 gives b' = g as PyTorch's clone)
//            momentum == 0: p' = p - lr * g (no state)
// Buffers (non-trainable) are not updated. A trainable parameter the loss
// does not use has a zero gradient and is still updated (decay, moments),
// where PyTorch skips a parameter whose .grad is None.
//
// Graph additions:
//   inputs  (scalar f32, after the loss inputs; computed in double by the
//           caller each step and rounded to f32, as PyTorch rounds them):
//           AdamW: "opt.decay", "opt.step_size", "opt.bc2_sqrt";
//           SGD:   "opt.lr"
//   leaves  (PARAM nodes flagged IR_FLAG_BUFFER, after the model's params,
//           zero-initialised): AdamW "opt.m.NAME", "opt.v.NAME"; SGD with
//           momentum "opt.b.NAME", for each trainable NAME in g->params order
//   outputs (after "loss" and the "grad.NAME" of pass_autodiff):
//           "grad_norm" (f32 scalar, before clipping), then for each
//           trainable NAME: "new.NAME", and "new.opt.m.NAME", ... per state
typedef struct {
  const char *optimizer;            // "adamw" or "sgd"
  double beta1, beta2, eps, weight_decay, momentum;
  double clip;                      // 0: off
  bool unfused;                     // plain MUL/ADD/DIV/SQRT instead of the OPT_* ops (tests: same bits)
} PassTrainOpts;

enum { PASS_TRAIN_MAX_STATE = 2 };
typedef struct {
  IrNode *param;                    // the PARAM leaf
  IrNode *grad;                     // its gradient (grad.NAME, before clipping)
  IrNode *next;                     // new.NAME
  int nstate;                       // 0, 1 (SGD momentum) or 2 (AdamW m, v)
  IrNode *state[PASS_TRAIN_MAX_STATE], *state_next[PASS_TRAIN_MAX_STATE];
} PassTrainParam;

typedef struct {
  int nfwd;                         // nodes before pass_autodiff (forward + loss)
  int ngrad;                        // nodes before the update (forward, loss, backward: the gradients)
  int nloss_inputs, nmodel_params;  // g->inputs / g->params before the pass
  IrNode *loss, *grad_norm;
  IrNode *decay, *step_size, *bc2_sqrt;  // AdamW's scalar inputs (else NULL)
  IrNode *lr;                            // SGD's scalar input (else NULL)
  PassTrainParam *params;           // trainable parameters, g->params order (in g's arena)
  int nparams;
} PassTrainStep;

// Returns false with a diagnostic (autodiff failure, an unknown optimizer).
bool pass_train_step(IrGraph *g, IrNode *loss, const PassTrainOpts *o, PassTrainStep *out);
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
// The same keeping only the forward's output `output` (and the nodes it
// needs; every parameter stays, in order): a model that also returns, say,
// pooled states decodes its logits. output -1: every output.
IrGraph *pass_kvcache_output(const IrGraph *f, int output, char *why, size_t whylen);
// The context a forward supports: the rows of the smallest table it
// gathers with positions (wpe[positions(x)]); 0 if it has none.
int64_t pass_kv_context(const IrGraph *f);

// ---- pass.c ----
// A pass by name (`heed compile --passes autodiff,train_step`): run
// rewrites *g in place or replaces it (kvcache makes a new graph) and
// returns HEED_OK or an error status with a diagnostic in (*g)->diag.
typedef struct PassCtx PassCtx;
typedef struct {
  const char *name;
  const char *summary;  // one line, for `heed help compile`
  int (*run)(IrGraph **g, PassCtx *cx);
} Pass;

// What the passes share: options in, results out, and the runner's flags.
struct PassCtx {
  PassTrainOpts train;        // train_step: the optimizer (from the train section)
  int decode_output;          // kvcache: the forward's output to keep (-1: all)
  bool verify;                // ir_verify after every pass (tests, debug builds)
  const char *print_after;    // a pass's name or "all": ir_print after it into print_to
  FILE *print_to;             // NULL: stderr
  // results
  PassTrainStep ts;           // train_step: where its graph's pieces are
  bool differentiated;        // autodiff ran (ts.nfwd, nloss_inputs, nmodel_params are set)
  char why[300];              // kvcache: why the forward does not decode incrementally
                              // (its status is then HEED_ERR_CHECK without a diagnostic)
};

// The registered passes, in a fixed order; *n their count.
const Pass *pass_list(int *n);
const Pass *pass_find(const char *name);  // NULL: no such pass
// Parses "a,b,c" into pipe (at most cap passes; *n their count). Returns
// false with the reason in err ("unknown pass 'autodif'; did you mean
// 'autodiff'?", "too many passes"); an empty list is a valid pipeline.
bool pass_parse_list(const char *list, const Pass **pipe, int cap, int *n, char *err, size_t errlen);
// Runs the n passes of pipe over *g in order: after each, ir_verify when
// cx->verify (a failure is an internal error naming the pass that broke
// the IR) and ir_print when cx->print_after names it or is "all". Stops at
// the first failing pass and returns its status.
int pass_run(IrGraph **g, const Pass *const *pipe, int n, PassCtx *cx);
// The steps of pass_train_step after pass_autodiff (which ran on g when
// the counts in ts were taken): clipping and the optimizer update.
bool pass_train_update(IrGraph *g, IrNode *loss, const PassTrainOpts *o, PassTrainStep *ts);

#endif
