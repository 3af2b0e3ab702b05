// runtime/model.c: a compiled model outside heed, in a program or a library
// that `heed build` made. It sits at the very end of the data flow: the
// object code's entry heed_forward (codegen/compile.c), the description
// heed build wrote beside it (JSON: every node's dtype and dims as products
// of the symbolic sizes, which nodes are parameters and under what names,
// the token input, the logits output, vocab and context length, the CPU
// features the code was compiled for) and a safetensors image of the
// weights (embedded in the program, or a file it maps) -> logits.
//
// Nothing here runs generated code before rt_cpu_check has passed (the
// program calls it first), and every weights image is checked against the
// description (every parameter present with its dtype and shape, nothing
// else, data inside the file) before its bytes are used.
#include "runtime/rt.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { KIND_COMPUTED, KIND_INPUT, KIND_PARAM, KIND_UNWRITTEN };

typedef struct {
  int64_t n;
  int nsym;
  int sym[4];
} Dim;  // n * symvals[sym[0]] * ...

typedef struct {
  int dt;  // RtDType
  int kind;
  int rank;
  Dim dim[RT_MAX_RANK];
} Node;

// What heed_forward's third argument points to (codegen's CgRunCtx).
typedef struct {
  void *pool;
  int32_t nthreads;
  float *work;
  int64_t err[4];
} RunCtx;

// One compiled graph: the forward (heed_forward) or the KV-cached step
// (heed_step: tokens at positions pos.., the caches appended in place).
typedef struct {
  RtForwardFn fn;
  Node *nodes;
  int nnodes, nsyms, tokens, logits, batch_sym, seq_sym;
  int pos, kv_sym, ncache;  // the step only
  int *cache;               // the step: [input, appended output] node pairs
  void **bufs;
  void **copies;            // per node: an aligned copy of an unaligned parameter
  int64_t *off;             // per node: its offset in the arena (heed build's memory plan); -1: none
  int64_t arena_bytes;      // the plan's arena, for B = 1, T = the context (the caches: its length)
  void *arena;              // the computed nodes' buffers (NULL: not allocated yet)
} Graph;

struct RtModel {
  Graph f, s;               // s.fn NULL: no step graph (not incremental)
  int64_t vocab, ctx, window, trained_seq;
  size_t work_per_thread;
  int nthreads;
  RtPool *pool;
  float *work;
  RtSafetensors st;
};

static int mfail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int mfail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

// ---- CPU features ----

// The features __builtin_cpu_supports knows (GCC 12) that code generated
// for x86-64 may use; a name outside the list cannot be checked.
#define CPU_FEATURES(X)                                                                                          \
  X("sse3") X("ssse3") X("sse4.1") X("sse4.2") X("popcnt") X("avx") X("avx2") X("fma") X("bmi") X("bmi2")      \
  X("aes") X("pclmul") X("avx512f") X("avx512vl") X("avx512bw") X("avx512dq") X("avx512cd") X("avx512vbmi")     \
  X("avx512ifma") X("avx512vbmi2") X("avx512vnni") X("avx512bitalg") X("avx512vpopcntdq") X("avx512bf16")       \
  X("gfni") X("vpclmulqdq") X("sse4a") X("fma4") X("xop")

// 1: present, 0: absent, -1: a name this runtime cannot check.
static int cpu_has(const char *f) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#define HAS(name)                                                                                               \
  if (!strcmp(f, name)) return __builtin_cpu_supports(name) ? 1 : 0;
  CPU_FEATURES(HAS)
#undef HAS
#else
  (void)f;
#endif
  return -1;
}

bool rt_cpu_feature_known(const char *name) {
#define KNOWN(f) if (!strcmp(name, f)) return true;
  CPU_FEATURES(KNOWN)
#undef KNOWN
  return false;
}

static int parse_meta(RtJsonDoc *doc, const char *meta, size_t len, char *err, size_t errlen) {
  const char *why;
  size_t at;
  int rc = rt_json_parse(doc, meta, len, &at, &why);
  if (rc) return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (%s at byte %zu)", why, at);
  if (doc->root->kind != RT_JSON_OBJECT) {
    rt_json_free(doc);
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (not an object)");
  }
  return RT_OK;
}

int rt_cpu_check(const char *meta, size_t meta_len, char *err, size_t errlen) {
  RtJsonDoc doc;
  int rc = parse_meta(&doc, meta, meta_len, err, errlen);
  if (rc) return rc;
  const RtJson *fs = rt_json_get(doc.root, "features"), *cpu = rt_json_get(doc.root, "cpu");
  char missing[512] = "";
  size_t len = 0;
  for (const RtJson *f = fs && fs->kind == RT_JSON_ARRAY ? fs->child : NULL; f; f = f->next)
    if (f->kind == RT_JSON_STRING && cpu_has(f->str) == 0 && len + strlen(f->str) + 3 < sizeof missing)
      len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%s", len ? ", " : "", f->str);
  if (len)
    rc = mfail(err, errlen, RT_ERR_ARG,
               "this program was compiled for %s and needs CPU features this machine lacks: %s "
               "(rebuild it with heed build --cpu NAME for this machine, or without --cpu)",
               cpu && cpu->kind == RT_JSON_STRING ? cpu->str : "another CPU", missing);
  rt_json_free(&doc);
  return rc;
}

// ---- the description ----

static bool get_int(const RtJson *o, const char *key, int64_t lo, int64_t hi, int64_t *out) {
  const RtJson *j = rt_json_get(o, key);
  if (!j || j->kind != RT_JSON_NUMBER || !(j->num >= (double)lo && j->num <= (double)hi) ||
      j->num != (double)(int64_t)j->num)
    return false;
  *out = (int64_t)j->num;
  return true;
}

static bool num_in(const RtJson *j, int64_t lo, int64_t hi, int64_t *out) {
  if (!j || j->kind != RT_JSON_NUMBER || !(j->num >= (double)lo && j->num <= (double)hi) ||
      j->num != (double)(int64_t)j->num)
    return false;
  *out = (int64_t)j->num;
  return true;
}

// One node: [dtype, kind, [n, sym...], ...] (one array per dim).
static bool read_node(const RtJson *j, int nsyms, Node *nd) {
  int64_t v;
  if (j->kind != RT_JSON_ARRAY || j->n < 2 || j->n > 2 + RT_MAX_RANK) return false;
  const RtJson *e = j->child;
  if (!num_in(e, 0, RT_DT_PLAIN - 1, &v)) return false;
  nd->dt = (int)v;
  if (!num_in(e->next, KIND_COMPUTED, KIND_UNWRITTEN, &v)) return false;
  nd->kind = (int)v;
  nd->rank = j->n - 2;
  int a = 0;
  for (const RtJson *d = e->next->next; d; d = d->next, a++) {
    if (d->kind != RT_JSON_ARRAY || d->n < 1 || d->n > 5 || !num_in(d->child, 0, INT64_MAX / 2, &nd->dim[a].n))
      return false;
    nd->dim[a].nsym = d->n - 1;
    int s = 0;
    for (const RtJson *x = d->child->next; x; x = x->next, s++) {
      if (!num_in(x, 0, nsyms - 1, &v)) return false;
      nd->dim[a].sym[s] = (int)v;
    }
  }
  return true;
}

// Elements of node nd under symvals; -1 on overflow.
static int64_t node_numel(const Node *nd, const int64_t *symvals) {
  int64_t n = 1;
  for (int a = 0; a < nd->rank; a++) {
    int64_t d = nd->dim[a].n;
    for (int s = 0; s < nd->dim[a].nsym; s++) {
      int64_t v = symvals[nd->dim[a].sym[s]];
      if (v < 0 || (v && d > INT64_MAX / v)) return -1;
      d *= v;
    }
    if (d && n > INT64_MAX / d) return -1;
    n *= d;
  }
  return n;
}

// The fields of one graph's description (the top level for the forward,
// "step" for the step graph).
static int read_graph(Graph *g, const RtJson *r, bool step, char *err, size_t errlen) {
  int64_t ns, tok, lg, bs, ss, v;
  const RtJson *nodes = rt_json_get(r, "nodes"), *caches = rt_json_get(r, "caches");
  if (!get_int(r, "nsyms", 1, 64, &ns) || !nodes || nodes->kind != RT_JSON_ARRAY || nodes->n < 2 ||
      !get_int(r, "tokens", 0, nodes->n - 1, &tok) || !get_int(r, "logits", 0, nodes->n - 1, &lg) ||
      !get_int(r, "batch_sym", -1, ns - 1, &bs) || !get_int(r, "seq_sym", 0, ns - 1, &ss))
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (a field is missing or wrong)");
  g->tokens = (int)tok, g->logits = (int)lg, g->batch_sym = (int)bs, g->seq_sym = (int)ss, g->nsyms = (int)ns;
  g->nnodes = nodes->n;
  g->nodes = rt_calloc((size_t)g->nnodes, sizeof *g->nodes);
  g->bufs = rt_calloc((size_t)g->nnodes, sizeof *g->bufs);
  g->copies = rt_calloc((size_t)g->nnodes, sizeof *g->copies);
  g->off = rt_calloc((size_t)g->nnodes, sizeof *g->off);
  if (!g->nodes || !g->bufs || !g->copies || !g->off) return mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
  const RtJson *offs = rt_json_get(r, "offsets");
  if (!get_int(r, "arena", 0, INT64_MAX / 2, &g->arena_bytes) || !offs || offs->kind != RT_JSON_ARRAY ||
      offs->n != g->nnodes)
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (the memory plan)");
  int k = 0;
  for (const RtJson *j = offs->child; j; j = j->next, k++)
    if (!num_in(j, -1, g->arena_bytes, &g->off[k]))
      return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (the memory plan, node %d)", k);
  int i = 0;
  for (const RtJson *j = nodes->child; j; j = j->next, i++)
    if (!read_node(j, g->nsyms, &g->nodes[i]))
      return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (node %d)", i);
  const Node *tk = &g->nodes[g->tokens];
  if (tk->kind != KIND_INPUT || (tk->dt != RT_I32 && tk->dt != RT_I64) || g->nodes[g->logits].dt != RT_F32)
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (tokens or logits)");
  if (!step) return RT_OK;
  if (!get_int(r, "pos", 0, g->nnodes - 1, &v) || g->nodes[v].kind != KIND_INPUT || g->nodes[v].dt != RT_I32 ||
      !caches || caches->kind != RT_JSON_ARRAY)
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (step)");
  g->pos = (int)v;
  if (!get_int(r, "kv_sym", 0, ns - 1, &v)) return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (step)");
  g->kv_sym = (int)v;
  g->ncache = caches->n;
  if (!(g->cache = rt_calloc(2 * (size_t)g->ncache + 1, sizeof *g->cache))) return mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
  i = 0;
  for (const RtJson *c = caches->child; c; c = c->next, i += 2) {
    int64_t a, b;
    if (c->kind != RT_JSON_ARRAY || c->n != 2 || !num_in(c->child, 0, g->nnodes - 1, &a) ||
        !num_in(c->child->next, 0, g->nnodes - 1, &b) || g->nodes[a].kind != KIND_INPUT || g->nodes[b].kind == KIND_PARAM)
      return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (caches)");
    g->cache[i] = (int)a, g->cache[i + 1] = (int)b;
  }
  return RT_OK;
}

static int read_desc(RtModel *m, const RtJson *r, char *err, size_t errlen) {
  int64_t nt, gw;
  const RtJson *fmt = rt_json_get(r, "format");
  if (!fmt || fmt->kind != RT_JSON_STRING || strcmp(fmt->str, "heed-model-2") != 0)
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is not heed-model-2");
  if (!get_int(r, "vocab", 1, INT32_MAX, &m->vocab) || !get_int(r, "ctx", 1, INT32_MAX, &m->ctx) ||
      !get_int(r, "gemm_work", 0, INT64_MAX / 8192, &gw) || !get_int(r, "nthreads_max", 1, 4096, &nt))
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (a field is missing or wrong)");
  // "window" and "trained_seq" are newer: a description without them runs over the context
  if (!get_int(r, "window", 1, m->ctx, &m->window)) m->window = m->ctx;
  if (!get_int(r, "trained_seq", 0, INT32_MAX, &m->trained_seq)) m->trained_seq = 0;
  m->work_per_thread = (size_t)gw;
  if (m->nthreads > nt) m->nthreads = (int)nt;
  int rc = read_graph(&m->f, r, false, err, errlen);
  const RtJson *step = rt_json_get(r, "step");
  if (!rc && step && m->s.fn) rc = read_graph(&m->s, step, true, err, errlen);
  else m->s.fn = NULL;  // no step graph in the description, or no code for it
  return rc;
}

// "F32[2, 3]" for messages.
static void shape_text(char *dst, size_t cap, int dt, int rank, const int64_t *shape) {
  size_t j = (size_t)snprintf(dst, cap, "%s[", rt_dtype_name((RtDType)dt));
  for (int a = 0; a < rank && j < cap; a++) j += (size_t)snprintf(dst + j, cap - j, a ? ", %" PRId64 : "%" PRId64, shape[a]);
  if (j < cap) snprintf(dst + j, cap - j, "]");
}

// Every parameter from the weights image, checked against the description.
static int bind_params(Graph *m, const RtSafetensors *st, const RtJson *params, const char *label, char *err, size_t errlen) {
  if (!params || params->kind != RT_JSON_ARRAY)
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (params)");
  int64_t zero[64] = {0};
  for (const RtJson *p = params->child; p; p = p->next) {
    int64_t id;
    if (p->kind != RT_JSON_ARRAY || p->n != 2 || !num_in(p->child, 0, m->nnodes - 1, &id) ||
        p->child->next->kind != RT_JSON_STRING || m->nodes[id].kind != KIND_PARAM)
      return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (params)");
    const char *name = p->child->next->str;
    const Node *nd = &m->nodes[id];
    int64_t want[RT_MAX_RANK];
    for (int a = 0; a < nd->rank; a++) want[a] = nd->dim[a].n;
    char ws[200], hs[200];
    shape_text(ws, sizeof ws, nd->dt, nd->rank, want);
    const RtStTensor *t = rt_st_find(st, name);
    if (!t) return mfail(err, errlen, RT_ERR_FORMAT, "%s: missing tensor '%s' (%s)", label, name, ws);
    bool same = t->dt == (RtDType)nd->dt && t->rank == nd->rank;
    for (int a = 0; same && a < nd->rank; a++) same = t->shape[a] == want[a];
    if (!same) {
      shape_text(hs, sizeof hs, t->dt, t->rank, t->shape);
      return mfail(err, errlen, RT_ERR_FORMAT, "%s: tensor '%s' is %s but the model declares %s", label, name, hs, ws);
    }
    const uint8_t *data = st->data + t->off;
    if ((uintptr_t)data % 64) {  // a file heed build did not write: align a copy
      if (!(m->copies[id] = rt_aligned_alloc(64, (size_t)(t->nbytes + 64) / 64 * 64)))
        return mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
      memcpy(m->copies[id], data, (size_t)t->nbytes);
      data = m->copies[id];
    }
    m->bufs[id] = (void *)data;  // parameters are only read
  }
  for (int i = 0; i < m->nnodes; i++)
    if (m->nodes[i].kind == KIND_PARAM && !m->bufs[i] && node_numel(&m->nodes[i], zero) > 0)
      return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (node %d has no tensor)", i);
  if (st->n != params->n) {  // names are unique, so some tensor is not a parameter
    for (int k = 0; k < st->n; k++) {  // (a heed checkpoint's optimizer state is none)
      bool known = rt_st_is_ckpt_state(st, st->t[k].name);
      for (const RtJson *p = params->child; p && !known; p = p->next) known = !strcmp(p->child->next->str, st->t[k].name);
      if (!known)
        return mfail(err, errlen, RT_ERR_FORMAT, "%s: tensor '%s' is not a parameter of the model", label,
                     st->t[k].name);
    }
  }
  return RT_OK;
}

// The default thread count: one for small weights (a decode step of a
// small model is over before a second thread gets going: docs/build.md,
// "Threads"), else the online cores (at most max).
static int auto_threads(uint64_t weight_bytes, int max) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int n = weight_bytes < RT_SMALL_MODEL_BYTES ? 1 : cores < 1 ? 1 : (int)cores;
  return n < max ? n : max;
}

int rt_model_open(RtModel **out, const char *meta, size_t meta_len, const uint8_t *weights, size_t wlen,
                  const char *weights_path, RtForwardFn fwd, RtForwardFn step, int nthreads, char *err,
                  size_t errlen) {
  *out = NULL;
  RtModel *m = rt_calloc(1, sizeof *m);
  if (!m) return mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
  m->f.fn = fwd, m->s.fn = step;
  m->nthreads = nthreads < 1 ? 4096 : nthreads;  // clamped to nthreads_max by read_desc
  RtJsonDoc doc = {0};
  int rc = parse_meta(&doc, meta, meta_len, err, errlen);
  if (!rc) rc = read_desc(m, doc.root, err, errlen);
  const char *label = weights_path ? weights_path : "the embedded weights";
  if (!rc)
    rc = weights_path ? rt_st_open(weights_path, &m->st, err, errlen)
                      : rt_st_parse(weights, wlen, label, &m->st, err, errlen);
  bool sums;  // a checkpoint given as --weights: its checksums
  if (!rc && weights_path) rc = rt_st_check_crc(&m->st, label, &sums, err, errlen);
  if (!rc) rc = bind_params(&m->f, &m->st, rt_json_get(doc.root, "params"), label, err, errlen);
  if (!rc && m->s.fn) rc = bind_params(&m->s, &m->st, rt_json_get(rt_json_get(doc.root, "step"), "params"), label, err, errlen);
  rt_json_free(&doc);
  if (!rc && nthreads < 1) m->nthreads = auto_threads(m->st.data_len, m->nthreads);
  if (!rc && m->nthreads > 1 && !(m->pool = rt_pool_new(m->nthreads)))
    rc = mfail(err, errlen, RT_ERR_NOMEM, "cannot start %d threads", m->nthreads);
  if (!rc && m->work_per_thread &&
      !(m->work = rt_aligned_alloc(64, (m->work_per_thread * (size_t)m->nthreads + 63) / 64 * 64)))
    rc = mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
  if (rc) {
    rt_model_free(m);
    return rc;
  }
  *out = m;
  return RT_OK;
}

int64_t rt_model_vocab(const RtModel *m) { return m->vocab; }
int64_t rt_model_ctx(const RtModel *m) { return m->ctx; }
int64_t rt_model_window(const RtModel *m) { return m->window; }
int64_t rt_model_trained_seq(const RtModel *m) { return m->trained_seq; }
bool rt_model_has_step(const RtModel *m) { return m->s.fn != NULL; }
int rt_model_threads(const RtModel *m) { return m->nthreads; }

// -1: not a cache; else the index of its pair (input and appended output share a buffer).
static void free_bufs(Graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].kind == KIND_INPUT) rt_free(g->bufs[i]);
    g->bufs[i] = NULL;
  }
  rt_free(g->arena);
  g->arena = NULL;
}

// Buffers for the largest sizes, once (B = 1, T = the context; the step's
// caches hold the context): the inputs (tokens, pos, the caches) one
// allocation each, every computed node at its offset in one arena from
// heed build's memory plan (nodes whose values are not live at once share
// bytes; an appended cache is its input's buffer: the append is in place);
// nodes the compiled code never writes get none.
static int size_bufs(RtModel *m, Graph *g, char *err, size_t errlen) {
  int64_t symvals[64] = {0};
  for (int s = 0; s < g->nsyms; s++) symvals[s] = 1;
  symvals[g->seq_sym] = m->ctx;
  if (g->ncache) symvals[g->kv_sym] = m->ctx;
  if ((uint64_t)g->arena_bytes > SIZE_MAX - 128 ||
      !(g->arena = rt_aligned_alloc(64, ((size_t)g->arena_bytes + 63) / 64 * 64 + 64)))
    return mfail(err, errlen, RT_ERR_NOMEM, "out of memory for the model's values (%" PRId64 " bytes)", g->arena_bytes);
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].kind == KIND_PARAM) continue;
    if (g->nodes[i].kind != KIND_INPUT) {
      g->bufs[i] = g->off[i] >= 0 ? (char *)g->arena + g->off[i] : NULL;
      continue;
    }
    int64_t n = node_numel(&g->nodes[i], symvals);
    size_t es = rt_dtype_size((RtDType)g->nodes[i].dt);
    if (n < 0 || (uint64_t)n > (SIZE_MAX - 128) / es ||
        !(g->bufs[i] = rt_aligned_alloc(64, ((size_t)n * es + 63) / 64 * 64 + 64))) {
      free_bufs(g);
      return mfail(err, errlen, RT_ERR_NOMEM, "out of memory for %" PRId64 " tokens", m->ctx);
    }
  }
  for (int c = 0; c < g->ncache; c++) g->bufs[g->cache[2 * c + 1]] = g->bufs[g->cache[2 * c]];
  return RT_OK;
}

// Runs g over tokens[0..T) (at pos, the step); logits (T, vocab).
static int run_graph(RtModel *m, Graph *g, const int32_t *tokens, int64_t T, int64_t pos, const float **logits,
                     char *err, size_t errlen) {
  for (int64_t i = 0; i < T; i++)
    if (tokens[i] < 0 || tokens[i] >= m->vocab)
      return mfail(err, errlen, RT_ERR_ARG, "token %" PRId32 " is outside the vocabulary of %" PRId64, tokens[i],
                   m->vocab);
  if (!g->arena) {
    int rc = size_bufs(m, g, err, errlen);
    if (rc) return rc;
  }
  void *tk = g->bufs[g->tokens];
  for (int64_t i = 0; i < T; i++) {
    if (g->nodes[g->tokens].dt == RT_I32) ((int32_t *)tk)[i] = tokens[i];
    else ((int64_t *)tk)[i] = tokens[i];
  }
  int64_t symvals[64] = {0};
  for (int s = 0; s < g->nsyms; s++) symvals[s] = 1;
  symvals[g->seq_sym] = T;
  if (g->ncache) symvals[g->kv_sym] = m->ctx;
  if (g == &m->s) *(int32_t *)g->bufs[g->pos] = (int32_t)pos;
  RunCtx ctx = {.pool = m->pool, .nthreads = m->nthreads, .work = m->work};
  int32_t rc = g->fn(g->bufs, symvals, &ctx);
  if (rc) return mfail(err, errlen, RT_ERR_ARG, "the model failed at node %d (values %" PRId64 ", %" PRId64 ")",
                       rc - 1, ctx.err[0], ctx.err[1]);
  *logits = g->bufs[g->logits];
  return RT_OK;
}

int rt_model_forward(RtModel *m, const int32_t *tokens, int64_t T, const float **logits, char *err, size_t errlen) {
  if (T < 1 || T > m->ctx)
    return mfail(err, errlen, RT_ERR_ARG, "%" PRId64 " tokens do not fit the context of %" PRId64, T, m->ctx);
  return run_graph(m, &m->f, tokens, T, 0, logits, err, errlen);
}

int rt_model_step(RtModel *m, const int32_t *tokens, int64_t T, int64_t pos, const float **logits, char *err,
                  size_t errlen) {
  if (!m->s.fn) return mfail(err, errlen, RT_ERR_ARG, "this model has no KV-cached step (it is not a causal decoder)");
  if (T < 1 || pos < 0 || pos + T > m->ctx)
    return mfail(err, errlen, RT_ERR_ARG, "%" PRId64 " tokens at position %" PRId64 " do not fit the context of %" PRId64,
                 T, pos, m->ctx);
  return run_graph(m, &m->s, tokens, T, pos, logits, err, errlen);
}

static void free_graph(Graph *g) {
  if (g->bufs && g->nodes) free_bufs(g);
  rt_free(g->off);
  for (int i = 0; g->copies && i < g->nnodes; i++) rt_free(g->copies[i]);
  rt_free(g->copies);
  rt_free(g->bufs);
  rt_free(g->nodes);
  rt_free(g->cache);
}

void rt_model_free(RtModel *m) {
  if (!m) return;
  free_graph(&m->f);
  free_graph(&m->s);
  rt_free(m->work);
  rt_pool_free(m->pool);
  rt_st_close(&m->st);
  rt_free(m);
}
