"""rtpproxy_debug (debug_daemon.py): loop-health lines, the profile written on
exit and the leak report, on the real daemon relaying a real call."""

import os
import pstats
import re
import socket
import subprocess
import sys

import pytest

from helpers import TOP, relay_one_call, relay_reader_calls, wait_for

BIN = os.path.dirname(sys.executable)
DEBUG = [os.path.join(BIN, "rtpproxy_debug")]


ALL_CLEAR = "leak report: all clear (sessions 0, ports 0, sockets 0, greenlets 0, fds 0)"


def _debug_daemon(rtpproxy, tmp_path, *args, control="udp", **env):
    env = dict({"RTPP_LOOP_HEALTH": "0.2", "RTPP_PROFILE": str(tmp_path)}, **env)
    return rtpproxy("-l", "127.0.0.1", *args, command=DEBUG, env=env, control=control)


@pytest.mark.parametrize("control", ["udp", "tcp", "cunix", "unix"])
def test_clean_run_reports_all_clear_and_writes_a_profile(rtpproxy, tmp_path, control):
    """Also with a control connection still open at exit (tcp, cunix): the
    daemon closes it, so it is no leak."""
    d = _debug_daemon(rtpproxy, tmp_path, control=control)
    got_callee, got_caller, sent = relay_one_call(d.command)
    assert got_callee == sent and got_caller == sent
    assert wait_for(lambda: "loop health:" in d.log(), timeout=5)
    line = re.search(r"loop health: (\d+) timers in [\d.]+ s ran late by avg [\d.]+ ms, "
                     r"p99 [\d.]+ ms, max [\d.]+ ms", d.log())
    assert line and int(line.group(1)) > 0, d.log()
    assert d.stop() == 0
    log = d.log()
    assert ALL_CLEAR in log, log
    profiles = list(tmp_path.glob("rtpproxy_debug.*.pstats"))
    assert len(profiles) == 1 and str(profiles[0]) in log
    # The profile covers the packet path: the relay's readers ran once per packet.
    assert relay_reader_calls(pstats.Stats(str(profiles[0]))) >= 2 * len(sent)


def test_timed_out_session_and_its_notification_leave_nothing(rtpproxy, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    target = "tcp:127.0.0.1:%d" % listener.getsockname()[1]
    d = _debug_daemon(rtpproxy, tmp_path, "-T", "1", "-n", target)
    d.command("U call2 127.0.0.1 4000 ftag %s bye" % target)
    listener.settimeout(10)
    conn, _ = listener.accept()
    conn.settimeout(10)
    assert conn.recv(100) == b"bye\n"
    assert d.stop() == 0
    assert ALL_CLEAR in d.log(), d.log()
    conn.close()
    listener.close()


def test_leak_report_catches_an_injected_leak(rtpproxy, tmp_path):
    d = _debug_daemon(rtpproxy, tmp_path, RTPP_DEBUG_LEAK="1")
    relay_one_call(d.command)
    assert d.stop() == 0
    log = d.log()
    assert "leaking session call1 on purpose" in log
    report = re.search(r"leak report: LEAKS after every session ended: sessions (\d+), ports (\d+), "
                       r"sockets (\d+), greenlets (\d+), fds (\d+);(.*)", log)
    assert report, log
    # one session of two legs: 2 RTP ports; per leg an RTP and an RTCP socket, and the
    # latched RTP stream's connected twin; its timer greenlet
    assert [int(n) for n in report.groups()[:5]] == [1, 2, 6, 1, 6], report.group(0)
    assert "Relay._session_loop" in report.group(6) and "socket:[" in report.group(6)


def test_production_daemon_has_none_of_it(rtpproxy, tmp_path):
    d = rtpproxy("-l", "127.0.0.1", "-d", "DBUG", cwd=str(tmp_path),
                 env={"RTPP_LOOP_HEALTH": "0.1", "RTPP_DEBUG_LEAK": "1"})
    relay_one_call(d.command)
    assert d.stop() == 0
    log = d.log()
    assert "session call1, tag ftag ended" in log
    for debug_only in ("loop health", "leak report", "profile", "on purpose"):
        assert debug_only not in log
    assert not list(tmp_path.iterdir())


def test_bad_loop_health_period_is_one_sentence():
    out = subprocess.run(DEBUG + ["-f", "-F", "-p", "/dev/null", "-s", "stdio:"], capture_output=True,
                         text=True, timeout=15, env=dict(os.environ, RTPP_LOOP_HEALTH="often"),
                         stdin=subprocess.DEVNULL, cwd=TOP)
    assert out.returncode == 1
    assert out.stderr == "rtpproxy: RTPP_LOOP_HEALTH=often: give a positive number of seconds.\n"


def test_stdout_ends_with_upstreams_memdeb_verdict(rtpproxy, tmp_path):
    """Scripts written for upstream compare the debug build's stdout."""
    clean = _debug_daemon(rtpproxy, tmp_path, control="stdio")
    relay_one_call(clean.command)
    assert clean.stop() == 0
    assert clean.proc.stdout.read().decode().splitlines()[-1] == "MEMDEB(rtpproxy): all clear"
    leaky = _debug_daemon(rtpproxy, tmp_path, control="stdio", RTPP_DEBUG_LEAK="1")
    relay_one_call(leaky.command)
    assert leaky.stop() == 0
    last = leaky.proc.stdout.read().decode().splitlines()[-1]
    assert last.startswith("MEMDEB(rtpproxy): leak report: LEAKS after every session ended: "
                           "sessions 1, ports 2"), last


def test_no_profile_left_in_the_working_directory_unless_asked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RTPP_PROFILE"}
    out = subprocess.run(DEBUG + ["-f", "-F", "-p", "/dev/null", "-s", "stdio:", "-l", "127.0.0.1",
                                  "-d", "INFO"],
                         input="V\n", capture_output=True, text=True, timeout=30,
                         env=dict(env, PYTHONPATH=TOP), cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "MEMDEB(rtpproxy): all clear"
    assert "profile" not in out.stderr
    assert not list(tmp_path.iterdir())
