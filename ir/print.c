// ir/print.c: the IR's text form (`heed compile --emit ir`), its parser
// (ir_parse reads what ir_print writes: pass tests are IR in, IR out), and
// Graphviz output (`--emit dot`). The text is deterministic: ids in
// topological order, no pointers, floats in their shortest exact form.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

// The shortest %g form that reads back as the same double.
static const char *num(double v, char *buf, size_t n) {
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  return buf;
}

static void print_attrs(const IrNode *n, FILE *out) {
  const char *spec = ir_op_info[n->op].attrs;
  if (!*spec) return;
  const IrAttr *a = &n->attr;
  char key[32], b[64];
  fputs(" {", out);
  for (int k = 0; *spec; k++) {
    size_t len = strcspn(spec, ",");
    snprintf(key, sizeof key, "%.*s", (int)len, spec);
    spec += len + (spec[len] == ',');
    fprintf(out, "%s%s=", k ? ", " : "", key);
    if (!strcmp(key, "axis")) fprintf(out, "%lld", (long long)a->axis);
    else if (!strcmp(key, "start")) fprintf(out, "%lld", (long long)a->start);
    else if (!strcmp(key, "axes")) {
      fputc('[', out);
      for (int i = 0, first = 1; i < IR_MAX_RANK; i++)
        if (a->axes >> i & 1) fprintf(out, "%s%d", first ? "" : " ", i), first = 0;
      fputc(']', out);
    } else if (!strcmp(key, "perm")) {
      fputc('[', out);
      for (int i = 0; i < n->src[0]->ty.rank; i++) fprintf(out, "%s%d", i ? " " : "", a->perm[i]);
      fputc(']', out);
    } else if (!strcmp(key, "keepdim")) fputs(a->keepdim ? "true" : "false", out);
    else if (!strcmp(key, "causal")) fputs(a->causal ? "true" : "false", out);
    else if (!strcmp(key, "interleaved")) fputs(a->interleaved ? "true" : "false", out);
    else if (!strcmp(key, "inverse")) fputs(a->inverse ? "true" : "false", out);
    else if (!strcmp(key, "value")) fputs(num(a->value, b, sizeof b), out);
    else if (!strcmp(key, "eps")) fputs(num(a->eps, b, sizeof b), out);
    else if (!strcmp(key, "scale")) fputs(num(a->scale, b, sizeof b), out);
    else if (!strcmp(key, "base")) fputs(num(a->base, b, sizeof b), out);
    else if (!strcmp(key, "heads")) fprintf(out, "%lld", (long long)a->heads);
    else if (!strcmp(key, "kv_heads")) fprintf(out, "%lld", (long long)a->kv_heads);
    else if (!strcmp(key, "ignore")) fprintf(out, "%lld", (long long)a->ignore);
    else if (!strcmp(key, "fn")) fputs(ir_op_name((IrOp)a->fn), out);
  }
  fputc('}', out);
}

static void print_init(const IrInit *in, FILE *out) {
  char b1[64], b2[64];
  if (!strcmp(in->kind, "constant")) fprintf(out, " = constant(%s)", num(in->a, b1, sizeof b1));
  else if (!strcmp(in->kind, "normal") || !strcmp(in->kind, "uniform"))
    fprintf(out, " = %s(%s, %s)", in->kind, num(in->a, b1, sizeof b1), num(in->b, b2, sizeof b2));
  else fprintf(out, " = %s", in->kind);
}

void ir_print(const IrGraph *g, FILE *out) {
  char t[512];
  fprintf(out, "graph %s\n", g->name);
  if (g->syms.len) {
    fputs("sym", out);
    for (int i = 0; i < g->syms.len; i++) fprintf(out, "%s %s", i ? "," : "", g->syms.data[i]);
    fputc('\n', out);
  }
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    const char *ty = ir_type_str(&n->ty, &g->syms, true, t, sizeof t);
    if (n->op == IR_OP_INPUT) {
      fprintf(out, "%%%u = input %s: %s", n->id, n->name, ty);
    } else if (n->op == IR_OP_PARAM) {
      fprintf(out, "%%%u = %s %s: %s", n->id, n->flags & IR_FLAG_BUFFER ? "buffer" : "param", n->name, ty);
      print_init(&n->init, out);
    } else {
      fprintf(out, "%%%u: %s = %s", n->id, ty, ir_op_name(n->op));
      for (int j = 0; j < n->nsrc; j++) fprintf(out, "%s %%%u", j ? "," : "", n->src[j]->id);
      print_attrs(n, out);
    }
    if (n->loc.line) fprintf(out, "  ; @%u:%u", n->loc.line, n->loc.col);
    fputc('\n', out);
  }
  for (int i = 0; i < g->outputs.len; i++) fprintf(out, "output %s = %%%u\n", g->output_names.data[i], g->outputs.data[i]->id);
}

void ir_print_dot(const IrGraph *g, FILE *out) {
  char t[512];
  fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n", g->name);
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    const char *shape = n->op == IR_OP_INPUT ? ", shape=ellipse" : n->op == IR_OP_PARAM ? ", shape=note" : "";
    fprintf(out, "  n%u [label=\"%%%u %s%s%s\\n%s\"%s];\n", n->id, n->id, ir_op_name(n->op), n->name ? " " : "",
            n->name ? n->name : "", ir_type_str(&n->ty, &g->syms, true, t, sizeof t), shape);
    for (int j = 0; j < n->nsrc; j++) fprintf(out, "  n%u -> n%u;\n", n->src[j]->id, n->id);
  }
  for (int i = 0; i < g->outputs.len; i++)
    fprintf(out, "  out%d [label=\"%s\", shape=ellipse];\n  n%u -> out%d;\n", i, g->output_names.data[i],
            g->outputs.data[i]->id, i);
  fputs("}\n", out);
}

// ---- the parser ----

typedef struct {
  IrGraph *g;
  Diag *d;
  uint32_t file;
  const char *p, *line_start;
  uint32_t line;
  bool err;
} P;

static SrcLoc here(P *p) {
  return (SrcLoc){.file = p->file, .line = p->line, .col = (uint32_t)(p->p - p->line_start) + 1};
}

static bool perr(P *p, const char *what) {
  if (!p->err) diag_error(p->d, here(p), "IR text: %s", what);
  p->err = true;
  return false;
}

static void ws(P *p) {
  while (*p->p == ' ' || *p->p == '\t') p->p++;
}

// An error about the token that starts at tok (not at the end of it).
static bool perr_at(P *p, const char *tok, const char *what) {
  p->p = tok;
  return perr(p, what);
}

static const char *token_start(P *p) {
  ws(p);
  return p->p;
}

static bool lit(P *p, const char *s) {
  ws(p);
  size_t n = strlen(s);
  if (strncmp(p->p, s, n) != 0) return false;
  p->p += n;
  return true;
}

static bool expect(P *p, const char *s) {
  if (lit(p, s)) return true;
  char m[64];
  snprintf(m, sizeof m, "expected '%s'", s);
  return perr(p, m);
}

static const char *word(P *p) {  // [A-Za-z0-9_.]+
  ws(p);
  const char *s = p->p;
  while (isalnum((unsigned char)*p->p) || *p->p == '_' || *p->p == '.') p->p++;
  if (p->p == s) {
    perr(p, "expected a name");
    return NULL;
  }
  return arena_strndup(p->g->a, s, (size_t)(p->p - s));
}

static bool integer(P *p, int64_t *v) {
  ws(p);
  if (!isdigit((unsigned char)*p->p) && *p->p != '-') return perr(p, "expected an integer");
  char *end;
  long long x = strtoll(p->p, &end, 10);
  if (end == p->p) return perr(p, "expected an integer");
  p->p = end;
  *v = x;
  return true;
}

static bool number(P *p, double *v) {
  ws(p);
  if (!isdigit((unsigned char)*p->p) && !strchr("-+.in", *p->p)) return perr(p, "expected a number");
  char *end;
  *v = strtod(p->p, &end);
  if (end == p->p) return perr(p, "expected a number");
  p->p = end;
  return true;
}

static bool boolean(P *p, bool *v) {
  if (lit(p, "true")) return *v = true, true;
  if (lit(p, "false")) return *v = false, true;
  return perr(p, "expected true or false");
}

// f32[B, 2*T, 768]
static bool type(P *p, IrType *t) {
  const char *tok = token_start(p), *dt = word(p);
  int k = dt ? ir_dtype_from_name(dt) : -1;
  if (k < 0) return perr_at(p, tok, "unknown dtype");
  *t = (IrType){.dt = (IrDType)k};
  if (!expect(p, "[")) return false;
  ws(p);
  while (*p->p != ']') {
    if (t->rank == IR_MAX_RANK) return perr(p, "rank too large");
    IrDim d = ir_dim_const(1);
    do {
      ws(p);
      IrDim f;
      if (isdigit((unsigned char)*p->p) || *p->p == '-') {
        int64_t v;
        if (!integer(p, &v)) return false;
        f = ir_dim_const(v);
      } else {
        const char *tok = p->p, *s = word(p);
        if (!s) return false;
        int sym = -1;
        for (int i = 0; i < p->g->syms.len; i++)
          if (!strcmp(p->g->syms.data[i], s)) sym = i;
        if (sym < 0) return perr_at(p, tok, "undeclared symbolic size (list it on the sym line)");
        f = ir_dim_sym(sym);
      }
      if (!ir_dim_mul(d, f, &d)) return perr(p, "dimension too large");
    } while (lit(p, "*"));
    t->dim[t->rank++] = d;
    if (!lit(p, ",")) break;
  }
  return expect(p, "]");
}

static IrNode *ref(P *p) {
  int64_t id;
  const char *tok = token_start(p);
  if (!expect(p, "%") || !integer(p, &id)) return NULL;
  if (id < 0 || id >= p->g->nodes.len) {
    perr_at(p, tok, "reference to an undefined node");
    return NULL;
  }
  return p->g->nodes.data[id];
}

static bool attrs(P *p, IrAttr *a) {
  if (!lit(p, "{")) return true;
  do {
    const char *tok = token_start(p), *k = word(p);
    if (!k || !expect(p, "=")) return false;
    bool ok = true;
    if (!strcmp(k, "axis")) ok = integer(p, &a->axis);
    else if (!strcmp(k, "start")) ok = integer(p, &a->start);
    else if (!strcmp(k, "heads")) ok = integer(p, &a->heads);
    else if (!strcmp(k, "kv_heads")) ok = integer(p, &a->kv_heads);
    else if (!strcmp(k, "ignore")) ok = integer(p, &a->ignore);
    else if (!strcmp(k, "value")) ok = number(p, &a->value);
    else if (!strcmp(k, "eps")) ok = number(p, &a->eps);
    else if (!strcmp(k, "scale")) ok = number(p, &a->scale);
    else if (!strcmp(k, "base")) ok = number(p, &a->base);
    else if (!strcmp(k, "keepdim")) ok = boolean(p, &a->keepdim);
    else if (!strcmp(k, "causal")) ok = boolean(p, &a->causal);
    else if (!strcmp(k, "interleaved")) ok = boolean(p, &a->interleaved);
    else if (!strcmp(k, "inverse")) ok = boolean(p, &a->inverse);
    else if (!strcmp(k, "fn")) {
      const char *f = word(p);
      a->fn = f ? ir_op_from_name(f) : -1;
      ok = a->fn >= 0 || perr(p, "unknown op name");
    } else if (!strcmp(k, "axes") || !strcmp(k, "perm")) {
      if (!expect(p, "[")) return false;
      for (int i = 0; ok && !lit(p, "]"); i++) {
        int64_t v;
        if (!integer(p, &v) || v < 0 || v >= IR_MAX_RANK || i >= IR_MAX_RANK) return perr(p, "bad axis list");
        if (k[1] == 'x') a->axes |= 1u << v;
        else a->perm[i] = (int)v;
      }
    } else return perr_at(p, tok, "unknown attribute");
    if (!ok) return false;
  } while (lit(p, ","));
  return expect(p, "}");
}

static bool init(P *p, IrInit *in) {
  const char *k = word(p);
  if (!k) return false;
  in->kind = k;
  if (!strcmp(k, "zeros") || !strcmp(k, "ones")) return true;
  if (!expect(p, "(") || !number(p, &in->a)) return false;
  if (strcmp(k, "constant") && (!expect(p, ",") || !number(p, &in->b))) return false;
  return expect(p, ")");
}

static bool parse_line(P *p) {
  ws(p);
  if (*p->p == '\n' || *p->p == ';' || *p->p == 0) return true;
  if (lit(p, "graph")) {
    const char *n = word(p);
    if (n) p->g->name = n;
    return n != NULL;
  }
  if (lit(p, "sym")) {
    do {
      const char *n = word(p);
      if (!n || ir_symtab_intern(&p->g->syms, p->g->a, n) < 0) return perr(p, "bad symbol");
    } while (lit(p, ","));
    return true;
  }
  if (lit(p, "output")) {
    const char *n = word(p);
    if (!n || !expect(p, "=")) return false;
    IrNode *x = ref(p);
    return x && ir_output(p->g, n, x);
  }
  int64_t id;
  if (!expect(p, "%") || !integer(p, &id)) return false;
  if (id != p->g->nodes.len) return perr(p, "node ids must count up from 0 in order");
  SrcLoc loc = here(p);
  IrType t;
  if (lit(p, "=")) {  // a leaf: input, param, buffer
    const char *kind = word(p), *name = kind ? word(p) : NULL;
    if (!name || !expect(p, ":") || !type(p, &t)) return false;
    if (!strcmp(kind, "input")) return ir_input(p->g, name, &t, loc) != NULL;
    if (strcmp(kind, "param") && strcmp(kind, "buffer")) return perr(p, "expected input, param or buffer");
    IrInit in = {0};
    if (!expect(p, "=") || !init(p, &in)) return false;
    return ir_param(p->g, name, &t, in, kind[0] == 'b', loc) != NULL;
  }
  if (!expect(p, ":") || !type(p, &t) || !expect(p, "=")) return false;
  const char *tok = token_start(p), *opn = word(p);
  int op = opn ? ir_op_from_name(opn) : -1;
  if (op < 0) return perr_at(p, tok, "unknown op");
  IrNode *src[IR_MAX_SRC];
  int n = 0;
  ws(p);
  while (*p->p == '%') {
    if (n == IR_MAX_SRC) return perr(p, "too many operands");
    if (!(src[n++] = ref(p))) return false;
    if (!lit(p, ",")) break;
    ws(p);
  }
  IrAttr a = {0};
  if (!attrs(p, &a)) return false;
  if (op == IR_OP_CONST) {
    IrNode *c = ir_const(p->g, a.value, t.dt, loc);
    if (c) c->ty = t;
    return c != NULL;
  }
  IrNode *x = ir_op(p->g, (IrOp)op, src, n, &a, &t, loc);
  if (!x) return p->err = true, false;
  if (!ir_type_eq(&x->ty, &t)) return perr(p, "the declared type differs from the inferred one");
  return true;
}

IrGraph *ir_parse(Arena *a, Diag *d, uint32_t file) {
  P p = {.d = d, .file = file, .line = 1};
  p.g = ir_graph_new(a, d, "graph");
  if (!p.g) return NULL;
  const char *text = d->files[file].text, *end = text + d->files[file].len;
  int nerr = d->nerr;
  for (const char *s = text; s < end && d->nerr == nerr;) {  // IR is machine-written: stop at the first error
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    p.p = p.line_start = s;
    p.err = false;
    int nodes_before = p.g->nodes.len;
    if (memchr(s, 0, (size_t)((nl ? nl : end) - s))) perr(&p, "NUL byte");
    else if (parse_line(&p)) {
      ws(&p);
      unsigned line, col;
      // "; @L:C" is the node's place in the model source: kept (with no file)
      // so that printing the graph again gives the same text
      if (*p.p == ';' && sscanf(p.p, "; @%u:%u", &line, &col) == 2 && p.g->nodes.len > nodes_before)
        p.g->nodes.data[p.g->nodes.len - 1]->loc = (SrcLoc){.line = line, .col = col};
      if (*p.p == ';') p.p += strcspn(p.p, "\n");
      if (*p.p != '\n' && *p.p != 0) perr(&p, "unexpected text at the end of the line");
    }
    if (!nl) break;
    s = nl + 1;
    p.line++;
  }
  return d->nerr ? NULL : p.g;
}
