// frontend/fe.h: the language frontend. Data flow:
//   .heed text --lexer.l--> tokens --parser.y--> FeAst --check.c--> FeModel
// The checker resolves names, evaluates compile-time expressions, instantiates
// blocks (hierarchical parameter names) and infers the dtype and shape of
// every tensor expression, reporting located diagnostics into a Diag. A later
// stage (fe_lower, the IR issue) turns a checked FeModel into an IrGraph.
//
// Everything here is allocated from the Arena given to fe_parse/fe_check.
#ifndef HEED_FE_H
#define HEED_FE_H

#include "ir/ir.h"

// Limits that keep any input from exhausting the stack or memory.
enum {
  FE_MAX_IDENT = 256,        // identifier length
  FE_MAX_EXPR_DEPTH = 200,   // nesting of one expression (checked at parse time)
  FE_MAX_BLOCK_DEPTH = 64,   // nesting of block instances
  FE_MAX_INSTANCES = 100000, // elaborated block instances per model
  FE_MAX_REPEAT = 1000000,   // repeat(N)
  // A model with its repeats expanded (nested repeats multiply): block
  // instances, parameters and buffers, and their elements in all.
  FE_MAX_TOTAL_INSTANCES = 1000000,
  FE_MAX_TOTAL_TENSORS = 10000000,
};
#define FE_MAX_TOTAL_ELEMS ((int64_t)1 << 40)

// ---- ast.c ----
typedef struct FeExpr FeExpr;

typedef enum {
  FE_EX_ERROR,  // a syntax error was recovered here
  FE_EX_INT,
  FE_EX_FLOAT,
  FE_EX_BOOL,
  FE_EX_STR,
  FE_EX_NAME,
  FE_EX_BIN,    // op: '+', '-', '*', '/', '@'
  FE_EX_NEG,
  FE_EX_CALL,   // callee name, args
  FE_EX_INDEX,  // lhs[items]
  FE_EX_LIST,   // [a, b]
  FE_EX_TUPLE,  // (a, b)
} FeExprKind;

typedef struct {
  const char *kw;       // keyword name or NULL for positional
  SrcLoc kwloc;
  FeExpr *e;
} FeArg;

typedef struct {        // one subscript: an expression or a slice lo:hi
  bool is_slice;
  FeExpr *e, *lo, *hi;  // lo, hi may be NULL
  SrcLoc loc;
} FeIndexItem;

struct FeExpr {
  FeExprKind kind;
  SrcLoc loc;
  int depth;            // nesting depth, bounded by FE_MAX_EXPR_DEPTH
  int op;
  int64_t ival;
  double fval;
  const char *name;     // NAME, CALL callee, STR text
  FeExpr *lhs, *rhs;    // BIN, NEG(lhs), INDEX(lhs)
  FeArg *args;          // CALL args, LIST/TUPLE elements (kw NULL)
  int nargs;
  FeIndexItem *idx;     // INDEX
  int nidx;
};

typedef struct {        // f32[B, T, 768]
  SrcLoc loc;
  const char *dtype;
  SrcLoc dtloc;
  FeExpr **dims;
  int ndims;
  bool has_dims;        // "f32" alone is a scalar, "f32[]" too
} FeTypeExpr;

typedef struct {        // forward(x: f32[B, T])
  const char *name;
  SrcLoc loc;
  FeTypeExpr *type;     // NULL: inferred
} FeParam;

typedef enum { FE_ST_ASSIGN, FE_ST_RETURN } FeStmtKind;
typedef struct {
  FeStmtKind kind;
  SrcLoc loc;
  const char **names;   // ASSIGN targets
  SrcLoc *name_locs;
  int nnames;
  FeExpr **exprs;       // ASSIGN: one expr; RETURN: one or more
  int nexprs;
} FeStmt;

typedef enum {
  FE_IT_BIND,     // NAME = EXPR (config value, instance, train setting)
  FE_IT_REPEAT,   // NAME = repeat(N) BLOCK [(ARGS)]
  FE_IT_PARAM,    // param NAME: TYPE = INIT
  FE_IT_BUFFER,   // buffer NAME: TYPE = INIT
  FE_IT_FUNC,     // forward(PARAMS) ... or loss(PARAMS) ...
} FeItemKind;

typedef struct FeItem {
  FeItemKind kind;
  SrcLoc loc;
  const char *name;       // FUNC: "forward" or the identifier
  SrcLoc name_loc;
  FeExpr *expr;           // BIND value, PARAM/BUFFER init, REPEAT count
  FeTypeExpr *type;       // PARAM/BUFFER
  const char *block;      // REPEAT block name
  SrcLoc block_loc;
  FeArg *args;            // REPEAT block args
  int nargs;
  bool has_args;
  FeParam *params;        // FUNC
  int nparams;
  FeTypeExpr **rets;      // FUNC declared result types
  int nrets;
  FeStmt **body;          // FUNC statements; "= EXPR" becomes one return
  int nbody;
} FeItem;

typedef enum { FE_DECL_CONFIG, FE_DECL_BLOCK, FE_DECL_MODEL, FE_DECL_TRAIN } FeDeclKind;
typedef struct {
  FeDeclKind kind;
  SrcLoc loc;
  const char *name;       // NULL for config
  SrcLoc name_loc;
  FeParam *args;          // block arguments (type NULL) ...
  FeExpr **defaults;      // ... and their default values (NULL: required)
  int nargs;
  bool has_args;
  FeItem **items;
  int nitems;
} FeDecl;

typedef struct {
  const char *path;
  uint32_t file;
  FeDecl **decls;
  int ndecls;
  int nsyntax_errors;
} FeAst;

// Parses text (which may contain NUL bytes) registered as file in d.
// Always returns an AST (possibly partial); check d->nerr.
FeAst *fe_parse(Arena *a, Diag *d, uint32_t file);
// Writes the AST as an indented S-expression listing with locations.
void fe_ast_print(const FeAst *ast, FILE *out);
// Helpers used by the parser actions.
FeExpr *fe_expr_new(Arena *a, FeExprKind k, SrcLoc loc);
int fe_expr_depth_of(const FeExpr *e);

// ---- check.c ----
typedef struct FeInst FeInst;
typedef struct FeModel FeModel;

typedef struct {           // an initializer: zeros, ones, constant, normal, uniform
  const char *kind;
  double a, b;             // constant(a); normal(mean a, std b); uniform(lo a, hi b)
} FeInit;

typedef struct {           // one parameter or buffer of an instance
  const char *name;        // local name ("weight")
  bool is_buffer;
  IrType type;             // constant dims only
  FeInit init;
  SrcLoc loc;
} FeParamDecl;

struct FeInst {            // an elaborated block instance
  const char *name;        // local name ("attn"), "" for the root
  const FeDecl *block;
  FeParamDecl *params;
  int nparams;
  FeInst **children;       // sub-instances in declaration order
  int nchildren;
  int cap_params, cap_children;
  int repeat;              // > 0: a repeat group; children[0] is the template
  struct FeVal *args;      // block argument values
  struct FeMemo *memo;     // forward results by argument types
  struct FeEnv *env;       // the checker's scope for its forward
  int64_t ninst_below;     // with repeats expanded: instances below this one,
  int64_t ntensors, nelems; // parameters and buffers here and below (limits)
};

typedef struct {            // the train section, evaluated
  const FeDecl *decl;
  const char *optimizer;   // "adamw" or "sgd"
  double lr, beta1, beta2, eps, weight_decay, momentum;
  const char *schedule;    // "constant", "cosine", "linear"
  double warmup, min_lr;
  double clip;             // 0: off
  int64_t batch, seq, steps, eval_every, seed;
  IrType *loss_inputs;
  const char **loss_input_names;
  int nloss_inputs;
  const struct FeItem *loss_fn; // the loss(...) item
} FeTrain;

struct FeModel {
  const FeDecl *decl;
  FeInst *root;
  IrSymTab syms;            // symbolic sizes (B, T, ...)
  IrType *inputs;           // forward parameter types
  const char **input_names;
  int ninputs;
  IrType *outputs;          // forward result types
  int noutputs;
  int64_t nparam_tensors, nparam_elems;  // trainable parameters (repeats counted)
  FeTrain *train;           // NULL if the file has no train section for it
  IrGraph *forward;         // with FeCheckOpts.lower: the forward as IR
  IrGraph *loss;            // ... and the train loss as IR (NULL without train)
};

typedef struct {            // --set KEY=VALUE
  const char *key, *value;
  bool used;
} FeOverride;

typedef struct {
  const char *model_name;   // NULL: the only or last model
  FeOverride *overrides;
  int noverrides;
  bool lower;               // also build FeModel.forward and .loss
} FeCheckOpts;

// Checks the whole file and elaborates the chosen model. Returns NULL when
// there is no model or on errors (then d->nerr > 0).
FeModel *fe_check(Arena *a, Diag *d, const FeAst *ast, FeCheckOpts *opts);
// Calls fn for every parameter (and buffer) with its full dotted name.
typedef void (*FeParamFn)(void *ud, const char *full_name, const FeParamDecl *p);
void fe_model_each_param(const FeModel *m, FeParamFn fn, void *ud);

#endif
