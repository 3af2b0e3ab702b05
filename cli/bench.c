// cli/bench.c: `heed bench`: times a model the way a user runs it: compile
// (frontend, lowering, autodiff for --train), then the forward and, with
// --train, a training step's forward + backward, on initialised parameters
// and random inputs, after a warm-up; prints medians (or one JSON object
// with --json: compile_ms, forward_ms, train_step_ms, threads, peak_bytes).
// The executor is compiled code unless --interp (or a graph the backend
// cannot compile yet); the output says which ran ("executor").
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/run.h"
#include "engine/exec.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// The exclusive upper bound for the values of an integer input: the rows
// of a table it indexes, or the classes of a cross-entropy it is the
// target of (1 if neither: zeros are always valid).
static int64_t int_bound(const IrGraph *g, const IrNode *in) {
  int64_t bound = -1;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    int64_t b = -1;
    if (n->op == IR_OP_GATHER && n->src[1] == in && ir_dim_is_const(n->src[0]->ty.dim[0])) b = n->src[0]->ty.dim[0].n;
    if (n->op == IR_OP_XENT && n->src[1] == in) b = n->src[0]->ty.dim[n->src[0]->ty.rank - 1].n;
    if (b > 0 && (bound < 0 || b < bound)) bound = b;
  }
  return bound > 0 ? bound : 1;
}

// Parameters as their INITs say; inputs random within their valid range.
static bool make_data(Compilation *c, const IrGraph *g, const HeedBenchOpts *o, int64_t *symvals, double ***params,
                      double ***inputs) {
  for (int s = 0; s < g->syms.len && s < IR_MAX_SYMS; s++)
    symvals[s] = !strcmp(g->syms.data[s], "B") ? o->batch : o->seq;  // every other size is the sequence
  *params = heed_calloc((size_t)g->params.len + 1, sizeof(double *));
  *inputs = heed_calloc((size_t)g->inputs.len + 1, sizeof(double *));
  if (!*params || !*inputs) return false;
  for (int i = 0; i < g->params.len; i++) {
    const IrNode *p = g->params.data[i];
    int64_t n = ir_type_numel(&p->ty, NULL);
    if (!((*params)[i] = heed_malloc(sizeof(double) * (size_t)(n ? n : 1)))) return false;
    heed_init_values(p->name, &p->init, 1337, (*params)[i], n);
  }
  uint64_t s = 42;
  for (int i = 0; i < g->inputs.len; i++) {
    const IrNode *in = g->inputs.data[i];
    int64_t n = ir_type_numel(&in->ty, symvals), bound = int_bound(g, in);
    if (n < 0 || !((*inputs)[i] = heed_malloc(sizeof(double) * (size_t)(n ? n : 1)))) {
      diag_error(&c->diag, in->loc, "bench: input '%s' is too large at batch %lld, seq %lld", in->name,
                 (long long)o->batch, (long long)o->seq);
      return false;
    }
    for (int64_t j = 0; j < n; j++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      double u = (double)(s >> 11) * 0x1.0p-53;
      (*inputs)[i][j] = in->ty.dt == IR_BOOL ? 1 : ir_dtype_info[in->ty.dt].is_int ? (double)(int64_t)(u * bound) : u - 0.5;
    }
  }
  return true;
}

static void free_data(double **v, int n) {
  for (int i = 0; v && i < n; i++) heed_free(v[i]);
  heed_free(v);
}

// ---- the values' memory: what the executor holds, against the plan ----
// The executor's buffers (parameters and inputs in their native dtypes, the
// arena, the kernels' workspace) are its aligned allocations; a counting
// allocator over the installed one tracks their live bytes and the peak
// while one graph is set up and run. The host copies bench makes (f64) are
// plain allocations and do not count.
enum { MAX_BLOCKS = 1 << 14 };
static struct {
  pthread_mutex_t mu;
  HeedAllocFn next;         // ir/alloc.h's hook before bench's
  void *next_ud;
  RtAllocFn rt_next;        // the runtime's (its device allocates the regions)
  void *rt_ud;
  void *p[MAX_BLOCKS];
  size_t size[MAX_BLOCKS];
  int n;
  int64_t live, peak;
  bool overflow;
} cnt = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *count_alloc(void *ud, void *ptr, size_t size, size_t align) {
  bool rt = ud != NULL;  // installed with a non-NULL ud into the runtime's hook
  if (ptr && size == 0) {  // a free: forget the block if it is counted
    pthread_mutex_lock(&cnt.mu);
    for (int i = cnt.n - 1; i >= 0; i--)
      if (cnt.p[i] == ptr) {
        cnt.live -= (int64_t)cnt.size[i];
        cnt.n--, cnt.p[i] = cnt.p[cnt.n], cnt.size[i] = cnt.size[cnt.n];
        break;
      }
    pthread_mutex_unlock(&cnt.mu);
  }
  void *r = rt ? (cnt.rt_next ? cnt.rt_next(cnt.rt_ud, ptr, size, align) : heed_libc_alloc(NULL, ptr, size, align))
             : cnt.next(cnt.next_ud, ptr, size, align);
  if (r && !ptr && align) {
    pthread_mutex_lock(&cnt.mu);
    if (cnt.n < MAX_BLOCKS) cnt.p[cnt.n] = r, cnt.size[cnt.n++] = size, cnt.live += (int64_t)size;
    else cnt.overflow = true;
    if (cnt.live > cnt.peak) cnt.peak = cnt.live;
    pthread_mutex_unlock(&cnt.mu);
  }
  return r;
}

static void count_begin(void) {
  cnt.next = heed_get_allocator(&cnt.next_ud);
  cnt.rt_next = rt_get_allocator(&cnt.rt_ud);
  cnt.n = 0, cnt.live = cnt.peak = 0, cnt.overflow = false;
  heed_set_allocator(count_alloc, NULL);
  rt_set_allocator(count_alloc, &cnt);
}

// The peak of the counted bytes (-1: too many blocks to count).
static int64_t count_end(void) {
  heed_set_allocator(cnt.next == heed_libc_alloc ? NULL : cnt.next, cnt.next_ud);
  rt_set_allocator(cnt.rt_next, cnt.rt_ud);
  return cnt.overflow ? -1 : cnt.peak;
}

// Median milliseconds of `reps` runs of g after one warm-up run; -1 on
// error. compile_ms gets the backend's compile time, name the executor.
static double time_graph(Compilation *c, const IrGraph *g, const HeedBenchOpts *o, double *compile_ms, char *name,
                         size_t nlen, int64_t *values_peak) {
  int64_t symvals[IR_MAX_SYMS] = {0};
  double **params = NULL, **inputs = NULL, ms[64], med = -1;
  int reps = o->reps < 1 ? 1 : o->reps > 64 ? 64 : o->reps;
  HeedExec *x = NULL;
  bool made = make_data(c, g, o, symvals, &params, &inputs);
  count_begin();  // the executor's buffers from here on
  if (made && (x = heed_exec_new(c, g, o->interp, o->threads, o->profile)) &&
      heed_exec_bind(x, symvals, inputs, params)) {
    *compile_ms += heed_exec_compile_ms(x);
    snprintf(name, nlen, "%s", heed_exec_name(x));
    bool ok = true;
    for (int r = -1; r < reps && ok; r++) {
      double t0 = now_ms();
      ok = heed_exec_run(x);
      if (r >= 0) ms[r] = now_ms() - t0;
    }
    if (ok && o->profile) heed_exec_profile(x, stderr, reps + 1);
    if (ok) {
      qsort(ms, (size_t)reps, sizeof ms[0], cmp_double);
      med = ms[reps / 2];
    }
  }
  *values_peak = count_end();
  heed_exec_free(x);
  free_data(params, g->params.len);
  free_data(inputs, g->inputs.len);
  return med;
}

// One line: the values' peak (the executor's buffers) and the memory plan.
static void print_values(const char *what, int64_t measured, int64_t plan) {
  printf("  %-11s %10.1f MiB of values at the peak", what, measured / 1048576.0);
  if (plan > 0 && measured > 0)
    printf("; the memory plan (--emit plan) %.1f MiB, %.3fx", plan / 1048576.0, (double)measured / (double)plan);
  printf("\n");
}

int heed_cmd_bench(Compilation *c, const HeedBenchOpts *o, double frontend_ms) {
  const FeModel *m = c->model;
  double t0 = now_ms(), train_ms = -1;
  IrGraph *loss = o->train ? m->loss : NULL;
  if (o->train && !loss) {
    diag_error(&c->diag, m->decl->name_loc, "bench --train: model '%s' has no train section", m->decl->name);
    return HEED_ERR_CHECK;
  }
  HeedCompiled hc;  // the passes only: time_graph compiles the result
  if (loss) {
    int rc = heed_compile(c, &(HeedCompileOpts){.kind = HEED_GRAPH_GRAD, .stop = HEED_STOP_PASSES}, &hc);
    heed_compiled_free(&hc);
    if (rc != HEED_OK) return rc;
  }
  double compile_ms = frontend_ms + (now_ms() - t0);
  char fwd_exec[96] = "", train_exec[96] = "";
  int64_t fwd_peak = -1, train_peak = -1, fwd_plan = -1, train_plan = -1;
  double fwd_ms = time_graph(c, m->forward, o, &compile_ms, fwd_exec, sizeof fwd_exec, &fwd_peak);
  if (fwd_ms < 0) return HEED_ERR_CHECK;
  if (loss && (train_ms = time_graph(c, loss, o, &compile_ms, train_exec, sizeof train_exec, &train_peak)) < 0)
    return HEED_ERR_CHECK;
  if (!o->interp) {  // what `heed compile --emit plan` says of the same graphs and sizes
    HeedCompileOpts po = {.graph = (IrGraph *)m->forward, .passes = ""};
#ifdef HEED_HAVE_LLVM
    po.cg.nthreads = o->threads, po.cg.pool = o->threads > 1 ? (void *)&po : NULL;  // the workspace's threads
#endif
    if (!heed_exec_emit_plan(c, &po, o->batch, o->seq, NULL, &fwd_plan)) return HEED_ERR_CHECK;
    po.graph = loss;
    if (loss && !heed_exec_emit_plan(c, &po, o->batch, o->seq, NULL, &train_plan)) return HEED_ERR_CHECK;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long long peak = (long long)ru.ru_maxrss * 1024;
  if (o->json) {
    printf("{\"model\": \"%s\", \"executor\": \"%s\", \"batch\": %lld, \"seq\": %lld, \"threads\": %d, "
           "\"compile_ms\": %.3f, \"forward_ms\": %.3f",
           m->decl->name, fwd_exec, (long long)o->batch, (long long)o->seq, o->interp ? 1 : o->threads, compile_ms,
           fwd_ms);
    if (train_ms >= 0) printf(", \"train_step_ms\": %.3f, \"train_executor\": \"%s\"", train_ms, train_exec);
    printf(", \"values_peak_bytes\": %lld, \"plan_bytes\": %lld", (long long)fwd_peak, (long long)fwd_plan);
    if (train_ms >= 0)
      printf(", \"train_values_peak_bytes\": %lld, \"train_plan_bytes\": %lld", (long long)train_peak,
             (long long)train_plan);
    printf(", \"peak_bytes\": %lld}\n", peak);
  } else {
    printf("%s: batch %lld, seq %lld\n", m->decl->name, (long long)o->batch, (long long)o->seq);
    printf("  compile     %10.3f ms\n  forward     %10.3f ms (median of %d; %s)\n", compile_ms, fwd_ms, o->reps, fwd_exec);
    if (train_ms >= 0)
      printf("  train step  %10.3f ms (the loss's forward + backward, without the optimizer update; %s)\n", train_ms,
           train_exec);
    print_values("forward", fwd_peak, fwd_plan);
    if (train_ms >= 0) print_values("train step", train_peak, train_plan);
    printf("  peak memory %10.1f MiB (the process: compiler, host copies, the values)\n", peak / 1048576.0);
  }
  return HEED_OK;
}
