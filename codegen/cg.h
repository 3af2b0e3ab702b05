// codegen/cg.h: the code generator's header (prefix cg_). Codegen sits
// after the passes in the data flow: it turns scheduled kernels into machine
// code, either JIT-compiled in process (ORC LLJIT) or written as an object
// file that is linked with heedrt (AOT).
//
// One section per source file:
//   llvm.c   the LLVM context: one module at a time, a target machine for the
//            host or a named CPU, the O3 pipeline, the JIT and object files
//   gemm.c   a generated sgemm (packing, cache blocking, a register-tiled
//            micro-kernel on explicit <16 x float> / <8 x float> vectors)
//
// Errors from LLVM (LLVMErrorRef, char **ErrorMessage) are converted to a
// diagnostic (no source location) and the function returns false; nothing
// here prints to stdout or exits.
//
// Example: JIT an sgemm for the host and run it on one thread
//   CgLlvm *cg = cg_llvm_new(NULL, &diag);             // host CPU
//   CgGemmConfig cfg;
//   cg_gemm_config_default(cg, &cfg, "sgemm", false);  // C = A @ B
//   cg_llvm_module_begin(cg, "m");
//   cg_gemm_emit(cg, &cfg, &diag);
//   cg_llvm_optimize(cg, &diag);
//   cg_llvm_define_symbol(cg, "rt_parallel_for", (void *)rt_parallel_for);
//   cg_llvm_jit_add(cg, &diag);
//   CgGemmFn f = (CgGemmFn)cg_llvm_lookup(cg, "sgemm", &diag);
//   float *work = aligned_alloc(64, cg_gemm_work_bytes(&cfg));
//   f(M, N, K, A, lda, B, ldb, C, ldc, 0, NULL, 1, work);
#ifndef HEED_CG_H
#define HEED_CG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llvm-c/Core.h>

#include "ir/ir.h"

// ---- llvm.c ----
typedef struct CgLlvm CgLlvm;

// Creates a context, a target machine for cpu (NULL or "": the host CPU and
// its features, e.g. "znver5") and an LLJIT. Returns NULL (with a
// diagnostic) on failure. Caller frees with cg_llvm_free.
CgLlvm *cg_llvm_new(const char *cpu, Diag *d);
void cg_llvm_free(CgLlvm *cg);
const char *cg_llvm_cpu_name(const CgLlvm *cg);  // owned by cg
int cg_llvm_vector_width(const CgLlvm *cg);      // f32 lanes: 16 (AVX-512F) or 8

// The module being built: cg_llvm_module_begin starts a new one (discarding
// one not handed to the JIT). Generators (cg_gemm_emit) add functions to it.
void cg_llvm_module_begin(CgLlvm *cg, const char *name);
// Verifies the module and runs "default<O3>" for the target machine.
bool cg_llvm_optimize(CgLlvm *cg, Diag *d);
// Writes the module as an object file for the target (the module is kept).
bool cg_llvm_emit_object(CgLlvm *cg, const char *path, Diag *d);
// Makes name resolve to addr in JIT-compiled code (runtime functions such
// as rt_parallel_for; codegen does not link the runtime itself).
bool cg_llvm_define_symbol(CgLlvm *cg, const char *name, void *addr, Diag *d);
// Hands the module to the JIT; if adding succeeds the JIT owns it and no
// module is current. Functions are compiled on the first lookup.
bool cg_llvm_jit_add(CgLlvm *cg, Diag *d);
void *cg_llvm_lookup(CgLlvm *cg, const char *name, Diag *d);  // NULL on error
// For generators: the current module (owned by cg) and the attributes every
// generated function gets (target-cpu, target-features, nounwind).
HEED_INTERNAL LLVMModuleRef cg_llvm_module(CgLlvm *cg);
HEED_INTERNAL void cg_llvm_fn_attrs(CgLlvm *cg, LLVMValueRef fn);

// ---- gemm.c ----
// C[M,N] = A[M,K] @ B[K,N] (+ C if beta), row-major with leading dimensions
// (elements). With trans_b, B is stored as [N,K] (ldb >= K) and the product
// is A @ transpose(B), the tied LM head x @ transpose(wte).
//
// The generated function splits N into pool-size contiguous ranges of whole
// NR-column panels, one task per thread, through
//   void rt_parallel_for(void *pool, int64_t n_tasks,
//                        void (*fn)(void *ctx, int64_t task, int32_t thread),
//                        void *ctx);
// (pool NULL: the caller runs every task). Each output element is computed
// by one thread with the same K order (KC blocks, k ascending within one)
// whatever the split, so results are bitwise identical for any thread count.
typedef struct {
  char name[64];     // the generated function's symbol
  bool trans_b;
  int vw;            // f32 lanes per vector: 16 (AVX-512) or 8 (AVX2)
  int mr, nr;        // micro-tile: mr rows x nr (= 2 * vw) columns
  int mc, kc, nc;    // cache blocks: A block mc x kc (L2), B panel kc x nr
                     // (L1), B block kc x nc (L3); mc % mr == nc % nr == 0
  int nthreads_max;  // work buffers: one per thread, up to this many
} CgGemmConfig;

// void name(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
//           const float *B, int64_t ldb, float *C, int64_t ldc,
//           int32_t beta, void *pool, int32_t nthreads, float *work)
// work: cg_gemm_work_bytes(cfg) bytes, 64-byte aligned; nthreads <= the
// pool's size and <= cfg->nthreads_max.
typedef void (*CgGemmFn)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc, int32_t beta,
                         void *pool, int32_t nthreads, float *work);

// Fills cfg with the blocking chosen for cg's CPU (vector width from its
// features; blocks for 32-48 KB L1d, 512 KB-1 MB L2).
void cg_gemm_config_default(const CgLlvm *cg, CgGemmConfig *cfg, const char *name, bool trans_b);
size_t cg_gemm_work_bytes(const CgGemmConfig *cfg);
// Adds the function cfg->name (and its static helpers) to cg's module.
bool cg_gemm_emit(CgLlvm *cg, const CgGemmConfig *cfg, Diag *d);

#endif
