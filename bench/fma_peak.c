// bench/fma_peak.c: prints the machine's FP32 FMA peak (bench/peak.c) for
// 1..N threads, as GFLOP/s, and as JSON with --json (bench/train_bench.py
// reads it to print a train step's fraction of the peak).
// usage: fma_peak [--threads 1,2] [--seconds S] [--json]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peak.h"

int main(int argc, char **argv) {
  int threads[8] = {1, 2}, nt = 2;
  double seconds = 0.5;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      nt = 0;
      for (char *s = argv[++i]; s && *s && nt < 8; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL)
        threads[nt++] = atoi(s);
    } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else {
      fprintf(stderr, "usage: %s [--threads 1,2] [--seconds S] [--json]\n", argv[0]);
      return 2;
    }
  }
  if (json) printf("{");
  for (int i = 0; i < nt; i++) {
    if (threads[i] < 1 || threads[i] > 64) {
      fprintf(stderr, "fma_peak: --threads: %d is not in 1..64\n", threads[i]);
      return 2;
    }
    int width;
    double gf = bench_fma_peak(threads[i], seconds, &width);
    if (gf <= 0) {
      fprintf(stderr, "fma_peak: this CPU has neither AVX-512F nor AVX2+FMA\n");
      return 1;
    }
    if (json)
      printf("%s\"%d\": %.1f", i ? ", " : "", threads[i], gf);
    else
      printf("FP32 FMA peak, %d thread%s, %d-wide: %.1f GFLOP/s\n", threads[i], threads[i] > 1 ? "s" : "", width, gf);
  }
  if (json) printf("}\n");
  return 0;
}
