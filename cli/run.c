// cli/run.c: `heed init | run | grad`: the glue between a lowered model
// (IrGraph), safetensors files (runtime/rt.h) and an executor. Until the
// compiled backend lands the executor is the reference interpreter
// (ir/interp.c), which `--interp` will keep selecting afterwards.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/run.h"
#include "engine/exec.h"
#include "runtime/rt.h"

// ---- initialisation ----

// splitmix64: one independent stream per parameter (seed ^ hash(name)), so
// a parameter's values do not depend on the order or number of the others.
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return ((mix(s) >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

void heed_init_values(const char *name, const IrInit *in, uint64_t seed, double *out, int64_t n) {
  uint64_t s = seed ^ fnv1a(name);
  for (int64_t i = 0; i < n; i++) {
    if (!strcmp(in->kind, "zeros")) out[i] = 0;
    else if (!strcmp(in->kind, "ones")) out[i] = 1;
    else if (!strcmp(in->kind, "constant")) out[i] = in->a;
    else if (!strcmp(in->kind, "uniform")) out[i] = in->a + (in->b - in->a) * uniform01(&s);
    else {  // normal: Box-Muller, one draw per value
      double u = uniform01(&s), v = uniform01(&s);
      out[i] = in->a + in->b * sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
    }
  }
}

// ---- tensors <-> doubles ----

// Converts n doubles to dtype dt bytes (little endian) into a new buffer.
static void *pack(IrDType dt, const double *v, int64_t n) {
  size_t sz = ir_dtype_info[dt].size;
  unsigned char *b = heed_malloc(sz * (size_t)(n ? n : 1));
  if (!b) return NULL;
  for (int64_t i = 0; i < n; i++) ir_dtype_info[dt].set(b, i, v[i]);
  return b;
}

// Reads tensor t as doubles (exact for every dtype that fits a double);
// NULL with err set ("cannot allocate 128.0 GiB for input 'x'"). what: "input", "parameter".
static double *unpack(const RtSafetensors *st, const RtStTensor *t, const char *what, char *err, size_t errlen) {
  uint64_t n = rt_st_numel(t);
  double *v = n <= SIZE_MAX / sizeof(double) ? heed_malloc(sizeof(double) * (size_t)(n ? n : 1)) : NULL;
  if (!v) {
    char b[32];
    snprintf(err, errlen, "cannot allocate %s for %s '%s' (%llu values of %s)", diag_bytes(b, (n ? n : 1) * sizeof(double)),
             what, t->name, (unsigned long long)n, rt_dtype_name(t->dt));
    return NULL;
  }
  for (uint64_t i = 0; i < n; i++) v[i] = rt_dtype_info[t->dt].get(st->data + t->off, (int64_t)i);
  return v;
}

static bool is_int_dt(RtDType d) { return d == RT_I32 || d == RT_I64 || d == RT_I8 || d == RT_U8; }

// Does a file dtype fit a declared one? Floats convert among themselves,
// integers among themselves, bool only to bool.
static bool dtype_fits(RtDType have, IrDType want) {
  if (want == IR_BOOL) return have == RT_BOOL || have == RT_U8;
  if (ir_dtype_info[want].is_int) return is_int_dt(have);
  return have == RT_F32 || have == RT_F16 || have == RT_BF16;
}

static int fail(Compilation *c, const char *msg) {
  diag_error(&c->diag, (SrcLoc){0}, "%s", msg);
  return HEED_ERR_IO;
}

static void free_all(double **v, int n) {
  for (int i = 0; v && i < n; i++) heed_free(v[i]);
  heed_free(v);
}

// The parameters of g from a weights file: every one present with its
// declared shape; extra tensors are an error unless strict is off.
static double **load_params(Compilation *c, const IrGraph *g, const HeedRunOpts *o) {
  RtSafetensors st;
  char err[512], buf[256];
  if (rt_st_open(o->weights, &st, err, sizeof err) != RT_OK) {
    fail(c, err);
    return NULL;
  }
  if (!heed_ckpt_verify(&st, o->weights, err, sizeof err)) {  // a checkpoint's checksums
    fail(c, err);
    rt_st_close(&st);
    return NULL;
  }
  double **vals = heed_calloc((size_t)g->params.len + 1, sizeof(double *));
  bool ok = vals != NULL;
  size_t plen = o->prefix ? strlen(o->prefix) : 0;
  for (int i = 0; ok && i < g->params.len; i++) {
    const IrNode *p = g->params.data[i];
    char name[1400];
    snprintf(name, sizeof name, "%s%s", o->prefix ? o->prefix : "", p->name);
    const RtStTensor *t = rt_st_find(&st, name);
    int64_t dims[IR_MAX_RANK];
    ir_shape(&p->ty, NULL, dims);
    bool same = t && t->rank == p->ty.rank;
    for (int k = 0; same && k < t->rank; k++) same = t->shape[k] == dims[k];
    ir_type_str(&p->ty, &g->syms, true, buf, sizeof buf);
    if (!t) {
      diag_error(&c->diag, (SrcLoc){0}, "%s: missing tensor '%s' (%s)", o->weights, name, buf);
      ok = false;
    } else if (!same || !dtype_fits(t->dt, p->ty.dt)) {
      char have[200] = "";
      for (int k = 0; k < t->rank; k++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", k ? ", " : "", (long long)t->shape[k]);
      diag_error(&c->diag, (SrcLoc){0}, "%s: tensor '%s' is %s[%s] but the model declares %s", o->weights, name,
                 rt_dtype_name(t->dt), have, buf);
      ok = false;
    } else if (!(vals[i] = unpack(&st, t, "parameter", err, sizeof err))) {
      ok = false;
      fail(c, err);
    }
  }
  for (int j = 0; ok && o->strict && j < st.n; j++) {  // extras (a heed checkpoint's optimizer state is none)
    const char *nm = st.t[j].name;
    bool known = rt_st_is_ckpt_state(&st, nm);
    for (int i = 0; !known && i < g->params.len; i++)
      known = !strncmp(nm, o->prefix ? o->prefix : "", plen) && !strcmp(nm + plen, g->params.data[i]->name);
    if (!known) {
      diag_error(&c->diag, (SrcLoc){0}, "%s: tensor '%s' is not a parameter of the model (--strict=false ignores extras)",
                 o->weights, nm);
      ok = false;
    }
  }
  rt_st_close(&st);
  if (!ok) free_all(vals, g->params.len);
  return ok ? vals : NULL;
}

double **heed_load_params(Compilation *c, const IrGraph *g, const HeedRunOpts *o) { return load_params(c, g, o); }

// Tensors of an inputs file that are not inputs of g: an error naming the
// first, or with strict off a note naming each (one batch file serves both
// run and grad).
static bool input_extras(Compilation *c, const IrGraph *g, const char *path, const RtSafetensors *st, bool strict) {
  for (int j = 0; j < st->n; j++) {
    bool known = false;
    for (int i = 0; i < g->inputs.len; i++) known |= !strcmp(st->t[j].name, g->inputs.data[i]->name);
    if (known) continue;
    if (strict) {
      diag_error(&c->diag, (SrcLoc){0}, "%s: tensor '%s' is not an input of %s (--strict=false ignores extras)", path,
                 st->t[j].name, g->name);
      return false;
    }
    diag_note(&c->diag, (SrcLoc){0}, "%s: ignoring tensor '%s': not an input of %s (--strict=false)", path,
              st->t[j].name, g->name);
  }
  return true;
}

// The inputs of g by name; binds the symbolic sizes from their shapes. An
// integer tensor for a bool input converts as non-zero -> true (Hugging
// Face's int64 attention_mask), as a wider integer one converts for an
// integer input when its values fit.
static double **load_inputs(Compilation *c, const IrGraph *g, const char *path, bool strict, int64_t *symvals) {
  RtSafetensors st;
  char err[512], buf[256];
  if (rt_st_open(path, &st, err, sizeof err) != RT_OK) {
    fail(c, err);
    return NULL;
  }
  int n = g->inputs.len;
  double **vals = heed_calloc((size_t)n + 1, sizeof(double *));
  const int64_t **shapes = heed_calloc((size_t)n + 1, sizeof(int64_t *));
  int *ranks = heed_calloc((size_t)n + 1, sizeof(int));
  bool ok = vals && shapes && ranks;
  for (int i = 0; ok && i < n; i++) {
    const IrNode *in = g->inputs.data[i];
    const RtStTensor *t = rt_st_find(&st, in->name);
    ir_type_str(&in->ty, &g->syms, true, buf, sizeof buf);
    bool is_bool = in->ty.dt == IR_BOOL;
    if (!t || !(dtype_fits(t->dt, in->ty.dt) || (is_bool && is_int_dt(t->dt)))) {
      diag_error(&c->diag, (SrcLoc){0}, "%s: %s input '%s' (%s)%s%s", path, t ? "wrong dtype for" : "missing",
                 in->name, buf, t ? ", got " : "", t ? rt_dtype_name(t->dt) : "");
      ok = false;
      break;
    }
    shapes[i] = t->shape;
    ranks[i] = t->rank;
    if (!(vals[i] = unpack(&st, t, "input", err, sizeof err))) ok = false, fail(c, err);
    for (uint64_t j = 0; ok && is_bool && j < rt_st_numel(t); j++) vals[i][j] = vals[i][j] != 0;
    for (uint64_t j = 0; ok && ir_dtype_info[in->ty.dt].is_int && j < rt_st_numel(t); j++)
      if (ir_round_to(in->ty.dt, vals[i][j]) != vals[i][j]) {  // a wider integer that does not fit
        diag_error(&c->diag, (SrcLoc){0}, "%s: input '%s' (%s): value %.0f at index %llu does not fit %s", path,
                   in->name, buf, vals[i][j], (unsigned long long)j, ir_dtype_info[in->ty.dt].name);
        ok = false;
      }
  }
  ok = ok && input_extras(c, g, path, &st, strict) && ir_bind_syms(g, shapes, ranks, symvals, &c->diag);
  rt_st_close(&st);
  heed_free(shapes);
  heed_free(ranks);
  if (!ok) free_all(vals, n);
  return ok ? vals : NULL;
}

// Writes every output of g from the executor's values.
static int write_outputs(Compilation *c, const IrGraph *g, HeedExec *x, const int64_t *symvals, const char *path) {
  int n = g->outputs.len, rc = HEED_OK;
  RtStWrite *ts = heed_calloc((size_t)n + 1, sizeof *ts);
  int64_t(*shapes)[IR_MAX_RANK] = heed_calloc((size_t)n + 1, sizeof *shapes);
  void **bufs = heed_calloc((size_t)n + 1, sizeof(void *));
  if (!ts || !shapes || !bufs) rc = fail(c, "out of memory");
  for (int i = 0; rc == HEED_OK && i < n; i++) {
    const IrNode *o = g->outputs.data[i];
    ir_shape(&o->ty, symvals, shapes[i]);
    int64_t numel;
    double *vals = heed_exec_output(x, i, &numel);
    bufs[i] = vals ? pack(o->ty.dt, vals, numel) : NULL;
    heed_free(vals);
    if (!bufs[i]) rc = fail(c, "out of memory");
    ts[i] = (RtStWrite){.name = g->output_names.data[i], .dt = (RtDType)o->ty.dt, .rank = o->ty.rank,
                        .shape = shapes[i], .data = bufs[i]};
  }
  char err[512];
  const char *meta[] = {"producer", "heed"};
  if (rc == HEED_OK && rt_st_write(path, ts, n, meta, 1, err, sizeof err) != RT_OK) rc = fail(c, err);
  for (int i = 0; bufs && i < n; i++) heed_free(bufs[i]);
  heed_free(bufs);
  heed_free(shapes);
  heed_free(ts);
  return rc;
}

static int execute(Compilation *c, const IrGraph *g, const HeedRunOpts *o) {
  int nerr = c->diag.nerr;  // a failure that reported nothing is an allocation's
  int64_t symvals[IR_MAX_SYMS];
  double **params = load_params(c, g, o);
  double **inputs = params ? load_inputs(c, g, o->inputs, o->strict, symvals) : NULL;
  int rc = HEED_ERR_IO;
  if (params && inputs) {
    HeedExec *x = heed_exec_new(c, g, o->interp, o->threads, false);
    bool ok = x && heed_exec_bind(x, symvals, inputs, params) && heed_exec_run(x);
    rc = ok ? write_outputs(c, g, x, symvals, o->outputs) : HEED_ERR_CHECK;
    heed_exec_free(x);
  }
  free_all(params, g->params.len);
  free_all(inputs, g->inputs.len);
  if (rc != HEED_OK && c->diag.nerr == nerr) diag_error(&c->diag, (SrcLoc){0}, "out of memory running %s", g->name);
  return rc;
}

int heed_cmd_run(Compilation *c, const HeedRunOpts *o) { return execute(c, c->model->forward, o); }

int heed_cmd_grad(Compilation *c, const HeedRunOpts *o) {
  IrGraph *g = c->model->loss;
  if (!g) {
    diag_error(&c->diag, c->model->decl->name_loc, "model '%s' has no train section, so no loss to differentiate",
               c->model->decl->name);
    return HEED_ERR_CHECK;
  }
  HeedCompiled hc;  // the passes only: the executor compiles the result
  int rc = heed_compile(c, &(HeedCompileOpts){.kind = HEED_GRAPH_GRAD, .stop = HEED_STOP_PASSES}, &hc);
  heed_compiled_free(&hc);
  return rc != HEED_OK ? rc : execute(c, hc.g, o);
}

int heed_cmd_init(Compilation *c, const HeedRunOpts *o) {
  const IrGraph *g = c->model->forward;
  int n = g->params.len, rc = HEED_OK;
  RtStWrite *ts = heed_calloc((size_t)n + 1, sizeof *ts);
  int64_t(*shapes)[IR_MAX_RANK] = heed_calloc((size_t)n + 1, sizeof *shapes);
  void **bufs = heed_calloc((size_t)n + 1, sizeof(void *));
  if (!ts || !shapes || !bufs) rc = fail(c, "out of memory");
  for (int i = 0; rc == HEED_OK && i < n; i++) {
    const IrNode *p = g->params.data[i];
    int64_t numel = ir_type_numel(&p->ty, NULL);
    double *v = heed_malloc(sizeof(double) * (size_t)(numel ? numel : 1));
    if (!v) {
      rc = fail(c, "out of memory");
      break;
    }
    heed_init_values(p->name, &p->init, o->seed, v, numel);
    bufs[i] = pack(p->ty.dt, v, numel);
    heed_free(v);
    if (!bufs[i]) rc = fail(c, "out of memory");
    ir_shape(&p->ty, NULL, shapes[i]);
    ts[i] = (RtStWrite){.name = p->name, .dt = (RtDType)p->ty.dt, .rank = p->ty.rank, .shape = shapes[i], .data = bufs[i]};
  }
  char err[512], seed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
  const char *meta[] = {"producer", "heed init", "model", c->model->decl->name, "seed", seed};
  if (rc == HEED_OK && rt_st_write(o->out, ts, n, meta, 3, err, sizeof err) != RT_OK) rc = fail(c, err);
  for (int i = 0; bufs && i < n; i++) heed_free(bufs[i]);
  heed_free(bufs);
  heed_free(shapes);
  heed_free(ts);
  return rc;
}

bool heed_parse_num(const char *v, double lo, double hi, double *out) {
  char *end;
  double d = v ? strtod(v, &end) : 0;
  if (!v || !*v || *end || !(d >= lo && d <= hi)) return false;
  *out = d;
  return true;
}
