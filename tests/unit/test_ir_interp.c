// tests/unit/test_ir_interp.c: the reference interpreter (ir/interp.c, the
// forward kernels in ir/kernels.c) against PyTorch, and the IR text form.
//
//   - op references: tests/ref/op_refs.py writes CASE.in0.., CASE.out (torch,
//     float64) into a safetensors file given as argv[1]; each case in the
//     table below builds that one op as an IR graph over the file's shapes,
//     runs ir_interp twice and compares:
//       f32 mode (exact=false, every value rounded to its dtype):
//         |got - want| <= F32_ATOL + F32_RTOL * |want|
//       exact mode (f64 throughout): EXACT_ATOL, EXACT_RTOL
//     Integer and bool results must be equal. A summary of the largest
//     errors per op family is printed at the end.
//   - run-time errors (a gather index outside its table, a target outside
//     the classes, integer division by zero, a slice outside its axis) and
//     ir_bind_syms.
//   - the IR text: ir_print -> ir_parse -> ir_print of a graph holding every
//     forward op gives the same text; malformed texts give located errors.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "testutil.h"

// One rounding to f32 is at most 2^-24 relative; twice that leaves room for
// the float64 results of two libms straddling a rounding boundary.
static const double F32_ATOL = 1e-12, F32_RTOL = 0x1p-23;
static const double EXACT_ATOL = 1e-13, EXACT_RTOL = 1e-12;

// ---- a small safetensors reader (the format: u64 LE header length, a JSON
// header {name: {dtype, shape, data_offsets}}, raw little-endian data) ----

typedef struct {
  char *name;
  IrDType dt;     // F32 and F64 -> f32; I32, I64, BOOL as named
  int rank;
  int64_t dims[IR_MAX_RANK];
  int64_t numel;
  double *data;
} Ref;

static struct {
  Ref *t;
  int n;
  char *cases;    // __metadata__.cases: the case names, comma-separated
  bool tried, loaded;
} refs;

static const char *refs_path;

static bool st_decode(Ref *r, const char *dtype, const unsigned char *p, size_t nbytes) {
  size_t esz = !strcmp(dtype, "F64") || !strcmp(dtype, "I64") ? 8 : !strcmp(dtype, "BOOL") ? 1 : 4;
  if (nbytes != esz * (size_t)r->numel) return false;
  r->dt = !strcmp(dtype, "I64") ? IR_I64 : !strcmp(dtype, "I32") ? IR_I32 : !strcmp(dtype, "BOOL") ? IR_BOOL : IR_F32;
  r->data = malloc(sizeof(double) * (size_t)(r->numel ? r->numel : 1));
  if (!r->data) return false;
  for (int64_t i = 0; i < r->numel; i++, p += esz) {
    uint64_t u = 0;
    for (size_t b = 0; b < esz; b++) u |= (uint64_t)p[b] << (8 * b);
    if (!strcmp(dtype, "F32")) {
      uint32_t w = (uint32_t)u;
      float f;
      memcpy(&f, &w, 4);
      r->data[i] = f;
    } else if (!strcmp(dtype, "F64")) {
      memcpy(&r->data[i], &u, 8);
    } else if (!strcmp(dtype, "I64")) {
      r->data[i] = (double)(int64_t)u;
    } else if (!strcmp(dtype, "I32")) {
      r->data[i] = (double)(int32_t)(uint32_t)u;
    } else if (!strcmp(dtype, "BOOL")) {
      r->data[i] = u != 0;
    } else {
      return false;
    }
  }
  return true;
}

static bool st_entry(const cJSON *e, const unsigned char *data, size_t dlen, Ref *r) {
  const cJSON *dt = cJSON_GetObjectItem(e, "dtype"), *sh = cJSON_GetObjectItem(e, "shape");
  const cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
  if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || cJSON_GetArraySize(off) != 2) return false;
  r->name = strdup(e->string);
  r->rank = cJSON_GetArraySize(sh);
  r->numel = 1;
  if (r->rank > IR_MAX_RANK) return false;
  for (int i = 0; i < r->rank; i++) r->numel *= r->dims[i] = (int64_t)cJSON_GetArrayItem(sh, i)->valuedouble;
  size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
  if (a > b || b > dlen) return false;
  return st_decode(r, dt->valuestring, data + a, b - a);
}

static bool st_load(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0, got;
  do {
    if (len == cap && !(buf = realloc(buf, cap = cap * 2 + 65536))) return fclose(f), false;
    got = fread(buf + len, 1, cap - len, f);
    len += got;
  } while (got);
  fclose(f);
  uint64_t hlen = 0;
  for (int b = 0; b < 8 && len >= 8; b++) hlen |= (uint64_t)buf[b] << (8 * b);
  bool ok = len >= 8 && hlen <= len - 8;
  cJSON *h = ok ? cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen) : NULL;
  ok = h != NULL;
  refs.t = calloc((size_t)(ok ? cJSON_GetArraySize(h) : 1), sizeof(Ref));
  ok = ok && refs.t;
  for (const cJSON *e = h ? h->child : NULL; ok && e; e = e->next) {
    if (!strcmp(e->string, "__metadata__")) {
      const cJSON *c = cJSON_GetObjectItem(e, "cases");
      refs.cases = cJSON_IsString(c) ? strdup(c->valuestring) : NULL;
      continue;
    }
    ok = st_entry(e, buf + 8 + hlen, len - 8 - (size_t)hlen, &refs.t[refs.n++]);
  }
  cJSON_Delete(h);
  free(buf);
  return ok && refs.cases;
}

static const Ref *ref_find(const char *name) {
  for (int i = 0; i < refs.n; i++)
    if (!strcmp(refs.t[i].name, name)) return &refs.t[i];
  return NULL;
}

static void st_free(void) {
  for (int i = 0; i < refs.n; i++) {
    free(refs.t[i].name);
    free(refs.t[i].data);
  }
  free(refs.t);
  free(refs.cases);
}

// ---- comparison, with the largest errors kept per op family ----

typedef struct {
  const char *name;
  double max_abs, max_rel, exact_abs, exact_rel;
  int ncases;
} Family;

static Family families[] = {
    {.name = "elementwise"}, {.name = "matmul"}, {.name = "reductions"}, {.name = "softmax"}, {.name = "norms"},
    {.name = "shape"},       {.name = "gather"}, {.name = "attention"},  {.name = "rope"},    {.name = "xent"},
};
enum { NFAM = sizeof families / sizeof families[0] };

static Family *family_of(IrOp op) {
  int f = op <= IR_OP_DROPOUT ? 0 : op == IR_OP_MATMUL ? 1 : op <= IR_OP_MIN ? 2 : op <= IR_OP_LOG_SOFTMAX ? 3
        : op <= IR_OP_RMSNORM ? 4 : op <= IR_OP_SUM_TO ? 5 : op == IR_OP_GATHER ? 6 : op == IR_OP_ATTENTION ? 7
        : op == IR_OP_ROPE ? 8 : 9;
  return &families[f];
}

// Passes when |got - want| <= atol + rtol * |want| everywhere (infinities
// and NaN must match). Records the largest errors in *max_abs, *max_rel.
static void check_close_d(const double *got, const double *want, int64_t n, double atol, double rtol,
                          const char *label, double *max_abs, double *max_rel) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double g = got[i], w = want[i], ae = fabs(g - w);
    bool ok = isnan(g) || isnan(w) ? isnan(g) && isnan(w) : isinf(g) || isinf(w) ? g == w : ae <= atol + rtol * fabs(w);
    if (isnan(w) || isinf(w)) ae = ok ? 0 : INFINITY;
    double re = w != 0 ? ae / fabs(w) : ae == 0 ? 0 : INFINITY;
    if (ae > *max_abs && w != 0) *max_abs = ae;
    if (re > *max_rel && fabs(w) > 1e-30) *max_rel = re;
    if (!ok && bad++ < 5)
      print_error("%s: [%lld] got %.17g, want %.17g (abs err %.3g, allowed %.3g)\n", label, (long long)i, g, w, ae,
                  atol + rtol * fabs(w));
  }
  if (bad) {
    print_error("%s: %lld of %lld values differ (atol %.3g, rtol %.3g)\n", label, (long long)bad, (long long)n, atol,
                rtol);
    fail();
  }
}

// ---- the cases: the op and attributes of each case op_refs.py writes ----

typedef struct {
  const char *name;
  IrOp op;
  IrAttr at;
  const char *to;  // CAST: the target dtype
} OpCase;

#define BIT(i) (1u << (i))
#define OPC(name_, op_) {.name = name_, .op = IR_OP_##op_}
#define OPA(name_, op_, ...) {.name = name_, .op = IR_OP_##op_, .at = {__VA_ARGS__}}

// Attention scales are 1/sqrt(HS) as Python prints them (op_refs.py uses the same).
static OpCase *op_cases(int *n) {
  static OpCase c[] = {
      OPC("positions_basic", POSITIONS), OPC("positions_t1", POSITIONS), OPC("add_same", ADD),
      OPC("add_bcast_row", ADD), OPC("add_bcast_both", ADD), OPC("add_i32", ADD), OPC("sub_scalar", SUB),
      OPC("sub_scalar_left", SUB), OPC("mul_size1", MUL), OPC("div_float_bcast", DIV), OPC("div_i64_trunc", DIV),
      OPC("div_i32_trunc", DIV), OPC("maximum_bcast", MAXIMUM), OPC("minimum_bcast", MINIMUM),
      OPC("where_bcast", WHERE), OPC("where_full", WHERE), OPC("neg", NEG), OPC("exp", EXP), OPC("log", LOG),
      OPC("sqrt", SQRT), OPC("rsqrt", RSQRT), OPC("tanh", TANH), OPC("sigmoid", SIGMOID), OPC("relu", RELU),
      OPC("gelu", GELU), OPC("gelu_tanh", GELU_TANH), OPC("silu", SILU), OPC("abs", ABS),
      {.name = "cast_f32_i32", .op = IR_OP_CAST, .to = "i32"},
      {.name = "cast_i64_f32", .op = IR_OP_CAST, .to = "f32"},
      {.name = "cast_f32_bool", .op = IR_OP_CAST, .to = "bool"},
      {.name = "cast_f32_f16", .op = IR_OP_CAST, .to = "f16"},
      {.name = "cast_f32_bf16", .op = IR_OP_CAST, .to = "bf16"},
      OPA("dropout_eval", DROPOUT, .value = 0.1),
      OPC("matmul_2d", MATMUL), OPC("matmul_batched", MATMUL), OPC("matmul_batched_bcast", MATMUL),
      OPC("matmul_bcast_lhs", MATMUL), OPC("matmul_m1_n1", MATMUL),
      OPA("sum_axis_last", SUM, .axes = BIT(2)),
      OPA("sum_axes_keepdim", SUM, .axes = BIT(0) | BIT(2), .keepdim = true),
      OPA("sum_all", SUM, .axes = BIT(0) | BIT(1) | BIT(2)),
      OPA("mean_axis_mid", MEAN, .axes = BIT(1)),
      OPA("mean_axes_keepdim", MEAN, .axes = BIT(1) | BIT(3), .keepdim = true),
      OPA("max_axis", MAX, .axes = BIT(1)),
      OPA("max_keepdim", MAX, .axes = BIT(0) | BIT(2), .keepdim = true),
      OPA("min_axis", MIN, .axes = BIT(2)),
      OPA("min_all", MIN, .axes = BIT(0) | BIT(1) | BIT(2)),
      OPA("softmax_last", SOFTMAX, .axis = 1),
      OPA("softmax_axis0", SOFTMAX, .axis = 0),
      OPA("softmax_size1_axis", SOFTMAX, .axis = 1),
      OPA("log_softmax_mid", LOG_SOFTMAX, .axis = 1),
      OPA("log_softmax_last", LOG_SOFTMAX, .axis = 1),
      OPA("layernorm_eps1e3", LAYERNORM, .eps = 1e-3),
      OPA("layernorm_t1", LAYERNORM, .eps = 1e-5),
      OPA("layernorm_offset", LAYERNORM, .eps = 1e-5),
      OPA("rmsnorm_eps1e2", RMSNORM, .eps = 1e-2),
      OPA("rmsnorm_eps1e6", RMSNORM, .eps = 1e-6),
      OPC("reshape_merge", RESHAPE), OPC("reshape_split", RESHAPE),
      OPA("permute_3d", PERMUTE, .perm = {2, 0, 1}),
      OPA("permute_4d", PERMUTE, .perm = {0, 2, 1, 3}),
      OPA("permute_size1", PERMUTE, .perm = {3, 2, 1, 0}),
      OPA("slice_pos", SLICE, .axis = 1, .start = 2),
      OPA("slice_neg_start", SLICE, .axis = 1, .start = -3),
      OPA("slice_last", SLICE, .axis = 1, .start = -1),
      OPA("slice_axis0", SLICE, .axis = 0, .start = 0),
      OPA("concat_axis1_3", CONCAT, .axis = 1),
      OPA("concat_axis0", CONCAT, .axis = 0),
      OPA("concat_last", CONCAT, .axis = 1),
      OPC("expand_lead", EXPAND), OPC("expand_size1", EXPAND), OPC("expand_mixed", EXPAND), OPC("sum_to_lead", SUM_TO),
      OPC("sum_to_size1", SUM_TO), OPC("sum_to_mixed", SUM_TO), OPC("gather_2d_idx", GATHER),
      OPC("gather_1d_table", GATHER), OPC("gather_3d_table", GATHER),
      OPA("attention_mha", ATTENTION, .heads = 2, .kv_heads = 2, .scale = 0.5),
      OPA("attention_causal", ATTENTION, .heads = 3, .kv_heads = 3, .causal = true, .scale = 0.7071067811865475),
      OPA("attention_causal_decode", ATTENTION, .heads = 2, .kv_heads = 2, .causal = true, .scale = 0.5),
      OPA("attention_causal_s_gt_t", ATTENTION,
          .heads = 2, .kv_heads = 2, .causal = true, .scale = 0.5773502691896258),
      OPA("attention_causal_t_gt_s", ATTENTION,
          .heads = 1, .kv_heads = 1, .causal = true, .scale = 0.7071067811865475),
      OPA("attention_gqa_kv2", ATTENTION, .heads = 4, .kv_heads = 2, .causal = true, .scale = 0.5773502691896258),
      OPA("attention_mqa_kv1", ATTENTION, .heads = 4, .kv_heads = 1, .scale = 0.3),
      OPA("attention_b1_t1", ATTENTION, .heads = 1, .kv_heads = 1, .causal = true, .scale = 0.4472135954999579),
      OPA("attention_mask", ATTENTION, .heads = 2, .kv_heads = 2, .scale = 0.5773502691896258),
      OPA("attention_mask_causal_gqa", ATTENTION,
          .heads = 4, .kv_heads = 2, .causal = true, .scale = 0.7071067811865475),
      OPA("rope_neox", ROPE, .heads = 2, .base = 10000),
      OPA("rope_interleaved", ROPE, .heads = 2, .base = 10000, .interleaved = true),
      OPA("rope_neox_inverse", ROPE, .heads = 3, .base = 10000, .inverse = true),
      OPA("rope_interleaved_inverse", ROPE, .heads = 3, .base = 10000, .interleaved = true, .inverse = true),
      OPA("rope_t1", ROPE, .heads = 2, .base = 10000),
      OPA("rope_base500", ROPE, .heads = 1, .base = 500, .interleaved = true),
      OPA("xent_basic", XENT, .ignore = -1),
      OPA("xent_ignore", XENT, .ignore = -1),
      OPA("xent_all_ignored", XENT, .ignore = -1),
      OPA("xent_ignore_class", XENT, .ignore = 3),
      OPA("xent_i32_targets", XENT, .ignore = -1),
      OPA("attention_mask_i64", ATTENTION, .heads = 2, .kv_heads = 2, .scale = 0.5773502691896258),
      OPA("attention_mask_i32_causal_gqa", ATTENTION,
          .heads = 4, .kv_heads = 2, .causal = true, .scale = 0.7071067811865475),
  };
  *n = (int)(sizeof c / sizeof c[0]);
  return c;
}

static bool needs_hint(IrOp op) {
  return op == IR_OP_RESHAPE || op == IR_OP_EXPAND || op == IR_OP_SUM_TO || op == IR_OP_CAST || op == IR_OP_SLICE;
}

static IrType ref_type(const Ref *r, IrDType dt) {
  IrType t = {.dt = dt, .rank = r->rank};
  for (int i = 0; i < r->rank; i++) t.dim[i] = ir_dim_const(r->dims[i]);
  return t;
}

// Builds case c as a one-op graph, runs it in both modes and compares.
static void run_case(const OpCase *c) {
  char key[128];
  const Ref *in[IR_MAX_SRC], *out;
  int nin = 0;
  for (; nin < IR_MAX_SRC; nin++) {
    snprintf(key, sizeof key, "%s.in%d", c->name, nin);
    if (!(in[nin] = ref_find(key))) break;
  }
  snprintf(key, sizeof key, "%s.out", c->name);
  out = ref_find(key);
  if (!out || nin == 0) fail_msg("%s: no such case in %s", c->name, refs_path);
  Diag d;
  diag_init(&d, NULL);
  Arena *a = arena_new();
  IrGraph *g = ir_graph_new(a, &d, c->name);
  IrNode *src[IR_MAX_SRC];
  double *vals[IR_MAX_SRC];
  for (int j = 0; j < nin; j++) {
    IrType t = ref_type(in[j], in[j]->dt);
    snprintf(key, sizeof key, "in%d", j);
    src[j] = ir_input(g, key, &t, (SrcLoc){0});
    vals[j] = in[j]->data;
  }
  IrType hint = ref_type(out, c->to ? (IrDType)ir_dtype_from_name(c->to) : in[0]->dt);
  IrNode *y = ir_op(g, c->op, src, nin, &c->at, needs_hint(c->op) ? &hint : NULL, (SrcLoc){0});
  if (!y || !ir_output(g, "y", y) || !ir_verify(g)) fail_msg("%s: building the graph failed:\n%s", c->name, d.log);
  if (y->ty.rank != out->rank) fail_msg("%s: rank %d, torch has %d", c->name, y->ty.rank, out->rank);
  for (int i = 0; i < out->rank; i++) assert_int_equal(ir_dim_value(y->ty.dim[i], NULL), out->dims[i]);
  bool is_float = ir_dtype_info[y->ty.dt].is_float;
  Family *fam = family_of(c->op);
  fam->ncases++;
  for (int exact = 0; exact < 2; exact++) {
    // In exact mode a cast to a float dtype keeps f64 (nothing to compare).
    if (exact && c->op == IR_OP_CAST && is_float) continue;
    int64_t syms[IR_MAX_SYMS];
    memset(syms, 0xff, sizeof syms);
    IrValues *v = ir_interp(g, syms, vals, NULL, exact, &d);
    if (!v) fail_msg("%s: ir_interp failed:\n%s", c->name, d.log);
    assert_int_equal(v->numel[y->id], out->numel);
    snprintf(key, sizeof key, "%s (%s)", c->name, exact ? "exact" : "f32");
    double atol = !is_float ? 0 : exact ? EXACT_ATOL : F32_ATOL, rtol = !is_float ? 0 : exact ? EXACT_RTOL : F32_RTOL;
    check_close_d(v->val[y->id], out->data, out->numel, atol, rtol, key, exact ? &fam->exact_abs : &fam->max_abs,
                  exact ? &fam->exact_rel : &fam->max_rel);
    ir_values_free(v);
  }
  arena_free(a);
  diag_fini(&d);
}

// false: no file was given (the reference tests skip); a bad file fails them.
static bool have_refs(void) {
  if (!refs_path) return false;
  if (!refs.tried) {
    refs.tried = true;
    refs.loaded = st_load(refs_path);
  }
  if (!refs.loaded) fail_msg("cannot read the op references %s", refs_path);
  return true;
}

static void run_family(const char *family) {
  if (!have_refs()) skip();
  int n;
  OpCase *c = op_cases(&n);
  for (int i = 0; i < n; i++)
    if (!strcmp(family_of(c[i].op)->name, family)) run_case(&c[i]);
}

#define FAMILY_TEST(f) \
  static void test_ref_##f(void **state) { (void)state; run_family(#f); }
FAMILY_TEST(elementwise)
FAMILY_TEST(matmul)
FAMILY_TEST(reductions)
FAMILY_TEST(softmax)
FAMILY_TEST(norms)
FAMILY_TEST(shape)
FAMILY_TEST(gather)
FAMILY_TEST(attention)
FAMILY_TEST(rope)
FAMILY_TEST(xent)

// Every case in the file has an entry in the table, and every forward op
// has at least one case.
static void test_ref_coverage(void **state) {
  (void)state;
  if (!have_refs()) skip();
  int n;
  OpCase *c = op_cases(&n);
  bool op_seen[IR_OP_COUNT] = {0};
  for (int i = 0; i < n; i++) op_seen[c[i].op] = true;
  for (int op = IR_OP_POSITIONS; op <= IR_OP_XENT; op++)
    if (!op_seen[op]) fail_msg("forward op %s has no reference case", ir_op_name((IrOp)op));
  char *names = strdup(refs.cases), *save = NULL;
  int count = 0;
  for (char *s = strtok_r(names, ",", &save); s; s = strtok_r(NULL, ",", &save), count++) {
    bool found = false;
    for (int i = 0; i < n && !found; i++) found = !strcmp(c[i].name, s);
    if (!found) fail_msg("case %s of %s is not in the table of test_ir_interp.c", s, refs_path);
  }
  assert_int_equal(count, n);
  free(names);
}

static int print_summary(void **state) {
  (void)state;
  if (!refs.loaded) {
    st_free();
    return 0;
  }
  printf("op family     cases  f32: max abs     max rel    exact: max abs     max rel\n");
  for (int i = 0; i < NFAM; i++) {
    Family *f = &families[i];
    printf("%-12s %6d  %14.3g %11.3g  %16.3g %11.3g\n", f->name, f->ncases, f->max_abs, f->max_rel, f->exact_abs,
           f->exact_rel);
  }
  printf("(f32: atol %.3g, rtol %.3g; exact: atol %.3g, rtol %.3g)\n", F32_ATOL, F32_RTOL, EXACT_ATOL, EXACT_RTOL);
  st_free();
  return 0;
}

// ---- run-time errors and symbolic sizes ----

typedef struct {
  Arena *a;
  Diag d;
  IrGraph *g;
  uint32_t file;
} G;

// A graph whose locations point into a one-line "m.heed" holding src.
static void g_init(G *t, const char *src) {
  diag_init(&t->d, NULL);
  t->a = arena_new();
  t->g = ir_graph_new(t->a, &t->d, "t");
  t->file = diag_add_file(&t->d, "m.heed", src, strlen(src));
}

static SrcLoc at_col(const G *t, uint32_t col) { return (SrcLoc){.file = t->file, .line = 1, .col = col}; }

static void g_fini(G *t) {
  arena_free(t->a);
  diag_fini(&t->d);
}

static IrType ty(G *t, IrDType dt, const char *dims) {  // "B,T,4"
  IrType r = {.dt = dt};
  for (const char *p = dims; *p;) {
    size_t n = strcspn(p, ",");
    char w[32];
    snprintf(w, sizeof w, "%.*s", (int)n, p);
    bool num = w[0] >= '0' && w[0] <= '9';
    r.dim[r.rank++] = num ? ir_dim_const(atoll(w)) : ir_dim_sym(ir_symtab_intern(&t->g->syms, t->a, w));
    p += n + (p[n] == ',');
  }
  return r;
}

// x = wte[tokens] + wpe[positions(tokens)] with a position table of 4 rows.
static void test_gather_positions(void **state) {
  (void)state;
  G t;
  g_init(&t, "x = wte[tokens] + wpe[positions(tokens)]");
  IrType tt = ty(&t, IR_I32, "B,T"), te = ty(&t, IR_F32, "10,3"), tp = ty(&t, IR_F32, "4,3");
  IrNode *tok = ir_input(t.g, "tokens", &tt, at_col(&t, 1));
  IrNode *wte = ir_param(t.g, "wte", &te, (IrInit){.kind = "zeros"}, false, at_col(&t, 5));
  IrNode *wpe = ir_param(t.g, "wpe", &tp, (IrInit){.kind = "zeros"}, false, at_col(&t, 19));
  IrNode *pos = ir_unary(t.g, IR_OP_POSITIONS, tok, at_col(&t, 23));
  IrNode *x = ir_binary(t.g, IR_OP_ADD, ir_binary(t.g, IR_OP_GATHER, wte, tok, at_col(&t, 5)),
                        ir_binary(t.g, IR_OP_GATHER, wpe, pos, at_col(&t, 19)), at_col(&t, 17));
  assert_non_null(x);
  double wte_v[30], wpe_v[12], tok_v[10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
  for (int i = 0; i < 30; i++) wte_v[i] = i;
  for (int i = 0; i < 12; i++) wpe_v[i] = 100 * i;
  double *params[] = {wte_v, wpe_v}, *inputs[] = {tok_v};
  int64_t shape_ok[] = {2, 4}, shape_long[] = {2, 5}, syms[IR_MAX_SYMS];
  const int64_t *shapes[] = {shape_ok};
  int ranks[] = {2};
  assert_true(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  IrValues *v = ir_interp(t.g, syms, inputs, params, false, &t.d);
  assert_non_null(v);
  const double *y = v->val[x->id];
  for (int b = 0; b < 2; b++)
    for (int s = 0; s < 4; s++)
      for (int c = 0; c < 3; c++) assert_true(y[(b * 4 + s) * 3 + c] == tok_v[b * 4 + s] * 3 + c + 100 * (s * 3 + c));
  ir_values_free(v);
  // T = 5 > 4 rows: a clear run-time error at wpe[...]
  shapes[0] = shape_long;
  assert_true(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  assert_null(ir_interp(t.g, syms, inputs, params, false, &t.d));
  assert_contains(t.d.log, "m.heed:1:19: error: the sequence length T = 5 exceeds the 4 rows of the position table");
  g_fini(&t);
}

// Runs a graph of one op over inputs (constant shapes) and returns d.log.
static const char *run_expect_error(G *t, IrNode *y, double *const *inputs) {
  assert_non_null(y);
  int64_t syms[IR_MAX_SYMS];
  memset(syms, 0xff, sizeof syms);
  IrValues *v = ir_interp(t->g, syms, inputs, NULL, false, &t->d);
  assert_null(v);
  assert_int_equal(t->d.nerr, 1);
  return t->d.log;
}

static void test_xent_target_out_of_range(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    G t;
    g_init(&t, "loss = cross_entropy(logits, targets)");
    IrType tl = ty(&t, IR_F32, "3,4"), tt = ty(&t, IR_I64, "3");
    IrNode *l = ir_input(t.g, "logits", &tl, at_col(&t, 1)), *tg = ir_input(t.g, "targets", &tt, at_col(&t, 1));
    IrAttr at = {.ignore = -1};
    IrNode *s[] = {l, tg};
    double lv[12] = {0}, tv[2][3] = {{1, 4, -1}, {-1, -2, 0}};
    double *inputs[] = {lv, tv[k]};
    const char *log = run_expect_error(&t, ir_op(t.g, IR_OP_XENT, s, 2, &at, NULL, at_col(&t, 8)), inputs);
    assert_contains(log, k == 0 ? "m.heed:1:8: error: cross_entropy: target 4 is outside the 4 classes of the "
                                  "logits (ignore index -1)"
                                : "m.heed:1:8: error: cross_entropy: target -2 is outside the 4 classes");
    g_fini(&t);
  }
}

static void test_int_div_by_zero(void **state) {
  (void)state;
  G t;
  g_init(&t, "q = a / b");
  IrType ti = ty(&t, IR_I32, "3");
  IrNode *a = ir_input(t.g, "a", &ti, at_col(&t, 5)), *b = ir_input(t.g, "b", &ti, at_col(&t, 9));
  double av[] = {7, -7, 1}, bv[] = {2, 2, 0};
  double *inputs[] = {av, bv};
  const char *log = run_expect_error(&t, ir_binary(t.g, IR_OP_DIV, a, b, at_col(&t, 7)), inputs);
  assert_contains(log, "m.heed:1:7: error: div: integer division by zero");
  g_fini(&t);
}

// x[:, -3:] on a symbolic T that turns out to be 2 at run time.
static void test_slice_outside_axis(void **state) {
  (void)state;
  G t;
  g_init(&t, "y = x[:, -3:]");
  IrType tx = ty(&t, IR_F32, "B,T"), ts = ty(&t, IR_F32, "B,3");
  IrNode *x = ir_input(t.g, "x", &tx, at_col(&t, 5));
  IrAttr at = {.axis = 1, .start = -3};
  IrNode *y = ir_op(t.g, IR_OP_SLICE, &x, 1, &at, &ts, at_col(&t, 6));
  assert_non_null(y);
  double xv[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  double *inputs[] = {xv};
  int64_t s4[] = {2, 4}, s2[] = {4, 2}, syms[IR_MAX_SYMS];
  const int64_t *shapes[] = {s4};
  int ranks[] = {2};
  assert_true(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  IrValues *v = ir_interp(t.g, syms, inputs, NULL, false, &t.d);
  assert_non_null(v);
  double want[] = {2, 3, 4, 6, 7, 8};
  for (int i = 0; i < 6; i++) assert_true(v->val[y->id][i] == want[i]);
  ir_values_free(v);
  shapes[0] = s2;
  assert_true(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  assert_null(ir_interp(t.g, syms, inputs, NULL, false, &t.d));
  assert_contains(t.d.log, "m.heed:1:6: error: slice: 3 elements from -3 (from the end) do not fit axis 1 of size 2");
  g_fini(&t);
}

static void test_bind_syms(void **state) {
  (void)state;
  G t;
  g_init(&t, "loss(tokens: i32[B, T], targets: i32[B, T], flat: f32[B*T, 2])");
  IrType tt = ty(&t, IR_I32, "B,T"), tf = ty(&t, IR_F32, "B,T,2");
  IrDim bt;
  assert_true(ir_dim_mul(tf.dim[0], tf.dim[1], &bt));
  tf.dim[0] = bt;
  tf.dim[1] = ir_dim_const(2);
  tf.rank = 2;
  ir_input(t.g, "tokens", &tt, at_col(&t, 6));
  ir_input(t.g, "targets", &tt, at_col(&t, 25));
  ir_input(t.g, "flat", &tf, at_col(&t, 45));
  int64_t tok[] = {3, 7}, tgt[] = {3, 7}, flat[] = {21, 2}, syms[IR_MAX_SYMS];
  const int64_t *shapes[] = {tok, tgt, flat};
  int ranks[] = {2, 2, 2};
  assert_true(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  assert_int_equal(syms[0], 3);  // B
  assert_int_equal(syms[1], 7);  // T
  assert_int_equal(t.d.nerr, 0);
  // targets with T = 6: named input, axis and the symbolic size
  int64_t bad[] = {3, 6};
  shapes[1] = bad;
  assert_false(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  assert_contains(t.d.log, "m.heed:1:25: error: input 'targets': axis 1 must have size T, got 6");
  // a product of sizes is checked after the sizes are bound
  shapes[1] = tgt;
  int64_t badflat[] = {20, 2};
  shapes[2] = badflat;
  assert_false(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  assert_contains(t.d.log, "input 'flat': axis 0 must have size B*T, got 20");
  // the wrong rank
  shapes[2] = flat;
  ranks[0] = 3;
  assert_false(ir_bind_syms(t.g, shapes, ranks, syms, &t.d));
  assert_contains(t.d.log, "input 'tokens' must have rank 2 (i32[B, T]), got rank 3");
  g_fini(&t);
}

// ---- the IR text form ----

static char *print_str(const IrGraph *g) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  assert_non_null(f);
  ir_print(g, f);
  fclose(f);
  return s;
}

// Removes the "  ; @LINE:COL" location comments the parser's nodes carry.
static void strip_locs(char *s) {
  char *w = s;
  for (char *r = s; *r;) {
    if (!strncmp(r, "  ; @", 5)) r += strcspn(r, "\n");
    else *w++ = *r++;
  }
  *w = 0;
}

// A graph using every forward op (and every leaf kind).
static IrGraph *every_op_graph(G *t) {
  IrGraph *g = t->g;
  SrcLoc l = {0};
  IrType tx = ty(t, IR_F32, "B,T,8"), tk = ty(t, IR_I32, "B,T"), tm = ty(t, IR_BOOL, "B,T"),
         tc = ty(t, IR_BOOL, "B,T,1"), tg = ty(t, IR_I64, "B,T"), tw = ty(t, IR_F32, "8,16"),
         tv = ty(t, IR_F32, "8"), te = ty(t, IR_F32, "10,8");
  IrNode *x = ir_input(g, "x", &tx, l), *tok = ir_input(g, "tokens", &tk, l), *mask = ir_input(g, "mask", &tm, l);
  IrNode *cond = ir_input(g, "cond", &tc, l), *tgt = ir_input(g, "targets", &tg, l);
  IrNode *w = ir_param(g, "proj.weight", &tw, (IrInit){.kind = "normal", .a = 0, .b = 0.02}, false, l);
  IrNode *lw = ir_param(g, "ln.weight", &tv, (IrInit){.kind = "ones"}, false, l);
  IrNode *lb = ir_param(g, "ln.bias", &tv, (IrInit){.kind = "constant", .a = 0.5, .b = 0}, false, l);
  IrNode *wte = ir_param(g, "wte", &te, (IrInit){.kind = "uniform", .a = -1, .b = 1}, true, l);
  IrNode *two = ir_const(g, 2.5, IR_F32, l);
  ir_unary(g, IR_OP_POSITIONS, tok, l);
  for (IrOp op = IR_OP_ADD; op <= IR_OP_MINIMUM; op++) ir_binary(g, op, x, op == IR_OP_MUL ? two : x, l);
  IrNode *s3[] = {cond, x, two};
  ir_op(g, IR_OP_WHERE, s3, 3, NULL, NULL, l);
  for (IrOp op = IR_OP_NEG; op <= IR_OP_ABS; op++) ir_unary(g, op, x, l);
  IrType t16 = tx;
  t16.dt = IR_F16;
  ir_op(g, IR_OP_CAST, &x, 1, NULL, &t16, l);
  ir_op(g, IR_OP_DROPOUT, &x, 1, &(IrAttr){.value = 0.1}, NULL, l);
  IrNode *logits = ir_binary(g, IR_OP_MATMUL, x, w, l);
  ir_op(g, IR_OP_SUM, &x, 1, &(IrAttr){.axes = 4}, NULL, l);
  ir_op(g, IR_OP_MEAN, &x, 1, &(IrAttr){.axes = 6, .keepdim = true}, NULL, l);
  ir_op(g, IR_OP_MAX, &x, 1, &(IrAttr){.axes = 1}, NULL, l);
  ir_op(g, IR_OP_MIN, &x, 1, &(IrAttr){.axes = 7, .keepdim = true}, NULL, l);
  ir_op(g, IR_OP_SOFTMAX, &x, 1, &(IrAttr){.axis = 2}, NULL, l);
  ir_op(g, IR_OP_LOG_SOFTMAX, &x, 1, &(IrAttr){.axis = 1}, NULL, l);
  IrNode *ln[] = {x, lw, lb};
  ir_op(g, IR_OP_LAYERNORM, ln, 3, &(IrAttr){.eps = 1e-5}, NULL, l);
  ir_op(g, IR_OP_RMSNORM, ln, 2, &(IrAttr){.eps = 1e-6}, NULL, l);
  IrType flat = ty(t, IR_F32, "B,T,8");
  assert_true(ir_dim_mul(flat.dim[0], flat.dim[1], &flat.dim[0]));
  flat.dim[1] = flat.dim[2];
  flat.rank = 2;
  ir_op(g, IR_OP_RESHAPE, &x, 1, NULL, &flat, l);
  ir_op(g, IR_OP_PERMUTE, &x, 1, &(IrAttr){.perm = {1, 0, 2}}, NULL, l);
  IrType last = tx;
  last.dim[1] = ir_dim_const(1);
  ir_op(g, IR_OP_SLICE, &x, 1, &(IrAttr){.axis = 1, .start = -1}, &last, l);
  IrNode *cc[] = {x, logits, x};
  ir_op(g, IR_OP_CONCAT, cc, 3, &(IrAttr){.axis = 2}, NULL, l);
  ir_op(g, IR_OP_EXPAND, &lw, 1, NULL, &tx, l);
  ir_op(g, IR_OP_SUM_TO, &x, 1, NULL, &tv, l);
  ir_binary(g, IR_OP_GATHER, wte, tok, l);
  IrNode *qkv[] = {x, x, x, mask};
  IrAttr causal = {.heads = 2, .kv_heads = 2, .causal = true, .scale = 0.5};
  IrNode *att = ir_op(g, IR_OP_ATTENTION, qkv, 4, &causal, NULL, l);
  ir_op(g, IR_OP_ATTENTION, qkv, 3, &(IrAttr){.heads = 4, .kv_heads = 4, .scale = 1 / sqrt(2.0)}, NULL, l);
  ir_op(g, IR_OP_ROPE, &x, 1, &(IrAttr){.heads = 2, .base = 10000, .interleaved = true, .inverse = true}, NULL, l);
  IrNode *xs[] = {logits, tgt};
  IrNode *loss = ir_op(g, IR_OP_XENT, xs, 2, &(IrAttr){.ignore = -1}, NULL, l);
  assert_non_null(loss);
  assert_true(ir_output(g, "loss", loss));
  assert_true(ir_output(g, "att", att));
  return g;
}

static void test_ir_text_round_trip(void **state) {
  (void)state;
  G t;
  g_init(&t, "");
  IrGraph *g = every_op_graph(&t);
  assert_int_equal(t.d.nerr, 0);
  assert_true(ir_verify(g));
  bool seen[IR_OP_COUNT] = {0};
  for (int i = 0; i < g->nodes.len; i++) seen[g->nodes.data[i]->op] = true;
  for (int op = 0; op <= IR_OP_XENT; op++)
    if (!seen[op]) fail_msg("the graph lacks %s", ir_op_name((IrOp)op));
  char *text1 = print_str(g);
  uint32_t f = diag_add_file(&t.d, "g.ir", text1, strlen(text1));
  IrGraph *g2 = ir_parse(t.a, &t.d, f);
  if (!g2) fail_msg("ir_parse failed:\n%s\n--- on ---\n%s", t.d.log, text1);
  assert_true(ir_verify(g2));
  char *text2 = print_str(g2);
  // parsed nodes carry their line in the text; the rest is identical
  f = diag_add_file(&t.d, "g2.ir", text2, strlen(text2));
  IrGraph *g3 = ir_parse(t.a, &t.d, f);
  assert_non_null(g3);
  char *text3 = print_str(g3);
  assert_string_equal(text2, text3);
  strip_locs(text2);
  assert_string_equal(text1, text2);
  assert_contains(text1, "= attention %0, %0, %0, %2 {heads=2, kv_heads=2, causal=true, scale=0.5}");
  assert_contains(text1, "= rope %0 {heads=2, base=10000, interleaved=true, inverse=true}");
  assert_contains(text1, "sym B, T\n");
  assert_int_equal(t.d.nerr, 0);
  free(text1);
  free(text2);
  free(text3);
  g_fini(&t);
}

static void test_ir_text_errors(void **state) {
  (void)state;
  const char *head = "graph g\nsym B\n%0 = input x: f32[B, 4]\n";
  struct { const char *line, *want; } cases[] = {  // the errors point at the bad token
      {"%1: f32[B, 4] = frobnicate %0", "t.ir:4:17: error: IR text: unknown op"},
      {"%1: f33[B, 4] = neg %0", "t.ir:4:5: error: IR text: unknown dtype"},
      {"%1: f32[B, 4] = add %0, %2", "t.ir:4:25: error: IR text: reference to an undefined node"},
      {"%1: f32[N, 4] = neg %0", "t.ir:4:9: error: IR text: undeclared symbolic size"},
      {"%1: f32[B, 4] = softmax %0 {axis=1, color=3}", "t.ir:4:37: error: IR text: unknown attribute"},
      {"%1: f32[B, 5] = neg %0", "t.ir:4:23: error: IR text: the declared type differs from the inferred one"},
      {"%2: f32[B, 4] = neg %0", "t.ir:4:3: error: IR text: node ids must count up from 0 in order"},
      {"%1: f32[B] = sum %0 {axes=[1], keepdim=maybe}", "t.ir:4:40: error: IR text: expected true or false"},
      {"%1: f32[B, 4] = add %0", "t.ir:4:3: error: add: wrong operand count"},
      {"%1: f32[B, 4] = neg %0 junk", "t.ir:4:24: error: IR text: unexpected text at the end of the line"},
  };
  char buf[512];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(buf, sizeof buf, "%s%s\n", head, cases[i].line);
    G t;
    g_init(&t, "");
    uint32_t f = diag_add_file(&t.d, "t.ir", buf, strlen(buf));
    assert_null(ir_parse(t.a, &t.d, f));
    assert_contains(t.d.log, cases[i].want);
    g_fini(&t);
  }
}

int main(int argc, char **argv) {
  refs_path = argc > 1 ? argv[1] : NULL;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ref_coverage),     cmocka_unit_test(test_ref_elementwise),
      cmocka_unit_test(test_ref_matmul),       cmocka_unit_test(test_ref_reductions),
      cmocka_unit_test(test_ref_softmax),      cmocka_unit_test(test_ref_norms),
      cmocka_unit_test(test_ref_shape),        cmocka_unit_test(test_ref_gather),
      cmocka_unit_test(test_ref_attention),    cmocka_unit_test(test_ref_rope),
      cmocka_unit_test(test_ref_xent),         cmocka_unit_test(test_gather_positions),
      cmocka_unit_test(test_xent_target_out_of_range), cmocka_unit_test(test_int_div_by_zero),
      cmocka_unit_test(test_slice_outside_axis), cmocka_unit_test(test_bind_syms),
      cmocka_unit_test(test_ir_text_round_trip), cmocka_unit_test(test_ir_text_errors),
  };
  return cmocka_run_group_tests(tests, NULL, print_summary);
}
