"""extractaudio as a program: command line, scan mode, formats, bad and damaged
inputs, SRTP, the progress line (extractaudio.md 1, 6, 8)."""

import base64
import os
import pty
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from helpers import TOP, rtp_packet
from recording_helpers import tone, tone_snr
from rtpproxy_py.config import BindAddress
from rtpproxy_py.media import codecs
from rtpproxy_py.media.recorder import AdhocFormat, IpIdCounter, PcapFormat
from rtpproxy_py.session import Session

EXTRACTAUDIO = [sys.executable, os.path.join(TOP, "tools", "extractaudio.py")]
T0 = 1700000000.0


def run(*args, **kw):
    return subprocess.run(EXTRACTAUDIO + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, **kw)


def _stream(port):
    session = Session("c", "f", 0.0, 60)
    for s in session.streams():
        s.local = BindAddress(socket.AF_INET, "127.0.0.1")
        s.port = port if s.is_rtp else port + 1
    return session.rtp[1]


def write_recording(path, datagrams, pcap=False, port=30000):
    """Write (datagram, arrival) pairs with the daemon's own format code."""
    stream = _stream(port)
    fmt = PcapFormat(ip_id=IpIdCounter()) if pcap else AdhocFormat()
    batch = [(data, ("127.0.0.2", 4000), stream, t) for data, t in datagrams]
    with open(path, "wb") as f:
        f.write(fmt.file_header() + fmt.encode(batch, 0.0))


def tone_stream(freq, seconds, pt=0, ssrc=0x1111, t0=T0):
    codec = codecs.get_codec(pt)
    pcm = tone(freq, seconds)
    return [(rtp_packet(i, 160 * i, ssrc, pt, codec.encode(pcm[i * 160:(i + 1) * 160])), t0 + 0.02 * i)
            for i in range(len(pcm) // 160)]


@pytest.fixture
def call(tmp_path):
    """A 1 s recorded call: answer side 1000 Hz PCMA, originate side 440 Hz PCMU."""
    prefix = tmp_path / "cid=tag"
    write_recording(str(prefix) + ".a.rtp", tone_stream(1000, 1.0, pt=8, ssrc=0xA))
    write_recording(str(prefix) + ".o.rtp", tone_stream(440, 1.0, pt=0, ssrc=0xB), pcap=True)
    return str(prefix)


def test_scan_mode(call, tmp_path):
    done = run("-S", call)
    assert done.returncode == 0
    assert done.stdout == "%s.a.rtp: 50\n%s.o.rtp: 50\n" % (call, call)
    blob = open(call + ".a.rtp", "rb").read()
    cut = tmp_path / "cut.a.rtp"
    cut.write_bytes(blob[:-7])
    done = run("-S", "-A", cut, "-B", tmp_path / "missing.o.rtp")
    assert done.returncode == 0
    assert done.stdout == "%s: -1\n%s: -1\n" % (cut, tmp_path / "missing.o.rtp")
    assert "broken or truncated adhoc file" in done.stderr


@pytest.mark.parametrize("args", [
    ["-F", "nosuch", "x", "out.wav"],
    ["-D", "nosuch", "x", "out.wav"],
    ["--alice-crypto", "AES_CM_128_HMAC_SHA1_80", "-A", "a", "out.wav"],
    ["--alice-crypto", "NOSUCH_SUITE:" + "A" * 40, "-A", "a", "out.wav"],
    ["--bob-crypto", "AES_CM_128_HMAC_SHA1_80:" + "A" * 39, "-B", "b", "out.wav"],
    ["--bob-crypto", "AES_CM_128_HMAC_SHA1_32:" + "A" * 39 + "-", "-B", "b", "out.wav"],
    ["-S"],
    ["-S", "x", "y"],
    ["-S", "-A", "a", "extra"],
    ["only_rdir"],
    ["-A", "a"],
    ["-q", "x", "out.wav"],
])
def test_bad_arguments_fail_with_one_message(args, tmp_path):
    done = run(*args, cwd=str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("extractaudio: ") or done.stderr.startswith("usage:")
    assert not (tmp_path / "out.wav").exists()


def test_unknown_formats_list_the_known_ones():
    done = run("-F", "mp5", "x", "out.wav")
    assert done.stderr.startswith('extractaudio: unknown output file format: "mp5"\nSupported file formats:\n')
    assert '    "w64"\t- Sonic Foundry\'s 64 bit RIFF/WAV' in done.stderr
    done = run("-D", "pcm_12", "x", "out.wav")
    assert 'unknown output data format: "pcm_12"' in done.stderr and '"ms_adpcm"' in done.stderr


def test_refused_format_combination_is_exit_2_and_says_why(call, tmp_path):
    done = run("-F", "raw", "-D", "ms_adpcm", call, tmp_path / "o.raw")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "extractaudio: %s: the raw container cannot hold ms_adpcm data; choose another -D or -F "
        "(-F raw takes -D pcm_s8, pcm_16, pcm_24, pcm_32, pcm_u8, float, double, ulaw, alaw, "
        "gsm610, vox_adpcm, dwvw_12, dwvw_16, dwvw_24)" % (tmp_path / "o.raw"))
    done = run("-F", "wav", "-D", "vorbis", call, tmp_path / "o.wav")
    assert done.returncode == 2 and "can't open output file" not in done.stderr
    assert "the wav container cannot hold vorbis data" in done.stderr
    assert not (tmp_path / "o.wav").exists()


def test_every_listed_format_works_or_fails_in_one_sentence(call, tmp_path):
    """Each -F and -D name of the man page, mono and stereo: a file, or exit 2
    with one line (never an internal error from the sound library)."""
    from rtpproxy_py.tools import extractaudio
    outcomes = {}
    for container, _ in extractaudio.FILE_FORMATS:
        for data, _ in extractaudio.DATA_FORMATS:
            for stereo in (False, True):
                out = tmp_path / "o"
                argv = (["-s"] if stereo else []) + ["-F", container, "-D", data, call, str(out)]
                with open(os.devnull, "w") as sink:
                    try:
                        assert extractaudio.run(extractaudio.parse_args(argv), out=sink,
                                                err=sink) == 0
                        assert out.stat().st_size > 0
                        outcomes[container, data, stereo] = "ok"
                    except extractaudio.ExtractError as exc:
                        assert exc.code == 2 and "\n" not in str(exc), (container, data, exc)
                        outcomes[container, data, stereo] = "refused"
                        assert not out.exists(), (container, data, stereo)
                if out.exists():
                    out.unlink()
    assert outcomes["aiff", "dwvw_12", False] == "refused"     # opens, then cannot write
    assert outcomes["raw", "vox_adpcm", False] == "ok"
    assert sum(v == "ok" for v in outcomes.values()) > 200


def test_vox_adpcm_of_an_odd_sample_count_exits_0_with_the_right_bytes(tmp_path):
    """libsndfile packs two VOX samples a byte and takes one sample less of an
    odd count: upstream ignores that count (exit 0); soundfile would raise."""
    stream = tone_stream(440, 0.2)
    last, arrival = stream[-1]
    stream[-1] = (last[:12 + 81], arrival)          # 9 * 160 + 81 samples: odd
    write_recording(str(tmp_path / "c.a.rtp"), stream)
    done = run("-F", "raw", "-D", "vox_adpcm", "-A", tmp_path / "c.a.rtp", tmp_path / "v.raw")
    assert done.returncode == 0, done.stderr
    assert run("-F", "raw", "-D", "pcm_16", "-A", tmp_path / "c.a.rtp",
               tmp_path / "p.raw").returncode == 0
    pcm = np.frombuffer((tmp_path / "p.raw").read_bytes(), dtype="<i2")
    assert len(pcm) % 2 == 1
    with soundfile.SoundFile(str(tmp_path / "ref.raw"), "w", samplerate=8000, channels=1,
                             format="RAW", subtype="VOX_ADPCM") as ref:
        ref.write(pcm[:-1])
    got, ref = (tmp_path / "v.raw").read_bytes(), (tmp_path / "ref.raw").read_bytes()
    assert len(got) == (len(pcm) + 1) // 2                 # the odd sample is in its last byte
    assert got[:len(ref)] == ref


# every combination upstream's tests exercise (extractaudio.md 6)
FORMATS = (
    [("raw", d, False) for d in "alaw double dwvw_12 dwvw_16 dwvw_24 float gsm610 pcm_16 pcm_24 "
     "pcm_32 pcm_s8 pcm_u8 ulaw vox_adpcm".split()] +
    [("wav", d, False) for d in "alaw g721_32 gsm610 ima_adpcm ms_adpcm pcm_16 pcm_24 pcm_32 "
     "pcm_u8 ulaw".split()] +
    [("w64", d, False) for d in "alaw double float gsm610 ima_adpcm ms_adpcm pcm_16 pcm_24 pcm_32 "
     "pcm_u8 ulaw".split()] +
    [("wav", d, True) for d in "alaw ima_adpcm ms_adpcm pcm_16 pcm_24 pcm_32 pcm_u8 ulaw".split()] +
    [("w64", d, True) for d in "alaw double float ima_adpcm ms_adpcm pcm_16 pcm_24 pcm_32 pcm_u8 "
     "ulaw".split()])


def test_output_formats(call, tmp_path):
    from rtpproxy_py.tools import extractaudio
    for container, data, stereo in FORMATS:
        out = tmp_path / ("out_%s_%s_%d" % (container, data, stereo))
        argv = (["-s"] if stereo else []) + ["-F", container.upper(), "-D", data, call, str(out)]
        opts = extractaudio.parse_args(argv)
        with open(os.devnull, "w") as sink:
            assert extractaudio.run(opts, out=sink, err=sink) == 0
        assert out.stat().st_size > 0, (container, data, stereo)
        if container != "raw":
            info = soundfile.info(str(out))
            assert (info.samplerate, info.channels, info.subtype) == (8000, 2 if stereo else 1, data.upper())
            assert abs(info.duration - 1.0) < 0.05      # GSM 6.10 pads its last block


def test_pcm16_content_is_exact(call, tmp_path):
    done = run("-s", "-F", "raw", "-D", "pcm_16", call, tmp_path / "o.raw")
    assert done.returncode == 0, done.stderr
    audio = np.frombuffer((tmp_path / "o.raw").read_bytes(), dtype="<i2").reshape(-1, 2)
    a = codecs.get_codec(8).decode(codecs.get_codec(8).encode(tone(1000, 1.0)))
    b = codecs.get_codec(0).decode(codecs.get_codec(0).encode(tone(440, 1.0)))
    assert np.array_equal(audio[:, 0], a) and np.array_equal(audio[:, 1], b)
    assert done.stderr.endswith("samples decoded: O: 8000, A: 8000, written: 8000\n")


def test_missing_truncated_and_foreign_inputs(call, tmp_path):
    # one side missing: the other is still extracted (upstream), -e makes it fatal
    os.rename(call + ".o.rtp", str(tmp_path / "elsewhere"))
    done = run("-s", "-D", "pcm_16", call, tmp_path / "one.wav")
    assert done.returncode == 0
    assert "cid=tag.o.rtp does not exist" in done.stderr
    audio, _ = soundfile.read(str(tmp_path / "one.wav"), dtype="int16")
    assert tone_snr(audio[:, 0], 1000) > 30 and not audio[:, 1].any()
    done = run("-e", call, tmp_path / "strict.wav")
    assert done.returncode == 1 and "cannot load" in done.stderr
    assert not (tmp_path / "strict.wav").exists()
    # truncated: the audio before the damage, with a warning
    blob = open(call + ".a.rtp", "rb").read()
    cut = tmp_path / "cut.a.rtp"
    cut.write_bytes(blob[:len(blob) // 2 + 5])
    os.rename(str(tmp_path / "elsewhere"), call + ".o.rtp")
    done = run("-s", "-D", "pcm_16", "-A", cut, "-B", call + ".o.rtp", tmp_path / "cut.wav")
    assert done.returncode == 0, done.stderr
    assert "is truncated or damaged after 25 records; using the audio before the damage" in done.stderr
    audio, _ = soundfile.read(str(tmp_path / "cut.wav"), dtype="int16")
    assert audio[:, 0][:25 * 160].any() and not audio[:, 0][25 * 160:].any()
    # a file that is no recording at all
    foreign = tmp_path / "song.wav"
    soundfile.write(str(foreign), tone(440, 0.5), 8000)
    done = run("-A", foreign, tmp_path / "f.wav")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "extractaudio: %s is not an rtpproxy recording (neither the ad hoc format nor pcap)" % foreign,
        "extractaudio: cannot load neither A nor B: nothing in them was readable, so no output "
        "was written"]
    # an output directory that does not exist
    done = run(call, tmp_path / "no" / "dir.wav")
    assert done.returncode == 2 and "can't open output file" in done.stderr


def test_srtp_pcap_with_keys(tmp_path):
    import pylibsrtp
    key = bytes(range(30))
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    sender = pylibsrtp.Session(policy)
    plain = tone_stream(440, 0.5, ssrc=0x5EC)
    path = tmp_path / "srtp.pcap"
    write_recording(str(path), [(sender.protect(data), t) for data, t in plain], pcap=True)
    spec = "aes_cm_128_hmac_sha1_80:" + base64.b64encode(key).decode()
    done = run("--alice-crypto", spec, "-D", "pcm_16", "-A", path, tmp_path / "dec.wav")
    assert done.returncode == 0, done.stderr
    audio, _ = soundfile.read(str(tmp_path / "dec.wav"), dtype="int16")
    assert tone_snr(audio, 440) > 30
    wrong = "AES_CM_128_HMAC_SHA1_80:" + base64.b64encode(bytes(30)).decode()
    done = run("--alice-crypto", wrong, "-D", "pcm_16", "-A", path, tmp_path / "bad.wav")
    assert "25 datagrams skipped: decryption failed" in done.stderr


def test_nosync_and_links(tmp_path):
    prefix = str(tmp_path / "c=t")
    first = tone_stream(440, 0.5)
    later = [(d, t + 10.0) for d, t in tone_stream(440, 0.5, ssrc=0x2222)]
    write_recording(prefix + ".o.rtp", first + later)
    # -i (idle priority) changes nothing in the output
    done = run("-i", "-n", "-D", "pcm_16", prefix, tmp_path / "n.wav", tmp_path / "l1.wav", tmp_path / "l2.wav")
    assert done.returncode == 0, done.stderr
    assert soundfile.info(str(tmp_path / "n.wav")).frames == 8000       # no 10 s gap
    assert os.path.samefile(str(tmp_path / "n.wav"), str(tmp_path / "l2.wav"))
    done = run("-D", "pcm_16", prefix, tmp_path / "s.wav")
    assert soundfile.info(str(tmp_path / "s.wav")).frames == 80000 + 4000


def test_progress_on_a_terminal(tmp_path):
    """A six-minute recording shows a progress line when stderr is a terminal."""
    prefix = str(tmp_path / "long")
    payload = bytes([0x55]) * 160
    datagrams = [(rtp_packet(i & 0xFFFF, 160 * i, 0x42, 0, payload), T0 + 0.02 * i) for i in range(18000)]
    write_recording(prefix + ".o.rtp", datagrams)
    write_recording(prefix + ".a.rtp", [(rtp_packet(i & 0xFFFF, 160 * i, 0x43, 0, payload), t)
                                        for i, (_, t) in enumerate(datagrams)])
    master, slave = pty.openpty()
    proc = subprocess.Popen(EXTRACTAUDIO + ["-D", "pcm_16", prefix, str(tmp_path / "long.wav")],
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(60) == 0
    os.close(master)
    assert b"extractaudio: writing" in seen and b"%" in seen
    assert soundfile.info(str(tmp_path / "long.wav")).frames == 18000 * 160
    # not a terminal: no progress line
    done = run("-D", "pcm_16", prefix, tmp_path / "again.wav")
    assert "%" not in done.stderr


def test_dtmf_events_and_comfort_noise_become_silence(tmp_path):
    """RFC 2833 events (PT 101) and comfort noise (PT 13) in the middle of a call:
    counted in the statistics, dropped from the audio, their time left silent."""
    codec = codecs.get_codec(0)
    pcm = tone(440, 1.0)
    datagrams = []
    for i in range(50):
        if 20 <= i < 25:
            event = bytes([5, 0x0A]) + (160 * (i - 19)).to_bytes(2, "big")     # digit 5, growing
            datagrams.append((rtp_packet(i, 160 * 20, 0x77, 101, event, marker=(i == 20)), T0 + 0.02 * i))
        elif 25 <= i < 30:
            datagrams.append((rtp_packet(i, 160 * i, 0x77, 13, b"\x40"), T0 + 0.02 * i))
        else:
            datagrams.append((rtp_packet(i, 160 * i, 0x77, 0, codec.encode(pcm[i * 160:(i + 1) * 160])),
                              T0 + 0.02 * i))
    write_recording(str(tmp_path / "c.o.rtp"), datagrams)
    done = run("-D", "pcm_16", "-F", "raw", "-B", tmp_path / "c.o.rtp", tmp_path / "o.raw")
    assert done.returncode == 0, done.stderr
    assert "10 packets without audio to decode skipped" in done.stderr
    assert "pcount=50, min_seq=0, max_seq=49" in done.stdout
    audio = np.frombuffer((tmp_path / "o.raw").read_bytes(), dtype="<i2")
    assert len(audio) == 8000
    assert not audio[20 * 160:30 * 160].any()
    assert tone_snr(audio[30 * 160:], 440) > 30 and tone_snr(audio[:20 * 160], 440) > 30


def test_debug_build_prints_memdeb_verdict_and_leaves_no_files(call, tmp_path):
    debug = os.path.join(os.path.dirname(sys.executable), "extractaudio_debug")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RTPP_PROFILE"}
    done = subprocess.run([debug, "-s", "-D", "pcm_16", call, "out.wav"], capture_output=True,
                          text=True, timeout=120, cwd=str(work), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "MEMDEB(extractaudio): all clear"
    assert done.stdout.count("MEMDEB") == 1
    assert sorted(p.name for p in work.iterdir()) == ["out.wav"]      # no profile


def test_both_legs_damaged(call, tmp_path):
    """What could be read is written and named; a run where nothing could be
    read says so plainly. Either way the exit status is upstream's 1."""
    for side in ("a", "o"):
        blob = open("%s.%s.rtp" % (call, side), "rb").read()
        (tmp_path / ("cut.%s.rtp" % side)).write_bytes(blob[:len(blob) // 2 + 5])
    done = run("-s", "-D", "pcm_16", tmp_path / "cut", tmp_path / "cut.wav")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "extractaudio: no input could be read whole; %s holds the 0.50 s of audio read before "
        "the damage" % (tmp_path / "cut.wav"))
    audio, _ = soundfile.read(str(tmp_path / "cut.wav"), dtype="int16")
    assert tone_snr(audio[:3000, 0], 1000) > 30 and tone_snr(audio[:3000, 1], 440) > 30
    for side in ("a", "o"):
        (tmp_path / ("none.%s.rtp" % side)).write_bytes(
            open("%s.%s.rtp" % (call, side), "rb").read()[:20])
    done = run(tmp_path / "none", tmp_path / "none.wav")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ("extractaudio: cannot load neither A nor B: nothing in "
                                            "them was readable, so no output was written")
    assert not (tmp_path / "none.wav").exists()


@pytest.mark.parametrize("first_seq, first_ts", [(1000, 50000), (1, 160)])
def test_restarted_stream_continues_the_audio(tmp_path, first_seq, first_ts):
    """Same SSRC, then a marked packet with sequence number and timestamp back
    to 0 (a sender that started over): the audio continues where the packets
    arrived, 440 Hz then 1000 Hz, nothing inserted, nothing dropped as a
    duplicate of the old sequence numbers."""
    codec = codecs.get_codec(0)

    def part(seq0, ts0, freq, t0, marker):
        pcm = tone(freq, 2.0)
        return [(rtp_packet(seq0 + i, ts0 + 160 * i, 0x77, 0, codec.encode(pcm[160 * i:160 * (i + 1)]),
                            marker=marker and i == 0), t0 + 0.02 * i) for i in range(100)]

    stream = part(first_seq, first_ts, 440, T0, False) + part(0, 0, 1000, T0 + 2.0, True)
    write_recording(str(tmp_path / "r.a.rtp"), stream)
    done = run("-s", "-F", "raw", "-D", "pcm_16", "-A", tmp_path / "r.a.rtp", tmp_path / "r.raw")
    assert done.returncode == 0, done.stderr
    left = np.frombuffer((tmp_path / "r.raw").read_bytes(), dtype="<i2").reshape(-1, 2)[:, 0]
    assert len(left) == 4 * 8000
    assert tone_snr(left[:16000], 440) > 30 and tone_snr(left[16000:], 1000) > 30


def test_h_describes_every_option_the_man_page_documents():
    done = run("-h")
    assert done.returncode == 0 and done.stderr == ""
    described = {line.split()[0].rstrip(",") for line in done.stdout.splitlines()
                 if line.startswith("  -")}
    assert described == {"-h", "-A", "-B", "-s", "-F", "-D", "-n", "-d", "-i", "-e", "-S",
                         "--alice-crypto", "--bob-crypto"}


def test_help_usage_errors_and_unknown_formats_load_no_numpy():
    """Start fast: NumPy, the codecs and libsndfile load when there is a recording to read."""
    script = ("import sys; from rtpproxy_py.tools import extractaudio\n"
              "for argv in (['-h'], ['-q', 'x', 'y'], ['-F', 'mp5', 'x', 'y'], ['x']):\n"
              "    extractaudio.main(argv)\n"
              "print(sorted(m for m in ('numpy', 'soundfile') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=TOP))
    assert out.stdout.splitlines()[-1] == "[]", out.stderr
