// bench/peak.c: the FP32 FMA peak of this machine, measured: each thread
// runs 16 (AVX-512) or 12 (AVX2) independent FMA chains, enough to keep two
// FMA pipes of latency 4 busy, for a fixed number of iterations, repeated
// until `seconds` pass; the best rate over rounds is reported (a noisy
// neighbour only lowers a round). gemm_bench links it (its 16- or 8-wide
// choice is made at run time; bench/fma_peak.c, step_bench's stick, is
// compiled with -march=native instead).
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "peak.h"

#if defined(__x86_64__)
#include <immintrin.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { ITERS = 1 << 20 };

// flops = ITERS * 16 chains * 16 lanes * 2.
__attribute__((target("avx512f"))) static float chains512(float seed) {
  __m512 acc[16], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int j = 0; j < 16; j++) acc[j] = _mm512_set1_ps(seed + (float)j);
  for (int i = 0; i < ITERS; i++)
    for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, c);
  __m512 s = acc[0];
  for (int j = 1; j < 16; j++) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

// flops = ITERS * 12 chains * 8 lanes * 2.
__attribute__((target("avx2,fma"))) static float chains256(float seed) {
  __m256 acc[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int j = 0; j < 12; j++) acc[j] = _mm256_set1_ps(seed + (float)j);
  for (int i = 0; i < ITERS; i++)
    for (int j = 0; j < 12; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
  __m256 s = acc[0];
  for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, acc[j]);
  float v[8];
  _mm256_storeu_ps(v, s);
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

typedef struct {
  int wide;
  double seconds, best;  // best: GFLOP/s of this thread
  volatile float sink;
} Worker;

static void *work(void *p) {
  Worker *w = p;
  double flops = (double)ITERS * (w->wide ? 16 * 16 : 12 * 8) * 2, t_end = now() + w->seconds;
  w->best = 0;
  do {
    double t0 = now();
    w->sink = w->wide ? chains512((float)t0) : chains256((float)t0);
    double r = flops / (now() - t0) * 1e-9;
    if (r > w->best) w->best = r;
  } while (now() < t_end);
  return NULL;
}

double bench_fma_peak(int nthreads, double seconds, int *width) {
  (void)now;
  __builtin_cpu_init();
  int wide = __builtin_cpu_supports("avx512f");
  if (width) *width = wide ? 16 : __builtin_cpu_supports("fma") ? 8 : 0;
  if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
  if (nthreads < 1) nthreads = 1;
  if (nthreads > 64) nthreads = 64;
  Worker w[64];
  pthread_t th[64];
  for (int i = 0; i < nthreads; i++) w[i] = (Worker){.wide = wide, .seconds = seconds};
  for (int i = 1; i < nthreads; i++)
    if (pthread_create(&th[i], NULL, work, &w[i])) return 0;
  work(&w[0]);
  double sum = w[0].best;
  for (int i = 1; i < nthreads; i++) pthread_join(th[i], NULL), sum += w[i].best;
  return sum;
}
#else
double bench_fma_peak(int nthreads, double seconds, int *width) {  // x86 only
  (void)nthreads, (void)seconds, (void)now;
  if (width) *width = 0;
  return 0;
}
#endif
