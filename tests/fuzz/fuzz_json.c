// tests/fuzz/fuzz_json.c: libFuzzer target for the runtime's JSON reader
// (runtime/json.c), under every safetensors header: arbitrary bytes ->
// rt_json_parse -> the tree walked (element counts, keys only in objects)
// and every string quoted with rt_json_quote and parsed back unchanged.
// Any crash, leak, sanitizer report or slow input is a bug (scripts/fuzz.sh,
// `make fuzz`; seeds in tests/fuzz/corpus-json/).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

static void round_trip(const char *s) {
  size_t n = rt_json_quote(NULL, s);
  char *q = malloc(n);
  if (!q) return;
  if (rt_json_quote(q, s) != n) abort();
  RtJsonDoc doc;
  size_t end;
  if (rt_json_parse(&doc, q, n, &end, NULL) != RT_OK || end != n || doc.root->kind != RT_JSON_STRING ||
      strcmp(doc.root->str, s) != 0)
    abort();
  rt_json_free(&doc);
  free(q);
}

static void walk(const RtJson *j, int depth) {
  if (depth > RT_JSON_MAX_DEPTH) abort();
  if (j->kind == RT_JSON_STRING) round_trip(j->str);
  if (j->key) round_trip(j->key);
  int n = 0;
  for (const RtJson *c = j->child; c; c = c->next, n++) {
    if ((c->key != NULL) != (j->kind == RT_JSON_OBJECT)) abort();
    walk(c, depth + 1);
  }
  if (n != j->n) abort();
  if (n && j->kind != RT_JSON_OBJECT && j->kind != RT_JSON_ARRAY) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  RtJsonDoc doc;
  size_t end = 0;
  const char *why = NULL;
  int rc = rt_json_parse(&doc, (const char *)data, size, &end, &why);
  if (end > size) abort();
  if (rc != RT_OK) {
    if (!why || doc.root || doc.chunks_) abort();
    return 0;
  }
  walk(doc.root, 0);
  rt_json_free(&doc);
  return 0;
}
