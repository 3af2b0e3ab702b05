// frontend/ast.c: the AST between parser.y and check.c: node constructors
// and the `heed compile --emit ast` printer (an indented listing, one node a
// line with its LINE:COL, deterministic).
#include <inttypes.h>
#include <string.h>

#include "frontend/fe.h"

FeExpr *fe_expr_new(Arena *a, FeExprKind k, SrcLoc loc) {
  FeExpr *e = arena_alloc(a, sizeof(FeExpr));
  if (!e) return NULL;
  e->kind = k;
  e->loc = loc;
  e->depth = 1;
  return e;
}

int fe_expr_depth_of(const FeExpr *e) { return e ? e->depth : 0; }

static void indent(FILE *out, int n) { fprintf(out, "%*s", 2 * n, ""); }

static void pos(FILE *out, SrcLoc l) { fprintf(out, "  @%u:%u\n", l.line, l.col); }

static void print_expr(const FeExpr *e, int lv, FILE *out);

static void print_args(const FeArg *args, int n, int lv, FILE *out) {
  for (int i = 0; i < n; i++) {
    if (args[i].kw) {
      indent(out, lv);
      fprintf(out, "kwarg %s", args[i].kw);
      pos(out, args[i].kwloc);
      print_expr(args[i].e, lv + 1, out);
    } else {
      print_expr(args[i].e, lv, out);
    }
  }
}

// Recursion is bounded: the parser caps expression depth at FE_MAX_EXPR_DEPTH.
static void print_expr(const FeExpr *e, int lv, FILE *out) {
  indent(out, lv);
  if (!e) {
    fprintf(out, "(missing)\n");
    return;
  }
  switch (e->kind) {
  case FE_EX_ERROR: fprintf(out, "error"); break;
  case FE_EX_INT: fprintf(out, "int %" PRId64, e->ival); break;
  case FE_EX_FLOAT: fprintf(out, "float %.9g", e->fval); break;
  case FE_EX_BOOL: fprintf(out, "bool %s", e->ival ? "true" : "false"); break;
  case FE_EX_STR: fprintf(out, "string \"%s\"", e->name); break;
  case FE_EX_NAME: fprintf(out, "name %s", e->name); break;
  case FE_EX_BIN: fprintf(out, "binary %c", e->op); break;
  case FE_EX_NEG: fprintf(out, "negate"); break;
  case FE_EX_CALL: fprintf(out, "call %s", e->name); break;
  case FE_EX_INDEX: fprintf(out, "index"); break;
  case FE_EX_LIST: fprintf(out, "list"); break;
  case FE_EX_TUPLE: fprintf(out, "tuple"); break;
  }
  pos(out, e->loc);
  switch (e->kind) {
  case FE_EX_BIN:
    print_expr(e->lhs, lv + 1, out);
    print_expr(e->rhs, lv + 1, out);
    break;
  case FE_EX_NEG: print_expr(e->lhs, lv + 1, out); break;
  case FE_EX_CALL:
  case FE_EX_LIST:
  case FE_EX_TUPLE: print_args(e->args, e->nargs, lv + 1, out); break;
  case FE_EX_INDEX:
    print_expr(e->lhs, lv + 1, out);
    for (int i = 0; i < e->nidx; i++) {
      const FeIndexItem *s = &e->idx[i];
      if (!s->is_slice) {
        print_expr(s->e, lv + 1, out);
        continue;
      }
      indent(out, lv + 1);
      fprintf(out, "slice%s%s", s->lo ? " lo" : "", s->hi ? " hi" : "");
      pos(out, s->loc);
      if (s->lo) print_expr(s->lo, lv + 2, out);
      if (s->hi) print_expr(s->hi, lv + 2, out);
    }
    break;
  default: break;
  }
}

static void print_type(const FeTypeExpr *t, int lv, FILE *out) {
  indent(out, lv);
  if (!t) {
    fprintf(out, "type (missing)\n");
    return;
  }
  fprintf(out, "type %s%s", t->dtype, t->has_dims ? "[]" : "");
  pos(out, t->loc);
  for (int i = 0; i < t->ndims; i++) print_expr(t->dims[i], lv + 1, out);
}

static void print_func(const FeItem *it, int lv, FILE *out) {
  for (int i = 0; i < it->nparams; i++) {
    indent(out, lv);
    fprintf(out, "param %s", it->params[i].name);
    pos(out, it->params[i].loc);
    if (it->params[i].type) print_type(it->params[i].type, lv + 1, out);
  }
  for (int i = 0; i < it->nrets; i++) {
    indent(out, lv);
    fprintf(out, "result\n");
    print_type(it->rets[i], lv + 1, out);
  }
  for (int i = 0; i < it->nbody; i++) {
    const FeStmt *st = it->body[i];
    indent(out, lv);
    if (st->kind == FE_ST_RETURN) {
      fprintf(out, "return");
    } else {
      fprintf(out, "assign");
      for (int j = 0; j < st->nnames; j++) fprintf(out, " %s", st->names[j]);
    }
    pos(out, st->loc);
    for (int j = 0; j < st->nexprs; j++) print_expr(st->exprs[j], lv + 1, out);
  }
}

static void print_item(const FeItem *it, int lv, FILE *out) {
  static const char *kinds[] = {"bind", "repeat", "param", "buffer", "func"};
  indent(out, lv);
  fprintf(out, "%s %s", kinds[it->kind], it->name ? it->name : "?");
  if (it->kind == FE_IT_REPEAT) fprintf(out, " block %s", it->block);
  pos(out, it->loc);
  switch (it->kind) {
  case FE_IT_BIND: print_expr(it->expr, lv + 1, out); break;
  case FE_IT_REPEAT:
    print_expr(it->expr, lv + 1, out);
    print_args(it->args, it->nargs, lv + 1, out);
    break;
  case FE_IT_PARAM:
  case FE_IT_BUFFER:
    print_type(it->type, lv + 1, out);
    print_expr(it->expr, lv + 1, out);
    break;
  case FE_IT_FUNC: print_func(it, lv + 1, out); break;
  }
}

void fe_ast_print(const FeAst *ast, FILE *out) {
  static const char *kinds[] = {"config", "block", "model", "train"};
  fprintf(out, "file %s\n", ast->path);
  for (int i = 0; i < ast->ndecls; i++) {
    const FeDecl *d = ast->decls[i];
    if (!d) continue;
    indent(out, 1);
    fprintf(out, "%s%s%s", kinds[d->kind], d->name ? " " : "", d->name ? d->name : "");
    pos(out, d->loc);
    for (int j = 0; j < d->nargs; j++) {
      indent(out, 2);
      fprintf(out, "arg %s", d->args[j].name);
      pos(out, d->args[j].loc);
      if (d->defaults[j]) print_expr(d->defaults[j], 3, out);
    }
    for (int j = 0; j < d->nitems; j++) print_item(d->items[j], 2, out);
  }
}
