// cli/driver.h: the compiler pipeline as the heed command sees it. The
// driver (driver.c) is the one place that calls every module in order:
// read -> fe_parse -> fe_check/lower -> pass_run(pipeline) -> sched_build
// (the target's caps) -> pass_memplan_build -> target->emit (heed_compile).
#ifndef HEED_DRIVER_H
#define HEED_DRIVER_H

#include "frontend/fe.h"
#include "passes/pass.h"
#include "passes/schedule.h"
#ifdef HEED_HAVE_LLVM
#include "codegen/cg.h"
#endif

typedef struct {
  const char *path;        // the model file
  FeCheckOpts check;       // --model, --set
  int max_errors;          // 0: default
  const char *target;      // --target (NULL: cpu)
  const char *print_after; // --print-after PASS|all: every command prints the IR after it (stderr)
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

// What a command compiles: the graph and the pipeline it starts from.
typedef enum {
  HEED_GRAPH_FORWARD,     // the model's forward; no passes
  HEED_GRAPH_LOSS,        // the train section's loss; no passes
  HEED_GRAPH_GRAD,        // the loss; autodiff (heed grad, bench --train)
  HEED_GRAPH_TRAIN_STEP,  // the loss; autodiff, train_step (heed train)
  HEED_GRAPH_DECODE,      // the forward; kvcache (heed generate, build)
} HeedGraphKind;

typedef enum {
  HEED_STOP_PASSES,       // after the pipeline (--emit ir-opt, a trainer's setup)
  HEED_STOP_SCHEDULE,     // after the schedule (--emit schedule)
  HEED_STOP_PLAN,         // after the memory plan (--emit plan): out->plan, no emit
  HEED_STOP_EMIT,         // through target->emit: a program
} HeedStop;

typedef struct {
  HeedGraphKind kind;
  IrGraph *graph;          // NULL: the model's graph of that kind; else this one
  const char *passes;      // NULL: the kind's pipeline; else "a,b,c" ("": none)
  const char *print_after; // a pass or "all": its IR into print_to (NULL: stderr)
  FILE *print_to;
  PassTrainOpts train;     // HEED_GRAPH_TRAIN_STEP: the optimizer (.optimizer NULL: the train section's)
  int decode_output;       // HEED_GRAPH_DECODE: the output kept (-1: all)
  HeedStop stop;
  const char *target;      // NULL: "cpu"
  Diag *target_diag;       // where the target's diagnostics go (NULL: the compilation's)
#ifdef HEED_HAVE_LLVM
  CgOptions cg;            // the target's options (CPU, threads, dumps, entry names)
  const int64_t *plan_symvals;  // the sizes the plan given to emit is made for (NULL: no plan)
  // Or: the sizes bound on the graph after the passes (symvals indexed like
  // g->syms); false, with a diagnostic, when it cannot.
  bool (*plan_sizes)(void *ud, const IrGraph *g, int64_t *symvals);
  void *plan_ud;
  bool plan_kv_in_place;   // the plan runs KV appends in place (pass_memplan_kv_inplace), as generate does
#endif
} HeedCompileOpts;

typedef struct {           // what heed_compile made; heed_compiled_free frees it
  IrGraph *g;              // the graph after the pipeline (in the compilation's arena)
  PassCtx cx;              // the passes' results (cx.ts: the train step's pieces; cx.why)
  Schedule *sched;         // HEED_STOP_SCHEDULE: the schedule
#ifdef HEED_HAVE_LLVM
  CgProgram *prog;         // HEED_STOP_EMIT: the program (NULL for a target that makes none)
  CgPlan *plan;            // with plan_symvals or plan_sizes: the memory plan (passes/memplan.h)
#endif
} HeedCompiled;

// The compiler, one stage after another: frontend (if not run yet) ->
// pass_run -> schedule -> memory plan -> target->emit. HEED_OK, or an error
// status with diagnostics (a DECODE graph that cannot decode incrementally:
// HEED_ERR_CHECK with out->cx.why set and no diagnostic). out is filled as
// far as the compile went: free it with heed_compiled_free either way.
int heed_compile(Compilation *c, const HeedCompileOpts *o, HeedCompiled *out);
void heed_compiled_free(HeedCompiled *out);
// The pipeline a kind starts with, as --passes spells it.
const char *heed_pipeline(HeedGraphKind kind);

// Where compiled code's object files are cached (codegen's objcache.c):
// $HEED_CACHE_DIR, else $XDG_CACHE_HOME/heed, else $HOME/.cache/heed; NULL
// (no cache) when HEED_CACHE is 0 or off, or no such variable is set.
const char *heed_cache_dir(void);

#endif
