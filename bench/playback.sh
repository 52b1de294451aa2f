#!/usr/bin/env bash
# Prompt playback benchmark: spacing and CPU per played packet of N concurrent
# 20 ms playbacks, next to rtpbench's CPU per relayed packet for crelay and
# rtpproxy-py at the same packet rate (N/2 calls = N packets per 20 ms), same run.
# Usage: bench/playback.sh [PLAYBACKS] [ROUNDS]   (root: uses a network namespace)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
src=${BENCH_SRC:-$top/../shared/bench}
[ -d "$src" ] || src=$top/../../shared/bench    # from a worktree under /work/wt
out=${BENCH_OUT:-$here/out}
n=${1:-500}; rounds=${2:-3}
mkdir -p "$out"
[ -x "$out/rtpbench" ] || cc -O2 -Wall -o "$out/rtpbench" "$src/rtpbench.c" -lm
[ -x "$out/crelay" ] || cc -O2 -Wall -o "$out/crelay" "$src/crelay.c"
py=$top/.venv/bin/python
rtpproxy=${RTPPROXY:-$top/.venv/bin/rtpproxy}
# a 1 s prompt (1 kHz tone) through makeann
"$py" -c "
import numpy as np
t = np.arange(8000) / 8000
open('$out/tone.sln', 'wb').write(np.round(np.sin(2 * np.pi * 1000 * t) * 9830).astype('<i2').tobytes())"
"$py" "$top/tools/makeann.py" "$out/tone.sln" "$out/prompt"
ns=rtpplay$$
ip netns add $ns; trap 'ip netns del $ns 2>/dev/null || true' EXIT
ip netns exec $ns ip link set lo up
relayed() {  # name cmd...: rtpbench at n/2 calls = n packets per 20 ms each way
  local name=$1; shift
  ip netns exec $ns taskset -c 1 "$@" & local pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:22222 -n $((n / 2)) -t 6 -p $pid -T "$name"
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
for r in $(seq "$rounds"); do
  relayed crelay "$out/crelay" -s 127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000
  relayed rtpproxy-py "$rtpproxy" -f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null --workers 1
  ip netns exec $ns taskset -c 1 "$rtpproxy" -f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null --workers 1 >/dev/null & pid=$!
  sleep 1.5
  ip netns exec $ns taskset -c 0 "$py" "$here/playback_spacing.py" $pid "$out/prompt" "$n" 10 || true
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
done
