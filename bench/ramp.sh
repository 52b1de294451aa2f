#!/usr/bin/env bash
# Largest session count each relay holds on one core with <= 0.1 % loss and
# p99 <= 20 ms (rtpbench -R), crelay and rtpproxy-py in the same run.
# Usage: bench/ramp.sh [STEPS] [extra rtpproxy args...]   (root; netns)
source "$(dirname "$0")/common.sh"
steps=${1:-400,800,1200,1600,2000,2400}; shift $(( $# > 0 ? 1 : 0 )) || true
ns=rtpramp$$; new_ns $ns
run() {
  local name=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -R "$steps" -t ${BENCH_T:-4} -p $pid -T "$name"
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
run crelay "$out/crelay" "${CRELAY_ARGS[@]}"
run rtpproxy-py "$rtpproxy" "${PY_RELAY_ARGS[@]}" "$@"
