#!/usr/bin/python3
"""bench/decode_bench.py: decode tokens/s, `heed generate` against PyTorch CPU.

The model is examples/gpt2.heed at a mid-size --set config (default: vocab
8192, ctx 512, dim 512, heads 8, layers 8; about 29M parameters), weights
from `heed init`. heed: `heed generate --temperature 0 --threads N` (compiled
code, the KV cache of passes/kvcache.c); its stderr line gives decode
tokens/s (decode calls / their time, prefill excluded). PyTorch: the same
model written below with a preallocated KV cache, f32, batch 1, eager under
inference_mode, torch.set_num_threads(N), the same prompt and number of
greedy decode steps, timed the same way (after one untimed warm-up run).
Both print the generated ids' count; the ratio is heed / torch tokens/s.
Run with /usr/bin/python3 (Debian's python3-torch): `make bench-decode`.

--program MODEL instead times the standalone program `heed build` writes for
MODEL (e.g. examples/bytegpt.heed; weights from `heed init`) against `heed
generate` on the same weights, prompt, -n, greedy and --threads, in the same
run: --runs pairs, alternating, medians of the decode tokens/s each prints
(decode calls and window shifts over their time); both must print the same
text. Prints both, the ratio program / generate and the CPU (lscpu).
"""
import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    h.pop("__metadata__", None)
    return {k: torch.from_numpy(np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                              dtype="<f4").reshape(v["shape"]).copy()) for k, v in h.items()}


class TorchGPT:
    """GPT-2 (gpt2.heed's layout: Linear weights [in, out]) with a KV cache."""

    def __init__(self, P, c):
        self.P, self.c = P, c
        L, C = c["layers"], c["dim"]
        self.k = torch.zeros(L, c["heads"], c["ctx"], C // c["heads"])
        self.v = torch.zeros_like(self.k)

    def step(self, tokens, pos):  # tokens: T new ids at positions pos.. -> logits of the last
        P, c = self.P, self.c
        T, C, H = len(tokens), c["dim"], c["heads"]
        D = C // H
        x = P["wte"][tokens] + P["wpe"][pos:pos + T]
        for i in range(c["layers"]):
            p = f"h.{i}."
            h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], 1e-5)
            q, k, v = torch.addmm(P[p + "attn.c_attn.bias"], h, P[p + "attn.c_attn.weight"]).split(C, -1)
            self.k[i, :, pos:pos + T] = k.view(T, H, D).transpose(0, 1)
            self.v[i, :, pos:pos + T] = v.view(T, H, D).transpose(0, 1)
            K, V = self.k[i, :, :pos + T], self.v[i, :, :pos + T]
            s = q.view(T, H, D).transpose(0, 1) @ K.transpose(1, 2) / math.sqrt(D)  # (H, T, pos+T)
            if T > 1:
                s = s.masked_fill(torch.ones(T, pos + T, dtype=torch.bool).triu(pos + 1), float("-inf"))
            a = torch.softmax(s, -1) @ V
            x = x + torch.addmm(P[p + "attn.c_proj.bias"], a.transpose(0, 1).reshape(T, C), P[p + "attn.c_proj.weight"])
            h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], 1e-5)
            m = F.gelu(torch.addmm(P[p + "mlp.c_fc.bias"], h, P[p + "mlp.c_fc.weight"]), approximate="tanh")
            x = x + torch.addmm(P[p + "mlp.c_proj.bias"], m, P[p + "mlp.c_proj.weight"])
        x = F.layer_norm(x[-1:], (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
        return (x @ P["wte"].T)[0]


def torch_decode(P, c, prompt, n):
    m = TorchGPT(P, c)
    with torch.inference_mode():
        lg = m.step(torch.tensor(prompt), 0)
        tok, pos, dt, steps = int(lg.argmax()), len(prompt), 0.0, 0
        for _ in range(n - 1):
            t0 = time.perf_counter()
            lg = m.step(torch.tensor([tok]), pos)
            dt += time.perf_counter() - t0
            tok, pos, steps = int(lg.argmax()), pos + 1, steps + 1
    return steps / dt, steps


def decode_rate(stderr):
    m = re.search(r"decode ([0-9.]+) tokens/s", stderr)
    return float(m.group(1))


def program_bench(a, repo):
    model = os.path.join(repo, a.program) if not os.path.isabs(a.program) else a.program
    prompt = "The quick brown fox"
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout
                .splitlines() if l.startswith("Model name")), "?")
    with tempfile.TemporaryDirectory() as tmp:
        w, prog = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "prog")
        subprocess.run([a.heed, "init", model, "-o", w], check=True, capture_output=True)
        subprocess.run([a.heed, "build", model, "--weights", w, "-o", prog], check=True, capture_output=True)
        flags = ["--prompt", prompt, "-n", str(a.n), "--temperature", "0", "--threads", str(a.threads)]
        gen = [a.heed, "generate", model, "--weights", w, *flags]
        rates = {"program": [], "generate": []}
        outs = set()
        for i in range(a.runs + 1):  # the first pair warms caches and the page cache
            for name, cmd in (("program", [prog, *flags]), ("generate", gen)):
                p = subprocess.run(cmd, capture_output=True, check=True)
                outs.add(p.stdout)
                if i:
                    rates[name].append(decode_rate(p.stderr.decode(errors="replace")))
    med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    print(f"model {a.program}; batch 1, greedy, {a.threads} thread(s), prompt {len(prompt)} tokens, -n {a.n}; "
          f"median of {a.runs}; CPU {cpu}")
    print(f"heed generate (JIT, KV cache): {med['generate']:9.1f} tokens/s  {rates['generate']}")
    print(f"program (heed build):          {med['program']:9.1f} tokens/s  {rates['program']}")
    print(f"ratio program / generate: {med['program'] / med['generate']:.2f}x; same text: {len(outs) == 1}")
    return 0 if len(outs) == 1 else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heed", default="build/heed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--config", default="vocab=8192,ctx=512,dim=512,heads=8,layers=8")
    ap.add_argument("--program", metavar="MODEL", help="time heed build's program for MODEL against heed generate")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if a.program:
        return program_bench(a, repo)
    cfg = dict(kv.split("=") for kv in a.config.split(","))
    c = {k: int(v) for k, v in cfg.items()}
    sets = sum((["--set", f"{k}={v}"] for k, v in cfg.items()), [])
    model = os.path.join(repo, "examples", "gpt2.heed")
    prompt = "The quick brown fox"
    with tempfile.TemporaryDirectory() as tmp:
        w = os.path.join(tmp, "w.safetensors")
        subprocess.run([a.heed, "init", model, *sets, "-o", w], check=True)
        cmd = [a.heed, "generate", model, *sets, "--weights", w, "--prompt", prompt, "-n", str(a.n), "--temperature",
               "0", "--threads", str(a.threads)]
        runs = []
        for _ in range(2):  # the first warms caches and the page cache
            p = subprocess.run(cmd, capture_output=True, text=True, check=True)
            m = re.search(r"(\d+) tokens generated, decode ([0-9.]+) tokens/s", p.stderr)
            runs.append(float(m.group(2)))
        heed_tps = runs[-1]
        P = read_st(w)
    torch.set_num_threads(a.threads)
    ids = list(prompt.encode())
    torch_decode(P, c, ids, 8)  # warm-up
    torch_tps, steps = torch_decode(P, c, ids, a.n)
    print(f"model gpt2.heed {a.config}; batch 1, f32, {a.threads} thread(s), prompt {len(ids)} tokens, "
          f"{steps} decode steps")
    print(f"heed  (compiled, KV cache): {heed_tps:9.1f} tokens/s")
    print(f"torch {torch.__version__} (eager, KV cache): {torch_tps:9.1f} tokens/s")
    print(f"ratio heed / torch: {heed_tps / torch_tps:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
