// cli/driver.h: the compiler pipeline as the heed command sees it. The
// driver (driver.c) is the one place that calls every module in order:
// read -> fe_parse -> fe_check -> (later: lower, passes, codegen).
#ifndef HEED_DRIVER_H
#define HEED_DRIVER_H

#include "frontend/fe.h"

typedef struct {
  const char *path;        // the model file
  FeCheckOpts check;       // --model, --set
  int max_errors;          // 0: default
} HeedOptions;

typedef struct {           // one compilation: its arena, diagnostics and results
  Arena *arena;
  Diag diag;
  HeedOptions *opts;
  FeAst *ast;
  FeModel *model;
  IrGraph *ir;             // heed_read_ir: a graph read from IR text
} Compilation;

// Creates a compilation; caller frees with heed_compilation_free.
Compilation *heed_compilation_new(HeedOptions *opts);
void heed_compilation_free(Compilation *c);
// Reads, parses and checks the model file. Returns HEED_OK or an error
// status with diagnostics already printed to stderr.
int heed_frontend(Compilation *c);
// Stops after parsing (for --emit ast).
int heed_parse_only(Compilation *c);
// Reads IR text (a .ir file, as --emit ir writes it) into c->ir and verifies it.
int heed_read_ir(Compilation *c);

// Where compiled code's object files are cached (codegen's objcache.c):
// $HEED_CACHE_DIR, else $XDG_CACHE_HOME/heed, else $HOME/.cache/heed; NULL
// (no cache) when HEED_CACHE is 0 or off, or no such variable is set.
const char *heed_cache_dir(void);

#endif
