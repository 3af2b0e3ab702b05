#!/bin/sh
# bench/netns_dp.sh: bench/dp_bench.py with the two ranks in two network
# namespaces joined by a veth pair, so that Open MPI's TCP transport carries
# the gradients as between two machines (root only; ip from iproute2).
# Creates namespaces heed-dp1/heed-dp2 (10.77.0.1, 10.77.0.2), runs mpirun in
# the first with a launcher that starts each "host" in its namespace, then
# removes them. Usage: bench/netns_dp.sh [dp_bench.py args...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
cleanup() {
  ip netns del heed-dp1 2>/dev/null || true
  ip netns del heed-dp2 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add heed-dp1
ip netns add heed-dp2
ip link add heed-v1 type veth peer name heed-v2
ip link set heed-v1 netns heed-dp1
ip link set heed-v2 netns heed-dp2
ip -n heed-dp1 addr add 10.77.0.1/24 dev heed-v1
ip -n heed-dp2 addr add 10.77.0.2/24 dev heed-v2
for n in 1 2; do ip -n heed-dp$n link set heed-v$n up; ip -n heed-dp$n link set lo up; done
# the launcher Open MPI calls instead of ssh: AGENT HOST COMMAND...
cat > "$work/rsh" <<'EOS'
#!/bin/sh
host="$1"; shift
case "$host" in 10.77.0.1) ns=heed-dp1 ;; 10.77.0.2) ns=heed-dp2 ;; *) exit 1 ;; esac
exec ip netns exec "$ns" sh -c "$*"
EOS
chmod +x "$work/rsh"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' > "$work/hosts"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ip netns exec heed-dp1 /usr/bin/python3 "$here/dp_bench.py" --mpirun "mpirun --hostfile $work/hosts \
  --mca plm_rsh_agent $work/rsh --mca btl self,tcp --mca btl_tcp_if_include 10.77.0.0/24 \
  --mca oob_tcp_if_include 10.77.0.0/24" "$@"
