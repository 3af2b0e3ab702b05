// tests/unit/test_rt_data.c: the runtime's training data (runtime/data.c),
// where `heed train` reads its tokens: text and .bin files (with and
// without llm.c's header), every bad file with its message (empty, odd
// length, header count, a header cut short or of another version, token
// out of the vocabulary, missing, directory, FIFO, /dev/zero), the data
// held in memory (a file truncated after opening changes nothing),
// splits and window checks, and the windows themselves (targets shifted
// by one, the same windows for the same RNG state, fixed validation
// windows in range). Links heedrt only.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/rt.h"

static char tmpdir[64];

static void tpath(char *out, const char *name) { snprintf(out, 256, "%s/%s", tmpdir, name); }

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (n) assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static int group_setup(void **state) {
  (void)state;
  strcpy(tmpdir, "/tmp/heed_data_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

// Opens path expecting an error whose message contains want.
static void expect_error(const char *path, int64_t vocab, const char *want) {
  RtTokens t;
  char err[512];
  assert_int_not_equal(rt_tokens_open(path, vocab, &t, err, sizeof err), RT_OK);
  if (!strstr(err, want) || !strstr(err, path)) fail_msg("message '%s' lacks '%s' or the path", err, want);
  assert_null(t.buf_);
}

static void test_text_file(void **state) {
  (void)state;
  char p[256], err[512];
  tpath(p, "a.txt");
  write_file(p, "hello\xff", 6);
  RtTokens t;
  assert_int_equal(rt_tokens_open(p, 256, &t, err, sizeof err), RT_OK);
  assert_int_equal(t.n, 6);
  assert_int_equal(t.width, 1);
  assert_int_equal(rt_tokens_get(&t, 0), 'h');
  assert_int_equal(rt_tokens_get(&t, 5), 255);
  uint64_t h = t.hash;
  rt_tokens_close(&t);
  write_file(p, "hellp\xff", 6);  // one byte differs: another fingerprint
  assert_int_equal(rt_tokens_open(p, 0, &t, err, sizeof err), RT_OK);
  assert_true(t.hash != h);
  rt_tokens_close(&t);
  expect_error(p, 200, "token 255 at byte offset 5 (token 5) is outside the model's vocabulary 0..199");
}

static void test_bin_files(void **state) {
  (void)state;
  char p[256], err[512];
  tpath(p, "t.bin");
  uint8_t raw[] = {1, 0, 0x2c, 0x01, 0xff, 0xff};  // 1, 300, 65535
  write_file(p, raw, sizeof raw);
  RtTokens t;
  assert_int_equal(rt_tokens_open(p, 65536, &t, err, sizeof err), RT_OK);
  assert_int_equal(t.n, 3);
  assert_int_equal(rt_tokens_get(&t, 1), 300);
  assert_int_equal(rt_tokens_get(&t, 2), 65535);
  rt_tokens_close(&t);
  expect_error(p, 256, "token 300 at byte offset 2 (token 1) is outside the model's vocabulary 0..255");
  write_file(p, raw, 5);
  expect_error(p, 256, "odd length (5 bytes)");
  // llm.c's header: 256 int32, magic, version, count; then the tokens
  uint8_t buf[1024 + 6] = {0};
  int32_t hdr[3] = {RT_DATA_MAGIC, 1, 3};
  memcpy(buf, hdr, sizeof hdr);
  memcpy(buf + 1024, raw, 6);
  write_file(p, buf, sizeof buf);
  assert_int_equal(rt_tokens_open(p, 0, &t, err, sizeof err), RT_OK);
  assert_int_equal(t.n, 3);
  assert_int_equal(rt_tokens_get(&t, 0), 1);
  rt_tokens_close(&t);
  expect_error(p, 256, "byte offset 1026 (token 1)");
  hdr[2] = 4;
  memcpy(buf, hdr, sizeof hdr);
  write_file(p, buf, sizeof buf);
  expect_error(p, 0, "the header (magic 20240520) says 4 tokens, but 6 bytes follow it");
  write_file(p, buf, 1024);
  expect_error(p, 0, "says 4 tokens, but 0 bytes");
  write_file(p, buf, 20);  // the magic, then the file ends inside the header
  expect_error(p, 65536, "starts with the header magic 20240520 but is 20 bytes, shorter than the 1024-byte header");
  hdr[1] = 99, hdr[2] = 3;
  memcpy(buf, hdr, sizeof hdr);
  write_file(p, buf, sizeof buf);
  expect_error(p, 65536, "the header (magic 20240520) has version 99; heed reads version 1");
}

static void test_bad_files(void **state) {
  (void)state;
  char p[256];
  tpath(p, "empty.txt");
  write_file(p, "", 0);
  expect_error(p, 256, "the data file is empty");
  tpath(p, "empty.bin");
  write_file(p, "", 0);
  expect_error(p, 256, "the data file is empty");
  tpath(p, "missing.txt");
  expect_error(p, 256, "cannot open: No such file or directory");
  expect_error(tmpdir, 256, "is a directory");
  tpath(p, "fifo.txt");  // a FIFO without a writer: refused at once, not waited on
  assert_int_equal(mkfifo(p, 0600), 0);
  expect_error(p, 256, "is a FIFO (named pipe), not a regular file");
  expect_error("/dev/zero", 256, "is a character device, not a regular file");
}

// The tokens are the file's contents when it was opened: truncating the
// file afterwards (a run's data rewritten meanwhile) changes nothing.
static void test_truncated_after_open(void **state) {
  (void)state;
  char p[256], err[512];
  tpath(p, "shrinks.txt");
  char text[8192];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
  write_file(p, text, sizeof text);
  RtTokens t;
  assert_int_equal(rt_tokens_open(p, 256, &t, err, sizeof err), RT_OK);
  assert_int_equal(truncate(p, 0), 0);
  int64_t sum = 0;
  for (int64_t i = 0; i < t.n; i++) sum += rt_tokens_get(&t, i);  // mapped, this was SIGBUS
  assert_int_equal(t.n, 8192);
  assert_true(sum > 0);
  rt_tokens_close(&t);
}

// Window sizes from user settings near the int64 limit are errors, not
// overflows (UBSan): seq + 1 is never computed in int64.
static void test_huge_seq(void **state) {
  (void)state;
  char p[256], err[512];
  tpath(p, "s.txt");
  write_file(p, "0123456789", 10);
  RtTokens t;
  assert_int_equal(rt_tokens_open(p, 256, &t, err, sizeof err), RT_OK);
  RtSplit all = rt_split_all(&t);
  assert_int_not_equal(rt_window_check(&all, INT64_MAX, "training", err, sizeof err), RT_OK);
  assert_non_null(strstr(err, "(seq + 1 = 9223372036854775808 tokens)"));
  assert_int_not_equal(rt_window_check(&all, 0, "training", err, sizeof err), RT_OK);
  assert_non_null(strstr(err, "seq=0"));
  assert_int_equal(rt_window_check(&all, 9, "training", err, sizeof err), RT_OK);
  rt_tokens_close(&t);
}

static void test_split_and_windows(void **state) {
  (void)state;
  char p[256], err[512];
  tpath(p, "w.txt");
  char text[100];
  for (int i = 0; i < 100; i++) text[i] = (char)i;
  write_file(p, text, 100);
  RtTokens t;
  assert_int_equal(rt_tokens_open(p, 256, &t, err, sizeof err), RT_OK);
  RtSplit tr, va;
  rt_split(&t, 0.9, &tr, &va);
  assert_int_equal(tr.end, 90);
  assert_int_equal(va.begin, 90);
  assert_int_equal(va.end, 100);
  assert_int_equal(rt_window_check(&va, 9, "validation", err, sizeof err), RT_OK);
  assert_int_not_equal(rt_window_check(&va, 10, "validation", err, sizeof err), RT_OK);
  assert_non_null(strstr(err, "the validation data has 10 tokens, fewer than one window (seq + 1 = 11 tokens)"));
  assert_non_null(strstr(err, p));

  enum { B = 4, T = 8 };
  int32_t x[B * T], y[B * T], x2[B * T], y2[B * T];
  uint64_t r1 = 7, r2 = 7;
  rt_batch_random(&tr, &r1, B, T, x, y);
  rt_batch_random(&tr, &r2, B, T, x2, y2);
  assert_memory_equal(x, x2, sizeof x);
  assert_true(r1 == r2 && r1 != 7);
  for (int i = 0; i < B * T; i++) {
    assert_int_equal(y[i], x[i] + 1);  // the text is 0, 1, 2, ...: targets are the next token
    assert_true(x[i] >= 0 && y[i] < 90);  // inside the training split
  }
  for (int i = 0; i < B; i++)  // each window is contiguous
    for (int j = 1; j < T; j++) assert_int_equal(x[i * T + j], x[i * T + j - 1] + 1);
  rt_batch_random(&tr, &r1, B, T, x2, y2);  // the state moved on: other windows
  assert_memory_not_equal(x, x2, sizeof x);

  rt_batch_fixed(&va, 0, 2, 2, T, x, y);  // the first and the last window of va
  assert_int_equal(x[0], 90);
  assert_int_equal(y[T - 1], 98);
  assert_int_equal(x[T], 91);
  assert_int_equal(y[2 * T - 1], 99);
  rt_tokens_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_file),
      cmocka_unit_test(test_bin_files),
      cmocka_unit_test(test_bad_files),
      cmocka_unit_test(test_split_and_windows),
      cmocka_unit_test(test_truncated_after_open),
      cmocka_unit_test(test_huge_seq),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
