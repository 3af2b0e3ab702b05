// serve/sched.c: heed serve's scheduler (serve.h): the request queue, the
// slots and the step loop that srv_serve runs on its own thread, plus the
// metrics and the access log. Continuous batching: every step admits
// queued requests into free slots (a prefill), then gives each running
// slot one token (sample -> publish -> decode); a request that finishes,
// times out or loses its client frees its slot for the next step. A slot's
// sequence follows rt_generate's loop exactly (runtime/generate.c: the same
// sampler and RNG stream, the same window shift), so a request gives the
// tokens `heed generate` prints, whatever else is running.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

SrvServer *srv_new(const SrvOpts *o) {
  SrvServer *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->o = *o;
  s->started = time(NULL);
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv_work, &ca);
  pthread_cond_init(&s->cv_out, &ca);
  pthread_condattr_destroy(&ca);
  return s;
}

static void req_free(SrvReq *r) {
  srv_params_free(&r->p);
  free(r->text);
  free(r->toks);
  free(r);
}

void srv_free(SrvServer *s) {
  if (!s) return;
  for (SrvReq *r = s->qhead, *n; r; r = n) n = r->next, req_free(r);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv_work);
  pthread_cond_destroy(&s->cv_out);
  free(s);
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, double seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double t = (double)ts.tv_nsec * 1e-9 + seconds;
  ts.tv_sec += (time_t)t;
  ts.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
  pthread_cond_timedwait(cv, mu, &ts);
}

void srv_wait_out(SrvServer *s, double seconds) { timed_wait(&s->cv_out, &s->mu, seconds); }

void srv_conn_count(SrvServer *s, int delta) {
  pthread_mutex_lock(&s->mu);
  s->conns += delta;
  pthread_cond_broadcast(&s->cv_out);
  pthread_mutex_unlock(&s->mu);
}

int srv_submit(SrvServer *s, SrvParams *p, SrvReq **out) {
  *out = NULL;
  SrvReq *r = calloc(1, sizeof *r);
  if (!r) return srv_params_free(p), 500;
  size_t hold = 0;
  for (int i = 0; i < p->nstop; i++)
    if (strlen(p->stop[i]) > hold) hold = strlen(p->stop[i]);
  *r = (SrvReq){.p = *p, .refs = 2, .t_arrive = now_s(), .created = time(NULL), .stop_hold = hold ? hold - 1 : 0};
  *p = (SrvParams){0};
  pthread_mutex_lock(&s->mu);
  int free_slots = s->m ? s->m->nslots - s->busy : 0;  // a request for a free slot waits only for the next step
  if (s->qlen >= s->o.queue + (free_slots > 0 ? free_slots : 0)) {
    pthread_mutex_unlock(&s->mu);
    req_free(r);
    return 503;
  }
  snprintf(r->id, sizeof r->id, "cmpl-heed-%llu", (unsigned long long)++s->next_id);
  if (s->qtail) s->qtail->next = r;
  else s->qhead = r;
  s->qtail = r;
  s->qlen++;
  pthread_cond_signal(&s->cv_work);
  pthread_mutex_unlock(&s->mu);
  *out = r;
  return 0;
}

void srv_release(SrvServer *s, SrvReq *r, bool client) {
  if (client) pthread_mutex_lock(&s->mu);
  if (client && r->state != RQ_DONE) r->cancel = true;  // the connection closed first
  bool last = --r->refs == 0;
  if (client) pthread_mutex_unlock(&s->mu);
  if (last) req_free(r);
}

size_t srv_sendable(const SrvReq *r) {
  if (r->state == RQ_DONE) return r->len;
  return srv_utf8_complete(r->text, r->len > r->stop_hold ? r->len - r->stop_hold : 0);
}

char *srv_text_json(const char *text, size_t len) {
  char *o = malloc(len * 3 + 1), *w = o;
  if (!o) return NULL;
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)text[i];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (c && n && i + n <= len && srv_utf8_valid(text + i, n)) {
      memcpy(w, text + i, n), w += n, i += n;
    } else {  // U+FFFD for a byte that starts no valid sequence (and for NUL, which a C string cannot hold)
      memcpy(w, "\xEF\xBF\xBD", 3), w += 3, i++;
    }
  }
  *w = 0;
  return o;
}

// ---- metrics ----

static const double ttft_le[SRV_NBUCKET] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double tpot_le[SRV_NBUCKET] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

static void observe(SrvHist *h, const double *le, double v) {
  int b = 0;
  while (b < SRV_NBUCKET && v > le[b]) b++;
  h->count[b]++;
  h->sum += v;
}

static void print_hist(FILE *f, const char *name, const char *help, const SrvHist *h, const double *le) {
  fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t acc = 0;
  for (int b = 0; b < SRV_NBUCKET; b++) {
    acc += h->count[b];
    fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, le[b], (unsigned long long)acc);
  }
  acc += h->count[SRV_NBUCKET];
  fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)acc, name, h->sum,
          name, (unsigned long long)acc);
}

char *srv_metrics_text(SrvServer *s) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  pthread_mutex_lock(&s->mu);
  fprintf(f, "# HELP heed_requests_total HTTP requests answered, by status\n# TYPE heed_requests_total counter\n");
  for (int st = 100; st < 600; st++)
    if (s->by_status[st]) fprintf(f, "heed_requests_total{status=\"%d\"} %llu\n", st, (unsigned long long)s->by_status[st]);
  fprintf(f, "# HELP heed_prompt_tokens_total prompt tokens of the requests admitted\n# TYPE heed_prompt_tokens_total counter\n"
             "heed_prompt_tokens_total %llu\n", (unsigned long long)s->tokens_in);
  fprintf(f, "# HELP heed_completion_tokens_total tokens generated\n# TYPE heed_completion_tokens_total counter\n"
             "heed_completion_tokens_total %llu\n", (unsigned long long)s->tokens_out);
  fprintf(f, "# HELP heed_queue_depth requests waiting for a slot\n# TYPE heed_queue_depth gauge\nheed_queue_depth %d\n", s->qlen);
  fprintf(f, "# HELP heed_busy_slots slots running a request\n# TYPE heed_busy_slots gauge\nheed_busy_slots %d\n", s->busy);
  fprintf(f, "# HELP heed_busy_slots_max the most slots busy at once since the start\n# TYPE heed_busy_slots_max gauge\n"
             "heed_busy_slots_max %d\n", s->busy_max);
  fprintf(f, "# HELP heed_slots slots (--parallel)\n# TYPE heed_slots gauge\nheed_slots %d\n", s->m ? s->m->nslots : 0);
  print_hist(f, "heed_time_to_first_token_seconds", "from a request's arrival to its first token", &s->ttft, ttft_le);
  print_hist(f, "heed_token_latency_seconds", "between a request's consecutive tokens", &s->tpot, tpot_le);
  pthread_mutex_unlock(&s->mu);
  fclose(f);
  return buf;
}

void srv_access_log(SrvServer *s, const char *remote, const char *method, const char *path, int status, double seconds,
                    const SrvReq *r) {
  pthread_mutex_lock(&s->mu);
  if (status >= 100 && status < 600) s->by_status[status]++;
  cJSON *o = cJSON_CreateObject();
  char ts[32];
  time_t t = time(NULL);
  struct tm tm;
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
  cJSON_AddStringToObject(o, "time", ts);
  cJSON_AddStringToObject(o, "remote", remote);
  cJSON_AddStringToObject(o, "method", method);
  cJSON_AddStringToObject(o, "path", path);
  cJSON_AddNumberToObject(o, "status", status);
  cJSON_AddNumberToObject(o, "ms", (double)(int64_t)(seconds * 1e4) / 10);
  if (r) {
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddBoolToObject(o, "stream", r->p.stream);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)r->p.n_prompt);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)r->ntok);
    if (r->finish && !r->err_status) cJSON_AddStringToObject(o, "finish_reason", r->finish);
  }
  char *line = cJSON_PrintUnformatted(o);
  if (line) fprintf(stderr, "%s\n", line);
  free(line);
  cJSON_Delete(o);
  pthread_mutex_unlock(&s->mu);
}

// ---- the step loop ----

typedef struct {
  SrvReq *r;
  float *logits;
  int32_t *hist;  // the tokens the slot's cache holds
  int64_t len;
  RtRng rng;
  bool fresh;     // admitted, not prefilled yet
} Slot;

// The lock held: r is done (with an error if status); the scheduler lets go of it.
static void finish(SrvServer *s, SrvReq *r, int status, const char *msg) {
  if (status) {
    r->err_status = status;
    snprintf(r->err, sizeof r->err, "%s", msg);
  }
  r->state = RQ_DONE;
  pthread_cond_broadcast(&s->cv_out);
  srv_release(s, r, false);
}

// The lock held: appends tok's bytes; true when r is finished (max_tokens or a stop string).
static bool publish(SrvServer *s, SrvReq *r, int32_t tok) {
  size_t n = 0;
  const char *b = rt_tok_decode(s->o.tk, tok, &n);
  if (!b) n = 0;
  if (r->len + n + 1 > r->cap) {
    size_t cap = (r->len + n + 1) * 2;
    char *t = realloc(r->text, cap);
    if (!t) return finish(s, r, 500, "out of memory"), true;
    r->text = t, r->cap = cap;
  }
  int32_t *ids = realloc(r->toks, sizeof(int32_t) * (size_t)(r->ntok + 1));
  if (!ids) return finish(s, r, 500, "out of memory"), true;
  r->toks = ids, r->toks[r->ntok++] = tok;
  memcpy(r->text + r->len, b ? b : "", n);
  size_t from = r->len > r->stop_hold ? r->len - r->stop_hold : 0;
  r->len += n;
  r->text[r->len] = 0;
  double t = now_s();
  if (r->ntok == 1) observe(&s->ttft, ttft_le, t - r->t_arrive);
  else observe(&s->tpot, tpot_le, t - r->t_last);
  r->t_last = t;
  s->tokens_out++;
  for (int i = 0; i < r->p.nstop; i++) {
    size_t k = strlen(r->p.stop[i]);
    for (size_t at = from; at + k <= r->len; at++)
      if (!memcmp(r->text + at, r->p.stop[i], k)) {
        r->len = at, r->finish = "stop";
        return finish(s, r, 0, NULL), true;
      }
  }
  if (r->ntok >= r->p.max_tokens) return r->finish = "length", finish(s, r, 0, NULL), true;
  pthread_cond_broadcast(&s->cv_out);
  return false;
}

// One token for slot i (its prefill first when new): rt_generate's loop, one turn.
static void step(SrvServer *s, const SrvModel *m, Slot *sl, int i, void *scratch) {
  SrvReq *r = sl->r;
  int bad = 0;
  if (sl->fresh) {
    sl->fresh = false;
    memcpy(sl->hist, r->p.ids, sizeof(int32_t) * (size_t)r->p.n_prompt);
    sl->len = r->p.n_prompt;
    rt_rng_seed(&sl->rng, r->p.sample.seed);
    bad = m->prefill(m->ud, i, r->p.ids, r->p.n_prompt, sl->logits);
  }
  int32_t tok = bad ? -1 : rt_sample(sl->logits, m->vocab, &r->p.sample, &sl->rng, scratch);
  pthread_mutex_lock(&s->mu);
  bool done = bad || tok < 0;
  if (done) finish(s, r, 500, bad ? "the model failed (see the server's log)" : "sampling failed");
  else done = publish(s, r, tok);
  pthread_mutex_unlock(&s->mu);
  if (done) {
    sl->r = NULL;
    return;
  }
  if (sl->len >= m->window) {  // the window is full: keep its last half (rt_generate's shift)
    int64_t keep = rt_gen_keep(m->window);
    memmove(sl->hist, sl->hist + sl->len - (keep - 1), sizeof(int32_t) * (size_t)(keep - 1));
    sl->hist[keep - 1] = tok;
    sl->len = keep;
    bad = m->prefill(m->ud, i, sl->hist, keep, sl->logits);
  } else {
    sl->hist[sl->len] = tok;
    bad = m->decode(m->ud, i, tok, sl->len++, sl->logits);
  }
  if (bad) {
    pthread_mutex_lock(&s->mu);
    finish(s, r, 500, "the model failed (see the server's log)");
    pthread_mutex_unlock(&s->mu);
    sl->r = NULL;
  }
}

// The lock held: drops cancelled and timed-out requests (queued or running)
// and, past the grace period of a stop, all; then fills free slots.
static void admit(SrvServer *s, Slot *sl, int n, bool cut) {
  double now = now_s();
  char msg[160];
  snprintf(msg, sizeof msg, "the request took longer than the server's timeout of %g s", s->o.timeout_s);
  for (int i = 0; i < n; i++) {
    SrvReq *r = sl[i].r;
    if (!r || !(r->cancel || cut || now - r->t_arrive > s->o.timeout_s)) continue;
    finish(s, r, r->cancel ? 499 : cut ? 503 : 504, cut ? "the server stopped before the request finished" : msg);
    sl[i].r = NULL;
  }
  for (SrvReq **pp = &s->qhead; *pp;) {
    SrvReq *r = *pp;
    if (!(r->cancel || cut || now - r->t_arrive > s->o.timeout_s)) {
      pp = &r->next;
      continue;
    }
    *pp = r->next, s->qlen--;
    finish(s, r, r->cancel ? 499 : cut ? 503 : 504, cut ? "the server stopped before the request started" : msg);
  }
  s->qtail = NULL;
  for (SrvReq *r = s->qhead; r; r = r->next) s->qtail = r;
  s->busy = 0;
  for (int i = 0; i < n; i++) {
    if (!sl[i].r && s->qhead) {
      SrvReq *r = s->qhead;
      s->qhead = r->next, s->qlen--;
      if (!s->qhead) s->qtail = NULL;
      r->next = NULL, r->state = RQ_RUNNING;
      s->tokens_in += (uint64_t)r->p.n_prompt;
      sl[i].r = r, sl[i].fresh = true;
    }
    s->busy += sl[i].r != NULL;
  }
  if (s->busy > s->busy_max) s->busy_max = s->busy;
}

static void slots_free(Slot *sl, int n) {
  for (int i = 0; sl && i < n; i++) free(sl[i].logits), free(sl[i].hist);
  free(sl);
}

int srv_serve(SrvServer *s, const SrvModel *m, volatile sig_atomic_t *stop, char *err, size_t errlen) {
  Slot *sl = calloc((size_t)m->nslots, sizeof *sl);
  void *scratch = malloc(rt_sample_scratch_bytes(m->vocab));
  bool ok = sl && scratch;
  for (int i = 0; ok && i < m->nslots; i++)
    ok = (sl[i].logits = malloc(sizeof(float) * (size_t)m->vocab)) && (sl[i].hist = malloc(sizeof(int32_t) * (size_t)m->window));
  if (!ok) {
    slots_free(sl, m->nslots), free(scratch);
    return snprintf(err, errlen, "out of memory for %d slots", m->nslots), RT_ERR_NOMEM;
  }
  pthread_mutex_lock(&s->mu);
  s->m = m, s->ready = true;
  double deadline = 0;
  for (;;) {
    if (*stop && !s->draining) {  // stop accepting; in-flight and queued requests get the grace period
      s->draining = true;
      deadline = now_s() + s->o.grace_s;
      pthread_mutex_unlock(&s->mu);
      srv_quiesce(s);
      pthread_mutex_lock(&s->mu);
    }
    admit(s, sl, m->nslots, s->draining && now_s() >= deadline);
    if (!s->busy) {
      if (s->draining && !s->qlen) break;
      timed_wait(&s->cv_work, &s->mu, 0.05);
      continue;
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < m->nslots; i++)
      if (sl[i].r) step(s, m, &sl[i], i, scratch);
    pthread_mutex_lock(&s->mu);
  }
  for (double t0 = now_s(); s->conns > 0 && now_s() - t0 < 5;) timed_wait(&s->cv_out, &s->mu, 0.05);  // responses out
  pthread_mutex_unlock(&s->mu);
  slots_free(sl, m->nslots), free(scratch);
  return RT_OK;
}
