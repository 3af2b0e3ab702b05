// runtime/comm.h: RtComm, how the ranks of a data-parallel training job
// (mpirun -np N heed train ...) combine what each computed (prefix
// rt_comm_). It sits between the trainer (engine/trainer.c: each rank runs the
// forward and backward of its micro-batches of the global batch) and a
// distributed engine: Open MPI (comm_mpi.c, when heed is built with it).
//
// Determinism: the gradient sum is done in a fixed order, not by
// MPI_Allreduce (whose order is the implementation's): the ranks form a
// chain, rank r adds its micro-batches' gradients, one after the other, to
// the partial sum it receives from rank r - 1 and passes it on; the last
// rank holds g_0 + g_1 + ... + g_{M-1} summed left to right in micro-batch
// order (the order of a single process's --grad-accum M) and broadcasts it.
// The buffers go in chunks, so the chain is a pipeline: a chunk moves on
// while the next is being added.
#ifndef HEED_RUNTIME_COMM_H
#define HEED_RUNTIME_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct RtComm RtComm;
struct RtComm {
  int rank, size;
  double wait_s;  // seconds spent in the calls below (receiving, sending, waiting for the others)
  bool threads;   // the calls below may come from another thread than MPI_Init's (one at a time:
                  // MPI_THREAD_SERIALIZED); the trainer then sums buckets during the backward
  bool polite;    // wait by polling with short sleeps instead of spinning in MPI (set by the
                  // trainer's communication thread: the backward needs the core meanwhile)
  // (The trainer also calls it on sub-ranges, buckets of the packed
  // gradients, from its communication thread, in the same order on every
  // rank: each element is summed along the same chain either way.)
  // acc (n floats, on every rank) = the nmine buffers of rank 0 (n floats
  // each), then rank 1's, ..., added left to right (acc = mine[0] of rank
  // 0, acc += mine[1], ...); mine may be overwritten. false with a message.
  bool (*ordered_sum)(RtComm *c, float *acc, int64_t n, float *const *mine, int nmine, char *err, size_t errlen);
  // out (size * n doubles, on every rank): each rank's n values, in rank order.
  bool (*allgather)(RtComm *c, const double *mine, int n, double *out, char *err, size_t errlen);
  // n bytes of rank 0's buf to every rank's buf.
  bool (*bcast)(RtComm *c, void *buf, size_t n, char *err, size_t errlen);
  void (*free)(RtComm *c);  // MPI_Finalize and the struct
  // Ends the whole job with status code (a rank that failed: the others
  // may be waiting for it in a call above; MPI_Abort, mpirun ends them).
  void (*abort)(RtComm *c, int code);
};

// How many ranks the launcher (mpirun, srun) started this process among,
// from its environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE...): 0 if
// none says (not started by a launcher).
int rt_comm_launched_size(void);
// True if this heed has a distributed engine (built with MPI).
bool rt_comm_available(void);
// Joins the job (MPI_Init). NULL with the reason in err (no MPI in this
// build, MPI_Init failed). Caller frees with c->free(c).
RtComm *rt_comm_mpi_new(char *err, size_t errlen);

#endif
