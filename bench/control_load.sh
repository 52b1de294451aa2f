#!/usr/bin/env bash
# Issue 18 points 3-4 at full size (BENCHMARKS.md "Control under overload"), in a
# private network namespace; the relay on core 1, the clients on core 0. Root only.
#
#   bench/control_load.sh gcost [WORKERS] [COUNTS]    G round trip at 1000,5000,10000 sessions
#   bench/control_load.sh flood [WORKERS] [RATE] [SECONDS]
#                         capacity without flood, then 20,000 commands/s for 10 s over UDP
#                         (U, D and junk) beside a cunix: and a unix: client, and
#                         rtpbench relaying MEDIA_CALLS (default 50; 0: none) calls
#   bench/control_load.sh gburst [WORKERS] [SESSIONS] [RATE] [SECONDS]
#                         5,000 idle sessions, rtpbench relaying 200 calls for 25 s, and
#                         500 G/s for 5 s from 5 s into it: media loss, G answered/shed
#
# WORKERS: a number for --workers (default 2: the front end and two workers, on both cores).
# RTPPROXY=CMD runs another build (e.g. main's .venv/bin/rtpproxy) for comparison.
source "$(dirname "$0")/common.sh"
python=${PYTHON:-$top/.venv/bin/python}
ns=ctlload$$; new_ns $ns
tmp=$(mktemp -d); PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; bench_cleanup; rm -rf "$tmp"' EXIT
port=22222
mode=${1:-flood}; shift || true
workers=${1:-2}; shift || true
cpus=1; [ "$workers" != 1 ] && cpus=0,1

# open_files SESSIONS: sets LIMIT, the -L for SESSIONS sessions (4 sockets each: both
# legs' RTP and RTCP), rtpbench's 200 calls and a margin. Above the hard limit the
# relay refuses to start (as upstream): raise it first when allowed (root with
# CAP_SYS_RESOURCE), else ask for the hard limit and say so.
open_files() {
  local hard
  LIMIT=$(( $1 * 4 + 200 * 4 + 1024 ))
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$LIMIT" -gt "$hard" ]; then
    if ulimit -Hn "$LIMIT" 2>/dev/null; then
      echo "control_load.sh: hard open-files limit raised from $hard to $LIMIT" >&2
    else
      echo "control_load.sh: -L $hard, the hard open-files limit (ulimit -Hn), not the $LIMIT" \
        "wanted for $1 sessions; it may not be raised here" >&2
      LIMIT=$hard
    fi
  fi
}

start() {
  ip netns exec $ns taskset -c $cpus "$rtpproxy" -f -F -p /dev/null -d ERR -l 127.0.0.1 \
    -m 20000 -M 60000 --workers "$workers" -s udp:127.0.0.1:$port \
    -s cunix:$tmp/c.sock -s unix:$tmp/u.sock "$@" 2> >(tee $tmp/relay.err >&2) & PID=$!
  for _ in $(seq 100); do
    [ -S $tmp/u.sock ] && break
    kill -0 $PID 2>/dev/null || break
    sleep 0.1
  done
  sleep 1
  if ! kill -0 $PID 2>/dev/null; then   # refused to start: its message, not a client waiting forever
    local rc=0; wait $PID || rc=$?; PID=
    sleep 0.2                           # (tee's last line)
    echo "control_load.sh: the relay did not start (exit $rc): $(cat $tmp/relay.err)" >&2
    exit 1
  fi
  if [ ! -S $tmp/u.sock ]; then
    echo "control_load.sh: the relay did not open its control sockets in 10 s" >&2
    exit 1
  fi
  PIDS=$(echo $PID $(cat /proc/$PID/task/*/children 2>/dev/null) | tr ' ' ',')
}
stop() { kill $PID; wait $PID 2>/dev/null || true; PID=; }

case $mode in
gcost)
  counts=${1:-1000,5000,10000}
  open_files "${counts##*,}"
  start -L "$LIMIT"
  ip netns exec $ns taskset -c 0 "$python" "$here/control_load.py" gcost $port "$counts"
  stop ;;
flood)
  start
  # media beside it: MEDIA_CALLS calls, counted over the flood (after the 6.5 s capacity run)
  M=
  if [ "${MEDIA_CALLS:-50}" != 0 ]; then
    ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:$port -n "${MEDIA_CALLS:-50}" \
      -w 6 -t "${2:-10}" -p "$PIDS" -T "workers$workers" & M=$!
  fi
  ip netns exec $ns taskset -c 0 "$python" "$here/control_load.py" flood $port $tmp/c.sock \
    $tmp/u.sock "${1:-20000}" "${2:-10}"
  [ -z "$M" ] || wait $M || true
  stop ;;
gburst)
  sessions=${1:-5000}; rate=${2:-500}; seconds=${3:-5}
  open_files "$sessions"
  start -L "$LIMIT"
  BURST_DELAY=8 ip netns exec $ns taskset -c 0 "$python" "$here/control_load.py" gburst $port \
    "$sessions" "$rate" "$seconds" & B=$!
  # rtpbench: sessions set up while the idle ones are made, 2 s warm-up, 25 s counted
  sleep 3
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c 127.0.0.1:$port -n 200 -w 2 -t 25 \
    -p "$PIDS" -T "workers$workers" || true
  wait $B
  stop ;;
*) sed -n 2,14p "$0"; exit 2 ;;
esac
