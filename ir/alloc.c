// ir/alloc.c: the allocator hook behind heed_malloc & co. (see ir/alloc.h).
// It sits under everything: the arena, diagnostics, the interpreter, the
// schedule, the backend's C side and the driver allocate through it, so a
// test can install heed_fault_alloc and fail any one allocation.
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/alloc.h"

void *heed_libc_alloc(void *ud, void *ptr, size_t size, size_t align) {
  (void)ud;
  if (size == 0) {
    free(ptr);
    return NULL;
  }
  if (align) return aligned_alloc(align, size);
  return realloc(ptr, size);
}

static HeedAllocFn alloc_fn = heed_libc_alloc;
static void *alloc_ud;

void heed_set_allocator(HeedAllocFn fn, void *ud) {
  alloc_fn = fn ? fn : heed_libc_alloc;
  alloc_ud = fn ? ud : NULL;
}

HeedAllocFn heed_get_allocator(void **ud) {
  if (ud) *ud = alloc_ud;
  return alloc_fn;
}

void *heed_malloc(size_t size) { return alloc_fn(alloc_ud, NULL, size ? size : 1, 0); }

void *heed_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  size_t bytes = n && size ? n * size : 1;
  if (alloc_fn == heed_libc_alloc) return calloc(1, bytes);  // keeps calloc's zero pages
  void *p = alloc_fn(alloc_ud, NULL, bytes, 0);
  if (p) memset(p, 0, bytes);
  return p;
}

void *heed_realloc(void *p, size_t size) { return alloc_fn(alloc_ud, p, size ? size : 1, 0); }

void *heed_aligned_alloc(size_t align, size_t size) { return alloc_fn(alloc_ud, NULL, size ? size : align, align); }

char *heed_strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *p = heed_malloc(len + 1);
  if (!p) return NULL;
  memcpy(p, s, len);
  p[len] = 0;
  return p;
}

char *heed_strdup(const char *s) { return heed_strndup(s, SIZE_MAX); }

void heed_free(void *p) {
  if (p) alloc_fn(alloc_ud, p, 0, 0);
}

static _Thread_local char thread_mark;  // its address tells the threads apart
static _Thread_local bool paused;        // heed_fault_pause

bool heed_fault_pause(bool on) {
  bool was = paused;
  paused = on;
  return was;
}

void heed_fault_init(HeedFault *f, long fail_at) {
  f->next = NULL;
  f->next_ud = NULL;
  f->fail_at = fail_at;
  atomic_init(&f->count, 0);
  f->owner = &thread_mark;
}

void *heed_fault_alloc(void *ud, void *ptr, size_t size, size_t align) {
  HeedFault *f = ud;
  if (size > 0 && f->owner == &thread_mark && !paused && atomic_fetch_add(&f->count, 1) + 1 == f->fail_at) {
    errno = ENOMEM;  // as malloc: callers that report strerror(errno) say so
    return NULL;
  }
  return (f->next ? f->next : heed_libc_alloc)(f->next_ud, ptr, size, align);
}
