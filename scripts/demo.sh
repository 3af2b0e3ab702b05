#!/usr/bin/env bash
# scripts/demo.sh: the main job on bundled defaults (`make demo`, after
# scripts/install-deps.sh and the build). Checks every example, then trains
# the byte-level GPT (examples/bytegpt.heed, 0.45M parameters) for a few
# minutes on the fortune cookies of Debian's `fortunes` package
# (/usr/share/games/fortunes: ~2.5 MB of English quotes, jokes and poems),
# prints a sample of generated text, says where the checkpoint, the metrics
# log and the loss plot are, and the commands that generate from it, build
# a program of it, continue and fine-tune it. DEMO_STEPS overrides the step
# count.
set -euo pipefail
HEED=${1:-build/heed}
out=build/demo
mkdir -p "$out"
for f in examples/*.heed; do
  "$HEED" check "$f"
done

fort=/usr/share/games/fortunes
if [ ! -d "$fort" ]; then
  echo "heed demo: $fort is missing: apt-get install fortunes (scripts/install-deps.sh does)" >&2
  exit 1
fi
data=$out/fortunes.txt
: > "$data"
for f in "$fort"/*; do  # the text files: not the .dat indexes, the .u8 links or the ASCII art
  case "$f" in *.dat|*.u8|*/art|*/ascii-art) ;; *) [ -f "$f" ] && cat "$f" >> "$data" ;; esac
done
steps=${DEMO_STEPS:-2500}
echo
echo "heed demo: training examples/bytegpt.heed for $steps steps on $data ($(wc -c < "$data") bytes);"
echo "Ctrl-C stops it after the current step and saves a checkpoint."
# --force: a new run over the previous demo's (only its checkpoints, metrics and plot go)
"$HEED" train examples/bytegpt.heed --data "$data" --out "$out/run" --force --steps "$steps" --eval-every 100 \
  --sample 400
ckpt=$(ls "$out"/run/ckpt-*.safetensors | tail -n 1)  # the newest (8-digit step numbers sort)
echo
echo "heed demo: every example checks clean; the trained byte-level GPT is in $out/run/"
echo "  (checkpoints ckpt-*.safetensors, metrics.csv, loss.svg: open it in a browser)."
echo "Generate text:      $HEED generate examples/bytegpt.heed --weights $ckpt --prompt 'The ' -n 400"
echo "A program:          $HEED build examples/bytegpt.heed --weights $ckpt -o $out/bytegpt && $out/bytegpt --prompt 'The '"
echo "Continue training:  $HEED train examples/bytegpt.heed --data $data --resume $out/run --steps $((steps * 2))"
echo "Fine-tune:          $HEED train examples/bytegpt.heed --data OTHER.txt --init $ckpt --out $out/finetune"
echo "Try a mistake:  printf 'config { dim = 64 }\nmodel M {\n  param w: f32[dimm, 4] = zeros\n  forward(x: f32[B, 64]) = x @ w\n}\n' > /tmp/bad.heed && $HEED check /tmp/bad.heed"
