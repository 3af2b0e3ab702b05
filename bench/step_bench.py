#!/usr/bin/python3
"""bench/step_bench.py: one whole training step (forward, backward, gradient
clipping, AdamW) of a tiny GPT, as a fraction of the machine's FP32 FMA peak
and against PyTorch CPU eager in the same run.

The model: examples/bytegpt.heed at L4 C256 V512 (heads 4), B8 T64 by
default (--set-style overrides below), trained by `heed train` on
../shared/data/moby-dick.txt. heed's step time: the mean interval between
metrics.csv rows from step 5 to the last step without an evaluation
(elapsed_s has millisecond resolution); compile excluded.
PyTorch: the same model (bench/model_bench.py's torch_model), the same
step (zero_grad, cross-entropy forward, backward, clip_grad_norm_(1.0),
torch.optim.AdamW), median of --steps steps after a warm-up, with the same
thread count and OpenBLAS as bench/model_bench.py sets up.

FLOPs per step: 6 * B*T * (matmul parameters: 12*L*C^2 + V*C for the tied
head) + the causal attention's 3 * 4*B*T*T*C*L (score and value products,
forward and twice backward, counted in full). The peak: bench/fma_peak.c
compiled with -march=native, the best of 3 tries, per thread count.
Ratio = torch ms / heed ms (above 1: heed faster). Run with /usr/bin/python3.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_bench  # noqa: E402  (torch_model, torch_env, run_json)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fma_peak(maxt, work):
    exe = os.path.join(work, "fma_peak")
    subprocess.run(["cc", "-O2", "-march=native", os.path.join(ROOT, "bench", "fma_peak.c"), "-o", exe, "-lpthread"],
                   check=True)
    return json.loads(subprocess.run([exe, str(maxt)], capture_output=True, text=True, check=True).stdout)


def flops(cfg, B, T):
    L, C, V = cfg["layers"], cfg["dim"], cfg["vocab"]
    return 6 * B * T * (12 * L * C * C + V * C) + 3 * 4 * B * T * T * C * L


def heed_step_ms(a, sets, threads, work):
    out = tempfile.mkdtemp(prefix="run-%d-" % threads, dir=work)
    cmd = [a.heed, "train", os.path.join(ROOT, "examples/bytegpt.heed"), "--data", a.data, "--out", out,
           "--force", "--steps", str(a.steps), "--eval-every", str(a.steps), "--checkpoint-every", str(a.steps),
           "--sample", "0", "--threads", str(threads), "--seed", "1337"] + sum((["--set", s] for s in sets), [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit("heed train failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    # elapsed_s has millisecond resolution: the mean over the steps after
    # the first 5 (warm-up) and before the last (its evaluation) resolves
    # better than a median of single intervals
    el = []
    for line in open(os.path.join(out, "metrics.csv")).read().split("\n")[1:]:
        f = line.split(",")
        if len(f) >= 7 and not f[2]:
            el.append(float(f[6]))
    if len(el) < 10:
        sys.exit("heed train: too few steps in metrics.csv (--steps >= 12)")
    return (el[-1] - el[4]) / (len(el) - 5) * 1e3


def torch_worker(spec):
    import statistics
    import time
    import torch
    import torch.nn.functional as F
    n = spec["threads"]
    torch.set_num_threads(n)
    torch.manual_seed(1337)
    cfg, B, T = spec["cfg"], spec["batch"], spec["seq"]
    model = model_bench.torch_model(cfg)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(42)
    tokens = torch.randint(0, 256, (B, T), generator=g)
    targets = torch.randint(0, 256, (B, T), generator=g)
    ms = []
    for r in range(spec["warmup"] + spec["steps"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(tokens).view(-1, cfg["vocab"]), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if r >= spec["warmup"]:
            ms.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"ms": statistics.median(ms), "runs_ms": ms, "torch": torch.__version__}))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        return torch_worker(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heed", default=os.path.join(ROOT, "build/heed"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "moby-dick.txt"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=2, help="heed and torch alternate this many times per thread count")
    a = ap.parse_args()
    sets = ["vocab=%d" % a.vocab, "layers=%d" % a.layers, "dim=%d" % a.dim, "heads=%d" % a.heads,
            "batch=%d" % a.batch, "seq=%d" % a.seq, "ctx=%d" % max(a.seq, 128)]
    cfg, _ = model_bench.heed_config(os.path.join(ROOT, "examples/bytegpt.heed"), sets)
    threads = [int(t) for t in a.threads.split(",")]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    fl = flops(cfg, a.batch, a.seq)
    with tempfile.TemporaryDirectory() as work:
        peak = fma_peak(max(threads), work)
        print("CPU: %s; FP32 FMA peak (bench/fma_peak.c, %d lanes): %s GFLOP/s" % (
            cpu, peak["lanes"], ", ".join("%s thr %.0f" % (t, peak[str(t)]) for t in threads)))
        print("model: bytegpt.heed L%d C%d V%d H%d, B%d T%d: %.2f GFLOP per step (fwd + bwd; AdamW not counted)" % (
            a.layers, a.dim, a.vocab, a.heads, a.batch, a.seq, fl / 1e9))
        rows = []
        for n in threads:
            hs, ts = [], []
            for _ in range(a.rounds):  # alternate the two sides: the machine is shared and noisy
                hs.append(heed_step_ms(a, sets, n, work))
                spec = {"cfg": cfg, "batch": a.batch, "seq": a.seq, "threads": n, "steps": a.steps, "warmup": 3}
                r, err, _, _ = model_bench.run_json([sys.executable, os.path.abspath(__file__), "--torch-worker",
                                                     json.dumps(spec)], env=model_bench.torch_env(n))
                if not r:
                    sys.exit("torch failed: " + err)
                ts.append(r["ms"])
            h, t = min(hs), min(ts)
            rows.append((n, h, t, hs, ts))
        print()
        print("thr  heed ms  GFLOP/s  of peak  torch ms  torch/heed   (heed rounds / torch rounds, ms)")
        for n, h, t, hs, ts in rows:
            g = fl / (h * 1e-3) / 1e9
            print("%3d  %7.2f  %7.1f  %6.1f%%  %8.2f  %10.2f   (%s / %s)" % (
                n, h, g, 100 * g / peak[str(n)], t, t / h, " ".join("%.1f" % x for x in hs),
                " ".join("%.1f" % x for x in ts)))
        print("\nheed: mean step of each `heed train` run past its first 5 (best run shown); torch: median of %d steps after 3 "
              "warm-up (best run shown)." % a.steps)


if __name__ == "__main__":
    sys.exit(main())
