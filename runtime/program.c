// runtime/program.c: main() of the programs `heed build` writes (the
// library heedrt_main; the rest of the runtime is heedrt_standalone). It
// is the front of a standalone program's data flow: argv -> CPU check ->
// the model (model.c: description + weights, embedded or a file beside the
// program) -> tokens of the prompt -> generation -> text on stdout.
//
// The model comes through model.h (embed.c), over the two objects heed
// build links in: the generated code and its data. Generation here is
// recomputation over the whole prefix per token with a byte-level
// tokenizer: the stand-in until the runtime's KV-cached loop and tokenizers
// are in place.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/heed_model.h"
#include "runtime/rt.h"


typedef struct {
  const char *prompt, *tokenizer, *weights;
  int64_t n;
  double temperature, top_p;
  int64_t top_k;
  uint64_t seed;
  int threads;
} Opts;

static const char usage_text[] =
    "usage: %s [--prompt TEXT] [-n N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "\n"
    "Generate text with the model built into this program (by heed build).\n"
    "  --prompt TEXT      the text to continue (default: a newline)\n"
    "  -n N               tokens to generate (default 64); generation stops at the context limit\n"
    "  --temperature T    sampling temperature (default 1.0; 0: greedy)\n"
    "  --top-k K          sample among the K most likely tokens (default 0: all)\n"
    "  --top-p P          sample among the most likely tokens whose probabilities sum to P (default 1.0)\n"
    "  --seed S           the random seed (default 1337)\n"
    "  --tokenizer DIR    a GPT-2 BPE tokenizer directory (not supported yet: byte-level only)\n"
    "  --threads N        threads for the model (default: the cores)\n"
    "  --weights FILE     the weights file (default: embedded, or the file heed build wrote beside the program)\n"
    "  -h, --help         this help\n";

static int bad_usage(const char *prog, const char *what, const char *arg) {
  fprintf(stderr, "%s: %s '%s'\n", prog, what, arg);
  fprintf(stderr, usage_text, prog);
  return 2;
}

static bool num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

// Returns -1 to go on, else an exit status.
static int parse(int argc, char **argv, Opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    double v;
    if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
      printf(usage_text, argv[0]);
      return 0;
    }
    if (strcmp(s, "--prompt") && strcmp(s, "-n") && strcmp(s, "--temperature") && strcmp(s, "--top-k") &&
        strcmp(s, "--top-p") && strcmp(s, "--seed") && strcmp(s, "--tokenizer") && strcmp(s, "--threads") &&
        strcmp(s, "--weights"))
      return bad_usage(argv[0], s[0] == '-' ? "unknown flag" : "unexpected argument", s);
    if (!val) return bad_usage(argv[0], "a value is needed after", s);
    i++;
    if (!strcmp(s, "--prompt")) o->prompt = val;
    else if (!strcmp(s, "--tokenizer")) o->tokenizer = val;
    else if (!strcmp(s, "--weights")) o->weights = val;
    else if (!strcmp(s, "-n")) {
      if (!num(val, 0, 1e9, &v) || v != floor(v)) return bad_usage(argv[0], "-n takes a count, not", val);
      o->n = (int64_t)v;
    } else if (!strcmp(s, "--temperature")) {
      if (!num(val, 0, 1e6, &v)) return bad_usage(argv[0], "--temperature takes a number >= 0, not", val);
      o->temperature = v;
    } else if (!strcmp(s, "--top-k")) {
      if (!num(val, 0, 1e9, &v) || v != floor(v)) return bad_usage(argv[0], "--top-k takes a count, not", val);
      o->top_k = (int64_t)v;
    } else if (!strcmp(s, "--top-p")) {
      if (!num(val, 0, 1, &v) || v == 0) return bad_usage(argv[0], "--top-p takes a number in (0, 1], not", val);
      o->top_p = v;
    } else if (!strcmp(s, "--threads")) {
      if (!num(val, 1, 256, &v) || v != floor(v)) return bad_usage(argv[0], "--threads takes 1 to 256, not", val);
      o->threads = (int)v;
    } else {
      char *end;
      errno = 0;
      unsigned long long sd = strtoull(val, &end, 10);
      if (!*val || *end || errno || val[0] == '-') return bad_usage(argv[0], "--seed takes a non-negative integer, not", val);
      o->seed = sd;
    }
  }
  return -1;
}

// ---- sampling (splitmix64; the stand-in sampler) ----

static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct {
  double p;
  int32_t id;
} Cand;

static int by_prob(const void *a, const void *b) {
  const Cand *x = a, *y = b;
  if (x->p != y->p) return x->p > y->p ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

// The next token from one row of logits: greedy at temperature 0, else a
// draw from softmax(logits / T) restricted to top-k, then top-p.
static int32_t sample(const float *lg, int64_t V, const Opts *o, uint64_t *rng, Cand *c) {
  int32_t best = 0;
  for (int64_t i = 1; i < V; i++)
    if (lg[i] > lg[best]) best = (int32_t)i;
  if (o->temperature == 0) return best;
  double mx = lg[best], sum = 0;
  for (int64_t i = 0; i < V; i++) {
    c[i] = (Cand){exp(((double)lg[i] - mx) / o->temperature), (int32_t)i};
    sum += c[i].p;
  }
  qsort(c, (size_t)V, sizeof *c, by_prob);
  int64_t keep = o->top_k > 0 && o->top_k < V ? o->top_k : V;
  double kept = 0, acc = 0;
  for (int64_t i = 0; i < keep; i++) {
    kept += c[i].p;
    if (kept >= o->top_p * sum) {
      keep = i + 1;
      break;
    }
  }
  kept = 0;
  for (int64_t i = 0; i < keep; i++) kept += c[i].p;
  double u = (double)(mix(rng) >> 11) * 0x1.0p-53 * kept;
  for (int64_t i = 0; i < keep; i++) {
    acc += c[i].p;
    if (u < acc) return c[i].id;
  }
  return c[keep - 1].id;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int generate(RtModel *m, const Opts *o, const char *prog) {
  int64_t V = rt_model_vocab(m), ctx = rt_model_ctx(m), plen = (int64_t)strlen(o->prompt);
  char err[512];
  if (plen == 0) return fprintf(stderr, "%s: the prompt is empty\n", prog), 1;
  if (plen > ctx) return fprintf(stderr, "%s: the prompt is %" PRId64 " tokens, more than the context of %" PRId64 "\n", prog, plen, ctx), 1;
  int32_t *tok = malloc(sizeof *tok * (size_t)ctx);
  Cand *cand = malloc(sizeof *cand * (size_t)V);
  if (!tok || !cand) return free(tok), free(cand), fprintf(stderr, "%s: out of memory\n", prog), 1;
  for (int64_t i = 0; i < plen; i++) {
    tok[i] = (unsigned char)o->prompt[i];
    if (tok[i] >= V) {
      fprintf(stderr, "%s: the prompt's byte 0x%02x (at byte %" PRId64 ") is outside the model's vocabulary of %" PRId64
              " tokens\n", prog, (unsigned)tok[i], i, V);
      return free(tok), free(cand), 1;
    }
  }
  fwrite(o->prompt, 1, (size_t)plen, stdout);
  fflush(stdout);
  uint64_t rng = o->seed;
  int64_t T = plen, made = 0;
  double t0 = now_s(), first = 0;
  int rc = 0;
  for (; made < o->n; made++) {
    if (T >= ctx) {
      fprintf(stderr, "\n%s: stopped at the context limit of %" PRId64 " tokens\n", prog, ctx);
      break;
    }
    const float *lg;
    if (rt_model_forward(m, tok, T, &lg, err, sizeof err)) {
      fprintf(stderr, "\n%s: %s\n", prog, err);
      rc = 1;
      break;
    }
    int32_t next = sample(lg + (T - 1) * V, V, o, &rng, cand);
    tok[T++] = next;
    if (next < 256) putchar(next);  // byte-level: tokens past 255 have no text
    fflush(stdout);
    if (made == 0) first = now_s() - t0;
  }
  double dt = now_s() - t0;
  putchar('\n');
  fprintf(stderr, "%" PRId64 " tokens in %.3f s (%.1f tokens/s; first token after %.1f ms), %d thread%s\n", made, dt,
          dt > 0 ? (double)made / dt : 0.0, first * 1e3, rt_model_threads(m), rt_model_threads(m) == 1 ? "" : "s");
  free(tok);
  free(cand);
  return rc;
}

int main(int argc, char **argv) {
  const char *prog = argc > 0 ? argv[0] : "heed-program";
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  Opts o = {.prompt = "\n", .n = 64, .temperature = 1.0, .top_p = 1.0, .seed = 1337,
            .threads = cores < 1 ? 1 : cores > 256 ? 256 : (int)cores};
  int rc = parse(argc, argv, &o);
  if (rc >= 0) return rc;
  char err[1024];
  if (o.tokenizer) {
    fprintf(stderr, "%s: --tokenizer: this program reads bytes only (GPT-2 BPE is not supported yet)\n", prog);
    return 1;
  }
  HeedModel *m = heed_model_open(o.weights, o.threads, err, sizeof err);  // checks the CPU first
  if (!m) {
    fprintf(stderr, "%s: %s\n", prog, err);
    return 1;
  }
  rc = generate(m, &o, prog);
  heed_model_close(m);
  return rc;
}
