#!/usr/bin/env python3
"""Summarize bench/scale.sh output (JSON lines on stdin): per round, each
relay against the crelay measured just before it; then medians and the spread
over rounds. Rounds start at each crelay line."""

import collections
import json
import statistics
import sys


def rounds(rows):
    current = None
    for row in rows:
        if row.get("tag") == "crelay":
            current = {"crelay": row}
            yield current
        elif current is not None:
            current[row.get("tag")] = row


def spread(values):
    return "median %s (min %s, max %s, %d rounds)" % (
        _fmt(statistics.median(values)), _fmt(min(values)), _fmt(max(values)), len(values))


def _fmt(value):
    return "%.3f" % value if isinstance(value, float) else str(value)


def main():
    rows = [json.loads(line) for line in sys.stdin if line.startswith("{")]
    cpu = collections.defaultdict(list)
    ramp = collections.defaultdict(list)
    control = collections.defaultdict(list)
    for r in list(rounds(rows)):
        base = r["crelay"]
        for tag, row in r.items():
            if "relay_us_per_pkt" in row:
                cpu[tag].append((row["relay_us_per_pkt"], row["relay_us_per_pkt"] / base["relay_us_per_pkt"],
                                 row["loss_pct"], row["lat_us"]["p99"], row["host_busy_cores"]))
            elif "ramp_max_ok_n" in row:
                ramp[tag].append(row["ramp_max_ok_n"])
            elif "calls_per_s" in row:
                control[tag].append((row["calls_per_s"], row["calls_per_s"] / base["calls_per_s"],
                                     row["lat_ms"]["p50"], row["lat_ms"]["p99"], row["relay_cpu_ms_per_call"]))
    for tag, values in cpu.items():
        n = next(row["n"] for row in rows if row.get("tag") == tag and "n" in row)
        print("%-12s n=%d  us/pkt %s" % (tag, n, spread([v[0] for v in values])))
        print("%-12s       x crelay %s" % ("", spread([v[1] for v in values])))
        print("%-12s       loss %% %s; p99 us %s; host busy cores %s" % (
            "", spread([v[2] for v in values]), spread([v[3] for v in values]),
            spread([v[4] for v in values])))
    for tag, values in ramp.items():
        print("%-12s sessions held: %s  (all: %s)" % (tag, spread(values), values))
    for tag, values in control.items():
        print("%-12s calls/s %s; x crelay %s" % (tag, spread([v[0] for v in values]),
                                                spread([v[1] for v in values])))
        print("%-12s       latency p50 ms %s; p99 ms %s; relay CPU ms/call %s" % (
            "", spread([v[2] for v in values]), spread([v[3] for v in values]),
            spread([v[4] for v in values])))


if __name__ == "__main__":
    main()
