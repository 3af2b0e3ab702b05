// ir/ir.h: base utilities shared by every module (Arena, Vec, SrcLoc, Diag,
// dtypes and shapes). This is the bottom of the data flow: the frontend
// records its diagnostics here, and the IR (ir_* graph, later issues) builds
// on the dtype and shape types defined below.
//
// Ownership: an Arena owns everything allocated from it; arena_free releases
// it all at once. A Diag owns its source files and message text.
#ifndef HEED_IR_H
#define HEED_IR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/alloc.h"
#include "runtime/dtype.h"

#if defined(__GNUC__)
#define HEED_INTERNAL __attribute__((visibility("hidden")))
#define HEED_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HEED_INTERNAL
#define HEED_PRINTF(f, a)
#endif

// Internal bugs only: never for anything a user can cause.
#define HEED_ASSERT(x) \
  ((x) ? (void)0 : heed_internal_error(__FILE__, __LINE__, #x))
#define heed_unreachable() heed_internal_error(__FILE__, __LINE__, "unreachable")
_Noreturn void heed_internal_error(const char *file, int line, const char *what);

typedef enum {
  HEED_OK = 0,
  HEED_ERR_SYNTAX,   // the model file does not parse
  HEED_ERR_CHECK,    // names, types, shapes
  HEED_ERR_IO,       // a file could not be read or written
  HEED_ERR_USAGE,    // a bad flag or override
  HEED_ERR_NOMEM,
} HeedStatusCode;

// ---- arena.c ----
// A bump allocator in growing chunks. Allocation failure returns NULL.
typedef struct ArenaChunk ArenaChunk;
typedef struct {
  ArenaChunk *head;
  size_t used;      // bytes handed out, all chunks
  size_t limit;     // 0: none; else allocations past `used == limit` fail (a budget; tests)
  size_t failed;    // the size of the first request that failed (0: none): callers
                    // that cannot report each NULL report this once
} Arena;

Arena *arena_new(void);                              // caller frees with arena_free
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n);               // zeroed, 16-byte aligned, NULL on OOM
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...) HEED_PRINTF(2, 3);

// A growable array allocated from an arena (old storage is left in the arena).
#define Vec(T) struct { T *data; int len, cap; }
#define vec_push(a, v, x)                                                  \
  (((v)->len < (v)->cap || vec_grow_((a), (void **)&(v)->data, &(v)->cap, \
                                     sizeof(*(v)->data)))                 \
       ? ((v)->data[(v)->len++] = (x), true)                              \
       : false)
bool vec_grow_(Arena *a, void **data, int *cap, size_t elem);

// ---- diag.c ----
// A source location. file indexes Diag.files; line and col are 1-based
// (col counts bytes). file == 0 with line == 0 means "no location".
typedef struct { uint32_t file; uint32_t line, col; } SrcLoc;

typedef struct {
  char *name;       // as given on the command line
  char *text;       // contents, NUL-terminated (may also hold NULs)
  size_t len;
} DiagFile;

typedef struct {
  DiagFile *files;  // files[0] is a placeholder for "no file"
  int nfiles;
  int nerr, nwarn;
  int max_errors;   // stop recording after this many (default 20)
  bool limit_hit;   // more errors were dropped
  FILE *out;        // where rendered diagnostics go (stderr), NULL: keep only
  char *log;        // everything rendered, for tests (malloc'd)
  size_t loglen, logcap;
  bool color;
  uint64_t seen[256];   // hashes of reported errors (duplicates are dropped)
  int nseen;
  bool dropping;        // the last error was a duplicate: drop its notes
} Diag;

void diag_init(Diag *d, FILE *out);
void diag_fini(Diag *d);
// Registers a copy of text; returns the file id for SrcLoc.file.
uint32_t diag_add_file(Diag *d, const char *name, const char *text, size_t len);
void diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) HEED_PRINTF(3, 4);
void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) HEED_PRINTF(3, 4);
void diag_verror(Diag *d, SrcLoc loc, const char *kind, const char *fmt, va_list ap);
bool diag_full(const Diag *d);  // the error limit is reached: callers may stop early
void diag_finish(Diag *d);      // prints the "N errors" summary line if any

// n bytes for a message: "512 bytes", "3.2 MiB", "128.0 GiB" (buf: 32 bytes).
const char *diag_bytes(char *buf, uint64_t n);

// Levenshtein distance with early exit past max; for "did you mean".
int diag_edit_distance(const char *a, const char *b, int max);
// The closest of n candidates to name within max edits (the first of equals),
// or NULL; for "; did you mean 'x'?".
const char *diag_closest(const char *name, const char *const *cands, int n, int max);

// ---- types.c ----
// The IR's dtypes are the plain rows of the one dtype table (runtime/dtype.h,
// RtDType in the same order); quantized block formats follow them there.
typedef enum {
  IR_F32, IR_F16, IR_BF16, IR_I32, IR_I64, IR_I8, IR_U8, IR_BOOL, IR_DT_COUNT
} IrDType;

typedef RtDTypeInfo IrDTypeInfo;  // name, size, is_float, is_int, to_f32/from_f32, get/set
#define ir_dtype_info rt_dtype_info
int ir_dtype_from_name(const char *s);  // -1 if not a dtype

// A dimension: n * sym[0] * sym[1] * ... (a monomial over symbolic sizes).
// nsym == 0: the constant n. Symbols index a per-compilation name table.
enum { IR_MAX_RANK = 8, IR_MAX_DIMSYM = 4 };
typedef struct {
  int64_t n;
  uint8_t nsym;
  uint16_t sym[IR_MAX_DIMSYM];  // sorted
} IrDim;

typedef struct {
  IrDType dt;
  int rank;
  IrDim dim[IR_MAX_RANK];
} IrType;

typedef struct {           // names of symbolic sizes, in order of first use
  const char **data;
  int len, cap;
} IrSymTab;

IrDim ir_dim_const(int64_t n);
IrDim ir_dim_sym(int sym);
bool ir_dim_is_const(IrDim d);
bool ir_dim_eq(IrDim a, IrDim b);
bool ir_dim_mul(IrDim a, IrDim b, IrDim *out);       // false on overflow/too many syms
bool ir_dim_div(IrDim a, IrDim b, IrDim *out);       // false if not exact
bool ir_dim_add(IrDim a, IrDim b, IrDim *out);       // like terms only (2*T + T); false otherwise
bool ir_type_eq(const IrType *a, const IrType *b);
// Renders "f32[B, T, 768]" (or "[B, T, 768]" with dtype=false) into buf.
const char *ir_type_str(const IrType *t, const IrSymTab *st, bool dtype, char *buf, size_t n);
const char *ir_dim_str(IrDim d, const IrSymTab *st, char *buf, size_t n);
int ir_symtab_intern(IrSymTab *st, Arena *a, const char *name);  // -1 on OOM/too many

// ---- ir.c: the graph IR ----
// A graph is a list of nodes in topological order (id = index). Each node is
// one op over up to IR_MAX_SRC operands with a result type. Worked example
// (what `heed compile --emit ir` prints for x @ w + b):
//   input %0 x: f32[B, 64]
//   param %1 w: f32[64, 32] = normal(0, 0.02)
//   param %2 b: f32[32] = zeros
//   %3: f32[B, 32] = matmul %0, %1
//   %4: f32[B, 32] = add %3, %2
//   output out = %4
typedef enum {
#define OP(name, nsrc, flags, attrs) IR_OP_##name,
#include "ir/ops.def"
#undef OP
  IR_OP_COUNT
} IrOp;

enum { IR_MAX_SRC = 8 };

// What kind of op it is (ops.def's FLAGS), for passes that ask by kind
// rather than by name (the schedule's fusion, the memory plan).
typedef enum {
  IR_OPF_ELEMENTWISE = 1,  // result element i from the operands' element i (broadcast), nothing else
  IR_OPF_REDUCTION = 2,    // sums or extremes over axes: SUM, MEAN, MAX, MIN, SUM_TO
  IR_OPF_INPLACE = 4,      // the result may overwrite an operand of its own type and shape
} IrOpFlag;

typedef struct {
  int nsrc;           // -1: variadic
  unsigned flags;     // IrOpFlag bits
  const char *attrs;  // printed attribute names, comma-separated
} IrOpInfo;
extern const IrOpInfo ir_op_info[IR_OP_COUNT];
static inline bool ir_op_is(IrOp op, unsigned flags) { return op < IR_OP_COUNT && (ir_op_info[op].flags & flags); }
const char *ir_op_name(IrOp op);        // "matmul"
int ir_op_from_name(const char *s);      // -1 if none

typedef struct {      // op parameters; each op uses the ones ops.def names
  int64_t axis, start;     // SOFTMAX, SLICE, CONCAT
  uint32_t axes;           // reductions: bit i set = reduce axis i
  bool keepdim, causal, interleaved, inverse;
  double value;            // CONST fill, DROPOUT p
  double eps, scale, base;
  int64_t heads, kv_heads, ignore;
  int perm[IR_MAX_RANK];   // PERMUTE: result axis i is source axis perm[i]
  int fn;                  // UNARY_GRAD: the forward op (IrOp); MAXIMUM_GRAD: IR_OP_MAXIMUM or MINIMUM
} IrAttr;

typedef struct {      // PARAM initializer (from the model's INIT)
  const char *kind;   // "zeros" "ones" "constant" "normal" "uniform"
  double a, b;        // constant(a); normal(mean a, std b); uniform(a, b)
} IrInit;

enum { IR_FLAG_INPUT = 1, IR_FLAG_PARAM = 2, IR_FLAG_BUFFER = 4, IR_FLAG_OUTPUT = 8, IR_FLAG_GRAD = 16 };

typedef struct IrNode IrNode;
struct IrNode {
  IrOp op;
  IrType ty;
  uint32_t id;               // index in g->nodes (topological)
  IrNode *src[IR_MAX_SRC];
  int nsrc;
  IrAttr attr;
  IrInit init;               // PARAM only
  uint32_t flags;
  const char *name;          // INPUT/PARAM: the full name; else NULL
  SrcLoc loc;
};

typedef struct {
  const char *name;          // what the graph computes ("GPT2.forward")
  Arena *a;
  Diag *diag;
  IrSymTab syms;             // symbolic sizes
  Vec(IrNode *) nodes;
  Vec(IrNode *) inputs, params, outputs;
  Vec(const char *) output_names;
} IrGraph;

// Nodes live in a. Builders record a diagnostic at loc and return NULL on a
// type mismatch (they never assert on user-reachable input).
IrGraph *ir_graph_new(Arena *a, Diag *d, const char *name);
IrNode *ir_input(IrGraph *g, const char *name, const IrType *ty, SrcLoc loc);
IrNode *ir_param(IrGraph *g, const char *name, const IrType *ty, IrInit init, bool buffer, SrcLoc loc);
IrNode *ir_const(IrGraph *g, double value, IrDType dt, SrcLoc loc);   // rank 0
// The general builder: infers the result type (ty: the target type for
// RESHAPE, EXPAND, SUM_TO, CAST, SLICE, GATHER_GRAD, SLICE_GRAD; else NULL).
IrNode *ir_op(IrGraph *g, IrOp op, IrNode *const *src, int nsrc, const IrAttr *attr, const IrType *ty,
              SrcLoc loc);
IrNode *ir_unary(IrGraph *g, IrOp op, IrNode *x, SrcLoc loc);
IrNode *ir_binary(IrGraph *g, IrOp op, IrNode *a, IrNode *b, SrcLoc loc);
bool ir_output(IrGraph *g, const char *name, IrNode *n);
// Result type of op on src; false (with a diagnostic at loc) on mismatch.
bool ir_infer(IrGraph *g, IrOp op, IrNode *const *src, int nsrc, const IrAttr *attr, const IrType *hint,
              IrType *out, SrcLoc loc);
bool ir_broadcast_type(const IrType *a, const IrType *b, IrType *out);
int64_t ir_type_numel(const IrType *t, const int64_t *symvals);  // -1 on overflow
int64_t ir_dim_value(IrDim d, const int64_t *symvals);

// ---- verify.c ----
// Checks the graph's invariants (topological order, arity, types equal to
// what ir_infer gives, flags). Returns false and records a diagnostic naming
// the first bad node. A failure after a pass is an internal error.
bool ir_verify(IrGraph *g);

// ---- print.c ----
void ir_print(const IrGraph *g, FILE *out);         // the text form
void ir_print_dot(const IrGraph *g, FILE *out);     // Graphviz
// Reads the text form back (tests, pass debugging): diagnostics at the
// line and column of the text (file registered in d).
IrGraph *ir_parse(Arena *a, Diag *d, uint32_t file);

// ---- interp.c: the reference interpreter (the definition of what a graph means) ----
// Every value is held as double, whatever its dtype; after each node the
// result is rounded to the node's dtype (f32, f16, bf16 rounding; integer
// wrap-around; bool 0/1) unless `exact` is set, which keeps f64 throughout
// (finite-difference gradient checks). Tensors are row-major.
enum { IR_MAX_SYMS = 64 };
typedef struct {
  const IrGraph *g;
  int64_t symvals[IR_MAX_SYMS];  // the value of each symbolic size
  double **val;                  // per node id: its values (numel of them)
  int64_t *numel;                // per node id
  bool exact;
} IrValues;

// Concrete dims of t under symvals; false if a size is unbound or overflows.
bool ir_shape(const IrType *t, const int64_t *symvals, int64_t dims[IR_MAX_RANK]);
// Binds symbolic sizes from the actual input shapes (shapes[i], ranks[i] for
// g->inputs[i]); reports a mismatch naming the input and axis.
bool ir_bind_syms(const IrGraph *g, const int64_t *const *shapes, const int *ranks, int64_t *symvals, Diag *d);
// What the bound sizes must satisfy before the graph runs: a gather of
// positions(x) from a table of `rows` rows (wpe[positions(tokens)]) needs
// the sequence length `len` <= rows. The interpreter and compiled programs
// check them before running, so both report T > ctx with one message.
typedef struct {
  IrDim len;     // the length of the positions (T)
  int64_t rows;  // the rows of the table
  SrcLoc loc;    // the gather's
} IrSizeLimit;
// g's limits into a new array (*out, NULL when *n is 0); false when out of memory.
bool ir_size_limits(const IrGraph *g, IrSizeLimit **out, int *n);
// false, with "the sequence length T = .. exceeds the .. rows of the position
// table" at the gather, when a limit does not hold under symvals.
bool ir_check_size_limits(const IrSizeLimit *l, int n, const int64_t *symvals, Diag *d);
// Both at once, for a graph at hand (ir_interp calls it first).
bool ir_check_sizes(const IrGraph *g, const int64_t *symvals, Diag *d);
// Evaluates the graph. inputs[i], params[i]: values of g->inputs[i] and
// g->params[i]. ir_check_sizes first; run-time errors (an index outside a
// table) are diagnostics naming the op's source location; NULL then. Caller
// frees with ir_values_free.
IrValues *ir_interp(const IrGraph *g, const int64_t *symvals, double *const *inputs, double *const *params,
                    bool exact, Diag *d);
void ir_values_free(IrValues *v);
double ir_round_to(IrDType dt, double v);  // the value as dtype dt holds it

// Kernels: compute node n from its operands' values into out (numel of n).
// kernels.c: forward ops; kernels_grad.c: the gradient ops autodiff emits.
typedef struct {
  const IrNode *n;
  const double *in[IR_MAX_SRC];
  int64_t in_dims[IR_MAX_SRC][IR_MAX_RANK];  // concrete operand shapes
  int64_t dims[IR_MAX_RANK];                 // concrete result shape
  int64_t numel;
  double *out;
  Diag *d;
} IrKernelArgs;
bool ir_kernel_forward(IrKernelArgs *k);   // false: error reported
bool ir_kernel_grad(IrKernelArgs *k);

#endif
