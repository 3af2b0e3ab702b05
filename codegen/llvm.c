// codegen/llvm.c: the LLVM side of the CPU backend. Generators (gemm.c,
// later the kernels of a Schedule) build functions into the current module;
// this file owns the context, the target machine (the host CPU, or a named
// one for AOT), the O3 pipeline, the ORC LLJIT that turns the module into
// callable code, and object-file emission for the AOT path.
//
// Follows LLVM's OrcV2CBindingsBasicUsage.c: every LLVMErrorRef and
// ErrorMessage is turned into a diagnostic, owned handles are disposed on
// every path (goto cleanup).
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/cg_llvm.h"

struct CgLlvm {
  LLVMOrcThreadSafeContextRef tsctx;  // owns ctx
  LLVMContextRef ctx;
  LLVMTargetMachineRef tm;            // passes and object files
  LLVMOrcLLJITRef jit;
  LLVMModuleRef mod;                  // the current module, or NULL
  char *triple, *cpu, *features;      // LLVM messages (LLVMDisposeMessage)
  int vw;                             // f32 lanes per vector
  bool host;                          // compiling for the host CPU (no --cpu)
  CgPartStat *parts;                  // the last split compile's parts (cg_llvm_part_stats)
  char *cache_dir;                    // the object cache, or NULL
  int nparts;
};

static const SrcLoc NOLOC = {0, 0, 0};

// Consumes err.
static void error_diag(Diag *d, const char *what, LLVMErrorRef err) {
  char *msg = LLVMGetErrorMessage(err);
  diag_error(d, NOLOC, "llvm: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
}

// Consumes msg (an LLVM ErrorMessage, may be NULL).
static void message_diag(Diag *d, const char *what, char *msg) {
  diag_error(d, NOLOC, "llvm: %s: %s", what, msg ? msg : "(no message)");
  if (msg)
    LLVMDisposeMessage(msg);
}

int cg_llvm_feature(const char *features, const char *name) {
  size_t n = strlen(name);
  for (const char *p = features; p && *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n + 1 && (p[0] == '+' || p[0] == '-') && memcmp(p + 1, name, n) == 0)
      return p[0] == '+' ? 1 : -1;
    p = end ? end + 1 : NULL;
  }
  return 0;
}

// CPUs whose names imply AVX-512F (for a named CPU the features string is
// empty and LLVM derives it from the name).
bool cg_llvm_cpu_avx512(const char *cpu, const char *features) {
  if (features && *features)
    return cg_llvm_feature(features, "avx512f") > 0;
  static const char *names[] = {"znver4", "znver5", "skylake-avx512", "cascadelake", "cooperlake",
                                "cannonlake", "icelake", "tigerlake", "rocketlake",
                                "sapphirerapids", "emeraldrapids", "graniterapids", "diamondrapids",
                                "x86-64-v4"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strncmp(cpu, names[i], strlen(names[i])) == 0)
      return true;
  return false;
}

static LLVMTargetMachineRef make_tm(const CgLlvm *cg, LLVMTargetRef target, LLVMRelocMode reloc,
                                    LLVMCodeModel cm) {
  return LLVMCreateTargetMachine(target, cg->triple, cg->cpu, cg->features,
                                 LLVMCodeGenLevelAggressive, reloc, cm);
}

// x86 CPUs without 64-bit mode (LLVM 19's X86.td, checked one by one with
// llc-19 -mtriple=x86_64): their subtarget ends the process in code
// generation for x86_64 ("64-bit code requested on a subtarget that
// doesn't support it").
static const char *const x86_32bit[] = {
    "athlon", "athlon-4", "athlon-mp", "athlon-tbird", "athlon-xp", "c3", "c3-2", "geode", "i386", "i486", "i586",
    "i686", "k6", "k6-2", "k6-3", "lakemont", "pentium", "pentium-m", "pentium-mmx", "pentium2", "pentium3",
    "pentium3m", "pentium4", "pentium4m", "pentium_4", "pentium_4_sse3", "pentium_ii", "pentium_iii",
    "pentium_iii_no_xmm_regs", "pentium_m", "pentium_mmx", "pentium_pro", "pentiumpro", "prescott", "winchip-c6",
    "winchip2", "yonah"};

// The CPU names LLVM knows for triple, as "a\0b\0...\0\0" (malloc'd), or
// NULL. The C API has no list: a target machine made for CPU "help" prints
// one on standard error ("Available CPUs for this target:", a name a line,
// a blank line), which is caught in a temporary file for that moment.
static char *cpu_names(LLVMTargetRef target, const char *triple) {
  FILE *tf = tmpfile();
  int saved = tf ? dup(2) : -1;
  if (saved < 0) {
    if (tf) fclose(tf);
    return NULL;
  }
  fflush(stderr);
  dup2(fileno(tf), 2);
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, "help", "", LLVMCodeGenLevelNone,
                                                    LLVMRelocDefault, LLVMCodeModelDefault);
  if (tm) LLVMDisposeTargetMachine(tm);
  dup2(saved, 2);
  close(saved);
  rewind(tf);
  size_t cap = 8192, len = 0;
  char *names = heed_malloc(cap), line[256], name[128];
  bool in = false;
  while (names && fgets(line, sizeof line, tf)) {
    if (!in) {
      in = strstr(line, "Available CPUs") != NULL;
      continue;
    }
    if (sscanf(line, " %127s", name) != 1) {
      if (len) break;  // the blank line after the list
      continue;
    }
    size_t k = strlen(name) + 1;
    if (len + k + 1 > cap) {
      char *m = heed_realloc(names, cap *= 2);
      if (!m) break;
      names = m;
    }
    memcpy(names + len, name, k), len += k;
  }
  fclose(tf);
  if (names && !len) heed_free(names), names = NULL;
  if (names) names[len] = 0;
  return names;
}

// A named CPU must be one LLVM knows for the triple, and (x86_64) one with
// 64-bit mode: LLVM only warns about an unknown name and aborts on the other.
static bool cpu_check(LLVMTargetRef target, const char *triple, const char *cpu, Diag *d) {
  if (!strncmp(triple, "x86_64", 6))
    for (size_t i = 0; i < sizeof x86_32bit / sizeof *x86_32bit; i++)
      if (!strcmp(cpu, x86_32bit[i])) {
        diag_error(d, NOLOC, "--cpu: CPU '%s' cannot run 64-bit code (%s); name a 64-bit one (x86-64, x86-64-v3, ...)",
                   cpu, triple);
        return false;
      }
  char *names = cpu_names(target, triple);
  if (!names) return true;  // no list to check against: LLVM warns about an unknown name
  bool known = false;
  const char *best = NULL;
  int bd = 3;
  for (const char *s = names; *s && !known; s += strlen(s) + 1) {
    known = !strcmp(s, cpu);
    int dist = diag_edit_distance(cpu, s, bd);
    if (dist < bd) bd = dist, best = s;
  }
  if (!known && !strcmp(cpu, "help")) {
    size_t n = 0;
    for (const char *s = names; *s; s += strlen(s) + 1) n += strlen(s) + 1;
    char *all = heed_malloc(n + 1);
    if (all) {
      size_t k = 0;
      for (const char *s = names; *s; s += strlen(s) + 1) k += (size_t)sprintf(all + k, "%s%s", k ? " " : "", s);
    }
    diag_error(d, NOLOC, "--cpu help: the CPUs for %s: %s", triple, all ? all : "(out of memory)");
    heed_free(all);
  } else if (!known) {
    diag_error(d, NOLOC, "--cpu: unknown CPU '%s' for %s%s%s%s (--cpu help lists them)", cpu, triple,
               best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
  }
  heed_free(names);
  return known;
}

bool cg_llvm_cpu_valid(const char *cpu, Diag *d) {
  if (!cpu || !*cpu) return true;
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
    diag_error(d, NOLOC, "llvm: the native target is not available");
    return false;
  }
  char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
  LLVMTargetRef target;
  bool ok = !LLVMGetTargetFromTriple(triple, &target, &msg);
  if (!ok) message_diag(d, triple, msg);
  else ok = cpu_check(target, triple, cpu, d);
  LLVMDisposeMessage(triple);
  return ok;
}

char *cg_llvm_host_features(void) {
  char *fs = LLVMGetHostCPUFeatures();
  char *cp = fs ? heed_strdup(fs) : NULL;
  LLVMDisposeMessage(fs);
  return cp;
}

int cg_llvm_cpu_vector_width(const char *cpu) {
  bool host = !cpu || !*cpu;
  char *name = host ? LLVMGetHostCPUName() : NULL, *fs = host ? LLVMGetHostCPUFeatures() : NULL;
  int vw = cg_llvm_cpu_avx512(host ? name : cpu, host ? fs : "") ? 16 : 8;
  LLVMDisposeMessage(name);
  LLVMDisposeMessage(fs);
  return vw;
}

CgLlvm *cg_llvm_new(const char *cpu, Diag *d) {
  LLVMOrcLLJITBuilderRef builder = NULL;
  LLVMTargetMachineRef jit_tm = NULL;
  char *msg = NULL;
  LLVMTargetRef target;
  CgLlvm *cg = heed_calloc(1, sizeof *cg);
  if (!cg) {
    diag_error(d, NOLOC, "out of memory");
    return NULL;
  }
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
    diag_error(d, NOLOC, "llvm: the native target is not available");
    goto fail;
  }
  cg->triple = LLVMGetDefaultTargetTriple();
  bool host = cg->host = !cpu || !*cpu;
  cg->cpu = host ? LLVMGetHostCPUName() : LLVMCreateMessage(cpu);
  cg->features = host ? LLVMGetHostCPUFeatures() : LLVMCreateMessage("");
  cg->vw = cg_llvm_cpu_avx512(cg->cpu, cg->features) ? 16 : 8;
  if (LLVMGetTargetFromTriple(cg->triple, &target, &msg)) {
    message_diag(d, cg->triple, msg);
    goto fail;
  }
  if (!host && !cpu_check(target, cg->triple, cpu, d)) goto fail;
  cg->tm = make_tm(cg, target, LLVMRelocPIC, LLVMCodeModelDefault);
  jit_tm = make_tm(cg, target, LLVMRelocDefault, LLVMCodeModelJITDefault);
  if (!cg->tm || !jit_tm) {
    diag_error(d, NOLOC, "llvm: no target machine for %s (cpu '%s')", cg->triple, cg->cpu);
    goto fail;
  }
  cg->tsctx = LLVMOrcCreateNewThreadSafeContext();
  cg->ctx = LLVMOrcThreadSafeContextGetContext(cg->tsctx);
  // The JIT compiles for the same CPU as the passes: the builder takes
  // ownership of the target machine builder, which takes jit_tm.
  builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
      builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jit_tm));
  jit_tm = NULL;
  LLVMErrorRef err = LLVMOrcCreateLLJIT(&cg->jit, builder);  // consumes builder
  builder = NULL;
  if (err) {
    error_diag(d, "creating the JIT", err);
    goto fail;
  }
  return cg;
fail:
  if (jit_tm)
    LLVMDisposeTargetMachine(jit_tm);
  if (builder)
    LLVMOrcDisposeLLJITBuilder(builder);
  cg_llvm_free(cg);
  return NULL;
}

void cg_llvm_free(CgLlvm *cg) {
  if (!cg)
    return;
  if (cg->mod)
    LLVMDisposeModule(cg->mod);
  if (cg->jit) {
    LLVMErrorRef err = LLVMOrcDisposeLLJIT(cg->jit);
    if (err)
      LLVMConsumeError(err);  // nothing to report to: the JIT is gone either way
  }
  if (cg->tsctx)
    LLVMOrcDisposeThreadSafeContext(cg->tsctx);
  if (cg->tm)
    LLVMDisposeTargetMachine(cg->tm);
  if (cg->triple)
    LLVMDisposeMessage(cg->triple);
  if (cg->cpu)
    LLVMDisposeMessage(cg->cpu);
  if (cg->features)
    LLVMDisposeMessage(cg->features);
  heed_free(cg->parts);
  heed_free(cg->cache_dir);
  heed_free(cg);
}

const char *cg_llvm_cpu_name(const CgLlvm *cg) { return cg->cpu; }
int cg_llvm_vector_width(const CgLlvm *cg) { return cg->vw; }
bool cg_llvm_is_host(const CgLlvm *cg) { return cg->host; }
LLVMModuleRef cg_llvm_module(CgLlvm *cg) { return cg->mod; }

void cg_llvm_module_begin(CgLlvm *cg, const char *name) {
  if (cg->mod)
    LLVMDisposeModule(cg->mod);
  cg->mod = LLVMModuleCreateWithNameInContext(name, cg->ctx);
  LLVMSetTarget(cg->mod, cg->triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(cg->tm);
  LLVMSetModuleDataLayout(cg->mod, td);
  LLVMDisposeTargetData(td);
}

void cg_llvm_fn_attrs(CgLlvm *cg, LLVMValueRef fn) {
  LLVMAttributeRef a[3] = {
      LLVMCreateStringAttribute(cg->ctx, "target-cpu", 10, cg->cpu, (unsigned)strlen(cg->cpu)),
      LLVMCreateStringAttribute(cg->ctx, "target-features", 15, cg->features,
                                (unsigned)strlen(cg->features)),
      LLVMCreateEnumAttribute(cg->ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0),
  };
  for (int i = 0; i < 3; i++)
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a[i]);
}

// The current module exists and is valid (what: the step, for the message).
static bool check_module(CgLlvm *cg, const char *what, Diag *d) {
  char *msg = NULL;
  if (!cg->mod) {
    diag_error(d, NOLOC, "llvm: no module to %s", what);
    return false;
  }
  if (LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &msg)) {
    message_diag(d, "the generated module is invalid", msg);
    return false;
  }
  LLVMDisposeMessage(msg);
  return true;
}

// heed's pipeline (O3) on m for tm; NULL or the error. light: without
// LLVM's loop unrolling (the split compile's parts of small kernels:
// memory-bound loops, where it adds code but no measurable speed; turning
// off interleaving too saved a little more compile time but slowed the
// norms' gradients).
static LLVMErrorRef run_pipeline(LLVMModuleRef m, LLVMTargetMachineRef tm, bool light) {
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  if (light)
    LLVMPassBuilderOptionsSetLoopUnrolling(opts, 0);
  LLVMErrorRef err = LLVMRunPasses(m, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  return err;
}

bool cg_llvm_optimize(CgLlvm *cg, Diag *d) {
  if (!check_module(cg, "optimize", d))
    return false;
  LLVMErrorRef err = run_pipeline(cg->mod, cg->tm, false);
  if (err) {
    error_diag(d, "running the O3 pipeline", err);
    return false;
  }
  return true;
}

static bool emit_file(CgLlvm *cg, const char *path, LLVMCodeGenFileType kind, Diag *d);

bool cg_llvm_emit_object(CgLlvm *cg, const char *path, Diag *d) { return emit_file(cg, path, LLVMObjectFile, d); }
bool cg_llvm_emit_asm(CgLlvm *cg, const char *path, Diag *d) { return emit_file(cg, path, LLVMAssemblyFile, d); }

// Writes n bytes to path (created or truncated). LLVM's own file streams
// end the process on a write error (a full disk: "LLVM ERROR: IO failure
// on output stream"), so the code is made in memory and written here.
bool cg_write_file(const char *path, const void *bytes, size_t n, Diag *d) {
  FILE *f = fopen(path, "wb");
  bool ok = f && fwrite(bytes, 1, n, f) == n;
  if (f && fclose(f) != 0) ok = false;
  if (!ok) diag_error(d, NOLOC, "cannot write '%s': %s", path, strerror(errno));
  return ok;
}

static bool emit_file(CgLlvm *cg, const char *path, LLVMCodeGenFileType kind, Diag *d) {
  char *msg = NULL;
  LLVMMemoryBufferRef buf = NULL;
  if (!cg->mod) {
    diag_error(d, NOLOC, "llvm: no module to emit");
    return false;
  }
  if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, cg->mod, kind, &msg, &buf)) {
    message_diag(d, path, msg);
    return false;
  }
  bool ok = cg_write_file(path, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), d);
  LLVMDisposeMemoryBuffer(buf);
  return ok;
}

bool cg_llvm_define_symbol(CgLlvm *cg, const char *name, void *addr, Diag *d) {
  LLVMJITSymbolFlags flags = {LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable,
                              0};
  LLVMOrcCSymbolMapPair sym = {LLVMOrcLLJITMangleAndIntern(cg->jit, name),
                               {(LLVMOrcJITTargetAddress)(uintptr_t)addr, flags}};
  LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(&sym, 1);  // takes the name
  LLVMErrorRef err = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(cg->jit), mu);
  if (err) {
    LLVMOrcDisposeMaterializationUnit(mu);  // still ours when defining fails
    error_diag(d, name, err);
    return false;
  }
  return true;
}

bool cg_llvm_jit_add(CgLlvm *cg, Diag *d) {
  if (!cg->mod) {
    diag_error(d, NOLOC, "llvm: no module to add to the JIT");
    return false;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(cg->mod, cg->tsctx);
  cg->mod = NULL;  // tsm owns it now
  LLVMErrorRef err =
      LLVMOrcLLJITAddLLVMIRModule(cg->jit, LLVMOrcLLJITGetMainJITDylib(cg->jit), tsm);
  if (err) {
    LLVMOrcDisposeThreadSafeModule(tsm);  // not taken by the JIT
    error_diag(d, "adding the module to the JIT", err);
    return false;
  }
  return true;
}

void *cg_llvm_lookup(CgLlvm *cg, const char *name, Diag *d) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef err = LLVMOrcLLJITLookup(cg->jit, &addr, name);
  if (err) {
    error_diag(d, name, err);
    return NULL;
  }
  return (void *)(uintptr_t)addr;
}

// ---- the module compiled in parts, on threads ----
//
// The module is cut into units: the entry points (external functions that
// no other function of the module calls) each alone, and every other
// function together with the internal functions it reaches (a kernel with
// its body and task, an sgemm with its micro-kernel), so that what LLVM may
// inline stays in one part. A unit of PART_CAP instructions or more is a
// part of its own; smaller ones are packed into parts of at most PART_CAP
// (first fit, the largest first). The parts depend on the module only, not
// on the thread count. Each part is a copy of the module (through bitcode,
// in a context of its own) where the other parts' functions are
// declarations; threads take parts, the largest first, run O3 and machine
// code on them, and the JIT links the object files. A function called from
// another part becomes external (its name is unique in the module).

enum { PART_CAP = 4000 };  // instructions (unoptimized IR) per part of small units

typedef struct {
  LLVMMemoryBufferRef bc;  // the whole module as bitcode (shared, read only)
  const int *part;         // per function (module order): its part
  int nfn;
  CgLlvm *cg;
  struct SplitJob *jobs;   // all parts
  int njobs;
  atomic_int next;         // the next part a thread takes
} Split;

typedef struct SplitJob {
  int me;
  LLVMMemoryBufferRef obj; // out: the part's object file
  char *err;               // out: a message (malloc'd) on failure
  CgPartStat stat;         // out: its times (label and nunits: plan_parts)
  long size;               // instructions
  bool light;              // only units smaller than PART_CAP: run_pipeline's light
} SplitJob;

static int fn_index(LLVMValueRef *fns, int n, LLVMValueRef f) {
  for (int i = 0; i < n; i++)
    if (fns[i] == f)
      return i;
  return -1;
}

static int uf_find(int *up, int i) {
  while (up[i] != i)
    i = up[i] = up[up[i]];
  return i;
}

// The functions an instruction's operands name (calls, and functions
// passed as values: a task to rt_parallel_for).
static void for_each_ref(LLVMValueRef f, void (*fn)(LLVMValueRef user, LLVMValueRef callee, void *ud), void *ud) {
  for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
    for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) {
      int n = LLVMGetNumOperands(in);
      for (int i = 0; i < n; i++) {
        LLVMValueRef op = LLVMGetOperand(in, (unsigned)i);
        if (op && LLVMIsAFunction(op))
          fn(f, op, ud);
      }
    }
}

typedef struct {
  LLVMValueRef *fns;
  int nfn, nedge, cap;
  int (*edge)[2];  // (user, callee) function indexes
} Refs;

static void note_ref(LLVMValueRef user, LLVMValueRef callee, void *ud) {
  Refs *r = ud;
  int a = fn_index(r->fns, r->nfn, user), b = fn_index(r->fns, r->nfn, callee);
  if (a < 0 || b < 0 || a == b || r->nedge < 0)
    return;
  if (r->nedge == r->cap) {
    int cap = r->cap ? 2 * r->cap : 256;
    int (*e)[2] = heed_realloc(r->edge, sizeof *e * (size_t)cap);
    if (!e) {
      r->nedge = -1;  // out of memory
      return;
    }
    r->edge = e, r->cap = cap;
  }
  r->edge[r->nedge][0] = a, r->edge[r->nedge++][1] = b;
}

static int instr_count(LLVMValueRef f) {
  int n = 0;
  for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
    for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in))
      n++;
  return n;
}

// up[i]: function i's unit (a union-find forest over fns); size[root]: the
// unit's instructions. Internal functions that another unit calls become
// external. false: out of memory.
static bool find_units(LLVMModuleRef m, LLVMValueRef *fns, int nfn, int *up, long *size) {
  Refs r = {fns, nfn, 0, 0, NULL};
  int *called = heed_calloc((size_t)nfn + 1, sizeof *called);
  if (!called)
    return false;
  int i = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
    fns[i] = f, up[i] = i, i++;
  for (i = 0; i < nfn; i++)
    if (!LLVMIsDeclaration(fns[i]))
      for_each_ref(fns[i], note_ref, &r);
  if (r.nedge < 0) {
    heed_free(called);
    heed_free(r.edge);
    return false;
  }
  for (int e = 0; e < r.nedge; e++)
    called[r.edge[e][1]] = 1;
  for (int e = 0; e < r.nedge; e++) {  // an internal callee joins its caller's unit, unless that is an entry
    int a = r.edge[e][0], b = r.edge[e][1];
    bool entry = LLVMGetLinkage(fns[a]) != LLVMInternalLinkage && !called[a];
    if (!entry && LLVMGetLinkage(fns[b]) == LLVMInternalLinkage && !LLVMIsDeclaration(fns[b]))
      up[uf_find(up, b)] = uf_find(up, a);
  }
  for (int e = 0; e < r.nedge; e++) {  // called from another unit: external
    int a = r.edge[e][0], b = r.edge[e][1];
    if (uf_find(up, a) != uf_find(up, b) && LLVMGetLinkage(fns[b]) == LLVMInternalLinkage)
      LLVMSetLinkage(fns[b], LLVMExternalLinkage);
  }
  for (i = 0; i < nfn; i++)
    size[i] = 0;
  for (i = 0; i < nfn; i++)
    if (!LLVMIsDeclaration(fns[i]))
      size[uf_find(up, i)] += instr_count(fns[i]) + 1;
  heed_free(called);
  heed_free(r.edge);
  return true;
}

// A unit's name for reports: its root function's (a kernel: k<id>_<op>).
static void unit_label(LLVMValueRef f, char *out, size_t n) {
  size_t len;
  const char *name = LLVMGetValueName2(f, &len);
  snprintf(out, n, "%.*s", (int)len, name);
}

// part[i] for every function (declarations: -1) and the parts' jobs
// (label, size, nunits, light): the big units' parts first, largest first,
// then the packed ones. false: out of memory.
static bool plan_parts(LLVMModuleRef m, int **part_out, int *nfn_out, SplitJob **jobs_out, int *njobs_out) {
  int nfn = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
    nfn++;
  LLVMValueRef *fns = heed_malloc(sizeof *fns * ((size_t)nfn + 1));
  int *up = heed_malloc(sizeof *up * ((size_t)nfn + 1)), *order = heed_malloc(sizeof *order * ((size_t)nfn + 1));
  int *part = heed_malloc(sizeof *part * ((size_t)nfn + 1)), *unit_part = heed_malloc(sizeof *part * ((size_t)nfn + 1));
  long *size = heed_malloc(sizeof *size * ((size_t)nfn + 1));
  SplitJob *jobs = heed_calloc((size_t)nfn + 1, sizeof *jobs);
  int nroots = 0, njobs = 0;
  if (!fns || !up || !order || !part || !unit_part || !size || !jobs || !find_units(m, fns, nfn, up, size))
    goto oom;
  for (int i = 0; i < nfn; i++)
    if (!LLVMIsDeclaration(fns[i]) && uf_find(up, i) == i)
      order[nroots++] = i;
  for (int a = 1; a < nroots; a++)  // largest unit first (insertion sort: tens of units)
    for (int b = a; b > 0 && size[order[b]] > size[order[b - 1]]; b--) {
      int t = order[b];
      order[b] = order[b - 1], order[b - 1] = t;
    }
  for (int r = 0; r < nroots; r++) {  // first fit; a big unit alone (it fits nowhere)
    int u = order[r], j = 0;
    while (j < njobs && jobs[j].size + size[u] > PART_CAP)
      j++;
    if (j == njobs) {
      jobs[njobs].me = njobs;
      unit_label(fns[u], jobs[njobs].stat.label, sizeof jobs[njobs].stat.label);
      njobs++;
    }
    jobs[j].light = size[u] < PART_CAP && (jobs[j].light || jobs[j].size == 0);
    jobs[j].size += size[u];
    jobs[j].stat.nunits++;
    unit_part[u] = j;
  }
  for (int i = 0; i < nfn; i++)
    part[i] = LLVMIsDeclaration(fns[i]) ? -1 : unit_part[uf_find(up, i)];
  heed_free(fns), heed_free(up), heed_free(order), heed_free(unit_part), heed_free(size);
  *part_out = part, *nfn_out = nfn, *jobs_out = jobs, *njobs_out = njobs;
  return true;
oom:
  heed_free(fns), heed_free(up), heed_free(order), heed_free(part), heed_free(unit_part), heed_free(size), heed_free(jobs);
  return false;
}

static char *dup_msg(const char *what, const char *msg) {
  size_t n = strlen(what) + strlen(msg ? msg : "?") + 3;
  char *e = heed_malloc(n);
  if (e)
    snprintf(e, n, "%s: %s", what, msg ? msg : "?");
  return e;
}

static double clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

// The other parts' functions of m become declarations (internal ones,
// unused then, go). false: out of memory.
static bool prune_part(LLVMModuleRef m, const Split *s, int me) {
  LLVMValueRef *dead = heed_malloc(sizeof *dead * ((size_t)s->nfn + 1));
  int ndead = 0, i = 0;
  if (!dead)
    return false;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f && i < s->nfn; f = LLVMGetNextFunction(f), i++)
    if (s->part[i] >= 0 && s->part[i] != me)
      dead[ndead++] = f;
  for (int d = 0; d < ndead; d++) {  // a declaration in its place (or nothing, if internal)
    LLVMValueRef f = dead[d];
    if (LLVMGetLinkage(f) == LLVMInternalLinkage) {
      LLVMReplaceAllUsesWith(f, LLVMGetPoison(LLVMTypeOf(f)));
    } else {
      size_t len;
      char name[256];
      snprintf(name, sizeof name, "%s", LLVMGetValueName2(f, &len));
      LLVMSetValueName2(f, "", 0);
      LLVMValueRef decl = LLVMAddFunction(m, name, LLVMGlobalGetValueType(f));
      LLVMReplaceAllUsesWith(f, decl);
    }
  }
  for (int d = 0; d < ndead; d++)
    LLVMDeleteFunction(dead[d]);
  heed_free(dead);
  return true;
}

// The object cache's key of part m: what its machine code depends on
// (objcache.c); malloc'd, NULL if out of memory.
static char *part_key(const CgLlvm *cg, LLVMModuleRef m, bool light, size_t *len) {
  unsigned maj, min, pat;
  LLVMGetVersion(&maj, &min, &pat);
  char head[1024];
  int hn = snprintf(head, sizeof head, "heed split part 2|llvm %u.%u.%u|%s|%s|%s|O3%s|", maj, min, pat,
                    cg->triple, cg->cpu, cg->features, light ? " light" : "");
  if (hn < 0 || (size_t)hn >= sizeof head) return NULL;
  LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(m);
  size_t bn = LLVMGetBufferSize(bc);
  char *key = heed_malloc((size_t)hn + bn + 1);
  if (key) {
    memcpy(key, head, (size_t)hn);
    memcpy(key + hn, LLVMGetBufferStart(bc), bn);
    *len = (size_t)hn + bn;
  }
  LLVMDisposeMemoryBuffer(bc);
  return key;
}

// One part: parse the bitcode into a context of its own, prune it to the
// part; from the cache, or O3 and machine code, into job->obj.
static void run_part(Split *s, SplitJob *j) {
  double c0 = clock_ms(CLOCK_THREAD_CPUTIME_ID), w0 = clock_ms(CLOCK_MONOTONIC);
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef m = NULL;
  LLVMTargetMachineRef tm = NULL;
  char *msg = NULL;
  LLVMMemoryBufferRef bc = LLVMCreateMemoryBufferWithMemoryRange(LLVMGetBufferStart(s->bc), LLVMGetBufferSize(s->bc),
                                                                 "part", 0);
  if (LLVMParseBitcodeInContext2(ctx, bc, &m)) {
    j->err = dup_msg("reading the module back", "invalid bitcode");
    goto done;
  }
  if (!prune_part(m, s, j->me)) {
    j->err = dup_msg("splitting the module", "out of memory");
    goto done;
  }
  size_t klen = 0, olen = 0;
  char *key = s->cg->cache_dir ? part_key(s->cg, m, j->light, &klen) : NULL;
  void *hit = key ? cg_objcache_get(s->cg->cache_dir, key, klen, &olen) : NULL;
  if (hit) {
    j->obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(hit, olen, "part");
    j->stat.cached = true;
    heed_free(hit);
    heed_free(key);
    goto done;
  }
  tm = make_tm(s->cg, LLVMGetTargetMachineTarget(s->cg->tm), LLVMRelocPIC, LLVMCodeModelDefault);
  LLVMErrorRef err = tm ? run_pipeline(m, tm, j->light) : NULL;
  if (!tm) {
    j->err = dup_msg("a target machine", "not created");
  } else if (err) {
    char *em = LLVMGetErrorMessage(err);
    j->err = dup_msg("running the O3 pipeline", em);
    LLVMDisposeErrorMessage(em);
  } else if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &msg, &j->obj)) {
    j->err = dup_msg("emitting machine code", msg);
    LLVMDisposeMessage(msg);
    j->obj = NULL;
  } else if (key) {
    cg_objcache_put(s->cg->cache_dir, key, klen, LLVMGetBufferStart(j->obj), LLVMGetBufferSize(j->obj), j->me);
  }
  heed_free(key);
done:
  if (tm)
    LLVMDisposeTargetMachine(tm);
  if (m)
    LLVMDisposeModule(m);
  LLVMDisposeMemoryBuffer(bc);
  LLVMContextDispose(ctx);
  j->stat.cpu_ms = clock_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
  j->stat.wall_ms = clock_ms(CLOCK_MONOTONIC) - w0;
}

static void *split_worker(void *arg) {
  Split *s = arg;
  for (int p; (p = atomic_fetch_add(&s->next, 1)) < s->njobs;)
    run_part(s, &s->jobs[p]);
  return NULL;
}

// Runs the parts on nthreads threads (this one among them).
static void run_parts(Split *s, int nthreads) {
  pthread_t th[64];
  int started = 0;
  for (int t = 1; t < nthreads && t < 64 && t < s->njobs; t++)
    if (pthread_create(&th[started], NULL, split_worker, s) == 0)
      started++;
  bool was = heed_fault_pause(true);  // which parts this thread takes varies: not counted
  split_worker(s);
  heed_fault_pause(was);
  for (int t = 0; t < started; t++)
    pthread_join(th[t], NULL);
}

bool cg_llvm_jit_add_split(CgLlvm *cg, int nthreads, Diag *d) {
  if (!check_module(cg, "add to the JIT", d))
    return false;
  Split s = {.cg = cg};
  int *part = NULL;
  if (!plan_parts(cg->mod, &part, &s.nfn, &s.jobs, &s.njobs)) {
    diag_error(d, NOLOC, "out of memory splitting the module");
    return false;
  }
  s.part = part;
  s.bc = LLVMWriteBitcodeToMemoryBuffer(cg->mod);
  LLVMDisposeModule(cg->mod);
  cg->mod = NULL;
  atomic_init(&s.next, 0);
  run_parts(&s, nthreads < 1 ? 1 : nthreads);
  bool ok = true, wrote = false;
  heed_free(cg->parts);
  cg->parts = heed_calloc((size_t)s.njobs + 1, sizeof *cg->parts);
  cg->nparts = cg->parts ? s.njobs : 0;
  for (int p = 0; p < s.njobs; p++) {
    SplitJob *j = &s.jobs[p];
    if (cg->parts)
      cg->parts[p] = j->stat;
    wrote = wrote || (cg->cache_dir && !j->stat.cached);
    if (j->err && ok) {
      diag_error(d, NOLOC, "llvm: %s", j->err);
      ok = false;
    }
    heed_free(j->err);
    if (!j->obj)
      continue;
    if (!ok) {
      LLVMDisposeMemoryBuffer(j->obj);
      continue;
    }
    LLVMErrorRef err = LLVMOrcLLJITAddObjectFile(cg->jit, LLVMOrcLLJITGetMainJITDylib(cg->jit), j->obj);
    if (err) {
      error_diag(d, "adding machine code to the JIT", err);
      ok = false;
    }
  }
  heed_free(part);
  heed_free(s.jobs);
  LLVMDisposeMemoryBuffer(s.bc);
  if (wrote)
    cg_objcache_trim(cg->cache_dir, CG_OBJCACHE_MAX_BYTES);
  return ok;
}

void cg_llvm_set_cache(CgLlvm *cg, const char *dir) {
  heed_free(cg->cache_dir);
  cg->cache_dir = dir && *dir ? heed_strdup(dir) : NULL;
}

const CgPartStat *cg_llvm_part_stats(const CgLlvm *cg, int *n) {
  *n = cg->nparts;
  return cg->parts;
}
