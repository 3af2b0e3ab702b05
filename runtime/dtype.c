// runtime/dtype.c: the rows of the one dtype table (runtime/dtype.h) and the
// f16/bf16 conversions. Read by the IR (types, interpreter), the frontend
// (dtype names), safetensors I/O, model files and the CLI's tensor I/O.
#include <math.h>
#include <string.h>

#include "runtime/dtype.h"

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float rt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000 | (mant << 13));  // inf, NaN (payload kept)
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);  // +-0
    // subnormal mant * 2^-24: normalize so that the leading 1 is implicit
    uint32_t e = 113;  // the f32 biased exponent of 2^-14
    while (!(mant & 0x400)) {
      mant <<= 1;
      e--;
    }
    return bits_f32(sign | (e << 23) | ((mant & 0x3ff) << 13));
  }
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));  // rebias 15 -> 127
}

uint16_t rt_f32_to_f16(float f) {
  uint32_t x = f32_bits(f), ax = x & 0x7fffffff;
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  if (ax > 0x7f800000) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff);  // NaN, made quiet
  if (ax >= 0x477ff000) return sign | 0x7c00;  // >= 65520 (halfway past 65504) rounds to inf
  uint32_t exp = ax >> 23;
  if (exp < 113) {  // below 2^-14: a subnormal half, units of 2^-24
    if (exp < 102) return sign;  // below 2^-25 (the tie with 0): rounds to zero
    uint32_t mant = (ax & 0x7fffff) | 0x800000, shift = 126 - exp;  // shift in 14..24
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;  // may carry into the smallest normal
    return sign | (uint16_t)h;
  }
  uint32_t h = (ax >> 13) - (112u << 10), rem = ax & 0x1fff;  // rebias 127 -> 15
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;  // a carry moves to the next binade
  return sign | (uint16_t)h;
}

float rt_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t rt_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);  // NaN, made quiet
  // ties to even; overflow carries into the exponent and gives inf, as it should
  return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

// ---- plain dtypes: element get/set as doubles (unaligned: memcpy) ----

// An integer of `bits` bits from a double: truncated toward zero, wrapped
// (as C's conversion of an in-range value, and modulo 2^bits beyond it).
static int64_t wrap_int(double v, int bits) {
  if (!isfinite(v)) return 0;
  double t = trunc(v);
  if (bits == 64) return t >= 9223372036854775808.0 || t < -9223372036854775808.0 ? 0 : (int64_t)t;
  double m = ldexp(1.0, bits), r = fmod(t, m);
  if (r < 0) r += m;
  return (int64_t)r;  // in [0, 2^bits): the caller keeps the low bits
}

#define PLAIN(T, N, LOAD, STORE)                                                 \
  static double get_##N(const void *p, int64_t i) {                             \
    T x;                                                                         \
    memcpy(&x, (const char *)p + (size_t)i * sizeof x, sizeof x);               \
    return LOAD;                                                                 \
  }                                                                              \
  static void set_##N(void *p, int64_t i, double v) {                           \
    T x = STORE;                                                                 \
    memcpy((char *)p + (size_t)i * sizeof x, &x, sizeof x);                     \
  }                                                                              \
  static void to_f32_##N(const void *src, float *dst, int64_t n) {              \
    for (int64_t i = 0; i < n; i++) {                                            \
      T x;                                                                       \
      memcpy(&x, (const char *)src + (size_t)i * sizeof x, sizeof x);          \
      dst[i] = (float)(LOAD);                                                    \
    }                                                                            \
  }                                                                              \
  static void from_f32_##N(const float *src, void *dst, int64_t n) {            \
    for (int64_t i = 0; i < n; i++) set_##N(dst, i, src[i]);                    \
  }

PLAIN(float, f32, x, (float)v)
PLAIN(uint16_t, f16, rt_f16_to_f32(x), rt_f32_to_f16((float)v))
PLAIN(uint16_t, bf16, rt_bf16_to_f32(x), rt_f32_to_bf16((float)v))
PLAIN(int32_t, i32, x, (int32_t)(uint32_t)wrap_int(v, 32))
PLAIN(int64_t, i64, x, wrap_int(v, 64))
PLAIN(int8_t, i8, x, (int8_t)(uint8_t)wrap_int(v, 8))
PLAIN(uint8_t, u8, x, (uint8_t)wrap_int(v, 8))
PLAIN(uint8_t, bool, x != 0, (uint8_t)(v != 0))

// ---- 4-bit block formats (RT_QBLOCK weights a block) ----

static float h2f(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return rt_f16_to_f32(h);
}

static void put_h(uint8_t *p, float f) {
  uint16_t h = rt_f32_to_f16(f);
  memcpy(p, &h, 2);
}

static int nib(const uint8_t *q, int j) { return j < 16 ? q[j] & 15 : q[j - 16] >> 4; }

static void to_f32_q4_0(const void *src, float *dst, int64_t n) {
  for (int64_t b = 0; b < n / RT_QBLOCK; b++) {
    const uint8_t *p = (const uint8_t *)src + 18 * b;
    float d = h2f(p);
    for (int j = 0; j < RT_QBLOCK; j++) dst[b * RT_QBLOCK + j] = d * (float)(nib(p + 2, j) - 8);
  }
}

static void to_f32_q4_1(const void *src, float *dst, int64_t n) {
  for (int64_t b = 0; b < n / RT_QBLOCK; b++) {
    const uint8_t *p = (const uint8_t *)src + 20 * b;
    float d = h2f(p), m = h2f(p + 2);
    for (int j = 0; j < RT_QBLOCK; j++) dst[b * RT_QBLOCK + j] = d * (float)nib(p + 4, j) + m;
  }
}

static int clampi(long v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

// Q4_0: the value of largest magnitude maps to -8 (the extra negative step),
// d = that value / -8 rounded to f16; q = round(x / d) + 8 in [0, 15].
static void from_f32_q4_0(const float *src, void *dst, int64_t n) {
  for (int64_t b = 0; b < n / RT_QBLOCK; b++) {
    const float *x = src + b * RT_QBLOCK;
    uint8_t *p = (uint8_t *)dst + 18 * b;
    float amax = 0, max = 0;
    for (int j = 0; j < RT_QBLOCK; j++)
      if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    put_h(p, max / -8.0f);
    float d = h2f(p), id = d != 0 ? 1.0f / d : 0;
    memset(p + 2, 0, 16);
    for (int j = 0; j < RT_QBLOCK; j++) {
      int q = clampi(lrintf(x[j] * id) + 8, 0, 15);
      p[2 + (j & 15)] |= (uint8_t)(j < 16 ? q : q << 4);
    }
  }
}

// Q4_1: [min, max] in 15 steps; d and m rounded to f16 first.
static void from_f32_q4_1(const float *src, void *dst, int64_t n) {
  for (int64_t b = 0; b < n / RT_QBLOCK; b++) {
    const float *x = src + b * RT_QBLOCK;
    uint8_t *p = (uint8_t *)dst + 20 * b;
    float lo = x[0], hi = x[0];
    for (int j = 1; j < RT_QBLOCK; j++) lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
    put_h(p, (hi - lo) / 15.0f);
    put_h(p + 2, lo);
    float d = h2f(p), m = h2f(p + 2), id = d != 0 ? 1.0f / d : 0;
    memset(p + 4, 0, 16);
    for (int j = 0; j < RT_QBLOCK; j++) {
      int q = clampi(lrintf((x[j] - m) * id), 0, 15);
      p[4 + (j & 15)] |= (uint8_t)(j < 16 ? q : q << 4);
    }
  }
}

static double get_q4_0(const void *p, int64_t i) {
  float v[RT_QBLOCK];
  to_f32_q4_0((const uint8_t *)p + 18 * (i / RT_QBLOCK), v, RT_QBLOCK);
  return v[i % RT_QBLOCK];
}

static double get_q4_1(const void *p, int64_t i) {
  float v[RT_QBLOCK];
  to_f32_q4_1((const uint8_t *)p + 20 * (i / RT_QBLOCK), v, RT_QBLOCK);
  return v[i % RT_QBLOCK];
}

#define ROW(N, ST, SZ, F, I) \
  {#N, ST, SZ, 1, SZ, F, I, false, to_f32_##N, from_f32_##N, get_##N, set_##N}
#define QROW(N, BYTES) \
  {#N, NULL, 0, RT_QBLOCK, BYTES, true, false, true, to_f32_##N, from_f32_##N, get_##N, NULL}

const RtDTypeInfo rt_dtype_info[RT_DT_COUNT] = {
    [RT_F32] = ROW(f32, "F32", 4, true, false),   [RT_F16] = ROW(f16, "F16", 2, true, false),
    [RT_BF16] = ROW(bf16, "BF16", 2, true, false), [RT_I32] = ROW(i32, "I32", 4, false, true),
    [RT_I64] = ROW(i64, "I64", 8, false, true),    [RT_I8] = ROW(i8, "I8", 1, false, true),
    [RT_U8] = ROW(u8, "U8", 1, false, true),       [RT_BOOL] = ROW(bool, "BOOL", 1, false, false),
    [RT_Q4_0] = QROW(q4_0, 18),                    [RT_Q4_1] = QROW(q4_1, 20),
};
_Static_assert(sizeof rt_dtype_info / sizeof rt_dtype_info[0] == RT_DT_COUNT, "a row for every RtDType");

const char *rt_dtype_name(RtDType dt) {
  if ((unsigned)dt >= RT_DT_COUNT) return "?";
  return rt_dtype_info[dt].st_name ? rt_dtype_info[dt].st_name : rt_dtype_info[dt].name;
}

size_t rt_dtype_size(RtDType dt) { return (unsigned)dt < RT_DT_COUNT ? rt_dtype_info[dt].size : 0; }

int64_t rt_dtype_bytes(RtDType dt, int64_t n) {
  if ((unsigned)dt >= RT_DT_COUNT || n < 0) return -1;
  const RtDTypeInfo *r = &rt_dtype_info[dt];
  if (n % r->block) return -1;
  int64_t b;
  return __builtin_mul_overflow(n / r->block, (int64_t)r->block_bytes, &b) ? -1 : b;
}
