// tests/unit/test_memplan.c: the memory plan (passes/memplan.c) against what
// a compiled program really allocates. The plan is made before anything
// runs (heed_compile, HEED_STOP_PLAN: what `heed compile --emit plan`
// prints); the trainer then compiles the same model's train step and
// allocates its values: the leaves (parameters, optimizer state, inputs)
// and the step's arena (cg_plan_alloc). Measured: the bytes of the aligned
// blocks (heed_aligned_alloc / rt_aligned_alloc: the value buffers, the
// sgemm's packing buffers) that are live after heed_trainer_new, counted by
// an allocator installed through the hook (ir/alloc.h). Checked:
//   - the plan's total is within 5% of them (bytegpt's train step at the
//     train section's B = 16, T = 64; argv[1]: examples/bytegpt.heed);
//   - the plan's arena is the arena the trainer allocated, byte for byte;
//   - regions: parameters, gradients and new parameters have the same
//     bytes; AdamW's state (leaves and outputs) twice that;
//   - the plan's offsets are those cg_plan_build gives (the same plan);
//   - the decode step with its KV appends in place (heed generate): the
//     run-time arena (cg_plan_alloc_inplace) is the plan's
//     (plan_kv_in_place) and smaller than without by exactly the appended
//     caches' bytes; the appends' buffers are left to the caller.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/trainer.h"
#include "passes/memplan.h"
#include "runtime/rt.h"

static const char *model_path;

#ifdef HEED_HAVE_LLVM
// ---- a counting allocator: live bytes of aligned blocks ----

enum { MAX_BLOCKS = 1 << 16 };
static struct {
  pthread_mutex_t mu;
  void *p[MAX_BLOCKS];
  size_t size[MAX_BLOCKS];
  int n;
  int64_t live;
  bool overflow;
} cnt = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *count_alloc(void *ud, void *ptr, size_t size, size_t align) {
  (void)ud;
  if (ptr && size == 0) {  // a free: forget it if it is ours
    pthread_mutex_lock(&cnt.mu);
    for (int i = 0; i < cnt.n; i++)
      if (cnt.p[i] == ptr) {
        cnt.live -= (int64_t)cnt.size[i];
        cnt.p[i] = cnt.p[--cnt.n], cnt.size[i] = cnt.size[cnt.n];
        break;
      }
    pthread_mutex_unlock(&cnt.mu);
  }
  void *r = heed_libc_alloc(NULL, ptr, size, align);
  if (r && !ptr && align) {
    pthread_mutex_lock(&cnt.mu);
    if (cnt.n < MAX_BLOCKS) cnt.p[cnt.n] = r, cnt.size[cnt.n++] = size, cnt.live += (int64_t)size;
    else cnt.overflow = true;
    pthread_mutex_unlock(&cnt.mu);
  }
  return r;
}

static int sym(const IrGraph *g, const char *name) {
  for (int i = 0; i < g->syms.len; i++)
    if (!strcmp(g->syms.data[i], name)) return i;
  return -1;
}

// The plan of bytegpt's train step at the train section's sizes.
static MemPlan *plan_train_step(int64_t *B, int64_t *T) {
  HeedOptions ho = {.path = model_path, .check = {.lower = true}};
  Compilation *c = heed_compilation_new(&ho);
  assert_non_null(c);
  assert_int_equal(heed_frontend(c), HEED_OK);
  int64_t sv[IR_MAX_SYMS] = {0};
  int sb = sym(c->model->loss, "B"), st = sym(c->model->loss, "T");
  assert_true(sb >= 0 && st >= 0);
  sv[sb] = *B = c->model->train->batch, sv[st] = *T = c->model->train->seq;
  HeedCompiled hc;
  HeedCompileOpts o = {.kind = HEED_GRAPH_TRAIN_STEP, .stop = HEED_STOP_PLAN, .plan_symvals = sv};
  assert_int_equal(heed_compile(c, &o, &hc), HEED_OK);
  assert_non_null(hc.plan);
  assert_null(hc.prog);  // nothing compiled, nothing run
  MemPlan *pl = hc.plan;
  hc.plan = NULL;
  // the same plan as codegen's cg_plan_build (what emit is given)
  CgPlan *cp = cg_plan_build(hc.g, hc.sched, sv);
  assert_non_null(cp);
  assert_int_equal(cp->total, pl->total);
  for (int i = 0; i < pl->nnodes; i++) assert_int_equal(cp->offset[i], pl->offset[i]);
  cg_plan_free(cp);
  heed_compiled_free(&hc);
  heed_compilation_free(c);
  return pl;
}

static void test_train_step_plan_vs_allocated(void **state) {
  (void)state;
  int64_t B, T;
  MemPlan *pl = plan_train_step(&B, &T);
  int64_t total = pl->leaf_bytes + pl->total;
  const int64_t *rb = pl->region_bytes;
  assert_true(rb[MEM_PARAMS] > 0);
  assert_int_equal(rb[MEM_GRADS], rb[MEM_PARAMS]);
  assert_int_equal(rb[MEM_NEW_PARAMS], rb[MEM_PARAMS]);
  assert_int_equal(rb[MEM_OPT_STATE], 2 * rb[MEM_PARAMS]);
  assert_int_equal(rb[MEM_NEW_OPT_STATE], 2 * rb[MEM_PARAMS]);
  assert_true(rb[MEM_SCRATCH] > 0);
  int64_t sum = 0;
  for (int r = MEM_GRADS; r <= MEM_SCRATCH; r++) sum += rb[r];
  assert_int_equal(sum, pl->total);

  // what the trainer allocates for the same step
  heed_set_allocator(count_alloc, NULL);
  rt_set_allocator(count_alloc, NULL);
  HeedOptions ho = {.path = model_path, .check = {.lower = true}};
  Compilation *c = heed_compilation_new(&ho);
  assert_non_null(c);
  assert_int_equal(heed_frontend(c), HEED_OK);
  int64_t before = cnt.live;
  HeedTrainer *t = heed_trainer_new(c, &(HeedTrainerOpts){.threads = 1, .batch = B, .seq = T});
  assert_non_null(t);
  int64_t measured = cnt.live - before, trainer = heed_trainer_memory_bytes(t);
  assert_false(cnt.overflow);
  print_message("bytegpt train step, B=%lld T=%lld: plan %lld bytes (leaves %lld + arena %lld); allocated "
                "(aligned blocks live) %lld, the trainer's count %lld; plan/allocated %.4f\n",
                (long long)B, (long long)T, (long long)total, (long long)pl->leaf_bytes, (long long)pl->total,
                (long long)measured, (long long)trainer, (double)total / (double)measured);
  assert_true(total >= measured * 95 / 100 && total <= measured * 105 / 100);
  assert_true(trainer >= pl->total);  // the arena is in it, as planned
  heed_trainer_free(t);
  heed_compilation_free(c);
  pass_memplan_free(pl);
}

// The decode step's plan at B = 1, T = KV = 32, in place or not.
static MemPlan *plan_decode(Compilation *c, bool in_place, HeedCompiled *hc, int64_t *sv) {
  HeedCompileOpts o = {.kind = HEED_GRAPH_DECODE, .stop = HEED_STOP_EMIT, .plan_symvals = sv,
                       .plan_kv_in_place = in_place, .decode_output = -1};
  assert_int_equal(heed_compile(c, &o, hc), HEED_OK);
  assert_non_null(hc->plan);
  MemPlan *pl = hc->plan;
  hc->plan = NULL;
  return pl;
}

static void test_decode_kv_in_place(void **state) {
  (void)state;
  HeedOptions ho = {.path = model_path, .check = {.lower = true}};
  Compilation *c = heed_compilation_new(&ho);
  assert_non_null(c);
  assert_int_equal(heed_frontend(c), HEED_OK);
  HeedCompiled hc;
  int64_t sv[IR_MAX_SYMS];
  for (int i = 0; i < IR_MAX_SYMS; i++) sv[i] = 32;
  int sb = sym(c->model->forward, "B");
  assert_true(sb >= 0);
  sv[sb] = 1;  // the step graph's symbols: the forward's, then the caches' length
  MemPlan *in = plan_decode(c, true, &hc, sv);
  const IrGraph *g = hc.g;
  assert_true(sym(g, "B") >= 0 && sv[sym(g, "B")] == 1);
  int64_t caches = 0;
  int nappend = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    if (g->nodes.data[i]->op != IR_OP_KV_APPEND) continue;
    nappend++;
    caches += (in->bytes[i] + 63) / 64 * 64;
    assert_int_equal(in->offset[i], -1);
    assert_int_equal(in->region[i], MEM_NONE);
  }
  assert_int_equal(nappend, 4);  // two layers: k and v
  assert_true(caches > 0);
  assert_int_equal(in->region_bytes[MEM_KV_CACHE], caches);
  // the run-time plans of the compiled step, with and without in-place appends
  void **bufs = calloc((size_t)g->nodes.len, sizeof *bufs);
  assert_non_null(bufs);
  void *sentinel = &bufs;
  for (int i = 0; i < g->nodes.len; i++)
    if (g->nodes.data[i]->op == IR_OP_KV_APPEND) bufs[i] = sentinel;
  int64_t n;
  void *arena = cg_plan_alloc_inplace(hc.prog, sv, bufs, true, &n);
  assert_non_null(arena);
  assert_int_equal(n, in->total);  // the run-time arena is the plan's
  for (int i = 0; i < g->nodes.len; i++)
    if (g->nodes.data[i]->op == IR_OP_KV_APPEND) assert_ptr_equal(bufs[i], sentinel);
  heed_free(arena);
  arena = cg_plan_alloc(hc.prog, sv, bufs, &n);
  assert_non_null(arena);
  assert_int_equal(n, in->total + caches);
  for (int i = 0; i < g->nodes.len; i++)
    if (g->nodes.data[i]->op == IR_OP_KV_APPEND) assert_ptr_not_equal(bufs[i], sentinel);
  heed_free(arena);
  free(bufs);
  heed_compiled_free(&hc);
  pass_memplan_free(in);
  heed_compilation_free(c);
}

#else
static void test_decode_kv_in_place(void **state) {
  (void)state;
  skip();
}

static void test_train_step_plan_vs_allocated(void **state) {
  (void)state;
  skip();  // the plan follows the CPU backend's schedule
}
#endif

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_memplan examples/bytegpt.heed\n");
    return 2;
  }
  model_path = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_step_plan_vs_allocated),
      cmocka_unit_test(test_decode_kv_in_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
