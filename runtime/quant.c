// runtime/quant.c: rt_qmatmul (runtime/quant.h) - the kernel set of each
// x86 level (runtime/quant_kern.h, included once per level with its target
// attribute), the choice of level from the CPU's features, the threading
// (tasks of output channels) and the weight quantizer.
// Built with -ffp-contract=fast (CMakeLists.txt): a*b+c is one FMA where the
// level has FMA.
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/quant.h"

#define QK_SUF generic
#define QK_TARGET "arch=x86-64"
#define QK_W 4  // SSE2 registers
#define QK_H2F(h) rt_f16_to_f32(h)
#include "runtime/quant_kern.h"
#undef QK_SUF
#undef QK_TARGET
#undef QK_W
#undef QK_H2F

#define QK_SUF avx2
#define QK_TARGET "avx2,fma,f16c"
#define QK_H2F(h) _cvtsh_ss(h)
#define QK_W 8
#include "runtime/quant_kern.h"
#undef QK_SUF
#undef QK_TARGET
#undef QK_W
#undef QK_H2F

#define QK_SUF avx512
#define QK_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define QK_H2F(h) _cvtsh_ss(h)
#define QK_W 16
#include "runtime/quant_kern.h"
#undef QK_SUF
#undef QK_TARGET
#undef QK_W
#undef QK_H2F

#define QK_SUF avx512vnni
#define QK_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c"
#define QK_H2F(h) _cvtsh_ss(h)
#define QK_W 16
#include "runtime/quant_kern.h"
#undef QK_SUF
#undef QK_TARGET
#undef QK_W
#undef QK_H2F

typedef void (*RowsFn)(const RtQWeight *w, int64_t j0, int64_t j1, const float *x, int64_t m, const float *xsum, float *y);
static const struct {
  const char *name;
  RowsFn rows;
} levels[RT_ISA_COUNT] = {
    [RT_ISA_GENERIC] = {"generic", rows_generic},
    [RT_ISA_AVX2] = {"avx2", rows_avx2},
    [RT_ISA_AVX512] = {"avx512", rows_avx512},
    [RT_ISA_AVX512_VNNI] = {"avx512-vnni", rows_avx512vnni},
};

const char *rt_isa_name(RtIsa isa) { return (unsigned)isa < RT_ISA_COUNT ? levels[isa].name : "?"; }

bool rt_isa_runs(RtIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
  case RT_ISA_GENERIC: return true;
  case RT_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  case RT_ISA_AVX512:
    return rt_isa_runs(RT_ISA_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  case RT_ISA_AVX512_VNNI:
    return rt_isa_runs(RT_ISA_AVX512) && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512bf16");
  case RT_ISA_COUNT: break;
  }
  return false;
}

RtIsa rt_isa_best(void) {
  for (int i = RT_ISA_COUNT - 1; i > 0; i--)
    if (rt_isa_runs((RtIsa)i)) return (RtIsa)i;
  return RT_ISA_GENERIC;
}

int64_t rt_qweight_bytes(RtDType dt, int64_t n, int64_t k) {
  if (n < 0 || k < 0) return -1;
  if (dt != RT_F32 && dt != RT_I8 && dt != RT_BF16 && dt != RT_Q4_0 && dt != RT_Q4_1) return -1;
  int64_t nk, b;
  if (__builtin_mul_overflow(n, k, &nk)) return -1;
  b = rt_dtype_bytes(dt, nk);
  return k % rt_dtype_info[dt].block ? -1 : b;
}

int rt_qweight_check(const RtQWeight *w, char *err, size_t errlen) {
  if ((unsigned)w->dt >= RT_DT_COUNT || rt_qweight_bytes(w->dt, w->n, w->k) < 0) {
    if ((unsigned)w->dt < RT_DT_COUNT && rt_dtype_info[w->dt].is_quant && w->k % RT_QBLOCK)
      snprintf(err, errlen, "a %s weight needs K divisible by %d, not %lld", rt_dtype_name(w->dt), RT_QBLOCK,
               (long long)w->k);
    else
      snprintf(err, errlen, "a quantized weight is F32, I8, BF16, q4_0 or q4_1 with a valid shape, not %s (%lld, %lld)",
               rt_dtype_name(w->dt), (long long)w->n, (long long)w->k);
    return RT_ERR_ARG;
  }
  if ((!w->w && w->n && w->k) || (w->dt == RT_I8 && !w->scale && w->n)) {
    snprintf(err, errlen, "the weight has no data%s", w->dt == RT_I8 ? " or no scales" : "");
    return RT_ERR_ARG;
  }
  return RT_OK;
}

enum { QM_TASK_ROWS = 32 };  // output channels per task

typedef struct {
  RowsFn rows;
  const RtQWeight *w;
  const float *x;
  int64_t m;
  const float *xsum;  // (m, k/32) block sums of x for q4_1, else NULL
  float *y;
} QmCtx;

static void qm_task(void *ctx, int64_t t, int32_t thread) {
  (void)thread;
  const QmCtx *c = ctx;
  int64_t j0 = t * QM_TASK_ROWS, j1 = j0 + QM_TASK_ROWS < c->w->n ? j0 + QM_TASK_ROWS : c->w->n;
  c->rows(c->w, j0, j1, c->x, c->m, c->xsum, c->y);
}

int rt_qmatmul(RtPool *pool, RtIsa isa, const RtQWeight *w, const float *x, int64_t m, float *y, char *err,
               size_t errlen) {
  int rc = rt_qweight_check(w, err, errlen);
  if (rc != RT_OK) return rc;
  if ((unsigned)isa >= RT_ISA_COUNT || !rt_isa_runs(isa)) {
    snprintf(err, errlen, "this CPU cannot run the %s kernels", rt_isa_name(isa));
    return RT_ERR_ARG;
  }
  if (m <= 0 || w->n == 0) return RT_OK;
  float *xsum = NULL;
  if (w->dt == RT_Q4_1) {
    int64_t nb = w->k / RT_QBLOCK;
    if (!(xsum = rt_malloc(sizeof(float) * (size_t)(m * nb + 1)))) {
      snprintf(err, errlen, "out of memory");
      return RT_ERR_NOMEM;
    }
    for (int64_t i = 0; i < m * nb; i++) {
      float s = 0;
      for (int e = 0; e < RT_QBLOCK; e++) s += x[i * RT_QBLOCK + e];
      xsum[i] = s;
    }
  }
  QmCtx c = {levels[isa].rows, w, x, m, xsum, y};
  rt_parallel_for(pool, (w->n + QM_TASK_ROWS - 1) / QM_TASK_ROWS, qm_task, &c);
  rt_free(xsum);
  return RT_OK;
}

void rt_quantize_rows(RtDType dt, const float *w, int64_t n, int64_t k, void *dst, float *scale) {
  int64_t rb = rt_qweight_bytes(dt, 1, k);
  for (int64_t j = 0; j < n; j++) {
    const float *r = w + j * k;
    uint8_t *o = (uint8_t *)dst + j * rb;
    if (dt != RT_I8) {
      rt_dtype_info[dt].from_f32(r, o, k);
      continue;
    }
    float amax = 0;  // symmetric: the largest magnitude maps to 127
    for (int64_t i = 0; i < k; i++) amax = fmaxf(amax, fabsf(r[i]));
    float s = amax / 127.0f, inv = s != 0 ? 1.0f / s : 0;
    scale[j] = s;
    for (int64_t i = 0; i < k; i++) {
      long q = lrintf(r[i] * inv);
      o[i] = (uint8_t)(int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
    }
  }
}

// ---- W8A8: int8 weights, per-token dynamic int8 activations ----
// x's row r is quantized symmetrically (sx[r] = max|x| / 127); the dot
// product of codes is an exact int32 (|sum| < k * 127^2), so every level
// gives the same integer and y = (float)s * (sx * sw) the same bits.
// |x| and sign(x) moved onto w make the u8 x s8 products of vpmaddubsw (AVX2,
// AVX-512: two products per i16, at most 2 * 127^2, never saturating) and
// vpdpbusd (VNNI) exact.

enum { W8A8_MAX_K = (int64_t)2147483647 / (127 * 127) };

static int32_t dot_i8_generic(const int8_t *a, const int8_t *b, int64_t k) {
  int32_t s = 0;
  for (int64_t i = 0; i < k; i++) s += (int32_t)a[i] * b[i];
  return s;
}

__attribute__((target("avx2"))) static int32_t dot_i8_avx2(const int8_t *a, const int8_t *b, int64_t k) {
  __m256i acc = _mm256_setzero_si256(), ones = _mm256_set1_epi16(1);
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    __m256i x = _mm256_loadu_si256((const __m256i *)(a + i)), w = _mm256_loadu_si256((const __m256i *)(b + i));
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
  int32_t l[8];
  _mm256_storeu_si256((__m256i *)l, acc);
  int32_t s = l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
  return s + dot_i8_generic(a + i, b + i, k - i);
}

__attribute__((target("avx512f,avx512bw"))) static int32_t dot_i8_avx512(const int8_t *a, const int8_t *b, int64_t k) {
  __m512i acc = _mm512_setzero_si512(), ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) {
    __m512i x = _mm512_loadu_si512(a + i), w = _mm512_loadu_si512(b + i);
    __m512i sw = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(x), zero, w);  // w * sign(x)
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(x), sw), ones));
  }
  return _mm512_reduce_add_epi32(acc) + dot_i8_generic(a + i, b + i, k - i);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static int32_t dot_i8_vnni(const int8_t *a, const int8_t *b,
                                                                                   int64_t k) {
  __m512i acc = _mm512_setzero_si512(), zero = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) {
    __m512i x = _mm512_loadu_si512(a + i), w = _mm512_loadu_si512(b + i);
    __m512i sw = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(x), zero, w);
    acc = _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(x), sw);  // vpdpbusd
  }
  return _mm512_reduce_add_epi32(acc) + dot_i8_generic(a + i, b + i, k - i);
}

typedef int32_t (*DotI8Fn)(const int8_t *a, const int8_t *b, int64_t k);
static const DotI8Fn dot_i8[RT_ISA_COUNT] = {dot_i8_generic, dot_i8_avx2, dot_i8_avx512, dot_i8_vnni};

typedef struct {
  DotI8Fn dot;
  const RtQWeight *w;
  const int8_t *qx;  // (m, k) codes
  const float *sx;   // (m) scales
  int64_t m;
  float *y;
} W8Ctx;

static void w8_task(void *ctx, int64_t t, int32_t thread) {
  (void)thread;
  const W8Ctx *c = ctx;
  const int64_t n = c->w->n, k = c->w->k;
  int64_t j1 = (t + 1) * QM_TASK_ROWS < n ? (t + 1) * QM_TASK_ROWS : n;
  for (int64_t j = t * QM_TASK_ROWS; j < j1; j++)
    for (int64_t r = 0; r < c->m; r++) {
      int32_t s = c->dot(c->qx + r * k, (const int8_t *)c->w->w + j * k, k);
      c->y[r * n + j] = (float)s * (c->sx[r] * c->w->scale[j]);
    }
}

void rt_quantize_tokens(const float *x, int64_t m, int64_t k, int8_t *qx, float *sx) {
  rt_quantize_rows(RT_I8, x, m, k, qx, sx);
}

int rt_qmatmul_w8a8(RtPool *pool, RtIsa isa, const RtQWeight *w, const float *x, int64_t m, float *y, char *err,
                    size_t errlen) {
  int rc = rt_qweight_check(w, err, errlen);
  if (rc != RT_OK) return rc;
  if (w->dt != RT_I8 || w->k > W8A8_MAX_K) {
    snprintf(err, errlen, "w8a8 needs I8 weights with K <= %d, not %s with K = %lld", (int)W8A8_MAX_K,
             rt_dtype_name(w->dt), (long long)w->k);
    return RT_ERR_ARG;
  }
  if ((unsigned)isa >= RT_ISA_COUNT || !rt_isa_runs(isa)) {
    snprintf(err, errlen, "this CPU cannot run the %s kernels", rt_isa_name(isa));
    return RT_ERR_ARG;
  }
  if (m <= 0 || w->n == 0) return RT_OK;
  int8_t *qx = rt_malloc((size_t)(m * w->k + 1));
  float *sx = rt_malloc(sizeof(float) * (size_t)m);
  if (!qx || !sx) {
    rt_free(qx), rt_free(sx);
    snprintf(err, errlen, "out of memory");
    return RT_ERR_NOMEM;
  }
  rt_quantize_tokens(x, m, w->k, qx, sx);
  W8Ctx c = {dot_i8[isa], w, qx, sx, m, y};
  rt_parallel_for(pool, (w->n + QM_TASK_ROWS - 1) / QM_TASK_ROWS, w8_task, &c);
  rt_free(qx), rt_free(sx);
  return RT_OK;
}
