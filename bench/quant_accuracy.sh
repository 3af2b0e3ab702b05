#!/bin/sh
# bench/quant_accuracy.sh: the accuracy cost of each weight-only scheme on a
# trained model: validation loss of the f32 weights against the same
# weights quantized and dequantized (bench/quant_fake.c), each evaluated by
# heed itself (heed train --init W --steps 1 at lr 1e-30: the step changes
# no weight, the val loss at its end is W's), with an error budget that
# fails loudly (exit 1). See docs/quantize.md.
# Usage: quant_accuracy.sh HEED QUANT_FAKE MODEL.heed DATA CHECKPOINT [OUTDIR]
# Budgets (relative val-loss increase): int8 1%, q4_0 and q4_1 5%, bf16 0.5%;
# override with BUDGET_int8=... etc.
set -eu
[ $# -ge 5 ] || { echo "usage: $0 HEED QUANT_FAKE MODEL.heed DATA CHECKPOINT [OUTDIR]" >&2; exit 2; }
heed=$1 fake=$2 model=$3 data=$4 ckpt=$5
out=${6:-$(mktemp -d)}
mkdir -p "$out"
val_loss() {  # weights -> the val loss heed reports for them
  rm -rf "$out/eval"
  "$heed" train "$model" --data "$data" --steps 1 --init "$1" --set lr=1e-30 --set min_lr=1e-30 \
    --out "$out/eval" --sample 0 >/dev/null 2>"$out/eval.err" || { cat "$out/eval.err" >&2; exit 1; }
  tail -n 1 "$out/eval/metrics.csv" | cut -d, -f3
}
base=$(val_loss "$ckpt")
printf '%-6s val_loss %.6f  ppl %.4f\n' f32 "$base" "$(awk "BEGIN{print exp($base)}")"
fail=0
for s in int8 q4_0 q4_1 bf16; do
  "$fake" "$ckpt" "$s" "$out/$s.safetensors" >"$out/$s.err.txt"
  l=$(val_loss "$out/$s.safetensors")
  case $s in int8) b=${BUDGET_int8:-0.01} ;; bf16) b=${BUDGET_bf16:-0.005} ;; q4_0) b=${BUDGET_q4_0:-0.05} ;; *) b=${BUDGET_q4_1:-0.05} ;; esac
  rel=$(awk "BEGIN{print ($l - $base) / $base}")
  verdict=$(awk "BEGIN{print ($rel <= $b) ? \"ok\" : \"OVER BUDGET\"}")
  printf '%-6s val_loss %.6f  ppl %.4f  %+.3f%% (budget %.2f%%)  %s\n' "$s" "$l" "$(awk "BEGIN{print exp($l)}")" \
    "$(awk "BEGIN{print 100 * $rel}")" "$(awk "BEGIN{print 100 * $b}")" "$verdict"
  echo "       worst weight errors:"; sort -k7 -g -r "$out/$s.err.txt" | head -3 | sed 's/^/         /'
  [ "$verdict" = ok ] || fail=1
done
[ $fail = 0 ] || { echo "quant_accuracy: a scheme is over its error budget" >&2; exit 1; }
