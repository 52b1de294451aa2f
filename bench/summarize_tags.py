#!/usr/bin/env python3
"""Summarize rtpbench JSON lines by tag, round by round: CPU per packet of
each tag, its ratio to the first tag of the round (or to --base TAG), and
the medians over rounds. A round starts at each line tagged crelay, or at a
{"round_start": N} line."""
import argparse
import json
import statistics
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--base", default="crelay", help="the tag the others are divided by")
args = parser.parse_args()
rows = [json.loads(line) for line in sys.stdin if line.startswith("{")]
rounds, current = [], None
for row in rows:
    if "round_start" in row:
        current = None
        continue
    if row.get("tag") == "crelay" or current is None:
        current = {}
        rounds.append(current)
    current[row.get("tag")] = row
tags = []
for r in rounds:
    tags += [t for t in r if t not in tags]
ratios = {t: [] for t in tags}
for i, r in enumerate(rounds, 1):
    base = r.get(args.base)
    parts = []
    for tag in tags:
        if tag in r:
            us = r[tag]["relay_us_per_pkt"]
            text = "%s %.3f us/pkt (loss %.3f%%, p99 %d us)" % (tag, us, r[tag]["loss_pct"], r[tag]["lat_us"]["p99"])
            if base is not None:
                ratios[tag].append(us / base["relay_us_per_pkt"])
                text += " x%.3f" % ratios[tag][-1]
            parts.append(text)
    print("round %d: %s" % (i, "; ".join(parts)))
for tag in tags:
    values = [r[tag]["relay_us_per_pkt"] for r in rounds if tag in r]
    if ratios[tag]:
        print("median %s: %.3f us/pkt, ratio to %s %.3f (of %d rounds)" % (
            tag, statistics.median(values), args.base, statistics.median(ratios[tag]), len(ratios[tag])))
