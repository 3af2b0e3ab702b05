// codegen/gpu/gpu.h: the GPU renderer (prefix cg_gpu_). It sits beside the
// LLVM backend at the end of the compiler's data flow and consumes the same
// Schedule (passes/schedule.h):
//   IrGraph + Schedule (under cg_gpu_caps) + sizes
//     -> cg_gpu_render -> kernel source text, one kernel per call, in a
//        dialect (CUDA C for NVRTC, OpenCL C for any OpenCL 1.2 device),
//        and the launches (kernel name, grid, block, buffers) in run order
// The renderer only produces text (tinygrad's renderer / compiler / runtime
// split): runtime/gpu.h compiles it (NVRTC, or the OpenCL driver) and runs
// the launches. Each kernel is one description rendered twice: a prelude of
// macros spells thread ids, shared (local) memory, barriers and the math
// functions per dialect; the kernel bodies are shared text.
// Sizes are rendered as constants (one source per set of sizes; a source is
// cheap to compile and is cached by its hash).
// Reductions are deterministic: a fixed tree over a work-group's shared
// memory, no atomics, so a run gives the same bits every time.
#ifndef HEED_CG_GPU_H
#define HEED_CG_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "passes/schedule.h"

typedef enum { CG_GPU_CUDA, CG_GPU_OPENCL } CgGpuDialect;

enum { CG_GPU_MAX_ARGS = IR_MAX_SRC + 1 };

typedef struct {
  char name[48];                // the kernel's symbol: k<call>_<op>
  int root;                     // the node it writes (its buffer: arg[0])
  int nargs;                    // buffers, by node id: arg[0] the result, then the operands
  int arg[CG_GPU_MAX_ARGS];     //   (aliases resolved: the node whose buffer holds the values)
  size_t global[3], local[3];   // work-items in all and per work-group (CUDA: grid = global / local)
} CgGpuLaunch;

typedef struct {
  CgGpuDialect dialect;
  char *src;                    // the whole translation unit (prelude and kernels)
  int nl;
  CgGpuLaunch *l;               // in run order
} CgGpuProgram;

// What the GPU kernels fuse: nothing inline yet (one kernel per op), but
// reshapes are aliases of their source's buffer.
void cg_gpu_caps(SchedCaps *caps);
// Whether kernel k of g has a GPU kernel (its op and dtypes); false with a
// diagnostic at the op naming what is missing.
bool cg_gpu_supports(const IrGraph *g, const SchedKernel *k, Diag *d);
// Renders every call of s for sizes symvals. NULL with a diagnostic (an
// unsupported op, out of memory). Caller frees with cg_gpu_program_free.
CgGpuProgram *cg_gpu_render(const IrGraph *g, const Schedule *s, const int64_t *symvals, CgGpuDialect dl, Diag *d);
void cg_gpu_program_free(CgGpuProgram *p);  // NULL is harmless
const char *cg_gpu_dialect_name(CgGpuDialect dl);  // "cuda", "opencl"

#endif
