#!/usr/bin/env python3
# tests/cli/test_fault.py: the allocation fault-injection sweep (issue 18;
# SQLite's and Lua's OOM tests). It sits on top of the whole data flow: for
# each command below it runs heed once with HEED_FAULT_COUNT=1 to learn how
# many allocations the command makes (C, through ir/alloc.h's hook), then
# once with HEED_FAULT_ALLOC=N for N = 1..C (cli/fault.c: the Nth
# allocation fails). Each faulted run must either
#   - exit 1 with "out of memory" or "cannot allocate" on stderr (the
#     message names what could not be allocated; strerror's "Cannot allocate
#     memory" after what failed for a libc call's errno), or
#   - recover (an allocation it can do without) and exit 0 with the same
#     stdout and output files as the fault-free run;
# never a signal, another exit status, a sanitizer report or a leak (the
# sanitizer build runs it with ASAN_OPTIONS=detect_leaks=1), and the fault
# must have fired (the run's own count reaches N).
# Commands: check, compile --emit llvm (mlp and a tiny bytegpt), run
# (compiled and --interp), train --steps 1 (compiled and --interp). The
# compiled ones use a warm object cache (HEED_CACHE_DIR) so that a run costs
# no LLVM optimization: the cache is filled by the fault-free run first and
# its hits happen on compile threads, whose allocations are not counted.
# HEED_FAULT_STRIDE=K (default 1: every N) tries N = 1..64 and then every
# Kth. Prints each command's count and the totals: runs, failed (exit 1),
# recovered (exit 0), bad.
# Usage: test_fault.py HEED REPO WORKDIR
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time

HEED, REPO, WORK = (os.path.abspath(a) for a in sys.argv[1:4])
MLP = os.path.join(REPO, "examples", "mlp.heed")
GPT = os.path.join(REPO, "examples", "bytegpt.heed")
TINY = ["--set", "dim=16", "--set", "heads=2", "--set", "layers=1", "--set", "ctx=16"]
TRAIN = ["--steps", "1", "--batch", "2", "--seq", "8", "--sample", "0", "--threads", "1"]
TIMEOUT = int(os.environ.get("HEED_TEST_TIMEOUT", "120"))  # per run (the sanitizer build is slow)
STRIDE = max(1, int(os.environ.get("HEED_FAULT_STRIDE", "1")))
JOBS = max(1, min(4, os.cpu_count() or 1))
OOM = ("out of memory", "cannot allocate", "Cannot allocate memory")  # the last: strerror(ENOMEM)
SANITIZER = ("Sanitizer", "runtime error:", "LeakSanitizer", "internal error")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def st_tensors(path):  # a safetensors file's tensors (name -> header entry, bytes), without metadata
    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items()}


def st_write(path, name, vals, shape):  # one int32 tensor
    data = b"".join(int(v).to_bytes(4, "little", signed=True) for v in vals)
    h = json.dumps({name: {"dtype": "I32", "shape": shape, "data_offsets": [0, len(data)]}}).encode()
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + data)


def W(*p):
    return os.path.join(WORK, *p)


def outputs(kind, d):  # what a successful run wrote, to compare with the fault-free run's
    if kind == "run":
        return st_tensors(os.path.join(d, "out.st"))
    if kind == "train":
        ck = sorted(f for f in os.listdir(d) if f.startswith("ckpt-") and f.endswith(".safetensors"))
        return [st_tensors(os.path.join(d, c)) for c in ck]
    return None


def invoke(argv, d, env):
    args = [a.replace("@DIR", d) for a in argv]
    return subprocess.run([HEED] + args, capture_output=True, text=True, env=env, timeout=TIMEOUT, cwd=d)


def fault_count(stderr):
    for line in stderr.splitlines():
        if line.startswith("heed: HEED_FAULT_COUNT: "):
            return int(line.split()[2])
    return None


def run_one(name, kind, argv, n, base):
    d = W("runs", "%s-%d" % (name, n))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    env = dict(ENV, HEED_FAULT_ALLOC=str(n), HEED_FAULT_COUNT="1")
    try:
        r = invoke(argv, d, env)
    except subprocess.TimeoutExpired:
        return "bad", "N=%d: timed out" % n
    count = fault_count(r.stderr)
    why = None
    if any(s in r.stderr for s in SANITIZER):
        why = "a sanitizer report or internal error"
    elif r.returncode not in (0, 1):
        why = "exit status %d" % r.returncode
    elif count is None or count < n:
        why = "the fault did not fire (count %s)" % count
    elif r.returncode == 1 and not any(m in r.stderr for m in OOM):
        why = "exit 1 without 'out of memory'"
    elif r.returncode == 0 and ((kind != "train" and r.stdout != base[0]) or outputs(kind, d) != base[1]):
        why = "exit 0 with other output"
    if why:
        tail = "\n".join(r.stderr.strip().splitlines()[-6:])
        return "bad", "%s N=%d: %s\n    %s" % (name, n, why, tail.replace("\n", "\n    "))
    shutil.rmtree(d, ignore_errors=True)
    return ("failed" if r.returncode == 1 else "recovered"), None


def sweep(name, kind, argv, totals):
    d = W("runs", name + "-base")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    invoke(argv, d, ENV)  # warms the object cache
    shutil.rmtree(d)
    os.makedirs(d)
    r = invoke(argv, d, dict(ENV, HEED_FAULT_COUNT="1"))
    count = fault_count(r.stderr)
    check(r.returncode == 0 and count, "%s: the fault-free run exits 0 and counts (%s)" % (name, r.stderr[-300:]))
    if r.returncode or not count:
        return
    base = (r.stdout, outputs(kind, d))
    ns = [n for n in range(1, count + 1) if n <= 64 or n % STRIDE == 0 or n == count]
    t0 = time.time()
    res = {"failed": 0, "recovered": 0, "bad": 0}
    with concurrent.futures.ThreadPoolExecutor(JOBS) as ex:
        for what, msg in ex.map(lambda n: run_one(name, kind, argv, n, base), ns):
            res[what] += 1
            if msg:
                print("     " + msg, flush=True)
    for k in res:
        totals[k] += res[k]
    totals["runs"] += len(ns)
    check(res["bad"] == 0, "%s: %d allocations, %d tried: %d exit 1 out of memory, %d recover, %d bad (%.1f s)" %
          (name, count, len(ns), res["failed"], res["recovered"], res["bad"], time.time() - t0))


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(W("runs"))
ENV = dict(os.environ, HEED_CACHE_DIR=W("objcache"))
ENV.pop("HEED_CACHE", None)
ENV.pop("HEED_FAULT_ALLOC", None)
ENV.pop("HEED_FAULT_COUNT", None)
ENV["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=1").lstrip(":")
r = subprocess.run([HEED, "init", MLP, "-o", W("mlp.st"), "--seed", "1"], capture_output=True, text=True)
r2 = subprocess.run([HEED, "init", GPT, "-o", W("gpt.st"), "--seed", "1"] + TINY, capture_output=True, text=True)
check(r.returncode == 0 and r2.returncode == 0, "init the weights")
st_write(W("mlp_in.st"), "tokens", range(16), [2, 8])
st_write(W("gpt_in.st"), "tokens", [(7 * i) % 256 for i in range(32)], [2, 16])
with open(W("data.txt"), "w") as f:
    f.write("the quick brown fox jumps over the lazy dog. " * 40)

RUN_MLP = ["run", MLP, "--weights", W("mlp.st"), "--inputs", W("mlp_in.st"), "--outputs", "@DIR/out.st"]
RUN_GPT = ["run", GPT] + TINY + ["--weights", W("gpt.st"), "--inputs", W("gpt_in.st"), "--outputs", "@DIR/out.st"]
TRAIN_GPT = ["train", GPT] + TINY + TRAIN + ["--data", W("data.txt"), "--out", "@DIR/t"]
CASES = [
    ("check-mlp", "check", ["check", MLP]),
    ("check-gpt", "check", ["check", GPT] + TINY),
    ("llvm-mlp", "compile", ["compile", MLP, "--emit", "llvm"]),
    ("llvm-gpt", "compile", ["compile", GPT, "--emit", "llvm"] + TINY),
    ("run-mlp", "run", RUN_MLP),
    ("run-mlp-interp", "run", RUN_MLP + ["--interp"]),
    ("run-gpt", "run", RUN_GPT),
    ("train-gpt", "train", TRAIN_GPT),
    ("train-gpt-interp", "train", TRAIN_GPT + ["--interp"]),
]
only = os.environ.get("HEED_FAULT_ONLY")  # a comma-separated subset of the case names (debugging)
totals = {"runs": 0, "failed": 0, "recovered": 0, "bad": 0}
t0 = time.time()
for name, kind, argv in CASES:
    if not only or name in only.split(","):
        sweep(name, kind, argv, totals)
print("fault sweep: %d runs (stride %d), %d exit 1 out of memory, %d recover, %d bad, %.1f s" %
      (totals["runs"], STRIDE, totals["failed"], totals["recovered"], totals["bad"], time.time() - t0))
if failures:
    print("%d FAILED" % len(failures))
    sys.exit(1)
