"""A real call through the daemon, a known tone in each direction, recorded in
every layout the daemon writes, then extractaudio: duration, channel layout
and audio (SNR against the tones) must match."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from helpers import TOP, wait_for
from recording_helpers import Call, paced_call, tone, tone_snr
from rtpproxy_py.media import codecs

CID = "tone@example"
CALLER_HZ, CALLEE_HZ = 440.0, 1000.0
SECONDS = 1.5
EXTRACTAUDIO = [sys.executable, os.path.join(TOP, "tools", "extractaudio.py")]


def packets(freq, pt):
    codec = codecs.get_codec(pt)
    pcm = tone(freq, SECONDS)
    return [codec.encode(pcm[i:i + 160]) for i in range(0, len(pcm), 160)]


def record_call(rtpproxy, args, commands):
    """Run a 1.5 s call with the recording ``commands`` sent after setup."""
    d = rtpproxy("-l", "127.0.0.1", *args)
    call = Call(d, call_id=CID)
    for command in commands:
        assert d.command(command % {"cid": CID}) == "0", command
    (from_caller, from_callee), got_callee, got_caller = paced_call(
        call, SECONDS, packets(CALLER_HZ, 0), packets(CALLEE_HZ, 8))
    assert [p for p, _ in got_callee] == from_caller
    assert d.command("D %s ftag;1 ttag;1" % CID) == "0"
    return d


def extract(*args):
    done = subprocess.run(EXTRACTAUDIO + list(args), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def check_stereo(path):
    audio, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and audio.ndim == 2 and audio.shape[1] == 2
    assert abs(len(audio) / rate - SECONDS) < 0.15, len(audio) / rate
    middle = slice(int(0.2 * rate), len(audio) - int(0.2 * rate))
    left, right = audio[middle, 0], audio[middle, 1]
    # left = A = the answer side (the callee, A-law 1000 Hz); right = B = the caller
    assert tone_snr(left, CALLEE_HZ) > 25
    assert tone_snr(right, CALLER_HZ) > 25
    assert tone_snr(left, CALLER_HZ) < 3
    return audio


def check_mono(path):
    audio, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and audio.ndim == 1
    assert abs(len(audio) / rate - SECONDS) < 0.15
    middle = audio[int(0.2 * rate):len(audio) - int(0.2 * rate)]
    assert tone_snr(middle, [CALLER_HZ, CALLEE_HZ]) > 25
    assert tone_snr(middle, CALLER_HZ) < 10      # both tones are in the mix
    # each tone at half its amplitude (upstream mixes as (a + b) / 2)
    spectrum = np.abs(np.fft.rfft(middle.astype(float)))
    freqs = np.fft.rfftfreq(len(middle), 1 / rate)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(peaks[0] - CALLER_HZ) < 5 and abs(peaks[1] - CALLEE_HZ) < 5


BOTH = ("R %(cid)s ftag", "R %(cid)s ttag ftag")


@pytest.mark.parametrize("layout", ["adhoc", "pcap"])
def test_per_direction_recordings(rtpproxy, tmp_path, layout):
    args = ["-r", str(tmp_path)] + (["-P"] if layout == "pcap" else [])
    record_call(rtpproxy, args, BOTH)
    prefix = str(tmp_path / (CID + "=ftag"))
    assert wait_for(lambda: os.path.exists(prefix + ".a.rtp") and os.path.exists(prefix + ".o.rtp"))
    done = extract("-s", "-D", "pcm_16", prefix, str(tmp_path / "stereo.wav"))
    check_stereo(str(tmp_path / "stereo.wav"))
    assert "samples decoded: O: " in done.stderr
    assert done.stdout.count("pcount=") == 2                  # statistics of both files
    assert "pcount=75, min_seq=0, max_seq=74" in done.stdout
    extract("-D", "pcm_16", prefix, str(tmp_path / "mono.wav"))
    check_mono(str(tmp_path / "mono.wav"))


def test_single_file_recording(rtpproxy, tmp_path):
    # -b: the U port (stream 0, the answer side) is the lower one
    record_call(rtpproxy, ["-r", str(tmp_path), "-P", "-b"], ("Rs %(cid)s ftag", "Rs %(cid)s ttag ftag"))
    prefix = str(tmp_path / (CID + "=ftag"))
    assert wait_for(lambda: os.path.exists(prefix + ".pcap"))
    extract("-s", "-D", "pcm_16", prefix, str(tmp_path / "stereo.wav"))
    check_stereo(str(tmp_path / "stereo.wav"))


def test_spooled_recording_and_default_formats(rtpproxy, tmp_path):
    final, spool = tmp_path / "final", tmp_path / "spool"
    final.mkdir()
    spool.mkdir()
    record_call(rtpproxy, ["-r", str(final), "-S", str(spool), "-a"], ())
    prefix = str(final / (CID + "=ftag"))
    assert wait_for(lambda: os.path.exists(prefix + ".a.rtp") and os.path.exists(prefix + ".o.rtp"))
    assert os.listdir(spool) == []
    # the defaults: WAV with GSM 6.10 (mono) or MS ADPCM (stereo)
    extract(prefix, str(tmp_path / "mono.wav"), str(tmp_path / "link.wav"))
    info = soundfile.info(str(tmp_path / "mono.wav"))
    assert (info.format, info.subtype, info.channels) == ("WAV", "GSM610", 1)
    assert os.path.samefile(str(tmp_path / "mono.wav"), str(tmp_path / "link.wav"))
    audio, _ = soundfile.read(str(tmp_path / "mono.wav"), dtype="int16")
    assert tone_snr(audio[1600:-1600], [CALLER_HZ, CALLEE_HZ]) > 10    # GSM is lossy
    extract("-s", "-d", prefix, str(tmp_path / "stereo.wav"))
    info = soundfile.info(str(tmp_path / "stereo.wav"))
    assert (info.subtype, info.channels) == ("MS_ADPCM", 2)
    assert not os.path.exists(prefix + ".a.rtp") and not os.path.exists(prefix + ".o.rtp")   # -d
