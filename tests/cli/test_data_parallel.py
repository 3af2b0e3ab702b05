#!/usr/bin/env python3
# tests/cli/test_data_parallel.py: `mpirun -np N heed train` (cli/train.c,
# runtime/comm_mpi.c): data-parallel training on Open MPI, two ranks on this
# machine (--oversubscribe, shared memory):
#   - 2 ranks are 1 process with --grad-accum 2, bit for bit: every tensor
#     of the final checkpoint (the metadata differs only in the run id) and
#     the loss, val_loss, lr and grad_norm columns of metrics.csv; the same
#     for 2 ranks with --grad-accum 4 against 1 process with --grad-accum 4
#   - the same with 4 KiB buckets (HEED_DP_BUCKET_KB=4): many buckets summed
#     while the backward runs; --profile names them and the time waited
#   - resumed with another N: 2 ranks for 10 steps then 1 process to 20, and
#     1 process for 10 then 2 ranks to 20, equal an uninterrupted run
#   - only rank 0 writes: one checkpoint set, one metrics.csv
#   - kill -9 of one rank: the job ends within seconds with mpirun's message
#     (exit non-zero, no hang) and the last checkpoint resumes
#   - ranks whose commands differ (the seed): a clear error at the start,
#     exit non-zero, no step taken; --grad-accum 3 on 2 ranks: an error
# Usage: test_data_parallel.py HEED REPO WORKDIR
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

HEED, REPO, WORK = (os.path.abspath(a) for a in sys.argv[1:4])
MODEL = os.path.join(REPO, "examples", "bytegpt.heed")
DATA = os.path.join(REPO, "..", "shared", "data", "moby-dick.txt")
SMALL = ["--set", "dim=64", "--set", "layers=1", "--batch", "8", "--seq", "32", "--threads", "1", "--sample", "0",
         "--eval-every", "5"]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
# Under ASan (make asan), Open MPI's own allocations at MPI_Init, freed by
# no one, are reported as leaks from its unloaded components ("unknown
# module"), which suppressions cannot name: leak detection is off for the
# ranks under mpirun only (the single-process runs here and heed's other
# tests keep it; ASan's other checks stay on).
MPI_ENV = dict(ENV, ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":"))
MPIRUN = ["mpirun", "--oversubscribe", "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none"]
failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what + ("" if cond or not detail else "\n     " + detail[-1500:]), flush=True)
    if not cond:
        failures.append(what)


def train(out, *extra, ranks=1, steps=20, timeout=300):
    cmd = [HEED, "train", MODEL, "--data", DATA, "--out", out, "--steps", str(steps)] + SMALL + list(extra)
    if ranks > 1:
        cmd = MPIRUN + ["-np", str(ranks)] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, env=MPI_ENV if ranks > 1 else ENV, timeout=timeout)


def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    data = b[8 + n:]
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items()}, meta


def same_run(a, b, what, step=20):
    ca, cb = (os.path.join(d, "ckpt-%08d.safetensors" % step) for d in (a, b))
    if not (os.path.exists(ca) and os.path.exists(cb)):
        check(False, what, "missing checkpoint: %s %s" % (os.listdir(a), os.listdir(b)))
        return
    ta, ma = tensors(ca)
    tb, mb = tensors(cb)
    differ = [k for k in ta if ta[k] != tb.get(k)] + [k for k in tb if k not in ta]
    meta = [k for k in ma if k != "run_id" and ma[k] != mb.get(k)]
    rows = lambda d: [l.split(",")[:5] for l in open(os.path.join(d, "metrics.csv")).read().split("\n")[1:] if l]
    check(not differ and not meta and len(ta) > 10 and rows(a) == rows(b), what,
          "tensors differ: %s; metadata differs: %s; metrics equal: %s" % (differ[:5], meta, rows(a) == rows(b)))


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    w = lambda name: os.path.join(WORK, name)
    r1 = train(w("accum2"), "--grad-accum", "2")
    r2 = train(w("ranks2"), ranks=2)
    check(r1.returncode == 0 and r2.returncode == 0, "1 process --grad-accum 2 and 2 ranks train", r1.stderr + r2.stderr)
    same_run(w("accum2"), w("ranks2"), "2 ranks == 1 process with --grad-accum 2, bit for bit")
    check("data-parallel over 2 ranks" in r2.stderr and r2.stderr.count("heed train: ByteGPT") == 1,
          "rank 0 alone prints the start line; the communication time is reported", r2.stderr)
    check(sorted(os.listdir(w("ranks2"))) == sorted(os.listdir(w("accum2"))), "only rank 0 writes files",
          str(os.listdir(w("ranks2"))))
    r1 = train(w("accum4"), "--grad-accum", "4")
    r2 = train(w("ranks2accum4"), "--grad-accum", "4", ranks=2)
    check(r1.returncode == 0 and r2.returncode == 0, "--grad-accum 4: 1 process and 2 ranks train", r1.stderr + r2.stderr)
    same_run(w("accum4"), w("ranks2accum4"), "2 ranks x 2 micro-batches == 1 process x 4, bit for bit")
    # overlap: buckets of 4 KiB (many) summed while the backward runs; the bits stay
    cmd = MPIRUN + ["-x", "HEED_DP_BUCKET_KB", "-np", "2", HEED, "train", MODEL, "--data", DATA, "--out",
                    w("buckets"), "--steps", "20", "--profile"] + SMALL
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(MPI_ENV, HEED_DP_BUCKET_KB="4"), timeout=300)
    check(r.returncode == 0 and "overlapped: buckets sent as the backward writes them" in r.stderr and
          re.search(r"\n  ([2-9]|\d\d+) buckets of at most \d+ floats", r.stderr) is not None,
          "2 ranks, 4 KiB buckets: overlapped, --profile shows the buckets and the time waited", r.stderr)
    same_run(w("accum2"), w("buckets"), "2 ranks with buckets sent during the backward == 1 process, bit for bit")

    # resume with another number of ranks
    ra = train(w("r2to1"), ranks=2, steps=10)
    rb = train(w("r2to1"), "--resume", w("r2to1"), "--grad-accum", "2", steps=20)
    check(ra.returncode == 0 and rb.returncode == 0, "2 ranks for 10 steps, resumed as 1 process", ra.stderr + rb.stderr)
    same_run(w("accum2"), w("r2to1"), "2 ranks then 1 process == one uninterrupted run")
    ra = train(w("r1to2"), "--grad-accum", "2", steps=10)
    rb = train(w("r1to2"), "--resume", w("r1to2"), ranks=2, steps=20)
    check(ra.returncode == 0 and rb.returncode == 0, "1 process for 10 steps, resumed as 2 ranks", ra.stderr + rb.stderr)
    same_run(w("accum2"), w("r1to2"), "1 process then 2 ranks == one uninterrupted run")

    # errors at the start
    r = train(w("bad3"), "--grad-accum", "3", ranks=2, timeout=60)
    check(r.returncode != 0 and "--grad-accum 3: with 2 ranks it must be a multiple of 2" in r.stderr,
          "--grad-accum 3 on 2 ranks: a clear error", r.stderr)
    cmd = [HEED, "train", MODEL, "--data", DATA, "--out", w("mismatch"), "--steps", "20"] + SMALL
    t0 = time.time()
    r = subprocess.run(MPIRUN + ["-np", "1"] + cmd + ["--seed", "1", ":", "-np", "1"] + cmd + ["--seed", "2"],
                       capture_output=True, text=True, env=MPI_ENV, timeout=60)
    check(r.returncode != 0 and "every rank must run the same command" in r.stderr and time.time() - t0 < 30 and
          not os.path.exists(os.path.join(w("mismatch"), "metrics.csv")),
          "ranks with different seeds: a clear error at the start, no step", r.stderr)

    # kill -9 of one rank mid-run
    out = w("killed")
    cmd = MPIRUN + ["-np", "2", HEED, "train", MODEL, "--data", DATA, "--out", out, "--steps", "100000",
                    "--checkpoint-every", "10"] + SMALL
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=MPI_ENV)
    t0 = time.time()
    while time.time() - t0 < 120 and not (os.path.isdir(out) and any(f.startswith("ckpt-") for f in os.listdir(out))):
        time.sleep(0.2)
    kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    ranks = [k for k in kids if open("/proc/%s/comm" % k).read().strip() == "heed"] if kids else []
    check(len(ranks) == 2, "two rank processes under mpirun", str(kids))
    if ranks:
        os.kill(int(ranks[-1]), signal.SIGKILL)
        t1 = time.time()
        try:
            _, err = p.communicate(timeout=30)
            ended = time.time() - t1
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            ended = None
        check(ended is not None and ended < 15 and p.returncode != 0, "kill -9 of a rank ends the job within seconds",
              "ended after %s s, exit %s: %s" % (ended, p.returncode, err))
        check("signal 9" in err or "Killed" in err or "killed" in err, "mpirun names the killed rank", err)
        r = train(out, "--resume", out, "--grad-accum", "2", steps=max(s for s in [10] + [
            int(f[5:13]) for f in os.listdir(out) if f.startswith("ckpt-")]) + 5)
        check(r.returncode == 0, "the last checkpoint resumes after the kill", r.stderr)
    else:
        p.kill()
        p.communicate()
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
