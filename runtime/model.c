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

struct RtModel {
  RtForwardFn fwd;
  Node *nodes;
  int nnodes, nsyms, tokens, logits, batch_sym, seq_sym;
  int64_t vocab, ctx, tcap;  // tcap: the T the buffers are sized for
  size_t work_per_thread;
  int nthreads;
  RtPool *pool;
  float *work;
  void **bufs;
  RtSafetensors st;
  void **copies;  // per node: an aligned copy of an unaligned parameter
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
  if (!num_in(e, 0, RT_DT_COUNT - 1, &v)) return false;
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

static int read_desc(RtModel *m, const RtJson *r, char *err, size_t errlen) {
  int64_t ns, nt, tok, lg, bs, ss, gw;
  const RtJson *nodes = rt_json_get(r, "nodes"), *fmt = rt_json_get(r, "format");
  if (!fmt || fmt->kind != RT_JSON_STRING || strcmp(fmt->str, "heed-model-1") != 0)
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is not heed-model-1");
  if (!get_int(r, "nsyms", 1, 64, &ns) || !nodes || nodes->kind != RT_JSON_ARRAY || nodes->n < 2 ||
      !get_int(r, "vocab", 1, INT32_MAX, &m->vocab) || !get_int(r, "ctx", 1, INT32_MAX, &m->ctx) ||
      !get_int(r, "tokens", 0, nodes->n - 1, &tok) || !get_int(r, "logits", 0, nodes->n - 1, &lg) ||
      !get_int(r, "batch_sym", -1, ns - 1, &bs) || !get_int(r, "seq_sym", 0, ns - 1, &ss) ||
      !get_int(r, "gemm_work", 0, INT64_MAX / 8192, &gw) || !get_int(r, "nthreads_max", 1, 4096, &nt))
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (a field is missing or wrong)");
  m->tokens = (int)tok, m->logits = (int)lg, m->batch_sym = (int)bs, m->seq_sym = (int)ss;
  m->work_per_thread = (size_t)gw;
  m->nsyms = (int)ns;
  if (m->nthreads > nt) m->nthreads = (int)nt;
  m->nnodes = nodes->n;
  m->nodes = calloc((size_t)m->nnodes, sizeof *m->nodes);
  m->bufs = calloc((size_t)m->nnodes, sizeof *m->bufs);
  m->copies = calloc((size_t)m->nnodes, sizeof *m->copies);
  if (!m->nodes || !m->bufs || !m->copies) return mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
  int i = 0;
  for (const RtJson *j = nodes->child; j; j = j->next, i++)
    if (!read_node(j, m->nsyms, &m->nodes[i]))
      return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (node %d)", i);
  const Node *tk = &m->nodes[m->tokens];
  if (tk->kind != KIND_INPUT || (tk->dt != RT_I32 && tk->dt != RT_I64) || m->nodes[m->logits].dt != RT_F32)
    return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (tokens or logits)");
  return RT_OK;
}

// "F32[2, 3]" for messages.
static void shape_text(char *dst, size_t cap, int dt, int rank, const int64_t *shape) {
  size_t j = (size_t)snprintf(dst, cap, "%s[", rt_dtype_name((RtDType)dt));
  for (int a = 0; a < rank && j < cap; a++) j += (size_t)snprintf(dst + j, cap - j, a ? ", %" PRId64 : "%" PRId64, shape[a]);
  if (j < cap) snprintf(dst + j, cap - j, "]");
}

// Every parameter from the weights image, checked against the description.
static int bind_params(RtModel *m, const RtJson *params, const char *label, char *err, size_t errlen) {
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
    const RtStTensor *t = rt_st_find(&m->st, name);
    if (!t) return mfail(err, errlen, RT_ERR_FORMAT, "%s: missing tensor '%s' (%s)", label, name, ws);
    bool same = t->dt == (RtDType)nd->dt && t->rank == nd->rank;
    for (int a = 0; same && a < nd->rank; a++) same = t->shape[a] == want[a];
    if (!same) {
      shape_text(hs, sizeof hs, t->dt, t->rank, t->shape);
      return mfail(err, errlen, RT_ERR_FORMAT, "%s: tensor '%s' is %s but the model declares %s", label, name, hs, ws);
    }
    const uint8_t *data = m->st.data + t->off;
    if ((uintptr_t)data % 64) {  // a file heed build did not write: align a copy
      if (!(m->copies[id] = aligned_alloc(64, (size_t)(t->nbytes + 64) / 64 * 64)))
        return mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
      memcpy(m->copies[id], data, (size_t)t->nbytes);
      data = m->copies[id];
    }
    m->bufs[id] = (void *)data;  // parameters are only read
  }
  for (int i = 0; i < m->nnodes; i++)
    if (m->nodes[i].kind == KIND_PARAM && !m->bufs[i] && node_numel(&m->nodes[i], zero) > 0)
      return mfail(err, errlen, RT_ERR_FORMAT, "the model description is damaged (node %d has no tensor)", i);
  if (m->st.n != params->n) {  // names are unique, so some tensor is not a parameter
    for (int k = 0; k < m->st.n; k++) {  // (a heed checkpoint's optimizer state is none)
      bool known = rt_st_is_ckpt_state(&m->st, m->st.t[k].name);
      for (const RtJson *p = params->child; p && !known; p = p->next) known = !strcmp(p->child->next->str, m->st.t[k].name);
      if (!known)
        return mfail(err, errlen, RT_ERR_FORMAT, "%s: tensor '%s' is not a parameter of the model", label,
                     m->st.t[k].name);
    }
  }
  return RT_OK;
}

int rt_model_open(RtModel **out, const char *meta, size_t meta_len, const uint8_t *weights, size_t wlen,
                  const char *weights_path, RtForwardFn fwd, int nthreads, char *err, size_t errlen) {
  *out = NULL;
  RtModel *m = calloc(1, sizeof *m);
  if (!m) return mfail(err, errlen, RT_ERR_NOMEM, "out of memory");
  m->fwd = fwd;
  m->nthreads = nthreads < 1 ? 1 : nthreads;
  RtJsonDoc doc = {0};
  int rc = parse_meta(&doc, meta, meta_len, err, errlen);
  if (!rc) rc = read_desc(m, doc.root, err, errlen);
  const char *label = weights_path ? weights_path : "the embedded weights";
  if (!rc)
    rc = weights_path ? rt_st_open(weights_path, &m->st, err, errlen)
                      : rt_st_parse(weights, wlen, label, &m->st, err, errlen);
  if (!rc) rc = bind_params(m, rt_json_get(doc.root, "params"), label, err, errlen);
  rt_json_free(&doc);
  if (!rc && m->nthreads > 1 && !(m->pool = rt_pool_new(m->nthreads)))
    rc = mfail(err, errlen, RT_ERR_NOMEM, "cannot start %d threads", m->nthreads);
  if (!rc && m->work_per_thread &&
      !(m->work = aligned_alloc(64, (m->work_per_thread * (size_t)m->nthreads + 63) / 64 * 64)))
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
int rt_model_threads(const RtModel *m) { return m->nthreads; }

static void free_bufs(RtModel *m) {
  for (int i = 0; i < m->nnodes; i++)
    if (m->nodes[i].kind != KIND_PARAM) {
      free(m->bufs[i]);
      m->bufs[i] = NULL;
    }
  m->tcap = 0;
}

// Buffers of every non-parameter node for a batch of 1 and T tokens.
static int size_bufs(RtModel *m, int64_t T, char *err, size_t errlen) {
  free_bufs(m);
  int64_t symvals[64] = {0};
  for (int s = 0; s < m->nsyms; s++) symvals[s] = 1;
  if (m->batch_sym >= 0) symvals[m->batch_sym] = 1;
  symvals[m->seq_sym] = T;
  for (int i = 0; i < m->nnodes; i++) {
    if (m->nodes[i].kind == KIND_PARAM) continue;
    int64_t n = node_numel(&m->nodes[i], symvals);
    size_t es = rt_dtype_size((RtDType)m->nodes[i].dt);
    if (n < 0 || (uint64_t)n > (SIZE_MAX - 128) / es ||
        !(m->bufs[i] = aligned_alloc(64, ((size_t)n * es + 63) / 64 * 64 + 64))) {
      free_bufs(m);
      return mfail(err, errlen, RT_ERR_NOMEM, "out of memory for %" PRId64 " tokens", T);
    }
  }
  m->tcap = T;
  return RT_OK;
}

int rt_model_forward(RtModel *m, const int32_t *tokens, int64_t T, const float **logits, char *err, size_t errlen) {
  if (T < 1 || T > m->ctx)
    return mfail(err, errlen, RT_ERR_ARG, "%" PRId64 " tokens do not fit the context of %" PRId64, T, m->ctx);
  for (int64_t i = 0; i < T; i++)
    if (tokens[i] < 0 || tokens[i] >= m->vocab)
      return mfail(err, errlen, RT_ERR_ARG, "token %" PRId32 " is outside the vocabulary of %" PRId64, tokens[i],
                   m->vocab);
  if (T > m->tcap) {
    int64_t want = m->tcap * 2 > T ? m->tcap * 2 : T;  // grow geometrically: few reallocations
    int rc = size_bufs(m, want < m->ctx ? want : m->ctx, err, errlen);
    if (rc) return rc;
  }
  void *tk = m->bufs[m->tokens];
  for (int64_t i = 0; i < T; i++) {
    if (m->nodes[m->tokens].dt == RT_I32) ((int32_t *)tk)[i] = tokens[i];
    else ((int64_t *)tk)[i] = tokens[i];
  }
  int64_t symvals[64] = {0};
  for (int s = 0; s < m->nsyms; s++) symvals[s] = 1;
  symvals[m->seq_sym] = T;
  RunCtx ctx = {.pool = m->pool, .nthreads = m->nthreads, .work = m->work};
  int32_t rc = m->fwd(m->bufs, symvals, &ctx);
  if (rc) return mfail(err, errlen, RT_ERR_ARG, "the model failed at node %d (values %" PRId64 ", %" PRId64 ")",
                       rc - 1, ctx.err[0], ctx.err[1]);
  *logits = m->bufs[m->logits];
  return RT_OK;
}

void rt_model_free(RtModel *m) {
  if (!m) return;
  if (m->bufs) free_bufs(m);
  for (int i = 0; m->copies && i < m->nnodes; i++) free(m->copies[i]);
  free(m->copies);
  free(m->bufs);
  free(m->nodes);
  free(m->work);
  rt_pool_free(m->pool);
  rt_st_close(&m->st);
  free(m);
}
