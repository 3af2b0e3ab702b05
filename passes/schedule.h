// passes/schedule.h: the schedule, the decisions made once between the IR
// and any backend. Sits after the graph passes (autodiff, train_step,
// kvcache) and before a backend's emitter:
//   IrGraph (verified) + SchedCaps (what the target can fuse)
//     -> sched_build -> Schedule -> codegen (cg_compile: one function per
//        distinct kernel, an entry calling the kernels in run order) and the
//        memory plan (lifetimes)
// A Schedule holds no LLVM and no backend types; it names nodes by id (never
// by pointer), so it can outlive the graph. What it decides:
//   - elementwise fusion: an f32 ADD, SUB or MUL whose users can compute it
//     is computed inline in their kernels (SCHED_INLINE);
//   - attention-gradient grouping: ATTENTION_DQ, _DK, _DV over the same
//     operands are one kernel that writes all three (SCHED_GROUPED);
//   - aliases: a RESHAPE that is not an output is its source's bytes;
//   - transposed operands: a MATMUL reads a PERMUTE of its last two axes
//     through (SCHED_TRANSPOSED when nothing else reads the permute);
//   - each kernel's parallel unit split (rows, (batch, head), column blocks,
//     elements) as data: sizes are products of the kernel's dims;
//   - the structural dedup key: kernels with equal keys share one function;
//   - lifetimes for the memory plan, in call positions.
// `heed compile M.heed --emit schedule` prints it (sched_print).
#ifndef HEED_PASSES_SCHEDULE_H
#define HEED_PASSES_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/ir.h"

// What a target can fuse and how it runs kernels; the target declares it
// (codegen/compile.c: the CPU's), the pass never asks which target it is.
typedef struct {
  bool inline_op[IR_OP_COUNT];    // f32 values of these ops may be computed inline by their users
  bool inline_into[IR_OP_COUNT];  // kernels of these ops can compute an operand inline (a reduction:
                                  // when split in rows, on an f32 operand shaped like its own operands)
  int inline_max_users;           // an inlined value is recomputed by at most this many users
  bool group_attention_grads;     // ATTENTION_DQ, _DK, _DV over the same operands: one kernel
  bool transposed_matmul;         // MATMUL reads a PERMUTE of its last two axes in place
  bool alias_reshapes;            // a RESHAPE that is not an output is not materialized
  bool generic_sizes;             // memory-bound kernels read their sizes at run time (one kernel
                                  // serves every width: the dedup key drops those sizes)
} SchedCaps;

typedef enum {
  SCHED_LEAF,        // INPUT, PARAM: the caller's buffer
  SCHED_CALL,        // a kernel's root: the call writes it
  SCHED_INLINE,      // computed inside its users' kernels: no buffer
  SCHED_GROUPED,     // written by its group's root's call (attention gradients)
  SCHED_ALIAS,       // a RESHAPE: its values are alias[id]'s bytes
  SCHED_TRANSPOSED,  // a PERMUTE only MATMULs read, through it: no buffer
} SchedRole;

// One factor of a size: the product of some dims of one of the kernel's
// tensors. prod: written 1 * d_a * d_b ... (as the CPU code always did);
// else exactly one axis, the dim itself. (The two spellings are the same
// value; they are kept apart so that the generated code stays bit for bit
// what it was.)
enum { SCHED_RESULT = -1 };
typedef struct {
  int8_t t;       // a kernel operand (0..nopnd-1), or SCHED_RESULT
  bool prod;
  uint32_t axes;  // bit a: axis a of that tensor
} SchedDims;

// f[0] * f[1] * c: c == 0 means no constant factor; no factors and no c is 1.
typedef struct {
  int nf;
  SchedDims f[2];
  int64_t c;
} SchedSize;

typedef enum {
  SCHED_SERIAL,    // one call, no units (the sgemm threads itself)
  SCHED_ELEMENTS,  // every element, one flat loop (operands shaped like the result)
  SCHED_ROWS,      // rows: the leading axes (the work is a row: the last axis, a softmax's axis, ...)
  SCHED_COLUMNS,   // column blocks: sums over leading axes, the norms' weight gradients
  SCHED_HEADS,     // (batch, head): attention
  SCHED_KV_HEADS,  // (batch, kv head): the fused attention backward
  SCHED_GEMV,      // a one-row MATMUL's columns (decode); other calls: one unit
} SchedUnitKind;

// The parallel split: a unit is computed by one task, whatever the split,
// so results do not depend on the thread count.
typedef struct {
  SchedUnitKind kind;
  SchedSize units;  // how many units
  SchedSize work;   // elements of work per unit (the dispatcher's grain)
} SchedSplit;

enum { SCHED_TRANS_B = 1, SCHED_TRANS_A = 2 };  // MATMUL operands read transposed

typedef struct {
  int root;               // the node whose op the kernel computes
  int nopnd;              // the kernel's operands (node ids): root's sources, but an
  int opnd[IR_MAX_SRC];   //   inlined source is replaced by its own sources
  int buf[IR_MAX_SRC];    // the buffer each operand is read from: its alias, a transposed permute's source
  uint32_t inl;           // bit j: root's source j is computed inline
  int trans;              // SCHED_TRANS_A | SCHED_TRANS_B
  int nxout;              // attention-gradient group: 3, xout = its DQ, DK, DV (-1: none); else 0
  int xout[3];
  bool generic;           // sizes other than 1 are read at run time
  int lead;               // SCHED_COLUMNS reduction: the leading axes it sums; else 0
  SchedSplit split;
  int fn;                 // the distinct kernel (equal keys): index into Schedule.key
} SchedKernel;

typedef struct {
  int nnodes;
  uint8_t *role;      // per node: SchedRole
  int *alias;         // per node: the node whose buffer holds its values (itself but for SCHED_ALIAS)
  int *call;          // per node: the kernel (index into k) that writes it; -1 for none
  SchedKernel *k;     // the calls, in run order (their roots' order)
  int nk;
  char **key;         // per distinct kernel: its structural key (op, attributes, types, inlined operands)
  int nfn;
  // lifetimes in call positions (node ids of the roots): def[i], the call
  // that writes node i; end[i], the last call that reads it; outputs span
  // the whole run (def 0, end INT_MAX); -1 for nodes without a buffer of
  // the plan (leaves, inline, aliases, transposed permutes).
  int *def, *end;
} Schedule;

// ---- schedule.c ----
// The schedule of g's nodes under caps; NULL (with a diagnostic) if out of memory.
HEED_INTERNAL Schedule *sched_build(const IrGraph *g, const SchedCaps *caps, Diag *d);
HEED_INTERNAL void sched_free(Schedule *s);  // NULL is harmless
// The axes a SUM, MEAN, MAX, MIN (attr.axes) or SUM_TO (the leading axes it
// drops and its size-1 axes) reduces, as a bit mask.
HEED_INTERNAL uint32_t sched_reduce_axes(const IrNode *n);
// The text form: kernels with their node groups, operands and splits, then
// the nodes that have no call of their own.
HEED_INTERNAL void sched_print(const Schedule *s, const IrGraph *g, FILE *f);

#endif
