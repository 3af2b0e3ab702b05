// engine/gpu_exec.c: the GPU executor (gpu_exec.h): a graph scheduled under
// cg_gpu_caps, its kernels rendered for the bound sizes and compiled by the
// device's compiler (OpenCL) or NVRTC (CUDA); device memory as the memory
// plan lays it out (passes/memplan.h: the computed values in one arena,
// temporaries sharing bytes where their lifetimes do not overlap; leaves in
// buffers of their own; reshapes alias their source); launches in run order.
#include <stdlib.h>
#include <string.h>

#include "engine/gpu_exec.h"
#include "codegen/cg.h"
#include "codegen/gpu/gpu.h"
#include "passes/memplan.h"
#include "runtime/gpu.h"
#include "runtime/rt.h"

struct HeedGpuExec {
  Compilation *c;
  const IrGraph *g;
  bool cuda;
  Schedule *s;
  RtGpu *dev;
  CgGpuProgram *prog;     // rendered for symvals
  int64_t symvals[IR_MAX_SYMS];
  RtGpuBuf **buf;         // per node id (aliases resolved through s->alias)
  MemPlan *plan;          // for symvals
  RtGpuBuf *arena;        // the plan's arena; buf[call] are parts of it
  char name[160];
};

bool heed_gpu_target(const char *name, bool *cuda) {
  if (!name || (strcmp(name, "opencl") && strcmp(name, "cuda"))) return false;
  if (cuda) *cuda = !strcmp(name, "cuda");
  return true;
}

static Schedule *gpu_schedule(Compilation *c, const IrGraph *g) {
  SchedCaps caps;
  cg_gpu_caps(&caps);
  Schedule *s = sched_build(g, &caps, &c->diag);
  for (int k = 0; s && k < s->nk; k++)
    if (!cg_gpu_supports(g, &s->k[k], &c->diag)) {
      sched_free(s);
      return NULL;
    }
  return s;
}

HeedGpuExec *heed_gpu_exec_new(Compilation *c, const IrGraph *g, bool cuda) {
  HeedGpuExec *x = heed_calloc(1, sizeof *x);
  char err[512];
  if (!x || !(x->buf = heed_calloc((size_t)g->nodes.len + 1, sizeof *x->buf))) {
    heed_free(x);
    diag_error(&c->diag, (SrcLoc){0}, "out of memory");
    return NULL;
  }
  x->c = c, x->g = g, x->cuda = cuda;
  if (!(x->s = gpu_schedule(c, g))) {
    heed_gpu_exec_free(x);
    return NULL;
  }
  if (!(x->dev = rt_gpu_open(cuda ? RT_GPU_CUDA : RT_GPU_OPENCL, err, sizeof err))) {
    diag_error(&c->diag, (SrcLoc){0}, "the %s target: %s", cuda ? "cuda" : "opencl", err);
    heed_gpu_exec_free(x);
    return NULL;
  }
  snprintf(x->name, sizeof x->name, "%s: %s", cuda ? "cuda" : "opencl", rt_gpu_device_name(x->dev));
  return x;
}

const char *heed_gpu_exec_name(const HeedGpuExec *x) { return x->name; }

static RtGpuBuf *alloc_node(HeedGpuExec *x, const IrNode *n) {
  char err[512];
  size_t bytes = (size_t)ir_type_numel(&n->ty, x->symvals) * ir_dtype_info[n->ty.dt].size;
  RtGpuBuf *b = rt_gpu_alloc(x->dev, bytes, err, sizeof err);
  if (!b) diag_error(&x->c->diag, n->loc, "the %s target: %s", x->cuda ? "cuda" : "opencl", err);
  return b;
}

static void free_bufs(HeedGpuExec *x) {
  for (int i = 0; i < x->g->nodes.len; i++) {
    if (x->buf[i]) rt_gpu_buf_free(x->dev, x->buf[i]);
    x->buf[i] = NULL;
  }
  if (x->arena) rt_gpu_buf_free(x->dev, x->arena);
  x->arena = NULL;
  pass_memplan_free(x->plan);
  x->plan = NULL;
}

// The plan's arena on the device and every call's result in it.
static bool place(HeedGpuExec *x) {
  char err[512];
  x->plan = pass_memplan_build(x->g, x->s, x->symvals, (int)rt_gpu_align(x->dev), 0, false);
  if (!x->plan || x->plan->total < 0) {
    diag_error(&x->c->diag, (SrcLoc){0}, "the memory plan %s", x->plan ? "overflows" : "is out of memory");
    return false;
  }
  if (!(x->arena = rt_gpu_alloc(x->dev, (size_t)x->plan->total, err, sizeof err))) {
    diag_error(&x->c->diag, (SrcLoc){0}, "the %s target: %s (the arena: %lld bytes)", x->cuda ? "cuda" : "opencl",
               err, (long long)x->plan->total);
    return false;
  }
  for (int c = 0; c < x->s->nk; c++) {
    int id = x->s->alias[x->s->k[c].root];
    if (x->buf[id]) continue;
    int64_t off = x->plan->offset[id], bytes = x->plan->bytes[id];
    x->buf[id] = off >= 0 ? rt_gpu_sub(x->dev, x->arena, (size_t)off, (size_t)bytes, err, sizeof err)
                          : alloc_node(x, x->g->nodes.data[id]);
    if (!x->buf[id]) {
      if (off >= 0) diag_error(&x->c->diag, (SrcLoc){0}, "the %s target: %s", x->cuda ? "cuda" : "opencl", err);
      return false;
    }
  }
  return true;
}

// NVRTC's PTX of src for arch, through the compile cache (heed_cache_dir:
// the CPU's object cache; the key is the architecture and the whole source,
// so a changed kernel or a newer heed's renderer misses). *ptx malloc'd.
static bool cached_ptx(const char *src, const char *arch, char **ptx, char **log, char *err, size_t errlen) {
#ifdef HEED_HAVE_LLVM
  const char *dir = heed_cache_dir();
  size_t alen = strlen(arch), slen = strlen(src), olen = 0;
  char *key = dir ? malloc(alen + slen + 8) : NULL;
  if (key) {
    memcpy(key, "ptx:", 4);
    memcpy(key + 4, arch, alen);
    key[4 + alen] = '\n';
    memcpy(key + 5 + alen, src, slen);
    char *hit = cg_objcache_get(dir, key, alen + slen + 5, &olen);
    if (hit && olen && !memchr(hit, 0, olen - 1) && hit[olen - 1] == 0) {
      free(key);
      *ptx = hit;
      if (log) *log = NULL;
      return true;
    }
    free(hit);
  }
  bool ok = rt_nvrtc_compile(src, arch, ptx, log, err, errlen);
  if (ok && key) cg_objcache_put(dir, key, alen + slen + 5, *ptx, strlen(*ptx) + 1, 0);
  free(key);
  return ok;
#else  // the cache is the CPU backend's object cache (codegen/objcache.c): none without it
  return rt_nvrtc_compile(src, arch, ptx, log, err, errlen);
#endif
}

// Renders and loads the kernels; a compiler error's log and the source are
// in the diagnostic.
static bool load(HeedGpuExec *x) {
  cg_gpu_program_free(x->prog);
  x->prog = cg_gpu_render(x->g, x->s, x->symvals, x->cuda ? CG_GPU_CUDA : CG_GPU_OPENCL, &x->c->diag);
  if (!x->prog) return false;
  char err[512], *log = NULL, *ptx = NULL;
  bool ok;
  if (x->cuda) {
    ok = cached_ptx(x->prog->src, rt_gpu_arch(x->dev), &ptx, &log, err, sizeof err) &&
         rt_gpu_load_ptx(x->dev, ptx, x->prog->src, err, sizeof err);
    free(ptx);
  } else {
    ok = rt_gpu_load(x->dev, x->prog->src, &log, err, sizeof err);
  }
  if (ok) {
    free(log);
    return true;
  }
  diag_error(&x->c->diag, (SrcLoc){0}, "the %s target: %s", x->cuda ? "cuda" : "opencl", err);
  if (log) diag_note(&x->c->diag, (SrcLoc){0}, "the compiler's log:\n%s", log);
  diag_note(&x->c->diag, (SrcLoc){0}, "the source:\n%s", x->prog->src);
  free(log);
  cg_gpu_program_free(x->prog);
  x->prog = NULL;
  return false;
}

static void *pack(IrDType dt, const double *v, int64_t n) {
  size_t es = ir_dtype_info[dt].size;
  void *p = heed_malloc(es * (size_t)(n ? n : 1));
  for (int64_t i = 0; p && i < n; i++) switch (dt) {
    case IR_F32: ((float *)p)[i] = (float)v[i]; break;
    case IR_I32: ((int32_t *)p)[i] = (int32_t)v[i]; break;
    case IR_I64: ((int64_t *)p)[i] = (int64_t)v[i]; break;
    case IR_I8: ((int8_t *)p)[i] = (int8_t)v[i]; break;
    default: ((uint8_t *)p)[i] = (uint8_t)v[i]; break;
    }
  return p;
}


bool heed_gpu_exec_bind(HeedGpuExec *x, const int64_t *symvals, double *const *inputs, double *const *params) {
  const IrGraph *g = x->g;
  int ns = g->syms.len < IR_MAX_SYMS ? g->syms.len : IR_MAX_SYMS;
  bool same = x->prog && !memcmp(x->symvals, symvals, sizeof(int64_t) * (size_t)ns);
  memcpy(x->symvals, symvals, sizeof(int64_t) * (size_t)ns);
  if (!same) {
    free_bufs(x);
    if (!load(x) || !place(x)) return false;
  }
  char err[512];
  for (int pass = 0; pass < 2; pass++) {
    int n = pass ? g->params.len : g->inputs.len;
    for (int i = 0; i < n; i++) {
      const IrNode *nd = pass ? g->params.data[i] : g->inputs.data[i];
      int64_t k = ir_type_numel(&nd->ty, x->symvals);
      if (!x->buf[nd->id] && !(x->buf[nd->id] = alloc_node(x, nd))) return false;
      void *host = pack(nd->ty.dt, pass ? params[i] : inputs[i], k);
      bool ok = host && rt_gpu_write(x->dev, x->buf[nd->id], host, (size_t)k * ir_dtype_info[nd->ty.dt].size, err,
                                     sizeof err);
      heed_free(host);
      if (!ok) {
        diag_error(&x->c->diag, nd->loc, "the %s target: %s", x->cuda ? "cuda" : "opencl", host ? err : "out of memory");
        return false;
      }
    }
  }
  return true;
}

bool heed_gpu_exec_run(HeedGpuExec *x) {
  char err[512];
  bool ok = x->prog != NULL;
  for (int c = 0; ok && c < x->prog->nl; c++) {
    const CgGpuLaunch *l = &x->prog->l[c];
    RtGpuBuf *args[CG_GPU_MAX_ARGS];
    for (int j = 0; j < l->nargs; j++) args[j] = x->buf[l->arg[j]];
    ok = rt_gpu_launch(x->dev, l->name, args, l->nargs, l->global, l->local, err, sizeof err);
  }
  ok = ok && rt_gpu_finish(x->dev, err, sizeof err);
  if (!ok) diag_error(&x->c->diag, (SrcLoc){0}, "the %s target: %s", x->cuda ? "cuda" : "opencl",
                      x->prog ? err : "no kernels are loaded");
  return ok;
}

double *heed_gpu_exec_output(HeedGpuExec *x, int i, int64_t *numel) {
  const IrNode *n = x->g->outputs.data[i];
  int64_t k = ir_type_numel(&n->ty, x->symvals);
  size_t es = ir_dtype_info[n->ty.dt].size;
  void *raw = heed_malloc(es * (size_t)(k ? k : 1));
  double *v = heed_malloc(sizeof(double) * (size_t)(k ? k : 1));
  char err[512];
  RtGpuBuf *b = x->buf[x->s->alias[n->id]];
  if (!raw || !v || !b || !rt_gpu_read(x->dev, b, raw, (size_t)k * es, err, sizeof err)) {
    heed_free(raw);
    heed_free(v);
    return NULL;
  }
  for (int64_t j = 0; j < k; j++) switch (n->ty.dt) {
    case IR_F32: v[j] = ((const float *)raw)[j]; break;
    case IR_I32: v[j] = ((const int32_t *)raw)[j]; break;
    case IR_I64: v[j] = (double)((const int64_t *)raw)[j]; break;
    case IR_I8: v[j] = ((const int8_t *)raw)[j]; break;
    default: v[j] = ((const uint8_t *)raw)[j]; break;
    }
  heed_free(raw);
  *numel = k;
  return v;
}

void heed_gpu_exec_free(HeedGpuExec *x) {
  if (!x) return;
  if (x->dev) free_bufs(x);
  rt_gpu_close(x->dev);
  cg_gpu_program_free(x->prog);
  sched_free(x->s);
  heed_free(x->buf);
  heed_free(x);
}

int heed_gpu_emit(Compilation *c, const HeedCompileOpts *base, const char *kind, int64_t batch, int64_t seq,
                  const char *arch, FILE *out) {
  HeedCompileOpts o = *base;
  o.stop = HEED_STOP_PASSES;
  HeedCompiled hc;
  int rc = heed_compile(c, &o, &hc);
  Schedule *s = rc == HEED_OK ? gpu_schedule(c, hc.g) : NULL;
  if (!s) {
    heed_compiled_free(&hc);
    return rc != HEED_OK ? rc : HEED_ERR_CHECK;
  }
  int64_t sv[IR_MAX_SYMS];
  for (int i = 0; i < IR_MAX_SYMS; i++) sv[i] = i < hc.g->syms.len && !strcmp(hc.g->syms.data[i], "B") ? batch : seq;
  bool cuda = strcmp(kind, "opencl") != 0;
  CgGpuProgram *p = cg_gpu_render(hc.g, s, sv, cuda ? CG_GPU_CUDA : CG_GPU_OPENCL, &c->diag);
  rc = p ? HEED_OK : HEED_ERR_CHECK;
  if (p && !strcmp(kind, "ptx")) {
    char *ptx = NULL, *log = NULL, err[512];
    if (cached_ptx(p->src, arch, &ptx, &log, err, sizeof err)) {
      fputs(ptx, out);
    } else {
      diag_error(&c->diag, (SrcLoc){0}, "%s", err);
      if (log) diag_note(&c->diag, (SrcLoc){0}, "NVRTC's log:\n%s", log);
      diag_note(&c->diag, (SrcLoc){0}, "the source:\n%s", p->src);
      rc = HEED_ERR_CHECK;
    }
    free(ptx);
    free(log);
  } else if (p) {
    fputs(p->src, out);
  }
  cg_gpu_program_free(p);
  sched_free(s);
  heed_compiled_free(&hc);
  return rc;
}
