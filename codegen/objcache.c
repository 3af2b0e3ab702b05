// codegen/objcache.c: an on-disk cache of the object files that the split
// compile (llvm.c, cg_llvm_jit_add_split) makes from each part of a module.
// Sits between a part's pruned bitcode and its machine code: a part whose
// key was compiled before (by any heed process for this user) is read back
// instead of run through O3 and instruction selection again.
//
// The key is everything the machine code depends on: a format tag, LLVM's
// version, the target (triple, CPU, features) and the part's whole bitcode.
// An entry is one file, DIR/<hash of the key>.o:
//   "HEEDOBJ1", key bytes (u64), object bytes (u64), FNV-1a of the object
//   (u64), the key, the object
// A hit needs the whole key equal (not only its hash) and the object's
// checksum right; anything else (a missing, short, foreign or damaged file)
// is a miss, never an error. Entries are written to a temporary file and
// renamed, so a reader sees a whole entry or none. A hit touches its entry;
// cg_objcache_trim removes the least recently used entries when the cache
// outgrows its limit. Nothing here is fatal: a cache that cannot be read or
// written only costs the compile.
//
// A hit is machine code that runs, so the cache must be the user's own: a
// directory owned by another user, or writable by group or others, is not
// used at all (cg_objcache_dir_safe; get, put and trim check it, and the
// command line warns once). Not an error: the cache only saves time, and
// compiling without it is always right. Entries are opened without
// following symbolic links and must be regular files of the user's.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cg.h"

enum { HDR = 32 };
static const char MAGIC[8] = {'H', 'E', 'E', 'D', 'O', 'B', 'J', '1'};
static const size_t MAX_ENTRY = (size_t)1 << 30;

static uint64_t fnv1a(const void *p, size_t n, uint64_t h) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

// DIR/<hash>.o into path (false: it does not fit).
static bool entry_path(const char *dir, const void *key, size_t klen, char *path, size_t cap) {
  uint64_t h1 = fnv1a(key, klen, 0xcbf29ce484222325ull), h2 = fnv1a(key, klen, 0x84222325cbf29ce4ull);
  int n = snprintf(path, cap, "%s/%016llx%08llx.o", dir, (unsigned long long)h1, (unsigned long long)(h2 >> 32));
  return n > 0 && (size_t)n < cap;
}

// Reads all of fd (at most MAX_ENTRY bytes); NULL if it cannot.
static unsigned char *read_all(int fd, size_t *len) {
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < HDR || (uint64_t)st.st_size > MAX_ENTRY) return NULL;
  size_t n = (size_t)st.st_size, got = 0;
  unsigned char *b = heed_malloc(n);
  while (b && got < n) {
    ssize_t r = read(fd, b + got, n - got);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      heed_free(b);
      return NULL;
    }
    got += (size_t)r;
  }
  *len = n;
  return b;
}

bool cg_objcache_dir_safe(const char *dir, char *why, size_t whylen) {
  struct stat st;
  const char *bad = NULL;
  char buf[96];
  if (!dir || !*dir || stat(dir, &st) != 0) {
    bad = "cannot be read";
    if (dir && *dir && errno == ENOENT) return true;  // made by put, 0700
  } else if (!S_ISDIR(st.st_mode)) {
    bad = "is not a directory";
  } else if (st.st_uid != geteuid()) {
    snprintf(buf, sizeof buf, "is owned by uid %ld, not by this user (uid %ld)", (long)st.st_uid, (long)geteuid());
    bad = buf;
  } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    snprintf(buf, sizeof buf, "is writable by %s (mode %04o)", st.st_mode & S_IWOTH ? "others" : "its group",
             (unsigned)(st.st_mode & 07777));
    bad = buf;
  }
  if (bad && why && whylen) snprintf(why, whylen, "%s", bad);
  return !bad;
}

void *cg_objcache_get(const char *dir, const void *key, size_t klen, size_t *olen) {
  char path[4096];
  if (!dir || !*dir || !entry_path(dir, key, klen, path, sizeof path) || !cg_objcache_dir_safe(dir, NULL, 0))
    return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);  // a FIFO there: no hang (read_all refuses it)
  if (fd < 0) return NULL;
  struct stat est;
  if (fstat(fd, &est) != 0 || est.st_uid != geteuid()) {  // an entry someone else put there
    close(fd);
    return NULL;
  }
  size_t n = 0;
  unsigned char *b = read_all(fd, &n);
  close(fd);
  if (!b) return NULL;
  uint64_t kl = get_u64(b + 8), ol = get_u64(b + 16), sum = get_u64(b + 24);
  bool ok = memcmp(b, MAGIC, 8) == 0 && kl == klen && ol > 0 && kl <= n - HDR && ol == n - HDR - kl &&
            memcmp(b + HDR, key, klen) == 0 && fnv1a(b + HDR + kl, ol, 0xcbf29ce484222325ull) == sum;
  if (!ok) {
    heed_free(b);
    return NULL;
  }
  memmove(b, b + HDR + kl, ol);
  *olen = ol;
  utimensat(AT_FDCWD, path, NULL, 0);  // used now (cg_objcache_trim keeps the recent ones)
  return b;
}

// mkdir -p dir (0700 for what it creates); false if dir is not a directory after.
static bool make_dirs(const char *dir) {
  char p[4096];
  int n = snprintf(p, sizeof p, "%s", dir);
  if (n <= 0 || (size_t)n >= sizeof p) return false;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    mkdir(p, 0700);
    *s = '/';
  }
  mkdir(p, 0700);
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool write_all(int fd, const void *p, size_t n) {
  const unsigned char *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w, n -= (size_t)w;
  }
  return true;
}

void cg_objcache_put(const char *dir, const void *key, size_t klen, const void *obj, size_t olen, int tag) {
  char path[4096], tmp[4200];
  if (!dir || !*dir || !olen || klen + olen > MAX_ENTRY - HDR || !entry_path(dir, key, klen, path, sizeof path))
    return;
  if (!make_dirs(dir) || !cg_objcache_dir_safe(dir, NULL, 0)) return;
  snprintf(tmp, sizeof tmp, "%s.%ld.%d.tmp", path, (long)getpid(), tag);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  unsigned char h[HDR];
  memcpy(h, MAGIC, 8);
  put_u64(h + 8, klen);
  put_u64(h + 16, olen);
  put_u64(h + 24, fnv1a(obj, olen, 0xcbf29ce484222325ull));
  bool ok = write_all(fd, h, HDR) && write_all(fd, key, klen) && write_all(fd, obj, olen);
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

typedef struct {
  char name[64];
  off_t size;
  time_t used;
} Entry;

static int older_first(const void *a, const void *b) {
  time_t x = ((const Entry *)a)->used, y = ((const Entry *)b)->used;
  return (x > y) - (x < y);
}

// An entry's name: 24 hex digits and ".o" (nothing else in dir is removed
// but temporary files of ours older than an hour: a writer that died).
static bool ours(const char *name, bool *tmp) {
  size_t n = strlen(name), i = 0;
  while (i < 24 && ((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) i++;
  if (i != 24 || strncmp(name + 24, ".o", 2) != 0) return false;
  *tmp = n > 26;
  return n == 26 || (n > 30 && strcmp(name + n - 4, ".tmp") == 0);
}

void cg_objcache_trim(const char *dir, int64_t max_bytes) {
  DIR *d = dir && *dir && cg_objcache_dir_safe(dir, NULL, 0) ? opendir(dir) : NULL;
  if (!d) return;
  Entry *e = NULL;
  size_t n = 0, cap = 0;
  int64_t total = 0;
  time_t now = time(NULL);
  char path[4200];
  for (struct dirent *de; (de = readdir(d));) {
    bool tmp;
    struct stat st;
    if (!ours(de->d_name, &tmp) || strlen(de->d_name) >= sizeof e->name) continue;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
    if (tmp) {
      if (now - st.st_mtime > 3600) unlink(path);
      continue;
    }
    if (n == cap) {
      Entry *m = heed_realloc(e, sizeof *e * (cap = cap ? 2 * cap : 256));
      if (!m) break;
      e = m;
    }
    snprintf(e[n].name, sizeof e[n].name, "%.63s", de->d_name);
    e[n].size = st.st_size, e[n].used = st.st_mtime;
    total += st.st_size;
    n++;
  }
  closedir(d);
  if (total > max_bytes) {  // the least recently used go until 3/4 of the limit is left
    qsort(e, n, sizeof *e, older_first);
    for (size_t i = 0; i < n && total > max_bytes / 4 * 3; i++) {
      snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
      if (unlink(path) == 0) total -= e[i].size;
    }
  }
  heed_free(e);
}
