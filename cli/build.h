// cli/build.h: `heed build` (build.c): a model and its weights into a
// standalone program, or (--emit-lib) a static library and model.h.
#ifndef HEED_CLI_BUILD_H
#define HEED_CLI_BUILD_H

#include "cli/driver.h"

typedef struct {
  const char *weights;   // --weights W (safetensors)
  const char *prefix;    // --prefix: tensor names in W carry it
  bool strict;           // extra tensors in W are an error
  const char *out;       // -o: the program, or the directory with --emit-lib
  const char *cpu;       // --cpu NAME (NULL: this machine)
  bool weights_file;     // --weights-file: weights beside the program (OUT.safetensors), mapped
  bool emit_lib;         // --emit-lib: OUT/libmodel.a + OUT/model.h
  const char *output;    // --output NAME: the forward's output holding the logits (NULL: found by type)
  int64_t window;        // --window N: the program's default window (0: heed_gen_window's choice)
} HeedBuildOpts;

// One build flag of build.c's own (--output NAME, --window N): returns the
// argv entries it used (2), 0 if it is not one, -1 with a message in bad.
int heed_build_flag(HeedBuildOpts *o, const char *flag, const char *val, char *bad, size_t badlen);

// c has been through heed_frontend with FeCheckOpts.lower set. Returns
// HEED_OK or an error status with diagnostics in c->diag; nothing is left
// half-written at the output paths.
int heed_cmd_build(Compilation *c, const HeedBuildOpts *o);

#endif
