#!/usr/bin/env python3
# tests/cli/test_bad_inputs.py: the bad-input corpus (issue 18: no crash,
# hang or lost run on any input). It sits before every reader of a user's
# file: it makes malformed safetensors (truncated, huge or bad header, bad
# JSON, offsets past the end, overlapping or negative offsets, wrong dtype
# sizes, ...), malformed training data (.bin cut inside its header, other
# header versions, odd lengths, tokens outside the vocabulary), malformed
# checkpoints (truncated, metadata edited, tensors missing or misshapen)
# and special files (FIFO, directory, /dev/zero, /dev/null, a missing file,
# an unreadable one when not root), and feeds each to every command that
# reads it: run/grad --weights/--inputs, generate, train --data/--val/
# --resume/--init, the model file, build --weights and a built program's
# --weights. Each must exit 1 (2 for bad usage) with a message on stderr
# that names the file: never a signal, a sanitizer report or a hang (every
# command runs under a timeout). Also: --seed past 2^64-1, train --out past
# the path limit, batch*seq and seq+1 overflows, a program's usage errors
# (2, as heed generate), and files truncated while in use (training data
# during heed train: the run completes and checkpoints; a program's mapped
# weights: exit 1 with a message). Prints the counts: inputs tried,
# crashes, hangs.
# Usage: test_bad_inputs.py HEED REPO WORKDIR
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

HEED, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(REPO, "examples", "bytegpt.heed")
SETS = ["--set", "dim=32", "--set", "heads=2", "--set", "layers=1", "--set", "ctx=32"]
TINY = SETS + ["--batch", "2", "--seq", "8", "--sample", "0"]
TIMEOUT = int(os.environ.get("HEED_TEST_TIMEOUT", "120"))  # per command (the sanitizer build is slow)
stats = {"tried": 0, "crashes": 0, "hangs": 0}
failures = []


def W(*p):
    return os.path.join(WORK, *p)


def check(cond, what):
    if not cond:
        print("FAIL " + what, flush=True)
        failures.append(what)


def run(cmd, timeout=TIMEOUT, **kw):
    """(rc, stdout, stderr); rc None on a timeout (the process is killed)."""
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return None, "", (e.stderr or b"").decode("utf-8", "replace")


def expect(what, cmd, code=1, want=(), timeout=TIMEOUT):
    """One bad input: exit `code`, a message holding each of `want`, no signal,
    no sanitizer report, no hang."""
    stats["tried"] += 1
    rc, _, err = run(cmd, timeout)
    tail = err.strip()[-400:]
    if rc is None:
        stats["hangs"] += 1
        check(False, "%s: hangs (killed after %d s)" % (what, timeout))
        return err
    sanitizer = "Sanitizer" in err or "runtime error:" in err
    if rc < 0 or rc > 2 or sanitizer:
        stats["crashes"] += 1
        check(False, "%s: crashed (status %d%s): %s" % (what, rc, ", signal %s" % signal.Signals(-rc).name
                                                           if rc < 0 else "", tail))
        return err
    codes = code if isinstance(code, tuple) else (code,)
    check(rc in codes, "%s: exit %d, expected %s: %s" % (what, rc, " or ".join(map(str, codes)), tail))
    check(rc == 0 or err.strip() != "", "%s: no message on stderr" % what)
    for w in want if rc else ():
        check(w in err, "%s: the message lacks %r: %s" % (what, w, tail))
    return err


def heed(*args, **kw):
    return run([HEED] + list(args), **kw)


# ---- safetensors, written by hand (so that any byte can be wrong) ----

def st_raw(header, data=b"", hlen=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def st_file(tensors, meta=None):  # tensors: [(name, dtype, shape, bytes)]
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return st_raw(hdr, data)


def st_read(path):  # -> (header dict, data bytes)
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_rewrite(hdr, data):
    return st_raw(hdr, data)


def write(path, b):
    with open(path, "wb") as f:
        f.write(b)
    return path


def malformed_safetensors(d):
    """Files no reader may accept, each with what its message must say."""
    t = {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    cases = {
        "empty": b"",
        "short": b"\x08\x00\x00",
        "hlen_zero": st_raw(b"", hlen=0),
        "hlen_huge": struct.pack("<Q", 2**63 + 5) + b"{}      ",
        "hlen_past_end": struct.pack("<Q", 4096) + b"{}      ",
        "hlen_limit": struct.pack("<Q", 100000001) + b"{" + b" " * 100,
        "not_json": st_raw(b"hello world"),
        "json_cut": st_raw(b'{"x": {"dtype": "F32", "sha'),
        "json_array": st_raw(b"[1, 2, 3]"),
        "json_trailing": st_raw(b'{"x": 1} {}'),
        "json_deep": st_raw(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"),
        "bad_utf8": st_raw(b'{"\xff\xfe": 1}'),
        "nul_in_name": st_raw(b'{"a\\u0000b": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'),
        "entry_string": st_raw({"x": "F32"}),
        "no_dtype": st_raw({"x": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
        "dtype_unknown": st_raw({"x": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
        "dtype_number": st_raw({"x": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
        "shape_negative": st_raw({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
        "shape_float": st_raw({"x": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}}, b"\0" * 8),
        "shape_overflow": st_raw({"x": {"dtype": "F32", "shape": [2**40, 2**40, 2**40],
                                        "data_offsets": [0, 8]}}, b"\0" * 8),
        "shape_rank9": st_raw({"x": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}}, b"\0" * 4),
        "offsets_past_end": st_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
        "offsets_huge": st_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [2**64 - 8, 2**64]}},
                               b"\0" * 8),
        "offsets_negative": st_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8),
        "offsets_reversed": st_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8),
        "offsets_three": st_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 8]}}, b"\0" * 8),
        "offsets_overlap": st_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                   "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
        "dtype_size_wrong": st_raw({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
        "i64_odd_bytes": st_raw({"x": {"dtype": "I64", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        "name_twice": st_raw(b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                             b'"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8),
        "metadata_not_string": st_raw({"__metadata__": {"a": 1}, **t}, b"\0" * 8),
        "metadata_array": st_raw({"__metadata__": [1], **t}, b"\0" * 8),
        "garbage": bytes(range(256)) * 8,
    }
    return {k: write(os.path.join(d, k + ".safetensors"), v) for k, v in cases.items()}


def special_files(d):
    """Not regular files (and a missing or unreadable one): name -> path."""
    fifo = os.path.join(d, "fifo.safetensors")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    sub = os.path.join(d, "dir.safetensors")
    os.makedirs(sub, exist_ok=True)
    files = {"fifo": fifo, "directory": sub, "dev_zero": "/dev/zero", "dev_null": "/dev/null",
             "missing": os.path.join(d, "missing.safetensors")}
    if os.geteuid() != 0:
        p = write(os.path.join(d, "unreadable.safetensors"), st_file([]))
        os.chmod(p, 0)
        files["unreadable"] = p
    else:
        print("note: running as root: no unreadable-file case (root reads any file)", flush=True)
    return files


SPECIAL_WANT = {"fifo": "is a FIFO (named pipe), not a regular file", "directory": "is a directory",
                "dev_zero": "is a character device, not a regular file",
                "dev_null": "is a character device, not a regular file", "missing": "No such file or directory",
                "unreadable": "Permission denied"}


def named(path, kind=None):
    """What a message about path must hold: its name, and for a special file what it is."""
    kind = kind or next((k for k, p in SPECIAL.items() if p == path), None)
    return [os.path.basename(path)] + ([SPECIAL_WANT[kind]] if kind else [])


# ---- setup: a tiny model's weights, inputs, a checkpoint, data ----

if os.path.isdir(WORK):
    for root, dirs, _ in os.walk(WORK):  # unreadable files from a run as non-root
        for x in dirs:
            os.chmod(os.path.join(root, x), 0o755)
    shutil.rmtree(WORK)
os.makedirs(W("st"))
os.makedirs(W("special"))
rc, out, err = heed("init", MODEL, *SETS, "-o", W("w.safetensors"), "--seed", "1")
assert rc == 0, err
tokens = struct.pack("<8i", *range(65, 73))
write(W("in.safetensors"), st_file([("tokens", "I32", [1, 8], tokens)]))
write(W("batch.safetensors"), st_file([("tokens", "I32", [1, 8], tokens), ("targets", "I32", [1, 8], tokens)]))
text = open(os.path.join(REPO, "..", "shared", "data", "moby-dick.txt"), "rb").read()[:200000]
DATA = write(W("data.txt"), text)
rc, out, err = heed("train", MODEL, "--data", DATA, "--out", W("run"), *TINY, "--steps", "2", "--interp")
assert rc == 0, err
CKPT = W("run", "ckpt-00000002.safetensors")
assert os.path.exists(CKPT), os.listdir(W("run"))
BAD = malformed_safetensors(W("st"))
SPECIAL = special_files(W("special"))
W_OK, IN_OK, BATCH_OK = W("w.safetensors"), W("in.safetensors"), W("batch.safetensors")
print("corpus: %d malformed safetensors, %d special files" % (len(BAD), len(SPECIAL)), flush=True)


def weights_variants():
    """Well-formed files that are not this model's weights."""
    hdr, data = st_read(W_OK)
    out = {}
    names = [k for k in hdr if k != "__metadata__"]
    h = dict(hdr)
    del h[names[0]]
    out["tensor_missing"] = write(W("st", "tensor_missing.w"), st_rewrite(h, data))
    h = json.loads(json.dumps(hdr))
    e = h[names[0]]
    e["shape"] = [e["shape"][0] // 2] + e["shape"][1:] if e["shape"] and e["shape"][0] > 1 else [2, 2]
    n = 4 * (1 if not e["shape"] else __import__("math").prod(e["shape"]))
    e["data_offsets"] = [e["data_offsets"][0], e["data_offsets"][0] + n]
    out["tensor_misshapen"] = write(W("st", "tensor_misshapen.w"), st_rewrite(h, data))
    out["truncated_data"] = write(W("st", "truncated_data.w"), open(W_OK, "rb").read()[:-100])
    out["truncated_header"] = write(W("st", "truncated_header.w"), open(W_OK, "rb").read()[:50])
    return out


# ---- 1. safetensors readers: run/grad --weights/--inputs, generate, train --init/--resume ----

WV = weights_variants()
for kind, path in list(BAD.items()) + list(SPECIAL.items()) + list(WV.items()):
    expect("run --weights %s" % kind, [HEED, "run", MODEL, *SETS, "--interp", "--weights", path, "--inputs", IN_OK,
                                       "--outputs", W("o.safetensors")], want=named(path))
    expect("grad --weights %s" % kind, [HEED, "grad", MODEL, *SETS, "--interp", "--weights", path, "--inputs",
                                        BATCH_OK, "--outputs", W("o.safetensors")], want=named(path))
    expect("generate --weights %s" % kind, [HEED, "generate", MODEL, *SETS, "--interp", "--weights", path,
                                            "--prompt", "a", "-n", "1"], want=named(path))
    expect("train --init %s" % kind, [HEED, "train", MODEL, "--data", DATA, "--out", W("init_" + kind), *TINY,
                                      "--interp", "--steps", "1", "--init", path], want=named(path))
    if kind in WV:
        continue
    expect("run --inputs %s" % kind, [HEED, "run", MODEL, *SETS, "--interp", "--weights", W_OK, "--inputs", path,
                                      "--outputs", W("o.safetensors")], want=named(path))
    expect("grad --inputs %s" % kind, [HEED, "grad", MODEL, *SETS, "--interp", "--weights", W_OK, "--inputs", path,
                                       "--outputs", W("o.safetensors")], want=named(path))
    expect("train --resume %s" % kind, [HEED, "train", MODEL, "--data", DATA, *TINY, "--interp", "--steps", "3",
                                        "--resume", path],
           want=[named(path)[0], "no checkpoint"] if kind == "directory" else named(path))  # DIR: its newest
check(not os.path.exists(W("o.safetensors")), "a failed run/grad wrote no --outputs file")


# ---- 2. checkpoints: malformed heed checkpoints on --resume ----

def ckpt_variants():
    hdr, data = st_read(CKPT)
    meta = hdr["__metadata__"]
    out = {}

    def variant(name, edit=None, raw=None):
        d = W("ck", name)
        os.makedirs(d)
        if raw is None:
            h = json.loads(json.dumps(hdr))
            edit(h)
            raw = st_rewrite(h, data)
        out[name] = write(os.path.join(d, "ckpt-00000002.safetensors"), raw)

    full = open(CKPT, "rb").read()
    variant("cut_in_data", raw=full[:len(full) - 1000])
    variant("cut_in_header", raw=full[:200])
    variant("cut_to_8", raw=full[:8])
    for key in ("format", "step", "steps", "rng", "fingerprint", "settings"):
        variant("no_" + key, lambda h, k=key: h["__metadata__"].pop(k))
    for key, val in (("step", "x"), ("step", "-5"), ("step", "99999999999999999999999"), ("step", "1e3"),
                     ("step", "999"), ("steps", "0"), ("rng", "zz"), ("rng", "-1"), ("rng", "1" * 40),
                     ("fingerprint", "0"), ("settings", "batch=999"), ("format", "heed-checkpoint-99"),
                     ("run_id", "not hex, and long " * 20)):
        variant("meta_%s_%s" % (key, "".join(c if c.isalnum() else "_" for c in val[:12])),
                lambda h, k=key, v=val: h["__metadata__"].__setitem__(k, v))
    names = [k for k in hdr if k != "__metadata__"]
    variant("no_param", lambda h: h.pop(next(k for k in names if not k.startswith("opt."))))
    variant("no_opt_state", lambda h: h.pop(next(k for k in names if k.startswith("opt."))))

    def bf16(h):
        e = h[names[0]]
        e["dtype"] = "BF16"
        e["data_offsets"][1] = e["data_offsets"][0] + (e["data_offsets"][1] - e["data_offsets"][0]) // 2
    variant("param_bf16", bf16)
    os.makedirs(W("ck", "empty_dir"))
    out["empty_dir"] = W("ck", "empty_dir")
    os.makedirs(W("ck", "fifo_ckpt"))
    os.mkfifo(W("ck", "fifo_ckpt", "ckpt-00000002.safetensors"))
    out["fifo_ckpt"] = W("ck", "fifo_ckpt")
    del meta
    return out


# Metadata values that engine/checkpoint.c reads leniently today (a total of
# steps the run overrides anyway, an rng or run id it does not range-check):
# these must not crash, and may resume.
LENIENT = ("meta_steps_0", "meta_rng__1", "meta_rng_111111111111", "meta_run_id_not_hex__and")
os.makedirs(W("ck"))
for kind, path in ckpt_variants().items():
    err = expect("train --resume %s" % kind, [HEED, "train", MODEL, "--data", DATA, *TINY, "--interp", "--steps", "3",
                                             "--resume", path], code=(0, 1) if kind in LENIENT else 1, want=[])
    check(kind in LENIENT or named(path)[0] in err or "ckpt" in err or "checkpoint" in err,
          "train --resume %s: the message names the checkpoint: %s" % (kind, err.strip()[-300:]))


# ---- 3. training data: --data and --val ----

def data_variants(d):
    os.makedirs(d)
    hdr = lambda magic, version, count: struct.pack("<256i", magic, version, count, *([0] * 253))
    cases = {
        "empty.txt": (b"", "empty"),
        "short.txt": (b"x" * 5, "fewer than one window"),
        "odd.bin": (b"\x01\x00" * 100 + b"\x01", "odd length"),
        "vocab.bin": (b"\x01\x00" * 100 + b"\x00\x01" + b"\x01\x00" * 100, "outside the model's vocabulary"),
        "magic_cut.bin": (hdr(20240520, 1, 100)[:20], "shorter than the 1024-byte header"),
        "magic_cut_1023.bin": (hdr(20240520, 1, 100)[:1023], "shorter than the 1024-byte header"),
        "version99.bin": (hdr(20240520, 99, 100) + b"\x01\x00" * 100, "version 99"),
        "version2.bin": (hdr(20240520, 2, 100) + b"\x01\x00" * 200, "version 2"),
        "count_wrong.bin": (hdr(20240520, 1, 7) + b"\x01\x00" * 100, "says 7 tokens"),
        "count_negative.bin": (hdr(20240520, 1, -1) + b"\x01\x00" * 100, "says -1 tokens"),
        "header_only.bin": (hdr(20240520, 1, 0), "no tokens after the header"),
    }
    return {k: (write(os.path.join(d, k), v), want) for k, (v, want) in cases.items()}


DV = data_variants(W("data"))
for kind, (path, want) in DV.items():
    expect("train --data %s" % kind, [HEED, "train", MODEL, "--data", path, "--out", W("d_" + kind), *TINY,
                                      "--steps", "1"], want=named(path) + [want])
    expect("train --val %s" % kind, [HEED, "train", MODEL, "--data", DATA, "--val", path, "--out",
                                     W("v_" + kind), *TINY, "--steps", "1"], want=named(path) + [want])
for kind, path in SPECIAL.items():
    path = path.replace(".safetensors", ".txt") if kind in ("fifo", "missing") else path
    if kind == "fifo" and not os.path.exists(path):
        os.mkfifo(path)
    expect("train --data %s" % kind, [HEED, "train", MODEL, "--data", path, "--out", W("ds_" + kind), *TINY,
                                      "--steps", "1"], want=named(path, kind))
    expect("train --val %s" % kind, [HEED, "train", MODEL, "--data", DATA, "--val", path, "--out",
                                     W("vs_" + kind), *TINY, "--steps", "1"], want=named(path, kind))


# ---- 4. the model file ----

for kind, path in list(SPECIAL.items()) + [("garbage", BAD["garbage"]), ("empty", BAD["empty"])]:
    expect("check %s (model file)" % kind, [HEED, "check", path], want=named(path))
    expect("run %s (model file)" % kind, [HEED, "run", path, "--weights", W_OK, "--inputs", IN_OK, "--outputs",
                                         W("o.safetensors")], want=named(path))


# ---- 5. user settings: --seed, --out, batch * seq ----

BIG = "18446744073709551616"  # 2^64
for cmd in (["init", MODEL, *SETS, "-o", W("never.safetensors")],
            ["run", MODEL, *SETS, "--weights", W_OK, "--inputs", IN_OK, "--outputs", W("o.safetensors")],
            ["grad", MODEL, *SETS, "--weights", W_OK, "--inputs", BATCH_OK, "--outputs", W("o.safetensors")],
            ["generate", MODEL, *SETS, "--weights", W_OK, "--prompt", "a", "-n", "1"],
            ["train", MODEL, "--data", DATA, "--out", W("seed_run"), *TINY, "--steps", "1"]):
    expect("%s --seed 2^64" % cmd[0], [HEED] + cmd + ["--seed", BIG], code=2, want=["--seed", BIG])
expect("train --seed 2^63 (the setting is an int64)",
       [HEED, "train", MODEL, "--data", DATA, "--out", W("seed_run"), *TINY, "--seed", str(2**63)], code=2,
       want=["--seed", str(2**63)])
check(not os.path.exists(W("never.safetensors")) and not os.path.exists(W("seed_run")),
      "a refused --seed wrote nothing")
longout = os.path.join(W("long"), *(["d" * 200] * 25))  # 5000+ characters
expect("train --out past the path limit", [HEED, "train", MODEL, "--data", DATA, "--out", longout, *TINY,
                                           "--steps", "1"], want=["--out", "longer than the limit"])
check(not os.path.exists(W("long")), "train --out past the path limit created nothing")
for setting, want in (("batch=9223372036854775807", "batch=9223372036854775807"),
                      ("batch=4611686018427387904", "batch=4611686018427387904"),
                      ("seq=9223372036854775807", "seq + 1 = 9223372036854775808"),
                      ("seq=4611686018427387904", "fewer than one window")):
    expect("train --set %s" % setting, [HEED, "train", MODEL, "--data", DATA, "--out", W("ovf"), *SETS,
                                        "--sample", "0", "--steps", "1", "--set", setting], want=[want])
check(not os.path.exists(W("ovf", "metrics.csv")), "an overflowing batch or seq left no run")


# ---- 6. files truncated while in use ----

def finish(p):
    """p's stderr once it exits (killed after TIMEOUT: a hang); a signal
    counts as a crash."""
    try:
        _, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        stats["hangs"] += 1
    if p.returncode < 0:
        stats["crashes"] += 1
    return err.decode("utf-8", "replace")


def truncate_training_data():
    """The data file cut to nothing while heed train runs: the run goes on
    (its data was read at the start), saves a checkpoint on SIGINT, exit 0."""
    data = write(W("shrinking.txt"), text)
    out = W("shrink_run")
    p = subprocess.Popen([HEED, "train", MODEL, "--data", data, "--out", out, *TINY, "--steps", "1000000",
                          "--checkpoint-every", "5", "--set", "eval_every=0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = os.path.join(out, "ckpt-00000005.safetensors")
    t0 = time.time()
    while not os.path.exists(first) and p.poll() is None and time.time() - t0 < TIMEOUT:
        time.sleep(0.01)
    stats["tried"] += 1
    check(os.path.exists(first), "truncated data: the run wrote its first checkpoint")
    os.truncate(data, 0)
    t0 = time.time()  # steps go on over the (in-memory) data: wait for two more checkpoints
    while p.poll() is None and time.time() - t0 < TIMEOUT and \
            not os.path.exists(os.path.join(out, "ckpt-00000015.safetensors")):
        time.sleep(0.01)
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    err = finish(p)
    check(p.returncode == 0, "truncated data: heed train goes on and exits 0 on SIGINT (status %s): %s"
          % (p.returncode, err.strip()[-400:]))
    ck = sorted(f for f in os.listdir(out) if f.startswith("ckpt-")) if os.path.isdir(out) else []
    check(ck and ck[-1] >= "ckpt-00000015.safetensors", "truncated data: checkpoints after the truncation: %s" % ck)
    if ck:
        rc, _, e = heed("run", MODEL, *SETS, "--weights", os.path.join(out, ck[-1]), "--inputs", IN_OK,
                        "--outputs", W("ck_out.safetensors"))
        check(rc == 0, "truncated data: the last checkpoint loads as weights: %s" % e.strip()[-300:])


def build_program():
    prog = W("prog")
    rc, _, err = heed("build", MODEL, *SETS, "--weights", W_OK, "-o", prog, "--weights-file", timeout=600)
    check(rc == 0, "heed build --weights-file: %s" % err.strip()[-300:])
    return prog if rc == 0 else None


def program_cases(prog):
    for kind, path in list(BAD.items()) + list(SPECIAL.items()) + list(WV.items()):
        expect("program --weights %s" % kind, [prog, "--weights", path, "--prompt", "a", "-n", "1"],
               want=named(path))
    for args in (["-n", "0"], ["-n", "x"], ["--prompt", ""], ["--seed", BIG], ["--seed", "-1"], ["--top-p", "0"],
                 ["--temperature", "-1"], ["--window", "0"], ["--window", "100000"], ["--threads", "0"],
                 ["--bogus"], ["extra"], ["--prompt"]):
        expect("program %s" % " ".join(args), [prog, "--prompt", "a", "-n", "1"] + args, code=2)
        rc, _, _ = heed("generate", MODEL, *SETS, "--weights", W_OK, "--prompt", "a", "-n", "1", *args)
        check(rc == 2, "heed generate %s: exit %s, the program's 2" % (" ".join(args), rc))
    for kind in ("fifo", "dev_zero", "directory"):
        expect("build --weights %s" % kind, [HEED, "build", MODEL, *SETS, "--weights", SPECIAL[kind], "-o",
                                             W("never_prog")], want=named(SPECIAL[kind]))
    check(not os.path.exists(W("never_prog")), "a refused build wrote no program")


def truncate_program_weights(prog):
    """The weights file beside a program cut to nothing while it generates:
    exit 1 and a message naming it, not SIGBUS."""
    shutil.copy(prog + ".safetensors", W("prog.keep"))
    p = subprocess.Popen([prog, "--prompt", "a", "-n", "1000000000", "--temperature", "0", "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(64)  # generating: the weights are in use
    os.truncate(prog + ".safetensors", 0)
    stats["tried"] += 1
    err = finish(p)
    check(p.returncode == 1 and "prog.safetensors: the file changed" in err,
          "program: weights truncated while generating: exit 1 naming the file (status %s): %s"
          % (p.returncode, err.strip()[-300:]))
    shutil.copy(W("prog.keep"), prog + ".safetensors")


truncate_training_data()
PROG = build_program()
if PROG:
    program_cases(PROG)
    truncate_program_weights(PROG)

print("bad inputs: %d tried, %d crashes, %d hangs, %d failures" % (stats["tried"], stats["crashes"], stats["hangs"],
                                                                   len(failures)), flush=True)
if failures:
    print("%d FAILED" % len(failures))
    sys.exit(1)
print("all passed")
