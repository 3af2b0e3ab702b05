#!/usr/bin/python3
"""bench/train_bench.py: time to a validation loss, `heed train` against an
equivalent PyTorch CPU training loop.

The model: examples/bytegpt.heed (a byte-level GPT; --layers/--dim/--heads/
--seq override its config, ctx = seq), trained on ../shared/data/moby-dick.txt
(relative to the repository root) with its train section's settings: AdamW
(lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on rank >= 2
parameters), cosine schedule (warmup 50, min_lr 1e-4), clipping at 1.0,
batch 16.

Both sides start from the same parameters (`heed init --seed`, which the
trainer reproduces bit for bit, loaded into the PyTorch model), see the same
batches in the same order (runtime/data.c's splitmix64 windows, reimplemented
below) and are evaluated on the same fixed validation windows (8 batches over
the last 10% of the file) every --eval-every steps, with the same thread count
(PyTorch: torch.set_num_threads + OpenBLAS's, the env of bench/model_bench.py).

heed's first run starts from an empty object cache (HEED_CACHE_DIR in a
temporary directory), so it compiles everything: the cold start a new
model or new settings get. With --warm a second heed run follows with the
cache the first filled (a rerun of the same model and settings).

Reported for each: the wall time from process start (heed: including the
compile; PyTorch: including `import torch`) to the first evaluation with
validation loss <= each --target, the wall time of the whole run (--steps),
the median time of a training step (heed: between metrics.csv rows of steps
without an evaluation; PyTorch: timed in its loop), the start-up before the
first step (heed: the compile), the final validation loss, and the peak
resident memory of the process (ru_maxrss of the child; heed's includes
LLVM's compile, PyTorch's the Python interpreter and torch's libraries).
Ratio = PyTorch time / heed time (above 1: heed is faster). Run with
/usr/bin/python3 (Debian's python3-torch).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

T_START = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
M64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def lr_at(step, total, lr=1e-3, warmup=50, min_lr=1e-4):  # heed_train_lr, cosine, step 1-based
    if step <= warmup:
        return lr * step / warmup
    p = min(1.0, (step - warmup) / (total - warmup))
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * p)) / 2


def torch_worker(spec):
    import resource
    import numpy as np
    import torch
    import torch.nn.functional as F
    import model_bench as mb

    n = spec["threads"]
    torch.set_num_threads(n)
    binfo = mb.blas_info()
    ob = [p for p in binfo["libs"] if "libopenblas" in os.path.basename(p)]
    if ob:
        import ctypes
        ctypes.CDLL(ob[0]).openblas_set_num_threads(n)
    cfg, B, T, steps = spec["cfg"], spec["batch"], spec["seq"], spec["steps"]
    model = mb.torch_model(cfg)
    mb.load_heed_weights(model, mb.read_safetensors(spec["init"]))
    data = np.fromfile(spec["data"], dtype=np.uint8).astype(np.int64)
    cut = int(len(data) * 0.9)
    train, val = torch.from_numpy(data[:cut]), torch.from_numpy(data[cut:])
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    V = cfg["vocab"]
    idx = torch.arange(T)

    def windows(src, offsets):
        o = torch.tensor(offsets).unsqueeze(1) + idx
        return src[o], src[o + 1]

    nw, last = 8 * B, len(val) - T - 1
    val_off = [int(last * w / (nw - 1)) for w in range(nw)]

    def evaluate():
        model.eval()
        with torch.no_grad():
            tot = 0.0
            for b in range(8):
                x, y = windows(val, val_off[b * B:(b + 1) * B])
                tot += F.cross_entropy(model(x).view(-1, V), y.view(-1)).item()
        model.train()
        return tot / 8

    rng, span = spec["seed"] ^ 0x5DEECE66D, cut - T
    rows, hit, step_s = [], {}, []
    model.train()
    first = None
    for step in range(1, steps + 1):
        t_step = time.time()
        offs = []
        for _ in range(B):
            rng, z = splitmix64(rng)
            offs.append(z % span)
        x, y = windows(train, offs)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        step_s.append(time.time() - t_step)
        if first is None:
            first = time.time() - spec["t0"] - step_s[-1]
        val_loss = None
        if step % spec["eval_every"] == 0 or step == steps:
            val_loss = evaluate()
            for t in spec["targets"]:
                if str(t) not in hit and val_loss <= t:
                    hit[str(t)] = time.time() - spec["t0"]
        rows.append((step, lv, val_loss))
    step_s.sort()
    json.dump({"rows": rows, "hit": hit, "total_s": time.time() - spec["t0"], "step_s": step_s[len(step_s) // 2],
               "startup_s": first,
               "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "blas": binfo}, open(spec["out"], "w"))


def run_child(cmd, env=None):
    """Runs cmd; returns (exit status, wall s, peak RSS bytes of that child)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), err.decode(errors="replace")[-2000:]))
    return time.time() - t0, ru.ru_maxrss * 1024


def heed_run(a, sets, data, work, cache):
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, HEED_CACHE_DIR=cache)
    cmd = [a.heed, "train", os.path.join(ROOT, "examples/bytegpt.heed"), "--data", data, "--out", work,
           "--steps", str(a.steps), "--eval-every", str(a.eval_every), "--checkpoint-every", str(a.steps),
           "--sample", "0", "--threads", str(a.threads), "--seed", str(a.seed)] + sets
    wall, rss = run_child(cmd, env)
    hit, final, prev, steps, first = {}, None, None, [], None
    for line in open(os.path.join(work, "metrics.csv")).read().split("\n")[1:]:
        f = line.split(",")
        if len(f) < 7:
            continue
        el = float(f[6])  # elapsed_s: since heed train started (compile included)
        if prev is not None and not f[2]:
            steps.append(el - prev)
        prev = el
        if f[2]:
            final = float(f[2])
            for t in a.targets:
                if str(t) not in hit and final <= t:
                    hit[str(t)] = el
    steps.sort()
    step_s = steps[len(steps) // 2] if steps else None
    first = float(open(os.path.join(work, "metrics.csv")).read().split("\n")[1].split(",")[6])
    return {"hit": hit, "total_s": wall, "final_val": final, "maxrss": rss, "step_s": step_s,
            "startup_s": first - (step_s or 0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heed", default=os.path.join(ROOT, "build/heed"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "moby-dick.txt"))
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--target", default="2.5,2.2", help="validation losses to reach (nats per byte), comma-separated")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--warm", action="store_true",
                    help="also run heed a second time with its object cache filled by the first (the first, "
                         "always reported, starts from an empty cache: HEED_CACHE_DIR in the work directory)")
    ap.add_argument("--torch-worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.targets = [float(t) for t in str(a.target).split(",")]
    if a.torch_worker:
        return torch_worker(json.load(open(a.torch_worker)))
    import model_bench as mb
    data = os.path.abspath(a.data)
    if not os.path.exists(data):
        sys.exit("train_bench: no data file %s (the repository's ../shared/data/moby-dick.txt)" % data)
    sets = ["--set", "layers=%d" % a.layers, "--set", "dim=%d" % a.dim, "--set", "heads=%d" % a.heads,
            "--set", "ctx=%d" % a.seq, "--seq", str(a.seq), "--batch", str(a.batch)]
    cfg, _ = mb.heed_config(os.path.join(ROOT, "examples/bytegpt.heed"),
                            ["layers=%d" % a.layers, "dim=%d" % a.dim, "heads=%d" % a.heads, "ctx=%d" % a.seq])
    with tempfile.TemporaryDirectory(prefix="heed_train_bench_") as work:
        init = os.path.join(work, "init.safetensors")
        subprocess.run([a.heed, "init", os.path.join(ROOT, "examples/bytegpt.heed"), "-o", init,
                        "--seed", str(a.seed)] + sets[:8], check=True)
        print("model: bytegpt L=%d C=%d H=%d T=%d B=%d, %d steps, eval every %d, target val loss %s, %d threads, "
              "data %s" % (a.layers, a.dim, a.heads, a.seq, a.batch, a.steps, a.eval_every, a.target, a.threads,
                           os.path.relpath(data, ROOT)), flush=True)
        cache = os.path.join(work, "objcache")  # empty: the first run compiles everything
        runs = [("heed cold", heed_run(a, sets, data, os.path.join(work, "heed"), cache))]
        if a.warm:  # the same again, every compiled part now in the cache
            runs.append(("heed warm", heed_run(a, sets, data, os.path.join(work, "heed2"), cache)))
        spec = {"cfg": cfg, "batch": a.batch, "seq": a.seq, "steps": a.steps, "eval_every": a.eval_every,
                "targets": a.targets, "threads": a.threads, "seed": a.seed, "init": init, "data": data,
                "out": os.path.join(work, "torch.json"), "t0": time.time()}
        json.dump(spec, open(os.path.join(work, "spec.json"), "w"))
        wall, rss = run_child([sys.executable, os.path.abspath(__file__), "--torch-worker",
                               os.path.join(work, "spec.json")], env=mb.torch_env(a.threads))
        t = json.load(open(spec["out"]))
        t.update(total_s=wall, maxrss=max(rss, t["maxrss"]),
                 final_val=[r[2] for r in t["rows"] if r[2] is not None][-1])
    fmt = lambda s: "%.1f s" % s if s is not None else "not reached"
    heads = ["to val<=%.2f" % t for t in a.targets] + ["whole run", "step", "start-up", "final val", "peak RSS"]
    print("%-10s" % "" + "".join("%14s" % x for x in heads))
    for name, r in runs + [("pytorch", t)]:
        cells = [fmt(r["hit"].get(str(x))) for x in a.targets] + [fmt(r["total_s"]), "%.1f ms" % (1e3 * r["step_s"]),
                                                                  fmt(r["startup_s"]), "%.4f" % r["final_val"],
                                                                  "%.0f MiB" % (r["maxrss"] / 2**20)]
        print("%-10s" % name + "".join("%14s" % x for x in cells))
    for name, h in runs:
        ratios = []
        for x in a.targets:
            if h["hit"].get(str(x)) and t["hit"].get(str(x)):
                ratios.append("time to val<=%.2f %.2fx" % (x, t["hit"][str(x)] / h["hit"][str(x)]))
        ratios += ["whole run %.2fx" % (t["total_s"] / h["total_s"]), "step %.2fx" % (t["step_s"] / h["step_s"])]
        print("ratio (pytorch / %s): %s; peak RSS heed/pytorch %.2f" % (name, ", ".join(ratios),
                                                                        h["maxrss"] / t["maxrss"]))
    print("pytorch BLAS: %s" % ", ".join(os.path.basename(p) for p in t["blas"].get("libs", [])) or "?")


if __name__ == "__main__":
    main()
