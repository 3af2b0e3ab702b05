// tests/unit/test_cg_kvcache.c: incremental decoding (passes/kvcache.c, the
// KV_APPEND / ATTENTION_KV / ROPE_AT reference kernels in ir/kernels.c and
// their compiled forms with the one-row gemv in codegen/compile_kv.c).
// Decode equals full recomputation: for gpt2 (small --set config), llama
// (grouped-query attention, rope) and bytegpt, a prefill over the first P
// tokens and then one decode step per token give, at every position, the
// logits of the forward over the whole prefix: on the interpreter (step vs
// forward, both interpreted) and compiled (step vs forward, both compiled,
// caches appended in place). Tolerance: |got - want| <= 1e-4 * max(1,
// max |want|) over each position's logits (the interpreter computes in
// double and rounds each node to f32; compiled code sums in f32 in other
// orders). Also: models the pass refuses (bidirectional BERT, an op that
// mixes positions), and a step past the cache's capacity.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "passes/pass.h"
#include "tests/testutil.h"

static const double TOL = 1e-4;

static char *read_example(const char *name, size_t *len) {
  char *s = tu_read_example(__FILE__, name, len);
  assert_non_null(s);
  return s;
}

typedef struct {
  FeT fe;
  IrGraph *fwd, *step;
  double **params;  // per forward param (the step graph has the same, in order)
  int64_t vocab;
  int sB, sT, sKV;  // symbol indices in the step graph
} Model;

static uint64_t rng = 88172645463325252ull;
static double urand(void) {  // xorshift64, [0, 1)
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) * 0x1.0p-53;
}

static void load(Model *m, const char *file, FeOverride *ov, int nov) {
  size_t len;
  char *src = read_example(file, &len);
  memset(m, 0, sizeof *m);
  fet_parse(&m->fe, src);
  free(src);
  m->fe.opts = (FeCheckOpts){.overrides = ov, .noverrides = nov, .lower = true};
  m->fe.m = fe_check(m->fe.a, &m->fe.d, m->fe.ast, &m->fe.opts);
  if (!m->fe.m) print_error("%s: %s\n", file, fet_log(&m->fe));
  assert_non_null(m->fe.m);
  m->fwd = m->fe.m->forward;
  const IrType *o = &m->fwd->outputs.data[0]->ty;
  m->vocab = o->dim[2].n;
  m->params = calloc((size_t)m->fwd->params.len, sizeof(double *));
  for (int i = 0; i < m->fwd->params.len; i++) {
    const IrNode *p = m->fwd->params.data[i];
    int64_t n = ir_type_numel(&p->ty, NULL);
    bool norm_w = p->ty.rank == 1 && p->init.kind && !strcmp(p->init.kind, "ones");
    double r = p->ty.rank == 1 ? 0.1 : 0.15;
    m->params[i] = malloc(sizeof(double) * (size_t)n);
    for (int64_t j = 0; j < n; j++) m->params[i][j] = norm_w ? 0.8 + 0.4 * urand() : ir_round_to(IR_F32, r * (2 * urand() - 1));
  }
}

static void unload(Model *m) {
  for (int i = 0; i < m->fwd->params.len; i++) free(m->params[i]);
  free(m->params);
  fet_free(&m->fe);
}

static void derive(Model *m) {
  char why[256];
  m->step = pass_kvcache(m->fwd, why, sizeof why);
  if (!m->step) print_error("pass_kvcache: %s\n", why);
  assert_non_null(m->step);
  m->sB = m->sT = m->sKV = -1;
  for (int i = 0; i < m->step->syms.len; i++) {
    if (!strcmp(m->step->syms.data[i], "B")) m->sB = i;
    if (!strcmp(m->step->syms.data[i], "T")) m->sT = i;
    if (!strcmp(m->step->syms.data[i], "KV")) m->sKV = i;
  }
  assert_true(m->sB >= 0 && m->sT >= 0 && m->sKV >= 0);
  assert_int_equal(m->step->params.len, m->fwd->params.len);
  for (int i = 0; i < m->fwd->params.len; i++)
    assert_string_equal(m->step->params.data[i]->name, m->fwd->params.data[i]->name);
  assert_string_equal(m->step->inputs.data[1]->name, "pos");
}

static void check_row(const double *got, const double *want, int64_t n, const char *what, int64_t pos) {
  double mx = 1, err = 0;
  for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(want[i]));
  for (int64_t i = 0; i < n; i++) err = isnan(got[i]) || isnan(want[i]) ? INFINITY : fmax(err, fabs(got[i] - want[i]));
  if (!(err <= TOL * mx)) fail_msg("%s: position %lld: logits differ by %g (tolerance %g)", what, (long long)pos, err, TOL * mx);
}

// ---- the interpreter ----

// The forward's logits (N, V) over tokens[0..N) (B = 1).
static double *interp_forward(Model *m, const double *tokens, int64_t N) {
  int64_t sv[IR_MAX_SYMS] = {0};
  sv[0] = 1, sv[1] = N;  // the forward's B, T
  assert_string_equal(m->fwd->syms.data[0], "B");
  double *in[1] = {(double *)tokens};
  IrValues *v = ir_interp(m->fwd, sv, in, m->params, false, &m->fe.d);
  if (!v) print_error("%s\n", fet_log(&m->fe));
  assert_non_null(v);
  const IrNode *o = m->fwd->outputs.data[0];
  double *r = malloc(sizeof(double) * (size_t)(N * m->vocab));
  memcpy(r, v->val[o->id], sizeof(double) * (size_t)(N * m->vocab));
  ir_values_free(v);
  return r;
}

// One step over tokens[0..T) at pos: caches (doubles, capacity KV) updated,
// logits (T, V) returned.
static double *interp_step(Model *m, const double *tokens, int64_t T, int64_t pos, double **caches, int64_t KV) {
  int64_t sv[IR_MAX_SYMS] = {0};
  sv[m->sB] = 1, sv[m->sT] = T, sv[m->sKV] = KV;
  int nin = m->step->inputs.len;
  double **in = calloc((size_t)nin, sizeof(double *)), p = (double)pos;
  in[0] = (double *)tokens;
  in[1] = &p;
  for (int i = 2; i < nin; i++) in[i] = caches[i - 2];
  IrValues *v = ir_interp(m->step, sv, in, m->params, false, &m->fe.d);
  if (!v) print_error("%s\n", fet_log(&m->fe));
  assert_non_null(v);
  for (int i = 1; i < m->step->outputs.len; i++) {  // outputs: logits, then the caches in input order
    const IrNode *o = m->step->outputs.data[i];
    memcpy(caches[i - 1], v->val[o->id], sizeof(double) * (size_t)v->numel[o->id]);
  }
  double *r = malloc(sizeof(double) * (size_t)(T * m->vocab));
  memcpy(r, v->val[m->step->outputs.data[0]->id], sizeof(double) * (size_t)(T * m->vocab));
  ir_values_free(v);
  free(in);
  return r;
}

static void check_interp(Model *m, int64_t N, int64_t P) {
  double *tok = malloc(sizeof(double) * (size_t)N);
  for (int64_t i = 0; i < N; i++) tok[i] = (double)(int64_t)(urand() * (double)m->vocab);
  double *full = interp_forward(m, tok, N);
  int nc = m->step->inputs.len - 2;
  double **caches = calloc((size_t)nc, sizeof(double *));
  for (int i = 0; i < nc; i++) {
    int64_t n = N * m->step->inputs.data[2 + i]->ty.dim[2].n;
    caches[i] = malloc(sizeof(double) * (size_t)n);
    for (int64_t j = 0; j < n; j++) caches[i][j] = NAN;  // unwritten rows must never be read
  }
  double *pre = interp_step(m, tok, P, 0, caches, N);
  for (int64_t t = 0; t < P; t++) check_row(pre + t * m->vocab, full + t * m->vocab, m->vocab, "interp prefill", t);
  free(pre);
  for (int64_t t = P; t < N; t++) {
    double *lg = interp_step(m, tok + t, 1, t, caches, N);
    check_row(lg, full + t * m->vocab, m->vocab, "interp decode", t);
    free(lg);
  }
  for (int i = 0; i < nc; i++) free(caches[i]);
  free(caches);
  free(full);
  free(tok);
}

// ---- compiled ----

typedef struct {
  CgProgram *p;
  const IrGraph *g;
  void **bufs;
} Run;

// Buffers for the largest sizes (sv); params converted to f32.
static void run_init(Run *r, Model *m, const IrGraph *g, const int64_t *sv) {
  r->g = g;
  r->p = cg_compile(g, NULL, &m->fe.d);
  if (!r->p) print_error("%s\n", fet_log(&m->fe));
  assert_non_null(r->p);
  r->bufs = calloc((size_t)g->nodes.len, sizeof(void *));
  int pi = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    int64_t bytes = cg_buffer_bytes(r->p, i, sv);
    assert_true(bytes >= 0);
    r->bufs[i] = aligned_alloc(64, (size_t)(bytes + 127) / 64 * 64);
    if (n->op == IR_OP_PARAM) {
      float *f = r->bufs[i];
      for (int64_t j = 0; j < bytes / 4; j++) f[j] = (float)m->params[pi][j];
      pi++;
    }
    if (n->op == IR_OP_INPUT && n->ty.dt == IR_F32)
      for (int64_t j = 0; j < bytes / 4; j++) ((float *)r->bufs[i])[j] = NAN;
  }
  // in place: each appended cache shares its input's buffer
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (n->op != IR_OP_KV_APPEND) continue;
    free(r->bufs[i]);
    r->bufs[i] = r->bufs[n->src[0]->id];
  }
}

static void run_free(Run *r) {
  for (int i = 0; i < r->g->nodes.len; i++)
    if (r->g->nodes.data[i]->op != IR_OP_KV_APPEND) free(r->bufs[i]);
  free(r->bufs);
  cg_program_free(r->p);
}

static double *run_logits(Run *r, Model *m, const int32_t *tok, int64_t T, int64_t pos, const int64_t *sv) {
  memcpy(r->bufs[r->g->inputs.data[0]->id], tok, sizeof(int32_t) * (size_t)T);
  if (r->g->inputs.len > 1) *(int32_t *)r->bufs[r->g->inputs.data[1]->id] = (int32_t)pos;
  if (!cg_run(r->p, sv, r->bufs, &m->fe.d)) print_error("%s\n", fet_log(&m->fe));
  const float *lg = r->bufs[r->g->outputs.data[0]->id];
  double *out = malloc(sizeof(double) * (size_t)(T * m->vocab));
  for (int64_t i = 0; i < T * m->vocab; i++) out[i] = lg[i];
  return out;
}

static void check_compiled(Model *m, int64_t N, int64_t P) {
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)N);
  for (int64_t i = 0; i < N; i++) tok[i] = (int32_t)(urand() * (double)m->vocab);
  int64_t fsv[IR_MAX_SYMS] = {1, N};
  Run f, s;
  run_init(&f, m, m->fwd, fsv);
  double *full = run_logits(&f, m, tok, N, 0, fsv);
  int64_t sv[IR_MAX_SYMS] = {0};
  sv[m->sB] = 1, sv[m->sT] = P + 2, sv[m->sKV] = N;  // room for T = P and for T = 2 below
  run_init(&s, m, m->step, sv);
  sv[m->sT] = P;
  double *pre = run_logits(&s, m, tok, P, 0, sv);
  for (int64_t t = 0; t < P; t++) check_row(pre + t * m->vocab, full + t * m->vocab, m->vocab, "compiled prefill", t);
  free(pre);
  sv[m->sT] = 1;
  for (int64_t t = P; t < N; t++) {
    double *lg = run_logits(&s, m, tok + t, 1, t, sv);
    check_row(lg, full + t * m->vocab, m->vocab, "compiled decode", t);
    free(lg);
  }
  // a step past the capacity is a run-time error, not a write out of bounds
  sv[m->sT] = 2;
  memcpy(s.bufs[m->step->inputs.data[0]->id], tok, 2 * sizeof(int32_t));
  *(int32_t *)s.bufs[m->step->inputs.data[1]->id] = (int32_t)(N - 1);
  size_t before = m->fe.d.loglen;
  assert_false(cg_run(s.p, sv, s.bufs, &m->fe.d));
  assert_non_null(strstr(m->fe.d.log + before, "kv_append"));
  run_free(&s);
  run_free(&f);
  free(full);
  free(tok);
}

// ---- the models ----

static void test_gpt2(void **state) {
  (void)state;
  FeOverride ov[] = {{"vocab", "96", 0}, {"ctx", "32", 0}, {"dim", "32", 0}, {"heads", "4", 0}, {"layers", "2", 0}};
  Model m;
  load(&m, "gpt2.heed", ov, 5);
  derive(&m);
  assert_int_equal(pass_kv_context(m.fwd), 32);
  check_interp(&m, 12, 5);
  check_compiled(&m, 20, 7);
  unload(&m);
}

static void test_llama(void **state) {
  (void)state;
  FeOverride ov[] = {{"vocab", "64", 0},   {"ctx", "32", 0},      {"dim", "32", 0},    {"n_heads", "4", 0},
                     {"n_kv_heads", "2", 0}, {"n_layers", "2", 0}, {"ffn_dim", "48", 0}};
  Model m;
  load(&m, "llama.heed", ov, 7);
  derive(&m);
  assert_int_equal(pass_kv_context(m.fwd), 0);  // no position table
  assert_int_equal(m.step->inputs.data[2]->ty.dim[2].n, 16);  // k cache: 2 kv heads of 8
  check_interp(&m, 12, 4);
  check_compiled(&m, 24, 1);
  unload(&m);
}

static void test_bytegpt(void **state) {
  (void)state;
  Model m;
  load(&m, "bytegpt.heed", NULL, 0);
  derive(&m);
  assert_int_equal(pass_kv_context(m.fwd), 128);
  check_interp(&m, 10, 3);
  check_compiled(&m, 40, 16);
  unload(&m);
}

// ---- what the pass refuses ----

static void test_refused(void **state) {
  (void)state;
  Model m;
  FeOverride ov[] = {{"vocab", "64", 0}, {"dim", "32", 0}, {"n_layers", "1", 0}, {"ffn_dim", "32", 0}};
  load(&m, "bert.heed", ov, 4);
  char why[256];
  assert_null(pass_kvcache(m.fwd, why, sizeof why));
  assert_non_null(strstr(why, "attention is not causal"));
  unload(&m);
  const char *src =
      "model M {\n"
      "  param e: f32[16, 8] = normal(0.1)\n"
      "  forward(tokens: i32[B, T]) -> f32[B, T, 16] {\n"
      "    x = e[tokens]\n"
      "    x = x - mean(x, axis = 1, keepdim = true)\n"
      "    return x @ transpose(e)\n"
      "  }\n"
      "}\n";
  const char *src2 =
      "model M {\n"
      "  param e: f32[16, 8] = normal(0.1)\n"
      "  forward(tokens: i32[B, T]) -> f32[B, T, 16] {\n"
      "    x = e[tokens]\n"
      "    return attention(x, x, x, heads = 2) @ transpose(e)\n"
      "  }\n"
      "}\n";
  const char *srcs[2] = {src, src2}, *whys[2] = {"combines positions along the sequence axis (mean", "not causal"};
  for (int i = 0; i < 2; i++) {
    FeT t;
    fet_parse(&t, srcs[i]);
    t.opts = (FeCheckOpts){.lower = true};
    t.m = fe_check(t.a, &t.d, t.ast, &t.opts);
    if (!t.m) print_error("%s\n", fet_log(&t));
    assert_non_null(t.m);
    assert_null(pass_kvcache(t.m->forward, why, sizeof why));
    if (!strstr(why, whys[i])) fail_msg("'%s' lacks '%s'", why, whys[i]);
    fet_free(&t);
  }
}

// The step past the capacity on the interpreter: a located error.
static void test_overflow_interp(void **state) {
  (void)state;
  Model m;
  load(&m, "bytegpt.heed", NULL, 0);
  derive(&m);
  double tok[2] = {1, 2};
  int nc = m.step->inputs.len - 2;
  double **caches = calloc((size_t)nc, sizeof(double *));
  for (int i = 0; i < nc; i++) caches[i] = calloc(4 * 128, sizeof(double));
  int64_t sv[IR_MAX_SYMS] = {0};
  sv[m.sB] = 1, sv[m.sT] = 2, sv[m.sKV] = 4;
  double **in = calloc((size_t)m.step->inputs.len, sizeof(double *)), p = 3;
  in[0] = tok, in[1] = &p;
  for (int i = 0; i < nc; i++) in[2 + i] = caches[i];
  assert_null(ir_interp(m.step, sv, in, m.params, false, &m.fe.d));
  assert_non_null(strstr(fet_log(&m.fe), "kv_append: 2 rows at position 3 overflow the cache of 4"));
  for (int i = 0; i < nc; i++) free(caches[i]);
  free(caches);
  free(in);
  unload(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gpt2),    cmocka_unit_test(test_llama),           cmocka_unit_test(test_bytegpt),
      cmocka_unit_test(test_refused), cmocka_unit_test(test_overflow_interp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
