// runtime/generate.c: the generation loop (rt.h, "generate.c"): prompt ids
// -> the model's prefill -> sample -> emit -> decode -> sample ... for
// max_new tokens, sliding the window (a prefill over the most recent half)
// whenever it is full. The model is two callbacks (RtGenModel), so the loop
// serves `heed generate` (JIT-compiled or interpreted graphs,
// engine/generate.c), the sample `heed train` prints (cli/train.c, through
// the recomputing adapter below) and standalone programs (program.c)
// alike. libc and libm only.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int64_t rt_gen_keep(int64_t window) { return window / 2 > 1 ? window / 2 : 1; }

typedef struct {
  const RtGenModel *m;
  int32_t *hist;  // the tokens the model holds (window > 0)
  int64_t len;
  RtGenStats st;
} Loop;

// Feeds tok back: a decode at position len, or a shift when the window is full.
static int feed(Loop *l, int32_t tok, float *logits, char *err, size_t errlen) {
  const RtGenModel *m = l->m;
  double t1 = now_s();
  int bad;
  if (m->window > 0 && l->len >= m->window) {
    int64_t keep = rt_gen_keep(m->window);
    memmove(l->hist, l->hist + l->len - (keep - 1), sizeof(int32_t) * (size_t)(keep - 1));
    l->hist[keep - 1] = tok;
    l->len = keep;
    l->st.shifts++;
    bad = m->prefill(m->ud, l->hist, keep, logits);
  } else {
    if (l->hist) l->hist[l->len] = tok;
    bad = m->decode(m->ud, tok, l->len++, logits);
  }
  l->st.decode_s += now_s() - t1;
  l->st.decoded++;
  return bad ? model_fail(m, "decode", err, errlen) : RT_OK;
}

int rt_generate(const RtGenModel *m, const int32_t *prompt, int64_t n_prompt, const RtGenOpts *o, RtGenEmit emit,
                void *emit_ud, RtGenStats *stats, char *err, size_t errlen) {
  Loop l = {.m = m};
  if (stats) *stats = l.st;
  if (n_prompt < 1) return fail(RT_ERR_ARG, err, errlen, "the prompt is empty: at least one token is needed");
  for (int64_t i = 0; i < n_prompt; i++)
    if (prompt[i] < 0 || prompt[i] >= m->vocab)
      return fail(RT_ERR_ARG, err, errlen, "prompt token %lld is id %d, outside the model's vocabulary of %lld",
                  (long long)i, (int)prompt[i], (long long)m->vocab);
  if (m->window > 0 && n_prompt > m->window) {
    l.st.cropped = n_prompt - m->window;
    prompt += l.st.cropped, n_prompt = m->window;
  }
  float *logits = rt_malloc(sizeof(float) * (size_t)m->vocab);
  void *scratch = rt_malloc(rt_sample_scratch_bytes(m->vocab));
  l.hist = m->window > 0 ? rt_malloc(sizeof(int32_t) * (size_t)m->window) : NULL;
  if (!logits || !scratch || (m->window > 0 && !l.hist)) {
    rt_free(logits), rt_free(scratch), rt_free(l.hist);
    return fail(RT_ERR_NOMEM, err, errlen, "cannot allocate %.1f MiB for %lld logits, the sampler and a window of %lld tokens",
                (double)(sizeof(float) * (uint64_t)m->vocab + rt_sample_scratch_bytes(m->vocab) +
                         sizeof(int32_t) * (uint64_t)(m->window > 0 ? m->window : 0)) / 1048576.0,
                (long long)m->vocab, (long long)m->window);
  }
  if (l.hist) memcpy(l.hist, prompt, sizeof(int32_t) * (size_t)n_prompt);
  l.len = n_prompt;
  RtRng rng;
  rt_rng_seed(&rng, o->sample.seed);
  int rc = RT_OK;
  double t0 = now_s();
  if (o->max_new > 0 && m->prefill(m->ud, prompt, n_prompt, logits)) rc = model_fail(m, "prefill", err, errlen);
  l.st.prefill_s = now_s() - t0;
  for (int64_t i = 0; rc == RT_OK && i < o->max_new; i++) {
    int32_t tok = rt_sample(logits, m->vocab, &o->sample, &rng, scratch);
    if (tok < 0) {
      rc = fail(RT_ERR_NOMEM, err, errlen, "sampling failed");
      break;
    }
    l.st.generated++;
    if ((emit && emit(emit_ud, tok)) || i + 1 == o->max_new) break;
    rc = feed(&l, tok, logits, err, errlen);
  }
  rt_free(logits), rt_free(scratch), rt_free(l.hist);
  if (stats) *stats = l.st;
  return rc;
}

// ---- a model without a cache: the whole window per token ----

static int rc_run(RtGenRecompute *r, float *logits) {
  const float *rows;
  if (r->logits(r->ud, r->tok, r->n, &rows)) return 1;
  memcpy(logits, rows + (r->n - 1) * r->vocab, sizeof(float) * (size_t)r->vocab);
  return 0;
}

static int rc_prefill(void *ud, const int32_t *tokens, int64_t n, float *logits) {
  RtGenRecompute *r = ud;
  memmove(r->tok, tokens, sizeof(int32_t) * (size_t)n);
  r->n = n;
  return rc_run(r, logits);
}

static int rc_decode(void *ud, int32_t token, int64_t pos, float *logits) {
  RtGenRecompute *r = ud;
  r->tok[pos] = token;
  r->n = pos + 1;
  return rc_run(r, logits);
}

static const char *rc_message(void *ud) {
  RtGenRecompute *r = ud;
  return r->message ? r->message(r->ud) : NULL;
}

int rt_gen_recompute_init(RtGenRecompute *r, RtGenModel *m, int64_t vocab, int64_t window, RtLogitsFn logits,
                          const char *(*message)(void *ud), void *ud) {
  *r = (RtGenRecompute){.logits = logits, .message = message, .ud = ud, .vocab = vocab};
  if (window < 1) return RT_ERR_ARG;
  if (!(r->tok = rt_malloc(sizeof(int32_t) * (size_t)window))) return RT_ERR_NOMEM;
  *m = (RtGenModel){.vocab = vocab, .window = window, .ud = r, .prefill = rc_prefill, .decode = rc_decode,
                    .message = rc_message};
  return RT_OK;
}

void rt_gen_recompute_free(RtGenRecompute *r) {
  rt_free(r->tok);
  r->tok = NULL;
}
