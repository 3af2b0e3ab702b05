// serve/server.c: the HTTP side of heed serve (serve.h): libmicrohttpd
// with a thread per connection, routes, API key, body limit, JSON and SSE
// responses, Prometheus metrics and the access log. A completion becomes
// an SrvReq on the scheduler's queue (sched.c); the connection's thread
// waits on it (and on its socket: a client that hangs up cancels it).
//
//   POST /v1/completions  -> 200 JSON | 200 text/event-stream | 400 | 401 | 413 | 503 | 504
//   GET  /v1/models, /health, /metrics
#define _GNU_SOURCE  // POLLRDHUP
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve.h"

typedef struct {
  SrvServer *s;
  struct MHD_Connection *conn;
  char *body;
  size_t len, cap;
  bool big;        // the body passed --max-body (a chunked one: read on, discarded, then 413)
  size_t skipped;
  int status;
  double t0;
  char method[8], path[128], remote[64];
  SrvReq *r;       // a completion's request (one reference)
  char *pending;   // SSE: bytes not yet handed to MHD
  size_t plen, poff;
  size_t sent;     // SSE: text bytes sent
  int64_t tsent;   // SSE: token ids sent
  bool ended;
} Conn;

bool srv_is_loopback(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  if (!strcmp(host, "localhost")) return true;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

// ---- responses ----

static enum MHD_Result send_text(Conn *c, int status, const char *type, char *text, const char *retry) {
  struct MHD_Response *r = text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE) : NULL;
  if (!r) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  if (retry) MHD_add_response_header(r, "Retry-After", retry);
  if (status == 405) MHD_add_response_header(r, "Allow", !strcmp(c->path, "/v1/completions") ? "POST" : "GET");
  if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
  c->status = status;
  enum MHD_Result ok = MHD_queue_response(c->conn, (unsigned)status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result send_error(Conn *c, int status, const char *msg, const char *retry) {
  return send_text(c, status, "application/json", srv_error_json(status, msg), retry);
}

static enum MHD_Result send_json(Conn *c, int status, cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s ? send_text(c, status, "application/json", s, NULL) : send_error(c, 500, "out of memory", NULL);
}

// Has the client closed its end? (It sent its whole request and waits.)
static bool client_gone(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci) return false;
  struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
  char b;
  return (p.revents & POLLIN) && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

// A completion object (or an SSE chunk: usage false); the ids r->toks[t0..t1)
// go into heed's extension field "token_ids" (t1 < 0: none).
static cJSON *completion_json(const SrvServer *s, const SrvReq *r, const char *text, size_t len, const char *finish,
                              bool usage, int64_t t0, int64_t t1) {
  cJSON *o = cJSON_CreateObject(), *ch = cJSON_AddArrayToObject(o, "choices"), *c0 = cJSON_CreateObject();
  char *t = srv_text_json(text, len);
  cJSON_AddStringToObject(o, "id", r->id);
  cJSON_AddStringToObject(o, "object", "text_completion");
  cJSON_AddNumberToObject(o, "created", (double)r->created);
  cJSON_AddStringToObject(o, "model", s->o.model_name);
  cJSON_AddItemToArray(ch, c0);
  cJSON_AddStringToObject(c0, "text", t ? t : "");
  cJSON_AddNumberToObject(c0, "index", 0);
  cJSON_AddNullToObject(c0, "logprobs");
  if (finish) cJSON_AddStringToObject(c0, "finish_reason", finish);
  else cJSON_AddNullToObject(c0, "finish_reason");
  if (!usage) {
    cJSON_AddNullToObject(o, "usage");
  } else {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->p.n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->ntok);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->p.n_prompt + r->ntok));
  }
  if (t1 >= 0) {  // heed's extension: the generated ids, as a client compares them with heed generate's
    cJSON *ids = cJSON_AddArrayToObject(c0, "token_ids");
    for (int64_t i = t0; ids && i < t1; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->toks[i]));
  }
  free(t);
  return o;
}

// ---- completions ----

// Waits (the lock held) for r to finish, or its client to go. false: gone.
static bool wait_done(Conn *c) {
  SrvServer *s = c->s;
  while (c->r->state != RQ_DONE) {
    srv_wait_out(s, 0.1);
    if (c->r->state != RQ_DONE && client_gone(c->conn)) {
      c->r->cancel = true;
      return false;
    }
  }
  return true;
}

static enum MHD_Result finish_plain(Conn *c) {
  SrvServer *s = c->s;
  pthread_mutex_lock(&s->mu);
  bool ok = wait_done(c);
  SrvReq *r = c->r;
  int st = r->err_status;
  char msg[256];
  snprintf(msg, sizeof msg, "%s", r->err);
  cJSON *o = ok && !st ? completion_json(s, r, r->text, r->len, r->finish, true, 0, r->ntok) : NULL;
  pthread_mutex_unlock(&s->mu);
  if (!ok) return c->status = 499, MHD_NO;  // nginx's "client closed request", for the log
  return st ? send_error(c, st, msg, st == 503 ? "1" : NULL) : send_json(c, 200, o);
}

// SSE: one "data: JSON\n\n" per chunk of new text; the last carries
// finish_reason (and usage if asked); then "data: [DONE]".
static void sse_add(Conn *c, cJSON *o, const char *raw) {
  char *j = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  const char *t = j ? j : raw;
  size_t n = strlen(t) + 9;
  char *p = realloc(c->pending, c->plen + n);
  if (p) {
    c->pending = p;
    c->plen += (size_t)snprintf(p + c->plen, n, "data: %s\n\n", t);
  }
  free(j);
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  Conn *c = cls;
  SrvServer *s = c->s;
  (void)pos;
  if (c->poff == c->plen) {
    if (c->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    c->plen = c->poff = 0;
    pthread_mutex_lock(&s->mu);
    SrvReq *r = c->r;
    while (r->state != RQ_DONE && srv_sendable(r) <= c->sent && r->ntok <= c->tsent) {
      srv_wait_out(s, 0.1);
      if (r->state != RQ_DONE && client_gone(c->conn)) {
        r->cancel = true;
        c->status = 499;
        pthread_mutex_unlock(&s->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
      }
    }
    size_t end = r->state == RQ_DONE ? r->len : srv_sendable(r);
    bool done = r->state == RQ_DONE;
    if ((end > c->sent || r->ntok > c->tsent) && !r->err_status)  // a chunk per step: new text (maybe none) and ids
      sse_add(c, completion_json(s, r, r->text + c->sent, end - c->sent, NULL, false, c->tsent, r->ntok), NULL);
    c->sent = end, c->tsent = r->ntok;
    if (done && r->err_status) {
      char *e = srv_error_json(r->err_status, r->err);
      if (e) sse_add(c, NULL, e);
      free(e);
      c->status = r->err_status;
    } else if (done) {
      sse_add(c, completion_json(s, r, "", 0, r->finish, false, 0, -1), NULL);
      if (r->p.usage_in_stream) {
        cJSON *u = completion_json(s, r, "", 0, NULL, true, 0, -1);
        cJSON_DeleteItemFromObject(u, "choices");
        cJSON_AddArrayToObject(u, "choices");
        sse_add(c, u, NULL);
      }
    }
    if (done) sse_add(c, NULL, "[DONE]"), c->ended = true;
    pthread_mutex_unlock(&s->mu);
  }
  size_t n = c->plen - c->poff < max ? c->plen - c->poff : max;
  memcpy(buf, c->pending + c->poff, n);
  c->poff += n;
  return (ssize_t)n;
}

static enum MHD_Result start_stream(Conn *c) {
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_reader, c, NULL);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "text/event-stream");
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  c->status = 200;
  enum MHD_Result ok = MHD_queue_response(c->conn, 200, r);
  MHD_destroy_response(r);
  return ok;
}

// 413 at once (MHD then closes the connection without reading the rest).
static enum MHD_Result too_large(Conn *c) {
  char err[128];
  snprintf(err, sizeof err, "the request body is larger than %zu bytes", c->s->o.max_body);
  return send_error(c, 413, err, NULL);
}

static enum MHD_Result completions(Conn *c) {
  SrvServer *s = c->s;
  char err[512];
  if (!s->ready) return send_error(c, 503, "the model is loading", "1");
  if (s->draining) return send_error(c, 503, "the server is shutting down", NULL);
  if (c->big) return too_large(c);
  SrvParams p;
  int st = srv_parse_completion(c->body ? c->body : "", c->len, &s->o, s->m->vocab, s->m->window, &p, err, sizeof err);
  if (st) return send_error(c, st, err, NULL);
  int q = srv_submit(s, &p, &c->r);
  if (q == 503) return send_error(c, 503, "the queue is full; retry later", "1");
  if (q) return send_error(c, 500, "out of memory", NULL);
  return c->r->p.stream ? start_stream(c) : finish_plain(c);
}

// ---- the other routes ----

static enum MHD_Result models(Conn *c) {
  cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON_AddItemToArray(d, m);
  cJSON_AddStringToObject(m, "id", c->s->o.model_name);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", (double)c->s->started);
  cJSON_AddStringToObject(m, "owned_by", "heed");
  if (c->s->m) cJSON_AddNumberToObject(m, "context_length", (double)c->s->m->window);
  return send_json(c, 200, o);
}

static enum MHD_Result health(Conn *c) {
  cJSON *o = cJSON_CreateObject();
  bool ok = c->s->ready && !c->s->draining;
  cJSON_AddStringToObject(o, "status", c->s->draining ? "stopping" : ok ? "ok" : "loading");
  return send_json(c, ok ? 200 : 503, o);
}

static enum MHD_Result metrics(Conn *c) {
  char *t = srv_metrics_text(c->s);
  return t ? send_text(c, 200, "text/plain; version=0.0.4", t, NULL) : send_error(c, 500, "out of memory", NULL);
}

static bool authorized(Conn *c) {
  const char *key = c->s->o.api_key;
  if (!key || !strcmp(c->path, "/health")) return true;
  const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
  if (!h || strncmp(h, "Bearer ", 7)) return false;
  h += 7;
  size_t n = strlen(key), m = strlen(h);
  unsigned diff = n != m;
  for (size_t i = 0; i < n && i < m; i++) diff |= (unsigned)(key[i] ^ h[i]);  // no early exit
  return !diff;
}

static enum MHD_Result route(Conn *c) {
  bool get = !strcmp(c->method, "GET"), post = !strcmp(c->method, "POST");
  if (!authorized(c)) return send_error(c, 401, "a valid API key is needed (Authorization: Bearer KEY)", NULL);
  if (!strcmp(c->path, "/v1/completions")) return post ? completions(c) : send_error(c, 405, "use POST", NULL);
  if (!strcmp(c->path, "/v1/models") || !strcmp(c->path, "/health") || !strcmp(c->path, "/metrics")) {
    if (!get) return send_error(c, 405, "use GET", NULL);
    return c->path[1] == 'v' ? models(c) : c->path[1] == 'h' ? health(c) : metrics(c);
  }
  char msg[200];
  snprintf(msg, sizeof msg, "no route %.120s (POST /v1/completions, GET /v1/models, /health, /metrics)", c->path);
  return send_error(c, 404, msg, NULL);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **con_cls) {
  SrvServer *s = cls;
  Conn *c = *con_cls;
  (void)version;
  if (!c) {  // the headers: a Content-Length over the limit is answered before the body comes
    if (!(c = calloc(1, sizeof *c))) return MHD_NO;
    *c = (Conn){.s = s, .conn = conn, .t0 = now_s()};
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", url);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
      inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, c->remote, sizeof c->remote);
    else if (sa && sa->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, c->remote, sizeof c->remote);
    *con_cls = c;
    srv_conn_count(s, 1);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > s->o.max_body) return too_large(c);  // answered before the body is read
    return MHD_YES;
  }
  if (*size) {
    if (c->len + *size > s->o.max_body) c->big = true;
    if (c->big && (c->skipped += *size) > 4 * s->o.max_body) return MHD_NO;  // no more: the connection closes
    if (!c->big) {
      if (c->len + *size + 1 > c->cap) {
        size_t cap = (c->len + *size + 1) * 2;
        char *b = realloc(c->body, cap < s->o.max_body + 1 ? cap : s->o.max_body + 1);
        if (!b) return MHD_NO;
        c->body = b, c->cap = cap < s->o.max_body + 1 ? cap : s->o.max_body + 1;
      }
      memcpy(c->body + c->len, data, *size);
      c->len += *size;
      c->body[c->len] = 0;
    }
    *size = 0;
    return MHD_YES;
  }
  if (c->status) return MHD_YES;  // answered already
  return route(c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode code) {
  SrvServer *s = cls;
  Conn *c = *con_cls;
  (void)conn;
  if (!c) return;
  if (c->r && code != MHD_REQUEST_TERMINATED_COMPLETED_OK && c->status == 200) c->status = 499;
  srv_access_log(s, c->remote, c->method, c->path, c->status ? c->status : 499, now_s() - c->t0, c->r);
  if (c->r) srv_release(s, c->r, true);
  srv_conn_count(s, -1);
  free(c->body);
  free(c->pending);
  free(c);
  *con_cls = NULL;
}

int srv_open(const SrvOpts *o, SrvServer **out, char *err, size_t errlen) {
  SrvServer *s = srv_new(o);
  *out = NULL;
  if (!s) return snprintf(err, errlen, "out of memory"), RT_ERR_NOMEM;
  struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)o->port)};
  const char *host = !strcmp(o->host, "localhost") ? "127.0.0.1" : o->host;
  bool v6 = false;
  if (inet_pton(AF_INET, host, &a4.sin_addr) != 1) {
    if (inet_pton(AF_INET6, host, &a6.sin6_addr) != 1) {
      srv_free(s);
      return snprintf(err, errlen, "--host takes an IPv4 or IPv6 address (or localhost), not '%s'", o->host), RT_ERR_ARG;
    }
    v6 = true;
  }
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                   (v6 ? MHD_USE_IPv6 : 0);
  unsigned idle = (unsigned)(o->timeout_s + o->grace_s + 30);
  s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                          MHD_OPTION_SOCK_ADDR, v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->queue + 256),
                          MHD_OPTION_CONNECTION_TIMEOUT, idle, MHD_OPTION_END);
  if (!s->d) {
    int e = errno;
    srv_free(s);
    return snprintf(err, errlen, "cannot listen on %s port %d: %s", o->host, o->port, e ? strerror(e) : "libmicrohttpd failed"),
           RT_ERR_IO;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : o->port;
  *out = s;
  return RT_OK;
}

int srv_port(const SrvServer *s) { return s->port; }

// Stop accepting: the listening socket closes, open connections go on.
void srv_quiesce(SrvServer *s) {
  MHD_socket fd = s->d ? MHD_quiesce_daemon(s->d) : MHD_INVALID_SOCKET;
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

void srv_close(SrvServer *s) {
  if (!s) return;
  if (s->d) MHD_stop_daemon(s->d);
  srv_free(s);
}
