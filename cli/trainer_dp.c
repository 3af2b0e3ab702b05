// cli/trainer_dp.c: gradient accumulation and data-parallel steps of the
// trainer (trainer.h: HeedTrainerOpts.accum, .comm). Part of trainer.c (it
// includes this file: the trainer's buffers and helpers are its statics).
// Data flow: the train-step graph is cut after the backward ("gradg": the
// forward, loss and gradients, run once per micro-batch of batch rows);
// the gradients of the micro-batches are summed in micro-batch order into
// one flat buffer, across ranks by rt_comm_sum_fixed (rank order), then
// divided by the number of micro-batches of all ranks inside a second
// graph ("update": gsum.NAME inputs -> grad.NAME = gsum.NAME / M -> the
// clip and optimizer update of pass_train_update, the same ops as the
// one-graph step). Its new parameters and state are swapped into the
// trainer's buffers as after a one-graph step.
//
// Determinism: the sum is acc = g_0; acc = acc + g_k for k = 1 .. M-1 in
// the order micro-batch k of rank r is number r * accum + k: one process
// with --grad-accum M and N ranks with accum M / N do the same float ops.
#include "runtime/comm.h"

typedef struct TrainerDp {
  IrGraph gradg;              // t->g up to the end of the backward
  IrGraph *ug;                // the update graph
  PassTrainStep uts;
  int ngrad;                  // trainable parameters (ts.params order)
  int64_t *off;               // their offsets in the flat gradient buffers (64-byte aligned)
  int64_t nflat;              // floats of a flat buffer
  float *acc;                 // the sum (one process: the running sum)
  float **parts;              // several ranks: each micro-batch's gradients
  int *uslot;                 // per ug->params: the trainer slot of the same name
  void **ubufs;
  unsigned char *umem;
  void *uarena;
  int64_t usym[IR_MAX_SYMS];
  double *losses;             // accum * ranks
#ifdef HEED_HAVE_LLVM
  CgProgram *uprog;
#endif
} TrainerDp;

static bool dp_wanted(const HeedTrainerOpts *o) { return o->accum > 1 || rt_comm_size(o->comm) > 1; }
static int dp_accum(const HeedTrainer *t) { return t->o.accum > 1 ? t->o.accum : 1; }

static void dp_free(HeedTrainer *t) {
  TrainerDp *d = t->dp;
  if (!d) return;
#ifdef HEED_HAVE_LLVM
  cg_program_free(d->uprog);
#endif
  for (int k = 0; d->parts && k < dp_accum(t); k++) heed_free(d->parts[k]);
  heed_free(d->parts);
  heed_free(d->acc);
  heed_free(d->off);
  heed_free(d->uslot);
  heed_free(d->ubufs);
  heed_free(d->umem);
  heed_free(d->uarena);
  heed_free(d->losses);
  heed_free(d);
  t->dp = NULL;
}

#ifdef HEED_HAVE_LLVM
static CgProgram *dp_compile(HeedTrainer *t, const IrGraph *g, int prefix) {
  CgOptions co = {.pool = t->pool, .nthreads = rt_pool_size(t->pool), .parallel_for = (CgParallelFor)rt_parallel_for,
                  .cache_dir = heed_cache_dir(), .profile = t->o.profile && prefix > 0, .prefix = prefix};
  HeedCompiled hc;
  heed_compile(t->c, &(HeedCompileOpts){.graph = (IrGraph *)g, .passes = "", .stop = HEED_STOP_EMIT, .cg = co}, &hc);
  CgProgram *p = hc.prog;
  hc.prog = NULL;
  heed_compiled_free(&hc);
  return p;
}
#endif

// The update graph: per trainable parameter a PARAM leaf of its name and an
// input gsum.NAME; grad.NAME = gsum.NAME / M; then pass_train_update.
static bool dp_update_graph(HeedTrainer *t, TrainerDp *d, const PassTrainOpts *po, int64_t m) {
  IrGraph *ug = d->ug = ir_graph_new(t->g->a, t->g->diag, "update");
  if (!ug) return false;
  SrcLoc loc = t->ts.loss->loc;
  IrNode *first = NULL;
  for (int i = 0; i < d->ngrad; i++) {
    const IrNode *p = t->ts.params[i].param;
    IrNode *leaf = ir_param(ug, p->name, &p->ty, p->init, false, loc);
    IrNode *in = ir_input(ug, arena_printf(ug->a, "gsum.%s", p->name), &p->ty, loc);
    IrNode *g = in ? ir_binary(ug, IR_OP_DIV, in, ir_const(ug, (double)m, IR_F32, loc), loc) : NULL;
    if (!leaf || !g || !ir_output(ug, arena_printf(ug->a, "grad.%s", p->name), g)) return false;
    if (!first) first = in;
  }
  d->uts = (PassTrainStep){.nfwd = ug->nodes.len, .nloss_inputs = ug->inputs.len, .nmodel_params = ug->params.len};
  return pass_train_update(ug, first, po, &d->uts);
}

// The flat layout, the update graph's slots and buffers.
static bool dp_buffers(HeedTrainer *t, TrainerDp *d) {
  int nr = rt_comm_size(t->o.comm), k = dp_accum(t);
  d->off = heed_calloc((size_t)d->ngrad + 1, sizeof(int64_t));
  if (!d->off) return false;
  for (int i = 0; i < d->ngrad; i++) {
    d->off[i] = d->nflat;
    d->nflat += (ir_type_numel(&t->ts.params[i].param->ty, NULL) + 15) / 16 * 16;
  }
  d->nflat += 16;
  size_t fb = sizeof(float) * (size_t)d->nflat;
  if (!(d->acc = heed_aligned_alloc(64, fb)) || !(d->losses = heed_calloc((size_t)(k * nr), sizeof(double))))
    return false;
  memset(d->acc, 0, fb);
  if (nr > 1) {
    if (!(d->parts = heed_calloc((size_t)k, sizeof(float *)))) return false;
    for (int j = 0; j < k; j++) {
      if (!(d->parts[j] = heed_aligned_alloc(64, fb))) return false;
      memset(d->parts[j], 0, fb);
    }
  }
  IrGraph *ug = d->ug;
  if (!(d->uslot = heed_calloc((size_t)ug->params.len + 1, sizeof(int)))) return false;
  for (int i = 0; i < ug->params.len; i++) {
    d->uslot[i] = -1;
    for (int s = 0; s < t->nslots && d->uslot[i] < 0; s++)
      if (!strcmp(t->slots[s].name, ug->params.data[i]->name)) d->uslot[i] = s;
    if (d->uslot[i] < 0) {
      diag_error(&t->c->diag, NOLOC, "training: internal error: no slot for '%s'", ug->params.data[i]->name);
      return false;
    }
  }
  d->ubufs = heed_calloc((size_t)ug->nodes.len + 1, sizeof(void *));
  return d->ubufs && (d->umem = alloc_buffers(t->c, ug, ug->nodes.len, d->usym, BUF_INPUTS, d->ubufs,
                                               &t->mem_bytes)) != NULL;
}

// heed_trainer_new's part for accum / comm: the two programs instead of the step's.
static bool dp_setup(HeedTrainer *t, const PassTrainOpts *po) {
  if (t->o.interp) {
    diag_error(&t->c->diag, NOLOC, "--grad-accum and several ranks are not available with the reference "
               "interpreter (--interp, or a heed built without LLVM)");
    return false;
  }
  TrainerDp *d = t->dp = heed_calloc(1, sizeof *d);
  if (!d) return false;
  d->ngrad = t->ts.nparams;
  int cut = t->g->nodes.len, nout = t->g->outputs.len;
  const IrNode *sc = t->ts.lr ? t->ts.lr : t->ts.decay;  // the update's first node
  if (sc) cut = sc->id;
  for (int i = 0; i < t->g->outputs.len; i++)
    if (!strcmp(t->g->output_names.data[i], "grad_norm")) nout = i;
  d->gradg = *t->g;
  d->gradg.nodes.len = cut;
  d->gradg.inputs.len = t->ts.nloss_inputs;
  d->gradg.params.len = t->ts.nmodel_params;
  d->gradg.outputs.len = d->gradg.output_names.len = nout;
  int64_t m = (int64_t)dp_accum(t) * rt_comm_size(t->o.comm);
  if (!dp_update_graph(t, d, po, m) || !dp_buffers(t, d)) {
    if (!t->c->diag.nerr) diag_error(&t->c->diag, NOLOC, "training: out of memory");
    return false;
  }
#ifdef HEED_HAVE_LLVM
  t->pool = t->o.threads > 1 ? rt_pool_new(t->o.threads) : NULL;
  if (!(t->step = dp_compile(t, &d->gradg, t->ts.nfwd)) || !(t->arena = plan_arena(t, t->step, t->symvals, t->bufs)))
    return false;
  if (!(d->uprog = dp_compile(t, d->ug, 0)) || !(d->uarena = plan_arena(t, d->uprog, d->usym, d->ubufs)))
    return false;
  int nt = rt_pool_size(t->pool);
  snprintf(t->name, sizeof t->name, "compiled, %d thread%s", nt, nt == 1 ? "" : "s");
  return true;
#else
  return false;
#endif
}

// Micro-batch k of inputs (rows k * batch ..).
static void dp_micro(const HeedTrainer *t, const int32_t *const *inputs, int k, const int32_t **v) {
  int64_t bt = t->o.batch * t->o.seq;
  for (int i = 0; i < t->ts.nloss_inputs; i++) v[i] = inputs[i] + (int64_t)k * bt;
}

static bool dp_run(HeedTrainer *t, bool prefix) {
#ifdef HEED_HAVE_LLVM
  t->nsteps += !prefix;
  return prefix ? cg_run_prefix(t->step, t->symvals, t->bufs, &t->c->diag)
                : cg_run(t->step, t->symvals, t->bufs, &t->c->diag);
#else
  (void)t, (void)prefix;
  return false;
#endif
}

// The gradients of the micro-batches into d->acc (one process) or d->parts.
static bool dp_grads(HeedTrainer *t, const int32_t *const *inputs, double *mine) {
  TrainerDp *d = t->dp;
  const int32_t *v[8];
  for (int k = 0; k < dp_accum(t); k++) {
    dp_micro(t, inputs, k, v);
    bind_inputs(t, v, NULL, 0);
    if (!dp_run(t, false)) return false;
    mine[k] = ((const float *)t->bufs[t->ts.loss->id])[0];
    float *dst = d->parts ? d->parts[k] : d->acc;
    for (int i = 0; i < d->ngrad; i++) {
      const float *g = t->bufs[t->ts.params[i].grad->id];
      float *o = dst + d->off[i];
      int64_t n = ir_type_numel(&t->ts.params[i].param->ty, NULL);
      if (d->parts || k == 0) memcpy(o, g, sizeof(float) * (size_t)n);
      else
        for (int64_t j = 0; j < n; j++) o[j] = o[j] + g[j];
    }
  }
  return true;
}

static bool dp_step(HeedTrainer *t, const int32_t *const *inputs, double lr, int64_t step, double *loss,
                    double *grad_norm) {
  TrainerDp *d = t->dp;
  int k = dp_accum(t), nr = rt_comm_size(t->o.comm);
  char err[512];
  if (t->ts.nloss_inputs > 8) return diag_error(&t->c->diag, NOLOC, "training: too many loss inputs"), false;
  double *mine = d->losses + (size_t)rt_comm_rank(t->o.comm) * (size_t)k;
  if (!dp_grads(t, inputs, mine)) {
    diag_note(&t->c->diag, NOLOC, "in training step %lld", (long long)step);
    return false;
  }
  if ((d->parts && rt_comm_sum_fixed(t->o.comm, (const float *const *)d->parts, k, d->acc, d->nflat, err,
                                     sizeof err) != RT_OK) ||
      rt_comm_allgather(t->o.comm, mine, d->losses, (int64_t)sizeof(double) * k, err, sizeof err) != RT_OK) {
    diag_error(&t->c->diag, NOLOC, "step %lld: %s", (long long)step, err);
    return false;
  }
  double sum = 0;
  for (int i = 0; i < k * nr; i++) sum += d->losses[i];
  *loss = sum / (k * nr);
  // the update: its scalars, parameters, state and summed gradients
  double sc[3];
  int nsc = 1;
  if (t->ts.lr) sc[0] = lr;
  else scalars(t, lr, step, &sc[0], &sc[1], &sc[2]), nsc = 3;
  IrGraph *ug = d->ug;
  for (int i = 0; i < ug->params.len; i++) d->ubufs[ug->params.data[i]->id] = t->bufs[t->slots[d->uslot[i]].leaf->id];
  for (int i = 0; i < d->ngrad; i++) d->ubufs[ug->inputs.data[i]->id] = d->acc + d->off[i];
  for (int i = d->ngrad; i < ug->inputs.len && i - d->ngrad < nsc; i++)
    *(float *)d->ubufs[ug->inputs.data[i]->id] = (float)sc[i - d->ngrad];
#ifdef HEED_HAVE_LLVM
  if (!cg_run(d->uprog, d->usym, d->ubufs, &t->c->diag)) return false;
#endif
  *grad_norm = ((const float *)d->ubufs[d->uts.grad_norm->id])[0];
  if (!isfinite(*loss) || !isfinite(*grad_norm)) {
    report_nonfinite(t, NULL, step, *loss, *grad_norm);
    return false;
  }
  for (int i = 0; i < d->uts.nparams; i++) {  // the new values become the current ones
    const PassTrainParam *tp = &d->uts.params[i];
    for (int s = -1; s < tp->nstate; s++) {
      const IrNode *leaf = s < 0 ? tp->param : tp->state[s], *next = s < 0 ? tp->next : tp->state_next[s];
      int slot = -1;
      for (int j = 0; j < ug->params.len && slot < 0; j++)
        if (ug->params.data[j] == leaf) slot = d->uslot[j];
      void **cur = &t->bufs[t->slots[slot].leaf->id], *tmp = *cur;
      *cur = d->ubufs[next->id];
      d->ubufs[next->id] = tmp;
    }
  }
  return true;
}

// The mean loss over the micro-batches of the global batch in inputs.
static bool dp_eval(HeedTrainer *t, const int32_t *const *inputs, double *loss) {
  int m = dp_accum(t) * rt_comm_size(t->o.comm);
  const int32_t *v[8];
  double sum = 0;
  if (t->ts.nloss_inputs > 8) return false;
  for (int k = 0; k < m; k++) {
    dp_micro(t, inputs, k, v);
    bind_inputs(t, v, NULL, 0);
    if (!dp_run(t, true)) return false;
    sum += ((const float *)t->bufs[t->ts.loss->id])[0];
  }
  *loss = sum / m;
  return true;
}
