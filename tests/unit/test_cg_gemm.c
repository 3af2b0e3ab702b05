// tests/unit/test_cg_gemm.c: the generated sgemm (codegen/gemm.c through
// codegen/llvm.c's JIT) against a double-accumulated reference, on shapes
// that hit every edge (1x1x1, odd sizes, sizes past MC, KC and NC), leading
// dimensions, beta, transposed B, transposed A; results bitwise identical for 1, 2, 3
// and 4 threads (runtime/threads.c; the task grid splits N, M or both); object files
// for the host and for an AVX-512 CPU.
//
// Tolerance: |C - ref| <= 3 sqrt(K) eps sum_k |A[i,k] B[k,j]| per element
// (eps = FLT_EPSILON): float rounding grows like sqrt(K) for random data.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "runtime/rt.h"

static CgLlvm *cg;
static CgGemmConfig cfg_nn, cfg_nt, cfg_tn;
static CgGemmFn gemm_nn, gemm_nt, gemm_tn;
static float *work;
static RtPool *pool2, *pool3, *pool4;
static Diag diag;

static int setup(void **state) {
  (void)state;
  diag_init(&diag, stderr);
  cg = cg_llvm_new(NULL, &diag);
  if (!cg)
    return -1;
  cg_gemm_config_default(cg, &cfg_nn, "heed_sgemm_nn", false);
  cg_gemm_config_default(cg, &cfg_nt, "heed_sgemm_nt", true);
  cg_gemm_config_default(cg, &cfg_tn, "heed_sgemm_tn", false);
  cfg_tn.trans_a = true;
  cfg_nn.nthreads_max = cfg_nt.nthreads_max = cfg_tn.nthreads_max = 4;
  cg_llvm_module_begin(cg, "gemm");
  if (!cg_gemm_emit(cg, &cfg_nn, &diag) || !cg_gemm_emit(cg, &cfg_nt, &diag) ||
      !cg_gemm_emit(cg, &cfg_tn, &diag) ||
      !cg_llvm_optimize(cg, &diag) ||
      !cg_llvm_define_symbol(cg, "rt_parallel_for", (void *)rt_parallel_for, &diag) ||
      !cg_llvm_jit_add(cg, &diag))
    return -1;
  gemm_nn = (CgGemmFn)cg_llvm_lookup(cg, "heed_sgemm_nn", &diag);
  gemm_nt = (CgGemmFn)cg_llvm_lookup(cg, "heed_sgemm_nt", &diag);
  gemm_tn = (CgGemmFn)cg_llvm_lookup(cg, "heed_sgemm_tn", &diag);
  work = aligned_alloc(64, cg_gemm_work_bytes(&cfg_nn));
  pool2 = rt_pool_new(2);
  pool3 = rt_pool_new(3);
  pool4 = rt_pool_new(4);
  return gemm_nn && gemm_nt && gemm_tn && work && pool2 && pool3 && pool4 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  rt_pool_free(pool2);
  rt_pool_free(pool3);
  rt_pool_free(pool4);
  free(work);
  cg_llvm_free(cg);
  diag_fini(&diag);
  return 0;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {  // uniform in [-1, 1)
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 40) / (double)(1ull << 23) - 1.0);
}

static float *rand_buf(size_t n) {
  float *p = malloc(n * sizeof *p + 1);
  for (size_t i = 0; i < n; i++)
    p[i] = frand();
  return p;
}

typedef struct {
  int64_t M, N, K;
  int pad;    // extra columns in lda, ldb, ldc
  int beta;
} Shape;

// Runs one shape with nthreads and returns C (M x ldc), checked against
// the reference.
// Modes: A @ B, A @ transpose(B) (B stored [N,K]), transpose(A) @ B (A
// stored [K,M]).
enum { NN, NT, TN };
static const char *mode_name[] = {"nn", "nt", "tn"};

static float *run_checked(const Shape *s, int mode, int nthreads) {
  int64_t M = s->M, N = s->N, K = s->K;
  bool tb = mode == NT, ta = mode == TN;
  int64_t lda = (ta ? M : K) + s->pad, ldb = (tb ? K : N) + s->pad, ldc = N + s->pad;
  uint64_t seed = rng;
  float *a = rand_buf((size_t)((ta ? K : M) * lda)), *b = rand_buf((size_t)((tb ? N : K) * ldb));
  float *c = rand_buf((size_t)(M * ldc)), *c0 = malloc((size_t)(M * ldc) * sizeof(float) + 1);
  memcpy(c0, c, (size_t)(M * ldc) * sizeof(float));
  RtPool *pools[5] = {NULL, NULL, pool2, pool3, pool4}, *pool = pools[nthreads];
  (mode == NT ? gemm_nt : mode == TN ? gemm_tn : gemm_nn)(M, N, K, a, lda, b, ldb, c, ldc, s->beta, pool, nthreads, work);
  int bad = 0;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < ldc; j++) {
      float got = c[i * ldc + j];
      if (j >= N) {  // padding untouched
        if (memcmp(&got, &c0[i * ldc + j], sizeof got) != 0 && bad++ < 5)
          print_error("pad C[%lld,%lld] written\n", (long long)i, (long long)j);
        continue;
      }
      double ref = s->beta ? c0[i * ldc + j] : 0, mag = fabs(ref);
      for (int64_t k = 0; k < K; k++) {
        double bkj = tb ? b[j * ldb + k] : b[k * ldb + j], aik = ta ? a[k * lda + i] : a[i * lda + k];
        ref += aik * bkj;
        mag += fabs(aik * bkj);
      }
      double tol = 3 * sqrt((double)K + 1) * FLT_EPSILON * mag + FLT_MIN;
      if (!(fabs(got - ref) <= tol) && bad++ < 5)
        print_error("%s %lldx%lldx%lld: C[%lld,%lld] = %.9g, want %.9g (tol %.3g)\n",
                    mode_name[mode], (long long)M, (long long)N, (long long)K, (long long)i,
                    (long long)j, got, ref, tol);
    }
  free(a);
  free(b);
  free(c0);
  rng = seed;  // the same inputs for every thread count
  assert_int_equal(bad, 0);
  return c;
}

static const Shape shapes[] = {
    {1, 1, 1, 0, 0},     {7, 13, 5, 0, 0},    {127, 129, 65, 0, 0}, {6, 16, 1, 0, 0},
    {12, 32, 3, 0, 1},   {5, 17, 9, 3, 0},    {33, 15, 300, 1, 0},  {17, 33, 513, 0, 1},
    {150, 20, 7, 2, 0},  {300, 47, 31, 0, 0}, {3, 3100, 3, 0, 0},   {2, 6200, 5, 5, 1},
    {1, 50, 257, 0, 0},  {13, 1, 257, 7, 0},  {64, 64, 64, 0, 0},   {100, 100, 0, 0, 0},
    {9, 9, 0, 1, 1},     {0, 5, 5, 0, 0},     {5, 0, 5, 0, 0},      {97, 768, 130, 0, 0},
    // tall and thin (the grid splits M, or M and N), K past two KC blocks
    {1024, 40, 128, 0, 0}, {301, 50, 515, 1, 1}, {61, 1000, 37, 3, 0},  {6, 16, 256, 0, 0},
    {130, 17, 600, 2, 1},  {25, 7, 3, 0, 0},
    // row-major A read in place up to 512 columns a task, packed past that
    {70, 530, 20, 0, 1},   {13, 1030, 9, 1, 0},
};

static void check_shapes(int tb) {
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const Shape *s = &shapes[i];
    size_t n = (size_t)(s->M * (s->N + s->pad));
    float *c1 = run_checked(s, tb, 1);
    for (int nt = 2; nt <= 4; nt++) {
      float *c = run_checked(s, tb, nt);
      // Bitwise: each element is computed by one thread in the same K order.
      if (memcmp(c1, c, n * sizeof(float)) != 0)
        fail_msg("%s %lldx%lldx%lld: results differ between 1 and %d threads", mode_name[tb],
                 (long long)s->M, (long long)s->N, (long long)s->K, nt);
      free(c);
    }
    free(c1);
    frand();  // new inputs for the next shape
  }
}

static void test_gemm_nn(void **state) {
  (void)state;
  check_shapes(NN);
}

static void test_gemm_nt(void **state) {
  (void)state;
  check_shapes(NT);
}

static void test_gemm_tn(void **state) {
  (void)state;
  check_shapes(TN);
}

// A missing symbol is a diagnostic and NULL, not a crash.
static void test_lookup_missing(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  assert_null(cg_llvm_lookup(cg, "no_such_function", &d));
  assert_int_equal(d.nerr, 1);
  assert_non_null(strstr(d.log, "no_such_function"));
  diag_fini(&d);
}

static long emit_size(const char *cpu, int want_vw) {
  Diag d;
  diag_init(&d, stderr);
  CgLlvm *c = cg_llvm_new(cpu, &d);
  assert_non_null(c);
  if (want_vw)
    assert_int_equal(cg_llvm_vector_width(c), want_vw);
  CgGemmConfig cfg;
  cg_gemm_config_default(c, &cfg, "heed_sgemm", true);
  cg_llvm_module_begin(c, "aot");
  char path[64];
  snprintf(path, sizeof path, "/tmp/heed_cg_gemm_%d.o", (int)getpid());
  assert_true(cg_gemm_emit(c, &cfg, &d));
  assert_true(cg_llvm_optimize(c, &d));
  assert_true(cg_llvm_emit_object(c, path, &d));
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  unlink(path);
  cg_llvm_free(c);
  assert_int_equal(d.nerr, 0);
  diag_fini(&d);
  return (long)st.st_size;
}

static void test_emit_object(void **state) {
  (void)state;
  assert_true(emit_size(NULL, 0) > 0);         // the host
  assert_true(emit_size("znver5", 16) > 0);    // AVX-512, whatever the host
  assert_true(emit_size("x86-64-v3", 8) > 0);  // AVX2
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemm_nn),
      cmocka_unit_test(test_gemm_nt),
      cmocka_unit_test(test_gemm_tn),
      cmocka_unit_test(test_lookup_missing),
      cmocka_unit_test(test_emit_object),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
