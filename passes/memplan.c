// passes/memplan.c: the memory plan (memplan.h). Sits between the schedule
// (sched_build: per node, the call that writes it and the last call that
// reads it, Schedule.def/end) and everything that lays out a compiled
// program's buffers: heed_compile's plan for the target's emit, cg_plan_alloc
// at run time, `heed compile --emit plan`. For concrete sizes every computed
// node gets an offset in one arena, and nodes whose lifetimes do not overlap
// share bytes (ARCHITECTURE 4: ggml-alloc's and llm.c's free list).
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
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "passes/memplan.h"

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

int64_t pass_memplan_offsets(const Schedule *s, int nn, const int64_t *bytes, const bool *inplace, int align,
                             int64_t *off) {
  const int64_t al = align;
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
      if (!heap_release(&h, off[live[k]], (b + al - 1) / al * al)) goto done;
      k++;
    }
    memmove(live, live + k, sizeof *live * (size_t)(nlive - k));
    nlive -= k;
    // the buffers the call at d writes: node d, and its group's fused nodes
    for (int i = d; i < nn; i++) {
      if (s->def[i] != d || (inplace && inplace[i])) continue;
      int64_t b = bytes[i];
      if (b < 0 || b > INT64_MAX / 2 - h.top) goto done;
      off[i] = heap_take(&h, (b + al - 1) / al * al);
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

static bool starts(const char *s, const char *prefix) { return s && !strncmp(s, prefix, strlen(prefix)); }

// The region of node i: leaves by kind and name, outputs by their (first)
// name, other nodes with a buffer of the plan are the arena's temporaries.
static MemRegion classify(const IrGraph *g, const IrNode *n, int64_t off) {
  if (n->op == IR_OP_PARAM) return starts(n->name, "opt.") ? MEM_OPT_STATE : MEM_PARAMS;
  if (n->op == IR_OP_INPUT) return starts(n->name, "cache.") ? MEM_KV_CACHE : MEM_INPUTS;
  if (off < 0) return MEM_NONE;
  for (int j = 0; j < g->outputs.len; j++) {
    if (g->outputs.data[j] != n) continue;
    const char *on = g->output_names.data[j];
    return starts(on, "grad.") ? MEM_GRADS : starts(on, "new.opt.") ? MEM_NEW_OPT_STATE
           : starts(on, "new.") ? MEM_NEW_PARAMS : starts(on, "cache.") ? MEM_NEW_KV_CACHE : MEM_OUTPUTS;
  }
  return MEM_SCRATCH;
}

static void regions(MemPlan *pl, const IrGraph *g) {
  int64_t al = pl->align, outs = 0;
  for (int i = 0; i < pl->nnodes; i++) {
    MemRegion r = classify(g, g->nodes.data[i], pl->offset[i]);
    pl->region[i] = (uint8_t)r;
    pl->region_count[r]++;
    if (r == MEM_SCRATCH || r == MEM_NONE || pl->bytes[i] < 0) continue;
    int64_t b = (pl->bytes[i] + al - 1) / al * al;
    pl->region_bytes[r] += b;
    if (r <= MEM_INPUTS) pl->leaf_bytes += b;
    else outs += b;
  }
  pl->region_bytes[MEM_SCRATCH] = pl->total < 0 ? -1 : pl->total - outs;
}

bool *pass_memplan_kv_inplace(const IrGraph *g) {
  bool *m = heed_calloc((size_t)g->nodes.len + 1, sizeof *m);
  for (int i = 0; m && i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    m[i] = n->op == IR_OP_KV_APPEND && n->src[0]->op == IR_OP_INPUT;
  }
  return m;
}

MemPlan *pass_memplan_build(const IrGraph *g, const Schedule *s, const int64_t *symvals, int align,
                            int64_t workspace, bool kv_in_place) {
  int nn = g->nodes.len;
  MemPlan *pl = heed_calloc(1, sizeof *pl);
  if (!pl) return NULL;
  pl->nnodes = nn, pl->align = align;
  pl->bytes = heed_malloc(sizeof *pl->bytes * ((size_t)nn + 1));
  pl->offset = heed_malloc(sizeof *pl->offset * ((size_t)nn + 1));
  pl->region = heed_malloc((size_t)nn + 1);
  if (!pl->bytes || !pl->offset || !pl->region) {
    pass_memplan_free(pl);
    return NULL;
  }
  for (int i = 0; i < nn; i++) {
    const IrType *ty = &g->nodes.data[i]->ty;
    int64_t n = ir_type_numel(ty, symvals);
    int64_t es = (int64_t)ir_dtype_info[ty->dt].size;
    pl->bytes[i] = n < 0 || n > INT64_MAX / es ? -1 : n * es;
  }
  bool *inplace = kv_in_place ? pass_memplan_kv_inplace(g) : NULL;
  if (kv_in_place && !inplace) {
    pass_memplan_free(pl);
    return NULL;
  }
  pl->total = pass_memplan_offsets(s, nn, pl->bytes, inplace, align, pl->offset);
  heed_free(inplace);
  regions(pl, g);
  if (workspace > 0) {
    pl->region_bytes[MEM_WORKSPACE] = (workspace + align - 1) / align * align;
    pl->region_count[MEM_WORKSPACE] = 1;
    pl->leaf_bytes += pl->region_bytes[MEM_WORKSPACE];
  }
  return pl;
}

void pass_memplan_free(MemPlan *pl) {
  if (!pl) return;
  heed_free(pl->bytes);
  heed_free(pl->offset);
  heed_free(pl->region);
  heed_free(pl);
}

const char *pass_memplan_region_name(MemRegion r) {
  static const char *names[MEM_REGION_COUNT] = {"params", "opt_state", "kv_cache", "inputs", "workspace", "grads", "new_params",
                                                "new_opt_state", "new_kv_cache", "outputs", "scratch", "none"};
  return r < MEM_REGION_COUNT ? names[r] : "?";
}

void pass_memplan_print(const MemPlan *pl, const IrGraph *g, const int64_t *symvals, FILE *f) {
  fprintf(f, "# memory plan of %s:", g->name ? g->name : "the graph");
  for (int i = 0; i < g->syms.len; i++) fprintf(f, " %s=%" PRId64, g->syms.data[i], symvals[i]);
  fprintf(f, " (bytes; every tensor aligned to %d)\n", pl->align);
  fprintf(f, "%-14s %14s %8s  %s\n", "region", "bytes", "tensors", "where");
  for (int r = 0; r < MEM_NONE; r++) {
    if (!pl->region_count[r]) continue;
    const char *where = r <= MEM_INPUTS ? "leaf: the caller's buffers"
                        : r == MEM_WORKSPACE ? "the program's: its kernels' workspace"
                        : r == MEM_SCRATCH ? "arena: temporaries, sharing bytes over their lifetimes"
                                           : "arena: outputs, live for the whole run";
    fprintf(f, "%-14s %14" PRId64 " %8d  %s\n", pass_memplan_region_name((MemRegion)r), pl->region_bytes[r],
            pl->region_count[r], where);
  }
  fprintf(f, "%-14s %14" PRId64 " %8s  %s\n", "arena", pl->total, "", "one allocation: the arena regions above");
  fprintf(f, "%-14s %14" PRId64 " %8s  %s\n", "total", pl->total < 0 ? -1 : pl->leaf_bytes + pl->total, "",
          "leaves, workspace, arena");
}
