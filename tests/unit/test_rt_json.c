// tests/unit/test_rt_json.c: the runtime's JSON reader and quoter
// (runtime/json.c), which reads every safetensors header: the tree it
// builds, numbers and escapes decoded as RFC 8259 says, every departure
// from the grammar refused with its position, the nesting bound, and
// rt_json_quote round-tripping through the parser. Links heedrt only.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

static RtJson *parse_ok(RtJsonDoc *doc, const char *text) {
  size_t end;
  const char *why;
  int rc = rt_json_parse(doc, text, strlen(text), &end, &why);
  if (rc) fail_msg("'%s': %s at %zu", text, why, end);
  return doc->root;
}

static void test_tree(void **state) {
  (void)state;
  RtJsonDoc doc;
  const RtJson *r = parse_ok(&doc, " {\"a\" : [1, \"x\", true, false, null, {}, []], \"b\":{\"c\":-2.5e1}} ");
  assert_int_equal(r->kind, RT_JSON_OBJECT);
  assert_int_equal(r->n, 2);
  const RtJson *a = rt_json_get(r, "a"), *b = rt_json_get(r, "b");
  assert_non_null(a);
  assert_int_equal(a->kind, RT_JSON_ARRAY);
  assert_int_equal(a->n, 7);
  const RtJson *e = a->child;
  RtJsonKind kinds[] = {RT_JSON_NUMBER, RT_JSON_STRING, RT_JSON_TRUE, RT_JSON_FALSE, RT_JSON_NULL, RT_JSON_OBJECT,
                        RT_JSON_ARRAY};
  for (int i = 0; i < 7; i++, e = e->next) {
    assert_non_null(e);
    assert_int_equal(e->kind, kinds[i]);
    assert_null(e->key);
  }
  assert_null(e);
  assert_true(a->child->num == 1.0);
  assert_string_equal(a->child->next->str, "x");
  assert_true(rt_json_get(b, "c")->num == -25.0);
  assert_null(rt_json_get(r, "z"));
  assert_null(rt_json_get(a, "a"));  // not an object
  assert_string_equal(rt_json_kind_name(a), "an array");
  assert_string_equal(rt_json_kind_name(b), "an object");
  assert_string_equal(rt_json_kind_name(a->child->next->next), "a boolean");
  rt_json_free(&doc);
  rt_json_free(&doc);  // harmless twice

  // duplicate keys are kept in order; scalars at the top level are values
  r = parse_ok(&doc, "{\"k\":1,\"k\":2}");
  assert_int_equal(r->n, 2);
  assert_true(r->child->num == 1 && r->child->next->num == 2);
  rt_json_free(&doc);
  r = parse_ok(&doc, "\"s\"");
  assert_int_equal(r->kind, RT_JSON_STRING);
  rt_json_free(&doc);
}

static void test_numbers(void **state) {
  (void)state;
  const struct {
    const char *text;
    double want;
  } ok[] = {{"0", 0},          {"-0", -0.0},        {"7", 7},          {"123456789", 123456789},
            {"1.5", 1.5},      {"-0.25", -0.25},    {"1e3", 1000},     {"1E+3", 1000},
            {"25e-1", 2.5},    {"9007199254740993", 9007199254740992.0},  // rounds as strtod does
            {"1e999", INFINITY}, {"-1e999", -INFINITY}, {"1e-999", 0}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    RtJsonDoc doc;
    const RtJson *r = parse_ok(&doc, ok[i].text);
    assert_int_equal(r->kind, RT_JSON_NUMBER);
    if (r->num != ok[i].want) fail_msg("'%s' gave %.17g, want %.17g", ok[i].text, r->num, ok[i].want);
    rt_json_free(&doc);
  }
  // a long number (past the parser's small buffer)
  char longnum[400];
  memset(longnum, '1', 300);
  strcpy(longnum + 300, ".5");
  RtJsonDoc doc;
  assert_true(parse_ok(&doc, longnum)->num > 1e299);
  rt_json_free(&doc);
}

static void test_strings(void **state) {
  (void)state;
  const struct {
    const char *text, *want;
  } ok[] = {
      {"\"\"", ""},
      {"\"a\\\"b\\\\c\\/d\"", "a\"b\\c/d"},
      {"\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t"},
      {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac"},
      {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},  // a surrogate pair
      {"\"\\u0001\"", "\x01"},
      {"\"\xc3\xa9 raw UTF-8\"", "\xc3\xa9 raw UTF-8"},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    RtJsonDoc doc;
    const RtJson *r = parse_ok(&doc, ok[i].text);
    assert_int_equal(r->kind, RT_JSON_STRING);
    assert_string_equal(r->str, ok[i].want);
    rt_json_free(&doc);
  }
}

static void expect_bad(const char *text, size_t len, size_t at, const char *why) {
  RtJsonDoc doc;
  size_t end = 12345;
  const char *w = NULL;
  int rc = rt_json_parse(&doc, text, len, &end, &w);
  if (rc == RT_OK) fail_msg("'%s' was accepted", text);
  assert_int_equal(rc, RT_ERR_FORMAT);
  assert_null(doc.root);
  assert_null(doc.chunks_);
  assert_non_null(w);
  if (!strstr(w, why)) fail_msg("'%s': reason '%s' does not contain '%s'", text, w, why);
  if (at != (size_t)-1 && end != at) fail_msg("'%s': error at %zu, want %zu (%s)", text, end, at, w);
}
#define BAD(s, at, why) expect_bad(s, strlen(s), at, why)

static void test_rejects(void **state) {
  (void)state;
  BAD("", 0, "ends where a value should be");
  BAD("   ", 3, "ends where a value should be");
  BAD("{", 1, "expected a string key");
  BAD("{\"a\"", 4, "expected ':'");
  BAD("{\"a\" 1}", 5, "expected ':'");
  BAD("{\"a\":", 5, "ends where a value");
  BAD("{\"a\":1", 6, "expected ',' or '}'");
  BAD("{\"a\":1,}", 7, "expected a string key");  // trailing comma
  BAD("[1,2,]", 5, "not a JSON value");
  BAD("[1 2]", 3, "expected ',' or ']'");
  BAD("[1}", 2, "expected ',' or ']'");
  BAD("{a:1}", 1, "expected a string key");
  BAD("{'a':1}", 1, "expected a string key");
  BAD("// c\n{}", 0, "not a JSON value");
  BAD("tru", 0, "not a JSON value");
  BAD("nul", 0, "not a JSON value");
  BAD("True", 0, "not a JSON value");
  BAD("+1", 0, "not a JSON value");
  BAD(".5", 0, "not a JSON value");
  BAD("01", 1, "leading zero");
  BAD("-", 1, "needs a digit");
  BAD("1.", 2, "must follow the decimal point");
  BAD("1.e3", 2, "must follow the decimal point");
  BAD("1e", 2, "exponent needs a digit");
  BAD("1e+", 3, "exponent needs a digit");
  BAD("NaN", 0, "not a JSON value");
  BAD("Infinity", 0, "not a JSON value");
  BAD("\"abc", (size_t)-1, "unterminated string");
  BAD("\"abc\\\"", (size_t)-1, "unterminated string");
  BAD("\"a\tb\"", 2, "control character");
  BAD("\"a\nb\"", 2, "control character");
  BAD("\"\\x\"", 2, "unknown escape");
  BAD("\"\\u12\"", (size_t)-1, "four hex digits");
  BAD("\"\\u12g4\"", (size_t)-1, "four hex digits");
  BAD("\"\\udc00\"", (size_t)-1, "lone low surrogate");
  BAD("\"\\ud800\"", (size_t)-1, "without its low half");
  BAD("\"\\ud800\\u0041\"", (size_t)-1, "without its low half");
  BAD("\"\\u0000\"", (size_t)-1, "\\u0000");
  expect_bad("\"a\0b\"", 5, 2, "control character");  // NUL bytes are control characters
  expect_bad("[1, 2]", 4, 4, "ends where a value");    // the length bounds the text, not a NUL
  // nesting: up to RT_JSON_MAX_DEPTH containers are fine, one more is not
  char deep[2 * RT_JSON_MAX_DEPTH + 8];
  memset(deep, '[', RT_JSON_MAX_DEPTH);
  memset(deep + RT_JSON_MAX_DEPTH, ']', RT_JSON_MAX_DEPTH);
  deep[2 * RT_JSON_MAX_DEPTH] = 0;
  RtJsonDoc doc;
  parse_ok(&doc, deep);
  rt_json_free(&doc);
  memset(deep, '[', RT_JSON_MAX_DEPTH + 1);
  deep[RT_JSON_MAX_DEPTH + 1] = 0;
  BAD(deep, RT_JSON_MAX_DEPTH + 1, "nested too deeply");
  // the parser stops after one value: the caller sees what follows
  size_t end;
  assert_int_equal(rt_json_parse(&doc, "{} x", 4, &end, NULL), RT_OK);
  assert_int_equal(end, 2);
  rt_json_free(&doc);
  assert_int_equal(rt_json_parse(&doc, NULL, 0, NULL, NULL), RT_ERR_FORMAT);
}

static void test_quote_round_trip(void **state) {
  (void)state;
  const char *cases[] = {"", "plain", "q\"uote", "back\\slash", "\b\f\n\r\t", "\x01\x1f\x7f",
                         "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "/"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = rt_json_quote(NULL, cases[i]);
    char *q = malloc(n + 1);
    assert_int_equal(rt_json_quote(q, cases[i]), n);
    q[n] = 0;
    for (size_t k = 0; k < n; k++) assert_true((unsigned char)q[k] >= 0x20);  // no raw control characters
    RtJsonDoc doc;
    const RtJson *r = parse_ok(&doc, q);
    assert_string_equal(r->str, cases[i]);
    rt_json_free(&doc);
    free(q);
  }
  char q[32];
  size_t n = rt_json_quote(q, "a\"\n\x01");
  q[n] = 0;
  assert_string_equal(q, "\"a\\\"\\n\\u0001\"");  // serde_json's spelling
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tree),    cmocka_unit_test(test_numbers),          cmocka_unit_test(test_strings),
      cmocka_unit_test(test_rejects), cmocka_unit_test(test_quote_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
