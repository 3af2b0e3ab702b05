// tests/unit/test_cg_ops.c: the CPU backend's compiled forward ops
// (codegen/compile.c) against the reference interpreter (ir/interp.c in f32
// mode). Each case builds a graph with the IR builders, fills its inputs
// with random values, runs both and compares EVERY node's values:
//   float results: |got - want| <= TOL * max |want| over that node (plus a
//     tiny floor), TOL = 1e-5; NaN must match NaN, infinities must match;
//   integer and bool results must be equal.
// Shapes are random per case: odd sizes, T = 1, sizes not a multiple of the
// vector width, broadcasting both ways. Also: a small GPT-like graph run at
// two (B, T) with one compiled program, kernels deduplicated across
// layers, a gather index outside its table and a target outside the classes
// reported as located diagnostics, and f16 rejected.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_harness.h"
#include "runtime/rt.h"

static const int64_t SV[][3] = {{2, 5, 7}, {1, 1, 3}, {3, 17, 17}};
enum { NSV = 3 };

// ---- elementwise ----

static void test_binary_f32(void **state) {
  (void)state;
  static const char *shapes[][2] = {{"B,T,7", "7"}, {"B,1,9", "B,T,1"}, {"1", "B,T,5"}, {"B,T,33", "B,T,33"},
                                    {"", "T,3"},    {"T,1", "1,11"}};
  IrOp ops[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_DIV, IR_OP_MAXIMUM, IR_OP_MINIMUM};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    T t;
    t_init(&t);
    IrNode *a = fin(&t, shapes[s][0]), *b = fin(&t, shapes[s][1]);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
      op2(&t, ops[o], a, b);
      op2(&t, ops[o], b, a);
    }
    check(&t, shapes[s][0], SV, NSV);
    t_fini(&t);
  }
}

static void test_binary_int(void **state) {
  (void)state;
  IrDType dts[] = {IR_I32, IR_I64, IR_I8, IR_U8};
  IrOp ops[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_DIV, IR_OP_MAXIMUM, IR_OP_MINIMUM};
  for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
    T t;
    t_init(&t);
    bool u = dts[d] == IR_U8;
    IrNode *a = in(&t, dts[d], "B,T,5", u ? 0 : -100, 100), *b = in(&t, dts[d], "5", 1, 9);
    IrNode *c = in(&t, dts[d], "B,1,1", u ? 0 : -9, -1 + (u ? 250 : 0));
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
      op2(&t, ops[o], a, b);
      op2(&t, ops[o], a, c);
    }
    op1(&t, IR_OP_NEG, a);
    op1(&t, IR_OP_ABS, a);
    op1(&t, IR_OP_RELU, a);
    check(&t, ir_dtype_info[dts[d]].name, SV, NSV);
    t_fini(&t);
  }
}

static void test_where(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *c = in(&t, IR_BOOL, "B,T,1", 0, 1), *a = fin(&t, "B,T,9"), *b = fin(&t, "9");
  IrNode *s[3] = {c, a, b};
  op(&t, IR_OP_WHERE, s, 3, &(IrAttr){0}, NULL);
  IrNode *c2 = in(&t, IR_BOOL, "T,9", 0, 1), *i1 = in(&t, IR_I32, "B,1,1", -5, 5), *i2 = in(&t, IR_I32, "", -5, 5);
  IrNode *s2[3] = {c2, i1, i2};
  op(&t, IR_OP_WHERE, s2, 3, &(IrAttr){0}, NULL);
  check(&t, "where", SV, NSV);
  t_fini(&t);
}

static void test_unary(void **state) {
  (void)state;
  IrOp ops[] = {IR_OP_NEG, IR_OP_EXP, IR_OP_TANH, IR_OP_SIGMOID, IR_OP_RELU, IR_OP_GELU, IR_OP_GELU_TANH,
                IR_OP_SILU, IR_OP_ABS, IR_OP_DROPOUT};
  IrOp pos[] = {IR_OP_LOG, IR_OP_SQRT, IR_OP_RSQRT};
  T t;
  t_init(&t);
  IrNode *x = in(&t, IR_F32, "B,T,13", -12, 12), *y = in(&t, IR_F32, "B,T,13", 0.01, 50);
  for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) op1(&t, ops[o], x);
  for (size_t o = 0; o < sizeof pos / sizeof pos[0]; o++) op1(&t, pos[o], y);
  check(&t, "unary", SV, NSV);
  t_fini(&t);
}

static void test_cast(void **state) {
  (void)state;
  IrDType to[] = {IR_F32, IR_I32, IR_I64, IR_I8, IR_U8, IR_BOOL};
  T t;
  t_init(&t);
  IrNode *x = in(&t, IR_F32, "B,T,7", -400, 400), *i = in(&t, IR_I32, "T,3", -300, 300);
  IrNode *bo = in(&t, IR_BOOL, "B,2", 0, 1), *l = in(&t, IR_I64, "4", -1000, 1000);
  IrNode *srcs[] = {x, i, bo, l};
  for (size_t s = 0; s < 4; s++)
    for (size_t d = 0; d < sizeof to / sizeof to[0]; d++) {
      IrType h = srcs[s]->ty;
      h.dt = to[d];
      op(&t, IR_OP_CAST, &srcs[s], 1, &(IrAttr){0}, &h);
    }
  check(&t, "cast", SV, NSV);
  t_fini(&t);
}

static void test_const_positions(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *x = fin(&t, "B,T,3");
  IrNode *c = ir_const(t.g, 2.5, IR_F32, L(2)), *ci = ir_const(t.g, 7, IR_I32, L(3));
  op2(&t, IR_OP_MUL, x, c);
  IrNode *p = op1(&t, IR_OP_POSITIONS, x);
  op2(&t, IR_OP_ADD, p, ci);
  check(&t, "const", SV, NSV);
  t_fini(&t);
}

// ---- matmul ----

static void test_matmul(void **state) {
  (void)state;
  static const char *cases[][2] = {
      {"B,T,37", "37,19"},   {"B,T,64", "64,100"},  {"T,1", "1,5"},        {"B,1,T,7", "3,7,T"},
      {"2,B,T,9", "B,9,4"}, {"B,T,70", "70,300"}, {"3,5", "B,5,T"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    T t;
    t_init(&t);
    op2(&t, IR_OP_MATMUL, fin(&t, cases[c][0]), fin(&t, cases[c][1]));
    check(&t, cases[c][0], SV, NSV);
    t_fini(&t);
  }
  // A @ transpose(W): the tied LM head (a permute feeding the nt sgemm)
  T t;
  t_init(&t);
  IrNode *x = fin(&t, "B,T,48"), *w = fin(&t, "101,48");
  IrAttr pa = {.perm = {1, 0}};
  IrNode *wt = op(&t, IR_OP_PERMUTE, &w, 1, &pa, NULL);
  op2(&t, IR_OP_MATMUL, x, wt);
  IrNode *k = fin(&t, "B,T,16");
  IrAttr pk = {.perm = {0, 2, 1}};
  op2(&t, IR_OP_MATMUL, fin(&t, "B,T,16"), op(&t, IR_OP_PERMUTE, &k, 1, &pk, NULL));  // q @ k^T per batch
  check(&t, "matmul nt", SV, NSV);
  t_fini(&t);
}

// ---- reductions, softmax, norms ----

static void test_reduce(void **state) {
  (void)state;
  IrOp ops[] = {IR_OP_SUM, IR_OP_MEAN, IR_OP_MAX, IR_OP_MIN};
  uint32_t axes[] = {4, 1, 2, 5, 7, 6};
  T t;
  t_init(&t);
  IrNode *x = fin(&t, "B,T,29"), *xi = in(&t, IR_I32, "B,T,3", -50, 50);
  for (size_t o = 0; o < 4; o++)
    for (size_t a = 0; a < sizeof axes / sizeof axes[0]; a++) {
      IrAttr at = {.axes = axes[a], .keepdim = a % 2};
      op(&t, ops[o], &x, 1, &at, NULL);
      op(&t, ops[o], &xi, 1, &at, NULL);
    }
  IrNode *big = fin(&t, "B,T,1000");
  op(&t, IR_OP_SUM, &big, 1, &(IrAttr){.axes = 4}, NULL);
  op(&t, IR_OP_MEAN, &big, 1, &(IrAttr){.axes = 7}, NULL);
  IrType h = ty(IR_F32, "T,1");
  op(&t, IR_OP_SUM_TO, &x, 1, &(IrAttr){0}, &(IrType){.dt = IR_F32, .rank = 1, .dim = {ir_dim_const(29)}});
  IrNode *x2 = fin(&t, "B,T,1");
  op(&t, IR_OP_SUM_TO, &x2, 1, &(IrAttr){0}, &h);
  IrType e = ty(IR_F32, "B,T,29");
  IrNode *small = fin(&t, "T,1");
  op(&t, IR_OP_EXPAND, &small, 1, &(IrAttr){0}, &e);
  // Computed inside the reduction (fuse_elementwise): x * x summed (a
  // squared norm), x - y averaged over axis 1; x + a broadcast bias is not
  // (its operands are not shaped like it), nor a sum over leading axes.
  IrNode *y = fin(&t, "B,T,29"), *bias = fin(&t, "29");
  IrNode *sq = op2(&t, IR_OP_MUL, x, x), *df = op2(&t, IR_OP_SUB, x, y), *bb = op2(&t, IR_OP_ADD, x, bias);
  op(&t, IR_OP_SUM, &sq, 1, &(IrAttr){.axes = 7}, NULL);
  op(&t, IR_OP_MEAN, &df, 1, &(IrAttr){.axes = 2, .keepdim = true}, NULL);
  op(&t, IR_OP_SUM, &bb, 1, &(IrAttr){.axes = 5}, NULL);
  IrNode *sq2 = op2(&t, IR_OP_MUL, y, y);
  op(&t, IR_OP_SUM, &sq2, 1, &(IrAttr){.axes = 3}, NULL);
  check(&t, "reduce", SV, NSV);
  CgProgram *p = compile(&t);
  assert_false(cg_node_computed(p, sq->id));
  assert_false(cg_node_computed(p, df->id));
  assert_true(cg_node_computed(p, bb->id));
  assert_true(cg_node_computed(p, sq2->id));
  cg_program_free(p);
  t_fini(&t);
}

static void test_softmax(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *x = in(&t, IR_F32, "B,T,37", -20, 20), *y = in(&t, IR_F32, "B,T,1003", -8, 8);
  IrNode *z = in(&t, IR_F32, "B,T,1", -3, 3);
  for (int lg = 0; lg < 2; lg++) {
    IrOp o = lg ? IR_OP_LOG_SOFTMAX : IR_OP_SOFTMAX;
    for (int a = 0; a < 3; a++) op(&t, o, &x, 1, &(IrAttr){.axis = a}, NULL);
    op(&t, o, &y, 1, &(IrAttr){.axis = 2}, NULL);
    op(&t, o, &z, 1, &(IrAttr){.axis = 2}, NULL);
  }
  check(&t, "softmax", SV, NSV);
  t_fini(&t);
}

static void test_norms(void **state) {
  (void)state;
  static const char *cs[] = {"37", "768", "1", "13"};
  for (size_t c = 0; c < 4; c++) {
    T t;
    t_init(&t);
    char xs[32];
    snprintf(xs, sizeof xs, "B,T,%s", cs[c]);
    IrNode *x = in(&t, IR_F32, xs, -3, 5), *w = par(&t, cs[c], 0.5, 1.5), *b = par(&t, cs[c], -1, 1);
    IrNode *s3[3] = {x, w, b};
    op(&t, IR_OP_LAYERNORM, s3, 3, &(IrAttr){.eps = 1e-5}, NULL);
    op(&t, IR_OP_RMSNORM, s3, 2, &(IrAttr){.eps = 1e-6}, NULL);
    check(&t, xs, SV, NSV);
    t_fini(&t);
  }
}

// ---- shape ops and gather ----

static void test_shape(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *x = fin(&t, "B,T,12"), *xi = in(&t, IR_I64, "B,T,12", -9, 9);
  IrType r1 = ty(IR_F32, "B,T,3,4"), r2 = ty(IR_I64, "B,T,2,6");
  IrNode *x4 = op(&t, IR_OP_RESHAPE, &x, 1, &(IrAttr){0}, &r1);
  op(&t, IR_OP_RESHAPE, &xi, 1, &(IrAttr){0}, &r2);
  op(&t, IR_OP_PERMUTE, &x4, 1, &(IrAttr){.perm = {0, 2, 1, 3}}, NULL);
  op(&t, IR_OP_PERMUTE, &x4, 1, &(IrAttr){.perm = {3, 1, 0, 2}}, NULL);
  op(&t, IR_OP_PERMUTE, &xi, 1, &(IrAttr){.perm = {2, 0, 1}}, NULL);
  IrType s1 = ty(IR_F32, "B,T,5"), s2 = ty(IR_F32, "B,T,3");
  op(&t, IR_OP_SLICE, &x, 1, &(IrAttr){.axis = 2, .start = 4}, &s1);
  op(&t, IR_OP_SLICE, &x, 1, &(IrAttr){.axis = 2, .start = -3}, &s2);
  IrType s3 = ty(IR_F32, "B,T,2,4");
  op(&t, IR_OP_SLICE, &x4, 1, &(IrAttr){.axis = 2, .start = 1}, &s3);
  IrNode *tab = fin(&t, "S,12");
  IrType s4 = ty(IR_F32, "2,12");
  op(&t, IR_OP_SLICE, &tab, 1, &(IrAttr){.axis = 0, .start = 1}, &s4);  // rows of a symbolic axis
  op(&t, IR_OP_SLICE, &tab, 1, &(IrAttr){.axis = 0, .start = -3}, &s4);
  IrNode *y = fin(&t, "B,T,5"), *z = fin(&t, "B,T,1");
  IrNode *cs[3] = {x, y, z};
  op(&t, IR_OP_CONCAT, cs, 3, &(IrAttr){.axis = 2}, NULL);
  IrNode *w = fin(&t, "B,T,12");
  IrNode *cs2[2] = {x, w};
  op(&t, IR_OP_CONCAT, cs2, 2, &(IrAttr){.axis = 1}, NULL);
  op(&t, IR_OP_CONCAT, cs2, 2, &(IrAttr){.axis = 0}, NULL);
  check(&t, "shape", SV, NSV);
  t_fini(&t);
}

static void test_gather(void **state) {
  (void)state;
  T t;
  t_init(&t);
  IrNode *tab = fin(&t, "50,7"), *idx = in(&t, IR_I32, "B,T", 0, 49);
  op2(&t, IR_OP_GATHER, tab, idx);
  IrNode *tab1 = fin(&t, "11"), *idx1 = in(&t, IR_I64, "T", 0, 10);
  op2(&t, IR_OP_GATHER, tab1, idx1);
  IrNode *tab3 = in(&t, IR_I32, "6,2,3", -5, 5), *idx3 = in(&t, IR_U8, "B", 0, 5);
  op2(&t, IR_OP_GATHER, tab3, idx3);
  check(&t, "gather", SV, NSV);
  t_fini(&t);
}

// ---- Transformer ops ----

static void test_attention(void **state) {
  (void)state;
  typedef struct {
    int64_t h, kv, d;
    bool causal, mask, cross;
    IrDType mdt;  // the mask's dtype: bool, or an integer (non-zero keeps)
  } A;
  A cs[] = {{4, 4, 16, true, false, false, IR_BOOL}, {4, 2, 8, true, true, false, IR_BOOL},
            {3, 1, 5, false, true, true, IR_BOOL}, {2, 2, 64, true, false, true, IR_BOOL},
            {6, 3, 7, false, false, true, IR_BOOL}, {1, 1, 1, true, true, false, IR_BOOL},
            {4, 2, 8, true, true, false, IR_I32}, {3, 1, 5, false, true, true, IR_I64},
            {2, 2, 4, true, true, true, IR_U8}};
  for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
    T t;
    t_init(&t);
    char qs[32], ks[32];
    snprintf(qs, sizeof qs, "B,T,%lld", (long long)(cs[c].h * cs[c].d));
    snprintf(ks, sizeof ks, "B,%c,%lld", cs[c].cross ? 'S' : 'T', (long long)(cs[c].kv * cs[c].d));
    IrNode *s[4] = {fin(&t, qs), fin(&t, ks), fin(&t, ks), NULL};
    if (cs[c].mask) {  // integer masks of -1, 0, 1, 2 (u8: 0, 1, 2): non-zero keeps
      bool sgn = cs[c].mdt == IR_I32 || cs[c].mdt == IR_I64;
      s[3] = in(&t, cs[c].mdt, cs[c].cross ? "B,S" : "B,T", sgn ? -1 : 0, cs[c].mdt != IR_BOOL ? 2 : 1);
    }
    IrAttr at = {.heads = cs[c].h, .kv_heads = cs[c].kv, .causal = cs[c].causal, .scale = 1 / sqrt((double)cs[c].d)};
    op(&t, IR_OP_ATTENTION, s, cs[c].mask ? 4 : 3, &at, NULL);
    // S < T (causal: the first queries see nothing), S > T (decode-like), T = 1; T, S over 64 (attention.c:
    // several blocks of query rows, and of keys at D = 64)
    check(&t, qs, (const int64_t[][3]){{2, 9, 5}, {1, 1, 6}, {2, 40, 40}, {3, 3, 8}, {1, 75, 71}}, 5);
    t_fini(&t);
  }
}

static void test_rope(void **state) {
  (void)state;
  for (int v = 0; v < 4; v++) {
    T t;
    t_init(&t);
    IrNode *x = fin(&t, v < 2 ? "B,T,24" : "B,T,2");
    IrAttr at = {.heads = v < 2 ? 3 : 1, .base = v == 1 ? 500000.0 : 10000.0, .interleaved = v % 2, .inverse = v == 2};
    op(&t, IR_OP_ROPE, &x, 1, &at, NULL);
    check(&t, "rope", (const int64_t[][3]){{2, 5, 1}, {1, 1, 1}, {1, 1500, 1}}, 3);
    t_fini(&t);
  }
}

static void test_xent(void **state) {
  (void)state;
  for (int v = 0; v < 3; v++) {
    T t;
    t_init(&t);
    IrNode *x = in(&t, IR_F32, v == 1 ? "B,T,1000" : "B,T,13", -10, 10);
    int64_t V = v == 1 ? 1000 : 13;
    // v 0: some ignored (-1); v 1: none; v 2: all ignored (the loss is 0)
    IrNode *y = v == 2 ? in(&t, IR_I64, "B,T", 5, 5) : in(&t, IR_I32, "B,T", v == 0 ? -1 : 0, V - 1);
    op(&t, IR_OP_XENT, (IrNode *[]){x, y}, 2, &(IrAttr){.ignore = v == 2 ? 5 : -1}, NULL);
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

// GPT-2 shaped: wte (V,C), wpe (P,C), nlayer blocks, tied head, xent.
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
  op(t, IR_OP_XENT, (IrNode *[]){logits, tg}, 2, &(IrAttr){.ignore = -1}, NULL);
}

static void test_gpt(void **state) {
  (void)state;
  T t;
  t_init(&t);
  build_gpt(&t, 3, 211, 64, 4, 64);
  // one program, two (B, T); every node compared
  check(&t, "gpt", (const int64_t[][3]){{2, 33, 1}, {1, 7, 1}, {3, 64, 1}}, 3);
  // dedup: layers 2 and 3 add no kernel
  T t1;
  t_init(&t1);
  build_gpt(&t1, 1, 211, 64, 4, 64);
  CgProgram *p1 = compile(&t1), *p3 = compile(&t);
  const CgProgramStats *s1 = cg_program_stats(p1), *s3 = cg_program_stats(p3);
  print_message("gpt: 1 layer %d kernels / %d calls, 3 layers %d kernels / %d calls, compiled in %.0f ms\n",
                s1->nkernels, s1->ncalls, s3->nkernels, s3->ncalls, s3->compile_ms);
  assert_int_equal(s1->nkernels, s3->nkernels);
  assert_true(s3->ncalls > 2 * s1->ncalls);
  assert_true(s3->nkernels < s3->ncalls / 2);
  cg_program_free(p1);
  cg_program_free(p3);
  t_fini(&t1);
  t_fini(&t);
}

// ---- errors ----

static void test_errors(void **state) {
  (void)state;
  T t;
  t_init(&t);
  uint32_t f = diag_add_file(&t.d, "m.heed", "x\n", 2);
  IrNode *tab = fin(&t, "1024,4"), *idx = in(&t, IR_I32, "B,T", 0, 3);
  IrNode *s[2] = {tab, idx};
  IrNode *gth = ir_op(t.g, IR_OP_GATHER, s, 2, &(IrAttr){0}, NULL, (SrcLoc){f, 1, 1});
  ir_output(t.g, "y", gth);
  CgProgram *p = compile(&t);
  int64_t sv[3] = {1, 3, 1};
  Bufs b = make_bufs(&t, p, sv, false);
  ((int32_t *)b.buf[idx->id])[2] = 1024;
  assert_false(cg_run(p, sv, b.buf, &t.d));
  assert_non_null(t.d.log);
  assert_non_null(strstr(t.d.log, "m.heed:1:1"));
  assert_non_null(strstr(t.d.log, "gather: index 1024 is outside the table of 1024 rows"));
  ((int32_t *)b.buf[idx->id])[2] = -1;
  assert_false(cg_run(p, sv, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, "gather: index -1 is outside"));
  ((int32_t *)b.buf[idx->id])[2] = 0;
  assert_true(cg_run(p, sv, b.buf, &t.d));
  bufs_free(&b);
  cg_program_free(p);
  t_fini(&t);

  // T longer than a position table (wpe[positions(tokens)]): one message, before anything runs (the token
  // gather that comes first has an index outside its table too), compiled and on the interpreter alike
  t_init(&t);
  f = diag_add_file(&t.d, "m.heed", "x\n", 2);
  IrNode *wte = fin(&t, "10,2"), *tok = in(&t, IR_I32, "B,T", 0, 9), *wpe = fin(&t, "4,2");
  SrcLoc l1 = {f, 1, 1};
  IrNode *pos = ir_op(t.g, IR_OP_POSITIONS, &tok, 1, &(IrAttr){0}, NULL, l1);
  ir_output(t.g, "e", ir_op(t.g, IR_OP_GATHER, (IrNode *[]){wte, tok}, 2, &(IrAttr){0}, NULL, l1));
  ir_output(t.g, "p", ir_op(t.g, IR_OP_GATHER, (IrNode *[]){wpe, pos}, 2, &(IrAttr){0}, NULL, l1));
  p = compile(&t);
  const char *too_long = "the sequence length T = 5 exceeds the 4 rows of the position table";
  int64_t sv5[3] = {1, 5, 1}, sv4[3] = {1, 4, 1};
  b = make_bufs(&t, p, sv5, false);
  ((int32_t *)b.buf[tok->id])[0] = 10;
  assert_false(cg_run(p, sv5, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, too_long));
  double wv[20] = {0}, tv[5] = {10, 1, 2, 3, 4}, pv[8] = {0}, *iv[] = {wv, tv, pv};
  Diag d2;  // (t.d would drop a repeated message)
  diag_init(&d2, NULL);
  assert_null(ir_interp(t.g, sv5, iv, NULL, false, &d2));
  assert_non_null(d2.log);
  assert_non_null(strstr(d2.log, too_long));  // the interpreter's: the same
  assert_null(strstr(d2.log, "gather: index"));
  diag_fini(&d2);
  bufs_free(&b);
  b = make_bufs(&t, p, sv4, false);  // T = 4 fits
  assert_true(cg_run(p, sv4, b.buf, &t.d));
  bufs_free(&b);
  cg_program_free(p);
  t_fini(&t);

  // a target outside the classes; an integer division by zero
  t_init(&t);
  f = diag_add_file(&t.d, "m.heed", "x\n", 2);
  IrNode *x = fin(&t, "B,5"), *y = in(&t, IR_I32, "B", 0, 4);
  IrAttr ig = {.ignore = -100};
  ir_output(t.g, "l", ir_op(t.g, IR_OP_XENT, (IrNode *[]){x, y}, 2, &ig, NULL, (SrcLoc){f, 1, 1}));
  IrNode *a = in(&t, IR_I32, "B", 1, 4), *z = in(&t, IR_I32, "B", 0, 0);
  ir_output(t.g, "q", ir_op(t.g, IR_OP_DIV, (IrNode *[]){a, z}, 2, &(IrAttr){0}, NULL, (SrcLoc){f, 1, 1}));
  p = compile(&t);
  sv[0] = 2;
  b = make_bufs(&t, p, sv, false);
  ((int32_t *)b.buf[y->id])[1] = 5;
  assert_false(cg_run(p, sv, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, "cross_entropy: target 5 is outside the 5 classes"));
  ((int32_t *)b.buf[y->id])[1] = 0;
  assert_false(cg_run(p, sv, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, "div: integer division by zero"));
  bufs_free(&b);
  cg_program_free(p);
  t_fini(&t);

  // a slice longer than its (symbolic) axis at run time
  t_init(&t);
  f = diag_add_file(&t.d, "m.heed", "x\n", 2);
  IrNode *tb = fin(&t, "S,3");
  IrType s5 = ty(IR_F32, "5,3");
  ir_output(t.g, "s", ir_op(t.g, IR_OP_SLICE, &tb, 1, &(IrAttr){.axis = 0, .start = 0}, &s5, (SrcLoc){f, 1, 1}));
  p = compile(&t);
  int64_t sv2[3] = {1, 1, 4};
  b = make_bufs(&t, p, sv2, false);
  assert_false(cg_run(p, sv2, b.buf, &t.d));
  assert_non_null(strstr(t.d.log, "slice: 5 elements from 0 do not fit axis 0 of size 4"));
  bufs_free(&b);
  cg_program_free(p);
  t_fini(&t);

  // f16 is rejected at compile time
  t_init(&t);
  IrNode *h = in(&t, IR_F16, "B,3", 0, 1);
  ir_output(t.g, "h", op1(&t, IR_OP_NEG, h));
  assert_null(cg_compile(t.g, NULL, &t.d));
  assert_non_null(strstr(t.d.log, "cpu backend: f16 is not supported yet; use --interp"));
  t_fini(&t);
}

static int report(void **state) {
  (void)state;
  print_message("largest error relative to max |value| of a node: %.3g (tolerance %.0e)\n", worst_rel, TOL);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_f32), cmocka_unit_test(test_binary_int), cmocka_unit_test(test_where),
      cmocka_unit_test(test_unary),      cmocka_unit_test(test_cast),       cmocka_unit_test(test_const_positions),
      cmocka_unit_test(test_matmul),     cmocka_unit_test(test_reduce),     cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_norms),      cmocka_unit_test(test_shape),      cmocka_unit_test(test_gather),
      cmocka_unit_test(test_attention),  cmocka_unit_test(test_rope),       cmocka_unit_test(test_xent),
      cmocka_unit_test(test_gpt),        cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
