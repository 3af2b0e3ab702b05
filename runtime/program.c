// runtime/program.c: main() of the programs `heed build` writes (the
// library heedrt_main; the rest of the runtime is heedrt_standalone). It
// is the front of a standalone program's data flow: argv -> CPU check ->
// the model (model.c: description + weights, embedded or a file beside the
// program) -> tokens of the prompt -> generation -> text on stdout.
//
// The model comes through model.h (embed.c), over the two objects heed
// build links in: the generated code and its data. Tokenizers, sampling and
// the loop are the runtime's (tokenizer.c, sample.c, generate.c), shared
// with `heed generate`. A causal decoder decodes with the KV-cached step
// graph heed build compiled in (heed_step: the prompt at positions 0..,
// then one token at a time), as `heed generate` does; any other model
// recomputes the whole window per token.
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
  int64_t n, window;
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
    "  -n N               tokens to generate (default 64); past the window it slides (keeps the last half)\n"
    "  --temperature T    sampling temperature (default 1.0; 0: greedy)\n"
    "  --top-k K          sample among the K most likely tokens (default 0: all)\n"
    "  --top-p P          sample among the most likely tokens whose probabilities sum to P (default 1.0)\n"
    "  --seed S           the random seed (default 1337)\n"
    "  --tokenizer DIR    a GPT-2 BPE tokenizer (encoder.json, vocab.bpe; default: bytes)\n"
    "  --window N         positions the model runs over (default: the window heed build chose; <= the context)\n"
    "  --threads N        threads for the model (default: 1 for weights under 16 MB, else the cores)\n"
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
        strcmp(s, "--weights") && strcmp(s, "--window"))
      return bad_usage(argv[0], s[0] == '-' ? "unknown flag" : "unexpected argument", s);
    if (!val) return bad_usage(argv[0], "a value is needed after", s);
    i++;
    if (!strcmp(s, "--prompt")) o->prompt = val;
    else if (!strcmp(s, "--tokenizer")) o->tokenizer = val;
    else if (!strcmp(s, "--weights")) o->weights = val;
    else if (!strcmp(s, "-n")) {
      if (!num(val, 1, 1e9, &v) || v != floor(v)) return bad_usage(argv[0], "-n takes a positive integer, not", val);
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
    } else if (!strcmp(s, "--window")) {
      if (!num(val, 1, 1e9, &v) || v != floor(v)) return bad_usage(argv[0], "--window takes a positive count, not", val);
      o->window = (int64_t)v;
    } else if (!strcmp(s, "--threads")) {
      if (!num(val, 1, 256, &v) || v != floor(v)) return bad_usage(argv[0], "--threads takes 1 to 256, not", val);
      o->threads = (int)v;
    } else {
      char *end;
      errno = 0;
      unsigned long long sd = strtoull(val, &end, 10);
      if (!*val || *end || errno || val[0] == '-')  // errno: ERANGE past 2^64 - 1, not clamped
        return bad_usage(argv[0], "--seed takes an integer from 0 to 18446744073709551615, not", val);
      o->seed = sd;
    }
  }
  return -1;
}

// ---- the model as rt_generate drives it ----

typedef struct {
  RtModel *m;
  char err[512];
} Gen;

static int gen_step(Gen *g, const int32_t *tokens, int64_t n, int64_t pos, float *logits) {
  const float *lg;
  if (rt_model_step(g->m, tokens, n, pos, &lg, g->err, sizeof g->err)) return 1;
  int64_t V = rt_model_vocab(g->m);
  memcpy(logits, lg + (n - 1) * V, sizeof *logits * (size_t)V);
  return 0;
}

static int gen_prefill(void *ud, const int32_t *tokens, int64_t n, float *logits) {
  return gen_step(ud, tokens, n, 0, logits);
}

static int gen_decode(void *ud, int32_t token, int64_t pos, float *logits) { return gen_step(ud, &token, 1, pos, logits); }

// Not a causal decoder: the whole window per token.
static int gen_logits(void *ud, const int32_t *tokens, int64_t n, const float **rows) {
  Gen *g = ud;
  return rt_model_forward(g->m, tokens, n, rows, g->err, sizeof g->err) != RT_OK;
}

static const char *gen_message(void *ud) { return ((Gen *)ud)->err; }

typedef struct {
  const RtTokenizer *tk;
  double t0, first;
} Out;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int emit(void *ud, int32_t token) {
  Out *o = ud;
  size_t len;
  const char *s = rt_tok_decode(o->tk, token, &len);
  if (s) fwrite(s, 1, len, stdout);
  fflush(stdout);
  if (o->first == 0) o->first = now_s() - o->t0;
  return 0;
}

// The prompt's tokens; 0, or exit status 2 (bad usage, as heed generate)
// for a prompt that is empty, does not encode or holds a token outside the
// vocabulary.
static int encode_prompt(const RtTokenizer *tk, const Opts *o, int64_t V, const char *prog, int32_t **ids,
                         int64_t *n) {
  char err[512];
  if (rt_tok_encode(tk, o->prompt, strlen(o->prompt), ids, n, err, sizeof err) != RT_OK) {
    fprintf(stderr, "%s: --prompt: %s\n", prog, err);
    return 2;
  }
  if (*n == 0) {
    fprintf(stderr, "%s: --prompt: the prompt is empty; generation needs at least one token\n", prog);
    return 2;
  }
  for (int64_t i = 0; i < *n; i++)
    if ((*ids)[i] >= V) {
      fprintf(stderr, "%s: --prompt: token %lld (id %d) is outside the model's vocabulary of %lld\n", prog,
              (long long)i, (int)(*ids)[i], (long long)V);
      return 2;
    }
  return 0;
}

static int generate(RtModel *m, const Opts *o, const char *prog) {
  char err[512];
  RtTokenizer *tk = NULL;
  if (o->tokenizer ? rt_tok_bpe_open(o->tokenizer, &tk, err, sizeof err) != RT_OK : !(tk = rt_tok_bytes())) {
    fprintf(stderr, "%s: %s\n", prog, o->tokenizer ? err : "out of memory");
    return 1;
  }
  int64_t V = rt_model_vocab(m), ctx = rt_model_ctx(m), window = o->window ? o->window : rt_model_window(m);
  int64_t seq = rt_model_trained_seq(m);
  if (window > ctx) {
    fprintf(stderr, "%s: --window %lld is larger than %s's context of %lld positions\n", prog, (long long)window,
            heed_model_name(), (long long)ctx);
    rt_tok_free(tk);
    return 2;
  }
  if (window < ctx && o->window)
    fprintf(stderr, "%s: note: generating with a %lld-token window (--window; the context of %s is %lld)\n", prog,
            (long long)window, heed_model_name(), (long long)ctx);
  else if (window < ctx && window == seq)
    fprintf(stderr, "%s: note: generating with a %lld-token window, the sequence length %s was trained at (its "
            "context is %lld)\n", prog, (long long)window, heed_model_name(), (long long)ctx);
  int rc = 0;
  int32_t *ids = NULL;
  int64_t n = 0;
  Gen g = {.m = m};
  Out out = {.tk = tk, .t0 = now_s()};
  RtGenModel gm = {.vocab = V, .window = window, .ud = &g, .prefill = gen_prefill, .decode = gen_decode,
                   .message = gen_message};
  RtGenRecompute rg = {0};
  RtGenOpts go = {.max_new = o->n, .sample = {o->temperature, o->top_k, o->top_p, o->seed}};
  RtGenStats st;
  bool ready = rt_model_has_step(m) || rt_gen_recompute_init(&rg, &gm, V, window, gen_logits, gen_message, &g) == RT_OK;
  if (!ready) fprintf(stderr, "%s: out of memory\n", prog);
  rc = ready ? encode_prompt(tk, o, V, prog, &ids, &n) : 1;
  if (rc == 0) {
    if (rt_generate(&gm, ids, n, &go, emit, &out, &st, err, sizeof err) != RT_OK) {
      fprintf(stderr, "\n%s: %s\n", prog, err);
      rc = 1;
    } else {
      putchar('\n');
      if (st.cropped)
        fprintf(stderr, "%s: note: the prompt has %lld tokens; its first %lld are left out (the window holds %lld)\n",
                prog, (long long)(n), (long long)st.cropped, (long long)gm.window);
      double dt = now_s() - out.t0;
      fprintf(stderr, "%lld tokens in %.3f s (%.1f tokens/s; first token after %.1f ms; decode %.1f tokens/s), %d "
              "thread%s, %s\n", (long long)st.generated, dt, dt > 0 ? (double)st.generated / dt : 0.0,
              out.first * 1e3, st.decode_s > 0 ? (double)st.decoded / st.decode_s : 0.0, rt_model_threads(m),
              rt_model_threads(m) == 1 ? "" : "s", rt_model_has_step(m) ? "KV cache" : "recomputation");
    }
  }
  fflush(stdout);
  rt_free(ids);
  rt_gen_recompute_free(&rg);
  rt_tok_free(tk);
  return rc;
}

int main(int argc, char **argv) {
  const char *prog = argc > 0 ? argv[0] : "heed-program";
  Opts o = {.prompt = "\n", .n = 64, .temperature = 1.0, .top_p = 1.0, .seed = 1337,
            .threads = 0};  // 0: rt_model_open's choice for the model's size
  int rc = parse(argc, argv, &o);
  if (rc >= 0) return rc;
  // The weights file beside the program (--weights-file) or --weights is
  // mapped and read in place: if it is truncated meanwhile, a message and
  // exit 1 instead of SIGBUS (runtime/file.c).
  rt_sigbus_guard(prog);
  char err[1024];
  HeedModel *m = heed_model_open(o.weights, o.threads, err, sizeof err);  // checks the CPU first
  if (!m) {
    fprintf(stderr, "%s: %s\n", prog, err);
    return 1;
  }
  rc = generate(m, &o, prog);
  heed_model_close(m);
  return rc;
}
