#!/usr/bin/env bash
# scripts/demo.sh: the main job on bundled defaults. Today: check every
# example, write its syntax tree and IR, initialise the byte-level GPT.
# (Training and generation join the demo when the compiled backend lands.)
set -euo pipefail
HEED=${1:-build/heed}
out=build/demo
mkdir -p "$out"
for f in examples/*.heed; do
  "$HEED" check "$f"
  "$HEED" compile "$f" --emit ast -o "$out/$(basename "$f" .heed).ast"
  "$HEED" compile "$f" --emit ir -o "$out/$(basename "$f" .heed).ir"
done
"$HEED" init examples/bytegpt.heed -o "$out/bytegpt.safetensors" --seed 1
echo
echo "heed demo: every example checks clean; syntax trees and IR in $out/;"
echo "initialised byte-level GPT weights: $out/bytegpt.safetensors"
echo "Try a mistake:  printf 'config { dim = 64 }\nmodel M {\n  param w: f32[dimm, 4] = zeros\n  forward(x: f32[B, 64]) = x @ w\n}\n' > /tmp/bad.heed && $HEED check /tmp/bad.heed"
