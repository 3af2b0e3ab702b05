// tests/fuzz/fuzz_data.c: libFuzzer target for the training data loader
// (runtime/data.c): arbitrary bytes -> a file read as text and as a .bin
// (uint16 tokens, optionally behind llm.c's header) -> rt_tokens_open with
// and without a vocabulary -> splits, window checks and batches. Every
// token drawn must be in the file's range and under the vocabulary; a
// refusal must say why. Any crash, leak, sanitizer report or slow input is
// a bug (scripts/fuzz.sh, `make fuzz`; seeds in tests/fuzz/corpus-data/,
// written by tests/fuzz/make_seeds.py).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/rt.h"

static char path_txt[4096], path_bin[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(path_txt, sizeof path_txt, "%s/heed-fuzz-data-%d.txt", dir, (int)getpid());
  snprintf(path_bin, sizeof path_bin, "%s/heed-fuzz-data-%d.bin", dir, (int)getpid());
  return 0;
}

static void write_file(const char *path, const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
}

// Windows of a split: every token under vocab (when set).
static void draw(const RtSplit *s, int64_t seq, int64_t vocab) {
  char err[512];
  memset(err, 1, sizeof err);
  if (rt_window_check(s, seq, "training", err, sizeof err) != RT_OK) {
    if (!memchr(err, 0, sizeof err) || err[0] == 0) abort();
    return;
  }
  enum { B = 3 };
  int32_t tok[B * 8], tgt[B * 8];
  uint64_t rng = 1337;
  for (int rep = 0; rep < 3; rep++) {  // fixed windows w0 .. w0 + B - 1 of nw: all below nw
    if (rep == 0) rt_batch_random(s, &rng, B, seq, tok, tgt);
    else rt_batch_fixed(s, (rep - 1) * B, 2 * B, B, seq, tok, tgt);
    for (int64_t i = 0; i < B * seq; i++) {
      if (tok[i] < 0 || tgt[i] < 0 || tok[i] > 65535 || tgt[i] > 65535) abort();
      if (vocab > 0 && (tok[i] >= vocab || tgt[i] >= vocab)) abort();
    }
  }
}

static void load(const char *path, int64_t vocab, int64_t seq) {
  RtTokens tk;
  char err[512];
  memset(err, 1, sizeof err);
  if (rt_tokens_open(path, vocab, &tk, err, sizeof err) != RT_OK) {
    if (!memchr(err, 0, sizeof err) || err[0] == 0) abort();
    return;
  }
  if (tk.n < 1 || (tk.width != 1 && tk.width != 2)) abort();
  for (int64_t i = 0; i < tk.n; i++)
    if (vocab > 0 && rt_tokens_get(&tk, i) >= vocab) abort();
  RtSplit all = rt_split_all(&tk), tr, va;
  rt_split(&tk, 0.9, &tr, &va);
  if (tr.begin != 0 || tr.end != va.begin || va.end != tk.n || all.end != tk.n) abort();
  draw(&all, seq, vocab);
  draw(&tr, seq, vocab);
  draw(&va, seq, vocab);
  rt_tokens_close(&tk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t seq = 1 + (int64_t)(size % 8);  // 1..8
  write_file(path_txt, data, size);
  load(path_txt, 256, seq);
  load(path_txt, 97, seq);
  write_file(path_bin, data, size);
  load(path_bin, 0, seq);
  load(path_bin, 50257, seq);
  load(path_bin, 300, seq);
  unlink(path_txt);
  unlink(path_bin);
  return 0;
}
