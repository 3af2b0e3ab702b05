// runtime/gpu.c: the GPU devices behind runtime/gpu.h: OpenCL through the
// ICD loader and CUDA through the driver API, both loaded with dlopen at
// run time (the declarations of the few entry points used are here, so no
// vendor library or header is needed to build or link heed). NVRTC is
// gpu_nvrtc.c.
#include <dlfcn.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gpu.h"

// ---- the OpenCL 1.2 types and constants used (as Khronos' CL/cl.h) ----
typedef int32_t cl_int;
typedef uint32_t cl_uint, cl_bool, cl_device_info, cl_program_build_info, cl_kernel_info;
typedef uint64_t cl_device_type, cl_mem_flags, cl_command_queue_properties;
typedef intptr_t cl_context_properties;
typedef struct _cl_platform_id *cl_platform_id;
typedef struct _cl_device_id *cl_device_id;
typedef struct _cl_context *cl_context;
typedef struct _cl_command_queue *cl_command_queue;
typedef struct _cl_program *cl_program;
typedef struct _cl_kernel *cl_kernel;
typedef struct _cl_mem *cl_mem;
typedef struct _cl_event *cl_event;
enum {
  CL_SUCCESS = 0, CL_TRUE = 1, CL_DEVICE_NAME = 0x102B, CL_MEM_READ_WRITE = 1, CL_PROGRAM_BUILD_LOG = 0x1183,
  CL_KERNEL_FUNCTION_NAME = 0x1190, CL_DEVICE_MEM_BASE_ADDR_ALIGN = 0x1019, CL_BUFFER_CREATE_TYPE_REGION = 0x1220
};
#define CL_DEVICE_TYPE_ALL 0xFFFFFFFFull

// ---- the CUDA driver API's types and the entry points used ----
typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext, *CUmodule, *CUfunction;
typedef unsigned long long CUdeviceptr;

typedef struct {
  void *lib;
  cl_int (*GetPlatformIDs)(cl_uint, cl_platform_id *, cl_uint *);
  cl_int (*GetDeviceIDs)(cl_platform_id, cl_device_type, cl_uint, cl_device_id *, cl_uint *);
  cl_int (*GetDeviceInfo)(cl_device_id, cl_device_info, size_t, void *, size_t *);
  cl_context (*CreateContext)(const cl_context_properties *, cl_uint, const cl_device_id *, void *, void *, cl_int *);
  cl_command_queue (*CreateCommandQueue)(cl_context, cl_device_id, cl_command_queue_properties, cl_int *);
  cl_program (*CreateProgramWithSource)(cl_context, cl_uint, const char **, const size_t *, cl_int *);
  cl_int (*BuildProgram)(cl_program, cl_uint, const cl_device_id *, const char *, void *, void *);
  cl_int (*GetProgramBuildInfo)(cl_program, cl_device_id, cl_program_build_info, size_t, void *, size_t *);
  cl_int (*CreateKernelsInProgram)(cl_program, cl_uint, cl_kernel *, cl_uint *);
  cl_int (*GetKernelInfo)(cl_kernel, cl_kernel_info, size_t, void *, size_t *);
  cl_int (*SetKernelArg)(cl_kernel, cl_uint, size_t, const void *);
  cl_int (*EnqueueNDRangeKernel)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *, const size_t *,
                                 cl_uint, const cl_event *, cl_event *);
  cl_mem (*CreateBuffer)(cl_context, cl_mem_flags, size_t, void *, cl_int *);
  cl_int (*EnqueueWriteBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, const void *, cl_uint,
                               const cl_event *, cl_event *);
  cl_int (*EnqueueReadBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *, cl_uint, const cl_event *,
                              cl_event *);
  cl_int (*Finish)(cl_command_queue);
  cl_int (*ReleaseMemObject)(cl_mem);
  cl_int (*ReleaseKernel)(cl_kernel);
  cl_int (*ReleaseProgram)(cl_program);
  cl_int (*ReleaseCommandQueue)(cl_command_queue);
  cl_int (*ReleaseContext)(cl_context);
  cl_mem (*CreateSubBuffer)(cl_mem, cl_mem_flags, cl_uint, const void *, cl_int *);
} ClApi;

typedef struct {
  void *lib;
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DeviceGetName)(char *, int, CUdevice);
  CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*PrimaryCtxRelease)(CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*ModuleLoadData)(CUmodule *, const void *);
  CUresult (*ModuleUnload)(CUmodule);
  CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*MemAlloc)(CUdeviceptr *, size_t);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                           void **, void **);
  CUresult (*CtxSynchronize)(void);
  CUresult (*GetErrorString)(CUresult, const char **);
} CuApi;

typedef struct {
  char name[64];
  cl_kernel cl;
  CUfunction cu;
} Kern;

struct RtGpuBuf {
  cl_mem cl;
  CUdeviceptr cu;
  bool sub;  // CUDA: a part of another buffer (not freed itself)
  RtGpuBuf *next;
};

struct RtGpu {
  RtGpuKind kind;
  char name[128];
  ClApi cl;
  cl_device_id dev;
  cl_context ctx;
  cl_command_queue q;
  cl_program prog;
  CuApi cu;
  CUdevice cudev;
  CUcontext cuctx;
  CUmodule mod;
  size_t align;  // rt_gpu_align
  int sm;  // compute capability, e.g. 90
  char arch[16];
  Kern *k;
  int nk;
  RtGpuBuf *bufs;
};

static bool fail(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && n) vsnprintf(err, n, fmt, ap);
  va_end(ap);
  return false;
}

// Resolves every entry point of api (a struct of a handle and function
// pointers, in the order of names).
static bool load_syms(void *lib, void **slots, const char *const *names, int n, char *err, size_t errlen) {
  for (int i = 0; i < n; i++)
    if (!(slots[i] = dlsym(lib, names[i]))) return fail(err, errlen, "%s lacks %s", "the library", names[i]);
  return true;
}

static const char *const cl_names[] = {
    "clGetPlatformIDs", "clGetDeviceIDs", "clGetDeviceInfo", "clCreateContext", "clCreateCommandQueue",
    "clCreateProgramWithSource", "clBuildProgram", "clGetProgramBuildInfo", "clCreateKernelsInProgram",
    "clGetKernelInfo", "clSetKernelArg", "clEnqueueNDRangeKernel", "clCreateBuffer", "clEnqueueWriteBuffer",
    "clEnqueueReadBuffer", "clFinish", "clReleaseMemObject", "clReleaseKernel", "clReleaseProgram",
    "clReleaseCommandQueue", "clReleaseContext", "clCreateSubBuffer"};
static const char *const cu_names[] = {
    "cuInit", "cuDeviceGet", "cuDeviceGetName", "cuDeviceGetAttribute", "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent", "cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction",
    "cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuLaunchKernel", "cuCtxSynchronize",
    "cuGetErrorString"};

static bool cu_ok(RtGpu *g, CUresult rc, const char *what, char *err, size_t errlen) {
  if (rc == 0) return true;
  const char *s = NULL;
  if (g->cu.GetErrorString) g->cu.GetErrorString(rc, &s);
  return fail(err, errlen, "CUDA %s failed: %s (%d)", what, s ? s : "unknown error", rc);
}

static bool cl_ok(cl_int rc, const char *what, char *err, size_t errlen) {
  return rc == CL_SUCCESS || fail(err, errlen, "OpenCL %s failed (error %d)", what, (int)rc);
}

static bool open_opencl(RtGpu *g, char *err, size_t errlen) {
  if (!(g->cl.lib = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL)))
    return fail(err, errlen, "no OpenCL runtime: libOpenCL.so.1 cannot be loaded (install an ICD loader and a "
                "driver, e.g. Debian's ocl-icd-libopencl1 and pocl-opencl-icd)");
  if (!load_syms(g->cl.lib, (void **)&g->cl.GetPlatformIDs, cl_names, (int)(sizeof cl_names / sizeof *cl_names), err,
                 errlen))
    return false;
  cl_platform_id plat[8];
  cl_uint np = 0, nd = 0;
  cl_int rc = g->cl.GetPlatformIDs(8, plat, &np);
  if (rc != CL_SUCCESS || np == 0) return fail(err, errlen, "no OpenCL platform is installed (no ICD)");
  for (cl_uint i = 0; i < np && !nd; i++)
    if (g->cl.GetDeviceIDs(plat[i], CL_DEVICE_TYPE_ALL, 1, &g->dev, &nd) != CL_SUCCESS) nd = 0;
  if (!nd) return fail(err, errlen, "no OpenCL device was found");
  g->cl.GetDeviceInfo(g->dev, CL_DEVICE_NAME, sizeof g->name - 1, g->name, NULL);
  cl_uint bits = 0;  // the device's base address alignment, in bits
  g->cl.GetDeviceInfo(g->dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL);
  g->align = bits / 8 > 256 ? bits / 8 : 256;
  if (!(g->ctx = g->cl.CreateContext(NULL, 1, &g->dev, NULL, NULL, &rc))) return cl_ok(rc, "context", err, errlen);
  if (!(g->q = g->cl.CreateCommandQueue(g->ctx, g->dev, 0, &rc))) return cl_ok(rc, "queue", err, errlen);
  return true;
}

static bool open_cuda(RtGpu *g, char *err, size_t errlen) {
  if (!(g->cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)))
    return fail(err, errlen, "no NVIDIA driver: libcuda.so.1 cannot be loaded (the cuda target needs an NVIDIA "
                "GPU and its driver)");
  if (!load_syms(g->cu.lib, (void **)&g->cu.Init, cu_names, (int)(sizeof cu_names / sizeof *cu_names), err, errlen))
    return false;
  int major = 0, minor = 0;
  if (!cu_ok(g, g->cu.Init(0), "initialisation (cuInit)", err, errlen) ||
      !cu_ok(g, g->cu.DeviceGet(&g->cudev, 0), "device 0", err, errlen) ||
      !cu_ok(g, g->cu.DeviceGetAttribute(&major, 75, g->cudev), "device query", err, errlen) ||
      !cu_ok(g, g->cu.DeviceGetAttribute(&minor, 76, g->cudev), "device query", err, errlen) ||
      !cu_ok(g, g->cu.PrimaryCtxRetain(&g->cuctx, g->cudev), "context", err, errlen) ||
      !cu_ok(g, g->cu.CtxSetCurrent(g->cuctx), "context", err, errlen))
    return false;
  g->sm = major * 10 + minor;
  g->align = 256;
  snprintf(g->arch, sizeof g->arch, "sm_%d", g->sm);
  g->cu.DeviceGetName(g->name, (int)sizeof g->name - 1, g->cudev);
  return true;
}

RtGpu *rt_gpu_open(RtGpuKind kind, char *err, size_t errlen) {
  RtGpu *g = calloc(1, sizeof *g);
  if (!g) return fail(err, errlen, "out of memory"), NULL;
  g->kind = kind;
  if (!(kind == RT_GPU_OPENCL ? open_opencl(g, err, errlen) : open_cuda(g, err, errlen))) {
    rt_gpu_close(g);
    return NULL;
  }
  return g;
}

const char *rt_gpu_device_name(const RtGpu *g) { return g->name; }

static void unload(RtGpu *g) {
  for (int i = 0; i < g->nk; i++)
    if (g->k[i].cl) g->cl.ReleaseKernel(g->k[i].cl);
  free(g->k);
  g->k = NULL, g->nk = 0;
  if (g->prog) g->cl.ReleaseProgram(g->prog);
  if (g->mod) g->cu.ModuleUnload(g->mod);
  g->prog = NULL, g->mod = NULL;
}

void rt_gpu_close(RtGpu *g) {
  if (!g) return;
  unload(g);
  while (g->bufs) {
    RtGpuBuf *b = g->bufs;
    g->bufs = b->next;
    if (b->cl) g->cl.ReleaseMemObject(b->cl);
    if (b->cu && !b->sub) g->cu.MemFree(b->cu);
    free(b);
  }
  if (g->q) g->cl.ReleaseCommandQueue(g->q);
  if (g->ctx) g->cl.ReleaseContext(g->ctx);
  if (g->cuctx) g->cu.PrimaryCtxRelease(g->cudev);
  if (g->cl.lib) dlclose(g->cl.lib);
  if (g->cu.lib) dlclose(g->cu.lib);
  free(g);
}

static bool load_opencl(RtGpu *g, const char *src, char **log, char *err, size_t errlen) {
  cl_int rc;
  if (!(g->prog = g->cl.CreateProgramWithSource(g->ctx, 1, &src, NULL, &rc))) return cl_ok(rc, "program", err, errlen);
  rc = g->cl.BuildProgram(g->prog, 1, &g->dev, "-cl-std=CL1.2 -cl-fp32-correctly-rounded-divide-sqrt", NULL, NULL);
  if (rc != CL_SUCCESS) {
    size_t n = 0;
    g->cl.GetProgramBuildInfo(g->prog, g->dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    if (log && (*log = calloc(1, n + 1)))
      g->cl.GetProgramBuildInfo(g->prog, g->dev, CL_PROGRAM_BUILD_LOG, n, *log, NULL);
    return fail(err, errlen, "the OpenCL compiler rejected the kernels (error %d)", (int)rc);
  }
  cl_uint n = 0;
  if (!cl_ok(g->cl.CreateKernelsInProgram(g->prog, 0, NULL, &n), "kernels", err, errlen)) return false;
  cl_kernel *ks = calloc(n ? n : 1, sizeof *ks);
  if (!ks || !(g->k = calloc(n ? n : 1, sizeof *g->k))) return free(ks), fail(err, errlen, "out of memory");
  rc = g->cl.CreateKernelsInProgram(g->prog, n, ks, NULL);
  for (cl_uint i = 0; rc == CL_SUCCESS && i < n; i++) {
    g->k[g->nk].cl = ks[i];
    g->cl.GetKernelInfo(ks[i], CL_KERNEL_FUNCTION_NAME, sizeof g->k[0].name - 1, g->k[g->nk++].name, NULL);
  }
  free(ks);
  return cl_ok(rc, "kernels", err, errlen);
}

const char *rt_gpu_arch(const RtGpu *g) { return g->arch; }

// The kernel names of a CUDA source: every `KERNEL name(` (the renderer's spelling).
bool rt_gpu_load_ptx(RtGpu *g, const char *ptx, const char *src, char *err, size_t errlen) {
  if (g->kind != RT_GPU_CUDA) return fail(err, errlen, "PTX is for the cuda target");
  unload(g);
  bool ok = cu_ok(g, g->cu.ModuleLoadData(&g->mod, ptx), "module load", err, errlen);
  int cap = 0;
  for (const char *p = src; ok && (p = strstr(p, "\nKERNEL ")); p += 8) cap++;
  if (ok && !(g->k = calloc(cap ? (size_t)cap : 1, sizeof *g->k))) return fail(err, errlen, "out of memory");
  for (const char *p = src; ok && (p = strstr(p, "\nKERNEL ")); p += 8) {
    const char *b = p + 8, *e = strchr(b, '(');
    Kern *k = &g->k[g->nk++];
    snprintf(k->name, sizeof k->name, "%.*s", (int)(e ? e - b : 0), b);
    ok = cu_ok(g, g->cu.ModuleGetFunction(&k->cu, g->mod, k->name), "kernel lookup", err, errlen);
  }
  return ok;
}

static bool load_cuda(RtGpu *g, const char *src, char **log, char *err, size_t errlen) {
  char *ptx = NULL;
  if (!rt_nvrtc_compile(src, g->arch, &ptx, log, err, errlen)) return false;
  bool ok = rt_gpu_load_ptx(g, ptx, src, err, errlen);
  free(ptx);
  return ok;
}

bool rt_gpu_load(RtGpu *g, const char *src, char **log, char *err, size_t errlen) {
  if (log) *log = NULL;
  unload(g);
  return g->kind == RT_GPU_OPENCL ? load_opencl(g, src, log, err, errlen) : load_cuda(g, src, log, err, errlen);
}

RtGpuBuf *rt_gpu_alloc(RtGpu *g, size_t bytes, char *err, size_t errlen) {
  RtGpuBuf *b = calloc(1, sizeof *b);
  if (!b) return fail(err, errlen, "out of memory"), NULL;
  if (bytes == 0) bytes = 4;
  bool ok;
  if (g->kind == RT_GPU_OPENCL) {
    cl_int rc;
    b->cl = g->cl.CreateBuffer(g->ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    ok = b->cl ? true : fail(err, errlen, "cannot allocate %zu bytes of device memory (OpenCL error %d)", bytes, rc);
  } else {
    ok = cu_ok(g, g->cu.MemAlloc(&b->cu, bytes), "allocation", err, errlen);
  }
  if (!ok) return free(b), NULL;
  b->next = g->bufs, g->bufs = b;
  return b;
}

size_t rt_gpu_align(const RtGpu *g) { return g->align; }

RtGpuBuf *rt_gpu_sub(RtGpu *g, RtGpuBuf *parent, size_t offset, size_t bytes, char *err, size_t errlen) {
  RtGpuBuf *b = calloc(1, sizeof *b);
  if (!b) return fail(err, errlen, "out of memory"), NULL;
  if (offset % g->align) return free(b), fail(err, errlen, "sub-buffer offset %zu is not aligned", offset), NULL;
  if (bytes == 0) bytes = 4;
  if (g->kind == RT_GPU_OPENCL) {
    size_t region[2] = {offset, bytes};
    cl_int rc;
    if (!(b->cl = g->cl.CreateSubBuffer(parent->cl, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, region, &rc)))
      return free(b), cl_ok(rc, "sub-buffer", err, errlen), NULL;
  } else {
    b->cu = parent->cu + offset, b->sub = true;
  }
  b->next = g->bufs, g->bufs = b;
  return b;
}

void rt_gpu_buf_free(RtGpu *g, RtGpuBuf *b) {
  for (RtGpuBuf **p = &g->bufs; b && *p; p = &(*p)->next)
    if (*p == b) {
      *p = b->next;
      if (b->cl) g->cl.ReleaseMemObject(b->cl);
      if (b->cu && !b->sub) g->cu.MemFree(b->cu);
      free(b);
      return;
    }
}

bool rt_gpu_write(RtGpu *g, RtGpuBuf *b, const void *src, size_t bytes, char *err, size_t errlen) {
  if (!bytes) return true;
  if (g->kind == RT_GPU_OPENCL)
    return cl_ok(g->cl.EnqueueWriteBuffer(g->q, b->cl, CL_TRUE, 0, bytes, src, 0, NULL, NULL), "write", err, errlen);
  return cu_ok(g, g->cu.MemcpyHtoD(b->cu, src, bytes), "copy to the device", err, errlen);
}

bool rt_gpu_read(RtGpu *g, RtGpuBuf *b, void *dst, size_t bytes, char *err, size_t errlen) {
  if (!bytes) return true;
  if (g->kind == RT_GPU_OPENCL)
    return cl_ok(g->cl.EnqueueReadBuffer(g->q, b->cl, CL_TRUE, 0, bytes, dst, 0, NULL, NULL), "read", err, errlen);
  return cu_ok(g, g->cu.MemcpyDtoH(dst, b->cu, bytes), "copy from the device", err, errlen);
}

bool rt_gpu_launch(RtGpu *g, const char *name, RtGpuBuf *const *args, int nargs, const size_t global[3],
                   const size_t local[3], char *err, size_t errlen) {
  Kern *k = NULL;
  for (int i = 0; i < g->nk && !k; i++)
    if (!strcmp(g->k[i].name, name)) k = &g->k[i];
  if (!k) return fail(err, errlen, "no kernel %s is loaded", name);
  if (g->kind == RT_GPU_OPENCL) {
    for (int i = 0; i < nargs; i++)
      if (!cl_ok(g->cl.SetKernelArg(k->cl, (cl_uint)i, sizeof(cl_mem), &args[i]->cl), "kernel argument", err, errlen))
        return false;
    return cl_ok(g->cl.EnqueueNDRangeKernel(g->q, k->cl, 3, NULL, global, local, 0, NULL, NULL), name, err, errlen);
  }
  void *params[32];
  if (nargs > 32) return fail(err, errlen, "too many kernel arguments");
  for (int i = 0; i < nargs; i++) params[i] = &args[i]->cu;
  return cu_ok(g, g->cu.LaunchKernel(k->cu, (unsigned)(global[0] / local[0]), (unsigned)(global[1] / local[1]),
                                     (unsigned)(global[2] / local[2]), (unsigned)local[0], (unsigned)local[1],
                                     (unsigned)local[2], 0, NULL, params, NULL),
               name, err, errlen);
}

bool rt_gpu_finish(RtGpu *g, char *err, size_t errlen) {
  if (g->kind == RT_GPU_OPENCL) return cl_ok(g->cl.Finish(g->q), "finish", err, errlen);
  return cu_ok(g, g->cu.CtxSynchronize(), "synchronize", err, errlen);
}
