// bench/fma_peak.c: the machine's FP32 FMA peak, the denominator of the
// "fraction of peak" bench/step_bench.py prints. Each thread runs 12
// independent chains of vector FMAs (enough to cover the FMA latency on
// both pipes of current x86 cores) on the widest vectors the compiler was
// told the CPU has (-march=native: 16 lanes with AVX-512F, else 8 with
// AVX2 + FMA), for about a third of a second per try; prints GFLOP/s (2 flops per lane
// per FMA) for 1..N threads as JSON. Not part of heed: a measuring stick.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
enum { LANES = 16 };
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define STORE _mm512_storeu_ps
#elif defined(__FMA__)
typedef __m256 vec;
enum { LANES = 8 };
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define STORE _mm256_storeu_ps
#else
#error "bench/fma_peak.c needs FMA (compile with -march=native on an x86-64 CPU with FMA)"
#endif

enum { CHAINS = 12 };
static const long ITERS = 100000000;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *chains(void *arg) {
  float *out = arg;
  vec b = SET1(1.0000001f), c = SET1(1e-7f);
  vec a0 = SET1(0), a1 = SET1(1), a2 = SET1(2), a3 = SET1(3), a4 = SET1(4), a5 = SET1(5);
  vec a6 = SET1(6), a7 = SET1(7), a8 = SET1(8), a9 = SET1(9), a10 = SET1(10), a11 = SET1(11);
  for (long k = 0; k < ITERS; k++) {
    a0 = FMA(a0, b, c), a1 = FMA(a1, b, c), a2 = FMA(a2, b, c), a3 = FMA(a3, b, c);
    a4 = FMA(a4, b, c), a5 = FMA(a5, b, c), a6 = FMA(a6, b, c), a7 = FMA(a7, b, c);
    a8 = FMA(a8, b, c), a9 = FMA(a9, b, c), a10 = FMA(a10, b, c), a11 = FMA(a11, b, c);
  }
  vec s = a0;  // keep every chain live
  s = FMA(s, a1, a2), s = FMA(s, a3, a4), s = FMA(s, a5, a6), s = FMA(s, a7, a8), s = FMA(s, a9, a10);
  s = FMA(s, a11, c);
  STORE(out, s);
  return NULL;
}

static double gflops(int nt) {
  pthread_t th[64];
  static float sink[64][LANES];
  double t0 = now();
  for (int i = 0; i < nt; i++) pthread_create(&th[i], NULL, chains, sink[i]);
  for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
  return nt * (double)ITERS * CHAINS * LANES * 2 / (now() - t0) / 1e9;
}

int main(int argc, char **argv) {
  int maxt = argc > 1 ? atoi(argv[1]) : 1;
  if (maxt < 1 || maxt > 64) maxt = 1;
  printf("{\"lanes\": %d", LANES);
  for (int nt = 1; nt <= maxt; nt++) {
    double best = 0;
    for (int r = 0; r < 3; r++) {  // the best of 3: the peak is what the cores can do
      double g = gflops(nt);
      if (g > best) best = g;
    }
    printf(", \"%d\": %.1f", nt, best);
  }
  printf("}\n");
  return 0;
}
