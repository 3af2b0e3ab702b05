#!/usr/bin/python3
# tests/ref/generate_torch.py: `heed generate` end to end against a PyTorch
# float64 reference (full recomputation per token, greedy): gpt2.heed and
# llama.heed (grouped-query attention, rope) at small --set configs with
# byte prompts, compiled and --interp, and gpt2 with the GPT-2 BPE tokenizer;
# generation past the context (the window slides: the most recent half is
# prefilled again at positions 0.., the reference does the same), the window
# of the trained sequence length with its note, --window, a prompt longer
# than the window; seeded sampling reproducible; BERT generating by
# recomputation with its note; a model with two outputs (logits and pooled
# states; --output); bad flags, prompts and weights.
# Greedy steps are compared while the reference's top-2 margin exceeds 1e-3
# (f32 vs f64 noise cannot flip the choice there); the random weights are
# scaled so that margins are large.
# Usage: generate_torch.py HEED REPO WORKDIR [TOKENIZER_DIR]
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

from st_io import write_st  # tests/ref/st_io.py

HEED, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
TOK = sys.argv[4] if len(sys.argv) > 4 else None
os.makedirs(WORK, exist_ok=True)
torch.set_default_dtype(torch.float64)
FAILS = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        FAILS.append(name)


def heed(*args):
    p = subprocess.run([HEED, *args], capture_output=True, timeout=300)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def write_f32(path, tensors):  # every tensor as F32
    write_st(path, {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in tensors.items()})


def sets(cfg):
    return sum((["--set", f"{k}={v}"] for k, v in cfg.items()), [])


def layer_norm(x, w, b, eps):
    m = x.mean(-1, keepdim=True)
    v = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(v + eps) * w + b


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(q, k, v, H, KV):
    T, D = q.shape[0], q.shape[1] // H
    q = q.view(T, H, D).transpose(0, 1)
    k = k.view(T, KV, D).transpose(0, 1).repeat_interleave(H // KV, 0)
    v = v.view(T, KV, D).transpose(0, 1).repeat_interleave(H // KV, 0)
    s = q @ k.transpose(1, 2) / math.sqrt(D)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    return (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, H * D)


def rope(x, H, base):
    T, C = x.shape
    D = C // H
    x = x.view(T, H, D)
    ang = torch.arange(T)[:, None] * base ** (-2 * torch.arange(D // 2) / D)
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b = x[..., :D // 2], x[..., D // 2:]
    return torch.cat([a * c - b * s, a * s + b * c], -1).view(T, C)


def gpt2_params(c, rng):
    d = c["dim"]
    P = {"wte": rng.normal(0, 0.3, (c["vocab"], d)), "wpe": rng.normal(0, 0.3, (c["ctx"], d))}
    for i in range(c["layers"]):
        p = f"h.{i}."
        for n, shape in [("ln_1", d), ("ln_2", d)]:
            P[p + n + ".weight"] = 1 + rng.normal(0, 0.1, shape)
            P[p + n + ".bias"] = rng.normal(0, 0.1, shape)
        for n, (a, b) in [("attn.c_attn", (d, 3 * d)), ("attn.c_proj", (d, d)), ("mlp.c_fc", (d, 4 * d)),
                          ("mlp.c_proj", (4 * d, d))]:
            P[p + n + ".weight"] = rng.normal(0, 0.3 / math.sqrt(a), (a, b)) * 3
            P[p + n + ".bias"] = rng.normal(0, 0.1, b)
    P["ln_f.weight"], P["ln_f.bias"] = 1 + rng.normal(0, 0.1, d), rng.normal(0, 0.1, d)
    return P


def gpt2_logits(P, c, toks):
    T = len(toks)
    x = P["wte"][toks] + P["wpe"][:T]
    for i in range(c["layers"]):
        p = f"h.{i}."
        h = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], 1e-5)
        q, k, v = (h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]).split(c["dim"], -1)
        x = x + attention(q, k, v, c["heads"], c["heads"]) @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], 1e-5)
        x = x + gelu_tanh(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"]) @ P[p + "mlp.c_proj.weight"] \
            + P[p + "mlp.c_proj.bias"]
    return (layer_norm(x, P["ln_f.weight"], P["ln_f.bias"], 1e-5) @ P["wte"].T)[-1]


def llama_params(c, rng):
    d, f = c["dim"], c["ffn_dim"]
    kvd = c["n_kv_heads"] * (d // c["n_heads"])
    P = {"embed_tokens.weight": rng.normal(0, 1, (c["vocab"], d))}
    for i in range(c["n_layers"]):
        p = f"layers.{i}."
        P[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        P[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        for n, (a, b) in [("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (d, kvd)), ("self_attn.v_proj", (d, kvd)),
                          ("self_attn.o_proj", (d, d)), ("mlp.gate_proj", (d, f)), ("mlp.up_proj", (d, f)),
                          ("mlp.down_proj", (f, d))]:
            P[p + n + ".weight"] = rng.normal(0, 1.5 / math.sqrt(a), (a, b))
    P["norm.weight"] = 1 + rng.normal(0, 0.1, d)
    P["lm_head.weight"] = rng.normal(0, 1 / math.sqrt(d), (d, c["vocab"])) * 3
    return P


def llama_logits(P, c, toks):
    H, KV = c["n_heads"], c["n_kv_heads"]
    x = P["embed_tokens.weight"][toks]
    for i in range(c["n_layers"]):
        p = f"layers.{i}."
        h = rms_norm(x, P[p + "input_layernorm.weight"], 1e-5)
        q = rope(h @ P[p + "self_attn.q_proj.weight"], H, 10000.0)
        k = rope(h @ P[p + "self_attn.k_proj.weight"], KV, 10000.0)
        x = x + attention(q, k, h @ P[p + "self_attn.v_proj.weight"], H, KV) @ P[p + "self_attn.o_proj.weight"]
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], 1e-5)
        x = x + (F.silu(h @ P[p + "mlp.gate_proj.weight"]) * (h @ P[p + "mlp.up_proj.weight"])) @ P[p + "mlp.down_proj.weight"]
    return (rms_norm(x, P["norm.weight"], 1e-5) @ P["lm_head.weight"])[-1]


def greedy_ref(logits_fn, P, c, prompt, n, window=None):
    """-> (ids, trusted): ids of n greedy steps; trusted: how many have a top-2 margin > 1e-3.
    With a window: the prompt's last `window` tokens; when the window is full the next token
    is fed as runtime/generate.c does: the last window // 2 tokens (it included) from position 0."""
    T = {k: torch.tensor(np.asarray(v, dtype=np.float32), dtype=torch.float64) for k, v in P.items()}
    toks, out, trusted = list(prompt)[-window:] if window else list(prompt), [], None
    for _ in range(n):
        lg = logits_fn(T, c, torch.tensor(toks))
        top = torch.topk(lg, 2).values
        if trusted is None and top[0] - top[1] <= 1e-3:
            trusted = len(out)
        out.append(int(lg.argmax()))
        if window and len(toks) == window:
            keep = max(window // 2, 1)
            toks = toks[len(toks) - (keep - 1):] if keep > 1 else []
        toks.append(out[-1])
    return out, n if trusted is None else trusted


def compare_greedy(tag, heed_file, cfg, P, logits_fn, prompt_bytes, n, extra=()):
    w = os.path.join(WORK, tag + ".safetensors")
    write_f32(w, P)
    want, trusted = greedy_ref(logits_fn, P, cfg, list(prompt_bytes), n)
    check(tag + " margins", trusted >= n // 2, f"only {trusted} of {n} greedy steps have a clear margin")
    for mode in ([], ["--interp"]):
        rc, out, err = heed("generate", os.path.join(REPO, "examples", heed_file), *sets(cfg), "--weights", w,
                            "--prompt", prompt_bytes.decode(), "-n", str(n),
                            "--temperature", "0", *mode, *extra)
        got = list(out[:-1]) if rc == 0 else []
        check(f"{tag} {' '.join(mode) or 'compiled'} greedy = torch", rc == 0 and got[:trusted] == want[:trusted],
              f"rc={rc} got {got} want {want} (first {trusted} compared) {err[-300:]}")
        check(f"{tag} {' '.join(mode) or 'compiled'} uses the KV cache", "KV cache" in err and "tokens/s" in err, err[-300:])


rng = np.random.default_rng(0)
G = {"vocab": 256, "ctx": 24, "dim": 32, "heads": 4, "layers": 2}
PG = gpt2_params(G, rng)
compare_greedy("gpt2", "gpt2.heed", G, PG, gpt2_logits, b"Hi there", 14)
L = {"vocab": 256, "ctx": 64, "dim": 32, "n_heads": 4, "n_kv_heads": 2, "n_layers": 2, "ffn_dim": 48}
compare_greedy("llama", "llama.heed", L, llama_params(L, rng), llama_logits, b"GQA!", 16)

gw = os.path.join(WORK, "gpt2.safetensors")
gf = os.path.join(REPO, "examples", "gpt2.heed")

# past the context: 24 positions, an 8-byte prompt, 60 tokens; the window
# (24: gpt2.heed trains at seq 256 > ctx) slides first after 16 tokens
def compare_window(tag, prompt, n, window, extra, note):
    want, trusted = greedy_ref(gpt2_logits, PG, G, list(prompt), n, window)
    first_shift = window - min(len(prompt), window) + 1
    check(tag + " margins", trusted >= first_shift + 8, f"only {trusted} of {n} steps have a clear margin")
    for mode in ([], ["--interp"]):
        rc, out, err = heed("generate", gf, *sets(G), "--weights", gw, "--prompt", prompt.decode(), "-n", str(n),
                            "--temperature", "0", *extra, *mode)
        got = list(out[:-1]) if rc == 0 else []
        check(f"{tag} {' '.join(mode) or 'compiled'} = torch", rc == 0 and len(got) == n and
              got[:trusted] == want[:trusted] and "window slid" in err and (note is None or note in err) and
              (note is not None or "note: generating" not in err),
              f"rc={rc} got {got} want {want} (first {trusted}) {err[-400:]}")


compare_window("past the context", b"Hi there", 60, 24, [], None)
compare_window("window of the trained seq", b"Hi there", 40, 16, ["--set", "seq=16"],
               "note: generating with a 16-token window, the sequence length GPT2 was trained at (its context is 24)")
compare_window("--window 10", b"Hi there", 30, 10, ["--window", "10"],
               "note: generating with a 10-token window (--window; the context of GPT2 is 24)")
compare_window("a prompt over the window", b"The quick brown fox jumps over", 20, 24, [],
               "note: the prompt has 30 tokens; its first 6 are left out (the window holds 24)")

# seeded sampling: reproducible; another seed differs
runs = [heed("generate", gf, *sets(G), "--weights", gw, "--prompt", "Hi", "-n", "16", "--seed", s, "--top-k", "50",
             "--top-p", "0.95", "--temperature", "1.5")[1] for s in ("5", "5", "6")]
check("seeded sampling", runs[0] == runs[1] and runs[0] != runs[2] and len(runs[0]) == 17, repr(runs))

# several outputs (tests/models/two_outputs.heed: hidden states, logits,
# pooled states): the logits are found by type; the step graph keeps only
# what they need (the pooled mean over positions would not be incremental)
tf = os.path.join(REPO, "tests", "models", "two_outputs.heed")
want2, trusted2 = greedy_ref(gpt2_logits, PG, G, list(b"Hi there"), 40, 24)
for extra in ([], ["--interp"], ["--output", "out1"]):
    rc, out, err = heed("generate", tf, "--weights", gw, "--prompt", "Hi there", "-n", "40", "--temperature", "0",
                        *extra)
    got = list(out[:-1]) if rc == 0 else []
    check(f"two outputs {' '.join(extra) or 'compiled'}: greedy = torch, KV cache",
          rc == 0 and got[:trusted2] == want2[:trusted2] and trusted2 >= 24 and "KV cache" in err,
          f"rc={rc} got {got} want {want2} ({trusted2} trusted) {err[-300:]}")
rc, out, err = heed("generate", tf, "--weights", gw, "--prompt", "Hi", "--output", "out2")
check("two outputs: --output out2 is not logits", rc == 1 and "--output out2: heed generate needs logits "
      "f32[B, T, vocab] (the forward returns out0 f32[B, T, 32], out1 f32[B, T, 256], out2 f32[B, 32])" in err, err)


# programs from heed build: the same tokens as heed generate (the same loop,
# the same KV-cached step graph compiled in), greedy and seeded, past the
# context, with the window of the trained seq, --window, several outputs
def program_vs_generate(tag, model, args, build_extra=(), runs=()):
    prog = os.path.join(WORK, tag.replace(" ", "_") + "-prog")
    rc, _, err = heed("build", model, *args, "--weights", gw, "-o", prog, *build_extra)
    if "without the LLVM backend" in err:
        print(f"skip program {tag}: this heed has no LLVM backend")
        return
    check(f"program {tag}: heed build", rc == 0, err[-400:])
    if rc:
        return
    for flags in runs:
        p = subprocess.run([prog, *flags], capture_output=True, timeout=300)
        g = heed("generate", model, *args, "--weights", gw, *flags)
        perr = p.stderr.decode(errors="replace")
        check(f"program {tag} {' '.join(flags[2:])}: = heed generate, KV cache",
              p.returncode == 0 and g[0] == 0 and p.stdout == g[1] and len(p.stdout) > 20 and "KV cache" in perr,
              f"program rc={p.returncode} {p.stdout!r} {perr[-300:]}\ngenerate rc={g[0]} {g[1]!r} {g[2][-300:]}")
    return prog


greedy60 = ["--prompt", "Hi there", "-n", "60", "--temperature", "0"]
seeded60 = ["--prompt", "Hi there", "-n", "60", "--seed", "11", "--temperature", "0.9", "--top-k", "40"]
prog = program_vs_generate("gpt2", gf, sets(G), runs=(greedy60, seeded60, greedy60 + ["--window", "10"],
                                                       ["--prompt", "x" * 30, "-n", "30", "--temperature", "0"]))
if prog:
    for flags, want_rc, msg in ((["--window", "0"], 2, "--window takes a positive count"),
                                (["--window", "25"], 2, "--window 25 is larger than GPT2's context of 24 positions")):
        p = subprocess.run([prog, "--prompt", "x", *flags], capture_output=True, timeout=60)
        check(f"program {' '.join(flags)}: status {want_rc}", p.returncode == want_rc and msg in p.stderr.decode(),
              f"rc={p.returncode} {p.stderr.decode()[-300:]}")
program_vs_generate("trained seq", gf, sets(G) + ["--set", "seq=16"], runs=(greedy60, seeded60))
p = subprocess.run([os.path.join(WORK, "trained_seq-prog"), *greedy60], capture_output=True, timeout=60)
check("program: the window note", "note: generating with a 16-token window, the sequence length GPT2 was trained at "
      "(its context is 24)" in p.stderr.decode(), p.stderr.decode())
program_vs_generate("two outputs", tf, [], runs=(greedy60, seeded60))
rc, _, err = heed("build", tf, "--weights", gw, "-o", os.path.join(WORK, "nosuch-prog"), "--output", "nosuch")
check("build --output nosuch", rc == 2 and "--output nosuch: TwoOutputs's forward has no output of that name" in err,
      f"rc={rc} {err[-300:]}")
rc, _, err = heed("build", gf, *sets(G), "--weights", gw, "-o", os.path.join(WORK, "w0-prog"), "--window", "0")
check("build --window 0", rc == 2 and "--window takes a positive integer" in err, f"rc={rc} {err[-300:]}")

# heed train's closing sample goes through generate's loop, window (seq 16
# of tests/models/train_gpt.heed, past it the last half kept) and sampler:
# heed generate on the final checkpoint with the sample's prompt (the first
# seq/4 bytes of the validation split), --temperature 0.8 and the train
# seed prints the same text
data = os.path.join(WORK, "train.txt")
open(data, "wb").write(b"".join(b"the whale %d swam past the ship, and the sea was calm. " % i for i in range(300)))
tm, tout = os.path.join(REPO, "tests", "models", "train_gpt.heed"), os.path.join(WORK, "train_run")
rc, out, err = heed("train", tm, "--data", data, "--steps", "30", "--out", tout, "--force", "--sample", "60", "--threads", "1")
lines = out.decode(errors="replace").splitlines()
sample = lines[lines.index(next(l for l in lines if l.startswith("sample ("))) + 1] if rc == 0 else ""
raw = open(data, "rb").read()
prompt = raw[int(len(raw) * 0.9):][:4].decode()
rc2, gen, err2 = heed("generate", tm, "--weights", os.path.join(tout, "ckpt-00000030.safetensors"), "--strict=false",
                      "--prompt", prompt, "-n", "60", "--temperature", "0.8", "--seed", "1337")
check("heed train's sample = heed generate on its checkpoint", rc == 0 and rc2 == 0 and
      sample == prompt + gen.decode(errors="replace").rstrip("\n") and "window slid" in err2,
      f"train rc={rc} {sample!r} {err[-200:]}\ngenerate rc={rc2} {prompt!r}+{gen!r} {err2[-300:]}")

# BERT: bidirectional, so recomputation, said once
B = {"vocab": 256, "dim": 32, "n_heads": 2, "n_layers": 1, "ffn_dim": 32, "ctx": 16}
bw = os.path.join(WORK, "bert.safetensors")
rc, _, err = heed("init", os.path.join(REPO, "examples", "bert.heed"), *sets(B), "-o", bw)
rc, out, err = heed("generate", os.path.join(REPO, "examples", "bert.heed"), *sets(B), "--weights", bw, "--prompt",
                    "abc", "-n", "5", "--temperature", "0")
check("bert recomputes", rc == 0 and len(out) == 6 and err.count("cannot decode incrementally (attention is not "
                                                                  "causal") == 1 and "recomputation" in err,
      f"rc={rc} {out!r} {err[-400:]}")

# the same BERT with its mask declared i32 and i64: recomputation fills a
# mask with "keep" (non-zero) in any dtype, so the text is the bool mask's.
# Attention's weights scaled up so that it is far from uniform and weighs in
# the residual (at init a mask that drops every key changes no token).
def read_f32(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in hdr.items() if k != "__metadata__"}


BP = {k: v * (40.0 if (".query." in k or ".key." in k) and k.endswith("weight") else
              50.0 if (".value." in k or ".dense." in k) and "attention." in k and k.endswith("weight") else 1.0)
      for k, v in read_f32(bw).items()}
bws = os.path.join(WORK, "bert_sharp.safetensors")
write_f32(bws, BP)
rc, out, err = heed("generate", os.path.join(REPO, "examples", "bert.heed"), *sets(B), "--weights", bws, "--prompt",
                    "abcdefgh", "-n", "6", "--temperature", "0")
for dt in ("i32", "i64"):
    src = open(os.path.join(REPO, "examples", "bert.heed")).read()
    im = os.path.join(WORK, "bert_%s.heed" % dt)
    with open(im, "w") as f:
        f.write(src.replace("mask: bool[B, T]", "mask: %s[B, T]" % dt))
    for mode in ([], ["--interp"]):
        rc2, out2, err2 = heed("generate", im, *sets(B), "--weights", bws, "--prompt", "abcdefgh", "-n", "6",
                               "--temperature", "0", *mode)
        check("bert with an %s mask generates as with a bool mask %s" % (dt, mode), rc2 == 0 and out2 == out,
              f"rc={rc2} {out2!r} vs {out!r} {err2[-300:]}")

# the GPT-2 BPE tokenizer: ids through the model, text back out
if TOK:
    enc = json.load(open(os.path.join(TOK, "encoder.json"), encoding="utf-8"))
    dec = {v: k for k, v in enc.items()}
    be = {}
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_dec = {chr(c): b for b, c in zip(bs, cs)}
    GB = {"ctx": 16, "dim": 16, "heads": 2, "layers": 1}
    GBc = dict(GB, vocab=50257)
    PB = gpt2_params(GBc, np.random.default_rng(1))
    bpw = os.path.join(WORK, "gpt2bpe.safetensors")
    write_f32(bpw, PB)
    want, trusted = greedy_ref(gpt2_logits, PB, GBc, [15496, 995], 6)
    text = bytes(byte_dec[ch] for i in want[:trusted] for ch in dec[i])
    rc, out, err = heed("generate", gf, *sets(GB), "--weights", bpw, "--prompt", "Hello world", "-n", "6",
                        "--temperature", "0", "--tokenizer", TOK)
    check("gpt2 BPE greedy = torch", rc == 0 and trusted >= 3 and out.startswith(text),
          f"rc={rc} {out!r} want {text!r} ({trusted} trusted) {err[-300:]}")
    rc, out, err = heed("generate", gf, *sets(GB), "--weights", bpw, "--prompt", "x", "--tokenizer", "/nonexistent")
    check("bad tokenizer dir", rc == 1 and "/nonexistent/encoder.json" in err, f"rc={rc} {err[-300:]}")

# errors: exit 2 for usage, 1 for bad files
small = sets(dict(G, vocab=100))
cases = [
    ("missing --prompt", 2, "missing --prompt TEXT", [gf, *sets(G), "--weights", gw]),
    ("empty prompt", 2, "the prompt is empty", [gf, *sets(G), "--weights", gw, "--prompt", ""]),
    ("byte outside vocab", 2, "byte 0xC3 at offset 1 is outside the model's vocabulary of 100",
     [gf, *small, "--weights", gw, "--prompt", "aé"]),
    ("--window 0", 2, "--window takes a positive integer (positions), got '0'",
     [gf, *sets(G), "--weights", gw, "--prompt", "x", "--window", "0"]),
    ("--window over ctx", 2, "--window 25 is larger than GPT2's context of 24 positions",
     [gf, *sets(G), "--weights", gw, "--prompt", "x", "--window", "25"]),
    ("--output nosuch", 2, "--output nosuch: GPT2's forward has no output of that name (it returns out f32[B, T, 256])",
     [gf, *sets(G), "--weights", gw, "--prompt", "x", "--output", "nosuch"]),
    ("bad top-p", 2, "--top-p takes a number in (0, 1]", [gf, "--weights", gw, "--prompt", "x", "--top-p", "0"]),
    ("bad -n", 2, "-n takes a positive integer", [gf, "--weights", gw, "--prompt", "x", "-n", "0"]),
    ("missing weights file", 1, "nope.safetensors", [gf, *sets(G), "--weights", "nope.safetensors", "--prompt", "x"]),
    ("misshapen weights", 1, "tensor 'wte' is F32[256, 32] but the model declares f32[100, 32]",
     [gf, *small, "--weights", gw, "--prompt", "a"]),
]
for name, want_rc, msg, args in cases:
    rc, out, err = heed("generate", *args)
    check("error: " + name, rc == want_rc and msg in err, f"rc={rc} (want {want_rc}) {err[-300:]}")

print(f"{len(FAILS)} failed" if FAILS else "all passed")
sys.exit(1 if FAILS else 0)
