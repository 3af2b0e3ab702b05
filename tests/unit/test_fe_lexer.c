// tests/unit/test_fe_lexer.c: the tokenizer (frontend/lexer.l, lex.c),
// observed through fe_parse: the AST listing shows what each literal became
// and where, the diagnostic log shows lexical errors with LINE:COL.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

// Parses "config {\n  a = LIT\n}\n" and returns the AST listing (malloc'd),
// asserting that there were no diagnostics.
static char *config_ast(const char *lit) {
  char src[512];
  snprintf(src, sizeof src, "config {\n  a = %s\n}\n", lit);
  FeT t;
  const char *log = fet_parse(&t, src);
  if (log) fail_msg("unexpected diagnostics for '%s':\n%s", lit, log);
  assert_int_equal(t.ast->nsyntax_errors, 0);
  char *s = fet_ast_str(&t);
  fet_free(&t);
  return s;
}

// Asserts that LIT lexes to the AST node text want at 2:7.
static void expect_literal(const char *lit, const char *want) {
  char *s = config_ast(lit);
  char line[256];
  snprintf(line, sizeof line, "\n      %s  @2:7\n", want);
  assert_contains(s, line);
  free(s);
}

// Parses "config {\n  a = LIT\n}\n", asserts exactly one error, and that
// the log contains want.
static void expect_literal_error(const char *lit, const char *want) {
  char src[512];
  snprintf(src, sizeof src, "config {\n  a = %s\n}\n", lit);
  FeT t;
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_true(t.ast->nsyntax_errors >= 1);
  assert_contains(fet_log(&t), want);
  fet_free(&t);
}

static void test_integers(void **state) {
  (void)state;
  expect_literal("42", "int 42");
  expect_literal("0", "int 0");
  expect_literal("007", "int 7");  // decimal, not octal
  expect_literal("9223372036854775807", "int 9223372036854775807");
  expect_literal_error("99999999999999999999",
                       "t.heed:2:7: error: integer literal '99999999999999999999' is too large (the limit is "
                       "9223372036854775807)\n"
                       "    a = 99999999999999999999\n"
                       "        ^\n");
  expect_literal_error("9223372036854775808", "t.heed:2:7: error: integer literal '9223372036854775808' is too large");
}

static void test_floats(void **state) {
  (void)state;
  expect_literal("1e-5", "float 1e-05");
  expect_literal(".5", "float 0.5");
  expect_literal("3.", "float 3");
  expect_literal("0.02", "float 0.02");
  expect_literal("2.5e+3", "float 2500");
  expect_literal("1E3", "float 1000");
  expect_literal("1.e5", "float 100000");
  expect_literal(".25e1", "float 2.5");
  expect_literal("6e-4", "float 0.0006");
  expect_literal_error("1e999", "t.heed:2:7: error: float literal '1e999' is out of range");
}

static void test_invalid_numbers(void **state) {
  (void)state;
  expect_literal_error("0x10", "t.heed:2:7: error: invalid number '0x10'");
  expect_literal_error("12abc", "t.heed:2:7: error: invalid number '12abc'");
  expect_literal_error("1.2.3", "t.heed:2:7: error: invalid number '1.2.3'");
  expect_literal_error("1e", "t.heed:2:7: error: invalid number '1e'");
  expect_literal_error("2.5e3x", "t.heed:2:7: error: invalid number '2.5e3x'");
}

static void test_negative_is_unary(void **state) {
  (void)state;
  char *s = config_ast("-3");
  assert_contains(s, "      negate  @2:7\n        int 3  @2:8\n");
  free(s);
}

static void test_identifiers(void **state) {
  (void)state;
  FeT t;
  const char *src =
      "config {\n"
      "  _a1 = 1\n"
      "  A_B = _a1\n"
      "  configx = 2\n"
      "  model_ = 3\n"
      "  returns = 4\n"
      "  f32 = 5\n"
      "  x9_Z = trueish\n"
      "}\n";
  assert_null(fet_parse(&t, src));
  char *s = fet_ast_str(&t);
  assert_contains(s, "    bind _a1  @2:3\n");
  assert_contains(s, "    bind A_B  @3:3\n      name _a1  @3:9\n");
  assert_contains(s, "    bind configx  @4:3\n");  // a keyword prefix is still an identifier
  assert_contains(s, "    bind model_  @5:3\n");
  assert_contains(s, "    bind returns  @6:3\n");
  assert_contains(s, "    bind f32  @7:3\n");     // dtypes are names, not keywords
  assert_contains(s, "    bind x9_Z  @8:3\n      name trueish  @8:10\n");
  free(s);
  fet_free(&t);
}

static void test_keywords(void **state) {
  (void)state;
  FeT t;
  assert_null(fet_parse(&t, "config {\n  t = true\n  f = false\n}\n"));
  char *s = fet_ast_str(&t);
  assert_contains(s, "bind t  @2:3\n      bool true  @2:7\n");
  assert_contains(s, "bind f  @3:3\n      bool false  @3:7\n");
  free(s);
  fet_free(&t);

  // keywords cannot be names
  const char *kws[] = {"config", "block", "model", "param", "buffer", "forward", "train", "return"};
  for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++) {
    char src[128], want[128];
    snprintf(src, sizeof src, "config {\n  x = %s\n}\n", kws[i]);
    snprintf(want, sizeof want, "t.heed:2:7: error: syntax error: unexpected '%s'", kws[i]);
    fet_parse(&t, src);
    assert_true(t.d.nerr >= 1);
    assert_contains(fet_log(&t), want);
    fet_free(&t);
  }
  fet_parse(&t, "config {\n  return = 1\n}\n");
  assert_contains(fet_log(&t), "t.heed:2:3: error: syntax error: unexpected 'return', expected ");
  fet_free(&t);
}

static void test_comments(void **state) {
  (void)state;
  FeT t;
  const char *src =
      "// leading comment\n"
      "config { // after a brace\n"
      "  a = 1 // trailing\n"
      "  /* block */ b = 2\n"
      "  /* multi\n"
      "     line ** / * still comment\n"
      "  */ c = 3\n"
      "  d = /* inside */ 4\n"
      "  /* /* not nested */ e = 5\n"
      "  f = 6 /***/\n"
      "  //* line comment, not a block\n"
      "  g = 7 // no newline at the end of the file follows}\n"
      "}";
  const char *log = fet_parse(&t, src);
  if (log) fail_msg("%s", log);
  char *s = fet_ast_str(&t);
  assert_contains(s, "bind a  @3:3\n      int 1  @3:7\n");
  assert_contains(s, "bind b  @4:15\n      int 2  @4:19\n");
  assert_contains(s, "bind c  @7:6\n      int 3  @7:10\n");  // lines counted inside the comment
  assert_contains(s, "bind d  @8:3\n      int 4  @8:20\n");
  assert_contains(s, "bind e  @9:23\n");
  assert_contains(s, "bind f  @10:3\n");
  assert_contains(s, "bind g  @12:3\n");
  assert_int_equal(t.ast->ndecls, 1);
  assert_int_equal(t.ast->decls[0]->nitems, 7);
  free(s);
  fet_free(&t);
}

static void test_unterminated_comment(void **state) {
  (void)state;
  FeT t;
  // at the top level: exactly one error, at the comment start
  fet_parse(&t, "config {\n  a = 1\n}\n  /* open\n x = 1\n");
  assert_int_equal(t.d.nerr, 1);
  assert_string_equal(fet_log(&t),
                      "t.heed:4:3: error: unterminated comment: '/*' without '*/'\n"
                      "    /* open\n"
                      "    ^\n");
  assert_int_equal(t.ast->ndecls, 1);  // what came before is kept
  fet_free(&t);
  // inside a block: the first error is the comment's
  fet_parse(&t, "config {\n  a = 1 /* open\n}\n");
  assert_true(t.d.nerr >= 1);
  assert_starts_with(fet_log(&t), "t.heed:2:9: error: unterminated comment: '/*' without '*/'\n");
  fet_free(&t);
  // "/*/" does not close itself
  fet_parse(&t, "/*/ config {}");
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "t.heed:1:1: error: unterminated comment");
  fet_free(&t);
}

static void test_strings(void **state) {
  (void)state;
  expect_literal("\"hello\"", "string \"hello\"");
  expect_literal("\"\"", "string \"\"");
  expect_literal("\"a \\\" b\"", "string \"a \" b\"");   // \" becomes "
  expect_literal("\"x\\\\y\"", "string \"x\\y\"");        // \\ becomes \ .
  expect_literal("\"x\\ny\"", "string \"x\\ny\"");        // other escapes are kept as written
  expect_literal("\"// not a comment\"", "string \"// not a comment\"");
  FeT t;
  fet_parse(&t, "config {\n  a = \"abc\n  b = 2\n}\n");
  assert_int_equal(t.d.nerr, 1);
  assert_string_equal(fet_log(&t),
                      "t.heed:2:7: error: unterminated string: '\"' without a closing '\"' on the same line\n"
                      "    a = \"abc\n"
                      "        ^\n");
  char *s = fet_ast_str(&t);
  assert_contains(s, "bind b  @3:3\n");  // lexing goes on at the next line
  free(s);
  fet_free(&t);
}

static void test_unexpected_characters(void **state) {
  (void)state;
  FeT t;
  fet_parse(&t, "config {\n  a = 1 # x\n}\n");
  assert_true(t.d.nerr >= 1);
  assert_starts_with(fet_log(&t),
                     "t.heed:2:9: error: '#' does not start a comment in heed; comments start with '//'\n"
                     "    a = 1 # x\n"
                     "          ^\n");
  fet_free(&t);

  fet_parse(&t, "config {\n  a = $\n}\n");
  assert_string_equal(fet_log(&t),
                      "t.heed:2:7: error: unexpected character '$'\n"
                      "    a = $\n"
                      "        ^\n"
                      "t.heed:3:1: error: syntax error: unexpected '}', expected an expression or 'repeat'\n"
                      "  }\n"
                      "  ^\n");
  fet_free(&t);

  fet_parse(&t, "config {\n  a = 1 % 2\n}\n");
  assert_contains(fet_log(&t), "t.heed:2:9: error: unexpected character '%'; operators are + - * / @\n");
  fet_free(&t);
  fet_parse(&t, "config {\n  a = 'x'\n}\n");
  assert_contains(fet_log(&t), "t.heed:2:7: error: strings use double quotes (\"...\"), not single quotes\n");
  fet_free(&t);
  fet_parse(&t, "config {\n  a = 1\x01\n  b = \x7f 2\n}\n");
  assert_contains(fet_log(&t), "t.heed:2:8: error: unexpected control character (byte 0x01)\n");
  assert_contains(fet_log(&t), "t.heed:3:7: error: unexpected control character (byte 0x7f)\n");
  fet_free(&t);
}

static void test_non_ascii(void **state) {
  (void)state;
  FeT t;
  // one error per run of non-ASCII bytes, at its first byte
  fet_parse(&t, "config {\n  a = 1 \xc3\xa9\xc3\xa9\xc3\xa9\n  b = 2\n}\n");
  assert_int_equal(t.d.nerr, 1);
  assert_string_equal(fet_log(&t),
                      "t.heed:2:9: error: unexpected non-ASCII character (byte 0xc3); identifiers and operators "
                      "are ASCII\n"
                      "    a = 1 \xc3\xa9\xc3\xa9\xc3\xa9\n"
                      "          ^\n");
  fet_free(&t);
  // non-ASCII inside comments and strings is fine
  assert_null(fet_parse(&t, "// caf\xc3\xa9\nconfig {\n  a = \"\xe2\x82\xac\" /* \xff */\n}\n"));
  fet_free(&t);
  // a UTF-8 byte-order mark is skipped at the start of the file (Windows
  // editors write one), and an error anywhere else
  assert_null(fet_parse(&t, "\xef\xbb\xbf" "config {\n}\n"));
  fet_free(&t);
  fet_parse(&t, "config {\n}\n\xef\xbb\xbf");
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "t.heed:3:1: error: unexpected byte-order mark (U+FEFF) inside the file");
  fet_free(&t);
}

static void test_nul_bytes(void **state) {
  (void)state;
  FeT t;
  static const char src[] = "config {\n  a = 1\0\n  b = 2\n}\n";
  fet_parse_n(&t, src, sizeof src - 1);
  assert_int_equal(t.d.nerr, 1);
  assert_string_equal(fet_log(&t), "t.heed:2:8: error: unexpected NUL byte\n    a = 1?\n         ^\n");
  char *s = fet_ast_str(&t);
  assert_contains(s, "bind b  @3:3\n");  // the NUL does not end the input
  free(s);
  fet_free(&t);

  static const char nuls[] = "\0\0\0";
  fet_parse_n(&t, nuls, 3);
  assert_int_equal(t.d.nerr, 3);
  assert_contains(fet_log(&t), "t.heed:1:1: error: unexpected NUL byte\n");
  assert_contains(fet_log(&t), "t.heed:1:3: error: unexpected NUL byte\n");
  fet_free(&t);

  // a NUL right after the last token
  static const char tail[] = "config {\n}\0";
  fet_parse_n(&t, tail, sizeof tail - 1);
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "t.heed:2:2: error: unexpected NUL byte\n");
  assert_int_equal(t.ast->ndecls, 1);
  fet_free(&t);
}

static void test_overlong_identifier(void **state) {
  (void)state;
  enum { N = 100000 };
  char *src = malloc(N + 64);
  strcpy(src, "config {\n  ");
  size_t k = strlen(src);
  memset(src + k, 'a', N);
  strcpy(src + k + N, " = 1\n}\n");
  FeT t;
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_starts_with(fet_log(&t), "t.heed:2:3: error: identifier too long (100000 characters; the limit is 256)\n");
  assert_true(strlen(fet_log(&t)) < 1000);  // the source line is shown as a window
  fet_free(&t);

  // exactly at the limit is fine, one more is not
  memset(src + k, 'b', 256);
  strcpy(src + k + 256, " = 1\n}\n");
  assert_null(fet_parse(&t, src));
  assert_int_equal(strlen(t.ast->decls[0]->items[0]->name), 256);
  fet_free(&t);
  memset(src + k, 'b', 257);
  strcpy(src + k + 257, " = 1\n}\n");
  fet_parse(&t, src);
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "identifier too long (257 characters; the limit is 256)");
  fet_free(&t);

  // several overlong names: one error each, no crash
  char *many = malloc(4 * (N / 4 + 8) + 64);
  strcpy(many, "config {\n");
  for (int i = 0; i < 4; i++) {
    size_t n = strlen(many);
    memset(many + n, (char)('c' + i), N / 4);
    strcpy(many + n + N / 4, " = 1\n");
  }
  strcat(many, "}\n");
  fet_parse(&t, many);
  assert_int_equal(t.d.nerr, 4);
  assert_int_equal(count_substr(fet_log(&t), "identifier too long (25000 characters"), 4);
  fet_free(&t);
  free(many);
  free(src);
}

static void test_line_column_tracking(void **state) {
  (void)state;
  FeT t;
  // CR LF line ends, tabs (one column each), blank lines
  const char *src = "\r\n\r\nconfig {\r\n\ta = 1\r\n\t\t  b   =\t2\r\n\r\n}\r\n";
  assert_null(fet_parse(&t, src));
  char *s = fet_ast_str(&t);
  assert_contains(s, "  config  @3:1\n");
  assert_contains(s, "    bind a  @4:2\n      int 1  @4:6\n");
  assert_contains(s, "    bind b  @5:5\n      int 2  @5:11\n");
  free(s);
  fet_free(&t);

  // errors late in a file carry the right line and column
  fet_parse(&t, "config {\n\n\n\n  /*\n\n*/\n    a = 1 @@ 2\n}\n");
  assert_contains(fet_log(&t), "t.heed:8:12: error: syntax error: unexpected '@', expected an expression\n");
  fet_free(&t);

  // a NUL byte takes one column
  static const char nul[] = "config {\n\0 a = 1\n}\n";
  fet_parse_n(&t, nul, sizeof nul - 1);
  s = fet_ast_str(&t);
  assert_contains(s, "bind a  @2:3\n      int 1  @2:7\n");
  free(s);
  fet_free(&t);
}

static void test_empty_inputs(void **state) {
  (void)state;
  FeT t;
  assert_null(fet_parse(&t, ""));
  assert_int_equal(t.ast->ndecls, 0);
  assert_int_equal(t.ast->nsyntax_errors, 0);
  fet_free(&t);
  assert_null(fet_parse(&t, "\n\n   // only a comment\n/* and another */\n\t\n"));
  assert_int_equal(t.ast->ndecls, 0);
  fet_free(&t);
}

static void test_explicit_length(void **state) {
  (void)state;
  FeT t;
  // the length, not a NUL, ends the text: "config {}" cut after "config"
  fet_parse_n(&t, "config {}", 6);
  assert_int_equal(t.d.nerr, 1);
  assert_contains(fet_log(&t), "t.heed:1:7: error: syntax error: unexpected end of file, expected '{'");
  fet_free(&t);
  assert_null(fet_parse_n(&t, "config {}garbage", 9));
  assert_int_equal(t.ast->ndecls, 1);
  fet_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_integers),          cmocka_unit_test(test_floats),
      cmocka_unit_test(test_invalid_numbers),   cmocka_unit_test(test_negative_is_unary),
      cmocka_unit_test(test_identifiers),       cmocka_unit_test(test_keywords),
      cmocka_unit_test(test_comments),          cmocka_unit_test(test_unterminated_comment),
      cmocka_unit_test(test_strings),           cmocka_unit_test(test_unexpected_characters),
      cmocka_unit_test(test_non_ascii),         cmocka_unit_test(test_nul_bytes),
      cmocka_unit_test(test_overlong_identifier), cmocka_unit_test(test_line_column_tracking),
      cmocka_unit_test(test_empty_inputs),      cmocka_unit_test(test_explicit_length),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
