#!/usr/bin/python3
"""bench/serve_bench.py: `heed serve` under load: aggregate decode tokens/s,
time to first token and per-token latency at 1, 4 and 16 concurrent clients.

The model is examples/gpt2.heed (GPT-2 small's shape: 12 layers, 768 wide,
12 heads, vocab 50257; weights from `heed init`), or a smaller --set config.
One server (--parallel = the largest concurrency, --ctx, --threads) serves
every phase; in a phase C clients each send --requests streaming
completions one after another (a prompt of --prompt-len bytes, --max-tokens
greedy tokens; the bytes tokenizer, so ids >= 256 print no text: the
per-step SSE chunks carry token_ids). Measured per phase:
  - aggregate decode tokens/s: completion tokens over the phase's wall time
    (prefills included: what clients get);
  - TTFT: request sent -> first chunk; per-token latency: between a
    request's consecutive chunks; p50 and p99 of each.
The ratio printed is tokens/s at C clients over tokens/s at 1 client. The
same run also times `heed generate` on the same weights, prompt length,
--max-tokens, --ctx (as --window) and --threads: its decode tokens/s (its
stderr line: decode steps over their time, prefill excluded) is the
single-stream rate the server's one-client phase pays HTTP and scheduling on.
Prints the CPU (lscpu). Run: /usr/bin/python3 bench/serve_bench.py --heed build/heed
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def one_request(port, prompt, max_tokens):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True})
    t0 = time.monotonic()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit("HTTP %d: %s" % (r.status, r.read()[:300]))
    times, ntok = [], 0
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        ids = json.loads(line[6:])["choices"][0].get("token_ids") or []
        if ids:
            times.append(time.monotonic())
            ntok += len(ids)
    c.close()
    return t0, times, ntok


def phase(port, clients, requests, prompt_len, max_tokens):
    res, lock = [], threading.Lock()

    def client(i):
        for k in range(requests):
            prompt = ("client %d request %d: " % (i, k) + "the quick brown fox jumps over the lazy dog " * 8)[:prompt_len]
            out = one_request(port, prompt, max_tokens)
            with lock:
                res.append(out)

    th = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.monotonic() - t0
    toks = sum(r[2] for r in res)
    ttft = [r[1][0] - r[0] for r in res if r[1]]
    tpot = [b - a for r in res for a, b in zip(r[1], r[1][1:])]
    return toks / wall, ttft, tpot, toks, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heed", default="build/heed")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=2, help="requests per client per phase")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config overrides, e.g. --set layers=4")
    args = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = os.path.join(repo, "examples", "gpt2.heed")
    conc = [int(c) for c in args.clients.split(",")]
    sets = [a for s in args.set for a in ("--set", s)]
    with tempfile.TemporaryDirectory() as tmp:
        w = os.path.join(tmp, "w.safetensors")
        subprocess.run([args.heed, "init", model, "-o", w, *sets], check=True)
        prompt = ("client 0 request 0: " + "the quick brown fox jumps over the lazy dog " * 8)[:args.prompt_len]
        g = subprocess.run([args.heed, "generate", model, "--weights", w, "--prompt", prompt, "-n", str(args.max_tokens),
                            "--temperature", "0", "--threads", str(args.threads), "--window", str(args.ctx), *sets],
                           capture_output=True, text=True)
        m = re.search(r"decode ([0-9.]+) tokens/s", g.stderr)
        gen_tps = float(m.group(1)) if m else float("nan")
        log = open(os.path.join(tmp, "server.log"), "w+b")
        srv = subprocess.Popen([args.heed, "serve", model, "--weights", w, "--port", "0", "--parallel", str(max(conc)),
                                "--ctx", str(args.ctx), "--threads", str(args.threads), "--max-tokens", "100000", *sets],
                               stderr=log)
        port = None
        for _ in range(6000):
            log.seek(0)
            text = log.read().decode()
            m = re.search(r"127\.0\.0\.1:(\d+)", text)
            if m and "ready:" in text:
                port = int(m.group(1))
                break
            if srv.poll() is not None:
                raise SystemExit(text)
            time.sleep(0.1)
        try:
            one_request(port, "warm up", 4)
            rows = []
            for c in conc:
                tps, ttft, tpot, toks, wall = phase(port, c, args.requests, args.prompt_len, args.max_tokens)
                rows.append((c, tps, ttft, tpot))
                print("clients %2d: %6d tokens in %6.1f s: %8.1f tokens/s  TTFT p50 %7.1f ms p99 %7.1f ms  "
                      "per-token p50 %6.1f ms p99 %6.1f ms" % (c, toks, wall, tps, 1e3 * pct(ttft, 50), 1e3 * pct(ttft, 99),
                                                            1e3 * pct(tpot, 50), 1e3 * pct(tpot, 99)), flush=True)
            print("heed generate (one stream, decode only): %.1f tokens/s" % gen_tps)
            base = rows[0][1]
            for c, tps, _, _ in rows[1:]:
                print("ratio tokens/s at %d clients / at %d: %.2fx" % (c, rows[0][0], tps / base))
        finally:
            srv.send_signal(signal.SIGTERM)
            rc = srv.wait(timeout=120)
            if rc != 0:
                print("server exit status %d" % rc)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    m = re.search(r"Model name:\s*(.*)", cpu)
    print("CPU: %s, %d cores online; heed serve --threads %d --ctx %d" % (m.group(1) if m else "?", os.cpu_count(),
                                                                          args.threads, args.ctx))


if __name__ == "__main__":
    main()
