// runtime/safetensors.c: safetensors files, the runtime's way in and out.
// Weights, --inputs, --outputs and checkpoints (CLI.md "Files") arrive here:
// rt_st_open maps a file read-only and rt_st_parse checks its header into an
// RtSafetensors table (names, dtypes, shapes, byte ranges into the mapping,
// no copies of the data); rt_st_write writes tensors back atomically.
//
// Every malformed file gets a one-line message and an error code, never a
// crash, a leak or an allocation larger than the header: the header length
// is capped (RT_ST_MAX_HEADER, as the reference implementation does), JSON
// parsing is json.c's (strict, bounded nesting), and every number in the
// header is checked before it is used as a size or offset.
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "heed reads and writes safetensors data in host byte order: a little-endian host is required"
#endif

// Header integers are JSON numbers held as doubles by json.c: from 2^53 on
// they cannot be told apart from their neighbours, so they are rejected.
#define ST_INT_LIMIT 9007199254740992.0
#define ST_METADATA "__metadata__"

// ---- errors ----

typedef struct {
  const char *label;  // the file, as messages name it
  char *err;
  size_t errlen;
} StCtx;

// Copies s for a one-line message: control characters become '?', and a
// long string is cut (at a UTF-8 boundary) and ends in "...".
static void clean(char *dst, size_t cap, const char *s) {
  size_t n = strlen(s), keep = n;
  if (n + 1 > cap) {
    keep = cap - 4;
    while (keep > 0 && ((unsigned char)s[keep] & 0xc0) == 0x80) keep--;
  }
  size_t j = 0;
  for (size_t i = 0; i < keep; i++) {
    unsigned char c = (unsigned char)s[i];
    dst[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (keep < n) {
    memcpy(dst + j, "...", 3);
    j += 3;
  }
  dst[j] = 0;
}

// "label: tensor 'name': message" (no tensor part when tensor is NULL).
static int st_err(StCtx *c, int code, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int st_err(StCtx *c, int code, const char *tensor, const char *fmt, ...) {
  if (!c->err || c->errlen == 0) return code;
  char msg[512], name[96];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (tensor) {
    clean(name, sizeof name, tensor);
    snprintf(c->err, c->errlen, "%s: tensor '%s': %s", c->label, name, msg);
  } else {
    snprintf(c->err, c->errlen, "%s: %s", c->label, msg);
  }
  return code;
}

// ---- reading ----

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

// The offset of the first byte that is not valid UTF-8 (overlong forms,
// surrogates and code points past U+10FFFF included) or is NUL; n if none.
static size_t utf8_bad_at(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c == 0) return i;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return n;
}

// A JSON number that is a non-negative integer below 2^53.
// Returns 0 (ok, *out set), 1 (not a non-negative integer), 2 (too large).
static int json_uint(const RtJson *j, uint64_t *out) {
  if (j->kind != RT_JSON_NUMBER) return 1;
  double d = j->num;
  if (!(d >= 0)) return 1;  // negative or NaN
  if (d >= ST_INT_LIMIT) return 2;
  if ((double)(uint64_t)d != d) return 1;  // a fraction
  *out = (uint64_t)d;
  return 0;
}

// "F32[2, 3]" for messages.
static void shape_str(char *dst, size_t cap, RtDType dt, int rank, const int64_t *shape) {
  size_t j = (size_t)snprintf(dst, cap, "%s[", rt_dtype_name(dt));
  for (int i = 0; i < rank && j < cap; i++)
    j += (size_t)snprintf(dst + j, cap - j, i ? ", %" PRId64 : "%" PRId64, shape[i]);
  if (j < cap) snprintf(dst + j, cap - j, "]");
}

// The object's field named key: *out (NULL if absent); an error if twice.
static int entry_field(StCtx *c, const char *tensor, const RtJson *e, const char *key, const RtJson **out) {
  *out = NULL;
  for (const RtJson *f = e->child; f; f = f->next) {
    if (strcmp(f->key, key) != 0) continue;
    if (*out) return st_err(c, RT_ERR_FORMAT, tensor, "field \"%s\" appears twice", key);
    *out = f;
  }
  if (!*out) return st_err(c, RT_ERR_FORMAT, tensor, "missing \"%s\"", key);
  return RT_OK;
}

// One header entry {"dtype", "shape", "data_offsets"} into t (t->name set).
static int parse_entry(StCtx *c, const RtJson *e, uint64_t data_len, RtStTensor *t) {
  const char *nm = t->name;
  if (e->kind != RT_JSON_OBJECT) return st_err(c, RT_ERR_FORMAT, nm, "entry is %s, not a JSON object", rt_json_kind_name(e));
  const RtJson *dtype, *shape, *offs;
  int rc;
  if ((rc = entry_field(c, nm, e, "dtype", &dtype)) || (rc = entry_field(c, nm, e, "shape", &shape)) ||
      (rc = entry_field(c, nm, e, "data_offsets", &offs)))
    return rc;

  if (dtype->kind != RT_JSON_STRING)
    return st_err(c, RT_ERR_FORMAT, nm, "\"dtype\" is %s, not a string", rt_json_kind_name(dtype));
  int dt = 0;
  while (dt < RT_DT_PLAIN && strcmp(rt_dtype_info[dt].st_name, dtype->str) != 0) dt++;
  if (dt == RT_DT_PLAIN) {
    char s[40];
    clean(s, sizeof s, dtype->str);
    return st_err(c, RT_ERR_FORMAT, nm, "unsupported dtype '%s' (heed reads F32, F16, BF16, I32, I64, I8, U8, BOOL)",
                  s);
  }
  t->dt = (RtDType)dt;

  if (shape->kind != RT_JSON_ARRAY) return st_err(c, RT_ERR_FORMAT, nm, "\"shape\" is %s, not an array", rt_json_kind_name(shape));
  int rank = shape->n;
  if (rank > RT_MAX_RANK) return st_err(c, RT_ERR_FORMAT, nm, "rank %d exceeds the maximum of %d", rank, RT_MAX_RANK);
  t->rank = rank;
  uint64_t numel = 1;
  bool overflow = false;
  int i = 0;
  for (const RtJson *d = shape->child; d; d = d->next, i++) {
    uint64_t v = 0;
    int bad = json_uint(d, &v);
    if (bad == 2) return st_err(c, RT_ERR_FORMAT, nm, "shape[%d] (%.17g) is too large", i, d->num);
    if (bad) return st_err(c, RT_ERR_FORMAT, nm, "shape[%d] is not a non-negative integer", i);
    t->shape[i] = (int64_t)v;
    if (v != 0 && numel > UINT64_MAX / v) overflow = true;
    numel *= v;
  }
  // A zero dimension makes the count 0, yet an overflow before it still means
  // a shape no one could have written data for: reject it either way.
  if (overflow || numel > UINT64_MAX / rt_dtype_info[dt].size)
    return st_err(c, RT_ERR_FORMAT, nm, "shape is too large: its size in bytes overflows 64 bits");
  t->nbytes = numel * rt_dtype_info[dt].size;

  uint64_t begin = 0, end = 0;
  if (offs->kind != RT_JSON_ARRAY || offs->n != 2 || json_uint(offs->child, &begin) ||
      json_uint(offs->child->next, &end))
    return st_err(c, RT_ERR_FORMAT, nm, "\"data_offsets\" is not two non-negative integers [begin, end]");
  if (begin > end)
    return st_err(c, RT_ERR_FORMAT, nm, "data offsets [%" PRIu64 ", %" PRIu64 ") are out of order", begin, end);
  if (end > data_len)
    return st_err(c, RT_ERR_FORMAT, nm, "data offsets [%" PRIu64 ", %" PRIu64 ") exceed the data section (%" PRIu64
                  " bytes)", begin, end, data_len);
  if (end - begin != t->nbytes) {
    char s[256];
    shape_str(s, sizeof s, t->dt, t->rank, t->shape);
    return st_err(c, RT_ERR_FORMAT, nm,
                  "data offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64 " bytes, but %s needs %" PRIu64, begin, end,
                  end - begin, s, t->nbytes);
  }
  t->off = begin;
  return RT_OK;
}

static int cmp_tensor_name(const void *a, const void *b) {
  return strcmp((*(const RtStTensor *const *)a)->name, (*(const RtStTensor *const *)b)->name);
}

static int cmp_tensor_off(const void *a, const void *b) {
  const RtStTensor *x = *(const RtStTensor *const *)a, *y = *(const RtStTensor *const *)b;
  if (x->off != y->off) return x->off < y->off ? -1 : 1;
  return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// No name twice (json.c keeps duplicate keys), no two byte ranges sharing a byte.
static int check_table(StCtx *c, RtSafetensors *st) {
  const RtStTensor **by = st->by_name_;
  for (int i = 0; i < st->n; i++) by[i] = &st->t[i];
  qsort(by, (size_t)st->n, sizeof *by, cmp_tensor_name);
  for (int i = 1; i < st->n; i++)
    if (strcmp(by[i - 1]->name, by[i]->name) == 0)
      return st_err(c, RT_ERR_FORMAT, by[i]->name, "appears more than once in the header");

  const RtStTensor **byoff = rt_malloc((size_t)(st->n ? st->n : 1) * sizeof *byoff);
  if (!byoff) return st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
  int m = 0;
  for (int i = 0; i < st->n; i++)
    if (st->t[i].nbytes > 0) byoff[m++] = &st->t[i];  // empty ranges overlap nothing
  qsort(byoff, (size_t)m, sizeof *byoff, cmp_tensor_off);
  const RtStTensor *reach = NULL;  // the tensor ending last so far
  int rc = RT_OK;
  for (int i = 0; i < m && !rc; i++) {
    const RtStTensor *t = byoff[i];
    if (reach && t->off < reach->off + reach->nbytes)
      rc = st_err(c, RT_ERR_FORMAT, t->name,
                  "data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' [%" PRIu64 ", %" PRIu64 ")", t->off,
                  t->off + t->nbytes, reach->name, reach->off, reach->off + reach->nbytes);
    if (!reach || t->off + t->nbytes > reach->off + reach->nbytes) reach = t;
  }
  rt_free(byoff);
  return rc;
}

static int parse_metadata(StCtx *c, const RtJson *m, RtSafetensors *st) {
  if (m->kind != RT_JSON_OBJECT)
    return st_err(c, RT_ERR_FORMAT, NULL, "\"" ST_METADATA "\" is %s, not an object of strings", rt_json_kind_name(m));
  int n = m->n;
  st->meta_key = rt_calloc((size_t)(n ? n : 1), sizeof *st->meta_key);
  st->meta_val = rt_calloc((size_t)(n ? n : 1), sizeof *st->meta_val);
  if (!st->meta_key || !st->meta_val) return st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
  for (const RtJson *kv = m->child; kv; kv = kv->next) {
    char k[96];
    clean(k, sizeof k, kv->key);
    if (kv->kind != RT_JSON_STRING)
      return st_err(c, RT_ERR_FORMAT, NULL, "\"" ST_METADATA "\" value for '%s' is %s, not a string", k,
                    rt_json_kind_name(kv));
    int i = st->nmeta;
    st->meta_key[i] = rt_strdup(kv->key);
    st->meta_val[i] = rt_strdup(kv->str);
    st->nmeta++;
    if (!st->meta_key[i] || !st->meta_val[i]) return st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
  }
  char **keys = rt_malloc((size_t)(n ? n : 1) * sizeof *keys);
  if (!keys) return st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
  memcpy(keys, st->meta_key, (size_t)n * sizeof *keys);
  qsort(keys, (size_t)n, sizeof *keys, cmp_str);
  int rc = RT_OK;
  for (int i = 1; i < n && !rc; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0) {
      char k[96];
      clean(k, sizeof k, keys[i]);
      rc = st_err(c, RT_ERR_FORMAT, NULL, "\"" ST_METADATA "\" key '%s' appears more than once", k);
    }
  rt_free(keys);
  return rc;
}

// The header JSON (already checked: UTF-8, starts with '{') into st.
static int parse_header(StCtx *c, const char *text, size_t hlen, uint64_t data_len, RtSafetensors *st) {
  RtJsonDoc doc;
  size_t at = 0;
  const char *why = NULL;
  int rc = rt_json_parse(&doc, text, hlen, &at, &why);
  if (rc == RT_ERR_NOMEM) return st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
  if (rc) return st_err(c, RT_ERR_FORMAT, NULL, "header is not valid JSON (%s, near byte %zu of %zu)", why, at, hlen);
  const RtJson *root = doc.root;
  while (at < hlen && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) at++;
  if (at < hlen) {
    rc = st_err(c, RT_ERR_FORMAT, NULL, "header has unexpected bytes after the JSON object (at byte %zu of %zu)", at,
                hlen);
    goto done;
  }
  if (root->kind != RT_JSON_OBJECT) {
    rc = st_err(c, RT_ERR_FORMAT, NULL, "header is %s, not a JSON object", rt_json_kind_name(root));
    goto done;
  }
  const RtJson *meta = NULL;
  int n = 0;
  for (const RtJson *e = root->child; e; e = e->next) {
    if (strcmp(e->key, ST_METADATA) == 0) {
      if (meta) {
        rc = st_err(c, RT_ERR_FORMAT, NULL, "\"" ST_METADATA "\" appears more than once in the header");
        goto done;
      }
      meta = e;
    } else {
      n++;
    }
  }
  st->t = rt_calloc((size_t)(n ? n : 1), sizeof *st->t);
  st->by_name_ = rt_calloc((size_t)(n ? n : 1), sizeof *st->by_name_);
  if (!st->t || !st->by_name_) {
    rc = st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
    goto done;
  }
  for (const RtJson *e = root->child; e; e = e->next) {
    if (e == meta) continue;
    RtStTensor *t = &st->t[st->n];
    t->name = rt_strdup(e->key);
    if (!t->name) {
      rc = st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
      goto done;
    }
    st->n++;
    if ((rc = parse_entry(c, e, data_len, t))) goto done;
  }
  if (meta && (rc = parse_metadata(c, meta, st))) goto done;
  rc = check_table(c, st);
done:
  rt_json_free(&doc);
  return rc;
}

int rt_st_parse(const uint8_t *buf, size_t len, const char *label, RtSafetensors *out, char *err, size_t errlen) {
  StCtx c = {label ? label : "safetensors", err, errlen};
  memset(out, 0, sizeof *out);
  if (err && errlen) err[0] = 0;
  if (!buf) return st_err(&c, RT_ERR_ARG, NULL, "rt_st_parse: no buffer");
  if (len < 8)
    return st_err(&c, RT_ERR_FORMAT, NULL, "file is %zu bytes, too short for a safetensors file (at least 8)", len);
  uint64_t hlen = le64(buf);
  if (hlen > RT_ST_MAX_HEADER)
    return st_err(&c, RT_ERR_FORMAT, NULL,
                  "header length %" PRIu64 " exceeds the limit of %d bytes (not a safetensors file?)", hlen,
                  RT_ST_MAX_HEADER);
  if (hlen > len - 8)
    return st_err(&c, RT_ERR_FORMAT, NULL,
                  "header length %" PRIu64 " exceeds the file size (%zu bytes after the 8-byte length)", hlen,
                  len - 8);
  const uint8_t *h = buf + 8;
  if (hlen == 0 || h[0] != '{') {
    if (hlen == 0) return st_err(&c, RT_ERR_FORMAT, NULL, "header is empty, not a JSON object");
    if (h[0] >= 0x20 && h[0] < 0x7f)
      return st_err(&c, RT_ERR_FORMAT, NULL, "header is not a JSON object (it starts with '%c')", h[0]);
    return st_err(&c, RT_ERR_FORMAT, NULL, "header is not a JSON object (it starts with byte 0x%02x)", h[0]);
  }
  size_t bad = utf8_bad_at(h, (size_t)hlen);
  if (bad < hlen)
    return st_err(&c, RT_ERR_FORMAT, NULL, "header is not valid UTF-8 text (byte 0x%02x at header byte %zu)", h[bad],
                  bad);
  int rc = parse_header(&c, (const char *)h, (size_t)hlen, len - 8 - hlen, out);
  if (rc) {
    rt_st_close(out);
    return rc;
  }
  out->data = buf + 8 + hlen;
  out->data_len = len - 8 - hlen;
  return RT_OK;
}

int rt_st_open(const char *path, RtSafetensors *out, char *err, size_t errlen) {
  StCtx c = {path, err, errlen};
  memset(out, 0, sizeof *out);
  int fd;
  uint64_t size;
  int rc = rt_file_open(path, &fd, &size, err, errlen);  // a regular file, or a message
  if (rc) return rc;
  if (size < 8) {
    close(fd);
    return rt_st_parse((const uint8_t *)"", (size_t)size, path, out, err, errlen);
  }
  if (size > SIZE_MAX) {
    close(fd);
    return st_err(&c, RT_ERR_IO, NULL, "file too large to map");
  }
  size_t len = (size_t)size;
  void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (map == MAP_FAILED) return st_err(&c, RT_ERR_IO, NULL, "cannot map: %s", strerror(e));
  rt_map_watch(map, len, path);  // a truncation meanwhile: rt_sigbus_guard's message
  rc = rt_st_parse(map, len, path, out, err, errlen);
  if (rc) {
    rt_map_unwatch(map);
    munmap(map, len);
    return rc;
  }
  out->map_ = map;
  out->map_len_ = len;
  return RT_OK;
}

void rt_st_close(RtSafetensors *st) {
  if (!st) return;
  for (int i = 0; i < st->n; i++) rt_free(st->t[i].name);
  rt_free(st->t);
  rt_free(st->by_name_);
  for (int i = 0; i < st->nmeta; i++) {
    rt_free(st->meta_key[i]);
    rt_free(st->meta_val[i]);
  }
  rt_free(st->meta_key);
  rt_free(st->meta_val);
  if (st->map_) {
    rt_map_unwatch(st->map_);
    munmap(st->map_, st->map_len_);
  }
  memset(st, 0, sizeof *st);
}

const char *rt_st_meta(const RtSafetensors *st, const char *key) {
  for (int i = 0; st && i < st->nmeta; i++)
    if (!strcmp(st->meta_key[i], key)) return st->meta_val[i];
  return NULL;
}

bool rt_st_is_ckpt_state(const RtSafetensors *st, const char *name) {
  const char *fmt = rt_st_meta(st, "format");
  return fmt && !strcmp(fmt, RT_CKPT_FORMAT) && name && !strncmp(name, "opt.", 4);
}

const RtStTensor *rt_st_find(const RtSafetensors *st, const char *name) {
  if (!st || !name) return NULL;
  if (!st->by_name_) {  // a table not made by rt_st_parse
    for (int i = 0; i < st->n; i++)
      if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
  }
  int lo = 0, hi = st->n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2, d = strcmp(st->by_name_[mid]->name, name);
    if (d == 0) return st->by_name_[mid];
    if (d < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

uint64_t rt_st_numel(const RtStTensor *t) {
  size_t size = rt_dtype_size(t->dt);
  return size ? t->nbytes / size : 0;
}

int rt_st_read_f32(const RtSafetensors *st, const RtStTensor *t, float *out, char *err, size_t errlen) {
  StCtx c = {"safetensors", err, errlen};
  if (!st || !t || (!out && t->nbytes)) return st_err(&c, RT_ERR_ARG, NULL, "rt_st_read_f32: NULL argument");
  if ((unsigned)t->dt >= RT_DT_COUNT) return st_err(&c, RT_ERR_ARG, t->name, "invalid dtype %d", (int)t->dt);
  if (t->off > st->data_len || t->nbytes > st->data_len - t->off)
    return st_err(&c, RT_ERR_ARG, t->name, "bytes [%" PRIu64 ", %" PRIu64 ") lie outside the data section",
                  t->off, t->off + t->nbytes);
  if (t->dt >= RT_DT_PLAIN)
    return st_err(&c, RT_ERR_ARG, t->name, "dtype %s is not a safetensors dtype", rt_dtype_name(t->dt));
  rt_dtype_info[t->dt].to_f32(st->data + t->off, out, (int64_t)rt_st_numel(t));  // any alignment
  return RT_OK;
}

// ---- writing ----

// Appends text[0..n) to the growing string *buf (length *len, capacity *cap).
static bool put(char **buf, size_t *len, size_t *cap, const char *text, size_t n) {
  if (*cap - *len <= n) {
    size_t want = (*len + n + 1) * 2;
    char *b = rt_realloc(*buf, want);
    if (!b) return false;
    *buf = b, *cap = want;
  }
  memcpy(*buf + *len, text, n);
  *len += n;
  (*buf)[*len] = 0;
  return true;
}

static bool put_str(char **buf, size_t *len, size_t *cap, const char *s) {  // as a JSON literal
  size_t n = rt_json_quote(NULL, s);
  char *q = rt_malloc(n);
  bool ok = q && (rt_json_quote(q, s), put(buf, len, cap, q, n));
  rt_free(q);
  return ok;
}

// The compact JSON header, "__metadata__" first, tensors in order with
// contiguous offsets, integers in decimal (as serde_json writes them).
// Returns a malloc'd string or NULL (out of memory).
static char *st_header(const RtStWrite *ts, int n, const uint64_t *nbytes, const char *const *meta, int nmeta) {
  char *b = NULL, num[64];
  size_t len = 0, cap = 0;
#define PUTS(lit) put(&b, &len, &cap, lit, sizeof lit - 1)
  bool ok = PUTS("{");
  if (nmeta > 0) {
    ok = ok && PUTS("\"" ST_METADATA "\":{");
    for (int i = 0; ok && i < nmeta; i++)
      ok = (i == 0 || PUTS(",")) && put_str(&b, &len, &cap, meta[2 * i]) &&
           PUTS(":") && put_str(&b, &len, &cap, meta[2 * i + 1]);
    ok = ok && PUTS("}");
  }
  uint64_t off = 0;
  for (int i = 0; ok && i < n; i++) {
    ok = (i == 0 && nmeta == 0 ? true : PUTS(",")) && put_str(&b, &len, &cap, ts[i].name) &&
         PUTS(":{\"dtype\":") && put_str(&b, &len, &cap, rt_dtype_name(ts[i].dt)) &&
         PUTS(",\"shape\":[");
    for (int k = 0; ok && k < ts[i].rank; k++) {
      int w = snprintf(num, sizeof num, k ? ",%" PRId64 : "%" PRId64, ts[i].shape[k]);
      ok = put(&b, &len, &cap, num, (size_t)w);
    }
    int w = snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + nbytes[i]);
    ok = ok && put(&b, &len, &cap, num, (size_t)w);
    off += nbytes[i];
  }
  ok = ok && PUTS("}");
#undef PUTS
  if (!ok) {
    rt_free(b);
    return NULL;
  }
  return b;
}

// Checks the writer's input; nbytes[i] gets each tensor's size.
static int check_write(StCtx *c, const RtStWrite *ts, int n, const char *const *meta, int nmeta, uint64_t *nbytes) {
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    const RtStWrite *t = &ts[i];
    if (!t->name) return st_err(c, RT_ERR_ARG, NULL, "tensor %d has no name", i);
    const char *nm = t->name;
    if (strcmp(nm, ST_METADATA) == 0) return st_err(c, RT_ERR_ARG, nm, "the name is reserved");
    if (utf8_bad_at((const uint8_t *)nm, strlen(nm)) < strlen(nm))
      return st_err(c, RT_ERR_ARG, nm, "the name is not valid UTF-8");
    if ((unsigned)t->dt >= RT_DT_COUNT) return st_err(c, RT_ERR_ARG, nm, "invalid dtype %d", (int)t->dt);
    if (t->dt >= RT_DT_PLAIN)  // a block format is written as U8 data and scales (docs/quantize.md)
      return st_err(c, RT_ERR_ARG, nm, "dtype %s is not a safetensors dtype", rt_dtype_name(t->dt));
    if (t->rank < 0 || t->rank > RT_MAX_RANK)
      return st_err(c, RT_ERR_ARG, nm, "rank %d is outside 0..%d", t->rank, RT_MAX_RANK);
    if (t->rank > 0 && !t->shape) return st_err(c, RT_ERR_ARG, nm, "no shape given for rank %d", t->rank);
    uint64_t numel = 1;
    bool overflow = false;
    for (int k = 0; k < t->rank; k++) {
      int64_t d = t->shape[k];
      if (d < 0 || (double)d >= ST_INT_LIMIT)
        return st_err(c, RT_ERR_ARG, nm, "shape[%d] = %" PRId64 " is out of range", k, d);
      if (d != 0 && numel > UINT64_MAX / (uint64_t)d) overflow = true;
      numel *= (uint64_t)d;
    }
    size_t size = rt_dtype_info[t->dt].size;
    if (overflow || numel > UINT64_MAX / size || numel * size >= (uint64_t)ST_INT_LIMIT - total)
      return st_err(c, RT_ERR_ARG, nm, "too large to write");
    nbytes[i] = numel * size;
    total += nbytes[i];
    if (nbytes[i] > 0 && !t->data) return st_err(c, RT_ERR_ARG, nm, "no data given for %" PRIu64 " bytes", nbytes[i]);
  }
  const char **names = rt_malloc((size_t)(n ? n : 1) * sizeof *names);
  if (!names) return st_err(c, RT_ERR_NOMEM, NULL, "out of memory");
  for (int i = 0; i < n; i++) names[i] = ts[i].name;
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  int rc = RT_OK;
  for (int i = 1; i < n && !rc; i++)
    if (strcmp(names[i - 1], names[i]) == 0) rc = st_err(c, RT_ERR_ARG, names[i], "given more than once");
  rt_free(names);
  if (rc) return rc;

  for (int i = 0; i < 2 * nmeta; i++) {
    const char *s = meta[i];
    if (!s) return st_err(c, RT_ERR_ARG, NULL, "metadata %s %d is NULL", i % 2 ? "value" : "key", i / 2);
    if (utf8_bad_at((const uint8_t *)s, strlen(s)) < strlen(s)) {
      char k[96];
      clean(k, sizeof k, meta[i - i % 2] ? meta[i - i % 2] : "");
      return st_err(c, RT_ERR_ARG, NULL, "metadata %s for '%s' is not valid UTF-8", i % 2 ? "value" : "key", k);
    }
    for (int j = 0; j < i && i % 2 == 0; j += 2)
      if (strcmp(meta[j], s) == 0) {
        char k[96];
        clean(k, sizeof k, s);
        return st_err(c, RT_ERR_ARG, NULL, "metadata key '%s' given more than once", k);
      }
  }
  return RT_OK;
}

static int write_all(int fd, const void *buf, uint64_t n) {
  const uint8_t *p = buf;
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
    ssize_t w = write(fd, p, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    if (w == 0) {
      errno = EIO;
      return -1;
    }
    p += w;
    n -= (uint64_t)w;
  }
  return 0;
}

int rt_st_write(const char *path, const RtStWrite *ts, int n, const char *const *meta, int nmeta, char *err,
                size_t errlen) {
  StCtx c = {path ? path : "safetensors", err, errlen};
  if (err && errlen) err[0] = 0;
  if (!path || !*path || n < 0 || nmeta < 0 || (n > 0 && !ts) || (nmeta > 0 && !meta))
    return st_err(&c, RT_ERR_ARG, NULL, "rt_st_write: invalid arguments");
  uint64_t *nbytes = rt_malloc((size_t)(n ? n : 1) * sizeof *nbytes);
  if (!nbytes) return st_err(&c, RT_ERR_NOMEM, NULL, "out of memory");
  char *json = NULL;
  int rc = check_write(&c, ts, n, meta, nmeta, nbytes);
  if (rc) goto done;
  if (!(json = st_header(ts, n, nbytes, meta, nmeta))) {
    rc = st_err(&c, RT_ERR_NOMEM, NULL, "out of memory");
    goto done;
  }
  size_t jlen = strlen(json), hlen = (jlen + 7) & ~(size_t)7;  // pad so that the data is 8-aligned
  RtOutFile o;
  char why[512];
  if (rt_out_open(&o, path, 0666, why, sizeof why) != RT_OK) {
    rc = RT_ERR_IO;
    if (err && errlen) snprintf(err, errlen, "%s", why);
    goto done;
  }
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  bool ok = write_all(o.fd, len8, 8) == 0 && write_all(o.fd, json, jlen) == 0 &&
            write_all(o.fd, "        ", hlen - jlen) == 0;
  for (int i = 0; ok && i < n; i++) ok = write_all(o.fd, ts[i].data, nbytes[i]) == 0;
  if (!ok) {
    rc = st_err(&c, RT_ERR_IO, NULL, "cannot write: %s", strerror(errno));
    rt_out_abort(&o);
  } else if (rt_out_commit(&o, why, sizeof why) != RT_OK) {
    rc = RT_ERR_IO;
    if (err && errlen) snprintf(err, errlen, "%s", why);
  }
done:
  rt_free(nbytes);
  rt_free(json);
  return rc;
}

// ---- CRC-32C (Castagnoli, reflected 0x82F63B78), slice-by-8 ----

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_tab[0][i] = c;
  }
  for (int t = 1; t < 8; t++)
    for (int i = 0; i < 256; i++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t rt_crc32c(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = data;
  uint32_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
        crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^ crc_tab[0][p[7]];
  }
  while (n--) c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
  return ~c;
}

static int by_offset(const void *a, const void *b) {
  const RtStTensor *x = *(const RtStTensor *const *)a, *y = *(const RtStTensor *const *)b;
  return (x->off > y->off) - (x->off < y->off);
}

int rt_st_check_crc(const RtSafetensors *st, const char *label, bool *present, char *err, size_t errlen) {
  StCtx c = {label ? label : "safetensors", err, errlen};
  const char *list = rt_st_meta(st, RT_ST_CRC_KEY);
  *present = list != NULL;
  if (err && errlen) err[0] = 0;
  if (!list) return RT_OK;
  const RtStTensor **ord = rt_malloc(sizeof *ord * (size_t)(st->n ? st->n : 1));
  if (!ord) return st_err(&c, RT_ERR_NOMEM, NULL, "out of memory");
  for (int i = 0; i < st->n; i++) ord[i] = &st->t[i];
  qsort(ord, (size_t)st->n, sizeof *ord, by_offset);
  uint32_t *want = rt_malloc(sizeof *want * (size_t)(st->n ? st->n : 1));
  int rc = want ? RT_OK : st_err(&c, RT_ERR_NOMEM, NULL, "out of memory");
  const char *s = list;
  for (int i = 0; i < st->n && !rc; i++) {  // the whole list first: malformed is not damaged
    char *end;
    while (*s == ' ') s++;
    want[i] = (uint32_t)strtoul(s, &end, 16);
    if (end != s + 8) rc = RT_ERR_FORMAT;
    s = end;
  }
  while (!rc && *s == ' ') s++;
  int count = 0;  // checksums in the list
  for (const char *q = list; *q; count++) {
    while (*q == ' ') q++;
    if (!*q) break;
    q += strcspn(q, " ");
  }
  if (count != st->n && (rc == RT_OK || rc == RT_ERR_FORMAT)) {  // tensors added or removed by a tool: not verified
    snprintf(err, errlen, "%s: %d checksums for %d tensors (an edited file?): not verified", c.label, count, st->n);
    *present = false;
    rt_free(want);
    rt_free(ord);
    return RT_OK;
  }
  if (rc == RT_ERR_FORMAT || (!rc && *s))
    rc = st_err(&c, RT_ERR_FORMAT, NULL, "metadata '%s' is malformed (%d tensors, a checksum each)", RT_ST_CRC_KEY,
                st->n);
  for (int i = 0; i < st->n && !rc; i++) {
    uint32_t got = rt_crc32c(0, st->data + ord[i]->off, (size_t)ord[i]->nbytes);
    if (got != want[i])
      rc = st_err(&c, RT_ERR_FORMAT, ord[i]->name,
                  "checksum mismatch (CRC-32C %08x, written %08x): the file is damaged", got, want[i]);
  }
  rt_free(want);
  rt_free(ord);
  return rc;
}
