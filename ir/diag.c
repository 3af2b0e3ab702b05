// ir/diag.c: diagnostics. Every user error in heed ends here, rendered as
//   model.heed:12:7: error: MESSAGE
//       x = foo(y)
//           ^
// (chibicc's verror_at, but recorded and returned instead of exiting).
// Errors past max_errors are counted but not printed.
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

void diag_init(Diag *d, FILE *out) {
  memset(d, 0, sizeof *d);
  d->out = out;
  d->max_errors = 20;
  d->files = heed_calloc(1, sizeof(DiagFile));
  d->nfiles = d->files ? 1 : 0;
}

void diag_fini(Diag *d) {
  for (int i = 0; i < d->nfiles; i++) {
    heed_free(d->files[i].name);
    heed_free(d->files[i].text);
  }
  heed_free(d->files);
  heed_free(d->log);
  memset(d, 0, sizeof *d);
}

uint32_t diag_add_file(Diag *d, const char *name, const char *text, size_t len) {
  DiagFile *f = heed_realloc(d->files, sizeof(DiagFile) * (size_t)(d->nfiles + 1));
  if (!f) return 0;
  d->files = f;
  DiagFile *nf = &f[d->nfiles];
  nf->name = heed_strdup(name);
  nf->text = heed_malloc(len + 1);
  if (!nf->name || !nf->text) {
    heed_free(nf->name);
    heed_free(nf->text);
    return 0;
  }
  memcpy(nf->text, text, len);
  nf->text[len] = 0;
  nf->len = len;
  return (uint32_t)d->nfiles++;
}

static void emit(Diag *d, const char *s, size_t n) {
  if (d->out) fwrite(s, 1, n, d->out);
  if (d->loglen + n + 1 > d->logcap) {
    size_t cap = (d->logcap + n + 1) * 2;
    char *p = heed_realloc(d->log, cap);
    if (!p) return;
    d->log = p;
    d->logcap = cap;
  }
  memcpy(d->log + d->loglen, s, n);
  d->loglen += n;
  d->log[d->loglen] = 0;
}

static void emitf(Diag *d, const char *fmt, ...) HEED_PRINTF(2, 3);
static void emitf(Diag *d, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  emit(d, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

// Prints the source line of loc and a caret under its column. Long lines are
// shown as a window around the column; control bytes are shown as '?'.
static void show_line(Diag *d, SrcLoc loc) {
  const DiagFile *f = &d->files[loc.file];
  const char *p = f->text, *end = f->text + f->len;
  for (uint32_t l = 1; l < loc.line && p < end; p++)
    if (*p == '\n') l++;
  const char *eol = p;
  while (eol < end && *eol != '\n') eol++;
  size_t len = (size_t)(eol - p), col = loc.col ? loc.col - 1 : 0;
  if (col > len) col = len;
  size_t from = 0, to = len;
  enum { WINDOW = 100 };
  if (col > WINDOW) from = col - WINDOW / 2;
  if (to - from > 2 * WINDOW) to = from + 2 * WINDOW;
  char line[2 * WINDOW + 16], caret[2 * WINDOW + 16];
  size_t n = 0, m = 0;
  if (from > 0) {
    memcpy(line, "...", 3);
    memcpy(caret, "   ", 3);
    n = m = 3;
  }
  for (size_t i = from; i < to; i++) {
    unsigned char c = (unsigned char)p[i];
    bool cont = (c & 0xC0) == 0x80;  // UTF-8 continuation: no column of its own
    line[n++] = (c == '\t' || c >= 0x80 || (c >= 0x20 && c != 0x7f)) ? (char)c : '?';
    if (i < col && !cont) caret[m++] = c == '\t' ? '\t' : ' ';
  }
  caret[m++] = '^';
  emitf(d, "  %.*s\n  %.*s\n", (int)n, line, (int)m, caret);
}

// FNV-1a over the location and the message text.
static uint64_t diag_hash(SrcLoc loc, const char *msg) {
  uint64_t h = 1469598103934665603ull ^ ((uint64_t)loc.file << 40 ^ (uint64_t)loc.line << 20 ^ loc.col);
  for (; *msg; msg++) h = (h ^ (unsigned char)*msg) * 1099511628211ull;
  return h;
}

// An error already reported at the same place with the same text (a block
// instantiated several times) is dropped, with its notes.
static bool seen_before(Diag *d, SrcLoc loc, const char *msg) {
  uint64_t h = diag_hash(loc, msg);
  for (int i = 0; i < d->nseen; i++)
    if (d->seen[i] == h) return true;
  if (d->nseen < (int)(sizeof d->seen / sizeof d->seen[0])) d->seen[d->nseen++] = h;
  return false;
}

void diag_verror(Diag *d, SrcLoc loc, const char *kind, const char *fmt, va_list ap) {
  bool is_err = strcmp(kind, "error") == 0;
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (is_err) d->dropping = seen_before(d, loc, msg);
  if (d->dropping) return;
  if (is_err) {
    d->nerr++;
    if (d->nerr > d->max_errors) {
      d->limit_hit = true;
      return;
    }
  } else if (d->nerr > d->max_errors) {
    return;  // a note of a dropped error
  }
  bool has_loc = loc.file > 0 && (int)loc.file < d->nfiles && loc.line > 0;
  if (has_loc) {
    emit(d, d->files[loc.file].name, strlen(d->files[loc.file].name));  // any length
    emitf(d, ":%u:%u: %s: %s\n", loc.line, loc.col, kind, msg);
  } else
    emitf(d, "heed: %s: %s\n", kind, msg);
  if (has_loc) show_line(d, loc);
}

void diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, "error", fmt, ap);
  va_end(ap);
}

void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, "note", fmt, ap);
  va_end(ap);
}

bool diag_full(const Diag *d) { return d->nerr >= d->max_errors; }

void diag_finish(Diag *d) {
  if (d->limit_hit)
    emitf(d, "heed: too many errors; stopped reporting after %d\n", d->max_errors);
  else if (d->nerr > 1)
    emitf(d, "%d errors generated.\n", d->nerr);
}

const char *diag_bytes(char *buf, uint64_t n) {
  static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (n < 1024) {
    snprintf(buf, 32, "%llu byte%s", (unsigned long long)n, n == 1 ? "" : "s");
    return buf;
  }
  double v = (double)n / 1024;
  int u = 0;
  while (v >= 1024 && u < 5) v /= 1024, u++;
  snprintf(buf, 32, "%.1f %s", v, unit[u]);
  return buf;
}

// Optimal string alignment distance (Levenshtein plus adjacent
// transpositions, so "bais" is one edit from "bias"), giving up past max.
int diag_edit_distance(const char *a, const char *b, int max) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return max + 1;
  if ((la > lb ? la - lb : lb - la) > (size_t)max) return max + 1;
  int prev2[65], prev[65], cur[65];
  for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = (int)i;
    int best = cur[0];
    for (size_t j = 1; j <= lb; j++) {
      int v = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (prev[j] + 1 < v) v = prev[j] + 1;
      if (cur[j - 1] + 1 < v) v = cur[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < v) v = prev2[j - 2] + 1;
      cur[j] = v;
      if (v < best) best = v;
    }
    if (best > max) return max + 1;
    memcpy(prev2, prev, sizeof prev);
    memcpy(prev, cur, sizeof cur);
  }
  return prev[lb];
}

const char *diag_closest(const char *name, const char *const *cands, int n, int max) {
  int best = max + 1;
  const char *pick = NULL;
  for (int i = 0; i < n; i++) {
    int d = diag_edit_distance(name, cands[i], best - 1);
    if (d < best) best = d, pick = cands[i];
  }
  return pick;
}
