// tests/fuzz/fuzz_frontend.c: libFuzzer target for the whole frontend:
// arbitrary bytes -> fe_parse -> fe_check. Any crash, leak, sanitizer
// report or slow input is a bug (scripts/fuzz.sh, `make fuzz`).
#include <stdint.h>
#include <stdio.h>

#include "frontend/fe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Diag d;
  diag_init(&d, NULL);
  Arena *a = arena_new();
  uint32_t file = diag_add_file(&d, "fuzz.heed", (const char *)data, size);
  if (a && file) {
    FeAst *ast = fe_parse(a, &d, file);
    if (ast && d.nerr == 0) {
      FeOverride ov[] = {{.key = "layers", .value = "2"}};
      FeCheckOpts opts = {.overrides = ov, .noverrides = 1};
      fe_check(a, &d, ast, &opts);
    }
  }
  arena_free(a);
  diag_fini(&d);
  return 0;
}
