// bench/gemm_bench.c: heed's generated sgemm (codegen/gemm.c, JIT) against
// OpenBLAS cblas_sgemm in the same process, on Transformer shapes: M = B*T
// in {128, 512, 2048}, (K, N) in {(768, 768), (768, 3072), (3072, 768),
// (768, 50257)}; the last is the tied LM head x @ transpose(wte), so B is
// stored [N, K] and both libraries get the transposed-B form. Prints
// GFLOP/s (best of a few alternating runs after a warm-up) and
// heed / OpenBLAS.
//
// usage: gemm_bench [--threads 1,2] [--m 128,512,2048] [--reps R] [--quick]
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

typedef struct {
  CgGemmFn fn;
  int tb, M, N, K, nt;
  const float *a, *b;
  float *c, *work;
  RtPool *pool;
} Run;

static void run_heed(const Run *r) {
  r->fn(r->M, r->N, r->K, r->a, r->K, r->b, r->tb ? r->K : r->N, r->c, r->N, 0, r->pool, r->nt,
        r->work);
}

static void run_blas(const Run *r) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, r->tb ? CblasTrans : CblasNoTrans, r->M, r->N, r->K,
              1.0f, r->a, r->K, r->b, r->tb ? r->K : r->N, 0.0f, r->c, r->N);
}

static double seconds(void (*f)(const Run *), const Run *r) {
  double t0 = now();
  f(r);
  return now() - t0;
}

// Best seconds of reps runs of each after one warm-up, heed and OpenBLAS
// alternating so that a noisy neighbour slows both alike.
static void best_of(Run *h, Run *o, int reps, double *th, double *to) {
  run_heed(h);
  run_blas(o);
  *th = *to = 1e30;
  for (int i = 0; i < reps; i++) {
    *th = fmin(*th, seconds(run_heed, h));
    *to = fmin(*to, seconds(run_blas, o));
  }
}

int main(int argc, char **argv) {
  int threads[8] = {1, 2}, nthreads = 2, ms[8] = {128, 512, 2048}, nm = 3, reps = 3;
  const char *obj = NULL;
  int blocks[4] = {0}, nblocks = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      nthreads = parse_list(argv[++i], threads, 8);
    else if (!strcmp(argv[i], "--m") && i + 1 < argc)
      nm = parse_list(argv[++i], ms, 8);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--blocks") && i + 1 < argc)
      nblocks = parse_list(argv[++i], blocks, 4);
    else if (!strcmp(argv[i], "--obj") && i + 1 < argc)
      obj = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      nm = 1, reps = 1;
    else {
      fprintf(stderr, "usage: %s [--threads 1,2] [--m 128,512,2048] [--reps R] [--quick] [--obj out.o] [--blocks MR,MC,KC,NC]\n", argv[0]);
      return 2;
    }
  }
  Diag d;
  diag_init(&d, stderr);
  CgLlvm *cg = cg_llvm_new(NULL, &d);
  if (!cg)
    return 1;
  CgGemmConfig cfg_nn, cfg_nt;
  cg_gemm_config_default(cg, &cfg_nn, "heed_sgemm_nn", false);
  cg_gemm_config_default(cg, &cfg_nt, "heed_sgemm_nt", true);
  cfg_nn.nthreads_max = cfg_nt.nthreads_max = 8;
  if (nblocks == 4) {
    CgGemmConfig *cs[2] = {&cfg_nn, &cfg_nt};
    for (int i = 0; i < 2; i++)
      cs[i]->mr = blocks[0], cs[i]->mc = blocks[1], cs[i]->kc = blocks[2], cs[i]->nc = blocks[3];
  }
  double t0 = now();
  cg_llvm_module_begin(cg, "bench");
  if (!cg_gemm_emit(cg, &cfg_nn, &d) || !cg_gemm_emit(cg, &cfg_nt, &d) ||
      !cg_llvm_optimize(cg, &d) || (obj && !cg_llvm_emit_object(cg, obj, &d)) ||
      !cg_llvm_define_symbol(cg, "rt_parallel_for", (void *)rt_parallel_for, &d) ||
      !cg_llvm_jit_add(cg, &d))
    return 1;
  CgGemmFn nn = (CgGemmFn)cg_llvm_lookup(cg, "heed_sgemm_nn", &d);
  CgGemmFn nt = (CgGemmFn)cg_llvm_lookup(cg, "heed_sgemm_nt", &d);
  if (!nn || !nt)
    return 1;
  printf("heed: cpu %s, %d-wide, micro-tile %dx%d, MC %d KC %d NC %d (JIT %.0f ms)\n",
         cg_llvm_cpu_name(cg), cfg_nn.vw, cfg_nn.mr, cfg_nn.nr, cfg_nn.mc, cfg_nn.kc, cfg_nn.nc,
         1e3 * (now() - t0));
  const char *ct = getenv("OPENBLAS_CORETYPE");
  printf("OpenBLAS: %s, core %s (OPENBLAS_CORETYPE=%s)\n", openblas_get_config(),
         openblas_get_corename(), ct ? ct : "unset");
  float *work = aligned_alloc(64, cg_gemm_work_bytes(&cfg_nn));
  static const int kn[4][3] = {{768, 768, 0}, {768, 3072, 0}, {3072, 768, 0}, {768, 50257, 1}};
  printf("%-6s %-6s %-6s %-3s %-3s %10s %10s %7s %9s\n", "M", "K", "N", "B", "thr", "heed GF/s",
         "BLAS GF/s", "ratio", "max|diff|");
  for (int ti = 0; ti < nthreads; ti++) {
    RtPool *pool = rt_pool_new(threads[ti]);
    openblas_set_num_threads(threads[ti]);
    for (int mi = 0; mi < nm; mi++)
      for (int s = 0; s < 4; s++) {
        int M = ms[mi], K = kn[s][0], N = kn[s][1], tb = kn[s][2];
        float *a = rand_buf((size_t)M * K), *b = rand_buf((size_t)K * N);
        float *c1 = rand_buf((size_t)M * N), *c2 = rand_buf((size_t)M * N);
        Run r = {tb ? nt : nn, tb, M, N, K, threads[ti], a, b, c1, work, pool}, o = r;
        o.c = c2;
        double flops = 2.0 * M * N * K, th, tbl;
        best_of(&r, &o, flops > 3e10 ? (reps < 2 ? reps : 2) : reps, &th, &tbl);
        double md = 0;
        for (size_t i = 0; i < (size_t)M * N; i++)
          md = fmax(md, fabs((double)c1[i] - c2[i]));
        printf("%-6d %-6d %-6d %-3s %-3d %10.1f %10.1f %7.3f %9.2g\n", M, K, N, tb ? "T" : "N",
               threads[ti], flops / th * 1e-9, flops / tbl * 1e-9, tbl / th, md);
        fflush(stdout);
        free(a);
        free(b);
        free(c1);
        free(c2);
      }
    rt_pool_free(pool);
  }
  free(work);
  cg_llvm_free(cg);
  diag_fini(&d);
  return 0;
}
