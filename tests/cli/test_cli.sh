#!/usr/bin/env bash
# tests/cli/test_cli.sh HEED REPO: the command-line contract (CLI.md): help
# for every subcommand, exit statuses 0/1/2, output files, errors without a
# location. Prints "N passed, N failed".
set -u
HEED=$1
REPO=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0

. "$(dirname "$0")/expect.sh"

expect 0 'usage: heed COMMAND' -- "$HEED" --help
expect 2 'usage: heed COMMAND' -- "$HEED"
expect 2 "unknown command 'frobnicate'" -- "$HEED" frobnicate
# help: a short command list (one line each, no flags), details per command
expect 0 '^heed [0-9]+\.[0-9]+\.[0-9]+ \(targets: cpu' -- "$HEED" --version
expect 0 '^heed [0-9]+\.[0-9]+' -- "$HEED" version
expect 0 'generate +generate text' -- "$HEED" help
expect 0 '' -- sh -c "! \"$HEED\" help | grep -qE '^ +--(weights|steps|emit)'"
expect 0 '^[0-9]$|^[12][0-9]$' -- sh -c "\"$HEED\" help | grep -c '^  [a-z]'"
expect 2 "unknown command 'gnerate'; did you mean 'generate'\?" -- "$HEED" gnerate
expect 2 "unknown command 'buidl'; did you mean 'build'\?" -- "$HEED" help buidl
expect 2 "unknown flag '--stpes'; did you mean '--steps'\?" -- "$HEED" train "$REPO/examples/bytegpt.heed" --stpes 3
expect 2 "unknown flag '--wieghts'; did you mean '--weights'\?" -- "$HEED" run "$REPO/examples/mlp.heed" --wieghts w
expect 0 '--profile' -- "$HEED" help train
expect 0 'compiled CPU code; the reference interpreter with' -- "$HEED" help run
# flags for what is not built: a clear error, never a silent CPU run or "unknown flag"
# the GPU targets (docs/gpu.md): run, grad, bench; without the NVIDIA driver, cuda is a clear error
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  expect 1 'the cuda target: no NVIDIA driver' -- "$HEED" bench "$REPO/examples/mlp.heed" --target cuda
fi
expect 1 '--profile is not available with --target opencl' -- "$HEED" bench "$REPO/examples/mlp.heed" --target opencl --profile
expect 1 '--target cuda is not available for heed train yet' -- "$HEED" train "$REPO/examples/bytegpt.heed" --data x --target cuda
expect 2 '--threads takes 1 to 256, not 300' -- "$HEED" generate "$REPO/examples/bytegpt.heed" --weights w --prompt x --threads 300
expect 2 "--target must be cpu, opencl or cuda, not 'tpu'" -- "$HEED" run "$REPO/examples/mlp.heed" --target tpu
expect 1 'quantization is not available in this version' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir --quantize int8
expect 2 '--quantize takes int8, int4 or bf16' -- "$HEED" build "$REPO/examples/mlp.heed" --quantize int3
for c in check compile init run grad bench train generate build; do
  expect 0 "usage: heed $c" -- "$HEED" help "$c"
  expect 0 "usage: heed $c" -- "$HEED" "$c" --help
done
expect 0 'model GPT2: 124439808 parameters in 148 tensors' -- "$HEED" check "$REPO/examples/gpt2.heed"
expect 0 'param  h.11.mlp.c_proj.weight f32\[3072, 768\] = normal\(0, 0.00408248' -- \
  "$HEED" check "$REPO/examples/gpt2.heed" --params
expect 0 'model GPT2: 23241600 parameters in 28 tensors' -- "$HEED" check "$REPO/examples/gpt2.heed" --set layers=2 --set dim=384 --set heads=6
expect 1 "heed: error: --set lyers: no config value or train setting has this name; did you mean 'layers'\?" -- \
  "$HEED" check "$REPO/examples/gpt2.heed" --set lyers=2
expect 1 "--set layers=2.5: 'layers' is an integer" -- "$HEED" check "$REPO/examples/gpt2.heed" --set layers=2.5
expect 1 "no model named 'GPT3'; did you mean 'GPT2'\?" -- "$HEED" check "$REPO/examples/gpt2.heed" --model GPT3
expect 2 'unknown flag' -- "$HEED" check "$REPO/examples/gpt2.heed" --frob
expect 2 'missing the model file' -- "$HEED" check
expect 2 '--set takes KEY=VALUE' -- "$HEED" check "$REPO/examples/gpt2.heed" --set layers
expect 1 "$T/none.heed: cannot open" -- "$HEED" check "$T/none.heed"
expect 1 "is a directory" -- "$HEED" check "$T"
expect 2 '--emit KIND is required' -- "$HEED" compile "$REPO/examples/gpt2.heed"
expect 0 'extern "C" __global__' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit cuda --seq 16
expect 0 '__kernel void' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit opencl --seq 16
expect 0 '\.target sm_90' -- "$HEED" compile "$REPO/examples/bytegpt.heed" --emit ptx --gpu-arch sm_90 --seq 16
# the PTX cache: the second compile reads what the first one stored
HEED_CACHE_DIR="$T/ptxcache" "$HEED" compile "$REPO/examples/mlp.heed" --emit ptx --seq 8 >"$T/a.ptx" 2>&1
expect 0 '\.o$' -- ls "$T/ptxcache"
HEED_CACHE_DIR="$T/ptxcache" "$HEED" compile "$REPO/examples/mlp.heed" --emit ptx --seq 8 >"$T/b.ptx" 2>&1
expect 0 '' -- cmp "$T/a.ptx" "$T/b.ptx"
expect 2 '--gpu-arch takes a CUDA architecture' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit ptx --gpu-arch 90
expect 2 '--gpu-arch is for compile --emit ptx' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit cuda --gpu-arch sm_90
# --emit ir-opt: the IR after the pipeline (heed_compile's pass_run)
expect 0 'output grad\.hidden\.weight = %' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt --grad
expect 0 'output new\.opt\.v\.wte = %' -- "$HEED" compile "$REPO/examples/bytegpt.heed" --emit ir-opt --train-step --set layers=1
expect 0 'kv_append' -- "$HEED" compile "$REPO/examples/bytegpt.heed" --emit ir-opt --decode --set layers=1
expect 0 '^graph ByteMLP\.forward' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt
expect 1 'Bert.forward cannot decode incrementally: attention is not causal' -- "$HEED" compile "$REPO/examples/bert.heed" --emit ir-opt --decode
expect 1 'first output is not a scalar loss' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt --passes autodiff
expect 0 '^; >>> after autodiff' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt --loss --passes autodiff --print-after all
expect 0 '; >>> after train_step' -- sh -c "\"$HEED\" compile \"$REPO/examples/mlp.heed\" --emit ir-opt --train-step --print-after train_step -o \"$T/p.ir\" && cat \"$T/p.ir\""
expect 0 '; >>> after autodiff' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit llvm --grad --print-after autodiff
expect 2 "unknown pass 'autodif'; did you mean 'autodiff'\?" -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt --passes autodif
expect 2 "unknown pass 'kvcach'; did you mean 'kvcache'\?" -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt --print-after kvcach
expect 2 'takes one pass' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt --print-after autodiff,kvcache
expect 0 '' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit ir-opt --grad --print-after kvcache -o "$T/none.ir"
expect 0 'define .*heed_forward' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit llvm
expect 0 'heed_forward:' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit asm --cpu x86-64-v3
expect 2 'needs -o FILE' -- "$HEED" compile "$REPO/examples/mlp.heed" --emit obj
expect 0 'E +L +F' -- sh -c "\"$HEED\" compile \"$REPO/examples/mlp.heed\" --emit obj -o \"$T/m.o\" && od -An -c -N4 \"$T/m.o\""
expect 0 '%[0-9]+: f32\[B, T, 50257\] = matmul' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit ir --set layers=1
expect 0 'output loss = %' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit ir --loss --set layers=1
expect 0 'digraph' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit dot --set layers=1
expect 2 "unknown --emit kind 'wat'" -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit wat
expect 1 'heed: error: x: cannot open: No such file or directory' -- "$HEED" train "$REPO/examples/bytegpt.heed" --data x
expect 1 "model 'Bert' has no train section" -- "$HEED" train "$REPO/examples/bert.heed" --data x --steps 5
expect 2 '--weights is not a train flag: --init W' -- "$HEED" train "$REPO/examples/bytegpt.heed" --data x --weights w
expect 2 '-o is not a train flag: --out DIR' -- "$HEED" train "$REPO/examples/bytegpt.heed" --data x -o y
expect 2 '--freeze needs a value' -- "$HEED" train "$REPO/examples/bytegpt.heed" --data x --freeze
expect 0 '--freeze PATTERN +do not train' -- "$HEED" train --help
expect 0 '"forward_ms": [0-9.]+' -- "$HEED" bench "$REPO/examples/mlp.heed" --json --batch 2 --reps 1
expect 0 'forward .*reference interpreter' -- "$HEED" bench "$REPO/examples/mlp.heed" --interp --batch 2 --reps 1
expect 0 '' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit ast -o "$T/gpt2.ast"
expect 0 'model GPT2 +@' -- cat "$T/gpt2.ast"
printf 'model M {\n  forward(x: f32[B]) = x @ \n}\n' > "$T/bad.heed"
expect 1 "bad.heed:3:1: error: syntax error: unexpected '}', expected an expression" -- "$HEED" check "$T/bad.heed"
expect 1 'heed: error: cannot write' -- "$HEED" compile "$REPO/examples/gpt2.heed" --emit ast -o "$T/no/such/dir/x.ast"
expect 0 'train  sgd\(lr=0.001\), schedule linear' -- "$HEED" check "$REPO/examples/bytegpt.heed" --set optimizer=sgd --set schedule=linear
expect 1 'this train section uses adamw, which has no momentum' -- "$HEED" check "$REPO/examples/bytegpt.heed" --set momentum=0.9
expect 1 "unknown schedule; did you mean 'cosine'" -- "$HEED" check "$REPO/examples/bytegpt.heed" --set schedule=cosne
# IR text round trip: --emit ir output reads back to the same text, for every example
for f in "$REPO"/examples/*.heed; do
  "$HEED" compile "$f" --emit ir -o "$T/a.ir" && "$HEED" compile "$T/a.ir" --emit ir -o "$T/b.ir"
  expect 0 '' -- cmp "$T/a.ir" "$T/b.ir"
done
# the error limit: 30 errors -> 20 shown and a summary line
{ echo 'model M {'; for i in $(seq 30); do echo "  param p$i: f32[nope$i] = zeros"; done; echo '}'; } > "$T/many.heed"
expect 1 'too many errors; stopped reporting after 20' -- "$HEED" check "$T/many.heed"
expect 1 'stopped reporting after 5' -- "$HEED" check "$T/many.heed" --max-errors 5

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
