// codegen/target.c: the target interface's registry and its first
// instance, `cpu`. Sits at the end of the compiler's data flow:
//   heed_compile (cli/driver.c): passes -> sched_build(target caps)
//     -> target->supports(each kernel) -> pass_memplan_build -> target->emit
// The cpu target's caps are cg_cpu_caps plus the vector width of the CPU
// compiled for; its emit is cg_cpu_emit (LLVM, JIT) and keeps the schedule.
#include <string.h>

#include "codegen/cg.h"

static bool cpu_caps(const CgTarget *t, const CgOptions *o, CgCaps *caps, Diag *d) {
  (void)t;
  const char *cpu = o ? o->cpu : NULL;
  if (!cg_llvm_cpu_valid(cpu, d)) return false;
  int vw = cg_llvm_cpu_vector_width(cpu), nt = o && o->nthreads > 1 && o->pool ? o->nthreads : 1;
  *caps = (CgCaps){.vector_width = vw, .alignment = 64, .shared_memory = 0,
                   .matmul_work = (int64_t)cg_gemm_work_bytes_for(cpu, vw, nt)};
  cg_cpu_caps(&caps->sched);
  return true;
}

static bool cpu_supports(const CgTarget *t, const IrGraph *g, const SchedKernel *k, Diag *d) {
  (void)t;
  return cg_cpu_supports(g, k, d);
}

static bool cpu_emit(const CgTarget *t, CgEmitIn *in, CgProgram **out, Diag *d) {
  (void)t;
  Schedule *s = in->sched;
  in->sched = NULL;  // the program owns it (cg_cpu_emit frees it on failure)
  *out = cg_cpu_emit(in->g, s, in->o, d);
  return *out != NULL;
}

static const CgTarget cpu_target = {
    .name = "cpu",
    .summary = "this machine's CPU (LLVM: AVX2 or AVX-512 vectors, a thread pool)",
    .caps = cpu_caps,
    .supports = cpu_supports,
    .emit = cpu_emit,
};

enum { CG_MAX_TARGETS = 8 };
static const CgTarget *targets[CG_MAX_TARGETS] = {&cpu_target};
static int ntargets = 1;

const CgTarget *cg_target_find(const char *name) {
  for (int i = 0; name && i < ntargets; i++)
    if (!strcmp(targets[i]->name, name)) return targets[i];
  return NULL;
}

bool cg_target_register(const CgTarget *t) {
  if (ntargets == CG_MAX_TARGETS || !t || !t->name || cg_target_find(t->name)) return false;
  targets[ntargets++] = t;
  return true;
}

bool cg_target_known_absent(const char *name) { return name && !cg_target_find(name) && !strcmp(name, "cuda"); }
