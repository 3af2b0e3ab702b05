// engine/trainer.c: the trainer behind `heed train` (trainer.h). Data flow:
// FeModel.loss --heed_compile(pipeline autodiff,train_step)--> one
// train-step graph --heed_compile(target cpu)--> CgProgram, run each step on buffers the trainer owns (one allocation for
// every node); or the reference interpreter (ir_interp) with opts.interp.
// After a step each parameter's and optimizer state's buffer is swapped with
// its "new.NAME" output's buffer (no copy). Evaluation runs the forward and
// loss prefix of the same graph on the same buffers; logits for sampling
// run the model's forward graph (compiled on first use) on the parameters'
// buffers in place.
#include <fnmatch.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/trainer.h"
#include "cli/run.h"
#include "engine/exec.h"
#include "passes/pass.h"
#include "runtime/comm.h"
#include "runtime/rt.h"
#ifdef HEED_HAVE_LLVM
#include "codegen/cg.h"
#endif

typedef struct {
  const char *name;
  IrNode *leaf;       // the PARAM (or state) leaf in the train graph
  IrNode *next;       // its new value (NULL: never updated, a buffer)
  IrNode *grad;       // trainable parameters: the gradient
  int64_t shape[IR_MAX_RANK];
  int64_t numel;
  bool is_state;
} Slot;

struct HeedTrainer {
  Compilation *c;
  const FeTrain *tr;
  HeedTrainerOpts o;
  IrGraph *g;           // the train-step graph (c->model->loss, extended)
  IrGraph evalg;        // g's first ts.nfwd nodes: forward and loss only
  PassTrainStep ts;
  int64_t symvals[IR_MAX_SYMS];
  Slot *slots;          // model parameters (forward order), then state
  int nslots;
  void **bufs;          // per node of g; compiled: all, interpreter: leaves
  unsigned char *mem;   // what the leaves' bufs point into (one allocation)
  void *arena, *farena; // compiled: the other nodes' (the step's and the forward's memory plans)
  RtPool *pool;
  // interpreter: values as doubles, per g->inputs and g->params
  double **iin, **ipar;
  // logits: the forward graph
  const IrGraph *fwd;
  int64_t fsym[IR_MAX_SYMS];
  bool fready;          // forward_setup done
  void **fbufs;         // compiled: per forward node (parameters: the trainer's buffers)
  unsigned char *fmem;
  float *flogits;       // interpreter: the converted result
  int64_t mem_bytes;    // of mem and fmem
  int64_t nsteps;       // compiled steps run (the profile's runs)
  int accum;            // micro-batches per step, of every rank (1: the whole step graph at once)
  int nranks, rank;     // o.comm's (1, 0: one process)
  float **acc;          // accum > 1: per slot with a gradient, its running sum (one allocation: acc[nslots])
  int64_t nacc;         // floats of the gradients packed (slots in order): acc[nslots]'s first nacc
  float **loc;          // nranks > 1: this rank's micro-batches' packed gradients (accum / nranks)
  // nranks > 1 with a threaded comm: the packed gradients in the order the
  // backward writes them, cut into buckets; the last micro-batch's bucket b
  // goes to the chain (a thread) once the head's calls [0, bcall[b]) ran
  int nbucket, *bcall, *bslot0;  // bslot0[b]..bslot0[b+1]: its slots in border
  int64_t *boff, *blen;          // its range of the packed gradients (floats)
  int *border;                   // slots with a gradient, in that order
  double comm_s, exposed_s;      // seconds in the gradient sum; of them, waited for after the backward
  char name[64];
#ifdef HEED_HAVE_LLVM
  CgProgram *step, *fprog;  // the step (its prefix: eval), the forward (sampling)
#endif
};

static const SrcLoc NOLOC = {0};

static int64_t node_bytes(const IrNode *n, const int64_t *symvals) {
  int64_t k = ir_type_numel(&n->ty, symvals);
  return k < 0 ? -1 : k * (int64_t)ir_dtype_info[n->ty.dt].size;
}

// One allocation for the buffers of nodes [0, n) of g, 64-byte aligned
// each; bufs[i] NULL where none. Compiled, the leaves' (the other nodes
// come from the program's memory plan, plan_arena).
typedef enum { BUF_ALL, BUF_LEAVES, BUF_INPUTS } BufWhich;
static unsigned char *alloc_buffers(Compilation *c, const IrGraph *g, int n, const int64_t *symvals, BufWhich which,
                                    void **bufs, int64_t *bytes) {
  int64_t total = 0;
  for (int pass = 0; pass < 2; pass++) {
    unsigned char *mem = pass ? heed_aligned_alloc(64, (size_t)total) : NULL;
    if (pass && !mem) break;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
      const IrNode *nd = g->nodes.data[i];
      bool leaf = nd->op == IR_OP_INPUT || nd->op == IR_OP_PARAM;
      bool want = which == BUF_ALL || (which == BUF_LEAVES && leaf) ||
                  (which == BUF_INPUTS && nd->op == IR_OP_INPUT);
      int64_t b = want ? node_bytes(nd, symvals) : 0;
      if (b < 0 || b > (INT64_C(1) << 46)) {
        diag_error(&c->diag, nd->loc, "training: the values of %s are too large", ir_op_name(nd->op));
        return NULL;
      }
      if (pass) bufs[i] = want ? mem + off : NULL;
      off += want ? (b + 63) / 64 * 64 + 64 : 0;  // (+64: kernels may read one vector past the end)
    }
    total = off + 64;
    if (pass) {
      memset(mem, 0, (size_t)total);
      *bytes += total;
      return mem;
    }
  }
  diag_error(&c->diag, NOLOC, "training: out of memory for the buffers (%lld bytes)", (long long)total);
  return NULL;
}

// Binds B = batch, T = seq from the loss inputs, which must be integer [B, T].
static bool bind_sizes(HeedTrainer *t) {
  const IrGraph *g = t->g;
  int n = g->inputs.len;
  const int64_t shape[2] = {t->o.batch, t->o.seq};
  const int64_t **shapes = heed_calloc((size_t)n + 1, sizeof *shapes);
  int *ranks = heed_calloc((size_t)n + 1, sizeof *ranks);
  bool ok = shapes && ranks;
  char buf[256];
  for (int i = 0; ok && i < n; i++) {
    const IrNode *in = g->inputs.data[i];
    if (in->ty.rank != 2 || !ir_dtype_info[in->ty.dt].is_int) {
      diag_error(&t->c->diag, in->loc, "training feeds integer token windows [B, T] to loss inputs, but '%s' is %s",
                 in->name, ir_type_str(&in->ty, &g->syms, true, buf, sizeof buf));
      ok = false;
    }
    shapes[i] = shape;
    ranks[i] = 2;
  }
  ok = ok && ir_bind_syms(g, shapes, ranks, t->symvals, &t->c->diag);
  heed_free(shapes);
  heed_free(ranks);
  return ok;
}

static IrNode *find_param(const IrGraph *g, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(g->params.data[i]->name, name)) return g->params.data[i];
  return NULL;
}

static Slot make_slot(IrNode *leaf, IrNode *next, IrNode *grad, bool is_state) {
  Slot s = {.name = leaf->name, .leaf = leaf, .next = next, .grad = grad, .is_state = is_state};
  ir_shape(&leaf->ty, NULL, s.shape);
  s.numel = ir_type_numel(&leaf->ty, NULL);
  return s;
}

// Slots in model order (the forward's parameters), then the state.
static bool make_slots(HeedTrainer *t) {
  const IrGraph *f = t->fwd;
  PassTrainStep *ts = &t->ts;
  int n = f->params.len, cap = n + ts->nparams * PASS_TRAIN_MAX_STATE;
  if (n != ts->nmodel_params) {
    diag_error(&t->c->diag, NOLOC, "training: internal error: the forward has %d parameters, the loss %d", n,
               ts->nmodel_params);
    return false;
  }
  t->slots = heed_calloc((size_t)cap + 1, sizeof(Slot));
  if (!t->slots) return false;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      IrNode *leaf = find_param(t->g, ts->nmodel_params, f->params.data[i]->name);
      if (!leaf) {
        diag_error(&t->c->diag, NOLOC, "training: internal error: no parameter '%s' in the loss graph",
                   f->params.data[i]->name);
        return false;
      }
      if (leaf->ty.dt != IR_F32) {
        diag_error(&t->c->diag, leaf->loc, "training keeps f32 parameters and buffers; '%s' is %s", leaf->name,
                   ir_dtype_info[leaf->ty.dt].name);
        return false;
      }
      const PassTrainParam *tp = NULL;
      for (int k = 0; k < ts->nparams && !tp; k++)
        if (ts->params[k].param == leaf) tp = &ts->params[k];
      if (!pass) t->slots[t->nslots++] = make_slot(leaf, tp ? tp->next : NULL, tp ? tp->grad : NULL, false);
      for (int k = 0; pass && tp && k < tp->nstate; k++)
        t->slots[t->nslots++] = make_slot(tp->state[k], tp->state_next[k], NULL, true);
    }
  return true;
}

#ifdef HEED_HAVE_LLVM
static CgProgram *compile(HeedTrainer *t, const IrGraph *g) {
  CgOptions co = {.pool = t->pool, .nthreads = rt_pool_size(t->pool), .parallel_for = (CgParallelFor)rt_parallel_for,
                  .cache_dir = heed_cache_dir(),
                  .profile = t->o.profile && g == t->g, .prefix = g == t->g ? t->ts.nfwd : 0,
                  .split = g == t->g && t->accum > 1 ? t->ts.ngrad : 0};
  HeedCompiled hc;
  heed_compile(t->c, &(HeedCompileOpts){.graph = (IrGraph *)g, .passes = "", .stop = HEED_STOP_EMIT, .cg = co}, &hc);
  CgProgram *p = hc.prog;
  hc.prog = NULL;
  heed_compiled_free(&hc);
  if (!p) diag_note(&t->c->diag, NOLOC, "the reference interpreter (--interp) runs any graph, slowly");
  return p;
}

// The buffers of p's computed nodes, from its memory plan (nodes whose
// values are not live at once share bytes; the graph's outputs, the new
// parameters and state among them, keep their own to the end, so the
// swaps after a step are safe). NULL with a diagnostic.
static void *plan_arena(HeedTrainer *t, const CgProgram *p, const int64_t *symvals, void **bufs) {
  int64_t n;
  void *arena = cg_plan_alloc(p, symvals, bufs, &n);
  if (!arena || n >= (INT64_C(1) << 46)) {
    diag_error(&t->c->diag, NOLOC, "training: out of memory for the values (%lld bytes)", (long long)n);
    heed_free(arena);
    return NULL;
  }
  memset(arena, 0, (size_t)n);
  t->mem_bytes += n;
  return arena;
}
#endif

// --freeze: the loss graph's trainable parameters that match a pattern
// become buffers (pass_train_step then neither differentiates nor updates
// them). A pattern matching no trainable parameter, or nothing left to
// train, is an error.
static bool freeze(Compilation *c, IrGraph *g, const char *const *pat, int npat) {
  for (int k = 0; k < npat; k++) {  // every pattern against the trainable parameters, before any is frozen
    bool hit = false;
    for (int i = 0; i < g->params.len && !hit; i++)
      hit = (g->params.data[i]->flags & IR_FLAG_PARAM) && fnmatch(pat[k], g->params.data[i]->name, 0) == 0;
    if (!hit) {
      diag_error(&c->diag, NOLOC, "--freeze '%s' matches no trainable parameter (heed check --params lists them)",
                 pat[k]);
      return false;
    }
  }
  int left = 0;
  for (int i = 0; i < g->params.len; i++) {
    IrNode *p = g->params.data[i];
    for (int k = 0; k < npat && (p->flags & IR_FLAG_PARAM); k++)
      if (fnmatch(pat[k], p->name, 0) == 0) p->flags = (p->flags & ~IR_FLAG_PARAM) | IR_FLAG_BUFFER;
    left += (p->flags & IR_FLAG_PARAM) != 0;
  }
  if (npat && !left) diag_error(&c->diag, NOLOC, "--freeze: every parameter is frozen; there is nothing to train");
  return !npat || left;
}

// The train step's passes (heed_compile's pipeline autodiff,train_step) on
// the loss graph; t->ts: where the step's pieces are.
static bool train_passes(HeedTrainer *t, const PassTrainOpts *po) {
  HeedCompiled hc;
  HeedCompileOpts ho = {.kind = HEED_GRAPH_TRAIN_STEP, .graph = t->g, .train = *po, .stop = HEED_STOP_PASSES};
  int rc = heed_compile(t->c, &ho, &hc);
  t->ts = hc.cx.ts;
  heed_compiled_free(&hc);
  return rc == HEED_OK;
}

// Gradient accumulation: the trainer runs on micro-batches of batch / K rows.
static bool accum_setup(HeedTrainer *t) {
  t->nranks = t->o.comm ? t->o.comm->size : 1;
  t->rank = t->o.comm ? t->o.comm->rank : 0;
  if (t->nranks > 1 && t->accum > 1 && t->accum % t->nranks)
    return diag_error(&t->c->diag, NOLOC, "--grad-accum %d: with %d ranks it must be a multiple of %d (the micro-batches "
                      "of all ranks together)", t->accum, t->nranks, t->nranks),
           false;
  if (t->accum < t->nranks) t->accum = t->nranks;
  if (t->accum == 1) return true;
  if (t->accum / t->nranks > 1024)
    return diag_error(&t->c->diag, NOLOC, "--grad-accum %d: at most 1024 micro-batches per rank", t->accum), false;
  const char *why = t->o.interp ? "is compiled code's (not --interp)" : NULL;
#ifndef HEED_HAVE_LLVM
  why = "needs the LLVM backend";
#endif
  if (why) return diag_error(&t->c->diag, NOLOC, "--grad-accum %d: gradient accumulation %s", t->accum, why), false;
  if (t->o.batch % t->accum)
    return diag_error(&t->c->diag, NOLOC, "%s%d does not divide the batch of %lld rows",
                      t->nranks > 1 && t->accum == t->nranks ? "the number of ranks, " : "--grad-accum ", t->accum,
                      (long long)t->o.batch),
           false;
  t->o.batch /= t->accum;
  return true;
}

static bool accum_alloc(HeedTrainer *t) {
  if (t->accum == 1) return true;
  int64_t total = 0;
  for (int i = 0; i < t->nslots; i++) total += t->slots[i].grad ? t->slots[i].numel : 0;
  int nloc = t->nranks > 1 ? t->accum / t->nranks : 0;  // and this rank's micro-batches' own
  t->nacc = total;
  t->acc = heed_calloc((size_t)t->nslots + 1, sizeof *t->acc);
  t->loc = heed_calloc((size_t)nloc + 1, sizeof *t->loc);
  total = (total + 15) / 16 * 16;  // each buffer a multiple of 64 bytes
  float *mem = t->acc && t->loc ? heed_aligned_alloc(64, (size_t)(total + 16) * (size_t)(nloc + 1) * sizeof(float)) : NULL;
  if (!mem) return diag_error(&t->c->diag, NOLOC, "training: out of memory"), false;
  t->acc[t->nslots] = mem;  // owned through the last entry (freed in heed_trainer_free)
  for (int j = 0; j < nloc; j++) t->loc[j] = mem + (total + 16) * (j + 1);
  for (int i = 0; i < t->nslots; i++)
    if (t->slots[i].grad) t->acc[i] = mem, mem += t->slots[i].numel;
  t->mem_bytes += (total + 16) * (nloc + 1) * (int64_t)sizeof(float);
  return true;
}

static bool overlap_setup(HeedTrainer *t);

HeedTrainer *heed_trainer_new(Compilation *c, const HeedTrainerOpts *o) {
  FeModel *m = c->model;
  if (!m || !m->train || !m->loss || !m->forward) {
    diag_error(&c->diag, m ? m->decl->name_loc : NOLOC, "model '%s' has no train section with a loss to train on",
               m ? m->decl->name : "?");
    return NULL;
  }
  HeedTrainer *t = heed_calloc(1, sizeof *t);
  if (!t) return diag_error(&c->diag, NOLOC, "training: out of memory"), NULL;
  int nerr = c->diag.nerr;  // a failure that reported nothing is an allocation's
  *t = (HeedTrainer){.c = c, .tr = m->train, .o = *o, .g = m->loss, .fwd = m->forward};
  if (t->o.batch <= 0) t->o.batch = m->train->batch;
  if (t->o.seq <= 0) t->o.seq = m->train->seq;
  t->accum = o->grad_accum > 1 ? o->grad_accum : 1;
  if (!accum_setup(t)) {
    heed_free(t);
    return NULL;
  }
#ifndef HEED_HAVE_LLVM
  t->o.interp = true;
#endif
  const FeTrain *tr = m->train;
  PassTrainOpts po = {.optimizer = tr->optimizer, .beta1 = tr->beta1, .beta2 = tr->beta2, .eps = tr->eps,
                      .weight_decay = tr->weight_decay, .momentum = tr->momentum, .clip = tr->clip};
  bool ok = freeze(c, t->g, o->freeze, o->nfreeze) && bind_sizes(t) && train_passes(t, &po) && make_slots(t) &&
            accum_alloc(t);
  if (ok) {
    t->evalg = *t->g;
    t->evalg.nodes.len = t->ts.nfwd;
    t->evalg.inputs.len = t->ts.nloss_inputs;
    t->evalg.params.len = t->ts.nmodel_params;
    t->evalg.outputs.len = t->evalg.output_names.len = 1;
    t->bufs = heed_calloc((size_t)t->g->nodes.len + 1, sizeof(void *));
    BufWhich which = BUF_LEAVES;  // compiled: the rest from the step's memory plan (plan_arena)
    ok = t->bufs &&
         (t->mem = alloc_buffers(c, t->g, t->g->nodes.len, t->symvals, which, t->bufs, &t->mem_bytes)) != NULL;
  }
  if (ok && t->o.interp) {
    t->iin = heed_calloc((size_t)t->g->inputs.len + 1, sizeof(double *));
    t->ipar = heed_calloc((size_t)t->g->params.len + 1, sizeof(double *));
    ok = t->iin && t->ipar;
    for (int pass = 0; ok && pass < 2; pass++)
      for (int i = 0; ok && i < (pass ? t->g->params.len : t->g->inputs.len); i++) {
        const IrNode *n = pass ? t->g->params.data[i] : t->g->inputs.data[i];
        int64_t k = ir_type_numel(&n->ty, t->symvals);
        ok = ((pass ? t->ipar : t->iin)[i] = heed_malloc(sizeof(double) * (size_t)(k > 0 ? k : 1))) != NULL;
      }
    if (!ok) diag_error(&c->diag, NOLOC, "training: out of memory");
  }
#ifdef HEED_HAVE_LLVM
  if (ok && !t->o.interp) {
    t->pool = t->o.threads > 1 ? rt_pool_new(t->o.threads) : NULL;
    ok = (t->step = compile(t, t->g)) != NULL && (t->arena = plan_arena(t, t->step, t->symvals, t->bufs)) &&
         overlap_setup(t);
    int nt = rt_pool_size(t->pool);
    snprintf(t->name, sizeof t->name, "compiled, %d thread%s", nt, nt == 1 ? "" : "s");
  }
#endif
  if (t->o.interp) snprintf(t->name, sizeof t->name, "reference interpreter");
  if (!ok) {
    if (c->diag.nerr == nerr) diag_error(&c->diag, NOLOC, "training: out of memory");
    heed_trainer_free(t);
    return NULL;
  }
  return t;
}

void heed_trainer_free(HeedTrainer *t) {
  if (!t) return;
  heed_free(t->bcall);
  heed_free(t->bslot0);
  heed_free(t->boff);
  heed_free(t->blen);
  heed_free(t->border);
#ifdef HEED_HAVE_LLVM
  cg_program_free(t->step);
  cg_program_free(t->fprog);
#endif
  for (int i = 0; t->iin && i < t->g->inputs.len; i++) heed_free(t->iin[i]);
  for (int i = 0; t->ipar && i < t->g->params.len; i++) heed_free(t->ipar[i]);
  heed_free(t->iin);
  heed_free(t->ipar);
  rt_pool_free(t->pool);
  heed_free(t->bufs);
  heed_free(t->mem);
  heed_free(t->arena);
  heed_free(t->fbufs);
  heed_free(t->fmem);
  heed_free(t->farena);
  heed_free(t->flogits);
  heed_free(t->slots);
  if (t->acc) heed_free(t->acc[t->nslots]);
  heed_free(t->acc);
  heed_free(t->loc);
  heed_free(t);
}

int64_t heed_trainer_trainable(const HeedTrainer *t, int *ntensors) {
  int64_t n = 0;
  for (int i = 0; i < t->ts.nparams; i++) n += ir_type_numel(&t->ts.params[i].param->ty, NULL);
  *ntensors = t->ts.nparams;
  return n;
}

const char *heed_trainer_name(const HeedTrainer *t) { return t->name; }
int64_t heed_trainer_memory_bytes(const HeedTrainer *t) { return t->mem_bytes; }
int heed_trainer_ninputs(const HeedTrainer *t) { return t->ts.nloss_inputs; }
const char *heed_trainer_input_name(const HeedTrainer *t, int i) { return t->g->inputs.data[i]->name; }
int heed_trainer_ntensors(const HeedTrainer *t) { return t->nslots; }

HeedTensorRef heed_trainer_tensor(HeedTrainer *t, int i) {
  const Slot *s = &t->slots[i];
  return (HeedTensorRef){.name = s->name, .rank = s->leaf->ty.rank, .shape = s->shape, .numel = s->numel,
                         .data = t->bufs[s->leaf->id], .is_state = s->is_state};
}

bool heed_trainer_init(HeedTrainer *t, uint64_t seed) {
  for (int i = 0; i < t->nslots; i++) {
    const Slot *s = &t->slots[i];
    float *out = t->bufs[s->leaf->id];
    if (s->is_state) {
      memset(out, 0, sizeof(float) * (size_t)s->numel);
      continue;
    }
    double *v = heed_malloc(sizeof(double) * (size_t)(s->numel ? s->numel : 1));
    if (!v) {
      diag_error(&t->c->diag, NOLOC, "training: out of memory");
      return false;
    }
    heed_init_values(s->name, &s->leaf->init, seed, v, s->numel);
    for (int64_t k = 0; k < s->numel; k++) out[k] = (float)v[k];
    heed_free(v);
  }
  return true;
}

// ---- binding and running ----

static void store_int(IrDType dt, void *buf, int64_t k, int32_t v) {
  switch (dt) {
  case IR_I64: ((int64_t *)buf)[k] = v; break;
  case IR_I32: ((int32_t *)buf)[k] = v; break;
  default: ((uint8_t *)buf)[k] = (uint8_t)v; break;  // i8, u8 (the checker's integer dtypes)
  }
}

// The step's scalars (computed in double, rounded to f32 as PyTorch does).
static void scalars(const HeedTrainer *t, double lr, int64_t step, double *decay, double *step_size,
                    double *bc2_sqrt) {
  const FeTrain *tr = t->tr;
  *decay = 1 - lr * tr->weight_decay;
  *step_size = lr / (1 - pow(tr->beta1, (double)step));
  *bc2_sqrt = sqrt(1 - pow(tr->beta2, (double)step));
}

// Writes the loss inputs (micro-batch mb: its rows of each input) and the
// step's scalars where the executor reads them.
static void bind_inputs(HeedTrainer *t, const int32_t *const *inputs, int mb, const double *sc, int nsc) {
  const IrGraph *g = t->g;
  int64_t bt = t->o.batch * t->o.seq, at = mb * bt;
  for (int i = 0; i < g->inputs.len; i++) {
    const IrNode *in = g->inputs.data[i];
    if (i < t->ts.nloss_inputs) {
      for (int64_t k = 0; k < bt; k++) {
        if (t->o.interp) t->iin[i][k] = inputs[i][at + k];
        else store_int(in->ty.dt, t->bufs[in->id], k, inputs[i][at + k]);
      }
    } else if (i - t->ts.nloss_inputs < nsc) {
      float v = (float)sc[i - t->ts.nloss_inputs];
      if (t->o.interp) t->iin[i][0] = v;
      else *(float *)t->bufs[in->id] = v;
    }
  }
}

// Interpreter: parameter and state values as doubles (g->params order).
static void bind_params(HeedTrainer *t, int n) {
  for (int i = 0; i < n; i++) {
    const IrNode *p = t->g->params.data[i];
    const float *src = t->bufs[p->id];
    int64_t k = ir_type_numel(&p->ty, NULL);
    for (int64_t j = 0; j < k; j++) t->ipar[i][j] = src[j];
  }
}

// The values of node n after a run (compiled: f32 in bufs; interpreter: vals).
static double value_at(const HeedTrainer *t, const IrValues *vals, const IrNode *n, int64_t k) {
  return vals ? vals->val[n->id][k] : ((const float *)t->bufs[n->id])[k];
}

// After a step whose loss or norm is not finite: names the first parameter
// (model order) whose gradient is not.
static void report_nonfinite(HeedTrainer *t, const IrValues *vals, int64_t step, double loss, double norm) {
  for (int i = 0; i < t->nslots; i++) {
    const Slot *s = &t->slots[i];
    if (!s->grad) continue;
    for (int64_t k = 0; k < s->numel; k++) {
      double v = value_at(t, vals, s->grad, k);
      if (!isfinite(v)) {
        diag_error(&t->c->diag, NOLOC,
                   "step %lld: the gradient of '%s' is not finite (%s at element %lld; loss %g); the parameters "
                   "keep their values from before this step",
                   (long long)step, s->name, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf", (long long)k, loss);
        return;
      }
    }
  }
  if (!isfinite(loss))
    diag_error(&t->c->diag, NOLOC, "step %lld: the loss is not finite (%g); the parameters keep their values from "
               "before this step", (long long)step, loss);
  else
    diag_error(&t->c->diag, NOLOC, "step %lld: the gradient norm overflows f32 (%g) though every gradient is finite; "
               "lower the learning rate", (long long)step, norm);
}

// Runs the whole step graph; true when it ran (vals: the interpreter's values).
static bool run_step(HeedTrainer *t, IrValues **vals) {
  if (t->o.interp) {
    bind_params(t, t->g->params.len);
    *vals = ir_interp(t->g, t->symvals, t->iin, t->ipar, false, &t->c->diag);
    return *vals != NULL;
  }
#ifdef HEED_HAVE_LLVM
  t->nsteps++;
  return cg_run(t->step, t->symvals, t->bufs, &t->c->diag);
#else
  return false;
#endif
}

// ---- data parallel: gradient buckets summed while the backward runs ----
// As PyTorch DDP's buckets: the packed gradients are laid out in the order
// the backward writes them and cut into buckets of about HEED_DP_BUCKET_KB
// (default 1024; 0: no overlap) KiB; during the rank's last micro-batch the head runs in
// pieces (cg_run_calls), and after the piece that completes bucket b a
// thread hands b to the chain (comm->ordered_sum on its range) while the
// backward goes on. Each element is still summed in micro-batch order along
// the same chain: the bits do not change, only when they travel. Needs a
// comm whose calls may come from a second thread (MPI_THREAD_SERIALIZED).

static double overlap_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#ifdef HEED_HAVE_LLVM
// The calls [0, n) of the head write slot i's gradient.
static int grad_calls(const HeedTrainer *t, int i) {
  int c = cg_node_call(t->step, t->slots[i].grad->id);
  return c < 0 ? 0 : c + 1;
}
#endif

static bool overlap_setup(HeedTrainer *t) {
#ifdef HEED_HAVE_LLVM
  if (t->nranks < 2 || t->accum < 2 || !t->o.comm->threads || !cg_head_calls(t->step)) return true;
  int n = 0;
  const char *env = getenv("HEED_DP_BUCKET_KB");
  int64_t kb = env && *env ? atoll(env) : 1024;
  char err[256];
  if (!t->o.comm->bcast(t->o.comm, &kb, sizeof kb, err, sizeof err))  // rank 0's: the ranks' buckets must match
    return diag_error(&t->c->diag, NOLOC, "data-parallel start (rank %d of %d): %s", t->rank, t->nranks, err), false;
  int64_t cap = kb * 1024 / (int64_t)sizeof(float);
  if (kb <= 0) return true;  // HEED_DP_BUCKET_KB=0: no overlap (one sum after the backward; benchmarks)
  t->border = heed_calloc((size_t)t->nslots + 1, sizeof(int));
  t->bcall = heed_calloc((size_t)t->nslots + 1, sizeof(int));
  t->bslot0 = heed_calloc((size_t)t->nslots + 2, sizeof(int));
  t->boff = heed_calloc((size_t)t->nslots + 1, sizeof(int64_t));
  t->blen = heed_calloc((size_t)t->nslots + 1, sizeof(int64_t));
  if (!t->border || !t->bcall || !t->bslot0 || !t->boff || !t->blen)
    return diag_error(&t->c->diag, NOLOC, "training: out of memory"), false;
  for (int i = 0; i < t->nslots; i++) {  // by the call that writes the gradient (insertion: stable)
    if (!t->slots[i].grad) continue;
    int k = n++;
    for (; k > 0 && grad_calls(t, t->border[k - 1]) > grad_calls(t, i); k--) t->border[k] = t->border[k - 1];
    t->border[k] = i;
  }
  float *base = t->acc[t->nslots];
  int64_t off = 0;
  for (int k = 0; k < n; k++) {  // the packed layout in that order; buckets of about cap floats
    int i = t->border[k];
    t->acc[i] = base + off;
    if (k == 0 || t->blen[t->nbucket - 1] >= cap) {
      t->bslot0[t->nbucket] = k;
      t->boff[t->nbucket++] = off;
    }
    t->blen[t->nbucket - 1] += t->slots[i].numel;
    t->bcall[t->nbucket - 1] = grad_calls(t, i);
    off += t->slots[i].numel;
  }
  t->bslot0[t->nbucket] = n;
#else
  (void)t;
#endif
  return true;
}

typedef struct {
  HeedTrainer *t;
  int mine, ready, done;  // buckets handed over, summed
  bool stop, failed;
  char err[256];
  pthread_mutex_t mu;
  pthread_cond_t cv;
} Overlap;

static void *overlap_thread(void *arg) {
  Overlap *o = arg;
  HeedTrainer *t = o->t;
  float *mine[1024];
  t->o.comm->polite = true;  // the backward needs the core: no spinning in MPI
  for (int b = 0; b < t->nbucket; b++) {
    pthread_mutex_lock(&o->mu);
    while (o->ready <= b && !o->stop) pthread_cond_wait(&o->cv, &o->mu);
    bool stop = o->stop && o->ready <= b;
    pthread_mutex_unlock(&o->mu);
    if (stop) break;
    for (int j = 0; j < o->mine; j++) mine[j] = t->loc[j] + t->boff[b];
    double t0 = overlap_now();
    bool ok = t->o.comm->ordered_sum(t->o.comm, t->acc[t->nslots] + t->boff[b], t->blen[b], mine, o->mine, o->err,
                                     sizeof o->err);
    t->comm_s += overlap_now() - t0;
    pthread_mutex_lock(&o->mu);
    o->done = b + 1;
    o->failed |= !ok;
    pthread_mutex_unlock(&o->mu);
    if (!ok) break;
  }
  return NULL;
}

// The head of this rank's last micro-batch (inputs bound) in pieces, each
// bucket's gradients packed into loc[mine - 1] and handed to the thread;
// returns when every bucket is summed into acc (the time waited for that
// after the backward: t->exposed_s).
static bool run_overlapped(HeedTrainer *t, int mine) {
#ifdef HEED_HAVE_LLVM
  Overlap *po = heed_calloc(1, sizeof *po);  // (left to the thread when the step fails: it may wait in the chain)
  pthread_t th;
  if (!po) return diag_error(&t->c->diag, NOLOC, "training: out of memory"), false;
  *po = (Overlap){.t = t, .mine = mine};
  pthread_mutex_init(&po->mu, NULL);
  pthread_cond_init(&po->cv, NULL);
  if (pthread_create(&th, NULL, overlap_thread, po) != 0) {
    heed_free(po);
    return diag_error(&t->c->diag, NOLOC, "data-parallel step: cannot start the communication thread"), false;
  }
  bool ok = true;
  int c = 0;
  float *dst = t->loc[mine - 1];
  for (int b = 0; b < t->nbucket && ok; b++) {
    if (t->bcall[b] > c) ok = cg_run_calls(t->step, c, t->bcall[b], t->symvals, t->bufs, &t->c->diag);
    c = t->bcall[b] > c ? t->bcall[b] : c;
    for (int k = t->bslot0[b]; ok && k < t->bslot0[b + 1]; k++) {
      const Slot *s = &t->slots[t->border[k]];
      memcpy(dst + (t->acc[t->border[k]] - t->acc[t->nslots]), t->bufs[s->grad->id], sizeof(float) * (size_t)s->numel);
    }
    pthread_mutex_lock(&po->mu);
    po->ready = ok ? b + 1 : po->ready;
    po->stop = !ok;
    pthread_cond_signal(&po->cv);
    pthread_mutex_unlock(&po->mu);
  }
  if (ok && c < cg_head_calls(t->step)) ok = cg_run_calls(t->step, c, cg_head_calls(t->step), t->symvals, t->bufs,
                                                           &t->c->diag);
  double t0 = overlap_now();
  if (!ok) {  // the thread may wait in the chain for ever: the caller ends the job (MPI_Abort)
    pthread_mutex_lock(&po->mu);
    po->stop = true;
    pthread_cond_signal(&po->cv);
    pthread_mutex_unlock(&po->mu);
    pthread_detach(th);
    return false;
  }
  pthread_join(th, NULL);
  t->o.comm->polite = false;
  t->exposed_s += overlap_now() - t0;
  pthread_mutex_destroy(&po->mu);
  pthread_cond_destroy(&po->cv);
  if (po->failed) {
    diag_error(&t->c->diag, NOLOC, "data-parallel step (rank %d of %d): %s", t->rank, t->nranks, po->err);
    ok = false;
  }
  heed_free(po);
  return ok;
#else
  (void)t, (void)mine;
  return false;
#endif
}

// Data-parallel: every rank's micro-batches' gradients summed in micro-batch
// order into acc (comm->ordered_sum: the same bits as one process's running
// sum), and the losses' sum in the same order.
static bool accum_ranks(HeedTrainer *t, const double *losses, int mine, double *sum, bool summed) {
  char err[256];
  double *all = heed_malloc(sizeof(double) * (size_t)t->accum), t0 = overlap_now();
  bool ok = all && t->o.comm->allgather(t->o.comm, losses, mine, all, err, sizeof err) &&
            (summed || t->o.comm->ordered_sum(t->o.comm, t->acc[t->nslots], t->nacc, t->loc, mine, err, sizeof err));
  if (!summed) t->comm_s += overlap_now() - t0, t->exposed_s += overlap_now() - t0;
  if (ok) {
    *sum = 0;
    for (int k = 0; k < t->accum; k++) *sum += all[k];
  } else {
    diag_error(&t->c->diag, NOLOC, "data-parallel step (rank %d of %d): %s", t->rank, t->nranks,
               all ? err : "out of memory");
  }
  heed_free(all);
  return ok;
}

// A step of accum micro-batches: the head (forward, loss, backward) per
// micro-batch, each gradient summed in order into t->acc, the mean written
// into the gradients' buffers (graph outputs: the tail reads them there),
// then the tail (norm, clipping, update). *loss: the micro-batches' mean.
static bool run_accum(HeedTrainer *t, const int32_t *const *inputs, const double *sc, int nsc, double *loss) {
#ifdef HEED_HAVE_LLVM
  double sum = 0, losses[1024];
  int mine = t->accum / t->nranks, base = t->rank * mine;
  t->nsteps++;
  for (int j = 0; j < mine; j++) {
    int mb = base + j;
    bind_inputs(t, inputs, mb, sc, nsc);
    bool last = t->nbucket > 0 && j == mine - 1;  // its buckets go to the chain as the backward writes them
    if (last ? !run_overlapped(t, mine) : !cg_run_head(t->step, t->symvals, t->bufs, &t->c->diag)) {
      diag_note(&t->c->diag, NOLOC, "in micro-batch %d of %d", mb + 1, t->accum);
      return false;
    }
    double l = ((const float *)t->bufs[t->ts.loss->id])[0];
    if (t->nranks > 1 && j < 1024) losses[j] = l;
    sum += l;
    for (int i = 0; i < t->nslots; i++) {  // one process: the running sum; ranks: this micro-batch's, packed
      const Slot *s = &t->slots[i];
      if (!s->grad || last) continue;
      const float *g = t->bufs[s->grad->id];
      float *a = t->nranks > 1 ? t->loc[j] + (t->acc[i] - t->acc[t->nslots]) : t->acc[i];
      if (j == 0 || t->nranks > 1) memcpy(a, g, sizeof(float) * (size_t)s->numel);
      else for (int64_t k = 0; k < s->numel; k++) a[k] += g[k];
    }
  }
  if (t->nranks > 1 && !accum_ranks(t, losses, mine, &sum, t->nbucket > 0)) return false;
  const float inv = 1.0f / (float)t->accum;
  for (int i = 0; i < t->nslots; i++) {
    const Slot *s = &t->slots[i];
    if (!s->grad) continue;
    float *g = t->bufs[s->grad->id];
    for (int64_t k = 0; k < s->numel; k++) g[k] = t->acc[i][k] * inv;
  }
  *loss = sum / t->accum;
  return cg_run_tail(t->step, t->symvals, t->bufs, &t->c->diag);
#else
  (void)t, (void)inputs, (void)sc, (void)nsc, (void)loss;
  return false;
#endif
}

void heed_trainer_profile(const HeedTrainer *t, FILE *f) {
  if (t->nranks > 1 && t->nsteps > 0)
    fprintf(f, "data parallel (rank %d of %d): %.2f ms per step summing gradients along the chain, %.2f ms of it "
            "waited for after the backward (%s)\n", t->rank, t->nranks, 1e3 * t->comm_s / (double)t->nsteps,
            1e3 * t->exposed_s / (double)t->nsteps,
            t->nbucket ? "overlapped: buckets sent as the backward writes them" : "not overlapped: one sum after "
            "the backward");
  if (t->nbucket && t->nsteps > 0) {
    int64_t big = 0;
    for (int b = 0; b < t->nbucket; b++) big = t->blen[b] > big ? t->blen[b] : big;
    fprintf(f, "  %d bucket%s of at most %lld floats (HEED_DP_BUCKET_KB)\n", t->nbucket, t->nbucket == 1 ? "" : "s",
            (long long)big);
  }
#ifdef HEED_HAVE_LLVM
  const double *ms = t->step ? cg_program_profile(t->step) : NULL;
  if (!ms) return;
  const CgProgramStats *st = cg_program_stats(t->step);
  heed_compile_print(f, "the step", st);
  heed_profile_print(f, &t->c->diag, t->g, ms, (int)(t->nsteps > INT32_MAX ? INT32_MAX : t->nsteps));
#else
  (void)t, (void)f;
#endif
}

bool heed_trainer_step(HeedTrainer *t, const int32_t *const *inputs, double lr, int64_t step, double *loss,
                       double *grad_norm) {
  if (step < 1) {
    diag_error(&t->c->diag, NOLOC, "training: step %lld: steps count from 1", (long long)step);
    return false;
  }
  double sc[3];
  int nsc = 1;
  if (t->ts.lr) sc[0] = lr;
  else scalars(t, lr, step, &sc[0], &sc[1], &sc[2]), nsc = 3;
  IrValues *vals = NULL;
  bool ran;
  if (t->accum > 1) {
    ran = run_accum(t, inputs, sc, nsc, loss);
  } else {
    bind_inputs(t, inputs, 0, sc, nsc);
    ran = run_step(t, &vals);
  }
  if (!ran) {
    diag_note(&t->c->diag, NOLOC, "in training step %lld; the parameters keep their values from before it",
              (long long)step);
    return false;
  }
  if (t->accum == 1) *loss = value_at(t, vals, t->ts.loss, 0);
  *grad_norm = value_at(t, vals, t->ts.grad_norm, 0);
  if (!isfinite(*loss) || !isfinite(*grad_norm)) {
    report_nonfinite(t, vals, step, *loss, *grad_norm);
    ir_values_free(vals);
    return false;
  }
  for (int i = 0; i < t->nslots; i++) {  // the new values become the current ones
    const Slot *s = &t->slots[i];
    if (!s->next) continue;
    if (vals) {
      float *dst = t->bufs[s->leaf->id];
      for (int64_t k = 0; k < s->numel; k++) dst[k] = (float)vals->val[s->next->id][k];
    } else {
      void *tmp = t->bufs[s->leaf->id];
      t->bufs[s->leaf->id] = t->bufs[s->next->id];
      t->bufs[s->next->id] = tmp;
    }
  }
  ir_values_free(vals);
  return true;
}

bool heed_trainer_eval(HeedTrainer *t, const int32_t *const *inputs, double *loss) {
#ifdef HEED_HAVE_LLVM
  if (t->accum > 1) {  // the micro-batches' mean, as a step's loss
    double sum = 0;
    for (int mb = 0; mb < t->accum; mb++) {
      bind_inputs(t, inputs, mb, NULL, 0);
      if (!cg_run_prefix(t->step, t->symvals, t->bufs, &t->c->diag)) return false;
      sum += ((const float *)t->bufs[t->ts.loss->id])[0];
    }
    *loss = sum / t->accum;
    return true;
  }
#endif
  bind_inputs(t, inputs, 0, NULL, 0);
  if (t->o.interp) {
    bind_params(t, t->ts.nmodel_params);
    IrValues *vals = ir_interp(&t->evalg, t->symvals, t->iin, t->ipar, false, &t->c->diag);
    if (!vals) return false;
    *loss = vals->val[t->ts.loss->id][0];
    ir_values_free(vals);
    return true;
  }
#ifdef HEED_HAVE_LLVM
  // the step's forward and loss (its prefix entry) on the step's buffers:
  // the plan gives the step's outputs (the loss, the new parameters and
  // state, swapped in as leaves after each step) bytes no other node shares
  if (!cg_run_prefix(t->step, t->symvals, t->bufs, &t->c->diag)) return false;
  *loss = ((const float *)t->bufs[t->ts.loss->id])[0];
  return true;
#else
  return false;
#endif
}

// ---- logits for sampling: the forward graph, B = 1 ----

static bool forward_setup(HeedTrainer *t) {
  const IrGraph *f = t->fwd;
  const IrNode *in = f->inputs.len == 1 ? f->inputs.data[0] : NULL;
  const IrNode *out = f->outputs.len == 1 ? f->outputs.data[0] : NULL;
  if (!in || in->ty.rank != 2 || !ir_dtype_info[in->ty.dt].is_int || !out || out->ty.rank != 3 ||
      out->ty.dt != IR_F32) {
    diag_error(&t->c->diag, NOLOC, "sampling needs a forward(tokens: i32[B, T]) returning f32 logits [B, T, V]");
    return false;
  }
  const int64_t shape[2] = {1, t->o.seq}, *shapes[1] = {shape};
  const int ranks[1] = {2};
  if (!ir_bind_syms(f, shapes, ranks, t->fsym, &t->c->diag)) return false;
  if (t->o.interp) {
    int64_t nl = ir_type_numel(&out->ty, t->fsym);
    t->flogits = heed_malloc(sizeof(float) * (size_t)(nl > 0 ? nl : 1));
    t->mem_bytes += (int64_t)sizeof(float) * nl;
    return t->fready = t->flogits != NULL;
  }
  t->fbufs = heed_calloc((size_t)f->nodes.len + 1, sizeof(void *));
  if (!t->fbufs || !(t->fmem = alloc_buffers(t->c, f, f->nodes.len, t->fsym, BUF_INPUTS, t->fbufs, &t->mem_bytes)))
    return false;
#ifdef HEED_HAVE_LLVM
  if (!(t->fprog = compile(t, f)) || !(t->farena = plan_arena(t, t->fprog, t->fsym, t->fbufs))) return false;
#endif
  return t->fready = true;
}

bool heed_trainer_logits(HeedTrainer *t, const int32_t *tokens, int64_t n, const float **logits) {
  if (n < 1 || n > t->o.seq) {
    diag_error(&t->c->diag, NOLOC, "logits: %lld tokens, but the trainer's sequences hold 1 to %lld",
               (long long)n, (long long)t->o.seq);
    return false;
  }
  if (!t->fready && !forward_setup(t)) return false;
  const IrGraph *f = t->fwd;
  const IrNode *in = f->inputs.data[0], *out = f->outputs.data[0];
  const int64_t shape[2] = {1, n}, *shapes[1] = {shape};
  const int ranks[1] = {2};
  if (!ir_bind_syms(f, shapes, ranks, t->fsym, &t->c->diag)) return false;
  if (t->o.interp) {
    double *din = heed_malloc(sizeof(double) * (size_t)n);
    double **par = heed_calloc((size_t)f->params.len + 1, sizeof(double *));
    bool ok = din && par;
    for (int64_t k = 0; ok && k < n; k++) din[k] = tokens[k];
    for (int i = 0; ok && i < f->params.len; i++) {  // slot i is the forward's parameter i
      const Slot *s = &t->slots[i];
      const float *src = t->bufs[s->leaf->id];
      ok = (par[i] = heed_malloc(sizeof(double) * (size_t)(s->numel ? s->numel : 1))) != NULL;
      for (int64_t k = 0; ok && k < s->numel; k++) par[i][k] = src[k];
    }
    IrValues *vals = ok ? ir_interp(f, t->fsym, &din, par, false, &t->c->diag) : NULL;
    int64_t nl = ir_type_numel(&out->ty, t->fsym);
    for (int64_t k = 0; vals && k < nl; k++) t->flogits[k] = (float)vals->val[out->id][k];
    for (int i = 0; par && i < f->params.len; i++) heed_free(par[i]);
    heed_free(par);
    heed_free(din);
    ir_values_free(vals);
    *logits = t->flogits;
    return vals != NULL;
  }
#ifdef HEED_HAVE_LLVM
  for (int64_t k = 0; k < n; k++) store_int(in->ty.dt, t->fbufs[in->id], k, tokens[k]);
  for (int i = 0; i < f->params.len; i++) t->fbufs[f->params.data[i]->id] = t->bufs[t->slots[i].leaf->id];
  if (!cg_run(t->fprog, t->fsym, t->fbufs, &t->c->diag)) return false;
  *logits = t->fbufs[out->id];
  return true;
#else
  (void)in;
  return false;
#endif
}

// ---- the learning-rate schedule ----

double heed_train_lr(const FeTrain *tr, int64_t step, int64_t total_steps) {
  double lr = tr->lr, w = tr->warmup, s = (double)step, n = (double)total_steps;
  if (!strcmp(tr->schedule, "constant")) return lr;
  if (s <= w) return lr * s / w;
  double p = n > w ? (s - w) / (n - w) : 1;
  bool cosine = !strcmp(tr->schedule, "cosine");
  if (p >= 1) return cosine ? tr->min_lr : 0;
  if (cosine) return tr->min_lr + (lr - tr->min_lr) * 0.5 * (1 + cos(3.14159265358979323846 * p));
  return lr * (1 - p);
}
