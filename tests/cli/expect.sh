# tests/cli/expect.sh: the shell CLI tests' one assertion (sourced by
# test_cli.sh, test_outputs.sh, test_limits.sh; they set pass=0 fail=0).
#   expect STATUS PATTERN -- COMMAND...
# runs COMMAND and wants its exit status STATUS and the extended regex
# PATTERN somewhere in its stdout+stderr ('' = no output at all). A failure
# prints the command, what was wanted and what came (the first 2000 bytes).
expect() {
  local want=$1 pat=$2
  shift 3
  local out
  out=$("$@" 2>&1)
  local rc=$?
  local ok=0
  if [ -z "$pat" ]; then [ -z "$out" ] && ok=1; else printf '%s' "$out" | grep -Eq -- "$pat" && ok=1; fi
  if [ "$rc" -eq "$want" ] && [ "$ok" -eq 1 ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    printf 'FAIL: %s\n  want status %s and /%s/, got %s:\n%s\n' "$*" "$want" "$pat" "$rc" \
      "$(printf '%s' "$out" | head -c 2000)"
  fi
}
