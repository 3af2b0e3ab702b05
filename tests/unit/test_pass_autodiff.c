// tests/unit/test_pass_autodiff.c: reverse-mode autodiff (passes/autodiff.c)
// and the gradient kernels (ir/kernels_grad.c), checked against central
// finite differences in f64 (ARCHITECTURE.md section 9, check 3; ggml
// test-backend-ops MODE_GRAD).
//
// Every check builds a small forward graph with builders, seeded random
// float inputs and parameters, and a scalar loss = sum_i sum(out_i * R_i)
// with fixed random R_i held in buffers (so no gradient is asked for them).
// The finite differences run on the forward graph alone; then pass_autodiff
// (inputs_too) appends the backward graph, ir_verify must pass, and
// ir_interp(exact) gives every "grad.NAME" output to compare.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "passes/pass.h"
#include "testutil.h"

// Finite differences: step H_REL * max(1, |x|); compare with
// |ad - fd| <= ATOL + RTOL |fd|.
static const double H_REL = 1e-6, ATOL = 1e-8, RTOL = 1e-6;

enum { MAXN = 1024, MAXOUT = 8 };

typedef struct {
  Arena *a;
  Diag d;
  IrGraph *g;
  int64_t sym[IR_MAX_SYMS];  // values of the symbolic sizes
  double *val[MAXN];         // per leaf node id: its values (malloc'd)
  uint64_t rng;
} T;

static double worst_abs, worst_rel;  // over the whole run (relative where |fd| > 1e-3)

static void t_init(T *t, uint64_t seed) {
  memset(t, 0, sizeof *t);
  diag_init(&t->d, NULL);
  t->a = arena_new();
  assert_non_null(t->a);
  t->g = ir_graph_new(t->a, &t->d, "test");
  assert_non_null(t->g);
  t->rng = seed * 0x9E3779B97F4A7C15ull + 1;
}

static void t_free(T *t) {
  for (int i = 0; i < MAXN; i++) free(t->val[i]);
  arena_free(t->a);
  diag_fini(&t->d);
}

static const char *t_log(const T *t) { return t->d.log ? t->d.log : ""; }

static double rnd(T *t, double lo, double hi) {  // xorshift64*
  t->rng ^= t->rng >> 12;
  t->rng ^= t->rng << 25;
  t->rng ^= t->rng >> 27;
  uint64_t r = t->rng * 2685821657736338717ull;
  return lo + (hi - lo) * (double)(r >> 11) / 9007199254740992.0;
}

// ---- types and leaves ----

static IrType mkty(IrDType dt, int rank, const int64_t *d) {
  IrType t = {.dt = dt, .rank = rank};
  for (int i = 0; i < rank; i++) t.dim[i] = ir_dim_const(d[i]);
  return t;
}
#define TY(dt, ...) mkty(dt, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
static const IrType SCALAR = {.dt = IR_F32};

static const SrcLoc L0 = {0, 1, 1};

static int64_t numel(T *t, const IrType *ty) {
  int64_t n = ir_type_numel(ty, t->sym);
  assert_true(n >= 0);
  return n;
}

// A leaf with the given values (vals) or uniform random ones in [lo, hi].
typedef enum { K_INPUT, K_PARAM, K_BUFFER } Kind;
static IrNode *leaf(T *t, Kind kind, const char *name, IrType ty, const double *vals, double lo, double hi) {
  IrNode *n = kind == K_INPUT ? ir_input(t->g, name, &ty, L0)
                              : ir_param(t->g, name, &ty, (IrInit){.kind = "zeros"}, kind == K_BUFFER, L0);
  assert_non_null(n);
  assert_true(n->id < MAXN);
  int64_t ne = numel(t, &ty);
  double *v = malloc(sizeof(double) * (size_t)(ne ? ne : 1));
  assert_non_null(v);
  for (int64_t i = 0; i < ne; i++) v[i] = vals ? vals[i] : rnd(t, lo, hi);
  t->val[n->id] = v;
  return n;
}

static IrNode *in(T *t, const char *name, IrType ty, double lo, double hi) {
  return leaf(t, K_INPUT, name, ty, NULL, lo, hi);
}
static IrNode *in_vals(T *t, const char *name, IrType ty, const double *vals) {
  return leaf(t, K_INPUT, name, ty, vals, 0, 0);
}
static IrNode *par(T *t, const char *name, IrType ty, double lo, double hi) {
  return leaf(t, K_PARAM, name, ty, NULL, lo, hi);
}

// Random values in +-[0.2, 1.5]: away from the kinks of relu and abs.
static IrNode *in_away(T *t, const char *name, IrType ty) {
  IrNode *n = in(t, name, ty, 0.2, 1.5);
  for (int64_t i = 0; i < numel(t, &ty); i++)
    if (rnd(t, 0, 1) < 0.5) t->val[n->id][i] = -t->val[n->id][i];
  return n;
}

// ---- builders (assert that the forward graph is well typed) ----

static IrNode *chk(T *t, IrNode *n) {
  if (!n) fail_msg("builder failed:\n%s", t_log(t));
  return n;
}
static IrNode *un(T *t, IrOp op, IrNode *x) { return chk(t, ir_unary(t->g, op, x, L0)); }
static IrNode *bin(T *t, IrOp op, IrNode *a, IrNode *b) { return chk(t, ir_binary(t->g, op, a, b, L0)); }
static IrNode *opn(T *t, IrOp op, IrNode *const *s, int n, IrAttr at, const IrType *ty) {
  return chk(t, ir_op(t->g, op, s, n, &at, ty, L0));
}
static IrNode *op1(T *t, IrOp op, IrNode *x, IrAttr at, const IrType *ty) { return opn(t, op, &x, 1, at, ty); }

// ---- evaluation ----

static IrValues *eval(T *t) {
  IrGraph *g = t->g;
  double *ins[MAXN], *pars[MAXN];
  for (int i = 0; i < g->inputs.len; i++) ins[i] = t->val[g->inputs.data[i]->id];
  for (int i = 0; i < g->params.len; i++) pars[i] = t->val[g->params.data[i]->id];
  IrValues *v = ir_interp(g, t->sym, ins, pars, true, &t->d);
  if (!v) fail_msg("ir_interp failed:\n%s", t_log(t));
  return v;
}

static double eval_scalar(T *t, const IrNode *n) {
  IrValues *v = eval(t);
  double r = v->val[n->id][0];
  ir_values_free(v);
  return r;
}

static int output_index(const IrGraph *g, const char *name) {
  for (int i = 0; i < g->outputs.len; i++)
    if (!strcmp(g->output_names.data[i], name)) return i;
  return -1;
}

// Does leaf n get a gradient? Float inputs and trainable float parameters.
static bool differentiated(const IrNode *n) {
  if (!ir_dtype_info[n->ty.dt].is_float) return false;
  return n->op == IR_OP_INPUT || (n->op == IR_OP_PARAM && !(n->flags & IR_FLAG_BUFFER));
}

// Compares got (autodiff) with want (finite differences) in double.
static void close_d(const double *got, const double *want, int64_t n, const char *label) {
  int64_t bad = 0;
  double max_abs = 0, max_rel = 0;
  for (int64_t i = 0; i < n; i++) {
    double ae = fabs(got[i] - want[i]), re = fabs(want[i]) > 1e-3 ? ae / fabs(want[i]) : 0;
    if (!(ae <= ATOL + RTOL * fabs(want[i]))) {
      if (bad < 5)
        print_error("%s: [%lld] autodiff %.12g, finite differences %.12g (abs err %.3g)\n", label, (long long)i,
                    got[i], want[i], ae);
      bad++;
    }
    if (ae > max_abs || isnan(ae)) max_abs = ae;
    if (re > max_rel) max_rel = re;
  }
  if (max_abs > worst_abs) worst_abs = max_abs;
  if (max_rel > worst_rel) worst_rel = max_rel;
  if (bad) {
    print_error("%s: %lld of %lld values differ; max abs err %.3g, max rel err %.3g\n", label, (long long)bad,
                (long long)n, max_abs, max_rel);
    fail();
  }
}

// Builds loss = sum_i sum(outs[i] * R_i), checks every gradient against
// finite differences, and returns the loss node (the graph now holds the
// backward part too). Frees nothing: the caller frees t.
static IrNode *check_grads(T *t, IrNode *const *outs, int nout) {
  IrGraph *g = t->g;
  IrNode *loss = NULL;
  for (int i = 0; i < nout; i++) {
    char name[16];
    snprintf(name, sizeof name, "r%d", i);
    IrNode *r = leaf(t, K_BUFFER, name, outs[i]->ty, NULL, -1, 1);
    IrAttr all = {.axes = (1u << outs[i]->ty.rank) - 1};
    IrNode *m = bin(t, IR_OP_MUL, outs[i], r), *s = op1(t, IR_OP_SUM, m, all, NULL);
    if (s->ty.dt != IR_F32) s = op1(t, IR_OP_CAST, s, (IrAttr){0}, &SCALAR);
    loss = loss ? bin(t, IR_OP_ADD, loss, s) : s;
  }
  assert_true(ir_verify(g));

  // Central differences on the forward graph, per differentiated leaf.
  int nfwd = g->nodes.len;
  double *fd[MAXN] = {0};
  for (int i = 0; i < nfwd; i++) {
    IrNode *n = g->nodes.data[i];
    if ((n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) || !differentiated(n)) continue;
    int64_t ne = numel(t, &n->ty);
    fd[i] = malloc(sizeof(double) * (size_t)(ne ? ne : 1));
    assert_non_null(fd[i]);
    for (int64_t j = 0; j < ne; j++) {
      double x = t->val[i][j], h = H_REL * fmax(1, fabs(x));
      t->val[i][j] = x + h;
      double lp = eval_scalar(t, loss);
      t->val[i][j] = x - h;
      double lm = eval_scalar(t, loss);
      t->val[i][j] = x;
      fd[i][j] = (lp - lm) / (2 * h);
    }
  }
  double want_loss = eval_scalar(t, loss);

  if (!pass_autodiff(g, loss, true)) fail_msg("pass_autodiff failed:\n%s", t_log(t));
  if (!ir_verify(g)) fail_msg("ir_verify failed after autodiff:\n%s", t_log(t));
  IrValues *v = eval(t);
  int li = output_index(g, "loss");
  assert_true(li >= 0);
  assert_true(v->val[g->outputs.data[li]->id][0] == want_loss);
  int ngrad = 0;
  for (int i = 0; i < g->outputs.len; i++) {
    ngrad += !strncmp(g->output_names.data[i], "grad.", 5);
    assert_true(!strncmp(g->output_names.data[i], "grad.", 5) == !!(g->outputs.data[i]->flags & IR_FLAG_GRAD));
  }
  int nwant = 0;
  for (int i = 0; i < nfwd; i++) {
    if (!fd[i]) continue;
    IrNode *n = g->nodes.data[i];
    char name[128];
    snprintf(name, sizeof name, "grad.%s", n->name);
    int oi = output_index(g, name);
    if (oi < 0) fail_msg("no output %s", name);
    const IrNode *gn = g->outputs.data[oi];
    assert_true(ir_type_eq(&gn->ty, &n->ty));
    close_d(v->val[gn->id], fd[i], numel(t, &n->ty), name);
    nwant++;
    free(fd[i]);
  }
  assert_int_equal(ngrad, nwant);  // none for integer inputs or buffers
  ir_values_free(v);
  return loss;
}

#define CHECK(t, ...) \
  check_grads((t), (IrNode *const[]){__VA_ARGS__}, (int)(sizeof((IrNode *[]){__VA_ARGS__}) / sizeof(IrNode *)))

// ---- elementwise ----

// Each binary op with broadcasting both ways: b into a, a into b, both
// into a shape neither has, and a rank-0 operand.
static void binary_case(IrOp op, uint64_t seed) {
  T t;
  t_init(&t, seed);
  double lo = op == IR_OP_DIV ? 0.5 : -1, hi = op == IR_OP_DIV ? 2 : 1;
  IrNode *a = in(&t, "a", TY(IR_F32, 2, 3, 4), -1, 1), *b = in(&t, "b", TY(IR_F32, 3, 1), lo, hi);
  IrNode *c = in(&t, "c", TY(IR_F32, 4), -1, 1), *d = in(&t, "d", TY(IR_F32, 2, 3, 4), lo, hi);
  IrNode *e = in(&t, "e", TY(IR_F32, 2, 1, 4), -1, 1), *f = in(&t, "f", TY(IR_F32, 3, 1), lo, hi);
  IrNode *s = in(&t, "s", SCALAR, lo, hi), *u = in(&t, "u", TY(IR_F32, 3, 4), -1, 1);
  CHECK(&t, bin(&t, op, a, b), bin(&t, op, c, d), bin(&t, op, e, f), bin(&t, op, u, s), bin(&t, op, u, u));
  t_free(&t);
}

static void test_add(void **state) { (void)state; binary_case(IR_OP_ADD, 1); }
static void test_sub(void **state) { (void)state; binary_case(IR_OP_SUB, 2); }
static void test_mul(void **state) { (void)state; binary_case(IR_OP_MUL, 3); }
static void test_div(void **state) { (void)state; binary_case(IR_OP_DIV, 4); }
static void test_maximum(void **state) { (void)state; binary_case(IR_OP_MAXIMUM, 5); }
static void test_minimum(void **state) { (void)state; binary_case(IR_OP_MINIMUM, 6); }

static void test_where(void **state) {
  (void)state;
  T t;
  t_init(&t, 7);
  double cv[] = {1, 0, 0, 1, 0, 1, 1, 0};
  IrNode *c = in_vals(&t, "c", TY(IR_BOOL, 2, 1, 4), cv);
  IrNode *a = in(&t, "a", TY(IR_F32, 3, 4), -1, 1), *b = in(&t, "b", TY(IR_F32, 2, 3, 1), -1, 1);
  IrNode *s[3] = {c, a, b};
  CHECK(&t, opn(&t, IR_OP_WHERE, s, 3, (IrAttr){0}, NULL));
  t_free(&t);
}

static void test_unary(void **state) {
  (void)state;
  static const struct { IrOp op; double lo, hi; bool away; } cases[] = {
      {IR_OP_NEG, -1, 1, false},  {IR_OP_EXP, -1, 1, false},    {IR_OP_LOG, 0.3, 2, false},
      {IR_OP_SQRT, 0.3, 2, false}, {IR_OP_RSQRT, 0.3, 2, false}, {IR_OP_TANH, -2, 2, false},
      {IR_OP_SIGMOID, -3, 3, false}, {IR_OP_RELU, 0, 0, true},  {IR_OP_GELU, -3, 3, false},
      {IR_OP_GELU_TANH, -3, 3, false}, {IR_OP_SILU, -3, 3, false}, {IR_OP_ABS, 0, 0, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    T t;
    t_init(&t, 100 + i);
    IrType ty = TY(IR_F32, 2, 3, 4);
    IrNode *x = cases[i].away ? in_away(&t, "x", ty) : in(&t, "x", ty, cases[i].lo, cases[i].hi);
    print_message("unary %s\n", ir_op_name(cases[i].op));
    CHECK(&t, un(&t, cases[i].op, x));
    t_free(&t);
  }
}

// f32 -> f16 -> f32 is the identity in exact mode, so the gradient goes
// straight through; a path through i32 carries none.
static void test_cast_dropout(void **state) {
  (void)state;
  T t;
  t_init(&t, 8);
  IrType f16 = TY(IR_F16, 2, 3), f32 = TY(IR_F32, 2, 3), i32 = TY(IR_I32, 2, 3);
  IrNode *x = in(&t, "x", f32, 0.2, 0.8);  // away from integers: the i32 path stays constant
  IrNode *h = op1(&t, IR_OP_CAST, x, (IrAttr){0}, &f16);
  IrNode *y = op1(&t, IR_OP_CAST, un(&t, IR_OP_EXP, h), (IrAttr){0}, &f32);
  IrNode *z = op1(&t, IR_OP_CAST, op1(&t, IR_OP_CAST, bin(&t, IR_OP_MUL, x, x), (IrAttr){0}, &i32), (IrAttr){0}, &f32);
  IrNode *dr = op1(&t, IR_OP_DROPOUT, x, (IrAttr){.value = 0.1}, NULL);
  CHECK(&t, bin(&t, IR_OP_ADD, y, z), dr, un(&t, IR_OP_TANH, h));
  t_free(&t);
}

// ---- matmul ----

static void test_matmul(void **state) {
  (void)state;
  T t;
  t_init(&t, 9);
  IrNode *a = in(&t, "a", TY(IR_F32, 2, 3, 4), -1, 1), *b = in(&t, "b", TY(IR_F32, 4, 5), -1, 1);
  IrNode *c = in(&t, "c", TY(IR_F32, 3, 4), -1, 1), *d = in(&t, "d", TY(IR_F32, 2, 4, 5), -1, 1);
  IrNode *e = in(&t, "e", TY(IR_F32, 2, 1, 3, 4), -1, 1), *f = in(&t, "f", TY(IR_F32, 3, 4, 2), -1, 1);
  IrNode *p = par(&t, "p", TY(IR_F32, 1, 5, 3), -1, 1), *q = par(&t, "q", TY(IR_F32, 4, 3, 2), -1, 1);
  CHECK(&t, bin(&t, IR_OP_MATMUL, a, b), bin(&t, IR_OP_MATMUL, c, d), bin(&t, IR_OP_MATMUL, e, f),
        bin(&t, IR_OP_MATMUL, p, q), bin(&t, IR_OP_MATMUL, c, b));
  t_free(&t);
}

// ---- reductions ----

static void test_reductions(void **state) {
  (void)state;
  static const IrOp ops[] = {IR_OP_SUM, IR_OP_MEAN, IR_OP_MAX, IR_OP_MIN};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    T t;
    t_init(&t, 200 + i);
    print_message("reduction %s\n", ir_op_name(ops[i]));
    IrNode *x = in(&t, "x", TY(IR_F32, 2, 3, 4), -1, 1);
    CHECK(&t, op1(&t, ops[i], x, (IrAttr){.axes = 2}, NULL),
          op1(&t, ops[i], x, (IrAttr){.axes = 5, .keepdim = true}, NULL),
          op1(&t, ops[i], x, (IrAttr){.axes = 7}, NULL),
          op1(&t, ops[i], x, (IrAttr){.axes = 4, .keepdim = true}, NULL));
    t_free(&t);
  }
}

// MEAN over a symbolic size divides by a count made at run time.
static void test_mean_symbolic(void **state) {
  (void)state;
  T t;
  t_init(&t, 10);
  int b = ir_symtab_intern(&t.g->syms, t.a, "B");
  assert_true(b >= 0);
  t.sym[b] = 4;
  IrType ty = {.dt = IR_F32, .rank = 2, .dim = {ir_dim_sym(b), ir_dim_const(3)}};
  IrNode *x = in(&t, "x", ty, -1, 1);
  CHECK(&t, op1(&t, IR_OP_MEAN, x, (IrAttr){.axes = 1}, NULL), op1(&t, IR_OP_MEAN, x, (IrAttr){.axes = 3}, NULL),
        op1(&t, IR_OP_MEAN, x, (IrAttr){.axes = 2, .keepdim = true}, NULL));
  t_free(&t);
}

// REDUCE_GRAD and MAXIMUM_GRAD split dy evenly among ties (torch.amax,
// torch.maximum); checked on crafted ties, where finite differences do not apply.
static void test_ties(void **state) {
  (void)state;
  T t;
  t_init(&t, 11);
  double xv[] = {1, 3, 3, 2, 5, 5, 5, 0}, av[] = {1, 2, 3}, bv[] = {1, 0, 5};
  IrNode *x = in_vals(&t, "x", TY(IR_F32, 2, 4), xv);
  IrNode *mx = op1(&t, IR_OP_MAX, x, (IrAttr){.axes = 2}, NULL);
  IrNode *mn = op1(&t, IR_OP_MIN, x, (IrAttr){.axes = 1, .keepdim = true}, NULL);
  IrNode *a = in_vals(&t, "a", TY(IR_F32, 3), av), *b = in_vals(&t, "b", TY(IR_F32, 3), bv);
  IrNode *mm = bin(&t, IR_OP_MAXIMUM, a, b), *mi = bin(&t, IR_OP_MINIMUM, a, b);
  IrAttr all1 = {.axes = 1}, all2 = {.axes = 3};
  IrNode *loss = bin(&t, IR_OP_ADD, op1(&t, IR_OP_SUM, mx, all1, NULL), op1(&t, IR_OP_SUM, mn, all2, NULL));
  loss = bin(&t, IR_OP_ADD, loss, op1(&t, IR_OP_SUM, bin(&t, IR_OP_MUL, mm, mi), all1, NULL));
  assert_true(pass_autodiff(t.g, loss, true));
  assert_true(ir_verify(t.g));
  IrValues *v = eval(&t);
  const double *gx = v->val[t.g->outputs.data[output_index(t.g, "grad.x")]->id];
  const double *ga = v->val[t.g->outputs.data[output_index(t.g, "grad.a")]->id];
  const double *gb = v->val[t.g->outputs.data[output_index(t.g, "grad.b")]->id];
  // max over rows: [1,3,3,2] -> 1/2 to each 3; [5,5,5,0] -> 1/3 to each 5.
  // min over columns (keepdim): (1,5) -> 1 to the 1, (3,5) -> 1 to the 3, (3,5)
  // likewise, (2,0) -> 1 to the 0.
  double want_x[] = {1, 1.5, 1.5, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1};
  // loss term: max(a,b) * min(a,b) = a b everywhere; at the tie a=b=1 both
  // max and min split half-half: d/da = 0.5 mi + 0.5 mm = 1.
  double want_a[] = {1, 0, 5}, want_b[] = {1, 2, 3};
  close_d(gx, want_x, 8, "grad.x");
  close_d(ga, want_a, 3, "grad.a");
  close_d(gb, want_b, 3, "grad.b");
  ir_values_free(v);
  t_free(&t);
}

// ---- softmax and normalisation ----

static void test_softmax(void **state) {
  (void)state;
  T t;
  t_init(&t, 12);
  IrNode *x = in(&t, "x", TY(IR_F32, 2, 3, 4), -2, 2);
  CHECK(&t, op1(&t, IR_OP_SOFTMAX, x, (IrAttr){.axis = 1}, NULL), op1(&t, IR_OP_SOFTMAX, x, (IrAttr){.axis = 2}, NULL),
        op1(&t, IR_OP_LOG_SOFTMAX, x, (IrAttr){.axis = 0}, NULL),
        op1(&t, IR_OP_LOG_SOFTMAX, x, (IrAttr){.axis = 2}, NULL));
  t_free(&t);
}

static void test_norms(void **state) {
  (void)state;
  T t;
  t_init(&t, 13);
  IrNode *x = in(&t, "x", TY(IR_F32, 2, 3, 5), -2, 2), *x2 = in(&t, "x2", TY(IR_F32, 4, 5), -1, 1);
  IrNode *w = par(&t, "ln.weight", TY(IR_F32, 5), 0.5, 1.5), *b = par(&t, "ln.bias", TY(IR_F32, 5), -1, 1);
  IrNode *rw = par(&t, "rms.weight", TY(IR_F32, 5), 0.5, 1.5);
  IrNode *ls[3] = {x, w, b}, *rs[2] = {x, rw}, *rs2[2] = {x2, rw};
  CHECK(&t, opn(&t, IR_OP_LAYERNORM, ls, 3, (IrAttr){.eps = 1e-5}, NULL),
        opn(&t, IR_OP_RMSNORM, rs, 2, (IrAttr){.eps = 1e-6}, NULL),
        opn(&t, IR_OP_RMSNORM, rs2, 2, (IrAttr){.eps = 0.1}, NULL));
  t_free(&t);
}

// ---- shape ops ----

static void test_shape_ops(void **state) {
  (void)state;
  T t;
  t_init(&t, 14);
  IrNode *x = in(&t, "x", TY(IR_F32, 2, 5, 4), -1, 1);
  IrType r1 = TY(IR_F32, 10, 4), r2 = TY(IR_F32, 2, 2, 5, 2);
  IrType s1 = TY(IR_F32, 2, 2, 4), s2 = TY(IR_F32, 2, 5, 3), s3 = TY(IR_F32, 1, 5, 4);
  IrNode *rs = op1(&t, IR_OP_RESHAPE, x, (IrAttr){0}, &r1);
  IrNode *rs2 = op1(&t, IR_OP_RESHAPE, un(&t, IR_OP_TANH, rs), (IrAttr){0}, &r2);
  IrNode *pm = op1(&t, IR_OP_PERMUTE, x, (IrAttr){.perm = {2, 0, 1}}, NULL);
  IrNode *sl1 = op1(&t, IR_OP_SLICE, x, (IrAttr){.axis = 1, .start = -2}, &s1);
  IrNode *sl2 = op1(&t, IR_OP_SLICE, x, (IrAttr){.axis = 2, .start = 1}, &s2);
  IrNode *sl3 = op1(&t, IR_OP_SLICE, x, (IrAttr){.axis = 0, .start = -1}, &s3);
  CHECK(&t, rs2, pm, sl1, sl2, bin(&t, IR_OP_MUL, sl3, sl3));
  t_free(&t);
}

static void test_concat(void **state) {
  (void)state;
  T t;
  t_init(&t, 15);
  IrNode *a = in(&t, "a", TY(IR_F32, 2, 1, 3), -1, 1), *b = in(&t, "b", TY(IR_F32, 2, 2, 3), -1, 1);
  IrNode *c = in(&t, "c", TY(IR_F32, 2, 3, 3), -1, 1);
  IrNode *s[4] = {a, b, c, b}, *s2[2] = {c, c};
  CHECK(&t, opn(&t, IR_OP_CONCAT, s, 4, (IrAttr){.axis = 1}, NULL),
        opn(&t, IR_OP_CONCAT, s2, 2, (IrAttr){.axis = 2}, NULL),
        opn(&t, IR_OP_CONCAT, &a, 1, (IrAttr){.axis = 0}, NULL));
  t_free(&t);
}

static void test_expand_sum_to(void **state) {
  (void)state;
  T t;
  t_init(&t, 16);
  IrNode *x = in(&t, "x", TY(IR_F32, 3, 1), -1, 1), *y = in(&t, "y", TY(IR_F32, 2, 3, 4), -1, 1);
  IrType big = TY(IR_F32, 2, 3, 4), small = TY(IR_F32, 3, 1), row = TY(IR_F32, 4);
  CHECK(&t, op1(&t, IR_OP_EXPAND, x, (IrAttr){0}, &big), op1(&t, IR_OP_SUM_TO, y, (IrAttr){0}, &small),
        op1(&t, IR_OP_SUM_TO, y, (IrAttr){0}, &row));
  t_free(&t);
}

// GATHER scatter-adds into the table (repeated indices); none for idx.
static void test_gather(void **state) {
  (void)state;
  T t;
  t_init(&t, 17);
  double iv[] = {0, 4, 2, 2, 0, 1}, jv[] = {3, 0, 3};
  IrNode *tab = par(&t, "wte", TY(IR_F32, 5, 3), -1, 1), *idx = in_vals(&t, "idx", TY(IR_I32, 2, 3), iv);
  IrNode *tab3 = par(&t, "t3", TY(IR_F32, 4, 2, 3), -1, 1), *jdx = in_vals(&t, "jdx", TY(IR_I64, 3), jv);
  CHECK(&t, bin(&t, IR_OP_GATHER, tab, idx), bin(&t, IR_OP_GATHER, tab3, jdx));
  t_free(&t);
}

// ---- Transformer ops ----

// Grouped-query (4 query heads on 2 kv heads), causal with S > T (query t
// sees keys s <= t + 2), a keep-mask that leaves one row with no visible
// key, plus a plain multi-head call with T > S.
static void test_attention(void **state) {
  (void)state;
  T t;
  t_init(&t, 18);
  IrNode *q = in(&t, "q", TY(IR_F32, 2, 3, 8), -1, 1), *k = in(&t, "k", TY(IR_F32, 2, 5, 4), -1, 1);
  IrNode *v = in(&t, "v", TY(IR_F32, 2, 5, 4), -1, 1);
  double mv[] = {1, 0, 1, 1, 1, 0, 0, 0, 1, 1};  // batch 1, query 0 sees s <= 2: all masked
  IrNode *m = in_vals(&t, "mask", TY(IR_BOOL, 2, 5), mv);
  IrNode *s1[4] = {q, k, v, m};
  IrNode *a1 = opn(&t, IR_OP_ATTENTION, s1, 4, (IrAttr){.heads = 4, .kv_heads = 2, .causal = true, .scale = 0.7}, NULL);
  IrNode *q2 = in(&t, "q2", TY(IR_F32, 1, 4, 6), -1, 1), *k2 = in(&t, "k2", TY(IR_F32, 1, 3, 6), -1, 1);
  IrNode *v2 = in(&t, "v2", TY(IR_F32, 1, 3, 6), -1, 1), *s2[3] = {q2, k2, v2};
  IrNode *a2 = opn(&t, IR_OP_ATTENTION, s2, 3, (IrAttr){.heads = 2, .kv_heads = 2, .scale = 1 / sqrt(3.0)}, NULL);
  IrNode *k3 = in(&t, "k3", TY(IR_F32, 1, 3, 3), -1, 1), *s3[3] = {q2, k3, k3};  // k3 as both k and v
  IrNode *a3 = opn(&t, IR_OP_ATTENTION, s3, 3, (IrAttr){.heads = 2, .kv_heads = 1, .causal = true, .scale = 0.5}, NULL);
  CHECK(&t, a1, a2, a3);
  t_free(&t);
}

static void test_rope(void **state) {
  (void)state;
  T t;
  t_init(&t, 19);
  IrNode *x = in(&t, "x", TY(IR_F32, 2, 3, 8), -1, 1);
  CHECK(&t, op1(&t, IR_OP_ROPE, x, (IrAttr){.heads = 2, .base = 10000}, NULL),
        op1(&t, IR_OP_ROPE, x, (IrAttr){.heads = 2, .base = 10, .interleaved = true}, NULL),
        op1(&t, IR_OP_ROPE, x, (IrAttr){.heads = 1, .base = 100, .inverse = true}, NULL));
  t_free(&t);
}

static void test_xent(void **state) {
  (void)state;
  T t;
  t_init(&t, 20);
  double tv[] = {1, -1, 4, 0, 2, -1}, tv2[] = {2, 2, 0, 1};
  IrNode *l = in(&t, "logits", TY(IR_F32, 2, 3, 5), -2, 2), *tg = in_vals(&t, "targets", TY(IR_I32, 2, 3), tv);
  IrNode *l2 = in(&t, "l2", TY(IR_F32, 4, 3), -2, 2), *tg2 = in_vals(&t, "t2", TY(IR_I32, 4), tv2);
  IrNode *s1[2] = {l, tg}, *s2[2] = {l2, tg2};
  CHECK(&t, opn(&t, IR_OP_XENT, s1, 2, (IrAttr){.ignore = -1}, NULL),
        opn(&t, IR_OP_XENT, s2, 2, (IrAttr){.ignore = 2}, NULL));
  t_free(&t);
}

// Integer values carry no gradient: positions, a cast to float of them.
static void test_positions(void **state) {
  (void)state;
  T t;
  t_init(&t, 21);
  IrNode *x = in(&t, "x", TY(IR_F32, 2, 3, 4), -1, 1);
  IrType col = TY(IR_I32, 3, 1), colf = TY(IR_F32, 3, 1);
  IrNode *p = op1(&t, IR_OP_RESHAPE, un(&t, IR_OP_POSITIONS, x), (IrAttr){0}, &col);
  CHECK(&t, bin(&t, IR_OP_MUL, x, op1(&t, IR_OP_CAST, p, (IrAttr){0}, &colf)));
  t_free(&t);
}

// ---- a small model: every adjoint accumulates over several users ----

static void test_block(void **state) {
  (void)state;
  T t;
  t_init(&t, 22);
  enum { B = 2, S = 4, C = 8, H = 2, V = 6 };
  double tok[] = {1, 5, 0, 3, 2, 2, 4, 1}, tgt[] = {5, 0, 3, -1, 2, 4, 1, 0};
  IrNode *tokens = in_vals(&t, "tokens", TY(IR_I32, B, S), tok);
  IrNode *targets = in_vals(&t, "targets", TY(IR_I32, B, S), tgt);
  IrNode *wte = par(&t, "wte", TY(IR_F32, V, C), -1, 1), *wpe = par(&t, "wpe", TY(IR_F32, 5, C), -0.5, 0.5);
  IrNode *lnw = par(&t, "ln.weight", TY(IR_F32, C), 0.5, 1.5), *lnb = par(&t, "ln.bias", TY(IR_F32, C), -0.2, 0.2);
  IrNode *wqkv = par(&t, "attn.w", TY(IR_F32, C, 3 * C), -0.5, 0.5);
  IrNode *wo = par(&t, "attn.proj", TY(IR_F32, C, C), -0.5, 0.5);
  IrNode *rw = par(&t, "rms.weight", TY(IR_F32, C), 0.5, 1.5), *unused = par(&t, "unused", TY(IR_F32, 3), -1, 1);
  (void)unused;
  IrNode *pos = un(&t, IR_OP_POSITIONS, tokens);
  IrNode *x = bin(&t, IR_OP_ADD, bin(&t, IR_OP_GATHER, wte, tokens), bin(&t, IR_OP_GATHER, wpe, pos));  // (B,S,C)
  IrNode *ls[3] = {x, lnw, lnb};
  IrNode *h = opn(&t, IR_OP_LAYERNORM, ls, 3, (IrAttr){.eps = 1e-5}, NULL);
  IrNode *qkv = bin(&t, IR_OP_MATMUL, h, wqkv);  // (B,S,3C)
  IrType part = TY(IR_F32, B, S, C);
  IrNode *q = op1(&t, IR_OP_SLICE, qkv, (IrAttr){.axis = 2, .start = 0}, &part);
  IrNode *k = op1(&t, IR_OP_SLICE, qkv, (IrAttr){.axis = 2, .start = C}, &part);
  IrNode *v = op1(&t, IR_OP_SLICE, qkv, (IrAttr){.axis = 2, .start = -C}, &part);
  q = op1(&t, IR_OP_ROPE, q, (IrAttr){.heads = H, .base = 10000}, NULL);
  k = op1(&t, IR_OP_ROPE, k, (IrAttr){.heads = H, .base = 10000}, NULL);
  IrNode *as[3] = {q, k, v};
  IrAttr aat = {.heads = H, .kv_heads = H, .causal = true, .scale = 0.5};
  IrNode *att = opn(&t, IR_OP_ATTENTION, as, 3, aat, NULL);
  x = bin(&t, IR_OP_ADD, x, bin(&t, IR_OP_MATMUL, att, wo));
  IrNode *mlp = un(&t, IR_OP_GELU_TANH, x);
  x = bin(&t, IR_OP_ADD, x, mlp);
  IrNode *rs[2] = {x, rw};
  x = opn(&t, IR_OP_RMSNORM, rs, 2, (IrAttr){.eps = 1e-6}, NULL);
  IrNode *wt = op1(&t, IR_OP_PERMUTE, wte, (IrAttr){.perm = {1, 0}}, NULL);
  IrNode *logits = bin(&t, IR_OP_MATMUL, x, wt);  // (B,S,V): tied embedding
  IrNode *xs[2] = {logits, targets};
  IrNode *loss = opn(&t, IR_OP_XENT, xs, 2, (IrAttr){.ignore = -1}, NULL);
  CHECK(&t, loss);
  // The parameter the loss does not use gets a zero gradient.
  int oi = output_index(t.g, "grad.unused");
  assert_true(oi >= 0);
  IrValues *vals = eval(&t);
  for (int i = 0; i < 3; i++) assert_true(vals->val[t.g->outputs.data[oi]->id][i] == 0);
  ir_values_free(vals);
  t_free(&t);
}

// ---- gradients that are zero or absent ----

static void test_unused_and_buffers(void **state) {
  (void)state;
  T t;
  t_init(&t, 23);
  IrNode *w = par(&t, "w", TY(IR_F32, 2, 3), -1, 1), *u = par(&t, "u", TY(IR_F32, 4), -1, 1);
  IrNode *s0 = par(&t, "s0", SCALAR, -1, 1);
  IrNode *buf = leaf(&t, K_BUFFER, "buf", TY(IR_F32, 2, 3), NULL, -1, 1);
  double iv[] = {1, 2};
  IrNode *ix = in_vals(&t, "ix", TY(IR_I32, 2), iv);
  (void)u;
  (void)s0;
  (void)ix;
  IrNode *loss = op1(&t, IR_OP_SUM, bin(&t, IR_OP_MUL, w, buf), (IrAttr){.axes = 3}, NULL);
  assert_true(pass_autodiff(t.g, loss, true));
  assert_true(ir_verify(t.g));
  assert_true(output_index(t.g, "loss") >= 0);
  assert_true(output_index(t.g, "grad.buf") < 0);
  assert_true(output_index(t.g, "grad.ix") < 0);
  int ou = output_index(t.g, "grad.u"), os = output_index(t.g, "grad.s0"), ow = output_index(t.g, "grad.w");
  assert_true(ou >= 0 && os >= 0 && ow >= 0);
  assert_true(ir_type_eq(&t.g->outputs.data[ou]->ty, &u->ty));
  assert_true(ir_type_eq(&t.g->outputs.data[os]->ty, &s0->ty));
  IrValues *v = eval(&t);
  for (int i = 0; i < 4; i++) assert_true(v->val[t.g->outputs.data[ou]->id][i] == 0);
  assert_true(v->val[t.g->outputs.data[os]->id][0] == 0);
  for (int i = 0; i < 6; i++) assert_true(v->val[t.g->outputs.data[ow]->id][i] == t.val[buf->id][i]);
  ir_values_free(v);

  // A loss that depends on no parameter at all: every gradient is zero.
  T t2;
  t_init(&t2, 24);
  IrNode *p = par(&t2, "p", TY(IR_F32, 2), -1, 1), *b2 = leaf(&t2, K_BUFFER, "b", TY(IR_F32, 2), NULL, -1, 1);
  (void)p;
  IrNode *l2 = op1(&t2, IR_OP_SUM, b2, (IrAttr){.axes = 1}, NULL);
  assert_true(pass_autodiff(t2.g, l2, false));
  assert_true(ir_verify(t2.g));
  IrValues *v2 = eval(&t2);
  int op = output_index(t2.g, "grad.p");
  assert_true(op >= 0);
  assert_true(v2->val[t2.g->outputs.data[op]->id][0] == 0 && v2->val[t2.g->outputs.data[op]->id][1] == 0);
  ir_values_free(v2);
  t_free(&t2);
  t_free(&t);
}

// ---- errors ----

static void test_errors(void **state) {
  (void)state;
  T t;
  t_init(&t, 25);
  IrNode *x = in(&t, "x", TY(IR_F32, 2, 3), -1, 1);
  assert_false(pass_autodiff(t.g, x, true));  // not a scalar
  assert_contains(t_log(&t), "the loss must be a float scalar");

  // A gradient op on the path has no gradient rule of its own.
  IrNode *y = un(&t, IR_OP_EXP, x);
  IrNode *g = opn(&t, IR_OP_UNARY_GRAD, (IrNode *const[]){x, y, x}, 3, (IrAttr){.fn = IR_OP_EXP}, NULL);
  IrNode *loss = op1(&t, IR_OP_SUM, g, (IrAttr){.axes = 3}, NULL);
  assert_false(pass_autodiff(t.g, loss, true));
  assert_contains(t_log(&t), "autodiff: unary_grad has no gradient rule");
  t_free(&t);
}

// GATHER_GRAD with an index outside the table is a run-time diagnostic;
// XENT_GRAD with every target ignored is zero.
static void test_grad_kernel_edges(void **state) {
  (void)state;
  T t;
  t_init(&t, 26);
  double iv[] = {0, 3}, tv[] = {-1, -1};
  IrNode *idx = in_vals(&t, "idx", TY(IR_I32, 2), iv), *dy = in(&t, "dy", TY(IR_F32, 2, 4), -1, 1);
  IrType tab = TY(IR_F32, 3, 4);
  IrNode *gs[2] = {idx, dy};
  opn(&t, IR_OP_GATHER_GRAD, gs, 2, (IrAttr){0}, &tab);
  double *ins[2] = {t.val[idx->id], t.val[dy->id]};
  IrValues *v = ir_interp(t.g, t.sym, ins, NULL, true, &t.d);
  assert_null(v);
  assert_contains(t_log(&t), "gather: index 3 is outside the table of 3 rows");
  t_free(&t);

  t_init(&t, 27);
  IrNode *l = in(&t, "l", TY(IR_F32, 2, 3), -1, 1), *tg = in_vals(&t, "tg", TY(IR_I32, 2), tv);
  IrNode *xs[2] = {l, tg};
  IrNode *loss = opn(&t, IR_OP_XENT, xs, 2, (IrAttr){.ignore = -1}, NULL);
  assert_true(pass_autodiff(t.g, loss, true));
  v = eval(&t);
  assert_true(v->val[loss->id][0] == 0);
  const double *gl = v->val[t.g->outputs.data[output_index(t.g, "grad.l")]->id];
  for (int i = 0; i < 6; i++) assert_true(gl[i] == 0);
  ir_values_free(v);
  t_free(&t);
}

static int report(void **state) {
  (void)state;
  print_message("finite differences: worst abs err %.3g, worst rel err %.3g (where |fd| > 1e-3); "
                "tolerance %.0e abs + %.0e rel, step %.0e relative\n",
                worst_abs, worst_rel, ATOL, RTOL, H_REL);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add),           cmocka_unit_test(test_sub),
      cmocka_unit_test(test_mul),           cmocka_unit_test(test_div),
      cmocka_unit_test(test_maximum),       cmocka_unit_test(test_minimum),
      cmocka_unit_test(test_where),         cmocka_unit_test(test_unary),
      cmocka_unit_test(test_cast_dropout),  cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_reductions),    cmocka_unit_test(test_mean_symbolic),
      cmocka_unit_test(test_ties),          cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_norms),         cmocka_unit_test(test_shape_ops),
      cmocka_unit_test(test_concat),        cmocka_unit_test(test_expand_sum_to),
      cmocka_unit_test(test_gather),        cmocka_unit_test(test_attention),
      cmocka_unit_test(test_rope),          cmocka_unit_test(test_xent),
      cmocka_unit_test(test_positions),     cmocka_unit_test(test_block),
      cmocka_unit_test(test_unused_and_buffers), cmocka_unit_test(test_errors),
      cmocka_unit_test(test_grad_kernel_edges),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
