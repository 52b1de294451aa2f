#!/usr/bin/env bash
# Issue 10 benchmarks (BENCHMARKS.md "Scale"): rtpproxy-py against crelay in the same
# run, alternated, in a private network namespace. Root only.
#
#   bench/scale.sh cpu SESSIONS ROUNDS      relay CPU per packet, one core each
#                                           (OTHER_RTPPROXY=CMD adds another daemon, e.g. main's)
#   bench/scale.sh ramp ROUNDS [STEPS]      sessions held (loss <= 0.1 %, p99 <= 20 ms):
#                                           crelay and --workers 1 on core 1, then
#                                           --workers 2 on both cores (generator on core 0)
#   bench/scale.sh offload SESSIONS ROUNDS  CPU per packet: --kernel_offload, user space, crelay
#   bench/scale.sh ramp-offload ROUNDS [STEPS]  sessions held: crelay and --kernel_offload
#   bench/scale.sh control ROUNDS [SESSIONS] U+L+D per second and latency (bench/control_plane.py)
#
# Output: JSON lines on stdout (rtpbench's, control_plane.py's), tagged with the relay.
source "$(dirname "$0")/common.sh"
python=${PYTHON:-$top/.venv/bin/python}
ns=rtpscale$$; new_ns $ns
ip netns exec $ns sysctl -qw net.ipv4.ip_forward=1      # --kernel_offload checks it
ctl=127.0.0.1:22222
PY_ARGS=(-f -F -s udp:$ctl -l 127.0.0.1 -m 20000 -M 60000 -d ERR -p /dev/null)

start() {  # CPUS cmd...: start a relay pinned to CPUS; sets PID and PIDS (with its workers)
  local cpus=$1; shift
  ip netns exec $ns taskset -c "$cpus" "$@" & PID=$!
  sleep 2
  PIDS=$PID
  local kids
  kids=$(cat /proc/$PID/task/*/children 2>/dev/null | tr ' ' '\n' | grep . | paste -sd, || true)
  [ -n "$kids" ] && PIDS=$PID,$kids
  return 0
}
stop() { kill $PID; wait $PID 2>/dev/null || true; sleep 0.5; }
bench() {  # TAG rtpbench args...
  local tag=$1; shift
  ip netns exec $ns taskset -c 0 "$out/rtpbench" -c $ctl -p "$PIDS" -T "$tag" "$@" || true
}

mode=${1:-cpu}; shift || true
case $mode in
cpu)
  # OTHER_RTPPROXY=CMD: also run that daemon (e.g. main's) in each round, tagged "other"
  n=${1:-200}; rounds=${2:-5}
  for r in $(seq "$rounds"); do
    start 1 "$out/crelay" -s $ctl -l 127.0.0.1 -m 20000 -M 60000; bench crelay -n "$n" -t 6; stop
    start 1 "$rtpproxy" "${PY_ARGS[@]}" --workers 1; bench rtpproxy-py -n "$n" -t 6; stop
    if [ -n "${OTHER_RTPPROXY:-}" ]; then
      start 1 $OTHER_RTPPROXY "${PY_ARGS[@]}"; bench other -n "$n" -t 6; stop
    fi
  done ;;
ramp)
  rounds=${1:-3}; steps=${2:-400,800,1200,1600,2000,2400,2800}
  for r in $(seq "$rounds"); do
    start 1 "$out/crelay" -s $ctl -l 127.0.0.1 -m 20000 -M 60000; bench crelay -R "$steps" -t 3; stop
    start 1 "$rtpproxy" "${PY_ARGS[@]}" --workers 1; bench workers1 -R "$steps" -t 3; stop
    start 0,1 "$rtpproxy" "${PY_ARGS[@]}" --workers 2; bench workers2 -R "$steps" -t 3; stop
  done ;;
offload)
  n=${1:-200}; rounds=${2:-5}
  for r in $(seq "$rounds"); do
    # -k 0: a socket per party, so no two calls share a pair of party addresses
    start 1 "$out/crelay" -s $ctl -l 127.0.0.1 -m 20000 -M 60000; bench crelay -n "$n" -t 6 -k 0; stop
    start 1 "$rtpproxy" "${PY_ARGS[@]}" --workers 1; bench rtpproxy-py -n "$n" -t 6 -k 0; stop
    start 1 "$rtpproxy" "${PY_ARGS[@]}" --workers 1 --kernel_offload; bench offload -n "$n" -t 6 -k 0; stop
  done ;;
ramp-offload)
  rounds=${1:-2}; steps=${2:-400,800,1200,1600,2000,2400,2800}
  for r in $(seq "$rounds"); do
    start 1 "$out/crelay" -s $ctl -l 127.0.0.1 -m 20000 -M 60000; bench crelay -R "$steps" -t 3 -k 0; stop
    start 1 "$rtpproxy" "${PY_ARGS[@]}" --workers 1 --kernel_offload; bench offload -R "$steps" -t 3 -k 0; stop
  done ;;
control)
  rounds=${1:-3}; sessions=${2:-1000}
  cp() { ip netns exec $ns taskset -c 0 "$python" "$here/control_plane.py" $ctl -s "$sessions" -c 5000 -w 32 -p "$PIDS" -T "$1"; }
  for r in $(seq "$rounds"); do
    start 1 "$out/crelay" -s $ctl -l 127.0.0.1 -m 20000 -M 60000; cp crelay; stop
    start 1 "$rtpproxy" "${PY_ARGS[@]}" --workers 1; cp workers1; stop
    start 0,1 "$rtpproxy" "${PY_ARGS[@]}" --workers 2; cp workers2; stop
  done ;;
*) echo "usage: $0 cpu|ramp|offload|ramp-offload|control ..." >&2; exit 2 ;;
esac
