// codegen/llvm.c: the LLVM side of the CPU backend. Generators (gemm.c,
// later the kernels of a Schedule) build functions into the current module;
// this file owns the context, the target machine (the host CPU, or a named
// one for AOT), the O3 pipeline, the ORC LLJIT that turns the module into
// callable code, and object-file emission for the AOT path.
//
// Follows LLVM's OrcV2CBindingsBasicUsage.c: every LLVMErrorRef and
// ErrorMessage is turned into a diagnostic, owned handles are disposed on
// every path (goto cleanup).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/cg.h"

struct CgLlvm {
  LLVMOrcThreadSafeContextRef tsctx;  // owns ctx
  LLVMContextRef ctx;
  LLVMTargetMachineRef tm;            // passes and object files
  LLVMOrcLLJITRef jit;
  LLVMModuleRef mod;                  // the current module, or NULL
  char *triple, *cpu, *features;      // LLVM messages (LLVMDisposeMessage)
  int vw;                             // f32 lanes per vector
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

// CPUs whose names imply AVX-512F (for a named CPU the features string is
// empty and LLVM derives it from the name).
static bool cpu_has_avx512(const char *cpu, const char *features) {
  const char *f = strstr(features, "+avx512f");
  if (f && (f[8] == ',' || f[8] == 0))
    return true;
  if (*features)
    return false;
  static const char *names[] = {"znver4", "znver5", "skylake-avx512", "cascadelake", "cooperlake",
                                "cannonlake", "icelake", "tigerlake", "rocketlake",
                                "sapphirerapids", "emeraldrapids", "graniterapids", "x86-64-v4"};
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

CgLlvm *cg_llvm_new(const char *cpu, Diag *d) {
  LLVMOrcLLJITBuilderRef builder = NULL;
  LLVMTargetMachineRef jit_tm = NULL;
  char *msg = NULL;
  LLVMTargetRef target;
  CgLlvm *cg = calloc(1, sizeof *cg);
  if (!cg) {
    diag_error(d, NOLOC, "out of memory");
    return NULL;
  }
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
    diag_error(d, NOLOC, "llvm: the native target is not available");
    goto fail;
  }
  cg->triple = LLVMGetDefaultTargetTriple();
  bool host = !cpu || !*cpu;
  cg->cpu = host ? LLVMGetHostCPUName() : LLVMCreateMessage(cpu);
  cg->features = host ? LLVMGetHostCPUFeatures() : LLVMCreateMessage("");
  cg->vw = cpu_has_avx512(cg->cpu, cg->features) ? 16 : 8;
  if (LLVMGetTargetFromTriple(cg->triple, &target, &msg)) {
    message_diag(d, cg->triple, msg);
    goto fail;
  }
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
  free(cg);
}

const char *cg_llvm_cpu_name(const CgLlvm *cg) { return cg->cpu; }
int cg_llvm_vector_width(const CgLlvm *cg) { return cg->vw; }
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

// heed's pipeline (O3) on m for tm; NULL or the error.
static LLVMErrorRef run_o3(LLVMModuleRef m, LLVMTargetMachineRef tm) {
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef err = LLVMRunPasses(m, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  return err;
}

bool cg_llvm_optimize(CgLlvm *cg, Diag *d) {
  if (!check_module(cg, "optimize", d))
    return false;
  LLVMErrorRef err = run_o3(cg->mod, cg->tm);
  if (err) {
    error_diag(d, "running the O3 pipeline", err);
    return false;
  }
  return true;
}

static bool emit_file(CgLlvm *cg, const char *path, LLVMCodeGenFileType kind, Diag *d);

bool cg_llvm_emit_object(CgLlvm *cg, const char *path, Diag *d) { return emit_file(cg, path, LLVMObjectFile, d); }
bool cg_llvm_emit_asm(CgLlvm *cg, const char *path, Diag *d) { return emit_file(cg, path, LLVMAssemblyFile, d); }

static bool emit_file(CgLlvm *cg, const char *path, LLVMCodeGenFileType kind, Diag *d) {
  char *msg = NULL;
  if (!cg->mod) {
    diag_error(d, NOLOC, "llvm: no module to emit");
    return false;
  }
  // The C API takes a non-const file name.
  char *p = strdup(path);
  if (!p) {
    diag_error(d, NOLOC, "out of memory");
    return false;
  }
  bool ok = !LLVMTargetMachineEmitToFile(cg->tm, cg->mod, p, kind, &msg);
  if (!ok)
    message_diag(d, path, msg);
  free(p);
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
// inline stays in one part. Units are dealt to nparts parts by size (the
// largest first, to the smallest part). Each part is a copy of the module
// (through bitcode, in a context of its own) where the other parts'
// functions are declarations: O3 and machine code run on a thread per
// part, and the JIT links the object files. A function called from another
// part becomes external (its name is unique in the module).

typedef struct {
  LLVMMemoryBufferRef bc;  // the whole module as bitcode (shared, read only)
  const int *part;         // per function (module order): its part
  int nfn, me;
  CgLlvm *cg;
  LLVMMemoryBufferRef obj; // out: the part's object file
  char *err;               // out: a message (malloc'd) on failure
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
    int (*e)[2] = realloc(r->edge, sizeof *e * (size_t)cap);
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

// part[i] for every function of m (declarations: -1). Internal functions
// that another unit calls become external. false: out of memory.
static bool split_units(LLVMModuleRef m, int nparts, LLVMValueRef **fns_out, int **part_out, int *nfn_out) {
  int nfn = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
    nfn++;
  LLVMValueRef *fns = malloc(sizeof *fns * ((size_t)nfn + 1));
  int *buf = calloc(5 * ((size_t)nfn + 1), sizeof(int));
  Refs r = {fns, nfn, 0, 0, NULL};
  if (!fns || !buf)
    goto oom;
  int *up = buf, *called = buf + nfn + 1, *size = buf + 2 * (nfn + 1), *part = buf + 3 * (nfn + 1);
  int *order = buf + 4 * (nfn + 1), i = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
    fns[i] = f, up[i] = i, i++;
  for (i = 0; i < nfn; i++)
    if (!LLVMIsDeclaration(fns[i]))
      for_each_ref(fns[i], note_ref, &r);
  if (r.nedge < 0)
    goto oom;
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
    if (uf_find(up, a) != uf_find(up, b) && LLVMGetLinkage(fns[b]) == LLVMInternalLinkage) {
      LLVMSetLinkage(fns[b], LLVMExternalLinkage);
    }
  }
  for (i = 0; i < nfn; i++)
    size[i] = 0, part[i] = -1;
  for (i = 0; i < nfn; i++)
    if (!LLVMIsDeclaration(fns[i]))
      size[uf_find(up, i)] += instr_count(fns[i]) + 1;
  int nroots = 0;
  for (i = 0; i < nfn; i++)
    if (!LLVMIsDeclaration(fns[i]) && uf_find(up, i) == i)
      order[nroots++] = i;
  for (int a = 1; a < nroots; a++)  // largest unit first (insertion sort: tens of units)
    for (int b = a; b > 0 && size[order[b]] > size[order[b - 1]]; b--) {
      int t = order[b];
      order[b] = order[b - 1], order[b - 1] = t;
    }
  long load[64] = {0};
  for (int r = 0; r < nroots; r++) {
    int best = 0;
    for (int p = 1; p < nparts; p++)
      if (load[p] < load[best])
        best = p;
    part[order[r]] = best;
    load[best] += size[order[r]];
  }
  for (i = 0; i < nfn; i++)
    if (!LLVMIsDeclaration(fns[i]))
      part[i] = part[uf_find(up, i)];
  int *out = malloc(sizeof *out * ((size_t)nfn + 1));
  if (!out)
    goto oom;
  memcpy(out, part, sizeof *out * (size_t)nfn);
  free(buf);
  free(r.edge);
  *fns_out = fns, *part_out = out, *nfn_out = nfn;
  return true;
oom:
  free(fns);
  free(buf);
  free(r.edge);
  return false;
}

static char *dup_msg(const char *what, const char *msg) {
  size_t n = strlen(what) + strlen(msg ? msg : "?") + 3;
  char *e = malloc(n);
  if (e)
    snprintf(e, n, "%s: %s", what, msg ? msg : "?");
  return e;
}

// One part: parse the bitcode into a context of its own, make the other
// parts' functions declarations (internal ones, unused then, go), O3,
// machine code into job->obj.
static void *split_job(void *arg) {
  SplitJob *j = arg;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef m = NULL;
  LLVMTargetMachineRef tm = NULL;
  char *msg = NULL;
  LLVMMemoryBufferRef bc = LLVMCreateMemoryBufferWithMemoryRange(LLVMGetBufferStart(j->bc), LLVMGetBufferSize(j->bc),
                                                                 "part", 0);
  if (LLVMParseBitcodeInContext2(ctx, bc, &m)) {
    j->err = dup_msg("reading the module back", "invalid bitcode");
    goto done;
  }
  LLVMValueRef *dead = malloc(sizeof *dead * ((size_t)j->nfn + 1));
  int ndead = 0, i = 0;
  if (!dead) {
    j->err = dup_msg("splitting the module", "out of memory");
    goto done;
  }
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f && i < j->nfn; f = LLVMGetNextFunction(f), i++)
    if (j->part[i] >= 0 && j->part[i] != j->me)
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
  free(dead);
  tm = make_tm(j->cg, LLVMGetTargetMachineTarget(j->cg->tm), LLVMRelocPIC, LLVMCodeModelDefault);
  LLVMErrorRef err = tm ? run_o3(m, tm) : NULL;
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
  }
done:
  if (tm)
    LLVMDisposeTargetMachine(tm);
  if (m)
    LLVMDisposeModule(m);
  LLVMDisposeMemoryBuffer(bc);
  LLVMContextDispose(ctx);
  return NULL;
}

bool cg_llvm_jit_add_split(CgLlvm *cg, int nparts, Diag *d) {
  if (!check_module(cg, "add to the JIT", d))
    return false;
  nparts = nparts < 1 ? 1 : nparts > 64 ? 64 : nparts;
  LLVMValueRef *fns = NULL;
  int *part = NULL, nfn = 0;
  if (!split_units(cg->mod, nparts, &fns, &part, &nfn)) {
    diag_error(d, NOLOC, "out of memory splitting the module");
    return false;
  }
  free(fns);
  LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(cg->mod);
  LLVMDisposeModule(cg->mod);
  cg->mod = NULL;
  SplitJob jobs[64];
  pthread_t th[64];
  bool started[64] = {false};
  for (int p = 0; p < nparts; p++)
    jobs[p] = (SplitJob){.bc = bc, .part = part, .nfn = nfn, .me = p, .cg = cg};
  for (int p = 1; p < nparts; p++)
    started[p] = pthread_create(&th[p], NULL, split_job, &jobs[p]) == 0;
  split_job(&jobs[0]);
  for (int p = 1; p < nparts; p++) {
    if (started[p])
      pthread_join(th[p], NULL);
    else
      split_job(&jobs[p]);  // no thread: here
  }
  bool ok = true;
  for (int p = 0; p < nparts; p++) {
    if (jobs[p].err && ok) {
      diag_error(d, NOLOC, "llvm: %s", jobs[p].err);
      ok = false;
    }
    free(jobs[p].err);
    if (!jobs[p].obj)
      continue;
    if (!ok) {
      LLVMDisposeMemoryBuffer(jobs[p].obj);
      continue;
    }
    LLVMErrorRef err = LLVMOrcLLJITAddObjectFile(cg->jit, LLVMOrcLLJITGetMainJITDylib(cg->jit), jobs[p].obj);
    if (err) {
      error_diag(d, "adding machine code to the JIT", err);
      ok = false;
    }
  }
  free(part);
  LLVMDisposeMemoryBuffer(bc);
  return ok;
}
