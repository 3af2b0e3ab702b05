// runtime/comm_mpi.c: RtComm over Open MPI (comm.h). Compiled into heed
// when CMake finds MPI (HEED_HAVE_MPI); otherwise rt_comm_mpi_new says that
// this build has no MPI. Point-to-point chain for the ordered sum (see
// comm.h), MPI_Bcast and MPI_Allgather (pure data movement: no arithmetic
// whose order could vary) for the rest. MPI's errors are fatal to the job
// (its default handler): a rank that dies ends the others through mpirun.
#include "runtime/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/rt.h"

int rt_comm_launched_size(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) {
      long n = strtol(v, NULL, 10);
      if (n > 0 && n < 1 << 20) return (int)n;
    }
  }
  return 0;
}

#ifdef HEED_HAVE_MPI
#include <mpi.h>

enum { CHUNK = 1 << 18 };  // floats per message of the chain (1 MiB)

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// MPI_Wait(all), but with c->polite by MPI_Test and 20 us sleeps: MPI's own
// wait spins on the core (Open MPI's progress loop), which the backward
// running beside the communication thread needs.
static int wait_all(RtComm *c, int n, MPI_Request *rq) {
  if (!c->polite) return MPI_Waitall(n, rq, MPI_STATUSES_IGNORE);
  for (;;) {
    int done = 0, rc = MPI_Testall(n, rq, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS || done) return rc;
    nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
  }
}

static bool mpi_fail(int rc, const char *what, char *err, size_t errlen) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  snprintf(err, errlen, "MPI: %s failed: %.*s", what, len, msg);
  return false;
}

// The chain with every receive posted up front and every send non-blocking:
// chunks stream between neighbours (a rank adds chunk c while c + 1 is on
// the wire) instead of waiting for each other's acknowledgements.
static bool ordered_sum(RtComm *c, float *acc, int64_t n, float *const *mine, int nmine, char *err, size_t errlen) {
  double t0 = now_s();
  int64_t nch = (n + CHUNK - 1) / CHUNK;
  MPI_Request *rq = rt_calloc((size_t)(2 * nch + 1), sizeof *rq);
  if (!rq) {
    snprintf(err, errlen, "out of memory");
    return false;
  }
  MPI_Request *recv = rq, *send = rq + nch;
  bool ok = true;
  int rc = MPI_SUCCESS;
  for (int64_t k = 0; k < nch && c->rank > 0 && rc == MPI_SUCCESS; k++) {
    int len = (int)(n - k * CHUNK < CHUNK ? n - k * CHUNK : CHUNK);
    rc = MPI_Irecv(acc + k * CHUNK, len, MPI_FLOAT, c->rank - 1, (int)(k & 0x7fff), MPI_COMM_WORLD, &recv[k]);
  }
  if (rc != MPI_SUCCESS) ok = mpi_fail(rc, "receiving a partial gradient sum", err, errlen);
  for (int64_t k = 0; k < nch && ok; k++) {
    int64_t at = k * CHUNK;
    int len = (int)(n - at < CHUNK ? n - at : CHUNK), first = 0;
    float *a = acc + at;
    if (c->rank == 0) {
      memcpy(a, mine[0] + at, sizeof(float) * (size_t)len);
      first = 1;
    } else if ((rc = wait_all(c, 1, &recv[k])) != MPI_SUCCESS) {
      ok = mpi_fail(rc, "receiving a partial gradient sum", err, errlen);
      break;
    }
    for (int j = first; j < nmine; j++) {
      const float *m = mine[j] + at;
      for (int i = 0; i < len; i++) a[i] += m[i];
    }
    if (c->rank + 1 < c->size &&
        (rc = MPI_Isend(a, len, MPI_FLOAT, c->rank + 1, (int)(k & 0x7fff), MPI_COMM_WORLD, &send[k])) != MPI_SUCCESS)
      ok = mpi_fail(rc, "sending a partial gradient sum", err, errlen);
  }
  if (ok && c->rank + 1 < c->size && (rc = wait_all(c, (int)nch, send)) != MPI_SUCCESS)
    ok = mpi_fail(rc, "sending a partial gradient sum", err, errlen);
  rt_free(rq);
  // the last rank holds the sum: to every rank, in chunks (int counts)
  for (int64_t at = 0; at < n && ok; at += CHUNK) {
    int len = (int)(n - at < CHUNK ? n - at : CHUNK);
    MPI_Request bq;
    if ((rc = MPI_Ibcast(acc + at, len, MPI_FLOAT, c->size - 1, MPI_COMM_WORLD, &bq)) != MPI_SUCCESS ||
        (rc = wait_all(c, 1, &bq)) != MPI_SUCCESS)
      ok = mpi_fail(rc, "broadcasting the gradient sum", err, errlen);
  }
  c->wait_s += now_s() - t0;
  return ok;
}

static bool allgather(RtComm *c, const double *mine, int n, double *out, char *err, size_t errlen) {
  double t0 = now_s();
  int rc = MPI_Allgather(mine, n, MPI_DOUBLE, out, n, MPI_DOUBLE, MPI_COMM_WORLD);
  c->wait_s += now_s() - t0;
  return rc == MPI_SUCCESS || mpi_fail(rc, "gathering values", err, errlen);
}

static bool bcast(RtComm *c, void *buf, size_t n, char *err, size_t errlen) {
  double t0 = now_s();
  int rc = n > (size_t)1 << 30 ? MPI_ERR_COUNT : MPI_Bcast(buf, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
  c->wait_s += now_s() - t0;
  return rc == MPI_SUCCESS || mpi_fail(rc, "broadcasting", err, errlen);
}

static void comm_free(RtComm *c) {
  if (!c) return;
  MPI_Finalize();
  rt_free(c);
}

static void comm_abort(RtComm *c, int code) {
  (void)c;
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
}

bool rt_comm_available(void) { return true; }

RtComm *rt_comm_mpi_new(char *err, size_t errlen) {
  int ok = 0, level = MPI_THREAD_SINGLE;
  MPI_Initialized(&ok);
  if (ok) MPI_Query_thread(&level);
  else if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &level) != MPI_SUCCESS) {
    snprintf(err, errlen, "MPI_Init failed");
    return NULL;
  }
  RtComm *c = rt_calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    MPI_Finalize();
    return NULL;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &c->size);
  c->threads = level >= MPI_THREAD_SERIALIZED;
  c->ordered_sum = ordered_sum, c->allgather = allgather, c->bcast = bcast, c->free = comm_free, c->abort = comm_abort;
  return c;
}

#else

bool rt_comm_available(void) { return false; }

RtComm *rt_comm_mpi_new(char *err, size_t errlen) {
  snprintf(err, errlen, "this heed was built without MPI (Debian's libopenmpi-dev missing at build time, or -DHEED_MPI=OFF)");
  return NULL;
}

#endif
