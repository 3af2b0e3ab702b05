// runtime/comm.h: RtComm, the communicator of data-parallel training
// (ARCHITECTURE.md section 13). Sits under the trainer: each rank computes
// the gradients of its micro-batches, rt_comm_sum_fixed adds them across
// ranks in a fixed order (rank 0's parts, then rank 1's, ...), and every
// rank applies the same update. Implementations: one process (comm.c) and
// Open MPI (comm_mpi.c, built when CMake finds MPI).
//
// Determinism: rt_comm_sum_fixed's float additions are, on every rank and
// for any number of ranks, out = ((((p[0][0] + p[0][1]) + ...) + p[1][0]) + ...)
// element by element, left to right over the parts of rank 0, then of rank
// 1, and so on: a chain reduce in rank order over fixed chunks, then a
// broadcast (never MPI_Allreduce, whose order the implementation chooses).
// So N ranks with K parts each give the bits of one process with N * K parts.
#ifndef HEED_RUNTIME_COMM_H
#define HEED_RUNTIME_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/rt.h"

typedef struct RtComm RtComm;

// The communicator of this process: under mpirun with more than one rank,
// MPI's (MPI_Init on first use); else a single-process one. NULL with the
// message in err when started under mpirun with several ranks but heed was
// built without MPI, or MPI cannot start.
RtComm *rt_comm_open(char *err, size_t errlen);
// MPI_Finalize (MPI); frees c. NULL is harmless.
void rt_comm_close(RtComm *c);
// Ends every rank of the job at once with exit status code (MPI_Abort); a
// single process just exits.
_Noreturn void rt_comm_abort(RtComm *c, int code);

int rt_comm_rank(const RtComm *c);
int rt_comm_size(const RtComm *c);
const char *rt_comm_name(const RtComm *c);  // "single process", "Open MPI"
// Seconds spent inside the calls below so far (waiting and copying).
double rt_comm_wait_s(const RtComm *c);

// out[0..n) = the sum, in the fixed order above, of every rank's parts
// parts[0..nparts)[0..n) (nparts >= 1, the same on every rank). out may be
// parts[0] on ranks where it is only read first.
RtStatus rt_comm_sum_fixed(RtComm *c, const float *const *parts, int nparts, float *out, int64_t n, char *err,
                           size_t errlen);
// Rank root's bytes into buf on every rank.
RtStatus rt_comm_broadcast(RtComm *c, void *buf, int64_t bytes, int root, char *err, size_t errlen);
// mine (bytes) of every rank into all (size * bytes, rank order) on every rank.
RtStatus rt_comm_allgather(RtComm *c, const void *mine, void *all, int64_t bytes, char *err, size_t errlen);
RtStatus rt_comm_barrier(RtComm *c, char *err, size_t errlen);

// ---- for implementations (comm.c, comm_mpi.c) ----
typedef struct {
  const char *name;
  RtStatus (*send)(RtComm *c, const void *buf, int64_t bytes, int to);
  RtStatus (*recv)(RtComm *c, void *buf, int64_t bytes, int from);
  RtStatus (*broadcast)(RtComm *c, void *buf, int64_t bytes, int root);
  RtStatus (*barrier)(RtComm *c);
  void (*close)(RtComm *c);
  void (*abort)(RtComm *c, int code);
} RtCommOps;
struct RtComm {
  const RtCommOps *ops;
  int rank, size;
  double wait_s;
  void *impl;
};
RtComm *rt_comm_single(void);
// The number of ranks the launcher (mpirun, srun) started, from its
// environment; 1 when not under one.
int rt_comm_launcher_size(void);

#endif
