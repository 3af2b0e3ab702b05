// tests/unit/test_rt_tokenizer.c: the generation runtime (runtime/
// tokenizer.c, sample.c, generate.c), linked alone (heedrt, no ir/): the
// byte and GPT-2 BPE tokenizers (known GPT-2 ids, round trips, ids against
// the independent Python encoder tests/ref/bpe_ref.py), malformed
// tokenizer files, seeded sampling (splitmix64 reference values,
// determinism, greedy, top-k, top-p, frequencies) and the generation loop
// on a fake model (context limit, bad prompts, a failing model).
// argv[1]: the GPT-2 tokenizer directory; argv[2]: bpe_ref.py's output.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

static const char *tok_dir, *ref_path;
static RtTokenizer *gpt2;
static char err[512];

static int setup(void **state) {
  (void)state;
  return rt_tok_bpe_open(tok_dir, &gpt2, err, sizeof err) == RT_OK ? 0 : (fprintf(stderr, "%s\n", err), -1);
}
static int teardown(void **state) {
  (void)state;
  rt_tok_free(gpt2);
  return 0;
}

// The concatenated bytes of ids (malloc'd, *len).
static char *detok(const RtTokenizer *t, const int32_t *ids, int64_t n, size_t *len) {
  char *s = malloc(16 * (size_t)n + 1);
  size_t o = 0;
  for (int64_t i = 0; i < n; i++) {
    size_t l;
    const char *b = rt_tok_decode(t, ids[i], &l);
    assert_non_null(b);
    memcpy(s + o, b, l);
    o += l;
  }
  *len = o;
  return s;
}

static void roundtrip(const RtTokenizer *t, const char *text, size_t len) {
  int32_t *ids;
  int64_t n;
  assert_int_equal(rt_tok_encode(t, text, len, &ids, &n, err, sizeof err), RT_OK);
  size_t l;
  char *back = detok(t, ids, n, &l);
  assert_int_equal(l, len);
  assert_memory_equal(back, text, len);
  free(back);
  free(ids);
}

static void test_bytes(void **state) {
  (void)state;
  RtTokenizer *t = rt_tok_bytes();
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)(255 - i);
  int32_t *ids;
  int64_t n;
  assert_int_equal(rt_tok_encode(t, all, 256, &ids, &n, err, sizeof err), RT_OK);
  assert_int_equal(n, 256);
  for (int i = 0; i < 256; i++) assert_int_equal(ids[i], 255 - i);
  free(ids);
  roundtrip(t, all, 256);
  assert_int_equal(rt_tok_vocab(t), 256);
  size_t l;
  assert_null(rt_tok_decode(t, 256, &l));
  rt_tok_free(t);
}

static void test_gpt2_known(void **state) {
  (void)state;
  assert_int_equal(rt_tok_vocab(gpt2), 50257);
  int32_t *ids;
  int64_t n;
  assert_int_equal(rt_tok_encode(gpt2, "Hello world", 11, &ids, &n, err, sizeof err), RT_OK);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], 15496);
  assert_int_equal(ids[1], 995);
  free(ids);
  size_t l;
  const char *s = rt_tok_decode(gpt2, 995, &l);
  assert_int_equal(l, 6);
  assert_memory_equal(s, " world", 6);
  s = rt_tok_decode(gpt2, 50256, &l);  // the last id: <|endoftext|>
  assert_int_equal(l, 13);
  assert_memory_equal(s, "<|endoftext|>", 13);
  s = rt_tok_decode(gpt2, 0, &l);  // "!" is id 0
  assert_int_equal(l, 1);
  assert_int_equal(s[0], '!');
  // raw bytes that are not UTF-8 still round-trip (each byte has a token)
  roundtrip(gpt2, "\xff\xfe \x80 abc \xe2\x82", 11);
  assert_int_equal(rt_tok_encode(gpt2, "", 0, &ids, &n, err, sizeof err), RT_OK);
  assert_int_equal(n, 0);
  free(ids);
}

static int hexv(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

static void test_gpt2_reference(void **state) {
  (void)state;
  FILE *f = fopen(ref_path, "r");
  assert_non_null(f);
  char line[8192];
  int checked = 0;
  while (fgets(line, sizeof line, f)) {
    char *tab = strchr(line, '\t');
    assert_non_null(tab);
    size_t len = (size_t)(tab - line) / 2;
    char text[4096];
    for (size_t i = 0; i < len; i++) text[i] = (char)(hexv(line[2 * i]) << 4 | hexv(line[2 * i + 1]));
    int32_t *ids;
    int64_t n, k = 0;
    assert_int_equal(rt_tok_encode(gpt2, text, len, &ids, &n, err, sizeof err), RT_OK);
    for (char *p = tab + 1; *p && *p != '\n'; k++) {
      long want = strtol(p, &p, 10);
      if (k >= n || ids[k] != want) fail_msg("text %.*s: token %lld is %d, want %ld", (int)len, text, (long long)k,
                                             k < n ? ids[k] : -1, want);
    }
    assert_int_equal(k, n);
    roundtrip(gpt2, text, len);
    free(ids);
    checked++;
  }
  fclose(f);
  assert_true(checked >= 30);
}

static void expect_load_error(const char *ej, const char *vb, int rc, const char *msg) {
  RtTokenizer *t = (RtTokenizer *)1;
  assert_int_equal(rt_tok_bpe_from_memory(ej, strlen(ej), vb, strlen(vb), "tk", &t, err, sizeof err), rc);
  assert_null(t);
  if (!strstr(err, msg)) fail_msg("message '%s' lacks '%s'", err, msg);
}

static void test_bad_files(void **state) {
  (void)state;
  RtTokenizer *t;
  assert_int_equal(rt_tok_bpe_open("/nonexistent-dir", &t, err, sizeof err), RT_ERR_IO);
  assert_non_null(strstr(err, "/nonexistent-dir/encoder.json"));
  expect_load_error("[1]", "", RT_ERR_FORMAT, "encoder.json: byte 1: expected '{'");
  expect_load_error("{\"a\": 1,}", "", RT_ERR_FORMAT, "expected a string");
  expect_load_error("{\"a\": -1}", "", RT_ERR_FORMAT, "expected a token id");
  expect_load_error("{\"a\": 1", "", RT_ERR_FORMAT, "expected ',' or '}'");
  expect_load_error("{\"a\\q\": 1}", "", RT_ERR_FORMAT, "bad escape");
  expect_load_error("{\"\\u4e00\": 1}", "", RT_ERR_FORMAT, "outside GPT-2's byte alphabet");
  expect_load_error("{\"a\": 0}", "#version\nab\n", RT_ERR_FORMAT, "vocab.bpe: line 2 is not a merge");
  expect_load_error("{}", "", RT_ERR_FORMAT, "no tokens");
  // a vocabulary without 'c': encoding "abc" names the offset of the piece
  const char *ej = "{\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3}", *vb = "#version: 0.2\na b\n";
  assert_int_equal(rt_tok_bpe_from_memory(ej, strlen(ej), vb, strlen(vb), "tk", &t, err, sizeof err), RT_OK);
  int32_t *ids;
  int64_t n;
  assert_int_equal(rt_tok_encode(t, "ab c", 4, &ids, &n, err, sizeof err), RT_ERR_ARG);  // " c": no 'c'
  assert_non_null(strstr(err, "offset 2"));
  assert_null(ids);
  assert_int_equal(rt_tok_encode(t, "abab a", 6, &ids, &n, err, sizeof err), RT_OK);
  assert_int_equal(n, 4);  // "abab" -> ab ab (every occurrence of the pair), " a" -> Ġ a
  int32_t want[4] = {2, 2, 3, 0};
  assert_memory_equal(ids, want, sizeof want);
  free(ids);
  rt_tok_free(t);
}

// ---- sampling ----

static void test_rng(void **state) {
  (void)state;
  RtRng r;
  rt_rng_seed(&r, 0);  // splitmix64's published first outputs for seed 0
  assert_true(rt_rng_next(&r) == 0xE220A8397B1DCDAFull);
  assert_true(rt_rng_next(&r) == 0x6E789E6AA1B965F4ull);
  rt_rng_seed(&r, 7);
  for (int i = 0; i < 1000; i++) {
    double u = rt_rng_uniform(&r);
    assert_true(u >= 0 && u < 1);
  }
}

static void test_sample(void **state) {
  (void)state;
  float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.5f, 0.0f};
  RtRng r;
  RtSampleOpts greedy = {.temperature = 0, .top_p = 1};
  rt_rng_seed(&r, 1);
  assert_int_equal(rt_sample(l, 6, &greedy, &r, NULL), 1);  // ties: the lowest id
  RtSampleOpts k1 = {.temperature = 1, .top_k = 1, .top_p = 1};
  for (int i = 0; i < 20; i++) assert_int_equal(rt_sample(l, 6, &k1, &r, NULL), 1);
  RtSampleOpts k2 = {.temperature = 1, .top_k = 2, .top_p = 1};
  for (int i = 0; i < 200; i++) {
    int32_t s = rt_sample(l, 6, &k2, &r, NULL);
    assert_true(s == 1 || s == 3);
  }
  RtSampleOpts p = {.temperature = 1, .top_p = 0.6};  // p(1) = p(3) = 0.33: the two of them
  for (int i = 0; i < 200; i++) {
    int32_t s = rt_sample(l, 6, &p, &r, NULL);
    assert_true(s == 1 || s == 3);
  }
  // frequencies: logits (0, log 3) at temperature 1 -> 1/4, 3/4
  float two[2] = {0.0f, (float)log(3.0)};
  RtSampleOpts t1 = {.temperature = 1, .top_p = 1};
  int ones = 0;
  rt_rng_seed(&r, 42);
  for (int i = 0; i < 20000; i++) ones += rt_sample(two, 2, &t1, &r, NULL);
  assert_true(fabs(ones / 20000.0 - 0.75) < 0.015);
  // temperature 2 flattens: (1, sqrt 3) -> 0.634
  RtSampleOpts t2 = {.temperature = 2, .top_p = 1};
  ones = 0;
  for (int i = 0; i < 20000; i++) ones += rt_sample(two, 2, &t2, &r, NULL);
  assert_true(fabs(ones / 20000.0 - sqrt(3.0) / (1 + sqrt(3.0))) < 0.015);
}

static void test_sample_seeded(void **state) {
  (void)state;
  float l[50];
  for (int i = 0; i < 50; i++) l[i] = (float)sin(i * 1.7) * 3;
  RtSampleOpts o = {.temperature = 0.9, .top_k = 20, .top_p = 0.95};
  int32_t a[64], b[64], c[64];
  RtRng r;
  rt_rng_seed(&r, 123);
  for (int i = 0; i < 64; i++) a[i] = rt_sample(l, 50, &o, &r, NULL);
  rt_rng_seed(&r, 123);
  for (int i = 0; i < 64; i++) b[i] = rt_sample(l, 50, &o, &r, NULL);
  rt_rng_seed(&r, 124);
  for (int i = 0; i < 64; i++) c[i] = rt_sample(l, 50, &o, &r, NULL);
  assert_memory_equal(a, b, sizeof a);
  assert_memory_not_equal(a, c, sizeof a);
}

// ---- the generation loop on a fake model: logits favour (last token + 1) % vocab ----

typedef struct {
  int64_t seen, prefills, decodes;
  int32_t last, pre[16];  // pre: the last prefill's tokens
  int fail_at;  // decode call that fails (0: none)
} Fake;

static void fake_logits(Fake *f, float *logits) {
  for (int i = 0; i < 10; i++) logits[i] = i == (f->last + 1) % 10 ? 5.0f : 0.0f;
}
static int fake_prefill(void *ud, const int32_t *t, int64_t n, float *logits) {
  Fake *f = ud;
  f->prefills++;
  f->seen = n;
  f->last = t[n - 1];
  memcpy(f->pre, t, sizeof(int32_t) * (size_t)n);
  fake_logits(f, logits);
  return 0;
}
static int fake_decode(void *ud, int32_t tok, int64_t pos, float *logits) {
  Fake *f = ud;
  if (++f->decodes == f->fail_at) return 1;
  assert_int_equal(pos, f->seen);
  f->seen++;
  f->last = tok;
  fake_logits(f, logits);
  return 0;
}
static const char *fake_message(void *ud) {
  (void)ud;
  return "the fake model broke";
}

static int32_t emitted[64];
static int nemitted;
static int collect(void *ud, int32_t tok) {
  (void)ud;
  emitted[nemitted++] = tok;
  return 0;
}

static void test_generate(void **state) {
  (void)state;
  Fake f = {0};
  RtGenModel m = {.vocab = 10, .window = 8, .ud = &f, .prefill = fake_prefill, .decode = fake_decode,
                  .message = fake_message};
  RtGenOpts o = {.max_new = 4, .sample = {.temperature = 0, .top_p = 1}};
  RtGenStats st;
  int32_t prompt[3] = {3, 1, 4};
  nemitted = 0;
  assert_int_equal(rt_generate(&m, prompt, 3, &o, collect, NULL, &st, err, sizeof err), RT_OK);
  assert_int_equal(nemitted, 4);
  int32_t want[4] = {5, 6, 7, 8};
  assert_memory_equal(emitted, want, sizeof want);
  assert_int_equal(st.generated, 4);
  assert_int_equal(st.decoded, 3);  // the last token is not fed back
  assert_int_equal(st.shifts, 0);
  // the window: 3 prompt tokens + 5 decoded fill 8 positions; then each
  // shift prefills the 4 most recent (the new one last) and 4 more decode
  f = (Fake){0};
  nemitted = 0;
  o.max_new = 20;
  assert_int_equal(rt_generate(&m, prompt, 3, &o, collect, NULL, &st, err, sizeof err), RT_OK);
  assert_int_equal(st.generated, 20);
  assert_int_equal(st.decoded, 19);
  assert_int_equal(st.shifts, 3);  // feeds: 5 decodes, shift, 4, shift, 4, shift, 3
  assert_int_equal(f.prefills, 4);
  assert_int_equal(f.seen, 7);
  for (int i = 0; i < 20; i++) assert_int_equal(emitted[i], (5 + i) % 10);
  int32_t kept[4] = {emitted[12], emitted[13], emitted[14], emitted[15]};  // the third shift feeds emitted[15]
  assert_memory_equal(f.pre, kept, sizeof kept);
  assert_int_equal(rt_gen_keep(8), 4);
  assert_int_equal(rt_gen_keep(1), 1);
  assert_int_equal(rt_gen_keep(3), 1);
  // bad prompts; a prompt longer than the window keeps its last 8 tokens
  assert_int_equal(rt_generate(&m, prompt, 0, &o, collect, NULL, &st, err, sizeof err), RT_ERR_ARG);
  assert_non_null(strstr(err, "empty"));
  int32_t longp[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  f = (Fake){0};
  o.max_new = 1;
  assert_int_equal(rt_generate(&m, longp, 10, &o, collect, NULL, &st, err, sizeof err), RT_OK);
  assert_int_equal(st.cropped, 2);
  assert_int_equal(f.seen, 8);
  assert_int_equal(f.pre[0], 2);
  o.max_new = 100;
  int32_t badp[2] = {1, 10};
  assert_int_equal(rt_generate(&m, badp, 2, &o, collect, NULL, &st, err, sizeof err), RT_ERR_ARG);
  assert_non_null(strstr(err, "id 10, outside the model's vocabulary of 10"));
  // a failing model
  f = (Fake){.fail_at = 2};
  assert_int_equal(rt_generate(&m, prompt, 3, &o, collect, NULL, &st, err, sizeof err), RT_ERR_MODEL);
  assert_string_equal(err, "decode failed: the fake model broke");
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s TOKENIZER_DIR BPE_REF.txt\n", argv[0]);
    return 2;
  }
  tok_dir = argv[1];
  ref_path = argv[2];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes),    cmocka_unit_test(test_gpt2_known), cmocka_unit_test(test_gpt2_reference),
      cmocka_unit_test(test_bad_files), cmocka_unit_test(test_rng),       cmocka_unit_test(test_sample),
      cmocka_unit_test(test_sample_seeded), cmocka_unit_test(test_generate),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
