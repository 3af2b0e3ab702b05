// cli/train_dist.c: `heed train` as one rank of several (mpirun -np N) or
// with --grad-accum K; part of train.c (included by it, for its Run). Data
// flow: every rank reads the same seeded data stream and builds the whole
// global batch (B rows); rank r trains on rows r * B / N .. (r + 1) * B / N
// as K micro-batches (the trainer sums the gradients of all ranks in a
// fixed order, runtime/comm.h); rank 0 alone starts the state (--init,
// --resume, the initialisers) and broadcasts it, evaluates, prints, writes
// checkpoints, metrics.csv and loss.svg. A checkpoint holds no per-rank
// state: a run resumes with any N and K.
#include "runtime/comm.h"

// The communicator (rt_comm_open) into r; HEED_ERR_CHECK with a message
// when started by mpirun with several ranks in a heed without MPI.
static int dist_open(Run *r) {
  char err[512];
  if (!(r->comm = rt_comm_open(err, sizeof err))) {
    diag_error(&r->c->diag, (SrcLoc){0}, "heed train: %s", err);
    return HEED_ERR_CHECK;
  }
  r->rank = rt_comm_rank(r->comm);
  r->nranks = rt_comm_size(r->comm);
  return HEED_OK;
}

// After the run: several ranks and an error end the whole job (MPI_Abort:
// the other ranks may wait in a collective); else MPI_Finalize.
static void dist_close(Run *r, int rc) {
  if (!r->comm) return;
  if (r->o->profile)
    fprintf(stderr, "heed train: rank %d of %d: %.3f s in communication (%s)\n", r->rank, r->nranks,
            rt_comm_wait_s(r->comm), rt_comm_name(r->comm));
  if (rc != HEED_OK && r->nranks > 1) {
    fprintf(stderr, "heed train: rank %d of %d failed; ending every rank\n", r->rank, r->nranks);
    rt_comm_abort(r->comm, 1);
  }
  rt_comm_close(r->comm);
  r->comm = NULL;
}

// The trainer's micro-batch: B / (N * K) rows, K = --grad-accum.
static int dist_batch(Run *r, HeedTrainerOpts *to) {
  int64_t k = r->o->grad_accum > 1 ? r->o->grad_accum : 1, m = k * r->nranks;
  if (r->B % m) {
    char msg[256];
    snprintf(msg, sizeof msg, "batch %lld cannot be split into %lld micro-batches (%d rank%s x --grad-accum %lld): "
             "choose a divisor of the batch", (long long)r->B, (long long)m, r->nranks, r->nranks == 1 ? "" : "s",
             (long long)k);
    diag_error(&r->c->diag, (SrcLoc){0}, "%s", msg);
    return HEED_ERR_USAGE;
  }
  to->batch = r->B / m;
  to->accum = (int)k;
  to->comm = r->comm;
  return HEED_OK;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
  return h;
}

// What every rank must share, one line: the settings, the model's tensors
// and file, the flags that change the numbers.
static void dist_identity(const Run *r, char *buf, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  const HeedOptions *ho = r->c->opts;
  FILE *f = ho->path ? fopen(ho->path, "rb") : NULL;
  char chunk[4096];
  for (size_t k; f && (k = fread(chunk, 1, sizeof chunk, f)) > 0;) h = fnv(h, chunk, k);
  if (f) fclose(f);
  for (int i = 0; i < ho->check.noverrides; i++) {
    h = fnv(h, ho->check.overrides[i].key, strlen(ho->check.overrides[i].key) + 1);
    h = fnv(h, ho->check.overrides[i].value, strlen(ho->check.overrides[i].value) + 1);
  }
  snprintf(buf, n, "model=%016llx:%s grad_accum=%lld init=%s resume=%s steps=%lld %s", (unsigned long long)h,
           r->meta.fingerprint, (long long)r->o->grad_accum, r->o->init ? r->o->init : "-",
           r->o->resume ? r->o->resume : "-", (long long)r->steps, r->meta.settings);
}

// Every rank's settings against rank 0's: a mismatch (another model file,
// seed, batch, data, flag) is an error on every rank, naming the first
// rank that differs and both lines.
static int dist_check(Run *r) {
  if (r->nranks == 1) return HEED_OK;
  enum { N = 2048 };
  char mine[N] = "", zero[N] = "", err[512];
  dist_identity(r, mine, N);
  memcpy(zero, mine, N);
  int *bad = heed_calloc((size_t)r->nranks, sizeof(int));
  if (!bad) return fail(r, "out of memory");
  bool ok = rt_comm_broadcast(r->comm, zero, N, 0, err, sizeof err) == RT_OK;
  int differ = strcmp(zero, mine) != 0;
  if (!ok || rt_comm_allgather(r->comm, &differ, bad, sizeof(int), err, sizeof err) != RT_OK) {
    heed_free(bad);
    return fail(r, err);
  }
  int first = -1;
  for (int i = 0; i < r->nranks && first < 0; i++)
    if (bad[i]) first = i;
  heed_free(bad);
  if (first < 0) return HEED_OK;
  char msg[3 * N];
  if (differ)
    snprintf(msg, sizeof msg, "rank %d's settings differ from rank 0's (every rank must run the same model file, "
             "seed, settings and flags):\n  rank 0:  %s\n  rank %d: %s", r->rank, zero, r->rank, mine);
  else
    snprintf(msg, sizeof msg, "rank %d's settings differ from rank %d's (rank %d names the difference); stopping",
             first, r->rank, first);
  diag_error(&r->c->diag, (SrcLoc){0}, "heed train: %s", msg);
  return HEED_ERR_USAGE;
}

// Rank 0's state (parameters, optimizer state, the data stream, the step)
// to every rank.
static int dist_share_state(Run *r, int64_t *start) {
  if (r->nranks == 1) return HEED_OK;
  char err[512];
  uint64_t w[2] = {(uint64_t)*start, r->rng};
  bool ok = rt_comm_broadcast(r->comm, w, sizeof w, 0, err, sizeof err) == RT_OK;
  for (int i = 0; ok && i < heed_trainer_ntensors(r->t); i++) {
    HeedTensorRef t = heed_trainer_tensor(r->t, i);
    ok = rt_comm_broadcast(r->comm, t.data, (int64_t)sizeof(float) * t.numel, 0, err, sizeof err) == RT_OK;
  }
  if (!ok) return fail(r, err);
  *start = (int64_t)w[0];
  r->rng = w[1];
  return HEED_OK;
}

// This rank's rows of the global batch in v (the trainer's inputs).
static const int32_t *const *dist_rows(const Run *r, const int32_t **v) {
  int64_t rows = r->B / r->nranks;
  for (int i = 0; i < 2; i++) v[i] += r->rank * rows * r->T;
  return v;
}
