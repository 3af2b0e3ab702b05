// tests/unit/test_cg_grad.c: the CPU backend's compiled gradient ops
// (codegen/compile_grad.c) against the reference interpreter (ir/interp.c
// in f32 mode, ir/kernels_grad.c). Each case builds a forward graph with the
// IR builders, a scalar loss sum(y * r) with a random r (so that the
// adjoints are random too), runs pass_autodiff (every float input and
// parameter gets a gradient), fills the leaves with random values, runs
// both and compares EVERY node, forward and backward:
//   float results: |got - want| <= TOL * max |want| over that node (plus a
//     tiny floor), TOL = 1e-5; NaN must match NaN, infinities must match;
//   integer and bool results must be equal.
// The rank-0 nodes that add up the loss are not compared: their cancellation
// is the test's own doing, and no gradient reads them.
// Sizes are odd, T = 1 included, broadcasting both ways; integer-valued
// inputs make ties (MAX, MAXIMUM); attention with GQA, causal (S < T, S > T),
// masks with fully masked rows; rope both layouts; xent with ignored targets.
// Then a GPT-like loss at two (B, T), bitwise equal at 1 and 3 threads; the
// example bytegpt.heed's train loss through the frontend; the run-time
// errors of GATHER_GRAD and XENT_GRAD as located diagnostics.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_harness.h"
#include "frontend/fe.h"
#include "passes/pass.h"
#include "runtime/rt.h"
#include "tests/testutil.h"

static IrNode *loss_acc;  // the sum of the terms so far

// Adds sum(y * r) to the loss, r a random input of y's shape.
static void term(T *t, IrNode *y) {
  IrType rt = y->ty;
  IrNode *r = ir_input(t->g, arena_printf(t->a, "r%d", t->g->nodes.len), &rt, L(2));
  assert_non_null(r);
  t->lo[r->id] = -1, t->hi[r->id] = 1;
  IrNode *p = op2(t, IR_OP_MUL, y, r);
  uint32_t axes = (1u << y->ty.rank) - 1;
  IrNode *s = y->ty.rank ? op(t, IR_OP_SUM, &p, 1, &(IrAttr){.axes = axes}, NULL) : p;
  loss_acc = loss_acc ? op2(t, IR_OP_ADD, loss_acc, s) : s;
  t->lossn[s->id] = t->lossn[loss_acc->id] = true;
}

// The loss so far, differentiated (every float input and parameter).
static void differentiate(T *t) {
  assert_non_null(loss_acc);
  bool ok = pass_autodiff(t->g, loss_acc, true) && ir_verify(t->g);
  if (!ok) print_error("autodiff: %s\n", t->d.log ? t->d.log : "");
  assert_true(ok);
  loss_acc = NULL;
}

// The graph has op somewhere (autodiff emitted what the case is about).
static void assert_has(T *t, IrOp o) {
  for (int i = 0; i < t->g->nodes.len; i++)
    if (t->g->nodes.data[i]->op == o) return;
  print_error("no %s in the graph\n", ir_op_name(o));
  fail();
}

static const int64_t SV[][3] = {{2, 5, 7}, {1, 1, 3}, {3, 17, 17}};
enum { NSV = 3 };

// ---- elementwise ----

static void test_unary_grad(void **state) {
  (void)state;
  IrOp ops[] = {IR_OP_NEG, IR_OP_EXP, IR_OP_TANH, IR_OP_SIGMOID, IR_OP_GELU, IR_OP_GELU_TANH, IR_OP_SILU};
  IrOp pos[] = {IR_OP_LOG, IR_OP_SQRT, IR_OP_RSQRT};
  IrOp kink[] = {IR_OP_RELU, IR_OP_ABS};  // at whole numbers: 0 included
  T t;
  t_init(&t);
  IrNode *x = in(&t, IR_F32, "B,T,13", -9, 9), *y = in(&t, IR_F32, "B,T,13", 0.05, 20);
  IrNode *z = win(&t, "B,T,13", -2, 2);
  for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) term(&t, op1(&t, ops[o], x));
  for (size_t o = 0; o < sizeof pos / sizeof pos[0]; o++) term(&t, op1(&t, pos[o], y));
  for (size_t o = 0; o < sizeof kink / sizeof kink[0]; o++) term(&t, op1(&t, kink[o], z));
  term(&t, op1(&t, IR_OP_DROPOUT, x));
  differentiate(&t);
  assert_has(&t, IR_OP_UNARY_GRAD);
  check(&t, "unary", SV, NSV);
  t_fini(&t);
}

static void test_binary_grad(void **state) {
  (void)state;
  static const char *shapes[][2] = {{"B,T,7", "7"}, {"B,1,9", "B,T,1"}, {"", "T,3"}, {"T,1", "1,11"}};
  IrOp ops[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_MAXIMUM, IR_OP_MINIMUM};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    T t;
    t_init(&t);
    IrNode *a = win(&t, shapes[s][0], -2, 2), *b = win(&t, shapes[s][1], -2, 2);  // ties
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
      term(&t, op2(&t, ops[o], a, b));
      term(&t, op2(&t, ops[o], b, a));
    }
    IrNode *c = in(&t, IR_F32, shapes[s][1], 0.5, 2);
    term(&t, op2(&t, IR_OP_DIV, a, c));
    IrNode *cond = in(&t, IR_BOOL, shapes[s][1], 0, 1);
    term(&t, op(&t, IR_OP_WHERE, (IrNode *[]){cond, a, c}, 3, &(IrAttr){0}, NULL));
    differentiate(&t);
    assert_has(&t, IR_OP_MAXIMUM_GRAD);
    check(&t, shapes[s][0], SV, NSV);
    t_fini(&t);
  }
}

// ---- reductions, softmax, norms ----

static void test_reduce_grad(void **state) {
  (void)state;
  IrOp ops[] = {IR_OP_MAX, IR_OP_MIN, IR_OP_SUM, IR_OP_MEAN};
  uint32_t axes[] = {4, 1, 2, 5, 7, 6};
  T t;
  t_init(&t);
  IrNode *x = win(&t, "B,T,29", -3, 3), *xr = fin(&t, "B,T,8");
  for (size_t o = 0; o < 4; o++)
    for (size_t a = 0; a < sizeof axes / sizeof axes[0]; a++) {
      IrAttr at = {.axes = axes[a], .keepdim = a % 2};
      if (o < 2) term(&t, op(&t, ops[o], &x, 1, &at, NULL));  // ties
      if (o >= 2 || a % 3 == 0) term(&t, op(&t, ops[o], &xr, 1, &at, NULL));
    }
  differentiate(&t);
  assert_has(&t, IR_OP_REDUCE_GRAD);
  check(&t, "reduce", SV, NSV);
  t_fini(&t);
}

static void test_softmax_grad(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *x = in(&t, IR_F32, "B,T,37", -8, 8), *y = in(&t, IR_F32, "B,T,1003", -8, 8);
  IrNode *z = in(&t, IR_F32, "B,T,1", -3, 3);
  for (int lg = 0; lg < 2; lg++) {
    IrOp o = lg ? IR_OP_LOG_SOFTMAX : IR_OP_SOFTMAX;
    for (int a = 0; a < 3; a++) term(&t, op(&t, o, &x, 1, &(IrAttr){.axis = a}, NULL));
    term(&t, op(&t, o, &y, 1, &(IrAttr){.axis = 2}, NULL));
    term(&t, op(&t, o, &z, 1, &(IrAttr){.axis = 2}, NULL));
  }
  differentiate(&t);
  assert_has(&t, IR_OP_SOFTMAX_GRAD);
  assert_has(&t, IR_OP_LOG_SOFTMAX_GRAD);
  check(&t, "softmax", SV, NSV);
  t_fini(&t);
}

static void test_norm_grad(void **state) {
  (void)state;
  static const char *cs[] = {"37", "768", "1", "13"};
  for (size_t c = 0; c < 4; c++) {
    T t;
    t_init(&t);
    char xs[32];
    snprintf(xs, sizeof xs, "B,T,%s", cs[c]);
    IrNode *x = in(&t, IR_F32, xs, -3, 5), *w = par(&t, cs[c], 0.5, 1.5), *b = par(&t, cs[c], -1, 1);
    IrNode *w2 = par(&t, cs[c], 0.5, 1.5);
    IrNode *s3[3] = {x, w, b};
    term(&t, op(&t, IR_OP_LAYERNORM, s3, 3, &(IrAttr){.eps = 1e-5}, NULL));
    IrNode *s2[2] = {x, w2};
    term(&t, op(&t, IR_OP_RMSNORM, s2, 2, &(IrAttr){.eps = 1e-6}, NULL));
    differentiate(&t);
    assert_has(&t, IR_OP_LAYERNORM_DW);
    assert_has(&t, IR_OP_RMSNORM_DX);
    check(&t, xs, SV, NSV);
    t_fini(&t);
  }
}

// ---- shape ops and gather ----

static void test_shape_grad(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *x = fin(&t, "B,T,12");
  IrType r1 = ty(IR_F32, "B,T,3,4");
  IrNode *x4 = op(&t, IR_OP_RESHAPE, &x, 1, &(IrAttr){0}, &r1);
  term(&t, op(&t, IR_OP_PERMUTE, &x4, 1, &(IrAttr){.perm = {3, 1, 0, 2}}, NULL));
  IrType s1 = ty(IR_F32, "B,T,5"), s2 = ty(IR_F32, "B,T,3"), s3 = ty(IR_F32, "B,T,2,4");
  term(&t, op(&t, IR_OP_SLICE, &x, 1, &(IrAttr){.axis = 2, .start = 4}, &s1));
  term(&t, op(&t, IR_OP_SLICE, &x, 1, &(IrAttr){.axis = 2, .start = -3}, &s2));
  term(&t, op(&t, IR_OP_SLICE, &x4, 1, &(IrAttr){.axis = 2, .start = 1}, &s3));
  IrNode *tab = fin(&t, "S,12");
  IrType s4 = ty(IR_F32, "2,12");
  term(&t, op(&t, IR_OP_SLICE, &tab, 1, &(IrAttr){.axis = 0, .start = 1}, &s4));  // rows of a symbolic axis
  term(&t, op(&t, IR_OP_SLICE, &tab, 1, &(IrAttr){.axis = 0, .start = -3}, &s4));
  IrNode *y = fin(&t, "B,T,5"), *z = fin(&t, "B,T,1");
  term(&t, op(&t, IR_OP_CONCAT, (IrNode *[]){x, y, z}, 3, &(IrAttr){.axis = 2}, NULL));
  IrType e = ty(IR_F32, "B,T,29");
  IrNode *small = fin(&t, "T,1");
  term(&t, op(&t, IR_OP_EXPAND, &small, 1, &(IrAttr){0}, &e));
  differentiate(&t);
  assert_has(&t, IR_OP_SLICE_GRAD);
  check(&t, "shape", SV, NSV);
  t_fini(&t);
}

static void test_gather_grad(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *tab = par(&t, "50,7", -1, 1), *idx = in(&t, IR_I32, "B,T", 0, 49);
  term(&t, op2(&t, IR_OP_GATHER, tab, idx));
  IrNode *tab1 = par(&t, "11", -1, 1), *idx1 = in(&t, IR_I64, "T", 0, 10);
  term(&t, op2(&t, IR_OP_GATHER, tab1, idx1));
  IrNode *tab3 = par(&t, "6,2,3", -1, 1), *idx3 = in(&t, IR_U8, "B,T", 0, 5);  // many repeats
  term(&t, op2(&t, IR_OP_GATHER, tab3, idx3));
  IrNode *tab4 = par(&t, "300,5", -1, 1), *idx4 = in(&t, IR_I32, "B", 0, 2);  // most rows untouched
  term(&t, op2(&t, IR_OP_GATHER, tab4, idx4));
  differentiate(&t);
  assert_has(&t, IR_OP_GATHER_GRAD);
  check(&t, "gather", (const int64_t[][3]){{2, 5, 7}, {1, 1, 3}, {9, 120, 1}}, 3);
  t_fini(&t);
}

// ---- Transformer ops ----

static void test_attention_grad(void **state) {
  (void)state;
  typedef struct {
    int64_t h, kv, d;
    bool causal, mask, cross;
    IrDType mdt;  // the mask's dtype: bool, or an integer (non-zero keeps)
  } A;
  A cs[] = {{4, 4, 16, true, false, false, IR_BOOL}, {4, 2, 8, true, true, false, IR_BOOL},
            {3, 1, 5, false, true, true, IR_BOOL}, {2, 2, 64, true, false, true, IR_BOOL},
            {6, 3, 7, false, false, true, IR_BOOL}, {1, 1, 1, true, true, false, IR_BOOL},
            {4, 1, 9, true, true, true, IR_BOOL}, {4, 2, 8, true, true, false, IR_I32},
            {3, 1, 5, false, true, true, IR_I64}};
  for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
    T t;
    t_init(&t);
    char qs[32], ks[32];
    snprintf(qs, sizeof qs, "B,T,%lld", (long long)(cs[c].h * cs[c].d));
    snprintf(ks, sizeof ks, "B,%c,%lld", cs[c].cross ? 'S' : 'T', (long long)(cs[c].kv * cs[c].d));
    IrNode *s[4] = {fin(&t, qs), fin(&t, ks), fin(&t, ks), NULL};
    if (cs[c].mask) {  // some rows fully masked; integer masks of -1, 0, 1, 2 (non-zero keeps)
      bool b = cs[c].mdt == IR_BOOL;
      s[3] = in(&t, cs[c].mdt, cs[c].cross ? "B,S" : "B,T", b ? 0 : -1, b ? 1 : 2);
    }
    IrAttr at = {.heads = cs[c].h, .kv_heads = cs[c].kv, .causal = cs[c].causal, .scale = 1 / sqrt((double)cs[c].d)};
    term(&t, op(&t, IR_OP_ATTENTION, s, cs[c].mask ? 4 : 3, &at, NULL));
    differentiate(&t);
    assert_has(&t, IR_OP_ATTENTION_DK);
    // S < T (causal: the first queries see nothing), S > T (decode-like), T = 1; T, S over 64 (attention.c:
    // several blocks of query rows, and of keys at D = 64)
    check(&t, qs, (const int64_t[][3]){{2, 9, 5}, {1, 1, 6}, {2, 40, 40}, {3, 3, 8}, {1, 75, 71}}, 5);
    t_fini(&t);
  }
}

static void test_rope_grad(void **state) {
  (void)state;
  for (int v = 0; v < 4; v++) {
    T t;
    t_init(&t);
    IrNode *x = fin(&t, v < 2 ? "B,T,24" : "B,T,2");
    IrAttr at = {.heads = v < 2 ? 3 : 1, .base = v == 1 ? 500000.0 : 10000.0, .interleaved = v % 2, .inverse = v == 2};
    term(&t, op(&t, IR_OP_ROPE, &x, 1, &at, NULL));
    differentiate(&t);
    check(&t, "rope", (const int64_t[][3]){{2, 5, 1}, {1, 1, 1}, {1, 300, 1}}, 3);
    t_fini(&t);
  }
}

static void test_xent_grad(void **state) {
  (void)state;
  for (int v = 0; v < 3; v++) {
    T t;
    t_init(&t);
    IrNode *x = in(&t, IR_F32, v == 1 ? "B,T,1000" : "B,T,13", -10, 10);
    int64_t V = v == 1 ? 1000 : 13;
    // v 0: some ignored (-1); v 1: none; v 2: all ignored (the gradient is 0)
    IrNode *y = v == 2 ? in(&t, IR_I64, "B,T", 5, 5) : in(&t, IR_I32, "B,T", v == 0 ? -1 : 0, V - 1);
    IrNode *l = op(&t, IR_OP_XENT, (IrNode *[]){x, y}, 2, &(IrAttr){.ignore = v == 2 ? 5 : -1}, NULL);
    loss_acc = op2(&t, IR_OP_MUL, l, ir_const(t.g, 1.7, IR_F32, L(3)));  // dloss != 1
    differentiate(&t);
    assert_has(&t, IR_OP_XENT_GRAD);
    check(&t, "xent", SV, NSV);
    t_fini(&t);
  }
}

// ---- a small GPT-like model ----

static IrNode *linear(T *t, IrNode *x, int64_t cin, int64_t cout) {
  char ws[32], bs[32];
  snprintf(ws, sizeof ws, "%lld,%lld", (long long)cin, (long long)cout);
  snprintf(bs, sizeof bs, "%lld", (long long)cout);
  return op2(t, IR_OP_ADD, op2(t, IR_OP_MATMUL, x, par(t, ws, -0.2, 0.2)), par(t, bs, -0.1, 0.1));
}

static IrNode *layernorm(T *t, IrNode *x, int64_t C) {
  char cs[16];
  snprintf(cs, sizeof cs, "%lld", (long long)C);
  IrNode *s[3] = {x, par(t, cs, 0.8, 1.2), par(t, cs, -0.1, 0.1)};
  return op(t, IR_OP_LAYERNORM, s, 3, &(IrAttr){.eps = 1e-5}, NULL);
}

// GPT-2 shaped: wte (V,C), wpe (P,C), nlayer blocks, tied head, xent; the
// loss differentiated for the parameters.
static void build_gpt(T *t, int nlayer, int64_t V, int64_t C, int64_t H, int64_t P) {
  IrNode *idx = in(t, IR_I32, "B,T", 0, V - 1), *tg = in(t, IR_I32, "B,T", -1, V - 1);
  char vc[32], pc[32];
  snprintf(vc, sizeof vc, "%lld,%lld", (long long)V, (long long)C);
  snprintf(pc, sizeof pc, "%lld,%lld", (long long)P, (long long)C);
  IrNode *wte = par(t, vc, -0.5, 0.5), *wpe = par(t, pc, -0.5, 0.5);
  IrNode *pos = op1(t, IR_OP_POSITIONS, idx);
  IrNode *x = op2(t, IR_OP_ADD, op2(t, IR_OP_GATHER, wte, idx), op2(t, IR_OP_GATHER, wpe, pos));
  for (int l = 0; l < nlayer; l++) {
    IrNode *qkv = linear(t, layernorm(t, x, C), C, 3 * C);
    IrNode *qkvs[3];
    for (int j = 0; j < 3; j++) {
      IrType st = {.dt = IR_F32, .rank = 3, .dim = {ir_dim_sym(SYM_B), ir_dim_sym(SYM_T), ir_dim_const(C)}};
      qkvs[j] = op(t, IR_OP_SLICE, &qkv, 1, &(IrAttr){.axis = 2, .start = j * C}, &st);
    }
    IrAttr at = {.heads = H, .kv_heads = H, .causal = true, .scale = 1 / sqrt((double)(C / H))};
    IrNode *a = op(t, IR_OP_ATTENTION, qkvs, 3, &at, NULL);
    x = op2(t, IR_OP_ADD, x, linear(t, a, C, C));
    IrNode *hdn = op1(t, IR_OP_GELU_TANH, linear(t, layernorm(t, x, C), C, 4 * C));
    x = op2(t, IR_OP_ADD, x, linear(t, hdn, 4 * C, C));
  }
  x = layernorm(t, x, C);
  IrNode *wt = op(t, IR_OP_PERMUTE, &wte, 1, &(IrAttr){.perm = {1, 0}}, NULL);
  IrNode *logits = op2(t, IR_OP_MATMUL, x, wt);
  IrNode *loss = op(t, IR_OP_XENT, (IrNode *[]){logits, tg}, 2, &(IrAttr){.ignore = -1}, NULL);
  bool ok = pass_autodiff(t->g, loss, false) && ir_verify(t->g);
  if (!ok) print_error("autodiff: %s\n", t->d.log ? t->d.log : "");
  assert_true(ok);
}

// Runs p on the same random leaves at nthreads and returns every computed
// buffer's bytes concatenated (malloc'd; *len bytes).
static uint8_t *run_bytes(T *t, CgProgram *p, const int64_t *sv, uint64_t seed, size_t *len) {
  rng = seed;
  Bufs b = make_bufs(t, p, sv, false);
  assert_true(cg_run(p, sv, b.buf, &t->d));
  size_t n = 0;
  for (int i = 0; i < t->g->nodes.len; i++)
    if (cg_node_computed(p, i)) n += (size_t)cg_buffer_bytes(p, i, sv);
  uint8_t *out = malloc(n + 1), *q = out;
  for (int i = 0; i < t->g->nodes.len; i++)
    if (cg_node_computed(p, i)) {
      size_t nb = (size_t)cg_buffer_bytes(p, i, sv);
      memcpy(q, b.buf[i], nb);
      q += nb;
    }
  bufs_free(&b);
  *len = n;
  return out;
}

static void test_gpt_grad(void **state) {
  (void)state;
  T t;
  t_init(&t);
  build_gpt(&t, 2, 211, 64, 4, 64);
  assert_has(&t, IR_OP_ATTENTION_DQ);
  assert_has(&t, IR_OP_LAYERNORM_DX);
  assert_has(&t, IR_OP_GATHER_GRAD);
  // one program, two (B, T); every node compared
  CgProgram *p1 = compile(&t);
  compare(&t, p1, (const int64_t[3]){2, 33, 1}, "gpt (B=2 T=33)");
  compare(&t, p1, (const int64_t[3]){3, 64, 1}, "gpt (B=3 T=64)");
  // the same results, bit for bit, on 1 and 3 threads
  RtPool *pool = rt_pool_new(3);
  assert_non_null(pool);
  CgOptions o = {.pool = pool, .nthreads = 3, .parallel_for = (CgParallelFor)rt_parallel_for};
  CgProgram *p3 = cg_compile(t.g, &o, &t.d);
  assert_non_null(p3);
  int64_t sv[3] = {3, 61, 1};
  size_t n1, n3;
  uint8_t *r1 = run_bytes(&t, p1, sv, 42, &n1), *r3 = run_bytes(&t, p3, sv, 42, &n3);
  assert_int_equal(n1, n3);
  assert_memory_equal(r1, r3, n1);
  free(r1);
  free(r3);
  cg_program_free(p1);
  cg_program_free(p3);
  rt_pool_free(pool);
  t_fini(&t);
}

// ---- the example model bytegpt.heed: its train loss through the frontend ----

static void test_bytegpt(void **state) {
  (void)state;
  size_t len = 0;
  char *src = tu_read_example(__FILE__, "bytegpt.heed", &len);
  if (!src) print_error("cannot read examples/bytegpt.heed\n");
  assert_non_null(src);
  T t;
  memset(&t, 0, sizeof t);
  diag_init(&t.d, NULL);
  t.a = arena_new();
  uint32_t file = diag_add_file(&t.d, "examples/bytegpt.heed", src, len);
  free(src);
  FeAst *ast = fe_parse(t.a, &t.d, file);
  assert_non_null(ast);
  FeCheckOpts fo = {.lower = true};
  FeModel *m = fe_check(t.a, &t.d, ast, &fo);
  if (!m || !m->loss) print_error("bytegpt: %s\n", t.d.log ? t.d.log : "no loss graph");
  assert_true(m && m->loss);
  t.g = m->loss;
  bool ok = pass_autodiff(t.g, t.g->outputs.data[0], false) && ir_verify(t.g);
  if (!ok) print_error("autodiff: %s\n", t.d.log ? t.d.log : "");
  assert_true(ok);
  assert_true(t.g->nodes.len <= MAXN);
  // realistic leaves: tokens and targets in [0, 256), weights small, norm weights near 1
  for (int i = 0; i < t.g->nodes.len; i++) {
    const IrNode *n = t.g->nodes.data[i];
    if (n->op == IR_OP_INPUT) t.lo[i] = 0, t.hi[i] = 255;
    if (n->op != IR_OP_PARAM) continue;
    bool norm_w = strstr(n->name, "ln_") && strstr(n->name, "weight");
    double r = n->ty.rank == 1 ? 0.05 : 0.1;
    t.lo[i] = norm_w ? 0.8 : -r, t.hi[i] = norm_w ? 1.2 : r;
  }
  int sB = -1, sT = -1;
  for (int i = 0; i < t.g->syms.len; i++) {
    if (!strcmp(t.g->syms.data[i], "B")) sB = i;
    if (!strcmp(t.g->syms.data[i], "T")) sT = i;
  }
  assert_true(sB >= 0 && sT >= 0 && t.g->syms.len <= 3);
  CgProgram *p = compile(&t);
  const CgProgramStats *st = cg_program_stats(p);
  print_message("bytegpt train step: %d nodes, %d kernels / %d calls, compiled in %.0f ms\n", t.g->nodes.len,
                st->nkernels, st->ncalls, st->compile_ms);
  int64_t bts[][2] = {{2, 37}, {4, 128}};  // T = ctx: the whole position table
  for (int c = 0; c < 2; c++) {
    int64_t sv[3] = {0};
    sv[sB] = bts[c][0], sv[sT] = bts[c][1];
    char lb[64];
    snprintf(lb, sizeof lb, "bytegpt (B=%lld T=%lld)", (long long)bts[c][0], (long long)bts[c][1]);
    time_it = c == 1;
    compare(&t, p, sv, lb);
    time_it = false;
  }
  cg_program_free(p);
  t_fini(&t);
}

// ---- run-time errors of the gradient ops ----

static void test_errors(void **state) {
  (void)state;
  T t;
  t_init(&t);
  uint32_t f = diag_add_file(&t.d, "m.heed", "x\n", 2);
  IrNode *idx = in(&t, IR_I32, "B,T", 0, 49), *dy = fin(&t, "B,T,4");
  IrType tt = ty(IR_F32, "50,4");
  IrNode *gg = ir_op(t.g, IR_OP_GATHER_GRAD, (IrNode *[]){idx, dy}, 2, &(IrAttr){0}, &tt, (SrcLoc){f, 1, 1});
  assert_non_null(gg);
  ir_output(t.g, "g", gg);
  IrNode *lg = fin(&t, "B,T,5"), *tg = in(&t, IR_I32, "B,T", 0, 4), *dl = fin(&t, "");
  IrNode *xg = ir_op(t.g, IR_OP_XENT_GRAD, (IrNode *[]){lg, tg, dl}, 3, &(IrAttr){.ignore = -100}, NULL,
                     (SrcLoc){f, 1, 1});
  assert_non_null(xg);
  ir_output(t.g, "x", xg);
  CgProgram *p = compile(&t);
  int64_t sv[3] = {2, 3, 1};
  Bufs b = make_bufs(&t, p, sv, false);
  assert_true(cg_run(p, sv, b.buf, &t.d));
  ((int32_t *)b.buf[idx->id])[4] = 50;
  assert_false(cg_run(p, sv, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, "m.heed:1:1"));
  assert_non_null(strstr(t.d.log, "gather: index 50 is outside the table of 50 rows"));
  ((int32_t *)b.buf[idx->id])[4] = -3;
  assert_false(cg_run(p, sv, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, "gather: index -3 is outside"));
  ((int32_t *)b.buf[idx->id])[4] = 0;
  ((int32_t *)b.buf[tg->id])[5] = 5;
  assert_false(cg_run(p, sv, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, "cross_entropy: target 5 is outside the 5 classes"));
  ((int32_t *)b.buf[tg->id])[5] = -100;  // ignored
  assert_true(cg_run(p, sv, b.buf, &t.d));
  bufs_free(&b);
  cg_program_free(p);
  t_fini(&t);
}

static int report(void **state) {
  (void)state;
  print_message("largest error relative to max |value| of a node: %.3g, of a gradient op's node: %.3g "
                "(tolerance %.0e)\n",
                worst_rel, worst_grad_rel, TOL);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unary_grad),     cmocka_unit_test(test_binary_grad), cmocka_unit_test(test_reduce_grad),
      cmocka_unit_test(test_softmax_grad),   cmocka_unit_test(test_norm_grad),   cmocka_unit_test(test_shape_grad),
      cmocka_unit_test(test_gather_grad),    cmocka_unit_test(test_attention_grad), cmocka_unit_test(test_rope_grad),
      cmocka_unit_test(test_xent_grad),      cmocka_unit_test(test_gpt_grad),    cmocka_unit_test(test_bytegpt),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
