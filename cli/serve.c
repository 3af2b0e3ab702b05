// cli/serve.c: `heed serve` (CLI.md, docs/serve.md): its flags, its
// signals and its messages. The model runs on generate.c's slots (one
// compiled step graph, a KV cache per slot); the HTTP server, the
// scheduler and the metrics are serve/'s (srv_*).
//
//   flags -> srv_open (listening; /health says loading) -> heed_gen_slots_open
//   (compile, load weights) -> srv_serve until SIGTERM/SIGINT -> exit 0
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/run.h"
#include "serve/serve.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static int slot_prefill(void *ud, int slot, const int32_t *tokens, int64_t n, float *logits) {
  return heed_gen_slots_prefill(ud, slot, tokens, n, logits);
}

static int slot_decode(void *ud, int slot, int32_t token, int64_t pos, float *logits) {
  return heed_gen_slots_decode(ud, slot, token, pos, logits);
}

static const char *model_name(const char *path) {
  const char *b = strrchr(path, '/');
  return b ? b + 1 : path;
}

int heed_cmd_serve(Compilation *c, const HeedRunOpts *o, const HeedServeOpts *so) {
  if (o->interp) {
    diag_error(&c->diag, (SrcLoc){0}, "heed serve runs compiled code only (--interp is not available for serve)");
    return HEED_ERR_USAGE;
  }
  if (!so->api_key && !srv_is_loopback(so->host)) {
    diag_error(&c->diag, (SrcLoc){0}, "--host %s listens beyond this machine: give --api-key KEY (clients send "
               "'Authorization: Bearer KEY')", so->host);
    return HEED_ERR_USAGE;
  }
  int64_t ctx = heed_model_context(c);
  if (so->gen.window && ctx && so->gen.window > ctx) {
    diag_error(&c->diag, (SrcLoc){0}, "--ctx %lld is larger than %s's context of %lld positions",
               (long long)so->gen.window, c->model->decl->name, (long long)ctx);
    return HEED_ERR_USAGE;
  }
  RtTokenizer *tk = NULL;
  char err[512], name[256];
  if (so->gen.tokenizer ? rt_tok_bpe_open(so->gen.tokenizer, &tk, err, sizeof err) != RT_OK : !(tk = rt_tok_bytes())) {
    diag_error(&c->diag, (SrcLoc){0}, "--tokenizer: %s", so->gen.tokenizer ? err : "out of memory");
    return HEED_ERR_IO;
  }
  snprintf(name, sizeof name, "%.*s", (int)strcspn(model_name(c->opts->path), "."), model_name(c->opts->path));
  SrvOpts opts = {.host = so->host, .port = so->port, .api_key = so->api_key, .model_name = name, .queue = so->queue,
                  .timeout_s = so->timeout_s, .grace_s = so->grace_s, .max_body = so->max_body,
                  .max_tokens = so->max_tokens, .seed = o->seed, .tk = tk};
  SrvServer *srv = NULL;
  int rc = HEED_OK;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int orc = srv_open(&opts, &srv, err, sizeof err);
  if (orc != RT_OK) {  // a bad --host is usage; a port in use, a file error
    diag_error(&c->diag, (SrcLoc){0}, "%s", err);
    rt_tok_free(tk);
    return orc == RT_ERR_ARG ? HEED_ERR_USAGE : HEED_ERR_IO;
  }
  fprintf(stderr, "heed serve: listening on http://%s%s%s:%d (loading %s)\n", strchr(so->host, ':') ? "[" : "",
          so->host, strchr(so->host, ':') ? "]" : "", srv_port(srv), name);
  HeedGenSlots *slots = NULL;
  const IrGraph *f = c->model->forward;
  rc = heed_gen_slots_open(c, heed_load_params(c, f, o), heed_gen_threads(f, o->threads, o->threads_auto),
                           so->gen.output, so->gen.window, so->parallel, &slots);
  if (rc == HEED_OK && rt_tok_vocab(tk) > heed_gen_slots_vocab(slots)) {
    diag_error(&c->diag, (SrcLoc){0}, "the tokenizer has %lld ids; the model's vocabulary is %lld",
               (long long)rt_tok_vocab(tk), (long long)heed_gen_slots_vocab(slots));
    rc = HEED_ERR_USAGE;
  }
  if (rc == HEED_OK && !stop_flag) {
    SrvModel m = {.vocab = heed_gen_slots_vocab(slots), .window = heed_gen_slots_window(slots), .nslots = so->parallel,
                  .ud = slots, .prefill = slot_prefill, .decode = slot_decode};
    fprintf(stderr, "heed serve: ready: %d slot%s of %lld positions\n", so->parallel, so->parallel == 1 ? "" : "s",
            (long long)m.window);
    if (srv_serve(srv, &m, &stop_flag, err, sizeof err) != RT_OK) {
      diag_error(&c->diag, (SrcLoc){0}, "%s", err);
      rc = HEED_ERR_NOMEM;
    } else {
      fprintf(stderr, "heed serve: stopped\n");
    }
  }
  srv_close(srv);
  heed_gen_slots_free(slots);
  rt_tok_free(tk);
  return rc;
}

// ---- flags ----

int heed_serve_flag(HeedServeOpts *s, const char *flag, const char *val, char *bad, size_t badlen) {
  static const struct {
    const char *flag;
    double lo, hi;
    bool integer;
  } nums[] = {{"--port", 0, 65535, true},      {"--parallel", 1, 256, true}, {"--queue", 0, 100000, true},
              {"--timeout", 0.001, 1e7, false}, {"--grace", 0, 1e6, false},   {"--max-body", 64, 1 << 30, true},
              {"--max-tokens", 1, 1e9, true},   {"--ctx", 1, 1e9, true}};
  double d;
  if (!strcmp(flag, "--host") || !strcmp(flag, "--api-key")) {
    if (!val || !*val) return snprintf(bad, badlen, "%s needs a value", flag), -1;
    if (flag[2] == 'h') s->host = val;
    else s->api_key = val;
    return 2;
  }
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    if (strcmp(flag, nums[i].flag)) continue;
    if (!heed_parse_num(val, nums[i].lo, nums[i].hi, &d) || (nums[i].integer && d != (int64_t)d))
      return snprintf(bad, badlen, "%s takes %s from %g to %g, got '%s'", flag, nums[i].integer ? "an integer" : "a number",
                      nums[i].lo, nums[i].hi, val ? val : ""), -1;
    switch (i) {
    case 0: s->port = (int)d; break;
    case 1: s->parallel = (int)d; break;
    case 2: s->queue = (int)d; break;
    case 3: s->timeout_s = d; break;
    case 4: s->grace_s = d; break;
    case 5: s->max_body = (size_t)d; break;
    case 6: s->max_tokens = (int64_t)d; break;
    default: s->gen.window = (int64_t)d; break;
    }
    return 2;
  }
  if (!strcmp(flag, "--tokenizer") || !strcmp(flag, "--output")) return heed_gen_flag(&s->gen, flag, val, bad, badlen);
  return 0;
}
