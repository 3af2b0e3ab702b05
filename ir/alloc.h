// ir/alloc.h: the allocator hook (Lua's lua_Alloc). Every heap allocation
// made by heed's C code in ir/, frontend/, passes/, codegen/ and cli/ goes
// through heed_malloc & co., which call the one installed HeedAllocFn; the
// runtime (runtime/, which must not include ir/) has its own copy of these
// wrappers (rt_malloc & co. in runtime/rt.h) with the same HeedAllocFn shape,
// and the driver installs the same allocator into both. Not covered: LLVM's
// own C++ allocations, libc's (stdio, open_memstream) and flex's scanner
// buffers (its failure path, YY_FATAL_ERROR, cannot return).
//
// The hook's contract:
//   fn(ud, NULL, size, 0)      allocate size bytes (malloc alignment)
//   fn(ud, NULL, size, align)  allocate size bytes aligned to align (a power
//                              of two >= sizeof(void *); size a multiple)
//   fn(ud, p, size, 0)         resize p (never an aligned block)
//   fn(ud, p, 0, 0)            free p (any block it returned; p may be NULL)
// It returns NULL when it cannot allocate. Unlike lua_Alloc it is not told a
// block's old size: heed frees blocks without knowing their sizes.
//
// heed_fault_alloc is a failing allocator for tests (Lua's ltests.c
// debug_realloc, SQLite's fault injection): it counts the allocations that
// pass through it and fails the one numbered fail_at (only that one: the
// code that handles the failure may allocate again, to report it). Only the
// allocations of the thread that called heed_fault_init are counted (and
// can fail): the split compile's workers and the thread pool's allocate in
// an order that varies from run to run, and the Nth allocation must be the
// same one in every run.
#ifndef HEED_IR_ALLOC_H
#define HEED_IR_ALLOC_H

#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>

typedef void *(*HeedAllocFn)(void *ud, void *ptr, size_t size, size_t align);

// fn NULL: libc (malloc, realloc, aligned_alloc, free). Install before the
// first allocation and keep it until the last free: blocks are freed through
// whichever allocator is installed at the time.
void heed_set_allocator(HeedAllocFn fn, void *ud);
HeedAllocFn heed_get_allocator(void **ud);
// libc's allocator in the hook's shape (what a wrapping allocator calls).
void *heed_libc_alloc(void *ud, void *ptr, size_t size, size_t align);

// As libc's, through the hook. A zero size allocates one byte (a NULL result
// always means out of memory); heed_calloc checks n * size for overflow.
void *heed_malloc(size_t size);
void *heed_calloc(size_t n, size_t size);
void *heed_realloc(void *p, size_t size);
void *heed_aligned_alloc(size_t align, size_t size);
char *heed_strdup(const char *s);
char *heed_strndup(const char *s, size_t n);
void heed_free(void *p);

typedef struct HeedFault {
  HeedAllocFn next;   // the allocator that serves the others (NULL: libc)
  void *next_ud;
  long fail_at;       // the allocation (1-based) that fails; 0: none
  atomic_long count;  // allocations seen so far (frees are not counted)
  const void *owner;  // the counted thread (heed_fault_init's)
} HeedFault;
// Sets f up to fail allocation fail_at (0: none, only count) on this thread.
void heed_fault_init(HeedFault *f, long fail_at);
void *heed_fault_alloc(void *ud, void *ptr, size_t size, size_t align);
// Stops (on = true) or resumes counting this thread's allocations; returns
// the previous state. For work the counted thread shares with others in an
// order that varies from run to run (the split compile's parts), so that a
// run's count, and so which allocation N is, stays the same.
bool heed_fault_pause(bool on);

#endif
