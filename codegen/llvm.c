// codegen/llvm.c: the LLVM side of the CPU backend. Generators (gemm.c,
// later the kernels of a Schedule) build functions into the current module;
// this file owns the context, the target machine (the host CPU, or a named
// one for AOT), the O3 pipeline, the ORC LLJIT that turns the module into
// callable code, and object-file emission for the AOT path.
//
// Follows LLVM's OrcV2CBindingsBasicUsage.c: every LLVMErrorRef and
// ErrorMessage is turned into a diagnostic, owned handles are disposed on
// every path (goto cleanup).
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
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

bool cg_llvm_optimize(CgLlvm *cg, Diag *d) {
  char *msg = NULL;
  if (!cg->mod) {
    diag_error(d, NOLOC, "llvm: no module to optimize");
    return false;
  }
  if (LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &msg)) {
    message_diag(d, "the generated module is invalid", msg);
    return false;
  }
  LLVMDisposeMessage(msg);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef err = LLVMRunPasses(cg->mod, "default<O3>", cg->tm, opts);
  LLVMDisposePassBuilderOptions(opts);
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
