#!/usr/bin/env bash
# scripts/install-deps.sh: installs the Debian packages heed needs, only those
# that are missing. Called by `make build|test|demo|fuzz`; safe to re-run.
set -euo pipefail

# libclang-rt-19-dev: libFuzzer's and the sanitizers' runtimes for clang-19
# (`make fuzz`); clang-19 does not pull it in.
PKGS=(cmake make gcc pkg-config flex bison llvm-19-dev clang-19 libfuzzer-19-dev libmicrohttpd-dev curl
      libclang-rt-19-dev libcmocka-dev libcjson-dev python3 python3-numpy
      python3-torch python3-venv fortunes libopenmpi-dev openmpi-bin
      pocl-opencl-icd ocl-icd-opencl-dev opencl-headers clinfo)
# fortunes: the text `make demo` trains on; libopenmpi-dev, openmpi-bin: data-parallel
# training (mpirun -np N heed train; CMake finds MPI and links heed with it);
# pocl-opencl-icd, ocl-icd-opencl-dev, opencl-headers, clinfo: the GPU backend's tests
# (OpenCL on the CPU); libmicrohttpd-dev: heed serve's HTTP server; curl, python3-venv: its tests

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# heed serve's test drives the server with OpenAI's own Python client (PyPI:
# openai), installed once into a venv in the build directory ($1, default
# build/pyenv), never at test time.
pyenv() {
  local venv="${1:-build}/pyenv"
  if ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
    echo "heed: installing the openai client into $venv (heed serve's test)" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv --system-site-packages "$venv" >&2
    "$venv/bin/pip" install -q openai >&2
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  pyenv "${1:-build}"
  exit 0
fi

echo "heed: installing missing packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "heed: please install as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
pyenv "${1:-build}"
