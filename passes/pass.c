// passes/pass.c: the pass registry and the pipeline runner (QBE main.c's
// func(), MLIR's verify-each and print-ir-after). Sits between the
// frontend's lowered graph (FeModel.forward / .loss) and the schedule:
//   IrGraph --pass_run(pipeline: autodiff, train_step, kvcache)--> IrGraph
// The driver (cli/driver.c: heed_compile) picks the pipeline per command;
// `heed compile --passes LIST --print-after PASS|all --emit ir-opt` shows it.
#include <stdio.h>
#include <string.h>

#include "passes/pass.h"

// The graph's first output is its loss (FeModel.loss, as the frontend
// lowers a train section).
static IrNode *loss_of(IrGraph *g) {
  if (g->outputs.len < 1 || g->outputs.data[0]->ty.rank != 0) {
    diag_error(g->diag, (SrcLoc){0}, "%s: the graph's first output is not a scalar loss (use --loss or --train-step)",
               g->name ? g->name : "the graph");
    return NULL;
  }
  return g->outputs.data[0];
}

static int run_autodiff(IrGraph **g, PassCtx *cx) {
  IrNode *loss = loss_of(*g);
  if (!loss) return HEED_ERR_CHECK;
  cx->ts = (PassTrainStep){.nfwd = (*g)->nodes.len, .nloss_inputs = (*g)->inputs.len,
                           .nmodel_params = (*g)->params.len, .loss = loss};
  if (!pass_autodiff(*g, loss, false) || !ir_verify(*g)) return HEED_ERR_CHECK;
  cx->differentiated = true;
  return HEED_OK;
}

// After autodiff: the update only; alone: autodiff and the update.
static int run_train_step(IrGraph **g, PassCtx *cx) {
  IrNode *loss = cx->differentiated ? cx->ts.loss : loss_of(*g);
  if (!loss) return HEED_ERR_CHECK;
  bool ok = cx->differentiated ? pass_train_update(*g, loss, &cx->train, &cx->ts)
                               : pass_train_step(*g, loss, &cx->train, &cx->ts);
  cx->differentiated = cx->differentiated || ok;
  return ok ? HEED_OK : HEED_ERR_CHECK;
}

static int run_kvcache(IrGraph **g, PassCtx *cx) {
  cx->why[0] = 0;
  IrGraph *step = pass_kvcache_output(*g, cx->decode_output, cx->why, sizeof cx->why);
  if (!step && !cx->why[0]) snprintf(cx->why, sizeof cx->why, "out of memory");
  if (!step) return HEED_ERR_CHECK;
  *g = step;
  return HEED_OK;
}

static const Pass passes[] = {
    {"autodiff", "append the loss's gradients (grad.NAME outputs)", run_autodiff},
    {"train_step", "gradient clipping and the optimizer update (after autodiff; alone: both)", run_train_step},
    {"kvcache", "the incremental decode step: positions pos.., KV caches in and out", run_kvcache},
};

const Pass *pass_list(int *n) {
  *n = (int)(sizeof passes / sizeof passes[0]);
  return passes;
}

const Pass *pass_find(const char *name) {
  for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++)
    if (!strcmp(passes[i].name, name)) return &passes[i];
  return NULL;
}

// "; did you mean 'x'?" for the closest registered name (edit distance <= 2), or "".
static void suggest(const char *name, char *buf, size_t len) {
  const char *names[sizeof passes / sizeof passes[0]];
  for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++) names[i] = passes[i].name;
  const char *pick = diag_closest(name, names, (int)(sizeof passes / sizeof passes[0]), 2);
  if (pick) snprintf(buf, len, "; did you mean '%s'?", pick);
  else buf[0] = 0;
}

bool pass_parse_list(const char *list, const Pass **pipe, int cap, int *n, char *err, size_t errlen) {
  *n = 0;
  for (const char *p = list; *p;) {
    size_t k = strcspn(p, ",");
    char name[64], hint[64];
    snprintf(name, sizeof name, "%.*s", (int)(k < sizeof name ? k : sizeof name - 1), p);
    const Pass *ps = k && k < sizeof name ? pass_find(name) : NULL;
    if (!ps) {
      suggest(name, hint, sizeof hint);
      char names[128] = "";
      for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", passes[i].name);
      snprintf(err, errlen, "unknown pass '%s'%s (passes: %s)", name, hint, names);
      return false;
    }
    if (*n == cap) {
      snprintf(err, errlen, "too many passes (at most %d)", cap);
      return false;
    }
    pipe[(*n)++] = ps;
    p += k + (p[k] == ',');
  }
  return true;
}

int pass_run(IrGraph **g, const Pass *const *pipe, int n, PassCtx *cx) {
  for (int i = 0; i < n; i++) {
    int rc = pipe[i]->run(g, cx);
    if (rc != HEED_OK) return rc;
    if (cx->verify && !ir_verify(*g)) {
      diag_error((*g)->diag, (SrcLoc){0}, "internal error: the IR after pass '%s' does not verify", pipe[i]->name);
      return HEED_ERR_CHECK;
    }
    if (cx->print_after && (!strcmp(cx->print_after, "all") || !strcmp(cx->print_after, pipe[i]->name))) {
      FILE *f = cx->print_to ? cx->print_to : stderr;
      fprintf(f, "; >>> after %s\n", pipe[i]->name);
      ir_print(*g, f);
    }
  }
  return HEED_OK;
}
