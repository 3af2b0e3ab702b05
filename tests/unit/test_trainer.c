// tests/unit/test_trainer.c: the trainer (engine/trainer.c) and the train-step
// graph (passes/train_step.c) on tiny models written to temporary files:
//   - heed_train_lr: constant, warmup + cosine, warmup + linear, past the end;
//   - the tensor list (parameters in model order, then AdamW m, v per
//     parameter; SGD momentum buffers; none for plain SGD) and init values
//     equal to heed_init_values (what `heed init` writes);
//   - compiled AdamW steps bitwise equal on 1 and 3 threads; compiled
//     AdamW and SGD against the interpreter within 1e-5 relative (losses),
//     1e-5 + 1e-4 relative (every tensor); eval before a step gives the
//     step's loss (1e-6 relative);
//   - a gradient that is infinite (sqrt at 0) stops the step with a message
//     naming the step and the first bad parameter, not an earlier good one,
//     and leaves every tensor as it was (compiled and interpreted); a huge
//     SGD lr blows up at step 2 (interpreted: the compiled path is the
//     case above);
// Compiling dominates the run time (a few seconds per trainer on a loaded
// 2-core machine), so compiled trainers are few.
//   - errors: no train section, a float loss input, logits past seq;
//   - the fused optimizer ops (OPT_MOMENT, OPT_MOMENT2, OPT_ADAMW) give the
//     same bits as the plain-op chain they replace (PassTrainOpts.unfused),
//     interpreted and compiled, with and without clipping and decay.
//   - gradient accumulation: K = 2 micro-batches of one batch twice equal
//     a step of that batch, bitwise; the loss is the micro-batches' mean;
//     errors for a K that does not divide the batch and for the interpreter.
// (The comparison with PyTorch is tests/ref/train_torch.py.)
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/run.h"
#include "engine/trainer.h"
#include "passes/pass.h"
#include "testutil.h"
#ifdef HEED_HAVE_LLVM
#include "codegen/cg.h"
#endif

// A small model: embedding, one hidden layer with a norm, tied head. {EXTRA}
// in the forward lets a case add a term; {OPT} is the optimizer setting.
static const char *MODEL_FMT =
    "config { vocab = 11  dim = 8 }\n"
    "model M {\n"
    "  param emb: f32[vocab, dim] = normal(0.5)\n"
    "  param s: f32[dim] = %s\n"
    "  param w: f32[dim, dim] = normal(0.3)\n"
    "  param g: f32[dim] = ones\n"
    "  buffer scale: f32[dim] = constant(0.5)\n"
    "  forward(tokens: i32[B, T]) -> f32[B, T, vocab] {\n"
    "    x = emb[tokens] + %s\n"
    "    h = rmsnorm(tanh(x @ w), g, eps = 1e-5) * scale\n"
    "    return (x + h) @ transpose(emb)\n"
    "  }\n"
    "}\n"
    "train M {\n"
    "  loss(tokens: i32[B, T], targets: i32[B, T]) = cross_entropy(M(tokens), targets)\n"
    "  optimizer = %s\n"
    "  clip = %s\n"
    "  batch = 3\n"
    "  seq = 5\n"
    "}\n";

typedef struct {
  char path[64];
  HeedOptions ho;
  FeOverride sets[4];
  Compilation *c;
} Model;

// Writes the model, runs the frontend (lowered). false: the frontend failed.
static bool model_open(Model *m, const char *s_init, const char *extra, const char *opt, const char *clip) {
  snprintf(m->path, sizeof m->path, "/tmp/heed_trainer_XXXXXX");
  int fd = mkstemp(m->path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fprintf(f, MODEL_FMT, s_init, extra, opt, clip);
  fclose(f);
  m->ho = (HeedOptions){.path = m->path, .check = {.lower = true, .overrides = m->sets}};
  m->c = heed_compilation_new(&m->ho);
  assert_non_null(m->c);
  m->c->diag.out = NULL;  // keep messages in diag.log
  return heed_frontend(m->c) == HEED_OK;
}

static void model_close(Model *m) {
  heed_compilation_free(m->c);
  unlink(m->path);
}

static const char *log_of(Model *m) { return m->c->diag.log ? m->c->diag.log : ""; }

// Deterministic token batches: inputs for n steps of B*T each.
static void make_batches(int32_t *tok, int32_t *tgt, int n) {
  uint32_t s = 12345;
  for (int i = 0; i < n * 15; i++) {
    s = s * 1664525u + 1013904223u;
    tok[i] = (int32_t)((s >> 8) % 11);
    tgt[i] = (int32_t)((s >> 20) % 11);
  }
}

static const double PI = 3.14159265358979323846;

// ---- the schedule ----

static void test_lr_schedule(void **state) {
  (void)state;
  FeTrain tr = {.lr = 1.0, .schedule = "constant"};
  assert_true(heed_train_lr(&tr, 1, 6) == 1.0 && heed_train_lr(&tr, 9, 6) == 1.0);
  tr = (FeTrain){.lr = 1.0, .schedule = "cosine", .warmup = 2, .min_lr = 0.1};
  double want_cos[] = {0.5, 1.0, 0.1 + 0.9 * 0.5 * (1 + cos(PI * 0.25)), 0.55,
                       0.1 + 0.9 * 0.5 * (1 + cos(PI * 0.75)), 0.1, 0.1};
  for (int s = 1; s <= 7; s++) assert_true(fabs(heed_train_lr(&tr, s, 6) - want_cos[s - 1]) < 1e-12);
  tr.schedule = "linear";
  double want_lin[] = {0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0};
  for (int s = 1; s <= 7; s++) assert_true(fabs(heed_train_lr(&tr, s, 6) - want_lin[s - 1]) < 1e-12);
  tr.warmup = 0;  // no warmup: the first step already decays
  assert_true(fabs(heed_train_lr(&tr, 3, 6) - 0.5) < 1e-12);
}

// ---- tensors and init ----

static void test_tensors(void **state) {
  (void)state;
  Model m;
  assert_true(model_open(&m, "zeros", "s", "adamw(lr = 1e-2)", "0"));
  HeedTrainer *t = heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = true});
  assert_non_null(t);
  assert_int_equal(heed_trainer_ninputs(t), 2);
  assert_string_equal(heed_trainer_input_name(t, 0), "tokens");
  assert_string_equal(heed_trainer_input_name(t, 1), "targets");
  const char *want[] = {"emb", "s", "w", "g", "scale", "opt.m.emb", "opt.v.emb", "opt.m.s", "opt.v.s",
                        "opt.m.w", "opt.v.w", "opt.m.g", "opt.v.g"};
  assert_int_equal(heed_trainer_ntensors(t), 13);
  assert_true(heed_trainer_init(t, 42));
  for (int i = 0; i < 13; i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    assert_string_equal(r.name, want[i]);
    assert_int_equal(r.is_state, i >= 5);
    if (i < 5) {  // as heed init writes them
      const IrNode *p = m.c->model->forward->params.data[i];
      double *v = malloc(sizeof(double) * (size_t)r.numel);
      heed_init_values(p->name, &p->init, 42, v, r.numel);
      for (int64_t k = 0; k < r.numel; k++) assert_true(r.data[k] == (float)v[k]);
      free(v);
    } else {
      for (int64_t k = 0; k < r.numel; k++) assert_true(r.data[k] == 0);
    }
  }
  assert_string_equal(heed_trainer_name(t), "reference interpreter");
  assert_true(heed_trainer_memory_bytes(t) > 4 * (88 + 8 + 64 + 8 + 8));
  HeedTensorRef w = heed_trainer_tensor(t, 2);
  assert_int_equal(w.rank, 2);
  assert_true(w.shape[0] == 8 && w.shape[1] == 8 && w.numel == 64);
  heed_trainer_free(t);
  model_close(&m);
  // SGD: momentum buffers "opt.b.NAME", or no state at all
  assert_true(model_open(&m, "zeros", "s", "sgd(lr = 0.1, momentum = 0.9)", "0"));
  t = heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = true});
  assert_non_null(t);
  assert_int_equal(heed_trainer_ntensors(t), 9);
  assert_string_equal(heed_trainer_tensor(t, 5).name, "opt.b.emb");
  heed_trainer_free(t);
  model_close(&m);
  assert_true(model_open(&m, "zeros", "s", "sgd(lr = 0.1)", "0"));
  t = heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = true});
  assert_int_equal(heed_trainer_ntensors(t), 5);
  heed_trainer_free(t);
  model_close(&m);
}

// ---- compiled vs interpreted, threads ----

enum { NSTEPS = 3 };

// Runs NSTEPS steps; returns every tensor concatenated (malloc'd) and the losses.
static float *run(const char *opt, const char *clip, bool interp, int threads, double *losses, int64_t *total,
                  bool check_eval) {
  Model m;
  assert_true(model_open(&m, "normal(0.1)", "s", opt, clip));
  HeedTrainer *t = heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = interp, .threads = threads});
  assert_non_null(t);
  assert_true(heed_trainer_init(t, 3));
  int32_t tok[NSTEPS * 15], tgt[NSTEPS * 15];
  make_batches(tok, tgt, NSTEPS);
  double ev;
  const int32_t *in0[2] = {tok, tgt};
  if (check_eval) assert_true(heed_trainer_eval(t, in0, &ev));
  for (int s = 0; s < NSTEPS; s++) {
    const int32_t *in[2] = {tok + 15 * (s % 2), tgt + 15 * (s % 2)};  // two batches in turn
    double norm;
    if (!heed_trainer_step(t, in, 0.05, s + 1, &losses[s], &norm)) fail_msg("step %d: %s", s + 1, log_of(&m));
    // eval = the step's loss (the same parameters)
    if (s == 0 && check_eval) assert_true(fabs(ev - losses[0]) <= 1e-6 * fabs(ev));
  }
  int64_t n = 0;
  for (int i = 0; i < heed_trainer_ntensors(t); i++) n += heed_trainer_tensor(t, i).numel;
  float *all = malloc(sizeof(float) * (size_t)n), *p = all;
  for (int i = 0; i < heed_trainer_ntensors(t); i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    memcpy(p, r.data, sizeof(float) * (size_t)r.numel);
    p += r.numel;
  }
  *total = n;
  heed_trainer_free(t);
  model_close(&m);
  return all;
}

// Compiled (1 thread) against the interpreter and, with threads_too,
// against compiled on 3 threads (bitwise).
static void compare_runs(const char *opt, const char *clip, bool threads_too) {
  double l1[NSTEPS], l3[NSTEPS], li[NSTEPS];
  int64_t n1, n3, ni;
  float *a = run(opt, clip, false, 1, l1, &n1, threads_too), *b = NULL;
  float *c = run(opt, clip, true, 1, li, &ni, true);
  assert_true(n1 == ni);
  if (threads_too) {
    b = run(opt, clip, false, 3, l3, &n3, false);
    assert_true(n1 == n3);
    assert_memory_equal(a, b, sizeof(float) * (size_t)n1);  // bitwise, whatever the thread count
    assert_memory_equal(l1, l3, sizeof l1);
  }
  float fl1[NSTEPS], fli[NSTEPS];
  for (int s = 0; s < NSTEPS; s++) fl1[s] = (float)l1[s], fli[s] = (float)li[s];
  check_close(fl1, fli, NSTEPS, 0, 1e-5, "losses: compiled vs interpreter");
  check_close(a, c, (size_t)n1, 1e-5, 1e-4, "tensors: compiled vs interpreter");
  assert_true(l1[2] < l1[0]);  // it learns (steps 1 and 3 see the same batch)
  free(a);
  free(b);
  free(c);
}

static void test_adamw_clip(void **state) {
  (void)state;
  compare_runs("adamw(lr = 1e-2, weight_decay = 0.1)", "0.5", true);
}

static void test_sgd_momentum(void **state) {
  (void)state;
  compare_runs("sgd(lr = 0.1, momentum = 0.9)", "0", false);
}

// ---- non-finite values ----

// s = 0 under sqrt: the forward is finite, d sqrt(s)/ds is infinite. emb
// (first in model order) has a finite gradient; s is the one named.
static void test_nonfinite_gradient(void **state) {
  (void)state;
  for (int interp = 0; interp < 2; interp++) {
    Model m;
    assert_true(model_open(&m, "zeros", "sqrt(s)", "adamw(lr = 1e-2)", "1.0"));
    HeedTrainer *t = heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = interp});
    assert_non_null(t);
    assert_true(heed_trainer_init(t, 1));
    HeedTensorRef emb = heed_trainer_tensor(t, 0);
    float *before = malloc(sizeof(float) * (size_t)emb.numel);
    memcpy(before, emb.data, sizeof(float) * (size_t)emb.numel);
    int32_t tok[15], tgt[15];
    make_batches(tok, tgt, 1);
    const int32_t *in[2] = {tok, tgt};
    double loss, norm;
    assert_false(heed_trainer_step(t, in, 0.01, 1, &loss, &norm));
    assert_contains(log_of(&m), "step 1: the gradient of 's' is not finite");
    emb = heed_trainer_tensor(t, 0);
    assert_memory_equal(before, emb.data, sizeof(float) * (size_t)emb.numel);
    for (int k = 0; k < heed_trainer_tensor(t, 6).numel; k++) assert_true(heed_trainer_tensor(t, 6).data[k] == 0);
    free(before);
    heed_trainer_free(t);
    model_close(&m);
  }
}

// A huge SGD step: step 1 is finite, its update blows the parameters up,
// step 2 fails and keeps the parameters of after step 1.
static void test_huge_lr(void **state) {
  (void)state;
  Model m;
  assert_true(model_open(&m, "zeros", "s", "sgd(lr = 1e30)", "0"));
  HeedTrainer *t = heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = true});
  assert_non_null(t);
  assert_true(heed_trainer_init(t, 1));
  int32_t tok[30], tgt[30];
  make_batches(tok, tgt, 2);
  double loss, norm;
  assert_true(heed_trainer_step(t, (const int32_t *[]){tok, tgt}, 1e30, 1, &loss, &norm));
  assert_string_equal(heed_trainer_name(t), "reference interpreter");
  assert_true(heed_trainer_memory_bytes(t) > 4 * (88 + 8 + 64 + 8 + 8));
  HeedTensorRef w = heed_trainer_tensor(t, 2);
  float saved[64];
  memcpy(saved, w.data, sizeof saved);
  assert_false(heed_trainer_step(t, (const int32_t *[]){tok + 15, tgt + 15}, 1e30, 2, &loss, &norm));
  assert_contains(log_of(&m), "step 2: the ");
  assert_contains(log_of(&m), "not finite");
  assert_memory_equal(saved, heed_trainer_tensor(t, 2).data, sizeof saved);
  heed_trainer_free(t);
  model_close(&m);
}

// ---- the fused optimizer ops against the chain of plain ops they replace ----

typedef struct {
  Model m;
  IrGraph *g;
  PassTrainStep ts;
  IrValues *vals;
  void **bufs;
} Built;

static void build(Built *b, const char *opt, const char *clip, bool unfused) {
  assert_true(model_open(&b->m, "normal(0.1)", "s", opt, clip));
  const FeTrain *tr = b->m.c->model->train;
  PassTrainOpts po = {.optimizer = tr->optimizer, .beta1 = tr->beta1, .beta2 = tr->beta2, .eps = tr->eps,
                      .weight_decay = tr->weight_decay, .momentum = tr->momentum, .clip = tr->clip,
                      .unfused = unfused};
  b->g = b->m.c->model->loss;
  assert_true(pass_train_step(b->g, b->g->outputs.data[0], &po, &b->ts));
}

// Deterministic values for leaf node n (the same in both graphs): tokens in
// range, scalars as a step would have them, moments v >= 0.
static double *leaf_values(const IrNode *n, const int64_t *symvals, uint32_t seed) {
  int64_t k = ir_type_numel(&n->ty, symvals);
  double *v = malloc(sizeof(double) * (size_t)k);
  for (int64_t i = 0; i < k; i++) {
    seed = seed * 1664525u + 1013904223u;
    double u = (double)(seed >> 8) / 16777216.0;  // [0, 1)
    if (ir_dtype_info[n->ty.dt].is_int) v[i] = (double)((seed >> 8) % 11);
    else if (n->ty.rank == 0) v[i] = 0.1 + 0.8 * u;
    else if (!strncmp(n->name, "opt.v.", 6)) v[i] = (float)(1e-4 * u * u);
    else v[i] = (float)(u - 0.5);
  }
  return v;
}

static void run_built(Built *b, bool interp, const int64_t *symvals) {
  const IrGraph *g = b->g;
  double **in = calloc((size_t)g->inputs.len, sizeof(double *));
  double **par = calloc((size_t)g->params.len, sizeof(double *));
  for (int i = 0; i < g->inputs.len; i++) in[i] = leaf_values(g->inputs.data[i], symvals, 100u + (uint32_t)i);
  for (int i = 0; i < g->params.len; i++) par[i] = leaf_values(g->params.data[i], symvals, 200u + (uint32_t)i);
  if (interp) {
    b->vals = ir_interp(g, symvals, in, par, false, &b->m.c->diag);
    assert_non_null(b->vals);
  }
#ifdef HEED_HAVE_LLVM
  else {
    CgProgram *p = cg_compile(g, NULL, &b->m.c->diag);
    assert_non_null(p);
    b->bufs = calloc((size_t)g->nodes.len, sizeof(void *));
    int ii = 0, pi = 0;
    for (int i = 0; i < g->nodes.len; i++) {
      const IrNode *n = g->nodes.data[i];
      b->bufs[i] = calloc(1, (size_t)cg_buffer_bytes(p, i, symvals) + 64);
      const double *src = n->op == IR_OP_INPUT ? in[ii++] : n->op == IR_OP_PARAM ? par[pi++] : NULL;
      for (int64_t k = 0; src && k < ir_type_numel(&n->ty, symvals); k++) {
        if (n->ty.dt == IR_F32) ((float *)b->bufs[i])[k] = (float)src[k];
        else ((int32_t *)b->bufs[i])[k] = (int32_t)src[k];
      }
    }
    assert_true(cg_run(p, symvals, b->bufs, &b->m.c->diag));
    cg_program_free(p);
  }
#endif
  for (int i = 0; i < g->inputs.len; i++) free(in[i]);
  for (int i = 0; i < g->params.len; i++) free(par[i]);
  free(in);
  free(par);
}

static void free_built(Built *b) {
  ir_values_free(b->vals);
  for (int i = 0; b->bufs && i < b->g->nodes.len; i++) free(b->bufs[i]);
  free(b->bufs);
  model_close(&b->m);
}

// Every "new.*" output and grad_norm, bitwise, fused vs unfused, on the
// interpreter and (compiled_too, with LLVM) compiled; the fused graph is
// smaller.
static void fused_case(const char *opt, const char *clip, bool compiled_too) {
  for (int interp = 0; interp < 2; interp++) {
#ifndef HEED_HAVE_LLVM
    compiled_too = false;
#endif
    if (!interp && !compiled_too) continue;
    Built f = {0}, u = {0};
    build(&f, opt, clip, false);
    build(&u, opt, clip, true);
    assert_true(f.g->nodes.len < u.g->nodes.len);
    assert_int_equal(f.g->outputs.len, u.g->outputs.len);
    int64_t symvals[IR_MAX_SYMS] = {0};
    const int64_t shape[2] = {3, 5}, *shapes[8] = {shape, shape, shape, shape, shape, shape, shape, shape};
    int ranks[8] = {0};
    for (int i = 0; i < f.g->inputs.len && i < 8; i++) ranks[i] = f.g->inputs.data[i]->ty.rank;
    assert_true(ir_bind_syms(f.g, shapes, ranks, symvals, &f.m.c->diag));
    run_built(&f, interp, symvals);
    run_built(&u, interp, symvals);
    int compared = 0;
    for (int o = 0; o < f.g->outputs.len; o++) {
      const char *name = f.g->output_names.data[o];
      if (strncmp(name, "new.", 4) && strcmp(name, "grad_norm")) continue;
      assert_string_equal(name, u.g->output_names.data[o]);
      const IrNode *a = f.g->outputs.data[o], *b = u.g->outputs.data[o];
      int64_t k = ir_type_numel(&a->ty, symvals);
      for (int64_t i = 0; i < k; i++) {
        float va = interp ? (float)f.vals->val[a->id][i] : ((float *)f.bufs[a->id])[i];
        float vb = interp ? (float)u.vals->val[b->id][i] : ((float *)u.bufs[b->id])[i];
        if (memcmp(&va, &vb, sizeof va))
          fail_msg("%s %s[%lld]: fused %.9g, unfused %.9g", interp ? "interpreter" : "compiled", name, (long long)i,
                   va, vb);
      }
      compared++;
    }
    assert_true(compared > 8);
    free_built(&f);
    free_built(&u);
  }
}

static void test_fused_ops(void **state) {
  (void)state;
  fused_case("adamw(lr = 1e-2, weight_decay = 0.1)", "0.5", true);  // every OPT_* kernel compiled
  fused_case("adamw(lr = 1e-2, weight_decay = 0)", "0", false);
  fused_case("sgd(lr = 0.1, momentum = 0.9)", "0.3", false);
}

// ---- logits and errors ----

static void test_logits(void **state) {
  (void)state;
  Model m;
  assert_true(model_open(&m, "normal(0.1)", "s", "adamw(lr = 1e-2)", "0"));
  HeedTrainer *t = heed_trainer_new(m.c, &(HeedTrainerOpts){.threads = 1});
  HeedTrainer *ti = NULL;
  assert_non_null(t);
  assert_true(heed_trainer_init(t, 9));
  int32_t tok[15] = {1, 2, 3, 4, 5};
  const float *lg, *lgi;
  assert_true(heed_trainer_logits(t, tok, 4, &lg));
  float copy[4 * 11];
  memcpy(copy, lg, sizeof copy);
  Model mi;
  assert_true(model_open(&mi, "normal(0.1)", "s", "adamw(lr = 1e-2)", "0"));
  ti = heed_trainer_new(mi.c, &(HeedTrainerOpts){.interp = true});
  assert_true(heed_trainer_init(ti, 9));
  assert_true(heed_trainer_logits(ti, tok, 4, &lgi));
  check_close(copy, lgi, 4 * 11, 1e-6, 1e-5, "logits: compiled vs interpreter");
  assert_false(heed_trainer_logits(t, tok, 6, &lg));
  assert_contains(log_of(&m), "logits: 6 tokens, but the trainer's sequences hold 1 to 5");
  heed_trainer_free(t);
  heed_trainer_free(ti);
  model_close(&m);
  model_close(&mi);
}

// Gradient accumulation (HeedTrainerOpts.grad_accum): a step of K = 2
// micro-batches whose rows are the same batch twice is, bit for bit, a
// step of that batch alone ((g + g) * 0.5 = g; the micro-batches' mean loss
// too); on two different halves the loss is the mean of the halves' losses
// (eval of a trainer of one half); a K that does not divide the batch, or
// the interpreter, is an error.
static float *tensors_of(HeedTrainer *t, int64_t *n) {
  *n = 0;
  for (int i = 0; i < heed_trainer_ntensors(t); i++) *n += heed_trainer_tensor(t, i).numel;
  float *all = malloc(sizeof(float) * (size_t)*n), *p = all;
  for (int i = 0; i < heed_trainer_ntensors(t); i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    memcpy(p, r.data, sizeof(float) * (size_t)r.numel);
    p += r.numel;
  }
  return all;
}

static void test_grad_accum(void **state) {
  (void)state;
  Model ma, mb;
  assert_true(model_open(&ma, "normal(0.1)", "s", "adamw(lr = 1e-2, weight_decay = 0.1)", "0.5"));
  assert_true(model_open(&mb, "normal(0.1)", "s", "adamw(lr = 1e-2, weight_decay = 0.1)", "0.5"));
  HeedTrainer *a = heed_trainer_new(ma.c, &(HeedTrainerOpts){.threads = 2, .batch = 6, .grad_accum = 2});
  HeedTrainer *b = heed_trainer_new(mb.c, &(HeedTrainerOpts){.threads = 1, .batch = 3});
  if (!a) fail_msg("%s", log_of(&ma));
  assert_non_null(b);
  assert_true(heed_trainer_init(a, 5) && heed_trainer_init(b, 5));
  int32_t tok[NSTEPS * 15], tgt[NSTEPS * 15], tok2[30], tgt2[30];
  make_batches(tok, tgt, NSTEPS);
  // two different halves first: the loss of the step is the halves' mean
  const int32_t *h1[2] = {tok, tgt}, *h2[2] = {tok + 15, tgt + 15};
  double e1, e2, la, na, lb, nb;
  assert_true(heed_trainer_eval(b, h1, &e1) && heed_trainer_eval(b, h2, &e2));
  double ea;
  const int32_t *both[2] = {tok, tgt};  // rows 0..2 then 3..5: tok[0..30)
  assert_true(heed_trainer_eval(a, both, &ea));
  assert_true(fabs(ea - (e1 + e2) / 2) <= 1e-7 * fabs(ea));
  // then the same batch twice, step by step against b on the batch alone
  for (int s = 0; s < NSTEPS; s++) {
    memcpy(tok2, tok + 15 * s, sizeof(int32_t) * 15), memcpy(tok2 + 15, tok + 15 * s, sizeof(int32_t) * 15);
    memcpy(tgt2, tgt + 15 * s, sizeof(int32_t) * 15), memcpy(tgt2 + 15, tgt + 15 * s, sizeof(int32_t) * 15);
    const int32_t *ina[2] = {tok2, tgt2}, *inb[2] = {tok + 15 * s, tgt + 15 * s};
    if (!heed_trainer_step(a, ina, 0.05, s + 1, &la, &na)) fail_msg("accum step %d: %s", s + 1, log_of(&ma));
    assert_true(heed_trainer_step(b, inb, 0.05, s + 1, &lb, &nb));
    assert_memory_equal(&la, &lb, sizeof la);
    assert_memory_equal(&na, &nb, sizeof na);
  }
  int64_t n1, n2;
  float *ta = tensors_of(a, &n1), *tb = tensors_of(b, &n2);
  assert_true(n1 == n2);
  assert_memory_equal(ta, tb, sizeof(float) * (size_t)n1);
  free(ta);
  free(tb);
  heed_trainer_free(a);
  heed_trainer_free(b);
  model_close(&ma);
  model_close(&mb);
  // errors
  assert_true(model_open(&ma, "normal(0.1)", "s", "adamw(lr = 1e-2)", "0"));
  assert_null(heed_trainer_new(ma.c, &(HeedTrainerOpts){.batch = 6, .grad_accum = 4}));
  assert_contains(log_of(&ma), "--grad-accum 4 does not divide the batch of 6 rows");
  model_close(&ma);
  assert_true(model_open(&ma, "normal(0.1)", "s", "adamw(lr = 1e-2)", "0"));
  assert_null(heed_trainer_new(ma.c, &(HeedTrainerOpts){.interp = true, .grad_accum = 3}));
  assert_contains(log_of(&ma), "--grad-accum 3: gradient accumulation is compiled code's (not --interp)");
  model_close(&ma);
}

static void test_errors(void **state) {
  (void)state;
  Model m;
  snprintf(m.path, sizeof m.path, "/tmp/heed_trainer_XXXXXX");
  int fd = mkstemp(m.path);
  FILE *f = fdopen(fd, "w");
  fputs("model M {\n  param w: f32[4, 4] = normal(0.1)\n  forward(x: f32[B, 4]) = x @ w\n}\n"
        "train M {\n  loss(x: f32[B, 4]) = mean(M(x) * M(x))\n}\n", f);
  fclose(f);
  m.ho = (HeedOptions){.path = m.path, .check = {.lower = true}};
  m.c = heed_compilation_new(&m.ho);
  m.c->diag.out = NULL;
  assert_int_equal(heed_frontend(m.c), HEED_OK);
  assert_null(heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = true}));
  assert_contains(log_of(&m), "training feeds integer token windows [B, T] to loss inputs, but 'x' is f32[B, 4]");
  model_close(&m);
  snprintf(m.path, sizeof m.path, "/tmp/heed_trainer_XXXXXX");
  fd = mkstemp(m.path);
  f = fdopen(fd, "w");
  fputs("model M {\n  param w: f32[4, 4] = normal(0.1)\n  forward(x: f32[B, 4]) = x @ w\n}\n", f);
  fclose(f);
  m.c = heed_compilation_new(&m.ho);
  m.c->diag.out = NULL;
  assert_int_equal(heed_frontend(m.c), HEED_OK);
  assert_null(heed_trainer_new(m.c, &(HeedTrainerOpts){.interp = true}));
  assert_contains(log_of(&m), "model 'M' has no train section");
  model_close(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lr_schedule),     cmocka_unit_test(test_tensors),
      cmocka_unit_test(test_adamw_clip),      cmocka_unit_test(test_sgd_momentum),
      cmocka_unit_test(test_nonfinite_gradient), cmocka_unit_test(test_huge_lr),
      cmocka_unit_test(test_logits),          cmocka_unit_test(test_errors),
      cmocka_unit_test(test_fused_ops),       cmocka_unit_test(test_grad_accum),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
