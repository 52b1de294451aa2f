#!/usr/bin/env python3
"""Packet spacing and relay CPU of N concurrent prompt playbacks (20 ms packets).

Run inside a private network namespace (bench/playback.sh does that), against a
running rtpproxy-py whose control socket is udp:127.0.0.1:22222 and pid PID:

    bench/playback_spacing.py PID PROMPT_BASE [SESSIONS] [SECONDS]

Sets up SESSIONS calls with ``Uc0`` (the caller offers PCMU) and ``Lz20`` (20 ms
prompt packets towards the caller), starts ``P-1 ... session`` on every one, and
receives all prompt packets on one socket with kernel receive timestamps
(SO_TIMESTAMPNS, so the reader's own scheduling does not count; it drains in
batches every 2 ms so that waking it up is not charged to the relay's sends). Prints one JSON
line: gaps between consecutive packets of each stream (deviation from 20 ms,
median / p99 / p99.9 / max), packets played, and relay CPU per played packet
(utime+stime of /proc/PID/stat over the counted window).
"""

import json
import os
import socket
import struct
import sys
import time

CTL = ("127.0.0.1", 22222)
CALLER = ("127.0.0.2", 0)
CALLEE = ("127.0.0.3", 40000)
PTIME = 0.020
WARMUP = 1.0
SO_RCVBUFFORCE = 33          # Linux values; not exported by the socket module
SO_TIMESTAMPNS = 35


def command(ctl, text, seq=[0]):
    seq[0] += 1
    cookie = b"b%d_%d" % (os.getpid(), seq[0])     # unique: the relay caches replies
    ctl.sendto(cookie + b" " + text.encode(), CTL)
    while True:
        data = ctl.recv(4096)
        if data.startswith(cookie + b" "):
            return data[len(cookie) + 1:].decode().strip()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    pid, base = int(sys.argv[1]), sys.argv[2]
    sessions = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.settimeout(5)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rx.bind(CALLER)
    caller = rx.getsockname()
    for i in range(sessions):
        command(ctl, "Uc0 pb%d %s %d f%d" % (i, caller[0], caller[1], i))
        command(ctl, "Lz20 pb%d %s %d f%d t%d" % (i, CALLEE[0], CALLEE[1], i, i))
    for i in range(sessions):
        assert command(ctl, "P-1 pb%d %s session f%d t%d" % (i, base, i, i)) == "0"
    rx.settimeout(0.5)
    start = time.monotonic()
    while time.monotonic() - start < WARMUP:       # let every player get going
        rx.recvmsg(2048, 256)
    last = {}
    gaps = []
    count = 0
    played0 = int(command(ctl, "G npkts_played"))
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    rx.setblocking(False)
    while time.monotonic() - t0 < seconds:
        try:
            data, anc, _, src = rx.recvmsg(2048, 256)
        except BlockingIOError:
            # drain in batches: fewer receiver wake-ups charged to the relay's sends
            # (the kernel time stamps keep the arrival times exact)
            time.sleep(0.002)
            continue
        stamp = None
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                stamp = sec + nsec / 1e9
        count += 1
        prev = last.get(src[1])
        if prev is not None:
            gaps.append(stamp - prev)
        last[src[1]] = stamp
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    played = int(command(ctl, "G npkts_played")) - played0
    for i in range(sessions):
        command(ctl, "D pb%d f%d t%d" % (i, i, i))
    dev = sorted(abs(g - PTIME) * 1000 for g in gaps)
    print(json.dumps({
        "sessions": sessions, "seconds": round(t1 - t0, 2), "received": count,
        "played": played, "expected": int(sessions * (t1 - t0) / PTIME),
        "gap_ms_median": round(sorted(gaps)[len(gaps) // 2] * 1000, 3),
        "dev_ms": {"median": round(percentile(dev, 0.5), 3), "p99": round(percentile(dev, 0.99), 3),
                   "p999": round(percentile(dev, 0.999), 3), "max": round(dev[-1], 3)},
        "relay_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "relay_us_per_played_pkt": round(1e6 * (cpu1 - cpu0) / max(played, 1), 2),
    }))


if __name__ == "__main__":
    main()
