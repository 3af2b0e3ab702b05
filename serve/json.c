// serve/json.c: the completions request as JSON (cJSON) -> SrvParams,
// validated field by field (serve.h, "json.c"); UTF-8 checks and error
// bodies. No HTTP here: server.c calls these with a request's body. Unknown
// fields are ignored (as OpenAI's and llama.cpp's servers do); fields heed
// does not implement with a non-default value (n > 1, echo, logprobs,
// best_of > 1, suffix) are a 400 that says so, never silently ignored.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int bad(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return 400;
}

bool srv_utf8_valid(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    unsigned c = u[i];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || i + n > len || (n == 2 && c < 0xC2) || (n == 4 && c > 0xF4)) return false;
    for (size_t k = 1; k < n; k++)
      if ((u[i + k] & 0xC0) != 0x80) return false;
    if (n == 3 && ((c == 0xE0 && u[i + 1] < 0xA0) || (c == 0xED && u[i + 1] >= 0xA0))) return false;  // overlong, surrogate
    if (n == 4 && ((c == 0xF0 && u[i + 1] < 0x90) || (c == 0xF4 && u[i + 1] >= 0x90))) return false;
    i += n;
  }
  return true;
}

size_t srv_utf8_complete(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t back = 1; back <= 3 && back <= len; back++) {  // a lead byte among the last 3 whose sequence is longer
    unsigned c = u[len - back];
    if ((c & 0xC0) == 0x80) continue;
    size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return n > back ? len - back : len;
  }
  return len;
}

char *srv_error_json(int status, const char *message) {
  const char *type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                     : status == 413 ? "request_too_large" : status == 503 ? "unavailable_error"
                     : status == 504 ? "timeout_error" : status >= 500 ? "server_error" : "invalid_request_error";
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  char *s = NULL;
  if (e && cJSON_AddStringToObject(e, "message", message) && cJSON_AddStringToObject(e, "type", type) &&
      cJSON_AddNumberToObject(e, "code", status))
    s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

void srv_params_free(SrvParams *p) {
  free(p->ids);
  for (int i = 0; i < p->nstop; i++) free(p->stop[i]);
  *p = (SrvParams){0};
}

// An integer field: absent or null keeps *v; else a number with an integer value in [lo, hi].
static int int_field(const cJSON *o, const char *name, int64_t lo, int64_t hi, int64_t *v, char *err, size_t errlen) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!f || cJSON_IsNull(f)) return 0;
  double d = cJSON_IsNumber(f) ? f->valuedouble : NAN;
  if (!cJSON_IsNumber(f) || d != floor(d))
    return bad(err, errlen, "'%s' must be an integer", name);
  if (!(d >= (double)lo && d <= (double)hi))
    return bad(err, errlen, "'%s' must be between %lld and %lld, got %.17g", name, (long long)lo, (long long)hi, d);
  *v = (int64_t)d;
  return 0;
}

static int num_field(const cJSON *o, const char *name, double lo, double hi, bool lo_open, double *v, char *err,
                     size_t errlen) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!f || cJSON_IsNull(f)) return 0;
  if (!cJSON_IsNumber(f)) return bad(err, errlen, "'%s' must be a number", name);
  double d = f->valuedouble;
  if (!(d >= lo && d <= hi) || (lo_open && d == lo))
    return bad(err, errlen, "'%s' must be in %s%g, %g], got %g", name, lo_open ? "(" : "[", lo, hi, d);
  *v = d;
  return 0;
}

// prompt: a string, token ids, or a list holding one of those.
static int parse_prompt(const cJSON *f, const SrvOpts *o, int64_t vocab, SrvParams *p, char *err, size_t errlen) {
  if (cJSON_IsArray(f) && cJSON_GetArraySize(f) == 1 && !cJSON_IsNumber(cJSON_GetArrayItem(f, 0)))
    f = cJSON_GetArrayItem(f, 0);
  if (cJSON_IsString(f)) {
    char msg[256];
    if (rt_tok_encode(o->tk, f->valuestring, strlen(f->valuestring), &p->ids, &p->n_prompt, msg, sizeof msg) != RT_OK)
      return bad(err, errlen, "'prompt': %s", msg);
  } else if (cJSON_IsArray(f)) {
    int n = cJSON_GetArraySize(f);
    if (n && cJSON_IsArray(cJSON_GetArrayItem(f, 0)))
      return bad(err, errlen, "'prompt': one prompt per request (n = 1 and no batches of prompts in this version)");
    if (!(p->ids = malloc(sizeof(int32_t) * ((size_t)n + 1)))) return bad(err, errlen, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, f) {
      double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
      if (!cJSON_IsNumber(it) && cJSON_IsString(it))
        return bad(err, errlen, "'prompt': one prompt per request (a list of %d strings)", n);
      if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= (double)vocab)
        return bad(err, errlen, "'prompt': token ids must be integers in [0, %lld)", (long long)vocab);
      p->ids[p->n_prompt++] = (int32_t)d;
    }
  } else {
    return bad(err, errlen, "'prompt' must be a string or a list of token ids");
  }
  if (p->n_prompt == 0) return bad(err, errlen, "'prompt' is empty: at least one token is needed");
  for (int64_t i = 0; i < p->n_prompt; i++)
    if (p->ids[i] >= vocab)
      return bad(err, errlen, "'prompt': token %lld (id %d) is outside the model's vocabulary of %lld", (long long)i,
                 (int)p->ids[i], (long long)vocab);
  return 0;
}

static int parse_stop(const cJSON *f, SrvParams *p, char *err, size_t errlen) {
  if (!f || cJSON_IsNull(f)) return 0;
  if (cJSON_IsString(f)) {
    if (!*f->valuestring) return bad(err, errlen, "'stop' strings must not be empty");
    return (p->stop[p->nstop++] = strdup(f->valuestring)) ? 0 : bad(err, errlen, "out of memory");
  }
  if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) > 4)
    return bad(err, errlen, "'stop' must be a string or a list of at most 4 strings");
  const cJSON *it;
  cJSON_ArrayForEach(it, f) {
    if (!cJSON_IsString(it) || !*it->valuestring) return bad(err, errlen, "'stop' must hold non-empty strings");
    if (!(p->stop[p->nstop++] = strdup(it->valuestring))) return bad(err, errlen, "out of memory");
  }
  return 0;
}

// Fields heed does not implement: accepted only with their default value.
static int unsupported(const cJSON *o, char *err, size_t errlen) {
  const cJSON *f;
  if ((f = cJSON_GetObjectItemCaseSensitive(o, "n")) && !cJSON_IsNull(f) && !(cJSON_IsNumber(f) && f->valuedouble == 1))
    return bad(err, errlen, "'n' other than 1 is not available in this version of heed serve");
  if ((f = cJSON_GetObjectItemCaseSensitive(o, "best_of")) && !cJSON_IsNull(f) && !(cJSON_IsNumber(f) && f->valuedouble == 1))
    return bad(err, errlen, "'best_of' other than 1 is not available in this version of heed serve");
  if ((f = cJSON_GetObjectItemCaseSensitive(o, "echo")) && !cJSON_IsNull(f) && !cJSON_IsFalse(f))
    return bad(err, errlen, "'echo' is not available in this version of heed serve");
  if ((f = cJSON_GetObjectItemCaseSensitive(o, "logprobs")) && !cJSON_IsNull(f) && !cJSON_IsFalse(f))
    return bad(err, errlen, "'logprobs' is not available in this version of heed serve");
  if ((f = cJSON_GetObjectItemCaseSensitive(o, "suffix")) && !cJSON_IsNull(f))
    return bad(err, errlen, "'suffix' is not available in this version of heed serve");
  return 0;
}

static int parse_fields(const cJSON *o, const SrvOpts *so, int64_t vocab, int64_t window, SrvParams *p, char *err,
                        size_t errlen) {
  int rc;
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "prompt");
  if (!f) return bad(err, errlen, "'prompt' is required");
  if ((rc = unsupported(o, err, errlen)) || (rc = parse_prompt(f, so, vocab, p, err, errlen))) return rc;
  int64_t v = -1;  // truncate_prompt_tokens (vLLM's): keep the prompt's last v tokens
  if ((rc = int_field(o, "truncate_prompt_tokens", 1, INT64_MAX / 2, &v, err, errlen))) return rc;
  if (v > 0 && p->n_prompt > v) {
    memmove(p->ids, p->ids + p->n_prompt - v, sizeof(int32_t) * (size_t)v);
    p->n_prompt = v;
  }
  if (p->n_prompt > window)
    return bad(err, errlen, "the prompt has %lld tokens; the context holds %lld (truncate_prompt_tokens keeps the "
               "last N)", (long long)p->n_prompt, (long long)window);
  v = -1;
  p->max_tokens = so->max_tokens < 16 ? so->max_tokens : 16;  // OpenAI's default
  p->sample = (RtSampleOpts){.temperature = 1, .top_p = 1, .seed = so->seed};
  if ((rc = int_field(o, "max_tokens", 1, so->max_tokens, &p->max_tokens, err, errlen)) ||
      (rc = num_field(o, "temperature", 0, 100, false, &p->sample.temperature, err, errlen)) ||
      (rc = num_field(o, "top_p", 0, 1, true, &p->sample.top_p, err, errlen)) ||
      (rc = int_field(o, "top_k", -1, 1000000000, &v, err, errlen)))
    return rc;
  p->sample.top_k = v > 0 ? v : 0;  // -1 or 0: off (vLLM's and llama.cpp's conventions)
  int64_t seed = -1;
  if ((rc = int_field(o, "seed", 0, INT64_MAX / 2, &seed, err, errlen))) return rc;
  if (seed >= 0) p->sample.seed = (uint64_t)seed;
  if ((rc = parse_stop(cJSON_GetObjectItemCaseSensitive(o, "stop"), p, err, errlen))) return rc;
  if ((f = cJSON_GetObjectItemCaseSensitive(o, "stream")) && !cJSON_IsNull(f)) {
    if (!cJSON_IsBool(f)) return bad(err, errlen, "'stream' must be true or false");
    p->stream = cJSON_IsTrue(f);
  }
  const cJSON *so2 = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
  if (so2 && !cJSON_IsNull(so2)) {
    if (!cJSON_IsObject(so2)) return bad(err, errlen, "'stream_options' must be an object");
    f = cJSON_GetObjectItemCaseSensitive(so2, "include_usage");
    if (f && !cJSON_IsNull(f) && !cJSON_IsBool(f)) return bad(err, errlen, "'include_usage' must be true or false");
    p->usage_in_stream = f && cJSON_IsTrue(f);
  }
  return 0;
}

// Does the body escape a NUL ("\u0000") in a string? cJSON would cut the
// string there, so the prompt would silently lose its tail.
static bool escapes_nul(const char *s, size_t len) {
  for (size_t i = 0; i + 6 <= len; i++) {
    if (memcmp(s + i, "\\u0000", 6)) continue;
    size_t back = 0;
    while (back < i && s[i - 1 - back] == '\\') back++;
    if (back % 2 == 0) return true;  // the backslash is not itself escaped
  }
  return false;
}

int srv_parse_completion(const char *body, size_t len, const SrvOpts *o, int64_t vocab, int64_t window, SrvParams *p,
                         char *err, size_t errlen) {
  *p = (SrvParams){0};
  if (!srv_utf8_valid(body, len)) return bad(err, errlen, "the request body is not valid UTF-8");
  if (escapes_nul(body, len)) return bad(err, errlen, "a string holds a NUL character (\\u0000): not supported");
  const char *end = NULL;
  cJSON *j = memchr(body, 0, len) ? NULL : cJSON_ParseWithOpts(body, &end, true);  // body[len] is 0
  if (!j) {
    size_t at = end && end >= body ? (size_t)(end - body) : 0;
    return bad(err, errlen, "the request body is not valid JSON (near byte %zu)", at);
  }
  int rc = cJSON_IsObject(j) ? parse_fields(j, o, vocab, window, p, err, errlen)
                             : bad(err, errlen, "the request body must be a JSON object");
  cJSON_Delete(j);
  if (rc) srv_params_free(p);
  return rc;
}
