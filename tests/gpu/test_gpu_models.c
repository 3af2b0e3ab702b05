// tests/gpu/test_gpu_models.c: the GPU backend without a GPU. For every
// example model (shrunk by config overrides), its forward and decode-step
// graphs go through heed_compile's passes, the schedule under cg_gpu_caps
// and the renderer (codegen/gpu/), then
//   (1) the CUDA dialect is compiled by NVRTC for sm_80 and sm_90 (no driver
//       needed): every kernel must compile;
//   (2) the OpenCL dialect runs on the first OpenCL device (PoCL on the CPU
//       in CI) and every call's result is checked against the reference
//       interpreter (ir/interp.c): floats within 1e-5 of the node's largest
//       |value| (plus 1e-6), integers equal; in a train step (forward,
//       loss, gradients, AdamW updates) the nodes from the first gradient
//       op on within 1e-4; and a 10-step AdamW training run of bytegpt,
//       each side continuing from its own updates, within 1e-4.
// Without NVRTC or an OpenCL device the test fails (CI installs both:
// scripts/install-deps.sh); it never skips.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/driver.h"
#include "codegen/gpu/gpu.h"
#include "runtime/gpu.h"

static const double FWD_TOL = 1e-5, GRAD_TOL = 1e-4;

typedef struct {
  const char *file;
  FeOverride set[8];
  int nset;
  bool decode;  // has a decode step (causal attention)
  bool train;   // has a train section
} Model;

static Model models[] = {
    {"mlp.heed", {{.key = "n_hidden", .value = "64"}}, 1, false, true},
    {"bytegpt.heed", {{.key = "layers", .value = "1"}, {.key = "dim", .value = "64"}}, 2, true, true},
    {"gpt2.heed",
     {{.key = "layers", .value = "1"}, {.key = "dim", .value = "64"}, {.key = "vocab", .value = "301"},
      {.key = "ctx", .value = "32"}, {.key = "heads", .value = "4"}},
     5, true, true},
    {"llama.heed",
     {{.key = "n_layers", .value = "1"}, {.key = "dim", .value = "64"}, {.key = "vocab", .value = "200"},
      {.key = "ffn_dim", .value = "96"}, {.key = "ctx", .value = "32"}},
     5, true, true},
    {"bert.heed",
     {{.key = "n_layers", .value = "1"}, {.key = "dim", .value = "64"}, {.key = "vocab", .value = "300"},
      {.key = "ffn_dim", .value = "128"}, {.key = "ctx", .value = "32"}},
     5, false, false},
};
enum { NMODELS = sizeof models / sizeof *models };

static RtGpu *gpu;
static PassTrainOpts train_opts;  // set: the train step's optimizer (else the model's train section)

typedef struct {
  Compilation *c;
  HeedCompiled hc;
  Schedule *s;
  int64_t sv[IR_MAX_SYMS];
} Graph;

static int sym(const IrGraph *g, const char *name) {
  for (int i = 0; i < g->syms.len; i++)
    if (!strcmp(g->syms.data[i], name)) return i;
  return -1;
}

// The graph of kind for model m after its passes, with its GPU schedule and
// sizes B = 2, T = 5 (decode: T = 2 new tokens), other symbols 16.
static void graph_open(Model *m, HeedGraphKind kind, Graph *G) {
  static HeedOptions ho;
  static char path[512];
  snprintf(path, sizeof path, "%s/examples/%s", HEED_SOURCE_DIR, m->file);
  ho = (HeedOptions){.path = path, .check = {.lower = true, .overrides = m->set, .noverrides = m->nset}};
  memset(G, 0, sizeof *G);
  G->c = heed_compilation_new(&ho);
  assert_non_null(G->c);
  assert_int_equal(heed_frontend(G->c), HEED_OK);
  HeedCompileOpts o = {.kind = kind, .stop = HEED_STOP_PASSES, .decode_output = -1, .train = train_opts};
  assert_int_equal(heed_compile(G->c, &o, &G->hc), HEED_OK);
  SchedCaps caps;
  cg_gpu_caps(&caps);
  G->s = sched_build(G->hc.g, &caps, &G->c->diag);
  assert_non_null(G->s);
  for (int i = 0; i < IR_MAX_SYMS; i++) G->sv[i] = 16;
  if (sym(G->hc.g, "B") >= 0) G->sv[sym(G->hc.g, "B")] = 2;
  if (sym(G->hc.g, "T") >= 0) G->sv[sym(G->hc.g, "T")] = kind == HEED_GRAPH_DECODE ? 2 : 5;
}

static void graph_close(Graph *G) {
  sched_free(G->s);
  heed_compiled_free(&G->hc);
  heed_compilation_free(G->c);
}

// ---- (1) NVRTC ----

static void nvrtc_kind(HeedGraphKind kind) {
  for (int mi = 0; mi < NMODELS; mi++) {
    if ((kind == HEED_GRAPH_DECODE && !models[mi].decode) || (kind == HEED_GRAPH_TRAIN_STEP && !models[mi].train))
      continue;
    Graph G;
    graph_open(&models[mi], kind, &G);
    CgGpuProgram *p = cg_gpu_render(G.hc.g, G.s, G.sv, CG_GPU_CUDA, &G.c->diag);
    assert_non_null(p);
    static const char *const arch[] = {"sm_80", "sm_90"};
    for (int a = 0; a < 2; a++) {
      char *ptx = NULL, *log = NULL, err[512];
      bool ok = rt_nvrtc_compile(p->src, arch[a], &ptx, &log, err, sizeof err);
      if (!ok) fprintf(stderr, "%s (%s): %s\n%s\n", models[mi].file, arch[a], err, log ? log : "");
      assert_true(ok);
      assert_non_null(strstr(ptx, ".entry"));
      free(ptx);
      free(log);
    }
    cg_gpu_program_free(p);
    graph_close(&G);
  }
}

static void test_nvrtc_forward(void **state) {
  (void)state;
  nvrtc_kind(HEED_GRAPH_FORWARD);
}

static void test_nvrtc_decode(void **state) {
  (void)state;
  nvrtc_kind(HEED_GRAPH_DECODE);
}

// ---- (2) OpenCL against the interpreter ----

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double uniform(void) {  // [0, 1)
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

// The largest valid value of integer input x: the rows of a table it
// indexes, the classes of the logits it targets; 1 for a mask; pos: 3.
static int64_t int_bound(const IrGraph *g, const IrNode *x, const int64_t *sv) {
  int64_t bound = 2;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    int64_t d[IR_MAX_RANK];
    if (n->op == IR_OP_GATHER && n->src[1] == x && ir_shape(&n->src[0]->ty, sv, d)) bound = d[0];
    if (n->op == IR_OP_XENT && n->src[1] == x && ir_shape(&n->src[0]->ty, sv, d)) bound = d[n->src[0]->ty.rank - 1];
    if ((n->op == IR_OP_KV_APPEND && n->src[2] == x) || (n->op == IR_OP_ATTENTION_KV && n->src[3] == x) ||
        (n->op == IR_OP_ROPE_AT && n->src[1] == x))
      return -3;  // a cache position: fixed
  }
  return bound;
}

static void to_dtype(IrDType dt, const double *v, int64_t n, void *out) {
  for (int64_t i = 0; i < n; i++) switch (dt) {
    case IR_F32: ((float *)out)[i] = (float)v[i]; break;
    case IR_I32: ((int32_t *)out)[i] = (int32_t)v[i]; break;
    case IR_I64: ((int64_t *)out)[i] = (int64_t)v[i]; break;
    case IR_I8: ((int8_t *)out)[i] = (int8_t)v[i]; break;
    default: ((uint8_t *)out)[i] = (uint8_t)v[i]; break;
    }
}

static double from_dtype(IrDType dt, const void *p, int64_t i) {
  switch (dt) {
  case IR_F32: return ((const float *)p)[i];
  case IR_I32: return ((const int32_t *)p)[i];
  case IR_I64: return (double)((const int64_t *)p)[i];
  case IR_I8: return ((const int8_t *)p)[i];
  default: return ((const uint8_t *)p)[i];
  }
}

static double *leaf_values(const IrGraph *g, const IrNode *x, const int64_t *sv, int64_t n) {
  double *v = malloc(sizeof *v * (size_t)(n ? n : 1));
  assert_non_null(v);
  int64_t bound = ir_dtype_info[x->ty.dt].is_float ? 0 : int_bound(g, x, sv);
  bool pos = x->name && (!strncmp(x->name, "opt.", 4) || x->ty.rank == 0);  // optimizer state, scalars: > 0
  for (int64_t i = 0; i < n; i++)
    v[i] = bound < 0 ? (double)-bound : bound ? (double)(int64_t)(uniform() * (double)bound)
                                              : (float)(pos ? 0.5 + 0.5 * uniform() : uniform() - 0.5);
  if (x->ty.dt == IR_BOOL && n) v[0] = 1;  // a mask keeps at least one key
  return v;
}

// Runs G on the OpenCL device and checks every call's result; returns the calls checked.
static int run_opencl(Graph *G, const char *what) {
  const IrGraph *g = G->hc.g;
  int nn = g->nodes.len;
  double **inputs = calloc((size_t)g->inputs.len + 1, sizeof *inputs), **params = calloc((size_t)g->params.len + 1, sizeof *params);
  RtGpuBuf **buf = calloc((size_t)nn, sizeof *buf);
  assert_true(inputs && params && buf);
  char err[512], *log = NULL;
  for (int pass = 0; pass < 2; pass++) {  // inputs, then params
    int cnt = pass ? g->params.len : g->inputs.len;
    for (int i = 0; i < cnt; i++) {
      const IrNode *x = pass ? g->params.data[i] : g->inputs.data[i];
      int64_t n = ir_type_numel(&x->ty, G->sv);
      double *v = leaf_values(g, x, G->sv, n);
      (pass ? params : inputs)[i] = v;
      size_t bytes = (size_t)n * ir_dtype_info[x->ty.dt].size;
      void *host = malloc(bytes ? bytes : 1);
      to_dtype(x->ty.dt, v, n, host);
      assert_non_null(buf[x->id] = rt_gpu_alloc(gpu, bytes, err, sizeof err));
      assert_true(rt_gpu_write(gpu, buf[x->id], host, bytes, err, sizeof err));
      free(host);
    }
  }
  IrValues *want = ir_interp(g, G->sv, inputs, params, false, &G->c->diag);
  assert_non_null(want);
  CgGpuProgram *p = cg_gpu_render(g, G->s, G->sv, CG_GPU_OPENCL, &G->c->diag);
  assert_non_null(p);
  bool ok = rt_gpu_load(gpu, p->src, &log, err, sizeof err);
  if (!ok) fprintf(stderr, "%s: %s\n%s\n", what, err, log ? log : "");
  assert_true(ok);
  free(log);
  for (int c = 0; c < p->nl; c++) {
    const CgGpuLaunch *l = &p->l[c];
    const IrNode *n = g->nodes.data[l->root];
    assert_null(buf[l->arg[0]]);
    size_t bytes = (size_t)ir_type_numel(&n->ty, G->sv) * ir_dtype_info[n->ty.dt].size;
    assert_non_null(buf[l->arg[0]] = rt_gpu_alloc(gpu, bytes, err, sizeof err));
    RtGpuBuf *args[CG_GPU_MAX_ARGS];
    for (int j = 0; j < l->nargs; j++) assert_non_null(args[j] = buf[l->arg[j]]);
    if (!rt_gpu_launch(gpu, l->name, args, l->nargs, l->global, l->local, err, sizeof err)) fail_msg("%s", err);
  }
  assert_true(rt_gpu_finish(gpu, err, sizeof err));
  int checked = 0, first_grad = nn;
  for (int i = 0; i < nn; i++)
    if (g->nodes.data[i]->op >= IR_OP_UNARY_GRAD && first_grad == nn) first_grad = i;
  for (int c = 0; c < p->nl; c++) {
    const IrNode *n = g->nodes.data[p->l[c].root];
    int64_t cnt = ir_type_numel(&n->ty, G->sv);
    size_t bytes = (size_t)cnt * ir_dtype_info[n->ty.dt].size;
    void *got = malloc(bytes ? bytes : 1);
    assert_true(rt_gpu_read(gpu, buf[p->l[c].arg[0]], got, bytes, err, sizeof err));
    const double *w = want->val[n->id];
    double mx = 0, worst = 0;
    for (int64_t i = 0; i < cnt; i++) mx = fmax(mx, fabs(w[i]));
    int64_t at = -1;
    for (int64_t i = 0; i < cnt; i++) {
      double gv = from_dtype(n->ty.dt, got, i), e = fabs(gv - w[i]);
      if (!(e <= worst) && !(isnan(gv) && isnan(w[i]))) worst = e, at = i;
    }
    double tol = ir_dtype_info[n->ty.dt].is_float ? ((int)n->id >= first_grad ? GRAD_TOL : FWD_TOL) * mx + 1e-6 : 0;
    if (!(worst <= tol))
      fail_msg("%s: %s (node %d, kernel %s): element %lld: got %.9g, want %.9g (max |want| %.3g)", what,
               ir_op_name(n->op), n->id, p->l[c].name, (long long)at, from_dtype(n->ty.dt, got, at), w[at], mx);
    free(got);
    checked++;
  }
  for (int i = 0; i < nn; i++) rt_gpu_buf_free(gpu, buf[i]);
  for (int i = 0; i < g->inputs.len; i++) free(inputs[i]);
  for (int i = 0; i < g->params.len; i++) free(params[i]);
  free(inputs), free(params), free(buf);
  ir_values_free(want);
  cg_gpu_program_free(p);
  return checked;
}

static void opencl_kind(HeedGraphKind kind) {
  for (int mi = 0; mi < NMODELS; mi++) {
    if ((kind == HEED_GRAPH_DECODE && !models[mi].decode) || (kind == HEED_GRAPH_TRAIN_STEP && !models[mi].train))
      continue;
    Graph G;
    graph_open(&models[mi], kind, &G);
    char what[128];
    snprintf(what, sizeof what, "%s %s", models[mi].file,
             kind == HEED_GRAPH_DECODE ? "decode" : kind == HEED_GRAPH_TRAIN_STEP ? "train step" : "forward");
    int n = run_opencl(&G, what);
    assert_true(n > 3);
    graph_close(&G);
  }
}

static void test_opencl_forward(void **state) {
  (void)state;
  opencl_kind(HEED_GRAPH_FORWARD);
}

static void test_opencl_decode(void **state) {
  (void)state;
  opencl_kind(HEED_GRAPH_DECODE);
}

static void test_nvrtc_train_step(void **state) {
  (void)state;
  nvrtc_kind(HEED_GRAPH_TRAIN_STEP);
}

static void test_opencl_train_step(void **state) {
  (void)state;
  opencl_kind(HEED_GRAPH_TRAIN_STEP);
}

// An op the renderer has no kernel for (an f16 tensor) is an error naming
// it, not a crash or a wrong kernel.
static void test_unsupported(void **state) {
  (void)state;
  Graph G;
  graph_open(&models[1], HEED_GRAPH_FORWARD, &G);
  diag_fini(&G.c->diag);
  diag_init(&G.c->diag, NULL);
  IrNode *x = (IrNode *)G.hc.g->nodes.data[G.s->k[G.s->nk - 1].root];
  x->ty.dt = IR_F16;
  assert_false(cg_gpu_supports(G.hc.g, &G.s->k[G.s->nk - 1], &G.c->diag));
  assert_null(cg_gpu_render(G.hc.g, G.s, G.sv, CG_GPU_OPENCL, &G.c->diag));
  assert_non_null(strstr(G.c->diag.log, "the GPU backend has no"));
  x->ty.dt = IR_F32;
  graph_close(&G);
}

// ---- a 10-step training run: OpenCL against the interpreter ----

// The leaf named name (input or param) of g, or NULL.
static const IrNode *leaf_named(const IrGraph *g, const char *name) {
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if ((n->op == IR_OP_INPUT || n->op == IR_OP_PARAM) && n->name && !strcmp(n->name, name)) return n;
  }
  return NULL;
}

// bytegpt's AdamW train step (weight decay 0.1, gradient clipping at norm 1) run 10 times on each side, each feeding its own
// new.* outputs back as its parameters and optimizer state: the losses of
// every step and the final parameters within 1e-4 (relative to the largest
// |value| of the tensor).
static void test_opencl_train_10_steps(void **state) {
  (void)state;
  Graph G;
  // AdamW with eps 1e-3: with the usual 1e-8, a gradient that is exactly 0
  // in exact arithmetic (a key bias) is rounding noise that Adam's first
  // steps scale up to +-lr on either side; eps bounds that amplification.
  train_opts = (PassTrainOpts){.optimizer = "adamw", .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-3, .weight_decay = 0.1, .clip = 1.0};
  graph_open(&models[1], HEED_GRAPH_TRAIN_STEP, &G);
  train_opts = (PassTrainOpts){0};
  const IrGraph *g = G.hc.g;
  int nn = g->nodes.len;
  char err[512], *log = NULL;
  double **val = calloc((size_t)nn, sizeof *val);        // per leaf id: the interpreter's side
  RtGpuBuf **buf = calloc((size_t)nn, sizeof *buf);
  assert_true(val && buf);
  for (int i = 0; i < nn; i++) {
    const IrNode *x = g->nodes.data[i];
    if (x->op != IR_OP_INPUT && x->op != IR_OP_PARAM) continue;
    int64_t n = ir_type_numel(&x->ty, G.sv);
    val[i] = leaf_values(g, x, G.sv, n);
    bool opt = !strncmp(x->name, "opt.", 4);
    for (int64_t j = 0; opt && j < n; j++)
      val[i][j] = !strcmp(x->name, "opt.decay") ? 0.999 : !strcmp(x->name, "opt.step_size") ? 0.01
                  : !strcmp(x->name, "opt.bc2_sqrt") ? 0.5 : 0;
    size_t bytes = (size_t)n * ir_dtype_info[x->ty.dt].size;
    void *host = malloc(bytes ? bytes : 1);
    to_dtype(x->ty.dt, val[i], n, host);
    assert_non_null(buf[i] = rt_gpu_alloc(gpu, bytes, err, sizeof err));
    assert_true(rt_gpu_write(gpu, buf[i], host, bytes, err, sizeof err));
    free(host);
  }
  CgGpuProgram *p = cg_gpu_render(g, G.s, G.sv, CG_GPU_OPENCL, &G.c->diag);
  assert_non_null(p);
  assert_true(rt_gpu_load(gpu, p->src, &log, err, sizeof err));
  free(log);
  for (int c = 0; c < p->nl; c++) {
    const IrNode *n = g->nodes.data[p->l[c].root];
    size_t bytes = (size_t)ir_type_numel(&n->ty, G.sv) * ir_dtype_info[n->ty.dt].size;
    assert_non_null(buf[p->l[c].arg[0]] = rt_gpu_alloc(gpu, bytes, err, sizeof err));
  }
  double **in = calloc((size_t)g->inputs.len + 1, sizeof *in), **par = calloc((size_t)g->params.len + 1, sizeof *par);
  for (int step = 0; step < 10; step++) {
    for (int i = 0; i < g->inputs.len; i++) in[i] = val[g->inputs.data[i]->id];
    for (int i = 0; i < g->params.len; i++) par[i] = val[g->params.data[i]->id];
    IrValues *want = ir_interp(g, G.sv, in, par, false, &G.c->diag);
    assert_non_null(want);
    for (int c = 0; c < p->nl; c++) {
      const CgGpuLaunch *l = &p->l[c];
      RtGpuBuf *args[CG_GPU_MAX_ARGS];
      for (int j = 0; j < l->nargs; j++) args[j] = buf[l->arg[j]];
      assert_true(rt_gpu_launch(gpu, l->name, args, l->nargs, l->global, l->local, err, sizeof err));
    }
    for (int o = 0; o < g->outputs.len; o++) {
      const IrNode *n = g->outputs.data[o];
      const char *name = g->output_names.data[o];
      bool loss = !strcmp(name, "loss"), upd = !strncmp(name, "new.", 4);
      if (!loss && !upd) continue;
      int64_t cnt = ir_type_numel(&n->ty, G.sv);
      float *got = malloc(sizeof(float) * (size_t)cnt);
      assert_true(rt_gpu_read(gpu, buf[G.s->alias[n->id]], got, sizeof(float) * (size_t)cnt, err, sizeof err));
      const IrNode *leaf = upd ? leaf_named(g, name + 4) : NULL;
      const double *w = want->val[n->id];
      double mx = 0, worst = 0;
      for (int64_t j = 0; j < cnt; j++) mx = fmax(mx, fabs(w[j])), worst = fmax(worst, fabs(got[j] - w[j]));
      if (!(worst <= GRAD_TOL * mx + 1e-7)) fail_msg("step %d: %s differs by %.3g (max |want| %.3g)", step, name, worst, mx);
      if (loss) assert_true(step == 0 || w[0] < 6);  // a loss, not garbage
      if (leaf) {  // each side continues from its own values
        memcpy(val[leaf->id], w, sizeof(double) * (size_t)cnt);
        assert_true(rt_gpu_write(gpu, buf[leaf->id], got, sizeof(float) * (size_t)cnt, err, sizeof err));
      }
      free(got);
    }
    ir_values_free(want);
  }
  for (int i = 0; i < nn; i++) rt_gpu_buf_free(gpu, buf[i]), free(val[i]);
  free(val), free(buf), free(in), free(par);
  cg_gpu_program_free(p);
  graph_close(&G);
}

int main(void) {
  char err[512];
  if (!(gpu = rt_gpu_open(RT_GPU_OPENCL, err, sizeof err))) {
    fprintf(stderr, "test_gpu_models: %s\n", err);
    return 1;
  }
  fprintf(stderr, "OpenCL device: %s\n", rt_gpu_device_name(gpu));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nvrtc_forward), cmocka_unit_test(test_nvrtc_decode),
      cmocka_unit_test(test_nvrtc_train_step),
      cmocka_unit_test(test_opencl_forward), cmocka_unit_test(test_opencl_decode),
      cmocka_unit_test(test_opencl_train_step), cmocka_unit_test(test_opencl_train_10_steps),
      cmocka_unit_test(test_unsupported),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  rt_gpu_close(gpu);
  return rc;
}
