// bench/qgemv_bench.c: the decode step's matmuls of GPT-2 small (12 layers
// of x (1, 768) against W_qkv (2304, 768), W_o (768, 768), W_fc (3072, 768),
// W_proj (768, 3072); 85M weights) on quantized weights (runtime/quant.c),
// against the same kernels on f32 weights and OpenBLAS's sgemv in the same
// run, sides alternated. Prints each side's median and spread of the
// per-token time and its tokens/s if the matmuls were the whole step.
// Usage: qgemv_bench [--threads N] [--reps R] [--isa generic|avx2|avx512|avx512-vnni]
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/quant.h"

enum { LAYERS = 12, NMAT = 4 };
static const int64_t shape[NMAT][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};  // (n, k)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  RtQWeight w[LAYERS][NMAT];
  float *scale[LAYERS][NMAT];
} Model;

static void model_make(Model *m, RtDType dt, float *const f32[LAYERS][NMAT]) {
  for (int l = 0; l < LAYERS; l++)
    for (int i = 0; i < NMAT; i++) {
      int64_t n = shape[i][0], k = shape[i][1];
      void *q = aligned_alloc(64, (size_t)((rt_qweight_bytes(dt, n, k) + 63) / 64 * 64));
      m->scale[l][i] = malloc(sizeof(float) * (size_t)n);
      if (dt == RT_F32) memcpy(q, f32[l][i], sizeof(float) * (size_t)(n * k));
      else rt_quantize_rows(dt, f32[l][i], n, k, q, m->scale[l][i]);
      m->w[l][i] = (RtQWeight){dt, n, k, q, dt == RT_I8 ? m->scale[l][i] : NULL};
    }
}

int main(int argc, char **argv) {
  int threads = 2, reps = 15;
  RtIsa isa = rt_isa_best();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--isa")) {
      for (int j = 0; j < RT_ISA_COUNT; j++)
        if (!strcmp(argv[i + 1], rt_isa_name((RtIsa)j))) isa = (RtIsa)j;
    }
  }
  if (threads < 1 || reps < 1 || reps > 1000 || !rt_isa_runs(isa)) {
    fprintf(stderr, "usage: qgemv_bench [--threads N] [--reps R] [--isa LEVEL]\n");
    return 2;
  }
  openblas_set_num_threads(threads);
  RtPool *pool = rt_pool_new(threads);
  float *f32[LAYERS][NMAT];
  uint64_t s = 1;
  for (int l = 0; l < LAYERS; l++)
    for (int i = 0; i < NMAT; i++) {
      size_t nk = (size_t)(shape[i][0] * shape[i][1]);
      f32[l][i] = aligned_alloc(64, (nk * 4 + 63) / 64 * 64);
      for (size_t j = 0; j < nk; j++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        f32[l][i][j] = (float)((s >> 40) & 0xFFFF) / 65536.0f - 0.5f;
      }
    }
  static const RtDType dts[] = {RT_F32, RT_BF16, RT_I8, RT_Q4_1, RT_Q4_0};  // m[2]: I8 (w8a8 too)
  enum { ND = sizeof dts / sizeof dts[0] };
  Model m[ND];
  for (int d = 0; d < ND; d++) model_make(&m[d], dts[d], f32);
  float x[3072], y[3072];
  for (int i = 0; i < 3072; i++) x[i] = (float)(i % 13) * 0.01f;
  double *t = calloc((size_t)(ND + 2) * (size_t)reps, sizeof(double));
  char err[200];
  for (int r = 0; r < reps; r++)
    for (int side = 0; side <= ND + 1; side++) {  // alternated: each rep runs every side once
      double t0 = now();
      for (int l = 0; l < LAYERS; l++)
        for (int i = 0; i < NMAT; i++) {
          if (side == ND)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)shape[i][0], (int)shape[i][1], 1.0f, f32[l][i],
                        (int)shape[i][1], x, 1, 0.0f, y, 1);
          else if (side == ND + 1 ? rt_qmatmul_w8a8(pool, isa, &m[2].w[l][i], x, 1, y, err, sizeof err) != RT_OK
                                  : rt_qmatmul(pool, isa, &m[side].w[l][i], x, 1, y, err, sizeof err) != RT_OK) {
            fprintf(stderr, "qgemv_bench: %s\n", err);
            return 1;
          }
        }
      t[side * reps + r] = now() - t0;
    }
  printf("GPT-2 small decode matmuls (85M weights), batch 1, %d thread%s, kernels: %s\n", threads,
         threads == 1 ? "" : "s", rt_isa_name(isa));
  double f32_med = 0;
  for (int side = 0; side <= ND + 1; side++) {
    qsort(t + side * reps, (size_t)reps, sizeof(double), cmp_d);
    double med = t[side * reps + reps / 2], lo = t[side * reps], hi = t[side * reps + reps - 1];
    if (side == 0) f32_med = med;
    printf("  %-16s %7.2f ms/token (%.2f-%.2f)  %7.1f tok/s  %5.2fx heed f32\n",
           side == ND ? "openblas sgemv" : side == ND + 1 ? "w8a8" : rt_dtype_name(dts[side]), 1e3 * med, 1e3 * lo, 1e3 * hi, 1 / med,
           f32_med / med);
  }
  rt_pool_free(pool);
  return 0;
}
