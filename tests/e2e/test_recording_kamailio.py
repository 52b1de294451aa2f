"""Kamailio's start_recording() in front of rtpproxy-py: a real call between two
sipp phones is recorded, and extractaudio turns the files into the call's audio."""

import os
import re
import subprocess
import sys

import soundfile

from harness import PHONE_A, PHONE_B, TOP, Scenario, call_ids, sip_messages, tone, wait_until, write_pcmu

sys.path.insert(0, os.path.join(TOP, "tests"))
from recording_helpers import tone_snr  # noqa: E402

TALK_MS = 2000
CALLER_HZ, CALLEE_HZ = 440.0, 1000.0


def test_start_recording_gives_the_calls_audio(lab):
    rdir = lab.path("recordings")
    os.mkdir(rdir)
    relay = lab.relay("-r", rdir, "-d", "DBUG")
    kam = lab.kamailio(relay, defines={"WITH_RECORDING": None})
    cap = lab.capture()
    caller_audio = write_pcmu(lab.path("caller.ulaw"), tone(1.0, CALLER_HZ))
    callee_audio = write_pcmu(lab.path("callee.ulaw"), tone(1.0, CALLEE_HZ))
    callee = Scenario("callee").answer().play(callee_audio).wait(TALK_MS).pause_audio().accept_bye()
    caller = Scenario("caller").call().play(caller_audio).wait(TALK_MS).pause_audio().wait(500).hangup()
    b = lab.sipp(callee, PHONE_B, timeout=60)
    a = lab.sipp(caller, PHONE_A, remote=kam.address, keys={"callee": b.address}, timeout=60)
    a.finish()
    b.finish()
    [call_id] = call_ids(sip_messages(cap.finish()))

    # Kamailio sent R for the caller's side on the INVITE and for the callee's on the 200 OK
    sent = re.findall(r"command b'\s*(R \S+ [^']*)' -> '([^']*)'", relay.log())
    assert [(cmd.split()[1], reply) for cmd, reply in sent] == [(call_id, "0\\n")] * 2, sent
    assert wait_until(lambda: len([f for f in os.listdir(rdir) if f.endswith(".rtp")]) == 2)
    names = sorted(f for f in os.listdir(rdir) if f.endswith(".rtp"))
    assert len(names) == 2 and names[0].endswith(".a.rtp") and names[1].endswith(".o.rtp"), names
    prefix = os.path.join(rdir, names[0][:-len(".a.rtp")])
    assert prefix.startswith(os.path.join(rdir, call_id + "="))

    out = lab.path("call.wav")
    done = subprocess.run([sys.executable, os.path.join(TOP, "tools", "extractaudio.py"), "-s",
                           "-D", "pcm_16", prefix, out], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    audio, rate = soundfile.read(out, dtype="int16")
    assert rate == 8000 and audio.shape[1] == 2
    seconds = len(audio) / rate
    assert TALK_MS / 1000 - 0.3 < seconds < TALK_MS / 1000 + 1.0, seconds
    # left: the answer side (the callee's 1000 Hz), right: the caller's 440 Hz
    left, right = audio[:, 0], audio[:, 1]
    talking = slice(int(0.3 * rate), int((TALK_MS / 1000 - 0.3) * rate))
    assert tone_snr(left[talking], CALLEE_HZ) > 25
    assert tone_snr(right[talking], CALLER_HZ) > 25
