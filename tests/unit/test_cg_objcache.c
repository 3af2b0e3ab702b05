// tests/unit/test_cg_objcache.c: the object cache of the split compile
// (codegen/objcache.c, CgOptions.cache_dir): a second compile of the same
// graph takes every part from the cache and computes the same bits; damaged
// entries (truncated, a flipped byte, garbage, a directory that cannot be
// written) are misses that recompile, never errors or crashes; trimming
// keeps the most recently used entries under the limit; a directory that is
// not the user's own (another owner, writable by group or others) is not
// used, nor an entry that is a symbolic link.
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cg_harness.h"

static char dir[64];

// A small step-like graph: (B,T,16) @ (16,32) + bias, gelu, a sum.
static void build(T *t) {
  IrNode *x = fin(t, "B,T,16"), *w = par(t, "16,32", -1, 1), *b = par(t, "32", -1, 1);
  IrNode *h = op1(t, IR_OP_GELU_TANH, op2(t, IR_OP_ADD, op2(t, IR_OP_MATMUL, x, w), b));
  assert_true(ir_output(t->g, "s", op(t, IR_OP_SUM, &h, 1, &(IrAttr){.axes = 4}, NULL)));
  assert_true(ir_output(t->g, "h", h));
}

static CgProgram *compile_cached(T *t, int *nparts, int *hits) {
  CgOptions o = {.compile_threads = 2, .cache_dir = dir};
  CgProgram *p = compile_opts(t, &o);
  const CgProgramStats *st = cg_program_stats(p);
  *nparts = st->nparts, *hits = 0;
  for (int i = 0; i < st->nparts; i++) *hits += st->parts[i].cached;
  return p;
}

// Runs p on a copy of ref's leaves; every output bit for bit as in ref.
static void same_as(T *t, CgProgram *p, const int64_t *sv, const Bufs *ref, const char *label) {
  Bufs b = compare_keep(t, p, sv, label, false);
  for (int i = 0; i < t->g->nodes.len; i++) {
    const IrNode *n = t->g->nodes.data[i];
    if (n->op == IR_OP_INPUT || n->op == IR_OP_PARAM) memcpy(b.buf[i], ref->buf[i], (size_t)cg_buffer_bytes(p, i, sv));
  }
  assert_true(cg_run(p, sv, b.buf, &t->d));
  same_bits(t, p, sv, ref, &b, label);
  bufs_free(&b);
}

// Applies damage(path, mode) to every entry of dir; returns how many.
static int damage_all(void (*damage)(const char *path, int mode), int mode) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    damage(path, mode);
    n++;
  }
  closedir(d);
  return n;
}

static void truncate_flip_or_garble(const char *path, int mode) {
  if (mode == 3) {  // a FIFO planted where the entry was: a miss, never a hang
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    return;
  }
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  if (mode == 0) {
    assert_int_equal(ftruncate(fileno(f), st.st_size / 2), 0);
  } else if (mode == 1) {  // the object's last byte
    fseek(f, -1, SEEK_END);
    int c = fgetc(f);
    fseek(f, -1, SEEK_END);
    fputc(c ^ 0x40, f);
  } else {  // the magic right, lengths absurd
    static const unsigned char junk[32] = {'H', 'E', 'E', 'D', 'O', 'B', 'J', '1', 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0x7f, 1, 2, 3};
    fwrite(junk, 1, sizeof junk, f);
  }
  fclose(f);
}

static void test_hits_and_damage(void **state) {
  (void)state;
  T t;
  t_init(&t);
  build(&t);
  const int64_t sv[3] = {2, 5, 1};
  int np, hits;
  CgProgram *p1 = compile_cached(&t, &np, &hits);
  assert_true(np >= 1);
  assert_int_equal(hits, 0);  // a fresh directory
  Bufs ref = compare_keep(&t, p1, sv, "cold", false);

  CgProgram *p2 = compile_cached(&t, &np, &hits);
  assert_int_equal(hits, np);  // all from the cache
  same_as(&t, p2, sv, &ref, "warm");

  cg_program_free(p2);
  for (int mode = 0; mode < 4; mode++) {  // truncated, a flipped byte, garbage, a FIFO
    assert_int_equal(damage_all(truncate_flip_or_garble, mode), np);
    CgProgram *p3 = compile_cached(&t, &np, &hits);
    assert_int_equal(hits, 0);  // every entry damaged: recompiled
    same_as(&t, p3, sv, &ref, "damaged");
    CgProgram *p4 = compile_cached(&t, &np, &hits);
    assert_int_equal(hits, np);  // and written again
    same_as(&t, p4, sv, &ref, "rewritten");
    cg_program_free(p3), cg_program_free(p4);
  }
  bufs_free(&ref);
  cg_program_free(p1);
  t_fini(&t);
}

static void test_keys(void **state) {
  (void)state;
  char sub[128];
  snprintf(sub, sizeof sub, "%s/keys/a/b", dir);  // created on the first put
  const char obj[] = "object bytes";
  size_t n = 0;
  assert_null(cg_objcache_get(sub, "key A", 5, &n));
  cg_objcache_put(sub, "key A", 5, obj, sizeof obj, 0);
  char *got = cg_objcache_get(sub, "key A", 5, &n);
  assert_non_null(got);
  assert_int_equal(n, sizeof obj);
  assert_memory_equal(got, obj, sizeof obj);
  free(got);
  assert_null(cg_objcache_get(sub, "key B", 5, &n));   // another key
  assert_null(cg_objcache_get(sub, "key A!", 6, &n));  // a longer one
  // A directory under a regular file cannot exist: put does nothing, get misses.
  char file[160], under[200];
  snprintf(file, sizeof file, "%s/plain", dir);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  snprintf(under, sizeof under, "%s/sub", file);
  cg_objcache_put(under, "key A", 5, obj, sizeof obj, 0);
  assert_null(cg_objcache_get(under, "key A", 5, &n));
  assert_null(cg_objcache_get(NULL, "key A", 5, &n));
}

// The path of d's one entry (24 hex digits and ".o"); false if none.
static bool entry_of(const char *d, char *path, size_t cap) {
  DIR *dd = opendir(d);
  bool found = false;
  for (struct dirent *e; dd && !found && (e = readdir(dd));)
    if ((found = strlen(e->d_name) == 26 && !strcmp(e->d_name + 24, ".o"))) snprintf(path, cap, "%s/%s", d, e->d_name);
  if (dd) closedir(dd);
  return found;
}

// A cache directory that is not the user's own is not used: an entry there
// is never returned (it would be run), nothing is written, nothing trimmed.
static void test_unsafe_dir(void **state) {
  (void)state;
  char sub[128], why[128], entry[300];
  snprintf(sub, sizeof sub, "%s/shared", dir);
  const char obj[] = "object bytes";
  size_t n = 0;
  cg_objcache_put(sub, "key A", 5, obj, sizeof obj, 0);  // made 0700: ours
  assert_true(cg_objcache_dir_safe(sub, why, sizeof why));
  char *got = cg_objcache_get(sub, "key A", 5, &n);
  assert_non_null(got);
  free(got);
  assert_int_equal(chmod(sub, 0777), 0);  // anyone could have put that entry there
  assert_false(cg_objcache_dir_safe(sub, why, sizeof why));
  assert_string_equal(why, "is writable by others (mode 0777)");
  assert_null(cg_objcache_get(sub, "key A", 5, &n));
  cg_objcache_put(sub, "key B", 5, obj, sizeof obj, 0);
  assert_int_equal(chmod(sub, 0770), 0);
  assert_false(cg_objcache_dir_safe(sub, why, sizeof why));
  assert_string_equal(why, "is writable by its group (mode 0770)");
  assert_null(cg_objcache_get(sub, "key B", 5, &n));  // put wrote nothing
  assert_int_equal(chmod(sub, 0700), 0);
  assert_null(cg_objcache_get(sub, "key B", 5, &n));
  assert_true(cg_objcache_dir_safe(sub, why, sizeof why));
  // Another user's directory: root gives ours away; a user has "/" (root's, 0755).
  const char *other = "/";
  if (geteuid() == 0) {
    assert_int_equal(chown(sub, 1, (gid_t)-1), 0);
    other = sub;
  }
  assert_false(cg_objcache_dir_safe(other, why, sizeof why));
  assert_non_null(strstr(why, "is owned by uid "));
  assert_null(cg_objcache_get(other, "key A", 5, &n));
  if (geteuid() == 0) assert_int_equal(chown(sub, 0, (gid_t)-1), 0);
  // An entry that is a symbolic link (to a file anyone could write) is a miss.
  assert_true(entry_of(sub, entry, sizeof entry));
  char target[320];
  snprintf(target, sizeof target, "%s.real", entry);
  assert_int_equal(rename(entry, target), 0);
  assert_int_equal(symlink(target, entry), 0);
  assert_null(cg_objcache_get(sub, "key A", 5, &n));
  // A path that is not a directory, or cannot be read.
  assert_false(cg_objcache_dir_safe(target, why, sizeof why));
  assert_string_equal(why, "is not a directory");
}

// The entry in d that is not in seen (names, n of them); added to seen.
static void newest_entry(const char *d, char (*seen)[64], int *n, char *path, size_t cap) {
  DIR *dd = opendir(d);
  assert_non_null(dd);
  path[0] = 0;
  for (struct dirent *e; (e = readdir(dd));) {
    if (e->d_name[0] == '.') continue;
    bool old = false;
    for (int i = 0; i < *n; i++) old = old || !strcmp(seen[i], e->d_name);
    if (old) continue;
    snprintf(seen[(*n)++], 64, "%.63s", e->d_name);
    snprintf(path, cap, "%.127s/%.63s", d, e->d_name);
  }
  closedir(dd);
  assert_true(path[0] != 0);
}

static void set_mtime(const char *path, time_t t) {
  struct timespec ts[2] = {{t, 0}, {t, 0}};
  assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

// Over the limit, the least recently used entries go (a hit counts as a
// use); other files stay; a writer's temporary file an hour old goes.
static void test_trim(void **state) {
  (void)state;
  char d[128], path[256], seen[16][64], key[8];
  int nseen = 0;
  snprintf(d, sizeof d, "%s/trim", dir);
  static char obj[100000];
  memset(obj, 7, sizeof obj);
  time_t now = time(NULL);
  for (int i = 0; i < 10; i++) {  // k0 oldest ... k9 newest, 100 kB each
    snprintf(key, sizeof key, "k%d", i);
    cg_objcache_put(d, key, 2, obj, sizeof obj, 0);
    newest_entry(d, seen, &nseen, path, sizeof path);
    set_mtime(path, now - 1000 + 10 * i);
  }
  size_t n;
  free(cg_objcache_get(d, "k0", 2, &n));  // used now: the most recent
  snprintf(path, sizeof path, "%s/readme.txt", d);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  snprintf(path, sizeof path, "%s/0123456789abcdef01234567.o.99.0.tmp", d);
  f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  set_mtime(path, now - 7200);
  cg_objcache_trim(d, 500000);  // 1 MB of entries: down to 375 kB, the 3 most recent
  const char *kept[] = {"k0", "k8", "k9"}, *gone[] = {"k1", "k2", "k3", "k4", "k5", "k6", "k7"};
  for (int i = 0; i < 3; i++) {
    char *got = cg_objcache_get(d, kept[i], 2, &n);
    if (!got) print_error("trim removed %s\n", kept[i]);
    assert_non_null(got);
    free(got);
  }
  for (int i = 0; i < 7; i++) assert_null(cg_objcache_get(d, gone[i], 2, &n));
  struct stat st;
  assert_int_equal(stat(path, &st), -1);  // the stale temporary file
  snprintf(path, sizeof path, "%s/readme.txt", d);
  assert_int_equal(stat(path, &st), 0);
  cg_objcache_trim(d, 500000);  // under the limit now: nothing goes
  for (int i = 0; i < 3; i++) {
    char *got = cg_objcache_get(d, kept[i], 2, &n);
    assert_non_null(got);
    free(got);
  }
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/heed_objcache_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (!d) return unlink(path);
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    rm_tree(p);
  }
  closedir(d);
  return rmdir(path);
}

static int teardown(void **state) {
  (void)state;
  return rm_tree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hits_and_damage),
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_trim),
      cmocka_unit_test(test_unsafe_dir),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
