// codegen/cg_llvm.h: the LLVM-typed helpers the generators share (gemm.c,
// compile*.c, attention.c), private to codegen/: cg.h stays free of LLVM
// headers so that the driver and the other modules never see LLVM types.
#ifndef HEED_CG_LLVM_H
#define HEED_CG_LLVM_H

#include <llvm-c/Core.h>

#include "codegen/cg.h"

// ---- llvm.c ----
// For generators: the current module (owned by cg) and the attributes every
// generated function gets (target-cpu, target-features, nounwind).
HEED_INTERNAL LLVMModuleRef cg_llvm_module(CgLlvm *cg);
HEED_INTERNAL void cg_llvm_fn_attrs(CgLlvm *cg, LLVMValueRef fn);

#endif
