// engine/exec.c: the executor behind heed run, grad and bench (exec.h): the
// compiled backend by default, the reference interpreter with --interp.
// Compiled code runs through the runtime's ABI: the CPU program described
// as a HeedProgram (codegen/abi.c) for the bound sizes, its regions on the
// CPU device (runtime/device.c: one allocation per region), the leaves
// copied in at their descriptors, the forward entry run, outputs copied out.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/exec.h"
#include "engine/gpu_exec.h"
#include "runtime/rt.h"
#ifdef HEED_HAVE_LLVM
#include "codegen/cg.h"
#endif

struct HeedExec {
  Compilation *c;
  const IrGraph *g;
  bool interp;
  int64_t symvals[IR_MAX_SYMS];
  double **in, **par;         // interpreter: bound data (owned copies)
  IrValues *vals;             // interpreter: the last run
#ifdef HEED_HAVE_LLVM
  CgProgram *prog;            // compiled
  HeedProgram *hp;            // compiled: prog through the ABI, planned for the bound sizes
  RtRegions regions;          // its regions on dev
#endif
  RtDevice *dev;              // the CPU device (its pool: the compiled code's threads)
  int threads;
  char name[96];
  HeedGpuExec *gpu;           // --target opencl|cuda (gpu_exec.c)
};

static void free_vec(double **v, int n) {
  for (int i = 0; v && i < n; i++) heed_free(v[i]);
  heed_free(v);
}

HeedExec *heed_exec_new(Compilation *c, const IrGraph *g, bool interp, int threads, bool profile) {
  HeedExec *x = heed_calloc(1, sizeof *x);
  if (!x) return NULL;
  x->c = c;
  x->g = g;
  x->interp = interp;
  x->threads = threads;
  bool cuda;
  if (!interp && heed_gpu_target(c->opts->target, &cuda)) {  // the GPU targets: gpu_exec.c
    if (!(x->gpu = heed_gpu_exec_new(c, g, cuda))) return heed_free(x), NULL;
    snprintf(x->name, sizeof x->name, "%.95s", heed_gpu_exec_name(x->gpu));
    return x;
  }
#ifndef HEED_HAVE_LLVM
  x->interp = true;  // built without the LLVM backend
  (void)profile;
#endif
  if (x->interp) {
    snprintf(x->name, sizeof x->name, "reference interpreter");
    return x;
  }
#ifdef HEED_HAVE_LLVM
  if (!(x->dev = rt_device_cpu_new(threads))) {
    diag_error(&c->diag, (SrcLoc){0}, "cannot start %d threads (out of memory or thread limit)", threads);
    heed_exec_free(x);
    return NULL;
  }
  RtPool *pool = rt_device_cpu_pool(x->dev);
  CgOptions o = {.pool = pool, .nthreads = rt_pool_size(pool), .parallel_for = (CgParallelFor)rt_parallel_for,
                 .cache_dir = heed_cache_dir(),
                 .profile = profile};
  Diag scratch;  // what the backend cannot compile yet is a note, not an error
  diag_init(&scratch, NULL);
  HeedCompiled hc;
  HeedCompileOpts ho = {.graph = (IrGraph *)g, .passes = "", .stop = HEED_STOP_EMIT, .target_diag = &scratch, .cg = o};
  heed_compile(c, &ho, &hc);
  x->prog = hc.prog, hc.prog = NULL;
  heed_compiled_free(&hc);
  const char *oom = x->prog || !scratch.log ? NULL : strstr(scratch.log, "out of memory");
  if (oom) {  // a failure, not something the backend cannot compile yet
    diag_error(&c->diag, (SrcLoc){0}, "cpu backend: %.*s", (int)strcspn(oom, "\n"), oom);
    diag_fini(&scratch);
    heed_exec_free(x);
    return NULL;
  }
  if (!x->prog) {
    const char *why = scratch.log ? strstr(scratch.log, "error: ") : NULL;
    size_t len = why ? strcspn(why + 7, "\n") : 0;
    diag_note(&c->diag, (SrcLoc){0}, "the CPU backend cannot compile %s yet (%.*s); running it on the reference interpreter",
              g->name, (int)len, why ? why + 7 : "unknown reason");
    diag_fini(&scratch);
    rt_device_free(x->dev);
    x->dev = NULL;
    x->interp = true;
    snprintf(x->name, sizeof x->name, "reference interpreter");
    return x;
  }
  diag_fini(&scratch);
  snprintf(x->name, sizeof x->name, "compiled, %d thread%s", o.nthreads, o.nthreads == 1 ? "" : "s");
#endif
  return x;
}

#ifdef HEED_HAVE_LLVM
static void to_native(IrDType dt, const double *v, int64_t n, void *out) {
  for (int64_t i = 0; i < n; i++) ir_dtype_info[dt].set(out, i, v[i]);
}

static void free_bufs(HeedExec *x) {
  rt_regions_free(&x->regions);
  cg_abi_free(x->hp);
  x->hp = NULL;
}

static void from_native(IrDType dt, const void *p, int64_t n, double *out) {
  for (int64_t i = 0; i < n; i++) out[i] = ir_dtype_info[dt].get(p, i);
}
#endif

bool heed_exec_bind(HeedExec *x, const int64_t *symvals, double *const *inputs, double *const *params) {
  const IrGraph *g = x->g;
  memcpy(x->symvals, symvals, sizeof(int64_t) * (size_t)(g->syms.len < IR_MAX_SYMS ? g->syms.len : IR_MAX_SYMS));
  if (x->gpu) return heed_gpu_exec_bind(x->gpu, symvals, inputs, params);
  if (x->interp) {
    free_vec(x->in, g->inputs.len);
    free_vec(x->par, g->params.len);
    x->in = heed_calloc((size_t)g->inputs.len + 1, sizeof(double *));
    x->par = heed_calloc((size_t)g->params.len + 1, sizeof(double *));
    if (!x->in || !x->par) return false;
    for (int pass = 0; pass < 2; pass++) {
      int n = pass ? g->params.len : g->inputs.len;
      for (int i = 0; i < n; i++) {
        const IrNode *nd = pass ? g->params.data[i] : g->inputs.data[i];
        int64_t k = ir_type_numel(&nd->ty, x->symvals);
        double *cp = heed_malloc(sizeof(double) * (size_t)(k > 0 ? k : 1));
        if (!cp) return false;
        memcpy(cp, pass ? params[i] : inputs[i], sizeof(double) * (size_t)k);
        (pass ? x->par : x->in)[i] = cp;
      }
    }
    return true;
  }
#ifdef HEED_HAVE_LLVM
  free_bufs(x);  // a plan for these sizes: the arena and the leaves' regions
  char err[256];
  int rc = HEED_ABI_OK;
  if (!(x->hp = cg_program_abi(x->prog, false, g, x->symvals, &x->c->diag))) return false;
  cg_program_release_work(x->prog);  // the ABI's runs use the workspace region: one workspace, not two
  if ((rc = rt_regions_alloc(x->dev, x->hp, &x->regions, err, sizeof err)) != HEED_ABI_OK) {
    diag_error(&x->c->diag, (SrcLoc){0}, "%s", err);
    return false;
  }
  for (int pass = 0; pass < 2 && rc == HEED_ABI_OK; pass++) {
    int n = pass ? g->params.len : g->inputs.len;
    for (int i = 0; i < n && rc == HEED_ABI_OK; i++) {
      const IrNode *nd = pass ? g->params.data[i] : g->inputs.data[i];
      const HeedTensorDesc *t = pass ? &x->hp->param[i] : &x->hp->in[i];
      int64_t bytes = rt_tensor_bytes(&x->regions, t, x->symvals);
      void *host = bytes >= 0 ? heed_malloc((size_t)bytes + 1) : NULL;
      if (!host) {
        diag_error(&x->c->diag, nd->loc, "out of memory for the values of %s (%lld bytes)", ir_op_name(nd->op),
                   (long long)bytes);
        return false;
      }
      to_native(nd->ty.dt, pass ? params[i] : inputs[i], ir_type_numel(&nd->ty, x->symvals), host);
      rc = rt_tensor_copy_in(&x->regions, t, x->symvals, host);
      heed_free(host);
    }
  }
  if (rc != HEED_ABI_OK) {
    diag_error(&x->c->diag, (SrcLoc){0}, "cpu device: %s", rt_abi_status_str(rc));
    return false;
  }
#endif
  return true;
}

bool heed_exec_run(HeedExec *x) {
  if (x->gpu) return heed_gpu_exec_run(x->gpu);
  if (x->interp) {
    ir_values_free(x->vals);
    x->vals = ir_interp(x->g, x->symvals, x->in, x->par, false, &x->c->diag);
    return x->vals != NULL;
  }
#ifdef HEED_HAVE_LLVM
  int rc = rt_program_run(&x->regions, x->hp->forward, x->symvals);
  if (rc != HEED_ABI_OK && rc != HEED_ABI_ERR_RUN)  // a run-time error is reported at its op already
    diag_error(&x->c->diag, (SrcLoc){0}, "cpu device: %s", rt_abi_status_str(rc));
  return rc == HEED_ABI_OK;
#else
  return false;
#endif
}

double *heed_exec_output(HeedExec *x, int i, int64_t *numel) {
  if (x->gpu) return heed_gpu_exec_output(x->gpu, i, numel);
  const IrNode *o = x->g->outputs.data[i];
  int64_t n = ir_type_numel(&o->ty, x->symvals);
  double *v = heed_malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  if (!v) return NULL;
  *numel = n;
  if (x->interp) {
    memcpy(v, x->vals->val[o->id], sizeof(double) * (size_t)n);
    return v;
  }
#ifdef HEED_HAVE_LLVM
  int64_t bytes = rt_tensor_bytes(&x->regions, &x->hp->out[i], x->symvals);
  void *host = bytes >= 0 ? heed_malloc((size_t)bytes + 1) : NULL;
  if (!host || rt_tensor_copy_out(&x->regions, &x->hp->out[i], x->symvals, host) != HEED_ABI_OK) {
    heed_free(host);
    heed_free(v);
    return NULL;
  }
  from_native(o->ty.dt, host, n, v);
  heed_free(host);
#endif
  return v;
}

const char *heed_exec_name(const HeedExec *x) { return x->name; }

bool heed_exec_emit(Compilation *c, const HeedCompileOpts *base, const char *kind, const char *path, const char *cpu) {
#ifdef HEED_HAVE_LLVM
  HeedCompileOpts ho = *base;
  HeedCompiled hc;
  ho.cg.cpu = cpu;
  bool sched = !strcmp(kind, "schedule");  // the decisions the target's emit follows (passes/schedule.h)
  ho.stop = sched ? HEED_STOP_SCHEDULE : HEED_STOP_EMIT;
  if (!strcmp(kind, "llvm")) ho.cg.dump_ir = path;
  else if (!strcmp(kind, "asm")) ho.cg.dump_asm = path;
  else if (!sched) ho.cg.dump_obj = path;
  bool ok = heed_compile(c, &ho, &hc) == HEED_OK;
  if (ok && sched) {
    FILE *f = strcmp(path, "/dev/stdout") ? fopen(path, "w") : stdout;
    if (!f) diag_error(&c->diag, (SrcLoc){0}, "cannot write '%s': %s", path, strerror(errno));
    if (f) sched_print(hc.sched, hc.g, f);
    ok = f && (f == stdout ? fflush(f) == 0 : fclose(f) == 0);
  }
  heed_compiled_free(&hc);
  return ok;
#else
  (void)base, (void)path, (void)cpu;
  diag_error(&c->diag, (SrcLoc){0}, "--emit %s: this heed was built without the LLVM backend", kind);
  return false;
#endif
}

#ifdef HEED_HAVE_LLVM
// --emit plan's sizes on the graph after the passes: the tokens' (the first
// integer input of rank 2) [B, T], the KV caches' [B, length] with the
// length T; any other size is an error.
typedef struct {
  Compilation *c;
  int64_t batch, seq;
} PlanSizes;

static void bind_dim(IrDim d, int64_t v, int64_t *sv, bool *bound) {
  if (d.nsym == 1 && d.n == 1) sv[d.sym[0]] = v, bound[d.sym[0]] = true;
}

static bool plan_sizes(void *ud, const IrGraph *g, int64_t *sv) {
  const PlanSizes *ps = ud;
  bool bound[IR_MAX_SYMS] = {false}, tokens = false;
  for (int i = 0; i < g->inputs.len; i++) {
    const IrNode *n = g->inputs.data[i];
    bool cache = n->name && !strncmp(n->name, "cache.", 6) && n->ty.rank >= 2;
    if (!cache && (tokens || n->ty.rank != 2 || !ir_dtype_info[n->ty.dt].is_int)) continue;
    tokens = tokens || !cache;
    bind_dim(n->ty.dim[0], ps->batch, sv, bound);
    bind_dim(n->ty.dim[1], ps->seq, sv, bound);
  }
  for (int i = 0; i < g->syms.len && i < IR_MAX_SYMS; i++)
    if (!bound[i]) {
      diag_error(&ps->c->diag, (SrcLoc){0}, "--emit plan: the size %s is not the batch or sequence length of the "
                 "tokens (or the KV caches' length); the plan binds only those", g->syms.data[i]);
      return false;
    }
  return true;
}

#endif

bool heed_exec_emit_plan(Compilation *c, const HeedCompileOpts *base, int64_t batch, int64_t seq, FILE *out,
                         int64_t *total) {
#ifdef HEED_HAVE_LLVM
  PlanSizes ps = {c, batch, seq};
  HeedCompileOpts ho = *base;
  HeedCompiled hc;
  ho.stop = HEED_STOP_PLAN;
  ho.plan_sizes = plan_sizes, ho.plan_ud = &ps;
  ho.plan_kv_in_place = true;  // as heed generate runs the decode step
  bool ok = heed_compile(c, &ho, &hc) == HEED_OK && hc.plan;
  if (ok && hc.plan->total < 0) {
    diag_error(&c->diag, (SrcLoc){0}, "--emit plan: the sizes overflow (batch %lld, seq %lld)", (long long)batch,
               (long long)seq);
    ok = false;
  }
  if (ok && out) {
    int64_t sv[IR_MAX_SYMS] = {0};
    plan_sizes(&ps, hc.g, sv);
    pass_memplan_print(hc.plan, hc.g, sv, out);
  }
  if (ok && total) *total = hc.plan->leaf_bytes + hc.plan->total;
  if (!ok && hc.cx.why[0])
    diag_error(&c->diag, (SrcLoc){0}, "%s cannot decode incrementally: %s", hc.g ? hc.g->name : "the model", hc.cx.why);
  heed_compiled_free(&hc);
  return ok;
#else
  (void)base, (void)batch, (void)seq, (void)out, (void)total;
  diag_error(&c->diag, (SrcLoc){0}, "--emit plan: this heed was built without the LLVM backend (the plan follows its schedule)");
  return false;
#endif
}

double heed_exec_compile_ms(const HeedExec *x) {
#ifdef HEED_HAVE_LLVM
  if (x->prog) return cg_program_stats(x->prog)->compile_ms;
#endif
  (void)x;
  return 0;
}

void heed_exec_free(HeedExec *x) {
  if (!x) return;
  heed_gpu_exec_free(x->gpu);
  free_vec(x->in, x->g->inputs.len);
  free_vec(x->par, x->g->params.len);
  ir_values_free(x->vals);
#ifdef HEED_HAVE_LLVM
  free_bufs(x);
  cg_program_free(x->prog);
#endif
  rt_device_free(x->dev);
  heed_free(x);
}

void heed_exec_profile(const HeedExec *x, FILE *f, int runs) {
#ifdef HEED_HAVE_LLVM
  const double *ms = x->prog ? cg_program_profile(x->prog) : NULL;
  if (!ms) return;
  heed_compile_print(f, x->g->name ? x->g->name : "the graph", cg_program_stats(x->prog));
  heed_profile_print(f, &x->c->diag, x->g, ms, runs);
#else
  (void)x, (void)f, (void)runs;
#endif
}

#ifdef HEED_HAVE_LLVM
void heed_compile_print(FILE *f, const char *what, const CgProgramStats *st) {
  fprintf(f, "compiled %s in %.0f ms (%d kernels, %d calls; LLVM IR %.0f ms, O3 %.0f ms, machine code %.0f ms)\n",
          what, st->compile_ms, st->nkernels, st->ncalls, st->build_ms, st->opt_ms, st->jit_ms);
  if (st->nparts <= 0) return;
  double cpu = 0;
  int hits = 0;
  for (int p = 0; p < st->nparts; p++) cpu += st->parts[p].cpu_ms, hits += st->parts[p].cached;
  fprintf(f, "  O3 and machine code in %d parts (%d from the object cache): %.0f ms of CPU; the slowest:\n",
          st->nparts, hits, cpu);
  int *ord = heed_malloc(sizeof *ord * (size_t)st->nparts);
  if (!ord) return;
  for (int p = 0; p < st->nparts; p++) {  // by CPU time, the largest first (insertion sort: tens of parts)
    int q = p;
    for (; q > 0 && st->parts[ord[q - 1]].cpu_ms < st->parts[p].cpu_ms; q--) ord[q] = ord[q - 1];
    ord[q] = p;
  }
  for (int r = 0; r < st->nparts && r < 8; r++) {
    const CgPartStat *ps = &st->parts[ord[r]];
    fprintf(f, "  %10.1f ms  %s", ps->cpu_ms, ps->label);
    if (ps->nunits > 1) fprintf(f, " and %d more", ps->nunits - 1);
    if (ps->cached) fprintf(f, " (cached)");
    fputc('\n', f);
  }
  heed_free(ord);
}
#endif

// An op's name in the table: gradient ops of an elementwise function name it
// ("unary_grad(gelu_tanh)").
static void prof_name(const IrNode *n, char *buf, size_t cap) {
  bool fn = (n->op == IR_OP_UNARY_GRAD || n->op == IR_OP_MAXIMUM_GRAD) && n->attr.fn >= 0 && n->attr.fn < IR_OP_COUNT;
  if (fn) snprintf(buf, cap, "%s(%s)", ir_op_name(n->op), ir_op_name((IrOp)n->attr.fn));
  else snprintf(buf, cap, "%s", ir_op_name(n->op));
}

typedef struct {
  char name[48];
  double ms;
  int calls;
} ProfRow;

static int prof_cmp(const void *a, const void *b) {
  double x = ((const ProfRow *)a)->ms, y = ((const ProfRow *)b)->ms;
  return (x < y) - (x > y);
}


void heed_profile_print(FILE *f, const Diag *d, const IrGraph *g, const double *ms, int runs) {
  int nn = g->nodes.len, nr = 0;
  ProfRow *rows = heed_calloc((size_t)nn + 1, sizeof *rows);
  ProfRow *ids = heed_calloc((size_t)nn + 1, sizeof *ids);  // per call: ms, node id in calls
  if (!rows || !ids) goto done;
  double total = 0;
  int nid = 0;
  for (int i = 0; i < nn; i++) {
    if (ms[i] <= 0) continue;
    char name[48];
    prof_name(g->nodes.data[i], name, sizeof name);
    int r = 0;
    while (r < nr && strcmp(rows[r].name, name)) r++;
    if (r == nr) snprintf(rows[nr++].name, sizeof rows[0].name, "%s", name);
    rows[r].ms += ms[i];
    rows[r].calls++;
    total += ms[i];
    ids[nid++] = (ProfRow){.ms = ms[i], .calls = i};
  }
  if (runs < 1) runs = 1;
  qsort(rows, (size_t)nr, sizeof *rows, prof_cmp);
  fprintf(f, "profile of %s: %.3f ms of kernel calls per run (%d run%s)\n", g->name ? g->name : "the graph",
          total / runs, runs, runs == 1 ? "" : "s");
  fprintf(f, "  %-28s %6s %10s %7s\n", "op", "calls", "ms/run", "share");
  for (int r = 0; r < nr; r++)
    fprintf(f, "  %-28s %6d %10.3f %6.1f%%\n", rows[r].name, rows[r].calls, rows[r].ms / runs,
            total > 0 ? 100 * rows[r].ms / total : 0);
  qsort(ids, (size_t)nid, sizeof *ids, prof_cmp);
  fprintf(f, "  slowest calls:\n");
  for (int j = 0; j < nid && j < 12; j++) {
    const IrNode *n = g->nodes.data[ids[j].calls];
    char name[48], shape[96];
    prof_name(n, name, sizeof name);
    ir_type_str(&n->ty, &g->syms, false, shape, sizeof shape);
    const char *file = n->loc.file > 0 && (int)n->loc.file < d->nfiles ? d->files[n->loc.file].name : "?";
    fprintf(f, "  %10.3f ms  %-24s %-28s %s:%u\n", ids[j].ms / runs, name, shape, file, n->loc.line);
  }
done:
  heed_free(rows);
  heed_free(ids);
}
