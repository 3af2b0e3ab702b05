#!/usr/bin/python3
"""bench/dp_bench.py: data-parallel training on one machine, mpirun -np 2
heed train (1 thread per rank) against one heed train process on 2 threads,
the same global batch and the same steps, alternating the two sides.

The step time is the mean interval between metrics.csv rows past the first
five (compile excluded; rows with an evaluation skipped). Both runs compute
the same micro-batches: the 2-rank run sums its two ranks' gradients in
rank order, so the process side runs --grad-accum 2 too (bit-identical
results, checked here on the final checkpoint's tensors). The ratio
(process / ranks) above 1 means the ranks are faster; the communication
time rank 0 reports per step is printed beside it. A third side runs the
ranks without overlap (HEED_DP_BUCKET_KB=0: the whole sum after the
backward) against the default (1 MiB buckets summed while the backward
runs). Run with /usr/bin/python3.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
MPIRUN = ["mpirun", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none"]


def run(a, out, ranks, bucket_kb=None):
    cmd = [a.heed, "train", os.path.join(ROOT, "examples/bytegpt.heed"), "--data", a.data, "--out", out, "--steps",
           str(a.steps), "--eval-every", str(a.steps), "--sample", "0", "--threads", "1" if ranks > 1 else "2",
           "--grad-accum", "2"] + sum((["--set", s] for s in a.set), [])
    if ranks > 1:
        cmd = (a.mpirun.split() if a.mpirun else MPIRUN + ["--mca", "btl", a.btl]) + ["-np", str(ranks)] + cmd
    env = dict(ENV, **({"HEED_DP_BUCKET_KB": str(bucket_kb)} if bucket_kb is not None else {}))
    if ranks > 1 and bucket_kb is not None:
        cmd[cmd.index("-np"):cmd.index("-np")] = ["-x", "HEED_DP_BUCKET_KB"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    el = [float(l.split(",")[6]) for l in open(os.path.join(out, "metrics.csv")).read().split("\n")[1:]
          if l and not l.split(",")[2]]
    comm = [l for l in p.stderr.split("\n") if "ms per step in communication" in l]
    return (el[-1] - el[4]) / (len(el) - 5) * 1e3, comm[0].split("ranks: ")[1].split(" ms")[0] if comm else "-"


def tensors(d, steps):
    b = open(os.path.join(d, "ckpt-%08d.safetensors" % steps), "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heed", default=os.path.join(ROOT, "build/heed"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "moby-dick.txt"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mpirun", default="", help="the whole mpirun command instead (without -np), e.g. to put the "
                    "ranks in two network namespaces: see docs/distributed.md")
    ap.add_argument("--btl", default="self,vader", help="Open MPI's transports: self,vader (shared memory) or "
                    "self,tcp (TCP over loopback)")
    ap.add_argument("--set", action="append", default=["layers=4", "dim=256", "batch=16", "seq=64"],
                    help="model/train overrides (default: L4 C256, batch 16, seq 64)")
    a = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for i in range(a.rounds):
            p_ms, _ = run(a, os.path.join(work, "p%d" % i), 1)
            r_ms, comm = run(a, os.path.join(work, "r%d" % i), 2)
            n_ms, ncomm = run(a, os.path.join(work, "n%d" % i), 2, bucket_kb=0)
            same = all(tensors(os.path.join(work, "p%d" % i), a.steps) == tensors(os.path.join(work, d % i), a.steps)
                       for d in ("r%d", "n%d"))
            rows.append((p_ms, r_ms, comm, same, n_ms, ncomm))
    print("CPU: %s (%d cores); bytegpt.heed %s, --grad-accum 2, %d steps; ranks over btl %s" % (
        cpu, os.cpu_count(), " ".join(a.set), a.steps, a.mpirun or a.btl))
    print("round  1 process x 2 threads ms  2 ranks x 1 thread ms  process/ranks  rank 0 comm ms/step  "
          "ranks, no overlap ms  (comm ms/step)  same bits")
    for i, (p, r, c, s, n, nc) in enumerate(rows):
        print("%5d  %26.2f  %21.2f  %13.2f  %19s  %20.2f  %14s  %s" % (i + 1, p, r, p / r, c, n, nc,
                                                                     "yes" if s else "NO"))
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
