/* frontend/parser.y: the grammar (bison, pure, with locations). Second stage
 * of the data flow: tokens from lexer.l -> FeAst (ast.c constructors).
 * Statements end at a newline: fe_lex inserts an NL token where a line ends
 * after a token that can end a statement and the next line starts with a
 * name or keyword, outside ( ) and [ ]. Syntax errors are reported with the
 * unexpected token and what was expected, and parsing resumes at the next
 * line (bison `error NL`), so one run reports several. */
%define api.pure full
%define api.prefix {fe_yy}
%define parse.error custom
%define parse.lac full
%locations
%param {FeParser *p}

%code requires {
#include "frontend/fe_internal.h"
typedef struct FeParser FeParser;
}

%union {
  int64_t i;
  double f;
  const char *s;
  FeExpr *e;
  FeArg arg;
  FeIndexItem sub;
  FeExprVec ev;
  FeArgVec av;
  FeIndexVec iv;
  FeParam par;
  FeParamVec pv;
  FeTypeExpr *ty;
  FeTypeVec tv;
  FeStmt *st;
  FeStmtVec sv;
  FeItem *it;
  FeItemVec itv;
  FeDecl *d;
  FeBargs ba;
  FeFuncTail ft;
  FeNameVec nv;
}

%code provides {
struct FeParser {
  Arena *arena;
  Diag *diag;
  void *scanner;
  struct FeLexState lex;
  FeAst *ast;
  FeDeclVec decls;
  FeExpr oom_expr;         // what an action gets when an allocation fails
  FeItem oom_item;
  int last_tok;            // previous token returned, for newline insertion
  FeLoc last_loc;
  int depth;               // open ( and [
  FeLoc open_at[256];      // where each open bracket is (the innermost last)
  char open_ch[256];
  int depth_at_brace;      // depth just before the last { or } reset it
  bool has_pending;        // a token held back behind an inserted NL
  int pend_tok;
  FE_YYSTYPE pend_val;
  FeLoc pend_loc;
  bool quiet;              // the token stream was cut: no more syntax errors
  int nsyntax;
  FeLocVec name_locs;      // scratch for assignment targets
};
int fe_yylex(FE_YYSTYPE *lval, FeLoc *lloc, FeParser *p);
void fe_yyerror(FeLoc *lloc, FeParser *p, const char *msg);
}

%code {
#include <string.h>
#define A (p->arena)
#define LOC(l) fe_srcloc(l)
// Appends to a parser list; on OOM the element is dropped (an OOM shows as a
// diagnostic from fe_parse).
#define PUSH(v, x) ((void)vec_push(A, &(v), (x)))
static FeExpr *mk_bin(FeParser *p, int op, FeExpr *l, FeExpr *r, FeLoc loc);
static FeExpr *mk_unary(FeParser *p, FeExpr *x, FeLoc loc);
static FeExpr *mk_leaf(FeParser *p, FeExprKind k, FeLoc loc);
static FeExpr *mk_call(FeParser *p, const char *name, FeLoc loc, FeArgVec args);
static FeExpr *mk_index(FeParser *p, FeExpr *x, FeIndexVec subs, FeLoc loc);
static FeExpr *mk_list(FeParser *p, FeExprKind k, FeExprVec xs, FeLoc loc);
static FeItem *mk_item(FeParser *p, FeItemKind k, FeLoc loc);
static FeDecl *mk_decl(FeParser *p, FeDeclKind k, FeLoc loc, const char *name, FeLoc nloc,
                       FeBargs *ba, bool has_args, FeItemVec items);
static FeTypeExpr *mk_type(FeParser *p, const char *dt, FeLoc loc, FeExprVec dims, bool has_dims);
static FeItem *mk_func(FeParser *p, const char *name, FeLoc loc, FeParamVec ps, FeFuncTail t);
}

%token CONFIG "'config'" BLOCK "'block'" MODEL "'model'" PARAM "'param'" BUFFER "'buffer'"
%token FORWARD "'forward'" REPEAT "'repeat'" TRAIN "'train'" RETURN "'return'"
%token TRUE "'true'" FALSE "'false'" ARROW "'->'" NL "end of line" DOT "'.'"
%token <s> IDENT "identifier" STRING "string"
%token <i> INT "integer"
%token <f> FLOAT "number"

%type <e> expr primary
%type <ev> exprs list_elems dims
%type <arg> arg
%type <av> args arg_list opt_args
%type <sub> sub
%type <iv> subs
%type <par> fparam
%type <pv> fparams fparam_list
%type <ty> type
%type <tv> types rets
%type <st> stmt
%type <sv> stmts
%type <it> item
%type <itv> items body
%type <d> decl
%type <ba> bargs opt_bargs
%type <ft> fbody
%type <nv> targets

%left '+' '-'
%left '*' '/' '@'
%precedence UMINUS

%%

/* program = (decl | NL)* */
program
  : %empty
  | program NL
  | program ';'
  | program decl      { PUSH(p->decls, $2); }
  | program error NL
  ;

/* decl = "config" body | ("block" | "model") ident [bargs] body | "train" ident body */
decl
  : CONFIG body                     { FeBargs none = {0};
                                      $$ = mk_decl(p, FE_DECL_CONFIG, @1, NULL, @1, &none, false, $2); }
  | BLOCK IDENT opt_bargs body      { $$ = mk_decl(p, FE_DECL_BLOCK, @1, $2, @2, &$3, @3.first_line != 0, $4); }
  | MODEL IDENT opt_bargs body      { $$ = mk_decl(p, FE_DECL_MODEL, @1, $2, @2, &$3, @3.first_line != 0, $4); }
  | TRAIN IDENT body                { FeBargs none = {0};
                                      $$ = mk_decl(p, FE_DECL_TRAIN, @1, $2, @2, &none, false, $3); }
  ;

opt_bargs
  : %empty                          { memset(&$$, 0, sizeof $$); @$.first_line = 0; }
  | '(' ')'                         { memset(&$$, 0, sizeof $$); }
  | '(' bargs ')'                   { $$ = $2; }
  | '(' bargs ',' ')'               { $$ = $2; }
  ;

bargs
  : IDENT                           { memset(&$$, 0, sizeof $$); FeParam a = {.name = $1, .loc = LOC(@1)};
                                      PUSH($$.params, a); PUSH($$.defaults, NULL); }
  | IDENT '=' expr                  { memset(&$$, 0, sizeof $$); FeParam a = {.name = $1, .loc = LOC(@1)};
                                      PUSH($$.params, a); PUSH($$.defaults, $3); }
  | bargs ',' IDENT                 { $$ = $1; FeParam a = {.name = $3, .loc = LOC(@3)};
                                      PUSH($$.params, a); PUSH($$.defaults, NULL); }
  | bargs ',' IDENT '=' expr        { $$ = $1; FeParam a = {.name = $3, .loc = LOC(@3)};
                                      PUSH($$.params, a); PUSH($$.defaults, $5); }
  ;

body
  : '{' items '}'                   { $$ = $2; }
  ;

items
  : %empty                          { memset(&$$, 0, sizeof $$); }
  | items NL                        { $$ = $1; }
  | items ';'                       { $$ = $1; }
  | items item                      { $$ = $1; if ($2) PUSH($$, $2); }
  | items error NL                  { $$ = $1; }
  ;

/* item = ident "=" expr | ident "=" "repeat" "(" expr ")" ident [args]
        | ("param" | "buffer") ident ":" type "=" expr
        | ("forward" | ident) "(" fparams ")" ["->" types] fbody */
item
  : IDENT '=' expr                  { $$ = mk_item(p, FE_IT_BIND, @1); $$->name = $1;
                                      $$->name_loc = LOC(@1); $$->expr = $3; }
  | IDENT '=' REPEAT '(' expr ')' IDENT opt_args
                                    { $$ = mk_item(p, FE_IT_REPEAT, @1); $$->name = $1; $$->name_loc = LOC(@1);
                                      $$->expr = $5; $$->block = $7; $$->block_loc = LOC(@7);
                                      $$->args = $8.data; $$->nargs = $8.len; $$->has_args = @8.first_line != 0; }
  | PARAM IDENT ':' type '=' expr   { $$ = mk_item(p, FE_IT_PARAM, @1); $$->name = $2; $$->name_loc = LOC(@2);
                                      $$->type = $4; $$->expr = $6; }
  | BUFFER IDENT ':' type '=' expr  { $$ = mk_item(p, FE_IT_BUFFER, @1); $$->name = $2; $$->name_loc = LOC(@2);
                                      $$->type = $4; $$->expr = $6; }
  | FORWARD '(' fparams ')' fbody   { $$ = mk_func(p, "forward", @1, $3, $5); }
  | IDENT '(' fparams ')' fbody     { $$ = mk_func(p, $1, @1, $3, $5); }
  ;

opt_args
  : %empty                          { memset(&$$, 0, sizeof $$); @$.first_line = 0; }
  | '(' args ')'                    { $$ = $2; }
  ;

fparams
  : %empty                          { memset(&$$, 0, sizeof $$); }
  | fparam_list
  ;

fparam_list
  : fparam                          { memset(&$$, 0, sizeof $$); PUSH($$, $1); }
  | fparam_list ',' fparam          { $$ = $1; PUSH($$, $3); }
  ;

fparam
  : IDENT                           { $$ = (FeParam){.name = $1, .loc = LOC(@1)}; }
  | IDENT ':' type                  { $$ = (FeParam){.name = $1, .loc = LOC(@1), .type = $3}; }
  ;

fbody
  : rets '=' expr                   { memset(&$$, 0, sizeof $$); $$.rets = $1; PUSH($$.ret_expr, $3); }
  | rets '{' stmts '}'              { memset(&$$, 0, sizeof $$); $$.rets = $1; $$.body = $3; }
  ;

rets
  : %empty                          { memset(&$$, 0, sizeof $$); }
  | ARROW types                     { $$ = $2; }
  | ARROW '(' types ')'             { $$ = $3; }
  ;

types
  : type                            { memset(&$$, 0, sizeof $$); PUSH($$, $1); }
  | types ',' type                  { $$ = $1; PUSH($$, $3); }
  ;

/* type = ident ["[" [dims] "]"] */
type
  : IDENT                           { FeExprVec none = {0}; $$ = mk_type(p, $1, @1, none, false); }
  | IDENT '[' ']'                   { FeExprVec none = {0}; $$ = mk_type(p, $1, @1, none, true); }
  | IDENT '[' dims ']'              { $$ = mk_type(p, $1, @1, $3, true); }
  ;

dims
  : expr                            { memset(&$$, 0, sizeof $$); PUSH($$, $1); }
  | dims ',' expr                   { $$ = $1; PUSH($$, $3); }
  ;

stmts
  : %empty                          { memset(&$$, 0, sizeof $$); }
  | stmts NL                        { $$ = $1; }
  | stmts ';'                       { $$ = $1; }
  | stmts stmt                      { $$ = $1; if ($2) PUSH($$, $2); }
  | stmts error NL                  { $$ = $1; }
  ;

/* stmt = ident ("," ident)* "=" expr | "return" expr ("," expr)* */
stmt
  : targets '=' expr                { $$ = arena_alloc(A, sizeof(FeStmt));
                                      if ($$) { $$->kind = FE_ST_ASSIGN; $$->loc = LOC(@1);
                                        $$->names = $1.data; $$->nnames = $1.len;
                                        $$->name_locs = p->name_locs.data; memset(&p->name_locs, 0, sizeof p->name_locs);
                                        $$->exprs = arena_alloc(A, sizeof(FeExpr *));
                                        if ($$->exprs) { $$->exprs[0] = $3; $$->nexprs = 1; } } }
  | RETURN exprs                    { $$ = arena_alloc(A, sizeof(FeStmt));
                                      if ($$) { $$->kind = FE_ST_RETURN; $$->loc = LOC(@1);
                                        $$->exprs = $2.data; $$->nexprs = $2.len; } }
  ;

targets
  : IDENT                           { memset(&$$, 0, sizeof $$); PUSH($$, $1);
                                      memset(&p->name_locs, 0, sizeof p->name_locs); PUSH(p->name_locs, LOC(@1)); }
  | targets ',' IDENT               { $$ = $1; PUSH($$, $3); PUSH(p->name_locs, LOC(@3)); }
  ;

exprs
  : expr                            { memset(&$$, 0, sizeof $$); PUSH($$, $1); }
  | exprs ',' expr                  { $$ = $1; PUSH($$, $3); }
  ;

expr
  : primary
  | expr '+' expr                   { $$ = mk_bin(p, '+', $1, $3, @2); }
  | expr '-' expr                   { $$ = mk_bin(p, '-', $1, $3, @2); }
  | expr '*' expr                   { $$ = mk_bin(p, '*', $1, $3, @2); }
  | expr '/' expr                   { $$ = mk_bin(p, '/', $1, $3, @2); }
  | expr '@' expr                   { $$ = mk_bin(p, '@', $1, $3, @2); }
  | '-' expr %prec UMINUS           { $$ = mk_unary(p, $2, @1); }
  ;

primary
  : INT                             { $$ = mk_leaf(p, FE_EX_INT, @1); if ($$) $$->ival = $1; }
  | FLOAT                           { $$ = mk_leaf(p, FE_EX_FLOAT, @1); if ($$) $$->fval = $1; }
  | STRING                          { $$ = mk_leaf(p, FE_EX_STR, @1); if ($$) $$->name = $1; }
  | TRUE                            { $$ = mk_leaf(p, FE_EX_BOOL, @1); if ($$) $$->ival = 1; }
  | FALSE                           { $$ = mk_leaf(p, FE_EX_BOOL, @1); }
  | IDENT                           { $$ = mk_leaf(p, FE_EX_NAME, @1); if ($$) $$->name = $1; }
  | IDENT '(' args ')'              { $$ = mk_call(p, $1, @1, $3); }
  | primary '[' subs ']'            { $$ = mk_index(p, $1, $3, @2); }
  | '(' expr ')'                    { $$ = $2; }
  | '(' expr ',' ')'                { FeExprVec v = {0}; PUSH(v, $2); $$ = mk_list(p, FE_EX_TUPLE, v, @1); }
  | '(' expr ',' exprs ')'          { FeExprVec v = {0}; PUSH(v, $2);
                                      for (int i = 0; i < $4.len; i++) PUSH(v, $4.data[i]);
                                      $$ = mk_list(p, FE_EX_TUPLE, v, @1); }
  | '[' list_elems ']'              { $$ = mk_list(p, FE_EX_LIST, $2, @1); }
  ;

list_elems
  : %empty                          { memset(&$$, 0, sizeof $$); }
  | exprs                           { $$ = $1; }
  | exprs ','                       { $$ = $1; }
  ;

args
  : %empty                          { memset(&$$, 0, sizeof $$); }
  | arg_list
  | arg_list ','                    { $$ = $1; }
  ;

arg_list
  : arg                             { memset(&$$, 0, sizeof $$); PUSH($$, $1); }
  | arg_list ',' arg                { $$ = $1; PUSH($$, $3); }
  ;

arg
  : expr                            { $$ = (FeArg){.e = $1}; }
  | IDENT '=' expr                  { $$ = (FeArg){.kw = $1, .kwloc = LOC(@1), .e = $3}; }
  ;

subs
  : sub                             { memset(&$$, 0, sizeof $$); PUSH($$, $1); }
  | subs ',' sub                    { $$ = $1; PUSH($$, $3); }
  ;

/* sub = expr | [expr] ":" [expr] */
sub
  : expr                            { $$ = (FeIndexItem){.e = $1, .loc = LOC(@1)}; }
  | ':'                             { $$ = (FeIndexItem){.is_slice = true, .loc = LOC(@1)}; }
  | expr ':'                        { $$ = (FeIndexItem){.is_slice = true, .lo = $1, .loc = LOC(@1)}; }
  | ':' expr                        { $$ = (FeIndexItem){.is_slice = true, .hi = $2, .loc = LOC(@1)}; }
  | expr ':' expr                   { $$ = (FeIndexItem){.is_slice = true, .lo = $1, .hi = $3, .loc = LOC(@1)}; }
  ;

%%
#include "frontend/parser_support.inc"
