#!/usr/bin/env python3
# tests/cli/test_serve.py: `heed serve` end to end on loopback (docs/serve.md),
# with OpenAI's own Python client (installed by scripts/install-deps.sh into
# the build's venv; this test runs on that venv's python) and curl:
#   - non-streaming and streaming completions equal `heed generate`'s tokens
#     (greedy, and sampled with the same seed);
#   - 16 concurrent clients with different prompts, lengths and seeds, 4
#     slots: each answer equals its single-request answer, /metrics shows
#     more than one slot busy at once;
#   - bad requests: a JSON error body with the right status, and the server
#     keeps serving; a client that disconnects mid-stream frees its slot;
#   - a full queue: 503 with Retry-After; --api-key; a per-request timeout;
#   - SIGTERM under load: every accepted request gets a response, exit 0.
# Usage: test_serve.py HEED REPO WORKDIR
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai  # the test's point: a real client; a missing one is a failure, not a skip

HEED, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(REPO, "examples", "bytegpt.heed")
failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what + ("" if cond or not detail else "\n     " + str(detail)[:600]), flush=True)
    if not cond:
        failures.append(what)


class Server:
    def __init__(self, weights, *flags):
        self.log = open(os.path.join(WORK, "server-%d.log" % time.monotonic_ns()), "w+b")
        self.p = subprocess.Popen([HEED, "serve", MODEL, "--weights", weights, "--port", "0", *flags],
                                  stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = None
        t0 = time.time()
        while time.time() - t0 < 60:
            text = self.stderr()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if m and "ready:" in text:
                self.port = int(m.group(1))
                break
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        if not self.port:
            raise SystemExit("the server did not start:\n" + self.stderr())
        self.url = "http://127.0.0.1:%d" % self.port

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None


def http(url, body=None, method=None, headers=None, timeout=60):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def metric(srv, name):
    _, _, body = http(srv.url + "/metrics")
    m = re.search(r"^%s (\S+)$" % re.escape(name), body.decode(), re.M)
    return float(m.group(1)) if m else None


def generate(weights, prompt, n, temperature, seed):
    p = subprocess.run([HEED, "generate", MODEL, "--weights", weights, "--prompt", prompt, "-n", str(n),
                        "--temperature", str(temperature), "--seed", str(seed)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout[:-1]  # generate ends with a newline


def prompts():  # 16 prompts of different lengths, each with its length, temperature and seed
    words = ["Call me Ishmael.", "It was", "The sea", "Whale", "A", "In the beginning the", "Q", "What is it",
             "Some years ago, never mind how long", "x", "Moby", "The harpoon", "ship ahoy", "Ahab said",
             "Queequeg", "And so"]
    return [(w, 5 + 3 * i, 0 if i % 2 == 0 else 0.9, 100 + i) for i, w in enumerate(words)]


def train_weights():
    w = os.path.join(WORK, "w.safetensors")
    p = subprocess.run([HEED, "init", MODEL, "-o", w, "--seed", "7"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return w


def completions_with_client(srv, w):
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    models = client.models.list()
    check([m.id for m in models.data] == ["bytegpt"], "openai: models.list names the model", models)
    want = generate(w, "Call me Ishmael.", 20, 0, 1337)
    r = client.completions.create(model="bytegpt", prompt="Call me Ishmael.", max_tokens=20, temperature=0)
    got = bytes(r.choices[0].model_extra["token_ids"])
    check(got == want, "openai: greedy completion equals heed generate's tokens", (got, want))
    check(r.choices[0].finish_reason == "length" and r.usage.prompt_tokens == 16 and r.usage.completion_tokens == 20,
          "openai: finish_reason and usage", r)
    try:
        want_text = want.decode("utf-8")
    except UnicodeDecodeError:
        want_text = None
    if want_text is not None and "\0" not in want_text:
        check(r.choices[0].text == want_text, "openai: the text is generate's", (r.choices[0].text, want_text))
    chunks = list(client.completions.create(model="bytegpt", prompt="Call me Ishmael.", max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage]
    check(text == r.choices[0].text and len(chunks) > 2, "openai: streaming gives the same text, in pieces",
          (text, r.choices[0].text, len(chunks)))
    check(finish == ["length"] and len(usage) == 1 and usage[0].completion_tokens == 20,
          "openai: the stream's last chunk has finish_reason, then usage", chunks[-2:])
    want = generate(w, "It was", 12, 0.8, 42)
    r = client.completions.create(model="bytegpt", prompt="It was", max_tokens=12, temperature=0.8, seed=42)
    check(bytes(r.choices[0].model_extra["token_ids"]) == want, "openai: sampling with a seed equals heed generate --seed")
    r = client.completions.create(model="bytegpt", prompt="abc", max_tokens=40, temperature=0.9, seed=3, stop=["e", "a"])
    check(r.choices[0].finish_reason in ("stop", "length") and "e" not in r.choices[0].text and "a" not in r.choices[0].text,
          "openai: stop strings end the text (and are not in it)", r.choices[0])
    try:
        client.completions.create(model="bytegpt", prompt="x" * 100, max_tokens=5)
        check(False, "openai: a prompt longer than the context is refused")
    except openai.BadRequestError as e:
        check("context" in str(e), "openai: a prompt longer than the context: BadRequestError (400)", e)
    want = generate(w, "y" * 30, 6, 0, 1337)
    r = client.completions.create(model="bytegpt", prompt="x" * 100 + "y" * 30, max_tokens=6, temperature=0,
                                  extra_body={"truncate_prompt_tokens": 30})
    check(bytes(r.choices[0].model_extra["token_ids"]) == want and r.usage.prompt_tokens == 30,
          "truncate_prompt_tokens keeps the prompt's last N tokens", r)


def with_curl(srv):
    p = subprocess.run(["curl", "-sS", "-N", srv.url + "/v1/completions", "-H", "Content-Type: application/json",
                        "-d", '{"prompt": "Hi", "max_tokens": 4, "temperature": 0, "stream": true}'],
                       capture_output=True, timeout=60)
    events = [l for l in p.stdout.decode().split("\n") if l.startswith("data: ")]
    check(p.returncode == 0 and events[-1] == "data: [DONE]" and len(events) >= 3, "curl: a streamed completion", p.stdout)
    p = subprocess.run(["curl", "-sS", srv.url + "/health"], capture_output=True, timeout=60)
    check(json.loads(p.stdout) == {"status": "ok"}, "curl: /health", p.stdout)


def concurrent(srv, w):
    cases = prompts()
    want = [generate(w, pr, n, t, s) for pr, n, t, s in cases]
    got = [None] * len(cases)

    def one(i):
        pr, n, t, s = cases[i]
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120)
        if i % 3 == 0:  # some stream: the ids come in each chunk's token_ids
            ids = []
            for c in client.completions.create(model="bytegpt", prompt=pr, max_tokens=n, temperature=t, seed=s,
                                               stream=True):
                ids += c.choices[0].model_extra.get("token_ids") or []
            got[i] = bytes(ids)
        else:
            r = client.completions.create(model="bytegpt", prompt=pr, max_tokens=n, temperature=t, seed=s)
            ids = r.choices[0].model_extra["token_ids"]
            got[i] = bytes(ids)

    th = [threading.Thread(target=one, args=(i,)) for i in range(len(cases))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    bad = []
    for i, (g, wnt) in enumerate(zip(got, want)):
        if g != wnt:
            bad.append((i, g, wnt))
    check(not bad, "16 concurrent clients: every answer equals heed generate's for its prompt", bad)
    busy = metric(srv, "heed_busy_slots_max")
    check(busy is not None and busy > 1, "metrics: more than one slot was busy at once", busy)


def bad_requests(srv):
    url = srv.url + "/v1/completions"
    cases = [
        (b'{"prompt": "a", ', 400, "not valid JSON"),
        (b'[1, 2]', 400, "JSON object"),
        (b'{"max_tokens": 3}', 400, "'prompt' is required"),
        (b'{"prompt": 5}', 400, "'prompt' must be"),
        (b'{"prompt": "a", "max_tokens": "x"}', 400, "'max_tokens' must be an integer"),
        (b'{"prompt": "a", "max_tokens": -1}', 400, "'max_tokens' must be between"),
        (b'{"prompt": "a", "max_tokens": 1e12}', 400, "'max_tokens' must be between"),
        (b'{"prompt": "a", "max_tokens": 2.5}', 400, "must be an integer"),
        (b'{"prompt": "a", "temperature": "hot"}', 400, "'temperature' must be a number"),
        (b'{"prompt": "a", "top_p": 0}', 400, "'top_p'"),
        (b'{"prompt": "a", "stream": "yes"}', 400, "'stream'"),
        (b'{"prompt": "a", "n": 2}', 400, "not available"),
        (b'{"prompt": "a", "logprobs": 3}', 400, "not available"),
        (b'{"prompt": [1, 2, 999]}', 400, "token ids"),
        (b'{"prompt": ""}', 400, "empty"),
        (b'{"prompt": "\xff\xfe"}', 400, "UTF-8"),
        (b'{"prompt": "' + b"y" * 200 + b'"}', 400, "context"),
        (b'{"prompt": "a", "truncate_prompt_tokens": 0}', 400, "truncate_prompt_tokens"),
        (b'{"prompt": "' + b"y" * 5000 + b'"}', 413, "larger than"),
    ]
    for body, status, text in cases:
        st, _, out = http(url, body)
        try:
            msg = json.loads(out)["error"]["message"]
        except Exception:
            msg = None
        check(st == status and msg is not None and text in msg, "bad request %r: %d with a JSON error" % (body[:40], status),
              (st, out[:300]))
    st, _, out = http(srv.url + "/nope")
    check(st == 404 and b"error" in out, "an unknown path: 404", (st, out))
    st, h, out = http(url, method="GET")
    check(st == 405 and h.get("Allow") == "POST", "GET /v1/completions: 405 with Allow", (st, h))
    st, _, out = http(url, {"prompt": "a", "max_tokens": 2, "whatever": {"x": 1}, "model": "other"})
    check(st == 200, "unknown fields are ignored", (st, out))


def disconnect(srv):
    tok0 = metric(srv, "heed_completion_tokens_total")
    s = socket.create_connection(("127.0.0.1", srv.port))
    body = json.dumps({"prompt": "a", "max_tokens": 4000, "stream": True, "temperature": 1}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    first, t0 = b"", time.time()
    while b"data: " not in first and time.time() - t0 < 10:  # the headers may come alone
        first += s.recv(4096)
    s.close()
    check(b"200" in first and b"data: " in first, "mid-stream client: received its first event", first[:200])
    t0 = time.time()
    while time.time() - t0 < 10 and metric(srv, "heed_busy_slots") != 0:
        time.sleep(0.05)
    made = metric(srv, "heed_completion_tokens_total") - tok0
    check(metric(srv, "heed_busy_slots") == 0 and made < 4000,
          "a client that disconnects mid-stream frees its slot (before its 4000 tokens)", made)
    time.sleep(0.2)
    check('"status":499' in srv.stderr(), "the access log records it (499)")
    tok0 = metric(srv, "heed_completion_tokens_total")
    s = socket.create_connection(("127.0.0.1", srv.port))  # the same, waiting for a whole (non-streamed) answer
    body = json.dumps({"prompt": "a", "max_tokens": 4000, "temperature": 1}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    t0 = time.time()
    while time.time() - t0 < 10 and metric(srv, "heed_busy_slots") != 1:
        time.sleep(0.01)
    s.close()
    t0 = time.time()
    while time.time() - t0 < 10 and metric(srv, "heed_busy_slots") != 0:
        time.sleep(0.05)
    made = metric(srv, "heed_completion_tokens_total") - tok0
    check(metric(srv, "heed_busy_slots") == 0 and made < 4000,
          "a client that disconnects while waiting for a whole answer frees its slot (before its 4000 tokens)", made)
    st, _, _ = http(srv.url + "/v1/completions", {"prompt": "b", "max_tokens": 3})
    check(st == 200, "and the server goes on serving", st)


def limits(w):
    p = subprocess.run([HEED, "serve", MODEL, "--weights", w, "--host", "0.0.0.0"], capture_output=True, timeout=60)
    check(p.returncode == 2 and b"--api-key" in p.stderr, "--host 0.0.0.0 without --api-key: exit 2", p.stderr)
    for flags, msg in ((["--ctx", "1000"], b"--ctx 1000 is larger than"), (["--port", "70000"], b"--port takes"),
                       (["--parallel", "0"], b"--parallel takes"), (["--host", "not-an-ip", "--api-key", "k"], b"--host takes")):
        p = subprocess.run([HEED, "serve", MODEL, "--weights", w, "--port", "0", *flags], capture_output=True, timeout=60)
        check(p.returncode == 2 and msg in p.stderr, "heed serve %s: a clear error" % " ".join(flags), p.stderr)
    p = subprocess.run([HEED, "serve", MODEL, "--weights", w, "--quantize", "int8"], capture_output=True, timeout=60)
    check(p.returncode == 1 and b"not available" in p.stderr, "--quantize: a clear 'not available'", p.stderr)
    srv = Server(w, "--api-key", "sesame", "--timeout", "0.05", "--parallel", "1", "--queue", "0")  # a free slot takes a request
    try:
        st, _, _ = http(srv.url + "/v1/models")
        check(st == 401, "--api-key: no key, 401", st)
        st, _, _ = http(srv.url + "/v1/models", headers={"Authorization": "Bearer nope"})
        check(st == 401, "--api-key: a wrong key, 401", st)
        st, _, _ = http(srv.url + "/health")
        check(st == 200, "--api-key: /health needs none", st)
        st, _, out = http(srv.url + "/v1/completions", {"prompt": "a", "max_tokens": 4000},
                          headers={"Authorization": "Bearer sesame"})
        check(st == 504 and b"timeout" in out, "--timeout: a request over it gets 504", (st, out))
    finally:
        check(srv.stop() == 0, "the server exits 0 on SIGTERM")


def queue_and_sigterm(w):
    srv = Server(w, "--parallel", "2", "--queue", "2", "--grace", "0.3", "--ctx", "128")
    results = []
    lock = threading.Lock()

    def one(i):
        try:
            st, h, out = http(srv.url + "/v1/completions", {"prompt": "p%d" % i, "max_tokens": 4096, "temperature": 1})
            r = (st, h.get("Retry-After"), json.loads(out))
        except (urllib.error.URLError, ConnectionError) as e:
            r = ("connect", str(e), None)
        with lock:
            results.append(r)

    th = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in th:
        t.start()
        time.sleep(0.01)
    t0 = time.time()
    while time.time() - t0 < 10 and not (metric(srv, "heed_busy_slots") == 2 and metric(srv, "heed_queue_depth") == 2
                                         and len(results) >= 4):  # all 8 in: 2 running, 2 queued, 4 refused
        time.sleep(0.01)
    rc = srv.stop(signal.SIGTERM)
    for t in th:
        t.join()
    full = [r for r in results if r[0] == 503 and r[1] == "1" and "queue" in r[2]["error"]["message"]]
    check(len(full) >= 1, "a full queue: 503 with Retry-After", results)
    answered = [r for r in results if r[0] in (200, 503) and r[2] is not None]
    check(len(answered) == 8, "SIGTERM under load: every request got a response (200, or 503 with a JSON error)",
          results)
    check(rc == 0 and "heed serve: stopped" in srv.stderr(), "SIGTERM under load: the server exits 0", (rc, srv.stderr()[-500:]))


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    w = train_weights()
    srv = Server(w, "--parallel", "4", "--max-body", "4096")
    try:
        completions_with_client(srv, w)
        with_curl(srv)
        concurrent(srv, w)
        bad_requests(srv)
        disconnect(srv)
        st, _, _ = http(srv.url + "/metrics")
        text = http(srv.url + "/metrics")[2].decode()
        check('heed_requests_total{status="400"}' in text and "heed_time_to_first_token_seconds_bucket" in text and
              "heed_token_latency_seconds_count" in text, "metrics: requests by status, latency histograms", text[:400])
    finally:
        rc = srv.stop(signal.SIGINT)
    check(rc == 0, "SIGINT: exit 0", rc)
    log = [l for l in srv.stderr().splitlines() if l.startswith("{")]
    check(all(json.loads(l).get("status") for l in log) and len(log) > 30, "one JSON access-log line per request",
          log[:3])
    limits(w)
    queue_and_sigterm(w)
    if failures:
        print("%d failed: %s" % (len(failures), ", ".join(failures)))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
