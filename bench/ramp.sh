#!/usr/bin/env bash
# Largest session count each relay holds on one core with <= 0.1 % loss and
# p99 <= 20 ms (rtpbench -R), crelay and rtpproxy-py in the same run.
# Usage: bench/ramp.sh [STEPS] [extra rtpproxy args...]   (root; netns)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
src=${BENCH_SRC:-$top/../shared/bench}
out=${BENCH_OUT:-$here/out}
steps=${1:-400,800,1200,1600,2000,2400}; shift $(( $# > 0 ? 1 : 0 )) || true
mkdir -p "$out"
[ -x "$out/rtpbench" ] || cc -O2 -Wall -o "$out/rtpbench" "$src/rtpbench.c" -lm
[ -x "$out/crelay" ] || cc -O2 -Wall -o "$out/crelay" "$src/crelay.c"
rtpproxy=${RTPPROXY:-$top/.venv/bin/rtpproxy}
ns=rtpramp$$
ip netns add $ns; trap 'ip netns del $ns 2>/dev/null || true' EXIT
ip netns exec $ns ip link set lo up
run() {
  local name=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -R "$steps" -t ${BENCH_T:-4} -p $pid -T "$name"
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
run crelay "$out/crelay" -s 127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000
run rtpproxy-py "$rtpproxy" -f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null --workers 1 "$@"
