// engine/checkpoint.c: `heed train`'s checkpoints. The trainer's tensors
// (parameters and optimizer state, engine/trainer.h) and the run's position
// (step, data RNG state, settings, model fingerprint) go out as one
// safetensors file, written atomically by runtime/safetensors.c (temporary
// file, fsync, rename, directory fsync), and come back on --resume after
// every check that could make the resumed run differ from an uninterrupted
// one. Files: DIR/ckpt-00000100.safetensors; the newest `keep` stay.
// Also here: --init (a run started from a weights file) and the run
// directory's rules (which files are a run's; run ids).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cli/run.h"
#include "cli/train.h"
#include "engine/trainer.h"
#include "runtime/rt.h"

// st's checksums (RT_ST_CRC_KEY): false with the damaged tensor in err; a
// note when there are none (a checkpoint of an older heed).
bool heed_ckpt_verify(const RtSafetensors *st, const char *path, char *err, size_t errlen) {
  bool present;
  if (rt_st_check_crc(st, path, &present, err, errlen) != RT_OK) return false;
  const char *fmt = rt_st_meta(st, "format");
  if (!present && err[0]) fprintf(stderr, "heed: note: %s\n", err);
  else if (!present && fmt && !strcmp(fmt, RT_CKPT_FORMAT))
    fprintf(stderr, "heed: note: %s has no checksums (a checkpoint of an older heed): not verified\n", path);
  return true;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h;
}

void heed_ckpt_fingerprint(HeedTrainer *t, const char *model, char out[32]) {
  uint64_t h = fnv(1469598103934665603ull, model, strlen(model) + 1);
  for (int i = 0; i < heed_trainer_ntensors(t); i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    h = fnv(h, r.name, strlen(r.name) + 1);
    h = fnv(h, &r.rank, sizeof r.rank);
    for (int d = 0; d < r.rank; d++) h = fnv(h, &r.shape[d], sizeof r.shape[d]);
    h = fnv(h, &r.is_state, 1);
  }
  snprintf(out, 32, "%016" PRIx64, h);
}

// A checkpoint file name: ckpt-DIGITS.safetensors; its step, or -1.
static int64_t ckpt_step(const char *name) {
  const char *suffix = ".safetensors";
  size_t n = strlen(name), m = strlen(suffix);
  if (n <= 5 + m || strncmp(name, "ckpt-", 5) || strcmp(name + n - m, suffix)) return -1;
  int64_t step = 0;
  for (size_t i = 5; i < n - m; i++) {
    if (name[i] < '0' || name[i] > '9' || step > INT64_MAX / 10 - 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// The steps of the checkpoints in dir, ascending: malloc'd, *n of them.
static int64_t *list_steps(const char *dir, int *n) {
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return NULL;
  int cap = 16;
  int64_t *v = heed_malloc(sizeof *v * (size_t)cap);
  struct dirent *e;
  while (v && (e = readdir(d))) {
    int64_t s = ckpt_step(e->d_name);
    if (s < 0) continue;
    if (*n == cap) {
      int64_t *nv = heed_realloc(v, sizeof *v * (size_t)(cap *= 2));
      if (!nv) break;
      v = nv;
    }
    v[(*n)++] = s;
  }
  closedir(d);
  for (int i = 1; v && i < *n; i++)  // insertion sort: a handful of files
    for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
      int64_t x = v[j];
      v[j] = v[j - 1];
      v[j - 1] = x;
    }
  return v;
}

static void ckpt_name(const char *dir, int64_t step, char *path, size_t pathlen) {
  snprintf(path, pathlen, "%s/ckpt-%08lld.safetensors", dir, (long long)step);
}

bool heed_ckpt_latest(const char *dir, char *path, size_t pathlen) {
  int n;
  int64_t *v = list_steps(dir, &n);
  bool ok = v && n > 0;
  if (ok) ckpt_name(dir, v[n - 1], path, pathlen);
  heed_free(v);
  return ok;
}

// Removes the oldest checkpoints beyond keep (never the one just written).
static void prune(const char *dir, int keep, int64_t written) {
  int n;
  int64_t *v = list_steps(dir, &n);
  char path[4096];
  for (int i = 0; v && i < n - keep; i++) {
    if (v[i] == written) continue;
    ckpt_name(dir, v[i], path, sizeof path);
    unlink(path);
  }
  heed_free(v);
}

bool heed_ckpt_save(HeedTrainer *t, const char *dir, const HeedCkptMeta *m, int keep, char *path,
                    size_t pathlen, char *err, size_t errlen) {
  int n = heed_trainer_ntensors(t);
  RtStWrite *ts = heed_calloc((size_t)n + 1, sizeof *ts);
  if (!ts) {
    snprintf(err, errlen, "out of memory");
    return false;
  }
  for (int i = 0; i < n; i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    ts[i] = (RtStWrite){.name = r.name, .dt = RT_F32, .rank = r.rank, .shape = r.shape, .data = r.data};
  }
  char step[32], steps[32], rng[32];
  snprintf(step, sizeof step, "%lld", (long long)m->step);
  snprintf(steps, sizeof steps, "%lld", (long long)m->steps);
  snprintf(rng, sizeof rng, "%" PRIu64, m->rng);
  char *crcs = heed_malloc((size_t)n * 9 + 1);  // each tensor's CRC-32C, in the order written (= data order)
  if (!crcs) {
    heed_free(ts);
    snprintf(err, errlen, "out of memory");
    return false;
  }
  crcs[0] = 0;
  for (int i = 0, k = 0; i < n; i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    size_t bytes = sizeof(float);
    for (int d = 0; d < r.rank; d++) bytes *= (size_t)r.shape[d];
    k += sprintf(crcs + k, "%s%08x", i ? " " : "", (unsigned)rt_crc32c(0, r.data, bytes));
  }
  const char *meta[] = {"format", RT_CKPT_FORMAT, "step", step, "steps", steps, "rng", rng,
                        "settings", m->settings, "fingerprint", m->fingerprint, RT_ST_CRC_KEY, crcs,
                        "run_id", m->run_id};
  ckpt_name(dir, m->step, path, pathlen);
  bool ok = rt_st_write(path, ts, n, meta, m->run_id[0] ? 8 : 7, err, errlen) == RT_OK;
  heed_free(ts);
  heed_free(crcs);
  if (ok) prune(dir, keep, m->step);
  return ok;
}

// A non-negative decimal integer that fits int64.
static bool parse_i64(const char *s, int64_t *v) {
  char *end;
  if (!s || *s < '0' || *s > '9') return false;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  *v = x;
  return !*end && errno != ERANGE;
}

// The metadata of st into m; false with why (the key and what is wrong) if
// any is missing or malformed.
static bool read_meta(const RtSafetensors *st, HeedCkptMeta *m, char *why, size_t whylen) {
  static const char *const keys[] = {"step", "steps", "rng", "settings", "fingerprint"};
  const char *fmt = rt_st_meta(st, "format");
  if (!fmt || strcmp(fmt, RT_CKPT_FORMAT)) {
    snprintf(why, whylen, "not a heed checkpoint (no or malformed heed metadata: format %s%.40s%s)", fmt ? "'" : "",
             fmt ? fmt : "missing", fmt ? "'" : "");
    return false;
  }
  for (int i = 0; i < 5; i++) {
    const char *v = rt_st_meta(st, keys[i]);
    if (!v || !*v) {
      snprintf(why, whylen, "checkpoint metadata '%s' is %s", keys[i], v ? "empty" : "missing");
      return false;
    }
  }
  const char *num[] = {"step", "steps"};
  int64_t *dst[] = {&m->step, &m->steps};
  for (int i = 0; i < 2; i++)
    if (!parse_i64(rt_st_meta(st, num[i]), dst[i])) {
      snprintf(why, whylen, "checkpoint metadata %s='%.40s' is not a step number (0 .. %lld)", num[i],
               rt_st_meta(st, num[i]), (long long)INT64_MAX);
      return false;
    }
  const char *rng = rt_st_meta(st, "rng");
  char *end;
  errno = 0;
  m->rng = strtoull(rng, &end, 10);
  if (*end || *rng < '0' || *rng > '9' || errno == ERANGE) {
    snprintf(why, whylen, "checkpoint metadata rng='%.40s' is not a generator state (an unsigned 64-bit integer)",
             rng);
    return false;
  }
  snprintf(m->settings, sizeof m->settings, "%s", rt_st_meta(st, "settings"));
  snprintf(m->fingerprint, sizeof m->fingerprint, "%s", rt_st_meta(st, "fingerprint"));
  const char *id = rt_st_meta(st, "run_id");
  snprintf(m->run_id, sizeof m->run_id, "%s", id ? id : "");
  return true;
}

static void shape_str(int rank, const int64_t *shape, char *buf, size_t n) {
  int k = snprintf(buf, n, "[");
  for (int d = 0; d < rank && k > 0 && (size_t)k < n; d++)
    k += snprintf(buf + k, n - (size_t)k, "%s%lld", d ? ", " : "", (long long)shape[d]);
  if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
}

// Every trainer tensor from st, after checking it; none extra.
static bool load_tensors(HeedTrainer *t, const RtSafetensors *st, const char *path, char *err, size_t errlen) {
  int n = heed_trainer_ntensors(t);
  for (int i = 0; i < n; i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    const RtStTensor *x = rt_st_find(st, r.name);
    char want[160], have[160];
    if (!x) {
      snprintf(err, errlen, "%s: no tensor '%s' (a checkpoint of another model?)", path, r.name);
      return false;
    }
    bool same = x->rank == r.rank && x->dt == RT_F32;
    for (int d = 0; same && d < r.rank; d++) same = x->shape[d] == r.shape[d];
    if (!same) {
      shape_str(r.rank, r.shape, want, sizeof want);
      shape_str(x->rank, x->shape, have, sizeof have);
      snprintf(err, errlen, "%s: tensor '%s' is %s %s, the model's is F32 %s", path, r.name,
               rt_dtype_name(x->dt), have, want);
      return false;
    }
    if (rt_st_read_f32(st, x, r.data, err, errlen) != RT_OK) return false;
  }
  if (st->n != n) {
    snprintf(err, errlen, "%s: %d tensors, the model has %d (a checkpoint of another model?)", path, st->n, n);
    return false;
  }
  return true;
}

bool heed_ckpt_load(HeedTrainer *t, const char *path, const HeedCkptMeta *want, HeedCkptMeta *m, char *err,
                    size_t errlen) {
  RtSafetensors st;
  char why[300];
  if (rt_st_open(path, &st, err, errlen) != RT_OK) return false;
  bool ok = read_meta(&st, m, why, sizeof why);
  if (!ok) snprintf(err, errlen, "%s: %s", path, why);
  if (ok) ok = heed_ckpt_verify(&st, path, err, errlen);
  if (ok && strcmp(m->settings, want->settings)) {
    size_t off = 0;
    while (m->settings[off] && m->settings[off] == want->settings[off]) off++;
    while (off > 0 && m->settings[off - 1] != ' ') off--;
    const char *a = m->settings + off, *b = want->settings + off;
    int la = (int)strcspn(a, " "), lb = (int)strcspn(b, " ");
    if (la == lb && !strncmp(a, b, (size_t)la)) {  // one line has a setting more (freeze=...)
      a += la + (a[la] == ' '), b += lb + (b[lb] == ' ');
      la = (int)strcspn(a, " "), lb = (int)strcspn(b, " ");
    }
    snprintf(err, errlen, "%s: written with %.*s, this run has %.*s (these must match to resume)", path, la ? la : 6,
             la ? a : "(none)", lb ? lb : 6, lb ? b : "(none)");
    ok = false;
  }
  if (ok && strcmp(m->fingerprint, want->fingerprint)) {
    ok = load_tensors(t, &st, path, err, errlen);  // names the tensor that differs, if one does
    if (ok) snprintf(err, errlen, "%s: the model differs from the one that wrote the checkpoint", path);
    ok = false;
  }
  if (ok) ok = load_tensors(t, &st, path, err, errlen);
  rt_st_close(&st);
  return ok;
}

// ---- --init, run ids, the run directory ----

void heed_ckpt_new_run_id(char out[32]) {
  uint64_t x = 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, &x, sizeof x) != (ssize_t)sizeof x) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    x = fnv(fnv(1469598103934665603ull, &ts, sizeof ts), &(pid_t){getpid()}, sizeof(pid_t));
  }
  if (fd >= 0) close(fd);
  snprintf(out, 32, "%016" PRIx64, x);
}

bool heed_ckpt_read_run_id(const char *path, char id[32], char *err, size_t errlen) {
  RtSafetensors st;
  if (rt_st_open(path, &st, err, errlen) != RT_OK) return false;
  HeedCkptMeta m;
  char why[300];
  bool ok = read_meta(&st, &m, why, sizeof why);
  if (!ok) snprintf(err, errlen, "%s: %s", path, why);
  else snprintf(id, 32, "%s", m.run_id);
  rt_st_close(&st);
  return ok;
}

// One model tensor (slot r) from st under prefix: present, a float, the same shape.
static bool init_tensor(HeedTensorRef r, const RtSafetensors *st, const char *path, const char *prefix, char *err,
                        size_t errlen) {
  char name[1400], want[160], have[160];
  snprintf(name, sizeof name, "%s%s", prefix, r.name);
  const RtStTensor *x = rt_st_find(st, name);
  shape_str(r.rank, r.shape, want, sizeof want);
  if (!x) {
    snprintf(err, errlen, "%s: missing tensor '%s' (f32%s)%s", path, name, want,
             prefix[0] ? "" : "; names with a prefix (transformer.h.0...) load with --prefix");
    return false;
  }
  bool same = x->rank == r.rank && (x->dt == RT_F32 || x->dt == RT_F16 || x->dt == RT_BF16);
  for (int d = 0; same && d < r.rank; d++) same = x->shape[d] == r.shape[d];
  if (!same) {
    shape_str(x->rank, x->shape, have, sizeof have);
    snprintf(err, errlen, "%s: tensor '%s' is %s%s but the model declares f32%s", path, name, rt_dtype_name(x->dt),
             have, want);
    return false;
  }
  return rt_st_read_f32(st, x, r.data, err, errlen) == RT_OK;
}

bool heed_ckpt_init_from(HeedTrainer *t, const char *path, const char *prefix, bool strict, char *err,
                         size_t errlen) {
  RtSafetensors st;
  if (rt_st_open(path, &st, err, errlen) != RT_OK) return false;
  const char *pre = prefix ? prefix : "";
  size_t plen = strlen(pre);
  bool ok = heed_ckpt_verify(&st, path, err, errlen);
  int n = heed_trainer_ntensors(t);
  for (int i = 0; ok && i < n; i++) {
    HeedTensorRef r = heed_trainer_tensor(t, i);
    if (!r.is_state) ok = init_tensor(r, &st, path, pre, err, errlen);
  }
  for (int j = 0; ok && strict && j < st.n; j++) {  // extras (a heed checkpoint's optimizer state is none)
    const char *nm = st.t[j].name;
    bool known = rt_st_is_ckpt_state(&st, nm);
    for (int i = 0; !known && i < n; i++) {
      HeedTensorRef r = heed_trainer_tensor(t, i);
      known = !r.is_state && !strncmp(nm, pre, plen) && !strcmp(nm + plen, r.name);
    }
    if (!known) {
      snprintf(err, errlen, "%s: tensor '%s' is not a parameter of the model (--strict=false ignores extras)", path,
               nm);
      ok = false;
    }
  }
  rt_st_close(&st);
  return ok;
}

// A temporary file of a run's file (NAME.tmp.XXXXXX, runtime/outfile.c;
// metrics.csv.tmp and loss.svg.tmp from older heed): debris of a killed run.
static bool run_temp(const char *name) {
  if (!strcmp(name, "metrics.csv.tmp") || !strcmp(name, "loss.svg.tmp")) return true;
  const char *tmp = strstr(name, ".tmp.");
  if (!tmp || strlen(tmp) != 11) return false;
  char base[300];
  snprintf(base, sizeof base, "%.*s", (int)(tmp - name), name);
  return (!strcmp(base, "metrics.csv") || !strcmp(base, "loss.svg") || ckpt_step(base) >= 0) &&
         rt_out_is_temp(name, base);
}

// A run's file name: a checkpoint, the metrics log, the plot, or a temporary
// file of one of them (run_temp).
static bool run_file(const char *name) {
  return ckpt_step(name) >= 0 || !strcmp(name, "metrics.csv") || !strcmp(name, "loss.svg") || run_temp(name);
}

int heed_rundir_lock(const char *dir, char *err, size_t errlen) {
  char path[4096], pid[32] = "";
  snprintf(path, sizeof path, "%s/%s", dir, HEED_RUNDIR_LOCK);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open the run directory's lock '%s': %s", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    ssize_t n = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
    pid[n > 0 ? strcspn(pid, "\n") : 0] = 0;
    if (e == EWOULDBLOCK)
      snprintf(err, errlen, "%s is in use by another heed train (pid %s): wait for it, or choose another --out", dir,
               pid[0] ? pid : "unknown");
    else
      snprintf(err, errlen, "cannot lock '%s': %s", path, strerror(e));
    close(fd);
    return -1;
  }
  int k = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  bool wrote = ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)k, 0) == k;
  (void)wrote;  // the pid is only for a second run's message: the lock holds without it
  return fd;
}

int heed_rundir_clean_temps(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  char path[4096];
  for (struct dirent *e; (e = readdir(d));) {
    if (!run_temp(e->d_name)) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    n += unlink(path) == 0;
  }
  closedir(d);
  return n;
}

bool heed_rundir_used(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return false;
  bool used = false;
  for (struct dirent *e; !used && (e = readdir(d));) used = run_file(e->d_name);
  closedir(d);
  return used;
}

bool heed_rundir_clear(const char *dir, char *err, size_t errlen) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT;
  bool ok = true;
  char path[4096];
  for (struct dirent *e; ok && (e = readdir(d));) {
    if (!run_file(e->d_name)) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) != 0 && errno != ENOENT) {
      snprintf(err, errlen, "--force: cannot remove '%s': %s", path, strerror(errno));
      ok = false;
    }
  }
  closedir(d);
  return ok;
}

bool heed_rundir_foreign(const char *dir, const char *run_id, char *path, size_t pathlen, char *id, size_t idlen) {
  int n;
  int64_t *v = list_steps(dir, &n);
  bool found = false;
  for (int i = 0; v && i < n && !found; i++) {
    char rid[32], err[512];
    ckpt_name(dir, v[i], path, pathlen);
    found = heed_ckpt_read_run_id(path, rid, err, sizeof err) && rid[0] && run_id[0] && strcmp(rid, run_id);
    if (found) snprintf(id, idlen, "%s", rid);
  }
  heed_free(v);
  return found;
}
