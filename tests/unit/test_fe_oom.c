// tests/unit/test_fe_oom.c: the frontend out of memory. Each example, test
// model and golden ok file is parsed, checked and lowered with an arena budget
// (Arena.limit) swept from a few bytes to what the whole run needs: every
// failed allocation must end in an "out of memory" error and no model, never
// a crash or a NULL used later (run it under `make asan` too).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>

#include "testutil.h"

typedef struct {
  size_t used;    // the arena bytes the run needed
  int nerr;
  bool model;     // a checked model with a forward graph
  bool failed;    // an allocation failed
} Run;

// One parse + check + lower of src with the budget limit (0: none).
static Run run_once(const char *name, const char *src, size_t len, size_t limit) {
  Diag d;
  diag_init(&d, NULL);
  Arena *a = arena_new();
  assert_non_null(a);
  uint32_t file = diag_add_file(&d, name, src, len);
  assert_int_not_equal(file, 0);
  a->limit = limit;
  FeAst *ast = fe_parse(a, &d, file);
  FeModel *m = NULL;
  if (ast && d.nerr == 0) {
    FeCheckOpts opts = {.lower = true};
    m = fe_check(a, &d, ast, &opts);
  }
  if (!ast) assert_true(a->failed);  // fe_parse's NULL: the tree itself was not allocated
  if (a->failed) {
    if (m || d.nerr == 0 || !strstr(d.log ? d.log : "", "out of memory"))
      fail_msg("%s with a budget of %zu bytes: a failed allocation of %zu bytes gave %s, %d errors:\n%s", name,
               limit, a->failed, m ? "a model" : "no model", d.nerr, d.log ? d.log : "");
  }
  Run r = {.used = a->used, .nerr = d.nerr, .model = m && m->forward, .failed = a->failed != 0};
  arena_free(a);
  diag_fini(&d);
  return r;
}

// Sweeps the budget over [1, used] in n steps (plus the first 64 bytes one
// by one); without a failure the result is the unlimited one.
static void sweep(const char *path, int n) {
  const char *scale = getenv("HEED_OOM_SCALE");  // more steps for a longer search
  if (scale && atoi(scale) > 1) n *= atoi(scale);
  size_t len = 0;
  char *src = tu_read_file(path, &len);
  if (!src) fail_msg("cannot read %s", path);
  const char *name = strrchr(path, '/') + 1;
  Run full = run_once(name, src, len, 0);
  assert_true(full.used > 0 && !full.failed);
  for (int i = 0; i <= n + 64; i++) {
    size_t limit = i < 64 ? (size_t)i + 1 : 1 + (full.used * (size_t)(i - 64)) / (size_t)n;
    Run r = run_once(name, src, len, limit);
    if (!r.failed && (r.nerr != full.nerr || r.model != full.model))
      fail_msg("%s with a budget of %zu bytes: %d errors, want %d", name, limit, r.nerr, full.nerr);
  }
  free(src);
}

// The files of dir (examples/, tests/golden/ok/) ending in .heed, swept.
static int sweep_dir(const char *rel, int steps) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", __FILE__);
  char *at = strstr(dir, "tests/unit/");
  assert_non_null(at);
  snprintf(at, sizeof dir - (size_t)(at - dir), "%s", rel);
  DIR *dp = opendir(dir);
  if (!dp) fail_msg("cannot open %s", dir);
  int nfiles = 0;
  for (struct dirent *e; (e = readdir(dp));) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".heed") != 0) continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    sweep(path, steps);
    nfiles++;
  }
  closedir(dp);
  return nfiles;
}

static void test_examples_out_of_memory(void **state) {
  (void)state;
  assert_true(sweep_dir("examples", 400) >= 5);
  assert_true(sweep_dir("tests/models", 200) >= 3);
}

static void test_golden_ok_out_of_memory(void **state) {
  (void)state;
  assert_true(sweep_dir("tests/golden/ok", 200) >= 8);
}

// The budget itself: a request past it fails and is recorded, smaller ones
// before it succeed.
static void test_arena_limit(void **state) {
  (void)state;
  Arena *a = arena_new();
  a->limit = 100;
  assert_non_null(arena_alloc(a, 64));
  assert_int_equal(a->failed, 0);
  assert_null(arena_alloc(a, 40));  // 64 + 48 > 100
  assert_int_equal(a->failed, 40);
  assert_non_null(arena_alloc(a, 20));  // 64 + 32 <= 100: the first failure stays recorded
  assert_int_equal(a->failed, 40);
  arena_free(a);
  char b[32];
  assert_string_equal(diag_bytes(b, 1), "1 byte");
  assert_string_equal(diag_bytes(b, 1000), "1000 bytes");
  assert_string_equal(diag_bytes(b, (uint64_t)128 << 30), "128.0 GiB");
  assert_string_equal(diag_bytes(b, 3 << 20 | 1 << 19), "3.5 MiB");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arena_limit),
      cmocka_unit_test(test_examples_out_of_memory),
      cmocka_unit_test(test_golden_ok_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
