// codegen/plan.c: a compiled program's buffers laid out by its memory plan.
// Sits between cg_compile (whose program keeps its Schedule: per node, the
// call that writes it and the last call that reads it) and cg_run: for
// concrete sizes (symvals) cg_plan_alloc asks the plan
// (passes/memplan.c: one arena, best fit over the lifetimes) for every
// computed node's offset, allocates the arena and points the node's buffer
// into it. cg_plan_build is the same plan made before emit (heed_compile).
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "codegen/compile.h"
#include "passes/memplan.h"

enum { ALIGN = 64 };

int64_t cg_plan_offsets(const CgProgram *p, const int64_t *symvals, bool kv_in_place, int64_t *off) {
  int64_t *sz = heed_malloc(sizeof *sz * ((size_t)p->nnodes + 1));
  bool *inplace = kv_in_place ? heed_calloc((size_t)p->nnodes + 1, sizeof *inplace) : NULL;
  bool ok = sz && (!kv_in_place || inplace);
  for (int i = 0; ok && i < p->nnodes; i++) {
    sz[i] = cg_buffer_bytes(p, i, symvals);
    int c = inplace && p->nodes[i].op == IR_OP_KV_APPEND ? p->sched->call[i] : -1;  // its call reads the cache
    if (c >= 0) inplace[i] = p->nodes[p->sched->k[c].opnd[0]].op == IR_OP_INPUT;
  }
  int64_t n = ok ? pass_memplan_offsets(p->sched, p->nnodes, sz, inplace, ALIGN, off) : -1;
  heed_free(sz);
  heed_free(inplace);
  return n;
}

void *cg_plan_alloc_inplace(const CgProgram *p, const int64_t *symvals, void **bufs, bool kv_in_place,
                            int64_t *bytes) {
  int64_t *off = heed_malloc(sizeof *off * ((size_t)p->nnodes + 1));
  int64_t n = off ? cg_plan_offsets(p, symvals, kv_in_place, off) : -1;
  void *arena = n >= 0 && n < INT64_MAX / 2 ? heed_aligned_alloc(ALIGN, (size_t)(n + ALIGN - 1) / ALIGN * ALIGN + ALIGN) : NULL;
  for (int i = 0; arena && i < p->nnodes; i++) {
    IrOp op = p->nodes[i].op;
    if (op != IR_OP_INPUT && op != IR_OP_PARAM && !(kv_in_place && op == IR_OP_KV_APPEND && off[i] < 0))
      bufs[i] = off[i] >= 0 ? (char *)arena + off[i] : NULL;
  }
  heed_free(off);
  *bytes = n;
  return arena;
}

void *cg_plan_alloc(const CgProgram *p, const int64_t *symvals, void **bufs, int64_t *bytes) {
  return cg_plan_alloc_inplace(p, symvals, bufs, false, bytes);
}

CgPlan *cg_plan_build(const IrGraph *g, const Schedule *s, const int64_t *symvals) {
  return pass_memplan_build(g, s, symvals, ALIGN, 0, false);
}

CgPlan *cg_program_plan(const CgProgram *p, const IrGraph *g, const int64_t *symvals, bool kv_in_place) {
  return pass_memplan_build(g, p->sched, symvals, ALIGN, 0, kv_in_place);
}

void cg_plan_free(CgPlan *pl) { pass_memplan_free(pl); }
