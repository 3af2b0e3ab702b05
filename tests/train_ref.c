// tests/train_ref.c: a small driver over engine/trainer.h for the PyTorch
// comparison (tests/ref/train_torch.py); not `heed train` (that command
// lives in cli/). Runs the steps of a model's train section on batches
// given in a safetensors file and writes what happened:
//
//   train_ref MODEL.heed BATCHES.safetensors OUT.safetensors
//             [--seed S] [--threads N] [--interp] [--steps-only] [--grad-accum K] [--set KEY=VALUE]...
//
// BATCHES holds one int32 tensor [N, B, T] per loss input, named like it
// ("tokens", "targets"); N steps run (lr from heed_train_lr with total
// steps = the train section's `steps`). OUT holds init.NAME (the initial
// parameters, as `heed init --seed S`), final.NAME (every trainer tensor
// after the last step, optimizer state included), losses, grad_norms, lrs
// (f64 [N]), eval_loss (f64 [1], batch 0 after training) and logits
// (f32 [T, V], the forward on batch 0's first sequence after training);
// --steps-only leaves out those two (no eval and forward compiles).
// Exit status 1 with the trainer's diagnostic if a step fails. Prints each
// step's loss and wall time (stdout) and the set-up time (stderr).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/trainer.h"
#include "runtime/rt.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct {
  RtStWrite *w;
  int n, cap;
} Out;

static void put(Out *o, const char *name, RtDType dt, int rank, const int64_t *shape, const void *data) {
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 64;
    o->w = realloc(o->w, sizeof(RtStWrite) * (size_t)o->cap);
    if (!o->w) exit(2);
  }
  int64_t *sh = malloc(sizeof(int64_t) * (size_t)(rank + 1));
  size_t bytes = rt_dtype_size(dt);
  for (int i = 0; i < rank; i++) sh[i] = shape[i], bytes *= (size_t)shape[i];
  void *copy = malloc(bytes + 1);
  if (!sh || !copy) exit(2);
  memcpy(copy, data, bytes);
  char *nm = strdup(name);
  o->w[o->n++] = (RtStWrite){.name = nm, .dt = dt, .rank = rank, .shape = sh, .data = copy};
}

static void put_tensors(Out *o, HeedTrainer *t, const char *prefix, bool params_only) {
  for (int i = 0; i < heed_trainer_ntensors(t); i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    if (params_only && r.is_state) continue;
    char name[1400];
    snprintf(name, sizeof name, "%s%s", prefix, r.name);
    put(o, name, RT_F32, r.rank, r.shape, r.data);
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: train_ref MODEL.heed BATCHES.safetensors OUT.safetensors [--seed S] [--threads N] "
                    "[--interp] [--steps-only] [--set KEY=VALUE]...\n");
    return 2;
  }
  HeedOptions ho = {.path = argv[1]};
  FeOverride sets[64];
  HeedTrainerOpts to = {.threads = 1};
  uint64_t seed = 0;
  bool steps_only = false;
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "--interp")) to.interp = true;
    else if (!strcmp(argv[i], "--steps-only")) steps_only = true;
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) to.threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--grad-accum") && i + 1 < argc) to.grad_accum = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--set") && i + 1 < argc && ho.check.noverrides < 64) {
      char *kv = strdup(argv[++i]), *eq = strchr(kv, '=');
      if (!eq) return 2;
      *eq = 0;
      sets[ho.check.noverrides++] = (FeOverride){.key = kv, .value = eq + 1};
    } else {
      fprintf(stderr, "train_ref: bad argument '%s'\n", argv[i]);
      return 2;
    }
  }
  ho.check.overrides = sets;
  ho.check.lower = true;
  Compilation *c = heed_compilation_new(&ho);
  if (!c || heed_frontend(c) != HEED_OK) return 1;
  const FeTrain *tr = c->model->train;
  RtSafetensors st;
  char err[512];
  if (rt_st_open(argv[2], &st, err, sizeof err) != RT_OK) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  const RtStTensor *first = st.n ? &st.t[0] : NULL;
  if (!first || first->rank != 3 || first->dt != RT_I32) {
    fprintf(stderr, "train_ref: %s: want int32 [N, B, T] tensors\n", argv[2]);
    return 1;
  }
  int64_t nsteps = first->shape[0];
  to.batch = first->shape[1];
  to.seq = first->shape[2];
  double t0 = now_ms();
  HeedTrainer *t = heed_trainer_new(c, &to);
  if (t) fprintf(stderr, "train_ref: %s, ready in %.0f ms, %.1f MB of buffers\n", heed_trainer_name(t), now_ms() - t0,
                 (double)heed_trainer_memory_bytes(t) / 1e6);
  if (!t || !heed_trainer_init(t, seed)) return 1;
  int nin = heed_trainer_ninputs(t);
  const int32_t **in = calloc((size_t)nin, sizeof *in);
  const RtStTensor **src = calloc((size_t)nin, sizeof *src);
  for (int i = 0; i < nin; i++)
    if (!(src[i] = rt_st_find(&st, heed_trainer_input_name(t, i))) || src[i]->dt != RT_I32 ||
        memcmp(src[i]->shape, first->shape, sizeof first->shape)) {
      fprintf(stderr, "train_ref: %s: no int32 [N, B, T] tensor '%s'\n", argv[2], heed_trainer_input_name(t, i));
      return 1;
    }
  Out out = {0};
  put_tensors(&out, t, "init.", true);
  double *losses = calloc((size_t)nsteps + 1, sizeof(double)), *norms = calloc((size_t)nsteps + 1, sizeof(double));
  double *lrs = calloc((size_t)nsteps + 1, sizeof(double));
  if (!losses || !norms || !lrs) return 2;
  int64_t bt = to.batch * to.seq;
  for (int64_t s = 0; s < nsteps; s++) {
    for (int i = 0; i < nin; i++) in[i] = (const int32_t *)(st.data + src[i]->off) + s * bt;
    lrs[s] = heed_train_lr(tr, s + 1, tr->steps);
    double ts = now_ms();
    if (!heed_trainer_step(t, in, lrs[s], s + 1, &losses[s], &norms[s])) return 1;
    printf("step %lld: loss %.9g grad_norm %.9g lr %.9g (%.1f ms)\n", (long long)s + 1, losses[s], norms[s], lrs[s],
           now_ms() - ts);
  }
  for (int i = 0; i < nin; i++) in[i] = (const int32_t *)(st.data + src[i]->off);
  double eval = 0;
  const float *logits = NULL;
  if (!steps_only && (!heed_trainer_eval(t, in, &eval) || !heed_trainer_logits(t, in[0], to.seq, &logits))) return 1;
  put_tensors(&out, t, "final.", false);
  float *f = calloc((size_t)nsteps * 3 + 2, sizeof(float));
  for (int64_t s = 0; s < nsteps; s++)
    f[s] = (float)losses[s], f[nsteps + s] = (float)norms[s], f[2 * nsteps + s] = (float)lrs[s];
  f[3 * nsteps] = (float)eval;
  int64_t n1[1] = {nsteps}, one[1] = {1};
  put(&out, "losses", RT_F32, 1, n1, f);
  put(&out, "grad_norms", RT_F32, 1, n1, f + nsteps);
  put(&out, "lrs", RT_F32, 1, n1, f + 2 * nsteps);
  if (!steps_only) {
    put(&out, "eval_loss", RT_F32, 1, one, f + 3 * nsteps);
    const IrNode *lo = c->model->forward->outputs.data[0];
    int64_t tv[2] = {to.seq, ir_dim_value(lo->ty.dim[lo->ty.rank - 1], NULL)};
    put(&out, "logits", RT_F32, 2, tv, logits);
  }
  if (rt_st_write(argv[3], out.w, out.n, NULL, 0, err, sizeof err) != RT_OK) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  heed_trainer_free(t);
  rt_st_close(&st);
  heed_compilation_free(c);
  for (int i = 0; i < out.n; i++)
    free((void *)out.w[i].name), free((void *)out.w[i].shape), free((void *)out.w[i].data);
  free(out.w);
  free(f);
  free(losses);
  free(norms);
  free(lrs);
  free(in);
  free(src);
  for (int i = 0; i < ho.check.noverrides; i++) free((char *)sets[i].key);
  return 0;
}
