// tests/unit/test_ir_base.c: the base utilities of ir/: the arena and Vec,
// diagnostics rendering (location header, source line, caret, notes, the
// error limit), edit distance, symbolic dimensions and type rendering.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

// ---- arena ----

static void test_arena_alignment(void **state) {
  (void)state;
  Arena *a = arena_new();
  assert_non_null(a);
  size_t sizes[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 100, 1000, 4095, 70000, 5};
  unsigned char *prev = NULL;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *p = arena_alloc(a, sizes[i]);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    memset(p, 0x5a, sizes[i]);  // the whole size is writable
    assert_ptr_not_equal(p, prev);
    prev = p;
  }
  // used counts bytes handed out, rounded to 16
  Arena *b = arena_new();
  arena_alloc(b, 1);
  assert_int_equal(b->used, 16);
  arena_alloc(b, 17);
  assert_int_equal(b->used, 48);
  arena_free(b);
  arena_free(a);
}

static void test_arena_zero_size(void **state) {
  (void)state;
  Arena *a = arena_new();
  void *p = arena_alloc(a, 0), *q = arena_alloc(a, 0);
  assert_non_null(p);
  assert_non_null(q);
  assert_ptr_not_equal(p, q);
  arena_free(a);
}

static void test_arena_zeroing(void **state) {
  (void)state;
  // Dirty some heap memory first so that fresh chunks are likely reused.
  for (int round = 0; round < 3; round++) {
    Arena *a = arena_new();
    for (int i = 0; i < 64; i++) {
      unsigned char *p = arena_alloc(a, 3000);
      assert_non_null(p);
      for (int j = 0; j < 3000; j++) assert_int_equal(p[j], 0);
      memset(p, 0xff, 3000);
    }
    unsigned char *big = arena_alloc(a, 200000);
    assert_non_null(big);
    for (int j = 0; j < 200000; j++)
      if (big[j] != 0) fail_msg("byte %d of a large allocation is %d", j, big[j]);
    memset(big, 0xee, 200000);
    arena_free(a);
  }
}

static void test_arena_large(void **state) {
  (void)state;
  Arena *a = arena_new();
  unsigned char *small = arena_alloc(a, 10);
  strcpy((char *)small, "hello");
  size_t big_n = 8u << 20;  // 8 MiB, far above the chunk size
  unsigned char *big = arena_alloc(a, big_n);
  assert_non_null(big);
  assert_int_equal((uintptr_t)big % 16, 0);
  big[0] = 1;
  big[big_n - 1] = 2;
  unsigned char *after = arena_alloc(a, 10);  // small allocations still work
  assert_non_null(after);
  assert_int_equal(after[0], 0);
  assert_string_equal((char *)small, "hello");  // earlier data untouched
  assert_int_equal(big[0], 1);
  assert_int_equal(big[big_n - 1], 2);
  assert_true(a->used >= big_n + 32);
  // an impossible size fails cleanly (before reaching malloc)
  assert_null(arena_alloc(a, SIZE_MAX - 20));
  assert_null(arena_alloc(a, SIZE_MAX - 31));
  arena_free(a);
  arena_free(NULL);  // a no-op
}

static void test_arena_strings(void **state) {
  (void)state;
  Arena *a = arena_new();
  char *s = arena_strdup(a, "attn.c_proj");
  assert_string_equal(s, "attn.c_proj");
  char *t = arena_strndup(a, "weight_decay", 6);
  assert_string_equal(t, "weight");
  char *u = arena_printf(a, "%s.%d.%s", "h", 11, "ln_2");
  assert_string_equal(u, "h.11.ln_2");
  char *e = arena_strndup(a, "x", 0);
  assert_string_equal(e, "");
  // a long formatted string is not truncated
  char *l = arena_printf(a, "%05000d", 7);
  assert_int_equal(strlen(l), 5000);
  assert_int_equal(l[4999], '7');
  assert_int_equal(l[0], '0');
  arena_free(a);
}

static void test_vec_push_growth(void **state) {
  (void)state;
  Arena *a = arena_new();
  Vec(int) v = {0};
  for (int i = 0; i < 10000; i++) assert_true(vec_push(a, &v, i * 3));
  assert_int_equal(v.len, 10000);
  assert_true(v.cap >= v.len);
  assert_int_equal(v.cap & (v.cap - 1), 0);  // doubling from 8
  assert_true(v.cap < 2 * v.len);
  for (int i = 0; i < 10000; i++)
    if (v.data[i] != i * 3) fail_msg("element %d is %d", i, v.data[i]);

  typedef struct { int64_t a; char s[13]; } Big;
  Vec(Big) w = {0};
  for (int i = 0; i < 100; i++) {
    Big b = {.a = -i};
    snprintf(b.s, sizeof b.s, "n%d", i);
    assert_true(vec_push(a, &w, b));
  }
  assert_int_equal(w.len, 100);
  assert_int_equal(w.data[0].a, 0);
  assert_int_equal(w.data[99].a, -99);
  assert_string_equal(w.data[57].s, "n57");

  Vec(const char *) names = {0};
  assert_true(vec_push(a, &names, "x"));
  assert_int_equal(names.cap, 8);
  assert_string_equal(names.data[0], "x");
  arena_free(a);
}

// ---- diagnostics ----

static const char *SRC = "config {\n  dim = 64\n}\n";

static void test_diag_basic(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  assert_null(d.log);
  assert_int_equal(d.max_errors, 20);
  uint32_t f = diag_add_file(&d, "m.heed", SRC, strlen(SRC));
  assert_int_equal(f, 1);
  uint32_t g = diag_add_file(&d, "other.heed", "x", 1);
  assert_int_equal(g, 2);
  diag_error(&d, (SrcLoc){.file = f, .line = 2, .col = 3}, "unknown name '%s'", "dim");
  assert_string_equal(d.log,
                      "m.heed:2:3: error: unknown name 'dim'\n"
                      "    dim = 64\n"
                      "    ^\n");
  assert_int_equal(d.nerr, 1);
  diag_note(&d, (SrcLoc){.file = f, .line = 1, .col = 8}, "opened here");
  assert_int_equal(d.nerr, 1);  // notes are not errors
  assert_string_equal(d.log + strlen("m.heed:2:3: error: unknown name 'dim'\n    dim = 64\n    ^\n"),
                      "m.heed:1:8: note: opened here\n"
                      "  config {\n"
                      "         ^\n");
  diag_fini(&d);
}

static void test_diag_second_file(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  diag_add_file(&d, "a.heed", "aaa\n", 4);
  uint32_t b = diag_add_file(&d, "b.heed", "one\ntwo three\n", 14);
  diag_error(&d, (SrcLoc){.file = b, .line = 2, .col = 5}, "bad");
  assert_string_equal(d.log, "b.heed:2:5: error: bad\n  two three\n      ^\n");
  diag_fini(&d);
}

static void test_diag_no_location(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  diag_add_file(&d, "m.heed", SRC, strlen(SRC));
  diag_error(&d, (SrcLoc){0}, "--set %s: bad value", "layers");
  assert_string_equal(d.log, "heed: error: --set layers: bad value\n");
  diag_note(&d, (SrcLoc){0}, "try %d", 2);
  assert_string_equal(d.log, "heed: error: --set layers: bad value\nheed: note: try 2\n");
  // a file id that does not exist is treated as no location
  diag_fini(&d);
  diag_init(&d, NULL);
  diag_error(&d, (SrcLoc){.file = 7, .line = 1, .col = 1}, "stray");
  assert_string_equal(d.log, "heed: error: stray\n");
  // line 0 is no location either
  diag_fini(&d);
  diag_init(&d, NULL);
  uint32_t f = diag_add_file(&d, "m.heed", SRC, strlen(SRC));
  diag_error(&d, (SrcLoc){.file = f, .line = 0, .col = 0}, "whole file");
  assert_string_equal(d.log, "heed: error: whole file\n");
  diag_fini(&d);
}

static void test_diag_tabs(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  const char *src = "block B {\n\t\tx = y\n}\n";
  uint32_t f = diag_add_file(&d, "t.heed", src, strlen(src));
  // columns count bytes: the two tabs are columns 1 and 2, 'y' is column 7
  diag_error(&d, (SrcLoc){.file = f, .line = 2, .col = 7}, "unknown name 'y'");
  // the caret line repeats the tabs so the caret lines up under 'y'
  assert_string_equal(d.log,
                      "t.heed:2:7: error: unknown name 'y'\n"
                      "  \t\tx = y\n"
                      "  \t\t    ^\n");
  diag_fini(&d);
}

static void test_diag_utf8_and_control(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  // "é" is two bytes but one column on screen: the caret skips one space
  const char *src = "// \xc3\xa9 = x\x01y\n";
  uint32_t f = diag_add_file(&d, "u.heed", src, strlen(src));
  diag_error(&d, (SrcLoc){.file = f, .line = 1, .col = 7}, "here");  // '=' is byte 7
  assert_string_equal(d.log,
                      "u.heed:1:7: error: here\n"
                      "  // \xc3\xa9 = x?y\n"  // control bytes show as '?'
                      "       ^\n");
  diag_fini(&d);
}

static void test_diag_nul_in_line(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  const char src[] = "ab\0cd\nsecond";
  uint32_t f = diag_add_file(&d, "n.heed", src, sizeof src - 1);
  assert_int_equal(d.files[f].len, 12);
  diag_error(&d, (SrcLoc){.file = f, .line = 1, .col = 4}, "after nul");
  assert_string_equal(d.log, "n.heed:1:4: error: after nul\n  ab?cd\n     ^\n");
  diag_error(&d, (SrcLoc){.file = f, .line = 2, .col = 7}, "at end");  // one past the last byte
  assert_contains(d.log, "n.heed:2:7: error: at end\n  second\n        ^\n");
  diag_fini(&d);
}

static void test_diag_column_past_end(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  const char *src = "abc\n";
  uint32_t f = diag_add_file(&d, "e.heed", src, strlen(src));
  // a column past the end of the line puts the caret just after it
  diag_error(&d, (SrcLoc){.file = f, .line = 1, .col = 90}, "x");
  assert_string_equal(d.log, "e.heed:1:90: error: x\n  abc\n     ^\n");
  diag_fini(&d);
  // a line past the end of the file shows an empty line
  diag_init(&d, NULL);
  f = diag_add_file(&d, "e.heed", src, strlen(src));
  diag_error(&d, (SrcLoc){.file = f, .line = 40, .col = 2}, "y");
  assert_string_equal(d.log, "e.heed:40:2: error: y\n  \n  ^\n");
  diag_fini(&d);
}

// Finds the shown line and caret line of a rendered diagnostic.
static void split_render(const char *log, const char **line, size_t *line_len, const char **caret,
                         size_t *caret_len) {
  const char *l1 = strchr(log, '\n');
  assert_non_null(l1);
  *line = l1 + 1;
  const char *l2 = strchr(*line, '\n');
  assert_non_null(l2);
  *line_len = (size_t)(l2 - *line);
  *caret = l2 + 1;
  const char *l3 = strchr(*caret, '\n');
  assert_non_null(l3);
  *caret_len = (size_t)(l3 - *caret);
}

static void test_diag_long_line(void **state) {
  (void)state;
  enum { N = 5000 };
  char *src = malloc(N + 2);
  for (int i = 0; i < N; i++) src[i] = (char)('a' + i % 26);
  src[N] = '\n';
  src[N + 1] = 0;
  int col = 3000;  // 1-based
  src[col - 1] = '#';
  Diag d;
  diag_init(&d, NULL);
  uint32_t f = diag_add_file(&d, "long.heed", src, N + 1);
  diag_error(&d, (SrcLoc){.file = f, .line = 1, .col = (uint32_t)col}, "marked");
  const char *line, *caret;
  size_t ll, cl;
  split_render(d.log, &line, &ll, &caret, &cl);
  // a window around the column, not all 5000 bytes
  assert_true(ll < 260);
  assert_memory_equal(line, "  ...", 5);
  assert_int_equal(caret[cl - 1], '^');
  assert_true(cl - 1 < ll);
  assert_int_equal(line[cl - 1], '#');  // the caret is under the marked byte
  for (size_t i = 0; i + 1 < cl; i++) assert_int_equal(caret[i], ' ');
  diag_fini(&d);

  // the caret near the start of a long line: no leading "...", still aligned
  diag_init(&d, NULL);
  src[col - 1] = 'x';
  src[9] = '#';
  f = diag_add_file(&d, "long.heed", src, N + 1);
  diag_error(&d, (SrcLoc){.file = f, .line = 1, .col = 10}, "early");
  split_render(d.log, &line, &ll, &caret, &cl);
  assert_true(ll < 260);
  assert_memory_equal(line, "  abc", 5);
  assert_int_equal(caret[cl - 1], '^');
  assert_int_equal(cl, 12);
  assert_int_equal(line[cl - 1], '#');
  diag_fini(&d);

  // the caret at the very end of a long line
  diag_init(&d, NULL);
  src[9] = 'j';
  src[N - 1] = '#';
  f = diag_add_file(&d, "long.heed", src, N + 1);
  diag_error(&d, (SrcLoc){.file = f, .line = 1, .col = N}, "last");
  split_render(d.log, &line, &ll, &caret, &cl);
  assert_true(ll < 260);
  assert_int_equal(caret[cl - 1], '^');
  assert_int_equal(line[cl - 1], '#');
  assert_int_equal(cl, ll);  // the marked byte is the last one shown
  diag_fini(&d);
  free(src);
}

static void test_diag_error_limit(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  uint32_t f = diag_add_file(&d, "m.heed", SRC, strlen(SRC));
  for (int i = 0; i < 19; i++) diag_error(&d, (SrcLoc){.file = f, .line = 2, .col = 3}, "error number %d", i);
  assert_false(diag_full(&d));
  diag_error(&d, (SrcLoc){.file = f, .line = 2, .col = 3}, "error number %d", 19);
  assert_true(diag_full(&d));
  assert_false(d.limit_hit);
  for (int i = 20; i < 25; i++) {
    diag_error(&d, (SrcLoc){.file = f, .line = 2, .col = 3}, "error number %d", i);
    diag_note(&d, (SrcLoc){.file = f, .line = 1, .col = 1}, "note of dropped %d", i);
  }
  assert_int_equal(d.nerr, 25);
  assert_true(d.limit_hit);
  assert_int_equal(count_substr(d.log, ": error: "), 20);
  assert_contains(d.log, "error number 19\n");
  assert_not_contains(d.log, "error number 20");
  assert_not_contains(d.log, "note of dropped");
  diag_finish(&d);
  const char *tail = "heed: too many errors; stopped reporting after 20\n";
  size_t n = strlen(d.log), tn = strlen(tail);
  assert_true(n > tn);
  assert_string_equal(d.log + n - tn, tail);
  diag_fini(&d);

  // a smaller limit
  diag_init(&d, NULL);
  d.max_errors = 2;
  for (int i = 0; i < 3; i++) diag_error(&d, (SrcLoc){0}, "e%d", i);
  diag_finish(&d);
  assert_string_equal(d.log, "heed: error: e0\nheed: error: e1\nheed: too many errors; stopped reporting after 2\n");
  diag_fini(&d);
}

static void test_diag_finish_summary(void **state) {
  (void)state;
  Diag d;
  diag_init(&d, NULL);
  diag_finish(&d);  // no errors: nothing
  assert_null(d.log);
  diag_error(&d, (SrcLoc){0}, "one");
  diag_finish(&d);  // one error: no summary
  assert_string_equal(d.log, "heed: error: one\n");
  diag_error(&d, (SrcLoc){0}, "two");
  diag_error(&d, (SrcLoc){0}, "three");
  diag_finish(&d);
  assert_contains(d.log, "heed: error: three\n3 errors generated.\n");
  diag_fini(&d);
}

static void test_diag_out_stream(void **state) {
  (void)state;
  char *buf = NULL;
  size_t n = 0;
  FILE *out = open_memstream(&buf, &n);
  Diag d;
  diag_init(&d, out);
  uint32_t f = diag_add_file(&d, "m.heed", SRC, strlen(SRC));
  diag_error(&d, (SrcLoc){.file = f, .line = 3, .col = 1}, "brace");
  fclose(out);
  assert_string_equal(buf, "m.heed:3:1: error: brace\n  }\n  ^\n");
  assert_string_equal(d.log, buf);  // rendered to both
  free(buf);
  diag_fini(&d);
}

// ---- edit distance ----

static void test_edit_distance(void **state) {
  (void)state;
  assert_int_equal(diag_edit_distance("kitten", "sitting", 5), 3);
  assert_int_equal(diag_edit_distance("dim", "dim", 3), 0);
  assert_int_equal(diag_edit_distance("dimm", "dim", 3), 1);
  assert_int_equal(diag_edit_distance("dim", "dimm", 3), 1);
  assert_int_equal(diag_edit_distance("heads", "haeds", 3), 1);  // a transposition is one edit
  assert_int_equal(diag_edit_distance("ab", "ba", 3), 1);
  assert_int_equal(diag_edit_distance("abcd", "badc", 3), 2);
  assert_int_equal(diag_edit_distance("ca", "abc", 5), 3);  // optimal string alignment, not Damerau
  assert_int_equal(diag_edit_distance("", "abc", 5), 3);
  assert_int_equal(diag_edit_distance("abc", "", 5), 3);
  assert_int_equal(diag_edit_distance("", "", 0), 0);
  assert_int_equal(diag_edit_distance("layers", "lyers", 1), 1);
  // above max: max + 1
  assert_int_equal(diag_edit_distance("kitten", "sitting", 2), 3);
  assert_int_equal(diag_edit_distance("abc", "xyz", 1), 2);
  assert_int_equal(diag_edit_distance("a", "abcdefgh", 3), 4);  // length difference alone
  // very long strings are not compared
  char l1[80], l2[80];
  memset(l1, 'a', 79);
  l1[79] = 0;
  memcpy(l2, l1, 80);
  assert_int_equal(diag_edit_distance(l1, l2, 3), 4);
  l1[64] = 0;
  l2[64] = 0;
  l2[10] = 'b';
  assert_int_equal(diag_edit_distance(l1, l2, 3), 1);  // 64 is still compared
}

// ---- dimensions and types ----

typedef struct {
  Arena *a;
  IrSymTab st;
  int B, T, H, S, X;
} Syms;

static void syms_init(Syms *s) {
  memset(s, 0, sizeof *s);
  s->a = arena_new();
  s->B = ir_symtab_intern(&s->st, s->a, "B");
  s->T = ir_symtab_intern(&s->st, s->a, "T");
  s->H = ir_symtab_intern(&s->st, s->a, "H");
  s->S = ir_symtab_intern(&s->st, s->a, "S");
  s->X = ir_symtab_intern(&s->st, s->a, "X");
}

static const char *dstr(Syms *s, IrDim d) {
  static char buf[128];
  return ir_dim_str(d, &s->st, buf, sizeof buf);
}

static void test_symtab(void **state) {
  (void)state;
  Syms s;
  syms_init(&s);
  assert_int_equal(s.B, 0);
  assert_int_equal(s.T, 1);
  assert_int_equal(s.X, 4);
  assert_int_equal(ir_symtab_intern(&s.st, s.a, "T"), 1);  // interned once
  assert_int_equal(s.st.len, 5);
  char name[16];
  int last = 0;
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof name, "S%d", i);
    last = ir_symtab_intern(&s.st, s.a, name);
    if (last < 0) break;
  }
  assert_int_equal(last, -1);  // capped at 4096 names
  assert_int_equal(s.st.len, 4096);
  arena_free(s.a);
}

static void test_dim_mul_div(void **state) {
  (void)state;
  Syms s;
  syms_init(&s);
  IrDim B = ir_dim_sym(s.B), T = ir_dim_sym(s.T), BT, r;
  assert_true(ir_dim_is_const(ir_dim_const(5)));
  assert_false(ir_dim_is_const(B));
  assert_true(ir_dim_mul(B, T, &BT));
  assert_string_equal(dstr(&s, BT), "B*T");
  IrDim TB;
  assert_true(ir_dim_mul(T, B, &TB));
  assert_true(ir_dim_eq(BT, TB));  // symbols are kept sorted
  assert_false(ir_dim_eq(BT, B));
  assert_true(ir_dim_div(BT, T, &r));
  assert_true(ir_dim_eq(r, B));
  assert_string_equal(dstr(&s, r), "B");
  assert_true(ir_dim_div(BT, B, &r));
  assert_true(ir_dim_eq(r, T));
  assert_true(ir_dim_div(BT, BT, &r));
  assert_true(ir_dim_eq(r, ir_dim_const(1)));
  assert_false(ir_dim_div(B, T, &r));  // not a whole product
  assert_false(ir_dim_div(B, BT, &r));

  assert_true(ir_dim_div(ir_dim_const(768), ir_dim_const(12), &r));
  assert_true(ir_dim_eq(r, ir_dim_const(64)));
  assert_false(ir_dim_div(ir_dim_const(7), ir_dim_const(2), &r));
  assert_false(ir_dim_div(ir_dim_const(7), ir_dim_const(0), &r));

  IrDim B3, B3T;
  assert_true(ir_dim_mul(ir_dim_const(3), B, &B3));
  assert_string_equal(dstr(&s, B3), "3*B");
  assert_true(ir_dim_mul(B3, T, &B3T));
  assert_string_equal(dstr(&s, B3T), "3*B*T");
  assert_true(ir_dim_div(B3T, ir_dim_const(3), &r));
  assert_true(ir_dim_eq(r, BT));
  assert_false(ir_dim_div(B3T, ir_dim_const(2), &r));
  assert_true(ir_dim_div(B3T, B3, &r));
  assert_true(ir_dim_eq(r, T));

  // T*T is a square, and / T leaves T
  IrDim TT;
  assert_true(ir_dim_mul(T, T, &TT));
  assert_string_equal(dstr(&s, TT), "T*T");
  assert_true(ir_dim_div(TT, T, &r));
  assert_true(ir_dim_eq(r, T));

  // constant overflow fails
  assert_false(ir_dim_mul(ir_dim_const(INT64_MAX), ir_dim_const(2), &r));
  assert_false(ir_dim_mul(ir_dim_const((int64_t)1 << 32), ir_dim_const((int64_t)1 << 32), &r));
  IrDim big;
  assert_true(ir_dim_mul(ir_dim_const((int64_t)1 << 62), B, &big));
  assert_false(ir_dim_mul(big, ir_dim_const(4), &r));
  assert_true(ir_dim_mul(ir_dim_const(1 << 20), ir_dim_const(1 << 20), &r));
  assert_int_equal(r.n, (int64_t)1 << 40);

  // more than IR_MAX_DIMSYM symbols fails
  IrDim m = B, x;
  int syms[] = {s.T, s.H, s.S};
  for (int i = 0; i < 3; i++) {
    assert_true(ir_dim_mul(m, ir_dim_sym(syms[i]), &x));
    m = x;
  }
  assert_int_equal(m.nsym, 4);
  assert_string_equal(dstr(&s, m), "B*T*H*S");
  assert_false(ir_dim_mul(m, ir_dim_sym(s.X), &x));

  // zero absorbs symbols
  assert_true(ir_dim_mul(ir_dim_const(0), BT, &r));
  assert_true(ir_dim_eq(r, ir_dim_const(0)));
  arena_free(s.a);
}

static void test_dim_str(void **state) {
  (void)state;
  Syms s;
  syms_init(&s);
  assert_string_equal(dstr(&s, ir_dim_const(768)), "768");
  assert_string_equal(dstr(&s, ir_dim_const(-1)), "-1");
  assert_string_equal(dstr(&s, ir_dim_sym(s.T)), "T");
  char buf[64];
  assert_string_equal(ir_dim_str(ir_dim_sym(s.T), NULL, buf, sizeof buf), "?");  // no table
  assert_string_equal(ir_dim_str(ir_dim_sym(99), &s.st, buf, sizeof buf), "?");  // unknown symbol
  arena_free(s.a);
}

static void test_type_str(void **state) {
  (void)state;
  Syms s;
  syms_init(&s);
  char buf[128];
  IrType t = {.dt = IR_F32, .rank = 3, .dim = {ir_dim_sym(s.B), ir_dim_sym(s.T), ir_dim_const(768)}};
  assert_string_equal(ir_type_str(&t, &s.st, true, buf, sizeof buf), "f32[B, T, 768]");
  assert_string_equal(ir_type_str(&t, &s.st, false, buf, sizeof buf), "[B, T, 768]");
  IrType sc = {.dt = IR_I32};
  assert_string_equal(ir_type_str(&sc, &s.st, true, buf, sizeof buf), "i32[]");
  IrType m = {.dt = IR_BF16, .rank = 2};
  assert_true(ir_dim_mul(ir_dim_sym(s.B), ir_dim_sym(s.T), &m.dim[0]));
  m.dim[1] = ir_dim_const(64);
  assert_string_equal(ir_type_str(&m, &s.st, true, buf, sizeof buf), "bf16[B*T, 64]");
  IrType b = {.dt = IR_BOOL, .rank = 1, .dim = {ir_dim_const(1)}};
  assert_string_equal(ir_type_str(&b, &s.st, true, buf, sizeof buf), "bool[1]");
  // small buffers truncate and stay terminated
  char tiny[8];
  memset(tiny, 'z', sizeof tiny);
  ir_type_str(&t, &s.st, true, tiny, sizeof tiny);
  assert_int_equal(strlen(tiny), 7);
  assert_memory_equal(tiny, "f32[B, ", 7);
  char one[1] = {'z'};
  ir_type_str(&t, &s.st, true, one, 1);
  assert_int_equal(one[0], 0);

  // type equality
  IrType u = t;
  assert_true(ir_type_eq(&t, &u));
  u.dim[2] = ir_dim_const(769);
  assert_false(ir_type_eq(&t, &u));
  u = t;
  u.dt = IR_F16;
  assert_false(ir_type_eq(&t, &u));
  u = t;
  u.rank = 2;
  assert_false(ir_type_eq(&t, &u));
  arena_free(s.a);
}

static void test_dtypes(void **state) {
  (void)state;
  assert_int_equal(ir_dtype_from_name("f32"), IR_F32);
  assert_int_equal(ir_dtype_from_name("bf16"), IR_BF16);
  assert_int_equal(ir_dtype_from_name("bool"), IR_BOOL);
  assert_int_equal(ir_dtype_from_name("u8"), IR_U8);
  assert_int_equal(ir_dtype_from_name("f64"), -1);
  assert_int_equal(ir_dtype_from_name("F32"), -1);
  assert_int_equal(ir_dtype_from_name(""), -1);
  assert_int_equal(ir_dtype_info[IR_F16].size, 2);
  assert_int_equal(ir_dtype_info[IR_I64].size, 8);
  assert_true(ir_dtype_info[IR_BF16].is_float);
  assert_false(ir_dtype_info[IR_I32].is_float);
  assert_true(ir_dtype_info[IR_I8].is_int);
  assert_false(ir_dtype_info[IR_BOOL].is_int);
  assert_false(ir_dtype_info[IR_BOOL].is_float);
  for (int i = 0; i < IR_DT_COUNT; i++) assert_int_equal(ir_dtype_from_name(ir_dtype_info[i].name), i);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arena_alignment),   cmocka_unit_test(test_arena_zero_size),
      cmocka_unit_test(test_arena_zeroing),     cmocka_unit_test(test_arena_large),
      cmocka_unit_test(test_arena_strings),     cmocka_unit_test(test_vec_push_growth),
      cmocka_unit_test(test_diag_basic),        cmocka_unit_test(test_diag_second_file),
      cmocka_unit_test(test_diag_no_location),  cmocka_unit_test(test_diag_tabs),
      cmocka_unit_test(test_diag_utf8_and_control), cmocka_unit_test(test_diag_nul_in_line),
      cmocka_unit_test(test_diag_column_past_end), cmocka_unit_test(test_diag_long_line),
      cmocka_unit_test(test_diag_error_limit),  cmocka_unit_test(test_diag_finish_summary),
      cmocka_unit_test(test_diag_out_stream),   cmocka_unit_test(test_edit_distance),
      cmocka_unit_test(test_symtab),            cmocka_unit_test(test_dim_mul_div),
      cmocka_unit_test(test_dim_str),           cmocka_unit_test(test_type_str),
      cmocka_unit_test(test_dtypes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
