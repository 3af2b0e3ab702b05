// bench/peak.h: the machine's FP32 FMA peak, measured (bench/peak.c), so
// that benchmarks print their GFLOP/s as a fraction of it.
#ifndef HEED_BENCH_PEAK_H
#define HEED_BENCH_PEAK_H

// GFLOP/s (an FMA = 2 flops) of nthreads threads running independent
// vector FMA chains for about `seconds`: 16-wide (AVX-512F) where the CPU
// has it, else 8-wide (AVX2 + FMA); 0 on a CPU with neither. *width gets
// the lanes used (may be NULL).
double bench_fma_peak(int nthreads, double seconds, int *width);

#endif
