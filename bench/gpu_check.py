#!/usr/bin/env python3
# bench/gpu_check.py: the GPU backend on a real NVIDIA GPU, in one short run
# (bench/gpu_check.sh calls it; it needs PyTorch with CUDA and a heed built
# with -DHEED_LLVM_STATIC=ON if the machine has no LLVM packages).
#  (a) numerics: the example models (shrunk) on --target cuda against the
#      reference interpreter (--interp): forward (run) 1e-5 and gradients
#      (grad) 1e-4 of each tensor's largest |value|;
#  (b) timings against PyTorch in the same run, printing ratios (heed / torch,
#      time; < 1: heed faster): GEMM at 4096^3 and GPT-2 shapes (f32, and
#      torch's TF32 and bf16: heed has only the f32 SIMT kernel so far),
#      causal attention at T = 1024, d = 64 against SDPA, GPT-2-small forward
#      and train step (B = 8, T = 1024) against PyTorch eager.
import json, os, re, struct, subprocess, sys, tempfile, time

import numpy as np
import torch

HEED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/heed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W = tempfile.mkdtemp(prefix="heed-gpu-")
FAILS = []
TARGET = os.environ.get("HEED_GPU_TARGET", "cuda")  # opencl: a dry run of (a) without a GPU (PoCL)


def sh(*args, check=True):
    p = subprocess.run([HEED, *args], capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise RuntimeError(f"heed {' '.join(args)}: status {p.returncode}\n{p.stderr[-3000:]}")
    return p


def st_save(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, a in tensors.items():
        b = a.tobytes()
        hdr[k] = {"dtype": {"int32": "I32", "float32": "F32", "bool": "BOOL"}[str(a.dtype)], "shape": list(a.shape),
                  "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_load(path):
    d = open(path, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    out = {}
    for k, v in json.loads(d[8:8 + n]).items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(d[8 + n + a:8 + n + b], dtype=np.float32).reshape(v["shape"])
    return out


MODELS = [  # file, --set overrides, inputs (name, shape, high), has a train section
    ("mlp.heed", ["n_hidden=64"], [("tokens", (2, 8), 256), ("targets", (2, 8), 256)], True),
    ("bytegpt.heed", ["layers=1"], [("tokens", (2, 16), 256), ("targets", (2, 16), 256)], True),
    ("gpt2.heed", ["layers=2", "dim=128", "heads=4", "vocab=1000", "ctx=64"],
     [("tokens", (2, 32), 1000), ("targets", (2, 32), 1000)], True),
    ("llama.heed", ["n_layers=2", "dim=128", "vocab=512", "ffn_dim=256"],
     [("tokens", (2, 32), 512), ("targets", (2, 32), 512)], True),
    ("bert.heed", ["n_layers=1", "dim=128", "vocab=1000", "ffn_dim=256"],
     [("tokens", (2, 32), 1000), ("token_types", (2, 32), 2), ("mask", (2, 32), 2)], False),
]


if os.environ.get("HEED_GPU_CHECK_MODELS"):  # a subset (ctest's dry run on OpenCL)
    MODELS = [m for m in MODELS if m[0] in os.environ["HEED_GPU_CHECK_MODELS"].split(",")]


def compare(what, ref, got, tol):
    for k in ref:
        r, g = ref[k], got[k]
        err = float(np.abs(r - g).max()) if r.size else 0.0
        scale = float(np.abs(r).max()) if r.size else 0.0
        ok = err <= tol * scale + 1e-6
        if not ok:
            FAILS.append(f"{what} {k}: max |diff| {err:.3g}, max |ref| {scale:.3g}")
    print(f"  {what:28s} {'ok' if not FAILS or not FAILS[-1].startswith(what) else 'FAIL'}")


def numerics():
    print(f"(a) numerics: --target {TARGET} against --interp")
    rng = np.random.default_rng(0)
    for f, sets, ins, train in MODELS:
        m = os.path.join(REPO, "examples", f)
        s = sum([["--set", x] for x in sets], [])
        w, i = os.path.join(W, f + ".w"), os.path.join(W, f + ".in")
        sh("init", m, "-o", w, *s)
        t = {}
        for name, shape, hi in ins:
            a = rng.integers(0, hi, shape).astype(np.int32)
            t[name] = a.astype(bool) if name == "mask" else a
        if "mask" in t:
            t["mask"][:, 0] = True
        st_save(i, t)
        for cmd, tol in (("run", 1e-5), ("grad", 1e-4)):
            if cmd == "grad" and not train:
                continue
            ref, got = os.path.join(W, f + cmd + ".ref"), os.path.join(W, f + cmd + ".got")
            base = [cmd, m, "--weights", w, "--inputs", i, "--strict=false", *s]
            sh(*base, "--outputs", ref, "--interp")
            p = sh(*base, "--outputs", got, "--target", TARGET, check=False)
            if p.returncode != 0:
                FAILS.append(f"{f} {cmd}: status {p.returncode}: {p.stderr[-2000:]}")
                print(f"  {f + ' ' + cmd:28s} FAIL (status {p.returncode})")
                continue
            compare(f"{f} {cmd}", st_load(ref), st_load(got), tol)


def heed_ms(model, *args, train=False):
    p = sh("bench", model, "--target", "cuda", *args, *(["--train"] if train else []))
    key = "train step" if train else "forward"
    m = re.search(rf"{key}\s+([0-9.]+) ms", p.stdout + p.stderr)
    return float(m.group(1)) if m else float("nan")


def torch_ms(fn, reps=10):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


def row(what, h, t):
    print(f"  {what:44s} heed {h:9.3f} ms  torch {t:9.3f} ms  ratio {h / t:6.2f}")


def gemm():
    print("(b) GEMM: heed f32 (SIMT, shared-memory tiles) against cuBLAS through PyTorch")
    for M, K, N in ((4096, 4096, 4096), (8192, 768, 768), (8192, 768, 3072), (8192, 3072, 768)):
        if K != N:
            continue  # the bench model is square in (K, N): x (M, n) @ w (n, n)
        h = heed_ms(os.path.join(REPO, "bench/gpu_gemm.heed"), "--set", f"n={K}", "--batch", str(M))
        x = torch.randn(M, K, device="cuda")
        w = torch.randn(K, N, device="cuda")
        for name, setup in (("f32", lambda: torch.backends.cuda.matmul.__setattr__("allow_tf32", False)),
                            ("tf32", lambda: torch.backends.cuda.matmul.__setattr__("allow_tf32", True))):
            setup()
            row(f"{M}x{K}x{N} heed f32 / torch {name}", h, torch_ms(lambda: x @ w))
        xb, wb = x.bfloat16(), w.bfloat16()
        row(f"{M}x{K}x{N} heed f32 / torch bf16", h, torch_ms(lambda: xb @ wb))
    torch.backends.cuda.matmul.allow_tf32 = False


def attention():
    print("(b) attention forward, causal, T = 1024, d = 64, 12 heads, B = 8, against SDPA")
    h = heed_ms(os.path.join(REPO, "bench/gpu_attn.heed"), "--batch", "8", "--seq", "1024")
    q, k, v = (torch.randn(8, 12, 1024, 64, device="cuda") for _ in range(3))
    f = torch.nn.functional.scaled_dot_product_attention
    row("attention f32 / SDPA f32", h, torch_ms(lambda: f(q, k, v, is_causal=True)))
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    row("attention f32 / SDPA bf16 (flash)", h, torch_ms(lambda: f(qb, kb, vb, is_causal=True)))


class Block(torch.nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.h, s.ln1, s.ln2 = h, torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        s.attn, s.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        s.fc, s.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.attn(s.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, s.h, C // s.h).transpose(1, 2) for t in (q, k, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + s.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + s.fc2(torch.nn.functional.gelu(s.fc(s.ln2(x)), approximate="tanh"))


class GPT2(torch.nn.Module):
    def __init__(s, V=50257, ctx=1024, d=768, h=12, L=12):
        super().__init__()
        s.wte, s.wpe = torch.nn.Embedding(V, d), torch.nn.Embedding(ctx, d)
        s.h = torch.nn.ModuleList(Block(d, h) for _ in range(L))
        s.ln = torch.nn.LayerNorm(d)

    def forward(s, t):
        x = s.wte(t) + s.wpe(torch.arange(t.shape[1], device=t.device))
        for b in s.h:
            x = b(x)
        return s.ln(x) @ s.wte.weight.t()


def gpt2():
    print("(b) GPT-2 small, B = 8, T = 1024, f32, against PyTorch CUDA eager")
    m = os.path.join(REPO, "examples/gpt2.heed")
    hf = heed_ms(m, "--batch", "8", "--seq", "1024")
    ht = heed_ms(m, "--batch", "8", "--seq", "1024", train=True)
    model = GPT2().cuda()
    t = torch.randint(0, 50257, (8, 1024), device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with torch.no_grad():
        row("forward", hf, torch_ms(lambda: model(t), reps=5))

    def step():
        loss = torch.nn.functional.cross_entropy(model(t).view(-1, 50257), t.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    row("train step (heed: without the AdamW update)", ht, torch_ms(step, reps=5))
    print("  decode: heed generate has no --target cuda yet (not timed)")


def main():
    gpu = TARGET == "cuda"
    print(f"heed: {HEED}\ntorch {torch.__version__}, {torch.cuda.get_device_name(0) if gpu else 'no GPU: numerics only'}")
    t0 = time.time()
    numerics()
    for part in (gemm, attention, gpt2) if gpu else ():
        try:
            part()
        except Exception as e:  # a part that fails does not hide the others' figures
            FAILS.append(f"{part.__name__}: {e}")
            print(f"  {part.__name__}: FAILED: {str(e)[-500:]}")
    print(f"done in {time.time() - t0:.0f} s")
    for f in FAILS:
        print("FAIL:", f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
