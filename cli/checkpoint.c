// cli/checkpoint.c: `heed train`'s checkpoints. The trainer's tensors
// (parameters and optimizer state, cli/trainer.h) and the run's position
// (step, data RNG state, settings, model fingerprint) go out as one
// safetensors file, written atomically by runtime/safetensors.c (temporary
// file, fsync, rename, directory fsync), and come back on --resume after
// every check that could make the resumed run differ from an uninterrupted
// one. Files: DIR/ckpt-00000100.safetensors; the newest `keep` stay.
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/train.h"
#include "cli/trainer.h"
#include "runtime/rt.h"

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
  int64_t *v = malloc(sizeof *v * (size_t)cap);
  struct dirent *e;
  while (v && (e = readdir(d))) {
    int64_t s = ckpt_step(e->d_name);
    if (s < 0) continue;
    if (*n == cap) {
      int64_t *nv = realloc(v, sizeof *v * (size_t)(cap *= 2));
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
  free(v);
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
  free(v);
}

bool heed_ckpt_save(HeedTrainer *t, const char *dir, const HeedCkptMeta *m, int keep, char *path,
                    size_t pathlen, char *err, size_t errlen) {
  int n = heed_trainer_ntensors(t);
  RtStWrite *ts = calloc((size_t)n + 1, sizeof *ts);
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
  const char *meta[] = {"format", RT_CKPT_FORMAT, "step", step, "steps", steps, "rng", rng,
                        "settings", m->settings, "fingerprint", m->fingerprint};
  ckpt_name(dir, m->step, path, pathlen);
  bool ok = rt_st_write(path, ts, n, meta, 6, err, errlen) == RT_OK;
  free(ts);
  if (ok) prune(dir, keep, m->step);
  return ok;
}

static bool parse_i64(const char *s, int64_t *v) {
  char *end;
  if (!s || !*s) return false;
  long long x = strtoll(s, &end, 10);
  *v = x;
  return !*end && x >= 0;
}

// The metadata of st into m; false if any is missing or malformed.
static bool read_meta(const RtSafetensors *st, HeedCkptMeta *m) {
  const char *fmt = rt_st_meta(st, "format"), *rng = rt_st_meta(st, "rng");
  const char *set = rt_st_meta(st, "settings"), *fp = rt_st_meta(st, "fingerprint");
  if (!fmt || strcmp(fmt, RT_CKPT_FORMAT) || !rng || !set || !fp) return false;
  if (!parse_i64(rt_st_meta(st, "step"), &m->step) || !parse_i64(rt_st_meta(st, "steps"), &m->steps)) return false;
  char *end;
  m->rng = strtoull(rng, &end, 10);
  if (*end || !*rng) return false;
  snprintf(m->settings, sizeof m->settings, "%s", set);
  snprintf(m->fingerprint, sizeof m->fingerprint, "%s", fp);
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
  if (rt_st_open(path, &st, err, errlen) != RT_OK) return false;
  bool ok = read_meta(&st, m);
  if (!ok) snprintf(err, errlen, "%s: not a heed checkpoint (no or malformed heed metadata)", path);
  if (ok && strcmp(m->fingerprint, want->fingerprint)) {
    ok = load_tensors(t, &st, path, err, errlen);  // names the tensor that differs, if one does
    if (ok) snprintf(err, errlen, "%s: the model differs from the one that wrote the checkpoint", path);
    ok = false;
  }
  if (ok && strcmp(m->settings, want->settings)) {
    size_t off = 0;
    while (m->settings[off] && m->settings[off] == want->settings[off]) off++;
    while (off > 0 && m->settings[off - 1] != ' ') off--;
    const char *a = m->settings + off, *b = want->settings + off;
    int la = (int)strcspn(a, " "), lb = (int)strcspn(b, " ");
    snprintf(err, errlen, "%s: written with %.*s, this run has %.*s (these must match to resume)", path, la, a,
             lb, b);
    ok = false;
  }
  if (ok) ok = load_tensors(t, &st, path, err, errlen);
  rt_st_close(&st);
  return ok;
}
