// engine/exec.h: one way to run an IrGraph from the CLI, whatever executes it:
// compiled code (codegen/, LLVM JIT; the default) or the reference
// interpreter (ir/interp.c, --interp). Values cross this interface as
// doubles, as the interpreter holds them; the compiled path converts to its
// native storage once, in heed_exec_bind, so timed runs exclude it.
#ifndef HEED_ENGINE_EXEC_H
#define HEED_ENGINE_EXEC_H

#include <stdio.h>

#include "cli/driver.h"

typedef struct HeedExec HeedExec;

// Compiles g (unless interp). threads: the pool size for compiled code.
// NULL with a diagnostic on failure (a graph the backend cannot compile
// names the reason and suggests --interp).
// profile: time every kernel call (heed_exec_profile; compiled code only).
HeedExec *heed_exec_new(Compilation *c, const IrGraph *g, bool interp, int threads, bool profile);
// Binds sizes and data (copied: the caller may free them after).
bool heed_exec_bind(HeedExec *x, const int64_t *symvals, double *const *inputs, double *const *params);
bool heed_exec_run(HeedExec *x);  // false: a run-time error was reported
// Output i (g->outputs order) as doubles: numel values, malloc'd (caller frees).
double *heed_exec_output(HeedExec *x, int i, int64_t *numel);
const char *heed_exec_name(const HeedExec *x);  // "compiled, 2 threads" or "reference interpreter"
// Compiles (heed_compile with base: the graph kind, passes, target) and
// writes kind "llvm" (optimized LLVM IR), "asm", "obj" or "schedule" to
// path, for cpu (NULL: the host; e.g. "znver5", "x86-64-v3").
bool heed_exec_emit(Compilation *c, const HeedCompileOpts *base, const char *kind, const char *path, const char *cpu);
// Compiles through the memory plan (heed_compile with base, HEED_STOP_PLAN)
// for the tokens' batch and seq (the KV caches' length: seq) and prints it
// (pass_memplan_print) to out: every region's bytes, the arena, the total.
// out NULL: nothing printed. *total (may be NULL): the plan's bytes (leaves,
// workspace and arena).
bool heed_exec_emit_plan(Compilation *c, const HeedCompileOpts *base, int64_t batch, int64_t seq, FILE *out,
                         int64_t *total);
double heed_exec_compile_ms(const HeedExec *x);
// Prints x's profile (the runs since compile; see heed_profile_print) to f;
// nothing if x was not compiled with profile.
void heed_exec_profile(const HeedExec *x, FILE *f, int runs);
// A profile table: per op kind, the calls and milliseconds per run and
// their share, then the slowest single calls with their source lines.
// ms: per node of g (cg_program_profile), summed over runs runs.
void heed_profile_print(FILE *f, const Diag *d, const IrGraph *g, const double *ms, int runs);
void heed_exec_free(HeedExec *x);
#ifdef HEED_HAVE_LLVM
#include "codegen/cg.h"
// A compile's times, one line ("compiled WHAT in ..."), then, when it was
// compiled in parts, the parts that took longest (LLVM's CPU time each).
void heed_compile_print(FILE *f, const char *what, const CgProgramStats *st);
#endif

#endif
