// bench/gemm_bench.c: heed's generated sgemm (codegen/gemm.c, JIT) against
// OpenBLAS cblas_sgemm in the same process, on Transformer shapes. Set
// gpt2: M = B*T in {128, 512, 2048}, (K, N) in {(768, 768), (768, 3072),
// (3072, 768), (768, 50257)}; the last is the tied LM head
// x @ transpose(wte), so B is stored [N, K] and both libraries get the
// transposed-B form. Set bytegpt: the 15 sgemm shapes of a byte-level GPT's
// train step (B*T = 1024, C = 128), forward (nn, the LM head nt), input
// gradients (nt) and weight gradients (tn: A stored [K, M]). Prints GFLOP/s
// (best, or median, of alternating runs after a warm-up), heed / OpenBLAS,
// and both as a fraction of the FP32 FMA peak measured (bench/peak.c).
//
// usage: gemm_bench [--threads 1,2] [--m 128,512,2048] [--set gpt2,bytegpt]
//                   [--reps R] [--median] [--quick]
//                   [--obj out.o]   (also write the optimized kernels there)
//                   [--blocks MR,MC,KC,NC]  (override the default blocking)
// See bench/README.md (and `make bench-gemm`) for the OpenBLAS setup.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "codegen/cg.h"
#include "peak.h"
#include "runtime/rt.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_list(const char *s, int *out, int max) {
  int n = 0;
  while (*s && n < max) {
    out[n++] = atoi(s);
    s = strchr(s, ',');
    if (!s)
      break;
    s++;
  }
  return n;
}

static float *rand_buf(size_t n) {
  float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  uint64_t x = 0x9e3779b97f4a7c15ull ^ n;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (float)((double)(x >> 40) / (double)(1ull << 23) - 1.0);
  }
  return p;
}

enum { NN, NT, TN };  // A @ B, A @ B^T (B stored [N, K]), A^T @ B (A stored [K, M])
static const char *const mode_name[] = {"nn", "nt", "tn"};

typedef struct {
  CgGemmFn fn;
  int mode, M, N, K, nt;
  const float *a, *b;
  float *c, *work;
  RtPool *pool;
} Run;

static void run_heed(const Run *r) {
  int lda = r->mode == TN ? r->M : r->K, ldb = r->mode == NT ? r->K : r->N;
  r->fn(r->M, r->N, r->K, r->a, lda, r->b, ldb, r->c, r->N, 0, r->pool, r->nt, r->work);
}

static void run_blas(const Run *r) {
  int lda = r->mode == TN ? r->M : r->K, ldb = r->mode == NT ? r->K : r->N;
  cblas_sgemm(CblasRowMajor, r->mode == TN ? CblasTrans : CblasNoTrans,
              r->mode == NT ? CblasTrans : CblasNoTrans, r->M, r->N, r->K, 1.0f, r->a, lda, r->b,
              ldb, 0.0f, r->c, r->N);
}

static double seconds(void (*f)(const Run *), const Run *r) {
  double t0 = now();
  f(r);
  return now() - t0;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

// Best (or median) seconds of reps runs of each after one warm-up, heed and
// OpenBLAS alternating so that a noisy neighbour slows both alike.
static void time_pair(Run *h, Run *o, int reps, bool median, double *th, double *to) {
  run_heed(h);
  run_blas(o);
  double *t = malloc(2 * (size_t)reps * sizeof *t);
  for (int i = 0; i < reps; i++) {
    t[i] = seconds(run_heed, h);
    t[reps + i] = seconds(run_blas, o);
  }
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  qsort(t + reps, (size_t)reps, sizeof *t, cmp_double);
  *th = median ? t[reps / 2] : t[0];
  *to = median ? t[reps + reps / 2] : t[reps];
  free(t);
}

// The shapes: GPT-2 small's (M from --m; (K, N) below) and a byte-level
// GPT's train step (examples/bytegpt.heed at B*T = 1024, C = 128, MLP 512:
// the forward x @ W, the input gradients dy @ W^T, the weight gradients
// x^T @ dy), each with its variant.
typedef struct {
  int M, K, N, mode;
} Shape;

static const Shape gpt2_kn[] = {{0, 768, 768, NN}, {0, 768, 3072, NN}, {0, 3072, 768, NN}, {0, 768, 50257, NT}};
static const Shape bytegpt[] = {
    {1024, 128, 384, NN}, {1024, 128, 128, NN}, {1024, 128, 512, NN}, {1024, 512, 128, NN},
    {1024, 128, 256, NT}, {1024, 384, 128, NT}, {1024, 128, 128, NT}, {1024, 512, 128, NT},
    {1024, 128, 512, NT}, {1024, 256, 128, NN}, {128, 1024, 384, TN}, {128, 1024, 128, TN},
    {128, 1024, 512, TN}, {512, 1024, 128, TN}, {256, 1024, 128, TN},
};

typedef struct {
  CgGemmFn fn[3];
  float *work;
  int reps;
  bool median;
  double peak;  // GFLOP/s, bench/peak.c, for the thread count being run
} Bench;

static void bench_shape(const Bench *bn, const Shape *s, int nt, RtPool *pool) {
  int M = s->M, K = s->K, N = s->N;
  float *a = rand_buf((size_t)M * K), *b = rand_buf((size_t)K * N);
  float *c1 = rand_buf((size_t)M * N), *c2 = rand_buf((size_t)M * N);
  Run r = {bn->fn[s->mode], s->mode, M, N, K, nt, a, b, c1, bn->work, pool}, o = r;
  o.c = c2;
  double flops = 2.0 * M * N * K, th, tbl;
  int reps = flops > 3e10 ? (bn->reps < 2 ? bn->reps : 2) : bn->reps;
  if (flops < 1e9 && reps < 20)  // the small shapes: more runs, they are cheap
    reps = 20;
  time_pair(&r, &o, reps, bn->median, &th, &tbl);
  double md = 0;
  for (size_t i = 0; i < (size_t)M * N; i++)
    md = fmax(md, fabs((double)c1[i] - c2[i]));
  printf("%-6d %-6d %-6d %-3s %-3d %10.1f %10.1f %7.3f %6.0f%% %6.0f%% %9.2g\n", M, K, N, mode_name[s->mode], nt,
         flops / th * 1e-9, flops / tbl * 1e-9, tbl / th, 100 * flops / th * 1e-9 / bn->peak,
         100 * flops / tbl * 1e-9 / bn->peak, md);
  fflush(stdout);
  free(a);
  free(b);
  free(c1);
  free(c2);
}

// Half a second of both libraries on a mid-size shape before timing: a new
// pool's workers (and OpenBLAS's) take a while to settle on their cores,
// and the first shapes measured would pay for it.
static void warm_up(const Bench *bn, int nt, RtPool *pool) {
  int M = 512, K = 512, N = 512;
  float *a = rand_buf((size_t)M * K), *b = rand_buf((size_t)K * N), *c = rand_buf((size_t)M * N);
  Run r = {bn->fn[NN], NN, M, N, K, nt, a, b, c, bn->work, pool};
  for (double t0 = now(); now() - t0 < 0.5;) {
    run_heed(&r);
    run_blas(&r);
  }
  free(a);
  free(b);
  free(c);
}

static CgGemmFn lookup(CgLlvm *cg, const char *name, Diag *d) {
  return (CgGemmFn)cg_llvm_lookup(cg, name, d);
}

int main(int argc, char **argv) {
  int threads[8] = {1, 2}, nthreads = 2, ms[8] = {128, 512, 2048}, nm = 3, reps = 3;
  const char *obj = NULL, *set = "gpt2,bytegpt";
  int blocks[4] = {0}, nblocks = 0;
  bool median = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      nthreads = parse_list(argv[++i], threads, 8);
    else if (!strcmp(argv[i], "--m") && i + 1 < argc)
      nm = parse_list(argv[++i], ms, 8);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--set") && i + 1 < argc)
      set = argv[++i];
    else if (!strcmp(argv[i], "--median"))
      median = true;
    else if (!strcmp(argv[i], "--blocks") && i + 1 < argc)
      nblocks = parse_list(argv[++i], blocks, 4);
    else if (!strcmp(argv[i], "--obj") && i + 1 < argc)
      obj = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      nm = 1, reps = 1;
    else {
      fprintf(stderr, "usage: %s [--threads 1,2] [--m 128,512,2048] [--set gpt2,bytegpt] [--reps R] [--median] [--quick] [--obj out.o] [--blocks MR,MC,KC,NC]\n", argv[0]);
      return 2;
    }
  }
  Diag d;
  diag_init(&d, stderr);
  CgLlvm *cg = cg_llvm_new(NULL, &d);
  if (!cg)
    return 1;
  CgGemmConfig cfg[3];
  static const char *const names[3] = {"heed_sgemm_nn", "heed_sgemm_nt", "heed_sgemm_tn"};
  for (int v = 0; v < 3; v++) {
    cg_gemm_config_default(cg, &cfg[v], names[v], v == NT);
    cfg[v].trans_a = v == TN;
    cfg[v].nthreads_max = 8;
    if (nblocks == 4)
      cfg[v].mr = blocks[0], cfg[v].mc = blocks[1], cfg[v].kc = blocks[2], cfg[v].nc = blocks[3];
  }
  double t0 = now();
  cg_llvm_module_begin(cg, "bench");
  for (int v = 0; v < 3; v++)
    if (!cg_gemm_emit(cg, &cfg[v], &d))
      return 1;
  if (!cg_llvm_optimize(cg, &d) || (obj && !cg_llvm_emit_object(cg, obj, &d)) ||
      !cg_llvm_define_symbol(cg, "rt_parallel_for", (void *)rt_parallel_for, &d) ||
      !cg_llvm_jit_add(cg, &d))
    return 1;
  Bench bn = {{lookup(cg, names[0], &d), lookup(cg, names[1], &d), lookup(cg, names[2], &d)},
              aligned_alloc(64, cg_gemm_work_bytes(&cfg[0])), reps, median, 0};
  if (!bn.fn[0] || !bn.fn[1] || !bn.fn[2])
    return 1;
  printf("heed: cpu %s, %d-wide, micro-tile %dx%d, MC %d KC %d NC %d (JIT %.0f ms)\n",
         cg_llvm_cpu_name(cg), cfg[0].vw, cfg[0].mr, cfg[0].nr, cfg[0].mc, cfg[0].kc, cfg[0].nc,
         1e3 * (now() - t0));
  const char *ct = getenv("OPENBLAS_CORETYPE");
  printf("OpenBLAS: %s, core %s (OPENBLAS_CORETYPE=%s)\n", openblas_get_config(),
         openblas_get_corename(), ct ? ct : "unset");
  printf("GFLOP/s: the %s of the runs\n", median ? "median" : "best");
  printf("peak: the FP32 FMA peak measured for the thread count (bench/peak.c); heed%% and BLAS%% of it\n");
  printf("%-6s %-6s %-6s %-3s %-3s %10s %10s %7s %7s %7s %9s\n", "M", "K", "N", "op", "thr", "heed GF/s",
         "BLAS GF/s", "ratio", "heed%", "BLAS%", "max|diff|");
  for (int ti = 0; ti < nthreads; ti++) {
    RtPool *pool = rt_pool_new(threads[ti]);
    openblas_set_num_threads(threads[ti]);
    warm_up(&bn, threads[ti], pool);
    int width;
    bn.peak = bench_fma_peak(threads[ti], 0.3, &width);
    printf("FP32 FMA peak, %d thread%s, %d-wide: %.1f GFLOP/s\n", threads[ti], threads[ti] > 1 ? "s" : "", width,
           bn.peak);
    if (strstr(set, "gpt2"))
      for (int mi = 0; mi < nm; mi++)
        for (int s = 0; s < 4; s++) {
          Shape sh = gpt2_kn[s];
          sh.M = ms[mi];
          bench_shape(&bn, &sh, threads[ti], pool);
        }
    if (strstr(set, "bytegpt"))
      for (size_t s = 0; s < sizeof bytegpt / sizeof bytegpt[0]; s++)
        bench_shape(&bn, &bytegpt[s], threads[ti], pool);
    rt_pool_free(pool);
  }
  free(bn.work);
  cg_llvm_free(cg);
  diag_fini(&d);
  return 0;
}
