// runtime/comm.c: RtComm's operations over an implementation's send, recv
// and broadcast (comm.h), and the single-process implementation. The fixed
// order sum is a chain: for each chunk of CHUNK floats, rank 0 adds its
// parts and sends the partial sum to rank 1, which adds its parts in order
// and sends on, ..., rank N-1 holds the chunk's total; then it broadcasts
// the whole result. Chunks pipeline the chain (rank r adds chunk i while
// rank r+1 receives chunk i-1).
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/comm.h"

enum { CHUNK = 1 << 18 };  // floats per message of the chain (1 MiB)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int rt_comm_rank(const RtComm *c) { return c ? c->rank : 0; }
int rt_comm_size(const RtComm *c) { return c ? c->size : 1; }
const char *rt_comm_name(const RtComm *c) { return c ? c->ops->name : "single process"; }
double rt_comm_wait_s(const RtComm *c) { return c ? c->wait_s : 0; }

void rt_comm_close(RtComm *c) {
  if (c && c->ops->close) c->ops->close(c);
  free(c);
}

_Noreturn void rt_comm_abort(RtComm *c, int code) {
  if (c && c->ops->abort) c->ops->abort(c, code);
  exit(code);
}

static RtStatus failed(RtComm *c, const char *what, char *err, size_t errlen) {
  snprintf(err, errlen, "rank %d of %d: %s failed (%s): another rank stopped?", c->rank, c->size, what,
           c->ops->name);
  return RT_ERR_IO;
}

// dst[k] = src[k] + dst... in the order the header states: acc = acc + p.
static void add_into(float *acc, const float *p, int64_t n) {
  for (int64_t k = 0; k < n; k++) acc[k] = acc[k] + p[k];
}

RtStatus rt_comm_sum_fixed(RtComm *c, const float *const *parts, int nparts, float *out, int64_t n, char *err,
                           size_t errlen) {
  double t0 = now_s();
  int r = rt_comm_rank(c), size = rt_comm_size(c);
  RtStatus st = RT_OK;
  for (int64_t off = 0; off < n && st == RT_OK; off += CHUNK) {
    int64_t m = n - off < CHUNK ? n - off : CHUNK;
    float *acc = out + off;
    int first = 0;
    if (r == 0) {
      if (acc != parts[0] + off) memcpy(acc, parts[0] + off, sizeof(float) * (size_t)m);
      first = 1;
    } else if (c->ops->recv(c, acc, (int64_t)sizeof(float) * m, r - 1) != RT_OK) {
      st = failed(c, "receiving the partial gradient sum", err, errlen);
      break;
    }
    for (int k = first; k < nparts; k++) add_into(acc, parts[k] + off, m);
    if (r + 1 < size && c->ops->send(c, acc, (int64_t)sizeof(float) * m, r + 1) != RT_OK)
      st = failed(c, "sending the partial gradient sum", err, errlen);
  }
  if (st == RT_OK && size > 1 && c->ops->broadcast(c, out, (int64_t)sizeof(float) * n, size - 1) != RT_OK)
    st = failed(c, "broadcasting the gradient sum", err, errlen);
  if (c) c->wait_s += now_s() - t0;
  return st;
}

RtStatus rt_comm_broadcast(RtComm *c, void *buf, int64_t bytes, int root, char *err, size_t errlen) {
  if (rt_comm_size(c) == 1) return RT_OK;
  double t0 = now_s();
  RtStatus st = c->ops->broadcast(c, buf, bytes, root);
  c->wait_s += now_s() - t0;
  return st == RT_OK ? RT_OK : failed(c, "a broadcast", err, errlen);
}

RtStatus rt_comm_allgather(RtComm *c, const void *mine, void *all, int64_t bytes, char *err, size_t errlen) {
  int size = rt_comm_size(c);
  memcpy((char *)all + (size_t)(rt_comm_rank(c) * bytes), mine, (size_t)bytes);
  for (int r = 0; r < size && size > 1; r++)
    if (rt_comm_broadcast(c, (char *)all + (size_t)(r * bytes), bytes, r, err, errlen) != RT_OK) return RT_ERR_IO;
  return RT_OK;
}

RtStatus rt_comm_barrier(RtComm *c, char *err, size_t errlen) {
  if (rt_comm_size(c) == 1) return RT_OK;
  double t0 = now_s();
  RtStatus st = c->ops->barrier(c);
  c->wait_s += now_s() - t0;
  return st == RT_OK ? RT_OK : failed(c, "a barrier", err, errlen);
}

// ---- one process ----

static const RtCommOps single_ops = {.name = "single process"};

RtComm *rt_comm_single(void) {
  RtComm *c = calloc(1, sizeof *c);
  if (c) *c = (RtComm){.ops = &single_ops, .rank = 0, .size = 1};
  return c;
}

int rt_comm_launcher_size(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    if (v && atoi(v) > 1) return atoi(v);
  }
  return 1;
}
