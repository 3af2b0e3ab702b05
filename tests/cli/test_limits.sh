#!/usr/bin/env bash
# tests/cli/test_limits.sh HEED REPO: inputs at and past heed's size limits
# (issue 18): nested repeats past the instance limit, a checker out of memory
# (RLIMIT_AS), lowering time linear in the parameters, allocation failures in
# run/train/generate that say what and how much. Each case wants an exit
# status and a message, never a signal. Prints "N passed, N failed".
set -u
HEED=$1
REPO=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0

. "$(dirname "$0")/expect.sh"

# Nested repeats multiply (five levels of repeat(1000): 1e15 layers that
# checked clean, then compile was killed for memory): an error at once.
{
  echo 'block L0 { param w: f32[4] = zeros'
  echo '  forward(x) = x + w }'
  for i in 1 2 3 4; do echo "block L$i { h = repeat(1000) L$((i - 1))"; echo '  forward(x) = h(x) }'; done
  echo 'model M { h = repeat(1000) L4'
  echo '  forward(x: f32[4]) -> f32[4] { return h(x) } }'
} > "$T/nested.heed"
for c in check "compile --emit ir"; do
  expect 1 'nested.heed:5:[0-9]+: error: repeat\(1000\) L1 brings the total to 1001000 block instances \(repeats expanded\), more than the limit of 1000000' \
    -- timeout 10 "$HEED" $c "$T/nested.heed"
done

# Cases under a limit on the address space (RLIMIT_AS, KB): limited KB ARGS...
# runs heed with ARGS under it. heed itself loads in about 200 MB. An ASan
# build reserves terabytes of shadow memory and cannot run under a limit:
# said once, and tests/unit/test_fe_oom.c covers the frontend with an arena
# budget instead.
limited() { bash -c 'ulimit -v "$0" && exec "$@"' "$1" "$HEED" "${@:2}"; }
if limited 400000 --version >/dev/null 2>&1; then
  # the checker and lowering out of memory: a legal model of 1,000,000 layers
  # needs gigabytes of IR
  expect 1 'heed: error: out of memory while checking and lowering .*deep.heed: cannot allocate [0-9.]+ (bytes|KiB|MiB)' \
    -- limited 400000 compile "$REPO/tests/models/deep.heed" --set layers=1000000 --emit ir -o /dev/null
  # allocation failures say what and how much: a 4 GiB input (a sparse
  # file) is 8 GiB of values; a KV cache for -n 1e9 with no window
  "$HEED" init "$REPO/tests/models/deep.heed" -o "$T/deep.safetensors" >/dev/null
  /usr/bin/python3 -c '
import json, struct, sys
n = 1 << 28
h = json.dumps({"x": {"dtype": "F32", "shape": [n, 4], "data_offsets": [0, n * 16]}}).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.truncate(8 + len(h) + n * 16)' "$T/big.safetensors"
  for i in --interp ""; do
    expect 1 "^heed: error: cannot allocate 8.0 GiB for input 'x' \\(1073741824 values of F32\\)" -- \
      limited 6000000 run "$REPO/tests/models/deep.heed" --weights "$T/deep.safetensors" --inputs "$T/big.safetensors" \
      --outputs "$T/out.safetensors" $i
  done
  printf '%s\n' 'model Att {' '  param emb: f32[256, 8] = normal(0.02)' '  param w: f32[8, 256] = normal(0.02)' \
    '  forward(tokens: i32[B, T]) -> f32[B, T, 256] { return attention(emb[tokens], emb[tokens], emb[tokens], heads = 2, causal = true) @ w }' \
    '}' > "$T/att.heed"
  "$HEED" init "$T/att.heed" -o "$T/att.safetensors" >/dev/null
  expect 1 "error: cannot allocate 59.6 GiB for the KV cache 'cache.k.0' \\(1000000004 positions: the prompt and -n, as the model has no window; --window N bounds them\\)" \
    -- limited 6000000 generate "$T/att.heed" --weights "$T/att.safetensors" --prompt "The " -n 1000000000 --interp
  expect 1 "error: cannot allocate 29.8 GiB for the values of input cache.k.0 \\(1000000004 positions" \
    -- limited 6000000 generate "$T/att.heed" --weights "$T/att.safetensors" --prompt "The " -n 1000000000
elif ldd "$HEED" 2>/dev/null | grep -q libasan; then
  echo "note: $HEED is an ASan build: the cases under ulimit -v do not apply (test_fe_oom covers the frontend)"
else
  fail=$((fail + 1))
  echo "FAIL: $HEED --version does not run under ulimit -v 400000"
fi
# --sample is bounded (each token is a forward over the window); it was a
# silent exit 1 at 2^40
head -c 5000 "$REPO/README.md" > "$T/data.txt"
expect 2 "heed train: --sample takes at most 1000000 tokens, got '1099511627776'" -- \
  "$HEED" train "$REPO/tests/models/train_gpt.heed" --data "$T/data.txt" --steps 1 --sample 1099511627776 --out "$T/run"

# Lowering is linear in the parameters: 10,000 layers of 8 parameters each
# (a quadratic name lookup took minutes here). timeout exits 124.
expect 0 '^graph Deep.forward' -- timeout 20 "$HEED" compile "$REPO/tests/models/deep.heed" --set layers=10000 --emit ir
expect 0 'model Deep: 320000 parameters in 80000 tensors' -- timeout 20 "$HEED" check "$REPO/tests/models/deep.heed" --set layers=10000

printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
