// tests/unit/test_cg_target.c: a target that is not the CPU one. "record"
// is registered only in this binary (cg_target_register); its emit keeps
// what heed_compile (cli/driver.c) handed it: the graph after the passes,
// every kernel of the schedule (root, operands, buffers, parallel split),
// the memory plan (buffer sizes, offsets) and the options. The tests check
// that this is everything a backend needs, for a small model's forward,
// train step and decode step, against the graph and an independently
// built schedule; and that an unknown target is an error, never a CPU run.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/driver.h"

enum { MAXK = 2048 };

typedef struct {  // what the record target was asked
  int ncaps, nsupports, nemit;
  const IrGraph *g;
  int nk, nfn;
  SchedKernel k[MAXK];
  const CgPlan *plan;      // valid during emit only: copied below
  int64_t total, bytes[8192], offset[8192];
  const char *entry;
} Record;

static Record rec;

static bool rec_caps(const CgTarget *t, const CgOptions *o, CgCaps *caps, Diag *d) {
  (void)t, (void)o, (void)d;
  rec.ncaps++;
  *caps = (CgCaps){.vector_width = 4, .alignment = 64};
  cg_cpu_caps(&caps->sched);  // the same fusions as the CPU: comparable schedules
  return true;
}

static bool rec_supports(const CgTarget *t, const IrGraph *g, const SchedKernel *k, Diag *d) {
  (void)t, (void)g, (void)k, (void)d;
  rec.nsupports++;
  return true;
}

static bool rec_emit(const CgTarget *t, CgEmitIn *in, CgProgram **out, Diag *d) {
  (void)t, (void)d;
  rec.nemit++;
  rec.g = in->g;
  rec.nk = in->sched->nk, rec.nfn = in->sched->nfn;
  assert_true(rec.nk <= MAXK);
  memcpy(rec.k, in->sched->k, sizeof rec.k[0] * (size_t)rec.nk);
  rec.plan = in->plan;
  assert_non_null(in->plan);
  assert_true(in->plan->nnodes <= 8192);
  rec.total = in->plan->total;
  memcpy(rec.bytes, in->plan->bytes, sizeof rec.bytes[0] * (size_t)in->plan->nnodes);
  memcpy(rec.offset, in->plan->offset, sizeof rec.offset[0] * (size_t)in->plan->nnodes);
  rec.entry = in->o->entry;
  *out = NULL;  // nothing runnable: the record is the output
  return true;
}

static const CgTarget record_target = {
    .name = "record", .summary = "test: records what it is asked to emit",
    .caps = rec_caps, .supports = rec_supports, .emit = rec_emit,
};

static int sym(const IrGraph *g, const char *name) {
  for (int i = 0; i < g->syms.len; i++)
    if (!strcmp(g->syms.data[i], name)) return i;
  return -1;
}

// Compiles bytegpt (1 layer) as kind through the record target, planned
// for B = 2, T = 8 (KV = 16), and checks the record against the graph
// and a schedule built here under the same caps.
static void compile_and_check(HeedGraphKind kind, Compilation **cp, HeedCompiled *hc) {
  static HeedOptions ho;
  static FeOverride set = {.key = "layers", .value = "1"};
  ho = (HeedOptions){.path = HEED_SOURCE_DIR "/examples/bytegpt.heed",
                     .check = {.lower = true, .overrides = &set, .noverrides = 1}};
  Compilation *c = heed_compilation_new(&ho);
  assert_non_null(c);
  assert_int_equal(heed_frontend(c), HEED_OK);
  memset(&rec, 0, sizeof rec);
  int64_t sv[IR_MAX_SYMS];
  for (int i = 0; i < IR_MAX_SYMS; i++) sv[i] = 16;
  HeedCompileOpts o = {.kind = kind, .stop = HEED_STOP_EMIT, .target = "record", .plan_symvals = sv,
                       .cg = {.entry = "heed_rec"}, .decode_output = -1};
  const IrGraph *start = kind == HEED_GRAPH_TRAIN_STEP ? c->model->loss : c->model->forward;
  int sb = sym(start, "B"), st = sym(start, "T");
  assert_true(sb >= 0 && st >= 0);
  sv[sb] = 2, sv[st] = 8;
  assert_int_equal(heed_compile(c, &o, hc), HEED_OK);
  assert_null(hc->prog);
  assert_int_equal(rec.ncaps, 1);
  assert_int_equal(rec.nemit, 1);
  assert_ptr_equal(rec.g, hc->g);
  assert_string_equal(rec.entry, "heed_rec");
  // the schedule it got: every kernel, as sched_build makes them
  CgCaps caps;
  rec_caps(NULL, NULL, &caps, NULL);
  Schedule *s = sched_build(hc->g, &caps.sched, &c->diag);
  assert_non_null(s);
  assert_int_equal(rec.nk, s->nk);
  assert_int_equal(rec.nsupports, s->nk);
  assert_int_equal(rec.nfn, s->nfn);
  assert_true(rec.nk > 4);
  for (int k = 0; k < s->nk; k++) {
    const SchedKernel *a = &rec.k[k], *b = &s->k[k];
    assert_int_equal(a->root, b->root);
    assert_int_equal(a->nopnd, b->nopnd);
    for (int j = 0; j < a->nopnd; j++) assert_int_equal(a->opnd[j], b->opnd[j]), assert_int_equal(a->buf[j], b->buf[j]);
    assert_int_equal(a->split.kind, b->split.kind);
    assert_int_equal(a->fn, b->fn);
    // the plan: every call's result has its bytes at an aligned offset in the arena
    const IrNode *n = hc->g->nodes.data[a->root];
    int64_t bytes = ir_type_numel(&n->ty, sv) * (int64_t)ir_dtype_info[n->ty.dt].size;
    assert_int_equal(rec.bytes[a->root], bytes);
    assert_true(rec.offset[a->root] >= 0);
    assert_int_equal(rec.offset[a->root] % 64, 0);
    assert_true(rec.offset[a->root] + bytes <= rec.total);
  }
  sched_free(s);
  *cp = c;
}

static int count_op(const HeedCompiled *hc, IrOp op) {
  int n = 0;
  for (int k = 0; k < rec.nk; k++) n += hc->g->nodes.data[rec.k[k].root]->op == op;
  return n;
}

static void finish(Compilation *c, HeedCompiled *hc) {
  heed_compiled_free(hc);
  heed_compilation_free(c);
}

static void test_forward(void **state) {
  (void)state;
  Compilation *c;
  HeedCompiled hc;
  compile_and_check(HEED_GRAPH_FORWARD, &c, &hc);
  assert_ptr_equal(hc.g, c->model->forward);  // no passes
  assert_int_equal(count_op(&hc, IR_OP_ATTENTION), 1);
  assert_true(count_op(&hc, IR_OP_MATMUL) >= 4);
  finish(c, &hc);
}

static void test_train_step(void **state) {
  (void)state;
  Compilation *c;
  HeedCompiled hc;
  compile_and_check(HEED_GRAPH_TRAIN_STEP, &c, &hc);
  assert_true(hc.cx.differentiated);
  assert_non_null(hc.cx.ts.grad_norm);
  assert_true(hc.cx.ts.nparams > 0);
  // the update of every trainable parameter is a call (AdamW), and its new value a graph output
  assert_int_equal(count_op(&hc, IR_OP_OPT_ADAMW), hc.cx.ts.nparams);
  assert_true(count_op(&hc, IR_OP_ATTENTION_DQ) == 1);
  assert_string_equal(hc.g->output_names.data[0], "loss");
  finish(c, &hc);
}

static void test_decode(void **state) {
  (void)state;
  Compilation *c;
  HeedCompiled hc;
  compile_and_check(HEED_GRAPH_DECODE, &c, &hc);
  assert_ptr_not_equal(hc.g, c->model->forward);  // the step graph
  assert_true(sym(hc.g, "KV") >= 0);
  assert_int_equal(count_op(&hc, IR_OP_KV_APPEND), 2);  // one layer: its k and v caches
  finish(c, &hc);
}

static void test_unknown_target(void **state) {
  (void)state;
  HeedOptions ho = {.path = HEED_SOURCE_DIR "/examples/mlp.heed", .check = {.lower = true}};
  Compilation *c = heed_compilation_new(&ho);
  assert_non_null(c);
  diag_fini(&c->diag);
  diag_init(&c->diag, NULL);  // keep the messages
  HeedCompiled hc;
  HeedCompileOpts o = {.kind = HEED_GRAPH_FORWARD, .stop = HEED_STOP_EMIT, .target = "cuda"};
  assert_int_not_equal(heed_compile(c, &o, &hc), HEED_OK);
  assert_null(hc.prog);
  assert_non_null(strstr(c->diag.log, "the cuda target is not available in this build"));
  finish(c, &hc);
}

int main(void) {
  assert_true(cg_target_register(&record_target));
  assert_false(cg_target_register(&record_target));  // a name is taken once
  assert_non_null(cg_target_find("cpu"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward), cmocka_unit_test(test_train_step), cmocka_unit_test(test_decode),
      cmocka_unit_test(test_unknown_target),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
