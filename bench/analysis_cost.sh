#!/usr/bin/env bash
# Relay CPU per packet with RTP analysis off (--no_rtp_analysis) and on
# (the default), crelay as the floor, alternating in every round.
# Usage: bench/analysis_cost.sh [SESSIONS] [ROUNDS] [extra rtpproxy args...]
# Needs root (network namespace) and ../shared/bench (or BENCH_SRC) for the tools.
# Prints rtpbench's JSON lines; bench/summarize_tags.py --base off turns them
# into ratios. Steps last 30 s (BENCH_T) so that every stream settles its
# fast-path run (every 1024 packets, about 20 s) inside the measured window.
source "$(dirname "$0")/common.sh"
n=${1:-200}; rounds=${2:-5}; shift $(( $# > 2 ? 2 : $# )) || true
ns=rtpbench$$; new_ns $ns
run() {  # tag cmd...
  local tag=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n "$n" -t ${BENCH_T:-30} -p $pid -T "$tag" || echo "rtpbench failed for $tag" >&2
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
for r in $(seq "$rounds"); do
  run crelay "$out/crelay" "${CRELAY_ARGS[@]}"
  if [ $((r % 2)) = 1 ]; then
    run off $rtpproxy "${PY_RELAY_ARGS[@]}" --no_rtp_analysis "$@"; run on $rtpproxy "${PY_RELAY_ARGS[@]}" --rtp_analysis "$@"
  else
    run on $rtpproxy "${PY_RELAY_ARGS[@]}" --rtp_analysis "$@"; run off $rtpproxy "${PY_RELAY_ARGS[@]}" --no_rtp_analysis "$@"
  fi
done
