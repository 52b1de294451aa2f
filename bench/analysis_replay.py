#!/usr/bin/env python3
"""The packet path's Python cost with RTP analysis on and off, without sockets.

Replays what the relay's twin reader does per packet (Stream.on_latched_packet,
and the analyzer when on) for SESSIONS two-party calls interleaved like
rtpbench's load: every stream gets a 20 ms PCMU packet per round, the clock
advances in 2 ms poll batches. Prints the CPU time per packet of each variant
(medians of ROUNDS alternating rounds) and the difference. The sockets'
share of the real cost is in BENCHMARKS.md (bench/analysis_cost.sh).

Usage: bench/analysis_replay.py [SESSIONS] [ROUNDS] [SECONDS_OF_TRAFFIC]
       bench/analysis_replay.py on|off SESSIONS SECONDS   (one run, for callgrind;
       bench/analysis_instructions.sh turns two of them into instructions per packet)
"""
import statistics
import struct
import sys
import time

from rtpproxy_py.media.analyzer import RtpAnalyzer
from rtpproxy_py.session import Session


def build(sessions, analysis):
    streams = []
    for n in range(sessions):
        s = Session("c%d" % n, "f", 0.0, 60)
        for k in (0, 1):
            st = s.rtp[k]
            st.port = 20000 + 2 * k
            st.rem_addr = ("127.0.0.%d" % (2 + k), 30000 + n)
            st.latched = True
            st.recheck_at = float("inf")
            st.refresh_target()
            if analysis:
                st.set_analyzer(RtpAnalyzer())     # (analyzer is a read-only property)
            streams.append(st)
    return streams


def packets(streams, count):
    """count packets per stream, as the rtpbench generator makes them."""
    out = []
    for i, _ in enumerate(streams):
        ssrc = 0x10000 + i
        out.append([struct.pack("!BBHII", 0x80, (0x80 if k == 0 else 0), k & 0xFFFF, 160 * k, ssrc)
                    + bytes(160) for k in range(count)])
    return out


def run(sessions, seconds, analysis):
    streams = build(sessions, analysis)
    count = int(seconds * 50)
    pkts = packets(streams, count)
    calls = [st.on_latched_packet for st in streams]
    per_batch = max(1, len(streams) // 10)          # 2 ms of a 20 ms cycle
    now = 1000.0
    start = time.process_time()
    for k in range(count):
        for i, call in enumerate(calls):
            if i % per_batch == 0:
                now += 0.002
            call(pkts[i][k], now)
        if analysis and k % 50 == 49:
            for st in streams:                      # the once-a-second housekeeping
                st.analyzer.tidy()
    if analysis:
        for st in streams:                          # what a query would settle
            st.analyzer.settle()
    elapsed = time.process_time() - start
    return elapsed / (count * len(streams)) * 1e6


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("on", "off"):
        # one variant once, for an instruction count: valgrind --tool=callgrind
        run(int(sys.argv[2]), float(sys.argv[3]), sys.argv[1] == "on")
        return
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    off, on = [], []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for analysis in order:
            (on if analysis else off).append(run(sessions, seconds, analysis))
    diff = [b - a for a, b in zip(off, on)]
    print("sessions=%d rounds=%d packets/round=%d" % (sessions, rounds, int(seconds * 50) * 2 * sessions))
    print("off: median %.3f us/pkt  %s" % (statistics.median(off), " ".join("%.3f" % x for x in off)))
    print("on:  median %.3f us/pkt  %s" % (statistics.median(on), " ".join("%.3f" % x for x in on)))
    print("analysis adds: median %.3f us/pkt" % statistics.median(diff))


if __name__ == "__main__":
    main()
