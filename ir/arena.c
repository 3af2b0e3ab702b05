// ir/arena.c: the per-compilation bump allocator and growable arrays. Every
// token, AST node and (later) IR node of one compilation lives in one Arena
// and is released at once by arena_free.
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

struct ArenaChunk {
  ArenaChunk *next;
  size_t cap, used;
  _Alignas(16) unsigned char data[];
};

enum { ARENA_CHUNK = 64 * 1024 };

void heed_internal_error(const char *file, int line, const char *what) {
  fprintf(stderr, "%s:%d: internal error: %s\n", file, line, what);
  abort();
}

Arena *arena_new(void) { return heed_calloc(1, sizeof(Arena)); }

void arena_free(Arena *a) {
  if (!a) return;
  for (ArenaChunk *c = a->head, *n; c; c = n) {
    n = c->next;
    heed_free(c);
  }
  heed_free(a);
}

static void *arena_fail(Arena *a, size_t n) {
  if (!a->failed) a->failed = n ? n : 1;
  return NULL;
}

void *arena_alloc(Arena *a, size_t n) {
  if (n > SIZE_MAX - sizeof(ArenaChunk) - 16) return arena_fail(a, n);
  size_t want = n;
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  if (a->limit && (n > a->limit || a->used > a->limit - n)) return arena_fail(a, want);
  ArenaChunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
    if (cap > SIZE_MAX - sizeof(ArenaChunk)) return arena_fail(a, want);
    c = heed_malloc(sizeof(ArenaChunk) + cap);
    if (!c) return arena_fail(a, want);
    c->cap = cap;
    c->used = 0;
    c->next = a->head;
    a->head = c;
  }
  void *p = c->data + c->used;
  c->used += n;
  a->used += n;
  memset(p, 0, n);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *p = arena_alloc(a, (size_t)n + 1);
  if (!p) return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

bool vec_grow_(Arena *a, void **data, int *cap, size_t elem) {
  if (*cap > (1 << 28)) return arena_fail(a, (size_t)*cap * 2 * elem) != NULL;
  int ncap = *cap ? *cap * 2 : 8;
  void *p = arena_alloc(a, (size_t)ncap * elem);
  if (!p) return false;
  if (*cap) memcpy(p, *data, (size_t)*cap * elem);
  *data = p;
  *cap = ncap;
  return true;
}
