// engine/gpu_exec.h: the GPU executor behind `--target opencl|cuda` of heed run
// and grad (and bench through exec.c), and `heed compile --emit
// cuda|opencl|ptx`. It joins the renderer (codegen/gpu/gpu.h) and the
// devices (runtime/gpu.h): graph -> schedule (cg_gpu_caps) -> kernels for
// the bound sizes -> device buffers -> launches -> outputs.
#ifndef HEED_ENGINE_GPU_EXEC_H
#define HEED_ENGINE_GPU_EXEC_H

#include <stdio.h>

#include "cli/driver.h"

typedef struct HeedGpuExec HeedGpuExec;

// Whether name is a GPU target ("opencl", "cuda"); *cuda says which.
bool heed_gpu_target(const char *name, bool *cuda);
// Opens the device and schedules g; NULL with a diagnostic (no device or
// driver, an op without a GPU kernel, out of memory).
HeedGpuExec *heed_gpu_exec_new(Compilation *c, const IrGraph *g, bool cuda);
// Renders and compiles the kernels for symvals (again only when they
// change), uploads the leaves.
bool heed_gpu_exec_bind(HeedGpuExec *x, const int64_t *symvals, double *const *inputs, double *const *params);
bool heed_gpu_exec_run(HeedGpuExec *x);
double *heed_gpu_exec_output(HeedGpuExec *x, int i, int64_t *numel);  // heed_malloc'd; NULL: out of memory
const char *heed_gpu_exec_name(const HeedGpuExec *x);                  // "opencl: DEVICE"
void heed_gpu_exec_free(HeedGpuExec *x);

// compile --emit cuda|opencl|ptx: the kernels of base's graph for sizes B =
// batch and every other symbol seq, as text (ptx: NVRTC for arch).
int heed_gpu_emit(Compilation *c, const HeedCompileOpts *base, const char *kind, int64_t batch, int64_t seq,
                  const char *arch, FILE *out);

#endif
