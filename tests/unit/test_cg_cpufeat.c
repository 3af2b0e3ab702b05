// tests/unit/test_cg_cpufeat.c: codegen/cpufeat.c, the feature test that
// picks the backend's vector width (16 f32 lanes with AVX-512F, else 8).
// The feature strings are LLVM 19's LLVMGetHostCPUFeatures as printed on an
// AMD EPYC Zen 5 (verbatim) and, in the same order (LLVM prints its own
// feature map's order), with the signs of Intel Sapphire Rapids and AMD
// Zen 3 (from gcc -march=... -dM). On Sapphire Rapids "+avx512fp16" comes
// before "+avx512f": a substring search answered no there (heed ran 8-wide).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>


#include "codegen/cg.h"
#include "ir/alloc.h"

static const char *spr =
    "+prfchw,+cldemote,+avx,+aes,+sahf,+pclmul,-xop,+crc32,+xsaves,+avx512fp16,-usermsr,-sm4,-egpr,+sse4."
    "1,+avx512ifma,+xsave,+sse4.2,+tsxldtrk,-sm3,+ptwrite,-widekl,+invpcid,+64bit,+xsavec,-avx10.1-512,+a"
    "vx512vpopcntdq,+cmov,+avx512vp2intersect,+avx512cd,+movbe,-avxvnniint8,-ccmp,+amx-int8,-kl,-avx10.1-"
    "256,+evex512,+avxvnni,-rtm,+adx,+avx2,-hreset,+movdiri,+serialize,-sha512,+vpclmulqdq,+avx512vl,+uin"
    "tr,-cf,+clflushopt,-raoint,-cmpccxadd,+bmi,+amx-tile,+sse,+gfni,-avxvnniint16,-amx-fp16,-ndd,+xsaveo"
    "pt,+rdrnd,+avx512f,+amx-bf16,+avx512bf16,+avx512vnni,-push2pop2,+cx8,+avx512bw,+sse3,+pku,+fsgsbase,"
    "-clzero,-mwaitx,-lwp,+lzcnt,+sha,+movdir64b,-ppx,+wbnoinvd,+enqcmd,-avxneconvert,-tbm,+pconfig,-amx-"
    "complex,+ssse3,+cx16,+bmi2,+fma,+popcnt,-avxifma,+f16c,+avx512bitalg,-rdpru,+clwb,+mmx,+sse2,+rdseed"
    ",+avx512vbmi2,-prefetchi,+rdpid,-fma4,+avx512vbmi,+shstk,+vaes,+waitpkg,+sgx,+fxsr,+avx512dq,-sse4a";
static const char *zen3 =
    "+prfchw,-cldemote,+avx,+aes,+sahf,+pclmul,-xop,+crc32,+xsaves,-avx512fp16,-usermsr,-sm4,-egpr,+sse4."
    "1,-avx512ifma,+xsave,+sse4.2,-tsxldtrk,-sm3,-ptwrite,-widekl,+invpcid,+64bit,+xsavec,-avx10.1-512,-a"
    "vx512vpopcntdq,+cmov,-avx512vp2intersect,-avx512cd,+movbe,-avxvnniint8,-ccmp,-amx-int8,-kl,-avx10.1-"
    "256,-evex512,-avxvnni,-rtm,+adx,+avx2,-hreset,-movdiri,-serialize,-sha512,+vpclmulqdq,-avx512vl,-uin"
    "tr,-cf,+clflushopt,-raoint,-cmpccxadd,+bmi,-amx-tile,+sse,-gfni,-avxvnniint16,-amx-fp16,-ndd,+xsaveo"
    "pt,+rdrnd,-avx512f,-amx-bf16,-avx512bf16,-avx512vnni,-push2pop2,+cx8,-avx512bw,+sse3,+pku,+fsgsbase,"
    "+clzero,+mwaitx,-lwp,+lzcnt,+sha,-movdir64b,-ppx,+wbnoinvd,-enqcmd,-avxneconvert,-tbm,-pconfig,-amx-"
    "complex,+ssse3,+cx16,+bmi2,+fma,+popcnt,-avxifma,+f16c,-avx512bitalg,-rdpru,+clwb,+mmx,+sse2,+rdseed"
    ",-avx512vbmi2,-prefetchi,+rdpid,-fma4,-avx512vbmi,+shstk,+vaes,-waitpkg,-sgx,+fxsr,-avx512dq,+sse4a";
static const char *zen5 =
    "+prfchw,-cldemote,+avx,+aes,+sahf,+pclmul,-xop,+crc32,+xsaves,-avx512fp16,-usermsr,-sm4,-egpr,+sse4."
    "1,+avx512ifma,+xsave,+sse4.2,-tsxldtrk,-sm3,-ptwrite,-widekl,+invpcid,+64bit,+xsavec,-avx10.1-512,+a"
    "vx512vpopcntdq,+cmov,+avx512vp2intersect,+avx512cd,+movbe,-avxvnniint8,-ccmp,-amx-int8,-kl,-avx10.1-"
    "256,+evex512,+avxvnni,-rtm,+adx,+avx2,-hreset,-movdiri,-serialize,-sha512,+vpclmulqdq,+avx512vl,-uin"
    "tr,-cf,+clflushopt,-raoint,-cmpccxadd,+bmi,-amx-tile,+sse,+gfni,-avxvnniint16,-amx-fp16,-ndd,+xsaveo"
    "pt,+rdrnd,+avx512f,-amx-bf16,+avx512bf16,+avx512vnni,-push2pop2,+cx8,+avx512bw,+sse3,-pku,+fsgsbase,"
    "+clzero,-mwaitx,-lwp,+lzcnt,+sha,-movdir64b,-ppx,-wbnoinvd,-enqcmd,-avxneconvert,-tbm,-pconfig,-amx-"
    "complex,+ssse3,+cx16,+bmi2,+fma,+popcnt,-avxifma,+f16c,+avx512bitalg,-rdpru,+clwb,+mmx,+sse2,+rdseed"
    ",+avx512vbmi2,-prefetchi,+rdpid,-fma4,+avx512vbmi,+shstk,+vaes,-waitpkg,-sgx,+fxsr,+avx512dq,+sse4a";

static void test_hosts(void **state) {
  (void)state;
  assert_true(cg_cpu_feature(spr, "avx512f"));
  assert_true(cg_cpu_feature(spr, "avx512fp16"));
  assert_true(cg_cpu_feature(spr, "amx-tile"));
  assert_true(cg_cpu_has_avx512("sapphirerapids", spr));
  assert_false(cg_cpu_feature(zen3, "avx512f"));
  assert_true(cg_cpu_feature(zen3, "avx2"));
  assert_true(cg_cpu_feature(zen3, "fma"));
  assert_false(cg_cpu_has_avx512("znver3", zen3));
  assert_true(cg_cpu_has_avx512("znver5", zen5));
  assert_true(cg_cpu_feature(zen5, "avx512vnni"));
  assert_true(cg_cpu_feature(zen5, "avx512bf16"));
  assert_false(cg_cpu_feature(zen5, "avx512fp16"));
  assert_true(cg_cpu_feature(zen5, "sse4.1"));
  // The host string wins over the name: a CPU named like an AVX-512 one
  // whose features turn it off (a VM masking it) is 8-wide.
  assert_false(cg_cpu_has_avx512("znver5", zen3));
}

static void test_exact_entries(void **state) {
  (void)state;
  assert_false(cg_cpu_feature("+avx512fp16", "avx512f"));
  assert_false(cg_cpu_feature("+avx512fp16,+avx512ifma", "avx512f"));
  assert_true(cg_cpu_feature("+avx512fp16,+avx512f", "avx512f"));
  assert_true(cg_cpu_feature("+avx512f", "avx512f"));
  assert_false(cg_cpu_feature("+avx512", "avx512f"));
  assert_false(cg_cpu_feature("avx512f", "avx512f"));  // no sign: not LLVM's form
  assert_false(cg_cpu_feature("+avx512f,-avx512f", "avx512f"));  // the last mention wins
  assert_true(cg_cpu_feature("-avx512f,+avx512f", "avx512f"));
  assert_false(cg_cpu_feature("", "avx2"));
  assert_false(cg_cpu_feature(NULL, "avx2"));
  assert_true(cg_cpu_feature("+sse4.1,+sse4.2", "sse4.2"));
  assert_false(cg_cpu_feature("+sse4.1,+sse4.2", "sse4"));
}

static void test_named_cpus(void **state) {
  (void)state;
  const char *yes[] = {"sapphirerapids", "emeraldrapids", "graniterapids", "skylake-avx512", "skx", "cascadelake",
                       "icelake-client", "icelake_server", "tigerlake", "znver4", "znver5", "x86-64-v4", "knl"};
  const char *no[] = {"znver3", "skylake", "alderlake", "arrowlake", "haswell", "x86-64-v3", "x86-64", "",
                      "sapphirerapidsx", "znver"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) assert_true(cg_cpu_has_avx512(yes[i], ""));
  for (size_t i = 0; i < sizeof no / sizeof *no; i++) assert_false(cg_cpu_has_avx512(no[i], ""));
  assert_false(cg_cpu_has_avx512(NULL, NULL));
}

// The backend's width for the host is what its feature string says.
static void test_host_width(void **state) {
  (void)state;
  char *fs = cg_llvm_host_features();
  assert_non_null(fs);
  assert_int_equal(cg_llvm_cpu_vector_width(NULL), cg_cpu_feature(fs, "avx512f") ? 16 : 8);
  heed_free(fs);
  assert_int_equal(cg_llvm_cpu_vector_width("sapphirerapids"), 16);
  assert_int_equal(cg_llvm_cpu_vector_width("znver3"), 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hosts),
      cmocka_unit_test(test_exact_entries),
      cmocka_unit_test(test_named_cpus),
      cmocka_unit_test(test_host_width),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
