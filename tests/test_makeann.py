"""makeann as a real program: upstream's command line and output files, input
conversion from sound files, and the error cases of makeann.md section 1."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from audio import chirp, snr_db, tone
from rtpproxy_py.media.codecs import get_codec

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKEANN = [sys.executable, os.path.join(TOP, "tools", "makeann.py")]
PTS = (0, 3, 18, 8, 9)


def makeann(*args, cwd=None):
    return subprocess.run(MAKEANN + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def write_sln(path, samples):
    with open(path, "wb") as f:
        f.write(np.asarray(samples, dtype="<i2").tobytes())


def read_outputs(template):
    out = {}
    for pt in PTS:
        with open("%s.%d" % (template, pt), "rb") as f:
            out[pt] = f.read()
    return out


def spec_reference(path, limit=None, loop=False, vad=False):
    """makeann.md section 4, literally: read blocks from the file with one
    rewind per block, encode each block with every codec in order, with the
    shared scratch buffer of the -v quirk."""
    coders = {0: get_codec(0), 3: get_codec(3), 18: get_codec(18, vad=vad), 8: get_codec(8),
              9: get_codec(9)}
    out = {pt: b"" for pt in PTS}
    scratch = bytearray(160)
    remaining = limit
    with open(path, "rb") as f:
        while True:
            want = 160 if remaining is None or remaining > 160 else remaining
            data = f.read(2 * want)
            if len(data) < 2 * want and loop:
                f.seek(0)
                data += f.read(2 * want - len(data))
            n = len(data) // 2
            if n == 0:
                break
            block = np.zeros(160, dtype=np.int16)
            block[:n] = np.frombuffer(data[:2 * n], dtype="<i2")
            for pt in PTS:
                if pt == 18:
                    f0, f1 = coders[18].encode_frame(block[:80]), coders[18].encode_frame(block[80:])
                    scratch[0:len(f0)], scratch[10:10 + len(f1)] = f0, f1
                    out[18] += bytes(scratch[:len(f0) + len(f1)])
                    continue
                encoded = coders[pt].encode(block[:n] if pt in (0, 8) else block)
                scratch[0:len(encoded)] = encoded
                out[pt] += encoded
            if remaining is not None:
                remaining -= n
                if remaining <= 0:
                    break
    return out


@pytest.fixture(scope="module")
def ringback(tmp_path_factory):
    """6 s of two-tone ring-back with a chirp in it, as upstream's ringback.sln."""
    path = tmp_path_factory.mktemp("ann") / "ringback.sln"
    signal = (tone(6.0, freq=440, level=0.2).astype(np.int32) + tone(6.0, freq=480, level=0.2))
    signal[16000:32000] = chirp(2.0)
    signal[40000:44000] = 0
    write_sln(path, signal.astype(np.int16))
    return path


@pytest.mark.parametrize("flags,sizes", [
    ((), {0: 48000, 3: 9900, 18: 6000, 8: 48000, 9: 48000}),
    (("-L", "-l", "2"), {0: 2, 3: 33, 18: 20, 8: 2, 9: 160}),
    (("-L", "-l", "199999"), {0: 199999, 3: 41250, 18: 25000, 8: 199999, 9: 200000}),
    (("-l", "1000"), {0: 1000, 3: 7 * 33, 18: 140, 8: 1000, 9: 1120}),
    (("-v",), None),
])
def test_outputs_match_the_spec_algorithm(ringback, tmp_path, flags, sizes):
    template = tmp_path / "out"
    result = makeann(*flags, ringback, template)
    assert result.returncode == 0, result.stderr
    got = read_outputs(template)
    limit = int(flags[flags.index("-l") + 1]) if "-l" in flags else None
    assert got == spec_reference(ringback, limit, "-L" in flags, "-v" in flags)
    if sizes:
        assert {pt: len(data) for pt, data in got.items()} == sizes
        assert result.stderr == "" and result.stdout == ""
    else:
        assert "VAD enable (-v) is for debugging purposes only" in result.stderr


def test_template_defaults_to_the_input_name(ringback, tmp_path):
    copy = tmp_path / "prompt.sln"
    copy.write_bytes(ringback.read_bytes())
    assert makeann(copy).returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["prompt.sln"] + ["prompt.sln.%d" % pt for pt in
                                                              (0, 18, 3, 8, 9)]


def test_short_file_in_loop_mode_rewinds_once_per_block(tmp_path):
    path = tmp_path / "short.sln"
    write_sln(path, tone(0.00625))     # 50 samples: every block hits the end
    result = makeann("-L", "-l", "400", path, tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert read_outputs(tmp_path / "o") == spec_reference(path, 400, True)


def test_odd_trailing_byte_is_ignored(tmp_path, ringback):
    path = tmp_path / "odd.sln"
    path.write_bytes(ringback.read_bytes()[:3201])
    assert makeann(path, tmp_path / "o").returncode == 0
    assert len(read_outputs(tmp_path / "o")[0]) == 1600


def _decode(template, pt, sample_rate=8000):
    with open("%s.%d" % (template, pt), "rb") as f:
        return get_codec(pt, sample_rate=sample_rate).decode(f.read())


@pytest.mark.parametrize("container,subtype,rate,channels,min_snr", [
    ("WAV", "PCM_16", 44100, 2, 30),
    ("FLAC", "PCM_24", 48000, 1, 30),
    ("OGG", "VORBIS", 16000, 1, 15),
    ("WAV", "FLOAT", 22050, 6, 30),
])
def test_sound_files_are_mixed_down_and_resampled(tmp_path, container, subtype, rate, channels,
                                                   min_snr):
    """A chirp written at another rate and channel count comes out of every
    codec as the same chirp made at 8 kHz."""
    source = chirp(2.0, rate=rate, f1=3000).astype(np.float64) / 32768
    frames = np.repeat(source[:, None], channels, axis=1)
    if channels > 1:
        frames[:, 1] = 0.0            # a silent channel: mixing down halves the level
        frames[:, 0] *= 2 if channels == 2 else 1
    path = tmp_path / ("in." + container.lower())
    soundfile.write(path, frames, rate, format=container, subtype=subtype)
    result = makeann(path, tmp_path / "o")
    assert result.returncode == 0, result.stderr
    expected = chirp(2.0, rate=8000, f1=3000)
    if channels > 2:
        expected = np.round(expected * ((channels - 1) / channels)).astype(np.int16)
    assert abs(len(_decode(tmp_path / "o", 0)) - 16000) <= 160
    assert snr_db(expected, _decode(tmp_path / "o", 0), max_lag=60, skip=400) >= min_snr
    assert snr_db(expected, _decode(tmp_path / "o", 8), max_lag=60, skip=400) >= min_snr
    assert snr_db(expected, _decode(tmp_path / "o", 18), max_lag=60, skip=400) >= 8
    assert snr_db(expected, _decode(tmp_path / "o", 3), max_lag=60, skip=400) >= 5
    # G.722 was encoded from 16 kHz audio (wide band): decode it as such
    wide = chirp(2.0, rate=16000, f1=3000)
    if channels > 2:
        wide = np.round(wide * ((channels - 1) / channels)).astype(np.int16)
    assert snr_db(wide, _decode(tmp_path / "o", 9, 16000), max_lag=60, skip=800) >= min_snr - 5


def test_wav_at_8khz_gives_the_same_files_as_raw(tmp_path, ringback):
    samples = np.frombuffer(ringback.read_bytes(), dtype="<i2")
    soundfile.write(tmp_path / "r.wav", samples, 8000, subtype="PCM_16")
    assert makeann(tmp_path / "r.wav", tmp_path / "w").returncode == 0
    assert makeann(ringback, tmp_path / "s").returncode == 0
    assert read_outputs(tmp_path / "w") == read_outputs(tmp_path / "s")


def test_raw_input_with_explicit_format(tmp_path):
    source = chirp(1.0, rate=16000, f1=3000).astype(np.float32) / 32768
    stereo = np.repeat(source[:, None], 2, axis=1).astype(">f4")
    (tmp_path / "in.pcm").write_bytes(stereo.tobytes())
    result = makeann("--rate", "16000", "--channels", "2", "--format", "float", "--endian", "big",
                     tmp_path / "in.pcm", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert snr_db(chirp(1.0, f1=3000), _decode(tmp_path / "o", 0), max_lag=60, skip=400) >= 30


@pytest.mark.parametrize("args,message", [
    ((), "usage: makeann"),
    (("-L", "IN"), "limit have to be specified in the loop mode"),
    (("-l", "foobar", "IN"), "limit parameter have to be a number greater than zero"),
    (("-x", "IN"), "makeann: unknown option -x; makeann -h lists the options."),
    (("IN", "a", "b"), "usage: makeann"),
    (("IN", "/nonexistent/dir/x"), "can't open /nonexistent/dir/x.0 for writing"),
    (("/nonexistent/in.sln",), "can't open /nonexistent/in.sln for reading"),
    (("--rate", "fast", "IN"), "--rate fast: give a whole number greater than zero."),
    (("--format", "mp9", "IN"), "--format mp9: not a raw sample format"),
])
def test_bad_invocations_fail_with_one_line(ringback, args, message):
    args = [str(ringback) if a == "IN" else a for a in args]
    result = makeann(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_empty_input_is_refused_and_writes_nothing(tmp_path):
    (tmp_path / "empty.sln").write_bytes(b"")
    result = makeann(tmp_path / "empty.sln", tmp_path / "o")
    assert result.returncode == 1
    assert result.stderr.strip() == ("makeann: %s contains no audio samples; give a non-empty "
                                     "sound file." % (tmp_path / "empty.sln"))
    assert not os.path.exists(tmp_path / "o.0")


def test_broken_sound_file_is_refused(tmp_path):
    soundfile.write(tmp_path / "t.flac", tone(1.0), 8000)
    (tmp_path / "cut.flac").write_bytes((tmp_path / "t.flac").read_bytes()[:30])
    result = makeann(tmp_path / "cut.flac", tmp_path / "o")
    assert result.returncode == 1
    assert result.stderr.startswith("makeann: can't read %s" % (tmp_path / "cut.flac"))
    assert len(result.stderr.strip().splitlines()) == 1


def test_directory_as_input_is_refused(tmp_path):
    result = makeann(tmp_path, tmp_path / "o")
    assert result.returncode == 1
    assert result.stderr.startswith("makeann: can't open %s for reading" % tmp_path)


def test_console_scripts_are_installed():
    bindir = os.path.dirname(sys.executable)
    for name in ("makeann", "makeann_debug"):
        result = subprocess.run([os.path.join(bindir, name)], capture_output=True, text=True)
        assert result.returncode == 1 and result.stderr.startswith("usage: makeann")


def test_debug_build_reports_files_and_writes_a_profile(ringback, tmp_path):
    debug = os.path.join(os.path.dirname(sys.executable), "makeann_debug")
    env = dict(os.environ, RTPP_PROFILE=str(tmp_path / "prof.pstats"))
    result = subprocess.run([debug, str(ringback), str(tmp_path / "o")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""                   # no MEMDEB line: upstream's makeann_debug has none
    assert "o.3: 9900 bytes" in result.stderr
    assert os.path.getsize(tmp_path / "prof.pstats") > 0
    assert read_outputs(tmp_path / "o") == spec_reference(ringback)


def test_help_goes_to_stdout():
    result = makeann("--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "--rate" in result.stdout and "-l limit" in result.stdout


def test_missing_codec_library_skips_only_that_codec(ringback, tmp_path):
    """As on a machine without libbcg729-0 and libgsm1: the libraries are looked
    up under names that do not exist; the other three files are still made."""
    script = ("import sys; from rtpproxy_py.media.codecs import g729, gsm\n"
              "g729.SONAME = 'libbcg729-missing.so.0'; gsm.SONAME = 'libgsm-missing.so.1'\n"
              "from rtpproxy_py.tools.makeann import main\n"
              "sys.exit(main([sys.argv[1], sys.argv[2]]))\n")
    result = subprocess.run([sys.executable, "-c", script, str(ringback), str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120, cwd=TOP)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "skipping %s.3: GSM 06.10 is unavailable" % (tmp_path / "o") in lines[0]
    assert "apt-get install libgsm1" in lines[0]
    assert "skipping %s.18: G.729 is unavailable" % (tmp_path / "o") in lines[1]
    assert "apt-get install libbcg729-0" in lines[1]
    assert sorted(os.listdir(tmp_path)) == ["o.0", "o.8", "o.9"]
    assert os.path.getsize(tmp_path / "o.0") == 48000


def test_h_describes_every_option_and_exits_0():
    result = makeann("-h")
    assert result.returncode == 0 and result.stderr == ""
    described = {line.split()[0].rstrip(",") for line in result.stdout.splitlines()
                 if line.startswith("  -")}
    assert described == {"-h", "-l", "-L", "-v", "--rate", "--channels", "--format", "--endian"}


@pytest.mark.parametrize("args, sentence", [
    (["-q", "in.sln"], "makeann: unknown option -q; makeann -h lists the options.\n"),
    (["--loud", "in.sln"], "makeann: unknown option --loud; makeann -h lists the options.\n"),
    (["in.sln", "-l"], "makeann: option -l needs a value; makeann -h lists the options.\n"),
])
def test_bad_option_names_itself(args, sentence, tmp_path):
    result = makeann(*args, cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == sentence
    assert not list(tmp_path.iterdir())


def test_text_file_given_as_audio_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Welcome prompt: say hello, then transfer to sales.\n"
                     "Überarbeitet am 3. Dezember.\n")
    result = makeann(notes, tmp_path / "o")
    assert result.returncode == 1
    assert result.stderr == ("makeann: %s is text, not audio; give a sound file (WAV, FLAC, OGG, "
                             "...) or headerless 16-bit 8 kHz samples.\n" % notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    # headerless audio of the same length is still upstream's raw format
    write_sln(tmp_path / "real.sln", tone(0.5))
    assert makeann(tmp_path / "real.sln", tmp_path / "r").returncode == 0


def test_man_page_kamailio_example_renders_whole():
    page = subprocess.run(["mandoc", "-T", "utf8", os.path.join(TOP, "man", "makeann.1")],
                          capture_output=True, text=True, timeout=30)
    assert page.returncode == 0, page.stderr
    lines = [line.strip() for line in page.stdout.splitlines() if "stream2uac" in line]
    assert lines == ['rtpproxy_stream2uac("/var/lib/rtpproxy/prompts/ringback", "-1");']


def test_help_and_usage_errors_load_no_numpy():
    """Start fast: NumPy and the codecs load when there is audio to encode."""
    script = ("import sys; from rtpproxy_py.tools import makeann\n"
              "for argv in (['-h'], ['-q', 'x'], []):\n"
              "    makeann.main(argv)\n"
              "print(sorted(m for m in ('numpy', 'soundfile') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=TOP))
    assert out.stdout.splitlines()[-1] == "[]", out.stderr
