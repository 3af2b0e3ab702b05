// cli/run.h: the commands that evaluate a model (run.c): init, run, grad.
#ifndef HEED_CLI_RUN_H
#define HEED_CLI_RUN_H

#include "cli/driver.h"

typedef struct {
  const char *weights, *inputs, *outputs;  // run, grad
  const char *out;                         // init: -o
  const char *prefix;                      // --prefix: tensor names in the weights file carry it
  bool strict;                             // extra tensors in the weights file are an error
  uint64_t seed;                           // init
  bool interp;                             // --interp: the reference interpreter
  int threads;                             // --threads (compiled code)
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
  bool interp;
  int threads;
} HeedBenchOpts;
// frontend_ms: the time heed_frontend took (part of compile_ms).
int heed_cmd_bench(Compilation *c, const HeedBenchOpts *o, double frontend_ms);

// The values of an initializer for the parameter `name` (one stream per name).
void heed_init_values(const char *name, const IrInit *in, uint64_t seed, double *out, int64_t n);

#endif
