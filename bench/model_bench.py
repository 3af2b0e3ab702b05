#!/usr/bin/python3
"""bench/model_bench.py: whole-model timings, heed against PyTorch CPU eager.

For each case, `heed bench MODEL.heed --json` (compiled code) and an
equivalent PyTorch model written below (same shapes, f32; forward under
eval/no_grad, the train step as forward + backward of the cross-entropy loss
with autograd, no optimizer) run with the same thread count. PyTorch runs in a
subprocess with Debian's OpenMP OpenBLAS first on LD_LIBRARY_PATH (when
libopenblas0-openmp is installed) and OPENBLAS_CORETYPE set as
bench/gemm_bench.sh does; the library it actually loaded is read from its
/proc/self/maps and printed.

Cases (--cases, comma-separated; default all):
  gpt2           examples/gpt2.heed forward, B=8 T=256 (GPT-2 small: 12 layers, C=768)
  gpt2-train     the same, forward + backward (only when heed compiles the backward)
  bytegpt        examples/bytegpt.heed forward at its train section's B, T
  bytegpt-train  the same, forward + backward

Both sides: one warm-up run, then the median of --reps timed runs (heed:
`heed bench --reps`). Ratio = torch ms / heed ms: above 1 means heed is faster.
Run with /usr/bin/python3 (Debian's python3-torch). See bench/README.md.
"""
import argparse
import ctypes
import json
import math
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENBLAS_OPENMP_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"

CASES = {
    # name: (heed file, train?, batch, seq); None = the train section's
    "gpt2": ("examples/gpt2.heed", False, 8, 256),
    "gpt2-train": ("examples/gpt2.heed", True, 8, 256),
    "bytegpt": ("examples/bytegpt.heed", False, None, None),
    "bytegpt-train": ("examples/bytegpt.heed", True, None, None),
}

# --cases pieces: GPT-2 small's ops one at a time at B=8, T=256 (forward and
# forward + backward of mean(op)). Every operand is a parameter, so the
# backward computes the gradients the full model needs (activations included)
# and nothing more; `u` is a dummy input (heed's forward needs one). count =
# how often GPT-2 small's forward runs it (xent: the train loss only).
# name: (count, heed params, heed forward expression)
PIECES = {
    "qkv matmul": (12, "x: f32[8, 256, 768] = normal(1)\n w: f32[768, 2304] = normal(0.02)\n b: f32[2304] = zeros", "x @ w + b"),
    "attn proj": (12, "x: f32[8, 256, 768] = normal(1)\n w: f32[768, 768] = normal(0.02)\n b: f32[768] = zeros", "x @ w + b"),
    "mlp fc": (12, "x: f32[8, 256, 768] = normal(1)\n w: f32[768, 3072] = normal(0.02)\n b: f32[3072] = zeros", "x @ w + b"),
    "mlp proj": (12, "x: f32[8, 256, 3072] = normal(1)\n w: f32[3072, 768] = normal(0.02)\n b: f32[768] = zeros", "x @ w + b"),
    "attention": (12, "q: f32[8, 256, 768] = normal(1)\n k: f32[8, 256, 768] = normal(1)\n v: f32[8, 256, 768] = normal(1)",
                  "attention(q, k, v, heads = 12, causal = true)"),
    "layernorm": (25, "x: f32[8, 256, 768] = normal(1)\n w: f32[768] = ones\n b: f32[768] = zeros",
                  "layernorm(x, w, b, eps = 1e-5)"),
    "gelu_tanh": (12, "x: f32[8, 256, 3072] = normal(1)", "gelu_tanh(x)"),
    "residual add": (24, "x: f32[8, 256, 768] = normal(1)\n y: f32[8, 256, 768] = normal(1)", "x + y"),
    "embedding": (1, "wte: f32[50257, 768] = normal(0.02)\n wpe: f32[1024, 768] = normal(0.01)",
                  "wte[t] + wpe[positions(t)]"),
    "lm head": (1, "x: f32[8, 256, 768] = normal(1)\n wte: f32[50257, 768] = normal(0.02)", "x @ transpose(wte)"),
    "xent": (0, "x: f32[8, 256, 50257] = normal(1)", "cross_entropy(x, t)"),
}


def piece_source(name):
    count, params, expr = PIECES[name]
    ps = "\n".join("  param " + p.strip() for p in params.split("\n"))
    return ("model P {\n%s\n  forward(t: i32[8, 256]) = %s\n}\n"
            "train P {\n  loss(t: i32[8, 256]) = mean(P(t))\n  batch = 8\n  seq = 256\n}\n" % (ps, expr))


# ---------------------------------------------------------------------------
# The .heed file's config (so the PyTorch model follows the file)

def heed_config(path, sets=()):
    """config { k = v } numbers and the train section's batch/seq, with --set overrides."""
    text = re.sub(r"//[^\n]*", "", open(path).read())
    cfg = {}
    m = re.search(r"\bconfig\s*\{([^}]*)\}", text)
    for k, v in re.findall(r"(\w+)\s*=\s*([-+0-9.eE]+)", m.group(1) if m else ""):
        cfg[k] = float(v) if re.search(r"[.eE]", v) else int(v)
    train = {}
    m = re.search(r"\btrain\s+\w+\s*\{(.*)\}", text, re.S)
    for k in ("batch", "seq"):
        mm = re.search(r"^\s*%s\s*=\s*(\d+)" % k, m.group(1) if m else "", re.M)
        if mm:
            train[k] = int(mm.group(1))
    for s in sets:
        k, v = s.split("=", 1)
        val = float(v) if re.search(r"[.eE]", v) else int(v)
        (train if k in ("batch", "seq") else cfg)[k] = val
    return cfg, train


# ---------------------------------------------------------------------------
# The PyTorch side (runs in the worker subprocess)

def torch_model(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    C, H, L, V, ctx, eps = cfg["dim"], cfg["heads"], cfg["layers"], cfg["vocab"], cfg["ctx"], cfg.get("eps", 1e-5)
    hd = C // H

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.register_buffer("mask", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)), persistent=False)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q = q.view(B, T, H, hd).transpose(1, 2)
            k = k.view(B, T, H, hd).transpose(1, 2)
            v = v.view(B, T, H, hd).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
            y = F.softmax(att, dim=-1) @ v
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=eps)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(C, eps=eps)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Parameter(torch.randn(V, C) * 0.02)
            self.wpe = nn.Parameter(torch.randn(ctx, C) * 0.01)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C, eps=eps)

        def forward(self, tokens):
            T = tokens.shape[1]
            x = self.wte[tokens] + self.wpe[torch.arange(T)]
            for b in self.h:
                x = b(x)
            return F.linear(self.ln_f(x), self.wte)  # tied: x @ transpose(wte)

    return GPT()


def torch_piece(name):
    """The PIECES entry in PyTorch: (params, fn(tokens) -> tensor), the same ops as torch_model uses."""
    import torch
    import torch.nn.functional as F
    B, T, C, H, V = 8, 256, 768, 12, 50257

    def P(*shape, std=1.0):
        return (torch.randn(*shape) * std).requires_grad_()

    if name in ("qkv matmul", "attn proj", "mlp fc", "mlp proj"):
        k, n = {"qkv matmul": (C, 3 * C), "attn proj": (C, C), "mlp fc": (C, 4 * C), "mlp proj": (4 * C, C)}[name]
        x, w, b = P(B, T, k), P(n, k, std=0.02), torch.zeros(n).requires_grad_()  # nn.Linear's [out, in]
        return [x, w, b], lambda t: F.linear(x, w, b)
    if name == "attention":
        q, k, v = P(B, T, C), P(B, T, C), P(B, T, C)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        hd = C // H

        def attn(t):
            qh, kh, vh = (z.view(B, T, H, hd).transpose(1, 2) for z in (q, k, v))
            att = (qh @ kh.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            att = att.masked_fill(~mask, float("-inf"))
            return (F.softmax(att, dim=-1) @ vh).transpose(1, 2).contiguous().view(B, T, C)
        return [q, k, v], attn
    if name == "layernorm":
        x, w, b = P(B, T, C), torch.ones(C).requires_grad_(), torch.zeros(C).requires_grad_()
        return [x, w, b], lambda t: F.layer_norm(x, (C,), w, b, 1e-5)
    if name == "gelu_tanh":
        x = P(B, T, 4 * C)
        return [x], lambda t: F.gelu(x, approximate="tanh")
    if name == "residual add":
        x, y = P(B, T, C), P(B, T, C)
        return [x, y], lambda t: x + y
    if name == "embedding":
        wte, wpe = P(V, C, std=0.02), P(1024, C, std=0.01)
        return [wte, wpe], lambda t: wte[t] + wpe[torch.arange(T)]
    if name == "lm head":
        x, wte = P(B, T, C), P(V, C, std=0.02)
        return [x, wte], lambda t: F.linear(x, wte)
    if name == "xent":
        x = P(B, T, V)
        return [x], lambda t: F.cross_entropy(x.view(-1, V), t.view(-1))
    raise KeyError(name)


def load_heed_weights(model, tensors):
    """heed's names and layouts (Linear weight [in, out]) into the torch model."""
    import torch
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, t in tensors.items():
            p = params[name]
            if t.dim() == 2 and name not in ("wte", "wpe"):
                t = t.t()
            p.copy_(t)
    assert set(params) == set(tensors), set(params) ^ set(tensors)


def read_safetensors(path):
    import torch
    buf = open(path, "rb").read()
    (n,) = struct.unpack("<Q", buf[:8])
    hdr = json.loads(buf[8:8 + n])
    dt = {"F32": torch.float32, "I32": torch.int32, "I64": torch.int64, "F64": torch.float64}
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(buf[8 + n + b:8 + n + e]), dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def write_safetensors(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        hdr[k] = {"dtype": {"torch.int32": "I32", "torch.float32": "F32"}[str(t.dtype)], "shape": list(t.shape),
                  "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def blas_info():
    """Which BLAS this process loaded (from /proc/self/maps) and what OpenBLAS says of itself."""
    libs = []
    for line in open("/proc/self/maps"):
        p = line.split()[-1] if len(line.split()) >= 6 else ""
        if re.search(r"blas|lapack|mkl|dnnl", os.path.basename(p)) and p not in libs:
            libs.append(p)
    info = {"libs": libs}
    ob = [p for p in libs if "libopenblas" in os.path.basename(p)]
    if ob:
        try:
            lib = ctypes.CDLL(ob[0])  # already loaded: the same handle
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            info.update(config=lib.openblas_get_config().decode(), core=lib.openblas_get_corename().decode(),
                        parallel={0: "sequential", 1: "pthreads", 2: "openmp"}.get(lib.openblas_get_parallel(), "?"),
                        threads=lib.openblas_get_num_threads())
        except (OSError, AttributeError) as e:
            info["error"] = str(e)
    return info


def torch_worker(spec):
    import resource
    import torch
    import torch.nn.functional as F
    n = spec["threads"]
    torch.set_num_threads(n)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(1337)
    if spec.get("piece"):
        return piece_worker(spec, base_rss)
    cfg, B, T = spec["cfg"], spec["batch"], spec["seq"]
    model = torch_model(cfg)
    binfo = blas_info()
    ob = [p for p in binfo["libs"] if "libopenblas" in os.path.basename(p)]
    if ob:  # the BLAS thread count too (OpenMP OpenBLAS also follows omp_set_num_threads)
        ctypes.CDLL(ob[0]).openblas_set_num_threads(n)
        binfo["threads"] = ctypes.CDLL(ob[0]).openblas_get_num_threads()
    g = torch.Generator().manual_seed(42)
    tokens = torch.randint(0, cfg["vocab"], (B, T), generator=g)
    targets = torch.randint(0, cfg["vocab"], (B, T), generator=g)
    if spec["train"]:
        model.train()

        def step():
            for p in model.parameters():
                p.grad = None
            loss = F.cross_entropy(model(tokens).view(-1, cfg["vocab"]), targets.view(-1))
            loss.backward()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(tokens)
    ms = []
    for r in range(spec["warmup"] + spec["reps"]):
        t0 = time.perf_counter()
        step()
        if r >= spec["warmup"]:
            ms.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"ms": statistics.median(ms), "runs_ms": ms, "torch_threads": torch.get_num_threads(),
                      "torch": torch.__version__, "blas": binfo, "import_rss": base_rss,
                      "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def timed(step, warmup, reps):
    ms = []
    for r in range(warmup + reps):
        t0 = time.perf_counter()
        step()
        if r >= warmup:
            ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def piece_worker(spec, base_rss):
    import torch
    params, fn = torch_piece(spec["piece"])
    t = torch.randint(0, 1024, (8, 256), generator=torch.Generator().manual_seed(42))

    def fwd():
        with torch.no_grad():
            fn(t)

    def train():
        for p in params:
            p.grad = None
        fn(t).mean().backward()
    out = {"forward_ms": timed(fwd, spec["warmup"], spec["reps"])}
    if spec["train"]:
        out["train_step_ms"] = timed(train, spec["warmup"], spec["reps"])
    print(json.dumps(out))


def check_worker(spec):
    """The torch model on heed's initial weights; writes its logits for the parent to compare."""
    import torch
    torch.set_num_threads(spec["threads"])
    model = torch_model(spec["cfg"]).eval()
    load_heed_weights(model, read_safetensors(spec["weights"]))
    tokens = read_safetensors(spec["inputs"])["tokens"].long()
    with torch.no_grad():
        out = model(tokens)
    write_safetensors(spec["out"], {"out": out})


# ---------------------------------------------------------------------------
# The parent

def torch_env(threads):
    env = dict(os.environ)
    if os.path.isdir(OPENBLAS_OPENMP_DIR):
        env["LD_LIBRARY_PATH"] = OPENBLAS_OPENMP_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    if not env.get("OPENBLAS_CORETYPE"):
        flags = open("/proc/cpuinfo").read()
        env["OPENBLAS_CORETYPE"] = "SkylakeX" if re.search(r"\bavx512f\b", flags) else "Haswell"
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def cpu_busy_s():
    """Seconds of CPU time the whole machine has spent busy (all cores, /proc/stat)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def children_cpu_s():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_json(cmd, env=None, timeout=None):
    """Runs cmd, returns (its last JSON line or None, stderr or the error, wall s, cores used by others).
    The last is the machine's busy CPU time during the run less the child's own, per second: what other
    processes took from the 2 cores while this one was measured (0 = a quiet machine)."""
    t0, b0, c0 = time.time(), cpu_busy_s(), children_cpu_s()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out after %ds" % timeout, time.time() - t0, None
    wall = time.time() - t0
    other = max(0.0, (cpu_busy_s() - b0) - (children_cpu_s() - c0)) / max(wall, 1e-3)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        return None, (p.stderr.strip() or p.stdout.strip() or "exit %d" % p.returncode)[-600:], wall, other
    return json.loads(lines[-1]), p.stderr.strip(), wall, other


def heed_compiles_backward(heed, timeout):
    """Does this heed compile the train step (else bench --train runs it on the interpreter)?"""
    cmd = [heed, "bench", os.path.join(ROOT, "examples/bytegpt.heed"), "--train", "--json", "--reps", "1",
           "--threads", "1", "--batch", "1", "--seq", "8", "--set", "layers=1"]
    r, err, _, _ = run_json(cmd, timeout=timeout)
    if not r:
        return None, err
    return r.get("train_executor", "").startswith("compiled"), r.get("train_executor")


def check_equivalence(args, log):
    """heed run (compiled) and the torch model on heed's initial bytegpt weights: the same logits?"""
    import torch
    path = os.path.join(ROOT, "examples/bytegpt.heed")
    cfg, train = heed_config(path)
    with tempfile.TemporaryDirectory() as d:
        w, i, o, to = (os.path.join(d, f) for f in ("w.safetensors", "in.safetensors", "out.safetensors", "t.safetensors"))
        subprocess.run([args.heed, "init", path, "-o", w], check=True, capture_output=True)
        g = torch.Generator().manual_seed(7)
        write_safetensors(i, {"tokens": torch.randint(0, cfg["vocab"], (2, 32), generator=g, dtype=torch.int32)})
        p = subprocess.run([args.heed, "run", path, "--weights", w, "--inputs", i, "--outputs", o, "--threads", "1"],
                           capture_output=True, text=True)
        if p.returncode:
            return "heed run failed: " + p.stderr.strip()[-300:]
        spec = {"cfg": cfg, "threads": 1, "weights": w, "inputs": i, "out": to}
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--check-worker", json.dumps(spec)],
                           env=torch_env(1), capture_output=True, text=True)
        if p.returncode:
            return "torch failed: " + p.stderr.strip()[-300:]
        a, b = read_safetensors(o)["out"], read_safetensors(to)["out"]
        err = (a - b).abs().max().item()
        return "max |heed - torch| = %.2e over logits %s (scale %.2f)%s" % (
            err, list(a.shape), b.abs().max().item(), "" if err < 1e-3 else "  MISMATCH")


def run_pieces(args, pieces, log, backward, results):
    """--cases pieces: each op of PIECES on heed (bench --train) and torch; rows for print_pieces."""
    rows = []
    train = backward is not False
    with tempfile.TemporaryDirectory() as d:
        for n in [int(t) for t in args.pieces_threads.split(",")]:
            for name in pieces:
                path = os.path.join(d, re.sub(r"\W", "_", name) + ".heed")
                with open(path, "w") as f:
                    f.write(piece_source(name))
                res = {"case": "piece", "piece": name, "threads": n, "reps": args.pieces_reps}
                if not args.no_heed:
                    cmd = [args.heed, "bench", path, "--json", "--threads", str(n), "--reps", str(args.pieces_reps),
                           "--batch", "8", "--seq", "256"] + (["--train"] if train else [])
                    log("heed:  piece %s, %d thread(s)" % (name, n))
                    r, err, _, res["heed_others_cores"] = run_json(cmd, timeout=args.timeout)
                    res["heed"] = r or {"error": err}
                    if not r:
                        log("heed failed: " + err)
                if not args.no_torch:
                    spec = {"piece": name, "threads": n, "reps": args.pieces_reps, "warmup": 1, "train": train}
                    log("torch: piece %s, %d thread(s)" % (name, n))
                    r, err, _, res["torch_others_cores"] = run_json(
                        [sys.executable, os.path.abspath(__file__), "--torch-worker", json.dumps(spec)],
                        env=torch_env(n), timeout=args.timeout)
                    res["torch"] = r or {"error": err}
                    if not r:
                        log("torch failed: " + err)
                results.append(res)
                rows.append(res)
    return rows


def print_pieces(rows, results):
    def ms(v):
        return "%.1f" % v if v is not None else "-"

    def rat(t, h):
        return "%.2f" % (t / h) if t and h else "-"
    full = {(r["case"], r["threads"]): r for r in results if r.get("case") in ("gpt2", "gpt2-train")}
    hdr = ["op (B=8 T=256)", "count", "heed fwd", "torch fwd", "t/h", "heed f+b", "torch f+b", "t/h",
           "heed fwd*n", "torch fwd*n", "heed f+b*n", "torch f+b*n", "others h/t"]
    for n in sorted({r["threads"] for r in rows}):
        out, tot = [], [0.0] * 4
        for r in (r for r in rows if r["threads"] == n):
            count = PIECES[r["piece"]][0]
            h, t = r.get("heed") or {}, r.get("torch") or {}
            hf, tf, hb, tb = h.get("forward_ms"), t.get("forward_ms"), h.get("train_step_ms"), t.get("train_step_ms")
            if not h.get("train_executor", "compiled").startswith("compiled"):
                hb = None  # interpreter timings are not compared
            k = [count, count, count or 1, count or 1]  # xent: in the train step only
            vals = [v * k[i] if v is not None else None for i, v in enumerate((hf, tf, hb, tb))]
            for i, v in enumerate(vals):
                tot[i] += v or 0
            out.append([r["piece"], str(count or "loss"), ms(hf), ms(tf), rat(tf, hf), ms(hb), ms(tb), rat(tb, hb)]
                       + [ms(v) for v in vals] + ["%s/%s" % tuple("%.2f" % r[k] if r.get(k) is not None else "-"
                                                                  for k in ("heed_others_cores", "torch_others_cores"))])
        out.append(["sum over GPT-2", "", "", "", "", "", "", ""] + [ms(v) for v in tot] + [""])
        whole = ["whole GPT-2 (measured)", "", "", "", "", "", "", "", "-", "-", "-", "-", ""]
        for case, col in (("gpt2", 8), ("gpt2-train", 10)):
            f = full.get((case, n)) or {}
            key = "train_step_ms" if case == "gpt2-train" else "forward_ms"
            if (f.get("heed") or {}).get(key):
                whole[col] = ms(f["heed"][key])
            if (f.get("torch") or {}).get("ms"):
                whole[col + 1] = ms(f["torch"]["ms"])
        out.append(whole)
        w = [max(len(x[i]) for x in out + [hdr]) for i in range(len(hdr))]
        print()
        print("GPT-2 small op by op, %d thread(s): ms, median of the timed runs; f+b = forward + backward of mean(op); "
              "*n = times its count in GPT-2 small" % n)
        for x in [hdr] + out:
            print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(x)))


def fmt_mb(b):
    return "%.0f" % (b / 2**20) if b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heed", default=os.path.join(ROOT, "build/heed"), help="the heed binary (default build/heed)")
    ap.add_argument("--cases", default="gpt2,gpt2-train,bytegpt,bytegpt-train",
                    help="comma-separated subset of: %s, pieces (default all but pieces)" % ", ".join(CASES))
    ap.add_argument("--pieces", default=",".join(PIECES), help="which ops for --cases pieces (default all)")
    ap.add_argument("--pieces-threads", default="1", help="thread counts for --cases pieces (default 1)")
    ap.add_argument("--pieces-reps", type=int, default=2, help="timed runs per piece (default 2)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--gpt2-train-threads", default="2",
                    help="thread counts for gpt2-train (default 2: one GPT-2 train step is ~30 s a side)")
    ap.add_argument("--reps", type=int, default=10, help="timed runs for bytegpt (default 10)")
    ap.add_argument("--gpt2-reps", type=int, default=3, help="timed runs for gpt2 forward (default 3)")
    ap.add_argument("--gpt2-train-reps", type=int, default=1, help="timed runs for gpt2-train (default 1)")
    ap.add_argument("--quick", action="store_true", help="1 timed run everywhere, gpt2 at 2 threads only")
    ap.add_argument("--no-torch", action="store_true", help="heed only")
    ap.add_argument("--no-heed", action="store_true", help="PyTorch only")
    ap.add_argument("--no-check", action="store_true", help="skip the heed-vs-torch logits check on bytegpt")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per subprocess (default 600)")
    ap.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    ap.add_argument("--torch-worker", help=argparse.SUPPRESS)
    ap.add_argument("--check-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(json.loads(args.torch_worker))
    if args.check_worker:
        return check_worker(json.loads(args.check_worker))

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    do_pieces = "pieces" in cases
    cases = [c for c in cases if c != "pieces"]
    pieces = [p.strip() for p in args.pieces.split(",") if p.strip()]
    bad = [c for c in cases if c not in CASES] + [p for p in pieces if p not in PIECES]
    if bad:
        ap.error("unknown case(s) %s; choose from %s, pieces (ops: %s)" % (", ".join(bad), ", ".join(CASES), ", ".join(PIECES)))
    threads = [int(t) for t in args.threads.split(",")]
    gtt = [int(t) for t in args.gpt2_train_threads.split(",")]
    if args.quick:
        args.reps = args.gpt2_reps = args.gpt2_train_reps = 1
        gtt = [max(threads)]
    if not args.no_heed and not os.access(args.heed, os.X_OK):
        sys.exit("model_bench: no heed binary at %s (build it, or --heed PATH)" % args.heed)
    t_start = time.time()

    def log(msg):
        print("[%5.0fs] %s" % (time.time() - t_start, msg), file=sys.stderr, flush=True)

    # What will PyTorch load? (Printed once, from the first worker.)
    env1 = torch_env(1)
    print("PyTorch env: LD_LIBRARY_PATH=%s OPENBLAS_CORETYPE=%s%s" % (
        env1.get("LD_LIBRARY_PATH", ""), env1["OPENBLAS_CORETYPE"],
        "" if os.path.isdir(OPENBLAS_OPENMP_DIR) else "  (libopenblas0-openmp not installed: Debian's default BLAS)"))

    backward = None
    if not args.no_heed and (do_pieces or any(CASES[c][1] for c in cases)):
        backward, why = heed_compiles_backward(args.heed, args.timeout)
        log("heed train step executor: %s" % why)

    rows, results, blas = [], [], None
    for case in cases:
        path, train, B, T = CASES[case]
        cfg, tr = heed_config(os.path.join(ROOT, path))
        B = B or tr.get("batch", 1)
        T = T or tr.get("seq", 64)
        model = os.path.basename(path)[:-5]
        is_gpt2 = case.startswith("gpt2")
        reps = (args.gpt2_train_reps if train else args.gpt2_reps) if is_gpt2 else args.reps
        for n in (gtt if case == "gpt2-train" else threads):
            res = {"case": case, "model": model, "train": train, "batch": B, "seq": T, "threads": n, "reps": reps}
            what = "%s B=%d T=%d" % ("fwd+bwd" if train else "forward", B, T)
            # heed
            hms = hexe = hpeak = None
            if args.no_heed:
                hexe = "not run"
            elif train and backward is False and is_gpt2:
                hexe = "not measured (interpreter only)"
            else:
                cmd = [args.heed, "bench", os.path.join(ROOT, path), "--json", "--threads", str(n), "--reps", str(reps),
                       "--batch", str(B), "--seq", str(T)] + (["--train"] if train else [])
                log("heed:  " + " ".join(cmd[1:]))
                r, err, wall, other = run_json(cmd, timeout=args.timeout)
                res["heed"] = r or {"error": err}
                res["heed_wall_s"] = round(wall, 1)
                res["heed_others_cores"] = other
                if r:
                    hms = r["train_step_ms"] if train else r["forward_ms"]
                    hexe = r.get("train_executor") if train else r.get("executor")
                    hpeak = r.get("peak_bytes")
                else:
                    hexe = "error: " + err.splitlines()[-1][:60]
                    log("heed failed: " + err)
            # torch
            tms = tpeak = None
            if not args.no_torch:
                spec = {"cfg": cfg, "batch": B, "seq": T, "train": train, "threads": n, "reps": reps, "warmup": 1}
                log("torch: %s %s, %d thread(s), warm-up + %d" % (model, what, n, reps))
                r, err, wall, other = run_json([sys.executable, os.path.abspath(__file__), "--torch-worker",
                                                json.dumps(spec)], env=torch_env(n), timeout=args.timeout)
                res["torch"] = r or {"error": err}
                res["torch_wall_s"] = round(wall, 1)
                res["torch_others_cores"] = other
                if r:
                    tms, tpeak = r["ms"], r["peak_bytes"]
                    blas = blas or r["blas"]
                    if r["torch_threads"] != n or r["blas"].get("threads", n) != n:
                        log("warning: torch threads %s, BLAS threads %s, asked %d" % (
                            r["torch_threads"], r["blas"].get("threads"), n))
                else:
                    log("torch failed: " + err)
            compiled = bool(hexe and hexe.startswith("compiled"))
            ratio = "%.2f" % (tms / hms) if (hms and tms and compiled) else ("n/a (interp)" if hms and tms else "-")
            rows.append([model, what, str(n), "%.1f" % hms if hms else "-", "%.1f" % tms if tms else "-", ratio,
                         hexe or "-", fmt_mb(hpeak), fmt_mb(tpeak),
                         "%s/%s" % tuple("%.2f" % res[k] if res.get(k) is not None else "-"
                                         for k in ("heed_others_cores", "torch_others_cores"))])
            results.append(res)

    prows = run_pieces(args, pieces, log, backward, results) if do_pieces else []

    check = None
    if not args.no_check and not args.no_heed and not args.no_torch and any(c.startswith("bytegpt") for c in cases):
        check = check_equivalence(args, log)

    hdr = ["model", "what", "thr", "heed ms", "torch ms", "torch/heed", "heed executor", "heed MiB", "torch MiB", "others h/t"]
    w = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
    if rows:
        print()
        print("  ".join(h.ljust(w[i]) if i < 3 or i == 6 else h.rjust(w[i]) for i, h in enumerate(hdr)))
        for r in rows:
            print("  ".join(c.ljust(w[i]) if i < 3 or i == 6 else c.rjust(w[i]) for i, c in enumerate(r)))
        print()
        print("median of the timed runs after one warm-up; torch/heed > 1: heed faster; ratio only for compiled heed;")
        print("others h/t = cores other processes kept busy during the heed / torch run (0 = quiet machine;")
        print("  2-thread rows are only as good as this is small).")
        print("peak = ru_maxrss of each process (heed bench also holds f64 host copies of params and inputs).")
    if blas:
        print("PyTorch BLAS: %s (%s, core %s, %s)" % (", ".join(blas["libs"]) or "none found in /proc/self/maps",
                                                       blas.get("config", "?"), blas.get("core", "?"), blas.get("parallel", "?")))
    tw = [r["torch"] for r in results if r.get("torch") and "import_rss" in r["torch"]]
    if tw:
        print("PyTorch %s; its process is %s MiB after `import torch` (counted in torch MiB)" % (
            tw[0]["torch"], fmt_mb(tw[0]["import_rss"])))
    if backward is False and "gpt2-train" in cases:
        print("gpt2-train not measured: this heed runs the train step on the reference interpreter.")
    if check:
        print("equivalence (bytegpt, heed initial weights, heed run compiled vs torch): " + check)
    if prows:
        print_pieces(prows, results)
    print("total %.0f s" % (time.time() - t_start))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "check": check, "blas": blas}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
