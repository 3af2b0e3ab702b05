// codegen/abi.c: the CPU target's program as the runtime's ABI sees it
// (runtime/heed_abi.h). Sits after cg_cpu_emit:
//   CgProgram + its Schedule + the memory plan for the sizes' bounds
//     -> HeedProgram: regions (bytes), every node's (region, offset),
//        descriptors of the graph's inputs, outputs and parameters, and a
//        forward entry that points each node's buffer into the regions and
//        runs the JIT-compiled code (cg_run_ctx) on the stream's pool
// The runtime (RtDevice, runtime/device.c) allocates the regions, copies
// tensors in and out at the descriptors and calls the entry; it needs
// nothing of the compiler.
#include <string.h>

#include "codegen/cg.h"
#include "codegen/compile.h"
#include "runtime/heed_abi.h"

enum { ALIGN = 64 };

typedef struct {
  CgProgram *p;
  bool own;           // p is freed with the program
  Diag *d;            // where run-time errors go
  int nnodes;
  int8_t *region;     // per node: HeedRegion, -1: no buffer of its own
  uint64_t *off;      // per node: bytes into its region
  void **bufs;        // per node, filled on each run
  HeedTensorDesc *desc;  // in, out, param
  char **names;       // the descriptors' and symbols' names (owned)
  int nnames;
  int64_t *sym_max;
} CgAbi;

static int8_t heed_region(MemRegion r) {
  switch (r) {
  case MEM_PARAMS: return HEED_REGION_PARAMS;
  case MEM_OPT_STATE: return HEED_REGION_OPT_STATE;
  case MEM_KV_CACHE: return HEED_REGION_KV_CACHE;
  case MEM_INPUTS: return HEED_REGION_INPUTS;
  case MEM_GRADS: case MEM_NEW_PARAMS: case MEM_NEW_OPT_STATE: case MEM_NEW_KV_CACHE: case MEM_OUTPUTS:
  case MEM_SCRATCH: return HEED_REGION_ARENA;
  case MEM_WORKSPACE: case MEM_NONE: case MEM_REGION_COUNT: return -1;
  }
  return -1;
}

static uint32_t abi_dtype(IrDType dt) {
  switch (dt) {
  case IR_F32: return HEED_DT_F32;
  case IR_F16: return HEED_DT_F16;
  case IR_BF16: return HEED_DT_BF16;
  case IR_I32: return HEED_DT_I32;
  case IR_I64: return HEED_DT_I64;
  case IR_I8: return HEED_DT_I8;
  case IR_U8: return HEED_DT_U8;
  case IR_BOOL: return HEED_DT_BOOL;
  case IR_DT_COUNT: break;
  }
  return HEED_DT_COUNT;
}

static char *keep_name(CgAbi *a, const char *s) {
  char *c = heed_strdup(s ? s : "");
  if (c) a->names[a->nnames++] = c;
  return c;
}

// The descriptor of node n (its values where cg_node_alias says they are):
// 0, 1 when it has no buffer of the plan's, 2 when out of memory.
static int describe(CgAbi *a, const IrNode *n, const char *name, HeedTensorDesc *t) {
  int at = cg_node_alias(a->p, (int)n->id);
  if (at < 0 || a->region[at] < 0) return 1;
  if (!(t->name = keep_name(a, name))) return 2;
  t->dt = abi_dtype(n->ty.dt);
  t->rank = (uint32_t)n->ty.rank;
  for (int i = 0; i < n->ty.rank; i++) {
    t->dim[i] = n->ty.dim[i].n;
    t->nsym[i] = n->ty.dim[i].nsym;
    for (int j = 0; j < n->ty.dim[i].nsym; j++) t->sym[i][j] = (uint8_t)n->ty.dim[i].sym[j];
  }
  t->region = (uint32_t)a->region[at];
  t->off = a->off[at];
  return 0;
}

static int abi_forward(const HeedProgram *hp, void *const *regions, const int64_t *symdims, void *stream) {
  CgAbi *a = hp->impl;
  for (int r = 0; r < HEED_REGION_COUNT; r++)
    if (hp->region_bytes[r] && !regions[r]) return HEED_ABI_ERR_ARG;
  for (uint32_t i = 0; i < hp->n_sym; i++)
    if (symdims[i] < 0 || symdims[i] > hp->sym_max[i]) return HEED_ABI_ERR_ARG;
  for (int i = 0; i < a->nnodes; i++) a->bufs[i] = a->region[i] >= 0 ? (char *)regions[a->region[i]] + a->off[i] : NULL;
  const HeedCpuStream *s = stream;
  bool ok = cg_run_ctx(a->p, symdims, a->bufs, s ? s->pool : NULL, s && s->nthreads > 0 ? s->nthreads : 1,
                       regions[HEED_REGION_WORKSPACE], a->d);
  return ok ? HEED_ABI_OK : HEED_ABI_ERR_RUN;
}

// Every node's (region, offset): the leaves end to end in their regions,
// the computed nodes at the plan's arena offsets.
static bool lay_out(CgAbi *a, HeedProgram *hp, const IrGraph *g, const MemPlan *pl) {
  for (int i = 0; i < a->nnodes; i++) {
    const IrNode *n = g->nodes.data[i];
    int8_t r = heed_region((MemRegion)pl->region[i]);
    bool leaf = n->op == IR_OP_INPUT || n->op == IR_OP_PARAM;
    a->region[i] = -1;
    if (r < 0 || pl->bytes[i] < 0) continue;
    if (leaf) {
      uint64_t b = ((uint64_t)pl->bytes[i] + ALIGN - 1) / ALIGN * ALIGN;
      a->off[i] = hp->region_bytes[r];
      hp->region_bytes[r] += b ? b : ALIGN;
    } else if (pl->offset[i] >= 0) {
      a->off[i] = (uint64_t)pl->offset[i];
    } else {
      continue;
    }
    a->region[i] = r;
  }
  hp->region_bytes[HEED_REGION_ARENA] = pl->total < 0 ? 0 : (uint64_t)pl->total;
  hp->region_bytes[HEED_REGION_WORKSPACE] = (uint64_t)cg_workspace_bytes(a->p);
  return pl->total >= 0;
}

static void abi_impl_free(void *impl) {
  CgAbi *a = impl;
  if (!a) return;
  if (a->own) cg_program_free(a->p);
  for (int i = 0; i < a->nnames; i++) heed_free(a->names[i]);
  heed_free(a->names);
  heed_free(a->region);
  heed_free(a->off);
  heed_free(a->bufs);
  heed_free(a->desc);
  heed_free(a->sym_max);
  heed_free(a);
}

HeedProgram *cg_program_abi(CgProgram *p, bool own, const IrGraph *g, const int64_t *symmax, Diag *d) {
  HeedProgram *hp = heed_calloc(1, sizeof *hp);
  CgAbi *a = heed_calloc(1, sizeof *a);
  int nn = g->nodes.len, nt = g->inputs.len + g->outputs.len + g->params.len;
  MemPlan *pl = NULL;
  if (!hp || !a) goto oom;
  a->p = p, a->own = own, a->d = d, a->nnodes = nn;
  hp->impl = a, hp->impl_free = abi_impl_free;
  a->region = heed_calloc((size_t)nn + 1, sizeof *a->region);
  a->off = heed_calloc((size_t)nn + 1, sizeof *a->off);
  a->bufs = heed_calloc((size_t)nn + 1, sizeof *a->bufs);
  a->desc = heed_calloc((size_t)nt + 1, sizeof *a->desc);
  a->names = heed_calloc((size_t)(nt + g->syms.len) + 1, sizeof *a->names);
  a->sym_max = heed_calloc((size_t)g->syms.len + 1, sizeof *a->sym_max);
  pl = pass_memplan_build(g, p->sched, symmax, ALIGN, 0, false);
  if (!a->region || !a->off || !a->bufs || !a->desc || !a->names || !a->sym_max || !pl) goto oom;
  hp->magic = HEED_ABI_MAGIC, hp->abi_version = HEED_ABI_VERSION, hp->align = ALIGN;
  if (!lay_out(a, hp, g, pl)) {  // a size that overflows, else the plan's scratch was not allocated
    bool overflow = false;
    for (int i = 0; i < nn; i++) overflow = overflow || pl->bytes[i] < 0;
    if (!overflow) goto oom;
    diag_error(d, (SrcLoc){0}, "%s: the memory plan's sizes overflow", g->name ? g->name : "the graph");
    goto fail;
  }
  hp->n_sym = (uint32_t)g->syms.len;
  for (int i = 0; i < g->syms.len; i++) {
    a->sym_max[i] = symmax[i];
    if (!keep_name(a, g->syms.data[i])) goto oom;
  }
  hp->sym_name = (const char *const *)a->names, hp->sym_max = a->sym_max;
  HeedTensorDesc *t = a->desc;
  int bad = 0;
  hp->in = t, hp->n_in = (uint32_t)g->inputs.len;
  for (int i = 0; i < g->inputs.len && !bad; i++) bad = describe(a, g->inputs.data[i], g->inputs.data[i]->name, t++);
  hp->out = t, hp->n_out = (uint32_t)g->outputs.len;
  for (int i = 0; i < g->outputs.len && !bad; i++) bad = describe(a, g->outputs.data[i], g->output_names.data[i], t++);
  hp->param = t, hp->n_param = (uint32_t)g->params.len;
  for (int i = 0; i < g->params.len && !bad; i++) bad = describe(a, g->params.data[i], g->params.data[i]->name, t++);
  if (bad == 2) goto oom;
  if (bad) goto nodesc;
  hp->forward = abi_forward;
  pass_memplan_free(pl);
  return hp;
nodesc:
  diag_error(d, (SrcLoc){0}, "%s: a graph input, output or parameter has no buffer of its own in the memory plan",
             g->name ? g->name : "the graph");
  goto fail;
oom:
  diag_error(d, (SrcLoc){0}, "out of memory describing %s for the runtime", g->name ? g->name : "the graph");
fail:
  pass_memplan_free(pl);
  if (a) abi_impl_free(a);
  else if (own) cg_program_free(p);
  heed_free(hp);
  return NULL;
}

void cg_abi_free(HeedProgram *hp) {
  if (!hp) return;
  if (hp->impl_free) hp->impl_free(hp->impl);
  heed_free(hp);
}

CgProgram *cg_abi_program(const HeedProgram *hp) { return ((const CgAbi *)hp->impl)->p; }
