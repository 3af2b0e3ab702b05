// engine/generate.h: generating tokens from a model's forward, whatever
// runs it (generate.c): the KV-cache step graph (passes/kvcache.c) compiled
// (codegen/, the plan's arena) or on the reference interpreter, or the
// whole forward recomputed per token where the pass cannot decode
// incrementally; as an RtGenModel for the runtime's loop (rt_generate,
// runtime/rt.h), which samples and emits. `heed generate` (cli/) and any
// other front (a server) share it. Typical use (no error handling):
//   int out; heed_logits_output(c, c->model->forward, NULL, "generate", &out);
//   HeedGenSetup s = {.params = heed_load_params(c, f, &runopts), .threads = 2,
//                     .out = out, .vocab = V, .window = W, .n_prompt = n, .cap = n + max_new};
//   HeedGen *x = heed_gen_new(c, &s);
//   RtGenModel m; heed_gen_model(x, &m);
//   rt_generate(&m, ids, n, &opts, emit, ud, &stats, err, sizeof err);
//   heed_gen_free(x);
#ifndef HEED_ENGINE_GENERATE_H
#define HEED_ENGINE_GENERATE_H

#include "cli/driver.h"
#include "runtime/rt.h"

typedef struct HeedGen HeedGen;

typedef struct {
  double **params;   // the forward's parameters (heed_load_params); taken over (freed by the generator)
  bool interp;       // the reference interpreter instead of compiled code
  int threads;       // compiled code's threads (heed_gen_threads)
  int out;           // the forward's output holding the logits (heed_logits_output)
  int64_t vocab;     // its last dim
  int64_t window;    // positions rt_generate slides over (heed_gen_window; 0: none)
  int64_t n_prompt;  // tokens of the prompt kept (the first prefill's length)
  int64_t cap;       // positions the caches (or the history) hold: min(prompt + new tokens, window)
} HeedGenSetup;

// The generator for c's forward (c through heed_frontend with lower set):
// compiles the decode step (or, where the forward cannot decode
// incrementally, says so on stderr and recomputes). NULL with a
// diagnostic in c->diag on failure (out of memory names what and how much).
HeedGen *heed_gen_new(Compilation *c, const HeedGenSetup *s);
void heed_gen_free(HeedGen *x);  // NULL is harmless
// x as the runtime's model: prefill and decode callbacks (valid while x is).
void heed_gen_model(HeedGen *x, RtGenModel *m);
bool heed_gen_incremental(const HeedGen *x);  // a KV cache (else: recomputation)
bool heed_gen_interp(const HeedGen *x);       // the reference interpreter

// heed serve's executor: nslots KV caches over one compiled step graph
// (the window: window_override (--ctx) or heed_gen_window's choice; params
// as HeedGenSetup's, taken over; output: --output or NULL). Prefill and
// decode are heed generate's, on one slot; 0 on success. Slots are not safe
// to run from several threads at once.
typedef struct HeedGenSlots HeedGenSlots;
int heed_gen_slots_open(Compilation *c, double **params, int threads, const char *output, int64_t window_override,
                        int nslots, HeedGenSlots **out);
int64_t heed_gen_slots_vocab(const HeedGenSlots *s);
int64_t heed_gen_slots_window(const HeedGenSlots *s);
int heed_gen_slots_prefill(HeedGenSlots *s, int slot, const int32_t *tok, int64_t n, float *logits);
int heed_gen_slots_decode(HeedGenSlots *s, int slot, int32_t tok, int64_t pos, float *logits);
void heed_gen_slots_free(HeedGenSlots *s);  // NULL is harmless; also after a failed open

// The forward's inputs: integer tokens (B, T) first, others (B, T) integer
// or bool; false with a diagnostic otherwise.
bool heed_gen_check_forward(Compilation *c, const IrGraph *f);
// Threads: threads, unless threads_auto (no --threads): then the built
// programs' rule (rt.h): one for weights under RT_SMALL_MODEL_BYTES (a
// small model's decode step is over before a second thread gets going).
int heed_gen_threads(const IrGraph *f, int threads, bool threads_auto);
// The forward's output holding the logits f32[B, T, vocab]: the one named
// name (--output; as heed run names outputs: out, out0, out1, ...), else
// the only f32 output of that shape (vocab: the rows of the table the
// tokens index, when there is one). HEED_OK and *index, or HEED_ERR_USAGE
// (no output of that name) / HEED_ERR_CHECK (none or several fit), with a
// diagnostic naming the outputs. cmd: "generate" or "build" for messages.
int heed_logits_output(Compilation *c, const IrGraph *f, const char *name, const char *cmd, int *index);
// The model's context: the rows of its position table, else an integer
// config value named like a context size (ctx, n_ctx, block_size, ...,
// after --set), else 0 (unknown).
int64_t heed_model_context(const Compilation *c);
// The window generation runs in: override (--window; must be <= the
// context), else the train section's seq when it is shorter than the
// context (or the context is unknown), else the context (0: no limit).
// note (if the window is shorter than the context) says why, for stderr.
int heed_gen_window(Compilation *c, int64_t override, int64_t *window, char *note, size_t notelen);

#endif
