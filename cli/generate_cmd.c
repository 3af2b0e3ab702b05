// cli/generate_cmd.c: `heed generate` (CLI.md): its flags, the prompt
// (tokenized by the runtime), printing the text as it comes and the
// closing report. The generator itself (the compiled decode step or the
// interpreter, the model's window and logits output) is engine/generate.c:
//   --prompt --tokenize--> ids --heed_gen_new/heed_gen_model--> RtGenModel
//     --rt_generate (runtime/generate.c: sampling, the sliding window)--> emit_token -> stdout
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/run.h"
#include "engine/generate.h"
#include "runtime/rt.h"

// ---- the command ----

typedef struct {
  const RtTokenizer *tk;
  int64_t unknown;  // sampled ids the tokenizer has no bytes for
} Out;

static int emit_token(void *ud, int32_t tok) {
  Out *o = ud;
  size_t len;
  const char *s = rt_tok_decode(o->tk, tok, &len);
  if (!s) o->unknown++;
  else fwrite(s, 1, len, stdout);
  fflush(stdout);
  return 0;
}

static int tokenize(Compilation *c, const HeedGenOpts *go, int64_t vocab, RtTokenizer **tk, int32_t **ids, int64_t *n) {
  char err[512];
  if (go->tokenizer) {
    if (rt_tok_bpe_open(go->tokenizer, tk, err, sizeof err) != RT_OK) {
      diag_error(&c->diag, (SrcLoc){0}, "--tokenizer: %s", err);
      return HEED_ERR_IO;
    }
  } else if (!(*tk = rt_tok_bytes())) {
    return HEED_ERR_NOMEM;
  }
  if (rt_tok_encode(*tk, go->prompt, strlen(go->prompt), ids, n, err, sizeof err) != RT_OK) {
    diag_error(&c->diag, (SrcLoc){0}, "--prompt: %s", err);
    return HEED_ERR_USAGE;
  }
  if (*n == 0) {
    diag_error(&c->diag, (SrcLoc){0}, "--prompt: the prompt is empty; generation needs at least one token");
    return HEED_ERR_USAGE;
  }
  for (int64_t i = 0; i < *n; i++)
    if ((*ids)[i] >= vocab) {
      if (go->tokenizer)
        diag_error(&c->diag, (SrcLoc){0}, "--prompt: token %lld (id %d) is outside the model's vocabulary of %lld",
                   (long long)i, (int)(*ids)[i], (long long)vocab);
      else
        diag_error(&c->diag, (SrcLoc){0}, "--prompt: byte 0x%02X at offset %lld is outside the model's vocabulary of "
                   "%lld tokens (a byte-level model needs 256; --tokenizer DIR for a BPE vocabulary)",
                   (unsigned)(*ids)[i], (long long)i, (long long)vocab);
      return HEED_ERR_USAGE;
    }
  return HEED_OK;
}

static void report(const HeedGen *x, const RtGenStats *st, int64_t n, int64_t window,
                   const Out *out) {
  if (st->cropped)
    fprintf(stderr, "heed generate: note: the prompt has %lld tokens; its first %lld are left out (the window "
            "holds %lld)\n", (long long)(n + st->cropped), (long long)st->cropped, (long long)window);
  if (st->shifts)
    fprintf(stderr, "heed generate: the %lld-token window slid %lld time%s (each keeps the last %lld tokens)\n",
            (long long)window, (long long)st->shifts, st->shifts == 1 ? "" : "s", (long long)rt_gen_keep(window));
  if (out->unknown)
    fprintf(stderr, "heed generate: %lld sampled ids have no text in the tokenizer (printed as nothing)\n",
            (long long)out->unknown);
  fprintf(stderr, "heed generate: %s, %s: prompt %lld tokens in %.1f ms; %lld tokens generated, decode %.1f tokens/s\n",
          heed_gen_interp(x) ? "interpreter" : "compiled", heed_gen_incremental(x) ? "KV cache" : "recomputation", (long long)n,
          st->prefill_s * 1e3, (long long)st->generated, st->decode_s > 0 ? (double)st->decoded / st->decode_s : 0.0);
}

int heed_cmd_generate(Compilation *c, const HeedRunOpts *o, const HeedGenOpts *go) {
  int out_index = 0, rc;
  int64_t window = 0, vocab;
  char note[300];
  if (!heed_gen_check_forward(c, c->model->forward)) return HEED_ERR_CHECK;
  if ((rc = heed_logits_output(c, c->model->forward, go->output, "generate", &out_index)) != HEED_OK) return rc;
  if ((rc = heed_gen_window(c, go->window, &window, note, sizeof note)) != HEED_OK) return rc;
  if (note[0]) fprintf(stderr, "heed generate: %s\n", note);
  vocab = c->model->forward->outputs.data[out_index]->ty.dim[2].n;
  RtTokenizer *tk = NULL;
  int32_t *ids = NULL;
  int64_t n = 0;
  rc = tokenize(c, go, vocab, &tk, &ids, &n);
  int64_t kept = window && n > window ? window : n, cap = kept + go->n;  // cap: the positions the caches hold
  if (window && cap > window) cap = window;
  HeedGen *x = NULL;
  if (rc == HEED_OK) {
    const IrGraph *f = c->model->forward;
    HeedGenSetup s = {.params = heed_load_params(c, f, o), .interp = o->interp,
                      .threads = heed_gen_threads(f, o->threads, o->threads_auto), .out = out_index, .vocab = vocab,
                      .window = window, .n_prompt = kept, .cap = cap};
    if (!s.params || !(x = heed_gen_new(c, &s))) rc = HEED_ERR_CHECK;
  }
  if (rc == HEED_OK) {
    RtGenModel m;
    heed_gen_model(x, &m);
    RtGenOpts go2 = {.max_new = go->n,
                     .sample = {.temperature = go->temperature, .top_k = go->top_k, .top_p = go->top_p, .seed = o->seed}};
    RtGenStats st;
    Out out = {.tk = tk};
    char err[512];
    int grc = rt_generate(&m, ids, n, &go2, emit_token, &out, &st, err, sizeof err);
    printf("\n");
    fflush(stdout);
    if (grc != RT_OK) {
      diag_error(&c->diag, (SrcLoc){0}, "generate: %s", err);
      rc = grc == RT_ERR_ARG ? HEED_ERR_USAGE : HEED_ERR_CHECK;
    }
    report(x, &st, kept, window, &out);
  }
  heed_gen_free(x);
  rt_tok_free(tk);
  heed_free(ids);
  return rc;
}

// ---- flags ----

int heed_gen_flag(HeedGenOpts *g, const char *flag, const char *val, char *bad, size_t badlen) {
  double d;
  if (!strcmp(flag, "--prompt") || !strcmp(flag, "--tokenizer") || !strcmp(flag, "--output")) {
    if (!val) return snprintf(bad, badlen, "%s needs a value", flag), -1;
    if (flag[2] == 'p') g->prompt = val;
    else if (flag[2] == 't') g->tokenizer = val;
    else g->output = val;
    return 2;
  }
  if (!strcmp(flag, "--window")) {
    if (!heed_parse_num(val, 1, 1e9, &d) || d != (int64_t)d)
      return snprintf(bad, badlen, "--window takes a positive integer (positions), got '%s'", val ? val : ""), -1;
    g->window = (int64_t)d;
    return 2;
  }
  if (!strcmp(flag, "-n") || !strcmp(flag, "--top-k")) {
    if (!heed_parse_num(val, flag[1] == 'n' ? 1 : 0, 1e9, &d) || d != (int64_t)d)
      return snprintf(bad, badlen, "%s takes a %s integer, got '%s'", flag, flag[1] == 'n' ? "positive" : "non-negative",
                      val ? val : ""), -1;
    if (flag[1] == 'n') g->n = (int64_t)d;
    else g->top_k = (int64_t)d;
    return 2;
  }
  if (!strcmp(flag, "--temperature")) {
    if (!heed_parse_num(val, 0, 1e6, &d)) return snprintf(bad, badlen, "--temperature takes a number >= 0, got '%s'", val ? val : ""), -1;
    g->temperature = d;
    return 2;
  }
  if (!strcmp(flag, "--top-p")) {
    if (!heed_parse_num(val, 0, 1, &d) || d == 0) return snprintf(bad, badlen, "--top-p takes a number in (0, 1], got '%s'", val ? val : ""), -1;
    g->top_p = d;
    return 2;
  }
  return 0;
}
