// tests/cg_harness.h: the harness shared by test_cg_ops.c and
// test_cg_grad.c: graphs built with the IR builders over the symbolic
// sizes B, T, S, random leaves, and compare(): the compiled program
// (codegen/) against the reference interpreter (ir/interp.c, f32 mode),
// every node: float results within TOL * max |want| of that node (NaN and
// infinities must match), integers and bools equal. Nodes marked lossn (a
// test's own loss sum) are skipped; whole marks float leaves of integer
// values (ties). Include after <cmocka.h>.
#ifndef HEED_CG_HARNESS_H
#define HEED_CG_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cg.h"
#include "runtime/rt.h"

static const double TOL = 1e-5;

// ---- a graph under test ----

enum { SYM_B, SYM_T, SYM_S };
enum { MAXN = 4096 };

typedef struct {
  Arena *a;
  Diag d;
  IrGraph *g;
  double lo[MAXN], hi[MAXN];  // per node id (leaves): the random range
  bool whole[MAXN];           // integer values (ties) in a float leaf
  bool lossn[MAXN];           // a node adding up the test's loss (not compared)
} T;

static inline void t_init(T *t) {
  memset(t, 0, sizeof *t);
  diag_init(&t->d, NULL);
  t->a = arena_new();
  t->g = ir_graph_new(t->a, &t->d, "test");
  ir_symtab_intern(&t->g->syms, t->a, "B");
  ir_symtab_intern(&t->g->syms, t->a, "T");
  ir_symtab_intern(&t->g->syms, t->a, "S");
}

static inline void t_fini(T *t) {
  diag_fini(&t->d);
  arena_free(t->a);
}

static inline SrcLoc L(int line) { return (SrcLoc){0, (uint32_t)line, 1}; }

// "B,T,7" -> dims (B, T, S symbolic; numbers constant); "" is rank 0.
static inline IrType ty(IrDType dt, const char *spec) {
  IrType t = {.dt = dt};
  for (const char *p = spec; *p;) {
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p >= '0' && *p <= '9') {
      t.dim[t.rank++] = ir_dim_const(strtoll(p, (char **)&p, 10));
    } else {
      t.dim[t.rank++] = ir_dim_sym(*p == 'B' ? SYM_B : *p == 'T' ? SYM_T : SYM_S);
      p++;
    }
  }
  return t;
}

static inline IrNode *in(T *t, IrDType dt, const char *spec, double lo, double hi) {
  IrType y = ty(dt, spec);
  char *name = arena_printf(t->a, "x%d", t->g->nodes.len);
  IrNode *n = ir_input(t->g, name, &y, L(1));
  assert_non_null(n);
  t->lo[n->id] = lo, t->hi[n->id] = hi;
  return n;
}

static inline IrNode *fin(T *t, const char *spec) { return in(t, IR_F32, spec, -2, 2); }

// A float input of whole numbers in [lo, hi] (ties for max, maximum, relu).
static inline IrNode *win(T *t, const char *spec, double lo, double hi) {
  IrNode *n = in(t, IR_F32, spec, lo, hi);
  t->whole[n->id] = true;
  return n;
}

static inline IrNode *par(T *t, const char *spec, double lo, double hi) {
  IrType y = ty(IR_F32, spec);
  char *name = arena_printf(t->a, "p%d", t->g->nodes.len);
  IrNode *n = ir_param(t->g, name, &y, (IrInit){"zeros", 0, 0}, false, L(1));
  assert_non_null(n);
  t->lo[n->id] = lo, t->hi[n->id] = hi;
  return n;
}

static inline IrNode *op(T *t, IrOp o, IrNode *const *s, int ns, const IrAttr *at, const IrType *hint) {
  IrNode *n = ir_op(t->g, o, s, ns, at, hint, L(100 + t->g->nodes.len));
  if (!n) print_error("%s", t->d.log ? t->d.log : "");
  assert_non_null(n);
  return n;
}
static inline IrNode *op1(T *t, IrOp o, IrNode *x) { return op(t, o, &x, 1, &(IrAttr){0}, NULL); }
static inline IrNode *op2(T *t, IrOp o, IrNode *x, IrNode *y) {
  IrNode *s[2] = {x, y};
  return op(t, o, s, 2, &(IrAttr){0}, NULL);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline double urand(void) {  // [0, 1)
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static inline int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(urand() * (double)(hi - lo + 1)); }

// ---- running and comparing ----

typedef struct {
  double **val;  // per node: the interpreter's view of the leaves
  void **buf;    // per node: the compiled program's buffers
  int n;
  void *arena;   // planned: every computed node's buffer is in it (cg_plan_alloc)
} Bufs;

static inline double buf_get(const void *p, IrDType dt, int64_t i) { return ir_dtype_info[dt].get(p, i); }

static inline void buf_set(void *p, IrDType dt, int64_t i, double v) { ir_dtype_info[dt].set(p, i, v); }

static inline void bufs_free(Bufs *b) {
  for (int i = 0; i < b->n; i++) {
    free(b->val[i]);
    if (!b->arena || b->val[i]) free(b->buf[i]);
  }
  free(b->arena);
  free(b->val);
  free(b->buf);
}

// Random leaves (the same values for both), buffers for every node: one
// each, or (planned) the leaves' own and the rest in the memory plan's arena.
static inline Bufs make_bufs(T *t, CgProgram *p, const int64_t *sv, bool planned) {
  Bufs b = {calloc((size_t)t->g->nodes.len, sizeof(double *)), calloc((size_t)t->g->nodes.len, sizeof(void *)),
            t->g->nodes.len, NULL};
  if (planned) {
    int64_t ab;
    b.arena = cg_plan_alloc(p, sv, b.buf, &ab);
    assert_non_null(b.arena);
    assert_true(ab >= 0);
    memset(b.arena, 0xA5, (size_t)ab);  // garbage
  }
  for (int i = 0; i < t->g->nodes.len; i++) {
    const IrNode *n = t->g->nodes.data[i];
    int64_t bytes = cg_buffer_bytes(p, i, sv), numel = ir_type_numel(&n->ty, sv);
    assert_true(bytes >= 0);
    if (planned && n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    b.buf[i] = malloc((size_t)bytes + 1);
    memset(b.buf[i], 0xA5, (size_t)bytes + 1);  // garbage: every result must be written (exact size: ASan sees overruns)
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    b.val[i] = malloc(sizeof(double) * (size_t)(numel + 1));
    bool fl = ir_dtype_info[n->ty.dt].is_float && !t->whole[i];
    for (int64_t j = 0; j < numel; j++) {
      double v = fl ? t->lo[i] + (t->hi[i] - t->lo[i]) * urand() : (double)irand((int64_t)t->lo[i], (int64_t)t->hi[i]);
      buf_set(b.buf[i], n->ty.dt, j, v);
      b.val[i][j] = buf_get(b.buf[i], n->ty.dt, j);  // as stored
    }
  }
  return b;
}

static double worst_rel, worst_grad_rel;  // the largest errors seen, relative to max |want|
static bool time_it;                       // compare: print the run times
static double last_interp_ms, last_cg_ms;

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline bool is_output(const IrGraph *g, int id) {
  for (int i = 0; i < g->outputs.len; i++)
    if ((int)g->outputs.data[i]->id == id) return true;
  return false;
}

// Compiled against interpreted, every node (planned: the leaves and the
// graph's outputs, the only values the plan keeps to the end); returns the
// compiled buffers.
static inline Bufs compare_keep(T *t, CgProgram *p, const int64_t *sv, const char *label, bool planned) {
  Bufs b = make_bufs(t, p, sv, planned);
  double **ins = calloc((size_t)t->g->inputs.len + 1, sizeof(double *));
  double **ps = calloc((size_t)t->g->params.len + 1, sizeof(double *));
  for (int i = 0; i < t->g->inputs.len; i++) ins[i] = b.val[t->g->inputs.data[i]->id];
  for (int i = 0; i < t->g->params.len; i++) ps[i] = b.val[t->g->params.data[i]->id];
  double t0 = now_ms();
  IrValues *v = ir_interp(t->g, sv, ins, ps, false, &t->d);
  double t1 = now_ms();
  if (!v) print_error("%s: interp: %s\n", label, t->d.log ? t->d.log : "");
  assert_non_null(v);
  bool ok = cg_run(p, sv, b.buf, &t->d);
  double t2 = now_ms();
  if (!ok) print_error("%s: cg_run: %s\n", label, t->d.log ? t->d.log : "");
  assert_true(ok);
  last_interp_ms = t1 - t0, last_cg_ms = t2 - t1;
  if (time_it) print_message("%s: interpreted %.1f ms, compiled %.1f ms\n", label, t1 - t0, t2 - t1);
  for (int i = 0; i < t->g->nodes.len; i++) {
    const IrNode *n = t->g->nodes.data[i];
    int64_t numel = v->numel[i];
    void *got_buf = b.buf[i];
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM && !cg_node_computed(p, i)) {
      int a = cg_node_alias(p, i);  // a reshape: its values are its source's bytes
      if (a < 0) {  // read by the nt sgemm only, or computed inline by its users
        assert_true(n->op == IR_OP_PERMUTE || n->op == IR_OP_ADD || n->op == IR_OP_SUB || n->op == IR_OP_MUL);
        continue;
      }
      assert_int_equal(n->op, IR_OP_RESHAPE);
      got_buf = b.buf[a];
    }
    if (t->lossn[i]) continue;
    if (planned && n->op != IR_OP_INPUT && n->op != IR_OP_PARAM && !is_output(t->g, i)) continue;
    bool fl = ir_dtype_info[n->ty.dt].is_float;
    double mx = 0;
    for (int64_t j = 0; j < numel; j++)
      if (isfinite(v->val[i][j])) mx = fmax(mx, fabs(v->val[i][j]));
    double allow = fl ? TOL * fmax(mx, 1e-30) : 0, worst = 0;
    int64_t bad = 0;
    for (int64_t j = 0; j < numel; j++) {
      double want = v->val[i][j], got = buf_get(got_buf, n->ty.dt, j);
      bool same = isnan(want) ? isnan(got) : isinf(want) ? got == want : fabs(got - want) <= allow;
      if (!isnan(want) && !isinf(want) && fl && mx > 0) worst = fmax(worst, fabs(got - want) / mx);
      if (!same && bad++ < 3)
        print_error("%s: node %%%d (%s) [%lld]: got %.9g, want %.9g (max |want| %.3g)\n", label, i,
                    ir_op_name(n->op), (long long)j, got, want, mx);
    }
    worst_rel = fmax(worst_rel, worst);
    if (n->op >= IR_OP_UNARY_GRAD) worst_grad_rel = fmax(worst_grad_rel, worst);
    if (bad) {
      print_error("%s: node %%%d (%s): %lld of %lld values differ\n", label, i, ir_op_name(n->op), (long long)bad,
                  (long long)numel);
      fail();
    }
  }
  ir_values_free(v);
  free(ins);
  free(ps);
  return b;
}

static inline void compare(T *t, CgProgram *p, const int64_t *sv, const char *label) {
  Bufs b = compare_keep(t, p, sv, label, false);
  bufs_free(&b);
}

static inline CgProgram *compile_opts(T *t, const CgOptions *o) {
  CgProgram *p = cg_compile(t->g, o, &t->d);
  if (!p) print_error("cg_compile: %s\n", t->d.log ? t->d.log : "");
  assert_non_null(p);
  return p;
}

static inline CgProgram *compile(T *t) { return compile_opts(t, NULL); }

// The same values, bit for bit, in every graph output of a and b.
static inline void same_bits(T *t, CgProgram *p, const int64_t *sv, const Bufs *a, const Bufs *b, const char *label) {
  for (int i = 0; i < t->g->nodes.len; i++) {
    if (!cg_node_computed(p, i) || !is_output(t->g, i)) continue;
    int64_t bytes = cg_buffer_bytes(p, i, sv);
    if (memcmp(a->buf[i], b->buf[i], (size_t)bytes)) {
      print_error("%s: node %%%d (%s) differs between 1 thread and 3 threads split finely\n", label, i,
                  ir_op_name(t->g->nodes.data[i]->op));
      fail();
    }
  }
}

// Compiles twice, serial and on 3 threads with every kernel split as
// finely as it goes (par_grain 1) and its buffers from the memory plan;
// compares both at each (B, T, S) with the interpreter, and with each
// other bit for bit (the same random leaves: the generator is rewound).
static inline void check(T *t, const char *label, const int64_t (*svs)[3], int nsv) {
  CgProgram *p = compile(t);
  RtPool *pool = rt_pool_new(3);
  assert_non_null(pool);
  CgOptions o = {.pool = pool, .nthreads = 3, .parallel_for = (CgParallelFor)rt_parallel_for, .par_grain = 1};
  CgProgram *pp = compile_opts(t, &o);
  for (int i = 0; i < nsv; i++) {
    char lb[160];
    snprintf(lb, sizeof lb, "%s (B=%lld T=%lld S=%lld)", label, (long long)svs[i][0], (long long)svs[i][1],
             (long long)svs[i][2]);
    uint64_t r0 = rng;
    Bufs a = compare_keep(t, p, svs[i], lb, false);
    rng = r0;
    Bufs b = compare_keep(t, pp, svs[i], lb, true);
    same_bits(t, p, svs[i], &a, &b, lb);
    bufs_free(&a);
    bufs_free(&b);
  }
  cg_program_free(pp);
  cg_program_free(p);
  rt_pool_free(pool);
}

#endif
