// cli/driver.c: the compiler pipeline, one function per stage, called in
// order (QBE's main.c func()). Today: read the file, parse, check. The IR
// lowering, passes and code generation slot in after heed_frontend.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/driver.h"
#include "runtime/rt.h"
#ifdef HEED_HAVE_LLVM
#include "codegen/cg.h"
#endif

enum { HEED_MAX_SOURCE = 64 << 20 };  // a model file larger than this is surely a mistake

Compilation *heed_compilation_new(HeedOptions *opts) {
  Compilation *c = heed_calloc(1, sizeof *c);
  if (!c) return NULL;
  c->arena = arena_new();
  if (!c->arena) {
    heed_free(c);
    return NULL;
  }
  c->opts = opts;
  diag_init(&c->diag, stderr);
  if (!c->diag.files) {  // out of memory
    heed_compilation_free(c);
    return NULL;
  }
  if (opts->max_errors > 0) c->diag.max_errors = opts->max_errors;
  return c;
}

void heed_compilation_free(Compilation *c) {
  if (!c) return;
  diag_fini(&c->diag);
  arena_free(c->arena);
  heed_free(c);
}

// Reads the model file into the diagnostics' file table (rt_file_read: a
// FIFO, device or directory is refused, never waited on or read forever).
static int read_source(Compilation *c, uint32_t *file) {
  const char *path = c->opts->path;
  uint8_t *buf;
  size_t len;
  char err[1024];
  int rc = rt_file_read(path, HEED_MAX_SOURCE, &buf, &len, err, sizeof err);
  if (rc != RT_OK) {
    diag_error(&c->diag, (SrcLoc){0}, "%s", err);
    return rc == RT_ERR_NOMEM ? HEED_ERR_NOMEM : HEED_ERR_IO;
  }
  *file = diag_add_file(&c->diag, path, (const char *)buf, len);
  heed_free(buf);
  if (*file == 0) {
    diag_error(&c->diag, (SrcLoc){0}, "out of memory reading '%s'", path);
    return HEED_ERR_NOMEM;
  }
  return HEED_OK;
}

int heed_parse_only(Compilation *c) {
  uint32_t file;
  int rc = read_source(c, &file);
  if (rc != HEED_OK) return rc;
  c->ast = fe_parse(c->arena, &c->diag, file);
  if (!c->ast) {
    diag_error(&c->diag, (SrcLoc){0}, "out of memory");
    return HEED_ERR_NOMEM;
  }
  return c->diag.nerr ? HEED_ERR_SYNTAX : HEED_OK;
}

int heed_read_ir(Compilation *c) {
  uint32_t file;
  int rc = read_source(c, &file);
  if (rc != HEED_OK) return rc;
  c->ir = ir_parse(c->arena, &c->diag, file);
  if (c->ir && !ir_verify(c->ir)) c->ir = NULL;
  return c->ir ? HEED_OK : HEED_ERR_SYNTAX;
}

int heed_frontend(Compilation *c) {
  int rc = heed_parse_only(c);
  if (rc != HEED_OK) return rc;  // no semantic errors on top of syntax errors
  c->model = fe_check(c->arena, &c->diag, c->ast, &c->opts->check);
  return c->diag.nerr ? HEED_ERR_CHECK : HEED_OK;
}

const char *heed_cache_dir(void) {
  static char dir[4096];
  const char *off = getenv("HEED_CACHE"), *d = getenv("HEED_CACHE_DIR");
  if (off && (!strcmp(off, "0") || !strcmp(off, "off"))) return NULL;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n = d && *d ? snprintf(dir, sizeof dir, "%s", d)
          : xdg && *xdg ? snprintf(dir, sizeof dir, "%s/heed", xdg)
          : home && *home ? snprintf(dir, sizeof dir, "%s/.cache/heed", home) : -1;
  if (n <= 0 || (size_t)n >= sizeof dir) return NULL;
#ifdef HEED_HAVE_LLVM
  static int safe = -1;  // checked once per process: one warning
  char why[128];
  if (safe < 0 && !(safe = cg_objcache_dir_safe(dir, why, sizeof why)))
    fprintf(stderr, "heed: warning: the compile cache %s %s: not used (it holds code that heed runs; "
            "chmod go-w it, or set HEED_CACHE_DIR to a directory of yours)\n", dir, why);
  if (!safe) return NULL;
#endif
  return dir;
}
