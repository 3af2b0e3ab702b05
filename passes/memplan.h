// passes/memplan.h: the memory plan (prefix pass_memplan_). Sits after the
// schedule and before a backend's emit (heed_compile: passes -> sched_build
// -> pass_memplan_build -> target->emit), and at run time wherever a
// compiled program's buffers are laid out (codegen/plan.c's cg_plan_alloc):
//   Schedule (lifetimes in call positions) + the graph's types + sizes
//     -> every computed node's offset in one arena (best fit over the
//        lifetimes), and the bytes of each region
// Regions, by node role: the leaves are the caller's (parameters, optimizer
// state, KV caches, other inputs); the target's workspace is the program's
// own allocation besides its values; the arena holds the graph's outputs
// (gradients, new parameters and state, appended caches, the others) for
// the whole run, then the temporaries (activations and scratch), which share
// bytes where their lifetimes do not overlap.
// `heed compile M.heed --emit plan` prints it (pass_memplan_print).
#ifndef HEED_PASSES_MEMPLAN_H
#define HEED_PASSES_MEMPLAN_H

#include <stdint.h>
#include <stdio.h>

#include "passes/schedule.h"

typedef enum {
  MEM_PARAMS,         // leaves: the model's parameters and buffers (PARAM)
  MEM_OPT_STATE,      // leaves: the optimizer's state (PARAM "opt.*")
  MEM_KV_CACHE,       // leaves: the decode step's caches (INPUT "cache.*")
  MEM_INPUTS,         // leaves: the other inputs (tokens, targets, scalars)
  MEM_WORKSPACE,      // the target's kernels' own (the CPU's sgemm packing buffers): no node's
  MEM_GRADS,          // arena: outputs "grad.*"
  MEM_NEW_PARAMS,     // arena: outputs "new.*" (the updated parameters)
  MEM_NEW_OPT_STATE,  // arena: outputs "new.opt.*"
  MEM_NEW_KV_CACHE,   // arena: outputs "cache.*" (the appended caches)
  MEM_OUTPUTS,        // arena: the other outputs (loss, logits, grad_norm)
  MEM_SCRATCH,        // arena: activations and scratch, the rest of it as laid out
  MEM_NONE,           // no bytes of its own (inline, alias, transposed permute)
  MEM_REGION_COUNT
} MemRegion;

typedef struct {
  int nnodes;
  int align;        // bytes every offset (and every region's tensor) is a multiple of
  int64_t *bytes;   // per node: its values' bytes under the planned sizes (-1: overflow)
  int64_t *offset;  // per node: its buffer's offset in the arena; -1: none of the plan's
                    // (leaves: the caller's; inline, alias, transposed-permute nodes)
  int64_t total;    // the arena's bytes (-1: overflow)
  uint8_t *region;  // per node: MemRegion
  int64_t region_bytes[MEM_REGION_COUNT];  // each tensor rounded up to align; MEM_SCRATCH:
                                           // total less the arena's outputs
  int region_count[MEM_REGION_COUNT];      // tensors (MEM_SCRATCH: the temporaries laid out)
  int64_t leaf_bytes;                      // the leaves' regions together, and the workspace
} MemPlan;

// Offsets (off, per node; -1 for nodes without a buffer of the plan) for
// buffers of bytes[i] under schedule s, each rounded up to align; the
// arena's size, -1 on overflow or out of memory. inplace (NULL: none):
// nodes whose buffer is another's (the caller's), given no bytes.
HEED_INTERNAL int64_t pass_memplan_offsets(const Schedule *s, int nn, const int64_t *bytes, const bool *inplace,
                                           int align, int64_t *off);
// Per node of g: a KV_APPEND onto a cache input, which its caller may run
// in place (the appended cache is the input's buffer: heed generate, the
// built programs). heed_calloc'd (caller frees); NULL if out of memory.
HEED_INTERNAL bool *pass_memplan_kv_inplace(const IrGraph *g);
// The plan of g's nodes under s for sizes symvals (indexed like g->syms);
// workspace: the bytes the target's program allocates besides the values
// (CgCaps.matmul_work when it has a MATMUL; 0: none); kv_in_place: the
// appends pass_memplan_kv_inplace names have no bytes of the arena (region
// MEM_NONE). NULL if out of memory. Caller frees with pass_memplan_free.
HEED_INTERNAL MemPlan *pass_memplan_build(const IrGraph *g, const Schedule *s, const int64_t *symvals, int align,
                                          int64_t workspace, bool kv_in_place);
HEED_INTERNAL void pass_memplan_free(MemPlan *pl);  // NULL is harmless
HEED_INTERNAL const char *pass_memplan_region_name(MemRegion r);
// The text form: the sizes, then one line per region that has tensors
// (bytes, tensors, where), the arena and the total (leaves, workspace, arena).
HEED_INTERNAL void pass_memplan_print(const MemPlan *pl, const IrGraph *g, const int64_t *symvals, FILE *f);

#endif
