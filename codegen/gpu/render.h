// codegen/gpu/render.h: the GPU renderer's internal kit, shared by
// render.c (the driver, dialect preludes, index arithmetic) and
// render_ops.c (one kernel body per op). Private to codegen/gpu/.
#ifndef HEED_CG_GPU_RENDER_H
#define HEED_CG_GPU_RENDER_H

#include "codegen/gpu/gpu.h"

typedef struct {
  const IrGraph *g;
  const Schedule *s;
  const int64_t *symvals;
  CgGpuDialect dl;
  char *buf;  // the source so far
  size_t len, cap;
  bool oom;
} GpuR;

enum { GR_WG = 128 };  // work-items of a row kernel's group (a power of two: the reduction tree)

void gr_printf(GpuR *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *gr_ctype(IrDType dt);  // the C type of a dtype's elements; NULL: none (f16, bf16)
void gr_dims(const GpuR *r, const IrNode *n, int64_t *d);
int64_t gr_prod(const int64_t *d, int from, int to);
void gr_bcast_strides(const int64_t *dims, int rank, int rr, int64_t *st);
void gr_offset(GpuR *r, const char *var, const int64_t *dims, int rank, const int64_t *st);
void gr_signature(GpuR *r, CgGpuLaunch *l, const SchedKernel *k);
void gr_launch_1d(CgGpuLaunch *l, int64_t n, int wg);

// render_ops.c
bool gr_op_supported(IrOp op);
void gr_kernel(GpuR *r, CgGpuLaunch *l, const SchedKernel *k);
// render_grad.c: the gradient ops and the optimizer updates
bool gr_grad_supported(IrOp op);
void gr_grad_kernel(GpuR *r, CgGpuLaunch *l, const SchedKernel *k);

#endif
