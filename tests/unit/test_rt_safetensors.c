// tests/unit/test_rt_safetensors.c: the runtime's safetensors reader and
// writer (runtime/safetensors.c), where weights, inputs and checkpoints
// enter and leave heed: f16/bf16 conversions on known values and against
// an independent reference, a round trip of every dtype with metadata, a
// file byte-for-byte as the Python `safetensors` package writes it, every
// malformed header giving its message, and failed writes leaving the old
// file in place. Links heedrt only (no ir/, no frontend/).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/rt.h"

static char tmpdir[64];  // a fresh directory per run (group setup)

static char *tpath(const char *name) {  // caller frees
  char *p = malloc(strlen(tmpdir) + strlen(name) + 2);
  sprintf(p, "%s/%s", tmpdir, name);
  return p;
}

static int group_setup(void **state) {
  (void)state;
  strcpy(tmpdir, "/tmp/heed_st_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static void rm_rf(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      chmod(p, 0755);
      rm_rf(p);
    } else {
      unlink(p);
    }
  }
  closedir(d);
  rmdir(dir);
}

static int group_teardown(void **state) {
  (void)state;
  rm_rf(tmpdir);
  return 0;
}

static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bitsf(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)n + 1);
  *len = fread(b, 1, (size_t)n, f);
  fclose(f);
  return b;
}

static void write_file(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

// Files in dir whose name contains ".tmp." (leftover temporaries).
static int count_temps(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

// ---- dtypes and conversions ----

static void test_dtype_table(void **state) {
  (void)state;
  const char *names[] = {"F32", "F16", "BF16", "I32", "I64", "I8", "U8", "BOOL"};
  size_t sizes[] = {4, 2, 2, 4, 8, 1, 1, 1};
  for (int i = 0; i < RT_DT_PLAIN; i++) {
    assert_string_equal(rt_dtype_name((RtDType)i), names[i]);
    assert_int_equal(rt_dtype_size((RtDType)i), sizes[i]);
    assert_int_equal(rt_dtype_info[i].block, 1);
    assert_int_equal(rt_dtype_info[i].block_bytes, sizes[i]);
    assert_non_null(rt_dtype_info[i].set);
  }
  // the block formats: no per-element size, no safetensors spelling
  assert_string_equal(rt_dtype_name(RT_Q4_0), "q4_0");
  assert_int_equal(rt_dtype_size(RT_Q4_1), 0);
  assert_int_equal(rt_dtype_bytes(RT_Q4_0, 64), 36);
  assert_int_equal(rt_dtype_bytes(RT_Q4_1, 64), 40);
  assert_int_equal(rt_dtype_bytes(RT_Q4_0, 33), -1);
  assert_null(rt_dtype_info[RT_Q4_0].st_name);
  assert_string_equal(rt_dtype_name(RT_DT_COUNT), "?");
  assert_int_equal(rt_dtype_size(RT_DT_COUNT), 0);
}

// Q4_0 / Q4_1: from_f32 then to_f32 is within half a step of each weight
// (d/2 per block), exact on the grid, and get() agrees with to_f32.
static void test_q4_rows(void **state) {
  (void)state;
  float x[64], y[64];
  for (int i = 0; i < 64; i++) x[i] = (float)((i * 37) % 29) * 0.125f - 1.5f + (i >= 32 ? 3.0f : 0.0f);
  for (int dt = RT_Q4_0; dt <= RT_Q4_1; dt++) {
    const RtDTypeInfo *r = &rt_dtype_info[dt];
    uint8_t q[40];
    r->from_f32(x, q, 64);
    r->to_f32(q, y, 64);
    for (int b = 0; b < 2; b++) {
      float lo = x[32 * b], hi = x[32 * b];
      for (int j = 0; j < 32; j++) lo = fminf(lo, x[32 * b + j]), hi = fmaxf(hi, x[32 * b + j]);
      float step = dt == RT_Q4_0 ? fmaxf(fabsf(lo), fabsf(hi)) / 8 : (hi - lo) / 15;
      for (int j = 0; j < 32; j++) {
        int i = 32 * b + j;
        assert_true(fabsf(y[i] - x[i]) <= step * 0.5f * 1.01f + 1e-6f);
        assert_true(r->get(q, i) == (double)y[i]);
      }
    }
    float z[32];  // a block of zeros: scale 0, every weight 0
    memset(z, 0, sizeof z);
    r->from_f32(z, q, 32);
    r->to_f32(q, y, 32);
    for (int j = 0; j < 32; j++) assert_true(y[j] == 0);
  }
}

static void test_f16_known(void **state) {
  (void)state;
  const struct {
    uint32_t f;
    uint16_t h;
  } cases[] = {
      {0x3f800000, 0x3c00},  // 1.0
      {0xc0200000, 0xc100},  // -2.5
      {0x477fe000, 0x7bff},  // 65504, the largest half
      {0x477fefff, 0x7bff},  // just below the tie with 65536
      {0x477ff000, 0x7c00},  // 65520: the tie rounds to even, which is inf
      {0x7f7fffff, 0x7c00},  // FLT_MAX overflows to inf
      {0x7f800000, 0x7c00},  // inf
      {0xff800000, 0xfc00},  // -inf
      {0x00000000, 0x0000},  // 0
      {0x80000000, 0x8000},  // -0
      {0x38800000, 0x0400},  // 2^-14, the smallest normal
      {0x387fc000, 0x03ff},  // 1023 * 2^-24, the largest subnormal
      {0x33800000, 0x0001},  // 2^-24, the smallest subnormal
      {0x33000000, 0x0000},  // 2^-25: the tie between 0 and 2^-24 goes to even 0
      {0x33000001, 0x0001},  // just above the tie
      {0x33c00000, 0x0002},  // 3 * 2^-25: the tie between 1 and 2 units goes to 2
      {0x34200000, 0x0002},  // 5 * 2^-25: the tie between 2 and 3 units goes to 2
      {0x387fe000, 0x0400},  // 1023.5 units: the tie rounds up into the normal range
      {0x00000001, 0x0000},  // the smallest f32 subnormal
      {0x3f801000, 0x3c00},  // 1 + 2^-11: the tie between 1 and 1+2^-10 goes to 1
      {0x3f803000, 0x3c02},  // 1 + 3*2^-11: the tie goes to the even 1+2^-9
      {0x3f801001, 0x3c01},  // just above the tie
      {0x3f7ff000, 0x3c00},  // 1 - 2^-12: the tie between 1-2^-11 and 1 goes to 1
      {0xbf7ff000, 0xbc00},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t h = rt_f32_to_f16(bitsf(cases[i].f));
    if (h != cases[i].h) fail_msg("f32 0x%08x -> f16 0x%04x, want 0x%04x", cases[i].f, h, cases[i].h);
  }
  // NaN stays NaN (quiet), whatever its payload and sign
  uint32_t nans[] = {0x7fc00000, 0x7f800001, 0xffc00000, 0x7fbfffff, 0xff800001};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
    uint16_t h = rt_f32_to_f16(bitsf(nans[i]));
    assert_int_equal(h & 0x7c00, 0x7c00);
    assert_true(h & 0x0200);  // quiet
    assert_int_equal(h & 0x8000, (nans[i] >> 16) & 0x8000);
  }
  // f16 -> f32
  assert_int_equal(fbits(rt_f16_to_f32(0x3c00)), 0x3f800000);
  assert_int_equal(fbits(rt_f16_to_f32(0xc100)), 0xc0200000);
  assert_int_equal(fbits(rt_f16_to_f32(0x7bff)), 0x477fe000);
  assert_int_equal(fbits(rt_f16_to_f32(0x0001)), 0x33800000);
  assert_int_equal(fbits(rt_f16_to_f32(0x03ff)), 0x387fc000);
  assert_int_equal(fbits(rt_f16_to_f32(0x8001)), 0xb3800000);
  assert_int_equal(fbits(rt_f16_to_f32(0x0400)), 0x38800000);
  assert_int_equal(fbits(rt_f16_to_f32(0x7c00)), 0x7f800000);
  assert_int_equal(fbits(rt_f16_to_f32(0xfc00)), 0xff800000);
  assert_int_equal(fbits(rt_f16_to_f32(0x8000)), 0x80000000);
  assert_true(isnan(rt_f16_to_f32(0x7e00)));
  assert_true(isnan(rt_f16_to_f32(0x7c01)));  // a signalling payload is still NaN
  assert_true(isnan(rt_f16_to_f32(0xfe00)));
}

static void test_f16_exhaustive(void **state) {
  (void)state;
  // Every half survives f16 -> f32 -> f16 (NaNs stay NaN), and the f32 value
  // is exactly the half's value.
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = rt_f16_to_f32((uint16_t)h);
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f && mant) {
      assert_true(isnan(f));
      assert_true(isnan(rt_f16_to_f32(rt_f32_to_f16(f))));
      continue;
    }
    double want = exp == 0x1f ? INFINITY : exp ? ldexp(1024 + mant, (int)exp - 25) : ldexp(mant, -24);
    if (h & 0x8000) want = -want;
    if ((double)f != want) fail_msg("f16 0x%04x -> %.9g, want %.9g", h, f, want);
    uint16_t back = rt_f32_to_f16(f);
    if (back != h) fail_msg("f16 0x%04x -> f32 -> 0x%04x", h, back);
  }
}

// The nearest value of the form m * 2^e with round-to-nearest-even, by
// comparing the two candidates around x in double: an independent check of
// the bit-twiddling conversions. lo is the candidate at or below |x|.
static bool pick_upper(double ax, double lo, double hi, bool lo_even) {
  double dl = ax - lo, dh = hi - ax;
  return dh < dl || (dh == dl && !lo_even);
}

// Reference f32 -> f16 for finite x.
static uint16_t ref_f16(float x) {
  uint16_t sign = signbit(x) ? 0x8000 : 0;
  double ax = fabs((double)x);
  // walk the halves: find the largest half value <= ax
  uint16_t lo = 0;
  for (int bit = 14; bit >= 0; bit--) {
    uint16_t c = lo | (uint16_t)(1u << bit);
    if (c <= 0x7bff && rt_f16_to_f32(c) <= ax) lo = c;
  }
  double lov = rt_f16_to_f32(lo);
  if (lov == ax) return sign | lo;
  double hiv = lo == 0x7bff ? 65536.0 : rt_f16_to_f32((uint16_t)(lo + 1));
  return sign | (uint16_t)(pick_upper(ax, lov, hiv, (lo & 1) == 0) ? lo + 1 : lo);  // 0x7c00 is inf
}

static uint16_t ref_bf16(float x) {
  uint32_t u = fbits(x);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  double ax = fabs((double)x);
  uint16_t lo = (uint16_t)((u & 0x7fffffff) >> 16);  // truncation is at or below |x|
  double lov = rt_bf16_to_f32(lo);
  if (lov == ax) return sign | lo;
  double hiv = lo == 0x7f7f ? ldexp(1, 128) : rt_bf16_to_f32((uint16_t)(lo + 1));
  return sign | (uint16_t)(pick_upper(ax, lov, hiv, (lo & 1) == 0) ? lo + 1 : lo);  // 0x7f80 is inf
}

static void test_f32_to_half_sweep(void **state) {
  (void)state;
  // f32 bit patterns spread over the whole range, plus every pattern whose
  // dropped bits are a tie or next to one (the low 13 or 16 bits), checked
  // against the reference above and, where the compiler has it, _Float16.
  int checked = 0;
  for (uint64_t i = 0; i < (1ull << 32); i += 65521) {
    for (int k = 0; k < 6; k++) {
      uint32_t ties[] = {0, 0x1000, 0x0fff, 0x1001, 0x8000, 0x7fff};
      uint32_t u = (uint32_t)i;
      if (k) u = (k < 4 ? u & ~0x1fffu : u & ~0xffffu) | ties[k];
      float x = bitsf(u);
      if (isnan(x)) {
        assert_true(isnan(rt_f16_to_f32(rt_f32_to_f16(x))));
        assert_true(isnan(rt_bf16_to_f32(rt_f32_to_bf16(x))));
        continue;
      }
      uint16_t h = rt_f32_to_f16(x), want = isinf(x) ? (signbit(x) ? 0xfc00 : 0x7c00) : ref_f16(x);
      if (h != want) fail_msg("f32 0x%08x -> f16 0x%04x, reference 0x%04x", u, h, want);
#if defined(__FLT16_MAX__)
      _Float16 c = (_Float16)x;
      uint16_t hc;
      memcpy(&hc, &c, 2);
      if (h != hc) fail_msg("f32 0x%08x -> f16 0x%04x, _Float16 0x%04x", u, h, hc);
#endif
      uint16_t b = rt_f32_to_bf16(x), wantb = isinf(x) ? (uint16_t)(u >> 16) : ref_bf16(x);
      if (b != wantb) fail_msg("f32 0x%08x -> bf16 0x%04x, reference 0x%04x", u, b, wantb);
      checked++;
    }
  }
  assert_true(checked > 300000);
}

static void test_bf16_known(void **state) {
  (void)state;
  const struct {
    uint32_t f;
    uint16_t h;
  } cases[] = {
      {0x3f800000, 0x3f80},  // 1.0
      {0xc0200000, 0xc020},  // -2.5
      {0x477fe000, 0x4780},  // 65504 rounds to 65536 in bf16
      {0x7f800000, 0x7f80},  // inf
      {0xff800000, 0xff80},  // -inf
      {0x7f7fffff, 0x7f80},  // FLT_MAX rounds up to inf
      {0x7f7f7fff, 0x7f7f},  // ... but not below the tie
      {0x3f808000, 0x3f80},  // 1 + 2^-8: the tie goes to even 1
      {0x3f818000, 0x3f82},  // 1 + 3*2^-8: the tie goes to even
      {0x3f808001, 0x3f81},  // just above the tie
      {0x00008000, 0x0000},  // subnormal tie -> even 0
      {0x00018000, 0x0002},  // subnormal tie -> even 2
      {0x00010000, 0x0001},  // exact subnormal
      {0x80000000, 0x8000},  // -0
      {0x007fffff, 0x0080},  // the largest subnormal rounds up to the smallest normal
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t h = rt_f32_to_bf16(bitsf(cases[i].f));
    if (h != cases[i].h) fail_msg("f32 0x%08x -> bf16 0x%04x, want 0x%04x", cases[i].f, h, cases[i].h);
  }
  // a NaN whose payload is only in the low 16 bits must not become inf
  uint16_t h = rt_f32_to_bf16(bitsf(0x7f800001));
  assert_int_equal(h & 0x7f80, 0x7f80);
  assert_true(h & 0x7f);
  assert_true(isnan(rt_bf16_to_f32(rt_f32_to_bf16(bitsf(0xff800001)))));
  assert_int_equal(rt_f32_to_bf16(bitsf(0x7fc00000)), 0x7fc0);
  // bf16 -> f32 is exact: the high half of the f32
  for (uint32_t b = 0; b < 0x10000; b++) {
    float f = rt_bf16_to_f32((uint16_t)b);
    assert_int_equal(fbits(f), b << 16);
    if (!isnan(f)) assert_int_equal(rt_f32_to_bf16(f), b);
  }
}

// ---- writing and reading back ----

static void test_round_trip_every_dtype(void **state) {
  (void)state;
  float f32[6] = {1.0f, -2.5f, 0.0f, -0.0f, 3.4028235e38f, 1e-45f};
  uint16_t f16[4] = {0x3c00, 0xc100, 0x7bff, 0x0001};
  uint16_t bf16[4] = {0x3f80, 0xc020, 0x7f80, 0x0001};
  int32_t i32[3] = {INT32_MIN, -1, INT32_MAX};
  int64_t i64[2] = {INT64_MIN, INT64_MAX};
  int8_t i8[5] = {-128, -1, 0, 1, 127};
  uint8_t u8[2] = {0, 255};
  uint8_t b[1] = {1};
  int64_t s23[] = {2, 3}, s4[] = {4}, s22[] = {2, 2}, s3[] = {3}, s2[] = {2}, s5[] = {5},
          s8[] = {1, 1, 1, 1, 1, 1, 1, 2}, s03[] = {0, 3};
  const char *weird = "we\"ird\\na\xc3\xa9me\n\t";  // escaped in the JSON header, UTF-8 kept
  RtStWrite ts[] = {
      {"f32", RT_F32, 2, s23, f32},   {"f16", RT_F16, 1, s4, f16}, {"bf16", RT_BF16, 2, s22, bf16},
      {"i32", RT_I32, 1, s3, i32},    {"i64", RT_I64, 1, s2, i64}, {"i8", RT_I8, 1, s5, i8},
      {"u8", RT_U8, 8, s8, u8},       {weird, RT_BOOL, 0, NULL, b}, {"empty", RT_F32, 2, s03, NULL},
  };
  int n = (int)(sizeof ts / sizeof ts[0]);
  const char *meta[] = {"format", "pt", "heed.layout", "sha256:0123", "unicode", "\xc3\xbc \"q\"\n"};
  char *path = tpath("every.safetensors"), err[256];
  mode_t um = umask(022);
  int rc = rt_st_write(path, ts, n, meta, 3, err, sizeof err);
  umask(um);
  if (rc) fail_msg("%s", err);

  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0644);  // an ordinary new file, not mkstemp's 0600
  size_t len;
  uint8_t *raw = read_file(path, &len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
  assert_int_equal(hlen % 8, 0);
  assert_int_equal(raw[8], '{');
  assert_int_equal(len, 8 + hlen + 24 + 8 + 8 + 12 + 16 + 5 + 2 + 1);
  free(raw);

  RtSafetensors st;
  rc = rt_st_open(path, &st, err, sizeof err);
  if (rc) fail_msg("%s", err);
  assert_int_equal(st.n, n);
  assert_int_equal(st.data_len, 24 + 8 + 8 + 12 + 16 + 5 + 2 + 1);
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    const RtStTensor *t = &st.t[i];
    assert_string_equal(t->name, ts[i].name);  // header order kept
    assert_int_equal(t->dt, ts[i].dt);
    assert_int_equal(t->rank, ts[i].rank);
    uint64_t numel = 1;
    for (int k = 0; k < t->rank; k++) {
      assert_int_equal(t->shape[k], ts[i].shape[k]);
      numel *= (uint64_t)ts[i].shape[k];
    }
    assert_int_equal(rt_st_numel(t), numel);
    assert_int_equal(t->nbytes, numel * rt_dtype_size(t->dt));
    assert_int_equal(t->off, off);  // contiguous, in order
    off += t->nbytes;
    if (t->nbytes) assert_memory_equal(st.data + t->off, ts[i].data, t->nbytes);
    assert_ptr_equal(rt_st_find(&st, ts[i].name), t);
  }
  assert_null(rt_st_find(&st, "nope"));
  assert_null(rt_st_find(&st, "__metadata__"));
  assert_int_equal(st.nmeta, 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(st.meta_key[i], meta[2 * i]);
    assert_string_equal(st.meta_val[i], meta[2 * i + 1]);
  }

  // read_f32 converts every dtype
  float out[8];
  const struct {
    const char *name;
    float want[8];
    int n;
  } conv[] = {
      {"f32", {1.0f, -2.5f, 0.0f, -0.0f, 3.4028235e38f, 1e-45f}, 6},
      {"f16", {1.0f, -2.5f, 65504.0f, 0x1p-24f}, 4},
      {"bf16", {1.0f, -2.5f, INFINITY, 0x1p-133f}, 4},
      {"i32", {-0x1p31f, -1.0f, 0x1p31f}, 3},
      {"i64", {-0x1p63f, 0x1p63f}, 2},
      {"i8", {-128, -1, 0, 1, 127}, 5},
      {"u8", {0, 255}, 2},
      {weird, {1}, 1},
  };
  for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++) {
    const RtStTensor *t = rt_st_find(&st, conv[i].name);
    assert_non_null(t);
    assert_int_equal(rt_st_read_f32(&st, t, out, err, sizeof err), 0);
    for (int k = 0; k < conv[i].n; k++)
      if (fbits(out[k]) != fbits(conv[i].want[k]))
        fail_msg("%s[%d] = %.9g, want %.9g", conv[i].name, k, out[k], conv[i].want[k]);
  }
  assert_int_equal(rt_st_read_f32(&st, rt_st_find(&st, "empty"), NULL, err, sizeof err), 0);
  rt_st_close(&st);
  assert_null(st.t);
  rt_st_close(&st);  // twice is harmless

  // writing again replaces the file; no temporaries are left behind
  RtStWrite one = {"x", RT_U8, 1, s2, u8};
  rc = rt_st_write(path, &one, 1, NULL, 0, err, sizeof err);
  if (rc) fail_msg("%s", err);
  rc = rt_st_open(path, &st, err, sizeof err);
  if (rc) fail_msg("%s", err);
  assert_int_equal(st.n, 1);
  assert_int_equal(st.nmeta, 0);
  assert_int_equal(st.data_len, 2);
  rt_st_close(&st);
  assert_int_equal(count_temps(tmpdir), 0);
  free(path);
}

// Exactly the bytes the Python package writes for
//   save_file({"a": torch.tensor([1., 2.]),
//              "b": torch.tensor([[1.], [-2.]], dtype=torch.bfloat16)},
//             path, metadata={"format": "pt"})
// (serde_json compact header, "__metadata__" first, padded with spaces to a
// multiple of 8, tensors sorted by dtype then name): heed reads it, and
// heed's writer, given the same order, writes the same bytes.
static const char py_header[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                                "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,1],\"data_offsets\":[8,12]}}";

static size_t python_bytes(uint8_t *buf) {
  size_t j = strlen(py_header), n = (j + 7) / 8 * 8;
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
  memcpy(buf + 8, py_header, j);
  memset(buf + 8 + j, ' ', n - j);
  const uint8_t data[12] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x80, 0x3f, 0x00, 0xc0};
  memcpy(buf + 8 + n, data, 12);
  return 8 + n + 12;
}

static void test_python_written_file(void **state) {
  (void)state;
  uint8_t buf[256];
  size_t len = python_bytes(buf);
  assert_int_equal((len - 8 - 12) % 8, 0);
  RtSafetensors st;
  char err[256];
  int rc = rt_st_parse(buf, len, "py.safetensors", &st, err, sizeof err);
  if (rc) fail_msg("%s", err);
  assert_int_equal(st.n, 2);
  assert_int_equal(st.nmeta, 1);
  assert_string_equal(st.meta_key[0], "format");
  assert_string_equal(st.meta_val[0], "pt");
  assert_ptr_equal(st.data, buf + len - 12);
  assert_int_equal(st.data_len, 12);
  const RtStTensor *a = rt_st_find(&st, "a"), *b = rt_st_find(&st, "b");
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(a->dt, RT_F32);
  assert_int_equal(a->rank, 1);
  assert_int_equal(a->shape[0], 2);
  assert_int_equal(b->dt, RT_BF16);
  assert_int_equal(b->rank, 2);
  assert_int_equal(b->shape[0], 2);
  assert_int_equal(b->shape[1], 1);
  assert_int_equal(b->off, 8);
  float out[2];
  assert_int_equal(rt_st_read_f32(&st, a, out, err, sizeof err), 0);
  assert_true(out[0] == 1.0f && out[1] == 2.0f);
  assert_int_equal(rt_st_read_f32(&st, b, out, err, sizeof err), 0);
  assert_true(out[0] == 1.0f && out[1] == -2.0f);
  rt_st_close(&st);

  float av[2] = {1.0f, 2.0f};
  uint16_t bv[2] = {rt_f32_to_bf16(1.0f), rt_f32_to_bf16(-2.0f)};
  int64_t sa[] = {2}, sb[] = {2, 1};
  RtStWrite ts[] = {{"a", RT_F32, 1, sa, av}, {"b", RT_BF16, 2, sb, bv}};
  const char *meta[] = {"format", "pt"};
  char *path = tpath("py.safetensors");
  rc = rt_st_write(path, ts, 2, meta, 1, err, sizeof err);
  if (rc) fail_msg("%s", err);
  size_t wlen;
  uint8_t *w = read_file(path, &wlen);
  assert_int_equal(wlen, len);
  assert_memory_equal(w, buf, len);
  free(w);
  free(path);
}

// Readers differ in what they accept around the essentials; heed accepts
// what the format allows: any whitespace, fields in any order, unknown
// fields, gaps between tensors, tensors in any order of offsets, an empty
// header, zero-element tensors, and unaligned data.
static uint8_t *mk(const char *json, size_t datalen, size_t *len) {
  size_t j = strlen(json);
  uint8_t *b = calloc(8 + j + datalen + 1, 1);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)j >> (8 * i));
  memcpy(b + 8, json, j);
  for (size_t i = 0; i < datalen; i++) b[8 + j + i] = (uint8_t)(i * 7 + 1);
  *len = 8 + j + datalen;
  return b;
}

// rt_st_meta and rt_st_is_ckpt_state: a heed checkpoint's optimizer state
// is recognised by the metadata, never by the name alone.
static void test_checkpoint_state(void **state) {
  (void)state;
  static const char *const heads[] = {
      "{\"__metadata__\":{\"format\":\"heed-checkpoint-1\",\"step\":\"3\"},\"opt.m.w\":{\"dtype\":\"F32\","
      "\"shape\":[1],\"data_offsets\":[0,4]}}",
      "{\"__metadata__\":{\"format\":\"pt\"},\"opt.m.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
      "{\"opt.m.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"};
  for (int i = 0; i < 3; i++) {
    size_t len;
    uint8_t *b = mk(heads[i], 4, &len);
    RtSafetensors st;
    char err[256];
    if (rt_st_parse(b, len, "c.safetensors", &st, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(rt_st_is_ckpt_state(&st, "opt.m.w"), i == 0);
    assert_false(rt_st_is_ckpt_state(&st, "w"));
    assert_false(rt_st_is_ckpt_state(&st, NULL));
    if (i == 0) assert_string_equal(rt_st_meta(&st, "step"), "3");
    assert_null(rt_st_meta(&st, "nope"));
    rt_st_close(&st);
    free(b);
  }
}

static void test_lenient_reading(void **state) {
  (void)state;
  const char *ok[] = {
      "{}",
      "{}       ",
      "{ \"__metadata__\" : { } }\n\r\t ",
      "{\"__metadata__\":{\"a\":\"\"},\"x\":{\"data_offsets\":[4,8],\"shape\":[],\"dtype\":\"I32\",\"extra\":[1]}}",
      "{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[5,8]},\"a\":{\"dtype\":\"U8\",\"shape\":[2],"
      "\"data_offsets\":[0,2]}}",
      "{\"z\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[3,3]},\"y\":{\"dtype\":\"BF16\",\"shape\":[4,0],"
      "\"data_offsets\":[3,3]},\"w\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[8,8]}}",
      "{\"\":{\"dtype\":\"I8\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[7,8]}}",
  };
  int want_n[] = {0, 0, 0, 1, 2, 3, 1};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    size_t len;
    uint8_t *b = mk(ok[i], 8, &len);
    RtSafetensors st;
    char err[256];
    if (rt_st_parse(b, len, "ok.safetensors", &st, err, sizeof err)) fail_msg("case %zu: %s", i, err);
    assert_int_equal(st.n, want_n[i]);
    for (int k = 0; k < st.n; k++) assert_ptr_equal(rt_st_find(&st, st.t[k].name), &st.t[k]);
    rt_st_close(&st);
    free(b);
  }
  // unaligned: an I32 and an F32 at odd offsets
  size_t len;
  uint8_t *b = mk("{\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[1,5]},"
                  "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[5,9]}}",
                  9, &len);
  uint8_t *data = b + len - 9;
  int32_t iv = -7;
  float fv = 0.375f;
  memcpy(data + 1, &iv, 4);
  memcpy(data + 5, &fv, 4);
  RtSafetensors st;
  char err[256];
  if (rt_st_parse(b, len, "odd.safetensors", &st, err, sizeof err)) fail_msg("%s", err);
  float out;
  assert_int_equal(rt_st_read_f32(&st, rt_st_find(&st, "i"), &out, err, sizeof err), 0);
  assert_true(out == -7.0f);
  assert_int_equal(rt_st_read_f32(&st, rt_st_find(&st, "f"), &out, err, sizeof err), 0);
  assert_true(out == 0.375f);
  // BOOL: any non-zero byte is true
  rt_st_close(&st);
  free(b);
  b = mk("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3, &len);
  b[len - 3] = 0, b[len - 2] = 1, b[len - 1] = 2;
  if (rt_st_parse(b, len, "bool.safetensors", &st, err, sizeof err)) fail_msg("%s", err);
  float bo[3];
  assert_int_equal(rt_st_read_f32(&st, &st.t[0], bo, err, sizeof err), 0);
  assert_true(bo[0] == 0 && bo[1] == 1 && bo[2] == 1);
  rt_st_close(&st);
  free(b);
}

// ---- malformed files ----

// Parses buf and checks: an error, the message (one line, starting with the
// label, containing want), and out left empty.
static void expect_error(const uint8_t *buf, size_t len, const char *want, int code) {
  RtSafetensors st;
  memset(&st, 0x5a, sizeof st);
  char err[512];
  int rc = rt_st_parse(buf, len, "w.safetensors", &st, err, sizeof err);
  if (rc == 0) {
    rt_st_close(&st);
    fail_msg("no error; want '%s'", want);
  }
  if (!strstr(err, want)) fail_msg("error '%s'\n  does not contain '%s'", err, want);
  if (strncmp(err, "w.safetensors: ", 15) != 0) fail_msg("error '%s' does not name the file", err);
  if (strchr(err, '\n')) fail_msg("error '%s' is not one line", err);
  assert_int_equal(rc, code);
  assert_null(st.t);
  assert_int_equal(st.n, 0);
  assert_int_equal(st.nmeta, 0);
  assert_null(st.meta_key);
  rt_st_close(&st);
}

static void expect_json_error(const char *json, size_t datalen, const char *want) {
  size_t len;
  uint8_t *b = mk(json, datalen, &len);
  expect_error(b, len, want, RT_ERR_FORMAT);
  free(b);
}

#define T1(fields) "{\"a\":{" fields "}}"
#define F32X4 "\"dtype\":\"F32\",\"shape\":[4]"

static void test_malformed_headers(void **state) {
  (void)state;
  const struct {
    const char *json;
    size_t datalen;
    const char *want;
  } cases[] = {
      {"{\"a\":", 0, "header is not valid JSON"},
      {"{\"a\" 1}", 0, "header is not valid JSON"},
      {"{\"a\":[1,2,]}", 0, "header is not valid JSON"},
      {"[1,2]", 0, "header is not a JSON object (it starts with '[')"},
      {"\"str\"", 0, "header is not a JSON object (it starts with '\"')"},
      {" {}", 0, "header is not a JSON object (it starts with ' ')"},
      {"{} x", 0, "header has unexpected bytes after the JSON object (at byte 3 of 4)"},
      {"{}{}", 0, "unexpected bytes after the JSON object"},
      {"{\"a\":1}", 0, "w.safetensors: tensor 'a': entry is a number, not a JSON object"},
      {"{\"a\":[]}", 0, "tensor 'a': entry is an array, not a JSON object"},
      {"{\"a\":null}", 0, "tensor 'a': entry is null, not a JSON object"},
      {"{\"a\\u0001b\":1}", 0, "tensor 'a?b': entry is a number"},  // control characters kept off the line
      {T1("\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]"), 8,
       "tensor 'a': unsupported dtype 'F64' (heed reads F32, F16, BF16, I32, I64, I8, U8, BOOL)"},
      {T1("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, "unsupported dtype 'f32'"},
      {T1("\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, "unsupported dtype ''"},
      {T1("\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]"), 4, "tensor 'a': \"dtype\" is a number, not a string"},
      {T1("\"shape\":[1],\"data_offsets\":[0,4]"), 4, "tensor 'a': missing \"dtype\""},
      {T1("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 4, "tensor 'a': missing \"shape\""},
      {T1("\"dtype\":\"F32\",\"shape\":[1]"), 4, "tensor 'a': missing \"data_offsets\""},
      {T1("\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4,
       "tensor 'a': field \"dtype\" appears twice"},
      {T1("\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]"), 4, "\"shape\" is a number, not an array"},
      {T1("\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]"), 4, "\"shape\" is an object, not an array"},
      {T1("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 4, "shape[0] is not a non-negative integer"},
      {T1("\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,4]"), 4, "shape[1] is not a non-negative integer"},
      {T1("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]"), 4, "shape[0] is not a non-negative integer"},
      {T1("\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,4]"), 4, "shape[0] is not a non-negative integer"},
      {T1("\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]"), 4,
       "shape[0] (1.0000000000000001e+300) is too large"},
      {T1("\"dtype\":\"F32\",\"shape\":[1e999],\"data_offsets\":[0,4]"), 4, "shape[0] (inf) is too large"},
      {T1("\"dtype\":\"F32\",\"shape\":[9007199254740992],\"data_offsets\":[0,4]"), 4, "is too large"},  // 2^53
      {T1("\"dtype\":\"F32\",\"shape\":[9007199254740993],\"data_offsets\":[0,4]"), 4, "is too large"},
      {T1("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]"), 4,
       "shape is too large: its size in bytes overflows 64 bits"},
      {T1("\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,16],\"data_offsets\":[0,4]"), 4,
       "its size in bytes overflows"},  // 2^64 elements
      {T1("\"dtype\":\"I64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,4]"), 4,
       "its size in bytes overflows"},  // 2^62 elements, 2^65 bytes
      {T1("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]"), 0,
       "its size in bytes overflows"},
      {T1("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]"), 1,
       "tensor 'a': rank 9 exceeds the maximum of 8"},
      {T1(F32X4 ",\"data_offsets\":[0]"), 16, "tensor 'a': \"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":[0,16,16]"), 16, "\"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":[-1,15]"), 16, "\"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":[0.5,16]"), 16, "\"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":[\"0\",16]"), 16, "\"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":[0,null]"), 16, "\"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":{\"0\":16}"), 16, "\"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":[0,1e30]"), 16, "\"data_offsets\" is not two non-negative integers"},
      {T1(F32X4 ",\"data_offsets\":[16,0]"), 16, "tensor 'a': data offsets [16, 0) are out of order"},
      {T1(F32X4 ",\"data_offsets\":[0,16]"), 12, "tensor 'a': data offsets [0, 16) exceed the data section (12 bytes)"},
      {T1(F32X4 ",\"data_offsets\":[4,20]"), 16, "data offsets [4, 20) exceed the data section (16 bytes)"},
      {T1(F32X4 ",\"data_offsets\":[0,12]"), 16, "tensor 'a': data offsets [0, 12) hold 12 bytes, but F32[4] needs 16"},
      {T1("\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]"), 16,
       "data offsets [0, 16) hold 16 bytes, but BF16[2, 3] needs 12"},
      {T1("\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]"), 16, "hold 4 bytes, but I64[] needs 8"},
      {T1("\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,1]"), 16, "hold 1 bytes, but U8[0] needs 0"},
      {"{\"a\":{" F32X4 ",\"data_offsets\":[0,16]},\"b\":{" F32X4 ",\"data_offsets\":[8,24]}}", 24,
       "tensor 'b': data [8, 24) overlaps tensor 'a' [0, 16)"},
      {"{\"b\":{" F32X4 ",\"data_offsets\":[8,24]},\"a\":{" F32X4 ",\"data_offsets\":[0,16]}}", 24,
       "tensor 'b': data [8, 24) overlaps tensor 'a' [0, 16)"},
      {"{\"a\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},\"b\":{\"dtype\":\"U8\",\"shape\":[4],"
       "\"data_offsets\":[4,8]},\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[20,24]}}",
       32, "tensor 'b': data [4, 8) overlaps tensor 'a' [0, 32)"},
      {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"I8\",\"shape\":[4],"
       "\"data_offsets\":[0,4]}}",
       4, "data [0, 4) overlaps tensor"},
      {"{\"a\":{" F32X4 ",\"data_offsets\":[0,16]},\"a\":{" F32X4 ",\"data_offsets\":[16,32]}}", 32,
       "tensor 'a': appears more than once in the header"},
      {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears more than once in the header"},
      {"{\"__metadata__\":[\"a\"]}", 0, "\"__metadata__\" is an array, not an object of strings"},
      {"{\"__metadata__\":\"x\"}", 0, "\"__metadata__\" is a string, not an object of strings"},
      {"{\"__metadata__\":null}", 0, "\"__metadata__\" is null, not an object of strings"},
      {"{\"__metadata__\":{\"k\":1}}", 0, "\"__metadata__\" value for 'k' is a number, not a string"},
      {"{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "\"__metadata__\" value for 'k' is an object, not a string"},
      {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "\"__metadata__\" key 'k' appears more than once"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_json_error(cases[i].json, cases[i].datalen, cases[i].want);

  // the message of the brief, in full
  size_t len;
  uint8_t *b = mk("{\"h.0.attn.weight\":{\"dtype\":\"F32\",\"shape\":[25],\"data_offsets\":[0,100]}}", 64, &len);
  RtSafetensors st;
  char err[256];
  assert_int_equal(rt_st_parse(b, len, "w.safetensors", &st, err, sizeof err), RT_ERR_FORMAT);
  assert_string_equal(err, "w.safetensors: tensor 'h.0.attn.weight': "
                           "data offsets [0, 100) exceed the data section (64 bytes)");
  free(b);
}

static void test_malformed_framing(void **state) {
  (void)state;
  uint8_t b[64] = {0};
  expect_error(b, 0, "w.safetensors: file is 0 bytes, too short for a safetensors file (at least 8)", RT_ERR_FORMAT);
  expect_error(b, 5, "file is 5 bytes, too short", RT_ERR_FORMAT);
  expect_error(b, 7, "file is 7 bytes, too short", RT_ERR_FORMAT);
  expect_error(b, 8, "header is empty, not a JSON object", RT_ERR_FORMAT);
  // absurd header lengths
  uint64_t lens[] = {200000000, 100000001, UINT64_MAX, 1ull << 63};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)(lens[i] >> (8 * k));
    char want[128];
    snprintf(want, sizeof want, "header length %llu exceeds the limit of 100000000 bytes",
             (unsigned long long)lens[i]);
    expect_error(b, sizeof b, want, RT_ERR_FORMAT);
  }
  // longer than the file
  memset(b, 0, sizeof b);
  b[0] = 100;
  memcpy(b + 8, "{}", 2);
  expect_error(b, 20, "header length 100 exceeds the file size (12 bytes after the 8-byte length)", RT_ERR_FORMAT);
  b[0] = 13;
  expect_error(b, 20, "header length 13 exceeds the file size (12 bytes after the 8-byte length)", RT_ERR_FORMAT);
  // a header that is not UTF-8 text, or holds a NUL byte
#define LIT(s) s, sizeof(s) - 1
  const struct {
    const char *json;
    size_t n;
    const char *want;
  } bad[] = {
      {LIT("{\"\xff\":1}"), "header is not valid UTF-8 text (byte 0xff at header byte 2)"},
      {LIT("{\"\xc0\xaf\":1}"), "byte 0xc0 at header byte 2"},          // overlong '/'
      {LIT("{\"\xed\xa0\x80\":1}"), "byte 0xed at header byte 2"},      // a surrogate
      {LIT("{\"\xf4\x90\x80\x80\":1}"), "byte 0xf4 at header byte 2"},  // past U+10FFFF
      {LIT("{\"a\xc3\":1}"), "byte 0xc3 at header byte 3"},             // truncated sequence
      {LIT("{}\0     "), "header is not valid UTF-8 text (byte 0x00 at header byte 2)"},
      {LIT("{\"a\0b\":1}"), "byte 0x00 at header byte 3"},
      {LIT("\xef\xbb\xbf{}"), "header is not a JSON object (it starts with byte 0xef)"},  // a BOM
  };
#undef LIT
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t buf[32] = {0};
    buf[0] = (uint8_t)bad[i].n;
    memcpy(buf + 8, bad[i].json, bad[i].n);
    expect_error(buf, 8 + bad[i].n, bad[i].want, RT_ERR_FORMAT);
  }
  // deep nesting is refused by json.c's limit, not by the stack
  size_t depth = 100000;
  char *deep = malloc(depth + 16);
  strcpy(deep, "{\"a\":");
  memset(deep + 5, '[', depth);
  strcpy(deep + 5 + depth, "}");
  expect_json_error(deep, 0, "header is not valid JSON");
  free(deep);
  // a name that is too long for a message is cut at a character boundary
  char json[700];
  strcpy(json, "{\"");
  for (int i = 0; i < 200; i++) strcat(json, "\xc3\xa9");  // 'é' x 200
  strcat(json, "\":7}");
  size_t len;
  uint8_t *mb = mk(json, 0, &len);
  RtSafetensors st;
  char err[512];
  assert_int_equal(rt_st_parse(mb, len, "w.safetensors", &st, err, sizeof err), RT_ERR_FORMAT);
  assert_non_null(strstr(err, "\xc3\xa9...': entry is a number, not a JSON object"));
  assert_true(strlen(err) < 200);
  // a small or absent error buffer is fine
  char tiny[8];
  assert_int_equal(rt_st_parse(mb, len, "w.safetensors", &st, tiny, sizeof tiny), RT_ERR_FORMAT);
  assert_string_equal(tiny, "w.safet");
  assert_int_equal(rt_st_parse(mb, len, "w.safetensors", &st, NULL, 0), RT_ERR_FORMAT);
  free(mb);
}

// Every prefix and every single-byte corruption of a valid file is either
// read or refused with a message; under ASan this also checks for overruns.
static void test_truncations_and_flips(void **state) {
  (void)state;
  uint8_t buf[256];
  size_t len = python_bytes(buf);
  RtSafetensors st;
  char err[256];
  for (size_t n = 0; n < len; n++) {
    uint8_t *copy = malloc(n ? n : 1);  // exactly n bytes: ASan sees any overrun
    memcpy(copy, buf, n);
    int rc = rt_st_parse(copy, n, "cut.safetensors", &st, err, sizeof err);
    if (rc == 0) fail_msg("a %zu-byte prefix of a %zu-byte file was accepted", n, len);
    assert_true(strlen(err) > 0);
    free(copy);
  }
  int accepted = 0;
  for (size_t i = 0; i < len; i++) {
    for (int bit = 0; bit < 8; bit++) {
      uint8_t *copy = malloc(len);
      memcpy(copy, buf, len);
      copy[i] ^= (uint8_t)(1u << bit);
      if (rt_st_parse(copy, len, "flip.safetensors", &st, err, sizeof err) == 0) {
        accepted++;
        float out[64];
        for (int k = 0; k < st.n; k++)
          if (rt_st_numel(&st.t[k]) <= 64) assert_int_equal(rt_st_read_f32(&st, &st.t[k], out, err, sizeof err), 0);
        rt_st_close(&st);
      } else {
        assert_true(strlen(err) > 0);
      }
      free(copy);
    }
  }
  assert_true(accepted > 0);  // flips in the data section at least
}

static void test_open_errors(void **state) {
  (void)state;
  RtSafetensors st;
  char err[512];
  char *missing = tpath("missing.safetensors");
  assert_int_equal(rt_st_open(missing, &st, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, "missing.safetensors: cannot open: No such file or directory"));
  assert_int_equal(rt_st_open(tmpdir, &st, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, ": is a directory"));
  char *empty = tpath("empty.safetensors");
  write_file(empty, "", 0);
  assert_int_equal(rt_st_open(empty, &st, err, sizeof err), RT_ERR_FORMAT);
  assert_non_null(strstr(err, "empty.safetensors: file is 0 bytes, too short"));
  char *bad = tpath("bad.safetensors");
  size_t len;
  uint8_t *b = mk(T1(F32X4 ",\"data_offsets\":[0,16]"), 12, &len);
  write_file(bad, b, len);
  free(b);
  assert_int_equal(rt_st_open(bad, &st, err, sizeof err), RT_ERR_FORMAT);
  char want[512];
  snprintf(want, sizeof want, "%s: tensor 'a': data offsets [0, 16) exceed the data section (12 bytes)", bad);
  assert_string_equal(err, want);
  assert_null(st.map_);
  free(missing);
  free(empty);
  free(bad);
}

// ---- failed writes ----

static void write_old(const char *path) {
  uint8_t v[4] = {1, 2, 3, 4};
  int64_t s[] = {4};
  RtStWrite t = {"old", RT_U8, 1, s, v};
  char err[256];
  if (rt_st_write(path, &t, 1, NULL, 0, err, sizeof err)) fail_msg("%s", err);
}

static void expect_old(const char *path) {
  RtSafetensors st;
  char err[256];
  if (rt_st_open(path, &st, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(st.n, 1);
  assert_string_equal(st.t[0].name, "old");
  assert_memory_equal(st.data, "\1\2\3\4", 4);
  rt_st_close(&st);
}

static void test_failed_writes_keep_old_file(void **state) {
  (void)state;
  static float big[16384];
  int64_t sbig[] = {16384};
  RtStWrite t = {"new", RT_F32, 1, sbig, big};
  char err[512];

  // a path in a missing directory
  char *nodir = tpath("no/such/dir/w.safetensors");
  assert_int_equal(rt_st_write(nodir, &t, 1, NULL, 0, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, "no/such/dir/w.safetensors: cannot create a temporary file beside it: "
                              "No such file or directory"));
  free(nodir);

  char *sub = tpath("sub");
  assert_int_equal(mkdir(sub, 0755), 0);
  char path[600];
  snprintf(path, sizeof path, "%s/w.safetensors", sub);
  write_old(path);

  // the file system refuses the bytes half-way (as ENOSPC would): the
  // process file-size limit makes write() fail with EFBIG
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl, small;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
  small = rl;
  small.rlim_cur = 4096;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  int rc = rt_st_write(path, &t, 1, NULL, 0, err, sizeof err);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
  signal(SIGXFSZ, old_handler);
  assert_int_equal(rc, RT_ERR_IO);
  char want[700];
  snprintf(want, sizeof want, "%s: cannot write: %s", path, strerror(EFBIG));
  assert_string_equal(err, want);
  expect_old(path);
  assert_int_equal(count_temps(sub), 0);

  // the target cannot be replaced (it is a directory): the rename fails
  char dpath[700];
  snprintf(dpath, sizeof dpath, "%s/adir", sub);
  assert_int_equal(mkdir(dpath, 0755), 0);
  assert_int_equal(rt_st_write(dpath, &t, 1, NULL, 0, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, "/adir: cannot replace it: "));
  struct stat sb;
  assert_int_equal(stat(dpath, &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));
  assert_int_equal(count_temps(sub), 0);

  // a directory that is not writable (root may write anyway: then only
  // check that the write worked or left the old file)
  assert_int_equal(chmod(sub, 0555), 0);
  rc = rt_st_write(path, &t, 1, NULL, 0, err, sizeof err);
  assert_int_equal(chmod(sub, 0755), 0);
  if (geteuid() != 0) {
    assert_int_equal(rc, RT_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot create a temporary file beside it: %s", path, strerror(EACCES));
    assert_string_equal(err, want);
    expect_old(path);
  } else {
    assert_int_equal(rc, 0);
  }
  assert_int_equal(count_temps(sub), 0);
  free(sub);
}

static void test_writer_rejects_bad_input(void **state) {
  (void)state;
  float v[4] = {0};
  int64_t s4[] = {4}, sneg[] = {-1}, shuge[] = {INT64_MAX}, s9[] = {1, 1, 1, 1, 1, 1, 1, 1, 1},
          sover[] = {1ll << 32, 1ll << 32};
  const struct {
    RtStWrite t[2];
    int n;
    const char *want;
  } cases[] = {
      {{{"a", RT_F32, 1, s4, v}, {"a", RT_F32, 1, s4, v}}, 2, "tensor 'a': given more than once"},
      {{{"__metadata__", RT_F32, 1, s4, v}}, 1, "tensor '__metadata__': the name is reserved"},
      {{{NULL, RT_F32, 1, s4, v}}, 1, "tensor 0 has no name"},
      {{{"a\xff", RT_F32, 1, s4, v}}, 1, "the name is not valid UTF-8"},
      {{{"a", RT_DT_COUNT, 1, s4, v}}, 1, "tensor 'a': invalid dtype 10"},
      {{{"a", RT_F32, 9, s9, v}}, 1, "rank 9 is outside 0..8"},
      {{{"a", RT_F32, -1, s4, v}}, 1, "rank -1 is outside 0..8"},
      {{{"a", RT_F32, 1, NULL, v}}, 1, "no shape given for rank 1"},
      {{{"a", RT_F32, 1, sneg, v}}, 1, "shape[0] = -1 is out of range"},
      {{{"a", RT_F32, 1, shuge, v}}, 1, "is out of range"},
      {{{"a", RT_U8, 2, sover, v}}, 1, "tensor 'a': too large to write"},
      {{{"a", RT_F32, 1, s4, NULL}}, 1, "tensor 'a': no data given for 16 bytes"},
  };
  char *path = tpath("bad-input.safetensors");
  char err[512];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = rt_st_write(path, cases[i].t, cases[i].n, NULL, 0, err, sizeof err);
    assert_int_equal(rc, RT_ERR_ARG);
    if (!strstr(err, cases[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
  }
  const char *dup[] = {"k", "1", "k", "2"}, *nul[] = {"k", NULL}, *bad[] = {"k", "\xc3"};
  assert_int_equal(rt_st_write(path, NULL, 0, dup, 2, err, sizeof err), RT_ERR_ARG);
  assert_non_null(strstr(err, "metadata key 'k' given more than once"));
  assert_int_equal(rt_st_write(path, NULL, 0, nul, 1, err, sizeof err), RT_ERR_ARG);
  assert_non_null(strstr(err, "metadata value 0 is NULL"));
  assert_int_equal(rt_st_write(path, NULL, 0, bad, 1, err, sizeof err), RT_ERR_ARG);
  assert_non_null(strstr(err, "metadata value for 'k' is not valid UTF-8"));
  assert_int_equal(rt_st_write(path, NULL, -1, NULL, 0, err, sizeof err), RT_ERR_ARG);
  assert_int_equal(access(path, F_OK), -1);  // nothing was written
  assert_int_equal(count_temps(tmpdir), 0);

  // no tensors, no metadata: "{}" padded to 8
  assert_int_equal(rt_st_write(path, NULL, 0, NULL, 0, err, sizeof err), 0);
  size_t len;
  uint8_t *b = read_file(path, &len);
  assert_int_equal(len, 16);
  assert_memory_equal(b, "\x08\0\0\0\0\0\0\0{}      ", 16);
  free(b);
  free(path);
}

// CRC-32C: the standard check value, split calls, and a checkpoint's list.
static void test_crc32c(void **state) {
  (void)state;
  assert_int_equal(rt_crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(rt_crc32c(rt_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
  assert_int_equal(rt_crc32c(0, "", 0), 0);
  float a[5] = {1, 2, 3, 4, 5}, b[3] = {-1, 0.5f, 7};
  int64_t sa[1] = {5}, sb[1] = {3};
  RtStWrite ts[2] = {{"b", RT_F32, 1, sb, b}, {"a", RT_F32, 1, sa, a}};  // data order: b, then a
  char crcs[32], path[128], err[512];
  snprintf(crcs, sizeof crcs, "%08x %08x", (unsigned)rt_crc32c(0, b, sizeof b), (unsigned)rt_crc32c(0, a, sizeof a));
  const char *meta[] = {RT_ST_CRC_KEY, crcs};
  snprintf(path, sizeof path, "%s/crc.safetensors", tmpdir);
  assert_int_equal(rt_st_write(path, ts, 2, meta, 1, err, sizeof err), RT_OK);
  RtSafetensors st;
  bool present = false;
  assert_int_equal(rt_st_open(path, &st, err, sizeof err), RT_OK);
  assert_int_equal(rt_st_check_crc(&st, path, &present, err, sizeof err), RT_OK);
  assert_true(present);
  size_t hdr = (size_t)(st.data - (const uint8_t *)st.map_), len = st.map_len_;
  uint8_t *copy = malloc(len);
  assert_non_null(copy);
  memcpy(copy, st.map_, len);
  rt_st_close(&st);
  copy[hdr + sizeof b + 2] ^= 0x20;  // a bit of a's data
  assert_int_equal(rt_st_parse(copy, len, "flipped", &st, err, sizeof err), RT_OK);
  assert_int_equal(rt_st_check_crc(&st, "flipped", &present, err, sizeof err), RT_ERR_FORMAT);
  assert_non_null(strstr(err, "flipped: tensor 'a': checksum mismatch"));
  rt_st_close(&st);
  free(copy);
  const char *bad[] = {RT_ST_CRC_KEY, "1234abcd zzzzzzzz"};  // not hex
  assert_int_equal(rt_st_write(path, ts, 2, bad, 1, err, sizeof err), RT_OK);
  assert_int_equal(rt_st_open(path, &st, err, sizeof err), RT_OK);
  assert_int_equal(rt_st_check_crc(&st, path, &present, err, sizeof err), RT_ERR_FORMAT);
  assert_non_null(strstr(err, "metadata 'crc32c' is malformed"));
  rt_st_close(&st);
  const char *edited[] = {RT_ST_CRC_KEY, "1234abcd"};  // one checksum for two tensors: a tool removed one
  assert_int_equal(rt_st_write(path, ts, 2, edited, 1, err, sizeof err), RT_OK);
  assert_int_equal(rt_st_open(path, &st, err, sizeof err), RT_OK);
  assert_int_equal(rt_st_check_crc(&st, path, &present, err, sizeof err), RT_OK);
  assert_false(present);
  assert_non_null(strstr(err, "1 checksums for 2 tensors (an edited file?): not verified"));
  rt_st_close(&st);
  assert_int_equal(rt_st_write(path, ts, 2, NULL, 0, err, sizeof err), RT_OK);  // none: not verified
  assert_int_equal(rt_st_open(path, &st, err, sizeof err), RT_OK);
  assert_int_equal(rt_st_check_crc(&st, path, &present, err, sizeof err), RT_OK);
  assert_false(present);
  rt_st_close(&st);
}

// rt_out_*: a temporary file beside the path, renamed when whole; an abort
// leaves the old file; a device is written in place; the checks before work.
static void test_outfile(void **state) {
  (void)state;
  char path[128], err[512];
  snprintf(path, sizeof path, "%s/out.txt", tmpdir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("old", f);
  fclose(f);
  RtOutFile o;
  assert_int_equal(rt_out_open(&o, path, 0666, err, sizeof err), RT_OK);
  assert_non_null(strstr(rt_out_name(&o), "/out.txt.tmp."));
  const char *slash = strrchr(rt_out_name(&o), '/');
  assert_true(rt_out_is_temp(slash + 1, "out.txt"));
  assert_false(rt_out_is_temp("out.txt.tmp", "out.txt"));
  fputs("new", rt_out_stream(&o));
  char got[16] = "";
  f = fopen(path, "r");
  assert_non_null(fgets(got, sizeof got, f));
  fclose(f);
  assert_string_equal(got, "old");  // not replaced before the commit
  rt_out_abort(&o);
  assert_int_equal(count_temps(tmpdir), 0);
  assert_int_equal(rt_out_open(&o, path, 0666, err, sizeof err), RT_OK);
  fputs("new", rt_out_stream(&o));
  assert_int_equal(rt_out_commit(&o, err, sizeof err), RT_OK);
  f = fopen(path, "r");
  assert_non_null(fgets(got, sizeof got, f));
  fclose(f);
  assert_string_equal(got, "new");
  assert_int_equal(count_temps(tmpdir), 0);
  assert_int_equal(rt_out_open(&o, "/dev/null", 0666, err, sizeof err), RT_OK);  // in place
  assert_string_equal(rt_out_name(&o), "/dev/null");
  assert_int_equal(rt_out_commit(&o, err, sizeof err), RT_OK);
  struct stat sb;
  assert_int_equal(stat("/dev/null", &sb), 0);
  assert_true(S_ISCHR(sb.st_mode));
  // same files: one inode by two names, a file-to-be by two spellings
  char other[160], link2[160];
  snprintf(other, sizeof other, "%s/../%s/out.txt", tmpdir, strrchr(tmpdir, '/') + 1);
  assert_true(rt_same_file(path, other));
  snprintf(link2, sizeof link2, "%s/hard.txt", tmpdir);
  assert_int_equal(link(path, link2), 0);
  assert_true(rt_same_file(path, link2));
  snprintf(other, sizeof other, "%s/./new.txt", tmpdir);
  snprintf(link2, sizeof link2, "%s/new.txt", tmpdir);
  assert_true(rt_same_file(other, link2));
  snprintf(other, sizeof other, "%s/new2.txt", tmpdir);
  assert_false(rt_same_file(other, link2));
  assert_false(rt_same_file(path, link2));
  // before any work: a missing or unusable directory, a directory as the file
  assert_int_equal(rt_out_check(path, err, sizeof err), RT_OK);
  snprintf(other, sizeof other, "%s/no/such.st", tmpdir);
  assert_int_equal(rt_out_check(other, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, "/no' does not exist"));
  assert_int_equal(rt_out_check(tmpdir, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, "it is a directory"));
  snprintf(other, sizeof other, "%s/x", path);
  assert_int_equal(rt_out_check(other, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, "is not a directory"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test(test_outfile),
      cmocka_unit_test(test_dtype_table),
      cmocka_unit_test(test_q4_rows),
      cmocka_unit_test(test_f16_known),
      cmocka_unit_test(test_f16_exhaustive),
      cmocka_unit_test(test_bf16_known),
      cmocka_unit_test(test_f32_to_half_sweep),
      cmocka_unit_test(test_round_trip_every_dtype),
      cmocka_unit_test(test_python_written_file),
      cmocka_unit_test(test_lenient_reading),
      cmocka_unit_test(test_checkpoint_state),
      cmocka_unit_test(test_malformed_headers),
      cmocka_unit_test(test_malformed_framing),
      cmocka_unit_test(test_truncations_and_flips),
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_failed_writes_keep_old_file),
      cmocka_unit_test(test_writer_rejects_bad_input),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
