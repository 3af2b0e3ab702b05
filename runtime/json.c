// runtime/json.c: a small, strict JSON reader and string quoter (RFC 8259),
// the runtime's only JSON code. It sits under safetensors.c in the data
// flow: a safetensors header (or any JSON text) -> rt_json_parse -> a tree
// of RtJson nodes that the caller walks; rt_json_quote writes the string
// literals of the headers rt_st_write produces.
//
// Strict: exactly the RFC grammar (no comments, no trailing commas, no
// single quotes, no leading '+', '.5' or '01', no control characters in
// strings, surrogate escapes only in valid pairs), nesting bounded by
// RT_JSON_MAX_DEPTH (no recursion on the C stack), every byte read checked
// against the length (the text need not be NUL-terminated). Duplicate
// object keys are kept, in order: the caller decides what they mean.
// Decoded strings are NUL-terminated, so "\u0000" is refused.
#include "runtime/rt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- allocation: every node and string of a document in a few chunks ----

typedef struct Chunk {
  struct Chunk *next;
  size_t used, cap;
  max_align_t data[];
} Chunk;

static void *doc_alloc(RtJsonDoc *doc, size_t n) {
  n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
  Chunk *c = doc->chunks_;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 16384 ? n : 16384;
    Chunk *nc = rt_malloc(sizeof *nc + cap);
    if (!nc) return NULL;
    nc->used = 0, nc->cap = cap, nc->next = c;
    doc->chunks_ = c = nc;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

void rt_json_free(RtJsonDoc *doc) {
  if (!doc) return;
  for (Chunk *c = doc->chunks_, *next; c; c = next) {
    next = c->next;
    rt_free(c);
  }
  memset(doc, 0, sizeof *doc);
}

const char *rt_json_kind_name(const RtJson *j) {
  switch (j ? j->kind : RT_JSON_NULL) {
  case RT_JSON_OBJECT: return "an object";
  case RT_JSON_ARRAY: return "an array";
  case RT_JSON_STRING: return "a string";
  case RT_JSON_NUMBER: return "a number";
  case RT_JSON_TRUE:
  case RT_JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

// ---- the parser ----

typedef struct {
  const char *s;
  size_t len, at;
  RtJsonDoc *doc;
  const char *why;  // what went wrong (static text)
  bool nomem;
} P;

static bool fail(P *p, const char *why) {
  if (!p->why) p->why = why;
  return false;
}

static void skip_ws(P *p) {
  while (p->at < p->len) {
    char c = p->s[p->at];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->at++;
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Four hex digits at p->at (after "\u"); advances past them.
static bool hex4(P *p, unsigned *out) {
  if (p->len - p->at < 4) return fail(p, "a \\u escape needs four hex digits");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p->s[p->at + (size_t)i]);
    if (h < 0) return fail(p, "a \\u escape needs four hex digits");
    v = v << 4 | (unsigned)h;
  }
  p->at += 4;
  *out = v;
  return true;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) return o[0] = (char)cp, 1;
  if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
  if (cp < 0x10000)
    return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f)), 3;
  o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

// One escape after the backslash (p->at at the letter) into o; its length.
static bool escape(P *p, char *o, size_t *n) {
  char c = p->s[p->at++];
  const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
  const char *k = c ? strchr(from, c) : NULL;
  if (k) {
    *o = to[k - from];
    *n = 1;
    return true;
  }
  if (c != 'u') {
    p->at--;
    return fail(p, "unknown escape in a string");
  }
  unsigned cp, lo;
  if (!hex4(p, &cp)) return false;
  if (cp >= 0xdc00 && cp <= 0xdfff) return fail(p, "a \\u escape holds a lone low surrogate");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (p->len - p->at < 2 || p->s[p->at] != '\\' || p->s[p->at + 1] != 'u')
      return fail(p, "a \\u escape holds a high surrogate without its low half");
    p->at += 2;
    if (!hex4(p, &lo)) return false;
    if (lo < 0xdc00 || lo > 0xdfff) return fail(p, "a \\u escape holds a high surrogate without its low half");
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  if (cp == 0) return fail(p, "\\u0000 in a string is not supported");
  *n = put_utf8(o, cp);
  return true;
}

// A string at p->at (the opening quote) into a NUL-terminated copy.
static char *string(P *p) {
  size_t start = ++p->at, end = start;
  while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;  // find the close
  if (end >= p->len) return fail(p, "unterminated string"), NULL;
  char *out = doc_alloc(p->doc, end - start + 1);  // decoding never grows the text
  if (!out) return p->nomem = true, fail(p, "out of memory"), NULL;
  size_t o = 0;
  while (p->at < end) {
    unsigned char c = (unsigned char)p->s[p->at];
    if (c < 0x20) return fail(p, "a control character in a string (escape it)"), NULL;
    if (c != '\\') {
      out[o++] = (char)c;
      p->at++;
      continue;
    }
    p->at++;
    size_t n;
    if (!escape(p, out + o, &n)) return NULL;
    o += n;
    if (p->at > end) return fail(p, "unterminated string"), NULL;
  }
  out[o] = 0;
  p->at = end + 1;
  return out;
}

static bool digit(P *p) { return p->at < p->len && p->s[p->at] >= '0' && p->s[p->at] <= '9'; }

// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? converted with strtod (a
// value past the double range becomes +-inf, as strtod gives it).
static bool number(P *p, double *out) {
  size_t start = p->at;
  if (p->s[p->at] == '-') p->at++;
  if (!digit(p)) return fail(p, "a number needs a digit");
  if (p->s[p->at] == '0') {
    p->at++;
    if (digit(p)) return fail(p, "a number has a leading zero");
  }
  while (digit(p)) p->at++;
  if (p->at < p->len && p->s[p->at] == '.') {
    p->at++;
    if (!digit(p)) return fail(p, "a digit must follow the decimal point");
    while (digit(p)) p->at++;
  }
  if (p->at < p->len && (p->s[p->at] == 'e' || p->s[p->at] == 'E')) {
    p->at++;
    if (p->at < p->len && (p->s[p->at] == '+' || p->s[p->at] == '-')) p->at++;
    if (!digit(p)) return fail(p, "an exponent needs a digit");
    while (digit(p)) p->at++;
  }
  size_t n = p->at - start;
  char small[64], *buf = n < sizeof small ? small : rt_malloc(n + 1);
  if (!buf) return p->nomem = true, fail(p, "out of memory");
  memcpy(buf, p->s + start, n);
  buf[n] = 0;
  *out = strtod(buf, NULL);  // the grammar above is a subset of strtod's (C locale)
  if (buf != small) rt_free(buf);
  return true;
}

static bool literal(P *p, const char *word, RtJsonKind kind, RtJson *j) {
  size_t n = strlen(word);
  if (p->len - p->at < n || memcmp(p->s + p->at, word, n) != 0) return fail(p, "not a JSON value");
  p->at += n;
  j->kind = kind;
  return true;
}

// A scalar at p->at into j, or j opened as an (empty) array or object.
static bool value_start(P *p, RtJson *j) {
  if (p->at >= p->len) return fail(p, "the text ends where a value should be");
  switch (p->s[p->at]) {
  case '{': p->at++, j->kind = RT_JSON_OBJECT; return true;
  case '[': p->at++, j->kind = RT_JSON_ARRAY; return true;
  case '"': j->kind = RT_JSON_STRING; return (j->str = string(p)) != NULL;
  case 't': return literal(p, "true", RT_JSON_TRUE, j);
  case 'f': return literal(p, "false", RT_JSON_FALSE, j);
  case 'n': return literal(p, "null", RT_JSON_NULL, j);
  default:
    if (p->s[p->at] == '-' || (p->s[p->at] >= '0' && p->s[p->at] <= '9')) {
      j->kind = RT_JSON_NUMBER;
      return number(p, &j->num);
    }
    return fail(p, "not a JSON value");
  }
}

static bool expect(P *p, char c, const char *why) {
  skip_ws(p);
  if (p->at >= p->len || p->s[p->at] != c) return fail(p, why);
  p->at++;
  return true;
}

// Iterative: stack[d] is the open container at depth d, last[d] its last child.
static RtJson *parse(P *p) {
  RtJson *stack[RT_JSON_MAX_DEPTH + 1], *last[RT_JSON_MAX_DEPTH + 1];
  int depth = -1;
  RtJson *root = NULL;
  for (;;) {
    RtJson *j = doc_alloc(p->doc, sizeof *j);
    if (!j) return p->nomem = true, fail(p, "out of memory"), NULL;
    memset(j, 0, sizeof *j);
    if (depth >= 0 && stack[depth]->kind == RT_JSON_OBJECT) {  // "key":
      skip_ws(p);
      if (p->at >= p->len || p->s[p->at] != '"') return fail(p, "expected a string key"), NULL;
      if (!(j->key = string(p)) || !expect(p, ':', "expected ':' after a key")) return NULL;
    }
    skip_ws(p);
    if (!value_start(p, j)) return NULL;
    if (depth < 0) root = j;
    else {
      if (last[depth]) last[depth]->next = j;
      else stack[depth]->child = j;
      last[depth] = j;
      stack[depth]->n++;
    }
    bool opened = j->kind == RT_JSON_OBJECT || j->kind == RT_JSON_ARRAY;
    if (opened) {
      if (depth + 1 >= RT_JSON_MAX_DEPTH) return fail(p, "nested too deeply"), NULL;
      stack[++depth] = j, last[depth] = NULL;
      skip_ws(p);
      char close = j->kind == RT_JSON_OBJECT ? '}' : ']';
      if (p->at < p->len && p->s[p->at] == close) {  // empty
        p->at++;
        depth--;
      } else {
        continue;
      }
    }
    // after a value: ',' (another in the same container) or close containers
    for (;;) {
      if (depth < 0) return root;
      char close = stack[depth]->kind == RT_JSON_OBJECT ? '}' : ']';
      skip_ws(p);
      if (p->at < p->len && p->s[p->at] == ',') {
        p->at++;
        break;
      }
      if (p->at < p->len && p->s[p->at] == close) {
        p->at++;
        depth--;
        continue;
      }
      return fail(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'"), NULL;
    }
  }
}

int rt_json_parse(RtJsonDoc *doc, const char *text, size_t len, size_t *end, const char **why) {
  memset(doc, 0, sizeof *doc);
  P p = {.s = text ? text : "", .len = text ? len : 0, .doc = doc};
  skip_ws(&p);
  doc->root = parse(&p);
  if (end) *end = p.at;
  if (why) *why = p.why;
  if (doc->root) return RT_OK;
  rt_json_free(doc);
  return p.nomem ? RT_ERR_NOMEM : RT_ERR_FORMAT;
}

const RtJson *rt_json_get(const RtJson *obj, const char *key) {
  if (!obj || obj->kind != RT_JSON_OBJECT) return NULL;
  for (const RtJson *c = obj->child; c; c = c->next)
    if (!strcmp(c->key, key)) return c;
  return NULL;
}

// ---- writing ----

size_t rt_json_quote(char *dst, const char *s) {
  size_t n = 0;
  char tmp[8];
#define PUT(str, k) (dst ? memcpy(dst + n, str, k) : NULL, n += (k))
  PUT("\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    const char *e = NULL;
    switch (*c) {
    case '"': e = "\\\""; break;
    case '\\': e = "\\\\"; break;
    case '\b': e = "\\b"; break;
    case '\f': e = "\\f"; break;
    case '\n': e = "\\n"; break;
    case '\r': e = "\\r"; break;
    case '\t': e = "\\t"; break;
    default: break;
    }
    if (e) {
      PUT(e, 2);
    } else if (*c < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", *c);
      PUT(tmp, 6);
    } else {
      PUT(c, 1);
    }
  }
  PUT("\"", 1);
#undef PUT
  return n;
}
