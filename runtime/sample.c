// runtime/sample.c: choosing the next token from a model's logits (rt.h,
// "sample.c"): greedy, or temperature, top-k and top-p sampling with a
// seeded splitmix64 stream. Sits between the model's decode step and the
// tokenizer's decode in the generation loop (generate.c). libc and libm
// only; the integer PRNG gives the same draws on every machine, so the
// same logits and seed give the same tokens.
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

void rt_rng_seed(RtRng *r, uint64_t seed) { r->s = seed; }

uint64_t rt_rng_next(RtRng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double rt_rng_uniform(RtRng *r) { return (double)(rt_rng_next(r) >> 11) * 0x1.0p-53; }

typedef struct {
  double p;
  int32_t id;
} Cand;

size_t rt_sample_scratch_bytes(int64_t vocab) { return sizeof(Cand) * (size_t)(vocab > 0 ? vocab : 1); }

// Descending probability, then ascending id: a total order (qsort is not stable).
static int by_prob(const void *a, const void *b) {
  const Cand *x = a, *y = b;
  if (x->p != y->p) return x->p > y->p ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

static int32_t argmax(const float *l, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (l[i] > l[best] || (isnan(l[best]) && !isnan(l[i]))) best = i;
  return (int32_t)best;
}

int32_t rt_sample(const float *logits, int64_t vocab, const RtSampleOpts *o, RtRng *r, void *scratch) {
  if (vocab < 1) return -1;
  if (!(o->temperature > 0)) return argmax(logits, vocab);
  Cand *c = scratch ? scratch : rt_malloc(rt_sample_scratch_bytes(vocab));
  if (!c) return -1;
  double mx = logits[argmax(logits, vocab)];
  for (int64_t i = 0; i < vocab; i++) {
    double p = exp(((double)logits[i] - mx) / o->temperature);
    c[i] = (Cand){isnan(p) ? 0 : p, (int32_t)i};
  }
  int64_t n = vocab;
  bool topk = o->top_k > 0 && o->top_k < vocab, topp = o->top_p > 0 && o->top_p < 1;
  if (topk || topp) {
    qsort(c, (size_t)vocab, sizeof *c, by_prob);
    if (topk) n = o->top_k;
    if (topp) {
      double total = 0, acc = 0;
      for (int64_t i = 0; i < n; i++) total += c[i].p;
      int64_t keep = 0;
      while (keep < n && (keep == 0 || acc < o->top_p * total)) acc += c[keep++].p;
      n = keep;
    }
  }
  double total = 0;
  for (int64_t i = 0; i < n; i++) total += c[i].p;
  double u = rt_rng_uniform(r) * total, acc = 0;
  int32_t pick = c[n - 1].id;  // rounding: the last candidate
  for (int64_t i = 0; i < n; i++) {
    acc += c[i].p;
    if (acc > u) {
      pick = c[i].id;
      break;
    }
  }
  if (!scratch) rt_free(c);
  return pick;
}
