#!/usr/bin/env bash
# Relay CPU per packet of rtpproxy-py against the crelay baseline, same run.
# Usage: bench/relay_vs_crelay.sh [SESSIONS] [ROUNDS] [extra rtpproxy args...]
# Needs root (network namespace) and ../shared/bench (or BENCH_SRC) for the tools.
source "$(dirname "$0")/common.sh"
n=${1:-200}; rounds=${2:-3}; shift $(( $# > 2 ? 2 : $# )) || true
ns=rtpbench$$; new_ns $ns
run() {  # name cmd...
  local name=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n "$n" -t ${BENCH_T:-6} -p $pid -T "$name"
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
for r in $(seq "$rounds"); do
  run crelay "$out/crelay" "${CRELAY_ARGS[@]}"
  run rtpproxy-py "$rtpproxy" "${PY_RELAY_ARGS[@]}" "$@"
done
