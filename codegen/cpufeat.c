// codegen/cpufeat.c: what a CPU can run, read from LLVM's names for it. The
// backend's vector width (llvm.c: 16 f32 lanes with AVX-512F, else 8) and
// the kernels chosen per x86 level come from here. No LLVM types: the
// feature string is LLVM's ("+avx2,-avx512f,+avx512fp16,..."), compared
// entry by entry, never by substring ("+avx512fp16" is not "+avx512f").
#include <string.h>

#include "codegen/cg.h"

bool cg_cpu_feature(const char *features, const char *name) {
  size_t n = strlen(name);
  bool on = false;
  for (const char *p = features ? features : ""; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n + 1 && (p[0] == '+' || p[0] == '-') && !memcmp(p + 1, name, n))
      on = p[0] == '+';  // the last mention wins, as in LLVM
    p += len + (e != NULL);
  }
  return on;
}

// CPUs whose names imply AVX-512F (LLVM 19's X86.td), for a named CPU
// (--cpu), whose feature string is empty: LLVM derives it from the name.
static const char *const avx512_cpus[] = {
    "knl", "knm", "skylake-avx512", "skylake_avx512", "skx", "cascadelake", "cooperlake", "cannonlake",
    "icelake-client", "icelake_client", "icelake-server", "icelake_server", "rocketlake", "tigerlake",
    "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d", "graniterapids_d", "znver4", "znver5",
    "x86-64-v4"};

bool cg_cpu_has_avx512(const char *cpu, const char *features) {
  if (features && *features) return cg_cpu_feature(features, "avx512f");
  for (size_t i = 0; cpu && i < sizeof avx512_cpus / sizeof *avx512_cpus; i++)
    if (!strcmp(cpu, avx512_cpus[i])) return true;
  return false;
}
