#!/usr/bin/python3
# tests/program/test_build.py HEED SRC WORK: `heed build` end to end.
#   - the program links only libc, libm, libpthread (ldd), and is < 1 MB
#     without its weights (built with --weights-file; the size is printed)
#   - greedy generation from the program equals greedy decoding with
#     `heed run` (compiled, JIT) step by step, for bytegpt and llama
#   - the prompt's logits from the object code (examples/embed/main.c,
#     linked against --emit-lib's libmodel.a) equal `heed run`'s (JIT)
#     bitwise: the issue #4 test "JIT and object output give identical results"
#   - --weights-file gives the same text as embedded weights
#   - bad weights (missing, misshapen, truncated) are clear errors with
#     status 1, at build time (and no output file) and in the program
#   - a program built with --cpu znver5 on a machine without AVX-512 says
#     so and exits 1 (never SIGILL); skipped on an AVX-512 machine
# Weights are random (normal, std 0.3: greedy text that is not one byte
# repeated). Needs numpy only.
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import st_io  # noqa: E402  (tests/ref/st_io.py)
from st_io import write_st  # noqa: E402

HEED, SRC, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
FAILS = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        FAILS.append(name)


def run(args, timeout=300, **kw):
    return subprocess.run(args, capture_output=True, timeout=timeout, **kw)


def read_st(path):  # {name: array}
    return st_io.read_st(path)[0]


def random_weights(model, path):
    init = os.path.join(WORK, "init.safetensors")
    r = run([HEED, "init", model, "-o", init])
    assert r.returncode == 0, r.stderr
    rng = np.random.default_rng(7)
    W = {}
    for k, a in read_st(init).items():
        W[k] = a if a.ndim == 1 else (rng.standard_normal(a.shape) * 0.3).astype(np.float32)
    write_st(path, W)
    return W


def heed_logits(model, weights, tokens):
    inp, out = os.path.join(WORK, "in.safetensors"), os.path.join(WORK, "out.safetensors")
    write_st(inp, {"tokens": np.array([tokens], dtype=np.int32)})
    r = run([HEED, "run", model, "--weights", weights, "--inputs", inp, "--outputs", out, "--threads", "1"])
    assert r.returncode == 0, r.stderr.decode()
    return read_st(out)["out"][0]  # (T, V)


def greedy_heed(model, weights, prompt, n):
    toks = list(prompt.encode())
    for _ in range(n):
        toks.append(int(np.argmax(heed_logits(model, weights, toks)[-1])))
    return toks


def text(toks, other=b""):  # the bytes a program prints for tokens (past 255: other)
    return b"".join(bytes([t]) if t < 256 else other for t in toks)


def only_libc(prog):
    r = run(["ldd", prog])
    libs = [l.split()[0] for l in r.stdout.decode().splitlines() if l.strip()]
    allowed = ("linux-vdso", "libc.so", "libm.so", "libpthread.so", "/lib64/ld-linux", "ld-linux")
    bad = [l for l in libs if not any(l.startswith(a) or a in l for a in allowed)]
    return r.returncode == 0 and not bad, " ".join(libs)


def build(model, weights, out, *extra):
    return run([HEED, "build", model, "--weights", weights, "-o", out, *extra])


def test_model(name, prompt, n):
    model = os.path.join(SRC, "examples", name + ".heed")
    w = os.path.join(WORK, name + ".safetensors")
    random_weights(model, w)
    prog = os.path.join(WORK, name + "-prog")
    r = build(model, w, prog)
    check(f"{name}: heed build", r.returncode == 0 and os.path.exists(prog), r.stderr.decode())
    if r.returncode:
        return
    ok, libs = only_libc(prog)
    check(f"{name}: ldd lists only libc, libm, libpthread", ok, libs)

    r = run([prog, "--prompt", prompt, "-n", str(n), "--temperature", "0", "--threads", "2"])
    toks = greedy_heed(model, w, prompt, n)
    want = text(toks[len(prompt):])  # the program prints what it generates, as heed generate does
    got = r.stdout.rstrip(b"\n")
    check(f"{name}: program's greedy text equals heed run's", r.returncode == 0 and got == want,
          f"program {got!r} ({r.stderr.decode().strip()}), heed run {want!r}")
    # seeded sampling: the program and heed generate print the same text
    flags = ["--prompt", prompt, "-n", str(n), "--seed", "7", "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95"]
    rp = run([prog] + flags)
    rg = run([HEED, "generate", model, "--weights", w] + flags)
    check(f"{name}: program and heed generate print the same text (seed 7, sampled)",
          rp.returncode == 0 and rg.returncode == 0 and rp.stdout == rg.stdout and len(rp.stdout) > 1,
          f"program {rp.stdout!r}, heed generate {rg.stdout!r} {rg.stderr.decode()[-300:]}")
    check(f"{name}: greedy text is not one token repeated", len(set(toks[len(prompt):])) > 1, repr(toks))

    # --weights-file: the program alone, and the same text
    prog_wf = prog + "-wf"
    r = build(model, w, prog_wf, "--weights-file")
    size = os.path.getsize(prog_wf) if r.returncode == 0 else -1
    print(f"     {name}: program without weights: {size} bytes")
    check(f"{name}: program without weights < 1 MB", 0 < size < 1 << 20, str(size))
    r2 = run([prog_wf, "--prompt", prompt, "-n", str(n), "--temperature", "0"])
    check(f"{name}: --weights-file gives the same text", r2.stdout.rstrip(b"\n") == want, repr(r2.stdout))

    # object code (--emit-lib + the embedding example) vs the JIT: bitwise
    lib = os.path.join(WORK, name + "-lib")
    r = run([HEED, "build", model, "--weights", w, "--emit-lib", "-o", lib])
    exe = os.path.join(WORK, name + "-embed")
    if r.returncode == 0:
        r = run(["cc", "-O2", "-I" + lib, os.path.join(SRC, "examples", "embed", "main.c"),
                 os.path.join(lib, "libmodel.a"), "-lm", "-lpthread", "-o", exe])
    check(f"{name}: --emit-lib and examples/embed build", r.returncode == 0, r.stderr.decode())
    if r.returncode == 0:
        lg = os.path.join(WORK, name + "-logits.bin")
        r = run([exe, prompt, "4", lg])
        got = np.fromfile(lg, dtype=np.float32) if r.returncode == 0 else None
        ref = heed_logits(model, w, list(prompt.encode())).reshape(-1)
        check(f"{name}: object code and JIT logits are bitwise identical",
              got is not None and got.shape == ref.shape and np.array_equal(got.view(np.uint32), ref.view(np.uint32)),
              r.stderr.decode() + (f" max |diff| {np.abs(got - ref).max()}" if got is not None and got.shape == ref.shape else ""))
        emb = b"%s: " % name.encode() + text(toks[:len(prompt) + 4], b"?") + b"\n"
        check(f"{name}: embed example's greedy text", r.returncode == 0 and r.stdout.lower() == emb.lower(),
              f"{r.stdout!r} want {emb!r}")


def test_bad_weights():
    model = os.path.join(SRC, "examples", "bytegpt.heed")
    w = os.path.join(WORK, "bytegpt.safetensors")
    W = read_st(w)
    cases = {
        "missing": ({k: v for k, v in W.items() if k != "ln_f.bias"}, "missing tensor 'ln_f.bias' (f32[128])"),
        "misshapen": (dict(W, **{"wpe": W["wpe"][:64]}), "tensor 'wpe' is F32[64, 128] but the model declares f32[128, 128]"),
    }
    for tag, (tensors, msg) in cases.items():
        bad = os.path.join(WORK, f"bad-{tag}.safetensors")
        write_st(bad, tensors)
        out = os.path.join(WORK, f"bad-{tag}-prog")
        r = build(model, bad, out)
        err = r.stderr.decode()
        check(f"build with {tag} weights: status 1, clear message, no program",
              r.returncode == 1 and msg in err and not os.path.exists(out) and "Traceback" not in err, err)
    trunc = os.path.join(WORK, "bad-trunc.safetensors")
    data = open(w, "rb").read()
    open(trunc, "wb").write(data[:len(data) - 100])
    r = build(model, trunc, os.path.join(WORK, "bad-trunc-prog"))
    check("build with truncated weights: status 1, clear message", r.returncode == 1 and
          "exceed the data section" in r.stderr.decode(), r.stderr.decode())

    # in the program: its weights file replaced or damaged
    prog = os.path.join(WORK, "bytegpt-prog-wf")
    beside = prog + ".safetensors"
    good = open(beside, "rb").read()
    for tag, content, msg in [
            ("truncated", good[:len(good) - 100], "exceed the data section"),
            ("missing", None, "missing tensor 'ln_f.bias' (F32[128])"),
            ("misshapen", None, "tensor 'wpe' is F32[64, 128] but the model declares F32[128, 128]"),
            ("absent", b"", "cannot open")]:
        if content is None:
            shutil.copy(os.path.join(WORK, f"bad-{tag}.safetensors"), beside)
        elif tag == "absent":
            os.unlink(beside)
        else:
            open(beside, "wb").write(content)
        r = run([prog, "--prompt", "a", "-n", "2"])
        err = r.stderr.decode()
        check(f"program with {tag} weights file: status 1, clear message", r.returncode == 1 and msg in err, err)
    open(beside, "wb").write(good)
    r = run([prog, "--prompt", "a", "-n", "2", "--weights", os.path.join(WORK, "bad-misshapen.safetensors")])
    check("program --weights FILE is checked", r.returncode == 1 and "tensor 'wpe'" in r.stderr.decode(), r.stderr.decode())

    # the memory plan in the program's description: an arena too small for
    # its offsets is refused before anything runs (status 1, not a crash)
    exe = open(prog, "rb").read()
    at = exe.find(b'"arena":')
    end = at + len(b'"arena":')
    while at >= 0 and exe[end:end + 1].isdigit():
        end += 1
    digits = end - at - len(b'"arena":')
    check("the program's description has the memory plan", at >= 0 and digits > 1, str(at))
    if at >= 0 and digits > 1:
        small = prog + "-smallarena"
        open(small, "wb").write(exe[:at] + b'"arena":1' + b" " * (digits - 1) + exe[end:])
        os.chmod(small, 0o755)
        r = run([small, "--prompt", "a", "-n", "2"])
        err = r.stderr.decode()
        check("program whose memory plan does not fit its arena: status 1, clear message",
              r.returncode == 1 and "damaged (the memory plan" in err, err)


def test_usage():
    prog = os.path.join(WORK, "bytegpt-prog")
    r = run([prog, "--help"])
    check("program --help", r.returncode == 0 and b"--prompt" in r.stdout and b"--top-p" in r.stdout, repr(r.stdout))
    for args in (["--bogus"], ["-n"], ["-n", "x"], ["--top-p", "2"], ["--temperature", "-1"]):
        r = run([prog, *args])
        check(f"program {' '.join(args)}: usage error (status 2)", r.returncode == 2 and r.stderr, repr(r.stderr))
    r = run([prog, "--prompt", "\u00ff" * 200, "-n", "1"])
    check("program: a prompt longer than the window keeps its end",
          r.returncode == 0 and b"its first 336 are left out (the window holds 64)" in r.stderr, repr(r.stderr))
    model = os.path.join(SRC, "examples", "bert.heed")
    r = run([HEED, "init", model, "-o", os.path.join(WORK, "bert.safetensors")])
    r = build(model, os.path.join(WORK, "bert.safetensors"), os.path.join(WORK, "bert-prog"))
    check("build of a model that is not a token -> logits decoder: status 1",
          r.returncode == 1 and b"must take token ids" in r.stderr, repr(r.stderr))


def test_cpu():
    flags = open("/proc/cpuinfo").read()
    if " avx512f" in flags:
        print("skip --cpu znver5 refusal: this machine has AVX-512")
        return
    model = os.path.join(SRC, "examples", "bytegpt.heed")
    prog = os.path.join(WORK, "znver5-prog")
    r = build(model, os.path.join(WORK, "bytegpt.safetensors"), prog, "--cpu", "znver5")
    check("build --cpu znver5", r.returncode == 0, r.stderr.decode())
    r = run([prog, "--prompt", "a", "-n", "2"])
    err = r.stderr.decode()
    check("znver5 program on this CPU: exits 1 naming avx512f, no SIGILL",
          r.returncode == 1 and "compiled for znver5" in err and "avx512f" in err, f"status {r.returncode}: {err}")


def build_tmpdirs():  # heed build's temporary directories (TMPDIR is set per test below)
    return sorted(d for d in os.listdir(TMP) if d.startswith("heed-build-"))


def test_outputs():
    """--cpu checked before anything is made; --emit-lib on a full disk or with an
    ar that writes nothing: an error, the good library stays, no temporaries."""
    model = os.path.join(SRC, "examples", "bytegpt.heed")
    w = os.path.join(WORK, "bytegpt.safetensors")
    env = dict(os.environ, TMPDIR=TMP)
    for cpu, msg in (("bogus9000", b"unknown CPU 'bogus9000'"), ("i386", b"cannot run 64-bit code")):
        r = run([HEED, "build", model, "--weights", w, "-o", os.path.join(WORK, "cpu-prog"), "--cpu", cpu], env=env)
        check(f"build --cpu {cpu}: status 1, a clear message, no abort, nothing left",
              r.returncode == 1 and msg in r.stderr and not build_tmpdirs() and
              not os.path.exists(os.path.join(WORK, "cpu-prog")), f"{r.returncode} {r.stderr[-300:]} {build_tmpdirs()}")
    lib = os.path.join(WORK, "lib-keep")
    r = run([HEED, "build", model, "--weights", w, "--emit-lib", "-o", lib])
    check("build --emit-lib", r.returncode == 0, r.stderr.decode())
    good = open(os.path.join(lib, "libmodel.a"), "rb").read()
    # an ar that exits 0 and writes nothing (as ar -M does when SAVE fails)
    fake = os.path.join(WORK, "fakebin")
    os.makedirs(fake, exist_ok=True)
    with open(os.path.join(fake, "ar"), "w") as f:
        f.write("#!/bin/sh\ncase \"$1\" in -M) cat >/dev/null; exit 0;; esac\nexec /usr/bin/ar \"$@\"\n")
    os.chmod(os.path.join(fake, "ar"), 0o755)
    r = run([HEED, "build", model, "--weights", w, "--emit-lib", "-o", lib],
            env=dict(env, PATH=fake + ":" + os.environ["PATH"]))
    left = sorted(os.listdir(lib))
    check("build --emit-lib, ar writes nothing: status 1, the old library stays, no temporaries",
          r.returncode == 1 and b"ar did not write the library" in r.stderr and
          open(os.path.join(lib, "libmodel.a"), "rb").read() == good and left == ["libmodel.a", "model.h"] and
          not build_tmpdirs(), f"{r.returncode} {r.stderr[-300:]} {left}")
    # a real full disk: a small tmpfs (root only; else the fake ar above stands in)
    mnt = os.path.join(WORK, "full")
    os.makedirs(mnt)
    if os.getuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", mnt],
                                          capture_output=True).returncode != 0:
        print("note: no tmpfs here (not root): the full-disk build ran with an ar that writes nothing only")
        return
    try:
        os.makedirs(os.path.join(mnt, "lib"))
        open(os.path.join(mnt, "lib", "libmodel.a"), "wb").write(b"good")
        r = run([HEED, "build", model, "--weights", w, "--emit-lib", "-o", os.path.join(mnt, "lib")], env=env)
        left = sorted(os.listdir(os.path.join(mnt, "lib")))
        check("build --emit-lib on a full disk: status 1, the old library stays, no temporaries",
              r.returncode == 1 and open(os.path.join(mnt, "lib", "libmodel.a"), "rb").read() == b"good" and
              left == ["libmodel.a"] and not build_tmpdirs(), f"{r.returncode} {r.stderr[-300:]} {left}")
        r = run([HEED, "build", model, "--weights", w, "-o", os.path.join(mnt, "prog")], env=env)
        left = sorted(os.listdir(mnt))
        check("build -o PROGRAM on a full disk: status 1, nothing left", r.returncode == 1 and left == ["lib"] and
              not build_tmpdirs(), f"{r.returncode} {r.stderr[-300:]} {left}")
    finally:
        subprocess.run(["umount", mnt])


if __name__ == "__main__":
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    test_model("bytegpt", "The cat ", 5)
    test_model("llama", "Hi ", 4)
    test_bad_weights()
    test_usage()
    test_cpu()
    TMP = os.path.join(WORK, "tmp")
    os.makedirs(TMP)
    test_outputs()
    print(f"{len(FAILS)} failed" if FAILS else "all passed")
    sys.exit(1 if FAILS else 0)
