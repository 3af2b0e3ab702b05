// runtime/device.c: where a compiled program runs (rt.h, "device.c"). Sits
// at the end of the data flow: a HeedProgram (runtime/heed_abi.h, whoever
// compiled it) + a device -> its regions allocated once, tensors copied in
// at (region, offset), an entry run, results copied out. The CPU device:
// host memory (not initialised), memcpy, the calling thread plus an RtPool.
#include <string.h>

#include "runtime/rt.h"

enum { ALIGN = 64 };

typedef struct {
  RtPool *pool;
  HeedCpuStream stream;
} CpuDev;

static void *cpu_alloc(RtDevice *dev, size_t bytes) {
  (void)dev;
  size_t n = (bytes + ALIGN - 1) / ALIGN * ALIGN;
  if (n < bytes) return NULL;
  return rt_aligned_alloc(ALIGN, n ? n : ALIGN);  // not touched: pages a run never uses stay unmapped
}

static void cpu_free(RtDevice *dev, void *p) {
  (void)dev;
  rt_free(p);
}

static int cpu_copy(RtDevice *dev, void *dst, const void *src, size_t bytes) {
  (void)dev;
  if (bytes && (!dst || !src)) return HEED_ABI_ERR_ARG;
  if (bytes) memmove(dst, src, bytes);
  return HEED_ABI_OK;
}

static int cpu_run(RtDevice *dev, const HeedProgram *p, HeedEntry entry, void *const *regions, const int64_t *symdims) {
  CpuDev *c = dev->ud;
  if (!entry) return HEED_ABI_ERR_ARG;
  return entry(p, regions, symdims, &c->stream);
}

static int cpu_sync(RtDevice *dev) {
  (void)dev;
  return HEED_ABI_OK;  // run returns when the entry is done
}

RtDevice *rt_device_cpu_new(int nthreads) {
  RtDevice *dev = rt_calloc(1, sizeof *dev);
  CpuDev *c = rt_calloc(1, sizeof *c);
  if (!dev || !c) goto fail;
  if (nthreads > 1 && !(c->pool = rt_pool_new(nthreads))) goto fail;
  c->stream = (HeedCpuStream){.pool = c->pool, .nthreads = rt_pool_size(c->pool)};
  *dev = (RtDevice){.name = "cpu", .alloc = cpu_alloc, .free = cpu_free, .copy_in = cpu_copy, .copy_out = cpu_copy,
                    .run = cpu_run, .sync = cpu_sync, .ud = c};
  return dev;
fail:
  rt_free(dev);
  rt_free(c);
  return NULL;
}

RtPool *rt_device_cpu_pool(const RtDevice *dev) { return dev ? ((const CpuDev *)dev->ud)->pool : NULL; }

void rt_device_free(RtDevice *dev) {
  if (!dev) return;
  CpuDev *c = dev->ud;
  rt_pool_free(c->pool);
  rt_free(c);
  rt_free(dev);
}

static const char *region_name(int r) {
  static const char *names[HEED_REGION_COUNT] = {"params", "opt_state", "kv_cache", "inputs", "arena", "workspace"};
  return r >= 0 && r < HEED_REGION_COUNT ? names[r] : "?";
}

int rt_regions_alloc(RtDevice *dev, const HeedProgram *p, RtRegions *r, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  if (heed_abi_check(p) != HEED_ABI_OK) {
    if (err && errlen)
      snprintf(err, errlen, "the program is not of ABI version %u (magic 0x%08x, version %u)", HEED_ABI_VERSION,
               p ? p->magic : 0, p ? p->abi_version : 0);
    return HEED_ABI_ERR_VERSION;
  }
  r->dev = dev, r->p = p;
  for (int i = 0; i < HEED_REGION_COUNT; i++) {
    uint64_t b = p->region_bytes[i];
    if (!b) continue;
    if (b > SIZE_MAX - ALIGN || !(r->region[i] = dev->alloc(dev, (size_t)b))) {
      if (err && errlen)
        snprintf(err, errlen, "out of memory: the %s region (%llu bytes) on the %s device", region_name(i),
                 (unsigned long long)b, dev->name);
      rt_regions_free(r);
      return HEED_ABI_ERR_NOMEM;
    }
  }
  return HEED_ABI_OK;
}

void rt_regions_free(RtRegions *r) {
  for (int i = 0; r->dev && i < HEED_REGION_COUNT; i++) r->dev->free(r->dev, r->region[i]);
  memset(r, 0, sizeof *r);
}

int64_t rt_tensor_bytes(const RtRegions *r, const HeedTensorDesc *t, const int64_t *symdims) {
  for (uint32_t i = 0; i < r->p->n_sym; i++)
    if (symdims[i] > r->p->sym_max[i]) return -1;
  int64_t n = heed_abi_numel(t, symdims, r->p->n_sym);
  uint32_t es = heed_abi_dtype_size(t->dt);
  return n < 0 || !es || n > INT64_MAX / es ? -1 : n * es;
}

void *rt_tensor_data(const RtRegions *r, const HeedTensorDesc *t) {
  return t->region < HEED_REGION_COUNT && r->region[t->region] ? (char *)r->region[t->region] + t->off : NULL;
}

static int tensor_copy(RtRegions *r, const HeedTensorDesc *t, const int64_t *symdims, void *host, bool in) {
  if (t->region >= HEED_REGION_COUNT) return HEED_ABI_ERR_ARG;
  int64_t n = rt_tensor_bytes(r, t, symdims);
  char *dev = rt_tensor_data(r, t);
  if (n < 0 || (n && !dev) || t->off + (uint64_t)n > r->p->region_bytes[t->region]) return HEED_ABI_ERR_ARG;
  return in ? r->dev->copy_in(r->dev, dev, host, (size_t)n) : r->dev->copy_out(r->dev, host, dev, (size_t)n);
}

int rt_tensor_copy_in(RtRegions *r, const HeedTensorDesc *t, const int64_t *symdims, const void *src) {
  return tensor_copy(r, t, symdims, (void *)src, true);
}

int rt_tensor_copy_out(RtRegions *r, const HeedTensorDesc *t, const int64_t *symdims, void *dst) {
  return tensor_copy(r, t, symdims, dst, false);
}

int rt_program_run(RtRegions *r, HeedEntry entry, const int64_t *symdims) {
  if (!entry) return HEED_ABI_ERR_ARG;
  int rc = r->dev->run(r->dev, r->p, entry, r->region, symdims);
  int sc = r->dev->sync(r->dev);
  return rc ? rc : sc;
}

const char *rt_abi_status_str(int status) {
  switch (status) {
  case HEED_ABI_OK: return "success";
  case HEED_ABI_ERR_VERSION: return "a program of another ABI version";
  case HEED_ABI_ERR_ARG: return "a bad argument (a size over its bound, a missing region or entry)";
  case HEED_ABI_ERR_NOMEM: return "out of device memory";
  case HEED_ABI_ERR_RUN: return "a run-time error in the program";
  case HEED_ABI_ERR_DEVICE: return "a device error";
  }
  return "an unknown status";
}
