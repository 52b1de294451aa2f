"""The control fuzz target (fuzz/control_fuzz.py): its spec oracle, a replay of
the committed corpus, and a bounded coverage-guided run (bench/fuzz_control.sh
runs the long one; BENCHMARKS.md has its figures)."""

import os
import subprocess
import sys

import pytest

from helpers import TOP

sys.path.insert(0, os.path.join(TOP, "fuzz"))

import control_fuzz  # noqa: E402

TARGET = os.path.join(TOP, "fuzz", "control_fuzz.py")
CORPUS = os.path.join(TOP, "fuzz", "corpus", "control")
BOUNDED_SECONDS = 20


@pytest.mark.parametrize("command, code", [
    # control-protocol.md section 10's worked examples that the tokens decide
    (b"Vx", 2), (b"VF", 1), (b"Vfgarbage x", 2), (b"", 5), (b"A something", 0), (b"U", 1),
    (b"Dgarbage cid ftag", 8), (b"D cid ftag ttag extra", 1),
    (b"Pgarbage cid prompt 0 ftag ttag", 17), (b"Cgarbage cid tgt ftag ttag", 7),
    (b"Qg cid ftag ttag", 19), (b"Igarbage", 18), (b"I x", 1), (b"X x", 1),
    (b"Ggarbage nonsense", 9), (b"U cid 127.0.0.1 12345 f " + b" ".join(b"%d" % i for i in range(1, 20)), 5),
    (b"U cid 127.0.0.1 12345 f &&", 5),
    # section 2 and 4
    (b"V\x00", 5), (b"Rp cid ftag", 6), (b"Nax cid ftag", 6),
    (b"Nx cid ftag", 7), (b"Sx cid ftag", 2), (b"V && V", 3),
    (b"U c a p f" + b" && S ttl=1" * 16, 5),
])
def test_oracle_gives_the_spec_codes(command, code):
    assert control_fuzz.expected_error(command) == code


@pytest.mark.parametrize("command", [
    b"V", b"VF 20040107", b"U cid 127.0.0.1 12345 f && 1 2 3",   # E3 comes from the sub-command parser
    b"U c\xc3\xa9 127.0.0.1 4000 f", b"U c\xff\xfe 127.0.0.1 4000 f", b"Ugarbage cid addr port ftag ttag", b"Dw cid f",
    b"P-1 cid prompt session f t", b"Na cid f", b"G",
])
def test_oracle_lets_well_formed_commands_through(command):
    assert control_fuzz.expected_error(command) is None


def test_oracle_catches_a_wrong_reply():
    with pytest.raises(AssertionError):
        control_fuzz.check_reply(b"Dgarbage cid ftag", "E5\n")
    with pytest.raises(AssertionError):
        control_fuzz.check_reply(b"U cid 1.2.3.4 5 f", "12345 1.2.3.4\nextra\n")
    control_fuzz.check_reply(b"U cid 1.2.3.4 5 f t && L 1.2.3.4 6", "20000 1.2.3.4 && 20002 1.2.3.4\n")


def test_line_framing_oracle():
    assert control_fuzz.expected_lines(b"V\nI\npartial") == [b"V", b"I"]
    assert control_fuzz.expected_lines(b"a" * 8191 + b"\nV\n") == [b"a" * 8191, b"V"]
    assert control_fuzz.expected_lines(b"V\n" + b"a" * 8192 + b"\nV\n") == [b"V"]


def run_target(*args, timeout):
    return subprocess.run([sys.executable, TARGET] + list(args), capture_output=True, text=True,
                          timeout=timeout, cwd=TOP, env=dict(os.environ, PYTHONPATH=TOP))


def test_committed_corpus_replays_clean(tmp_path):
    out = run_target("-runs=0", "-artifact_prefix=%s/" % tmp_path, CORPUS, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "INITED" in out.stderr
    assert not list(tmp_path.iterdir())


def test_bounded_fuzz_run_finds_nothing(tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    out = run_target("-max_total_time=%d" % BOUNDED_SECONDS, "-max_len=12000",
                     "-artifact_prefix=%s/" % tmp_path, str(new), CORPUS,
                     timeout=BOUNDED_SECONDS + 60)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [line for line in out.stderr.splitlines() if line.startswith("Done ")]
    assert runs, out.stderr[-2000:]
    assert int(runs[0].split()[1]) > 2000        # it really ran (about 1400 inputs/s here)
    assert not [p for p in tmp_path.iterdir() if p.name != "new"], "crash or leak artifact written"
