// tests/unit/test_rt_quant.c: the quantized matmul kernels (runtime/quant.c)
// against the reference: each weight dequantized by the dtype table's to_f32
// (times the I8 row scale), then an f64 matmul. Every dtype, every x86 level
// this CPU runs (the others are compiled into the same object), odd shapes,
// 1 and 3 threads bit-identical. Tolerance: |y - ref| <= 1e-5 * sum|x*w| + 1e-30
// (f32 accumulation of at most a few hundred terms).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/quant.h"

static float frand(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static const RtDType dts[] = {RT_F32, RT_I8, RT_BF16, RT_Q4_0, RT_Q4_1};

// Quantizes a random (n, k) matrix to dt; checks rt_qmatmul at every level
// that runs here against the dequantized f64 reference.
static void check_shape(RtDType dt, int64_t m, int64_t n, int64_t k, RtPool *pool3) {
  uint64_t seed = (uint64_t)(dt * 1000003 + m * 1009 + n * 31 + k);
  float *wf = malloc(sizeof(float) * (size_t)(n * k + 1)), *x = malloc(sizeof(float) * (size_t)(m * k + 1));
  float *deq = malloc(sizeof(float) * (size_t)(n * k + 1)), *scale = malloc(sizeof(float) * (size_t)(n + 1));
  float *y = malloc(sizeof(float) * (size_t)(m * n + 1)), *y3 = malloc(sizeof(float) * (size_t)(m * n + 1));
  for (int64_t i = 0; i < n * k; i++) wf[i] = frand(&seed) * (1 + (i % 7 == 0) * 3.0f);
  for (int64_t i = 0; i < m * k; i++) x[i] = frand(&seed);
  int64_t bytes = rt_qweight_bytes(dt, n, k);
  assert_true(bytes >= 0);
  uint8_t *q = malloc((size_t)bytes + 1);
  rt_quantize_rows(dt, wf, n, k, q, scale);
  int64_t rb = bytes / (n ? n : 1);
  for (int64_t j = 0; j < n; j++) {
    rt_dtype_info[dt].to_f32(q + j * rb, deq + j * k, k);
    for (int64_t i = 0; dt == RT_I8 && i < k; i++) deq[j * k + i] *= scale[j];
  }
  RtQWeight w = {dt, n, k, q, dt == RT_I8 ? scale : NULL};
  char err[200];
  for (int isa = 0; isa < RT_ISA_COUNT; isa++) {
    if (!rt_isa_runs((RtIsa)isa)) {
      print_message("  %s: not run on this CPU\n", rt_isa_name((RtIsa)isa));
      continue;
    }
    assert_int_equal(rt_qmatmul(NULL, (RtIsa)isa, &w, x, m, y, err, sizeof err), RT_OK);
    assert_int_equal(rt_qmatmul(pool3, (RtIsa)isa, &w, x, m, y3, err, sizeof err), RT_OK);
    assert_memory_equal(y, y3, sizeof(float) * (size_t)(m * n));  // any thread count: the same bits
    for (int64_t r = 0; r < m; r++)
      for (int64_t j = 0; j < n; j++) {
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < k; i++) {
          ref += (double)x[r * k + i] * deq[j * k + i];
          mag += fabs((double)x[r * k + i] * deq[j * k + i]);
        }
        double got = y[r * n + j];
        if (fabs(got - ref) > 1e-5 * mag + 1e-30)
          fail_msg("%s %s m=%lld n=%lld k=%lld y[%lld][%lld] = %.9g, reference %.9g", rt_dtype_name(dt),
                   rt_isa_name((RtIsa)isa), (long long)m, (long long)n, (long long)k, (long long)r, (long long)j,
                   got, ref);
      }
  }
  free(wf), free(x), free(deq), free(scale), free(y), free(y3), free(q);
}

static void test_kernels_vs_reference(void **state) {
  (void)state;
  RtPool *pool3 = rt_pool_new(3);
  assert_non_null(pool3);
  // (m, n, k): decode (m = 1), prefill rows 4-at-a-time plus a remainder,
  // n across task boundaries (32), k with and without a vector tail
  static const int64_t shapes[][3] = {{1, 1, 32}, {1, 37, 64}, {3, 70, 96}, {5, 33, 160},
                                      {1, 130, 256}, {9, 65, 32}, {4, 2, 224}};
  static const int64_t odd_k[][3] = {{1, 5, 1}, {2, 9, 7}, {3, 17, 37}, {6, 40, 100}};
  for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      check_shape(dts[d], shapes[s][0], shapes[s][1], shapes[s][2], pool3);
    if (!rt_dtype_info[dts[d]].is_quant)
      for (size_t s = 0; s < sizeof odd_k / sizeof odd_k[0]; s++)
        check_shape(dts[d], odd_k[s][0], odd_k[s][1], odd_k[s][2], pool3);
  }
  rt_pool_free(pool3);
}

// int8 per channel: each weight within half a step (scale/2) of the f32 one.
// W8A8: bit-exact against the integer reference at every level (the sums
// are exact), and the scheme's error against the f32 product within 2% of
// sum|x*w| (two int8 roundings).
static void test_w8a8(void **state) {
  (void)state;
  static const int64_t shapes[][3] = {{1, 1, 1}, {1, 37, 64}, {3, 70, 200}, {2, 33, 63}, {5, 65, 768}};
  RtPool *pool3 = rt_pool_new(3);
  for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
    int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
    uint64_t seed = (uint64_t)(m * 7 + n * 131 + k);
    float *wf = malloc(sizeof(float) * (size_t)(n * k)), *x = malloc(sizeof(float) * (size_t)(m * k));
    float *sw = malloc(sizeof(float) * (size_t)n), *sx = malloc(sizeof(float) * (size_t)m);
    float *y = malloc(sizeof(float) * (size_t)(m * n)), *y3 = malloc(sizeof(float) * (size_t)(m * n));
    int8_t *qw = malloc((size_t)(n * k)), *qx = malloc((size_t)(m * k));
    for (int64_t i = 0; i < n * k; i++) wf[i] = frand(&seed);
    for (int64_t i = 0; i < m * k; i++) x[i] = frand(&seed) * (i % 5 == 0 ? 4 : 1);
    rt_quantize_rows(RT_I8, wf, n, k, qw, sw);
    rt_quantize_tokens(x, m, k, qx, sx);
    RtQWeight w = {RT_I8, n, k, qw, sw};
    char err[200];
    for (int isa = 0; isa < RT_ISA_COUNT; isa++) {
      if (!rt_isa_runs((RtIsa)isa)) continue;
      assert_int_equal(rt_qmatmul_w8a8(NULL, (RtIsa)isa, &w, x, m, y, err, sizeof err), RT_OK);
      assert_int_equal(rt_qmatmul_w8a8(pool3, (RtIsa)isa, &w, x, m, y3, err, sizeof err), RT_OK);
      assert_memory_equal(y, y3, sizeof(float) * (size_t)(m * n));
      for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
          int64_t s = 0;
          double ref = 0, mag = 0;
          for (int64_t i = 0; i < k; i++) {
            s += (int64_t)qx[r * k + i] * qw[j * k + i];
            ref += (double)x[r * k + i] * wf[j * k + i];
            mag += fabs((double)x[r * k + i] * wf[j * k + i]);
          }
          float want = (float)(int32_t)s * (sx[r] * sw[j]);
          if (memcmp(&want, &y[r * n + j], sizeof want))
            fail_msg("w8a8 %s m=%lld n=%lld k=%lld y[%lld][%lld] = %.9g, integer reference %.9g", rt_isa_name((RtIsa)isa),
                     (long long)m, (long long)n, (long long)k, (long long)r, (long long)j, y[r * n + j], want);
          assert_true(fabs(y[r * n + j] - ref) <= 0.02 * mag + 1e-30);
        }
    }
    free(wf), free(x), free(sw), free(sx), free(y), free(y3), free(qw), free(qx);
  }
  char err[200];
  uint8_t q[8] = {0};
  float x1[8] = {0}, y1[1];
  RtQWeight bf = {RT_BF16, 1, 4, q, NULL};
  assert_int_equal(rt_qmatmul_w8a8(NULL, RT_ISA_GENERIC, &bf, x1, 1, y1, err, sizeof err), RT_ERR_ARG);
  assert_string_equal(err, "w8a8 needs I8 weights with K <= 133144, not BF16 with K = 4");
  rt_pool_free(pool3);
}

static void test_quantize_int8(void **state) {
  (void)state;
  float w[3 * 5] = {1, -2, 0.5f, 0.25f, 2, 0, 0, 0, 0, 0, -1e-3f, 3e-3f, 7, -7, 0};
  int8_t q[15];
  float s[3];
  rt_quantize_rows(RT_I8, w, 3, 5, q, s);
  assert_true(s[0] == 2.0f / 127 && s[1] == 0 && s[2] == 7.0f / 127);
  assert_int_equal(q[1], -127);
  for (int j = 0; j < 3; j++)
    for (int i = 0; i < 5; i++) assert_true(fabsf(q[j * 5 + i] * s[j] - w[j * 5 + i]) <= s[j] * 0.5f * 1.0001f);
}

static void test_bad_weights(void **state) {
  (void)state;
  char err[200];
  uint8_t q[64] = {0};
  float x[40] = {0}, y[4];
  RtQWeight w = {RT_Q4_0, 1, 40, q, NULL};
  assert_int_equal(rt_qmatmul(NULL, RT_ISA_GENERIC, &w, x, 1, y, err, sizeof err), RT_ERR_ARG);
  assert_string_equal(err, "a q4_0 weight needs K divisible by 32, not 40");
  w = (RtQWeight){RT_I8, 1, 8, q, NULL};
  assert_int_equal(rt_qmatmul(NULL, RT_ISA_GENERIC, &w, x, 1, y, err, sizeof err), RT_ERR_ARG);
  assert_string_equal(err, "the weight has no data or no scales");
  w = (RtQWeight){RT_I64, 1, 8, q, NULL};
  assert_int_equal(rt_qmatmul(NULL, RT_ISA_GENERIC, &w, x, 1, y, err, sizeof err), RT_ERR_ARG);
  assert_int_equal(rt_qweight_bytes(RT_Q4_1, 3, 64), 3 * 2 * 20);
  assert_int_equal(rt_qweight_bytes(RT_Q4_1, 3, 65), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernels_vs_reference),
      cmocka_unit_test(test_w8a8),
      cmocka_unit_test(test_quantize_int8),
      cmocka_unit_test(test_bad_weights),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
