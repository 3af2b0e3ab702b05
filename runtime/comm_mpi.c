// runtime/comm_mpi.c: rt_comm_open, and RtComm over Open MPI (comm.h) when
// heed is built with MPI (HEED_HAVE_MPI): blocking point-to-point messages
// for the chain of rt_comm_sum_fixed, MPI_Bcast, MPI_Barrier. Errors return
// (MPI_ERRORS_RETURN) so the caller prints which step failed; a rank killed
// outright ends the job through mpirun (Open MPI's default: it kills the
// other ranks and names the dead one).
#include <stdio.h>
#include <stdlib.h>

#include "runtime/comm.h"

#ifdef HEED_HAVE_MPI
#include <mpi.h>

enum { MAXMSG = 1 << 30 };  // bytes per MPI call (counts are int)

static RtStatus ok(int rc) { return rc == MPI_SUCCESS ? RT_OK : RT_ERR_IO; }

static RtStatus mpi_send(RtComm *c, const void *buf, int64_t bytes, int to) {
  (void)c;
  for (int64_t off = 0; off < bytes; off += MAXMSG) {
    int n = (int)(bytes - off < MAXMSG ? bytes - off : MAXMSG);
    if (MPI_Send((const char *)buf + off, n, MPI_BYTE, to, 17, MPI_COMM_WORLD) != MPI_SUCCESS) return RT_ERR_IO;
  }
  return RT_OK;
}

static RtStatus mpi_recv(RtComm *c, void *buf, int64_t bytes, int from) {
  (void)c;
  for (int64_t off = 0; off < bytes; off += MAXMSG) {
    int n = (int)(bytes - off < MAXMSG ? bytes - off : MAXMSG);
    if (MPI_Recv((char *)buf + off, n, MPI_BYTE, from, 17, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return RT_ERR_IO;
  }
  return RT_OK;
}

static RtStatus mpi_bcast(RtComm *c, void *buf, int64_t bytes, int root) {
  (void)c;
  for (int64_t off = 0; off < bytes; off += MAXMSG) {
    int n = (int)(bytes - off < MAXMSG ? bytes - off : MAXMSG);
    if (MPI_Bcast((char *)buf + off, n, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS) return RT_ERR_IO;
  }
  return RT_OK;
}

static RtStatus mpi_barrier(RtComm *c) { return (void)c, ok(MPI_Barrier(MPI_COMM_WORLD)); }
static void mpi_close(RtComm *c) { (void)c, MPI_Finalize(); }
static void mpi_abort(RtComm *c, int code) {
  (void)c;
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
}

static const RtCommOps mpi_ops = {.name = "Open MPI", .send = mpi_send, .recv = mpi_recv, .broadcast = mpi_bcast,
                                  .barrier = mpi_barrier, .close = mpi_close, .abort = mpi_abort};
#endif

RtComm *rt_comm_open(char *err, size_t errlen) {
  int n = rt_comm_launcher_size();
  if (n <= 1) return rt_comm_single();
#ifdef HEED_HAVE_MPI
  int rank = 0, size = 1;
  if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
    snprintf(err, errlen, "MPI_Init failed (started by a launcher with %d ranks)", n);
    return NULL;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  RtComm *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    MPI_Finalize();
    return NULL;
  }
  *c = (RtComm){.ops = &mpi_ops, .rank = rank, .size = size};
  return c;
#else
  snprintf(err, errlen, "started by mpirun with %d ranks, but this heed was built without MPI (install "
           "libopenmpi-dev and rebuild); refusing to train %d copies of the same run", n, n);
  return NULL;
#endif
}
