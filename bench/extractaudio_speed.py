#!/usr/bin/env python3
"""extractaudio speed: a one-hour two-party G.711 call and a 5-second one.

Usage: bench/extractaudio_speed.py [MINUTES] [ROUNDS] [--before DIR] [--short-runs N]

Writes a MINUTES-long two-party call (PCMU one way, PCMA the other, 20 ms
packets, with the daemon's own ad hoc writer) and a 5-second call into a
temporary directory, then times, alternating, ROUNDS times each:

  * extractaudio -s -D pcm_16 (stereo, plain PCM: the decoding and mixing work)
  * extractaudio with the default output (mono WAV, GSM 6.10: libsndfile's encoder)
  * baseline: sox decoding the same two G.711 streams (headerless µ-law and
    A-law, no RTP) and mixing them into one WAV: the C cost of the audio alone

and, --short-runs times (default 21), extractaudio on the 5-second call (wall
time of the whole command: start-up included, as in a batch of thousands).
With --before DIR the same commands run from another checkout of the tree
(DIR/tools/extractaudio.py with PYTHONPATH=DIR), interleaved with these, so
a before/after pair is measured in one run on the same load.
Prints median seconds, scaled to one hour of call, and the ratio to sox.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from rtpproxy_py.config import BindAddress  # noqa: E402
from rtpproxy_py.media import codecs  # noqa: E402
from rtpproxy_py.media.recorder import AdhocFormat  # noqa: E402
from rtpproxy_py.session import Session  # noqa: E402

T0 = 1700000000.0


def write_side(path, raw_path, pt, freq, minutes, ssrc):
    import socket
    session = Session("c", "f", 0.0, 60)
    stream = session.rtp[1]
    stream.local, stream.port = BindAddress(socket.AF_INET, "127.0.0.1"), 30000
    codec = codecs.get_codec(pt)
    packets = int(minutes * 60 * 50)
    t = np.arange(160 * 50 * 60) / 8000                       # one minute, repeated
    minute = codec.encode((6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16))
    fmt = AdhocFormat()
    with open(path, "wb") as out, open(raw_path, "wb") as raw:
        for start in range(0, packets, 3000):
            batch = []
            for i in range(start, min(start + 3000, packets)):
                payload = minute[(i % 3000) * 160:(i % 3000 + 1) * 160]
                header = bytes([0x80, pt]) + (i & 0xFFFF).to_bytes(2, "big") + \
                    ((160 * i) & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
                batch.append((header + payload, ("127.0.0.2", 4000), stream, T0 + 0.02 * i))
                raw.write(payload)
            out.write(fmt.encode(batch, 0.0))


def timed(cmd, env=None):
    """(wall seconds, CPU seconds: user + system of the command)."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    import argparse
    parser = argparse.ArgumentParser(description="extractaudio speed")
    parser.add_argument("minutes", nargs="?", type=float, default=60)
    parser.add_argument("rounds", nargs="?", type=int, default=3)
    parser.add_argument("--before", help="another checkout of the tree to time alongside")
    parser.add_argument("--short-runs", type=int, default=21)
    args = parser.parse_args()
    sox = shutil.which("sox")
    if sox is None:
        sys.exit("bench/extractaudio_speed.py: the baseline needs sox (apt-get install sox).")
    extractaudio = os.path.join(TOP, ".venv", "bin", "extractaudio")
    if not os.path.exists(extractaudio):
        extractaudio = shutil.which("extractaudio")
    builds = [("", [extractaudio], None)]
    if args.before:
        before = os.path.abspath(args.before)
        builds.append((" [before]", [sys.executable, os.path.join(before, "tools", "extractaudio.py")],
                       dict(os.environ, PYTHONPATH=before)))
    tmp = tempfile.mkdtemp(prefix="eabench-")
    try:
        prefix = os.path.join(tmp, "call=tag")
        write_side(prefix + ".o.rtp", os.path.join(tmp, "o.ul"), 0, 440, args.minutes, 0x1111)
        write_side(prefix + ".a.rtp", os.path.join(tmp, "a.al"), 8, 1000, args.minutes, 0x2222)
        short = os.path.join(tmp, "short=tag")
        write_side(short + ".o.rtp", os.path.join(tmp, "so.ul"), 0, 440, 5 / 60, 0x1111)
        write_side(short + ".a.rtp", os.path.join(tmp, "sa.al"), 8, 1000, 5 / 60, 0x2222)
        runs = {}
        for label, cmd, env in builds:
            runs["extractaudio -s -D pcm_16" + label] = (
                cmd + ["-s", "-D", "pcm_16", prefix, os.path.join(tmp, "s.wav")], env)
            runs["extractaudio (mono gsm610)" + label] = (
                cmd + [prefix, os.path.join(tmp, "m.wav")], env)
        runs["sox baseline"] = ([sox, "-m", "-t", "ul", "-r", "8000", "-c", "1", os.path.join(tmp, "o.ul"),
                                 "-t", "al", "-r", "8000", "-c", "1", os.path.join(tmp, "a.al"),
                                 "-b", "16", os.path.join(tmp, "sox.wav")], None)
        load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, (cmd, env) in runs.items():
                times[name].append(timed(cmd, env))
        short_times = {label: [] for label, _, _ in builds}
        for _ in range(args.short_runs):
            for label, cmd, env in builds:
                short_times[label].append(timed(cmd + [short, os.path.join(tmp, "short.wav")], env))
        def medians(values):
            return (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))

        base = medians(times["sox baseline"])[0]
        scale = 60.0 / args.minutes
        print("recording: %g min two-party G.711 call, %.1f MB per side; %d rounds, medians; "
              "load average before: %s" % (args.minutes, os.path.getsize(prefix + ".o.rtp") / 1e6,
                                           args.rounds, load))
        for name, values in times.items():
            wall, cpu = medians(values)
            print("%-37s wall %6.2f s (cpu %5.2f s) -> %6.2f s per hour of call  (%.1fx sox)" % (
                name, wall, cpu, wall * scale, wall / base))
        for label, values in short_times.items():
            wall, cpu = medians(values)
            print("%-37s wall %6.3f s (cpu %5.3f s), 5-second call, default output, %d runs" % (
                "extractaudio, 5 s" + label, wall, cpu, len(values)))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
