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

// Levenshtein distance with early exit past max; for "did you mean".
int diag_edit_distance(const char *a, const char *b, int max);

// ---- types.c ----
typedef enum {
  IR_F32, IR_F16, IR_BF16, IR_I32, IR_I64, IR_I8, IR_U8, IR_BOOL, IR_DT_COUNT
} IrDType;

typedef struct {
  const char *name;  // as written in .heed files
  size_t size;       // bytes per element
  bool is_float, is_int;
} IrDTypeInfo;
extern const IrDTypeInfo ir_dtype_info[IR_DT_COUNT];
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
bool ir_type_eq(const IrType *a, const IrType *b);
// Renders "f32[B, T, 768]" (or "[B, T, 768]" with dtype=false) into buf.
const char *ir_type_str(const IrType *t, const IrSymTab *st, bool dtype, char *buf, size_t n);
const char *ir_dim_str(IrDim d, const IrSymTab *st, char *buf, size_t n);
int ir_symtab_intern(IrSymTab *st, Arena *a, const char *name);  // -1 on OOM/too many

#endif
