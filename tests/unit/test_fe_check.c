// tests/unit/test_fe_check.c: the checker (frontend/check.c, builtins.c,
// value.c) on small sources: config evaluation and --set, instance trees
// and parameter names, inferred types and symbolic sizes, the shape rule and
// at least one located diagnostic of every builtin, the train section, and
// the scoping rules.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "frontend/fe_internal.h"

// ---- helpers ----

// Checks src and fails with the log unless it has no diagnostics.
static void check_ok(FeT *t, const char *src, FeOverride *ov, int nov) {
  fet_check(t, src, ov, nov);
  if (t->d.nerr || !t->m) fail_msg("unexpected diagnostics:\n%s\n--- for ---\n%s", fet_log(t), src);
}

// Checks src and asserts that it fails with a log containing want.
static void check_err(const char *src, const char *want) {
  FeT t;
  fet_check(&t, src, NULL, 0);
  assert_null(t.m);
  assert_true(t.d.nerr >= 1);
  assert_contains(fet_log(&t), want);
  fet_free(&t);
}

// A config value of a checked model (config is the outermost scope of
// every instance).
static FeVal cfg(FeT *t, const char *name) {
  FeVal v;
  assert_non_null(t->m);
  if (!fe_env_lookup(t->m->root->env, name, &v, NULL)) fail_msg("no config value '%s'", name);
  return v;
}

static void assert_cfg_int(FeT *t, const char *name, int64_t want) {
  FeVal v = cfg(t, name);
  if (v.k != FV_INT || v.i != want) fail_msg("config %s: kind %d value %lld, want int %lld", name, v.k,
                                             (long long)v.i, (long long)want);
}

static void assert_cfg_float(FeT *t, const char *name, double want) {
  FeVal v = cfg(t, name);
  if (v.k != FV_FLOAT || fabs(v.f - want) > 1e-12 * fabs(want)) fail_msg("config %s: kind %d value %g, want float %g", name, v.k, v.f, want);
}

// ---- config ----

static const char *CONFIG_SRC =
    "config {\n"
    "  dim = 64\n"
    "  heads = 4\n"
    "  hd = dim / heads\n"
    "  half = 7 / 2\n"
    "  scale = 1 / sqrt(hd)\n"
    "  neg = -dim\n"
    "  f = 2.5 * 2\n"
    "  flag = true\n"
    "  mx = max(3, 7)\n"
    "  mn = min(2.5, 1)\n"
    "  e = exp(0)\n"
    "  eps = 1e-5\n"
    "  ff = 4 * dim + 1\n"
    "}\n"
    "model M {\n"
    "  param w: f32[dim, hd] = normal(scale)\n"
    "  forward(x: f32[B, dim]) = x @ w\n"
    "}\n";

static void test_config_values(void **state) {
  (void)state;
  FeT t;
  check_ok(&t, CONFIG_SRC, NULL, 0);
  assert_cfg_int(&t, "dim", 64);
  assert_cfg_int(&t, "hd", 16);   // exact division stays an integer
  assert_cfg_float(&t, "half", 3.5);  // inexact division is a float ...
  assert_string_equal(cfg(&t, "half").s, "7 / 2");  // ... that remembers how it was made
  assert_cfg_float(&t, "scale", 0.25);
  assert_cfg_int(&t, "neg", -64);
  assert_cfg_float(&t, "f", 5.0);
  FeVal flag = cfg(&t, "flag");
  assert_int_equal(flag.k, FV_BOOL);
  assert_int_equal(flag.i, 1);
  assert_cfg_int(&t, "mx", 7);
  assert_cfg_float(&t, "mn", 1.0);  // a float operand makes a float
  assert_cfg_float(&t, "e", 1.0);
  assert_cfg_float(&t, "eps", 1e-5);
  assert_cfg_int(&t, "ff", 257);
  // the values reach the shapes and initializers
  assert_string_equal(fet_type(&t, &t.m->root->params[0].type), "f32[64, 16]");
  assert_true(t.m->root->params[0].init.b == 0.25);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, 16]");
  fet_free(&t);
}

static void test_config_errors(void **state) {
  (void)state;
  check_err("config {\n  big = 4611686018427387904 * 2\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:29: error: integer overflow in 4611686018427387904 * 2\n");
  check_err("config {\n  a = 9223372036854775807 + 1\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:27: error: integer overflow in 9223372036854775807 + 1\n");
  check_err("config {\n  z = 1 / 0\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:9: error: division by zero: 1 / 0\n");
  check_err("config {\n  z = 1.5 / 0\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:11: error: division by zero: 1.5 / 0\n");
  check_err("config {\n  fl = 1e300 * 1e300\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:14: error: number out of range: 1e+300 * 1e+300\n");
  check_err("config {\n  q = true + 1\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:12: error: '+' is not defined on booleans\n");
  check_err("config {\n  sq = sqrt(-1)\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:13: error: sqrt of a negative number (-1)\n");
  check_err("config {\n  s = \"x\"\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:7: error: a config value is an integer, a number or a boolean, got a string\n");
  check_err("config {\n  param p: f32 = zeros\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:3: error: config holds constants only (NAME = VALUE)\n");
  check_err("config {\n  u = v + 1\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:2:7: error: unknown name 'v'");
  check_err("config {\n  dup = 1\n  dup = 2\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:3:3: error: config value 'dup' is defined twice\n"
            "    dup = 2\n"
            "    ^\n"
            "t.heed:2:3: note: the first definition is here\n"
            "    dup = 1\n"
            "    ^\n");
  // an inexact division is fine as a number but not as a dimension
  check_err("config {\n  dim = 66\n  hd = dim / 4\n}\nmodel M {\n  param w: f32[hd] = zeros\n"
            "  forward(x: f32) = x\n}\n",
            "t.heed:6:16: error: dimension is not an integer: 66 / 4 = 16.5 is not exact\n");
  check_err("config {\n  n = 0\n}\nmodel M {\n  param w: f32[n] = zeros\n  forward(x: f32) = x\n}\n",
            "t.heed:5:16: error: a dimension must be positive, got 0\n");
  check_err("config {\n  n = 2.5\n}\nmodel M {\n  param w: f32[n] = zeros\n  forward(x: f32) = x\n}\n",
            "t.heed:5:16: error: a dimension must be an integer, got the number 2.5\n");
}

static void test_set_overrides(void **state) {
  (void)state;
  FeT t;
  FeOverride ov[] = {{.key = "dim", .value = "128"},
                     {.key = "flag", .value = "false"},
                     {.key = "eps", .value = "2"},
                     {.key = "scale", .value = "0.5"}};
  check_ok(&t, CONFIG_SRC, ov, 4);
  assert_cfg_int(&t, "dim", 128);
  assert_cfg_int(&t, "hd", 32);     // derived from dim: recomputed
  assert_cfg_int(&t, "ff", 513);
  assert_int_equal(cfg(&t, "flag").k, FV_BOOL);
  assert_int_equal(cfg(&t, "flag").i, 0);
  assert_cfg_float(&t, "eps", 2.0);  // an integer text for a float value stays a float
  assert_cfg_float(&t, "scale", 0.5);
  for (int i = 0; i < 4; i++) assert_true(ov[i].used);
  assert_string_equal(fet_type(&t, &t.m->root->params[0].type), "f32[128, 32]");
  assert_string_equal(fet_type(&t, &t.m->inputs[0]), "f32[B, 128]");
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, 32]");
  assert_int_equal(t.m->nparam_elems, 128 * 32);
  fet_free(&t);

  // overriding a derived value itself
  FeOverride ov2[] = {{.key = "hd", .value = "8"}, {.key = "half", .value = "-1.25e1"}};
  check_ok(&t, CONFIG_SRC, ov2, 2);
  assert_cfg_int(&t, "dim", 64);
  assert_cfg_int(&t, "hd", 8);
  assert_cfg_float(&t, "half", -12.5);
  assert_cfg_float(&t, "scale", 1 / sqrt(8.0));  // later values see the override
  fet_free(&t);

  // an override that makes a derived dimension inexact
  FeOverride ov3[] = {{.key = "dim", .value = "66"}};
  fet_check(&t, CONFIG_SRC, ov3, 1);
  assert_null(t.m);
  assert_contains(fet_log(&t), "t.heed:17:21: error: dimension is not an integer: 66 / 4 = 16.5 is not exact\n");
  fet_free(&t);
}

static void expect_bad_set(const char *key, const char *value, const char *want) {
  FeT t;
  FeOverride ov[] = {{.key = key, .value = value}};
  fet_check(&t, CONFIG_SRC, ov, 1);
  assert_null(t.m);
  assert_int_equal(t.d.nerr, 1);
  assert_string_equal(fet_log(&t), want);
  fet_free(&t);
}

static void test_set_errors(void **state) {
  (void)state;
  expect_bad_set("dim", "1.5", "heed: error: --set dim=1.5: 'dim' is an integer\n");
  expect_bad_set("dim", "abc", "heed: error: --set dim=abc: 'abc' is not a number\n");
  expect_bad_set("dim", "", "heed: error: --set dim=: '' is not a number\n");
  expect_bad_set("dim", "12x", "heed: error: --set dim=12x: '12x' is not a number\n");
  expect_bad_set("flag", "1", "heed: error: --set flag=1: 'flag' is a boolean: use true or false\n");
  expect_bad_set("flag", "True", "heed: error: --set flag=True: 'flag' is a boolean: use true or false\n");
  expect_bad_set("eps", "abc", "heed: error: --set eps=abc: 'abc' is not a number\n");
  expect_bad_set("eps", "inf", "heed: error: --set eps=inf: 'inf' is not a number\n");
  expect_bad_set("dims", "3",
                 "heed: error: --set dims: no config value or train setting has this name; did you mean 'dim'?\n");
  expect_bad_set("zzzzzz", "3", "heed: error: --set zzzzzz: no config value or train setting has this name\n");
}

// ---- a GPT-like model: instances, parameter names, counts ----

static const char *GPT =
    "config {\n"
    "  vocab = 256\n"
    "  ctx = 64\n"
    "  dim = 32\n"
    "  heads = 4\n"
    "  layers = 3\n"
    "  eps = 1e-5\n"
    "}\n"
    "block LayerNorm(n) {\n"
    "  param weight: f32[n] = ones\n"
    "  param bias: f32[n] = zeros\n"
    "  forward(x) = layernorm(x, weight, bias, eps = eps)\n"
    "}\n"
    "block Linear(n_in, n_out, std = 0.02) {\n"
    "  param weight: f32[n_in, n_out] = normal(std)\n"
    "  param bias: f32[n_out] = zeros\n"
    "  forward(x) = x @ weight + bias\n"
    "}\n"
    "block Attention {\n"
    "  c_attn = Linear(dim, 3 * dim)\n"
    "  c_proj = Linear(dim, dim, std = 0.02 / sqrt(2 * layers))\n"
    "  forward(x) {\n"
    "    q, k, v = split(c_attn(x), 3, axis = -1)\n"
    "    return c_proj(attention(q, k, v, heads = heads, causal = true))\n"
    "  }\n"
    "}\n"
    "block MLP {\n"
    "  c_fc = Linear(dim, 4 * dim)\n"
    "  c_proj = Linear(4 * dim, dim)\n"
    "  forward(x) = c_proj(gelu_tanh(c_fc(x)))\n"
    "}\n"
    "block Block {\n"
    "  ln_1 = LayerNorm(dim)\n"
    "  attn = Attention\n"
    "  ln_2 = LayerNorm(dim)\n"
    "  mlp = MLP\n"
    "  forward(x) {\n"
    "    x = x + attn(ln_1(x))\n"
    "    return x + mlp(ln_2(x))\n"
    "  }\n"
    "}\n"
    "model GPT {\n"
    "  param wte: f32[vocab, dim] = normal(0.02)\n"
    "  param wpe: f32[ctx, dim] = normal(0.01)\n"
    "  h = repeat(layers) Block\n"
    "  ln_f = LayerNorm(dim)\n"
    "  forward(tokens: i32[B, T]) -> f32[B, T, vocab] {\n"
    "    x = wte[tokens] + wpe[positions(tokens)]\n"
    "    return ln_f(h(x)) @ transpose(wte)\n"
    "  }\n"
    "}\n";

static const char *TRAIN =
    "train GPT {\n"
    "  loss(tokens: i32[B, T], targets: i32[B, T]) = cross_entropy(GPT(tokens), targets)\n"
    "  optimizer = adamw(lr = 6e-4, betas = (0.9, 0.95), eps = 1e-8, weight_decay = 0.1)\n"
    "  schedule = cosine(warmup = 100, min_lr = 6e-5)\n"
    "  clip = 1.0\n"
    "  batch = 8\n"
    "  seq = 64\n"
    "  steps = 2000\n"
    "  eval_every = 50\n"
    "  seed = 7\n"
    "}\n";

typedef struct {
  int n;
  char names[256][64];
  char types[256][48];
  const FeParamDecl *p[256];
  const IrSymTab *st;
} Names;

static void collect(void *ud, const char *full, const FeParamDecl *p) {
  Names *n = ud;
  assert_true(n->n < 256);
  snprintf(n->names[n->n], sizeof n->names[0], "%s", full);
  ir_type_str(&p->type, n->st, true, n->types[n->n], sizeof n->types[0]);
  n->p[n->n++] = p;
}

static int find_name(const Names *n, const char *name) {
  for (int i = 0; i < n->n; i++)
    if (strcmp(n->names[i], name) == 0) return i;
  return -1;
}

static void test_param_names(void **state) {
  (void)state;
  FeT t;
  check_ok(&t, GPT, NULL, 0);
  Names *n = calloc(1, sizeof *n);
  n->st = &t.m->syms;
  fe_model_each_param(t.m, collect, n);
  assert_int_equal(n->n, 40);
  static const char *block_names[] = {
      "ln_1.weight",        "ln_1.bias",          "attn.c_attn.weight", "attn.c_attn.bias",
      "attn.c_proj.weight", "attn.c_proj.bias",   "ln_2.weight",        "ln_2.bias",
      "mlp.c_fc.weight",    "mlp.c_fc.bias",      "mlp.c_proj.weight",  "mlp.c_proj.bias",
  };
  assert_string_equal(n->names[0], "wte");
  assert_string_equal(n->names[1], "wpe");
  for (int l = 0; l < 3; l++)
    for (int j = 0; j < 12; j++) {
      char want[64];
      snprintf(want, sizeof want, "h.%d.%s", l, block_names[j]);
      assert_string_equal(n->names[2 + 12 * l + j], want);
    }
  assert_string_equal(n->names[38], "ln_f.weight");
  assert_string_equal(n->names[39], "ln_f.bias");
  assert_int_equal(find_name(n, "h.3.ln_1.weight"), -1);
  // types and initializers
  assert_string_equal(n->types[0], "f32[256, 32]");
  assert_string_equal(n->types[find_name(n, "h.1.attn.c_attn.weight")], "f32[32, 96]");
  assert_string_equal(n->types[find_name(n, "h.2.mlp.c_fc.bias")], "f32[128]");
  assert_string_equal(n->types[find_name(n, "h.0.mlp.c_proj.weight")], "f32[128, 32]");
  const FeParamDecl *cp = n->p[find_name(n, "h.0.attn.c_proj.weight")];
  assert_string_equal(cp->init.kind, "normal");
  assert_true(fabs(cp->init.b - 0.02 / sqrt(6.0)) < 1e-15);
  assert_true(cp->init.a == 0);
  assert_string_equal(n->p[find_name(n, "h.1.ln_2.weight")]->init.kind, "ones");
  assert_string_equal(n->p[1]->init.kind, "normal");
  assert_true(n->p[1]->init.b == 0.01);
  assert_false(n->p[0]->is_buffer);
  // counts: 2 embeddings + 12 tensors per layer + 2
  assert_int_equal(t.m->nparam_tensors, 40);
  assert_int_equal(t.m->nparam_elems, 256 * 32 + 64 * 32 + 3 * 12704 + 64);
  // the instance tree
  const FeInst *root = t.m->root;
  assert_string_equal(root->name, "");
  assert_int_equal(root->nparams, 2);
  assert_int_equal(root->nchildren, 2);
  assert_string_equal(root->children[0]->name, "h");
  assert_int_equal(root->children[0]->repeat, 3);
  assert_string_equal(root->children[0]->block->name, "Block");
  assert_string_equal(root->children[1]->name, "ln_f");
  assert_int_equal(root->children[1]->repeat, 0);
  free(n);
  fet_free(&t);

  // --set layers changes the names and counts
  FeOverride ov[] = {{.key = "layers", .value = "12"}};
  check_ok(&t, GPT, ov, 1);
  n = calloc(1, sizeof *n);
  n->st = &t.m->syms;
  fe_model_each_param(t.m, collect, n);
  assert_int_equal(n->n, 2 + 12 * 12 + 2);
  assert_string_equal(n->names[2 + 12 * 11 + 11], "h.11.mlp.c_proj.bias");
  assert_int_equal(find_name(n, "h.12.ln_1.weight"), -1);
  assert_int_equal(t.m->nparam_elems, 256 * 32 + 64 * 32 + 12 * 12704 + 64);
  free(n);
  fet_free(&t);
}

static void test_buffers_and_counts(void **state) {
  (void)state;
  FeT t;
  check_ok(&t,
           "block Inner(n) {\n"
           "  param w: f32[n, n] = uniform(-0.5, 0.5)\n"
           "  buffer mask: bool[n] = ones\n"
           "  forward(x) = x @ w\n"
           "}\n"
           "model M {\n"
           "  param scale: f32[4] = constant(2.5)\n"
           "  buffer table: f32[10, 4] = zeros\n"
           "  a = Inner(4)\n"
           "  r = repeat(5) Inner(4)\n"
           "  forward(x: f32[B, 4]) = r(a(x)) * scale\n"
           "}\n",
           NULL, 0);
  Names *n = calloc(1, sizeof *n);
  n->st = &t.m->syms;
  fe_model_each_param(t.m, collect, n);
  // params first, then the instances in declaration order
  assert_int_equal(n->n, 2 + 2 + 5 * 2);
  assert_string_equal(n->names[0], "scale");
  assert_string_equal(n->names[1], "table");
  assert_true(n->p[1]->is_buffer);
  assert_string_equal(n->names[2], "a.w");
  assert_string_equal(n->names[3], "a.mask");
  assert_true(n->p[3]->is_buffer);
  assert_string_equal(n->names[4], "r.0.w");
  assert_string_equal(n->names[13], "r.4.mask");
  assert_string_equal(n->types[13], "bool[4]");
  assert_true(n->p[0]->init.a == 2.5);
  assert_string_equal(n->p[2]->init.kind, "uniform");
  assert_true(n->p[2]->init.a == -0.5 && n->p[2]->init.b == 0.5);
  // buffers are not trainable parameters
  assert_int_equal(t.m->nparam_tensors, 1 + 1 + 5);
  assert_int_equal(t.m->nparam_elems, 4 + 16 + 5 * 16);
  free(n);
  fet_free(&t);
}

// ---- inferred types ----

static void test_output_types(void **state) {
  (void)state;
  FeT t;
  check_ok(&t, GPT, NULL, 0);
  assert_int_equal(t.m->ninputs, 1);
  assert_string_equal(t.m->input_names[0], "tokens");
  assert_string_equal(fet_type(&t, &t.m->inputs[0]), "i32[B, T]");
  assert_int_equal(t.m->noutputs, 1);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, T, 256]");
  assert_string_equal(t.m->decl->name, "GPT");
  assert_null(t.m->train);
  fet_free(&t);

  // several results
  check_ok(&t,
           "model M {\n"
           "  forward(a: f32[B, T, 8], b: i32[N]) -> (f32[B, T, 8], i32[N], f32[B, 8, T]) {\n"
           "    return a * 2, b, transpose(a)\n"
           "  }\n"
           "}\n",
           NULL, 0);
  assert_int_equal(t.m->noutputs, 3);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, T, 8]");
  assert_string_equal(fet_type(&t, &t.m->outputs[1]), "i32[N]");
  assert_string_equal(fet_type(&t, &t.m->outputs[2]), "f32[B, 8, T]");
  assert_int_equal(t.m->syms.len, 3);  // B, T, N in order of first use
  assert_string_equal(t.m->syms.data[2], "N");
  fet_free(&t);
}

static void test_model_selection(void **state) {
  (void)state;
  const char *src =
      "model A {\n  forward(x: f32[4]) = x\n}\n"
      "model Bb {\n  forward(x: f32[5]) = x * 2\n}\n";
  FeT t;
  check_ok(&t, src, NULL, 0);  // default: the last model
  assert_string_equal(t.m->decl->name, "Bb");
  fet_free(&t);
  fet_check_model(&t, src, "A", NULL, 0);
  assert_non_null(t.m);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[4]");
  fet_free(&t);
  fet_check_model(&t, src, "Bx", NULL, 0);
  assert_null(t.m);
  assert_string_equal(fet_log(&t), "heed: error: --model: no model named 'Bx'; did you mean 'Bb'? (models in this file: A, Bb)\n");
  fet_free(&t);
  check_err("block A {\n  forward(x) = x\n}\n",
            "t.heed:1:1: error: t.heed has no model (model NAME { ... })\n");
  check_err("", "t.heed:1:1: error: t.heed has no model (model NAME { ... })\n");
}

static void test_symbolic_unify(void **state) {
  (void)state;
  FeT t;
  // one T across inputs
  check_ok(&t, "model M {\n  forward(a: f32[B, T, 4], b: f32[B, T, 4]) = a * b + a\n}\n", NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, T, 4]");
  assert_int_equal(t.m->syms.len, 2);
  fet_free(&t);
  // different sizes do not mix
  check_err("model M {\n  forward(a: f32[B, T, 4], b: f32[B, S, 4]) = a + b\n}\n",
            "t.heed:2:49: error: '+': shapes [B, T, 4] and [B, S, 4] do not broadcast (T vs S)\n"
            "    forward(a: f32[B, T, 4], b: f32[B, S, 4]) = a + b\n"
            "                                                  ^\n"
            "t.heed:2:51: note: this operand has shape [B, S, 4]\n");
  // ... but combine where the rules allow
  check_ok(&t, "model M {\n  forward(a: f32[B, T, 4], b: f32[B, S, 4]) = a @ transpose(b)\n}\n", NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, T, S]");
  fet_free(&t);
  // the declared result type uses the same sizes
  check_err("model M {\n  forward(x: f32[B, T, 4]) -> f32[B, S, 4] = x\n}\n",
            "t.heed:2:31: error: M.forward is declared to return f32[B, S, 4] but returns a tensor f32[B, T, 4]\n"
            "    forward(x: f32[B, T, 4]) -> f32[B, S, 4] = x\n"
            "                                ^\n"
            "t.heed:2:46: note: the returned value is computed here\n");
  // a typed sub-block forward: its T is the caller's T
  check_err("block I {\n  forward(x: f32[B, T, 4]) = x\n}\nmodel M {\n  i = I\n"
            "  forward(a: f32[B, T, 4], b: f32[B, S, 4]) = i(a) + i(b)\n}\n",
            "t.heed:6:56: error: argument 1 of 'i' must be f32[B, T, 4], got a tensor f32[B, S, 4]\n"
            "    forward(a: f32[B, T, 4], b: f32[B, S, 4]) = i(a) + i(b)\n"
            "                                                         ^\n"
            "t.heed:2:11: note: parameter 'x' of I.forward is declared here\n");
  // an untyped sub-block forward is checked per call, with each caller's types
  check_ok(&t,
           "block I {\n  forward(x) = x * 2\n}\n"
           "model M {\n  i = I\n"
           "  forward(a: f32[B, T, 4], b: i32[T]) {\n"
           "    p = i(a)\n"
           "    q = i(b)\n"
           "    return p, q, i(a)\n"
           "  }\n}\n",
           NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, T, 4]");
  assert_string_equal(fet_type(&t, &t.m->outputs[1]), "i32[T]");
  assert_string_equal(fet_type(&t, &t.m->outputs[2]), "f32[B, T, 4]");
  fet_free(&t);
  // reshape to B*T and back
  check_ok(&t,
           "model M {\n  forward(x: f32[B, T, 64]) {\n"
           "    y = reshape(x, [B * T, 64])\n"
           "    return y, reshape(y, [B, T, 4, -1]), reshape(y, [B, -1])\n  }\n}\n",
           NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B*T, 64]");
  assert_string_equal(fet_type(&t, &t.m->outputs[1]), "f32[B, T, 4, 16]");
  assert_string_equal(fet_type(&t, &t.m->outputs[2]), "f32[B, 64*T]");
  fet_free(&t);
}

// ---- builtins ----

// "return EXPR" at line 10, column 12 of a model with these inputs.
static const char *TPL =
    "config {\n  dim = 64\n}\n"
    "model M {\n"
    "  param w: f32[64] = ones\n"
    "  param b: f32[64] = zeros\n"
    "  param emb: f32[100, 64] = zeros\n"
    "  param wk: f32[64, 16] = zeros\n"
    "  forward(x: f32[B, T, 64], ids: i32[B, T], m: bool[B, T], s: f32[B, S, 64]) {\n"
    "    return %s\n"
    "  }\n"
    "}\n";

static void expect_type(const char *expr, const char *want) {
  char src[4096];
  snprintf(src, sizeof src, TPL, expr);
  FeT t;
  fet_check(&t, src, NULL, 0);
  if (t.d.nerr || !t.m) fail_msg("%s: unexpected diagnostics:\n%s", expr, fet_log(&t));
  assert_int_equal(t.m->noutputs, 1);
  const char *got = fet_type(&t, &t.m->outputs[0]);
  if (strcmp(got, want) != 0) fail_msg("%s: type %s, want %s", expr, got, want);
  fet_free(&t);
}

// Asserts one error whose first line is want (with its location).
static void expect_error(const char *expr, const char *want) {
  char src[4096];
  snprintf(src, sizeof src, TPL, expr);
  FeT t;
  fet_check(&t, src, NULL, 0);
  if (t.m) fail_msg("%s: no error", expr);
  if (t.d.nerr != 1) fail_msg("%s: %d errors:\n%s", expr, t.d.nerr, fet_log(&t));
  char line[1024];
  snprintf(line, sizeof line, "%s\n", want);
  assert_starts_with(fet_log(&t), line);
  fet_free(&t);
}

static void test_builtin_shapes(void **state) {
  (void)state;
  static const char *cases[][2] = {
      // Transformer
      {"attention(x, x, x, heads = 8)", "f32[B, T, 64]"},
      {"attention(x, x @ wk, x @ wk, heads = 8, kv_heads = 2, causal = true, mask = m)", "f32[B, T, 64]"},
      {"attention(x, s, s, heads = 4, scale = 0.5)", "f32[B, T, 64]"},
      // an integer keep-mask (Hugging Face's attention_mask is int64): non-zero keeps
      {"attention(x, x, x, heads = 8, mask = ids)", "f32[B, T, 64]"},
      {"attention(x, x, x, heads = 8, mask = cast(ids, i64))", "f32[B, T, 64]"},
      {"attention(x, x, x, heads = 8, mask = cast(m, u8))", "f32[B, T, 64]"},
      {"rope(x, heads = 8)", "f32[B, T, 64]"},
      {"rope(x, heads = 32, base = 500000, interleaved = true)", "f32[B, T, 64]"},
      {"positions(ids)", "i32[T]"},
      {"positions(s)", "i32[S]"},
      {"cross_entropy(x, ids)", "f32[]"},
      {"cross_entropy(x, ids, ignore = 0)", "f32[]"},
      {"cross_entropy(emb, ids[0, 0:100])", "f32[]"},
      {"dropout(x, 0.1)", "f32[B, T, 64]"},
      // gather and indexing
      {"emb[ids]", "f32[B, T, 64]"},
      {"emb[positions(ids)]", "f32[T, 64]"},
      {"m[ids]", "bool[B, T, T]"},
      {"x[:, -1]", "f32[B, 64]"},
      {"x[0:1, 2:5]", "f32[1, 3, 64]"},
      {"x[:, :, 8:]", "f32[B, T, 56]"},
      {"x[:, -4:, -8:]", "f32[B, 4, 8]"},
      {"x[0][0][0]", "f32[]"},
      // shape
      {"split(x, [16, 16, 32], axis = 2)[2]", "f32[B, T, 32]"},
      {"split(x, 2)[1]", "f32[B, T, 32]"},
      {"split(x, 4, axis = -1)[3]", "f32[B, T, 16]"},
      {"concat(x, x, axis = 1)", "f32[B, 2*T, 64]"},
      {"concat([x, x[:, :, 0:16]], axis = -1)", "f32[B, T, 80]"},
      {"reshape(x, [B * T, -1])", "f32[B*T, 64]"},
      {"reshape(x, [B, T, 8, 8])", "f32[B, T, 8, 8]"},
      {"reshape(x, [-1])", "f32[64*B*T]"},
      {"reshape(x, [T, -1])", "f32[T, 64*B]"},
      {"reshape(emb, [10, -1, dim])", "f32[10, 10, 64]"},
      {"permute(reshape(x, [B, T, 8, 8]), [0, 2, 1, 3])", "f32[B, 8, T, 8]"},
      {"permute(x, [-1, 0, 1])", "f32[64, B, T]"},
      {"transpose(x)", "f32[B, 64, T]"},
      {"transpose(emb)", "f32[64, 100]"},
      {"unsqueeze(x, 1)", "f32[B, 1, T, 64]"},
      {"unsqueeze(x, -1)", "f32[B, T, 64, 1]"},
      // reductions
      {"sum(x, axis = -1)", "f32[B, T]"},
      {"sum(x, axis = 1, keepdim = true)", "f32[B, 1, 64]"},
      {"mean(x, axis = [0, 2], keepdim = true)", "f32[1, T, 1]"},
      {"mean(x, axis = [0, 2])", "f32[T]"},
      {"max(x)", "f32[]"},
      {"max(ids, axis = 0)", "i32[T]"},
      {"sum(ids)", "i32[]"},
      {"min(x, axis = 0)", "f32[T, 64]"},
      {"min(s, axis = [1], keepdim = true)", "f32[B, 1, 64]"},
      {"softmax(x)", "f32[B, T, 64]"},
      {"softmax(x, axis = 1)", "f32[B, T, 64]"},
      {"log_softmax(s, axis = -1)", "f32[B, S, 64]"},
      // normalisation
      {"layernorm(x, w, b)", "f32[B, T, 64]"},
      {"layernorm(x, w, b, eps = 1e-6)", "f32[B, T, 64]"},
      {"rmsnorm(x, w)", "f32[B, T, 64]"},
      {"rmsnorm(emb, w, eps = 1e-5)", "f32[100, 64]"},
      // elementwise
      {"gelu(x)", "f32[B, T, 64]"},
      {"gelu_tanh(x)", "f32[B, T, 64]"},
      {"silu(x) * sigmoid(x) + tanh(x)", "f32[B, T, 64]"},
      {"exp(x) - log(x) / sqrt(x) + rsqrt(x)", "f32[B, T, 64]"},
      {"relu(ids)", "i32[B, T]"},
      {"abs(ids)", "i32[B, T]"},
      {"maximum(x, 0.0)", "f32[B, T, 64]"},
      {"minimum(x, w)", "f32[B, T, 64]"},
      {"maximum(w, s)", "f32[B, S, 64]"},
      {"maximum(emb, unsqueeze(s[:, 0], 1))", "f32[B, 100, 64]"},
      {"where(unsqueeze(m, 2), x, 0.0)", "f32[B, T, 64]"},
      {"where(m, ids, 0)", "i32[B, T]"},
      {"cast(x, bf16)", "bf16[B, T, 64]"},
      {"cast(m, f32) * 2", "f32[B, T]"},
      {"cast(ids, i64)", "i64[B, T]"},
      // operators
      {"x @ wk", "f32[B, T, 16]"},
      {"w @ emb[0:64]", "f32[64]"},
      {"emb @ w", "f32[100]"},
      {"x + w", "f32[B, T, 64]"},
      {"2 * x - 1", "f32[B, T, 64]"},
      {"-x / sqrt(dim)", "f32[B, T, 64]"},
      {"ids + 1", "i32[B, T]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_type(cases[i][0], cases[i][1]);
}

static void test_builtin_errors(void **state) {
  (void)state;
  static const char *cases[][2] = {
      // attention
      {"attention(x, x, x)", "t.heed:10:12: error: attention: 'heads' is required, e.g. attention(q, k, v, heads = 12)"},
      {"attention(x, x, x, heads = 5)",
       "t.heed:10:22: error: attention: the last axis of 'q' [B, T, 64] (size 64) does not split into 5 heads"},
      {"attention(x, x @ wk, x @ wk, heads = 8, kv_heads = 3)",
       "t.heed:10:63: error: attention: heads (8) must be a positive multiple of kv_heads (3)"},
      {"attention(x, x @ wk, x @ wk, heads = 8)",
       "t.heed:10:27: error: attention: k [B, T, 16] has head size 2 but q [B, T, 64] has 8 (8 kv heads, 8 heads)"},
      {"attention(x, x, x, heads = 8, mask = x[:, :, 0])",
       "t.heed:10:50: error: attention: mask must be bool[B, T] or integer (keep-mask over the keys, non-zero keeps), "
       "got a tensor f32[B, T]"},
      {"attention(x, s, s, heads = 8, mask = m)",
       "t.heed:10:49: error: attention: mask must be bool[B, S] or integer (keep-mask over the keys, non-zero keeps), "
       "got a tensor bool[B, T]"},
      {"attention(x, s, s, heads = 8, mask = ids)",
       "t.heed:10:49: error: attention: mask must be bool[B, S] or integer (keep-mask over the keys, non-zero keeps), "
       "got a tensor i32[B, T]"},
      {"attention(ids, x, x, heads = 2)",
       "t.heed:10:22: error: attention: 'q' must be a float tensor, got i32[B, T]; use cast(x, f32)"},
      {"attention(x[0], x, x, heads = 2)",
       "t.heed:10:23: error: attention: 'q' must be [B, T, heads * head_dim] (packed heads), got f32[T, 64]"},
      {"attention(x, x, x, heads = 8, scale = 0)", "t.heed:10:50: error: attention: scale must be positive, got 0"},
      {"attention(x, x, x, heads = 8, causal = 1)",
       "t.heed:10:51: error: attention: 'causal' must be true or false, got the integer 1"},
      {"attention(x, x, x, head = 8)", "t.heed:10:31: error: attention has no argument 'head'; did you mean 'heads'?"},
      // rope
      {"rope(x)", "t.heed:10:12: error: rope: 'heads' is required, e.g. rope(q, heads = 8)"},
      {"rope(x, heads = 3)", "t.heed:10:17: error: rope: the last axis of 'x' [B, T, 64] (size 64) does not split into 3 heads"},
      {"rope(x, heads = 0)", "t.heed:10:28: error: rope: heads must be positive, got 0"},
      {"rope(x, heads = 64)", "t.heed:10:17: error: rope: the head size 1 is odd; rotary pairs need an even head size"},
      {"rope(x, heads = 8, base = -1)", "t.heed:10:38: error: rope: base must be positive, got -1"},
      // positions
      {"positions(w)", "t.heed:10:22: error: positions: x must have a sequence axis (axis 1), got f32[64]"},
      {"positions(3)", "t.heed:10:22: error: positions: 'x' must be a tensor, got the integer 3"},
      // cross_entropy
      {"cross_entropy(x, ids[0])",
       "t.heed:10:32: error: cross_entropy: targets must be an integer tensor [B, T] for logits f32[B, T, 64], got i32[T]"},
      {"cross_entropy(x, x)",
       "t.heed:10:29: error: cross_entropy: targets must be an integer tensor [B, T] for logits f32[B, T, 64], got "
       "f32[B, T, 64]"},
      {"cross_entropy(ids, ids)",
       "t.heed:10:26: error: cross_entropy: 'logits' must be a float tensor, got i32[B, T]; use cast(x, f32)"},
      // dropout
      {"dropout(x)", "t.heed:10:12: error: dropout: the probability p is required, e.g. dropout(x, 0.1)"},
      {"dropout(x, 1.5)", "t.heed:10:23: error: dropout: p must be in [0, 1), got 1.5"},
      // gather and indexing
      {"w[0][ids]", "t.heed:10:16: error: cannot gather rows of f32[] with i32[B, T]"},
      {"x[:, -1, :, 1]", "t.heed:10:13: error: too many indices (4) for f32[B, T, 64]"},
      // split
      {"split(x, 3)", "t.heed:10:21: error: split: axis 2 of [B, T, 64] (size 64) does not split into 3 equal parts"},
      {"split(x, [16, 16])", "t.heed:10:21: error: split: sizes add up to 32 but axis 2 of [B, T, 64] has size 64"},
      {"split(x, [16, 0, 48])", "t.heed:10:21: error: split: sizes must be positive integers, got the integer 0"},
      {"split(x, 2, axis = 3)", "t.heed:10:31: error: split: axis 3 is out of range for rank 3 (valid: -3..2)"},
      {"split(x, x)",
       "t.heed:10:21: error: split: expected a number of parts or a list of sizes, got a tensor f32[B, T, 64]"},
      {"split(x, 3, axis = 1)", "t.heed:10:21: error: split: axis 1 of [B, T, 64] (size T) does not split into 3 equal parts"},
      // concat
      {"concat(x, ids)", "t.heed:10:22: error: concat: i32[B, T] does not match f32[B, T, 64] outside axis 0"},
      {"concat(x, s, axis = 1)", "t.heed:10:22: error: concat: cannot add the sizes T and S of axis 1"},
      {"concat(x, s, axis = 2)", "t.heed:10:22: error: concat: f32[B, S, 64] does not match f32[B, T, 64] outside axis 2"},
      {"concat(axis = 0)", "t.heed:10:12: error: concat needs at least one tensor"},
      {"concat(x, 1)", "t.heed:10:22: error: concat: expected tensors, got the integer 1"},
      {"concat(x, x, axis = 5)", "t.heed:10:12: error: concat: axis 5 is out of range for rank 3 (valid: -3..2)"},
      // reshape
      {"reshape(x, [B, T, 65])", "t.heed:10:23: error: reshape: [B, T, 64] has 64*B*T elements but [B, T, 65] has 65*B*T"},
      {"reshape(x, [B, -1, -1])", "t.heed:10:31: error: reshape: only one dimension may be -1"},
      {"reshape(x, [7, -1])",
       "t.heed:10:23: error: reshape: cannot infer -1: [B, T, 64] (64*B*T elements) is not a multiple of 7"},
      {"reshape(x, [S, -1])", "t.heed:10:23: error: reshape: cannot infer -1: [B, T, 64] (64*B*T elements) is not a multiple of S"},
      {"reshape(x, 3)", "t.heed:10:23: error: reshape: the shape must be a list such as [B, T, -1]"},
      {"reshape(x, [B, T, 0])", "t.heed:10:30: error: a dimension must be positive, got 0"},
      {"reshape(x, [B, T, 8, 8, 1, 1, 1, 1, 1])", "t.heed:10:23: error: reshape: rank 9 is above the limit of 8"},
      // permute, transpose, unsqueeze
      {"permute(x, [0, 1])", "t.heed:10:23: error: permute: expected a list of 3 axes for f32[B, T, 64], got a list of 2 values"},
      {"permute(x, [0, 1, 1])", "t.heed:10:23: error: permute: axis 1 appears twice; a permutation names each axis once"},
      {"permute(x, [0, 1, 3])", "t.heed:10:23: error: permute: axis 3 is out of range for rank 3 (valid: -3..2)"},
      {"transpose(w)", "t.heed:10:22: error: transpose swaps the last two axes and needs rank 2 or more, got f32[64]"},
      {"unsqueeze(x, 4)", "t.heed:10:25: error: unsqueeze: axis 4 is out of range for rank 4 (valid: -4..3)"},
      // reductions and softmax
      {"sum(x, axis = 3)", "t.heed:10:26: error: sum: axis 3 is out of range for rank 3 (valid: -3..2)"},
      {"sum(x, axis = [1, 1])", "t.heed:10:26: error: sum: axis 1 is given twice"},
      {"sum(x, keepdim = 1)", "t.heed:10:29: error: sum: 'keepdim' must be true or false, got the integer 1"},
      {"mean(ids)", "t.heed:10:17: error: mean needs a float tensor, got i32[B, T]; use cast(x, f32)"},
      {"max(m)", "t.heed:10:16: error: max is not defined on bool tensors"},
      {"min(m)", "t.heed:10:16: error: min is not defined on bool tensors"},
      {"min(x, axis = [0, -3])", "t.heed:10:26: error: min: axis -3 is given twice"},
      {"max(3)", "t.heed:10:12: error: max of numbers takes two numbers"},
      {"max(x, axis = 1.5)", "t.heed:10:26: error: max: axis must be an integer or a list of integers, got the number 1.5"},
      {"softmax(ids)", "t.heed:10:20: error: softmax: 'x' must be a float tensor, got i32[B, T]; use cast(x, f32)"},
      {"softmax(x, axis = -4)", "t.heed:10:30: error: softmax: axis -4 is out of range for rank 3 (valid: -3..2)"},
      {"log_softmax(w[0])", "t.heed:10:12: error: log_softmax: a scalar has no axis -1"},
      // normalisation
      {"layernorm(x, w)", "t.heed:10:12: error: layernorm: missing argument 'bias' (layernorm(x, weight, bias, eps=...))"},
      {"layernorm(x, emb, b)",
       "t.heed:10:25: error: layernorm: 'weight' must be f32[64] (the last axis of x: f32[B, T, 64]), got f32[100, 64]"},
      {"layernorm(x, w, b, eps = 0)", "t.heed:10:37: error: layernorm: eps must be positive, got 0"},
      {"rmsnorm(x, w[0:32])",
       "t.heed:10:24: error: rmsnorm: 'weight' must be f32[64] (the last axis of x: f32[B, T, 64]), got f32[32]"},
      // elementwise
      {"gelu(ids)", "t.heed:10:17: error: gelu: 'x' must be a float tensor, got i32[B, T]; use cast(x, f32)"},
      {"gelu_tanh(m)", "t.heed:10:22: error: gelu_tanh: 'x' must be a float tensor, got bool[B, T]; use cast(x, f32)"},
      {"silu(2)", "t.heed:10:12: error: silu needs a tensor, got the integer 2"},
      {"exp(m)", "t.heed:10:16: error: exp: 'x' must be a float tensor, got bool[B, T]; use cast(x, f32)"},
      {"log(0)", "t.heed:10:16: error: log(0) is undefined"},
      {"sqrt(x, x)", "t.heed:10:20: error: sqrt takes at most 1 argument, got 2"},
      {"rsqrt(0)", "t.heed:10:18: error: rsqrt(0) is undefined"},
      {"tanh(ids)", "t.heed:10:17: error: tanh: 'x' must be a float tensor, got i32[B, T]; use cast(x, f32)"},
      {"sigmoid(foo = x)", "t.heed:10:20: error: sigmoid has no argument 'foo'"},
      {"relu(m)", "t.heed:10:17: error: relu is not defined on bool tensors"},
      {"abs(m)", "t.heed:10:16: error: abs is not defined on bool tensors"},
      {"exp(1000)", "t.heed:10:12: error: exp(1000) is out of range"},
      {"maximum(x, ids)", "t.heed:10:23: error: maximum: dtypes differ: f32[B, T, 64] and i32[B, T]; use cast()"},
      {"maximum(1, 2)", "t.heed:10:12: error: maximum is elementwise on tensors; use max(a, b) for numbers"},
      {"minimum(x, s)", "t.heed:10:12: error: minimum: shapes [B, T, 64] and [B, S, 64] do not broadcast (T vs S)"},
      {"minimum(ids, 0.5)", "t.heed:10:25: error: minimum: the number 0.5 does not fit i32 tensors"},
      {"where(ids, x, x)", "t.heed:10:18: error: where: the condition must be a bool tensor, got i32[B, T]"},
      {"where(m, x, ids)", "t.heed:10:24: error: where: dtypes differ: f32[B, T, 64] and i32[B, T]; use cast()"},
      {"where(m, x, x)", "t.heed:10:12: error: where: shapes [B, T] and [B, T, 64] do not broadcast (T vs 64)"},
      {"cast(x, 3)",
       "t.heed:10:20: error: cast: the second argument must be a dtype (f32 f16 bf16 i32 i64 i8 u8 bool), got the integer 3"},
      {"cast(3, f32)", "t.heed:10:17: error: cast: 'x' must be a tensor, got the integer 3"},
      // operators
      {"x + s", "t.heed:10:14: error: '+': shapes [B, T, 64] and [B, S, 64] do not broadcast (T vs S)"},
      {"x + m", "t.heed:10:14: error: '+' is not defined on bool tensors; use cast(x, f32) or where()"},
      {"x + ids", "t.heed:10:14: error: '+': dtypes differ: f32[B, T, 64] and i32[B, T]; use cast() to convert one"},
      {"ids * 0.5", "t.heed:10:16: error: '*': the number 0.5 does not fit the i32 tensor; use cast(x, f32) first"},
      {"x @ x", "t.heed:10:14: error: matmul: inner dimensions differ: [B, T, 64] @ [B, T, 64] (64 vs T)"},
      {"x @ 2", "t.heed:10:14: error: '@' needs two tensors, got the integer 2"},
      {"cast(x, i32) @ cast(x, i32)", "t.heed:10:25: error: '@' needs two float tensors of one dtype, got i32[B, T, 64] @ i32[B, T, 64]"},
      {"x + \"a\"", "t.heed:10:16: error: '+': expected a tensor or a number, got a string"},
      {"-m", "t.heed:10:12: error: unary '-' is not defined on bool tensors"},
      {"x + true", "t.heed:10:14: error: '+': a boolean cannot be combined with a tensor"},
      // names and calls
      {"y", "t.heed:10:12: error: unknown name 'y'; did you mean 'x'?"},
      {"softmaxx(x)", "t.heed:10:12: error: unknown function 'softmaxx'; did you mean 'softmax'?"},
      {"emb(x)", "t.heed:10:12: error: 'emb' is a tensor f32[100, 64], not something to call"},
      {"M(x)", "t.heed:10:12: error: 'M' is a block: declare an instance as a block item (name = M(...)) and call the instance"},
      {"attention", "t.heed:10:12: error: model 'M' must return tensors, but this is a builtin function"},
      {"dim", "t.heed:10:12: error: model 'M' must return tensors, but this is the integer 64"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_error(cases[i][0], cases[i][1]);
}

// Statements at line 10 of the template's forward.
static void expect_body_error(const char *body, const char *want) {
  char src[4096];
  const char *p = strstr(TPL, "    return %s\n");
  assert_non_null(p);
  snprintf(src, sizeof src, "%.*s    %s\n%s", (int)(p - TPL), TPL, body, p + strlen("    return %s\n"));
  FeT t;
  fet_check(&t, src, NULL, 0);
  assert_null(t.m);
  assert_contains(fet_log(&t), want);
  fet_free(&t);
}

static void test_forward_statements(void **state) {
  (void)state;
  expect_body_error("p = x\n    p = p + 1", "t.heed:9:3: error: M.forward has no return statement");
  expect_body_error("b = x\n    return b",
                    "t.heed:10:5: error: 'b' is a parameter, buffer or instance of this block; a local needs another "
                    "name\n"
                    "      b = x\n"
                    "      ^\n"
                    "t.heed:6:9: note: 'b' is declared here\n");
  expect_body_error("dim = x\n    return dim", "t.heed:10:5: error: local 'dim' reuses the name of a config value\n");
  expect_body_error("return x, 3", "t.heed:10:15: error: model 'M' must return tensors, but this is the integer 3\n");
  FeT t;
  // locals may be reassigned and may shadow builtins
  check_ok(&t,
           "model M {\n  forward(x: f32[B, 4]) {\n"
           "    exp = x * 2\n"
           "    softmax = exp + 1\n"
           "    x = softmax @ transpose(x)\n"
           "    return x\n  }\n}\n",
           NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, B]");
  fet_free(&t);
  // tuple results unpack
  check_ok(&t,
           "model M {\n  forward(x: f32[B, 6]) {\n"
           "    a, b, c = split(x, [1, 2, 3])\n"
           "    p = (a, b)\n"
           "    return c, p[1], p[-2]\n  }\n}\n",
           NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, 3]");
  assert_string_equal(fet_type(&t, &t.m->outputs[1]), "f32[B, 2]");
  assert_string_equal(fet_type(&t, &t.m->outputs[2]), "f32[B, 1]");
  fet_free(&t);
}

// ---- blocks and instances ----

static void test_instance_errors(void **state) {
  (void)state;
  check_err("block A {\n  b = Bb\n  forward(x) = x\n}\nblock Bb {\n  a = A\n  forward(x) = x\n}\n"
            "model M {\n  a = A\n  forward(x: f32[4]) = a(x)\n}\n",
            "t.heed:6:7: error: block 'A' contains itself\n"
            "    a = A\n"
            "        ^\n"
            "t.heed:2:7: note: 'Bb' is instantiated in 'A' here\n");
  check_err("block Up {\n  param w: f32[4, 8] = zeros\n  forward(x) = x @ w\n}\n"
            "model M {\n  h = repeat(2) Up\n  forward(x: f32[B, 4]) = h(x)\n}\n",
            "t.heed:7:27: error: 'h' repeats Up 2 times, so it must return what it is given: it takes a tensor "
            "f32[B, 4] and returns a tensor f32[B, 8]\n");
  check_err("block L {\n  forward(x) = x\n}\nmodel M {\n  h = repeat(0) L\n  forward(x: f32[4]) = h(x)\n}\n",
            "t.heed:5:14: error: repeat count must be an integer from 1 to 1000000, got the integer 0\n");
  check_err("model M {\n  h = repeat(2) Nope\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:2:17: error: unknown block 'Nope'\n");
  check_err("model M {\n  param w: f32[4] = zeros\n  buffer w: f32[4] = zeros\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:3:10: error: 'w' is already declared in this block\n"
            "    buffer w: f32[4] = zeros\n"
            "           ^\n"
            "t.heed:2:9: note: the earlier declaration of 'w' is here\n");
  check_err("config {\n  dim = 64\n}\nmodel M {\n  param w: f32[dimm, 4] = zeros\n  forward(x: f32[B, 64]) = x @ w\n}\n",
            "t.heed:5:16: error: 'dimm' is not a config value or block argument; parameter and buffer shapes must be "
            "constant; did you mean 'dim'?\n");
  check_err("block L(n) {\n  param w: f32[n] = zeros\n  forward(x) = x * w\n}\n"
            "model M {\n  l = L\n  forward(x: f32[4]) = l(x)\n}\n",
            "t.heed:6:7: error: block 'L' needs a value for its argument 'n'\n"
            "    l = L\n"
            "        ^\n"
            "t.heed:1:9: note: 'n' is declared here without a default\n");
  check_err("block L(n) {\n  forward(x) = x\n}\nmodel M {\n  l = L(1, 2)\n  forward(x: f32[4]) = l(x)\n}\n",
            "t.heed:5:12: error: block 'L' takes 1 argument, got 2\n");
  check_err("block L(n) {\n  forward(x) = x\n}\nmodel M {\n  l = L(m = 1)\n  forward(x: f32[4]) = l(x)\n}\n",
            "t.heed:5:9: error: block 'L' has no argument 'm'");
  check_err("block L {\n  forward(x, y) = x\n}\nmodel M {\n  l = L\n  forward(x: f32[4]) = l(x)\n}\n",
            "t.heed:6:24: error: 'l' (L) takes 2 arguments, got 1\n");
  check_err("block L {\n  param w: f32[4] = zeros\n}\nmodel M {\n  l = L\n  forward(x: f32[4]) = l(x)\n}\n",
            "t.heed:6:24: error: block 'L' has no forward, so 'l' cannot be called\n");
  check_err("model M {\n  param w: f32[4] = normal(-1)\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:2:21: error: normal: std must not be negative, got -1\n");
  check_err("model M {\n  param w: f32[4] = gaussian(1)\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:2:21: error: unknown initializer 'gaussian' (zeros, ones, constant, normal, uniform)\n");
  check_err("model M {\n  param w: i32[4] = normal(1)\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:2:21: error: 'normal' initializes float tensors, not i32\n");
  check_err("model M {\n  param w: f33[4] = zeros\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:2:12: error: unknown dtype 'f33'; did you mean 'f32'? (dtypes: f32 f16 bf16 i32 i64 i8 u8 bool)\n");
  check_err("model M {\n  forward(x) = x\n}\n",
            "t.heed:2:11: error: the inputs of M.forward need types, e.g. 'x: i32[B, T]'\n");
  check_err("model M {\n  param w: f32[4] = zeros\n}\n", "t.heed:1:7: error: model 'M' has no forward\n");
  check_err("model M(k) {\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:1:9: error: model argument 'k' needs a default value (models are entry points)\n");
  check_err("block A {\n  forward(x) = x\n}\nblock A {\n  forward(x) = x\n}\nmodel M {\n  forward(x: f32) = x\n}\n",
            "t.heed:4:7: error: 'A' is defined twice\n");
}

static void test_shadowing(void **state) {
  (void)state;
  FeT t;
  // an instance named like a builtin calls the instance
  check_ok(&t,
           "config {\n  dim = 4\n}\n"
           "block Inner {\n  param w: f32[dim, 2] = ones\n  forward(x) = x @ w\n}\n"
           "model M {\n"
           "  attention = Inner\n"
           "  param softmax: f32[2] = zeros\n"
           "  forward(x: f32[B, dim]) = attention(x) + softmax\n"
           "}\n",
           NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[B, 2]");
  Names *n = calloc(1, sizeof *n);
  n->st = &t.m->syms;
  fe_model_each_param(t.m, collect, n);
  assert_int_equal(n->n, 2);
  assert_string_equal(n->names[0], "softmax");
  assert_string_equal(n->names[1], "attention.w");
  free(n);
  fet_free(&t);
  // a parameter named like a builtin is a tensor, not the builtin
  check_err("model M {\n  param softmax: f32[4] = zeros\n  forward(x: f32[4]) = softmax(x)\n}\n",
            "t.heed:3:24: error: 'softmax' is a tensor f32[4], not something to call\n");
  // outside the block that declares it, the builtin is back
  check_ok(&t,
           "block A {\n  param mean: f32[4] = zeros\n  forward(x) = x + mean\n}\n"
           "model M {\n  a = A\n  forward(x: f32[B, 4]) = mean(a(x), axis = 0)\n}\n",
           NULL, 0);
  assert_string_equal(fet_type(&t, &t.m->outputs[0]), "f32[4]");
  fet_free(&t);
}

static void test_config_name_reuse(void **state) {
  (void)state;
  FeT t;
  fet_check(&t,
            "config {\n  dim = 4\n}\n"
            "model M {\n  param dim: f32[4] = ones\n  forward(x: f32[B, 4]) = x * dim\n}\n",
            NULL, 0);
  assert_null(t.m);
  assert_int_equal(t.d.nerr, 1);
  assert_string_equal(fet_log(&t),
                      "t.heed:5:9: error: parameter 'dim' reuses the name of a config value\n"
                      "    param dim: f32[4] = ones\n"
                      "          ^\n"
                      "t.heed:2:3: note: 'dim' is defined in config here\n"
                      "    dim = 4\n"
                      "    ^\n");
  fet_free(&t);
  check_err("config {\n  dim = 4\n}\nblock I {\n  forward(x) = x\n}\n"
            "model M {\n  dim = I\n  forward(x: f32[4]) = dim(x)\n}\n",
            "t.heed:8:3: error: instance 'dim' reuses the name of a config value\n");
  check_err("config {\n  dim = 4\n}\nmodel M {\n  buffer dim: f32[4] = ones\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:5:10: error: buffer 'dim' reuses the name of a config value\n");
  check_err("config {\n  dim = 4\n}\nblock dim {\n  forward(x) = x\n}\nmodel M {\n  forward(x: f32[4]) = x\n}\n",
            "t.heed:4:7: error: block 'dim' reuses the name of a config value\n");
  check_err("config {\n  dim = 4\n}\nmodel M {\n  forward(dim: f32[4]) = dim\n}\n",
            "t.heed:5:11: error: parameter 'dim' reuses the name of a config value\n");
  check_err("config {\n  dim = 4\n}\nblock I {\n  forward(dim) = dim\n}\nmodel M {\n  i = I\n"
            "  forward(x: f32[4]) = i(x)\n}\n",
            "t.heed:5:11: error: forward parameter 'dim' reuses the name of a config value\n");
}

// ---- train ----

static char *cat2(const char *a, const char *b) {
  char *s = malloc(strlen(a) + strlen(b) + 1);
  strcpy(s, a);
  strcat(s, b);
  return s;
}

static void test_train_section(void **state) {
  (void)state;
  FeT t;
  char *src = cat2(GPT, TRAIN);
  check_ok(&t, src, NULL, 0);
  const FeTrain *tr = t.m->train;
  assert_non_null(tr);
  assert_string_equal(tr->decl->name, "GPT");
  assert_string_equal(tr->optimizer, "adamw");
  assert_true(tr->lr == 6e-4);
  assert_true(tr->beta1 == 0.9);
  assert_true(tr->beta2 == 0.95);
  assert_true(tr->eps == 1e-8);
  assert_true(tr->weight_decay == 0.1);
  assert_string_equal(tr->schedule, "cosine");
  assert_true(tr->warmup == 100);
  assert_true(tr->min_lr == 6e-5);
  assert_true(tr->clip == 1.0);
  assert_int_equal(tr->batch, 8);
  assert_int_equal(tr->seq, 64);
  assert_int_equal(tr->steps, 2000);
  assert_int_equal(tr->eval_every, 50);
  assert_int_equal(tr->seed, 7);
  assert_int_equal(tr->nloss_inputs, 2);
  assert_string_equal(tr->loss_input_names[0], "tokens");
  assert_string_equal(tr->loss_input_names[1], "targets");
  assert_string_equal(fet_type(&t, &tr->loss_inputs[1]), "i32[B, T]");
  fet_free(&t);

  // --set reaches train settings
  FeOverride ov[] = {{.key = "lr", .value = "0.01"},
                     {.key = "batch", .value = "2"},
                     {.key = "clip", .value = "0"},
                     {.key = "steps", .value = "10"},
                     {.key = "min_lr", .value = "1e-4"}};
  check_ok(&t, src, ov, 5);
  tr = t.m->train;
  assert_true(tr->lr == 0.01);
  assert_int_equal(tr->batch, 2);
  assert_true(tr->clip == 0);
  assert_int_equal(tr->steps, 10);
  assert_true(tr->min_lr == 1e-4);
  assert_int_equal(tr->seq, 64);
  for (int i = 0; i < 5; i++) assert_true(ov[i].used);
  fet_free(&t);

  FeOverride bad[] = {{.key = "batch", .value = "1.5"}};
  fet_check(&t, src, bad, 1);
  assert_null(t.m);
  assert_contains(fet_log(&t), "heed: error: --set batch=1.5: 'batch' is an integer\n");
  fet_free(&t);
  free(src);
}

static void test_train_defaults(void **state) {
  (void)state;
  FeT t;
  check_ok(&t,
           "model A {\n  param w: f32[4] = zeros\n  forward(x: f32[4]) = x * w\n}\n"
           "train A {\n  loss(x: f32[4]) = mean(A(x))\n  optimizer = adamw\n}\n",
           NULL, 0);
  const FeTrain *tr = t.m->train;
  assert_non_null(tr);
  assert_string_equal(tr->optimizer, "adamw");
  assert_true(tr->lr == 1e-3);
  assert_true(tr->beta1 == 0.9);
  assert_true(tr->beta2 == 0.999);
  assert_true(tr->eps == 1e-8);
  assert_true(tr->weight_decay == 0.01);
  assert_string_equal(tr->schedule, "constant");
  assert_true(tr->warmup == 0);
  assert_true(tr->clip == 0);
  assert_int_equal(tr->batch, 8);
  assert_int_equal(tr->seq, 64);
  assert_int_equal(tr->steps, 1000);
  assert_int_equal(tr->eval_every, 100);
  assert_int_equal(tr->seed, 1337);
  fet_free(&t);

  check_ok(&t,
           "model A {\n  forward(x: f32[4]) = x\n}\n"
           "train A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = sgd(lr = 0.5, momentum = 0.9)\n"
           "  schedule = linear(warmup = 10)\n}\n",
           NULL, 0);
  tr = t.m->train;
  assert_string_equal(tr->optimizer, "sgd");
  assert_true(tr->lr == 0.5);
  assert_true(tr->momentum == 0.9);
  assert_string_equal(tr->schedule, "linear");
  assert_true(tr->warmup == 10);
  fet_free(&t);
}

static void test_train_errors(void **state) {
  (void)state;
  const char *m = "model A {\n  forward(x: f32[4]) = x\n}\n";
  char src[1024];
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  stepz = 3\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:6:3: error: unknown train setting 'stepz'; did you mean 'steps'?\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = sgd(momentum = 0.9)\n}\n", m);
  check_err(src, "t.heed:6:15: error: sgd needs a learning rate: sgd(lr = 0.1)\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = adam(lr = 1)\n}\n", m);
  check_err(src, "t.heed:6:15: error: unknown optimizer 'adam'; did you mean 'adamw'? (one of: adamw, sgd)\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = adamw(betas = 0.9)\n}\n", m);
  check_err(src, "t.heed:6:29: error: adamw: 'betas' must be a pair of numbers like (0.9, 0.999), got the number 0.9\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  schedule = cosine(warm = 5)\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:6:21: error: cosine has no setting 'warm'\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = x\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:5:21: error: the loss must be a float scalar, got a tensor f32[4] (reduce it with mean() or "
                 "cross_entropy())\n");
  snprintf(src, sizeof src, "%strain A {\n  optimizer = sgd(lr = 1)\n}\n", m);
  check_err(src, "t.heed:4:7: error: train section for 'A' has no loss(...)\n");
  snprintf(src, sizeof src, "%strain B {\n  loss(x: f32[4]) = mean(x)\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:4:7: error: train: no model named 'B'");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  batch = 2.5\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:6:11: error: 'batch' must be an integer, got the number 2.5\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  batch = 2\n  batch = 3\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:7:3: error: 'batch' is set twice\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  clip = -1\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:6:10: error: clip must not be negative, got -1\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = adamw(betas = (0.9, 1.5))\n}\n", m);
  check_err(src, "t.heed:6:15: error: beta2 must be in [0, 1), got 1.5\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = adamw\n}\ntrain A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:8:7: error: model 'A' has two train sections\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  param w: f32 = zeros\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:6:3: error: a train section holds loss(...) and settings (NAME = VALUE) only\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(A(y))\n  optimizer = adamw\n}\n", m);
  check_err(src, "t.heed:5:28: error: unknown name 'y'; did you mean 'x'?\n");
  snprintf(src, sizeof src, "%strain A {\n  loss(x: f32[4]) = mean(x)\n  optimizer = adamw\n  seed = -1\n}\n", m);
  check_err(src, "t.heed:7:10: error: seed must not be negative, got -1\n");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_values),    cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_set_overrides),    cmocka_unit_test(test_set_errors),
      cmocka_unit_test(test_param_names),      cmocka_unit_test(test_buffers_and_counts),
      cmocka_unit_test(test_output_types),     cmocka_unit_test(test_model_selection),
      cmocka_unit_test(test_symbolic_unify),   cmocka_unit_test(test_builtin_shapes),
      cmocka_unit_test(test_builtin_errors),   cmocka_unit_test(test_forward_statements),
      cmocka_unit_test(test_instance_errors),  cmocka_unit_test(test_shadowing),
      cmocka_unit_test(test_config_name_reuse), cmocka_unit_test(test_train_section),
      cmocka_unit_test(test_train_defaults),   cmocka_unit_test(test_train_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
