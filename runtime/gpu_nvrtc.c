// runtime/gpu_nvrtc.c: CUDA C -> PTX with NVRTC, loaded at run time with
// dlopen (HEED_NVRTC names the library; else libnvrtc.so.13, .12, then the
// toolkit's /usr/local/cuda/lib64). Needs no driver and no GPU: CI compiles
// every rendered kernel with it (tests/gpu). See runtime/gpu.h.
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gpu.h"

typedef int NvResult;
typedef void *NvProg;

typedef struct {
  void *lib;
  NvResult (*Create)(NvProg *, const char *, const char *, int, const char *const *, const char *const *);
  NvResult (*Compile)(NvProg, int, const char *const *);
  NvResult (*LogSize)(NvProg, size_t *);
  NvResult (*Log)(NvProg, char *);
  NvResult (*PtxSize)(NvProg, size_t *);
  NvResult (*Ptx)(NvProg, char *);
  NvResult (*Destroy)(NvProg *);
  const char *(*ErrorString)(NvResult);
} NvApi;

static bool fail(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && n) vsnprintf(err, n, fmt, ap);
  va_end(ap);
  return false;
}

static bool nv_load(NvApi *a, char *err, size_t errlen) {
  static const char *const names[] = {"nvrtcCreateProgram", "nvrtcCompileProgram", "nvrtcGetProgramLogSize",
                                      "nvrtcGetProgramLog", "nvrtcGetPTXSize", "nvrtcGetPTX",
                                      "nvrtcDestroyProgram", "nvrtcGetErrorString"};
  const char *env = getenv("HEED_NVRTC");
  const char *paths[] = {env && *env ? env : "libnvrtc.so.13", "libnvrtc.so.12", "/usr/local/cuda/lib64/libnvrtc.so",
                         "libnvrtc.so"};
  for (size_t i = 0; i < sizeof paths / sizeof *paths && !a->lib; i++) a->lib = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
  if (!a->lib) return fail(err, errlen, "NVRTC cannot be loaded (libnvrtc.so of the CUDA toolkit; HEED_NVRTC=PATH)");
  void **slot = (void **)&a->Create;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!(slot[i] = dlsym(a->lib, names[i]))) return fail(err, errlen, "NVRTC lacks %s", names[i]);
  return true;
}

bool rt_nvrtc_compile(const char *src, const char *arch, char **ptx, char **log, char *err, size_t errlen) {
  static NvApi api;  // loaded once per process, never unloaded
  *ptx = NULL;
  if (log) *log = NULL;
  if (!api.ErrorString && !nv_load(&api, err, errlen)) {
    if (api.lib) dlclose(api.lib);
    memset(&api, 0, sizeof api);
    return false;
  }
  char opt_arch[40];
  snprintf(opt_arch, sizeof opt_arch, "--gpu-architecture=%s", arch);
  const char *opts[] = {opt_arch, "--std=c++17", "-default-device"};
  NvProg p = NULL;
  NvResult rc = api.Create(&p, src, "heed_kernels.cu", 0, NULL, NULL);
  if (rc) return fail(err, errlen, "NVRTC: %s", api.ErrorString(rc));
  rc = api.Compile(p, 3, opts);
  size_t n = 0;
  if (log && api.LogSize(p, &n) == 0 && n > 1 && (*log = calloc(1, n + 1))) api.Log(p, *log);
  if (rc) {
    api.Destroy(&p);
    return fail(err, errlen, "NVRTC could not compile the kernels for %s: %s", arch, api.ErrorString(rc));
  }
  if (api.PtxSize(p, &n) || !(*ptx = calloc(1, n + 1)) || api.Ptx(p, *ptx)) {
    free(*ptx);
    *ptx = NULL;
    api.Destroy(&p);
    return fail(err, errlen, "NVRTC: no PTX");
  }
  api.Destroy(&p);
  return true;
}
