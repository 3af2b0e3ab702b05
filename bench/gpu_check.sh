#!/usr/bin/env bash
# bench/gpu_check.sh: the prepared check for a machine with an NVIDIA GPU
# (docs/gpu.md). Usage: bench/gpu_check.sh [HEED]  (default: build/heed)
# Runs bench/gpu_check.py: the example models on --target cuda against the
# interpreter, then GEMM, attention and GPT-2-small timings against PyTorch
# (ratios printed). Needs python3 with PyTorch (CUDA) and numpy, the NVIDIA
# driver, and NVRTC (libnvrtc.so.13 or .12 on the loader's path, or
# HEED_NVRTC=PATH). On a machine without LLVM packages, build heed with
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DHEED_LLVM_STATIC=ON
# first (it then needs only libc, libm, libz, libzstd and libstdc++).
set -euo pipefail
cd "$(dirname "$0")/.."
HEED=${1:-build/heed}
if [ -z "${HEED_NVRTC:-}" ]; then  # PyTorch's wheels bring NVRTC: use it when the system has none
  nv=$(python3 - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
hits = sorted(h for r in roots for h in glob.glob(os.path.join(r, "**", "libnvrtc.so*"), recursive=True)
              if "builtins" not in h)
print(hits[0] if hits else "")
PY
)
  if [ -n "$nv" ]; then export HEED_NVRTC=$nv; fi
fi
exec python3 bench/gpu_check.py "$HEED"
