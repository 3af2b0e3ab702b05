// cli/heed.c: the heed command (CLI.md). Parses argv, runs the driver
// (driver.c), prints results and maps statuses to exit codes: 0 success,
// 1 a user error (bad model file, unreadable input), 2 bad usage. The only
// file in heed that calls exit.
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cli/build.h"
#include "cli/driver.h"
#include "engine/exec.h"
#include "engine/gpu_exec.h"
#include "cli/fault.h"
#include "cli/run.h"
#include "cli/train.h"
#include "runtime/rt.h"

typedef struct {
  const char *name, *summary, *usage, *help;
  bool available;
} Command;

static const Command commands[] = {
    {"check", "parse and type-check a model file",
     "heed check MODEL.heed [--model NAME] [--set KEY=VALUE]... [--params]",
     "Parse and type-check a model file. Prints a one-line summary per model, or\n"
     "diagnostics (FILE:LINE:COL: error: ...) and exits with status 1.\n"
     "  --params           also list every parameter with its full name, dtype and shape\n",
     true},
    {"compile", "write an intermediate form (ast, ir, ir-opt, dot, schedule, plan) or compiled code (llvm, asm, obj; cuda, opencl, ptx)",
     "heed compile MODEL.heed --emit KIND [--loss|--grad|--train-step|--decode] [--passes LIST] [--print-after PASS|all] "
     "[--batch B --seq T] [--gpu-arch SM] [-o OUT]",
     "Compile a model file and write an intermediate form.\n"
     "  --emit ast         the syntax tree, with LINE:COL of every node\n"
     "  --emit ir          the model's forward as IR (the text form ir_parse reads back)\n"
     "  --emit dot         the same graph for Graphviz (dot -Tsvg)\n"
     "  --emit ir-opt      the IR after the pipeline of passes (with --print-after: after those passes)\n"
     "  --loss             the train section's loss graph instead of the forward (no passes)\n"
     "  --grad             the loss and its gradients (passes: autodiff)\n"
     "  --train-step       the whole train step (passes: autodiff,train_step)\n"
     "  --decode           the incremental decode step (passes: kvcache)\n"
     "  --passes LIST      the pipeline instead, e.g. autodiff,train_step ('' for none)\n"
     "  --print-after PASS the IR after that pass (or every pass: all), to -o/stdout with ir-opt, else stderr\n"
     "  --emit schedule    the CPU backend's schedule: kernels in run order, fused nodes, parallel splits\n"
     "  --emit plan        the memory plan for --batch B and --seq T (default: the train section's, else 1 and\n"
     "                     the context): the bytes of every region (parameters, gradients, optimizer state, KV\n"
     "                     caches, outputs, activations and scratch), the arena and the total, before anything runs\n"
     "  --emit llvm|asm|obj  the compiled CPU code: optimized LLVM IR, assembly, an object file (-o needed)\n"
     "  --cpu NAME         the target CPU for llvm/asm/obj/plan (default: this machine's; e.g. znver5, x86-64-v3)\n"
     "  --emit cuda|opencl  the GPU kernels as CUDA C (NVRTC) or OpenCL C, for the sizes of --emit plan\n"
     "  --emit ptx         the CUDA kernels compiled by NVRTC to PTX (--gpu-arch sm_80 by default)\n"
     "  -o OUT             write to OUT instead of standard output\n",
     true},
    {"init", "write the model's initialised parameters",
     "heed init MODEL.heed -o W.safetensors [--seed S]",
     "Write the model's parameters, initialised as their INITs say (normal, uniform:\n"
     "seeded, one random stream per parameter name), as safetensors.\n"
     "  -o FILE            the weights file to write (atomically)\n"
     "  --seed S           the random seed (default 1337)\n",
     true},
    {"run", "evaluate the forward on given inputs",
     "heed run MODEL.heed --weights W --inputs IN --outputs OUT",
     "Evaluate the model's forward (compiled CPU code; the reference interpreter with\n"
     "--interp). IN holds one tensor per forward parameter, by name; OUT gets `out`\n"
     "(or out0, out1, ... for several).\n"
     "  --weights W        parameters (safetensors); a missing, misshapen or extra tensor is an error\n"
     "  --prefix P         tensor names in W carry the prefix P (e.g. transformer.)\n"
     "  --strict=false     ignore tensors in W that are not parameters (and in IN that are not inputs)\n"
     "  --interp           run on the reference interpreter instead of compiled code\n"
     "  --threads N        threads for compiled code (default: the cores)\n",
     true},
    {"grad", "the train loss and every parameter's gradient on given inputs",
     "heed grad MODEL.heed --weights W --inputs IN --outputs OUT",
     "Evaluate the train section's loss on IN and write `loss` and `grad.NAME` for\n"
     "every parameter NAME (reverse-mode autodiff; compiled CPU code, the reference\n"
     "interpreter with --interp).\n"
     "  --weights W, --prefix P, --strict=false, --interp   as for run\n",
     true},
    {"train", "train on a data file: checkpoints, metrics, a loss plot",
     "heed train MODEL.heed --data FILE [--steps N] [--out DIR] [--resume DIR|FILE]",
     "Train a model (its train section) on a data file, with checkpoints, a metrics log\n"
     "(metrics.csv) and a loss plot (loss.svg) in the output directory; a sample of\n"
     "generated text and the heed generate command for the result at the end.\n"
     "SIGINT/SIGTERM: finish the step, save, exit 0.\n"
     "  --data FILE        text (byte tokens 0..255) or .bin (little-endian uint16 tokens)\n"
     "  --val FILE         validation data (default: the last 10% of --data)\n"
     "  --steps N, --batch B, --seq T, --eval-every N, --seed S   the train settings\n"
     "                     (the same as --set steps=N ...)\n"
     "  --out DIR          output directory (default: runs/MODEL, or runs/MODEL-2, ... when that holds a run;\n"
     "                     with --resume, its directory); a new run into a directory holding a run is an error\n"
     "  --resume DIR|FILE  continue from a checkpoint (DIR: its newest), exactly\n"
     "  --force            start over in an --out holding a run (removes its checkpoints, metrics, plot)\n"
     "  --init W           start from weights W (a checkpoint, any safetensors): fresh optimizer, step 1\n"
     "                     (--prefix P, --strict=false as for run)\n"
     "  --freeze PATTERN   do not train the parameters matching PATTERN (a glob on full names, e.g.\n"
     "                     'h.0.*'; repeatable)\n"
     "  --checkpoint-every N  steps between checkpoints (default: eval_every, else steps/10);\n"
     "                     one is also written at the end\n"
     "  --keep K           checkpoints kept (default 3)\n"
     "  --grad-accum K     sum the gradients of K micro-batches (batch/K rows each, in order) per step:\n"
     "                     the same batch in 1/K of the activation memory (K must divide the batch)\n"
     "  --sample N         tokens of text generated at the end (default 200; 0: none; at most 1000000)\n"
     "  --interp           train on the reference interpreter\n"
     "  --profile          print the compile's slowest parts and each kernel's time per step (stderr)\n"
     "  --threads N        threads for compiled code (default: the cores); results do not depend on it\n",
     true},
    {"generate", "generate text with a KV cache",
     "heed generate MODEL.heed --weights W --prompt TEXT [-n N] [--temperature T] [--top-k K] [--top-p P] [--seed S]",
     "Generate text: the prompt's tokens through the model, then N sampled tokens, printed\n"
     "as they come (stdout); timings on stderr. Decoding is incremental (a KV cache derived\n"
     "from the forward's positions and causal attention); a model without causal attention\n"
     "recomputes the whole sequence per token and says so. Any N: past the window (the train\n"
     "section's seq if shorter than the context, else the context) the last half is kept.\n"
     "  --weights W        parameters (safetensors), as for run (--prefix P, --strict=false)\n"
     "  --prompt TEXT      the prompt (bytes; with --tokenizer, GPT-2 BPE tokens)\n"
     "  --tokenizer DIR    a GPT-2 BPE tokenizer: DIR/encoder.json and DIR/vocab.bpe (default: bytes)\n"
     "  -n N               tokens to generate (default 64)\n"
     "  --temperature T    0: greedy (default 1)\n"
     "  --top-k K          sample among the K most probable (default 0: all)\n"
     "  --top-p P          sample among the most probable tokens of mass P (default 1: all)\n"
     "  --seed S           the sampling seed (default 1337; splitmix64, the same on every machine)\n"
     "  --window N, --output NAME   positions to run over (<= the context); the output holding the logits\n"
     "  --interp, --threads N   as for run\n",
     true},
    {"serve", "an HTTP server for completions (OpenAI-style), several requests at once",
     "heed serve MODEL.heed --weights W [--host 127.0.0.1] [--port 8080] [--parallel N] [--ctx T] [--threads N]",
     "Serve the model over HTTP (docs/serve.md): POST /v1/completions (OpenAI's completions,\n"
     "streaming with server-sent events), GET /v1/models, /health, /metrics (Prometheus).\n"
     "Up to N requests decode at once, each in its own KV-cache slot; the others wait in a\n"
     "bounded queue (503 and Retry-After when it is full). SIGTERM or SIGINT: stop accepting,\n"
     "finish what was accepted within the grace period, exit 0. One JSON access-log line per\n"
     "request on stderr. Greedy (temperature 0) answers equal heed generate's.\n"
     "  --weights W        parameters (safetensors), as for run (--prefix P, --strict=false)\n"
     "  --host ADDR        the address to listen on (default 127.0.0.1); another than loopback needs --api-key\n"
     "  --port P           the port (default 8080; 0: any free one, printed on stderr)\n"
     "  --api-key KEY      clients must send 'Authorization: Bearer KEY' (all but /health)\n"
     "  --parallel N       requests decoded at once, one KV cache each (default 4)\n"
     "  --ctx T            positions a slot holds (default: as generate's window; <= the context)\n"
     "  --queue N          requests waiting for a slot before 503 (default 64)\n"
     "  --timeout S        seconds a request may take from its arrival (default 600; then 504)\n"
     "  --grace S          seconds in-flight requests get after SIGTERM (default 30)\n"
     "  --max-body BYTES   the largest request body (default 1048576; then 413)\n"
     "  --max-tokens N     the largest max_tokens a request may ask for (default 4096)\n"
     "  --tokenizer DIR, --output NAME   as for generate\n"
     "  --seed S           the sampling seed of a request without one (default 1337)\n"
     "  --threads N        as for run\n",
     true},
    {"build", "a standalone inference program, or a static library and header",
     "heed build MODEL.heed --weights W -o PROGRAM [--weights-file] [--cpu NAME] | --emit-lib -o DIR",
     "Build a standalone program: the compiled model, its weights and a small runtime that\n"
     "needs only libc, libm and pthreads (no LLVM, no heed). PROGRAM takes heed generate's\n"
     "flags (--prompt, -n, --temperature, --top-k, --top-p, --seed) and --help.\n"
     "  --weights W        parameters (safetensors), checked as for run (--prefix, --strict=false)\n"
     "  -o PROGRAM         the program to write (or the directory, with --emit-lib)\n"
     "  --weights-file     keep the weights in PROGRAM.safetensors beside it (mapped) instead of inside\n"
     "  --cpu NAME         compile for that CPU (default: this machine's; e.g. x86-64-v3, znver5)\n"
     "  --emit-lib         write DIR/libmodel.a and DIR/model.h for embedding (examples/embed/)\n"
     "  --window N, --output NAME   the program's default window; the output holding the logits (as generate)\n",
     true},
    {"bench", "time compiling, the forward and the train step",
     "heed bench MODEL.heed [--train] [--batch B] [--seq T] [--json] [--profile]",
     "Time compiling the model, its forward and (--train) the train loss's forward and\n"
     "backward (not the optimizer update: heed train --profile times whole steps), on\n"
     "initialised parameters and random inputs, after a warm-up.\n"
     "  --batch B, --seq T  the sizes (default: the train section's, else 1 and 64)\n"
     "  --reps N           timed runs (median; default 5)\n"
     "  --json             one JSON object: compile_ms, forward_ms, train_step_ms, threads, peak_bytes,\n"
     "                     values_peak_bytes and plan_bytes (the executor's buffers at their peak, and\n"
     "                     the memory plan of the same graph: heed compile --emit plan; train_ for --train)\n"
     "  --profile          print the compile's slowest parts and each kernel's time (stderr)\n"
     "  --interp           time the reference interpreter instead\n",
     true},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static const char common_flags[] =
    "Common flags:\n"
    "  --model NAME       which model of the file (default: the only or last one)\n"
    "  --set KEY=VALUE    override a config value or a train setting (repeatable)\n"
    "  --max-errors N     stop reporting after N errors (default 20)\n"
    "  --target NAME      the backend: cpu; opencl or cuda (GPU kernels; run, grad and bench)\n"
    "  --print-after PASS the IR after that pass of the command's pipeline (or all), on stderr\n"
    "  --threads N        threads for compiled code (default: the cores)\n"
    "  --quantize KIND    int8, int4 or bf16: not available in this version\n"
    "  -h, --help         this help\n";

// `heed help`: one line per command (as git and cargo), details in `heed help CMD`.
static void usage_all(FILE *out) {
  fprintf(out, "usage: heed COMMAND [ARGS]\n\nheed compiles Transformer models described in .heed files.\n\n"
               "Commands:\n");
  for (int i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].available ? commands[i].summary : "(not in this version)");
  fprintf(out, "\nRun 'heed help COMMAND' or 'heed COMMAND --help' for a command's flags;\n"
               "'heed --version' for the version.\n"
               "\nEnvironment:\n"
               "  HEED_CACHE_DIR     where compiled code is cached (default $XDG_CACHE_HOME/heed or ~/.cache/heed;\n"
               "                     at most 256 MiB, least recently used first out; safe to delete);\n"
               "                     HEED_CACHE=0 compiles everything afresh\n");
}

#ifndef HEED_VERSION
#define HEED_VERSION "unknown"
#endif
#ifndef HEED_LLVM_VERSION
#define HEED_LLVM_VERSION "none"
#endif

static void print_version(void) {
#ifdef HEED_HAVE_LLVM
  printf("heed %s (targets: cpu, through LLVM %s)\n", HEED_VERSION, HEED_LLVM_VERSION);
#else
  printf("heed %s (no compiled targets: the reference interpreter only)\n", HEED_VERSION);
#endif
}

// "; did you mean 'x'?" for the closest of n names (edit distance <= 2), or "".
static const char *closest(const char *name, const char *const *cands, int n, char *buf, size_t len) {
  const char *pick = diag_closest(name, cands, n, 2);
  if (!pick) return "";
  snprintf(buf, len, "; did you mean '%s'?", pick);
  return buf;
}

static void usage_cmd(const Command *c, FILE *out) {
  fprintf(out, "usage: %s\n\n%s\n%s", c->usage, c->help, common_flags);
}

static const Command *find_command(const char *name) {
  for (int i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

typedef struct {
  HeedOptions o;
  FeOverride sets[64];
  const char *emit, *out, *cpu, *passes, *gpu_arch;
  bool params, help;
  HeedGraphKind kind;  // compile: --loss, --grad, --train-step, --decode
  HeedRunOpts run;
  HeedBenchOpts bench;
  HeedTrainOpts train;
  HeedGenOpts gen;
  HeedBuildOpts build;
  HeedServeOpts serve;
} Args;

// --target NAME: a target this heed has (codegen's registry), or one heed
// knows of that this build lacks (cuda): a clear error, never a silent CPU run.
static bool target_built(const char *name) {
#ifdef HEED_HAVE_LLVM
  return cg_target_find(name) != NULL;
#else
  (void)name;
  return false;
#endif
}

static bool target_known(const char *name) { return !strcmp(name, "cpu") || !strcmp(name, "cuda"); }

// The GPU targets (engine/gpu_exec.c) run heed run, grad and bench so far.
static bool gpu_target_ok(const char *cmd) { return !strcmp(cmd, "run") || !strcmp(cmd, "grad") || !strcmp(cmd, "bench"); }

static int usage_error(const Command *c, const char *fmt, const char *arg) {
  fprintf(stderr, "heed %s: ", c->name);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nusage: %s\n", c->usage);
  return 2;
}

// "; did you mean '--x'?" for an unknown flag: the candidates are the flags
// that command c's help and the common flags name.
static const char *flag_suggestion(const Command *c, const char *flag, char *buf, size_t len) {
  const char *texts[] = {c->help, common_flags};
  const char *cands[128];
  char names[128][32];
  int n = 0;
  char want[32];
  snprintf(want, sizeof want, "%.*s", (int)strcspn(flag, "="), flag);
  for (int t = 0; t < 2; t++)
    for (const char *p = strstr(texts[t], "--"); p && n < 128; p = strstr(p + 2, "--")) {
      size_t k = 2 + strspn(p + 2, "abcdefghijklmnopqrstuvwxyz-");
      if (k < 4 || k >= sizeof names[0]) continue;
      snprintf(names[n], sizeof names[n], "%.*s", (int)k, p);
      cands[n] = names[n];
      n++;
    }
  return closest(want, cands, n, buf, len);
}

// Parses the flags of command c; returns 0 or an exit status.
static int parse_args(const Command *c, int argc, char **argv, Args *a) {
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    int used = 0;
    if (!strcmp(c->name, "train")) {  // train flags; settings become --set KEY=VALUE
      const char *key;
      char msg[256];
      if ((used = heed_train_flag(&a->train, s, val, &key, msg, sizeof msg)) < 0) return usage_error(c, "%s", msg);
      for (int k = 0; key && k < a->o.check.noverrides; k++)  // a later flag wins
        if (!strcmp(a->sets[k].key, key)) a->sets[k].value = val, key = NULL;
      if (key && a->o.check.noverrides >= 64) return usage_error(c, "too many --set flags%s", "");
      if (key && !(a->sets[a->o.check.noverrides].key = heed_strdup(key))) return fprintf(stderr, "heed %s: out of memory (copying the flag '%s')\n", c->name, s), 1;
      if (key) a->sets[a->o.check.noverrides].used = true;  // no train section: heed_cmd_train says so
      if (key) a->sets[a->o.check.noverrides++].value = val;
      i += used > 0 ? used - 1 : 0;
    } else if (!strcmp(c->name, "serve")) {
      char bad[256];
      if ((used = heed_serve_flag(&a->serve, s, val, bad, sizeof bad)) < 0) return usage_error(c, "%s", bad);
      i += used > 0 ? used - 1 : 0;
    } else if (!strcmp(c->name, "generate") || !strcmp(c->name, "build")) {
      char bad[256];
      if ((used = c->name[0] == 'g' ? heed_gen_flag(&a->gen, s, val, bad, sizeof bad)
                                    : heed_build_flag(&a->build, s, val, bad, sizeof bad)) < 0) return usage_error(c, "%s", bad);
      i += used > 0 ? used - 1 : 0;
    }
    if (used > 0) {
      continue;
    } else if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
      a->help = true;
    } else if (!strcmp(s, "--params") && !strcmp(c->name, "check")) {
      a->params = true;
    } else if ((!strcmp(s, "--loss") || !strcmp(s, "--grad") || !strcmp(s, "--train-step") ||
                !strcmp(s, "--decode")) && !strcmp(c->name, "compile")) {
      a->kind = s[2] == 'l' ? HEED_GRAPH_LOSS : s[2] == 'g' ? HEED_GRAPH_GRAD : s[2] == 't' ? HEED_GRAPH_TRAIN_STEP
                                                                                       : HEED_GRAPH_DECODE;
    } else if ((!strcmp(s, "--passes") && !strcmp(c->name, "compile")) || !strcmp(s, "--print-after")) {
      const Pass *pipe[16];
      int np;
      char err[200];
      bool list = !strcmp(s, "--passes");
      if (!val) return usage_error(c, "%s needs a value", s);
      i++;
      if (list && !pass_parse_list(val, pipe, 16, &np, err, sizeof err)) return usage_error(c, "%s", err);
      if (!list && strcmp(val, "all") && !pass_find(val)) {  // did-you-mean from pass_parse_list
        if (!*val || pass_parse_list(val, pipe, 16, &np, err, sizeof err))  // "", or a list of passes
          snprintf(err, sizeof err, "--print-after takes one pass's name or all, not '%s'", val);
        return usage_error(c, "%s", err);
      }
      if (list) a->passes = val;
      else a->o.print_after = val;
    } else if (!strcmp(s, "--interp")) {
      a->run.interp = a->bench.interp = true;
    } else if (!strcmp(s, "--train") && !strcmp(c->name, "bench")) {
      a->bench.train = true;
    } else if (!strcmp(s, "--json") && !strcmp(c->name, "bench")) {
      a->bench.json = true;
    } else if (!strcmp(s, "--profile") && !strcmp(c->name, "bench")) {
      a->bench.profile = true;
    } else if ((!strcmp(s, "--batch") || !strcmp(s, "--seq") || !strcmp(s, "--reps")) &&
               (!strcmp(c->name, "bench") || (s[2] != 'r' && !strcmp(c->name, "compile")))) {
      char *end;
      long n = val ? strtol(val, &end, 10) : 0;
      if (!val || *end || n < 1 || n > 1000000) return usage_error(c, "expected a positive number, got '%s'", val ? val : "");
      i++;
      if (s[2] == 'b') a->bench.batch = n;
      else if (s[2] == 's') a->bench.seq = n;
      else a->bench.reps = (int)n;
    } else if (!strncmp(s, "--strict=", 9)) {
      if (strcmp(s + 9, "true") && strcmp(s + 9, "false")) return usage_error(c, "--strict takes true or false, not '%s'", s + 9);
      a->run.strict = !strcmp(s + 9, "true");
    } else if ((!strcmp(s, "--weights-file") || !strcmp(s, "--emit-lib")) && !strcmp(c->name, "build")) {
      if (s[2] == 'w') a->build.weights_file = true;
      else a->build.emit_lib = true;
    } else if (!strcmp(s, "--cpu") && (!strcmp(c->name, "compile") || !strcmp(c->name, "build"))) {
      if (!val) return usage_error(c, "%s needs a value", s);
      a->cpu = val;
      i++;
    } else if (!strcmp(s, "--weights") || !strcmp(s, "--inputs") || !strcmp(s, "--outputs") ||
               !strcmp(s, "--prefix") || !strcmp(s, "--seed")) {
      if (!val) return usage_error(c, "%s needs a value", s);
      i++;
      if (!strcmp(s, "--weights")) a->run.weights = val;
      else if (!strcmp(s, "--inputs")) a->run.inputs = val;
      else if (!strcmp(s, "--outputs")) a->run.outputs = val;
      else if (!strcmp(s, "--prefix")) a->run.prefix = val;
      else {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(val, &end, 10);
        if (*end || !*val || val[0] == '-' || errno == ERANGE)  // not clamped to 2^64 - 1
          return usage_error(c, "--seed takes an integer from 0 to 18446744073709551615, got '%s'", val);
        a->run.seed = v;
      }
    } else if (!strcmp(s, "--model") || !strcmp(s, "--set") || !strcmp(s, "--emit") || !strcmp(s, "-o") ||
               !strcmp(s, "--max-errors") || !strcmp(s, "--target") || !strcmp(s, "--threads") ||
               !strcmp(s, "--gpu-arch")) {
      if (!val) return usage_error(c, "%s needs a value", s);
      i++;
      if (!strcmp(s, "--model")) a->o.check.model_name = val;
      else if (!strcmp(s, "--gpu-arch") && (strncmp(val, "sm_", 3) || !val[3] || strspn(val + 3, "0123456789a") != strlen(val + 3)))
        return usage_error(c, "--gpu-arch takes a CUDA architecture such as sm_80 or sm_90, not '%s'", val);
      else if (!strcmp(s, "--gpu-arch")) a->gpu_arch = val;
      else if (!strcmp(s, "--emit")) a->emit = val;
      else if (!strcmp(s, "-o")) a->out = val;
      else if (!strcmp(s, "--target") && heed_gpu_target(val, NULL) && !gpu_target_ok(c->name)) {
        fprintf(stderr, "heed %s: error: --target %s is not available for heed %s yet (run, grad and bench run on it)\n",
                c->name, val, c->name);
        return 1;
      } else if (!strcmp(s, "--target") && heed_gpu_target(val, NULL)) a->o.target = val;
      else if (!strcmp(s, "--target") && !target_built(val) && !target_known(val))
        return usage_error(c, "--target must be cpu, opencl or cuda, not '%s'", val);
      else if (!strcmp(s, "--target") && !target_built(val)) {
        fprintf(stderr, "heed %s: error: the %s target is not available in this build (only cpu is)\n", c->name, val);
        return 1;
      } else if (!strcmp(s, "--target")) a->o.target = val;
      else if (!strcmp(s, "--threads") || !strcmp(s, "--max-errors")) {
        char *end;
        long n = strtol(val, &end, 10);
        if (*end || n < 1 || n > 100000) return usage_error(c, "expected a positive number, got '%s'", val);
        if (!strcmp(s, "--threads") && n > 256) return usage_error(c, "--threads takes 1 to 256, not %s", val);
        if (!strcmp(s, "--max-errors")) a->o.max_errors = (int)n;
        else a->run.threads = a->bench.threads = (int)n, a->run.threads_auto = false;
      } else if (!strcmp(s, "--set")) {
        const char *eq = strchr(val, '=');
        if (!eq || eq == val || !eq[1]) return usage_error(c, "--set takes KEY=VALUE, got '%s'", val);
        if (a->o.check.noverrides >= 64) return usage_error(c, "too many --set flags%s", "");
        FeOverride *ov = &a->sets[a->o.check.noverrides++];
        size_t klen = (size_t)(eq - val);
        char *key = heed_malloc(klen + 1);
        if (!key) return fprintf(stderr, "heed %s: out of memory (copying --set %s)\n", c->name, val), 1;
        memcpy(key, val, klen);
        key[klen] = 0;
        *ov = (FeOverride){.key = key, .value = eq + 1};
      }
    } else if (!strcmp(s, "--quantize")) {
      if (!val) return usage_error(c, "%s needs a value", s);
      if (strcmp(val, "int8") && strcmp(val, "int4") && strcmp(val, "bf16"))
        return usage_error(c, "--quantize takes int8, int4 or bf16, not '%s'", val);
      fprintf(stderr, "heed %s: error: --quantize %s: quantization is not available in this version of heed\n", c->name, val);
      return 1;
    } else if (s[0] == '-' && s[1]) {
      char hint[64];
      fprintf(stderr, "heed %s: unknown flag '%s'%s\nusage: %s\n", c->name, s, flag_suggestion(c, s, hint, sizeof hint),
              c->usage);
      return 2;
    } else if (!a->o.path) {
      a->o.path = s;
    } else {
      return usage_error(c, "unexpected argument '%s' (one model file at a time)", s);
    }
  }
  a->o.check.overrides = a->sets;
  return 0;
}

typedef struct {
  FILE *out;
  const FeModel *m;
} ParamPrint;

static void print_param(void *ud, const char *name, const FeParamDecl *p) {
  ParamPrint *pp = ud;
  char buf[512];
  fprintf(pp->out, "  %s %s %s", p->is_buffer ? "buffer" : "param ", name,
          ir_type_str(&p->type, &pp->m->syms, true, buf, sizeof buf));
  if (!strcmp(p->init.kind, "constant")) fprintf(pp->out, " = constant(%g)\n", p->init.a);
  else if (!strcmp(p->init.kind, "normal")) fprintf(pp->out, " = normal(%g, %g)\n", p->init.a, p->init.b);
  else if (!strcmp(p->init.kind, "uniform")) fprintf(pp->out, " = uniform(%g, %g)\n", p->init.a, p->init.b);
  else fprintf(pp->out, " = %s\n", p->init.kind);
}

static void print_summary(const Compilation *c, bool params) {
  const FeModel *m = c->model;
  char buf[512];
  printf("%s: model %s: %lld parameters in %lld tensors\n", c->opts->path, m->decl->name,
         (long long)m->nparam_elems, (long long)m->nparam_tensors);
  for (int i = 0; i < m->ninputs; i++)
    printf("  input  %s: %s\n", m->input_names[i], ir_type_str(&m->inputs[i], &m->syms, true, buf, sizeof buf));
  for (int i = 0; i < m->noutputs; i++)
  {
    char nm[16];
    snprintf(nm, sizeof nm, m->noutputs == 1 ? "out" : "out%d", i);
    printf("  output %s: %s\n", nm, ir_type_str(&m->outputs[i], &m->syms, true, buf, sizeof buf));
  }
  if (m->train) {
    const FeTrain *t = m->train;
    printf("  train  %s(lr=%g), schedule %s, clip %g, batch %lld, seq %lld, steps %lld\n", t->optimizer, t->lr,
           t->schedule, t->clip, (long long)t->batch, (long long)t->seq, (long long)t->steps);
  }
  if (params) {
    ParamPrint pp = {stdout, m};
    fe_model_each_param(m, print_param, &pp);
  }
}

static int status_to_exit(int rc) { return rc == HEED_OK ? 0 : rc == HEED_ERR_USAGE ? 2 : 1; }

// init, run, grad: what each needs on the command line.
static const char *missing_run_flag(const Command *cmd, const Args *a) {
  if (!strcmp(cmd->name, "init")) return a->out ? NULL : "-o FILE";
  if (!strcmp(cmd->name, "serve")) return !a->run.weights ? "--weights W" : NULL;
  if (!strcmp(cmd->name, "generate")) return !a->run.weights ? "--weights W" : !a->gen.prompt ? "--prompt TEXT" : NULL;
  if (!strcmp(cmd->name, "build")) return !a->run.weights ? "--weights W" : a->out ? NULL : "-o PROGRAM";
  if (!a->run.weights) return "--weights W";
  if (!a->run.inputs) return "--inputs IN";
  if (!a->run.outputs) return "--outputs OUT";
  return NULL;
}

// Before any work (exit 1 or 2, nothing computed): every file the command
// writes can be written, and none of them is one of its inputs (`run
// --weights w.st --outputs w.st` would replace the weights).
static int check_outputs(const Command *cmd, const Args *a) {
  const char *outs[3] = {0}, *flag = "-o";
  char lib[3][4200];
  bool is = !strcmp(cmd->name, "run") || !strcmp(cmd->name, "grad");
  if (is) outs[0] = a->run.outputs, flag = "--outputs";
  else if (!strcmp(cmd->name, "init") || !strcmp(cmd->name, "compile")) outs[0] = a->out;
  else if (!strcmp(cmd->name, "build") && a->out && a->build.emit_lib) {
    struct stat sb;
    bool there = stat(a->out, &sb) == 0 && S_ISDIR(sb.st_mode);
    snprintf(lib[0], sizeof lib[0], "%s/libmodel.a", a->out);
    snprintf(lib[1], sizeof lib[1], "%s/model.h", a->out);
    snprintf(lib[2], sizeof lib[2], "%s/model.safetensors", a->out);
    outs[0] = there ? lib[0] : a->out, outs[1] = lib[1], outs[2] = a->build.weights_file ? lib[2] : NULL;
  } else if (!strcmp(cmd->name, "build") && a->out) {
    snprintf(lib[2], sizeof lib[2], "%s.safetensors", a->out);
    outs[0] = a->out, outs[1] = a->build.weights_file ? lib[2] : NULL;
  }
  const char *ins[] = {a->o.path, a->run.weights, a->run.inputs};
  const char *inflag[] = {"the model file", "--weights", "--inputs"};
  char err[4400];
  for (int i = 0; i < 3; i++) {
    if (!outs[i]) continue;
    for (int k = 0; k < 3; k++)
      if (ins[k] && rt_same_file(outs[i], ins[k])) {
        fprintf(stderr, "heed: error: %s: %s '%s' is %s ('%s'): it would be overwritten; write elsewhere\n",
                cmd->name, flag, outs[i], inflag[k], ins[k]);
        return 2;
      }
    if (rt_out_check(outs[i], err, sizeof err) != RT_OK) {
      fprintf(stderr, "heed: error: %s\n", err);
      return 1;
    }
    if (outs[i] == a->out && a->build.emit_lib) break;  // DIR is made later, in a writable directory
  }
  return 0;
}

// compile --emit llvm|asm|obj: LLVM writes the file by name, a temporary
// one beside -o's path that replaces it only when whole.
static int emit_native(Compilation *c, const HeedCompileOpts *base, const Args *a) {
  if (!a->out) return heed_exec_emit(c, base, a->emit, "/dev/stdout", a->cpu) ? HEED_OK : HEED_ERR_CHECK;
  RtOutFile of;
  char err[600];
  if (rt_out_open(&of, a->out, 0666, err, sizeof err) != RT_OK) {
    fprintf(stderr, "heed: error: %s\n", err);
    return HEED_ERR_IO;
  }
  if (!heed_exec_emit(c, base, a->emit, rt_out_name(&of), a->cpu)) {
    rt_out_abort(&of);
    return HEED_ERR_CHECK;
  }
  if (rt_out_commit(&of, err, sizeof err) != RT_OK) {
    fprintf(stderr, "heed: error: %s\n", err);
    return HEED_ERR_IO;
  }
  return HEED_OK;
}

// compile --emit ir-opt: the graph after the pipeline, or with --print-after
// the IR after the passes it names (into out, as -o says).
static int emit_ir_opt(Compilation *c, HeedCompileOpts *base, FILE *out) {
  HeedCompiled hc;
  base->stop = HEED_STOP_PASSES;
  base->print_to = out;
  int rc = heed_compile(c, base, &hc);
  if (rc == HEED_OK && !c->opts->print_after) ir_print(hc.g, out);
  if (rc == HEED_ERR_CHECK && hc.cx.why[0])
    diag_error(&c->diag, (SrcLoc){0}, "%s cannot decode incrementally: %s", hc.g ? hc.g->name : "the model", hc.cx.why);
  heed_compiled_free(&hc);
  return rc;
}

// compile --emit plan: the sizes as --batch and --seq say, else the train
// section's, else batch 1 and the model's context.
static int emit_plan(Compilation *c, const HeedCompileOpts *base, const Args *a, FILE *out) {
  const FeTrain *t = c->model ? c->model->train : NULL;
  int64_t batch = a->bench.batch ? a->bench.batch : t ? t->batch : 1;
  int64_t seq = a->bench.seq ? a->bench.seq : t ? t->seq : c->model && c->ast ? heed_model_context(c) : 0;
  if (seq <= 0) {
    fprintf(stderr, "heed compile: --emit plan needs --seq T (the model has no train section or context)\n");
    return HEED_ERR_USAGE;
  }
  HeedCompileOpts o = *base;
#ifdef HEED_HAVE_LLVM
  o.cg.cpu = a->cpu;  // the workspace follows the CPU's vector width and the threads (--threads, as run and
  o.cg.nthreads = a->run.threads;  // bench use them; the pool is never used: nothing runs)
  o.cg.pool = a->run.threads > 1 ? (void *)&o : NULL;
#endif
  return heed_exec_emit_plan(c, &o, batch, seq, out, NULL) ? HEED_OK : HEED_ERR_CHECK;
}

// compile --emit cuda|opencl|ptx: the GPU kernels for the sizes --emit
// plan takes (B = batch, every other size = seq).
static int emit_gpu(Compilation *c, const HeedCompileOpts *base, const Args *a, FILE *out) {
  const FeTrain *t = c->model ? c->model->train : NULL;
  int64_t batch = a->bench.batch ? a->bench.batch : t ? t->batch : 1;
  int64_t seq = a->bench.seq ? a->bench.seq : t ? t->seq : c->model && c->ast ? heed_model_context(c) : 0;
  if (seq <= 0) {
    fprintf(stderr, "heed compile: --emit %s needs --seq T (the model has no train section or context)\n", a->emit);
    return HEED_ERR_USAGE;
  }
  return heed_gpu_emit(c, base, a->emit, batch, seq, a->gpu_arch ? a->gpu_arch : "sm_80", out);
}

static int cmd_frontend(const Command *cmd, Args *a) {
  Compilation *c = heed_compilation_new(&a->o);
  if (!c) {
    fprintf(stderr, "heed: out of memory\n");
    return 1;
  }
  int rc;
  if (!strcmp(cmd->name, "compile")) {
    FILE *out = stdout;
    bool ast = !strcmp(a->emit, "ast");
    bool native = !strcmp(a->emit, "llvm") || !strcmp(a->emit, "asm") || !strcmp(a->emit, "obj") ||
                  !strcmp(a->emit, "schedule");
    size_t plen = strlen(a->o.path);
    bool ir_in = plen > 3 && !strcmp(a->o.path + plen - 3, ".ir");  // IR text in, for pass debugging
    a->o.check.lower = !ast;
    rc = ir_in ? (ast ? HEED_ERR_USAGE : heed_read_ir(c)) : ast ? heed_parse_only(c) : heed_frontend(c);
    if (rc == HEED_ERR_USAGE) fprintf(stderr, "heed compile: an .ir file has no syntax tree; use --emit ir or dot\n");
    bool loss = a->kind == HEED_GRAPH_LOSS || a->kind == HEED_GRAPH_GRAD || a->kind == HEED_GRAPH_TRAIN_STEP;
    IrGraph *g = ir_in ? c->ir : c->model ? (loss ? c->model->loss : c->model->forward) : NULL;
    if (rc == HEED_OK && !ast && !g && !ir_in) {
      fprintf(stderr, "heed: error: model '%s' has no %s to emit\n", c->model ? c->model->decl->name : "?",
              loss ? "train section (loss)" : "forward");
      rc = HEED_ERR_CHECK;
    }
    HeedCompileOpts base = {.kind = a->kind, .graph = g, .passes = a->passes};
    if (rc == HEED_OK && native) {
      if (!strcmp(a->emit, "obj") && !a->out) {
        fprintf(stderr, "heed compile: --emit obj needs -o FILE\n");
        rc = HEED_ERR_USAGE;
      } else {
        rc = emit_native(c, &base, a);
      }
      diag_finish(&c->diag);
      heed_compilation_free(c);
      return status_to_exit(rc);
    }
    RtOutFile of = {.fd = -1};
    char err[600];
    if (rc == HEED_OK && a->out && (rt_out_open(&of, a->out, 0666, err, sizeof err) != RT_OK ||
                                    !(out = rt_out_stream(&of)))) {
      fprintf(stderr, "heed: error: %s\n", of.path ? "out of memory" : err);
      rt_out_abort(&of);
      rc = HEED_ERR_IO;
    }
    if (rc == HEED_OK && ast) fe_ast_print(c->ast, out);
    else if (rc == HEED_OK && !strcmp(a->emit, "ir-opt")) rc = emit_ir_opt(c, &base, out);
    else if (rc == HEED_OK && !strcmp(a->emit, "plan")) rc = emit_plan(c, &base, a, out);
    else if (rc == HEED_OK && (!strcmp(a->emit, "cuda") || !strcmp(a->emit, "opencl") || !strcmp(a->emit, "ptx")))
      rc = emit_gpu(c, &base, a, out);
    else if (rc == HEED_OK && !strcmp(a->emit, "ir")) ir_print(g, out);
    else if (rc == HEED_OK) ir_print_dot(g, out);
    if (out && out != stdout && rc == HEED_OK && rt_out_commit(&of, err, sizeof err) != RT_OK) {
      fprintf(stderr, "heed: error: %s\n", err);
      rc = HEED_ERR_IO;
    } else if (rc != HEED_OK) {
      rt_out_abort(&of);
    }
  } else if (!strcmp(cmd->name, "check")) {
    rc = heed_frontend(c);
    if (rc == HEED_OK && c->model) print_summary(c, a->params);
  } else {
    a->o.check.lower = true;
    a->run.out = a->out;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = heed_frontend(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == HEED_OK && !c->model->forward) rc = HEED_ERR_CHECK;
    if (rc == HEED_OK && !strcmp(cmd->name, "bench")) {
      const FeTrain *t = c->model->train;
      if (!a->bench.batch) a->bench.batch = t ? t->batch : 1;
      if (!a->bench.seq) a->bench.seq = t ? t->seq : 64;
      if (!a->bench.reps) a->bench.reps = 5;
      rc = heed_cmd_bench(c, &a->bench, (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    } else if (rc == HEED_OK && !strcmp(cmd->name, "init")) rc = heed_cmd_init(c, &a->run);
    else if (rc == HEED_OK && !strcmp(cmd->name, "run")) rc = heed_cmd_run(c, &a->run);
    else if (rc == HEED_OK && !strcmp(cmd->name, "train")) {
      a->train.interp = a->run.interp, a->train.threads = a->run.threads;
      rc = heed_cmd_train(c, &a->train);
    }
    else if (rc == HEED_OK && !strcmp(cmd->name, "generate")) rc = heed_cmd_generate(c, &a->run, &a->gen);
    else if (rc == HEED_OK && !strcmp(cmd->name, "serve")) rc = heed_cmd_serve(c, &a->run, &a->serve);
    else if (rc == HEED_OK && !strcmp(cmd->name, "build")) {
      a->build = (HeedBuildOpts){a->run.weights, a->run.prefix, a->run.strict, a->out, a->cpu,
                                 a->build.weights_file, a->build.emit_lib, a->build.output, a->build.window};
      rc = heed_cmd_build(c, &a->build);
    }
    else if (rc == HEED_OK) rc = heed_cmd_grad(c, &a->run);
  }
  diag_finish(&c->diag);
  heed_compilation_free(c);
  return status_to_exit(rc);
}

static const char *command_suggestion(const char *name, char *buf, size_t len) {
  const char *names[NCOMMANDS + 1];
  for (int i = 0; i < NCOMMANDS; i++) names[i] = commands[i].name;
  names[NCOMMANDS] = "help";
  return closest(name, names, NCOMMANDS + 1, buf, len);
}

int main(int argc, char **argv) {
  char hint[64];
  if (heed_fault_install()) return 2;  // HEED_FAULT_ALLOC, HEED_FAULT_COUNT: before any allocation
  if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") || !strcmp(argv[1], "version"))) {
    print_version();
    return 0;
  }
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage_all(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "help")) {
    if (argc < 3) {
      usage_all(stdout);
      return 0;
    }
    const Command *c = find_command(argv[2]);
    if (!c) {
      fprintf(stderr, "heed help: unknown command '%s'%s\n", argv[2], command_suggestion(argv[2], hint, sizeof hint));
      return 2;
    }
    usage_cmd(c, stdout);
    return 0;
  }
  const Command *cmd = find_command(argv[1]);
  if (!cmd) {
    fprintf(stderr, "heed: unknown command '%s'%s\nRun 'heed help' for the list of commands.\n", argv[1],
            command_suggestion(argv[1], hint, sizeof hint));
    return 2;
  }
  rt_sigbus_guard("heed");  // a weights file truncated while mapped: a message, exit 1
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = cores < 1 ? 1 : cores > 256 ? 256 : (int)cores;
  Args a = {.run = {.strict = true, .seed = 1337, .threads = threads, .threads_auto = true}, .bench = {.threads = threads},
            .train = {.sample = -1, .prog = argv[0]}, .gen = {.n = 64, .temperature = 1, .top_p = 1},
            .serve = {.host = "127.0.0.1", .port = 8080, .parallel = 4, .queue = 64, .timeout_s = 600, .grace_s = 30,
                      .max_body = 1 << 20, .max_tokens = 4096}};
  int rc = parse_args(cmd, argc - 2, argv + 2, &a);
  if (!cmd->available && !a.help) {  // its flags are not parsed yet
    rc = 0;
  }
  if (rc == 0 && a.help) {
    usage_cmd(cmd, stdout);
  } else if (rc == 0 && !cmd->available) {
    fprintf(stderr, "heed %s: not available in this version of heed (check, compile, init, run, grad, train, generate, serve, build and bench are)\n",
            cmd->name);
    rc = 1;
  } else if (rc == 0 && !a.o.path) {
    rc = usage_error(cmd, "missing the model file%s", "");
  } else if (rc == 0 && missing_run_flag(cmd, &a) &&
             (!strcmp(cmd->name, "init") || !strcmp(cmd->name, "run") || !strcmp(cmd->name, "grad") ||
              !strcmp(cmd->name, "generate") || !strcmp(cmd->name, "build") || !strcmp(cmd->name, "serve"))) {
    rc = usage_error(cmd, "missing %s", missing_run_flag(cmd, &a));
  } else if (rc == 0 && a.bench.profile && heed_gpu_target(a.o.target, NULL)) {
    fprintf(stderr, "heed bench: error: --profile is not available with --target %s yet\n", a.o.target);
    rc = 1;
  } else if (rc == 0 && !strcmp(cmd->name, "train") && !a.train.data) {
    rc = usage_error(cmd, "missing --data FILE%s", "");
  } else if (rc == 0 && !strcmp(cmd->name, "compile") && !a.emit) {
    rc = usage_error(cmd, "--emit KIND is required%s", "");
  } else if (rc == 0 && !strcmp(cmd->name, "compile") && strcmp(a.emit, "ast") && strcmp(a.emit, "ir") &&
             strcmp(a.emit, "ir-opt") && strcmp(a.emit, "plan") &&
             strcmp(a.emit, "dot") && strcmp(a.emit, "schedule") && strcmp(a.emit, "llvm") && strcmp(a.emit, "asm") &&
             strcmp(a.emit, "obj") && strcmp(a.emit, "cuda") && strcmp(a.emit, "opencl") && strcmp(a.emit, "ptx")) {
    rc = usage_error(cmd, "unknown --emit kind '%s' (ast, ir, ir-opt, dot, schedule, plan, llvm, asm, obj, cuda, opencl, ptx)",
                     a.emit);
  } else if (rc == 0 && a.gpu_arch && (strcmp(cmd->name, "compile") || strcmp(a.emit, "ptx"))) {
    rc = usage_error(cmd, "--gpu-arch is for compile --emit ptx (the architecture NVRTC compiles for)%s", "");
  } else if (rc == 0 && !(rc = check_outputs(cmd, &a))) {
    rc = cmd_frontend(cmd, &a);
  }
  for (int i = 0; i < a.o.check.noverrides; i++) heed_free((char *)a.sets[i].key);
  return rc;
}
