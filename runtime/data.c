// runtime/data.c: training data for `heed train` (CLI.md "Files"). A data
// file enters here, is read into memory (rt_file_read: regular files only;
// not mapped, so a file truncated during a run cannot crash it) and checked once (size, header,
// every token against the model's vocabulary); the trainer then draws
// (tokens, targets) windows from it: random ones from a seeded splitmix64
// generator whose whole state is one uint64 (saved in checkpoints), and a
// fixed set spread over the validation split for evaluation. libc only.
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

// Reads path into *buf, *len. Empty files and anything but a regular file
// are errors.
static int read_data(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen) {
  int rc = rt_file_read(path, RT_DATA_MAX_BYTES, buf, len, err, errlen);
  if (rc) return rc;
  if (*len == 0) {
    rt_free(*buf);
    *buf = NULL;
    return rt_path_err(err, errlen, RT_ERR_FORMAT, path, "the data file is empty");
  }
  return RT_OK;
}

// The llm.c header: 256 little-endian int32, [0] magic, [2] token count.
static int32_t header_int(const uint8_t *p, int i) {
  const uint8_t *q = p + 4 * i;
  return (int32_t)((uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24);
}

// Finds where the uint16 tokens of a .bin start; checks the length.
static int bin_layout(const char *path, const uint8_t *m, size_t len, size_t *skip, char *err, size_t errlen) {
  *skip = 0;
  if (len >= 4 && header_int(m, 0) == RT_DATA_MAGIC) {
    if (len < RT_DATA_HEADER_BYTES)
      return rt_path_err(err, errlen, RT_ERR_FORMAT, path,
                      "starts with the header magic %d but is %llu bytes, shorter than the %d-byte header "
                      "(a truncated file?)", RT_DATA_MAGIC, (unsigned long long)len, RT_DATA_HEADER_BYTES);
    int32_t version = header_int(m, 1);
    if (version != RT_DATA_VERSION)
      return rt_path_err(err, errlen, RT_ERR_FORMAT, path,
                      "the header (magic %d) has version %d; heed reads version %d (uint16 tokens)%s", RT_DATA_MAGIC,
                      version, RT_DATA_VERSION, version == 2 ? ", not version 2's uint32 tokens" : "");
    *skip = RT_DATA_HEADER_BYTES;
    int64_t count = header_int(m, 2);
    int64_t have = (int64_t)((len - *skip) / 2);
    if (count != have || (len - *skip) % 2)
      return rt_path_err(err, errlen, RT_ERR_FORMAT, path,
                      "the header (magic %d) says %lld tokens, but %llu bytes follow it (%lld uint16 tokens)",
                      RT_DATA_MAGIC, (long long)count, (unsigned long long)(len - *skip), (long long)have);
  }
  if ((len - *skip) % 2)
    return rt_path_err(err, errlen, RT_ERR_FORMAT, path,
                    "odd length (%llu bytes): a .bin file holds little-endian uint16 tokens",
                    (unsigned long long)len);
  if (len == *skip) return rt_path_err(err, errlen, RT_ERR_FORMAT, path, "no tokens after the header");
  return RT_OK;
}

// The first token >= vocab, or -1.
static int64_t first_out_of_range(const RtTokens *t, int64_t vocab) {
  if (vocab <= 0 || (t->width == 1 && vocab >= 256) || (t->width == 2 && vocab >= 65536)) return -1;
  for (int64_t i = 0; i < t->n; i++)
    if (rt_tokens_get(t, i) >= vocab) return i;
  return -1;
}

// FNV-1a over 8-byte words (then the tail bytes): a fingerprint of the data
// for checkpoints, not a cryptographic hash.
static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h ^ (uint64_t)n;
}

int rt_tokens_open(const char *path, int64_t vocab, RtTokens *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (err && errlen) err[0] = 0;
  if (!path) return rt_path_err(err, errlen, RT_ERR_ARG, "data", "no path");
  uint8_t *buf = NULL;
  size_t len = 0, skip = 0;
  int rc = read_data(path, &buf, &len, err, errlen);
  if (rc != RT_OK) return rc;
  bool bin = ends_with(path, ".bin");
  if (bin && (rc = bin_layout(path, buf, len, &skip, err, errlen)) != RT_OK) {
    rt_free(buf);
    return rc;
  }
  RtTokens t = {.width = bin ? 2 : 1, .tok = buf + skip, .buf_ = buf};
  t.n = (int64_t)((len - skip) / (size_t)t.width);
  int64_t bad = first_out_of_range(&t, vocab);
  if (bad >= 0) {
    rc = rt_path_err(err, errlen, RT_ERR_FORMAT, path,
                  "token %d at byte offset %lld (token %lld) is outside the model's vocabulary 0..%lld%s",
                  rt_tokens_get(&t, bad), (long long)(skip + (size_t)bad * (size_t)t.width), (long long)bad,
                  (long long)vocab - 1, bin ? "" : " (a text file is read as bytes 0..255)");
    rt_free(buf);
    return rc;
  }
  t.path = rt_strdup(path);
  if (!t.path) {
    rt_free(buf);
    return rt_path_err(err, errlen, RT_ERR_NOMEM, path, "out of memory");
  }
  t.hash = hash_bytes(t.tok, len - skip);
  *out = t;
  return RT_OK;
}

void rt_tokens_close(RtTokens *t) {
  if (!t) return;
  rt_free(t->buf_);
  rt_free(t->path);
  memset(t, 0, sizeof *t);
}

RtSplit rt_split_all(const RtTokens *t) { return (RtSplit){t, 0, t->n}; }

void rt_split(const RtTokens *t, double frac, RtSplit *train, RtSplit *val) {
  int64_t cut = (int64_t)((double)t->n * frac);
  if (cut < 0) cut = 0;
  if (cut > t->n) cut = t->n;
  *train = (RtSplit){t, 0, cut};
  *val = (RtSplit){t, cut, t->n};
}

int rt_window_check(const RtSplit *s, int64_t seq, const char *what, char *err, size_t errlen) {
  int64_t n = s->end - s->begin;
  if (seq >= 1 && n >= 1 && seq <= n - 1) return RT_OK;  // n >= seq + 1, without overflow
  if (seq < 1)
    return rt_path_err(err, errlen, RT_ERR_ARG, s->src->path, "seq=%lld: a window needs seq >= 1", (long long)seq);
  return rt_path_err(err, errlen, RT_ERR_FORMAT, s->src->path,
                  "the %s data has %lld tokens, fewer than one window (seq + 1 = %llu tokens)", what,
                  (long long)n, (unsigned long long)seq + 1);
}

// the data order's splitmix64 step on a bare state (sample.c's generator)
static uint64_t next_u64(uint64_t *state) {
  RtRng r = {*state};
  uint64_t v = rt_rng_next(&r);
  *state = r.s;
  return v;
}

// Copies the window at offset o (seq + 1 tokens) into tokens/targets.
static void window(const RtSplit *s, int64_t o, int64_t T, int32_t *tokens, int32_t *targets) {
  for (int64_t t = 0; t < T; t++) {
    tokens[t] = rt_tokens_get(s->src, s->begin + o + t);
    targets[t] = rt_tokens_get(s->src, s->begin + o + t + 1);
  }
}

void rt_batch_random(const RtSplit *s, uint64_t *rng, int64_t B, int64_t T, int32_t *tokens, int32_t *targets) {
  uint64_t span = (uint64_t)(s->end - s->begin - T);  // offsets 0 .. span-1
  for (int64_t b = 0; b < B; b++) {
    int64_t o = (int64_t)(next_u64(rng) % span);  // bias < span / 2^64: negligible
    window(s, o, T, tokens + b * T, targets + b * T);
  }
}

void rt_batch_fixed(const RtSplit *s, int64_t w0, int64_t nw, int64_t B, int64_t T, int32_t *tokens,
                    int32_t *targets) {
  int64_t last = s->end - s->begin - T - 1;  // the last possible offset
  for (int64_t b = 0; b < B; b++) {
    int64_t w = w0 + b;
    int64_t o = nw > 1 ? (int64_t)((double)last * (double)w / (double)(nw - 1)) : 0;
    window(s, o, T, tokens + b * T, targets + b * T);
  }
}
