// runtime/heed_abi.h: the contract between a compiled program and the
// runtime that runs it (ARCHITECTURE.md sections 5 and 13). Plain C,
// versioned, no pointer into the compiler: a target's emit produces a
// HeedProgram (codegen/abi.c makes one from the CPU target's program),
// the runtime allocates its regions on a device (RtDevice, runtime/rt.h),
// copies tensors in at (region, offset), calls an entry, copies results out.
//   compiler: Schedule + MemPlan --target->emit--> HeedProgram
//   runtime:  dev->alloc(region_bytes[r]) per region; copy_in params and
//             inputs at their descriptors; dev->run(p, p->forward, regions,
//             symdims); copy_out the outputs
// Nothing here includes another heed header: codegen/, runtime/ and
// programs built by `heed build` all include it.
//
// Versioning: HEED_ABI_VERSION changes whenever a struct below changes
// layout or meaning; a runtime refuses a program whose abi_version it does
// not know (heed_abi_check: HEED_ABI_ERR_VERSION).
#ifndef HEED_ABI_H
#define HEED_ABI_H

#include <stdint.h>

#define HEED_ABI_MAGIC 0x44454548u  // "HEED", little-endian
#define HEED_ABI_VERSION 1u
#define HEED_ABI_MAX_RANK 8

// Error codes an entry or the runtime's ABI calls return (0: success).
typedef enum {
  HEED_ABI_OK = 0,
  HEED_ABI_ERR_VERSION = 1,  // magic or abi_version not this header's
  HEED_ABI_ERR_ARG = 2,      // a NULL region, a size over its bound, an entry not built
  HEED_ABI_ERR_NOMEM = 3,    // a device allocation failed
  HEED_ABI_ERR_RUN = 4,      // a kernel failed at run time (an index out of range, ...): the
                             // producer reported where (the CPU program: to its diagnostics)
  HEED_ABI_ERR_DEVICE = 5,   // the device failed (copy, launch, sync)
} HeedAbiStatus;

// Where a tensor's bytes live: one allocation per region, sized by the
// memory plan (passes/memplan.c) for the sizes' upper bounds, tensors at
// fixed offsets in it (a run at smaller sizes uses a prefix of each slot).
typedef enum {
  HEED_REGION_PARAMS,     // the model's parameters and buffers (written by the caller)
  HEED_REGION_OPT_STATE,  // the optimizer's state (the caller's, as the parameters)
  HEED_REGION_KV_CACHE,   // the decode step's caches
  HEED_REGION_INPUTS,     // the other inputs (tokens, targets, scalars)
  HEED_REGION_ARENA,      // the program's outputs, activations and scratch, as the plan laid them
  HEED_REGION_WORKSPACE,  // the target's kernels' own (the CPU sgemm's packing buffers)
  HEED_REGION_COUNT
} HeedRegion;

// Element types of tensors crossing the ABI.
typedef enum {
  HEED_DT_F32 = 0, HEED_DT_F16, HEED_DT_BF16, HEED_DT_I32, HEED_DT_I64,
  HEED_DT_I8, HEED_DT_U8, HEED_DT_BOOL, HEED_DT_COUNT
} HeedDType;

// One tensor. Dimension i is dim[i] * symdims[sym[i][0]] * ... *
// symdims[sym[i][nsym[i] - 1]] (nsym[i] == 0: the constant dim[i]; a
// monomial as the IR's sizes are: B, T, 3 * C, B * T). Bytes: the product
// of the dims times the dtype's size (heed_abi_dtype_size).
typedef struct {
  const char *name;  // as the model names it ("h.0.attn.weight", "tokens", "out0")
  uint32_t dt;       // HeedDType
  uint32_t rank;
  int64_t dim[HEED_ABI_MAX_RANK];
  uint8_t nsym[HEED_ABI_MAX_RANK];
  uint8_t sym[HEED_ABI_MAX_RANK][4];
  uint32_t region;   // HeedRegion
  uint64_t off;      // bytes from the region's start (a multiple of HeedProgram.align)
} HeedTensorDesc;

struct HeedProgram;
// An entry: runs one function of the program on the regions (regions[r]:
// region r's base, HEED_REGION_COUNT of them; NULL for a region of 0
// bytes) for sizes symdims (n_sym values, each <= its bound). stream: the
// device's (for the CPU: a HeedCpuStream). Returns a HeedAbiStatus.
typedef int (*HeedEntry)(const struct HeedProgram *p, void *const *regions, const int64_t *symdims, void *stream);

// What a CPU entry's stream points to: the thread pool the kernels split
// their work over (an RtPool; NULL: the calling thread only) and its size.
typedef struct {
  void *pool;
  int32_t nthreads;
} HeedCpuStream;

typedef struct HeedProgram {
  uint32_t magic, abi_version;     // HEED_ABI_MAGIC, HEED_ABI_VERSION
  uint32_t align;                  // bytes every region base and tensor offset is aligned to
  uint32_t n_sym;                  // symbolic sizes (B, T, ...)
  const char *const *sym_name;     // n_sym names
  const int64_t *sym_max;          // n_sym upper bounds the regions are sized for
  uint32_t n_in, n_out, n_param;
  const HeedTensorDesc *in;        // the graph's inputs, in its order
  const HeedTensorDesc *out;       // its outputs, in its order
  const HeedTensorDesc *param;     // its parameters (and optimizer state), in its order
  uint64_t region_bytes[HEED_REGION_COUNT];  // under sym_max
  // Entries (NULL where the program has none): forward (the graph's one
  // function: a model's forward, a loss, a train step, a decode step, as
  // compiled), prefill and decode (the decode step over a prompt and one
  // token at a time), grad (forward + backward), train_step (forward,
  // backward, clipping, the optimizer update), update (the optimizer only).
  HeedEntry forward, prefill, decode, grad, train_step, update;
  void *impl;                      // the producer's own state (a JIT's compiled code)
  void (*impl_free)(void *impl);   // frees impl (NULL: nothing to free)
} HeedProgram;

// Bytes of one element of dt; 0 for a dtype this header does not know.
static inline uint32_t heed_abi_dtype_size(uint32_t dt) {
  switch (dt) {
  case HEED_DT_F32: case HEED_DT_I32: return 4;
  case HEED_DT_F16: case HEED_DT_BF16: return 2;
  case HEED_DT_I64: return 8;
  case HEED_DT_I8: case HEED_DT_U8: case HEED_DT_BOOL: return 1;
  }
  return 0;
}

// Elements of t under symdims (-1 on overflow or a symbol out of range).
static inline int64_t heed_abi_numel(const HeedTensorDesc *t, const int64_t *symdims, uint32_t n_sym) {
  int64_t n = 1;
  for (uint32_t i = 0; i < t->rank && i < HEED_ABI_MAX_RANK; i++) {
    int64_t d = t->dim[i];
    for (uint32_t j = 0; j < t->nsym[i] && j < 4; j++) {
      int64_t s = t->sym[i][j] < n_sym ? symdims[t->sym[i][j]] : -1;
      if (s < 0 || (s > 0 && d > INT64_MAX / s)) return -1;
      d *= s;
    }
    if (d < 0 || (d > 0 && n > INT64_MAX / d)) return -1;
    n *= d;
  }
  return n;
}

// HEED_ABI_OK if p is a program of this ABI version, else HEED_ABI_ERR_VERSION.
static inline int heed_abi_check(const HeedProgram *p) {
  return p && p->magic == HEED_ABI_MAGIC && p->abi_version == HEED_ABI_VERSION ? HEED_ABI_OK : HEED_ABI_ERR_VERSION;
}

#endif
