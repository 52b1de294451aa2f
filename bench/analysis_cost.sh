#!/usr/bin/env bash
# Relay CPU per packet with RTP analysis off (the default) and on
# (--rtp_analysis), crelay as the floor, alternating in every round.
# Usage: bench/analysis_cost.sh [SESSIONS] [ROUNDS] [extra rtpproxy args...]
# Needs root (network namespace) and ../shared/bench (or BENCH_SRC) for the tools.
# Prints rtpbench's JSON lines; bench/summarize_tags.py --base off turns them
# into ratios. Steps last 30 s (BENCH_T) so that every stream settles its
# fast-path run (every 1024 packets, about 20 s) inside the measured window.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
src=${BENCH_SRC:-$top/../shared/bench}
out=${BENCH_OUT:-$here/out}
n=${1:-200}; rounds=${2:-5}; shift $(( $# > 2 ? 2 : $# )) || true
mkdir -p "$out"
[ -x "$out/rtpbench" ] || cc -O2 -Wall -o "$out/rtpbench" "$src/rtpbench.c" -lm
[ -x "$out/crelay" ] || cc -O2 -Wall -o "$out/crelay" "$src/crelay.c"
rtpproxy=${RTPPROXY:-$top/.venv/bin/rtpproxy}
ns=rtpbench$$
ip netns add $ns; trap 'ip netns del $ns 2>/dev/null || true' EXIT
ip netns exec $ns ip link set lo up
run() {  # tag cmd...
  local tag=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n "$n" -t ${BENCH_T:-30} -p $pid -T "$tag" || echo "rtpbench failed for $tag" >&2
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
py="$rtpproxy -f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null --workers 1"
for r in $(seq "$rounds"); do
  run crelay "$out/crelay" -s 127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000
  if [ $((r % 2)) = 1 ]; then
    run off $py "$@"; run on $py --rtp_analysis "$@"
  else
    run on $py --rtp_analysis "$@"; run off $py "$@"
  fi
done
