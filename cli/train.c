// cli/train.c: `heed train MODEL.heed --data FILE` (CLI.md). Data flow: the
// lowered model (Compilation) -> a HeedTrainer (engine/trainer.h, the compiled
// train step) fed (tokens, targets) windows from runtime/data.c; out come
// checkpoints (checkpoint.c), metrics.csv and loss.svg (metrics.c) in the
// output directory, progress on stderr and a text sample on stdout.
//
// Determinism: everything a step depends on (parameters, optimizer state,
// the data generator's one-word state, the step number) is in the
// checkpoint, and nothing depends on time or on --threads, so a resumed run
// continues bit-identically. SIGINT/SIGTERM finish the step, save a
// checkpoint and return HEED_OK.
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/comm.h"
#include "cli/train.h"
#include "engine/trainer.h"
#include "runtime/rt.h"

enum { EVAL_BATCHES = 8, DEFAULT_KEEP = 3, DEFAULT_SAMPLE = 200, PATHMAX = 4096, ERRMAX = PATHMAX + 1024 };

// ---- flags ----

static bool parse_count(const char *val, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  if (!val || !*val) return false;
  errno = 0;
  long long n = strtoll(val, &end, 10);
  if (*end || errno == ERANGE || n < lo || n > hi) return false;
  *out = n;
  return true;
}

// The flags of train that are not settings, files or counts: --profile,
// --force, --strict=...; and the flags of other commands, which
// train refuses rather than ignore.
static int other_flag(HeedTrainOpts *o, const char *flag, char *err, size_t errlen) {
  if (!strcmp(flag, "--profile") || !strcmp(flag, "--force")) {
    *(flag[2] == 'p' ? &o->profile : &o->force) = true;
    return 1;
  }
  if (!strncmp(flag, "--strict=", 9)) {
    o->strict_given = true;
    o->lax = !strcmp(flag + 9, "false");
    if (o->lax || !strcmp(flag + 9, "true")) return 1;
    snprintf(err, errlen, "--strict takes true or false, not '%s'", flag + 9);
    return -1;
  }
  if (!strcmp(flag, "--weights")) {
    snprintf(err, errlen, "--weights is not a train flag: --init W starts a new run from the weights W (a "
             "checkpoint or any safetensors; fresh optimizer state, from step 1), --resume DIR|FILE continues a run");
    return -1;
  }
  if (!strcmp(flag, "-o") || !strcmp(flag, "--inputs") || !strcmp(flag, "--outputs") || !strcmp(flag, "--emit")) {
    snprintf(err, errlen, "%s is not a train flag%s", flag,
             flag[1] == 'o' ? ": --out DIR names the output directory" : "");
    return -1;
  }
  return 0;
}

int heed_train_flag(HeedTrainOpts *o, const char *flag, const char *val, const char **set_key, char *err,
                    size_t errlen) {
  static const char *const sets[][2] = {{"--steps", "steps"}, {"--batch", "batch"}, {"--seq", "seq"},
                                         {"--eval-every", "eval_every"}, {"--seed", "seed"}};
  *set_key = NULL;
  for (int i = 0; i < 5; i++) {
    if (strcmp(flag, sets[i][0])) continue;
    int64_t n;
    if (!parse_count(val, i >= 3 ? 0 : 1, i == 4 ? INT64_MAX : 1ll << 40, &n)) {
      if (i == 4)  // the train setting seed is an int64 (checkpoints record it so)
        snprintf(err, errlen, "--seed takes an integer from 0 to %lld, got '%s'", (long long)INT64_MAX, val ? val : "");
      else
        snprintf(err, errlen, "%s takes a %s integer, got '%s'", flag, i >= 3 ? "non-negative" : "positive",
                 val ? val : "");
      return -1;
    }
    *set_key = sets[i][1];
    return 2;
  }
  int used = other_flag(o, flag, err, errlen);
  if (used) return used;
  const char **str = !strcmp(flag, "--data") ? &o->data : !strcmp(flag, "--val") ? &o->val
                   : !strcmp(flag, "--out") ? &o->out : !strcmp(flag, "--resume") ? &o->resume
                   : !strcmp(flag, "--init") ? &o->init : !strcmp(flag, "--prefix") ? &o->prefix
                   : !strcmp(flag, "--freeze") && o->nfreeze < HEED_TRAIN_MAX_FREEZE ? &o->freeze[o->nfreeze]
                   : NULL;
  if (str || !strcmp(flag, "--freeze")) {
    if (!val || !*val) {
      snprintf(err, errlen, "%s needs a value", flag);
      return -1;
    }
    if (!str) {
      snprintf(err, errlen, "at most %d --freeze patterns", HEED_TRAIN_MAX_FREEZE);
      return -1;
    }
    *str = val;
    o->nfreeze += str == &o->freeze[o->nfreeze];
    return 2;
  }
  if (!strcmp(flag, "--grad-accum")) {
    int64_t k;
    if (!parse_count(val, 1, 1 << 20, &k)) {
      snprintf(err, errlen, "--grad-accum takes a positive integer (micro-batches per step), got '%s'", val ? val : "");
      return -1;
    }
    o->grad_accum = (int)k;
    return 2;
  }
  int64_t *num = !strcmp(flag, "--checkpoint-every") ? &o->checkpoint_every : !strcmp(flag, "--sample") ? &o->sample
                 : NULL;
  int64_t keep;
  if (num || !strcmp(flag, "--keep")) {
    bool ok = parse_count(val, num == &o->sample ? 0 : 1, 1ll << 40, num ? num : &keep);
    if (ok && !num) o->keep = (int)(keep > 1000000 ? 1000000 : keep);
    if (ok && num == &o->sample && o->sample > HEED_TRAIN_MAX_SAMPLE) {  // a token is a forward over the window
      snprintf(err, errlen, "--sample takes at most %d tokens, got '%s'", HEED_TRAIN_MAX_SAMPLE, val);
      return -1;
    }
    if (!ok) {
      snprintf(err, errlen, "%s takes a %s integer, got '%s'", flag, num == &o->sample ? "non-negative" : "positive",
               val ? val : "");
      return -1;
    }
    return 2;
  }
  return 0;
}

// ---- the run ----

typedef struct {
  Compilation *c;
  const HeedTrainOpts *o;
  const FeTrain *tr;
  HeedTrainer *t;
  RtTokens data, vdata;
  RtSplit train, val;
  int64_t B, T, steps, vocab, ckpt_every, eval_every;
  int keep;
  uint64_t rng;
  int32_t *x, *y;                  // (B,T) each
  int ix, iy;                      // which trainer input gets x, y
  char out[PATHMAX - 64], csv[PATHMAX], svg[PATHMAX], last_ckpt[PATHMAX];
  char resume[PATHMAX - 64];       // the checkpoint --resume names (a directory's newest)
  bool clear_out;                  // --force over an earlier run: remove its files before the first step
  HeedCkptMeta meta;               // this run's settings, fingerprint and run id
  FILE *metrics;
  int lock;                        // the run directory's lock (heed_rundir_lock), or -1
  bool tty;
  double t_start, t_last, ema_step_s;
  RtComm *comm;                    // mpirun -np N (N > 1): the job; NULL: one process
  int rank;                        // comm's rank: only rank 0 writes files and prints progress
} Run;

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fail(Run *r, const char *msg) {
  diag_error(&r->c->diag, (SrcLoc){0}, "%s", msg);
  return HEED_ERR_IO;
}

// mkdir -p: every missing directory of path.
static bool make_dirs(const char *path, char *err, size_t errlen) {
  char buf[PATHMAX - 64];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p) continue;
    char save = *p;
    *p = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create the output directory '%s': %s", buf, strerror(errno));
      return false;
    }
    *p = save;
    if (!save) break;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "'%s' is not a directory", path);
    return false;
  }
  return true;
}

// The model's vocabulary: the last dim of its (first) output, if constant.
static int64_t model_vocab(const FeModel *m) {
  if (m->noutputs < 1 || m->outputs[0].rank < 1) return 0;
  const IrDim *d = &m->outputs[0].dim[m->outputs[0].rank - 1];
  return d->nsym ? 0 : d->n;
}

// Opens the data (and --val) files and splits them; checks every split
// holds a window.
static int open_data(Run *r) {
  char err[ERRMAX];
  if (rt_tokens_open(r->o->data, r->vocab, &r->data, err, sizeof err) != RT_OK) return fail(r, err);
  if (r->o->val) {
    if (rt_tokens_open(r->o->val, r->vocab, &r->vdata, err, sizeof err) != RT_OK) return fail(r, err);
    r->train = rt_split_all(&r->data);
    r->val = rt_split_all(&r->vdata);
  } else {
    rt_split(&r->data, 0.9, &r->train, &r->val);
  }
  if (rt_window_check(&r->train, r->T, r->o->val ? "training" : "training (first 90%)", err, sizeof err) != RT_OK)
    return fail(r, err);
  if (rt_window_check(&r->val, r->T, r->o->val ? "validation" : "validation (last 10%)", err, sizeof err) != RT_OK) {
    if (!r->o->val) snprintf(err + strlen(err), sizeof err - strlen(err), "; give a longer file or --val FILE");
    return fail(r, err);
  }
  return HEED_OK;
}

// The settings a resumed run must share with the checkpoint's, one line.
static void settings_line(const Run *r, char *buf, size_t n) {
  const FeTrain *t = r->tr;
  snprintf(buf, n,
           "batch=%lld seq=%lld seed=%lld optimizer=%s lr=%.17g beta1=%.17g beta2=%.17g eps=%.17g "
           "weight_decay=%.17g momentum=%.17g schedule=%s warmup=%.17g min_lr=%.17g clip=%.17g "
           "data=%016llx:%lld val=%s%016llx:%lld:%lld",
           (long long)r->B, (long long)r->T, (long long)t->seed, t->optimizer, t->lr, t->beta1, t->beta2, t->eps,
           t->weight_decay, t->momentum, t->schedule, t->warmup, t->min_lr, t->clip,
           (unsigned long long)r->data.hash, (long long)r->data.n, r->o->val ? "file:" : "split:",
           (unsigned long long)r->val.src->hash, (long long)r->val.begin, (long long)r->val.end);
  for (int i = 0; i < r->o->nfreeze; i++) {  // only when given: older checkpoints' lines end at val=
    size_t k = strlen(buf);
    snprintf(buf + k, n - k, "%s%s", i ? "," : " freeze=", r->o->freeze[i]);
  }
}

// Binds the trainer's inputs by name: tokens and targets.
static int bind_inputs(Run *r) {
  int n = heed_trainer_ninputs(r->t);
  r->ix = r->iy = -1;
  for (int i = 0; i < n; i++) {
    const char *nm = heed_trainer_input_name(r->t, i);
    if (!strcmp(nm, "tokens")) r->ix = i;
    else if (!strcmp(nm, "targets")) r->iy = i;
    else {
      char msg[512];
      snprintf(msg, sizeof msg, "the loss takes an input '%s'; heed train feeds only 'tokens' and 'targets' "
               "(windows of the data and the same shifted by one)", nm);
      return fail(r, msg);
    }
  }
  if (r->ix < 0 || r->iy < 0 || n != 2)
    return fail(r, "heed train needs a loss of two inputs, loss(tokens: i32[B, T], targets: i32[B, T])");
  return HEED_OK;
}

// Starts from the checkpoint (--resume) or from the model's initialisers.
// *start gets the steps already done.
static int start_state(Run *r, int64_t *start) {
  char err[ERRMAX], path[PATHMAX - 64];
  *start = 0;
  r->rng = (uint64_t)r->tr->seed ^ 0x5DEECE66Dull;  // the data order's stream (init has its own)
  if (!r->o->resume) {
    heed_ckpt_new_run_id(r->meta.run_id);
    if (!heed_trainer_init(r->t, (uint64_t)r->tr->seed)) return HEED_ERR_CHECK;
    if (r->o->init && !heed_ckpt_init_from(r->t, r->o->init, r->o->prefix, !r->o->lax, err, sizeof err))
      return fail(r, err);
    if (r->o->init)
      fprintf(stderr, "heed train: starting from the weights in %s (fresh optimizer state, step 1)\n", r->o->init);
    return HEED_OK;
  }
  snprintf(path, sizeof path, "%s", r->resume);
  HeedCkptMeta m;
  if (!heed_ckpt_load(r->t, path, &r->meta, &m, err, sizeof err)) return fail(r, err);
  if (m.step > r->steps) {
    snprintf(err, sizeof err, "%s: the checkpoint is at step %lld, past this run's %lld steps (--steps N)", path,
             (long long)m.step, (long long)r->steps);
    return fail(r, err);
  }
  if (m.steps != r->steps)
    fprintf(stderr, "heed train: note: the checkpoint's run had %lld steps, this one has %lld (the schedule follows)\n",
            (long long)m.steps, (long long)r->steps);
  r->rng = m.rng;
  *start = m.step;
  if (m.run_id[0]) snprintf(r->meta.run_id, sizeof r->meta.run_id, "%s", m.run_id);
  else heed_ckpt_new_run_id(r->meta.run_id);  // a checkpoint from before run ids
  snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
  fprintf(stderr, "heed train: resuming from %s at step %lld\n", path, (long long)m.step);
  return HEED_OK;
}

static const int32_t *const *inputs(Run *r, const int32_t *v[2]) {
  v[r->ix] = r->x;
  v[r->iy] = r->y;
  return v;
}

// The mean loss over the fixed validation windows.
static bool evaluate(Run *r, double *val_loss) {
  int64_t nw = EVAL_BATCHES * r->B;
  double sum = 0;
  for (int b = 0; b < EVAL_BATCHES; b++) {
    rt_batch_fixed(&r->val, b * r->B, nw, r->B, r->T, r->x, r->y);
    const int32_t *v[2];
    double l;
    if (!heed_trainer_eval(r->t, inputs(r, v), &l)) return false;
    sum += l;
  }
  *val_loss = sum / EVAL_BATCHES;
  return true;
}

static bool save(Run *r, int64_t step) {
  char err[ERRMAX];
  if (r->rank) return true;  // data-parallel: rank 0 writes (every rank holds the same values)
  r->meta.step = step;
  r->meta.rng = r->rng;
  if (r->metrics) fflush(r->metrics);
  if (!heed_ckpt_save(r->t, r->out, &r->meta, r->keep, r->last_ckpt, sizeof r->last_ckpt, err, sizeof err)) {
    if (r->tty) fputc('\n', stderr);
    fail(r, err);
    return false;
  }
  if (!heed_metrics_plot(r->csv, r->svg, r->c->model->decl->name, err, sizeof err))
    fprintf(stderr, "heed train: warning: %s\n", err);  // the plot is a convenience; training goes on
  return true;
}

static void fmt_time(double s, char *buf, size_t n) {
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

// The progress line: live (\r, at most 10 times a second) on a terminal,
// else every ~5% of the run; always at an evaluation and the last step.
static void progress(Run *r, int64_t step, double loss, double lr, double tok_s, double val_loss) {
  char eta[32];
  if (r->rank) return;
  fmt_time(r->ema_step_s * (double)(r->steps - step), eta, sizeof eta);
  bool eval = !isnan(val_loss);
  int64_t every = r->steps / 20 > 0 ? r->steps / 20 : 1;
  if (!r->tty && !eval && step % every && step != r->steps) return;
  if (r->tty && !eval && step != r->steps && now_s() - r->t_last < 0.1) return;  // redraw 10 times a second
  r->t_last = now_s();
  fprintf(stderr, "%sstep %lld/%lld  loss %.4f  lr %.3g  %.0f tok/s  ETA %s", r->tty ? "\r\033[K" : "",
          (long long)step, (long long)r->steps, loss, lr, tok_s, eta);
  if (eval) fprintf(stderr, "  val_loss %.4f", val_loss);
  if (!r->tty || eval) fputc('\n', stderr);
  fflush(stderr);
}

// One training step (number step + 1): batch, update, log; false on error.
static bool train_step(Run *r, int64_t step, double *loss) {
  rt_batch_random(&r->train, &r->rng, r->B, r->T, r->x, r->y);
  double lr = heed_train_lr(r->tr, step + 1, r->steps), gnorm = 0, val_loss = NAN;
  const int32_t *v[2];
  double t0 = now_s();
  if (!heed_trainer_step(r->t, inputs(r, v), lr, step + 1, loss, &gnorm)) return false;
  if (!isfinite(*loss)) {
    char msg[256];
    snprintf(msg, sizeof msg, "step %lld: the loss is %g; the last good checkpoint stays", (long long)step + 1,
             *loss);
    fail(r, msg);
    return false;
  }
  double dt = now_s() - t0, tok_s = (double)(r->B * r->T) / (dt > 0 ? dt : 1e-9);
  r->ema_step_s = r->ema_step_s > 0 ? 0.9 * r->ema_step_s + 0.1 * dt : dt;
  int64_t done = step + 1;
  if ((r->eval_every > 0 && done % r->eval_every == 0) || done == r->steps)
    if (!evaluate(r, &val_loss)) return false;
  progress(r, done, *loss, lr, tok_s, val_loss);
  if (!r->metrics) return true;  // a rank other than 0
  fprintf(r->metrics, "%lld,%.9g,", (long long)done, *loss);
  if (!isnan(val_loss)) fprintf(r->metrics, "%.9g", val_loss);
  fprintf(r->metrics, ",%.9g,%.6g,%.1f,%.3f\n", lr, gnorm, tok_s, now_s() - r->t_start);
  return true;
}

// The length of the valid UTF-8 sequence at p[0..n), or 0.
static int utf8_len(const int32_t *p, int64_t n) {
  int32_t c = p[0];
  int len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (len == 0 || len > n) return 0;
  int32_t lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
  for (int i = 1; i < len; i++, lo = 0x80, hi = 0xBF)
    if (p[i] < lo || p[i] > hi) return 0;
  return len;
}

// Prints tokens: bytes as text (invalid UTF-8 and control bytes as U+FFFD),
// other vocabularies as numbers.
static void print_tokens(const int32_t *seq, int64_t n, bool bytes) {
  for (int64_t i = 0; i < n;) {
    int len = bytes ? utf8_len(seq + i, n - i) : 0;
    if (!bytes) printf("%s%d", i ? " " : "", seq[i]);
    else if (len == 0 || (seq[i] < 32 && seq[i] != '\n' && seq[i] != '\t')) fputs("\xEF\xBF\xBD", stdout);
    else
      for (int k = 0; k < len; k++) putchar(seq[i + k]);
    i += len ? len : 1;
  }
  printf("\n");
}

// The model for the sample: the trainer's forward over the whole window.
static int sample_logits(void *ud, const int32_t *tokens, int64_t n, const float **rows) {
  return !heed_trainer_logits(((Run *)ud)->t, tokens, n, rows);
}

typedef struct {
  int32_t *tok;
  int64_t n;
} Sampled;

static int sample_emit(void *ud, int32_t tok) {
  Sampled *s = ud;
  s->tok[s->n++] = tok;
  return 0;
}

// Prints n tokens sampled from the model after a prompt from the validation
// data: temperature 0.8, seeded with the train seed, through heed
// generate's loop and sampler (runtime/generate.c) with its window (the
// trained seq; past it the last half is kept): `heed generate` on the final
// checkpoint with that prompt, --temperature 0.8 and --seed SEED samples
// alike (it decodes with a KV cache; this recomputes the window).
static bool sample(Run *r, int64_t n) {
  int64_t plen = r->T / 4 < 32 ? r->T / 4 : 32, V = r->vocab > 0 ? r->vocab : 256;
  if (plen < 1) plen = 1;
  int32_t *seq = heed_malloc(sizeof *seq * (size_t)(plen + n));
  if (!seq) {
    char b[32];
    diag_error(&r->c->diag, (SrcLoc){0}, "cannot allocate %s for a sample of %lld tokens (--sample)",
               diag_bytes(b, sizeof *seq * (uint64_t)(plen + n)), (long long)n);
    return false;
  }
  for (int64_t i = 0; i < plen; i++) seq[i] = rt_tokens_get(r->val.src, r->val.begin + i);
  RtGenModel m;
  RtGenRecompute rg;
  RtGenOpts go = {.max_new = n, .sample = {.temperature = 0.8, .top_p = 1, .seed = (uint64_t)r->tr->seed}};
  Sampled out = {.tok = seq + plen};
  char err[ERRMAX] = "";
  bool ok = rt_gen_recompute_init(&rg, &m, V, r->T, sample_logits, NULL, r) == RT_OK &&
            rt_generate(&m, seq, plen, &go, sample_emit, &out, NULL, err, sizeof err) == RT_OK;
  if (!ok && !r->c->diag.nerr && !err[0])  // rt_gen_recompute_init's one buffer
    snprintf(err, sizeof err, "cannot allocate %lld bytes for the sample's window of %lld tokens",
             (long long)(sizeof(int32_t) * (uint64_t)r->T), (long long)r->T);
  if (!ok && !r->c->diag.nerr) fail(r, err);
  if (ok) {
    printf("sample (%lld tokens after a prompt of %lld from the validation data):\n", (long long)n, (long long)plen);
    print_tokens(seq, plen + out.n, r->vocab > 0 && r->vocab <= 256);
  }
  rt_gen_recompute_free(&rg);
  heed_free(seq);
  return ok;
}

// Why the model cannot be sampled (NULL if it can): the sample and the
// generate command need a forward(tokens: i32[B, T]) returning f32 logits
// [B, T, V], T free (heed_trainer_logits, heed generate).
static const char *no_sample(const Run *r) {
  const IrGraph *f = r->c->model->forward;
  const IrNode *in = f->inputs.len == 1 ? f->inputs.data[0] : NULL;
  const IrNode *out = f->outputs.len == 1 ? f->outputs.data[0] : NULL;
  if (!in || in->ty.rank != 2 || !ir_dtype_info[in->ty.dt].is_int || !in->ty.dim[1].nsym || !out ||
      out->ty.rank != 3 || out->ty.dt != IR_F32 || r->vocab <= 0)
    return "its forward is not forward(tokens: i32[B, T]) -> f32[B, T, V] with T free";
  return NULL;
}

// Appends s to buf (n bytes, NUL-terminated) after a space, quoted for a
// POSIX shell where it needs quoting; truncates at n.
static void shell_arg(char *buf, size_t n, const char *s) {
  size_t k = strlen(buf);
  bool plain = *s != 0;
  for (const char *p = s; *p && plain; p++) plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                           "0123456789_-./=:,+@%", *p) != NULL;
  char piece[8];
  for (const char *p = k ? " " : ""; *p && k + 1 < n; p++) buf[k++] = *p;
  if (!plain && k + 1 < n) buf[k++] = '\'';
  for (const char *p = s; *p; p++) {
    snprintf(piece, sizeof piece, "%s", !plain && *p == '\'' ? "'\\''" : (char[2]){*p, 0});
    for (const char *q = piece; *q && k + 1 < n; q++) buf[k++] = *q;
  }
  if (!plain && k + 1 < n) buf[k++] = '\'';
  buf[k < n ? k : n - 1] = 0;
}

// The command that generates from the final checkpoint: this heed, the
// model file, --model, and the --set flags that are config values (they
// change the model's shape; train settings do not matter to generate).
static void generate_command(const Run *r, char *buf, size_t n) {
  static const char *const train_keys[] = {"optimizer", "schedule", "clip", "batch", "seq", "steps", "eval_every",
                                           "seed", "lr", "weight_decay", "momentum", "warmup", "min_lr", "beta1",
                                           "beta2", "eps"};
  const HeedOptions *ho = r->c->opts;
  buf[0] = 0;
  shell_arg(buf, n, r->o->prog ? r->o->prog : "heed");
  shell_arg(buf, n, "generate");
  shell_arg(buf, n, ho->path);
  if (ho->check.model_name) shell_arg(buf, n, "--model"), shell_arg(buf, n, ho->check.model_name);
  for (int i = 0; i < ho->check.noverrides; i++) {
    const FeOverride *ov = &ho->check.overrides[i];
    bool train_key = false;
    for (size_t k = 0; k < sizeof train_keys / sizeof *train_keys; k++) train_key |= !strcmp(ov->key, train_keys[k]);
    char kv[1024];
    snprintf(kv, sizeof kv, "%s=%s", ov->key, ov->value);
    if (!train_key) shell_arg(buf, n, "--set"), shell_arg(buf, n, kv);
  }
  shell_arg(buf, n, "--weights");
  shell_arg(buf, n, r->last_ckpt);
  shell_arg(buf, n, "--prompt");
  shell_arg(buf, n, "The ");
}

// After the last step: the sample (or why none), the files, how to generate.
static int finish(Run *r) {
  if (r->rank) return HEED_OK;
  int64_t n = r->o->sample >= 0 ? r->o->sample : DEFAULT_SAMPLE;
  const char *why = no_sample(r);
  if (n > 0 && why)
    fprintf(stderr, "heed train: note: no sample of text: %s (--sample 0 skips it)\n", why);
  else if (n > 0 && !sample(r, n))
    return HEED_ERR_CHECK;
  printf("checkpoint: %s\nmetrics:    %s\nloss plot:  %s\n", r->last_ckpt[0] ? r->last_ckpt : "(none)", r->csv,
         r->svg);
  if (!why && r->last_ckpt[0] && r->vocab >= 256) {  // heed generate's prompts are bytes or GPT-2 BPE tokens
    char cmd[3 * PATHMAX];
    generate_command(r, cmd, sizeof cmd);
    printf("generate:   %s\n", cmd);
    if (r->vocab > 256) printf("            (add --tokenizer DIR if the data was GPT-2 BPE tokens)\n");
  }
  return HEED_OK;
}

// The --resume checkpoint (a directory: its newest) into r->resume.
static int resume_path(Run *r) {
  char err[ERRMAX];
  struct stat st;
  snprintf(r->resume, sizeof r->resume, "%s", r->o->resume);
  if (stat(r->resume, &st) == 0 && S_ISDIR(st.st_mode) && !heed_ckpt_latest(r->o->resume, r->resume, sizeof r->resume)) {
    snprintf(err, sizeof err, "--resume %s: no checkpoint (ckpt-*.safetensors) in the directory", r->o->resume);
    return fail(r, err);
  }
  return HEED_OK;
}

// The output directory: --out, else the --resume checkpoint's directory,
// else runs/MODEL, or the first runs/MODEL-N that holds no run. One run per
// directory: a new run into a directory holding a run is an error (--force:
// start over there), and a resumed run refuses a directory holding
// checkpoints of another run id.
static int choose_out(Run *r) {
  char err[4 * PATHMAX], id[32], other[PATHMAX], oid[32];
  const char *o = r->o->out;
  const char *flag = o && strlen(o) >= sizeof r->out ? "--out" : r->o->resume && strlen(r->o->resume) >= sizeof r->out
                     ? "--resume" : NULL;
  if (flag) {  // the run's files go under it: never a truncated (other) path
    snprintf(err, sizeof err, "%s: the path is %zu characters, longer than the limit of %zu", flag,
             strlen(flag[2] == 'o' ? o : r->o->resume), sizeof r->out - 1);
    return fail(r, err);
  }
  if (r->o->resume) {
    int rc = resume_path(r);
    if (rc != HEED_OK) return rc;
    if (!heed_ckpt_read_run_id(r->resume, id, err, sizeof err)) return fail(r, err);
    snprintf(r->out, sizeof r->out, "%s", o ? o : r->resume);
    char *slash = strrchr(r->out, '/');
    if (!o && slash) *slash = 0;
    else if (!o) snprintf(r->out, sizeof r->out, ".");
    if (heed_rundir_foreign(r->out, id, other, sizeof other, oid, sizeof oid)) {
      snprintf(err, sizeof err, "%s holds checkpoints of another run (%s: run %s; %s is of run %s): resume into an "
               "empty directory or one of this run (--out DIR)", r->out, other, oid, r->resume, id[0] ? id : "?");
      return fail(r, err);
    }
    return HEED_OK;
  }
  const char *model = r->c->model->decl->name;
  if (o) snprintf(r->out, sizeof r->out, "%s", o);
  else snprintf(r->out, sizeof r->out, "runs/%s", model);
  if (!heed_rundir_used(r->out)) return HEED_OK;
  if (r->o->force) {
    r->clear_out = true;  // said and done under the directory's lock (prepare_out)
    return HEED_OK;
  }
  if (o) {
    snprintf(err, sizeof err, "%s holds another run (checkpoints, metrics.csv, loss.svg): --resume %s continues it, "
             "--force starts over there (removing that run's files), or choose another --out", r->out, r->out);
    return fail(r, err);
  }
  for (int k = 2; heed_rundir_used(r->out); k++) snprintf(r->out, sizeof r->out, "runs/%s-%d", model, k);
  fprintf(stderr, "heed train: runs/%s holds an earlier run; this one goes to %s (--out DIR chooses, --resume "
          "runs/%s continues the earlier one)\n", model, r->out, model);
  return HEED_OK;
}

// Creates the output directory (after --force, without the old run's
// files) and opens the metrics log.
static int prepare_out(Run *r, int64_t start) {
  char err[ERRMAX];
  if (r->rank) return HEED_OK;  // data-parallel: rank 0's directory
  if (!make_dirs(r->out, err, sizeof err)) return fail(r, err);
  if ((r->lock = heed_rundir_lock(r->out, err, sizeof err)) < 0) return fail(r, err);
  int stale = heed_rundir_clean_temps(r->out);  // ours: no other run writes here while we hold the lock
  if (stale) fprintf(stderr, "heed train: removed %d temporary file%s of a killed run from %s\n", stale,
                     stale == 1 ? "" : "s", r->out);
  if (!r->o->resume && !r->clear_out && heed_rundir_used(r->out)) {  // a run that started after we looked
    snprintf(err, sizeof err, "%s holds another run, started since this one chose it: choose another --out", r->out);
    return fail(r, err);
  }
  if (r->clear_out)
    fprintf(stderr, "heed train: --force: starting over in %s (its checkpoints, metrics.csv and loss.svg go)\n",
            r->out);
  if (r->clear_out && !heed_rundir_clear(r->out, err, sizeof err)) return fail(r, err);
  snprintf(r->csv, sizeof r->csv, "%s/metrics.csv", r->out);
  snprintf(r->svg, sizeof r->svg, "%s/loss.svg", r->out);
  if (!(r->metrics = heed_metrics_open(r->csv, r->o->resume ? start : -1, err, sizeof err))) return fail(r, err);
  return HEED_OK;
}

// The token buffers of a step, B * T each. batch and seq come from the
// user (--batch, --set seq=...): every product is checked, and an error
// names the settings instead of overflowing.
static int alloc_batch(Run *r) {
  char msg[256];
  int64_t bt, bytes, nw;
  if (__builtin_mul_overflow(r->B, r->T, &bt) || __builtin_mul_overflow(bt, (int64_t)sizeof(int32_t), &bytes) ||
      __builtin_mul_overflow(r->B, (int64_t)EVAL_BATCHES, &nw) || (uint64_t)bytes > SIZE_MAX) {
    snprintf(msg, sizeof msg, "batch=%lld with seq=%lld is too large: batch * seq tokens per step overflows",
             (long long)r->B, (long long)r->T);
    return fail(r, msg);
  }
  r->x = heed_malloc((size_t)bytes);
  r->y = heed_malloc((size_t)bytes);
  if (!r->x || !r->y) {
    snprintf(msg, sizeof msg, "out of memory for a batch of batch=%lld x seq=%lld tokens (%lld bytes twice)",
             (long long)r->B, (long long)r->T, (long long)bytes);
    return fail(r, msg);
  }
  return HEED_OK;
}

// ---- data-parallel ----

// FNV-1a over n bytes, continuing h.
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
  return h;
}

// Every rank must run the same job: the model file's bytes, the settings
// (data, seed, batch, optimizer...), the parameters' layout, the steps and
// the starting point. Rank 0's digest against each rank's: a mismatch is an
// error on every rank (the ranks that differ say so), before any step.
static int check_ranks(Run *r, int64_t start) {
  uint64_t h = 0xcbf29ce484222325ull;
  FILE *f = fopen(r->c->opts->path, "rb");
  char buf[4096], err[ERRMAX];
  size_t n;
  while (f && (n = fread(buf, 1, sizeof buf, f)) > 0) h = fnv(h, buf, n);
  if (f) fclose(f);
  h = fnv(h, r->meta.settings, strlen(r->meta.settings));
  h = fnv(h, r->meta.fingerprint, sizeof r->meta.fingerprint);
  int64_t v[3] = {r->steps, start, r->o->grad_accum};
  h = fnv(h, v, sizeof v);
  double mine = (double)(h >> 12), *all = heed_malloc(sizeof(double) * (size_t)r->comm->size);  // 52 bits: exact
  if (!all || !r->comm->allgather(r->comm, &mine, 1, all, err, sizeof err)) {
    heed_free(all);
    return fail(r, all ? err : "out of memory");
  }
  int bad = 0;
  for (int k = 1; k < r->comm->size; k++) bad += all[k] != all[0];
  bool me = all[r->rank] != all[0];
  heed_free(all);
  if (!bad) return HEED_OK;
  if (me || r->rank == 0) {
    snprintf(err, sizeof err, "data-parallel: %s (%d of %d ranks differ from rank 0 in the model file, the data, the "
             "settings, --grad-accum, the steps or the checkpoint they start from): every rank must run the same "
             "command", me ? "this rank's job differs from rank 0's" : "the ranks' jobs differ", bad, r->comm->size);
    return fail(r, err);
  }
  return HEED_ERR_CHECK;  // rank 0 said it
}

// Stop together: a signal any rank got (mpirun forwards SIGINT/SIGTERM to
// every rank, not at the same step) stops all after the same step.
static bool any_stop(Run *r) {
  if (!r->comm) return stop_signal != 0;
  char err[256];
  double mine = stop_signal, *all = heed_malloc(sizeof(double) * (size_t)r->comm->size);
  bool stop = !all || !r->comm->allgather(r->comm, &mine, 1, all, err, sizeof err);
  for (int k = 0; !stop && k < r->comm->size; k++)
    if (all[k] != 0) stop = true, stop_signal = stop_signal ? stop_signal : (sig_atomic_t)all[k];
  heed_free(all);
  return stop;
}

// Sizes, data, trainer, state: everything before the first step.
static int setup(Run *r, int64_t *start) {
  const FeTrain *tr = r->tr;
  r->B = tr->batch, r->T = tr->seq, r->steps = tr->steps;
  r->eval_every = tr->eval_every;
  r->ckpt_every = r->o->checkpoint_every ? r->o->checkpoint_every
                  : r->eval_every ? r->eval_every : (r->steps / 10 > 0 ? r->steps / 10 : 1);
  r->keep = r->o->keep ? r->o->keep : DEFAULT_KEEP;
  r->vocab = model_vocab(r->c->model);
  r->tty = isatty(2);
  int rc = choose_out(r);
  if (rc == HEED_OK) rc = open_data(r);
  if (rc != HEED_OK) return rc;
  if ((rc = alloc_batch(r)) != HEED_OK) return rc;
  HeedTrainerOpts to = {.interp = r->o->interp, .threads = r->o->threads, .batch = r->B, .seq = r->T,
                        .profile = r->o->profile, .freeze = r->o->freeze, .nfreeze = r->o->nfreeze,
                        .grad_accum = r->o->grad_accum, .comm = r->comm};
  if (!(r->t = heed_trainer_new(r->c, &to))) return HEED_ERR_CHECK;
  if ((rc = bind_inputs(r)) != HEED_OK) return rc;
  settings_line(r, r->meta.settings, sizeof r->meta.settings);
  heed_ckpt_fingerprint(r->t, r->c->model->decl->name, r->meta.fingerprint);
  r->meta.steps = r->steps;
  if ((rc = start_state(r, start)) != HEED_OK) return rc;
  if (r->comm && (rc = check_ranks(r, *start)) != HEED_OK) return rc;
  return prepare_out(r, *start);
}

// The steps from start to the end or a signal; HEED_OK or an error.
static int loop(Run *r, int64_t start, int64_t *done) {
  struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C stops at once
  stop_signal = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  int rc = HEED_OK;
  *done = start;
  for (int64_t s = start; s < r->steps && !any_stop(r); s++) {
    double loss;
    if (!train_step(r, s, &loss)) {
      if (r->tty) fputc('\n', stderr);
      rc = HEED_ERR_CHECK;
      break;
    }
    *done = s + 1;
    if ((*done % r->ckpt_every == 0 || *done == r->steps) && !save(r, *done)) {
      rc = HEED_ERR_IO;
      break;
    }
  }
  if (rc == HEED_OK && stop_signal && *done % r->ckpt_every && *done != r->steps) {  // not saved yet
    if (r->tty) fputc('\n', stderr);
    if (!save(r, *done)) rc = HEED_ERR_IO;
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  return rc;
}

// Flags that only mean something together; HEED_ERR_USAGE with a message.
static int check_opts(Compilation *c, const HeedTrainOpts *o) {
  const char *msg = o->init && o->resume ? "--init starts a new run from weights, --resume continues a run: "
                                            "give one of them"
                  : o->force && o->resume ? "--force starts a new run over an old one; --resume continues a run "
                                            "(into its own directory, or an empty --out)"
                  : (o->prefix || o->strict_given) && !o->init ? "--prefix and --strict apply to the weights of "
                                                                 "--init W"
                  : NULL;
  if (msg) {
    diag_error(&c->diag, (SrcLoc){0}, "heed train: %s", msg);
    return HEED_ERR_USAGE;
  }
  if (!c->model->train) {
    diag_error(&c->diag, (SrcLoc){0}, "model '%s' has no train section: heed train needs one (LANGUAGE.md)",
               c->model->decl->name);
    return HEED_ERR_CHECK;
  }
  return HEED_OK;
}

int heed_cmd_train(Compilation *c, const HeedTrainOpts *o) {
  Run r = {.c = c, .o = o, .tr = c->model->train, .lock = -1};
  int rc = check_opts(c, o);
  if (rc != HEED_OK) return rc;
  int64_t start = 0, done = 0;
  r.t_start = now_s();
  int launched = rt_comm_launched_size();
  if (launched > 1) {  // mpirun -np N: one rank of a data-parallel job
    char err[ERRMAX];
    if (!(r.comm = rt_comm_mpi_new(err, sizeof err))) {
      diag_error(&c->diag, (SrcLoc){0}, "heed train: started as one of %d ranks (mpirun), but %s; refusing to train "
                 "%d copies of the same model", launched, err, launched);
      return HEED_ERR_CHECK;
    }
    r.rank = r.comm->rank;
  }
  rc = setup(&r, &start);
  if (rc == HEED_OK && r.rank == 0) {
    char frozen[96] = "";
    int nt;
    int64_t tp = heed_trainer_trainable(r.t, &nt);
    if (o->nfreeze)
      snprintf(frozen, sizeof frozen, " (%lld trainable in %d tensors; --freeze)", (long long)tp, nt);
    fprintf(stderr, "heed train: %s, %lld parameters%s, batch %lld x seq %lld, steps %lld..%lld, data %s (%lld "
            "tokens), output %s\n", c->model->decl->name, (long long)c->model->nparam_elems, frozen, (long long)r.B,
            (long long)r.T, (long long)start + 1, (long long)r.steps, o->data, (long long)r.data.n, r.out);
  }
  if (rc == HEED_OK) rc = loop(&r, start, &done);
  if (r.comm && r.rank == 0 && rc == HEED_OK && done > start)
    fprintf(stderr, "heed train: data-parallel over %d ranks: %.1f ms per step in communication (rank 0: the gradient "
            "sum and the step's losses)\n", r.comm->size, 1e3 * r.comm->wait_s / (double)(done - start));
  if (rc == HEED_OK && stop_signal && r.rank) {
    // rank 0 reports
  } else if (rc == HEED_OK && stop_signal) {
    printf("interrupted (signal %d) after step %lld: checkpoint %s\n", (int)stop_signal, (long long)done,
           r.last_ckpt);
  } else if (rc == HEED_OK) {
    rc = finish(&r);
  }
  if (r.metrics && fclose(r.metrics) != 0 && rc == HEED_OK) rc = fail(&r, "cannot write the metrics log");
  if (r.lock >= 0) close(r.lock);
  if (r.t && o->profile) heed_trainer_profile(r.t, stderr);
  if (r.t) heed_trainer_free(r.t);
  heed_free(r.x);
  heed_free(r.y);
  rt_tokens_close(&r.data);
  rt_tokens_close(&r.vdata);
  if (r.comm && rc != HEED_OK) r.comm->abort(r.comm, rc == HEED_ERR_USAGE ? 2 : 1);  // the others may wait for us
  if (r.comm) r.comm->free(r.comm);
  return rc;
}
