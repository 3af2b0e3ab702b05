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

expect() {  # expect STATUS PATTERN -- COMMAND...: status and a regex on stdout+stderr
  local want=$1 pat=$2
  shift 3
  local out
  out=$("$@" 2>&1)
  local rc=$?
  if [ "$rc" -eq "$want" ] && printf '%s' "$out" | grep -Eq -- "$pat"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    printf 'FAIL: %s\n  want status %s and /%s/, got %s:\n%s\n' "$*" "$want" "$pat" "$rc" "$(printf '%s' "$out" | head -c 2000)"
  fi
}

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

# The checker and lowering out of memory (RLIMIT_AS): a legal model of
# 1,000,000 layers needs gigabytes of IR; under 400 MB of address space
# (heed itself loads in about 200) it is an error, never a signal. An ASan
# build reserves terabytes of shadow memory and cannot run under a limit:
# said, and tests/unit/test_fe_oom.c covers it with an arena budget.
if (ulimit -v 400000 && "$HEED" --version) >/dev/null 2>&1; then
  expect 1 'heed: error: out of memory while checking and lowering .*deep.heed: cannot allocate [0-9.]+ (bytes|KiB|MiB)' \
    -- bash -c "ulimit -v 400000 && exec \"\$0\" compile \"\$1\" --set layers=1000000 --emit ir -o /dev/null" \
    "$HEED" "$REPO/tests/models/deep.heed"
elif ldd "$HEED" 2>/dev/null | grep -q libasan; then
  echo "note: $HEED is an ASan build: the RLIMIT_AS case does not apply (test_fe_oom covers it)"
else
  fail=$((fail + 1))
  echo "FAIL: $HEED --version does not run under ulimit -v 400000"
fi

# Lowering is linear in the parameters: 10,000 layers of 8 parameters each
# (a quadratic name lookup took minutes here). timeout exits 124.
expect 0 '^graph Deep.forward' -- timeout 20 "$HEED" compile "$REPO/tests/models/deep.heed" --set layers=10000 --emit ir
expect 0 'model Deep: 320000 parameters in 80000 tensors' -- timeout 20 "$HEED" check "$REPO/tests/models/deep.heed" --set layers=10000

printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
