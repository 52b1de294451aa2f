#!/usr/bin/env python3
"""makeann speed on a 10-minute input, per codec, against a C baseline in the same run.

    bench/makeann_speed.py [MINUTES] [ROUNDS] [--before DIR]

Per codec: encoding 10 minutes of 8 kHz speech-like audio (tones and a sweep)
through rtpproxy_py.media.codecs, in makeann's 160-sample blocks. Baselines
measured in the same run: G.711 through the C encoders of Python's audioop,
GSM through sox (libgsm; needs `apt-get install sox`). Then the makeann
command as a whole, on the raw 8 kHz file and on a 44.1 kHz stereo WAV of the
same length (mix-down and resampling included). Medians of ROUNDS.
With --before DIR the two command rows also run from another checkout of the
tree (DIR/tools/makeann.py, PYTHONPATH=DIR), interleaved round by round with
these ("..._before" keys): a before/after pair measured on the same load.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import soundfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from rtpproxy_py.media.codecs import ENCODABLE_PTS  # noqa: E402
from rtpproxy_py.tools import makeann  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def signal(seconds, rate):
    t = np.arange(int(seconds * rate)) / rate
    sweep = np.sin(2 * np.pi * (200 * t + 30 * t * t / 2 % 1.0))
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1230 * t) + 0.1 * sweep
    return np.round(x * 32767).astype(np.int16)


def timed(fn, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    import argparse
    parser = argparse.ArgumentParser(description="makeann speed")
    parser.add_argument("minutes", nargs="?", type=float, default=10)
    parser.add_argument("rounds", nargs="?", type=int, default=3)
    parser.add_argument("--before", help="another checkout of the tree to time alongside")
    args = parser.parse_args()
    minutes, rounds = args.minutes, args.rounds
    seconds = minutes * 60
    pcm = signal(seconds, 8000)
    audio = makeann.Audio(pcm, None)
    out = {"audio_s": seconds}
    for pt in ENCODABLE_PTS:
        out["pt%d_s" % pt] = round(timed(lambda: makeann.encode(audio, None, False, False, [pt]),
                                         rounds), 3)
    raw = pcm.tobytes()
    out["baseline_audioop_ulaw_s"] = round(timed(lambda: audioop.lin2ulaw(raw, 2), rounds), 3)
    out["baseline_audioop_alaw_s"] = round(timed(lambda: audioop.lin2alaw(raw, 2), rounds), 3)
    tmp = tempfile.mkdtemp(prefix="makeann-bench-")
    try:
        sln = os.path.join(tmp, "in.sln")
        with open(sln, "wb") as f:
            f.write(pcm.astype("<i2").tobytes())
        if shutil.which("sox"):
            gsm = os.path.join(tmp, "out.gsm")
            out["baseline_sox_gsm_s"] = round(timed(lambda: subprocess.run(
                ["sox", "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", sln,
                 "-t", "gsm", gsm], check=True), rounds), 3)
        wav = os.path.join(tmp, "in.wav")
        wide = signal(seconds, 44100)
        soundfile.write(wav, np.stack([wide, wide], axis=1), 44100, subtype="PCM_16")
        builds = [("", [sys.executable, os.path.join(TOP, "tools", "makeann.py")], None)]
        if args.before:
            before = os.path.abspath(args.before)
            builds.append(("_before", [sys.executable, os.path.join(before, "tools", "makeann.py")],
                           dict(os.environ, PYTHONPATH=before)))
        rows = {}
        for _ in range(rounds):          # interleaved: each build sees the same load
            for label, cmd, env in builds:
                for key, infile in (("makeann_raw8k_s", sln), ("makeann_wav44k_stereo_s", wav)):
                    import resource
                    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t = time.perf_counter()
                    subprocess.run(cmd + [infile, os.path.join(tmp, "o" + label)], check=True, env=env)
                    wall = time.perf_counter() - t
                    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    rows.setdefault(key + label, []).append(wall)
                    rows.setdefault(key[:-2] + "_cpu_s" + label, []).append(
                        cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime)
        for key, values in rows.items():
            out[key] = round(statistics.median(values), 3)
        out["load_average_at_end"] = open("/proc/loadavg").read().split()[0]
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
