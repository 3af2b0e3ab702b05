// codegen/cg.h: the code generator's header (prefix cg_). Codegen sits
// after the passes in the data flow: it turns scheduled kernels into machine
// code, either JIT-compiled in process (ORC LLJIT) or written as an object
// file that is linked with heedrt (AOT).
//
// One section per source file:
//   llvm.c   the LLVM context: one module at a time, a target machine for the
//            host or a named CPU, the O3 pipeline, the JIT and object files
//   gemm.c   a generated sgemm (packing, cache blocking, a register-tiled
//            micro-kernel on explicit <16 x float> / <8 x float> vectors)
//   compile.c a whole graph's ops as one module (one function per
//            distinct kernel, an entry heed_forward calling them in order),
//            following the graph's Schedule (passes/schedule.h, under
//            cg_cpu_caps), JIT-compiled into a CgProgram that runs on
//            caller buffers
//   compile_ops.c the forward ops' kernel bodies
//   compile_grad.c the gradient ops' kernels (autodiff's train graphs);
//            compile.h is the compile*.c files' shared, internal builder kit
//   compile_optim.c the fused optimizer updates' kernels (OPT_MOMENT,
//            OPT_MOMENT2, OPT_ADAMW: pass_train_step's train-step graphs)
//
//   target.c the target interface (CgTarget) and its registry: `cpu`
//            wraps the emitter above; --target names one
//
// No LLVM header is included here: the LLVM-typed helpers the generators
// share are in codegen/cg_llvm.h (private to codegen/).
//
// Errors from LLVM (LLVMErrorRef, char **ErrorMessage) are converted to a
// diagnostic (no source location) and the function returns false; nothing
// here prints to stdout or exits.
//
// Example: JIT an sgemm for the host and run it on one thread
//   CgLlvm *cg = cg_llvm_new(NULL, &diag);             // host CPU
//   CgGemmConfig cfg;
//   cg_gemm_config_default(cg, &cfg, "sgemm", false);  // C = A @ B
//   cg_llvm_module_begin(cg, "m");
//   cg_gemm_emit(cg, &cfg, &diag);
//   cg_llvm_optimize(cg, &diag);
//   cg_llvm_define_symbol(cg, "rt_parallel_for", (void *)rt_parallel_for);
//   cg_llvm_jit_add(cg, &diag);
//   CgGemmFn f = (CgGemmFn)cg_llvm_lookup(cg, "sgemm", &diag);
//   float *work = aligned_alloc(64, cg_gemm_work_bytes(&cfg));
//   f(M, N, K, A, lda, B, ldb, C, ldc, 0, NULL, 1, work);
#ifndef HEED_CG_H
#define HEED_CG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "passes/memplan.h"
#include "passes/schedule.h"

// ---- llvm.c ----
typedef struct CgLlvm CgLlvm;

// Creates a context, a target machine for cpu (NULL or "": the host CPU and
// its features, e.g. "znver5") and an LLJIT. Returns NULL (with a
// diagnostic) on failure. Caller frees with cg_llvm_free.
CgLlvm *cg_llvm_new(const char *cpu, Diag *d);
// A named CPU (--cpu): one LLVM knows for this machine's triple, with
// 64-bit mode; else an error (with the closest name; --cpu help lists
// them all). NULL or "": the host, always valid. cg_llvm_new checks too.
bool cg_llvm_cpu_valid(const char *cpu, Diag *d);
void cg_llvm_free(CgLlvm *cg);
const char *cg_llvm_cpu_name(const CgLlvm *cg);  // owned by cg
int cg_llvm_vector_width(const CgLlvm *cg);      // f32 lanes: 16 (AVX-512F) or 8
int cg_llvm_cpu_vector_width(const char *cpu);   // the same for cpu (NULL: the host), without a CgLlvm
bool cg_llvm_is_host(const CgLlvm *cg);          // compiling for the host CPU (not a named one)

// The module being built: cg_llvm_module_begin starts a new one (discarding
// one not handed to the JIT). Generators (cg_gemm_emit) add functions to it.
void cg_llvm_module_begin(CgLlvm *cg, const char *name);
// Verifies the module and runs "default<O3>" for the target machine.
bool cg_llvm_optimize(CgLlvm *cg, Diag *d);
// Writes the module as an object file for the target (the module is kept).
bool cg_llvm_emit_object(CgLlvm *cg, const char *path, Diag *d);
bool cg_write_file(const char *path, const void *bytes, size_t n, Diag *d);  // false: diagnosed
bool cg_llvm_emit_asm(CgLlvm *cg, const char *path, Diag *d);  // the same, as assembly text
// Makes name resolve to addr in JIT-compiled code (runtime functions such
// as rt_parallel_for; codegen does not link the runtime itself).
bool cg_llvm_define_symbol(CgLlvm *cg, const char *name, void *addr, Diag *d);
// Hands the module to the JIT; if adding succeeds the JIT owns it and no
// module is current. Functions are compiled on the first lookup.
bool cg_llvm_jit_add(CgLlvm *cg, Diag *d);
void *cg_llvm_lookup(CgLlvm *cg, const char *name, Diag *d);  // NULL on error
// Instead of cg_llvm_optimize + cg_llvm_jit_add: the module cut into parts
// (whole kernels and sgemms with what they inline; small ones together),
// each optimized (O3; parts of small kernels without loop unrolling) and
// compiled to machine code on one of nthreads threads,
// then linked by the JIT; no inlining across parts (functions the entries
// call are noinline). The parts do not depend on nthreads.
bool cg_llvm_jit_add_split(CgLlvm *cg, int nthreads, Diag *d);
// What the last cg_llvm_jit_add_split compiled, a part each, the largest
// (in instructions) first; NULL and *n = 0 before one.
typedef struct {
  char label[48];  // its largest unit's function (a kernel: k<id>_<op>)
  int nunits;      // units in the part
  double cpu_ms;   // O3 and machine code (and reading the bitcode), thread CPU time
  double wall_ms;
  bool cached;     // read from the object cache (cg_llvm_set_cache) instead
} CgPartStat;
const CgPartStat *cg_llvm_part_stats(const CgLlvm *cg, int *n);
// Where cg_llvm_jit_add_split keeps the parts' object files (objcache.c;
// copied; NULL or "": no cache).
void cg_llvm_set_cache(CgLlvm *cg, const char *dir);
// One feature in an LLVM feature list ("+avx2,+fma,-avx512f,..."), matched
// exactly (so "+avx512fp16" is not "+avx512f"): 1 enabled, -1 disabled, 0
// not listed.
HEED_INTERNAL int cg_llvm_feature(const char *features, const char *name);
// True if code for cpu with features (the host's list; "" or NULL for a
// named CPU, whose features follow from its name) may use AVX-512F.
HEED_INTERNAL bool cg_llvm_cpu_avx512(const char *cpu, const char *features);
// The host CPU's features as LLVM names them ("+avx2,+fma,-avx512f,...");
// malloc'd, caller frees; NULL if out of memory.
char *cg_llvm_host_features(void);

// ---- objcache.c ----
// True if dir may hold the cache: a directory owned by this user and not
// writable by group or others (or one that does not exist yet: put makes
// it 0700); else false with the reason in why ("is writable by others
// (mode 0777)"). get, put and trim do nothing with an unsafe directory.
bool cg_objcache_dir_safe(const char *dir, char *why, size_t whylen);
// The object file stored under key in dir (malloc'd, *olen bytes), or NULL
// (a miss: no entry, or one that is damaged or for another key).
HEED_INTERNAL void *cg_objcache_get(const char *dir, const void *key, size_t klen, size_t *olen);
// Stores obj under key (creating dir), atomically; failures are ignored.
// tag: distinguishes concurrent writers in this process.
HEED_INTERNAL void cg_objcache_put(const char *dir, const void *key, size_t klen, const void *obj, size_t olen, int tag);
// If dir's entries add up to more than max_bytes, removes the least recently
// used (written or hit) until 3/4 of it is left; also a writer's leftover
// temporary files. cg_llvm_jit_add_split calls it after writing entries,
// with CG_OBJCACHE_MAX_BYTES.
enum { CG_OBJCACHE_MAX_MB = 256 };
#define CG_OBJCACHE_MAX_BYTES ((int64_t)CG_OBJCACHE_MAX_MB << 20)
HEED_INTERNAL void cg_objcache_trim(const char *dir, int64_t max_bytes);

// ---- gemm.c ----
// C[M,N] = A[M,K] @ B[K,N] (+ C if beta), row-major with leading dimensions
// (elements). With trans_b, B is stored as [N,K] (ldb >= K) and the product
// is A @ transpose(B), the tied LM head x @ transpose(wte). With trans_a, A
// is stored as [K,M] (lda >= M): transpose(A) @ B, the weight gradients
// x^T @ dy. cg_gemm_config_default sets both false but for its trans_b.
//
// The generated function cuts C into a grid of nthreads blocks (rows in
// whole MR tiles, columns in whole NR panels), one task per thread, through
//   void rt_parallel_for(void *pool, int64_t n_tasks,
//                        void (*fn)(void *ctx, int64_t task, int32_t thread),
//                        void *ctx);
// (pool NULL: the caller runs every task). Each output element is computed
// by one thread with the same K order (KC blocks, k ascending within one)
// whatever the split, so results are bitwise identical for any thread count.
typedef struct {
  char name[64];     // the generated function's symbol
  bool trans_b, trans_a;
  int vw;            // f32 lanes per vector: 16 (AVX-512) or 8 (AVX2)
  int mr, nr;        // micro-tile: mr rows x nr (= 2 * vw) columns
  int mc, kc, nc;    // cache blocks: A block mc x kc (L2), B panel kc x nr
                     // (L1), B block kc x nc (L3); mc % mr == nc % nr == 0
  int nthreads_max;  // work buffers: one per thread, up to this many
} CgGemmConfig;

// void name(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
//           const float *B, int64_t ldb, float *C, int64_t ldc,
//           int32_t beta, void *pool, int32_t nthreads, float *work)
// work: cg_gemm_work_bytes(cfg) bytes, 64-byte aligned; nthreads <= the
// pool's size and <= cfg->nthreads_max.
typedef void (*CgGemmFn)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc, int32_t beta,
                         void *pool, int32_t nthreads, float *work);

// Fills cfg with the blocking chosen for cg's CPU: the register tile from
// its vector width, KC and MC from the host's L1d and L2 (read at run time)
// or, for a named CPU, those of the level's tuning machine (gemm.c).
void cg_gemm_config_default(const CgLlvm *cg, CgGemmConfig *cfg, const char *name, bool trans_b);
size_t cg_gemm_work_bytes(const CgGemmConfig *cfg);
// The same for the default blocking of cpu (NULL or "": the host) with vw
// f32 lanes and nthreads threads (what cg_cpu_emit allocates when the
// program has a MATMUL).
size_t cg_gemm_work_bytes_for(const char *cpu, int vw, int nthreads);
// Adds the function cfg->name (and its static helpers) to cg's module.
bool cg_gemm_emit(CgLlvm *cg, const CgGemmConfig *cfg, Diag *d);

// ---- compile.c ----
// Compiles g's ops (the forward ops POSITIONS through XENT and the gradient
// ops UNARY_GRAD through MAXIMUM_GRAD that pass_autodiff emits; F32, integer
// and bool dtypes; F16/BF16 are rejected with a diagnostic) into a
// CgProgram. Storage: one buffer per node id, caller-allocated
// (cg_buffer_bytes), row-major: f32 for F32, int32 for I32, int64 for I64,
// uint8 for BOOL and U8, int8 for I8. INPUT and PARAM buffers hold the
// caller's data; every other node's buffer is written by cg_run, but for a
// PERMUTE that only MATMULs read as their transposed right operand (the
// tied LM head: the sgemm reads the permute's operand) and that is not a
// graph output, for a RESHAPE that is not a graph output, whose values
// are its source's bytes, and for an elementwise ADD, SUB or MUL that its
// elementwise users compute inline (cg_node_computed says which;
// cg_node_alias where the values are, if anywhere). Symbolic
// sizes are run-time values (symvals, indexed like g->syms): one program
// serves every B and T. Example:
//   CgProgram *p = cg_compile(g, NULL, &diag);          // host CPU, 1 thread
//   void *bufs[n]; ... bufs[i] = malloc(cg_buffer_bytes(p, i, symvals));
//   if (!cg_run(p, symvals, bufs, &diag)) ...           // gather index error
//   cg_program_free(p);
typedef struct CgProgram CgProgram;

// rt_parallel_for's signature (codegen does not link the runtime).
typedef void (*CgParallelFor)(void *pool, int64_t n_tasks, void (*fn)(void *ctx, int64_t task, int32_t thread),
                              void *ctx);

typedef struct {
  const char *cpu;             // NULL or "": the host CPU
  void *pool;                  // an RtPool for the sgemm's threads; NULL: one thread
  int nthreads;                // the pool's size
  CgParallelFor parallel_for;  // rt_parallel_for; NULL: a serial stand-in
  const char *dump_ir;         // if set: the optimized module as LLVM IR text (.ll) goes here
  const char *dump_obj;        // if set: the optimized module as an object file
  const char *dump_asm;        // if set: the optimized module as assembly
  int64_t par_grain;           // elements of work a kernel gives each task, at least (0: 16384);
                               // tests set 1 to split even tiny kernels across the pool
  bool profile;                // time every kernel call (cg_program_profile); off: no timing code
  int compile_threads;         // parts of the module compiled at once (0: the online CPUs, at most 8;
                               // 1: one module, as the dumps are)
  const char *cache_dir;       // compiled in parts: keep and reuse their object files here
                               // (objcache.c); NULL: no cache
  int prefix;                  // > 0: also an entry for nodes [0, prefix) only (cg_run_prefix), e.g.
                               // a train step's forward and loss, for evaluation on the step's buffers
  int split;                   // > 0: also entries for nodes [0, split) (cg_run_head) and
                               // [split, n) (cg_run_tail), e.g. a train step's gradients and its
                               // update (gradient accumulation runs the head per micro-batch)
  const char *entry;           // the entry's symbol (NULL: heed_forward); when set, the sgemms are
                               // ENTRY_sgemm_nn, ... so that two graphs' objects link into one program
} CgOptions;

// What heed_forward's third argument points to (the layout is the ABI).
typedef struct {
  void *pool;
  int32_t nthreads;
  float *work;      // the sgemm's packing buffers (cg_gemm_work_bytes)
  int64_t err[4];   // written by a failing kernel: the values its message names
} CgRunCtx;

// int32_t heed_forward(void **bufs, const int64_t *symvals, CgRunCtx *ctx):
// 0, or the failing node's id + 1.
typedef int32_t (*CgEntryFn)(void **bufs, const int64_t *symvals, CgRunCtx *ctx);

typedef struct {
  int nkernels;       // distinct kernel functions in the module
  int ncalls;         // kernel calls in the entry (non-leaf nodes)
  double build_ms;    // graph -> LLVM IR
  double opt_ms;      // the O3 pipeline (compiled in parts: O3 and machine code, on threads)
  double jit_ms;      // machine code (LLJIT, on lookup; in parts: linking)
  double compile_ms;  // all of it
  int nparts;         // compiled in parts (cg_llvm_jit_add_split): what each took; else 0
  const CgPartStat *parts;
} CgProgramStats;

// What this backend can fuse and how it runs kernels, for sched_build
// (cg_compile schedules g under these caps; `--emit schedule` prints it).
void cg_cpu_caps(SchedCaps *caps);
// o may be NULL (the defaults above). NULL (with a diagnostic) on failure.
// The same as sched_build under cg_cpu_caps, then cg_cpu_emit.
CgProgram *cg_compile(const IrGraph *g, const CgOptions *o, Diag *d);
// The CPU target's emitter: g's kernels as sched (made under cg_cpu_caps)
// orders them. The program owns sched (also on failure: freed).
CgProgram *cg_cpu_emit(const IrGraph *g, Schedule *sched, const CgOptions *o, Diag *d);
// Whether the CPU emitter compiles kernel k of g (its root, operands and
// group): false with a diagnostic (f16/bf16 values, a gradient without a
// rule).
bool cg_cpu_supports(const IrGraph *g, const SchedKernel *k, Diag *d);
// Runs the graph's ops on bufs (g->nodes.len of them). A run-time error (a
// gather index outside its table, a target outside the classes, an integer
// division by zero, a slice outside its axis, also in the gradient ops; a
// gradient kernel's scratch memory not allocated) is a diagnostic at the
// op's source location; false then. Results do not depend on the thread
// count. Not reentrant (one run at a time).
bool cg_run(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d);
// The same on another thread pool (pool, nthreads <= the program's) and
// workspace (cg_workspace_bytes of it, 64-byte aligned; NULL when 0): how
// the runtime's device runs a program through the ABI (codegen/abi.c).
bool cg_run_ctx(CgProgram *p, const int64_t *symvals, void **bufs, void *pool, int nthreads, void *work, Diag *d);
// Bytes of the program's own workspace (the sgemm's packing buffers; 0: none).
int64_t cg_workspace_bytes(const CgProgram *p);
// Frees the program's own workspace: it then runs only through cg_run_ctx
// with the caller's (a HeedProgram's workspace region), not cg_run.
void cg_program_release_work(CgProgram *p);
// With CgOptions.prefix: runs only the kernels of nodes [0, prefix) on bufs
// (the same buffers and plan as cg_run; the nodes after it are left as
// they are). Not profiled.
bool cg_run_prefix(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d);
// With CgOptions.split: the kernels of nodes [0, split) (head) or [split, n)
// (tail) only; the tail reads what the head left in the graph's outputs
// and leaves (a caller may write outputs in between, e.g. summed gradients).
bool cg_run_head(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d);
bool cg_run_tail(CgProgram *p, const int64_t *symvals, void **bufs, Diag *d);
// With CgOptions.split: the head in pieces, its calls c0 <= c < c1 (in run
// order; 0 .. cg_head_calls() in any number of consecutive ranges is the
// head, bit for bit). cg_node_call: the call that writes a node's values
// (-1: none, a leaf or constant). The data-parallel trainer sends a bucket
// of gradients as soon as the calls writing them have run.
typedef int32_t (*CgRangeFn)(void **bufs, const int64_t *symvals, CgRunCtx *ctx, int32_t c0, int32_t c1);
bool cg_run_calls(CgProgram *p, int c0, int c1, const int64_t *symvals, void **bufs, Diag *d);
int cg_head_calls(const CgProgram *p);
int cg_node_call(const CgProgram *p, int node_id);
// Bytes of node node_id's buffer under symvals; -1 on overflow or a bad id.
int64_t cg_buffer_bytes(const CgProgram *p, int node_id, const int64_t *symvals);
const CgProgramStats *cg_program_stats(const CgProgram *p);
// With CgOptions.profile: the milliseconds each node's kernel call took,
// summed over the runs since compile or the last reset (indexed by node
// id; an attention-gradient group's time is its leader's); NULL without.
const double *cg_program_profile(const CgProgram *p);
void cg_program_profile_reset(CgProgram *p);

// ---- plan.c ----
// The memory plan: every computed node's buffer (cg_node_computed) at an
// offset in one arena, where nodes whose values are not live at the same
// time share bytes; the graph's outputs have bytes of their own for the
// whole run (a caller may swap an output's buffer in as a leaf's). Leaves
// (INPUT, PARAM) stay the caller's. Example:
//   int64_t n;
//   void *bufs[nodes];                                  // bufs[leaf] = caller's data
//   void *arena = cg_plan_alloc(p, symvals, bufs, &n);  // the other nodes' pointers
//   cg_run(p, symvals, bufs, &diag); ... free(arena);
// Plans for sizes symvals, allocates the arena (64-byte aligned, at least
// 64 bytes past the plan, not initialised) and points bufs[i] of every
// computed node into it, NULL for the others but the leaves (left as they
// are). *bytes: the plan's size (-1 on overflow). NULL if out of memory.
void *cg_plan_alloc(const CgProgram *p, const int64_t *symvals, void **bufs, int64_t *bytes);
// The same; with kv_in_place, a KV_APPEND onto a cache input gets no bytes
// of the arena and its bufs[i] is left as it is: the caller points it at
// the cache's buffer (the append is then in place; heed generate).
void *cg_plan_alloc_inplace(const CgProgram *p, const int64_t *symvals, void **bufs, bool kv_in_place,
                            int64_t *bytes);
// The plan alone: per node its offset in the arena (off: nnodes entries;
// -1 for the nodes whose bufs cg_plan_alloc_inplace would not point into
// it), for sizes symvals; returns the arena's bytes (-1 on overflow or out
// of memory). A plan for the largest sizes serves every smaller size (no
// buffer grows): heed build writes it for the context into the program.
int64_t cg_plan_offsets(const CgProgram *p, const int64_t *symvals, bool kv_in_place, int64_t *off);
// Whether cg_run writes node node_id's buffer (false for leaves and for
// the permutes described above).
bool cg_node_computed(const CgProgram *p, int node_id);
// The same plan made before emit (heed_compile) from the schedule and the
// graph's types, for sizes symvals: what a target is told of memory.
// (passes/memplan.h: MemPlan; its regions' bytes too)
typedef MemPlan CgPlan;
// NULL if out of memory; caller frees with cg_plan_free.
CgPlan *cg_plan_build(const IrGraph *g, const Schedule *s, const int64_t *symvals);
// The plan of p's graph g (the one p was compiled from) for sizes symvals:
// the offsets cg_plan_alloc_inplace(p, symvals, ..., kv_in_place) uses, for
// a runtime that lays out buffers itself (heed build's programs). NULL if
// out of memory; caller frees with cg_plan_free.
CgPlan *cg_program_plan(const CgProgram *p, const IrGraph *g, const int64_t *symvals, bool kv_in_place);
void cg_plan_free(CgPlan *pl);  // NULL is harmless
// The node whose buffer holds node_id's values after cg_run: node_id itself
// (computed nodes, leaves), the source of a reshape that is not computed
// (through chains), -1 for a skipped permute or a bad id.
int cg_node_alias(const CgProgram *p, int node_id);
void cg_program_free(CgProgram *p);  // NULL is harmless

// ---- abi.c ----
// A compiled program as the runtime's ABI (runtime/heed_abi.h) describes
// it: every node's buffer at (region, offset), the regions sized by the
// memory plan for the sizes symmax (indexed like g->syms; a run may use any
// sizes up to them), descriptors of g's inputs, outputs and parameters, and
// a forward entry that runs p on the regions. Leaves are laid end to end
// in their regions (parameters, optimizer state, KV caches, inputs), the
// computed nodes at the plan's offsets in the arena, p's sgemm workspace in
// HEED_REGION_WORKSPACE. own: the program takes p (freed with it, and on
// failure); else p must outlive it (one CgProgram, several plans). A run-time error
// is reported to d (which must outlive the program) and the entry returns
// HEED_ABI_ERR_RUN. NULL with a diagnostic on failure; the caller frees
// with cg_abi_free.
struct HeedProgram;
struct HeedProgram *cg_program_abi(CgProgram *p, bool own, const IrGraph *g, const int64_t *symmax, Diag *d);
void cg_abi_free(struct HeedProgram *hp);  // NULL is harmless
// The CgProgram inside hp (for profiles and statistics).
CgProgram *cg_abi_program(const struct HeedProgram *hp);

// ---- target.c ----
// A backend as the driver sees it (QBE's struct Target, ggml's backend
// interface): what it can do (caps: the schedule is made under them, the
// backend never re-decides), which kernels it compiles, and emit, which
// gets every decision made before it: the graph after the passes, its
// schedule and its memory plan. `cpu` is the first instance (LLVM, this
// file's emitter); tests register their own (tests/unit/test_cg_target.c).
typedef struct {
  int vector_width;       // f32 lanes of a vector register (16 AVX-512F, 8 AVX2)
  int alignment;          // bytes a buffer's start is aligned to
  int64_t shared_memory;  // bytes of on-chip memory a kernel's threads share (0: none, a CPU)
  int64_t matmul_work;    // bytes of workspace a program with a MATMUL allocates besides its
                          // values (the CPU's sgemm packing buffers, for o's threads); 0: none
  SchedCaps sched;        // what the schedule may fuse for it
} CgCaps;

typedef struct {          // what emit is given
  const IrGraph *g;       // the graph after the passes: types, attributes, source locations
  Schedule *sched;        // kernels in run order; a target that keeps it sets this NULL
  const CgPlan *plan;     // buffer sizes and offsets for the planned sizes (NULL: none)
  const CgOptions *o;     // entry names, dumps, threads, profile
} CgEmitIn;

typedef struct CgTarget CgTarget;
struct CgTarget {
  const char *name;
  const char *summary;
  // Fills caps for o (o->cpu: the CPU compiled for). False with a diagnostic.
  bool (*caps)(const CgTarget *t, const CgOptions *o, CgCaps *caps, Diag *d);
  // Whether it compiles kernel k of g; false with a diagnostic.
  bool (*supports)(const CgTarget *t, const IrGraph *g, const SchedKernel *k, Diag *d);
  // *out: a program cg_run runs (the CPU), or NULL for a target whose output
  // is only what o asks written (text, objects). False with a diagnostic.
  bool (*emit)(const CgTarget *t, CgEmitIn *in, CgProgram **out, Diag *d);
  void *ud;               // the target's own state
};

// The target named name (cpu, and those registered), or NULL.
const CgTarget *cg_target_find(const char *name);
// Adds t (not copied: it must outlive its use); false if the table is full
// or the name taken.
bool cg_target_register(const CgTarget *t);
// Targets heed knows of but this build does not have ("cuda"): true.
bool cg_target_known_absent(const char *name);

#endif
