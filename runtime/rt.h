// runtime/rt.h: the runtime's internal header (prefix rt_). The runtime sits
// at the end of the data flow: it loads weights, inputs and checkpoints,
// runs a HeedProgram and writes results. It includes no other heed module
// (libc and cJSON only), so that standalone programs link it alone.
//
// One section per source file:
//   alloc.c        the allocator hook (ir/alloc.h's, copied: rt_malloc & co.)
//   file.c         opening a user's file for reading (regular files only:
//                  a FIFO or device never blocks), the SIGBUS guard
//   json.c         a small, strict JSON reader (RFC 8259) and string quoter
//   safetensors.c  read (mmap) and write (atomic replace) safetensors files,
//                  dtype names and sizes, f16/bf16 <-> f32 conversions
//   threads.c      a pthreads pool with deterministic static chunking
//   data.c         training data: token files (mapped), splits, seeded
//                  random windows, fixed validation windows
//   model.c        a model compiled by heed build, run outside heed: its
//                  description, weights image, buffers and CPU check
//   tokenizer.c    byte-level and GPT-2 BPE tokenizers (text <-> token ids)
//   sample.c       a seeded PRNG and temperature / top-k / top-p sampling
//   device.c       RtDevice (alloc, free, copy in/out, run, sync; the CPU
//                  one on the thread pool) and a compiled program's regions
//                  on a device (runtime/heed_abi.h: the program's contract)
//   generate.c     the generation loop over a model given as callbacks
//                  (tokenizer, sampler and loop use libc and libm only, so
//                  that `heed generate` and programs from `heed build` share
//                  them and print the same tokens for the same seed)
//
// Functions return RT_OK (0) or an RtStatus error code; on error they write
// a one-line message naming the file (and the tensor where there is one)
// into err, e.g.
//   w.safetensors: tensor 'h.0.attn.weight': data offsets [0, 100) exceed
//   the data section (64 bytes)
// err may be NULL (errlen 0); a message longer than errlen is truncated.
#ifndef HEED_RT_H
#define HEED_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/dtype.h"
#include "runtime/heed_abi.h"

typedef enum {
  RT_OK = 0,
  RT_ERR_IO,      // a file could not be opened, read or written
  RT_ERR_FORMAT,  // a file is not a well-formed safetensors file
  RT_ERR_ARG,     // the caller passed something invalid (writer input, dtype)
  RT_ERR_NOMEM,
  RT_ERR_MODEL,   // a model callback of rt_generate failed (its own message is in err)
} RtStatus;

// ---- alloc.c ----
// The runtime's copy of ir/alloc.h's hook (the runtime must not include
// ir/): every heap block of runtime/ comes from rt_malloc & co., which call
// the installed RtAllocFn, the same shape as ir/alloc.h's HeedAllocFn:
//   fn(ud, NULL, size, align)  allocate (align 0: malloc's alignment)
//   fn(ud, p, size, 0)         resize;   fn(ud, p, 0, 0)  free (p may be NULL)
// heed installs one allocator into both (heed_fault_alloc under
// HEED_FAULT_ALLOC); programs from heed build keep libc's (fn NULL).
typedef void *(*RtAllocFn)(void *ud, void *ptr, size_t size, size_t align);
void rt_set_allocator(RtAllocFn fn, void *ud);
RtAllocFn rt_get_allocator(void **ud);  // the installed one; NULL: libc's
// As libc's; a zero size allocates one byte, so NULL always means out of memory.
void *rt_malloc(size_t size);
void *rt_calloc(size_t n, size_t size);
void *rt_realloc(void *p, size_t size);
void *rt_aligned_alloc(size_t align, size_t size);
char *rt_strdup(const char *s);
char *rt_strndup(const char *s, size_t n);
void rt_free(void *p);

// ---- file.c ----
// Opens path read-only if it is a regular file. The open cannot block (a
// FIFO without a writer, a device: O_NONBLOCK, cleared again for a regular
// file); a directory, FIFO, device or socket is RT_ERR_IO with a message
// naming what it is ("w.safetensors: is a FIFO (named pipe), not a regular
// file"). On success *fd (close it) and *size.
int rt_file_open(const char *path, int *fd, uint64_t *size, char *err, size_t errlen);
// Writes "PATH: " and the formatted message into err (when given); returns
// code. The readers' one way to say which file failed.
int rt_path_err(char *err, size_t errlen, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
// Reads a whole regular file (at most max bytes, else RT_ERR_FORMAT) into
// *buf (malloc'd, free it; a NUL after the *len bytes).
int rt_file_read(const char *path, uint64_t max, uint8_t **buf, size_t *len, char *err, size_t errlen);
// A file that stays mapped (rt_st_open's) raises SIGBUS if it is truncated
// meanwhile. rt_sigbus_guard installs a handler (a program's main does, and
// heed's) that, for a fault inside a watched mapping, writes "PROG: error:
// PATH: the file changed ..." to stderr and exits 1; any other SIGBUS
// crashes as before. rt_st_open watches its mapping, rt_st_close unwatches.
// Libraries (heed_model_open) install nothing: signals are their caller's.
int rt_sigbus_guard(const char *prog);
void rt_map_watch(const void *addr, size_t len, const char *path);
void rt_map_unwatch(const void *addr);

// ---- json.c ----
// Parses JSON text into a tree (all of it in doc's memory, freed at once).
// Example: {"a":[1,"x"]} gives root (OBJECT, n 1) -> child (key "a",
// ARRAY, n 2) -> child (NUMBER 1) -> next (STRING "x").
enum { RT_JSON_MAX_DEPTH = 64 };
typedef enum { RT_JSON_NULL, RT_JSON_FALSE, RT_JSON_TRUE, RT_JSON_NUMBER, RT_JSON_STRING, RT_JSON_ARRAY,
               RT_JSON_OBJECT } RtJsonKind;
typedef struct RtJson RtJson;
struct RtJson {
  RtJsonKind kind;
  const char *key;     // a member of an object: its name (decoded); else NULL
  const char *str;     // STRING: the decoded text, NUL-terminated (no NUL inside)
  double num;          // NUMBER (beyond the double range: +-inf, as strtod)
  RtJson *child;       // ARRAY, OBJECT: the first element, in text order
  RtJson *next;        // the next element of the enclosing container
  int n;               // ARRAY, OBJECT: the number of elements
};
typedef struct {
  RtJson *root;
  void *chunks_;       // private: the memory of every node and string
} RtJsonDoc;

// Parses one JSON value from text[0..len) (leading whitespace skipped;
// text need not be NUL-terminated). *end (if end) gets the offset just past
// the value, or of the error; *why (if why) a static description of the
// error (e.g. "expected ',' or '}'"), else NULL. Returns RT_OK,
// RT_ERR_FORMAT or RT_ERR_NOMEM; on error doc holds nothing.
int rt_json_parse(RtJsonDoc *doc, const char *text, size_t len, size_t *end, const char **why);
void rt_json_free(RtJsonDoc *doc);  // zeroes doc; harmless twice
// The first member named key of an object; NULL if absent or obj is no object.
const RtJson *rt_json_get(const RtJson *obj, const char *key);
const char *rt_json_kind_name(const RtJson *j);  // "an object", "a number", ... "null"
// Writes s (NUL-terminated UTF-8) as a JSON string literal, quotes
// included, into dst (not NUL-terminated; dst NULL: only measure).
// Returns its length. Escapes '"', '\\' and control characters, as serde_json.
size_t rt_json_quote(char *dst, const char *s);

// ---- safetensors.c ----
// The format (https://github.com/huggingface/safetensors):
//   u64 N (little endian) | N bytes of JSON header | data section
// The header maps tensor names to {"dtype", "shape", "data_offsets":
// [begin, end)} with offsets relative to the data section, plus an optional
// "__metadata__" object of string -> string. Data is raw little-endian,
// row-major. Example, two tensors (header padded with spaces to 8 bytes):
//   {"__metadata__":{"format":"pt"},"wte":{"dtype":"F32","shape":[4,2],
//    "data_offsets":[0,32]},"ln.b":{"dtype":"BF16","shape":[2],
//    "data_offsets":[32,36]}}
enum { RT_MAX_RANK = 8, RT_ST_MAX_HEADER = 100000000 };

// RtDType, rt_dtype_info, rt_dtype_name/size and the f16/bf16 conversions: runtime/dtype.h.

typedef struct {
  char *name;
  RtDType dt;
  int rank;                     // 0 (a scalar) .. RT_MAX_RANK
  int64_t shape[RT_MAX_RANK];   // shape[rank..] are 0
  uint64_t off, nbytes;         // [off, off + nbytes) within the data section
} RtStTensor;

typedef struct {
  RtStTensor *t;                // in header order
  int n;
  char **meta_key, **meta_val;  // "__metadata__", in header order
  int nmeta;
  const uint8_t *data;          // the data section (not necessarily aligned)
  uint64_t data_len;
  // private
  const RtStTensor **by_name_;  // t sorted by name (rt_st_find)
  void *map_;                   // the mapping made by rt_st_open, or NULL
  size_t map_len_;
} RtSafetensors;

// Parses a safetensors file held in buf[0..len). label names the file in
// messages. On success out owns the tensor table (free with rt_st_close)
// and points into buf, which must outlive it. On failure out is zeroed and
// owns nothing (rt_st_close on it is harmless). Every tensor is checked:
// dtype, shape (rank <= 8, element count without overflow), offsets inside
// the data section and of exactly numel * size bytes, no two tensors
// overlapping, no name twice. Zero-element tensors are allowed; gaps
// between tensors are allowed.
int rt_st_parse(const uint8_t *buf, size_t len, const char *label, RtSafetensors *out, char *err,
                size_t errlen);
// Maps path read-only and parses it (label = path). Free with rt_st_close.
// A FIFO, device or directory is refused (rt_file_open). The file must not
// be truncated while it is open: SIGBUS, as for any mmap, which
// rt_sigbus_guard turns into a message naming the file and exit 1.
int rt_st_open(const char *path, RtSafetensors *out, char *err, size_t errlen);
void rt_st_close(RtSafetensors *st);  // frees the table, unmaps; zeroes st
const RtStTensor *rt_st_find(const RtSafetensors *st, const char *name);  // NULL if absent
uint64_t rt_st_numel(const RtStTensor *t);
// Converts t's elements (any dtype) to f32 into out[rt_st_numel(t)].
int rt_st_read_f32(const RtSafetensors *st, const RtStTensor *t, float *out, char *err, size_t errlen);
// The value of metadata key in st, or NULL.
const char *rt_st_meta(const RtSafetensors *st, const char *key);
// `heed train`'s checkpoints (engine/checkpoint.c) hold the model's parameters
// under their names plus optimizer state "opt.m.NAME", "opt.v.NAME",
// "opt.b.NAME", with metadata format = RT_CKPT_FORMAT. True if st is such a
// checkpoint and name is one of its optimizer-state tensors: every loader
// of weights skips these (a checkpoint is a weights file).
#define RT_CKPT_FORMAT "heed-checkpoint-1"
bool rt_st_is_ckpt_state(const RtSafetensors *st, const char *name);

// CRC-32C (Castagnoli) of n bytes, continuing from crc (0 to start).
uint32_t rt_crc32c(uint32_t crc, const void *data, size_t n);
// Checkpoints carry a CRC-32C of every tensor's data in the metadata
// RT_ST_CRC_KEY: 8 hex digits per tensor, space-separated, in the order of
// the tensors' data offsets. rt_st_check_crc verifies them: RT_OK (and
// *present) when all match; RT_ERR_FORMAT naming the damaged tensor, or a
// malformed list. A file without the key: RT_OK, *present false (not
// verified: a checkpoint of an older heed, or any other safetensors); one
// whose list has a count other than its tensors' (a tool removed or added
// tensors and kept the metadata): RT_OK, *present false, the reason in err.
#define RT_ST_CRC_KEY "crc32c"
int rt_st_check_crc(const RtSafetensors *st, const char *label, bool *present, char *err, size_t errlen);

typedef struct {
  const char *name;
  RtDType dt;
  int rank;
  const int64_t *shape;  // rank dims (may be NULL when rank is 0)
  const void *data;      // numel * size bytes, little endian (may be NULL when empty)
} RtStWrite;

// Writes n tensors, in the given order and contiguous, and nmeta metadata
// pairs (meta[2i] = key, meta[2i+1] = value) as path. The header is compact
// JSON, "__metadata__" first, padded with spaces to a multiple of 8 bytes.
// Atomic: the bytes go to path.tmp.XXXXXX in the same directory, which is
// fsynced and renamed over path, then the directory is fsynced. On any
// failure the temporary file is removed and an existing path is untouched
// (but for a failure to sync the directory after the rename: the new file
// is then in place, and the message says so).
int rt_st_write(const char *path, const RtStWrite *ts, int n, const char *const *meta, int nmeta, char *err,
                size_t errlen);

// ---- outfile.c ----
// Every output heed writes: the bytes go to PATH.tmp.XXXXXX beside PATH,
// which rt_out_commit fsyncs and renames over PATH (then fsyncs the
// directory); rt_out_abort (or a failed commit) removes it, leaving an
// existing PATH untouched. An existing PATH that is not a regular file
// (/dev/null, a FIFO) is written in place. Write through rt_out_stream, or
// have a tool write the file named rt_out_name (it may replace it).
typedef struct {
  char *path, *tmp;  // tmp: NULL when writing path in place
  int fd;
  FILE *f;
} RtOutFile;
int rt_out_open(RtOutFile *o, const char *path, unsigned mode, char *err, size_t errlen);  // mode: 0666, 0777
const char *rt_out_name(const RtOutFile *o);
FILE *rt_out_stream(RtOutFile *o);  // NULL: out of memory
int rt_out_commit(RtOutFile *o, char *err, size_t errlen);  // err names the path
void rt_out_abort(RtOutFile *o);
// True if name is a temporary file of base (base.tmp.XXXXXX): debris of a killed writer.
bool rt_out_is_temp(const char *name, const char *base);
// Before any work: RT_OK if path can be written (not a directory; its
// directory exists and is writable), else err says why.
int rt_out_check(const char *path, char *err, size_t errlen);
// True if a and b are the same file (device and inode), or name the same
// file-to-be (neither exists: the same directory and name).
bool rt_same_file(const char *a, const char *b);

// ---- threads.c ----
// A fixed pool of threads that compiled code calls for its parallel loops
// (the generated sgemm's blocks, the kernels' row ranges). The caller
// (thread 0) and the workers claim tasks one at a time, so a worker that
// is slow to wake, or kept off the cores by other processes, does not hold
// the caller up: which thread runs a task depends on timing, and a task's
// result must depend on its index only (thread is unique among the threads
// running at once: an index for per-thread scratch). Example:
//   RtPool *pool = rt_pool_new(2);      // the caller + 1 worker
//   rt_parallel_for(pool, 8, fn, ctx);  // fn(ctx, 0..7, 0 or 1)
//   rt_pool_free(pool);
// One rt_parallel_for at a time per pool (concurrent callers are
// serialized); fn must not call rt_parallel_for on the same pool.
typedef struct RtPool RtPool;
typedef void (*RtTaskFn)(void *ctx, int64_t task, int32_t thread);

// nthreads >= 1 (the caller counts as one). Returns NULL if a thread cannot
// be started or memory runs out. Caller frees with rt_pool_free.
RtPool *rt_pool_new(int nthreads);
void rt_pool_free(RtPool *pool);  // joins the workers; NULL is harmless
int rt_pool_size(const RtPool *pool);  // 1 for NULL
// Runs fn(ctx, task, thread) for task in [0, n_tasks) and returns when all
// are done. pool NULL, a pool of 1 or a single task: the caller runs them
// all (thread 0).
void rt_parallel_for(RtPool *pool, int64_t n_tasks, RtTaskFn fn, void *ctx);

// ---- data.c ----
// Training data (CLI.md "Files"): a text file read as bytes (tokens
// 0..255), or a `.bin` file of little-endian uint16 tokens, optionally
// behind llm.c's header (256 int32, header[0] = 20240520 the magic,
// header[2] the token count), which is skipped. The file is read into
// memory once (not mapped: a file truncated or rewritten while a run trains
// on it cannot crash the run); tokens are read one by one (rt_tokens_get).
// Example:
//   RtTokens tk; RtSplit tr, va; uint64_t rng = 1337;
//   rt_tokens_open("input.txt", 256, &tk, err, sizeof err);   // checks the vocab
//   rt_split(&tk, 0.9, &tr, &va);             // first 90% / last 10%
//   rt_window_check(&tr, 64, "training", err, sizeof err);    // >= 65 tokens
//   rt_batch_random(&tr, &rng, 16, 64, tokens, targets);      // (16,64) each
enum { RT_DATA_MAGIC = 20240520, RT_DATA_HEADER_BYTES = 1024, RT_DATA_VERSION = 1 };
#define RT_DATA_MAX_BYTES ((uint64_t)1 << 40)  // 1 TiB: a bound, not a promise

typedef struct {
  char *path;
  int width;              // bytes per token: 1 (text) or 2 (.bin uint16)
  const uint8_t *tok;     // the first token
  int64_t n;              // tokens
  uint64_t hash;          // FNV-1a of the token bytes (rt_tokens_open)
  // private
  uint8_t *buf_;          // the file's contents
} RtTokens;

// Opens path (".bin": uint16 tokens; anything else: bytes) and checks that
// every token is < vocab (vocab <= 0: no check). Errors name the file: it
// is unreadable or not a regular file, empty, larger than RT_DATA_MAX_BYTES,
// a .bin of odd length, with the header's magic but shorter than the header
// or of another version, or whose header count disagrees with its size, or
// a token is out of range (its byte offset and value are named). Free with
// rt_tokens_close.
int rt_tokens_open(const char *path, int64_t vocab, RtTokens *out, char *err, size_t errlen);
void rt_tokens_close(RtTokens *t);  // frees; zeroes t
static inline int32_t rt_tokens_get(const RtTokens *t, int64_t i) {
  return t->width == 1 ? t->tok[i] : (int32_t)(t->tok[2 * i] | (t->tok[2 * i + 1] << 8));
}

typedef struct {          // tokens [begin, end) of a file
  const RtTokens *src;
  int64_t begin, end;
} RtSplit;

// The whole of t as a split.
RtSplit rt_split_all(const RtTokens *t);
// train = the first floor(n * frac) tokens, val = the rest.
void rt_split(const RtTokens *t, double frac, RtSplit *train, RtSplit *val);
// RT_OK if s holds at least one window of seq + 1 tokens (inputs and the
// targets shifted by one); else an error naming the file and what (e.g.
// "validation") is too short.
int rt_window_check(const RtSplit *s, int64_t seq, const char *what, char *err, size_t errlen);

// The data order's generator is sample.c's splitmix64 (rt_rng_next) on one
// uint64 state, which is all a checkpoint needs to continue the same
// sequence of windows.

// B random windows of s (after rt_window_check): window b starts at a
// uniformly drawn offset o, tokens[b*T + t] = s[o + t], targets[b*T + t] =
// s[o + t + 1]. Draws exactly B numbers from *rng.
void rt_batch_random(const RtSplit *s, uint64_t *rng, int64_t B, int64_t T, int32_t *tokens, int32_t *targets);
// Fixed validation window w of nw (0 <= w < nw): starts spread evenly from
// the first to the last possible offset (overlapping when s is short).
void rt_batch_fixed(const RtSplit *s, int64_t w0, int64_t nw, int64_t B, int64_t T, int32_t *tokens,
                    int32_t *targets);
// ---- model.c ----
// The pieces heed build puts in a program or library: the object code's
// entry (codegen's heed_forward), a JSON description of the graph (format
// "heed-model-2", written by cli/build.c: "nodes" [[dtype, kind, [n, sym,
// ...] per dim], ...], "params" [[node, name], ...], the memory plan for
// B = 1, T = ctx ("arena": bytes, "offsets": per node, -1 none: the model
// allocates one arena and its inputs, once), "tokens", "logits",
// "vocab", "ctx", "nsyms", "batch_sym", "seq_sym", "gemm_work",
// "nthreads_max", "cpu", "features"; "window", "trained_seq"; for a causal
// decoder "step": the KV-cached step graph (the code's heed_step) as
// "nodes", "params", "tokens", "logits", "nsyms", "batch_sym", "seq_sym",
// plus "pos" (its i32 position input), "kv_sym" (the caches' length, sized
// ctx) and "caches" [[input, appended output], ...] (one buffer each)) and
// a safetensors weights image. Example:
//   if (rt_cpu_check(meta, meta_len, err, sizeof err)) ...  // before any generated code
//   RtModel *m;
//   rt_model_open(&m, meta, meta_len, weights, wlen, NULL, heed_forward, heed_step, 4, err, sizeof err);
//   const float *lg;                            // (T, vocab), owned by m
//   rt_model_forward(m, tokens, T, &lg, err, sizeof err);
//   rt_model_free(m);
typedef int32_t (*RtForwardFn)(void **bufs, const int64_t *symvals, void *ctx);
typedef struct RtModel RtModel;

// RT_OK if this CPU has every feature the description lists; otherwise
// RT_ERR_ARG and a message naming the CPU compiled for and the features missing.
int rt_cpu_check(const char *meta, size_t meta_len, char *err, size_t errlen);
// Whether rt_cpu_check can test a feature of that name ("avx2", "avx512f",
// "sse4.1": GCC's __builtin_cpu_supports names).
bool rt_cpu_feature_known(const char *name);
// Reads the description and binds the weights: weights[0..wlen) (an image
// in memory) or, if weights_path is set, that file (mapped). Every
// parameter must be present with the dtype and shape the description
// gives, and no other tensor; messages name the file and the tensor.
// nthreads: the pool for the generated code (clamped to what it was
// compiled for); <= 0: 1 for weights under RT_SMALL_MODEL_BYTES, else the
// online cores.
enum { RT_SMALL_MODEL_BYTES = 16 << 20 };
// step: the KV-cached step graph's entry (heed_step), or NULL; used when
// the description has a "step" graph.
int rt_model_open(RtModel **out, const char *meta, size_t meta_len, const uint8_t *weights, size_t wlen,
                  const char *weights_path, RtForwardFn fwd, RtForwardFn step, int nthreads, char *err,
                  size_t errlen);
// Logits (T, vocab) of tokens[0..T) (batch 1), 1 <= T <= ctx; valid until
// the next call. Tokens outside the vocabulary are an error.
int rt_model_forward(RtModel *m, const int32_t *tokens, int64_t T, const float **logits, char *err,
                     size_t errlen);
// The step graph (rt_model_has_step): tokens[0..T) at positions pos..pos+T-1
// with the keys and values of positions 0..pos-1 from its caches (filled by
// earlier calls; pos 0 starts afresh), pos + T <= ctx; logits (T, vocab),
// valid until the next call. What `heed generate` runs (prefill: pos 0;
// decode: T 1).
int rt_model_step(RtModel *m, const int32_t *tokens, int64_t T, int64_t pos, const float **logits, char *err,
                  size_t errlen);
bool rt_model_has_step(const RtModel *m);
int64_t rt_model_vocab(const RtModel *m);
int64_t rt_model_ctx(const RtModel *m);
int64_t rt_model_window(const RtModel *m);        // the window heed build chose (heed_gen_window)
int64_t rt_model_trained_seq(const RtModel *m);   // the train section's seq (0: none)
int rt_model_threads(const RtModel *m);
void rt_model_free(RtModel *m);  // NULL is harmless
// ---- tokenizer.c ----
// Text is bytes (UTF-8 expected, not required). Two kinds:
//   bytes: token i is byte i (vocabulary 256); every byte encodes.
//   GPT-2 BPE from a directory holding encoder.json (a flat JSON object of
//     token string -> id) and vocab.bpe ("#version" line, then one merge
//     "a b" per line, rank = its order): bytes map to printable code points
//     (GPT-2's bytes_to_unicode), the text is split by GPT-2's
//     pre-tokenization pattern
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     (implemented by hand; letters, digits and spaces outside ASCII are
//     classified by a table of the main Unicode blocks, see tokenizer.c),
//     and each piece is merged pair by pair, lowest rank first.
// Example:
//   RtTokenizer *tk;
//   if (rt_tok_bpe_open("gpt2-tokenizer", &tk, err, sizeof err)) ...
//   int32_t *ids; int64_t n;
//   rt_tok_encode(tk, "Hello world", 11, &ids, &n, err, sizeof err);  // 15496, 995
//   size_t len; const char *s = rt_tok_decode(tk, ids[0], &len);      // "Hello"
//   free(ids); rt_tok_free(tk);
typedef struct RtTokenizer RtTokenizer;

RtTokenizer *rt_tok_bytes(void);  // NULL on OOM
int rt_tok_bpe_open(const char *dir, RtTokenizer **out, char *err, size_t errlen);
// The same from the two files' contents (label names them in messages).
int rt_tok_bpe_from_memory(const char *encoder_json, size_t elen, const char *vocab_bpe, size_t vlen,
                           const char *label, RtTokenizer **out, char *err, size_t errlen);
void rt_tok_free(RtTokenizer *t);  // NULL is harmless
int64_t rt_tok_vocab(const RtTokenizer *t);  // one past the largest id
// Encodes text[0..len) into *ids (malloc'd; caller frees), *n of them. A
// piece that has no token (a vocabulary without some byte) is RT_ERR_ARG
// naming the byte offset.
int rt_tok_encode(const RtTokenizer *t, const char *text, size_t len, int32_t **ids, int64_t *n, char *err,
                  size_t errlen);
// The bytes of token id (owned by t; possibly part of a UTF-8 sequence);
// NULL (len 0) for an id the tokenizer does not have.
const char *rt_tok_decode(const RtTokenizer *t, int32_t id, size_t *len);

// ---- sample.c ----
// The PRNG is splitmix64 (integer arithmetic only: the same stream on every
// machine for a seed); a uniform draw is its top 53 bits / 2^53, in [0, 1).
// Sampling from logits (vocab floats):
//   temperature <= 0: greedy, the largest logit (the lowest id on ties);
//   else p_i ~ exp((l_i - max) / temperature), computed in double;
//   top_k > 0 keeps the k most probable, top_p < 1 the smallest set of most
//   probable whose mass reaches top_p (candidates ordered by probability,
//   ties by id); one draw u picks the first candidate whose cumulative mass
//   exceeds u * total (candidates in id order when neither filter is on).
// One draw per sampled token (none when greedy).
typedef struct { uint64_t s; } RtRng;
typedef struct {
  double temperature;  // 0: greedy
  int64_t top_k;       // 0: off
  double top_p;        // 1: off
  uint64_t seed;
} RtSampleOpts;

void rt_rng_seed(RtRng *r, uint64_t seed);
uint64_t rt_rng_next(RtRng *r);
double rt_rng_uniform(RtRng *r);  // [0, 1)
// The sampled id; scratch: rt_sample_scratch_bytes(vocab) bytes (or NULL:
// allocated and freed inside; -1 if that fails).
size_t rt_sample_scratch_bytes(int64_t vocab);
int32_t rt_sample(const float *logits, int64_t vocab, const RtSampleOpts *o, RtRng *r, void *scratch);

// ---- generate.c ----
// A model as rt_generate drives it: prefill runs tokens[0..n) at positions
// 0..n-1 (starting afresh: whatever the model held is forgotten) and leaves
// the logits of the last position in logits (vocab floats); decode runs one
// token at position pos (the number of tokens the model holds) and leaves
// its logits. Both return 0, or nonzero after writing a message into the
// model's own state (rt_generate reports RT_ERR_MODEL with the text of
// `message` if set). window: the most positions the model is run over
// (the trained sequence length or the context), 0 for no limit.
typedef struct {
  int64_t vocab, window;
  void *ud;
  int (*prefill)(void *ud, const int32_t *tokens, int64_t n, float *logits);
  int (*decode)(void *ud, int32_t token, int64_t pos, float *logits);
  const char *(*message)(void *ud);  // optional: why the last call failed
} RtGenModel;

typedef struct {
  int64_t max_new;       // tokens to generate
  RtSampleOpts sample;
} RtGenOpts;

typedef struct {
  int64_t generated;     // tokens emitted
  int64_t decoded;       // tokens fed back (decode calls, or the token that ends a shift)
  int64_t shifts;        // times the window slid (a prefill over the kept tokens)
  int64_t cropped;       // prompt tokens left out: the prompt was longer than the window
  double prefill_s, decode_s;  // decode_s includes the shifts' prefills
} RtGenStats;

// Called with each generated token as it is sampled; nonzero stops.
typedef int (*RtGenEmit)(void *ud, int32_t token);

// The tokens a shift keeps, the new one included: half the window (at
// least 1), as llama.cpp's context shift discards half of it.
int64_t rt_gen_keep(int64_t window);

// Prefill on the prompt (its last `window` tokens if it is longer), then
// max_new times: sample a token, emit it, and (unless it is the last) feed
// it back. When the model holds `window` tokens, feeding back slides the
// window: the most recent rt_gen_keep(window) tokens (the new one last)
// are prefilled again at positions 0..keep-1 (positions may be learned
// absolute embeddings, so the kept keys cannot be reused), and decoding
// goes on. Any max_new works. A prompt that is empty or holds an id outside
// the vocabulary is RT_ERR_ARG.
int rt_generate(const RtGenModel *m, const int32_t *prompt, int64_t n_prompt, const RtGenOpts *o, RtGenEmit emit,
                void *emit_ud, RtGenStats *stats, char *err, size_t errlen);

// A model without a KV cache as an RtGenModel: logits(ud, tokens, n, &rows)
// runs the whole sequence tokens[0..n) and points rows at its (n, vocab)
// logits (0, or nonzero with a message for `message`). prefill and decode
// keep the window's tokens and run the whole of them each time (window >
// 0). rt_gen_recompute_init fills m; free r with rt_gen_recompute_free.
typedef int (*RtLogitsFn)(void *ud, const int32_t *tokens, int64_t n, const float **rows);
typedef struct {
  RtLogitsFn logits;
  const char *(*message)(void *ud);
  void *ud;
  int64_t vocab, n;
  int32_t *tok;  // window tokens
} RtGenRecompute;
int rt_gen_recompute_init(RtGenRecompute *r, RtGenModel *m, int64_t vocab, int64_t window, RtLogitsFn logits,
                          const char *(*message)(void *ud), void *ud);
void rt_gen_recompute_free(RtGenRecompute *r);


// ---- device.c ----
// Where a compiled program (HeedProgram, runtime/heed_abi.h) runs: memory
// on the device, copies between it and the host, running an entry,
// waiting for it. The CPU device's memory is host memory (64-byte aligned,
// not initialised), its copies memcpy, its run the calling thread plus an RtPool
// (the entry gets a HeedCpuStream), its sync nothing. Functions return
// HeedAbiStatus codes (0: success). Example (no error handling):
//   RtDevice *dev = rt_device_cpu_new(2);
//   RtRegions r;  rt_regions_alloc(dev, prog, &r, err, sizeof err);
//   rt_tensor_copy_in(&r, &prog->param[i], symdims, host_values);   // each parameter, input
//   rt_program_run(&r, prog->forward, symdims);
//   rt_tensor_copy_out(&r, &prog->out[0], symdims, host_out);
//   rt_regions_free(&r);  rt_device_free(dev);
typedef struct RtDevice RtDevice;
struct RtDevice {
  const char *name;  // "cpu"
  void *(*alloc)(RtDevice *dev, size_t bytes);  // aligned to 64, not initialised; NULL: out of memory
  void (*free)(RtDevice *dev, void *p);         // NULL is harmless
  int (*copy_in)(RtDevice *dev, void *dst, const void *src, size_t bytes);   // host -> device
  int (*copy_out)(RtDevice *dev, void *dst, const void *src, size_t bytes);  // device -> host
  int (*run)(RtDevice *dev, const HeedProgram *p, HeedEntry entry, void *const *regions, const int64_t *symdims);
  int (*sync)(RtDevice *dev);                   // waits for what run started
  void *ud;                                     // the device's own state
};
// The CPU device on a pool of nthreads (<= 1: the calling thread only).
// NULL if out of memory or a thread cannot start. Free with rt_device_free.
RtDevice *rt_device_cpu_new(int nthreads);
void rt_device_free(RtDevice *dev);  // NULL is harmless
RtPool *rt_device_cpu_pool(const RtDevice *dev);  // the CPU device's pool (NULL: one thread)

// A program's regions on a device: one allocation per region of
// p->region_bytes (none for 0 bytes), tensors at their descriptors' offsets.
typedef struct {
  RtDevice *dev;
  const HeedProgram *p;
  void *region[HEED_REGION_COUNT];
} RtRegions;
// HEED_ABI_OK, or HEED_ABI_ERR_VERSION (a program of another ABI version) /
// HEED_ABI_ERR_NOMEM (with the region and its bytes in err); r is then
// empty (rt_regions_free is harmless).
int rt_regions_alloc(RtDevice *dev, const HeedProgram *p, RtRegions *r, char *err, size_t errlen);
void rt_regions_free(RtRegions *r);
// The bytes of t under symdims (-1: overflow, a size over its bound).
int64_t rt_tensor_bytes(const RtRegions *r, const HeedTensorDesc *t, const int64_t *symdims);
// Copies t's values (rt_tensor_bytes of them, row-major) from / to the host.
int rt_tensor_copy_in(RtRegions *r, const HeedTensorDesc *t, const int64_t *symdims, const void *src);
int rt_tensor_copy_out(RtRegions *r, const HeedTensorDesc *t, const int64_t *symdims, void *dst);
// Where t lives on the device (the CPU: host memory the caller may use).
void *rt_tensor_data(const RtRegions *r, const HeedTensorDesc *t);
// Runs entry (one of r->p's; NULL: HEED_ABI_ERR_ARG) for symdims, then syncs.
int rt_program_run(RtRegions *r, HeedEntry entry, const int64_t *symdims);
// A HeedAbiStatus in words ("a run-time error in the program").
const char *rt_abi_status_str(int status);

#endif
