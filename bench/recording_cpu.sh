#!/usr/bin/env bash
# Relay CPU per packet with recording off and on (-a: every session, both
# directions), against the crelay baseline, all in the same run.
# Usage: bench/recording_cpu.sh [SESSIONS] [ROUNDS]
# Needs root (network namespace) and ../shared/bench (or BENCH_SRC) for the tools.
source "$(dirname "$0")/common.sh"
n=${1:-200}; rounds=${2:-3}
rec=$(mktemp -d /tmp/recbench.XXXXXX)
ns=recbench$$; new_ns $ns
trap 'bench_cleanup; rm -rf "$rec"' EXIT
run() {  # name cmd...
  local name=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n "$n" -t ${BENCH_T:-6} -p $pid -T "$name" \
    || echo "{\"tag\":\"$name\",\"error\":\"rtpbench failed\"}"
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$rec"/*
  sleep 0.5
}
for r in $(seq "$rounds"); do
  run crelay "$out/crelay" "${CRELAY_ARGS[@]}"
  run rec-off "$rtpproxy" "${PY_RELAY_ARGS[@]}"
  run rec-adhoc "$rtpproxy" "${PY_RELAY_ARGS[@]}" -a -r "$rec"
  run rec-pcap "$rtpproxy" "${PY_RELAY_ARGS[@]}" -a -P -r "$rec"
done
