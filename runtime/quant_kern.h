// runtime/quant_kern.h: the body of one level's quantized matmul kernels,
// included by runtime/quant.c once per x86 level with
//   QK_SUF (name suffix), QK_TARGET (a target attribute string), QK_W (lanes: 4, 8 or 16)
// Written with GCC vector extensions: the same source is an 8-lane AVX2
// kernel and a 16-lane AVX-512 one; the compiler picks the instructions
// (vpmovsxbd, vcvtdq2ps, vfmadd231ps; runtime/quant.c is built with
// -ffp-contract=fast). A weight chunk is decoded once in registers and used
// for up to 4 rows of x (the GEMM's reuse; a decode step has one row).
#define QK_CAT2(a, b) a##_##b
#define QK_CAT(a, b) QK_CAT2(a, b)
#define QK_FN(name) QK_CAT(name, QK_SUF)
#define QK_ATTR __attribute__((target(QK_TARGET)))
#define QK_INLINE __attribute__((target(QK_TARGET), always_inline)) static inline

typedef float QK_FN(vf) __attribute__((vector_size(4 * QK_W)));
typedef uint8_t QK_FN(vu8) __attribute__((vector_size(QK_W)));
typedef uint16_t QK_FN(vu16) __attribute__((vector_size(2 * QK_W)));
typedef uint32_t QK_FN(vu32) __attribute__((vector_size(4 * QK_W)));
typedef int32_t QK_FN(vs32) __attribute__((vector_size(4 * QK_W)));
#define VF QK_FN(vf)

QK_INLINE VF QK_FN(ldf)(const float *p) {
  VF v;
  memcpy(&v, p, sizeof v);
  return v;
}

// The sum of the lanes, in a fixed order (lane 0 first).
QK_INLINE float QK_FN(hsum)(VF v) {
  float s = 0;
  for (int l = 0; l < QK_W; l++) s += v[l];
  return s;
}

// QK_W weights of w's row from element i (a multiple of QK_W), as floats
// (q4_0: q - 8; q4_1: q; before the block scale and min).
QK_INLINE VF QK_FN(dec)(RtDType dt, const uint8_t *row, int64_t i) {
  switch (dt) {
  case RT_F32: return QK_FN(ldf)((const float *)row + i);
  case RT_I8: {
#if QK_W == 16  // vpmovsxbd (GCC 12 builds the vector-extension widening byte by byte)
    return (VF)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + i))));
#elif QK_W == 8
    return (VF)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + i))));
#else
    QK_FN(vs32) v = {(int8_t)row[i], (int8_t)row[i + 1], (int8_t)row[i + 2], (int8_t)row[i + 3]};
    return __builtin_convertvector(v, VF);
#endif
  }
  case RT_BF16: {
    QK_FN(vu16) h;
    memcpy(&h, row + 2 * i, sizeof h);
    QK_FN(vu32) u = __builtin_convertvector(h, QK_FN(vu32)) << 16;
    return (VF)u;
  }
  case RT_Q4_0:
  case RT_Q4_1: {  // i within its block: weights 0..15 are low nibbles, 16..31 high ones
    int64_t b = i / RT_QBLOCK, o = i % RT_QBLOCK;
    const uint8_t *q = row + b * rt_dtype_info[dt].block_bytes + (dt == RT_Q4_0 ? 2 : 4) + (o & 15);
    QK_FN(vu8) v;
    memcpy(&v, q, sizeof v);
    v = o < 16 ? (v & 15) : (v >> 4);
    QK_FN(vs32) qi = __builtin_convertvector(v, QK_FN(vs32));
    return __builtin_convertvector(dt == RT_Q4_0 ? qi - 8 : qi, VF);  // q4_0: w = d * (q - 8)
  }
  default: return (VF){0};  // rejected by rt_qweight_check before any kernel runs
  }
}

// out[r] = x[r] . W[j] for nr rows of x; dt and nr are constants after
// inlining, so each (dtype, rows) pair is its own loop without branches.
QK_INLINE void QK_FN(dot)(const RtQWeight *w, RtDType dt, int64_t j, const float *x, int64_t ldx, const float *xsum,
                          int nr, float *out) {
  const int64_t k = w->k;
  const uint8_t *row = (const uint8_t *)w->w + (dt >= RT_DT_PLAIN ? j * (k / RT_QBLOCK) * rt_dtype_info[dt].block_bytes
                                                                  : j * k * (int64_t)rt_dtype_info[dt].size);
  VF acc[4] = {0};
  float tail[4] = {0};
  if (dt == RT_Q4_0 || dt == RT_Q4_1) {
    const int64_t bb = dt == RT_Q4_0 ? 18 : 20, nb = k / RT_QBLOCK;
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t *blk = row + b * bb;
      uint16_t hd, hm = 0;
      memcpy(&hd, blk, 2);
      if (dt == RT_Q4_1) memcpy(&hm, blk + 2, 2);
      float d = QK_H2F(hd);
      VF bq[4] = {0};  // sum (q - 8) * x (q4_0) or sum q * x (q4_1) over the block
      for (int c = 0; c < RT_QBLOCK; c += QK_W) {
        VF q = QK_FN(dec)(dt, row, b * RT_QBLOCK + c);
        for (int r = 0; r < nr; r++) bq[r] += q * QK_FN(ldf)(x + r * ldx + b * RT_QBLOCK + c);
      }
      for (int r = 0; r < nr; r++) acc[r] += d * bq[r];
      if (dt == RT_Q4_1) {  // + min * sum x (the block sums of x: xsum, once per call)
        float mn = QK_H2F(hm);
        for (int r = 0; r < nr; r++) tail[r] += mn * xsum[r * nb + b];
      }
    }
  } else {
    int64_t kv = k - k % QK_W;
    for (int64_t i = 0; i < kv; i += QK_W) {
      VF wv = QK_FN(dec)(dt, row, i);
      for (int r = 0; r < nr; r++) acc[r] += QK_FN(ldf)(x + r * ldx + i) * wv;
    }
    for (int64_t i = kv; i < k; i++) {
      float wi = (float)rt_dtype_info[dt].get(row, i);
      for (int r = 0; r < nr; r++) tail[r] += x[r * ldx + i] * wi;
    }
  }
  float s = dt == RT_I8 ? w->scale[j] : 1.0f;
  for (int r = 0; r < nr; r++) out[r] = (QK_FN(hsum)(acc[r]) + tail[r]) * s;
}

QK_INLINE void QK_FN(rows_dt)(const RtQWeight *w, RtDType dt, int64_t j0, int64_t j1, const float *x, int64_t m,
                              const float *xsum, float *y) {
  const int64_t nb = w->k / RT_QBLOCK;
  float o[4];
  for (int64_t j = j0; j < j1; j++) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
      QK_FN(dot)(w, dt, j, x + i * w->k, w->k, xsum ? xsum + i * nb : NULL, 4, o);
      for (int r = 0; r < 4; r++) y[(i + r) * w->n + j] = o[r];
    }
    for (; i < m; i++) {
      QK_FN(dot)(w, dt, j, x + i * w->k, w->k, xsum ? xsum + i * nb : NULL, 1, o);
      y[i * w->n + j] = o[0];
    }
  }
}

// Rows [j0, j1) of W against every row of x: y (m, n).
// xsum (m, k/32): the block sums of x (q4_1), else NULL.
QK_ATTR static void QK_FN(rows)(const RtQWeight *w, int64_t j0, int64_t j1, const float *x, int64_t m,
                                const float *xsum, float *y) {
  switch (w->dt) {
  case RT_F32: QK_FN(rows_dt)(w, RT_F32, j0, j1, x, m, xsum, y); break;
  case RT_I8: QK_FN(rows_dt)(w, RT_I8, j0, j1, x, m, xsum, y); break;
  case RT_BF16: QK_FN(rows_dt)(w, RT_BF16, j0, j1, x, m, xsum, y); break;
  case RT_Q4_0: QK_FN(rows_dt)(w, RT_Q4_0, j0, j1, x, m, xsum, y); break;
  case RT_Q4_1: QK_FN(rows_dt)(w, RT_Q4_1, j0, j1, x, m, xsum, y); break;
  default: break;  // rejected by rt_qweight_check
  }
}

#undef VF
#undef QK_ATTR
#undef QK_INLINE
