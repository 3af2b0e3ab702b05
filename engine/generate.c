// engine/generate.c: generation's executor (generate.h), behind `heed
// generate` (cli/generate_cmd.c: flags, prompt, printing). The glue between the frontend's forward (FeModel.forward), the
// KV-cache pass (passes/kvcache.c), an executor for the step graph
// (compiled code through codegen/, or the reference interpreter with
// --interp) and the runtime's tokenizer, sampler and generation loop
// (runtime/rt.h), which calls the model through RtGenModel callbacks:
//
//   prompt --rt_tok_encode--> ids --rt_generate--> prefill(ids)  step graph, T = n, pos = 0
//                                                   sample, emit -> the caller
//                                                   decode(tok, pos) step graph, T = 1
//
// The window (heed_gen_window: the trained sequence length, or the
// context, or --window) bounds the positions; rt_generate slides it, so
// any -n works. A forward with several outputs generates from the one that
// holds the logits (heed_logits_output, --output NAME).
//
// A forward the pass cannot make incremental (bidirectional attention)
// generates by running the whole forward over the sequence for every token,
// and says so once. Extra forward inputs (BERT's token types and mask) are
// then all zeros, or all true for bool ones.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/generate.h"
#include "passes/pass.h"
#include "runtime/rt.h"
#ifdef HEED_HAVE_LLVM
#include "codegen/cg.h"
#endif

struct HeedGen {
  Compilation *c;
  const IrGraph *g;   // the step graph, or the forward (recomputation)
  bool incremental, interp;
  double **params;    // g's parameters (interpreter)
  int64_t sv[IR_MAX_SYMS];
  int sB, sT, sKV;    // symbol indices in g (sKV: incremental only)
  int out;            // g's output holding the logits
  int64_t vocab, cap; // cap: positions the caches (or the history) hold
  bool windowed;      // cap is bounded by a window (else: the prompt and -n)
  int64_t window;     // the window rt_generate slides (0: none)
  double **cache;     // interpreter, incremental: one per cache input
  int ncache;
  int32_t *hist;      // recomputation: every token so far
  int64_t nhist;
#ifdef HEED_HAVE_LLVM
  CgProgram *prog;
  void **bufs;
  void *arena;  // the computed nodes' buffers (cg_plan_alloc_inplace); the leaves' are their own
#endif
  RtPool *pool;
  bool clone;   // heed serve's other slots: g, prog, pool and the parameters are slot 0's
  char msg[256];
};
typedef HeedGen Gen;

static int find_sym(const IrGraph *g, const char *name) {
  for (int i = 0; i < g->syms.len; i++)
    if (!strcmp(g->syms.data[i], name)) return i;
  return -1;
}

// Recomputation fills the forward's other inputs: an attention mask (any
// dtype) with "keep" (1), anything else (token type ids, ...) with 0.
static bool is_mask_input(const IrGraph *g, const IrNode *in) {
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (n->op == IR_OP_ATTENTION && n->nsrc > 3 && n->src[3] == in) return true;
  }
  return false;
}

// ---- one run of g over T tokens at pos; the last position's logits ----

static bool run_interp(Gen *x, const int32_t *tok, int64_t T, int64_t pos, float *logits) {
  const IrGraph *g = x->g;
  int nin = g->inputs.len;
  double **in = heed_calloc((size_t)nin + 1, sizeof(double *)), p = (double)pos;
  double *td = heed_malloc(sizeof(double) * (size_t)T);
  bool ok = in && td;
  for (int64_t i = 0; ok && i < T; i++) td[i] = tok[i];
  for (int i = 0; ok && i < nin; i++) {
    const IrNode *n = g->inputs.data[i];
    if (i == 0) in[i] = td;
    else if (x->incremental && i == 1) in[i] = &p;
    else if (x->incremental) in[i] = x->cache[i - 2];
    else if ((in[i] = heed_malloc(sizeof(double) * (size_t)T)))  // recomputation: zeros, or masks that keep all
      for (int64_t j = 0; j < T; j++) in[i][j] = n->ty.dt == IR_BOOL || is_mask_input(g, n);
    else ok = false;
  }
  IrValues *v = ok ? ir_interp(g, x->sv, in, x->params, false, &x->c->diag) : NULL;
  if (v) {
    const double *lg = v->val[g->outputs.data[x->out]->id] + (T - 1) * x->vocab;
    for (int64_t i = 0; i < x->vocab; i++) logits[i] = (float)lg[i];
    for (int i = 1; x->incremental && i < g->outputs.len; i++)  // the appended caches, in input order
      memcpy(x->cache[i - 1], v->val[g->outputs.data[i]->id], sizeof(double) * (size_t)v->numel[g->outputs.data[i]->id]);
  }
  for (int i = x->incremental ? nin : 1; in && i < nin; i++) heed_free(in[i]);
  ir_values_free(v);
  heed_free(in), heed_free(td);
  return v != NULL;
}

#ifdef HEED_HAVE_LLVM
static bool run_compiled(Gen *x, const int32_t *tok, int64_t T, int64_t pos) {
  const IrGraph *g = x->g;
  const IrNode *ti = g->inputs.data[0];
  for (int64_t i = 0; i < T; i++) {
    if (ti->ty.dt == IR_I64) ((int64_t *)x->bufs[ti->id])[i] = tok[i];
    else ((int32_t *)x->bufs[ti->id])[i] = tok[i];
  }
  for (int i = 1; i < g->inputs.len; i++) {  // pos, or the recomputation's extra inputs
    const IrNode *n = g->inputs.data[i];
    if (x->incremental && i == 1) *(int32_t *)x->bufs[n->id] = (int32_t)pos;
    else if (!x->incremental)  // byte 1 in every element: non-zero, a mask that keeps all
      memset(x->bufs[n->id], n->ty.dt == IR_BOOL || is_mask_input(g, n), (size_t)cg_buffer_bytes(x->prog, (int)n->id, x->sv));
  }
  return cg_run(x->prog, x->sv, x->bufs, &x->c->diag);
}
#endif

static bool run(Gen *x, const int32_t *tok, int64_t T, int64_t pos, float *logits) {
  x->sv[x->sB] = 1;
  x->sv[x->sT] = T;
  if (x->incremental) x->sv[x->sKV] = x->cap;
  if (x->interp) return run_interp(x, tok, T, pos, logits);
#ifdef HEED_HAVE_LLVM
  if (!run_compiled(x, tok, T, pos)) return false;
  memcpy(logits, (float *)x->bufs[x->g->outputs.data[x->out]->id] + (T - 1) * x->vocab,
         sizeof(float) * (size_t)x->vocab);
  return true;
#else
  return false;
#endif
}

// ---- RtGenModel callbacks ----

static int gen_prefill(void *ud, const int32_t *tokens, int64_t n, float *logits) {
  Gen *x = ud;
  if (!x->incremental) {
    memcpy(x->hist, tokens, sizeof(int32_t) * (size_t)n);
    x->nhist = n;
    return run(x, x->hist, n, 0, logits) ? 0 : 1;
  }
  return run(x, tokens, n, 0, logits) ? 0 : 1;
}

static int gen_decode(void *ud, int32_t token, int64_t pos, float *logits) {
  Gen *x = ud;
  if (!x->incremental) {
    x->hist[x->nhist++] = token;
    return run(x, x->hist, x->nhist, 0, logits) ? 0 : 1;
  }
  return run(x, &token, 1, pos, logits) ? 0 : 1;
}

static const char *gen_message(void *ud) {
  (void)ud;
  return "a run-time error (reported above)";
}

// ---- setup ----

// An allocation of bytes for what failed: said with the size and where the
// positions come from; false.
static bool gen_nomem(Gen *x, SrcLoc loc, const char *what, uint64_t bytes) {
  char b[32];
  diag_error(&x->c->diag, loc, "cannot allocate %s for %s (%lld positions%s)", diag_bytes(b, bytes), what,
             (long long)x->cap, x->windowed ? "" : ": the prompt and -n, as the model has no window; --window N bounds them");
  return false;
}

#ifdef HEED_HAVE_LLVM
// The leaves' buffers, one each (an allocation that fails names its leaf):
// parameters converted to f32 once; tokens, pos and the caches zeroed.
static bool alloc_leaves(Gen *x) {
  const IrGraph *g = x->g;
  for (int i = 0, pi = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    int64_t bytes = cg_buffer_bytes(x->prog, i, x->sv);
    if (bytes < 0 || !(x->bufs[i] = heed_calloc(1, (size_t)bytes + 64))) {
      char what[300];
      snprintf(what, sizeof what, "the values of %s%s%s", ir_op_name(n->op), n->name ? " " : "", n->name ? n->name : "");
      return gen_nomem(x, n->loc, what, bytes < 0 ? UINT64_MAX : (uint64_t)bytes + 64);
    }
    if (n->op != IR_OP_PARAM) continue;
    float *f = x->bufs[i];
    for (int64_t j = 0; j < bytes / 4; j++) f[j] = (float)x->params[pi][j];
    heed_free(x->params[pi]);
    x->params[pi++] = NULL;
  }
  return true;
}
#endif

// Native buffers for the largest sizes: the leaves (alloc_leaves) and the
// step's memory plan (one arena: nodes whose values are not live at once
// share bytes); each appended cache is its input's buffer (the append is in
// place), not the arena's.
static bool setup_compiled(Gen *x, int threads, int64_t tmax) {
#ifdef HEED_HAVE_LLVM
  const IrGraph *g = x->g;
  x->pool = threads > 1 ? rt_pool_new(threads) : NULL;
  CgOptions o = {.pool = x->pool, .nthreads = rt_pool_size(x->pool), .parallel_for = (CgParallelFor)rt_parallel_for,
                 .cache_dir = heed_cache_dir()};
  HeedCompiled hc;
  heed_compile(x->c, &(HeedCompileOpts){.graph = (IrGraph *)g, .passes = "", .stop = HEED_STOP_EMIT, .cg = o}, &hc);
  x->prog = hc.prog, hc.prog = NULL;
  heed_compiled_free(&hc);
  if (!x->prog) return false;
  x->sv[x->sB] = 1, x->sv[x->sT] = tmax;
  if (x->incremental) x->sv[x->sKV] = x->cap;
  x->bufs = heed_calloc((size_t)g->nodes.len + 1, sizeof(void *));
  if (!x->bufs) return gen_nomem(x, (SrcLoc){0}, "the value table", sizeof(void *) * ((uint64_t)g->nodes.len + 1));
  if (!alloc_leaves(x)) return false;
  for (int i = 0; i < g->nodes.len; i++)  // each appended cache is its input's buffer: the append is in place
    if (g->nodes.data[i]->op == IR_OP_KV_APPEND) x->bufs[i] = x->bufs[g->nodes.data[i]->src[0]->id];
  int64_t ab;  // the other computed nodes: offsets in one arena, from the step's memory plan
  if (!(x->arena = cg_plan_alloc_inplace(x->prog, x->sv, x->bufs, true, &ab)))
    return gen_nomem(x, (SrcLoc){0}, "the values (the memory plan's arena)", ab < 0 ? UINT64_MAX : (uint64_t)ab + 64);
  memset(x->arena, 0, (size_t)ab);
  return true;
#else
  (void)x, (void)threads, (void)tmax;
  return false;
#endif
}

static bool setup_interp(Gen *x) {
  if (!x->incremental) return true;
  x->ncache = x->g->inputs.len - 2;
  x->cache = heed_calloc((size_t)x->ncache + 1, sizeof(double *));
  if (!x->cache) return gen_nomem(x, (SrcLoc){0}, "the KV cache table", sizeof(double *) * ((uint64_t)x->ncache + 1));
  for (int i = 0; i < x->ncache; i++) {
    const IrNode *in = x->g->inputs.data[2 + i];
    int64_t n = x->cap * in->ty.dim[2].n;
    if (!(x->cache[i] = heed_calloc((size_t)n + 1, sizeof(double)))) {
      char what[300];
      snprintf(what, sizeof what, "the KV cache '%s'", in->name);
      return gen_nomem(x, (SrcLoc){0}, what, sizeof(double) * ((uint64_t)n + 1));
    }
  }
  return true;
}

static void gen_free(Gen *x) {
  if (!x) return;
#ifdef HEED_HAVE_LLVM
  if (x->clone) {  // its own inputs (tokens, pos, caches) and table; the rest is slot 0's
    for (int i = 0; x->bufs && i < x->g->nodes.len; i++)
      if (x->g->nodes.data[i]->op == IR_OP_INPUT) heed_free(x->bufs[i]);
    heed_free(x->bufs);
    return;
  }
#endif
  for (int i = 0; x->params && i < x->g->params.len; i++) heed_free(x->params[i]);
  heed_free(x->params);
  for (int i = 0; x->cache && i < x->ncache; i++) heed_free(x->cache[i]);
  heed_free(x->cache);
  heed_free(x->hist);
#ifdef HEED_HAVE_LLVM
  for (int i = 0; x->bufs && i < x->g->nodes.len; i++)
    if (x->g->nodes.data[i]->op == IR_OP_INPUT || x->g->nodes.data[i]->op == IR_OP_PARAM) heed_free(x->bufs[i]);
  heed_free(x->arena);
  heed_free(x->bufs);
  cg_program_free(x->prog);
#endif
  rt_pool_free(x->pool);
}

int64_t heed_model_context(const Compilation *c) {
  int64_t ctx = pass_kv_context(c->model->forward);
  static const char *names[] = {"block_size", "ctx", "n_ctx", "context_length", "max_seq_len",
                                "max_position_embeddings", "seq_len", "max_seq_length"};
  for (int d = 0; !ctx && d < c->ast->ndecls; d++) {
    const FeDecl *dc = c->ast->decls[d];
    for (int i = 0; dc->kind == FE_DECL_CONFIG && !ctx && i < dc->nitems; i++) {
      const FeItem *it = dc->items[i];
      bool named = false;
      for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) named = named || !strcmp(it->name, names[k]);
      if (it->kind != FE_IT_BIND || !named || !it->expr || it->expr->kind != FE_EX_INT) continue;
      ctx = it->expr->ival;
      for (int o = 0; o < c->opts->check.noverrides; o++)
        if (!strcmp(c->opts->check.overrides[o].key, it->name)) ctx = strtoll(c->opts->check.overrides[o].value, NULL, 10);
    }
  }
  return ctx > 0 ? ctx : 0;
}

int heed_gen_window(Compilation *c, int64_t override, int64_t *window, char *note, size_t notelen) {
  int64_t ctx = heed_model_context(c), seq = c->model->train ? c->model->train->seq : 0;
  const char *name = c->model->decl->name;
  note[0] = 0;
  if (override > 0 && ctx && override > ctx) {
    diag_error(&c->diag, (SrcLoc){0}, "--window %lld is larger than %s's context of %lld positions",
               (long long)override, name, (long long)ctx);
    return HEED_ERR_USAGE;
  }
  *window = override > 0 ? override : seq > 0 && (!ctx || seq < ctx) ? seq : ctx;
  if (override > 0 && (!ctx || override < ctx))
    snprintf(note, notelen, "note: generating with a %lld-token window (--window; the context of %s is %lld)",
             (long long)override, name, (long long)ctx);
  else if (override <= 0 && *window == seq && seq != ctx)
    snprintf(note, notelen, "note: generating with a %lld-token window, the sequence length %s was trained at "
             "(its context is %lld)", (long long)seq, name, (long long)ctx);
  return HEED_OK;
}

// The rows of the table the tokens index (wte[tokens]), or 0.
static int64_t token_table_rows(const IrGraph *f) {
  const IrNode *tok = f->inputs.len ? f->inputs.data[0] : NULL;
  for (int i = 0; tok && i < f->nodes.len; i++) {
    const IrNode *n = f->nodes.data[i];
    if (n->op == IR_OP_GATHER && n->src[1] == tok && ir_dim_is_const(n->src[0]->ty.dim[0])) return n->src[0]->ty.dim[0].n;
  }
  return 0;
}

static bool is_logits(const IrGraph *f, const IrType *o, int64_t vocab) {
  const IrNode *in = f->inputs.len ? f->inputs.data[0] : NULL;
  return in && in->ty.rank == 2 && o->rank == 3 && o->dt == IR_F32 && ir_dim_is_const(o->dim[2]) &&
         ir_dim_eq(o->dim[1], in->ty.dim[1]) && (!vocab || o->dim[2].n == vocab);
}

int heed_logits_output(Compilation *c, const IrGraph *f, const char *name, const char *cmd, int *index) {
  char list[600] = "";
  size_t len = 0;
  for (int i = 0; i < f->outputs.len && len < sizeof list - 1; i++) {
    char ty[128];
    ir_type_str(&f->outputs.data[i]->ty, &f->syms, true, ty, sizeof ty);
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s %s", i ? ", " : "", f->output_names.data[i], ty);
  }
  int64_t vocab = token_table_rows(f);
  if (name) {
    for (int i = 0; i < f->outputs.len; i++)
      if (!strcmp(f->output_names.data[i], name)) {
        *index = i;
        if (is_logits(f, &f->outputs.data[i]->ty, 0)) return HEED_OK;
        diag_error(&c->diag, (SrcLoc){0}, "--output %s: heed %s needs logits f32[B, T, vocab] (the forward returns %s)",
                   name, cmd, list);
        return HEED_ERR_CHECK;
      }
    diag_error(&c->diag, (SrcLoc){0}, "--output %s: %s's forward has no output of that name (it returns %s)", name,
               c->model->decl->name, list);
    return HEED_ERR_USAGE;
  }
  int found = 0;
  for (int pass = 0; pass < 2 && found != 1; pass++) {  // pass 0: last dim = the token table's rows
    found = 0;
    for (int i = f->outputs.len - 1; i >= 0; i--)
      if (is_logits(f, &f->outputs.data[i]->ty, pass ? 0 : vocab)) found++, *index = i;
    if (!vocab) pass++;
  }
  if (found == 1) return HEED_OK;
  diag_error(&c->diag, c->model->decl->name_loc, "model '%s' cannot %s: %s of its outputs (%s) look%s like logits "
             "f32[B, T, vocab]%s", c->model->decl->name, cmd, found ? "several" : "none", list, found ? "" : "s",
             found ? "; choose one with --output NAME" : "");
  return HEED_ERR_CHECK;
}

// The forward's inputs: integer tokens (B, T) first, others (B, T) integer or bool.
bool heed_gen_check_forward(Compilation *c, const IrGraph *f) {
  const IrNode *in = f->inputs.len ? f->inputs.data[0] : NULL;
  bool ok = in && in->ty.rank == 2 && ir_dtype_info[in->ty.dt].is_int;
  for (int i = 1; ok && i < f->inputs.len; i++) {
    const IrType *t = &f->inputs.data[i]->ty;
    ok = t->rank == 2 && ir_dim_eq(t->dim[1], in->ty.dim[1]) && (t->dt == IR_BOOL || ir_dtype_info[t->dt].is_int);
  }
  if (!ok)
    diag_error(&c->diag, c->model->decl->name_loc,
               "model '%s' cannot generate: its forward must take integer tokens (B, T) (and other (B, T) integer or "
               "bool inputs) and return f32 logits (B, T, vocab)", c->model->decl->name);
  return ok;
}

// Threads: --threads N, else the built programs' rule (rt.h): one for
// weights under RT_SMALL_MODEL_BYTES (a small model's decode step is over
// before a second thread gets going), else the cores.
int heed_gen_threads(const IrGraph *f, int threads, bool threads_auto) {
  if (!threads_auto) return threads;
  int64_t bytes = 0;
  for (int i = 0; i < f->params.len; i++) {
    const IrType *t = &f->params.data[i]->ty;
    int64_t n = ir_type_numel(t, NULL);
    bytes += n < 0 ? RT_SMALL_MODEL_BYTES : n * ir_dtype_info[t->dt].size;
  }
  return bytes < RT_SMALL_MODEL_BYTES ? 1 : threads;
}

// Builds the executor: the step graph, or the forward for recomputation.
static bool gen_setup(Gen *x, Compilation *c, double **params, int threads, int out, int64_t n_prompt, int64_t cap) {
  const IrGraph *f = c->model->forward;
  HeedCompiled hc;  // the decode step's passes (kvcache); the executor compiles the result
  int rc = heed_compile(c, &(HeedCompileOpts){.kind = HEED_GRAPH_DECODE, .decode_output = out, .stop = HEED_STOP_PASSES},
                        &hc);
  const char *why = hc.cx.why;
  heed_compiled_free(&hc);
  if (rc != HEED_OK && !why[0]) return false;
  x->g = rc == HEED_OK ? hc.g : NULL;
  x->incremental = x->g != NULL;
  x->out = x->incremental ? 0 : out;  // the step graph keeps only the logits (then its caches)
  if (!x->incremental) {
    fprintf(stderr, "heed generate: note: %s cannot decode incrementally (%s); generating by recomputing the "
            "whole sequence for every token\n", c->model->decl->name, why);
    x->g = f;
    x->cap = cap;
    x->hist = heed_malloc(sizeof(int32_t) * (size_t)(cap + 1));
    if (!x->hist) return gen_nomem(x, (SrcLoc){0}, "the token history", sizeof(int32_t) * ((uint64_t)cap + 1));
  }
  x->cap = cap;
  x->sB = find_sym(x->g, "B"), x->sT = find_sym(x->g, f->syms.data[f->inputs.data[0]->ty.dim[1].sym[0]]);
  x->sKV = x->incremental ? find_sym(x->g, "KV") : -1;
  if (x->sB < 0) x->sB = IR_MAX_SYMS - 1;  // a forward without B (tokens (1, T)): a spare slot
  x->params = params;
  if (x->interp) return setup_interp(x);
  int64_t keep = rt_gen_keep(cap);  // a shift's prefill
  return setup_compiled(x, threads, !x->incremental ? cap : n_prompt > keep ? n_prompt : keep);
}


HeedGen *heed_gen_new(Compilation *c, const HeedGenSetup *s) {
  Gen *x = heed_calloc(1, sizeof *x);
  if (!x) {
    for (int i = 0; s->params && i < c->model->forward->params.len; i++) heed_free(s->params[i]);
    heed_free(s->params);
    diag_error(&c->diag, (SrcLoc){0}, "out of memory setting up generation");
    return NULL;
  }
  *x = (Gen){.c = c, .interp = s->interp, .vocab = s->vocab, .windowed = s->window > 0, .window = s->window};
#ifndef HEED_HAVE_LLVM
  x->interp = true;
#endif
  if (!gen_setup(x, c, s->params, s->threads, s->out, s->n_prompt, s->cap)) {
    if (!x->params) {  // not taken yet: gen_free frees what x holds
      x->params = s->params;
      if (!x->g) x->g = c->model->forward;
    }
    heed_gen_free(x);
    return NULL;
  }
  return x;
}

void heed_gen_model(HeedGen *x, RtGenModel *m) {
  *m = (RtGenModel){.vocab = x->vocab, .window = x->window, .ud = x, .prefill = gen_prefill,
                    .decode = gen_decode, .message = gen_message};
}

bool heed_gen_incremental(const HeedGen *x) { return x->incremental; }
bool heed_gen_interp(const HeedGen *x) { return x->interp; }

void heed_gen_free(HeedGen *x) {
  if (!x) return;
  gen_free(x);
  heed_free(x);
}

// ---- slots: one compiled step graph, a KV cache per slot (heed serve) ----
// Slot 0 is a Gen as heed generate builds it (cap = the window, prefills
// up to the window); each other slot shares its program, thread pool,
// parameters and arena and has its own inputs (tokens, pos, caches): a
// slot costs its KV cache. A slot's step is the same code on the same weights as generate's,
// so a sequence gives the same logits whatever runs in the other slots.

struct HeedGenSlots {
  Gen *x;
  int n;
  int64_t vocab, window;
};

#ifdef HEED_HAVE_LLVM
// Slots run one at a time, and a step's computed values live only during
// its run (the logits are copied out; the caches are appended in place):
// so a clone shares slot 0's arena and parameters, and owns its inputs
// (tokens, pos, the caches) and the appends onto them.
static bool clone_slot(Gen *y, const Gen *x) {
  const IrGraph *g = x->g;
  *y = *x;
  y->clone = true, y->params = NULL, y->arena = NULL;
  if (!(y->bufs = heed_calloc((size_t)g->nodes.len + 1, sizeof(void *))))
    return gen_nomem(y, (SrcLoc){0}, "the value table", sizeof(void *) * ((uint64_t)g->nodes.len + 1));
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (n->op != IR_OP_INPUT) {
      y->bufs[i] = x->bufs[i];
      continue;
    }
    int64_t bytes = cg_buffer_bytes(x->prog, i, x->sv);
    if (bytes < 0 || !(y->bufs[i] = heed_calloc(1, (size_t)bytes + 64)))
      return gen_nomem(y, n->loc, "a slot's KV cache", bytes < 0 ? UINT64_MAX : (uint64_t)bytes + 64);
  }
  for (int i = 0; i < g->nodes.len; i++)
    if (g->nodes.data[i]->op == IR_OP_KV_APPEND) y->bufs[i] = y->bufs[g->nodes.data[i]->src[0]->id];
  return true;
}
#endif

static int heed_gen_slots_open_(Compilation *c, double **params, int threads, const char *output,
                                int64_t window_override, int nslots, HeedGenSlots **out, bool *taken);

int heed_gen_slots_open(Compilation *c, double **params, int threads, const char *output, int64_t window_override,
                        int nslots, HeedGenSlots **out) {
  *out = NULL;
  bool taken = false;  // params: freed here unless slot 0 took them
  int rc = heed_gen_slots_open_(c, params, threads, output, window_override, nslots, out, &taken);
  for (int i = 0; !taken && params && i < c->model->forward->params.len; i++) heed_free(params[i]);
  if (!taken) heed_free(params);
  return rc;
}

static int heed_gen_slots_open_(Compilation *c, double **params, int threads, const char *output,
                                int64_t window_override, int nslots, HeedGenSlots **out, bool *taken) {
#ifndef HEED_HAVE_LLVM
  (void)params, (void)threads, (void)output, (void)window_override, (void)nslots, (void)out, (void)taken;
  diag_error(&c->diag, (SrcLoc){0}, "heed serve needs the compiled backend (this heed was built without LLVM)");
  return HEED_ERR_USAGE;
#else
  int out_index = 0, rc;
  int64_t window = 0;
  char note[300];
  if (!params) return HEED_ERR_CHECK;  // heed_load_params said why
  if (!heed_gen_check_forward(c, c->model->forward)) return HEED_ERR_CHECK;
  if ((rc = heed_logits_output(c, c->model->forward, output, "serve", &out_index)) != HEED_OK) return rc;
  if ((rc = heed_gen_window(c, window_override, &window, note, sizeof note)) != HEED_OK) return rc;
  if (!window) {
    diag_error(&c->diag, (SrcLoc){0}, "model '%s' has no known context; --ctx N says how many positions a slot holds",
               c->model->decl->name);
    return HEED_ERR_USAGE;
  }
  if (note[0]) fprintf(stderr, "heed serve: %s\n", note);
  HeedGenSlots *s = heed_calloc(1, sizeof *s);
  if (!s || !(s->x = heed_calloc((size_t)nslots, sizeof(Gen)))) {
    heed_free(s);
    return HEED_ERR_NOMEM;
  }
  *out = s;
  s->vocab = c->model->forward->outputs.data[out_index]->ty.dim[2].n, s->window = window;
  Gen *x = &s->x[0];
  *x = (Gen){.c = c, .vocab = s->vocab, .windowed = true};
  s->n = 1;
  *taken = true;  // gen_setup keeps them in x->params (freed by gen_free), even when it fails
  if (!gen_setup(x, c, params, threads, out_index, window, window)) {
    if (!x->params) x->params = params, x->g = x->g ? x->g : c->model->forward;
    return HEED_ERR_CHECK;
  }
  if (!x->incremental) {
    diag_error(&c->diag, (SrcLoc){0}, "heed serve needs a model that decodes incrementally (a KV cache); '%s' "
               "recomputes the whole sequence per token", c->model->decl->name);
    return HEED_ERR_CHECK;
  }
  while (s->n < nslots)
    if (!clone_slot(&s->x[s->n++], x)) return HEED_ERR_NOMEM;
  return HEED_OK;
#endif
}

int64_t heed_gen_slots_vocab(const HeedGenSlots *s) { return s->vocab; }
int64_t heed_gen_slots_window(const HeedGenSlots *s) { return s->window; }

int heed_gen_slots_prefill(HeedGenSlots *s, int slot, const int32_t *tok, int64_t n, float *logits) {
  return gen_prefill(&s->x[slot], tok, n, logits);
}

int heed_gen_slots_decode(HeedGenSlots *s, int slot, int32_t tok, int64_t pos, float *logits) {
  return gen_decode(&s->x[slot], tok, pos, logits);
}

void heed_gen_slots_free(HeedGenSlots *s) {
  if (!s) return;
  for (int i = s->n - 1; i >= 0; i--) gen_free(&s->x[i]);  // the clones before slot 0, whose buffers they share
  heed_free(s->x);
  heed_free(s);
}
