"""The compiled fast path (rtpproxy_py/_fastpath.c, fastpath.py): latched
streams relayed by its thread with the same counters, RTP analysis and
time-outs as the Python path; features take streams back; the C packet code
against the pure-Python analyzer (differential fuzzing, AddressSanitizer);
and the relay, latching, analysis and time-out tests again without it."""

import os
import random
import socket
import subprocess
import sys
import sysconfig
import time

import pytest

from helpers import TOP, Endpoint, rtp_packet, wait_for
from test_rtp_analysis import Call, values

sys.path.insert(0, os.path.join(TOP, "fuzz"))

import fastpath_fuzz  # noqa: E402

HOST = "127.0.0.1"
TAKEN = "relayed by the fast path"
GIVEN_BACK = "relayed in Python again"


def talk(call, seqs_caller, seqs_callee, payload=b"\xd5" * 160):
    """Caller and callee send those sequence numbers (timestamps follow);
    returns what each side received."""
    for k in range(max(len(seqs_caller), len(seqs_callee))):
        if k < len(seqs_caller):
            s = seqs_caller[k]
            call.caller.send(rtp_packet(s, ts=160 * s, ssrc=0xC0FFEE, payload=payload), HOST,
                             call.to_caller)
        if k < len(seqs_callee):
            s = seqs_callee[k]
            call.callee.send(rtp_packet(s, ts=160 * s, ssrc=0xBEEF, payload=payload), HOST,
                             call.to_callee)
        time.sleep(0.002)


def drain(endpoint, quiet=0.3):
    got = []
    while True:
        data, _ = endpoint.recv(timeout=quiet)
        if data is None:
            return got
        got.append(data)


def fast_ports(log):
    """Ports the fast path relays now, by the daemon's debug log."""
    owned = set()
    for line in log.splitlines():
        if ": port " in line and (TAKEN in line or GIVEN_BACK in line):
            port = int(line.split(": port ")[1].split(":")[0])
            (owned.add if TAKEN in line else owned.discard)(port)
    return owned


def sessions(d):
    return int(d.command("I").splitlines()[1].split(": ")[1])


def latched_call(d):
    call = Call(d)
    for party in (call.caller, call.callee):    # room for every packet a test sends
        party.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    talk(call, [0], [0])                        # both parties latch on their first packet
    assert wait_for(lambda: fast_ports(d.log()) == {call.to_caller, call.to_callee}), d.log()
    drain(call.caller, 0.1)
    drain(call.callee, 0.1)
    return call


def test_latched_streams_are_relayed_by_the_fast_path_with_exact_analysis(rtpproxy):
    d = rtpproxy("-l", HOST, "--rtp_analysis", "-d", "DBUG")
    call = latched_call(d)
    caller = [k for k in range(1, 301) if k not in (40, 41, 200)]    # 3 lost
    caller.insert(100, 90)                                          # a duplicate
    caller.insert(150, 149)                                         # and another
    callee = list(range(1, 301))
    talk(call, caller, callee)
    call.caller.send(b"not rtp at all", HOST, call.to_caller)       # relayed, counted as perrs
    got_callee = drain(call.callee)
    got_caller = drain(call.caller)
    assert len(got_callee) == len(caller) + 1 and got_callee[-1] == b"not rtp at all"
    assert len(got_caller) == len(callee)
    q = values(call.q_caller("npkts_ina", "nrelayed", "rtpa_nsent", "rtpa_nrcvd", "rtpa_ndups",
                             "rtpa_nlost", "rtpa_perrs", "longest_ipi", "rtpa_jmax"))
    assert q["npkts_ina"] == len(caller) + 2                        # + the first packet, + garbage
    assert (q["rtpa_nsent"], q["rtpa_nrcvd"], q["rtpa_ndups"], q["rtpa_nlost"], q["rtpa_perrs"]) \
        == (301, 298, 2, 3, 1)
    assert 0 < q["longest_ipi"] < 10 and q["rtpa_jmax"] > 0
    q = values(call.q_callee("npkts_ina", "rtpa_nsent", "rtpa_nrcvd", "rtpa_nlost", "rtpa_ndups"))
    assert q == {"npkts_ina": 301, "rtpa_nsent": 301, "rtpa_nrcvd": 301, "rtpa_nlost": 0,
                 "rtpa_ndups": 0}
    assert d.command("G npkts_rcvd rtpa_nlost") == "%d 3" % (len(caller) + len(callee) + 3)
    assert fast_ports(d.log()) == {call.to_caller, call.to_callee}      # the thread did it all


def test_a_feature_takes_the_stream_back_and_nothing_is_lost(rtpproxy):
    d = rtpproxy("-l", HOST, "-d", "DBUG")
    call = latched_call(d)
    listener = Endpoint()
    assert d.command("C call udp:%s:%d ft tt" % (HOST, listener.port)).split()[0].isdigit()
    assert wait_for(lambda: call.to_caller not in fast_ports(d.log())), d.log()
    talk(call, list(range(1, 51)), [])
    assert len(drain(call.callee)) == 50
    assert len(drain(listener)) == 50           # the copy sees every packet: Python relays them
    assert d.command("Na call ft") == "0"       # no copy: back to the fast path
    assert wait_for(lambda: call.to_caller in fast_ports(d.log())), d.log()
    talk(call, list(range(51, 101)), [])
    assert len(drain(call.callee)) == 50 and drain(listener, 0.1) == []
    assert values(call.q_caller("npkts_ina"))["npkts_ina"] == 101


def test_idle_timeout_sees_what_the_thread_relayed(rtpproxy):
    d = rtpproxy("-l", HOST, "-T", "2", "-d", "DBUG")
    call = latched_call(d)
    end, seq = time.time() + 3.5, 1
    while time.time() < end:
        talk(call, [seq], [seq])
        seq += 1
        time.sleep(0.2)
    assert d.command("Q call ft tt ttl").isdigit()          # alive: media kept it so
    assert wait_for(lambda: sessions(d) == 0, timeout=6)    # and it ends when the media stops


def test_no_fastpath_relays_in_python(rtpproxy):
    d = rtpproxy("-l", HOST, "-d", "DBUG", "--no_fastpath")
    call = Call(d)
    talk(call, list(range(20)), list(range(20)))
    assert len(drain(call.callee)) == 20 and len(drain(call.caller)) == 20
    assert TAKEN not in d.log()


# --- the C packet code against the Python analyzer ------------------------------------

def _sequences():
    rng = random.Random(16)
    yield bytes(400)                                        # a long clean run
    yield bytes([0x80, 5] * 300)                            # clean run, irregular arrival
    yield bytes([0] * 100 + [6, 7] + [0] * 50 + [7, 3] + [0] * 50)      # loss, duplicates
    yield bytes([0] * 60 + [8, 200] + [0] * 60 + [9, 3] + [0] * 60)     # new SSRC, marked reset
    yield bytes([0] * 30 + [10, 101] + [0] * 30 + [10, 0] + [0] * 30)   # clockless payload type
    yield bytes([0] * 30 + [11, 250] + [0] * 30 + [12] + [0] * 30)      # odd step, a read
    yield bytes([0] * 20 + [13, 11] + [0] * 11 + [13, 0] + [0] * 20)   # runts
    for _ in range(300):
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(600)))


def test_c_analysis_equals_the_python_analyzer():
    for data in _sequences():
        fastpath_fuzz.check(data)


def test_fuzz_oracle_catches_a_wrong_jitter(monkeypatch):
    from rtpproxy_py import fastpath
    apply_run = fastpath._apply_run

    def wrong(a, n, last_t, max_gap, prev_rts, jlast, jmax, jtotal):
        apply_run(a, n, last_t, max_gap, prev_rts, jlast * 1.001, jmax, jtotal)
    monkeypatch.setattr(fastpath, "_apply_run", wrong)
    with pytest.raises(AssertionError):
        fastpath_fuzz.check(bytes([0x80, 5] * 200))     # jitter: 5 ms arrivals, 20 ms of media


def test_fuzz_target_runs_under_atheris(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(TOP, "fuzz", "fastpath_fuzz.py"),
                          "-runs=3000", "-max_len=600"], cwd=tmp_path, capture_output=True,
                         timeout=120, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 3000 runs" in run.stderr


ASAN_DRIVER = """
import importlib.util, os, random, sys
spec = importlib.util.spec_from_file_location("rtpproxy_py._fastpath", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import rtpproxy_py
sys.modules["rtpproxy_py._fastpath"] = rtpproxy_py._fastpath = module
sys.path.insert(0, os.path.join(sys.argv[2], "fuzz"))
import fastpath_fuzz
assert fastpath_fuzz._fastpath is module
rng = random.Random(7)
for _ in range(3000):
    fastpath_fuzz.check(bytes(rng.randrange(256) for _ in range(rng.randrange(600))))
print("clean")
"""


def test_packet_code_under_address_sanitizer(tmp_path):
    """The C file built with -fsanitize=address; the Python extension needs
    libasan preloaded (the interpreter is not built with it), and
    PYTHONMALLOC=malloc so that Python's own buffers are ASan's too."""
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert os.path.isabs(libasan), "gcc has no libasan (apt install gcc)"
    module = tmp_path / ("_fastpath" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(["gcc", "-shared", "-fPIC", "-g", "-O1", "-fsanitize=address",
                    "-fno-omit-frame-pointer", "-ffp-contract=off",
                    "-I" + sysconfig.get_paths()["include"],
                    os.path.join(TOP, "rtpproxy_py", "_fastpath.c"), "-o", str(module), "-lm"],
                   check=True)
    driver = tmp_path / "drive.py"
    driver.write_text(ASAN_DRIVER)
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0",
               PYTHONMALLOC="malloc", PYTHONPATH=TOP)
    run = subprocess.run([sys.executable, str(driver), str(module), TOP], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "AddressSanitizer" not in run.stderr, run.stderr[-3000:]
    assert run.stdout.strip() == "clean"


# --- the same behaviour without the fast path ---------------------------------------

PURE_PYTHON_SUBSET = [
    "tests/test_relay.py",
    "tests/test_rtp_analysis.py",
    "tests/test_rtp_bleed.py",
    "tests/test_timeouts.py::test_media_keeps_session_alive",
    "tests/test_timeouts.py::test_independent_leg_ttl",
    "tests/test_fastpath.py::test_no_fastpath_relays_in_python",
]


def test_relay_latching_analysis_and_timeouts_without_the_fast_path():
    """CI runs the suite with the fast path; the relay, latching, analysis and
    time-out tests run here again with --no_fastpath (helpers.Daemon adds it
    when RTPPROXY_TEST_NO_FASTPATH is set)."""
    env = dict(os.environ, RTPPROXY_TEST_NO_FASTPATH="1")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"]
                         + PURE_PYTHON_SUBSET, cwd=TOP, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-5000:]


def test_the_fast_path_status_line_is_logged_once_a_round_when_idle():
    """At DBUG the fast path logs its counters once per poll round (1 s), also
    with nothing to relay: it used to log at every 50 ms slice then."""
    from helpers import Daemon
    d = Daemon("-d", "DBUG", "--workers", "1")
    try:
        status = "fast path: 0 streams"
        assert wait_for(lambda: d.log().count(status) >= 1, timeout=5), d.log()
        first = time.monotonic()
        assert wait_for(lambda: d.log().count(status) >= 3, timeout=5), d.log()
        assert time.monotonic() - first > 1.2, d.log()   # two rounds: 2 s; per slice: 0.1 s
    finally:
        d.stop()
