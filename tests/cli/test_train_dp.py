#!/usr/bin/env python3
# tests/cli/test_train_dp.py: data-parallel `heed train` under Open MPI
# (mpirun -np 2 --oversubscribe on one machine) and --grad-accum, on a tiny
# byte-level GPT (examples/bytegpt.heed shrunk with --set; seconds):
#   - 2 ranks == 1 process with --grad-accum 2: checkpoint bytes (but the
#     random run id) and the loss column, at every checkpoint
#   - 2 ranks resumed as 1 process with --grad-accum 2, and the other way
#     round: bit-identical to the uninterrupted run
#   - --grad-accum that does not divide the batch: exit 2 with a message
#   - ranks with another seed or model file: exit 1 at start, naming both
#   - kill -9 of one rank: the job ends within seconds with an error; the
#     last checkpoint is intact and resumes
# Usage: test_train_dp.py HEED REPO WORKDIR MPIRUN
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HEED, REPO, WORK, MPIRUN = sys.argv[1:5]
MODEL = os.path.join(REPO, "examples", "bytegpt.heed")
TINY = ["--set", "dim=32", "--set", "heads=2", "--set", "layers=1", "--set", "ctx=32",
        "--batch", "4", "--seq", "16", "--sample", "0", "--threads", "1", "--checkpoint-every", "3"]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_btl="self,vader,tcp", OMPI_MCA_btl_vader_single_copy_mechanism="none",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_plm_rsh_agent="")
failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
        if detail:
            print(detail[-3000:])


def args(out, *extra):
    return ["train", MODEL, "--data", DATA, "--out", out] + TINY + list(extra)


def one(out, *extra):
    return subprocess.run([HEED] + args(out, *extra), capture_output=True, text=True, timeout=300, env=ENV)


def mpi(n, out, *extra, per_rank=None):
    cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", str(n), HEED] + args(out, *extra)
    if per_rank:  # MPMD: one argv per rank
        cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root"]
        for i, a in enumerate(per_rank):
            cmd += ([":"] if i else []) + ["-np", "1", HEED] + a
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)


def ckpt_body(path):  # a checkpoint without its run id (random per run): header fields and data
    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    h = json.loads(b[8:8 + n])
    h.get("__metadata__", {}).pop("run_id", None)
    return h, b[8 + n:]


def ckpts(out):
    return sorted(f for f in os.listdir(out) if f.startswith("ckpt-") and f.endswith(".safetensors"))


def losses(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        return [",".join(line.split(",")[:3]) for line in f]


def same_run(a, b, what):
    ok = ckpts(a) == ckpts(b) and len(ckpts(a)) > 0
    for c in ckpts(a) if ok else []:
        ok = ok and ckpt_body(os.path.join(a, c)) == ckpt_body(os.path.join(b, c))
    check(ok and losses(a) == losses(b), what)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
DATA = "data.txt"
with open(DATA, "w") as f:
    for d in sorted(os.listdir(os.path.join(REPO, "docs"))):
        with open(os.path.join(REPO, "docs", d)) as g:
            f.write(g.read())

r = one("acc2", "--steps", "6", "--grad-accum", "2")
check(r.returncode == 0, "1 process --grad-accum 2 trains", r.stderr)
r = mpi(2, "np2", "--steps", "6")
check(r.returncode == 0, "2 ranks train", r.stdout + r.stderr)
same_run("acc2", "np2", "2 ranks == 1 process --grad-accum 2 (checkpoint bytes, losses)")
r = one("plain", "--steps", "6")
check(r.returncode == 0 and ckpt_body("plain/" + ckpts("plain")[-1]) != ckpt_body("acc2/" + ckpts("acc2")[-1]),
      "the test can fail: --grad-accum 2 rounds differently from one batch")

# resume across N: 2 ranks for 3 steps, then 1 process --grad-accum 2; and
# back (a constant schedule: the first leg's run has 3 steps, not 6)
C = ["--set", "schedule=constant"]


def final_same(a, b, what):
    tl = [[ln.split(",")[:2] for ln in losses(d)] for d in (a, b)]  # (the first leg evaluates at its end)
    check(ckpt_body(f"{a}/{ckpts(a)[-1]}") == ckpt_body(f"{b}/{ckpts(b)[-1]}") and tl[0] == tl[1], what)


r = one("accc", "--steps", "6", "--grad-accum", "2", *C)
r1 = mpi(2, "x", "--steps", "3", *C)
r2 = one("x", "--steps", "6", "--resume", "x", "--grad-accum", "2", *C)
check(r.returncode == 0 and r1.returncode == 0 and r2.returncode == 0, "2 ranks resumed as 1 process",
      r.stderr + r1.stderr + r2.stderr)
final_same("accc", "x", "2 ranks then 1 process --grad-accum 2 == uninterrupted")
r1 = one("y", "--steps", "3", "--grad-accum", "2", *C)
r2 = mpi(2, "y", "--steps", "6", "--resume", "y", *C)
check(r1.returncode == 0 and r2.returncode == 0, "1 process resumed as 2 ranks", r1.stderr + r2.stdout + r2.stderr)
final_same("accc", "y", "1 process --grad-accum 2 then 2 ranks == uninterrupted")

r = one("bad", "--steps", "2", "--grad-accum", "3")
check(r.returncode == 2 and "cannot be split into 3 micro-batches" in r.stderr, "--grad-accum 3 of batch 4: exit 2",
      r.stderr)
r = mpi(2, "bad2", "--steps", "2", "--grad-accum", "4")
check(r.returncode != 0 and "cannot be split into 8 micro-batches" in r.stderr, "2 ranks x 4 of batch 4: an error",
      r.stderr)

# mismatched settings: another seed, another model file
r = mpi(2, "", per_rank=[args("mm", "--steps", "2", "--seed", "1"), args("mm", "--steps", "2", "--seed", "2")])
check(r.returncode == 1 and "rank 1's settings differ from rank 0's" in r.stderr and "seed=2" in r.stderr,
      "ranks with another seed: exit 1 at start", r.stderr)
other = os.path.join(WORK, "other.heed")
with open(MODEL) as f, open(other, "w") as g:
    g.write(f.read() + "\n// another file\n")
a1 = args("mm2", "--steps", "2")
a2 = list(a1)
a2[1] = other
r = mpi(2, "", per_rank=[a1, a2])
check(r.returncode == 1 and "settings differ" in r.stderr, "ranks with another model file: exit 1 at start",
      r.stderr)

# kill -9 of one rank: the job ends within seconds; the last checkpoint resumes
cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", "2", HEED] + args("k", "--steps", "100000",
                                                                                 "--checkpoint-every", "5")
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
t0 = time.time()
while time.time() - t0 < 120 and not (os.path.isdir("k") and len(ckpts("k")) >= 1):
    time.sleep(0.2)


def descendants(pid):  # mpirun's children and theirs (Open MPI may start ranks through a daemon)
    kids = {}
    for q in os.listdir("/proc"):
        try:
            with open(f"/proc/{q}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(q))
        except (OSError, ValueError, IndexError):
            pass
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def comm(q):
    try:
        with open(f"/proc/{q}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


pids = descendants(p.pid)
heeds = [q for q in pids if comm(q) == "heed"]
check(len(heeds) == 2, "two heed ranks running", str(pids))
if heeds:
    os.kill(heeds[-1], signal.SIGKILL)
    t1 = time.time()
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    dt = time.time() - t1
    check(p.returncode != 0 and dt < 15, f"kill -9 of a rank ends the job in {dt:.1f} s with an error", err)
    check("signal 9" in err or "Killed" in err, "the error names the killed rank", err)
    last = ckpts("k")[-1]
    r = one("k", "--steps", str(int(last[5:13]) + 2), "--resume", "k", "--grad-accum", "2")
    check(r.returncode == 0, "the last checkpoint resumes", r.stderr)
else:
    p.kill()
    p.communicate()

if failures:
    print(f"{len(failures)} failed")
    sys.exit(1)
print("all passed")
