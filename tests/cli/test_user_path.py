#!/usr/bin/env python3
# tests/cli/test_user_path.py: the path a new user takes, end to end, with no
# extra flags (README, docs/train.md):
#   heed train examples/bytegpt.heed --data TEXT  (a few steps)
#   -> the generate command it prints, run as printed
#   -> heed generate on the checkpoint, past the trained window (-n > ctx)
#   -> heed build on the checkpoint: the program prints the same tokens as
#      generate (greedy and seeded sampling)
#   -> heed train --init CKPT on other data: fine-tuning starts at the trained
#      loss, not at ln(V)
#   -> a second new run into the same directory: refused, naming --resume
#      and --force
# Usage: test_user_path.py HEED REPO WORKDIR
import csv
import math
import os
import shlex
import shutil
import subprocess
import sys

HEED, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(REPO, "examples", "bytegpt.heed")
TEXT = os.path.join(REPO, "..", "shared", "data", "moby-dick.txt")
failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what + ("" if cond or not detail else "\n     " + detail), flush=True)
    if not cond:
        failures.append(what)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def first_losses(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    # the training text and a different text to fine-tune on
    with open(TEXT, "rb") as f:
        text = f.read()
    data, other = os.path.join(WORK, "train.txt"), os.path.join(WORK, "other.txt")
    with open(data, "wb") as f:
        f.write(text[:300000])
    with open(other, "wb") as f:
        f.write(text[600000:700000])
    run_dir = os.path.join(WORK, "run")

    # 1. train a few steps, as a user would (only --steps and --out)
    r = run([HEED, "train", MODEL, "--data", data, "--steps", "60", "--out", run_dir, "--threads", "2"])
    check(r.returncode == 0, "train exits 0", r.stderr[-2000:])
    if r.returncode:
        return
    log = r.stdout + r.stderr
    gen_lines = [ln.strip() for ln in log.splitlines() if "heed generate" in ln]
    check(len(gen_lines) >= 1, "train prints how to generate from the result", log[-1500:])
    ckpts = sorted(f for f in os.listdir(run_dir) if f.startswith("ckpt-") and f.endswith(".safetensors"))
    check(len(ckpts) >= 1, "train wrote a checkpoint")
    ckpt = os.path.join(run_dir, ckpts[-1])
    trained = first_losses(run_dir)

    # 2. the printed command runs as printed (from the directory train ran in)
    if gen_lines:
        cmd = shlex.split(gen_lines[-1][gen_lines[-1].index("heed generate"):])
        cmd[0] = HEED
        r = run(cmd)
        check(r.returncode == 0 and len(r.stdout) > 0, "the printed generate command runs", " ".join(cmd) + "\n" + r.stderr[-1500:])

    # 3. generate from the checkpoint (optimizer state in it is ignored), past the context
    common = [MODEL, "--weights", ckpt, "--prompt", "The whale ", "--threads", "1"]
    n = 300  # > ctx = 128 > the trained seq = 64: a sliding window
    greedy = run([HEED, "generate"] + common + ["-n", str(n), "--temperature", "0"])
    check(greedy.returncode == 0, "generate on a heed checkpoint with no extra flags", greedy.stderr[-1500:])
    check(len(greedy.stdout.encode("latin-1", "replace")) >= n, "generate gives -n tokens past the context",
          "%d bytes" % len(greedy.stdout))
    sampled = run([HEED, "generate"] + common + ["-n", str(n), "--seed", "7", "--temperature", "0.9", "--top-k", "40"])
    check(sampled.returncode == 0, "seeded sampling runs", sampled.stderr[-1500:])

    # 4. build a program from the checkpoint: the same tokens as generate
    prog = os.path.join(WORK, "bytegpt")
    r = run([HEED, "build", MODEL, "--weights", ckpt, "-o", prog])
    check(r.returncode == 0 and os.access(prog, os.X_OK), "build on a heed checkpoint", r.stderr[-1500:])
    if r.returncode == 0:
        pg = run([prog, "--prompt", "The whale ", "-n", str(n), "--temperature", "0", "--threads", "1"])
        check(pg.returncode == 0 and pg.stdout == greedy.stdout, "the built program prints generate's greedy tokens",
              "program: %r\ngenerate: %r\n%s" % (pg.stdout[:200], greedy.stdout[:200], pg.stderr[-500:]))
        ps = run([prog, "--prompt", "The whale ", "-n", str(n), "--seed", "7", "--temperature", "0.9", "--top-k", "40",
                  "--threads", "1"])
        check(ps.returncode == 0 and ps.stdout == sampled.stdout, "the built program prints generate's sampled tokens",
              "program: %r\ngenerate: %r" % (ps.stdout[:200], sampled.stdout[:200]))

    # 5. fine-tune from the checkpoint on other data: starts at the trained loss
    ft = os.path.join(WORK, "finetune")
    r = run([HEED, "train", MODEL, "--data", other, "--init", ckpt, "--steps", "5", "--out", ft, "--sample", "0",
             "--threads", "2"])
    check(r.returncode == 0, "train --init CKPT (fine-tune) exits 0", r.stderr[-1500:])
    if r.returncode == 0:
        l0, lv = first_losses(ft)[0], math.log(256)
        check(l0 < trained[-1] + 0.5 and l0 < lv - 1.0,
              "fine-tuning starts near the trained loss (%.3f; trained to %.3f, ln V = %.3f)" % (l0, trained[-1], lv))

    # 6. a new run into the first run's directory is refused
    r = run([HEED, "train", MODEL, "--data", data, "--steps", "2", "--out", run_dir, "--sample", "0"])
    check(r.returncode == 1 and "--resume" in r.stderr and "--force" in r.stderr,
          "a new run into a used run directory is refused, naming --resume and --force", r.stderr[-800:])
    after = sorted(f for f in os.listdir(run_dir) if f.startswith("ckpt-") and f.endswith(".safetensors"))
    check(after == ckpts, "the refused run left the old run's checkpoints alone")


if __name__ == "__main__":
    main()
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)
