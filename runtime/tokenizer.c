// runtime/tokenizer.c: text <-> token ids (rt.h, "tokenizer.c"). Sits at
// the two ends of generation: the prompt's bytes become ids for the model,
// and each sampled id becomes bytes on stdout. libc only (standalone
// programs from `heed build` link it), so encoder.json is read by a small
// parser of its one shape (a flat object of string -> integer), not a JSON
// library.
//
// GPT-2 BPE, step by step, for " world!":
//   pre-tokenize   " world" "!"             (the pattern in rt.h, by hand)
//   bytes->unicode "Ġworld" "!"             (space 0x20 -> U+0120 'Ġ')
//   merge by rank  Ġ w o r l d -> ... -> "Ġworld" (rank order of vocab.bpe)
//   look up        encoder["Ġworld"] = 995, encoder["!"] = 0
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

// ---- a string -> int32 hash map (open addressing, FNV-1a) ----

typedef struct {
  const char *key;  // points into the tokenizer's string storage; NULL: empty
  uint32_t klen;
  int32_t val;
} Slot;

typedef struct {
  Slot *s;
  size_t cap, n;  // cap: a power of two
} Map;

static uint64_t hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static bool map_init(Map *m, size_t expect) {
  m->cap = 64;
  while (m->cap < expect * 2) m->cap *= 2;
  m->n = 0;
  m->s = rt_calloc(m->cap, sizeof *m->s);
  return m->s != NULL;
}

static Slot *map_slot(const Map *m, const char *k, size_t n) {
  size_t i = (size_t)hash(k, n) & (m->cap - 1);
  while (m->s[i].key && !(m->s[i].klen == n && !memcmp(m->s[i].key, k, n))) i = (i + 1) & (m->cap - 1);
  return &m->s[i];
}

static bool map_get(const Map *m, const char *k, size_t n, int32_t *val) {
  if (!m->s) return false;
  Slot *s = map_slot(m, k, n);
  if (!s->key) return false;
  *val = s->val;
  return true;
}

// Inserts (keeps the first value of a key). key must outlive the map.
static bool map_put(Map *m, const char *k, size_t n, int32_t val) {
  if ((m->n + 1) * 2 > m->cap) {
    Map big = {0};
    big.cap = m->cap * 2;
    big.s = rt_calloc(big.cap, sizeof *big.s);
    if (!big.s) return false;
    for (size_t i = 0; i < m->cap; i++)
      if (m->s[i].key) *map_slot(&big, m->s[i].key, m->s[i].klen) = m->s[i];
    big.n = m->n;
    rt_free(m->s);
    *m = big;
  }
  Slot *s = map_slot(m, k, n);
  if (s->key) return true;
  *s = (Slot){k, (uint32_t)n, val};
  m->n++;
  return true;
}

// ---- the tokenizer ----

struct RtTokenizer {
  bool bpe;
  int64_t vocab;
  char **dec;         // per id: its bytes (NULL: no such id)
  size_t *declen;
  Map enc;            // token string (UTF-8 of the mapped code points) -> id
  Map ranks;          // "a b" -> merge rank
  char *store;        // the keys of enc and ranks (one block, see bpe_load)
  char benc[256][2];  // byte -> UTF-8 of its code point (U+0021 .. U+0143: 1 or 2 bytes)
  uint8_t benc_len[256];
  int16_t bdec[0x144];  // code point -> byte, -1 if none
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

RtTokenizer *rt_tok_bytes(void) {
  RtTokenizer *t = rt_calloc(1, sizeof *t);
  if (!t) return NULL;
  t->vocab = 256;
  t->dec = rt_calloc(256, sizeof *t->dec);
  t->declen = rt_calloc(256, sizeof *t->declen);
  t->store = rt_malloc(256);
  if (!t->dec || !t->declen || !t->store) {
    rt_tok_free(t);
    return NULL;
  }
  for (int i = 0; i < 256; i++) {
    t->store[i] = (char)i;
    t->dec[i] = t->store + i;
    t->declen[i] = 1;
  }
  return t;
}

void rt_tok_free(RtTokenizer *t) {
  if (!t) return;
  if (t->dec && t->bpe)
    for (int64_t i = 0; i < t->vocab; i++) rt_free(t->dec[i]);
  rt_free(t->dec);
  rt_free(t->declen);
  rt_free(t->enc.s);
  rt_free(t->ranks.s);
  rt_free(t->store);
  rt_free(t);
}

int64_t rt_tok_vocab(const RtTokenizer *t) { return t->vocab; }

const char *rt_tok_decode(const RtTokenizer *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->vocab || !t->dec[id]) {
    *len = 0;
    return NULL;
  }
  *len = t->declen[id];
  return t->dec[id];
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
// other 68 to U+0100.. in byte order.
static void byte_map(RtTokenizer *t) {
  int n = 0;
  for (int i = 0; i < 0x144; i++) t->bdec[i] = -1;
  for (int b = 0; b < 256; b++) {
    bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    int cp = keep ? b : 256 + n++;
    t->bdec[cp] = (int16_t)b;
    if (cp < 0x80) {
      t->benc[b][0] = (char)cp;
      t->benc_len[b] = 1;
    } else {
      t->benc[b][0] = (char)(0xC0 | (cp >> 6));
      t->benc[b][1] = (char)(0x80 | (cp & 0x3F));
      t->benc_len[b] = 2;
    }
  }
}

// Appends code point cp as UTF-8 to out (room for 4 bytes).
static size_t put_utf8(char *out, uint32_t cp) {
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) return out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12)), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    return out[2] = (char)(0x80 | (cp & 0x3F)), 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18)), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  return out[3] = (char)(0x80 | (cp & 0x3F)), 4;
}

// Decodes one UTF-8 sequence at s[0..n); invalid or truncated: the byte
// itself as a code point U+DC00 + byte (never a letter, digit or space), len 1.
static uint32_t get_utf8(const unsigned char *s, size_t n, size_t *len) {
  unsigned c = s[0];
  int need = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
  uint32_t cp = need == 1 ? c & 0x1F : need == 2 ? c & 0x0F : c & 0x07;
  if (need == 0) return *len = 1, c;
  if (need < 0 || (size_t)need >= n) return *len = 1, 0xDC00 + c;
  for (int i = 1; i <= need; i++) {
    if ((s[i] & 0xC0) != 0x80) return *len = 1, 0xDC00 + c;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
  if (cp < min[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return *len = 1, 0xDC00 + c;
  *len = (size_t)need + 1;
  return cp;
}

// ---- encoder.json: { "string": int, ... } ----

typedef struct {
  const char *s;
  size_t n, i;
  const char *label;
  char *err;
  size_t errlen;
} Json;

static void ws(Json *j) {
  while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\n' || j->s[j->i] == '\r' || j->s[j->i] == '\t')) j->i++;
}

static bool jfail(Json *j, const char *what) {
  seterr(j->err, j->errlen, "%s: encoder.json: byte %zu: %s", j->label, j->i, what);
  return false;
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool hex4(Json *j, uint32_t *v) {
  if (j->i + 4 > j->n) return jfail(j, "truncated \\u escape");
  *v = 0;
  for (int k = 0; k < 4; k++) {
    int h = hexval(j->s[j->i + (size_t)k]);
    if (h < 0) return jfail(j, "bad \\u escape");
    *v = *v << 4 | (uint32_t)h;
  }
  j->i += 4;
  return true;
}

// A JSON string at j->i (after ws) into out (UTF-8); *len bytes. out has
// room for 4 bytes per input byte.
static bool jstring(Json *j, char *out, size_t *len) {
  if (j->i >= j->n || j->s[j->i] != '"') return jfail(j, "expected a string");
  j->i++;
  size_t o = 0;
  while (j->i < j->n && j->s[j->i] != '"') {
    char c = j->s[j->i++];
    if ((unsigned char)c < 0x20) return jfail(j, "control character in a string");
    if (c != '\\') {
      out[o++] = c;
      continue;
    }
    if (j->i >= j->n) break;
    char e = j->s[j->i++];
    const char *simple = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *p = strchr(simple, e);
    if (p && e) {
      out[o++] = to[p - simple];
      continue;
    }
    if (e != 'u') return jfail(j, "bad escape");
    uint32_t cp, lo;
    if (!hex4(j, &cp)) return false;
    if (cp >= 0xD800 && cp < 0xDC00 && j->i + 1 < j->n && j->s[j->i] == '\\' && j->s[j->i + 1] == 'u') {
      j->i += 2;
      if (!hex4(j, &lo)) return false;
      if (lo < 0xDC00 || lo >= 0xE000) return jfail(j, "unpaired surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    o += put_utf8(out + o, cp);
  }
  if (j->i >= j->n) return jfail(j, "unterminated string");
  j->i++;
  *len = o;
  return true;
}

static bool jint(Json *j, int64_t *v) {
  size_t st = j->i;
  *v = 0;
  while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9' && *v < (1 << 24)) *v = *v * 10 + (j->s[j->i++] - '0');
  if (j->i == st || *v >= (1 << 24)) return jfail(j, "expected a token id (0 .. 16777215)");
  return true;
}

// Parses encoder.json into t->enc (keys in t->store from offset *used).
static bool parse_encoder(RtTokenizer *t, Json *j, size_t *used, int64_t *maxid) {
  ws(j);
  if (j->i >= j->n || j->s[j->i++] != '{') return jfail(j, "expected '{'");
  ws(j);
  if (j->i < j->n && j->s[j->i] == '}') return jfail(j, "no tokens");
  *maxid = -1;
  for (;;) {
    ws(j);
    size_t len;
    char *key = t->store + *used;
    if (!jstring(j, key, &len)) return false;
    *used += len;
    ws(j);
    if (j->i >= j->n || j->s[j->i++] != ':') return jfail(j, "expected ':'");
    ws(j);
    int64_t id;
    if (!jint(j, &id)) return false;
    if (!map_put(&t->enc, key, len, (int32_t)id)) return jfail(j, "out of memory");
    if (id > *maxid) *maxid = id;
    ws(j);
    if (j->i < j->n && j->s[j->i] == ',') {
      j->i++;
      continue;
    }
    if (j->i < j->n && j->s[j->i] == '}') break;
    return jfail(j, "expected ',' or '}'");
  }
  j->i++;
  ws(j);
  if (j->i != j->n) return jfail(j, "text after the object");
  return true;
}

// id -> raw bytes: each code point of the token string maps back to a byte.
static bool build_decoder(RtTokenizer *t, const char *label, char *err, size_t errlen) {
  t->dec = rt_calloc((size_t)t->vocab, sizeof *t->dec);
  t->declen = rt_calloc((size_t)t->vocab, sizeof *t->declen);
  if (!t->dec || !t->declen) return seterr(err, errlen, "%s: out of memory", label), false;
  for (size_t i = 0; i < t->enc.cap; i++) {
    const Slot *s = &t->enc.s[i];
    if (!s->key || t->dec[s->val]) continue;
    char *b = rt_malloc(s->klen + 1);
    if (!b) return seterr(err, errlen, "%s: out of memory", label), false;
    size_t o = 0;
    for (size_t p = 0; p < s->klen;) {
      size_t l;
      uint32_t cp = get_utf8((const unsigned char *)s->key + p, s->klen - p, &l);
      if (cp >= 0x144 || t->bdec[cp] < 0) {
        rt_free(b);
        seterr(err, errlen, "%s: encoder.json: token %d has a character outside GPT-2's byte alphabet", label,
               (int)s->val);
        return false;
      }
      b[o++] = (char)t->bdec[cp];
      p += l;
    }
    t->dec[s->val] = b;
    t->declen[s->val] = o;
  }
  return true;
}

// vocab.bpe: an optional "#version" line, then "a b" per line.
static bool parse_merges(RtTokenizer *t, const char *v, size_t n, size_t *used, const char *label, char *err,
                         size_t errlen) {
  size_t i = 0;
  int32_t rank = 0;
  long long line = 0;
  while (i < n) {
    size_t e = i;
    while (e < n && v[e] != '\n') e++;
    size_t l = e;
    if (l > i && v[l - 1] == '\r') l--;
    line++;
    if (l > i && !(line == 1 && v[i] == '#')) {
      const char *sp = memchr(v + i, ' ', l - i);
      if (!sp || sp == v + i || sp + 1 == v + l || memchr(sp + 1, ' ', (size_t)(v + l - sp - 1))) {
        seterr(err, errlen, "%s: vocab.bpe: line %lld is not a merge 'a b'", label, line);
        return false;
      }
      char *key = t->store + *used;
      memcpy(key, v + i, l - i);
      *used += l - i;
      if (!map_put(&t->ranks, key, l - i, rank++)) return seterr(err, errlen, "%s: out of memory", label), false;
    }
    i = e + 1;
  }
  return true;
}

int rt_tok_bpe_from_memory(const char *ej, size_t elen, const char *vb, size_t vlen, const char *label,
                           RtTokenizer **out, char *err, size_t errlen) {
  *out = NULL;
  RtTokenizer *t = rt_calloc(1, sizeof *t);
  if (!t) return RT_ERR_NOMEM;
  t->bpe = true;
  byte_map(t);
  t->store = rt_malloc(elen * 4 + vlen + 1);  // unescaped keys never grow past 4x
  Json j = {ej, elen, 0, label, err, errlen};
  size_t used = 0;
  int64_t maxid;
  int rc = RT_ERR_FORMAT;
  if (!t->store || !map_init(&t->enc, 1024) || !map_init(&t->ranks, 1024)) {
    rc = RT_ERR_NOMEM;
    seterr(err, errlen, "%s: out of memory", label);
  } else if (parse_encoder(t, &j, &used, &maxid) && parse_merges(t, vb, vlen, &used, label, err, errlen)) {
    t->vocab = maxid + 1;
    if (build_decoder(t, label, err, errlen)) rc = RT_OK;
  }
  if (rc != RT_OK) {
    rt_tok_free(t);
    return rc;
  }
  *out = t;
  return RT_OK;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
  uint8_t *b;  // a regular file only: a FIFO or /dev/zero is an error, not a hang
  if (rt_file_read(path, (uint64_t)1 << 30, &b, len, err, errlen) != RT_OK) return NULL;
  return (char *)b;
}

int rt_tok_bpe_open(const char *dir, RtTokenizer **out, char *err, size_t errlen) {
  *out = NULL;
  size_t dl = strlen(dir);
  char *pe = rt_malloc(dl + 16), *pv = rt_malloc(dl + 16);
  if (!pe || !pv) {
    rt_free(pe), rt_free(pv);
    return RT_ERR_NOMEM;
  }
  sprintf(pe, "%s/encoder.json", dir);
  sprintf(pv, "%s/vocab.bpe", dir);
  size_t el = 0, vl = 0;
  char *e = read_file(pe, &el, err, errlen);
  char *v = e ? read_file(pv, &vl, err, errlen) : NULL;
  int rc = e && v ? rt_tok_bpe_from_memory(e, el, v, vl, dir, out, err, errlen) : RT_ERR_IO;
  rt_free(e), rt_free(v), rt_free(pe), rt_free(pv);
  return rc;
}

// ---- pre-tokenization ----

static bool is_space(uint32_t c) {
  return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// \p{N}: ASCII digits, Latin-1 superscripts and fractions, the Arabic,
// Devanagari and full-width digits, super/subscripts, number forms, circled
// numbers, CJK numerals.
static bool is_number(uint32_t c) {
  static const uint32_t r[][2] = {{'0', '9'},       {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},
                                  {0x660, 0x669},   {0x6F0, 0x6F9},   {0x966, 0x96F},   {0x2070, 0x2070},
                                  {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2189}, {0x2460, 0x249B},
                                  {0x3007, 0x3007}, {0x3021, 0x3029}, {0xFF10, 0xFF19}};
  for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
    if (c >= r[i][0] && c <= r[i][1]) return true;
  return false;
}

// \p{L}, by the main blocks: Latin (with Latin-1 and the extensions), Greek,
// Cyrillic, Armenian, Hebrew, Arabic, Devanagari, Thai, Georgian, Hangul,
// kana, CJK ideographs, full-width Latin. Marks (\p{M}) are not letters.
static bool is_letter(uint32_t c) {
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  static const uint32_t r[][2] = {
      {0xAA, 0xAA},     {0xB5, 0xB5},     {0xBA, 0xBA},     {0xC0, 0xD6},     {0xD8, 0xF6},     {0xF8, 0x2C1},
      {0x2C6, 0x2D1},   {0x2E0, 0x2E4},   {0x370, 0x373},   {0x376, 0x377},   {0x37B, 0x37D},   {0x386, 0x386},
      {0x388, 0x3F5},   {0x3F7, 0x481},   {0x48A, 0x52F},   {0x531, 0x556},   {0x561, 0x587},   {0x5D0, 0x5EA},
      {0x620, 0x64A},   {0x671, 0x6D3},   {0x904, 0x939},   {0xE01, 0xE30},   {0x10A0, 0x10FF}, {0x1100, 0x11FF},
      {0x1E00, 0x1FBC}, {0x3041, 0x3096}, {0x30A1, 0x30FA}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3},
      {0xF900, 0xFAFF}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x20000, 0x2FFFF}};
  for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
    if (c >= r[i][0] && c <= r[i][1]) return true;
  return false;
}

typedef struct {
  uint32_t cp;
  size_t off, len;  // bytes in the text
} Cp;

typedef bool (*ClassFn)(uint32_t);
static bool is_other(uint32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

// The end (exclusive, in code points) of the pre-token starting at i.
static size_t pretoken_end(const Cp *c, size_t n, size_t i) {
  if (c[i].cp == '\'' && i + 1 < n) {  // 's 't 're 've 'm 'll 'd
    uint32_t a = c[i + 1].cp, b = i + 2 < n ? c[i + 2].cp : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  static const ClassFn cls[3] = {is_letter, is_number, is_other};
  size_t j = c[i].cp == ' ' && i + 1 < n ? i + 1 : i;  // ' ?X+'
  for (int k = 0; k < 3; k++)
    if (cls[k](c[j].cp)) {
      while (j < n && cls[k](c[j].cp)) j++;
      return j;
    }
  size_t e = i;  // \s+(?!\S) | \s+
  while (e < n && is_space(c[e].cp)) e++;
  if (e == i) return i + 1;  // (not reached: every code point has a class)
  if (e < n && e - i >= 2) return e - 1;
  return e;
}

// ---- BPE merges of one pre-token ----

typedef struct {
  size_t off, len;  // in the mapped buffer
} Sym;

static int32_t pair_rank(const RtTokenizer *t, const char *buf, const Sym *a, const Sym *b, char *key) {
  memcpy(key, buf + a->off, a->len);
  key[a->len] = ' ';
  memcpy(key + a->len + 1, buf + b->off, b->len);
  int32_t r;
  return map_get(&t->ranks, key, a->len + 1 + b->len, &r) ? r : -1;
}

// Merges the piece's mapped bytes buf[0..n) and appends the ids to *ids.
static int bpe_piece(const RtTokenizer *t, const char *buf, size_t n, Sym *sym, char *key, int32_t *ids, int64_t *nid,
                     size_t text_off, char *err, size_t errlen) {
  size_t ns = 0;
  for (size_t p = 0; p < n;) {  // one symbol per mapped code point (1 or 2 bytes)
    size_t l = (unsigned char)buf[p] < 0x80 ? 1 : 2;
    sym[ns++] = (Sym){p, l};
    p += l;
  }
  while (ns > 1) {
    int32_t best = -1;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
      int32_t r = pair_rank(t, buf, &sym[i], &sym[i + 1], key);
      if (r >= 0 && (best < 0 || r < best)) best = r, bi = i;
    }
    if (best < 0) break;
    Sym a = sym[bi], b = sym[bi + 1];
    size_t w = 0;
    for (size_t i = 0; i < ns; i++) {  // every occurrence of the pair, left to right
      if (i + 1 < ns && sym[i].len == a.len && sym[i + 1].len == b.len && !memcmp(buf + sym[i].off, buf + a.off, a.len) &&
          !memcmp(buf + sym[i + 1].off, buf + b.off, b.len)) {
        sym[w++] = (Sym){sym[i].off, sym[i].len + sym[i + 1].len};
        i++;
      } else {
        sym[w++] = sym[i];
      }
    }
    ns = w;
  }
  for (size_t i = 0; i < ns; i++) {
    int32_t id;
    if (!map_get(&t->enc, buf + sym[i].off, sym[i].len, &id)) {
      seterr(err, errlen, "the prompt's bytes at offset %zu have no token in the vocabulary", text_off);
      return RT_ERR_ARG;
    }
    ids[(*nid)++] = id;
  }
  return RT_OK;
}

static int bpe_encode(const RtTokenizer *t, const char *text, size_t len, int32_t *ids, int64_t *nid, char *err,
                      size_t errlen) {
  Cp *c = rt_malloc(sizeof *c * (len + 1));
  char *buf = rt_malloc(2 * len + 1), *key = rt_malloc(4 * len + 2);
  Sym *sym = rt_malloc(sizeof *sym * (2 * len + 1));
  int rc = RT_OK;
  if (!c || !buf || !key || !sym) rc = RT_ERR_NOMEM;
  size_t n = 0;
  for (size_t p = 0; rc == RT_OK && p < len; n++) {
    c[n].off = p;
    c[n].cp = get_utf8((const unsigned char *)text + p, len - p, &c[n].len);
    p += c[n].len;
  }
  for (size_t i = 0; rc == RT_OK && i < n;) {
    size_t e = pretoken_end(c, n, i), b0 = c[i].off, b1 = c[e - 1].off + c[e - 1].len, m = 0;
    for (size_t b = b0; b < b1; b++) {
      unsigned char byte = (unsigned char)text[b];
      memcpy(buf + m, t->benc[byte], t->benc_len[byte]);
      m += t->benc_len[byte];
    }
    rc = bpe_piece(t, buf, m, sym, key, ids, nid, b0, err, errlen);
    i = e;
  }
  rt_free(c), rt_free(buf), rt_free(key), rt_free(sym);
  return rc;
}

int rt_tok_encode(const RtTokenizer *t, const char *text, size_t len, int32_t **ids, int64_t *n, char *err,
                  size_t errlen) {
  *ids = rt_malloc(sizeof(int32_t) * (len + 1));  // at most one token per byte
  *n = 0;
  if (!*ids) return RT_ERR_NOMEM;
  int rc = RT_OK;
  if (t->bpe) {
    rc = bpe_encode(t, text, len, *ids, n, err, errlen);
  } else {
    for (size_t i = 0; i < len; i++) (*ids)[(*n)++] = (unsigned char)text[i];
  }
  if (rc != RT_OK) {
    rt_free(*ids);
    *ids = NULL;
    *n = 0;
  }
  return rc;
}
