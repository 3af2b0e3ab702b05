// tests/unit/test_cg_features.c: the CPU feature tests of the LLVM backend
// (codegen/llvm.c): which vector width heed's kernels use is decided from
// LLVM's host feature list, so a feature must be matched exactly. Sapphire
// Rapids lists "+avx512fp16" before "+avx512f"; a substring search took the
// first for the second and ran 8-wide there.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "codegen/cg.h"

// Shortened host lists in LLVM's order (alphabetical, as
// LLVMGetHostCPUFeatures gives them), each with the features that matter.
static const char *spr = "+avx,+avx2,+avx512bf16,+avx512bitalg,+avx512bw,+avx512cd,+avx512dq,"
                         "+avx512fp16,+avx512f,+avx512ifma,+avx512vbmi,+avx512vl,+avx512vnni,+fma";
static const char *spr_fp16_first = "+avx512fp16,+avx2,+avx512f,+fma";
static const char *zen3 = "+avx,+avx2,-avx512bf16,-avx512bw,-avx512f,-avx512fp16,-avx512vl,+fma";
static const char *zen5 = "+avx,+avx2,+avx512bf16,+avx512bw,+avx512f,-avx512fp16,+avx512vl,+avx512vnni,+fma";
// AVX-512 disabled while its extensions are listed enabled (a VM that masks
// the foundation): the foundation decides.
static const char *masked = "+avx2,+avx512fp16,-avx512f,+avx512vl";

static void test_feature_exact(void **state) {
  (void)state;
  assert_int_equal(cg_llvm_feature(spr, "avx512f"), 1);
  assert_int_equal(cg_llvm_feature(spr, "avx512fp16"), 1);
  assert_int_equal(cg_llvm_feature(spr_fp16_first, "avx512f"), 1);
  assert_int_equal(cg_llvm_feature(zen3, "avx512f"), -1);
  assert_int_equal(cg_llvm_feature(zen3, "avx2"), 1);
  assert_int_equal(cg_llvm_feature(zen5, "avx512fp16"), -1);
  assert_int_equal(cg_llvm_feature(masked, "avx512f"), -1);
  assert_int_equal(cg_llvm_feature("+avx512fp16", "avx512f"), 0);  // a prefix is not the feature
  assert_int_equal(cg_llvm_feature("+avx512f", "avx512"), 0);
  assert_int_equal(cg_llvm_feature("", "avx2"), 0);
  assert_int_equal(cg_llvm_feature("+fma,", "fma"), 1);
  assert_int_equal(cg_llvm_feature(",,+fma", "fma"), 1);
}

static void test_avx512_host(void **state) {
  (void)state;
  assert_true(cg_llvm_cpu_avx512("sapphirerapids", spr));
  assert_true(cg_llvm_cpu_avx512("sapphirerapids", spr_fp16_first));
  assert_true(cg_llvm_cpu_avx512("znver5", zen5));
  assert_false(cg_llvm_cpu_avx512("znver3", zen3));
  // The list decides for the host, not the name (a VM may mask AVX-512).
  assert_false(cg_llvm_cpu_avx512("sapphirerapids", masked));
}

static void test_avx512_named(void **state) {
  (void)state;
  assert_true(cg_llvm_cpu_avx512("sapphirerapids", ""));
  assert_true(cg_llvm_cpu_avx512("znver4", NULL));
  assert_true(cg_llvm_cpu_avx512("x86-64-v4", ""));
  assert_true(cg_llvm_cpu_avx512("icelake-server", ""));
  assert_false(cg_llvm_cpu_avx512("znver3", ""));
  assert_false(cg_llvm_cpu_avx512("x86-64-v3", ""));
  assert_false(cg_llvm_cpu_avx512("haswell", ""));
  assert_int_equal(cg_llvm_cpu_vector_width("sapphirerapids"), 16);
  assert_int_equal(cg_llvm_cpu_vector_width("x86-64-v3"), 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_feature_exact),
      cmocka_unit_test(test_avx512_host),
      cmocka_unit_test(test_avx512_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
