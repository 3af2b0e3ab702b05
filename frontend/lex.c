// frontend/lex.c: the C side of the tokenizer (lexer.l): positions, literal
// conversion with range checks, identifier limits and lexical diagnostics.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_internal.h"

void fe_lex_advance(struct FeLexState *s, FeLoc *loc, const char *text, size_t n) {
  loc->file = s->file;
  loc->first_line = s->line;
  loc->first_column = s->col;
  for (size_t i = 0; i < n; i++) {
    if (text[i] == '\n') {
      s->line++;
      s->col = 1;
    } else {
      s->col++;  // columns count bytes, as clang's do
    }
  }
  loc->last_line = s->line;
  loc->last_column = s->col;
}

void fe_lex_error(struct FeLexState *s, FeLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(s->diag, fe_srcloc(loc), "error", fmt, ap);
  va_end(ap);
  s->nerr++;
}

void fe_lex_bad_char(struct FeLexState *s, FeLoc loc, unsigned char c) {
  if (c >= 0x21 && c < 0x7f) {
    const char *hint = "";
    if (c == '#') hint = "; comments start with '//'";
    else if (c == '\'') hint = "; strings use double quotes";
    else if (c == '%' || c == '^' || c == '&' || c == '|' || c == '!' || c == '<' || c == '>' || c == '~')
      hint = "; operators are + - * / @";
    fe_lex_error(s, loc, "unexpected character '%c'%s", c, hint);
  } else {
    fe_lex_error(s, loc, "unexpected control character (byte 0x%02x)", c);
  }
}

const char *fe_lex_ident(struct FeLexState *s, FeLoc loc, const char *text, size_t n) {
  if (n > FE_MAX_IDENT) {
    fe_lex_error(s, loc, "identifier too long (%zu characters; the limit is %d)", n, FE_MAX_IDENT);
    n = FE_MAX_IDENT;
  }
  const char *r = arena_strndup(s->arena, text, n);
  return r ? r : "?";
}

int64_t fe_lex_int(struct FeLexState *s, FeLoc loc, const char *text) {
  errno = 0;
  char *end;
  long long v = strtoll(text, &end, 10);
  if (errno == ERANGE) {
    fe_lex_error(s, loc, "integer literal '%.40s' is too large (the limit is %lld)", text,
                 (long long)INT64_MAX);
    return 0;
  }
  return v;
}

double fe_lex_float(struct FeLexState *s, FeLoc loc, const char *text) {
  errno = 0;
  double v = strtod(text, NULL);
  if (!isfinite(v) || (errno == ERANGE && v == 0 && strpbrk(text, "123456789"))) {
    fe_lex_error(s, loc, "float literal '%.40s' is out of range", text);
    return 0;
  }
  return v;
}

// Drops the quotes; keeps escapes as written except \" and \\.
const char *fe_lex_string(struct FeLexState *s, const char *text, size_t n) {
  char *r = arena_alloc(s->arena, n);
  if (!r) return "";
  size_t k = 0;
  for (size_t i = 1; i + 1 < n; i++) {
    if (text[i] == '\\' && i + 2 < n && (text[i + 1] == '"' || text[i + 1] == '\\')) i++;
    r[k++] = text[i];
  }
  r[k] = 0;
  return r;
}

void fe_lex_fatal(const char *msg) {
  fprintf(stderr, "heed: fatal: lexer: %s\n", msg);
  abort();
}
