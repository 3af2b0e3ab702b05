// frontend/fe_internal.h: the private bridge between lexer.l and parser.y
// (the token location type and the lexer's state). Not for other modules:
// everything public of the frontend is in fe.h.
#ifndef HEED_FE_INTERNAL_H
#define HEED_FE_INTERNAL_H

#include "frontend/fe.h"

typedef struct FeLoc {     // bison's location type
  int first_line, first_column, last_line, last_column;
  uint32_t file;
} FeLoc;
#define FE_YYLTYPE FeLoc
#define FE_YYLTYPE_IS_DECLARED 1
#define FE_YYLTYPE_IS_TRIVIAL 1
// A rule's location spans its symbols and keeps their file (bison's default
// would drop FeLoc.file).
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                                   \
  do {                                                                                \
    if (N) {                                                                          \
      (Cur).first_line = YYRHSLOC(Rhs, 1).first_line;                                 \
      (Cur).first_column = YYRHSLOC(Rhs, 1).first_column;                             \
      (Cur).last_line = YYRHSLOC(Rhs, N).last_line;                                   \
      (Cur).last_column = YYRHSLOC(Rhs, N).last_column;                               \
      (Cur).file = YYRHSLOC(Rhs, 1).file;                                             \
    } else {                                                                          \
      (Cur).first_line = (Cur).last_line = YYRHSLOC(Rhs, 0).last_line;                \
      (Cur).first_column = (Cur).last_column = YYRHSLOC(Rhs, 0).last_column;          \
      (Cur).file = YYRHSLOC(Rhs, 0).file;                                             \
    }                                                                                 \
  } while (0)

struct FeLexState {
  Arena *arena;
  Diag *diag;
  uint32_t file;
  int line, col;           // position of the next byte
  bool saw_newline;        // since the previous token
  FeLoc comment_loc;
  bool stop;               // a fatal input problem: end the token stream
  int nerr;                // lexical errors
};

// Lists built by the parser actions.
typedef Vec(FeExpr *) FeExprVec;
typedef Vec(FeArg) FeArgVec;
typedef Vec(FeIndexItem) FeIndexVec;
typedef Vec(FeParam) FeParamVec;
typedef Vec(FeTypeExpr *) FeTypeVec;
typedef Vec(FeStmt *) FeStmtVec;
typedef Vec(FeItem *) FeItemVec;
typedef Vec(FeDecl *) FeDeclVec;
typedef Vec(const char *) FeNameVec;
typedef Vec(SrcLoc) FeLocVec;
typedef struct { FeParamVec params; FeExprVec defaults; } FeBargs;
typedef struct { FeTypeVec rets; FeStmtVec body; FeExprVec ret_expr; } FeFuncTail;


static inline SrcLoc fe_srcloc(FeLoc l) {
  return (SrcLoc){.file = l.file, .line = (uint32_t)l.first_line, .col = (uint32_t)l.first_column};
}

void fe_lex_advance(struct FeLexState *s, FeLoc *loc, const char *text, size_t n);
void fe_lex_error(struct FeLexState *s, FeLoc loc, const char *fmt, ...) HEED_PRINTF(3, 4);
void fe_lex_bad_char(struct FeLexState *s, FeLoc loc, unsigned char c);
const char *fe_lex_ident(struct FeLexState *s, FeLoc loc, const char *text, size_t n);
int64_t fe_lex_int(struct FeLexState *s, FeLoc loc, const char *text);
double fe_lex_float(struct FeLexState *s, FeLoc loc, const char *text);
const char *fe_lex_string(struct FeLexState *s, const char *text, size_t n);
_Noreturn void fe_lex_fatal(const char *msg);


// ---- the checker's private types (check.c, value.c, builtins.c) ----

typedef enum {
  FV_ERR,      // an error was already reported: propagate silently
  FV_NONE,
  FV_INT,
  FV_FLOAT,
  FV_BOOL,
  FV_STR,
  FV_DTYPE,
  FV_TENSOR,
  FV_TUPLE,    // several results, or (a, b)
  FV_LIST,     // [a, b]
  FV_INST,     // a block instance (callable)
  FV_BLOCK,    // a block declaration (not callable in forward)
  FV_BUILTIN,  // a builtin function name used as a value
} FeValKind;

typedef struct FeVal {
  FeValKind k;
  int64_t i;              // INT, BOOL, DTYPE (the IrDType), BUILTIN (table index)
  double f;               // FLOAT
  const char *s;          // STR; FLOAT from an inexact int division: its text
  IrType ty;              // TENSOR
  struct FeVal *elems;    // TUPLE, LIST
  int n;
  FeInst *inst;           // INST
  const FeDecl *block;    // BLOCK
  SrcLoc loc;             // where the value was computed, for notes
  const FeParamDecl *param; // a block's parameter or buffer (TENSOR)
  IrNode *node;           // lowering: the IR node computing this TENSOR
} FeVal;

// A scope frame: names bound to values, searched innermost first.
typedef struct FeEnv {
  struct FeEnv *parent;
  Vec(const char *) names;
  Vec(FeVal) vals;
  Vec(SrcLoc) locs;
  int kind;               // FE_ENV_*
  int *hash;              // open addressing: index + 1 of a name, 0 empty
  int hcap;               // a power of two, at least twice the names (0: no table yet)
} FeEnv;
enum { FE_ENV_CONFIG, FE_ENV_ARGS, FE_ENV_MEMBERS, FE_ENV_LOCALS };

// lowering: the graph's parameters by full name (open addressing, a power
// of two at least twice the count), so looking one up is O(1).
typedef struct {
  struct FeParamSlot { IrNode *node; uint32_t hash; } *slot;
  uint32_t cap, n;
} FeParamMap;

typedef struct FeCk {
  Arena *a;
  Diag *d;
  const FeAst *ast;
  FeCheckOpts *opts;
  IrSymTab *syms;
  FeEnv *config;
  FeEnv *blocks;                      // block and model declarations by name
  int ninst;                          // elaborated instances, bounded
  const FeDecl *stack[FE_MAX_BLOCK_DEPTH];
  SrcLoc stack_loc[FE_MAX_BLOCK_DEPTH];
  int nstack;
  char fn_label[96];                  // the forward being checked, for messages
  IrGraph *g;                         // lowering: the graph being built (NULL: checking)
  char prefix[1024];                  // lowering: the instance path ("h.3.attn")
  size_t plen;
  FeParamMap pmap;                    // lowering: ck->g's parameters by name
} FeCk;

struct FeMemo {                       // an instance's forward results per argument types
  struct FeMemo *next;
  FeVal *args;
  int nargs;
  FeVal result;
};

// value.c
FeVal fe_val_err(void);
FeVal fe_val_int(int64_t v, SrcLoc loc);
FeVal fe_val_float(double v, SrcLoc loc);
FeVal fe_val_bool(bool v, SrcLoc loc);
FeVal fe_val_tensor(const IrType *t, SrcLoc loc);
bool fe_val_is_const(const FeVal *v);          // INT, FLOAT or BOOL
bool fe_val_is_num(const FeVal *v);            // INT or FLOAT
double fe_val_num(const FeVal *v);
const char *fe_val_kind_name(const FeVal *v);  // "an integer", "a tensor f32[B, T]"...
const char *fe_val_describe(FeCk *ck, const FeVal *v);
bool fe_val_same(const FeVal *a, const FeVal *b);   // for memoization
const char *fe_type_str(FeCk *ck, const IrType *t); // "f32[B, T, 768]"
const char *fe_shape_str(FeCk *ck, const IrType *t);
const char *fe_dim_str(FeCk *ck, IrDim d);
FeVal fe_const_binop(FeCk *ck, int op, const FeVal *l, const FeVal *r, SrcLoc loc);
FeVal fe_tensor_binop(FeCk *ck, int op, const FeVal *l, const FeVal *r, SrcLoc loc);
FeVal fe_matmul(FeCk *ck, const FeVal *l, const FeVal *r, SrcLoc loc);
FeVal with_node(FeCk *ck, FeVal v, IrNode *n);  // lowering: attach n (NULL: error)
bool fe_broadcast(FeCk *ck, const char *what, const IrType *a, const IrType *b, IrType *out,
                  SrcLoc loc, SrcLoc bloc);
bool fe_check_axis(FeCk *ck, int64_t axis, int rank, SrcLoc loc, const char *what, int *out);
// Suggests the closest of cands to name: appends "; did you mean 'x'?" to buf.
const char *fe_suggest(FeCk *ck, const char *name, const char *const *cands, int n);

// lower.c: building IR while evaluating (ck->g set); each returns the node or NULL
IrNode *fe_lower_const(FeCk *ck, const FeVal *v, IrDType dt, SrcLoc loc);  // a tensor's node or a number
IrNode *fe_lower_param(FeCk *ck, const FeParamDecl *p, SrcLoc loc);
IrNode *fe_lower_binop(FeCk *ck, int op, const FeVal *l, const FeVal *r, const IrType *ty, SrcLoc loc);
IrNode *fe_lower_reshape(FeCk *ck, IrNode *x, const IrType *ty, SrcLoc loc);
IrNode *fe_lower_slice(FeCk *ck, IrNode *x, int axis, int64_t start, IrDim len, SrcLoc loc);
void fe_lower_model(FeCk *ck, FeModel *m);

// check.c (used by builtins.c, lower.c and train.c)
FeOverride *fe_find_override(FeCk *ck, const char *key);
bool fe_parse_override(FeCk *ck, FeOverride *o, const FeVal *want, FeVal *out);
bool fe_is_config_name(FeCk *ck, const char *name, SrcLoc *where);
bool fe_bind_typed_params(FeCk *ck, FeEnv *env, const FeItem *fn, IrType **types, const char ***names);

// train.c
enum { FE_NTRAIN_SETTINGS = 8 };
extern const char *const fe_train_settings[FE_NTRAIN_SETTINGS];
FeTrain *fe_check_train(FeCk *ck, const FeDecl *td, FeModel *m);
FeVal fe_run_body(FeCk *ck, FeEnv *env, const FeItem *fn, FeEnv *members);
FeEnv *fe_env_new(FeCk *ck, FeEnv *parent, int kind);
void fe_env_bind(FeCk *ck, FeEnv *env, const char *name, FeVal v, SrcLoc loc);
FeVal fe_eval(FeCk *ck, FeEnv *env, const FeExpr *e);
bool fe_eval_dim(FeCk *ck, FeEnv *env, const FeExpr *e, bool allow_sym, bool allow_neg1, IrDim *out);
bool fe_env_lookup(FeEnv *env, const char *name, FeVal *out, SrcLoc *loc);

// builtins.c
typedef struct {
  const char *name;
  SrcLoc loc;
  FeEnv *env;
  const FeExpr *call;
} FeCallSite;
int fe_builtin_find(const char *name);          // -1 if none
FeVal fe_builtin_call(FeCk *ck, int idx, FeEnv *env, const FeExpr *call);
extern const char *const fe_builtin_names[];
extern const int fe_builtin_count;

#endif
