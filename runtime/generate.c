// runtime/generate.c: the generation loop (rt.h, "generate.c"): prompt ids
// -> the model's prefill -> sample -> emit -> decode -> sample ... until
// max_new tokens or the model's context is full. The model is two
// callbacks (RtGenModel), so the loop serves `heed generate` (JIT-compiled
// or interpreted graphs, cli/generate.c) and standalone programs alike.
// libc and libm only.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/rt.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int fail(int rc, char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return rc;
}

static int model_fail(const RtGenModel *m, const char *what, char *err, size_t errlen) {
  const char *why = m->message ? m->message(m->ud) : NULL;
  return fail(RT_ERR_MODEL, err, errlen, "%s failed%s%s", what, why ? ": " : "", why ? why : "");
}

int rt_generate(const RtGenModel *m, const int32_t *prompt, int64_t n_prompt, const RtGenOpts *o, RtGenEmit emit,
                void *emit_ud, RtGenStats *stats, char *err, size_t errlen) {
  RtGenStats st = {0};
  if (stats) *stats = st;
  if (n_prompt < 1) return fail(RT_ERR_ARG, err, errlen, "the prompt is empty: at least one token is needed");
  if (m->ctx_max > 0 && n_prompt > m->ctx_max)
    return fail(RT_ERR_ARG, err, errlen, "the prompt has %lld tokens but the model's context holds %lld",
                (long long)n_prompt, (long long)m->ctx_max);
  for (int64_t i = 0; i < n_prompt; i++)
    if (prompt[i] < 0 || prompt[i] >= m->vocab)
      return fail(RT_ERR_ARG, err, errlen, "prompt token %lld is id %d, outside the model's vocabulary of %lld",
                  (long long)i, (int)prompt[i], (long long)m->vocab);
  float *logits = malloc(sizeof(float) * (size_t)m->vocab);
  void *scratch = malloc(rt_sample_scratch_bytes(m->vocab));
  if (!logits || !scratch) {
    free(logits), free(scratch);
    return fail(RT_ERR_NOMEM, err, errlen, "out of memory for %lld logits", (long long)m->vocab);
  }
  RtRng rng;
  rt_rng_seed(&rng, o->sample.seed);
  int rc = RT_OK;
  double t0 = now_s();
  if (o->max_new > 0 && m->prefill(m->ud, prompt, n_prompt, logits)) rc = model_fail(m, "prefill", err, errlen);
  st.prefill_s = now_s() - t0;
  int64_t pos = n_prompt;  // the position of the next token to decode
  for (int64_t i = 0; rc == RT_OK && i < o->max_new; i++) {
    int32_t tok = rt_sample(logits, m->vocab, &o->sample, &rng, scratch);
    if (tok < 0) {
      rc = fail(RT_ERR_NOMEM, err, errlen, "sampling failed");
      break;
    }
    st.generated++;
    if (emit && emit(emit_ud, tok)) break;
    if (i + 1 == o->max_new) break;
    if (m->ctx_max > 0 && pos >= m->ctx_max) {
      st.hit_ctx = 1;
      break;
    }
    double t1 = now_s();
    if (m->decode(m->ud, tok, pos, logits)) rc = model_fail(m, "decode", err, errlen);
    st.decode_s += now_s() - t1;
    st.decoded++;
    pos++;
  }
  free(logits), free(scratch);
  if (stats) *stats = st;
  return rc;
}
