// examples/embed/main.c: a C program that embeds a model compiled by
//   heed build examples/bytegpt.heed --weights W.safetensors --emit-lib -o DIR
// and links only DIR/libmodel.a, libm and pthreads:
//   cc -O2 -IDIR examples/embed/main.c DIR/libmodel.a -lm -lpthread -o embed
//   ./embed "Hello" 16            # greedy continuation of the prompt's bytes
//   ./embed "Hello" 0 logits.bin  # also: the prompt's logits (T x vocab f32, raw)
// (heed's test tests/build/test_build.py builds and runs it.)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PROMPT N [LOGITS.bin]\n", argv[0]);
    return 2;
  }
  char err[512];
  HeedModel *m = heed_model_open(NULL, 1, err, sizeof err);  // the weights built in, one thread
  if (!m) {
    fprintf(stderr, "%s: %s\n", argv[0], err);
    return 1;
  }
  int64_t V = heed_model_vocab(m), ctx = heed_model_ctx(m), T = (int64_t)strlen(argv[1]);
  long n = atol(argv[2]);
  int32_t *tok = malloc(sizeof *tok * (size_t)(T + n + 1));
  for (int64_t i = 0; i < T; i++) tok[i] = (unsigned char)argv[1][i];
  int rc = 0;
  for (long k = 0; k <= n && T <= ctx; k++) {
    const float *lg = heed_model_logits(m, tok, T, err, sizeof err);  // (T, V)
    if (!lg) {
      fprintf(stderr, "%s: %s\n", argv[0], err);
      rc = 1;
      break;
    }
    if (k == 0 && argc > 3) {  // the prompt's logits, for comparison with heed run
      FILE *f = fopen(argv[3], "wb");
      if (!f || fwrite(lg, sizeof *lg, (size_t)(T * V), f) != (size_t)(T * V) || fclose(f) != 0) rc = 1;
    }
    if (k == n) break;
    const float *last = lg + (T - 1) * V;
    int32_t best = 0;
    for (int64_t v = 1; v < V; v++)
      if (last[v] > last[best]) best = (int32_t)v;
    tok[T++] = best;
  }
  printf("%s: ", heed_model_name());
  for (int64_t i = 0; i < T; i++) putchar(tok[i] < 256 ? tok[i] : '?');
  putchar('\n');
  free(tok);
  heed_model_close(m);
  return rc;
}
