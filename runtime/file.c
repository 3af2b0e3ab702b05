// runtime/file.c: the first step of every input's data flow. Each reader of
// a user's file (safetensors.c: weights, inputs, checkpoints; data.c:
// training data; tokenizer.c: BPE files; cli/driver.c: the model file)
// opens it here, so that a FIFO, a device or a directory is refused with
// one clear message instead of blocking in open() or reading forever
// (/dev/zero). Also the SIGBUS guard of files that stay mapped (a built
// program's weights): a file truncated under its mapping becomes a message
// and exit 1 instead of a crash. libc only.
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rt_path_err(char *err, size_t errlen, int code, const char *path, const char *fmt, ...) {
  if (err && errlen) {
    int k = snprintf(err, errlen, "%s: ", path);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < errlen) vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
  }
  return code;
}

static const char *kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

int rt_file_open(const char *path, int *fd, uint64_t *size, char *err, size_t errlen) {
  *fd = -1;
  *size = 0;
  if (!path || !*path) return rt_path_err(err, errlen, RT_ERR_ARG, "''", "no file name");
  // O_NONBLOCK: opening a FIFO with no writer returns at once (and a device
  // does not wait); it is cleared again below for a regular file.
  int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (f < 0) return rt_path_err(err, errlen, RT_ERR_IO, path, "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(f, &st) != 0) {
    int e = errno;
    close(f);
    return rt_path_err(err, errlen, RT_ERR_IO, path, "cannot stat: %s", strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(f);
    return rt_path_err(err, errlen, RT_ERR_IO, path, "is %s, not a regular file", kind_of(st.st_mode));
  }
  int fl = fcntl(f, F_GETFL);
  if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) < 0) {
    int e = errno;
    close(f);
    return rt_path_err(err, errlen, RT_ERR_IO, path, "cannot read: %s", strerror(e));
  }
  *fd = f;
  *size = (uint64_t)st.st_size;
  return RT_OK;
}

int rt_file_read(const char *path, uint64_t max, uint8_t **buf, size_t *len, char *err,
                 size_t errlen) {
  *buf = NULL;
  *len = 0;
  int fd;
  uint64_t size;
  int rc = rt_file_open(path, &fd, &size, err, errlen);
  if (rc) return rc;
  if (size > max || size >= SIZE_MAX) {
    close(fd);
    return rt_path_err(err, errlen, RT_ERR_FORMAT, path, "the file is %llu bytes, larger than the limit of %llu",
                (unsigned long long)size, (unsigned long long)max);
  }
  uint8_t *b = rt_malloc((size_t)size + 1);  // + 1: a NUL after the contents
  if (!b) {
    close(fd);
    return rt_path_err(err, errlen, RT_ERR_NOMEM, path, "out of memory (%llu bytes)", (unsigned long long)size);
  }
  size_t n = 0;
  while (n < size) {  // a file that shrinks meanwhile is read as it now is
    ssize_t r = read(fd, b + n, (size_t)size - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      rt_free(b);
      close(fd);
      return rt_path_err(err, errlen, RT_ERR_IO, path, "cannot read: %s", strerror(e));
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  b[n] = 0;
  *buf = b;
  *len = n;
  return RT_OK;
}

// ---- the SIGBUS guard ----
// A few mappings at a time (a program maps one weights file); the handler
// only reads this table, with atomic loads, and calls write and _exit.
enum { MAX_WATCH = 8, WATCH_PATH = 240 };
static struct {
  _Atomic(uintptr_t) base;
  size_t len;
  char path[WATCH_PATH];
} watch[MAX_WATCH];
static char guard_prog[64];

void rt_map_watch(const void *addr, size_t len, const char *path) {
  for (int i = 0; i < MAX_WATCH; i++) {
    if (atomic_load(&watch[i].base)) continue;
    watch[i].len = len;
    snprintf(watch[i].path, sizeof watch[i].path, "%s", path ? path : "a mapped file");
    atomic_store(&watch[i].base, (uintptr_t)addr);
    return;
  }
}

void rt_map_unwatch(const void *addr) {
  for (int i = 0; i < MAX_WATCH; i++)
    if (atomic_load(&watch[i].base) == (uintptr_t)addr) atomic_store(&watch[i].base, 0);
}

static void put(const char *s) {
  size_t n = strlen(s);
  while (n) {
    ssize_t w = write(2, s, n);
    if (w <= 0) return;
    s += w, n -= (size_t)w;
  }
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  uintptr_t a = (uintptr_t)si->si_addr;
  for (int i = 0; i < MAX_WATCH; i++) {
    uintptr_t b = atomic_load(&watch[i].base);
    if (b && a >= b && a - b < watch[i].len) {
      put(guard_prog);
      put(": error: ");
      put(watch[i].path);
      put(": the file changed (it was truncated or replaced in place) while in use; it is read where it "
          "lies, so it must not change until the program ends\n");
      _exit(1);
    }
  }
  signal(sig, SIG_DFL);  // not one of ours: a bug, crash as before
  raise(sig);
}

int rt_sigbus_guard(const char *prog) {
  snprintf(guard_prog, sizeof guard_prog, "%s", prog ? prog : "heed");
  struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGBUS, &sa, NULL) == 0 ? RT_OK : RT_ERR_IO;
}
