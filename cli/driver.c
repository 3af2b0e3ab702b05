// cli/driver.c: the compiler pipeline, one function per stage, called in
// order (QBE's main.c func()): read the file, parse, check and lower
// (heed_frontend), then heed_compile: the passes over a named pipeline, the
// schedule under the target's caps, the memory plan, the target's emit.
// Every command (run, grad, bench, train, generate, build, compile) gets
// from a model to a program through heed_compile.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/driver.h"
#include "runtime/rt.h"

enum { HEED_MAX_SOURCE = 64 << 20 };  // a model file larger than this is surely a mistake

Compilation *heed_compilation_new(HeedOptions *opts) {
  Compilation *c = heed_calloc(1, sizeof *c);
  if (!c) return NULL;
  c->arena = arena_new();
  if (!c->arena) {
    heed_free(c);
    return NULL;
  }
  c->opts = opts;
  diag_init(&c->diag, stderr);
  if (!c->diag.files) {  // out of memory
    heed_compilation_free(c);
    return NULL;
  }
  if (opts->max_errors > 0) c->diag.max_errors = opts->max_errors;
  return c;
}

void heed_compilation_free(Compilation *c) {
  if (!c) return;
  diag_fini(&c->diag);
  arena_free(c->arena);
  heed_free(c);
}

// Reads the model file into the diagnostics' file table (rt_file_read: a
// FIFO, device or directory is refused, never waited on or read forever).
static int read_source(Compilation *c, uint32_t *file) {
  const char *path = c->opts->path;
  uint8_t *buf;
  size_t len;
  char err[1024];
  int rc = rt_file_read(path, HEED_MAX_SOURCE, &buf, &len, err, sizeof err);
  if (rc != RT_OK) {
    diag_error(&c->diag, (SrcLoc){0}, "%s", err);
    return rc == RT_ERR_NOMEM ? HEED_ERR_NOMEM : HEED_ERR_IO;
  }
  *file = diag_add_file(&c->diag, path, (const char *)buf, len);
  heed_free(buf);
  if (*file == 0) {
    diag_error(&c->diag, (SrcLoc){0}, "out of memory reading '%s'", path);
    return HEED_ERR_NOMEM;
  }
  return HEED_OK;
}

int heed_parse_only(Compilation *c) {
  uint32_t file;
  int rc = read_source(c, &file);
  if (rc != HEED_OK) return rc;
  c->ast = fe_parse(c->arena, &c->diag, file);
  if (!c->ast) {
    diag_error(&c->diag, (SrcLoc){0}, "out of memory");
    return HEED_ERR_NOMEM;
  }
  return c->diag.nerr ? HEED_ERR_SYNTAX : HEED_OK;
}

int heed_read_ir(Compilation *c) {
  uint32_t file;
  int rc = read_source(c, &file);
  if (rc != HEED_OK) return rc;
  c->ir = ir_parse(c->arena, &c->diag, file);
  if (c->ir && !ir_verify(c->ir)) c->ir = NULL;
  return c->ir ? HEED_OK : HEED_ERR_SYNTAX;
}

int heed_frontend(Compilation *c) {
  int rc = heed_parse_only(c);
  if (rc != HEED_OK) return rc;  // no semantic errors on top of syntax errors
  c->model = fe_check(c->arena, &c->diag, c->ast, &c->opts->check);
  return c->diag.nerr ? HEED_ERR_CHECK : HEED_OK;
}

const char *heed_pipeline(HeedGraphKind kind) {
  switch (kind) {
  case HEED_GRAPH_GRAD: return "autodiff";
  case HEED_GRAPH_TRAIN_STEP: return "autodiff,train_step";
  case HEED_GRAPH_DECODE: return "kvcache";
  default: return "";
  }
}

// The graph a kind starts from, or NULL with a diagnostic.
static IrGraph *start_graph(Compilation *c, const HeedCompileOpts *o) {
  if (o->graph) return o->graph;
  if (c->ir) return c->ir;
  bool loss = o->kind == HEED_GRAPH_LOSS || o->kind == HEED_GRAPH_GRAD || o->kind == HEED_GRAPH_TRAIN_STEP;
  IrGraph *g = c->model ? (loss ? c->model->loss : c->model->forward) : NULL;
  if (!g) diag_error(&c->diag, c->model ? c->model->decl->name_loc : (SrcLoc){0}, "model '%s' has no %s",
                     c->model ? c->model->decl->name : "?", loss ? "train section (loss)" : "forward");
  return g;
}

static bool verify_each(void) {
#ifdef NDEBUG
  const char *v = getenv("HEED_VERIFY_EACH");  // the tests set it
  return v && *v && strcmp(v, "0");
#else
  return true;
#endif
}

// frontend -> pass_run -> schedule -> plan -> target->emit
int heed_compile(Compilation *c, const HeedCompileOpts *o, HeedCompiled *out) {
  *out = (HeedCompiled){.cx = {.train = o->train, .decode_output = o->decode_output, .verify = verify_each(),
                               .print_after = o->print_after ? o->print_after : c->opts->print_after,
                               .print_to = o->print_to}};
  int rc = c->model || c->ir || o->graph ? HEED_OK : heed_frontend(c);
  if (rc != HEED_OK || !(out->g = start_graph(c, o))) return rc != HEED_OK ? rc : HEED_ERR_CHECK;
  const Pass *pipe[16];
  int n;
  char err[200];
  if (!pass_parse_list(o->passes ? o->passes : heed_pipeline(o->kind), pipe, 16, &n, err, sizeof err)) {
    diag_error(&c->diag, (SrcLoc){0}, "%s", err);
    return HEED_ERR_USAGE;
  }
  if (!out->cx.train.optimizer && c->model && c->model->train) {
    const FeTrain *tr = c->model->train;
    out->cx.train = (PassTrainOpts){.optimizer = tr->optimizer, .beta1 = tr->beta1, .beta2 = tr->beta2, .eps = tr->eps,
                                    .weight_decay = tr->weight_decay, .momentum = tr->momentum, .clip = tr->clip};
  }
  if ((rc = pass_run(&out->g, pipe, n, &out->cx)) != HEED_OK || o->stop == HEED_STOP_PASSES) return rc;
#ifdef HEED_HAVE_LLVM
  Diag *td = o->target_diag ? o->target_diag : &c->diag;
  const char *tname = o->target ? o->target : c->opts->target ? c->opts->target : "cpu";
  const CgTarget *t = cg_target_find(tname);
  CgCaps caps;
  if (!t) {
    diag_error(td, (SrcLoc){0}, "the %s target is not available in this build", tname);
    return HEED_ERR_USAGE;
  }
  if (!t->caps(t, &o->cg, &caps, td)) return HEED_ERR_CHECK;
  if (!(out->sched = sched_build(out->g, &caps.sched, td))) return HEED_ERR_NOMEM;
  if (o->stop == HEED_STOP_SCHEDULE) return HEED_OK;
  for (int k = 0; k < out->sched->nk; k++)
    if (!t->supports(t, out->g, &out->sched->k[k], td)) return HEED_ERR_CHECK;
  int64_t sv[IR_MAX_SYMS] = {0};
  const int64_t *psv = o->plan_symvals;
  if (!psv && o->plan_sizes) {
    if (!o->plan_sizes(o->plan_ud, out->g, sv)) return HEED_ERR_USAGE;
    psv = sv;
  }
  int align = caps.alignment > 0 ? caps.alignment : 64;
  int64_t work = 0;  // the target's workspace: a program with a MATMUL call has it
  for (int k = 0; psv && k < out->sched->nk; k++)
    if (out->g->nodes.data[out->sched->k[k].root]->op == IR_OP_MATMUL) work = caps.matmul_work;
  if (psv && !(out->plan = pass_memplan_build(out->g, out->sched, psv, align, work, o->plan_kv_in_place)))
    return HEED_ERR_NOMEM;
  if (o->stop == HEED_STOP_PLAN) return HEED_OK;
  CgEmitIn in = {.g = out->g, .sched = out->sched, .plan = out->plan, .o = &o->cg};
  bool ok = t->emit(t, &in, &out->prog, td);
  out->sched = in.sched;  // NULL when the target kept it
  return ok ? HEED_OK : HEED_ERR_CHECK;
#else
  diag_error(&c->diag, (SrcLoc){0}, "this heed was built without a code generator (the reference interpreter runs models)");
  return HEED_ERR_USAGE;
#endif
}

void heed_compiled_free(HeedCompiled *out) {
  sched_free(out->sched);
#ifdef HEED_HAVE_LLVM
  cg_program_free(out->prog);
  pass_memplan_free(out->plan);
  out->prog = NULL, out->plan = NULL;
#endif
  out->sched = NULL;
}

const char *heed_cache_dir(void) {
  static char dir[4096];
  const char *off = getenv("HEED_CACHE"), *d = getenv("HEED_CACHE_DIR");
  if (off && (!strcmp(off, "0") || !strcmp(off, "off"))) return NULL;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n = d && *d ? snprintf(dir, sizeof dir, "%s", d)
          : xdg && *xdg ? snprintf(dir, sizeof dir, "%s/heed", xdg)
          : home && *home ? snprintf(dir, sizeof dir, "%s/.cache/heed", home) : -1;
  if (n <= 0 || (size_t)n >= sizeof dir) return NULL;
#ifdef HEED_HAVE_LLVM
  static int safe = -1;  // checked once per process: one warning
  char why[128];
  if (safe < 0 && !(safe = cg_objcache_dir_safe(dir, why, sizeof why)))
    fprintf(stderr, "heed: warning: the compile cache %s %s: not used (it holds code that heed runs; "
            "chmod go-w it, or set HEED_CACHE_DIR to a directory of yours)\n", dir, why);
  if (!safe) return NULL;
#endif
  return dir;
}
