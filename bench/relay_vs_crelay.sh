#!/usr/bin/env bash
# Relay CPU per packet of rtpproxy-py against the crelay baseline, same run.
# Usage: bench/relay_vs_crelay.sh [SESSIONS] [ROUNDS] [extra rtpproxy args...]
# Needs root (network namespace) and ../shared/bench (or BENCH_SRC) for the tools.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
src=${BENCH_SRC:-$top/../shared/bench}
out=${BENCH_OUT:-$here/out}
n=${1:-200}; rounds=${2:-3}; shift $(( $# > 2 ? 2 : $# )) || true
mkdir -p "$out"
[ -x "$out/rtpbench" ] || cc -O2 -Wall -o "$out/rtpbench" "$src/rtpbench.c" -lm
[ -x "$out/crelay" ] || cc -O2 -Wall -o "$out/crelay" "$src/crelay.c"
rtpproxy=${RTPPROXY:-$top/.venv/bin/rtpproxy}
ns=rtpbench$$
ip netns add $ns; trap 'ip netns del $ns 2>/dev/null || true' EXIT
ip netns exec $ns ip link set lo up
run() {  # name cmd...
  local name=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n "$n" -t ${BENCH_T:-6} -p $pid -T "$name"
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
for r in $(seq "$rounds"); do
  run crelay "$out/crelay" -s 127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000
  run rtpproxy-py "$rtpproxy" -f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null --workers 1 "$@"
done
