#!/usr/bin/env python3
# tests/cli/test_train.py: `heed train` end to end on a tiny byte-level GPT
# (examples/bytegpt.heed shrunk with --set; a few seconds of training):
#   - the same checkpoint bytes (but the run id) and losses with --threads 1 and 2
#   - SIGINT: finishes the step, saves, exits 0; resuming ends bit-identical
#     to an uninterrupted run (checkpoint bytes, loss column)
#   - kill -9 mid-run, resume: bit-identical as well
#   - a checkpoint write that fails (file size limit; read-only directory when
#     not root): exit 1, a message, the previous checkpoint intact
#   - --resume of a corrupt, truncated, other-model or other-settings
#     checkpoint: exit 1 with a clear message
#   - bad data files: empty, shorter than a window, token out of the
#     vocabulary, .bin of odd length, missing: exit 1 naming the file
#   - a non-finite loss: exit 1 naming the step, earlier checkpoints stay
#   - --keep, metrics.csv columns, loss.svg well-formed XML with two curves,
#     a text sample at the end
# Usage: test_train.py HEED REPO WORKDIR
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

HEED, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(REPO, "examples", "bytegpt.heed")
TINY = ["--set", "dim=32", "--set", "heads=2", "--set", "layers=1", "--set", "ctx=32",
        "--batch", "4", "--seq", "16", "--sample", "0"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def train(out, *extra, env=None, preexec=None):
    cmd = [HEED, "train", MODEL, "--data", DATA, "--out", out] + TINY + list(extra)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=300)


def start(out, *extra):
    cmd = [HEED, "train", MODEL, "--data", DATA, "--out", out] + TINY + list(extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ckpts(out):
    return sorted(f for f in os.listdir(out) if f.startswith("ckpt-") and f.endswith(".safetensors"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def ckpt_body(path):  # a checkpoint without its run id (random per run): header fields and data
    b = read(path)
    n = int.from_bytes(b[:8], "little")
    h = json.loads(b[8:8 + n])
    h.get("__metadata__", {}).pop("run_id", None)
    return h, b[8 + n:]


def losses(out):  # step,loss,val_loss columns: bit-exact in the text
    with open(os.path.join(out, "metrics.csv")) as f:
        return [",".join(line.split(",")[:3]) for line in f]


def wait_for(path, proc, limit=120):
    t0 = time.time()
    while not os.path.exists(path) and proc.poll() is None and time.time() - t0 < limit:
        time.sleep(0.01)
    return os.path.exists(path)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
DATA = os.path.join(WORK, "data.txt")
with open(DATA, "wb") as f:  # ~100 KB of English: the repository's docs
    for name in sorted(os.listdir(os.path.join(REPO, "docs"))):
        f.write(read(os.path.join(REPO, "docs", name)))
    f.write(read(os.path.join(REPO, "README.md")))

STEPS = ["--steps", "300", "--eval-every", "50", "--checkpoint-every", "25"]
W = lambda name: os.path.join(WORK, name)

# --- threads: bit-identical ---
r1 = train(W("t1"), *STEPS, "--threads", "1")
check(r1.returncode == 0, "train --threads 1 exits 0 (%s)" % r1.stderr[-300:])
r2 = train(W("t2"), *STEPS, "--threads", "2")
check(r2.returncode == 0, "train --threads 2 exits 0")
final = "ckpt-00000300.safetensors"
check(ckpts(W("t1")) == ["ckpt-00000250.safetensors", "ckpt-00000275.safetensors", final],
      "--keep default 3: the newest three checkpoints stay (%s)" % ckpts(W("t1")))
check(ckpt_body(W("t1/" + final)) == ckpt_body(W("t2/" + final)), "final checkpoints bit-identical across --threads 1 and 2")
check(losses(W("t1")) == losses(W("t2")), "losses bit-identical across --threads 1 and 2")
rows = losses(W("t1"))
check(rows[0] == "step,loss,val_loss" and len(rows) == 301, "metrics.csv: header + one row per step")
first, last = float(rows[1].split(",")[1]), float(rows[-1].split(",")[1])
check(last < first - 0.5, "the loss falls (%.3f -> %.3f)" % (first, last))
check(sum(1 for r in rows[1:] if r.split(",")[2]) == 6, "a validation loss every 50 steps")
svg = ET.parse(W("t1/loss.svg")).getroot()
lines = [e for e in svg.iter() if e.tag.endswith("polyline")]
check(len(lines) == 2 and len(lines[0].get("points").split()) == 300, "loss.svg: train and validation curves")
check("step 300/300" in r1.stderr, "plain progress lines when not a tty")

# --- SIGINT mid-run: saves, exits 0; resume: bit-identical ---
p = start(W("int"), *STEPS)
hit = wait_for(W("int/ckpt-00000025.safetensors"), p)
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=120)
check(hit and p.returncode == 0, "SIGINT: exit status 0 (got %s)" % p.returncode)
check("interrupted (signal 2) after step" in out, "SIGINT: says where it stopped")
stopped = ckpts(W("int"))[-1]
check(stopped != final, "SIGINT: stopped before the end (%s)" % stopped)
r = train(W("int"), *STEPS, "--resume", W("int"))
check(r.returncode == 0 and "resuming from" in r.stderr, "resume after SIGINT")
check(ckpt_body(W("int/" + final)) == ckpt_body(W("t1/" + final)), "SIGINT + resume: final checkpoint bit-identical")
check(losses(W("int")) == losses(W("t1")), "SIGINT + resume: losses bit-identical")

# --- kill -9 mid-run; resume: bit-identical ---
p = start(W("kill"), *STEPS)
hit = wait_for(W("kill/ckpt-00000050.safetensors"), p)
p.kill()
p.communicate()
check(hit and not os.path.exists(W("kill/" + final)), "kill -9 before the end")
r = train(W("kill"), *STEPS, "--resume", W("kill"))
check(r.returncode == 0, "resume after kill -9 (%s)" % r.stderr[-300:])
check(ckpt_body(W("kill/" + final)) == ckpt_body(W("t1/" + final)), "kill -9 + resume: final checkpoint bit-identical")
check(losses(W("kill")) == losses(W("t1")), "kill -9 + resume: losses bit-identical")

# --- one run per directory at a time (a lock); a killed run's temporary files go ---
p = start(W("lock"), "--steps", "100000", "--checkpoint-every", "5", "--interp")
hit = wait_for(W("lock/ckpt-00000005.safetensors"), p)
r = train(W("lock"), "--steps", "5", "--force", "--interp")
check(hit and r.returncode == 1 and ("is in use by another heed train (pid %d)" % p.pid) in r.stderr,
      "a second run on a locked directory: exit 1 naming the first one's pid (%s)" % r.stderr.strip()[-300:])
check(os.path.exists(W("lock/metrics.csv")) and ckpts(W("lock")),
      "a second run (--force) on a locked directory removes nothing")
p.kill()
p.communicate()
at = ckpts(W("lock"))[-1]
stale = [at + ".tmp.Ab12Cd", "metrics.csv.tmp.Zz99Yy", "loss.svg.tmp.Qq11Ww", "metrics.csv.tmp"]
others = ["notes.txt.tmp.Ab12Cd", "ckpt-x.safetensors.tmp.Ab12Cd"]
for name in stale + others:
    open(W("lock/" + name), "wb").write(b"partial")
r = train(W("lock"), "--steps", str(int(at[5:13]) + 2), "--resume", W("lock"), "--interp")
left = os.listdir(W("lock"))
# 4 planted, and one more when the kill landed while a checkpoint was being written
removed = re.search(r"removed (\d+) temporary files of a killed run", r.stderr)
check(r.returncode == 0 and removed and int(removed.group(1)) in (4, 5) and
      not any(n in left for n in stale) and all(n in left for n in others) and
      not any(".tmp" in n for n in left if n not in others),
      "resume after kill -9: the run's stale temporary files go, nothing else (%s; %s)" % (r.stderr.strip()[-200:], left))

# --- checkpoint checksums (CRC-32C per tensor): a flipped bit is an error, not a silent resume ---
def st_split(path):
    b = read(path)
    n = int.from_bytes(b[:8], "little")
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_join(path, h, data):
    j = json.dumps(h).encode()
    j += b" " * (-len(j) % 8)
    open(path, "wb").write(len(j).to_bytes(8, "little") + j + data)


ck = W("lock/" + ckpts(W("lock"))[-1])
h, data = st_split(ck)
crcs = h["__metadata__"].get("crc32c", "").split()
check(len(crcs) == len(h) - 1 and all(len(c) == 8 for c in crcs), "a checkpoint holds a CRC-32C per tensor")
name = next(k for k in h if k.startswith("opt.m."))  # optimizer state is checked too
off = h[name]["data_offsets"][0] + 5
flipped = bytearray(data)
flipped[off] ^= 0x10
os.makedirs(W("crc"), exist_ok=True)
st_join(W("crc/ckpt-00000001.safetensors"), h, bytes(flipped))
r = train(W("crc"), "--steps", "20", "--resume", W("crc"), "--interp")
check(r.returncode == 1 and ("tensor '%s': checksum mismatch" % name) in r.stderr and "damaged" in r.stderr,
      "--resume of a checkpoint with a flipped bit: exit 1 naming the tensor (%s)" % r.stderr.strip()[-300:])
pname = min((k for k in h if k != "__metadata__" and not k.startswith("opt.")), key=lambda k: h[k]["data_offsets"][0])
flipped = bytearray(data)
flipped[h[pname]["data_offsets"][0] + 3] ^= 0x01
st_join(W("crc/flip-param.safetensors"), h, bytes(flipped))
r = train(W("crc2"), "--steps", "2", "--init", W("crc/flip-param.safetensors"), "--interp")
check(r.returncode == 1 and ("tensor '%s': checksum mismatch" % pname) in r.stderr,
      "--init from a damaged checkpoint: exit 1 (%s)" % r.stderr.strip()[-300:])
r = subprocess.run([HEED, "generate", MODEL, "--weights", W("crc/flip-param.safetensors"), "--prompt", "a", "-n", "2",
                    "--interp"] + TINY[:8], capture_output=True, text=True)
check(r.returncode == 1 and "checksum mismatch" in r.stderr,
      "generate --weights of a damaged checkpoint: exit 1 (%s)" % r.stderr.strip()[-300:])
old = json.loads(json.dumps(h))
del old["__metadata__"]["crc32c"]
st_join(W("crc/old.safetensors"), old, data)
r = train(W("crc3"), "--steps", str(int(h["__metadata__"]["step"]) + 1), "--resume", W("crc/old.safetensors"),
          "--interp")
check(r.returncode == 0 and "has no checksums (a checkpoint of an older heed): not verified" in r.stderr,
      "a checkpoint without checksums (older heed) still resumes, with a note (%s)" % r.stderr.strip()[-300:])
for key, val, want in [("step", "99999999999999999999", "step='99999999999999999999' is not a step number"),
                       ("step", "-3", "step='-3' is not a step number"),
                       ("settings", "", "checkpoint metadata 'settings' is empty"),
                       ("rng", "x1", "rng='x1' is not a generator state")]:
    bad = json.loads(json.dumps(h))
    bad["__metadata__"][key] = val
    st_join(W("crc/meta.safetensors"), bad, data)
    r = train(W("crc4"), "--steps", "20", "--resume", W("crc/meta.safetensors"), "--interp")
    check(r.returncode == 1 and want in r.stderr, "checkpoint metadata %s=%r: exit 1, '%s' (%s)"
          % (key, val, want, r.stderr.strip()[-300:]))

# The rest on the reference interpreter: the same files, no compile time.
# --- a sample of text at the end ---
r = train(W("sample"), "--steps", "20", "--interp", "--sample", "40")
check(r.returncode == 0 and "sample (40 tokens after a prompt of 4" in r.stdout, "a sample at the end (%s)" % r.stdout)

# --- a failed checkpoint write keeps the previous one ---
r = train(W("fail"), "--steps", "10", "--interp")
before = read(W("fail/ckpt-00000010.safetensors"))
size = len(before)


def small_files():  # writes past half a checkpoint fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))


r = train(W("fail"), "--steps", "20", "--resume", W("fail"), "--interp", preexec=small_files)
check(r.returncode == 1 and "ckpt-00000020.safetensors: cannot write" in r.stderr,
      "failed checkpoint write: exit 1 with a message (%s)" % r.stderr[-200:])
check(ckpts(W("fail")) == ["ckpt-00000010.safetensors"] and read(W("fail/ckpt-00000010.safetensors")) == before,
      "failed checkpoint write: the previous checkpoint stays, no temporary files (%s)" % os.listdir(W("fail")))
if os.getuid() != 0:  # permissions do not stop root
    os.chmod(W("fail"), 0o555)
    r = train(W("fail"), "--steps", "20", "--resume", W("fail"), "--interp")
    os.chmod(W("fail"), 0o755)
    check(r.returncode == 1 and "cannot" in r.stderr, "read-only output directory: exit 1")

# --- a non-finite loss: an error naming the step; the last good checkpoint stays ---
r = train(W("nan"), "--steps", "40", "--checkpoint-every", "2", "--set", "lr=1e6", "--set", "clip=0", "--interp")
m = re.search(r"error: step (\d+): .*not finite", r.stderr)
left = ckpts(W("nan"))
check(r.returncode == 1 and m and left and int(left[-1][5:13]) < int(m.group(1)),
      "non-finite loss: exit 1 naming the step, earlier checkpoints stay (%s %s)" % (r.stderr.strip()[-200:], left))

# --- corrupt or mismatched checkpoints ---
good = W("fail/ckpt-00000010.safetensors")


def resume_error(path, want, what, *extra):
    r = train(W("bad"), "--steps", "20", "--resume", path, "--interp", *extra)
    check(r.returncode == 1 and want in r.stderr, "%s: exit 1, '%s' (%s)" % (what, want, r.stderr.strip()[-300:]))


with open(W("trunc.safetensors"), "wb") as f:
    f.write(before[: size // 2])
resume_error(W("trunc.safetensors"), "trunc.safetensors", "truncated checkpoint")
with open(W("junk.safetensors"), "wb") as f:
    f.write(b"\x00" * 64)
resume_error(W("junk.safetensors"), "junk.safetensors", "garbage checkpoint")
r = subprocess.run([HEED, "init", MODEL, "-o", W("init.safetensors")], capture_output=True)
resume_error(W("init.safetensors"), "not a heed checkpoint", "weights file, not a checkpoint")
r = subprocess.run([HEED, "train", MODEL, "--data", DATA, "--out", W("bad"), "--resume", good, "--steps", "20",
                    "--sample", "0", "--set", "dim=48", "--set", "heads=2", "--set", "layers=1", "--set", "ctx=32",
                    "--batch", "4", "--seq", "16", "--interp"], capture_output=True, text=True)
check(r.returncode == 1 and "ckpt-00000010.safetensors: tensor" in r.stderr,
      "another model's checkpoint: exit 1 naming a tensor (%s)" % r.stderr.strip()[-300:])
resume_error(good, "written with batch=4, this run has batch=8", "other settings (batch)", "--batch", "8")
resume_error(W("empty-dir"), "cannot", "--resume of a missing path")
os.makedirs(W("empty-dir"))
resume_error(W("empty-dir"), "no checkpoint", "--resume of a directory without checkpoints")

# --- bad data files ---
def data_error(name, content, want):
    path = W(name)
    with open(path, "wb") as f:
        f.write(content)
    r = subprocess.run([HEED, "train", MODEL, "--data", path, "--out", W("d")] + TINY, capture_output=True, text=True)
    check(r.returncode == 1 and path in r.stderr and want in r.stderr,
          "bad data %s: exit 1, '%s' (%s)" % (name, want, r.stderr.strip()))


data_error("empty.txt", b"", "empty")
data_error("short.txt", b"x" * 40, "fewer than one window")
data_error("odd.bin", b"\x01\x00\x02", "odd length")
data_error("vocab.bin", b"\x01\x00" * 100 + b"\x2c\x01" + b"\x01\x00" * 100, "token 300 at byte offset 200")
r = subprocess.run([HEED, "train", MODEL, "--data", W("missing.txt")] + TINY, capture_output=True, text=True)
check(r.returncode == 1 and "missing.txt: cannot open" in r.stderr, "missing data file: exit 1")
r = subprocess.run([HEED, "train", MODEL, "--data", DATA, "--steps", "x"], capture_output=True, text=True)
check(r.returncode == 2, "bad --steps: usage error, exit 2")

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
