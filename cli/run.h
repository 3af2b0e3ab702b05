// cli/run.h: the commands that evaluate a model (run.c): init, run, grad.
#ifndef HEED_CLI_RUN_H
#define HEED_CLI_RUN_H

#include "cli/driver.h"
#include "engine/generate.h"
#include "runtime/rt.h"

typedef struct {
  const char *weights, *inputs, *outputs;  // run, grad
  const char *out;                         // init: -o
  const char *prefix;                      // --prefix: tensor names in the weights file carry it
  bool strict;                             // extra tensors in the weights file are an error
  uint64_t seed;                           // init
  bool interp;                             // --interp: the reference interpreter
  int threads;                             // --threads (compiled code)
  bool threads_auto;                       // no --threads: generate picks as built programs do
} HeedRunOpts;

// Each returns HEED_OK or an error status with diagnostics in c->diag.
// c has been through heed_frontend with FeCheckOpts.lower set.
int heed_cmd_init(Compilation *c, const HeedRunOpts *o);
int heed_cmd_run(Compilation *c, const HeedRunOpts *o);
int heed_cmd_grad(Compilation *c, const HeedRunOpts *o);
typedef struct {             // heed bench
  int64_t batch, seq;        // sizes for B and for every other symbolic size
  int reps;                  // timed runs after one warm-up
  bool train, json;
  bool profile;              // --profile: per-op kernel times after the timed runs
  bool interp;
  int threads;
} HeedBenchOpts;
// frontend_ms: the time heed_frontend took (part of compile_ms).
int heed_cmd_bench(Compilation *c, const HeedBenchOpts *o, double frontend_ms);

typedef struct {             // heed generate (generate.c)
  const char *prompt;        // --prompt TEXT
  const char *tokenizer;     // --tokenizer DIR (GPT-2 BPE); NULL: bytes
  int64_t n;                 // -n: tokens to generate
  double temperature;        // 0: greedy
  int64_t top_k;             // 0: off
  double top_p;              // 1: off
  int64_t window;            // --window N: positions the model runs over (0: heed_gen_window's choice)
  const char *output;        // --output NAME: the forward's output holding the logits (NULL: found by type)
} HeedGenOpts;
// One generate flag: returns the argv entries it used (2), 0 if flag is not
// a generate flag, -1 with a message in bad for a bad value.
int heed_gen_flag(HeedGenOpts *g, const char *flag, const char *val, char *bad, size_t badlen);
int heed_cmd_generate(Compilation *c, const HeedRunOpts *o, const HeedGenOpts *g);
typedef struct {             // heed serve (serve.c)
  const char *host;          // --host (default 127.0.0.1)
  int port;                  // --port (default 8080; 0: any free port)
  int parallel;              // --parallel: slots (default 4)
  int queue;                 // --queue: requests waiting for a slot (default 64)
  double timeout_s, grace_s; // --timeout (default 600), --grace (default 30)
  size_t max_body;           // --max-body bytes (default 1 MiB)
  int64_t max_tokens;        // --max-tokens: the most a request may ask for (default 4096)
  const char *api_key;       // --api-key
  HeedGenOpts gen;           // --tokenizer, --output, --ctx (the window)
} HeedServeOpts;
int heed_serve_flag(HeedServeOpts *s, const char *flag, const char *val, char *bad, size_t badlen);
int heed_cmd_serve(Compilation *c, const HeedRunOpts *o, const HeedServeOpts *s);
// The parameters of g from o->weights, as doubles (heed run's checks:
// missing, misshapen and, with o->strict, extra tensors are errors); NULL
// with diagnostics. Caller frees each and the array.
double **heed_load_params(Compilation *c, const IrGraph *g, const HeedRunOpts *o);
// A flag's number: all of v a decimal in [lo, hi] (false: none, trailing
// text, out of range, NaN).
bool heed_parse_num(const char *v, double lo, double hi, double *out);

// The values of an initializer for the parameter `name` (one stream per name).
void heed_init_values(const char *name, const IrInit *in, uint64_t seed, double *out, int64_t n);

// A weights file's tensor checksums (RT_ST_CRC_KEY, heed checkpoints):
// false with the damaged tensor named in err; true when they match, or
// when there are none (with a note on stderr for a heed checkpoint: one
// of an older heed). Every loader of weights calls it.
bool heed_ckpt_verify(const RtSafetensors *st, const char *path, char *err, size_t errlen);

#endif
