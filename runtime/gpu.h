// runtime/gpu.h: GPU devices for rendered kernels (prefix rt_gpu_). Sits
// after the GPU renderer (codegen/gpu/gpu.h) in the data flow:
//   kernel source text -> rt_gpu_load (OpenCL: the driver builds it; CUDA:
//   NVRTC to PTX, the driver loads the PTX) -> buffers -> launches in order
// Every library is loaded at run time with dlopen (libOpenCL.so.1 of the
// ICD loader, libcuda.so.1 of the NVIDIA driver, libnvrtc of the CUDA
// toolkit): heed builds, links and runs on machines without them, and
// opening a device without them is an error with a message, never a crash.
// libc only: no ir/, no codegen/ (the launches are plain data).
// Self-contained on purpose: an RtDevice (runtime/heed_abi.h) can wrap it.
#ifndef HEED_RT_GPU_H
#define HEED_RT_GPU_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { RT_GPU_OPENCL, RT_GPU_CUDA } RtGpuKind;

typedef struct RtGpu RtGpu;
typedef struct RtGpuBuf RtGpuBuf;

// Opens the first device of kind (OpenCL: the first platform's first
// device, any type; CUDA: device 0). NULL with the reason in err.
RtGpu *rt_gpu_open(RtGpuKind kind, char *err, size_t errlen);
void rt_gpu_close(RtGpu *g);  // NULL is harmless; frees its buffers' device memory too
const char *rt_gpu_device_name(const RtGpu *g);
// Compiles src (OpenCL C, or CUDA C through NVRTC for the device's
// architecture) and makes its kernels launchable. False with the build log
// in *log (malloc'd, caller frees; may be NULL) and a summary in err.
bool rt_gpu_load(RtGpu *g, const char *src, char **log, char *err, size_t errlen);
// CUDA: the device's architecture for NVRTC ("sm_90"); OpenCL: "".
const char *rt_gpu_arch(const RtGpu *g);
// CUDA: loads ptx (src compiled by NVRTC for rt_gpu_arch, e.g. from a PTX
// cache) and makes src's kernels launchable. False with the reason in err.
bool rt_gpu_load_ptx(RtGpu *g, const char *ptx, const char *src, char *err, size_t errlen);
RtGpuBuf *rt_gpu_alloc(RtGpu *g, size_t bytes, char *err, size_t errlen);  // contents undefined
void rt_gpu_buf_free(RtGpu *g, RtGpuBuf *b);
// The bytes a sub-buffer's offset must be a multiple of (at least 256).
size_t rt_gpu_align(const RtGpu *g);
// bytes of parent from offset (a multiple of rt_gpu_align): the memory
// plan's tensors in one arena. Freed with rt_gpu_buf_free (before or after
// parent; the memory is parent's).
RtGpuBuf *rt_gpu_sub(RtGpu *g, RtGpuBuf *parent, size_t offset, size_t bytes, char *err, size_t errlen);
bool rt_gpu_write(RtGpu *g, RtGpuBuf *b, const void *src, size_t bytes, char *err, size_t errlen);
bool rt_gpu_read(RtGpu *g, RtGpuBuf *b, void *dst, size_t bytes, char *err, size_t errlen);  // waits
// Queues kernel name over global work-items in groups of local (3 axes),
// with buffer arguments args[0..nargs). Launches run in queue order.
bool rt_gpu_launch(RtGpu *g, const char *name, RtGpuBuf *const *args, int nargs, const size_t global[3],
                   const size_t local[3], char *err, size_t errlen);
bool rt_gpu_finish(RtGpu *g, char *err, size_t errlen);

// NVRTC alone (no driver needed): CUDA C source -> PTX for arch
// ("sm_80", "sm_90"). *ptx malloc'd (caller frees); on a compile error,
// false with NVRTC's log in *log and err saying so. (gpu_nvrtc.c)
bool rt_nvrtc_compile(const char *src, const char *arch, char **ptx, char **log, char *err, size_t errlen);

#endif
