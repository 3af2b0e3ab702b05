// bench/quant_fake.c: writes a checkpoint's weights as each quantization
// scheme sees them (quantized by runtime/quant.c's rt_quantize_rows, then
// dequantized by the dtype table), for measuring a scheme's accuracy with
// heed's own evaluation (bench/quant_accuracy.sh). The weight-only kernels
// compute exactly dequant(W) . x up to f32 summation order, so the loss on
// these weights is the loss of the quantized model (W8A8 also rounds the
// activations: not measurable this way).
// A matmul weight is a rank-2 F32 tensor stored (K, N) (x @ W), quantized
// per output channel n along K; names matching a --skip glob stay f32
// (default: the embeddings wte and wpe, which are also the tied LM head, and
// a checkpoint's optimizer state opt.*).
// Usage: quant_fake IN.safetensors int8|q4_0|q4_1|bf16 OUT.safetensors [--skip GLOB]...
// Prints each quantized tensor's relative weight error ||W - Wq|| / ||W||.
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/quant.h"

// w (K, N) -> the same weights through dt: rows of wt (N, K) quantized and back.
static double fake(RtDType dt, float *w, int64_t K, int64_t N) {
  float *wt = malloc(sizeof(float) * (size_t)(K * N)), *scale = malloc(sizeof(float) * (size_t)N);
  uint8_t *q = malloc((size_t)rt_qweight_bytes(dt, N, K) + 1);
  for (int64_t k = 0; k < K; k++)
    for (int64_t n = 0; n < N; n++) wt[n * K + k] = w[k * N + n];
  rt_quantize_rows(dt, wt, N, K, q, scale);
  int64_t rb = rt_qweight_bytes(dt, 1, K);
  double e2 = 0, w2 = 0;
  float *row = malloc(sizeof(float) * (size_t)K);
  for (int64_t n = 0; n < N; n++) {
    rt_dtype_info[dt].to_f32(q + n * rb, row, K);
    for (int64_t k = 0; k < K; k++) {
      float v = dt == RT_I8 ? row[k] * scale[n] : row[k];
      e2 += ((double)v - w[k * N + n]) * ((double)v - w[k * N + n]);
      w2 += (double)w[k * N + n] * w[k * N + n];
      w[k * N + n] = v;
    }
  }
  free(wt), free(scale), free(q), free(row);
  return w2 > 0 ? sqrt(e2 / w2) : 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: quant_fake IN.safetensors int8|q4_0|q4_1|bf16 OUT.safetensors [--skip GLOB]...\n");
    return 2;
  }
  RtDType dt = !strcmp(argv[2], "int8") ? RT_I8 : !strcmp(argv[2], "q4_0") ? RT_Q4_0
               : !strcmp(argv[2], "q4_1") ? RT_Q4_1 : !strcmp(argv[2], "bf16") ? RT_BF16 : RT_DT_COUNT;
  if (dt == RT_DT_COUNT) {
    fprintf(stderr, "quant_fake: unknown scheme '%s' (int8, q4_0, q4_1, bf16)\n", argv[2]);
    return 2;
  }
  const char *skip[16] = {"wte", "wpe", "opt.*"};  // embeddings / tied LM head, optimizer state
  int nskip = 3;
  for (int i = 4; i + 1 < argc && nskip < 16; i += 2)
    if (!strcmp(argv[i], "--skip")) skip[nskip++] = argv[i + 1];
  RtSafetensors st;
  char err[512];
  if (rt_st_open(argv[1], &st, err, sizeof err) != RT_OK) {
    fprintf(stderr, "quant_fake: %s\n", err);
    return 1;
  }
  RtStWrite *ts = calloc((size_t)st.n, sizeof *ts);
  float **bufs = calloc((size_t)st.n, sizeof *bufs);
  int nq = 0;
  for (int i = 0; i < st.n; i++) {
    const RtStTensor *t = &st.t[i];
    ts[i] = (RtStWrite){t->name, t->dt, t->rank, t->shape, st.data + t->off};
    bool skipped = false;
    for (int s = 0; s < nskip; s++) skipped = skipped || !fnmatch(skip[s], t->name, 0);
    if (t->dt != RT_F32 || t->rank != 2 || skipped || strchr(t->name, '/')) continue;
    if (rt_dtype_info[dt].is_quant && t->shape[0] % RT_QBLOCK) {
      fprintf(stderr, "quant_fake: %s: K = %lld is not a multiple of %d: kept f32\n", t->name,
              (long long)t->shape[0], RT_QBLOCK);
      continue;
    }
    bufs[i] = malloc(t->nbytes);
    rt_st_read_f32(&st, t, bufs[i], err, sizeof err);
    double rel = fake(dt, bufs[i], t->shape[0], t->shape[1]);
    printf("%-32s (%lld, %lld)  relative weight error %.5f\n", t->name, (long long)t->shape[0],
           (long long)t->shape[1], rel);
    ts[i].data = bufs[i];
    nq++;
  }
  const char *meta[2 * 64];
  int nm = st.nmeta < 64 ? st.nmeta : 64;
  int k = 0;
  for (int i = 0; i < nm; i++)  // the tensors' checksums no longer hold: not copied
    if (strcmp(st.meta_key[i], "crc32c")) meta[2 * k] = st.meta_key[i], meta[2 * k + 1] = st.meta_val[i], k++;
  nm = k;
  int rc = rt_st_write(argv[3], ts, st.n, meta, nm, err, sizeof err);
  if (rc != RT_OK) fprintf(stderr, "quant_fake: %s\n", err);
  if (!nq) fprintf(stderr, "quant_fake: no matmul weight to quantize in %s\n", argv[1]);
  for (int i = 0; i < st.n; i++) free(bufs[i]);
  free(bufs), free(ts);
  rt_st_close(&st);
  return rc != RT_OK || !nq;
}
