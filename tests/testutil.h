// tests/testutil.h: helpers shared by the cmocka unit tests (tests/unit/).
// Everything is static inline so that every test executable links on its own.
//
//   check_close(got, want, n, atol, rtol, label)   numeric comparison
//   FeT t; fet_check(&t, src, NULL, 0); ... fet_free(&t);   frontend runs
//
// Include <stdarg.h> <stddef.h> <setjmp.h> <stdint.h> <cmocka.h> first.
#ifndef HEED_TESTUTIL_H
#define HEED_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe.h"

// ---- numbers ----

// Passes when |got[i] - want[i]| <= atol + rtol * |want[i]| for every i (NaN
// never passes unless both are NaN). Otherwise prints the first 5
// mismatches and the largest absolute and relative errors, then fails.
static inline void check_close(const float *got, const float *want, size_t n, double atol, double rtol,
                               const char *label) {
  size_t bad = 0;
  double max_abs = 0, max_rel = 0;
  for (size_t i = 0; i < n; i++) {
    double g = got[i], w = want[i];
    bool ok;
    double ae = fabs(g - w);
    if (isnan(g) || isnan(w)) {
      ok = isnan(g) && isnan(w);
      ae = ok ? 0 : INFINITY;
    } else if (isinf(g) || isinf(w)) {
      ok = g == w;
      ae = ok ? 0 : INFINITY;
    } else {
      ok = ae <= atol + rtol * fabs(w);
    }
    double re = w != 0 ? ae / fabs(w) : (ae == 0 ? 0 : INFINITY);
    if (ae > max_abs) max_abs = ae;
    if (re > max_rel) max_rel = re;
    if (!ok) {
      if (bad < 5)
        print_error("%s: [%zu] got %.9g, want %.9g (abs err %.3g, allowed %.3g)\n", label ? label : "check_close",
                    i, g, w, ae, atol + rtol * fabs(w));
      bad++;
    }
  }
  if (bad) {
    print_error("%s: %zu of %zu values differ; max abs err %.3g, max rel err %.3g (atol %.3g, rtol %.3g)\n",
                label ? label : "check_close", bad, n, max_abs, max_rel, atol, rtol);
    fail();
  }
}

// ---- strings ----

// Asserts that haystack (may be NULL) contains needle; prints both if not.
#define assert_contains(haystack, needle) test_assert_contains_((haystack), (needle), __FILE__, __LINE__)
#define assert_not_contains(haystack, needle) test_assert_not_contains_((haystack), (needle), __FILE__, __LINE__)

static inline void test_assert_contains_(const char *h, const char *n, const char *file, int line) {
  if (h && strstr(h, n)) return;
  print_error("%s:%d: expected to find\n---\n%s\n--- in ---\n%s\n---\n", file, line, n, h ? h : "(null)");
  _fail(file, line);
}

static inline void test_assert_not_contains_(const char *h, const char *n, const char *file, int line) {
  if (!h || !strstr(h, n)) return;
  print_error("%s:%d: did not expect to find\n---\n%s\n--- in ---\n%s\n---\n", file, line, n, h);
  _fail(file, line);
}

// Asserts that s (may be NULL) starts with prefix.
#define assert_starts_with(s, prefix) test_assert_starts_with_((s), (prefix), __FILE__, __LINE__)

static inline void test_assert_starts_with_(const char *s, const char *p, const char *file, int line) {
  if (s && strncmp(s, p, strlen(p)) == 0) return;
  print_error("%s:%d: expected a string starting with\n---\n%s\n--- got ---\n%s\n---\n", file, line, p,
              s ? s : "(null)");
  _fail(file, line);
}

// Number of non-overlapping occurrences of needle in haystack (NULL: 0).
// A whole file, NUL-terminated (malloc'd; *len its size), or NULL if it
// cannot be opened.
static inline char *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  *len = fread(s, 1, (size_t)n, f);
  s[*len] = 0;
  fclose(f);
  return s;
}

// examples/NAME of this checkout, found from a test's __FILE__
// (.../tests/unit/x.c), as tu_read_file reads it.
static inline char *tu_read_example(const char *test_file, const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s", test_file);
  char *slash = strstr(path, "tests/unit/");
  if (!slash) return NULL;
  snprintf(slash, sizeof path - (size_t)(slash - path), "examples/%s", name);
  return tu_read_file(path, len);
}

static inline int count_substr(const char *h, const char *n) {
  int c = 0;
  size_t ln = strlen(n);
  if (!h || ln == 0) return 0;
  for (const char *p = strstr(h, n); p; p = strstr(p + ln, n)) c++;
  return c;
}

// ---- the frontend ----

// One frontend run: a fresh Arena and a Diag that only records (d.log).
typedef struct {
  Arena *a;
  Diag d;
  uint32_t file;
  FeAst *ast;
  FeModel *m;
  FeCheckOpts opts;
  char buf[512];   // scratch for fet_type
} FeT;

// Parses src (len bytes, may hold NULs) as "t.heed". Returns d.log (NULL if
// nothing was reported).
static inline const char *fet_parse_n(FeT *t, const char *src, size_t len) {
  memset(t, 0, sizeof *t);
  diag_init(&t->d, NULL);
  t->a = arena_new();
  assert_non_null(t->a);
  t->file = diag_add_file(&t->d, "t.heed", src, len);
  assert_int_not_equal(t->file, 0);
  t->ast = fe_parse(t->a, &t->d, t->file);
  assert_non_null(t->ast);
  return t->d.log;
}

static inline const char *fet_parse(FeT *t, const char *src) { return fet_parse_n(t, src, strlen(src)); }

// Parses and, if there was no syntax error, checks src with the given
// --set overrides. t->m is the checked model (NULL on errors). Returns d.log.
static inline const char *fet_check_model(FeT *t, const char *src, const char *model, FeOverride *ov, int nov) {
  fet_parse(t, src);
  if (t->d.nerr == 0) {
    t->opts = (FeCheckOpts){.model_name = model, .overrides = ov, .noverrides = nov};
    t->m = fe_check(t->a, &t->d, t->ast, &t->opts);
  }
  return t->d.log;
}

static inline const char *fet_check(FeT *t, const char *src, FeOverride *ov, int nov) {
  return fet_check_model(t, src, NULL, ov, nov);
}

// The diagnostics so far, "" when there are none.
static inline const char *fet_log(const FeT *t) { return t->d.log ? t->d.log : ""; }

// Renders a type of t's model ("f32[B, T, 256]") into t->buf.
static inline const char *fet_type(FeT *t, const IrType *ty) {
  return ir_type_str(ty, t->m ? &t->m->syms : NULL, true, t->buf, sizeof t->buf);
}

static inline void fet_free(FeT *t) {
  arena_free(t->a);
  diag_fini(&t->d);
  t->a = NULL;
}

// The --emit ast listing of t's AST (malloc'd; free it).
static inline char *fet_ast_str(const FeT *t) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  assert_non_null(f);
  fe_ast_print(t->ast, f);
  fclose(f);
  return s;
}

// Checks src, asserts it has no diagnostics, and returns the rendered
// type of output i ("f32[B, T, 256]") in t->buf. The caller frees t.
static inline const char *fet_output(FeT *t, const char *src, int i) {
  fet_check(t, src, NULL, 0);
  if (t->d.nerr || !t->m) {
    print_error("unexpected diagnostics:\n%s\n--- for ---\n%s\n", fet_log(t), src);
    fail();
  }
  assert_true(i < t->m->noutputs);
  return fet_type(t, &t->m->outputs[i]);
}

#endif
