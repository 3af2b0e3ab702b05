// runtime/embed.c: model.h (runtime/heed_model.h), the interface of a model
// heed build compiled into a program or a library, over model.c. It sits
// between the embedding code (an application, or program.c's main) and the
// objects heed build generates: the model's code (heed_forward) and its
// data (the description, the weights image or the weights file's name),
// and the KV-cached step (heed_step) when the model is a causal decoder.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/heed_model.h"
#include "runtime/rt.h"

extern const char heed_model_meta[], heed_model_meta_end[];
extern const uint8_t heed_model_weights[], heed_model_weights_end[];
extern const char heed_model_weights_file[];  // "" when the weights are built in
extern const char heed_model_name_str[];
int32_t heed_forward(void **bufs, const int64_t *symvals, void *ctx);
// The KV-cached step graph's entry: absent (NULL) when heed build found the
// model not incremental (bidirectional attention), so weak.
int32_t heed_step(void **bufs, const int64_t *symvals, void *ctx) __attribute__((weak));

// The weights file beside the running program: DIR(/proc/self/exe)/NAME.
static char *weights_beside(void) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = 0;
  char *slash = strrchr(self, '/');
  size_t dir = slash ? (size_t)(slash - self) + 1 : 0;
  char *p = rt_malloc(dir + strlen(heed_model_weights_file) + 1);
  if (!p) return NULL;
  memcpy(p, self, dir);
  strcpy(p + dir, heed_model_weights_file);
  return p;
}

HeedModel *heed_model_open(const char *weights_path, int threads, char *err, size_t errlen) {
  size_t meta_len = (size_t)(heed_model_meta_end - heed_model_meta);
  if (rt_cpu_check(heed_model_meta, meta_len, err, errlen)) return NULL;  // before any generated code
  char *path = weights_path ? rt_strdup(weights_path) : heed_model_weights_file[0] ? weights_beside() : NULL;
  if ((weights_path || heed_model_weights_file[0]) && !path) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  RtModel *m = NULL;
  int rc = rt_model_open(&m, heed_model_meta, meta_len, heed_model_weights,
                         (size_t)(heed_model_weights_end - heed_model_weights), path, heed_forward, heed_step, threads,
                         err, errlen);
  rt_free(path);
  return rc ? NULL : m;
}

int64_t heed_model_vocab(const HeedModel *m) { return rt_model_vocab(m); }
int64_t heed_model_ctx(const HeedModel *m) { return rt_model_ctx(m); }
const char *heed_model_name(void) { return heed_model_name_str; }

const float *heed_model_logits(HeedModel *m, const int32_t *tokens, int64_t T, char *err, size_t errlen) {
  const float *lg = NULL;
  return rt_model_forward(m, tokens, T, &lg, err, errlen) ? NULL : lg;
}

int64_t heed_model_window(const HeedModel *m) { return rt_model_window(m); }

const float *heed_model_step(HeedModel *m, const int32_t *tokens, int64_t T, int64_t pos, char *err, size_t errlen) {
  const float *lg = NULL;
  return rt_model_step(m, tokens, T, pos, &lg, err, errlen) ? NULL : lg;
}

void heed_model_close(HeedModel *m) { rt_model_free(m); }
