// runtime/outfile.c: how every file heed writes reaches its path. The last
// step of each output (safetensors from rt_st_write, compile -o, init -o,
// build's program and library, the training log and plot) goes through
// here: the bytes go to PATH.tmp.XXXXXX beside PATH (same directory, same
// filesystem), which is fsynced and renamed over PATH, then the directory
// is fsynced. A failure at any point (disk full, a killed process) leaves
// an existing PATH untouched; the only debris is a temporary file, whose
// name rt_out_is_temp recognises. A path that exists and is not a regular
// file (/dev/null, a FIFO, a terminal) is written in place: it cannot be
// replaced, and renaming over it would remove the device node.
// Also here: the checks made before a command computes anything (the
// output's directory is writable; the output is none of the inputs).
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/rt.h"

static int out_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return RT_ERR_IO;
}

// Six characters for PATH.tmp.XXXXXX, different per process, time and try.
static void tmp_suffix(char out[7], unsigned attempt) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint64_t x = (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
               (uint64_t)(uintptr_t)out ^ (attempt + 1) * 0x9e3779b97f4a7c15ull;
  x ^= x >> 31, x *= 0xbf58476d1ce4e5b9ull, x ^= x >> 27, x *= 0x94d049bb133111ebull, x ^= x >> 31;
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  for (int i = 0; i < 6; i++, x /= 62) out[i] = al[x % 62];
  out[6] = 0;
}

int rt_out_open(RtOutFile *o, const char *path, unsigned mode, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->fd = -1;
  struct stat sb;
  if (!path || !*path) return out_err(err, errlen, "no output file name");
  if (!(o->path = rt_strdup(path))) return out_err(err, errlen, "out of memory");
  if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {  // a device or FIFO: in place
    if ((o->fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
      int e = errno;
      rt_out_abort(o);
      return out_err(err, errlen, "%s: cannot open: %s", path, strerror(e));
    }
    return RT_OK;
  }
  if (!(o->tmp = rt_malloc(strlen(path) + 16))) {
    rt_out_abort(o);
    return out_err(err, errlen, "out of memory");
  }
  for (unsigned attempt = 0; attempt < 100; attempt++) {
    char sfx[7];
    tmp_suffix(sfx, attempt);
    sprintf(o->tmp, "%s.tmp.%s", path, sfx);
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);  // & ~umask, as any new file
    if (o->fd >= 0 || errno != EEXIST) break;
  }
  if (o->fd < 0) {
    int e = errno;
    rt_out_abort(o);
    return out_err(err, errlen, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
  }
  return RT_OK;
}

const char *rt_out_name(const RtOutFile *o) { return o->tmp ? o->tmp : o->path; }

FILE *rt_out_stream(RtOutFile *o) {
  if (!o->f && o->fd >= 0 && (o->f = fdopen(o->fd, "w"))) o->fd = -1;  // the stream owns the descriptor now
  return o->f;
}

// fsync the directory holding path, so that a rename is durable.
static int sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? rt_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : rt_strdup(".");
  if (!dir) return ENOMEM;
  int e = 0, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) e = errno;
  else if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) e = errno;  // some filesystems cannot
  if (fd >= 0) close(fd);
  rt_free(dir);
  return e;
}

// Syncs and closes what o holds open; the bytes of tmp when a tool wrote
// them by name (reopened: a tool may have replaced the file we created).
static int finish_bytes(RtOutFile *o) {
  int e = 0;
  if (o->f) {
    if (fflush(o->f) != 0 || ferror(o->f)) e = errno ? errno : EIO;
    if (!e && o->tmp && fsync(fileno(o->f)) != 0) e = errno;
    if (fclose(o->f) != 0 && !e) e = errno;
    o->f = NULL;
    return e;
  }
  if (o->fd >= 0) {
    if (o->tmp && fsync(o->fd) != 0) e = errno;
    if (close(o->fd) != 0 && !e) e = errno;
    o->fd = -1;
  }
  if (!e && o->tmp) {  // a tool may have written a new file under the name
    int fd = open(o->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) e = errno;
    if (fd >= 0) close(fd);
  }
  return e;
}

int rt_out_commit(RtOutFile *o, char *err, size_t errlen) {
  int e = finish_bytes(o);
  const char *what = "cannot write";
  if (!e && o->tmp && rename(o->tmp, o->path) != 0) e = errno, what = "cannot replace it";
  if (e) {
    int rc = out_err(err, errlen, "%s: %s: %s", o->path, what, strerror(e));
    rt_out_abort(o);
    return rc;
  }
  int rc = RT_OK;
  if (o->tmp) {
    rt_free(o->tmp);
    o->tmp = NULL;  // renamed: nothing left to remove
    if ((e = sync_dir(o->path)))
      rc = out_err(err, errlen, "%s: written, but its directory cannot be synced: %s", o->path, strerror(e));
  }
  rt_free(o->path);
  o->path = NULL;
  return rc;
}

void rt_out_abort(RtOutFile *o) {
  if (o->f) fclose(o->f);
  if (o->fd >= 0) close(o->fd);
  if (o->tmp) unlink(o->tmp);
  rt_free(o->tmp);
  rt_free(o->path);
  memset(o, 0, sizeof *o);
  o->fd = -1;
}

bool rt_out_is_temp(const char *name, const char *base) {
  size_t k = strlen(base), n = strlen(name);
  return n == k + 11 && !strncmp(name, base, k) && !strncmp(name + k, ".tmp.", 5);
}

// The directory part of path ("." if none) into dir.
static void dir_of(const char *path, char *dir, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, cap, ".");
  else if (slash == path) snprintf(dir, cap, "/");
  else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

int rt_out_check(const char *path, char *err, size_t errlen) {
  struct stat sb;
  if (!path || !*path) return out_err(err, errlen, "an empty output file name");
  if (path[strlen(path) - 1] == '/' || (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
    return out_err(err, errlen, "cannot write '%s': it is a directory", path);
  if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
    return access(path, W_OK) == 0 ? RT_OK : out_err(err, errlen, "cannot write '%s': %s", path, strerror(errno));
  char dir[4096];
  dir_of(path, dir, sizeof dir);
  if (stat(dir, &sb) != 0)
    return out_err(err, errlen, "cannot write '%s': the directory '%s' %s", path, dir,
                   errno == ENOENT ? "does not exist" : strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return out_err(err, errlen, "cannot write '%s': '%s' is not a directory", path, dir);
  if (access(dir, W_OK | X_OK) != 0)
    return out_err(err, errlen, "cannot write '%s': the directory '%s' is not writable (%s)", path, dir,
                   strerror(errno));
  return RT_OK;
}

bool rt_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  if (!a || !b) return false;
  if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (!strcmp(a, b)) return true;  // neither exists yet: the same name
  // One of them does not exist: the same if their directories are the same and so are their names.
  char da[4096], db[4096];
  dir_of(a, da, sizeof da), dir_of(b, db, sizeof db);
  const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
  na = na ? na + 1 : a, nb = nb ? nb + 1 : b;
  return !strcmp(na, nb) && stat(da, &sa) == 0 && stat(db, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}
