// tests/unit/test_cg_abi.c: a compiled program run through the runtime's
// ABI (runtime/heed_abi.h) on the CPU device (runtime/device.c), with no
// cli/ or engine/ code: a small GPT's loss graph is compiled (cg_compile),
// described (cg_program_abi: regions from the memory plan, descriptors),
// its regions allocated on an RtDevice, parameters and tokens copied in at
// their descriptors, the forward entry run, the loss copied out. Checked:
// the loss equals, bit for bit, the same graph run by cg_run on a buffer
// per node, and the reference interpreter's within 1e-5 relative; one
// program serves several (B, T) up to its bounds; sizes over the bounds,
// a program of another ABI version, an index outside its table are errors.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cg_harness.h"
#include "runtime/heed_abi.h"

static IrNode *linear(T *t, IrNode *x, int64_t cin, int64_t cout) {
  char ws[32], bs[32];
  snprintf(ws, sizeof ws, "%lld,%lld", (long long)cin, (long long)cout);
  snprintf(bs, sizeof bs, "%lld", (long long)cout);
  return op2(t, IR_OP_ADD, op2(t, IR_OP_MATMUL, x, par(t, ws, -0.2, 0.2)), par(t, bs, -0.1, 0.1));
}

// tokens, targets (B, T) -> embeddings, one causal attention block, a tied
// head, the cross-entropy loss.
static void build(T *t, int64_t V, int64_t C, int64_t H, int64_t P) {
  IrNode *idx = in(t, IR_I32, "B,T", 0, V - 1), *tg = in(t, IR_I32, "B,T", 0, V - 1);
  char vc[32], pc[32];
  snprintf(vc, sizeof vc, "%lld,%lld", (long long)V, (long long)C);
  snprintf(pc, sizeof pc, "%lld,%lld", (long long)P, (long long)C);
  IrNode *wte = par(t, vc, -0.5, 0.5), *wpe = par(t, pc, -0.5, 0.5);
  IrNode *x = op2(t, IR_OP_ADD, op2(t, IR_OP_GATHER, wte, idx), op2(t, IR_OP_GATHER, wpe, op1(t, IR_OP_POSITIONS, idx)));
  IrNode *qkv = linear(t, x, C, 3 * C), *qkvs[3];
  for (int j = 0; j < 3; j++) {
    IrType st = {.dt = IR_F32, .rank = 3, .dim = {ir_dim_sym(SYM_B), ir_dim_sym(SYM_T), ir_dim_const(C)}};
    qkvs[j] = op(t, IR_OP_SLICE, &qkv, 1, &(IrAttr){.axis = 2, .start = j * C}, &st);
  }
  IrAttr at = {.heads = H, .kv_heads = H, .causal = true, .scale = 1 / sqrt((double)(C / H))};
  x = op2(t, IR_OP_ADD, x, linear(t, op(t, IR_OP_ATTENTION, qkvs, 3, &at, NULL), C, C));
  x = op2(t, IR_OP_ADD, x, linear(t, op1(t, IR_OP_GELU_TANH, linear(t, x, C, 4 * C)), 4 * C, C));
  IrNode *wt = op(t, IR_OP_PERMUTE, &wte, 1, &(IrAttr){.perm = {1, 0}}, NULL);
  IrNode *loss = op(t, IR_OP_XENT, (IrNode *[]){op2(t, IR_OP_MATMUL, x, wt), tg}, 2, &(IrAttr){.ignore = -1}, NULL);
  assert_true(ir_output(t->g, "loss", loss));
}

enum { V = 97, C = 32, H = 4, P = 16 };
static const int64_t SMAX[3] = {3, 16, 1};

typedef struct {
  T t;
  RtDevice *dev;
  HeedProgram *hp;
  RtRegions r;
} Fx;

static void fx_init(Fx *f) {
  t_init(&f->t);
  build(&f->t, V, C, H, P);
  f->dev = rt_device_cpu_new(2);
  assert_non_null(f->dev);
  CgOptions o = {.pool = rt_device_cpu_pool(f->dev), .nthreads = 2, .parallel_for = (CgParallelFor)rt_parallel_for,
                 .par_grain = 1, .compile_threads = 1};
  CgProgram *p = cg_compile(f->t.g, &o, &f->t.d);
  assert_non_null(p);
  f->hp = cg_program_abi(p, true, f->t.g, SMAX, &f->t.d);
  assert_non_null(f->hp);
  char err[256];
  assert_int_equal(rt_regions_alloc(f->dev, f->hp, &f->r, err, sizeof err), HEED_ABI_OK);
}

static void fx_fini(Fx *f) {
  rt_regions_free(&f->r);
  cg_abi_free(f->hp);
  rt_device_free(f->dev);
  t_fini(&f->t);
}

// The program's description: its version, regions, every tensor inside
// its region, names and shapes as the graph's.
static void test_describe(void **state) {
  (void)state;
  Fx f;
  fx_init(&f);
  const HeedProgram *hp = f.hp;
  const IrGraph *g = f.t.g;
  assert_int_equal(heed_abi_check(hp), HEED_ABI_OK);
  assert_int_equal(hp->n_in, 2);
  assert_int_equal(hp->n_out, 1);
  assert_int_equal(hp->n_param, g->params.len);
  assert_int_equal(hp->n_sym, 3);
  assert_string_equal(hp->sym_name[0], "B");
  assert_non_null(hp->forward);
  assert_null(hp->decode);
  int64_t pbytes = 0;
  for (uint32_t i = 0; i < hp->n_param; i++) {
    const HeedTensorDesc *d = &hp->param[i];
    assert_int_equal(d->region, HEED_REGION_PARAMS);
    assert_string_equal(d->name, g->params.data[i]->name);
    assert_int_equal(d->off % hp->align, 0);
    int64_t b = rt_tensor_bytes(&f.r, d, SMAX);
    assert_true(b == ir_type_numel(&g->params.data[i]->ty, SMAX) * 4);
    assert_true(d->off + (uint64_t)b <= hp->region_bytes[HEED_REGION_PARAMS]);
    pbytes += b;
  }
  assert_true(hp->region_bytes[HEED_REGION_PARAMS] >= (uint64_t)pbytes);
  assert_true(hp->region_bytes[HEED_REGION_PARAMS] < (uint64_t)pbytes + hp->n_param * 64);
  for (uint32_t i = 0; i < hp->n_in; i++) assert_int_equal(hp->in[i].region, HEED_REGION_INPUTS);
  assert_int_equal(hp->out[0].region, HEED_REGION_ARENA);
  assert_int_equal(hp->out[0].dt, HEED_DT_F32);
  assert_int_equal(hp->out[0].rank, 0);
  assert_true(hp->region_bytes[HEED_REGION_ARENA] > 0);
  assert_true(hp->region_bytes[HEED_REGION_WORKSPACE] > 0);  // it has a MATMUL: the sgemm's buffers
  fx_fini(&f);
}

// Random leaves as f32/i32 host arrays, for sizes sv.
static void *leaf_values(const IrNode *n, const int64_t *sv, double lo, double hi) {
  int64_t k = ir_type_numel(&n->ty, sv);
  void *v = malloc((size_t)k * 4 + 4);
  for (int64_t j = 0; j < k; j++) {
    if (n->ty.dt == IR_F32) ((float *)v)[j] = (float)(lo + (hi - lo) * urand());
    else ((int32_t *)v)[j] = (int32_t)irand((int64_t)lo, (int64_t)hi);
  }
  return v;
}

// The loss through the ABI, through cg_run on a buffer per node, and the
// interpreter's, for sv.
static void run_sizes(Fx *f, const int64_t *sv, bool bad_token) {
  const IrGraph *g = f->t.g;
  int nl = g->inputs.len + g->params.len;
  void **host = calloc((size_t)nl, sizeof *host);
  for (int i = 0; i < nl; i++) {
    const IrNode *n = i < g->inputs.len ? g->inputs.data[i] : g->params.data[i - g->inputs.len];
    host[i] = leaf_values(n, sv, f->t.lo[n->id], f->t.hi[n->id]);
    const HeedTensorDesc *d = i < g->inputs.len ? &f->hp->in[i] : &f->hp->param[i - g->inputs.len];
    assert_int_equal(rt_tensor_copy_in(&f->r, d, sv, host[i]), HEED_ABI_OK);
  }
  if (bad_token) {
    int32_t big[1] = {V + 3};
    memcpy(rt_tensor_data(&f->r, &f->hp->in[0]), big, 4);  // the first token: outside the table
    assert_int_equal(rt_program_run(&f->r, f->hp->forward, sv), HEED_ABI_ERR_RUN);
    assert_non_null(strstr(f->t.d.log, "gather: index 100 is outside the table of 97 rows"));
    for (int i = 0; i < nl; i++) free(host[i]);
    free(host);
    return;
  }
  assert_int_equal(rt_program_run(&f->r, f->hp->forward, sv), HEED_ABI_OK);
  float loss_abi;
  assert_int_equal(rt_tensor_copy_out(&f->r, &f->hp->out[0], sv, &loss_abi), HEED_ABI_OK);

  // cg_run on a buffer per node, the same leaves
  CgProgram *p = cg_compile(g, &(CgOptions){.compile_threads = 1}, &f->t.d);
  assert_non_null(p);
  void **bufs = calloc((size_t)g->nodes.len, sizeof *bufs);
  for (int i = 0; i < g->nodes.len; i++) bufs[i] = calloc(1, (size_t)cg_buffer_bytes(p, i, sv) + 64);
  for (int i = 0; i < nl; i++) {
    const IrNode *n = i < g->inputs.len ? g->inputs.data[i] : g->params.data[i - g->inputs.len];
    memcpy(bufs[n->id], host[i], (size_t)cg_buffer_bytes(p, (int)n->id, sv));
  }
  assert_true(cg_run(p, sv, bufs, &f->t.d));
  float loss_cg = *(float *)bufs[g->outputs.data[0]->id];
  assert_memory_equal(&loss_abi, &loss_cg, sizeof loss_cg);  // bit for bit

  // the interpreter
  double **vals = calloc((size_t)nl, sizeof *vals);
  for (int i = 0; i < nl; i++) {
    const IrNode *n = i < g->inputs.len ? g->inputs.data[i] : g->params.data[i - g->inputs.len];
    int64_t k = ir_type_numel(&n->ty, sv);
    vals[i] = malloc(sizeof(double) * (size_t)(k + 1));
    for (int64_t j = 0; j < k; j++)
      vals[i][j] = n->ty.dt == IR_F32 ? ((float *)host[i])[j] : ((int32_t *)host[i])[j];
  }
  IrValues *v = ir_interp(g, sv, vals, vals + g->inputs.len, false, &f->t.d);
  assert_non_null(v);
  double want = v->val[g->outputs.data[0]->id][0];
  assert_true(fabs(loss_abi - want) <= 1e-5 * fabs(want));
  ir_values_free(v);
  for (int i = 0; i < nl; i++) free(vals[i]), free(host[i]);
  for (int i = 0; i < g->nodes.len; i++) free(bufs[i]);
  free(vals), free(bufs), free(host);
  cg_program_free(p);
}

static void test_run(void **state) {
  (void)state;
  Fx f;
  fx_init(&f);
  run_sizes(&f, (const int64_t[]){2, 9, 1}, false);
  run_sizes(&f, SMAX, false);                       // the bounds themselves
  run_sizes(&f, (const int64_t[]){1, 1, 1}, false);  // and the smallest: one program
  fx_fini(&f);
}

static void test_errors(void **state) {
  (void)state;
  Fx f;
  fx_init(&f);
  // sizes over the bounds the regions were planned for
  assert_int_equal(rt_program_run(&f.r, f.hp->forward, (const int64_t[]){4, 16, 1}), HEED_ABI_ERR_ARG);
  assert_int_equal(rt_program_run(&f.r, f.hp->forward, (const int64_t[]){3, 17, 1}), HEED_ABI_ERR_ARG);
  assert_true(rt_tensor_bytes(&f.r, &f.hp->in[0], (const int64_t[]){3, 17, 1}) < 0);
  // an entry the program does not have
  assert_int_equal(rt_program_run(&f.r, f.hp->decode, SMAX), HEED_ABI_ERR_ARG);
  // a run-time error: reported at the op, the entry says HEED_ABI_ERR_RUN
  run_sizes(&f, (const int64_t[]){1, 4, 1}, true);
  // a program of another ABI version
  RtRegions r2;
  char err[256];
  f.hp->abi_version = HEED_ABI_VERSION + 1;
  assert_int_equal(rt_regions_alloc(f.dev, f.hp, &r2, err, sizeof err), HEED_ABI_ERR_VERSION);
  assert_non_null(strstr(err, "ABI version"));
  f.hp->abi_version = HEED_ABI_VERSION;
  assert_string_equal(rt_abi_status_str(HEED_ABI_ERR_RUN), "a run-time error in the program");
  fx_fini(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_describe),
      cmocka_unit_test(test_run),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
