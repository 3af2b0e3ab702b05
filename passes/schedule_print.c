// passes/schedule_print.c: the Schedule (schedule.h) as text, for `heed
// compile M.heed --emit schedule` and the golden tests. Reads a schedule
// and its graph; writes, in run order, one line per call:
//   %ROOT = kFN op OPERANDS  ; SPLIT: units SIZE, work SIZE
// where kFN is the distinct kernel (calls with the same kFN share one
// function), an operand is %ID, %ID->%BUF when it is read from another
// node's buffer (an alias's source, a transposed permute's operand), or
// [op %A, %B] when it is computed inline; a size is a product of dims
// %ID[axes] (ID: the kernel's operand or result) and constants. Then the
// nodes that have no call of their own and why.
#include "passes/schedule.h"

static const char *const unit_names[] = {
    [SCHED_SERIAL] = "serial",   [SCHED_ELEMENTS] = "elements", [SCHED_ROWS] = "rows",
    [SCHED_COLUMNS] = "columns", [SCHED_HEADS] = "heads",       [SCHED_KV_HEADS] = "kv_heads",
    [SCHED_GEMV] = "gemv",
};

static void print_size(const SchedSize *sz, const SchedKernel *ks, FILE *f) {
  bool any = false;
  for (int i = 0; i < sz->nf; i++) {
    const SchedDims *d = &sz->f[i];
    if (!d->axes) continue;  // a product of no dims: 1
    fprintf(f, "%s%%%d[", any ? "*" : "", d->t == SCHED_RESULT ? ks->root : ks->opnd[d->t]);
    for (int a = 0, first = 1; a < 32; a++)
      if (d->axes >> a & 1) fprintf(f, "%s%d", first ? "" : ",", a), first = 0;
    fputc(']', f);
    any = true;
  }
  if (sz->c) fprintf(f, "%s%lld", any ? "*" : "", (long long)sz->c);
  else if (!any) fputc('1', f);
}

static void print_call(const IrGraph *g, const SchedKernel *ks, FILE *f) {
  const IrNode *n = g->nodes.data[ks->root];
  fprintf(f, "%%%d = k%d %s", ks->root, ks->fn, ir_op_name(n->op));
  for (int j = 0, o = 0; j < n->nsrc; j++) {
    const IrNode *v = n->src[j];
    fputs(j ? ", " : " ", f);
    if (ks->inl >> j & 1) {
      fprintf(f, "[%s", ir_op_name(v->op));
      for (int i = 0; i < v->nsrc; i++, o++)
        fprintf(f, "%s%%%d", i ? ", " : " ", ks->opnd[o]);
      fputc(']', f);
      continue;
    }
    fprintf(f, "%%%d", ks->opnd[o]);
    if (ks->buf[o] != ks->opnd[o]) fprintf(f, "->%%%d", ks->buf[o]);
    o++;
  }
  if (ks->trans) fprintf(f, " {transposed %s}", ks->trans == 3 ? "a,b" : ks->trans & SCHED_TRANS_A ? "a" : "b");
  static const char *const xname[3] = {"dq", "dk", "dv"};
  for (int o = 0, any = 0; o < ks->nxout; o++) {
    if (ks->xout[o] < 0) continue;
    fprintf(f, "%s%s %%%d", any ? ", " : " {writes ", xname[o], ks->xout[o]);
    any = 1;
  }
  if (ks->nxout) fputc('}', f);
  fprintf(f, "  ; %s", unit_names[ks->split.kind]);
  if (ks->split.kind != SCHED_SERIAL) {
    fputs(": units ", f);
    print_size(&ks->split.units, ks, f);
    fputs(", work ", f);
    print_size(&ks->split.work, ks, f);
  }
  fputc('\n', f);
}

// The calls that read node id inline, as " %A, %B".
static void print_readers(const Schedule *s, const IrGraph *g, int id, FILE *f) {
  for (int c = 0, any = 0; c < s->nk; c++) {
    const IrNode *n = g->nodes.data[s->k[c].root];
    for (int j = 0; j < n->nsrc; j++)
      if ((s->k[c].inl >> j & 1) && (int)n->src[j]->id == id) {
        fprintf(f, "%s%%%d", any ? ", " : "", s->k[c].root);
        any = 1;
        break;
      }
  }
}

void sched_print(const Schedule *s, const IrGraph *g, FILE *f) {
  fprintf(f, "schedule %s: %d calls, %d kernels\n", g->name ? g->name : "graph", s->nk, s->nfn);
  for (int c = 0; c < s->nk; c++) print_call(g, &s->k[c], f);
  for (int i = 0; i < s->nnodes; i++) {
    const IrNode *n = g->nodes.data[i];
    switch ((SchedRole)s->role[i]) {
    case SCHED_LEAF: case SCHED_CALL: break;
    case SCHED_INLINE:
      fprintf(f, "%%%d %s: inline in ", i, ir_op_name(n->op));
      print_readers(s, g, i, f);
      fputc('\n', f);
      break;
    case SCHED_GROUPED: fprintf(f, "%%%d %s: written by %%%d\n", i, ir_op_name(n->op), s->k[s->call[i]].root); break;
    case SCHED_ALIAS: fprintf(f, "%%%d %s: alias of %%%d\n", i, ir_op_name(n->op), s->alias[i]); break;
    case SCHED_TRANSPOSED:
      fprintf(f, "%%%d %s: read transposed from %%%d\n", i, ir_op_name(n->op), (int)n->src[0]->id);
      break;
    }
  }
}
