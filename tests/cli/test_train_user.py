#!/usr/bin/env python3
# tests/cli/test_train_user.py: the user's path around `heed train` (issue
# 12): train -> generate -> build -> fine-tune with no extra flags, on a tiny
# byte-level GPT (examples/bytegpt.heed shrunk with --set; the reference
# interpreter, so no compile time):
#   - a checkpoint is a weights file: run, generate, build and a built
#     program take it without --strict=false; a plain safetensors with an
#     extra tensor is still an error
#   - the end of a run prints the command that generates from it, and that
#     command runs
#   - a model that cannot be sampled (examples/mlp.heed) trains, skips the
#     sample with a note and prints its paths (exit 0)
#   - --init (fine-tuning): starts at the trained run's loss, fresh optimizer
#     state and step 0; --prefix; --weights on train is an error naming --init
#   - --freeze: frozen parameters bit-identical after training, the count of
#     trainable parameters, a pattern matching nothing is an error
#   - output directories: a new run into a run directory is an error naming
#     --resume and --force; --force starts over (only the run's files go);
#     the default runs/MODEL taken -> runs/MODEL-2; run ids; --resume into a
#     directory of another run is refused
#   - a model without a train section says so, also with --steps
# Usage: test_train_user.py HEED REPO WORKDIR
import json
import math
import os
import shutil
import struct
import subprocess
import sys

HEED, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(REPO, "examples", "bytegpt.heed")
SHAPE = ["--set", "dim=32", "--set", "heads=2", "--set", "layers=1", "--set", "ctx=32"]
TINY = SHAPE + ["--batch", "4", "--seq", "16", "--interp"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def heed(*args, cwd=None):
    return subprocess.run([HEED] + list(args), capture_output=True, text=True, errors="replace", timeout=300,
                          cwd=cwd)


def train(out, *extra, model=MODEL, cwd=None):
    outflag = ["--out", out] if out else []
    return heed("train", model, "--data", DATA, *outflag, *TINY, *extra, cwd=cwd)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def st_read(path):  # safetensors -> (metadata, {name: (dtype, shape, bytes)})
    b = read(path)
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    return meta, {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
                  for k, v in h.items()}


def st_write(path, meta, tensors):
    hdr, off, blobs = ({"__metadata__": meta} if meta else {}), 0, []
    for k, (dt, shape, data) in tensors.items():
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    j = json.dumps(hdr).encode()
    j += b" " * (-len(j) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(j)) + j + b"".join(blobs))


def losses(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        return [float(line.split(",")[1]) for line in list(f)[1:]]


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
W = lambda name: os.path.join(WORK, name)
DATA = W("data.txt")
with open(DATA, "wb") as f:  # ~100 KB of English: the repository's docs
    for name in sorted(os.listdir(os.path.join(REPO, "docs"))):
        f.write(read(os.path.join(REPO, "docs", name)))

# --- a checkpoint is a weights file ---
r = train(W("base"), "--steps", "5", "--sample", "0")
check(r.returncode == 0, "base run (%s)" % r.stderr[-300:])
ck = W("base/ckpt-00000005.safetensors")
r = heed("generate", MODEL, "--weights", ck, "--prompt", "The ", "-n", "4", "--interp", *SHAPE)
check(r.returncode == 0, "generate --weights CHECKPOINT without --strict=false (%s)" % r.stderr[-300:])
meta, ts = st_read(ck)
params = {k: v for k, v in ts.items() if not k.startswith("opt.")}
st_write(W("params.safetensors"), {}, params)
st_write(W("tokens.safetensors"), {}, {"tokens": ("I32", [1, 4], struct.pack("<4i", 84, 104, 101, 32))})
r = heed("run", MODEL, "--weights", ck, "--inputs", W("tokens.safetensors"), "--outputs", W("o1.safetensors"),
         "--interp", *SHAPE)
r2 = heed("run", MODEL, "--weights", W("params.safetensors"), "--inputs", W("tokens.safetensors"), "--outputs",
          W("o2.safetensors"), "--interp", *SHAPE)
check(r.returncode == 0 and r2.returncode == 0 and st_read(W("o1.safetensors"))[1] == st_read(W("o2.safetensors"))[1],
      "run --weights CHECKPOINT: the same outputs as its parameters alone (%s)" % r.stderr[-300:])
extra = dict(params)
extra["opt.m.wte"] = ts["opt.m.wte"]
st_write(W("extra.safetensors"), {"format": "pt"}, extra)
r = heed("run", MODEL, "--weights", W("extra.safetensors"), "--inputs", W("tokens.safetensors"), "--outputs",
         W("o3.safetensors"), "--interp", *SHAPE)
check(r.returncode == 1 and "tensor 'opt.m.wte' is not a parameter" in r.stderr,
      "an ordinary safetensors with an extra tensor is still an error (%s)" % r.stderr[-300:])
bad = dict(ts)
del bad["wte"]
st_write(W("noparam.safetensors"), meta, bad)
r = heed("generate", MODEL, "--weights", W("noparam.safetensors"), "--prompt", "a", "-n", "1", "--interp", *SHAPE)
check(r.returncode == 1 and "missing tensor 'wte'" in r.stderr, "a checkpoint missing a parameter: exit 1")
if shutil.which("cc"):
    r = heed("build", MODEL, "--weights", ck, "-o", W("prog"), "--weights-file", *SHAPE)
    check(r.returncode == 0, "build --weights CHECKPOINT (%s)" % r.stderr[-300:])
    p1 = subprocess.run([W("prog"), "--prompt", "The ", "-n", "8", "--temperature", "0"], capture_output=True)
    p2 = subprocess.run([W("prog"), "--weights", ck, "--prompt", "The ", "-n", "8", "--temperature", "0"],
                        capture_output=True)
    check(p1.returncode == 0 and p2.returncode == 0 and p1.stdout == p2.stdout,
          "a built program takes a checkpoint as --weights (%s)" % p2.stderr[-300:])
    p3 = subprocess.run([W("prog"), "--weights", W("extra.safetensors"), "--prompt", "a", "-n", "1"],
                        capture_output=True, text=True)
    check(p3.returncode != 0 and "opt.m.wte" in p3.stderr, "a built program: extra tensors still an error")

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
