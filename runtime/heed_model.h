// model.h (runtime/heed_model.h in heed's sources): the C interface of a
// model that `heed build --emit-lib -o DIR` compiled into DIR/libmodel.a.
// Link: cc app.c -IDIR DIR/libmodel.a -lm -lpthread (nothing else: no LLVM,
// no heed). The library holds the model's code, its description, its
// weights (unless built with --weights-file) and heed's small runtime.
// Example (greedy decoding of byte tokens):
//   char err[512];
//   HeedModel *m = heed_model_open(NULL, 1, err, sizeof err);  // NULL: embedded weights
//   if (!m) { fprintf(stderr, "%s\n", err); return 1; }
//   int32_t tok[64] = {'H', 'i'};
//   const float *lg = heed_model_logits(m, tok, 2, err, sizeof err);  // (2, vocab)
//   ... argmax of lg + 1 * heed_model_vocab(m) is the next token ...
//   heed_model_close(m);
#ifndef HEED_MODEL_H
#define HEED_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct RtModel HeedModel;

// Checks that this CPU can run the compiled code (it says which features
// are missing otherwise), reads the weights (weights_path NULL: the ones
// built in, or the file heed build wrote beside a program) and starts
// threads (threads <= 0: 1 for weights under 16 MB, else the cores). NULL
// with a message in err on failure.
HeedModel *heed_model_open(const char *weights_path, int threads, char *err, size_t errlen);
int64_t heed_model_vocab(const HeedModel *m);    // tokens are 0 .. vocab-1
int64_t heed_model_ctx(const HeedModel *m);      // at most this many tokens per call
const char *heed_model_name(void);               // the model's name in its .heed file
// Logits (T, vocab), row t for the token after tokens[0..t], for a batch
// of one sequence; valid until the next call. NULL with a message on error
// (T outside 1..ctx, a token outside the vocabulary).
const float *heed_model_logits(HeedModel *m, const int32_t *tokens, int64_t T, char *err, size_t errlen);
// The window heed build chose for generation (the sequence length the model
// was trained at, when shorter than the context; else the context).
int64_t heed_model_window(const HeedModel *m);
// Incremental decoding with the KV cache (a causal decoder; NULL with a
// message otherwise): logits (T, vocab) of tokens[0..T) at positions
// pos..pos+T-1, attending to the positions 0..pos-1 earlier calls ran
// (pos 0 starts afresh); pos + T <= ctx. Prefill: (prompt, n, 0); then
// (&next, 1, n), (&next, 1, n + 1), ... Valid until the next call.
const float *heed_model_step(HeedModel *m, const int32_t *tokens, int64_t T, int64_t pos, char *err, size_t errlen);
void heed_model_close(HeedModel *m);             // NULL is harmless

#ifdef __cplusplus
}
#endif
#endif
