#!/usr/bin/env bash
# Relay CPU per packet with RTP analysis off (--no_rtp_analysis) and on
# (the default), measured at the same time: two relays, each in its own
# network namespace, both pinned to core 1, each loaded by its own rtpbench
# (pinned to core 0), so whatever else the shared machine does hits both.
# Usage: bench/analysis_ab.sh [SESSIONS] [ROUNDS] [extra rtpproxy args...]
# Needs root and ../shared/bench (or BENCH_SRC). Prints rtpbench's JSON lines
# (tags off and on); bench/summarize_tags.py --base off turns them into ratios.
# Steps last 30 s (BENCH_T) so that every stream settles its fast-path run
# (every 1024 packets, about 20 s) inside the measured window.
source "$(dirname "$0")/common.sh"
n=${1:-200}; rounds=${2:-10}; shift $(( $# > 2 ? 2 : $# )) || true
a=rtpab$$a; b=rtpab$$b; new_ns $a; new_ns $b
for r in $(seq "$rounds"); do
  echo '{"round_start":'$r'}'
  ip netns exec $a taskset -c 1 $rtpproxy "${PY_RELAY_ARGS[@]}" --no_rtp_analysis "$@" & pa=$!
  ip netns exec $b taskset -c 1 $rtpproxy "${PY_RELAY_ARGS[@]}" --rtp_analysis "$@" & pb=$!
  sleep 1.5
  ip netns exec $a taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n "$n" -t ${BENCH_T:-30} -p $pa -T off & ga=$!
  ip netns exec $b taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n "$n" -t ${BENCH_T:-30} -p $pb -T on & gb=$!
  wait $ga || echo "rtpbench off failed" >&2
  wait $gb || echo "rtpbench on failed" >&2
  kill $pa $pb; wait $pa $pb 2>/dev/null || true
  sleep 0.5
done
