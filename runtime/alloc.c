// runtime/alloc.c: the runtime's allocator hook (rt_malloc & co., rt.h), a
// copy of ir/alloc.c's wrappers: the runtime links alone into programs from
// heed build and must not include ir/. heed's driver installs the same
// allocator here and in ir/ so that one count covers both.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

static void *libc_alloc(void *ud, void *ptr, size_t size, size_t align) {
  (void)ud;
  if (size == 0) {
    free(ptr);
    return NULL;
  }
  if (align) return aligned_alloc(align, size);
  return realloc(ptr, size);
}

static RtAllocFn alloc_fn = libc_alloc;
static void *alloc_ud;

void rt_set_allocator(RtAllocFn fn, void *ud) {
  alloc_fn = fn ? fn : libc_alloc;
  alloc_ud = fn ? ud : NULL;
}

RtAllocFn rt_get_allocator(void **ud) {
  if (ud) *ud = alloc_fn == libc_alloc ? NULL : alloc_ud;
  return alloc_fn == libc_alloc ? NULL : alloc_fn;
}

void *rt_malloc(size_t size) { return alloc_fn(alloc_ud, NULL, size ? size : 1, 0); }

void *rt_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  size_t bytes = n && size ? n * size : 1;
  if (alloc_fn == libc_alloc) return calloc(1, bytes);  // keeps calloc's zero pages
  void *p = alloc_fn(alloc_ud, NULL, bytes, 0);
  if (p) memset(p, 0, bytes);
  return p;
}

void *rt_realloc(void *p, size_t size) { return alloc_fn(alloc_ud, p, size ? size : 1, 0); }

void *rt_aligned_alloc(size_t align, size_t size) { return alloc_fn(alloc_ud, NULL, size ? size : align, align); }

char *rt_strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *p = rt_malloc(len + 1);
  if (!p) return NULL;
  memcpy(p, s, len);
  p[len] = 0;
  return p;
}

char *rt_strdup(const char *s) { return rt_strndup(s, SIZE_MAX); }

void rt_free(void *p) {
  if (p) alloc_fn(alloc_ud, p, 0, 0);
}
