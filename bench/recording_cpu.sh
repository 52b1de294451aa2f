#!/usr/bin/env bash
# Relay CPU per packet with recording off and on (-a: every session, both
# directions), against the crelay baseline, all in the same run.
# Usage: bench/recording_cpu.sh [SESSIONS] [ROUNDS]
# Needs root (network namespace) and ../shared/bench (or BENCH_SRC) for the tools.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
src=${BENCH_SRC:-$top/../shared/bench}
out=${BENCH_OUT:-$here/out}
n=${1:-200}; rounds=${2:-3}
mkdir -p "$out"
[ -x "$out/rtpbench" ] || cc -O2 -Wall -o "$out/rtpbench" "$src/rtpbench.c" -lm
[ -x "$out/crelay" ] || cc -O2 -Wall -o "$out/crelay" "$src/crelay.c"
rtpproxy=${RTPPROXY:-$top/.venv/bin/rtpproxy}
rec=$(mktemp -d /tmp/recbench.XXXXXX)
ns=recbench$$
ip netns add $ns; trap 'ip netns del $ns 2>/dev/null || true; rm -rf "$rec"' EXIT
ip netns exec $ns ip link set lo up
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
common=(-f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null --workers 1)
for r in $(seq "$rounds"); do
  run crelay "$out/crelay" -s 127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000
  run rec-off "$rtpproxy" "${common[@]}"
  run rec-adhoc "$rtpproxy" "${common[@]}" -a -r "$rec"
  run rec-pcap "$rtpproxy" "${common[@]}" -a -P -r "$rec"
done
