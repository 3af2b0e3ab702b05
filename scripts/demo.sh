#!/usr/bin/env bash
# scripts/demo.sh: the main job on bundled defaults. Today heed's frontend is
# what exists: check every example and write its syntax tree. (Training and
# generation join the demo when the backend lands.)
set -euo pipefail
HEED=${1:-build/heed}
out=build/demo
mkdir -p "$out"
for f in examples/*.heed; do
  "$HEED" check "$f"
  "$HEED" compile "$f" --emit ast -o "$out/$(basename "$f" .heed).ast"
done
echo
echo "heed demo: every example checks clean; syntax trees in $out/"
echo "Try a mistake:  printf 'config { dim = 64 }\nmodel M {\n  param w: f32[dimm, 4] = zeros\n  forward(x: f32[B, 64]) = x @ w\n}\n' > /tmp/bad.heed && $HEED check /tmp/bad.heed"
