// tests/fuzz/fuzz_checkpoint.c: libFuzzer target for what `heed train
// --resume` and `--init` run on a file: arbitrary bytes -> a file ->
// engine/checkpoint.c's heed_ckpt_load, heed_ckpt_read_run_id and
// heed_ckpt_init_from (runtime/safetensors.c underneath). The trainer is a
// stand-in with three small f32 tensors (two of the model, one optimizer
// state), which is all checkpoint.c asks of it. Any crash,
// leak, sanitizer report or slow input is a bug; a refusal must say why
// (scripts/fuzz.sh, `make fuzz`; seeds in tests/fuzz/corpus-checkpoint/,
// written by tests/fuzz/make_seeds.py).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/train.h"
#include "engine/trainer.h"

// ---- the stand-in trainer ----

static const int64_t shape_w[2] = {2, 3}, shape_b[1] = {3};
static float data_w[6], data_b[3], data_m[6];
static const HeedTensorRef tensors[3] = {
    {.name = "w", .rank = 2, .shape = shape_w, .numel = 6, .data = data_w},
    {.name = "b", .rank = 1, .shape = shape_b, .numel = 3, .data = data_b},
    {.name = "opt.m.w", .rank = 2, .shape = shape_w, .numel = 6, .data = data_m, .is_state = true},
};

int heed_trainer_ntensors(const HeedTrainer *t) {
  (void)t;
  return 3;
}

HeedTensorRef heed_trainer_tensor(HeedTrainer *t, int i) {
  (void)t;
  return tensors[i];
}

// ---- the target ----

static char path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(path, sizeof path, "%s/heed-fuzz-ckpt-%d.safetensors", dir, (int)getpid());
  return 0;
}

// A refusal names the file and says something.
static void check_err(bool ok, const char *err, size_t errlen) {
  if (!ok && (!memchr(err, 0, errlen) || err[0] == 0)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
  HeedTrainer *t = (HeedTrainer *)&tensors;  // never dereferenced by checkpoint.c
  HeedCkptMeta want = {.step = 0, .steps = 10}, m;
  snprintf(want.settings, sizeof want.settings, "optimizer=adamw lr=0.001 batch=4 seq=16");
  snprintf(want.fingerprint, sizeof want.fingerprint, "00112233aabbccdd");
  char err[512], id[32];
  memset(err, 1, sizeof err);
  check_err(heed_ckpt_load(t, path, &want, &m, err, sizeof err), err, sizeof err);
  memset(err, 1, sizeof err);
  check_err(heed_ckpt_read_run_id(path, id, err, sizeof err), err, sizeof err);
  for (int strict = 0; strict < 2; strict++) {
    memset(err, 1, sizeof err);
    check_err(heed_ckpt_init_from(t, path, strict ? NULL : "model.", strict, err, sizeof err), err, sizeof err);
  }
  unlink(path);
  return 0;
}
