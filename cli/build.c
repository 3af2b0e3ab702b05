// cli/build.c: `heed build`: a checked model (IrGraph, the forward) and its
// weights -> a standalone program that needs only libc, libm and pthreads,
// or (--emit-lib) a static library and model.h. The data flow:
//   forward graph --heed_compile(cpu, dump_obj)--> model.o (heed_forward)
//   forward --heed_compile(pipeline kvcache, entry heed_step)--> step.o
//     (a causal decoder only: what heed generate runs)
//   graph + shapes --> meta.json (runtime/model.c's "heed-model-2" description)
//   weights file --checked, converted to the declared dtypes--> an aligned
//     safetensors image (embedded with .incbin, or OUT.safetensors beside)
//   data.S (.incbin of both) + model.o + libheedrt_main.a +
//     libheedrt_standalone.a --cc--> OUT (written aside, then renamed)
// The runtime libraries are found beside the heed executable (or in
// $HEED_RUNTIME_DIR). `cc` (and `ar` for --emit-lib) must be on PATH.
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/build.h"
#include "cli/run.h"
#include "runtime/rt.h"
#ifdef HEED_HAVE_LLVM

#include "codegen/cg.h"
#endif

extern char **environ;
static const SrcLoc NOLOC = {0, 0, 0};

typedef struct {
  int tokens, logits, bsym, ssym;  // node ids; symbol indices (bsym -1: no batch axis)
  int out;                         // the forward's output holding the logits
  int64_t vocab, ctx, window, seq;
} Io;

// The forward must map token ids (B, T) or (T) to logits (B, T, V) or (T, V).
// HEED_OK, or HEED_ERR_USAGE (--output, --window) / HEED_ERR_CHECK.
static int model_io(Compilation *c, const IrGraph *g, const HeedBuildOpts *o, Io *io) {
  char a[256] = "?", b[256] = "?";
  const IrNode *in = g->inputs.len == 1 ? g->inputs.data[0] : NULL;
  int rc;
  io->out = 0;
  if (in && in->ty.rank == 2 && (g->outputs.len > 1 || o->output) &&
      (rc = heed_logits_output(c, g, o->output, "build", &io->out)) != HEED_OK)
    return rc;
  const IrNode *out = g->outputs.len == 1 || (in && in->ty.rank == 2) ? g->outputs.data[io->out] : NULL;
  if (in) ir_type_str(&in->ty, &g->syms, true, a, sizeof a);
  if (out) ir_type_str(&out->ty, &g->syms, true, b, sizeof b);
  bool ok = in && out && (in->ty.dt == IR_I32 || in->ty.dt == IR_I64) && (in->ty.rank == 1 || in->ty.rank == 2) &&
            out->ty.dt == IR_F32 && out->ty.rank == in->ty.rank + 1 &&
            ir_dim_is_const(out->ty.dim[out->ty.rank - 1]);
  for (int i = 0; ok && i < in->ty.rank; i++) {
    IrDim d = in->ty.dim[i];
    ok = d.n == 1 && d.nsym == 1 && ir_dim_eq(d, out->ty.dim[i]);
  }
  if (!ok) {
    diag_error(&c->diag, NOLOC,
               "heed build: %s must take token ids (i32[B, T]) and return logits (f32[B, T, vocab]); it takes %s "
               "and returns %s",
               g->name, in ? a : "other inputs", out ? b : "other results");
    return HEED_ERR_CHECK;
  }
  io->tokens = (int)in->id;
  io->logits = (int)out->id;
  io->bsym = in->ty.rank == 2 ? in->ty.dim[0].sym[0] : -1;
  io->ssym = in->ty.dim[in->ty.rank - 1].sym[0];
  io->vocab = out->ty.dim[out->ty.rank - 1].n;
  // the context: the rows of the smallest table that positions index
  io->ctx = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (n->op == IR_OP_GATHER && n->src[1]->op == IR_OP_POSITIONS && ir_dim_is_const(n->src[0]->ty.dim[0]) &&
        (io->ctx == 0 || n->src[0]->ty.dim[0].n < io->ctx))
      io->ctx = n->src[0]->ty.dim[0].n;
  }
  if (io->ctx == 0) io->ctx = 1024;  // no position table (rotary embeddings): a default bound
  char note[300];
  if ((rc = heed_gen_window(c, o->window, &io->window, note, sizeof note)) != HEED_OK) return rc;
  if (note[0]) fprintf(stderr, "heed build: the program's default: %s\n", note + strlen("note: "));
  if (!io->window || io->window > io->ctx) io->window = io->ctx;
  io->seq = c->model->train ? c->model->train->seq : 0;
  return HEED_OK;
}

int heed_build_flag(HeedBuildOpts *o, const char *flag, const char *val, char *bad, size_t badlen) {
  if (strcmp(flag, "--output") && strcmp(flag, "--window")) return 0;
  if (!val) return snprintf(bad, badlen, "%s needs a value", flag), -1;
  if (flag[2] == 'o') {
    o->output = val;
    return 2;
  }
  char *end;
  long long w = strtoll(val, &end, 10);
  if (!*val || *end || w < 1 || w > 1000000000)
    return snprintf(bad, badlen, "--window takes a positive integer (positions), got '%s'", val), -1;
  o->window = w;
  return 2;
}

// ---- weights ----
#ifdef HEED_HAVE_LLVM  // (what the LLVM backend's build path uses, to the image and data.S)

static void shape_str(char *dst, size_t cap, const char *dt, int rank, const int64_t *shape) {
  size_t j = (size_t)snprintf(dst, cap, "%s[", dt);
  for (int a = 0; a < rank && j < cap; a++) j += (size_t)snprintf(dst + j, cap - j, a ? ", %lld" : "%lld", (long long)shape[a]);
  if (j < cap) snprintf(dst + j, cap - j, "]");
}

// The parameters of g from o->weights, checked (present, same shape, a
// dtype that converts) and converted to the declared dtypes: one malloc'd
// buffer per parameter. NULL (diagnostics given) on any error.
static void **load_weights(Compilation *c, const IrGraph *g, const HeedBuildOpts *o) {
  RtSafetensors st;
  char err[512];
  if (rt_st_open(o->weights, &st, err, sizeof err) != RT_OK) {
    diag_error(&c->diag, NOLOC, "%s", err);
    return NULL;
  }
  if (!heed_ckpt_verify(&st, o->weights, err, sizeof err)) {  // a checkpoint's checksums
    diag_error(&c->diag, NOLOC, "%s", err);
    rt_st_close(&st);
    return NULL;
  }
  void **bufs = heed_calloc((size_t)g->params.len + 1, sizeof *bufs);
  bool ok = bufs != NULL;
  const char *pre = o->prefix ? o->prefix : "";
  for (int i = 0; ok && i < g->params.len; i++) {
    const IrNode *p = g->params.data[i];
    char name[1400], want[256], have[256];
    snprintf(name, sizeof name, "%s%s", pre, p->name);
    int64_t dims[IR_MAX_RANK];
    ir_shape(&p->ty, NULL, dims);
    ir_type_str(&p->ty, &g->syms, true, want, sizeof want);
    const RtStTensor *t = rt_st_find(&st, name);
    if (!t) {
      diag_error(&c->diag, NOLOC, "%s: missing tensor '%s' (%s)", o->weights, name, want);
      ok = false;
      break;
    }
    bool same = t->rank == p->ty.rank, flt = t->dt == RT_F32 || t->dt == RT_F16 || t->dt == RT_BF16;
    for (int k = 0; same && k < t->rank; k++) same = t->shape[k] == dims[k];
    if (!same || (p->ty.dt == IR_F32 ? !flt : t->dt != (RtDType)p->ty.dt)) {
      shape_str(have, sizeof have, rt_dtype_name(t->dt), t->rank, t->shape);
      diag_error(&c->diag, NOLOC, "%s: tensor '%s' is %s but the model declares %s", o->weights, name, have, want);
      ok = false;
      break;
    }
    size_t bytes = (size_t)rt_st_numel(t) * ir_dtype_info[p->ty.dt].size;
    if (!(bufs[i] = heed_malloc(bytes ? bytes : 1))) {
      diag_error(&c->diag, NOLOC, "out of memory reading '%s'", name);
      ok = false;
    } else if (p->ty.dt == IR_F32) {
      ok = rt_st_read_f32(&st, t, bufs[i], err, sizeof err) == RT_OK;
      if (!ok) diag_error(&c->diag, NOLOC, "%s", err);
    } else {
      memcpy(bufs[i], st.data + t->off, bytes);
    }
  }
  for (int j = 0; ok && o->strict && j < st.n; j++) {  // extras (a heed checkpoint's optimizer state is none)
    const char *nm = st.t[j].name;
    bool known = rt_st_is_ckpt_state(&st, nm);
    for (int i = 0; !known && i < g->params.len; i++)
      known = !strncmp(nm, pre, strlen(pre)) && !strcmp(nm + strlen(pre), g->params.data[i]->name);
    if (!known) {
      diag_error(&c->diag, NOLOC, "%s: tensor '%s' is not a parameter of the model (--strict=false ignores extras)",
                 o->weights, nm);
      ok = false;
    }
  }
  rt_st_close(&st);
  if (!ok && bufs) {
    for (int i = 0; i < g->params.len; i++) heed_free(bufs[i]);
    heed_free(bufs);
    bufs = NULL;
  }
  return bufs;
}

static void json_str(FILE *f, const char *s) {
  size_t n = rt_json_quote(NULL, s);
  char *q = heed_malloc(n);
  if (!q) return;
  rt_json_quote(q, s);
  fwrite(q, 1, n, f);
  heed_free(q);
}

static uint64_t up64(uint64_t x) { return (x + 63) / 64 * 64; }

// The weights as safetensors at path, every tensor 64-byte aligned from the
// start of the file (the header is padded so that the data section is).
static bool write_image(Compilation *c, const char *path, const IrGraph *g, void *const *bufs) {
  char *hdr = NULL;
  size_t hlen = 0;
  FILE *h = open_memstream(&hdr, &hlen);
  if (!h) return diag_error(&c->diag, NOLOC, "out of memory"), false;
  fprintf(h, "{\"__metadata__\":{\"producer\":\"heed build\"}");
  uint64_t off = 0;
  for (int i = 0; i < g->params.len; i++) {
    const IrNode *p = g->params.data[i];
    int64_t dims[IR_MAX_RANK];
    ir_shape(&p->ty, NULL, dims);
    uint64_t bytes = (uint64_t)ir_type_numel(&p->ty, NULL) * ir_dtype_info[p->ty.dt].size;
    off = up64(off);
    fputc(',', h);
    json_str(h, p->name);
    fprintf(h, ":{\"dtype\":\"%s\",\"shape\":[", rt_dtype_name((RtDType)p->ty.dt));
    for (int a = 0; a < p->ty.rank; a++) fprintf(h, a ? ",%lld" : "%lld", (long long)dims[a]);
    fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + bytes));
    off += bytes;
  }
  fputc('}', h);
  while ((8 + ftell(h)) % 64) fputc(' ', h);
  if (fclose(h) != 0 || !hdr) return free(hdr), diag_error(&c->diag, NOLOC, "out of memory"), false;
  FILE *f = fopen(path, "wb");
  bool ok = f != NULL;
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  ok = ok && fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
  static const uint8_t zeros[64];
  uint64_t at = 0;
  for (int i = 0; ok && i < g->params.len; i++) {
    const IrNode *p = g->params.data[i];
    size_t bytes = (size_t)ir_type_numel(&p->ty, NULL) * ir_dtype_info[p->ty.dt].size;
    ok = fwrite(zeros, 1, (size_t)(up64(at) - at), f) == up64(at) - at && fwrite(bufs[i], 1, bytes, f) == bytes;
    at = up64(at) + bytes;
  }
  if (f && fclose(f) != 0) ok = false;
  if (!ok) diag_error(&c->diag, NOLOC, "cannot write '%s': %s", path, strerror(errno));
  free(hdr);
  return ok;
}

#endif

// ---- tools: cc, ar ----

// Runs argv (searched on PATH); stdin/stdout from/to files if given.
// Returns the exit status, or -1 if it could not run.
static int run_tool(char *const *argv, const char *in, const char *out) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (in) posix_spawn_file_actions_addopen(&fa, 0, in, O_RDONLY, 0);
  if (out) posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (out) posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ), st = 0;
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool tool(Compilation *c, char *const *argv, const char *in, const char *out) {
  int rc = run_tool(argv, in, out);
  if (rc == 0) return true;
  if (rc < 0) diag_error(&c->diag, NOLOC, "heed build: cannot run '%s' (is a C compiler installed?)", argv[0]);
  else diag_error(&c->diag, NOLOC, "heed build: '%s' failed (exit status %d)", argv[0], rc);
  return false;
}

#ifdef HEED_HAVE_LLVM
// The CPU features the object needs, as runtime/model.c's check names
// them, as a JSON array into f. The host: LLVM's feature string. A named
// CPU: the predefined macros of a C compiler that knows it (cc, clang-19,
// clang); failing that, what the vector width implies.
static void write_features(Compilation *c, FILE *f, const char *cpu, const char *tmp, int vw) {
  char names[64][24];
  int n = 0;
  if (!cpu) {
    char *fs = cg_llvm_host_features();
    for (char *s = fs ? strtok(fs, ",") : NULL; s && n < 64; s = strtok(NULL, ","))
      if (s[0] == '+' && strlen(s) < 24 && rt_cpu_feature_known(s + 1)) snprintf(names[n++], 24, "%s", s + 1);
    heed_free(fs);
  } else {
    char march[160], path[600];
    snprintf(march, sizeof march, "-march=%s", cpu);
    snprintf(path, sizeof path, "%s/macros.txt", tmp);
    const char *ccs[] = {"cc", "clang-19", "clang"};
    bool got = false;
    for (int k = 0; k < 3 && !got; k++) {
      char *argv[] = {(char *)ccs[k], march, "-dM", "-E", "-x", "c", "/dev/null", NULL};
      got = run_tool(argv, NULL, path) == 0;
    }
    FILE *m = got ? fopen(path, "r") : NULL;
    char line[256], name[24];
    while (m && fgets(line, sizeof line, m) && n < 64) {
      size_t k;  // "#define __AVX512F__ 1" -> "avx512f", __SSE4_1__ -> "sse4.1"
      if (sscanf(line, "#define __%20[A-Z0-9_] 1", name) != 1 || (k = strlen(name)) < 3 || strcmp(name + k - 2, "__"))
        continue;
      name[k - 2] = 0;
      for (char *p = name; *p; p++) *p = *p == '_' ? '.' : (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
      if (rt_cpu_feature_known(name)) snprintf(names[n++], 24, "%s", name);
    }
    if (m) fclose(m);
    if (!got) {
      diag_note(&c->diag, NOLOC, "no C compiler here knows CPU '%s': the program checks only for %s", cpu,
                vw == 16 ? "avx512f, avx2 and fma" : "nothing");
      if (vw == 16) snprintf(names[n++], 24, "avx512f"), snprintf(names[n++], 24, "avx2"), snprintf(names[n++], 24, "fma");
    }
  }
  fputc('[', f);
  for (int i = 0; i < n; i++) fprintf(f, i ? ",\"%s\"" : "\"%s\"", names[i]);
  fputc(']', f);
}
#endif

// ---- the description and the data object ----

#ifdef HEED_HAVE_LLVM
// One graph's part of the description: "params", "nodes" and the memory
// plan for B = 1, T = ctx (and caches of ctx: kvsym >= 0, the appends in
// place), "arena" and "offsets" (per node, -1: no buffer of the arena's).
// False if out of memory.
static bool write_graph(FILE *f, const IrGraph *g, const CgProgram *prog, int ssym, int kvsym, int64_t ctx) {
  fprintf(f, ",\n\"params\":[");
  for (int i = 0; i < g->params.len; i++) {
    fprintf(f, i ? ",[%u," : "[%u,", g->params.data[i]->id);
    json_str(f, g->params.data[i]->name);
    fputc(']', f);
  }
  fprintf(f, "],\n\"nodes\":[");
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    int kind = n->op == IR_OP_INPUT ? 1 : n->op == IR_OP_PARAM ? 2 : cg_node_computed(prog, i) ? 0 : 3;
    fprintf(f, "%s[%d,%d", i ? ",\n" : "", (int)n->ty.dt, kind);
    for (int a = 0; a < n->ty.rank; a++) {
      fprintf(f, ",[%lld", (long long)n->ty.dim[a].n);
      for (int s = 0; s < n->ty.dim[a].nsym; s++) fprintf(f, ",%d", n->ty.dim[a].sym[s]);
      fputc(']', f);
    }
    fputc(']', f);
  }
  fputc(']', f);
  int64_t sv[IR_MAX_SYMS];
  for (int i = 0; i < IR_MAX_SYMS; i++) sv[i] = 1;
  sv[ssym] = ctx;
  if (kvsym >= 0) sv[kvsym] = ctx;
  CgPlan *pl = cg_program_plan(prog, g, sv, kvsym >= 0);
  if (!pl) return false;
  fprintf(f, ",\n\"arena\":%lld,\"offsets\":[", (long long)pl->total);
  for (int i = 0; i < g->nodes.len; i++) fprintf(f, i ? ",%lld" : "%lld", (long long)pl->offset[i]);
  fputc(']', f);
  cg_plan_free(pl);
  return true;
}

// The step graph (pass_kvcache_output): inputs tokens, pos, then the caches
// (k, v per attention); outputs the logits, then the appended caches in
// the inputs' order.
static bool write_step(FILE *f, const IrGraph *s, const CgProgram *prog, const Io *io) {
  int kv = s->inputs.len > 2 ? s->inputs.data[2]->ty.dim[1].sym[0] : 0;
  fprintf(f, ",\n\"step\":{\"nsyms\":%d,\"batch_sym\":%d,\"seq_sym\":%d,\"kv_sym\":%d,\"tokens\":%u,\"pos\":%u,"
          "\"logits\":%u,\"caches\":[", s->syms.len, io->bsym, io->ssym, kv, s->inputs.data[0]->id,
          s->inputs.data[1]->id, s->outputs.data[0]->id);
  for (int i = 2; i < s->inputs.len; i++)
    fprintf(f, "%s[%u,%u]", i > 2 ? "," : "", s->inputs.data[i]->id, s->outputs.data[i - 1]->id);
  fputc(']', f);
  bool ok = write_graph(f, s, prog, io->ssym, kv, io->ctx);
  fputc('}', f);
  return ok;
}

static bool write_meta(Compilation *c, const char *path, const IrGraph *g, const Io *io, const CgProgram *prog,
                       const IrGraph *step, const CgProgram *sprog, const char *cpu, const char *tmp) {
  FILE *f = fopen(path, "w");
  if (!f) return diag_error(&c->diag, NOLOC, "cannot write '%s': %s", path, strerror(errno)), false;
  CgLlvm *cg = cg_llvm_new(cpu, &c->diag);  // for the CPU's name and the sgemm's blocking
  if (!cg) return fclose(f), false;
  CgGemmConfig gc;
  cg_gemm_config_default(cg, &gc, "x", false);
  fprintf(f, "{\"format\":\"heed-model-2\",\"model\":");
  json_str(f, c->model->decl->name);
  fprintf(f, ",\"vocab\":%lld,\"ctx\":%lld,\"window\":%lld,\"trained_seq\":%lld,\"nsyms\":%d,\"batch_sym\":%d,"
          "\"seq_sym\":%d,\"tokens\":%d,\"logits\":%d", (long long)io->vocab, (long long)io->ctx,
          (long long)io->window, (long long)io->seq, g->syms.len, io->bsym, io->ssym, io->tokens, io->logits);
  fprintf(f, ",\"gemm_work\":%zu,\"nthreads_max\":%d,\"cpu\":", cg_gemm_work_bytes(&gc) / (size_t)gc.nthreads_max,
          gc.nthreads_max);
  json_str(f, cg_llvm_cpu_name(cg));
  fprintf(f, ",\"features\":");
  write_features(c, f, cpu, tmp, cg_llvm_vector_width(cg));
  cg_llvm_free(cg);
  bool ok = write_graph(f, g, prog, io->ssym, -1, io->ctx) && (!step || write_step(f, step, sprog, io));
  fprintf(f, "}\n");
  if (!ok) {
    fclose(f);
    return diag_error(&c->diag, NOLOC, "out of memory planning the program's memory"), false;
  }
  if (fclose(f) != 0) return diag_error(&c->diag, NOLOC, "cannot write '%s': %s", path, strerror(errno)), false;
  return true;
}

// An assembler string literal for s (printable ASCII kept, the rest octal).
static void asm_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') fputc(*p, f);
    else fprintf(f, "\\%03o", *p);
  fputc('"', f);
}

// data.S: the description, the weights image (or the weights file's name)
// and the model's name, under the symbols runtime/embed.c declares.
static bool write_data_s(Compilation *c, const char *path, const char *meta, const char *image, const char *wfile) {
  FILE *f = fopen(path, "w");
  if (!f) return diag_error(&c->diag, NOLOC, "cannot write '%s': %s", path, strerror(errno)), false;
  fprintf(f, "  .section .rodata\n  .globl heed_model_meta, heed_model_meta_end, heed_model_weights\n"
             "  .globl heed_model_weights_end, heed_model_weights_file, heed_model_name_str\n"
             "  .balign 64\nheed_model_meta:\n  .incbin ");
  asm_str(f, meta);
  fprintf(f, "\nheed_model_meta_end:\n  .byte 0\nheed_model_weights_file:\n  .asciz ");
  asm_str(f, wfile ? wfile : "");
  fprintf(f, "\nheed_model_name_str:\n  .asciz ");
  asm_str(f, c->model->decl->name);
  fprintf(f, "\n  .balign 64\nheed_model_weights:\n");
  if (image) {
    fprintf(f, "  .incbin ");
    asm_str(f, image);
    fputc('\n', f);
  }
  fprintf(f, "heed_model_weights_end:\n  .section .note.GNU-stack,\"\",@progbits\n");
  if (fclose(f) != 0) return diag_error(&c->diag, NOLOC, "cannot write '%s': %s", path, strerror(errno)), false;
  return true;
}

#endif

// ---- the command ----

// The directory holding the runtime libraries: $HEED_RUNTIME_DIR, else the
// heed executable's own.
static bool runtime_dir(Compilation *c, char *dir, size_t cap) {
  const char *env = getenv("HEED_RUNTIME_DIR");
  if (env && *env) {
    snprintf(dir, cap, "%s", env);
  } else {
    ssize_t n = readlink("/proc/self/exe", dir, cap - 1);
    if (n <= 0) return diag_error(&c->diag, NOLOC, "heed build: cannot find heed's own directory"), false;
    dir[n] = 0;
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
  }
  char lib[4200];
  snprintf(lib, sizeof lib, "%s/libheedrt_standalone.a", dir);
  if (access(lib, R_OK) != 0)
    return diag_error(&c->diag, NOLOC, "heed build: the runtime library '%s' is missing (set HEED_RUNTIME_DIR)", lib),
           false;
  return true;
}

typedef struct {
  char tmp[256], obj[300], step_obj[300], meta[300], image[300], data_s[300], data_o[300];
  bool has_step;  // step_obj was written
  char rtdir[4096], lib_main[4200], lib_rt[4200], header[4200];
} Paths;

// Everything but the final link: the object, the description, the image, data.S.
static bool make_parts(Compilation *c, const IrGraph *g, const HeedBuildOpts *o, const Io *iop, Paths *p,
                       const char *image_dst, const char *wfile) {
#ifdef HEED_HAVE_LLVM
  Io io = *iop;
  void **w = load_weights(c, g, o);
  if (!w) return false;
  bool ok = write_image(c, image_dst, g, w);
  for (int i = 0; i < g->params.len; i++) heed_free(w[i]);
  heed_free(w);
  if (!ok) return false;
  // Compiled for up to 64 threads (the pool pointer is never used: nothing runs here).
  CgOptions co = {.cpu = o->cpu, .pool = (void *)&co, .nthreads = 64, .dump_obj = p->obj};
  HeedCompiled fc, sc = {0};  // the forward; the decode step (pipeline kvcache)
  HeedCompileOpts fo = {.graph = (IrGraph *)g, .passes = "", .stop = HEED_STOP_EMIT, .cg = co};
  if (heed_compile(c, &fo, &fc) != HEED_OK) {
    heed_compiled_free(&fc);
    return false;
  }
  const IrGraph *step = NULL;
  const char *why = "tokens (T)";
  if (g->inputs.data[0]->ty.rank == 2) {  // the KV-cached decode: the same code heed generate runs
    HeedCompileOpts so = {.kind = HEED_GRAPH_DECODE, .graph = (IrGraph *)g, .decode_output = io.out,
                          .stop = HEED_STOP_EMIT, .cg = co};
    so.cg.dump_obj = p->step_obj, so.cg.entry = "heed_step";
    int rc = heed_compile(c, &so, &sc);
    step = sc.cx.why[0] ? NULL : sc.g;
    why = sc.cx.why;
    if (step) ok = p->has_step = rc == HEED_OK;
  }
  if (!step)
    fprintf(stderr, "heed build: note: %s cannot decode incrementally (%s); the program recomputes the whole "
            "window for every token\n", c->model->decl->name, why);
  CgProgram *prog = fc.prog, *sprog = sc.prog;
  ok = ok && write_meta(c, p->meta, g, &io, prog, step, sprog, o->cpu, p->tmp) &&
       write_data_s(c, p->data_s, p->meta, o->weights_file ? NULL : image_dst, wfile);
  heed_compiled_free(&fc);
  heed_compiled_free(&sc);
  return ok;
#else
  (void)g, (void)o, (void)iop, (void)p, (void)image_dst, (void)wfile;
  diag_error(&c->diag, NOLOC, "heed build: this heed was built without the LLVM backend");
  return false;
#endif
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

// True if the archive at path holds the members a library needs: ar -M
// exits 0 even when its SAVE fails (a full disk), leaving an empty or
// partial archive.
static bool archive_whole(Compilation *c, Paths *p, const char *path) {
  char list[300], line[256];
  snprintf(list, sizeof list, "%s/members.txt", p->tmp);
  struct stat sb;
  char *ar[] = {"ar", "t", (char *)path, NULL};
  bool model = false, data = false;
  if (stat(path, &sb) == 0 && sb.st_size > 8 && run_tool(ar, NULL, list) == 0) {
    FILE *f = fopen(list, "r");
    while (f && fgets(line, sizeof line, f)) {
      line[strcspn(line, "\n")] = 0;
      model |= !strcmp(line, "model.o"), data |= !strcmp(line, "data.o");
    }
    if (f) fclose(f);
  }
  if (!model || !data)
    diag_error(&c->diag, NOLOC, "heed build: ar did not write the library (%lld bytes%s; a full disk?)",
               stat(path, &sb) == 0 ? (long long)sb.st_size : 0LL, model || data ? ", members missing" : "");
  return model && data;
}

// An archive: the generated objects plus every member of the runtime (ar's MRI script).
static bool make_lib(Compilation *c, Paths *p, const char *out_a) {
  char *cc[] = {"cc", "-c", "-o", p->data_o, p->data_s, NULL};
  if (!tool(c, cc, NULL, NULL)) return false;
  char script[300];
  snprintf(script, sizeof script, "%s/lib.mri", p->tmp);
  FILE *f = fopen(script, "w");
  if (!f) return diag_error(&c->diag, NOLOC, "cannot write '%s'", script), false;
  fprintf(f, "CREATE %s\nADDLIB %s\nADDMOD %s\nADDMOD %s\n", out_a, p->lib_rt, p->obj, p->data_o);
  if (p->has_step) fprintf(f, "ADDMOD %s\n", p->step_obj);
  fprintf(f, "SAVE\nEND\n");
  if (fclose(f) != 0) return diag_error(&c->diag, NOLOC, "cannot write '%s'", script), false;
  char *ar[] = {"ar", "-M", NULL};
  return tool(c, ar, script, NULL) && archive_whole(c, p, out_a);
}

static bool copy_file(Compilation *c, const char *from, RtOutFile *to) {
  FILE *in = fopen(from, "rb"), *out = in ? rt_out_stream(to) : NULL;
  char buf[8192];
  size_t n;
  bool ok = in && out;
  while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
  if (in) fclose(in);
  if (!ok) diag_error(&c->diag, NOLOC, "cannot copy '%s' to '%s'", from, to->path);
  return ok;
}

// o's temporary file beside path (mode: 0777 for a program).
static bool out_open(Compilation *c, RtOutFile *o, const char *path, unsigned mode) {
  char err[4400];
  if (rt_out_open(o, path, mode, err, sizeof err) == RT_OK) return true;
  diag_error(&c->diag, NOLOC, "%s", err);
  return false;
}

static bool out_commit(Compilation *c, RtOutFile *o) {
  char err[4400];
  if (!o->path || rt_out_commit(o, err, sizeof err) == RT_OK) return true;
  diag_error(&c->diag, NOLOC, "%s", err);
  return false;
}

static void remove_tree(const char *tmp) {
  static const char *names[] = {"model.o", "step.o", "meta.json", "weights.safetensors", "data.S", "data.o", "macros.txt",
                                "lib.mri", "members.txt"};
  char path[300];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
    unlink(path);
  }
  rmdir(tmp);
}

int heed_cmd_build(Compilation *c, const HeedBuildOpts *o) {
  const IrGraph *g = c->model->forward;
  Paths p = {0};
  Io io;
  int rc = model_io(c, g, o, &io);
  if (rc != HEED_OK) return rc;
  if (!runtime_dir(c, p.rtdir, sizeof p.rtdir)) return HEED_ERR_IO;
#ifdef HEED_HAVE_LLVM
  if (!cg_llvm_cpu_valid(o->cpu, &c->diag)) return HEED_ERR_CHECK;  // before anything is made
#endif
  snprintf(p.lib_main, sizeof p.lib_main, "%s/libheedrt_main.a", p.rtdir);
  snprintf(p.lib_rt, sizeof p.lib_rt, "%s/libheedrt_standalone.a", p.rtdir);
  snprintf(p.header, sizeof p.header, "%s/heed_model.h", p.rtdir);
  const char *td = getenv("TMPDIR");  // $TMPDIR if its name fits, else /tmp
  if (!td || !*td || strlen(td) > 200) td = "/tmp";
  snprintf(p.tmp, sizeof p.tmp, "%s/heed-build-XXXXXX", td);
  if (!mkdtemp(p.tmp)) {
    diag_error(&c->diag, NOLOC, "heed build: cannot make a temporary directory: %s", strerror(errno));
    return HEED_ERR_IO;
  }
  snprintf(p.obj, sizeof p.obj, "%s/model.o", p.tmp);
  snprintf(p.step_obj, sizeof p.step_obj, "%s/step.o", p.tmp);
  snprintf(p.meta, sizeof p.meta, "%s/meta.json", p.tmp);
  snprintf(p.image, sizeof p.image, "%s/weights.safetensors", p.tmp);
  snprintf(p.data_s, sizeof p.data_s, "%s/data.S", p.tmp);
  snprintf(p.data_o, sizeof p.data_o, "%s/data.o", p.tmp);

  // Final paths get their bytes under a temporary name beside them first
  // (runtime/outfile.c), renamed over them when all are whole.
  size_t olen = strlen(o->out) + 64;
  char *final_a = heed_malloc(olen), *wdst = heed_malloc(olen), *hdr = heed_malloc(olen), *wname = heed_malloc(olen);
  RtOutFile out = {.fd = -1}, wout = {.fd = -1}, hout = {.fd = -1};
  bool ok = final_a && wdst && hdr && wname;
  if (!ok) diag_error(&c->diag, NOLOC, "out of memory");
  if (ok && o->emit_lib) {
    struct stat sb;
    if (mkdir(o->out, 0777) != 0 && !(errno == EEXIST && stat(o->out, &sb) == 0 && S_ISDIR(sb.st_mode))) {
      diag_error(&c->diag, NOLOC, "heed build: cannot make the directory '%s': %s", o->out, strerror(errno));
      ok = false;
    }
    snprintf(final_a, olen, "%s/libmodel.a", o->out);
    snprintf(hdr, olen, "%s/model.h", o->out);
    snprintf(wdst, olen, "%s/model.safetensors", o->out);
    snprintf(wname, olen, "model.safetensors");
  } else if (ok) {
    snprintf(final_a, olen, "%s", o->out);
    snprintf(wdst, olen, "%s.safetensors", o->out);
    snprintf(wname, olen, "%s.safetensors", base_name(o->out));
  }
  ok = ok && out_open(c, &out, final_a, o->emit_lib ? 0666 : 0777) &&
       (!o->weights_file || out_open(c, &wout, wdst, 0666)) && (!o->emit_lib || out_open(c, &hout, hdr, 0666));
  ok = ok && make_parts(c, g, o, &io, &p, o->weights_file ? rt_out_name(&wout) : p.image,
                        o->weights_file ? wname : NULL);
  if (ok && o->emit_lib) {
    ok = make_lib(c, &p, rt_out_name(&out)) && copy_file(c, p.header, &hout);
  } else if (ok) {
    char *cc[] = {"cc", "-o", (char *)rt_out_name(&out), p.obj, p.data_s, p.lib_main, p.lib_rt, "-lm", "-lpthread",
                  "-s", NULL, NULL};
    if (p.has_step) memmove(cc + 4, cc + 3, sizeof cc - 4 * sizeof *cc), cc[3] = p.step_obj;
    ok = tool(c, cc, NULL, NULL);
  }
  ok = ok && out_commit(c, &wout) && out_commit(c, &hout) && out_commit(c, &out);  // the program or library last
  rt_out_abort(&wout), rt_out_abort(&hout), rt_out_abort(&out);  // nothing left once committed
  if (ok) {
    struct stat sb;
    fprintf(stderr, "heed build: wrote %s (%lld bytes)%s%s\n", final_a,
            stat(final_a, &sb) == 0 ? (long long)sb.st_size : -1LL, o->weights_file ? " and " : "",
            o->weights_file ? wdst : "");
  }
  remove_tree(p.tmp);
  heed_free(final_a), heed_free(wdst), heed_free(hdr), heed_free(wname);
  return ok ? HEED_OK : HEED_ERR_IO;
}
