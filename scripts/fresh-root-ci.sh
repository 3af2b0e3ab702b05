#!/usr/bin/env bash
# scripts/fresh-root-ci.sh ROOT [COMMAND]: proves that heed installs and
# passes on a fresh Debian 12: debootstrap a minimal bookworm into ROOT (the
# mirror is the first one this machine's apt uses), clone the committed HEAD
# and ../shared into it, and run COMMAND there as root, in a chroot with
# /proc and /dev (default: `bash .ci/run`, which installs what it needs
# through scripts/install-deps.sh). Needs root; installs debootstrap if
# missing. Leaves ROOT for inspection (rm -rf it after). Not part of CI.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/fresh-root-ci.sh ROOT [COMMAND]" >&2; exit 2; }
ROOT=$(realpath -m "$1")
CMD=${2:-"CI=true bash .ci/run"}
REPO=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "fresh-root-ci: run as root" >&2; exit 1; }
[ ! -e "$ROOT" ] || { echo "fresh-root-ci: $ROOT exists; give a new directory" >&2; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
mirror=$({ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
         awk '/^(URIs:|deb) / && $2 !~ /security/ {print $2; exit}')
[ -n "$mirror" ] || { echo "fresh-root-ci: no Debian mirror in this machine's apt sources" >&2; exit 1; }
debootstrap --variant=minbase bookworm "$ROOT" "$mirror"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The machine's own network settings, as a new machine of this kind has
# them (not something heed installs): pip's configuration and the CA bundle
# it names (a TLS-inspecting proxy's certificate), handed to the chroot.
pipcert=""
if [ -f /etc/pip.conf ]; then
  cp /etc/pip.conf "$ROOT/etc/pip.conf"
  pipcert=$(awk -F' *= *' '$1 == "cert" {print $2}' /etc/pip.conf)
fi
pipcert=${PIP_CERT:-$pipcert}
if [ -n "$pipcert" ] && [ -f "$pipcert" ]; then
  mkdir -p "$ROOT/etc/heed-fresh-root" && cp "$pipcert" "$ROOT/etc/heed-fresh-root/ca.crt"
  sed -i "s#$pipcert#/etc/heed-fresh-root/ca.crt#" "$ROOT/etc/pip.conf" 2>/dev/null || true
fi
mkdir -p "$ROOT/work"
git clone -q "$REPO" "$ROOT/work/main"
[ -d "$REPO/../shared" ] && cp -a "$REPO/../shared" "$ROOT/work/shared"
# unmounted on any exit (before anyone runs rm -rf ROOT)
trap 'for d in "$ROOT"/usr/local/cuda-* "$ROOT/usr/local/cuda"; do umount "$d" 2>/dev/null; done;
      umount "$ROOT/sys" 2>/dev/null; umount "$ROOT/dev/shm" 2>/dev/null; umount "$ROOT/dev" 2>/dev/null;
      umount "$ROOT/proc" 2>/dev/null; true' EXIT
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
mount -t tmpfs tmpfs "$ROOT/dev/shm"
# /sys as every machine has it (hwloc under Open MPI and PoCL read the CPU
# topology there), and the CUDA toolkit this kind of machine comes with in
# /usr/local/cuda (not a Debian package: NVRTC for the GPU backend's tests)
mount -t sysfs sysfs "$ROOT/sys"
for d in /usr/local/cuda /usr/local/cuda-*; do
  [ -d "$d" ] && [ ! -L "$d" ] && mkdir -p "$ROOT$d" && mount --bind -o ro "$d" "$ROOT$d"
done
[ -L /usr/local/cuda ] && ln -sfn "$(readlink /usr/local/cuda)" "$ROOT/usr/local/cuda"
for f in /etc/ld.so.conf.d/*cuda*; do  # the toolkit's loader path (NVRTC dlopens its builtins)
  [ -f "$f" ] && cp "$f" "$ROOT/etc/ld.so.conf.d/" && chroot "$ROOT" /sbin/ldconfig
done
# minbase has neither git nor ca-certificates; the project's own script must
# bring everything else.
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  ${pipcert:+PIP_CERT=/etc/heed-fresh-root/ca.crt} \
  bash -c "cd /work/main && $CMD"
