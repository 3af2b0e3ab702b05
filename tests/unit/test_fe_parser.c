// tests/unit/test_fe_parser.c: the grammar (frontend/parser.y): the shapes of
// the language reference's example, statement separation and the newline
// rule, syntax errors with recovery, nesting limits, and the `--emit ast`
// listing.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

// ---- a compact rendering of expressions, to check tree shapes ----

typedef struct {
  char s[4096];
  size_t n;
} Buf;

static void put(Buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (b->n < sizeof b->s) {
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    if (k > 0) b->n += (size_t)k;
  }
  va_end(ap);
}

static void sx(Buf *b, const FeExpr *e);

static void sx_args(Buf *b, const FeArg *args, int n) {
  for (int i = 0; i < n; i++) {
    if (i) put(b, " ");
    if (args[i].kw) put(b, "%s=", args[i].kw);
    sx(b, args[i].e);
  }
}

// (+ a (* b c)), (neg x), f(a k=b), x[: (neg 1)], [1 2], (tuple 1 2)
static void sx(Buf *b, const FeExpr *e) {
  if (!e) {
    put(b, "<null>");
    return;
  }
  switch (e->kind) {
  case FE_EX_ERROR: put(b, "<error>"); break;
  case FE_EX_INT: put(b, "%lld", (long long)e->ival); break;
  case FE_EX_FLOAT: put(b, "%g", e->fval); break;
  case FE_EX_BOOL: put(b, "%s", e->ival ? "true" : "false"); break;
  case FE_EX_STR: put(b, "\"%s\"", e->name); break;
  case FE_EX_NAME: put(b, "%s", e->name); break;
  case FE_EX_BIN:
    put(b, "(%c ", e->op);
    sx(b, e->lhs);
    put(b, " ");
    sx(b, e->rhs);
    put(b, ")");
    break;
  case FE_EX_NEG:
    put(b, "(neg ");
    sx(b, e->lhs);
    put(b, ")");
    break;
  case FE_EX_CALL:
    put(b, "%s(", e->name);
    sx_args(b, e->args, e->nargs);
    put(b, ")");
    break;
  case FE_EX_INDEX:
    sx(b, e->lhs);
    put(b, "[");
    for (int i = 0; i < e->nidx; i++) {
      const FeIndexItem *s = &e->idx[i];
      if (i) put(b, ", ");
      if (!s->is_slice) {
        sx(b, s->e);
        continue;
      }
      if (s->lo) sx(b, s->lo);
      put(b, ":");
      if (s->hi) sx(b, s->hi);
    }
    put(b, "]");
    break;
  case FE_EX_LIST:
    put(b, "[");
    sx_args(b, e->args, e->nargs);
    put(b, "]");
    break;
  case FE_EX_TUPLE:
    put(b, "(tuple ");
    sx_args(b, e->args, e->nargs);
    put(b, ")");
    break;
  }
}

static const char *sxs(const FeExpr *e) {
  static Buf b;
  b.n = 0;
  b.s[0] = 0;
  sx(&b, e);
  return b.s;
}

// Parses src and asserts no diagnostics.
static void parse_ok(FeT *t, const char *src) {
  const char *log = fet_parse(t, src);
  if (log) fail_msg("unexpected diagnostics:\n%s\n--- for ---\n%s", log, src);
  assert_int_equal(t->ast->nsyntax_errors, 0);
}

// The statements of the forward (first FUNC item) of the last decl.
static const FeItem *last_func(const FeT *t) {
  const FeDecl *d = t->ast->decls[t->ast->ndecls - 1];
  for (int i = 0; i < d->nitems; i++)
    if (d->items[i]->kind == FE_IT_FUNC) return d->items[i];
  fail_msg("no function item");
  return NULL;
}

// Parses "model M {\n  forward(x: f32[4]) {\n    BODY\n  }\n}\n" and returns
// the statements.
static const FeItem *parse_body(FeT *t, const char *body) {
  char src[8192];
  snprintf(src, sizeof src, "model M {\n  forward(x: f32[4]) {\n    %s\n  }\n}\n", body);
  parse_ok(t, src);
  return last_func(t);
}

// The expression of "model M {\n  forward(x: f32[4]) = EXPR\n}\n".
static const char *expr_of(FeT *t, const char *expr) {
  char src[4096];
  snprintf(src, sizeof src, "model M {\n  forward(x: f32[4]) = %s\n}\n", expr);
  parse_ok(t, src);
  const FeItem *f = last_func(t);
  assert_int_equal(f->nbody, 1);
  assert_int_equal(f->body[0]->kind, FE_ST_RETURN);
  assert_int_equal(f->body[0]->nexprs, 1);
  return sxs(f->body[0]->exprs[0]);
}

static void expect_expr(const char *src, const char *want) {
  FeT t;
  const char *got = expr_of(&t, src);
  if (strcmp(got, want) != 0) fail_msg("'%s' parsed as %s, want %s", src, got, want);
  fet_free(&t);
}

// ---- the reference example ----

static const char *GPT2 =
    "// gpt2.heed\n"
    "config {\n"
    "  vocab  = 50257\n"
    "  ctx    = 1024\n"
    "  dim    = 768\n"
    "  heads  = 12\n"
    "  layers = 12\n"
    "  eps    = 1e-5\n"
    "}\n"
    "\n"
    "block LayerNorm(n) {\n"
    "  param weight: f32[n] = ones\n"
    "  param bias:   f32[n] = zeros\n"
    "  forward(x) = layernorm(x, weight, bias, eps=eps)\n"
    "}\n"
    "\n"
    "block Linear(n_in, n_out, std = 0.02) {     // weight stored [in, out]\n"
    "  param weight: f32[n_in, n_out] = normal(std)\n"
    "  param bias:   f32[n_out]       = zeros\n"
    "  forward(x) = x @ weight + bias\n"
    "}\n"
    "\n"
    "block Attention {\n"
    "  c_attn = Linear(dim, 3 * dim)\n"
    "  c_proj = Linear(dim, dim, std = 0.02 / sqrt(2 * layers))\n"
    "  forward(x) {\n"
    "    q, k, v = split(c_attn(x), 3, axis = -1)\n"
    "    return c_proj(attention(q, k, v, heads = heads, causal = true))\n"
    "  }\n"
    "}\n"
    "\n"
    "block MLP {\n"
    "  c_fc   = Linear(dim, 4 * dim)\n"
    "  c_proj = Linear(4 * dim, dim, std = 0.02 / sqrt(2 * layers))\n"
    "  forward(x) = c_proj(gelu_tanh(c_fc(x)))\n"
    "}\n"
    "\n"
    "block Block {\n"
    "  ln_1 = LayerNorm(dim)\n"
    "  attn = Attention\n"
    "  ln_2 = LayerNorm(dim)\n"
    "  mlp  = MLP\n"
    "  forward(x) {\n"
    "    x = x + attn(ln_1(x))\n"
    "    return x + mlp(ln_2(x))\n"
    "  }\n"
    "}\n"
    "\n"
    "model GPT2 {\n"
    "  param wte: f32[vocab, dim] = normal(0.02)\n"
    "  param wpe: f32[ctx, dim]   = normal(0.01)\n"
    "  h    = repeat(layers) Block\n"
    "  ln_f = LayerNorm(dim)\n"
    "  forward(tokens: i32[B, T]) -> f32[B, T, vocab] {\n"
    "    x = wte[tokens] + wpe[positions(tokens)]\n"
    "    return ln_f(h(x)) @ transpose(wte)\n"
    "  }\n"
    "}\n"
    "\n"
    "train GPT2 {\n"
    "  loss(tokens: i32[B, T], targets: i32[B, T]) = cross_entropy(GPT2(tokens), targets)\n"
    "  optimizer = adamw(lr = 6e-4, betas = (0.9, 0.95), eps = 1e-8, weight_decay = 0.1)\n"
    "  schedule  = cosine(warmup = 100, min_lr = 6e-5)\n"
    "  clip  = 1.0\n"
    "  batch = 8\n"
    "  seq   = 256\n"
    "  steps = 2000\n"
    "}\n";

static void test_reference_example(void **state) {
  (void)state;
  FeT t;
  parse_ok(&t, GPT2);
  const FeAst *a = t.ast;
  assert_int_equal(a->ndecls, 8);
  static const FeDeclKind kinds[] = {FE_DECL_CONFIG, FE_DECL_BLOCK, FE_DECL_BLOCK, FE_DECL_BLOCK,
                                     FE_DECL_BLOCK,  FE_DECL_BLOCK, FE_DECL_MODEL, FE_DECL_TRAIN};
  static const char *names[] = {NULL, "LayerNorm", "Linear", "Attention", "MLP", "Block", "GPT2", "GPT2"};
  static const int nitems[] = {6, 3, 3, 3, 3, 5, 5, 7};
  for (int i = 0; i < 8; i++) {
    assert_int_equal(a->decls[i]->kind, kinds[i]);
    if (names[i]) assert_string_equal(a->decls[i]->name, names[i]);
    else assert_null(a->decls[i]->name);
    assert_int_equal(a->decls[i]->nitems, nitems[i]);
  }
  // config values
  const FeDecl *cfg = a->decls[0];
  assert_string_equal(cfg->items[0]->name, "vocab");
  assert_string_equal(sxs(cfg->items[0]->expr), "50257");
  assert_int_equal(cfg->items[5]->expr->kind, FE_EX_FLOAT);
  assert_true(cfg->items[5]->expr->fval == 1e-5);
  assert_int_equal(cfg->loc.line, 2);
  assert_int_equal(cfg->loc.col, 1);

  // block Linear(n_in, n_out, std = 0.02)
  const FeDecl *lin = a->decls[2];
  assert_true(lin->has_args);
  assert_int_equal(lin->nargs, 3);
  assert_string_equal(lin->args[2].name, "std");
  assert_null(lin->defaults[0]);
  assert_string_equal(sxs(lin->defaults[2]), "0.02");
  assert_int_equal(lin->name_loc.line, 17);
  assert_int_equal(lin->name_loc.col, 7);
  const FeItem *w = lin->items[0];
  assert_int_equal(w->kind, FE_IT_PARAM);
  assert_string_equal(w->name, "weight");
  assert_string_equal(w->type->dtype, "f32");
  assert_int_equal(w->type->ndims, 2);
  assert_string_equal(sxs(w->type->dims[1]), "n_out");
  assert_string_equal(sxs(w->expr), "normal(std)");
  assert_string_equal(sxs(lin->items[2]->body[0]->exprs[0]), "(+ (@ x weight) bias)");

  // block Attention (no argument list)
  const FeDecl *att = a->decls[3];
  assert_false(att->has_args);
  assert_int_equal(att->items[1]->kind, FE_IT_BIND);
  assert_string_equal(sxs(att->items[1]->expr), "Linear(dim dim std=(/ 0.02 sqrt((* 2 layers))))");
  const FeItem *fwd = att->items[2];
  assert_int_equal(fwd->kind, FE_IT_FUNC);
  assert_string_equal(fwd->name, "forward");
  assert_int_equal(fwd->nparams, 1);
  assert_null(fwd->params[0].type);
  assert_int_equal(fwd->nbody, 2);
  assert_int_equal(fwd->body[0]->kind, FE_ST_ASSIGN);
  assert_int_equal(fwd->body[0]->nnames, 3);
  assert_string_equal(fwd->body[0]->names[2], "v");
  assert_int_equal(fwd->body[0]->name_locs[2].line, 27);
  assert_int_equal(fwd->body[0]->name_locs[2].col, 11);
  assert_string_equal(sxs(fwd->body[0]->exprs[0]), "split(c_attn(x) 3 axis=(neg 1))");
  assert_string_equal(sxs(fwd->body[1]->exprs[0]), "c_proj(attention(q k v heads=heads causal=true))");

  // block Block: instances without arguments are plain names
  const FeDecl *blk = a->decls[5];
  assert_string_equal(sxs(blk->items[1]->expr), "Attention");
  assert_string_equal(sxs(blk->items[4]->body[0]->exprs[0]), "(+ x attn(ln_1(x)))");

  // model GPT2
  const FeDecl *m = a->decls[6];
  const FeItem *h = m->items[2];
  assert_int_equal(h->kind, FE_IT_REPEAT);
  assert_string_equal(h->name, "h");
  assert_string_equal(h->block, "Block");
  assert_string_equal(sxs(h->expr), "layers");
  assert_false(h->has_args);
  assert_int_equal(h->block_loc.line, 52);
  assert_int_equal(h->block_loc.col, 25);
  const FeItem *mf = m->items[4];
  assert_int_equal(mf->nparams, 1);
  assert_string_equal(mf->params[0].name, "tokens");
  assert_string_equal(mf->params[0].type->dtype, "i32");
  assert_int_equal(mf->params[0].type->ndims, 2);
  assert_int_equal(mf->nrets, 1);
  assert_int_equal(mf->rets[0]->ndims, 3);
  assert_string_equal(sxs(mf->rets[0]->dims[2]), "vocab");
  assert_string_equal(sxs(mf->body[0]->exprs[0]), "(+ wte[tokens] wpe[positions(tokens)])");
  assert_string_equal(sxs(mf->body[1]->exprs[0]), "(@ ln_f(h(x)) transpose(wte))");

  // train GPT2
  const FeDecl *tr = a->decls[7];
  assert_int_equal(tr->items[0]->kind, FE_IT_FUNC);
  assert_string_equal(tr->items[0]->name, "loss");
  assert_int_equal(tr->items[0]->nparams, 2);
  assert_string_equal(sxs(tr->items[0]->body[0]->exprs[0]), "cross_entropy(GPT2(tokens) targets)");
  assert_string_equal(tr->items[1]->name, "optimizer");
  assert_string_equal(sxs(tr->items[1]->expr),
                      "adamw(lr=0.0006 betas=(tuple 0.9 0.95) eps=1e-08 weight_decay=0.1)");
  assert_string_equal(sxs(tr->items[2]->expr), "cosine(warmup=100 min_lr=6e-05)");
  assert_string_equal(tr->items[6]->name, "steps");
  fet_free(&t);
}

// ---- declarations and items ----

static void test_block_args(void **state) {
  (void)state;
  FeT t;
  parse_ok(&t,
           "block A(n, m = 2 * n,) {\n}\n"
           "block B() {}\n"
           "block C {}\n"
           "model M(k = 3) {\n  forward(x: f32) = x\n}\n");
  assert_int_equal(t.ast->ndecls, 4);
  const FeDecl *a = t.ast->decls[0];
  assert_true(a->has_args);
  assert_int_equal(a->nargs, 2);  // a trailing comma is allowed
  assert_string_equal(a->args[1].name, "m");
  assert_string_equal(sxs(a->defaults[1]), "(* 2 n)");
  assert_int_equal(a->args[1].loc.col, 12);
  assert_true(t.ast->decls[1]->has_args);
  assert_int_equal(t.ast->decls[1]->nargs, 0);
  assert_false(t.ast->decls[2]->has_args);
  assert_int_equal(t.ast->decls[2]->nitems, 0);
  const FeDecl *m = t.ast->decls[3];
  assert_int_equal(m->kind, FE_DECL_MODEL);
  assert_int_equal(m->nargs, 1);
  assert_string_equal(sxs(m->defaults[0]), "3");
  fet_free(&t);
}

static void test_param_buffer(void **state) {
  (void)state;
  FeT t;
  parse_ok(&t,
           "model M {\n"
           "  param w: f32[4, 2 * d] = normal(0, 0.02)\n"
           "  buffer mask: bool[T] = ones\n"
           "  param s: f32 = constant(1.5)\n"
           "  param e: bf16[] = uniform(-1, 1)\n"
           "  forward(x: f32) = x\n"
           "}\n");
  const FeDecl *m = t.ast->decls[0];
  const FeItem *w = m->items[0], *b = m->items[1], *s = m->items[2], *e = m->items[3];
  assert_int_equal(w->kind, FE_IT_PARAM);
  assert_int_equal(w->type->ndims, 2);
  assert_string_equal(sxs(w->type->dims[1]), "(* 2 d)");
  assert_string_equal(sxs(w->expr), "normal(0 0.02)");
  assert_int_equal(w->name_loc.col, 9);
  assert_int_equal(w->type->loc.col, 12);
  assert_int_equal(b->kind, FE_IT_BUFFER);
  assert_string_equal(b->name, "mask");
  assert_string_equal(b->type->dtype, "bool");
  assert_string_equal(sxs(b->expr), "ones");
  assert_false(s->type->has_dims);  // "f32": a scalar
  assert_int_equal(s->type->ndims, 0);
  assert_true(e->type->has_dims);   // "bf16[]": a scalar too
  assert_int_equal(e->type->ndims, 0);
  assert_string_equal(sxs(e->expr), "uniform((neg 1) 1)");
  fet_free(&t);
}

static void test_instances_and_repeat(void **state) {
  (void)state;
  FeT t;
  parse_ok(&t,
           "model M {\n"
           "  a = Lin(4)\n"
           "  b = Lin\n"
           "  h = repeat(n) Block\n"
           "  g = repeat(2 * n) Lin(4, m = 4)\n"
           "  forward(x: f32) = x\n"
           "}\n");
  const FeDecl *m = t.ast->decls[0];
  assert_int_equal(m->items[0]->kind, FE_IT_BIND);
  assert_string_equal(sxs(m->items[0]->expr), "Lin(4)");
  assert_string_equal(sxs(m->items[1]->expr), "Lin");
  const FeItem *h = m->items[2], *g = m->items[3];
  assert_int_equal(h->kind, FE_IT_REPEAT);
  assert_false(h->has_args);
  assert_int_equal(h->nargs, 0);
  assert_int_equal(g->kind, FE_IT_REPEAT);
  assert_true(g->has_args);
  assert_int_equal(g->nargs, 2);
  assert_string_equal(sxs(g->expr), "(* 2 n)");
  assert_string_equal(g->block, "Lin");
  assert_null(g->args[0].kw);
  assert_string_equal(g->args[1].kw, "m");
  assert_int_equal(g->args[1].kwloc.col, 28);
  fet_free(&t);
}

static void test_forward_forms(void **state) {
  (void)state;
  FeT t;
  parse_ok(&t,
           "block A {\n"
           "  forward(x) = x\n"
           "}\n"
           "block B {\n"
           "  forward(x, y) {\n"
           "    z = x\n"
           "    return z, y\n"
           "  }\n"
           "}\n"
           "block C {\n"
           "  forward() -> f32[B], i32[B] = f(1)\n"
           "}\n"
           "block D {\n"
           "  forward(a: f32[B, T], b) -> (f32[B], f32[T]) {\n"
           "    return a, b\n"
           "  }\n"
           "}\n");
  const FeItem *a = t.ast->decls[0]->items[0];
  assert_int_equal(a->nbody, 1);  // "= EXPR" is one return
  assert_int_equal(a->body[0]->kind, FE_ST_RETURN);
  assert_int_equal(a->nrets, 0);
  const FeItem *b = t.ast->decls[1]->items[0];
  assert_int_equal(b->nparams, 2);
  assert_int_equal(b->nbody, 2);
  assert_int_equal(b->body[1]->kind, FE_ST_RETURN);
  assert_int_equal(b->body[1]->nexprs, 2);
  assert_int_equal(b->body[1]->loc.line, 7);
  assert_int_equal(b->body[1]->loc.col, 5);
  const FeItem *c = t.ast->decls[2]->items[0];
  assert_int_equal(c->nparams, 0);
  assert_int_equal(c->nrets, 2);
  assert_string_equal(c->rets[1]->dtype, "i32");
  const FeItem *d = t.ast->decls[3]->items[0];
  assert_int_equal(d->nrets, 2);
  assert_string_equal(sxs(d->rets[1]->dims[0]), "T");
  assert_non_null(d->params[0].type);
  assert_null(d->params[1].type);
  fet_free(&t);
}

// ---- expressions ----

static void test_precedence(void **state) {
  (void)state;
  expect_expr("a + b * c @ d", "(+ a (@ (* b c) d))");
  expect_expr("a @ b + c", "(+ (@ a b) c)");
  expect_expr("a - b - c", "(- (- a b) c)");
  expect_expr("a / b * c", "(* (/ a b) c)");
  expect_expr("(a + b) * c", "(* (+ a b) c)");
  expect_expr("a * (b + c)", "(* a (+ b c))");
  expect_expr("-a * b", "(* (neg a) b)");
  expect_expr("a - -b", "(- a (neg b))");
  expect_expr("- - a", "(neg (neg a))");
  expect_expr("-x[0]", "(neg x[0])");     // indexing binds tighter than '-'
  expect_expr("-f(x) @ w", "(@ (neg f(x)) w)");
  expect_expr("a + b + c * d - e", "(- (+ (+ a b) (* c d)) e)");
}

static void test_calls_and_kwargs(void **state) {
  (void)state;
  expect_expr("f()", "f()");
  expect_expr("f(x, y = 2, z = g(x))", "f(x y=2 z=g(x))");
  expect_expr("attention(q, k, v, heads = 12, causal = true)", "attention(q k v heads=12 causal=true)");
  expect_expr("f(\n  x,\n  y\n)", "f(x y)");
  FeT t;
  expr_of(&t, "f(a, key = 1)");
  const FeExpr *e = last_func(&t)->body[0]->exprs[0];
  assert_int_equal(e->kind, FE_EX_CALL);
  assert_int_equal(e->nargs, 2);
  assert_string_equal(e->args[1].kw, "key");
  assert_int_equal(e->args[1].kwloc.line, 2);
  assert_int_equal(e->args[1].kwloc.col, 29);
  assert_int_equal(e->loc.col, 24);
  fet_free(&t);
}

static void test_slices(void **state) {
  (void)state;
  expect_expr("x[:, -1]", "x[:, (neg 1)]");
  expect_expr("x[a:b]", "x[a:b]");
  expect_expr("x[1:]", "x[1:]");
  expect_expr("x[:3]", "x[:3]");
  expect_expr("x[0, 1:2, :, -2:]", "x[0, 1:2, :, (neg 2):]");
  expect_expr("wte[tokens]", "wte[tokens]");
  expect_expr("x[i][j]", "x[i][j]");
  expect_expr("f(x)[0]", "f(x)[0]");
  expect_expr("x[n - 1:n + 1]", "x[(- n 1):(+ n 1)]");
  FeT t;
  expr_of(&t, "x[:, -1]");
  const FeExpr *e = last_func(&t)->body[0]->exprs[0];
  assert_int_equal(e->kind, FE_EX_INDEX);
  assert_int_equal(e->nidx, 2);
  assert_true(e->idx[0].is_slice);
  assert_null(e->idx[0].lo);
  assert_null(e->idx[0].hi);
  assert_false(e->idx[1].is_slice);
  assert_int_equal(e->idx[1].e->kind, FE_EX_NEG);
  assert_int_equal(e->loc.col, 25);  // the '['
  fet_free(&t);
}

static void test_lists_and_tuples(void **state) {
  (void)state;
  expect_expr("[1, 2, 3]", "[1 2 3]");
  expect_expr("[]", "[]");
  expect_expr("[B * T, -1,]", "[(* B T) (neg 1)]");
  expect_expr("(1, 2)", "(tuple 1 2)");
  expect_expr("(x,)", "(tuple x)");
  expect_expr("(x)", "x");
  expect_expr("((1))", "1");
  expect_expr("[(1, 2), [3]]", "[(tuple 1 2) [3]]");
  expect_expr("true", "true");
  expect_expr("\"s\"", "\"s\"");
  FeT t;
  expr_of(&t, "(0.9, 0.95)");
  const FeExpr *e = last_func(&t)->body[0]->exprs[0];
  assert_int_equal(e->kind, FE_EX_TUPLE);
  assert_int_equal(e->nargs, 2);
  assert_int_equal(e->args[1].e->kind, FE_EX_FLOAT);
  fet_free(&t);
}

// ---- statements ----

static void test_tuple_destructuring(void **state) {
  (void)state;
  FeT t;
  const FeItem *f = parse_body(&t, "q, k, v = split(x, 3)\n    return q, k, v");
  assert_int_equal(f->nbody, 2);
  const FeStmt *s = f->body[0];
  assert_int_equal(s->kind, FE_ST_ASSIGN);
  assert_int_equal(s->nnames, 3);
  assert_string_equal(s->names[0], "q");
  assert_string_equal(s->names[1], "k");
  assert_string_equal(s->names[2], "v");
  assert_int_equal(s->name_locs[1].line, 3);
  assert_int_equal(s->name_locs[1].col, 8);
  assert_int_equal(s->nexprs, 1);
  assert_int_equal(f->body[1]->nexprs, 3);
  fet_free(&t);
}

static void test_statement_separators(void **state) {
  (void)state;
  FeT t;
  const FeItem *f = parse_body(&t, "a = 1; b = 2;; c = a\n\n    ;\n    return c;");
  assert_int_equal(f->nbody, 4);
  assert_string_equal(f->body[0]->names[0], "a");
  assert_string_equal(f->body[1]->names[0], "b");
  assert_string_equal(f->body[2]->names[0], "c");
  assert_int_equal(f->body[3]->kind, FE_ST_RETURN);
  assert_int_equal(f->body[1]->name_locs[0].col, 12);
  fet_free(&t);
  // items and top-level declarations too
  parse_ok(&t, "config { a = 1; b = 2 }; config { c = 3 };\n;");
  assert_int_equal(t.ast->ndecls, 2);
  assert_int_equal(t.ast->decls[0]->nitems, 2);
  fet_free(&t);
}

static void test_newline_rule(void **state) {
  (void)state;
  FeT t;
  // a line break after an operator continues the statement
  const FeItem *f = parse_body(&t, "y = x +\n      x\n    return y");
  assert_int_equal(f->nbody, 2);
  assert_string_equal(sxs(f->body[0]->exprs[0]), "(+ x x)");
  fet_free(&t);
  // ... and inside parentheses and brackets
  f = parse_body(&t, "y = f(x\n      , 2)\n    z = (x\n      * 2)\n    w = [1,\n 2]\n    return y");
  assert_int_equal(f->nbody, 4);
  assert_string_equal(sxs(f->body[0]->exprs[0]), "f(x 2)");
  assert_string_equal(sxs(f->body[1]->exprs[0]), "(* x 2)");
  assert_string_equal(sxs(f->body[2]->exprs[0]), "[1 2]");
  fet_free(&t);
  // a line break after '=' continues
  f = parse_body(&t, "y =\n      x\n    return y");
  assert_int_equal(f->nbody, 2);
  fet_free(&t);
  // a complete statement ends at the line break
  f = parse_body(&t, "y = x\n    z = y\n    return z");
  assert_int_equal(f->nbody, 3);
  assert_string_equal(sxs(f->body[0]->exprs[0]), "x");
  fet_free(&t);
  // a line that starts with an operator continues the previous one
  f = parse_body(&t, "y = x\n      + 1\n    return y");
  assert_int_equal(f->nbody, 2);
  assert_string_equal(sxs(f->body[0]->exprs[0]), "(+ x 1)");
  fet_free(&t);
  // a statement cut after a complete expression is an error, with a note
  fet_parse(&t, "model M {\n  forward(x: f32[4]) {\n    y = x x\n    return y\n  }\n}\n");
  assert_int_equal(t.d.nerr, 1);
  assert_string_equal(fet_log(&t),
                      "t.heed:3:12: error: syntax error: unexpected end of line, expected ',' or '='\n"
                      "      y = x x\n"
                      "             ^\n"
                      "t.heed:3:12: note: a line break ends a statement here; break lines inside ( ) or after "
                      "an operator\n"
                      "      y = x x\n"
                      "             ^\n");
  fet_free(&t);
}

// ---- syntax errors ----

static void test_error_recovery(void **state) {
  (void)state;
  FeT t;
  fet_parse(&t,
            "model M {\n"
            "  forward(x: f32[4]) {\n"
            "    a = x +* 2\n"
            "    b = x\n"
            "    c = )\n"
            "    d = x\n"
            "    e = (x ] \n"
            "    return x\n"
            "  }\n"
            "}\n");
  assert_int_equal(t.d.nerr, 3);
  assert_int_equal(t.ast->nsyntax_errors, 3);
  const char *log = fet_log(&t);
  assert_contains(log,
                  "t.heed:3:12: error: syntax error: unexpected '*', expected an expression\n"
                  "      a = x +* 2\n"
                  "             ^\n");
  assert_contains(log, "t.heed:5:9: error: syntax error: unexpected ')', expected an expression\n");
  assert_contains(log, "t.heed:7:12: error: syntax error: unexpected ']'");
  // the good statements between the bad ones are kept
  assert_int_equal(t.ast->ndecls, 1);
  const FeItem *f = last_func(&t);
  int nb = 0, nd = 0, nret = 0;
  for (int i = 0; i < f->nbody; i++) {
    if (f->body[i]->kind == FE_ST_RETURN) nret++;
    else if (!strcmp(f->body[i]->names[0], "b")) nb++;
    else if (!strcmp(f->body[i]->names[0], "d")) nd++;
  }
  assert_int_equal(nb, 1);
  assert_int_equal(nd, 1);
  assert_int_equal(nret, 1);
  fet_free(&t);

  // errors in several declarations of one file
  fet_parse(&t,
            "config {\n"
            "  a = 1\n"
            "  b = 2 3\n"
            "  c = 3\n"
            "}\n"
            "block B {\n"
            "  param : f32 = zeros\n"
            "  forward(x) = x\n"
            "}\n"
            "model M {\n"
            "  q = \n"
            "  forward(x: f32[4]) = x\n"
            "}\n");
  assert_int_equal(t.d.nerr, 3);
  log = fet_log(&t);
  assert_contains(log, "t.heed:3:9: error: syntax error: unexpected integer, expected an operator, '}' or the end of the line\n");
  assert_contains(log, "t.heed:7:9: error: syntax error: unexpected ':', expected identifier\n");
  assert_contains(log, "t.heed:12:3: error: syntax error: unexpected 'forward', expected an expression or 'repeat'\n");
  assert_true(t.ast->ndecls >= 2);  // the config and block B survive
  assert_int_equal(t.ast->decls[0]->kind, FE_DECL_CONFIG);
  assert_int_equal(t.ast->decls[0]->nitems, 2);  // a and c (the line with the error is skipped)
  assert_string_equal(t.ast->decls[0]->items[1]->name, "c");
  assert_string_equal(t.ast->decls[1]->name, "B");
  fet_free(&t);
}

static void test_syntax_error_messages(void **state) {
  (void)state;
  FeT t;
  fet_parse(&t, "model M {\n");
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "t.heed:2:1: error: syntax error: unexpected end of file, expected '}'\n");
  fet_free(&t);
  fet_parse(&t, "model {\n}\n");
  assert_contains(fet_log(&t), "t.heed:1:7: error: syntax error: unexpected '{', expected identifier\n");
  fet_free(&t);
  fet_parse(&t, "forward(x) = x\n");
  assert_contains(fet_log(&t), "t.heed:1:1: error: syntax error: unexpected 'forward', expected ");
  fet_free(&t);
  fet_parse(&t, "config {\n  a = 1.5 @ \n}\n");
  assert_contains(fet_log(&t), "t.heed:3:1: error: syntax error: unexpected '}', expected an expression\n");
  fet_free(&t);
  fet_parse(&t, "block B(x y) {}\n");
  assert_contains(fet_log(&t), "t.heed:1:11: error: syntax error: unexpected identifier, expected ");
  fet_free(&t);
  fet_parse(&t, "model M {\n  forward(x: f32[4]) = x[]\n}\n");
  assert_contains(fet_log(&t), "t.heed:2:26: error: syntax error: unexpected ']', expected an expression or ':'\n");
  fet_free(&t);
}

// ---- limits ----

static char *repeat_str(const char *prefix, const char *unit, int n, const char *mid, const char *unit2,
                        int n2, const char *suffix) {
  size_t len = strlen(prefix) + strlen(unit) * (size_t)n + strlen(mid) + strlen(unit2) * (size_t)n2 + strlen(suffix);
  char *s = malloc(len + 1), *p = s;
  p = stpcpy(p, prefix);
  for (int i = 0; i < n; i++) p = stpcpy(p, unit);
  p = stpcpy(p, mid);
  for (int i = 0; i < n2; i++) p = stpcpy(p, unit2);
  stpcpy(p, suffix);
  return s;
}

static void test_deep_nesting(void **state) {
  (void)state;
  FeT t;
  // 10k nested parentheses: one error, parsing stops
  char *src = repeat_str("config {\n  a = ", "(", 10000, "1", ")", 10000, "\n}\n");
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_true(t.ast->nsyntax_errors >= 1);
  assert_starts_with(fet_log(&t), "t.heed:2:263: error: brackets nested too deeply (the limit is 256)\n");
  fet_free(&t);
  free(src);
  // 256 levels are fine
  src = repeat_str("config {\n  a = ", "(", 256, "1", ")", 256, "\n}\n");
  parse_ok(&t, src);
  fet_free(&t);
  free(src);
  // nested brackets count too
  src = repeat_str("config {\n  a = ", "x[", 10000, "1", "]", 10000, "\n}\n");
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "brackets nested too deeply (the limit is 256)");
  fet_free(&t);
  free(src);

  // a 100k-term sum: one error, no crash
  src = repeat_str("config {\n  a = 1", " + 1", 99999, "", "", 0, "\n  b = 2\n}\n");
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_starts_with(fet_log(&t), "t.heed:2:805: error: expression nested too deeply (the limit is 200 levels)\n");
  assert_int_equal(t.ast->decls[0]->nitems, 2);  // parsing went on
  assert_int_equal(t.ast->decls[0]->items[0]->expr->kind, FE_EX_ERROR);
  fet_free(&t);
  free(src);
  // 200 terms are fine, 201 are not
  src = repeat_str("config {\n  a = 1", "+1", 199, "", "", 0, "\n}\n");
  parse_ok(&t, src);
  fet_free(&t);
  free(src);
  src = repeat_str("config {\n  a = 1", "+1", 200, "", "", 0, "\n}\n");
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "t.heed:2:406: error: expression nested too deeply");
  fet_free(&t);
  free(src);

  // 100k unary minus signs: the parser stack limit, one error
  src = repeat_str("config {\n  a = ", "-", 100000, "1", "", 0, "\n}\n");
  fet_parse(&t, src);
  assert_true(t.d.nerr >= 1);
  assert_true(t.d.nerr <= 2);
  assert_contains(fet_log(&t), "nested too deeply");
  fet_free(&t);
  free(src);

  // deeply nested calls and lists within the paren limit but past the depth limit
  src = repeat_str("config {\n  a = ", "f(", 250, "1", ")", 250, "\n}\n");
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "expression nested too deeply (the limit is 200 levels)");
  fet_free(&t);
  free(src);
}

// ---- the AST listing ----

static void test_emit_ast(void **state) {
  (void)state;
  FeT t;
  parse_ok(&t,
           "config {\n"
           "  n = 2 * 3\n"
           "}\n"
           "block Lin(k = 4) {\n"
           "  buffer w: f32[k] = zeros\n"
           "}\n"
           "model M {\n"
           "  param w: f32[n] = normal(0.5)\n"
           "  h = repeat(2) Lin(k = 6)\n"
           "  forward(x: f32[B, n]) -> f32[B] {\n"
           "    a, b = f(x, \"s\", axis = -1)\n"
           "    return sum(x[:, 1:2] * w, [0], true)\n"
           "  }\n"
           "}\n");
  char *s = fet_ast_str(&t);
  assert_string_equal(s,
                      "file t.heed\n"
                      "  config  @1:1\n"
                      "    bind n  @2:3\n"
                      "      binary *  @2:9\n"
                      "        int 2  @2:7\n"
                      "        int 3  @2:11\n"
                      "  block Lin  @4:1\n"
                      "    arg k  @4:11\n"
                      "      int 4  @4:15\n"
                      "    buffer w  @5:3\n"
                      "      type f32[]  @5:13\n"
                      "        name k  @5:17\n"
                      "      name zeros  @5:22\n"
                      "  model M  @7:1\n"
                      "    param w  @8:3\n"
                      "      type f32[]  @8:12\n"
                      "        name n  @8:16\n"
                      "      call normal  @8:21\n"
                      "        float 0.5  @8:28\n"
                      "    repeat h block Lin  @9:3\n"
                      "      int 2  @9:14\n"
                      "      kwarg k  @9:21\n"
                      "        int 6  @9:25\n"
                      "    func forward  @10:3\n"
                      "      param x  @10:11\n"
                      "        type f32[]  @10:14\n"
                      "          name B  @10:18\n"
                      "          name n  @10:21\n"
                      "      result\n"
                      "        type f32[]  @10:28\n"
                      "          name B  @10:32\n"
                      "      assign a b  @11:5\n"
                      "        call f  @11:12\n"
                      "          name x  @11:14\n"
                      "          string \"s\"  @11:17\n"
                      "          kwarg axis  @11:22\n"
                      "            negate  @11:29\n"
                      "              int 1  @11:30\n"
                      "      return  @12:5\n"
                      "        call sum  @12:12\n"
                      "          binary *  @12:26\n"
                      "            index  @12:17\n"
                      "              name x  @12:16\n"
                      "              slice  @12:18\n"
                      "              slice lo hi  @12:21\n"
                      "                int 1  @12:21\n"
                      "                int 2  @12:23\n"
                      "            name w  @12:28\n"
                      "          list  @12:31\n"
                      "            int 0  @12:32\n"
                      "          bool true  @12:36\n");
  free(s);
  fet_free(&t);

  // a scalar type, a tuple and a train section
  parse_ok(&t, "train M {\n  loss(x: f32) = (x, 1)\n}\n");
  s = fet_ast_str(&t);
  assert_string_equal(s,
                      "file t.heed\n"
                      "  train M  @1:1\n"
                      "    func loss  @2:3\n"
                      "      param x  @2:8\n"
                      "        type f32  @2:11\n"
                      "      return  @2:18\n"
                      "        tuple  @2:18\n"
                      "          name x  @2:19\n"
                      "          int 1  @2:22\n");
  free(s);
  fet_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_example), cmocka_unit_test(test_block_args),
      cmocka_unit_test(test_param_buffer),      cmocka_unit_test(test_instances_and_repeat),
      cmocka_unit_test(test_forward_forms),     cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_calls_and_kwargs),  cmocka_unit_test(test_slices),
      cmocka_unit_test(test_lists_and_tuples),  cmocka_unit_test(test_tuple_destructuring),
      cmocka_unit_test(test_statement_separators), cmocka_unit_test(test_newline_rule),
      cmocka_unit_test(test_error_recovery),    cmocka_unit_test(test_syntax_error_messages),
      cmocka_unit_test(test_deep_nesting),      cmocka_unit_test(test_emit_ast),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
