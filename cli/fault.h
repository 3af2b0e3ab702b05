// cli/fault.h: allocation fault injection for the heed command (cli/fault.c).
#ifndef HEED_CLI_FAULT_H
#define HEED_CLI_FAULT_H

// Reads HEED_FAULT_ALLOC and HEED_FAULT_COUNT once, at the start of main,
// and installs ir/alloc.h's heed_fault_alloc into ir/ and runtime/ when
// either is set:
//   HEED_FAULT_ALLOC=N   the Nth allocation of the main thread fails (only it)
//   HEED_FAULT_COUNT=1   at exit, "heed: HEED_FAULT_COUNT: C allocations" on
//                        stderr (C: how many the main thread made)
// Unset (or anything else): libc's allocator, nothing counted. Returns 0, or
// 2 with a message on stderr for a HEED_FAULT_ALLOC that is not a number >= 1.
int heed_fault_install(void);

#endif
