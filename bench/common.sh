# Sourced by the bench scripts that load a relay with ../shared/bench's tools:
# paths, the tools built once into bench/out, how rtpproxy-py is started, and
# network namespaces that are deleted when the script exits.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
src=${BENCH_SRC:-$top/../shared/bench}
[ -d "$src" ] || src=$top/../../shared/bench        # from a worktree under /work/wt
out=${BENCH_OUT:-$here/out}
rtpproxy=${RTPPROXY:-$top/.venv/bin/rtpproxy}
mkdir -p "$out"
[ -x "$out/rtpbench" ] || cc -O2 -Wall -o "$out/rtpbench" "$src/rtpbench.c" -lm
[ -x "$out/crelay" ] || cc -O2 -Wall -o "$out/crelay" "$src/crelay.c"
# One process: rtpbench measures the CPU of the pid it is given.
PY_RELAY_ARGS=(-f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null --workers 1)
CRELAY_ARGS=(-s 127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000)

bench_namespaces=()
bench_cleanup() {
  for name in "${bench_namespaces[@]}"; do ip netns del "$name" 2>/dev/null || true; done
}
trap bench_cleanup EXIT
new_ns() {  # NAME: a network namespace with lo up, deleted at exit
  ip netns add "$1"
  bench_namespaces+=("$1")
  ip netns exec "$1" ip link set lo up
}
