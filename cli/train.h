// cli/train.h: `heed train` (train.c: the loop, progress, evaluation,
// sampling; checkpoint.c: checkpoints; metrics.c: the CSV log and the SVG
// plot). Data flow: a lowered model (Compilation) + a data file
// (runtime/data.c) -> a HeedTrainer (engine/trainer.h: the compiled step) ->
// checkpoints, metrics.csv and loss.svg in the output directory.
#ifndef HEED_CLI_TRAIN_H
#define HEED_CLI_TRAIN_H

#include "cli/driver.h"

enum { HEED_TRAIN_MAX_FREEZE = 64, HEED_TRAIN_MAX_SAMPLE = 1000000 };

typedef struct {
  const char *data, *val;     // --data FILE, --val FILE
  const char *out;            // --out DIR (NULL: the --resume directory, else runs/MODEL, or runs/MODEL-N
                              // when that holds another run)
  const char *resume;         // --resume DIR|FILE
  bool force;                 // --force: a new run into a directory holding a run removes that run's files
  const char *init;           // --init W: start from these weights (fresh optimizer state, step 0)
  const char *prefix;         // --prefix P: the tensor names in the --init file carry P
  bool lax;                   // --strict=false: tensors in the --init file that are not parameters are ignored
  bool strict_given;          // --strict=... was given (it needs --init)
  const char *freeze[HEED_TRAIN_MAX_FREEZE];  // --freeze PATTERN: glob on full parameter names
  int nfreeze;
  const char *prog;           // how heed was invoked (argv[0]), for the printed generate command
  int64_t checkpoint_every;   // 0: the default (eval_every, else steps / 10)
  int keep;                   // checkpoints kept (0: the default, 3)
  int64_t sample;             // tokens generated at the end (-1: the default, 200; 0: none)
  bool interp;                // --interp
  bool profile;               // --profile: per-op times of the train step at the end (stderr)
  int threads;                // --threads
  int grad_accum;             // --grad-accum K: micro-batches per step (0: 1)
} HeedTrainOpts;

// Parses one `heed train` flag (flag, and val: the next argument or NULL).
// Returns the number of arguments used (1 or 2), 0 if flag is not a train
// flag, or -1 on a bad value or a flag train does not take (message in
// err: --weights, --inputs, --outputs, -o, --emit). Flags that are train
// settings (--steps, --batch, --seq, --eval-every, --seed) become
// overrides: *set_key is then the setting's name (static) and val its
// value, to be added as --set KEY=VAL (marked used: a model without a train
// section is reported as such by heed_cmd_train).
int heed_train_flag(HeedTrainOpts *o, const char *flag, const char *val, const char **set_key, char *err,
                    size_t errlen);

// Trains c's model (through heed_frontend with lower set). Returns HEED_OK
// (also when SIGINT/SIGTERM stopped it after saving a checkpoint) or an
// error status with the message printed.
int heed_cmd_train(Compilation *c, const HeedTrainOpts *o);

// ---- checkpoint.c ----
typedef struct HeedTrainer HeedTrainer;

typedef struct {            // what a checkpoint records besides the tensors
  int64_t step, steps;      // steps done; the run's total
  uint64_t rng;             // the data generator's state after `step`
  char settings[1024];      // everything that must match on resume (one line)
  char fingerprint[32];     // the model's tensors: names, shapes (hex)
  char run_id[32];          // the run's id (16 hex digits, random at its start; "" in older checkpoints)
} HeedCkptMeta;

// The model fingerprint of t's tensors (hex, 16 digits) into out[32].
void heed_ckpt_fingerprint(HeedTrainer *t, const char *model, char out[32]);
// Writes DIR/ckpt-STEP.safetensors (8-digit step) atomically, then removes
// the oldest ckpt-*.safetensors in dir beyond the newest `keep`. path gets
// the file written. false with the message in err on failure (the file is
// then not written, and older checkpoints stay).
bool heed_ckpt_save(HeedTrainer *t, const char *dir, const HeedCkptMeta *m, int keep, char *path,
                    size_t pathlen, char *err, size_t errlen);
// The newest checkpoint file in dir into path; false if none.
bool heed_ckpt_latest(const char *dir, char *path, size_t pathlen);
// Loads a checkpoint into t, after checking the fingerprint, every tensor
// (present, F32, the same shape; none extra) and the settings against
// want; m gets its metadata. false with the message in err.
bool heed_ckpt_load(HeedTrainer *t, const char *path, const HeedCkptMeta *want, HeedCkptMeta *m, char *err,
                    size_t errlen);

// A fresh run id (16 hex digits from /dev/urandom, else time and pid).
void heed_ckpt_new_run_id(char out[32]);
// The run id of the checkpoint at path into id[32] ("" if it has none);
// false with the message in err if it is not a readable heed checkpoint.
bool heed_ckpt_read_run_id(const char *path, char id[32], char *err, size_t errlen);
// Starts t from a weights file (--init): every model parameter and buffer
// from path (names prefixed with prefix, which may be NULL), any float
// dtype converted to f32, shapes checked; tensors that are not parameters
// are an error when strict (a heed checkpoint's optimizer state never is).
// The optimizer state is left as it is (zero after heed_trainer_init).
// false with the message in err.
bool heed_ckpt_init_from(HeedTrainer *t, const char *path, const char *prefix, bool strict, char *err,
                         size_t errlen);

// ---- the run directory (checkpoint.c) ----
// Does dir hold a run's files (ckpt-*.safetensors, metrics.csv, loss.svg)?
// false also when dir does not exist.
bool heed_rundir_used(const char *dir);
// Removes the run's files from dir (those above, and their temporary
// files), nothing else. false with the message in err.
bool heed_rundir_clear(const char *dir, char *err, size_t errlen);
// The run directory's lock: DIR/.heed-train.lock, an exclusive flock held
// (with the holder's pid in the file) until the returned descriptor is
// closed or the process ends. -1: another run holds it (err names its
// pid) or it cannot be taken.
#define HEED_RUNDIR_LOCK ".heed-train.lock"
int heed_rundir_lock(const char *dir, char *err, size_t errlen);
// Removes the temporary files of dir's run files (ckpt-*.safetensors.tmp.*,
// metrics.csv.tmp.*, loss.svg.tmp.*: left by a killed run); call under the
// lock. Returns how many.
int heed_rundir_clean_temps(const char *dir);
// A checkpoint in dir whose run id is set and differs from run_id: its
// path into path and true; false if there is none.
bool heed_rundir_foreign(const char *dir, const char *run_id, char *path, size_t pathlen, char *id, size_t idlen);

// ---- metrics.c ----
// metrics.csv: a header line, then one row per step:
//   step,loss,val_loss,lr,grad_norm,tokens_per_s,elapsed_s
// (val_loss empty where no evaluation ran).
// Keeps the rows of an existing log with step <= upto (a resumed run) and
// opens it for appending; a new log (upto < 0) gets the header. NULL with
// the message in err.
FILE *heed_metrics_open(const char *path, int64_t upto, char *err, size_t errlen);
// Writes the loss plot (train and validation loss against step) of the log
// csv as an SVG file svg (atomically). false with the message in err.
bool heed_metrics_plot(const char *csv, const char *svg, const char *title, char *err, size_t errlen);

#endif
