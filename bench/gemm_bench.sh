#!/bin/sh
# bench/gemm_bench.sh: runs gemm_bench (heed's generated sgemm vs OpenBLAS)
# with the OpenBLAS kernels this CPU should get. Debian's OpenBLAS 0.3.21
# does not know Zen 4/5 and would fall back to its Haswell (AVX2) kernels, so
# on an AVX-512 CPU it is told OPENBLAS_CORETYPE=SkylakeX; on an AVX2-only
# CPU (SkylakeX kernels would fault) Haswell, which it also picks for Zen 1-3.
# usage: gemm_bench.sh path/to/gemm_bench [gemm_bench args]
set -e
bin=$1
shift
if grep -qw avx512f /proc/cpuinfo; then
  fair=SkylakeX
else
  fair=Haswell
fi
if [ -z "$OPENBLAS_CORETYPE" ]; then
  OPENBLAS_CORETYPE=$fair
elif [ "$OPENBLAS_CORETYPE" != "$fair" ]; then
  # A value inherited from the environment (a shell profile, another
  # bench) silently makes the peer weaker or stronger than fair: say so.
  echo "note: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE from the environment; the fair peer on this CPU is $fair" >&2
fi
export OPENBLAS_CORETYPE
# OpenBLAS's OpenMP threads busy-wait after each call by default (GOMP's spin
# count), holding the second core while heed's sgemm runs next in the same
# process: heed's 2-thread figures then drop by up to half, erratically.
# Passive waiting makes the two take turns fairly.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
lib=$(ldd "$bin" | awk '/libopenblas/ {print $3}')
echo "OpenBLAS library: $lib ($(dpkg -S "$lib" 2>/dev/null | cut -d: -f1 || echo 'not from a Debian package'))"
echo "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
exec "$bin" "$@"
