#!/usr/bin/env bash
# tests/cli/test_outputs.sh HEED REPO: every file heed writes (compile -o,
# init -o, run/grad --outputs, build -o) replaces its path only when whole
# (runtime/outfile.c): a failed write (a file size limit, a full disk)
# leaves the old file and no temporary; an output that is one of the
# inputs, or that cannot be written, is refused before any work; --cpu
# names are checked (an unknown or 32-bit CPU: exit 1, never an abort).
# Prints "N passed, N failed".
set -u
HEED=$1
REPO=$2
T=$(mktemp -d)
MNT=
trap '[ -n "$MNT" ] && umount "$MNT"; rm -rf "$T"' EXIT
pass=0 fail=0

. "$(dirname "$0")/expect.sh"

# limited FILE_KB COMMAND...: COMMAND with files limited to FILE_KB KiB, SIGXFSZ
# ignored (so a write past the limit fails with EFBIG instead of killing).
limited() {
  local kb=$1
  shift
  (ulimit -f "$kb"; trap '' XFSZ; exec "$@")
}

MLP=$REPO/examples/mlp.heed
GPT=$REPO/examples/gpt2.heed
cd "$T" || exit 1

# 1. A write that fails part way leaves the old file whole and no temporary.
for kind in ir dot ast; do
  echo good > "old.$kind"
  expect 1 "old.$kind: cannot write: File too large" -- limited 4 "$HEED" compile "$GPT" --emit $kind -o "old.$kind"
  expect 0 '^good$' -- cat "old.$kind"
done
for kind in asm llvm obj; do
  echo good > "old.$kind"
  expect 1 "cannot write .*File too large" -- limited 4 "$HEED" compile "$MLP" --emit $kind -o "old.$kind"
  expect 0 '^good$' -- cat "old.$kind"
done
"$HEED" init "$MLP" -o w.st --seed 1 || exit 1
cp w.st w0.st
expect 1 'w.st: cannot write: File too large' -- limited 64 "$HEED" init "$MLP" -o w.st --seed 2
expect 0 '' -- cmp w.st w0.st
expect 0 '' -- sh -c "ls | grep -F .tmp. || true"   # no temporary anywhere
# ... and a whole write replaces the file; a device is written in place, not replaced
expect 0 '' -- "$HEED" compile "$MLP" --emit ir -o old.ir
expect 0 'model ByteMLP|^%|graph' -- head -c 200 old.ir
expect 0 '' -- "$HEED" compile "$MLP" --emit asm -o /dev/null
expect 0 '' -- test -c /dev/null
expect 0 'forward' -- sh -c "\"$HEED\" compile \"$MLP\" --emit llvm | head -c 2000"

# 2. An output that is one of the inputs is refused (exit 2), nothing written;
# an output that cannot be written is reported before any work (exit 1).
/usr/bin/python3 - <<'EOF' || exit 1
import struct, json
hdr = json.dumps({"tokens": {"dtype": "I32", "shape": [1, 8], "data_offsets": [0, 32]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open("in.st", "wb").write(struct.pack("<Q", len(hdr)) + hdr + struct.pack("<8i", *range(8)))
EOF
expect 0 '' -- "$HEED" run "$MLP" --weights w.st --inputs in.st --outputs out.st
expect 2 "run: --outputs 'w.st' is --weights \('w.st'\): it would be overwritten" -- \
  "$HEED" run "$MLP" --weights w.st --inputs in.st --outputs w.st
expect 0 '' -- cmp w.st w0.st
expect 2 "--outputs '\./w.st' is --weights \('w.st'\)" -- "$HEED" run "$MLP" --weights w.st --inputs in.st --outputs ./w.st
ln -s w.st link.st
expect 2 "--outputs 'link.st' is --weights" -- "$HEED" run "$MLP" --weights w.st --inputs in.st --outputs link.st
expect 2 "--outputs 'in.st' is --inputs" -- "$HEED" grad "$MLP" --weights w.st --inputs in.st --outputs in.st
cp "$MLP" mine.heed  # a copy: a heed without the check would overwrite it
expect 2 "-o 'mine.heed' is the model file" -- "$HEED" init mine.heed -o mine.heed
expect 2 "-o '\./mine.heed' is the model file" -- "$HEED" compile mine.heed --emit ir -o ./mine.heed
expect 0 '' -- cmp mine.heed "$MLP"
expect 2 "-o 'w.st' is --weights" -- "$HEED" build "$MLP" --weights w.st -o w.st
expect 0 '' -- cmp w.st w0.st
# --inputs names a missing file: the output's directory is still reported first (before any work)
expect 1 "cannot write 'no/such/out.st': the directory 'no/such' does not exist" -- \
  "$HEED" run "$MLP" --weights w.st --inputs missing.st --outputs no/such/out.st
expect 1 "cannot write 'd': it is a directory" -- sh -c "mkdir -p d && \"$HEED\" init \"$MLP\" -o d"
expect 1 "'w.st/x': 'w.st' is not a directory" -- "$HEED" init "$MLP" -o w.st/x
# a directory that cannot be written: read-only by mount (root) or by mode (a user)
if [ "$(id -u)" -eq 0 ] && mkdir ro && mount -t tmpfs -o ro,size=64k tmpfs ro 2>/dev/null; then
  MNT=$T/ro
else
  mkdir -p ro && chmod 0500 ro
fi
expect 1 "cannot write 'ro/out.st': the directory 'ro' is not writable" -- \
  "$HEED" run "$MLP" --weights w.st --inputs missing.st --outputs ro/out.st
[ -n "$MNT" ] && umount "$MNT" && MNT=

# A full disk (a small tmpfs, when this may mount one): the old file stays.
if [ "$(id -u)" -eq 0 ] && mkdir full && mount -t tmpfs -o size=64k tmpfs full 2>/dev/null; then
  MNT=$T/full
  echo good > full/g.ir
  dd if=/dev/zero of=full/fill bs=4k 2>/dev/null  # until the disk is full
  expect 1 'full/g.ir: cannot write: No space left on device' -- "$HEED" compile "$GPT" --emit ir -o full/g.ir
  expect 0 '^good$' -- cat full/g.ir
  expect 0 '^fill g.ir$' -- sh -c 'echo $(ls full)'
  umount "$MNT" && MNT=
else
  echo "note: not root or no tmpfs mount here: the full-disk case ran only as a file size limit (above)"
fi

# 5. A compile cache that is not the user's own (writable by others) is not used: a warning.
mkdir -m 0777 cache
expect 0 "warning: the compile cache .*cache is writable by others \(mode 0777\): not used" -- \
  env HEED_CACHE_DIR="$T/cache" "$HEED" run "$MLP" --weights w.st --inputs in.st --outputs out2.st
expect 0 '' -- ls cache
chmod 0700 cache
expect 0 '' -- env HEED_CACHE_DIR="$T/cache" "$HEED" run "$MLP" --weights w.st --inputs in.st --outputs out2.st
expect 0 '[0-9a-f]{24}\.o' -- ls cache

# 6. --cpu: a CPU LLVM does not know, or one without 64-bit mode, is an error, not an abort.
expect 1 "unknown CPU 'bogus9000' for [a-z0-9_-]+; did you mean|unknown CPU 'bogus9000' for [a-z0-9_-]+ \(--cpu help" -- "$HEED" compile "$MLP" --emit asm --cpu bogus9000
expect 1 "unknown CPU 'znver44' for [a-z0-9_-]+; did you mean 'znver4'" -- "$HEED" compile "$MLP" --emit asm --cpu znver44
expect 1 "CPU 'i386' cannot run 64-bit code" -- "$HEED" compile "$MLP" --emit obj -o x.o --cpu i386
expect 1 "CPU 'pentium4' cannot run 64-bit code" -- "$HEED" compile "$MLP" --emit asm --cpu pentium4
expect 0 '' -- test ! -e x.o
expect 0 'vfmadd|vmul' -- sh -c "\"$HEED\" compile \"$MLP\" --emit asm --cpu x86-64-v3 | grep -m1 -E 'vfmadd|vmul'"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
