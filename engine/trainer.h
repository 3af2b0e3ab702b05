// engine/trainer.h: a model being trained, for `heed train` (and tests). Sits
// between the frontend's lowered loss graph (FeModel.loss, FeModel.train)
// and the executors: pass_train_step (passes/train_step.c) turns the loss
// into one graph doing forward, backward, clipping and the optimizer update;
// the trainer compiles it (cg_compile; the reference interpreter with
// opts.interp), owns every buffer, and runs one step per call.
//
// Typical use (no error handling shown):
//   Compilation *c = ...; heed_frontend(c);          // with check.lower = true
//   HeedTrainerOpts o = {.threads = 2, .batch = tr->batch, .seq = tr->seq};
//   HeedTrainer *t = heed_trainer_new(c, &o);         // compiles: ~seconds
//   heed_trainer_init(t, seed);                       // or load a checkpoint:
//   for (i < heed_trainer_ntensors(t)) { HeedTensorRef r = heed_trainer_tensor(t, i); memcpy(r.data, ...); }
//   for (step = 1..N) {
//     const int32_t *in[2] = {tokens, targets};        // heed_trainer_input_name order, B*T each
//     double lr = heed_train_lr(c->model->train, step, N), loss, norm;
//     if (!heed_trainer_step(t, in, lr, step, &loss, &norm)) ...   // c->diag has the message
//   }
//   heed_trainer_free(t);
//
// Determinism: the same parameters, state, inputs, lr and step give
// bit-identical results whatever opts.threads is (codegen's kernels split
// work in a fixed way and reduce in a fixed order).
//
// Gradient accumulation (opts.grad_accum = K > 1): the loss is the mean of
// the K micro-batches' mean losses, and the gradient (g_1 + g_2 + ... + g_K)
// * (1/K), summed left to right in f32, micro-batch order: the order a
// data-parallel reduce in rank order reproduces. With K equal halves of
// identical rows the step equals one of a single half, bit for bit.
#ifndef HEED_ENGINE_TRAINER_H
#define HEED_ENGINE_TRAINER_H

#include "cli/driver.h"

typedef struct HeedTrainer HeedTrainer;

typedef struct {
  bool interp;          // the reference interpreter (slow; for tests) instead of compiled code
  int threads;          // compiled code's thread pool size (<= 1: the calling thread only)
  int64_t batch, seq;   // B and T of every step's (and eval's) inputs
  bool profile;         // time the step's kernel calls (heed_trainer_profile)
  const char *const *freeze;  // glob patterns (fnmatch) on full parameter names: these are not trained
  int nfreeze;          // (no gradient, no optimizer state, never updated: as requires_grad=False)
  struct RtComm *comm;  // data-parallel (runtime/comm.h; NULL: one process): the comm->size ranks
                        // run the micro-batches in turn (rank r: the r-th comm->size-th of them)
                        // and sum the gradients in micro-batch order; grad_accum then counts the
                        // micro-batches of all ranks (default and minimum: comm->size)
  int grad_accum;       // > 1: a step sums the gradients of this many micro-batches of batch /
                        // grad_accum rows (the inputs' rows in order: micro-batch k is rows
                        // [k*b, (k+1)*b)), in that order, divides the sum by grad_accum, then
                        // clips and updates once; batch must be a multiple of it. Memory is
                        // planned for one micro-batch. Compiled code only (not with interp).
} HeedTrainerOpts;

// c: after heed_frontend with c->opts->check.lower set, and a train section
// (c->model->train, c->model->loss). The loss inputs must be integer [B, T]
// tensors (tokens, targets). Extends c->model->loss in place into the train
// step graph (so call this once per compilation). NULL with a diagnostic in
// c->diag on failure (no train section, a float loss input, out of memory,
// the backend cannot compile the graph, a freeze pattern that matches no
// trainable parameter, every parameter frozen).
HeedTrainer *heed_trainer_new(Compilation *c, const HeedTrainerOpts *o);
void heed_trainer_free(HeedTrainer *t);  // NULL is harmless
// With opts.profile: prints the per-op times of the steps run so far to f.
void heed_trainer_profile(const HeedTrainer *t, FILE *f);

// The trainable parameters (not buffers, not frozen): elements, and tensors into *ntensors.
int64_t heed_trainer_trainable(const HeedTrainer *t, int *ntensors);
// What runs the steps: "compiled, N threads" or "reference interpreter".
const char *heed_trainer_name(const HeedTrainer *t);
// Bytes of the buffers the trainer holds now (every node of the step graph,
// parameters and optimizer state included; the forward's once sampled).
int64_t heed_trainer_memory_bytes(const HeedTrainer *t);

// The loss inputs in the train section's loss(...) order: "tokens", "targets", ...
int heed_trainer_ninputs(const HeedTrainer *t);
const char *heed_trainer_input_name(const HeedTrainer *t, int i);

// The tensors to checkpoint: every parameter and buffer of the model in
// model order (the forward graph's order, as `heed init` writes them), then
// the optimizer state of each trainable parameter in the same order:
// AdamW "opt.m.NAME", "opt.v.NAME" (per parameter: m then v); SGD with
// momentum "opt.b.NAME" (the momentum buffer); SGD without: none. All are
// f32. data is read/write and valid until the next heed_trainer_step (a
// step swaps buffers instead of copying: ask again after each step).
typedef struct {
  const char *name;
  int rank;
  const int64_t *shape;  // rank dims, owned by the trainer
  int64_t numel;
  float *data;
  bool is_state;         // optimizer state (false: a model parameter or buffer)
} HeedTensorRef;
int heed_trainer_ntensors(const HeedTrainer *t);
HeedTensorRef heed_trainer_tensor(HeedTrainer *t, int i);
// The model's parameters as `heed init --seed seed` writes them (same
// values, bit for bit); optimizer state zero.
bool heed_trainer_init(HeedTrainer *t, uint64_t seed);

// One training step. inputs[i]: the i-th loss input (heed_trainer_input_name
// order) as B*T int32 values, row-major [B, T]. step: 1-based (AdamW's bias
// corrections 1 - beta^step); lr: this step's learning rate (heed_train_lr).
// On success *loss is the loss before the update and *grad_norm the global
// gradient norm before clipping. Returns false with a diagnostic in c->diag
// on a run-time error (a token outside the vocabulary, ...) or when the loss
// or a gradient is not finite: the message names the step and the first
// parameter (model order) whose gradient has a NaN or infinity; parameters
// and optimizer state are then left as they were before the step.
bool heed_trainer_step(HeedTrainer *t, const int32_t *const *inputs, double lr, int64_t step, double *loss,
                       double *grad_norm);
// The loss on inputs (same shapes as a step) without any update.
bool heed_trainer_eval(HeedTrainer *t, const int32_t *const *inputs, double *loss);
// The forward's logits for one sequence tokens[0..n), 1 <= n <= seq (B = 1,
// T = n): *logits points at n * V floats, row-major (n, V), owned by t and
// valid until the next call. Needs a forward(tokens: i32[B, T]) with one
// result (B, T, V). Compiles the forward on first use.
bool heed_trainer_logits(HeedTrainer *t, const int32_t *tokens, int64_t n, const float **logits);

// The learning rate of step (1-based) out of total_steps under tr's schedule
// (tr->lr the peak, W = tr->warmup, N = total_steps):
//   step <= W (warmup, linear and cosine): lr * step / W
//   constant:  lr
//   cosine:    min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,  p = (step - W) / (N - W)
//   linear:    lr * (1 - p)   (reaches 0 at step N)
//   past N (p > 1): min_lr (cosine), 0 (linear)
// (nanoGPT's get_lr with lr_decay_iters = N, warmup counted from step 1.)
double heed_train_lr(const FeTrain *tr, int64_t step, int64_t total_steps);

#endif
