// cli/fault.c: the heed command's fault injection (cli/fault.h). Runs first
// in main, before any allocation: it puts heed_fault_alloc (ir/alloc.c)
// under every heed_malloc and rt_malloc of the run, so that tests/cli/
// test_fault.py can fail each allocation of a compile or a train step in
// turn and expect a clean error, never a crash or a leak.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/fault.h"
#include "ir/ir.h"
#include "runtime/rt.h"

static HeedFault fault;

static void report_count(void) {
  fprintf(stderr, "heed: HEED_FAULT_COUNT: %ld allocations\n", atomic_load(&fault.count));
}

int heed_fault_install(void) {
  const char *n = getenv("HEED_FAULT_ALLOC"), *c = getenv("HEED_FAULT_COUNT");
  bool count = c && !strcmp(c, "1");
  long at = 0;
  if (n && *n) {
    char *end;
    errno = 0;
    at = strtol(n, &end, 10);
    if (errno || *end || at < 1) {
      fprintf(stderr, "heed: HEED_FAULT_ALLOC must be a number >= 1 (the allocation that fails), not '%s'\n", n);
      return 2;
    }
  }
  if (!at && !count) return 0;
  heed_fault_init(&fault, at);
  heed_set_allocator(heed_fault_alloc, &fault);
  rt_set_allocator(heed_fault_alloc, &fault);
  if (count) atexit(report_count);
  return 0;
}
