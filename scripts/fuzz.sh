#!/usr/bin/env bash
# scripts/fuzz.sh BUILD_DIR SECONDS: runs each libFuzzer target for SECONDS
# on a seed corpus: the examples and the golden files for fuzz_frontend, the
# small files in tests/fuzz/corpus-safetensors/ for fuzz_safetensors, those
# in tests/fuzz/corpus-json/ for fuzz_json, those in
# tests/fuzz/corpus-checkpoint/ for fuzz_checkpoint (heed train --resume and
# --init) and tests/fuzz/corpus-data/ for fuzz_data (training data files;
# both written by tests/fuzz/make_seeds.py). Fails
# on any crash, leak, sanitizer report or timeout (libFuzzer exits non-zero).
set -euo pipefail
B=${1:-build-fuzz}
SECS=${2:-60}
corpus=$B/corpus-frontend
mkdir -p "$corpus"
cp examples/*.heed tests/golden/errors/*.heed tests/golden/ok/*.heed "$corpus"/ 2>/dev/null || true
"$B/fuzz_frontend" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
  -print_final_stats=1 -artifact_prefix="$B/" "$corpus"

corpus=$B/corpus-safetensors
mkdir -p "$corpus"
cp tests/fuzz/corpus-safetensors/* "$corpus"/
"$B/fuzz_safetensors" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$B/" "$corpus"

corpus=$B/corpus-json
mkdir -p "$corpus"
cp tests/fuzz/corpus-json/* "$corpus"/
"$B/fuzz_json" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$B/" "$corpus"

for t in checkpoint data; do
  corpus=$B/corpus-$t
  mkdir -p "$corpus"
  cp tests/fuzz/corpus-$t/* "$corpus"/
  "$B/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$B/" "$corpus"
done
