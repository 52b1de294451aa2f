#!/usr/bin/env bash
# Prompt playback benchmark: spacing and CPU per played packet of N concurrent
# 20 ms playbacks, next to rtpbench's CPU per relayed packet for crelay and
# rtpproxy-py at the same packet rate (N/2 calls = N packets per 20 ms), same run.
# Usage: bench/playback.sh [PLAYBACKS] [ROUNDS]   (root: uses a network namespace)
source "$(dirname "$0")/common.sh"
n=${1:-500}; rounds=${2:-3}
py=$top/.venv/bin/python
# a 1 s prompt (1 kHz tone) through makeann
"$py" -c "
import numpy as np
t = np.arange(8000) / 8000
open('$out/tone.sln', 'wb').write(np.round(np.sin(2 * np.pi * 1000 * t) * 9830).astype('<i2').tobytes())"
"$py" "$top/tools/makeann.py" "$out/tone.sln" "$out/prompt"
ns=rtpplay$$; new_ns $ns
relayed() {  # name cmd...: rtpbench at n/2 calls = n packets per 20 ms each way
  local name=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n $((n / 2)) -t 6 -p $pid -T "$name"
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
for r in $(seq "$rounds"); do
  relayed crelay "$out/crelay" "${CRELAY_ARGS[@]}"
  relayed rtpproxy-py "$rtpproxy" "${PY_RELAY_ARGS[@]}"
  ip netns exec $ns taskset -c 1 "$rtpproxy" "${PY_RELAY_ARGS[@]}" >/dev/null & pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$py" "$here/playback_spacing.py" $pid "$out/prompt" "$n" 10 || true
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
done
