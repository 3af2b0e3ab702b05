// runtime/quant.h: matmuls on quantized weights, the dequantization fused
// into the kernel (a weight is decoded in registers, never into a copy of
// the matrix). Sits under compiled programs and the quantize tooling:
//   x (m, k) f32, W (n, k) in a dtype of runtime/dtype.h --rt_qmatmul--> y (m, n) f32
// W is output-channel major (row j holds output j's k weights, contiguous),
// the layout of a GEMV over a decode step. One kernel per x86 level (generic
// C, AVX2+FMA, AVX-512, AVX-512 with VNNI/BF16), chosen from the CPU's
// features at run time (rt_isa_best) or named (tests, benchmarks).
// Deterministic: every y element is one dot product summed in a fixed order
// by one thread, so any thread count gives the same bits (per level).
#ifndef HEED_RT_QUANT_H
#define HEED_RT_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/rt.h"

typedef enum { RT_ISA_GENERIC, RT_ISA_AVX2, RT_ISA_AVX512, RT_ISA_AVX512_VNNI, RT_ISA_COUNT } RtIsa;

const char *rt_isa_name(RtIsa isa);  // "generic", "avx2", "avx512", "avx512-vnni"
bool rt_isa_runs(RtIsa isa);         // this CPU has the level's features
RtIsa rt_isa_best(void);             // the best level this CPU runs

// A quantized weight matrix (n, k).
//   RT_I8:   n*k int8, symmetric per output channel: w[j][i] = scale[j] * q[j][i]
//   RT_BF16: n*k bf16
//   RT_Q4_0, RT_Q4_1: each row k/32 blocks (runtime/dtype.h); k % 32 == 0
//   RT_F32:  n*k f32 (the unquantized baseline, through the same kernels)
typedef struct {
  RtDType dt;
  int64_t n, k;
  const void *w;
  const float *scale;  // RT_I8: n scales; else NULL
} RtQWeight;

// Checks w's dtype and shape: RT_OK, or RT_ERR_ARG with a message in err.
int rt_qweight_check(const RtQWeight *w, char *err, size_t errlen);

// y (m, n) = x (m, k) @ W^T on pool (NULL: the caller's thread) at level
// isa (which must run here). RT_ERR_ARG with err set on a bad weight.
int rt_qmatmul(RtPool *pool, RtIsa isa, const RtQWeight *w, const float *x, int64_t m, float *y, char *err,
               size_t errlen);

// Quantizes a row-major f32 matrix w (n, k) into dst (rt_qweight_bytes
// bytes) and, for RT_I8, scale (n): round to nearest; an all-zero row gets
// scale 0. Block formats need k % 32 == 0 (the caller pads or refuses).
int64_t rt_qweight_bytes(RtDType dt, int64_t n, int64_t k);  // -1: not a weight dtype or a bad k
void rt_quantize_rows(RtDType dt, const float *w, int64_t n, int64_t k, void *dst, float *scale);

// W8A8: y (m, n) = x (m, k) @ W^T with W RT_I8 (per channel) and each row of
// x quantized to int8 on the fly (per token, symmetric: rt_quantize_tokens),
// integer dot products (AVX2 vpmaddubsw, AVX-512 VNNI vpdpbusd). The integer
// sums are exact, so every level and thread count gives the same bits:
// y[r][j] = (float)sum(qx * qw) * (sx[r] * scale[j]).
int rt_qmatmul_w8a8(RtPool *pool, RtIsa isa, const RtQWeight *w, const float *x, int64_t m, float *y, char *err,
                    size_t errlen);
void rt_quantize_tokens(const float *x, int64_t m, int64_t k, int8_t *qx, float *sx);  // (m, k) -> codes, (m) scales

#endif
