// codegen/plan.c: the memory plan of a compiled program. Sits between
// cg_compile (which records, per node, the call that writes it and the
// last call that reads it: CgProgram.def/end) and cg_run: for concrete
// sizes (symvals) every computed node gets an offset in one arena, and
// nodes whose lifetimes do not overlap share bytes (ARCHITECTURE: memory
// planning; llm.c and ggml-alloc do the same with a free list).
//
// The allocator walks the calls in order. Before the call at position d it
// frees every buffer whose last read came before d, then gives each buffer
// that call writes the best-fitting free block (the smallest that holds
// it; the lowest offset among equals), or grows the arena. A buffer read
// by the call that writes another is still live then, so no kernel's
// result shares bytes with its operands. Graph outputs are placed first
// (def 0) and never freed: their bytes are theirs for the whole run, so a
// caller may swap an output's buffer in as a leaf for the next run (the
// trainer's new parameters). The result depends only on the graph and the
// sizes: the same plan every run.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "codegen/compile.h"

enum { ALIGN = 64 };

typedef struct {
  int64_t off, size;
} Block;

typedef struct {
  Block *free;  // sorted by offset, coalesced
  int nfree, cap;
  int64_t top;   // the end of the highest block in use
  int64_t peak;  // the largest top so far: the arena's size
} Heap;

static bool heap_release(Heap *h, int64_t off, int64_t size) {
  int i = 0;
  while (i < h->nfree && h->free[i].off < off) i++;
  bool left = i > 0 && h->free[i - 1].off + h->free[i - 1].size == off;
  bool right = i < h->nfree && off + size == h->free[i].off;
  if (left && right) {
    h->free[i - 1].size += size + h->free[i].size;
    memmove(&h->free[i], &h->free[i + 1], sizeof *h->free * (size_t)(h->nfree - i - 1));
    h->nfree--;
  } else if (left) {
    h->free[i - 1].size += size;
  } else if (right) {
    h->free[i].off = off;
    h->free[i].size += size;
  } else {
    if (h->nfree == h->cap) {
      int cap = h->cap ? 2 * h->cap : 64;
      Block *nb = heed_realloc(h->free, sizeof *nb * (size_t)cap);
      if (!nb) return false;
      h->free = nb, h->cap = cap;
    }
    memmove(&h->free[i + 1], &h->free[i], sizeof *h->free * (size_t)(h->nfree - i));
    h->free[i] = (Block){off, size};
    h->nfree++;
  }
  // a free block at the top shrinks the arena instead
  if (h->nfree && h->free[h->nfree - 1].off + h->free[h->nfree - 1].size == h->top) {
    h->top = h->free[h->nfree - 1].off;
    h->nfree--;
  }
  return true;
}

static int64_t heap_take(Heap *h, int64_t size) {
  int best = -1;
  for (int i = 0; i < h->nfree; i++)
    if (h->free[i].size >= size && (best < 0 || h->free[i].size < h->free[best].size)) best = i;
  if (best < 0) {  // grow; a free block ending at the top is not possible (merged away)
    int64_t off = h->top;
    h->top += size;
    if (h->top > h->peak) h->peak = h->top;
    return off;
  }
  int64_t off = h->free[best].off;
  h->free[best].off += size;
  h->free[best].size -= size;
  if (!h->free[best].size) {
    memmove(&h->free[best], &h->free[best + 1], sizeof *h->free * (size_t)(h->nfree - best - 1));
    h->nfree--;
  }
  return off;
}

// Offsets of every planned node into off[] (-1 for the others); the arena's
// size, or -1 on overflow or out of memory.
// Offsets (off, per node; -1 for nodes without a buffer of the plan) for
// buffers of bytes[i] under schedule s; the arena's size, -1 on overflow.
static int64_t plan(const Schedule *s, int nn, const int64_t *bytes, int64_t *off) {
  int nlive = 0;
  int *live = heed_malloc(sizeof *live * ((size_t)nn + 1));  // sorted by end, then id
  Heap h = {0};
  int64_t result = -1;
  if (!live) return -1;
  for (int i = 0; i < nn; i++) off[i] = -1;
  for (int d = 0; d < nn; d++) {
    // free what the calls before d read last
    int k = 0;
    while (k < nlive && s->end[live[k]] < d) {
      int64_t b = bytes[live[k]];
      if (!heap_release(&h, off[live[k]], (b + ALIGN - 1) / ALIGN * ALIGN)) goto done;
      k++;
    }
    memmove(live, live + k, sizeof *live * (size_t)(nlive - k));
    nlive -= k;
    // the buffers the call at d writes: node d, and its group's fused nodes
    for (int i = d; i < nn; i++) {
      if (s->def[i] != d) continue;
      int64_t b = bytes[i];
      if (b < 0 || b > INT64_MAX / 2 - h.top) goto done;
      off[i] = heap_take(&h, (b + ALIGN - 1) / ALIGN * ALIGN);
      int at = nlive++;  // keep live sorted by end
      while (at > 0 && s->end[live[at - 1]] > s->end[i]) live[at] = live[at - 1], at--;
      live[at] = i;
    }
  }
  result = h.peak;
done:
  heed_free(live);
  heed_free(h.free);
  return result;
}

void *cg_plan_alloc(const CgProgram *p, const int64_t *symvals, void **bufs, int64_t *bytes) {
  int64_t *off = heed_malloc(sizeof *off * ((size_t)p->nnodes + 1));
  int64_t *sz = heed_malloc(sizeof *sz * ((size_t)p->nnodes + 1));
  for (int i = 0; off && sz && i < p->nnodes; i++) sz[i] = cg_buffer_bytes(p, i, symvals);
  int64_t n = off && sz ? plan(p->sched, p->nnodes, sz, off) : -1;
  void *arena = n >= 0 && n < INT64_MAX / 2 ? heed_aligned_alloc(ALIGN, (size_t)(n + ALIGN - 1) / ALIGN * ALIGN + ALIGN) : NULL;
  for (int i = 0; arena && i < p->nnodes; i++) {
    IrOp op = p->nodes[i].op;
    if (op != IR_OP_INPUT && op != IR_OP_PARAM) bufs[i] = off[i] >= 0 ? (char *)arena + off[i] : NULL;
  }
  heed_free(off);
  heed_free(sz);
  *bytes = n;
  return arena;
}

CgPlan *cg_plan_build(const IrGraph *g, const Schedule *s, const int64_t *symvals) {
  int nn = g->nodes.len;
  CgPlan *pl = heed_calloc(1, sizeof *pl);
  if (!pl) return NULL;
  pl->nnodes = nn, pl->align = ALIGN;
  pl->bytes = heed_malloc(sizeof *pl->bytes * ((size_t)nn + 1));
  pl->offset = heed_malloc(sizeof *pl->offset * ((size_t)nn + 1));
  if (!pl->bytes || !pl->offset) {
    cg_plan_free(pl);
    return NULL;
  }
  for (int i = 0; i < nn; i++) {
    const IrType *ty = &g->nodes.data[i]->ty;
    int64_t n = ir_type_numel(ty, symvals);
    int64_t es = (int64_t)ir_dtype_info[ty->dt].size;
    pl->bytes[i] = n < 0 || n > INT64_MAX / es ? -1 : n * es;
  }
  pl->total = plan(s, nn, pl->bytes, pl->offset);
  return pl;
}

void cg_plan_free(CgPlan *pl) {
  if (!pl) return;
  heed_free(pl->bytes);
  heed_free(pl->offset);
  heed_free(pl);
}
