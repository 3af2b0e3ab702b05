#!/usr/bin/env python3
# tests/cli/test_plan_bench.py: the memory plan against what runs. For the
# example models' forward (and bytegpt's train step), `heed bench --json`
# measures the peak of the executor's buffers (its aligned allocations:
# parameters, inputs, arena, workspace) and reports the plan of the same
# graph and sizes; the two agree within 5% (the bound; measured:
# equal to 0.1%), and `heed compile --emit plan` prints the same total for
# the same --batch, --seq and --threads.
# Usage: test_plan_bench.py HEED REPO
import json
import os
import subprocess
import sys

HEED, REPO = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what + ("" if cond or not detail else "\n     " + detail[-1500:]), flush=True)
    if not cond:
        failures.append(what)


CASES = [("bytegpt", ["--train"], 4, 64), ("llama", [], 1, 64), ("bert", [], 2, 32), ("mlp", [], 8, 1)]
for name, extra, batch, seq in CASES:
    model = os.path.join(REPO, "examples", name + ".heed")
    for threads in (1, 2):
        flags = ["--batch", str(batch), "--seq", str(seq), "--threads", str(threads)]
        r = subprocess.run([HEED, "bench", model, "--json", "--reps", "1"] + flags + extra, capture_output=True,
                           text=True, timeout=300)
        j = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else None
        check(j is not None, f"{name}: heed bench --json ({threads} thread(s))", r.stderr)
        if not j:
            continue
        for what in ("", "train_") if extra else ("",):
            m, p = j[what + "values_peak_bytes"], j[what + "plan_bytes"]
            check(m > 0 and p > 0 and abs(m / p - 1) <= 0.05,
                  f"{name} {'train step' if what else 'forward'} at B={batch} T={seq}, {threads} thread(s): measured {m} bytes, "
                  f"plan {p} ({m / p if p else 0:.4f}x)", r.stderr)
        r = subprocess.run([HEED, "compile", model, "--emit", "plan"] + flags, capture_output=True, text=True,
                           timeout=120)
        total = [l.split()[1] for l in r.stdout.splitlines() if l.startswith("total")]
        check(r.returncode == 0 and total and int(total[0]) == j["plan_bytes"],
              f"{name}: heed compile --emit plan's total equals bench's plan ({threads} thread(s))",
              r.stdout + r.stderr)
print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
