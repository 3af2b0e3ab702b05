// runtime/threads.c: the thread pool that compiled code (JIT or AOT) calls
// for its parallel loops, at the end of the data flow with the rest of the
// runtime. A job is (fn, ctx, n_tasks), published under the mutex with a
// new generation number. Between jobs a worker first spins on the
// generation for a short while (compiled code calls the pool hundreds of
// times per forward, often a millisecond apart: waking a sleeping thread
// costs tens of microseconds or more on a VM), then sleeps on a condition
// variable. Tasks are claimed one at a time from a shared counter by the
// caller and by the workers that join the job while it is open, so a
// worker that is asleep, or not scheduled because other processes hold
// the cores, never holds the caller up: the caller runs what is left. Once
// every task is claimed the caller closes the job (no worker joins after)
// and waits for the workers still running theirs. Which thread runs a task
// depends on timing; what a task computes must depend on its index only
// (the generated code's tasks do; thread is unique among the threads
// running at once, for per-thread scratch).
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "runtime/rt.h"

typedef struct {
  RtPool *pool;
  int id;  // 1 .. n-1 (the caller is thread 0)
} Worker;

struct RtPool {
  int n;                  // threads, the caller included
  pthread_t *tid;         // n - 1 workers
  Worker *w;
  pthread_mutex_t mu;     // guards gen, open, fn, ctx, n_tasks and joining
  pthread_cond_t wake;    // a new job or shutdown
  pthread_cond_t done;    // active reached 0
  pthread_mutex_t call;   // one rt_parallel_for at a time
  _Atomic uint64_t gen;   // job generation (written under mu)
  _Atomic int64_t next;   // the next task to claim
  _Atomic int active;     // workers that joined the job and have not left it
  _Atomic bool stop;
  bool open;              // workers may still join the job
  RtTaskFn fn;
  void *ctx;
  int64_t n_tasks;
};

// Claims and runs tasks until none is left.
static void run_tasks(RtPool *p, RtTaskFn fn, void *ctx, int64_t n_tasks, int t) {
  for (;;) {
    int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
    if (i >= n_tasks)
      break;
    fn(ctx, i, t);
  }
}

enum { SPIN = 1 << 15 };  // polls before sleeping (~0.1-0.3 ms)

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg) {
  Worker *w = arg;
  RtPool *p = w->pool;
  uint64_t seen = 0;
  for (;;) {
    for (int i = 0; i < SPIN && atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
                    !atomic_load_explicit(&p->stop, memory_order_relaxed); i++)
      relax();
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->gen == seen)
      pthread_cond_wait(&p->wake, &p->mu);
    bool stop = p->stop, join = p->open;
    seen = p->gen;
    RtTaskFn fn = p->fn;
    void *ctx = p->ctx;
    int64_t n_tasks = p->n_tasks;
    if (join)
      atomic_fetch_add_explicit(&p->active, 1, memory_order_relaxed);
    pthread_mutex_unlock(&p->mu);
    if (stop)
      break;
    if (!join)  // the caller already ran the whole job
      continue;
    run_tasks(p, fn, ctx, n_tasks, w->id);
    if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&p->mu);  // the caller may be asleep on done
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return NULL;
}

RtPool *rt_pool_new(int nthreads) {
  if (nthreads < 1)
    return NULL;
  RtPool *p = rt_calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->n = nthreads;
  p->tid = rt_calloc((size_t)nthreads, sizeof *p->tid);
  p->w = rt_calloc((size_t)nthreads, sizeof *p->w);
  if (!p->tid || !p->w) {
    rt_free(p->tid);
    rt_free(p->w);
    rt_free(p);
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->call, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  for (int i = 1; i < nthreads; i++) {
    p->w[i] = (Worker){p, i};
    if (pthread_create(&p->tid[i], NULL, worker_main, &p->w[i]) != 0) {
      p->n = i;  // join the ones that started
      rt_pool_free(p);
      return NULL;
    }
  }
  return p;
}

void rt_pool_free(RtPool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++)
    pthread_join(p->tid[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->call);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  rt_free(p->tid);
  rt_free(p->w);
  rt_free(p);
}

int rt_pool_size(const RtPool *p) { return p ? p->n : 1; }

void rt_parallel_for(RtPool *p, int64_t n_tasks, RtTaskFn fn, void *ctx) {
  if (n_tasks <= 0)
    return;
  if (!p || p->n == 1 || n_tasks == 1) {  // all on the caller
    for (int64_t i = 0; i < n_tasks; i++)
      fn(ctx, i, 0);
    return;
  }
  pthread_mutex_lock(&p->call);
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->ctx = ctx;
  p->n_tasks = n_tasks;
  p->next = 0;
  p->open = true;
  p->gen++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  run_tasks(p, fn, ctx, n_tasks, 0);
  pthread_mutex_lock(&p->mu);  // every task is claimed: no one joins now
  p->open = false;
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < SPIN && atomic_load_explicit(&p->active, memory_order_acquire) > 0; i++)
    relax();
  pthread_mutex_lock(&p->mu);
  while (p->active > 0)
    pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_unlock(&p->call);
}
