#!/usr/bin/env python3
"""Summarize rtpbench JSON lines from relay_vs_crelay.sh: per-round ratio and medians."""
import json
import statistics
import sys

rows = [json.loads(line) for line in sys.stdin if line.startswith("{") and '"n"' in line]
crelay = [r for r in rows if r.get("tag") == "crelay"]
ours = [r for r in rows if r.get("tag") != "crelay"]
for c, o in zip(crelay, ours):
    print("n=%d crelay %.3f us/pkt  rtpproxy-py %.3f us/pkt  ratio %.2f  loss %.4f%%  p99 %d us" % (
        o["n"], c["relay_us_per_pkt"], o["relay_us_per_pkt"],
        o["relay_us_per_pkt"] / c["relay_us_per_pkt"], o["loss_pct"], o["lat_us"]["p99"]))
if crelay and ours:
    ratios = [o["relay_us_per_pkt"] / c["relay_us_per_pkt"] for c, o in zip(crelay, ours)]
    print("median: crelay %.3f, rtpproxy-py %.3f, ratio %.2f (of %d rounds)" % (
        statistics.median(r["relay_us_per_pkt"] for r in crelay),
        statistics.median(r["relay_us_per_pkt"] for r in ours),
        statistics.median(ratios), len(ratios)))
