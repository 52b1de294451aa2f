"""rtpproxy-ctl (issue 15, "see the live calls"): the console script lists a
running daemon's sessions, shows one in detail and prints the counters,
through the admin socket, with one process and with --workers."""

import json
import os
import subprocess
import sys

import pytest

from helpers import Daemon, Endpoint, console_scripts, rtp_packet

HOST = "127.0.0.1"


def ctl(path, *args):
    return subprocess.run([sys.executable, "-m", "rtpproxy_py.ctl", "-s", path] + list(args),
                          capture_output=True, text=True, timeout=30,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_entry_point_is_a_console_script():
    assert console_scripts()["rtpproxy-ctl"] == "rtpproxy_py.ctl:main"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_lists_shows_and_counts_live_sessions(tmp_path, workers):
    admin = str(tmp_path / "admin.sock")
    rec = tmp_path / "rec"
    rec.mkdir()
    d = Daemon("--workers", workers, "--admin_socket", admin, "-r", str(rec))
    caller, callee = Endpoint(), Endpoint()
    try:
        to_callee = int(d.command("U talk1 %s %d ft1" % (HOST, caller.port)).split()[0])
        to_caller = int(d.command("L talk1 %s %d ft1 tt1" % (HOST, callee.port)).split()[0])
        for seq in range(3):
            caller.send(rtp_packet(seq), HOST, to_caller)
            assert callee.recv()[0] is not None
        callee.send(rtp_packet(9, ssrc=7), HOST, to_callee)
        assert caller.recv()[0] is not None
        assert d.command("R talk1 ft1") == "0"
        for k in range(5):      # spread over the workers
            d.command("U idle%d %s 5000 ftx%d" % (k, HOST, k))

        listed = ctl(admin, "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[-1] == "6 sessions"
        talk = [line for line in lines if line.startswith("talk1 ")][0].split()
        assert talk[:3] == ["talk1", "ft1", "tt1"]
        assert talk[3] == "%s:%d" % (HOST, caller.port) and talk[4] == str(to_caller)
        assert "recording" in talk[-1]

        data = json.loads(ctl(admin, "--json", "show", "talk1").stdout)
        (session,) = data["sessions"]
        assert session["caller"]["address"] == "%s:%d" % (HOST, caller.port)
        assert session["caller"]["latched"] and session["callee"]["latched"]
        assert session["caller"]["relay_port"] == to_caller
        assert session["callee"]["relay_port"] == to_callee
        assert session["caller"]["packets_relayed"] == 3
        assert session["callee"]["packets_relayed"] == 1
        assert session["attached"] == ["recording"]
        assert session["age"] >= session["idle"] >= 0
        shown = ctl(admin, "show", "talk1")
        assert "127.0.0.1:%d (latched)" % callee.port in shown.stdout

        counters = json.loads(ctl(admin, "--json", "counters").stdout)["counters"]
        assert counters["active_sessions"] == 6
        assert counters["npkts_relayed"] == 4
        assert counters["nsess_created"] == int(d.command("G nsess_created"))

        missing = ctl(admin, "show", "nosuchcall")
        assert missing.returncode == 3 and "no session with Call-ID nosuchcall" in missing.stderr
        # the control socket knows nothing of it: upstream clients see upstream's protocol
        assert d.command("V") == "20040107"
    finally:
        caller.close()
        callee.close()
        d.stop()
    assert not os.path.exists(admin)


def test_without_a_daemon_one_sentence(tmp_path):
    result = ctl(str(tmp_path / "none.sock"), "list")
    assert result.returncode == 1
    assert result.stderr.startswith("rtpproxy-ctl: ") and "--admin_socket" in result.stderr
    assert result.stderr.count("\n") == 1


def test_no_command_is_a_usage_error(tmp_path):
    result = ctl(str(tmp_path / "none.sock"))
    assert result.returncode == 2 and "list, show CALL-ID or counters" in result.stderr


def test_lists_every_session_of_every_worker_page_by_page(tmp_path):
    from test_control_load import make_sessions
    admin = str(tmp_path / "admin.sock")
    d = Daemon("--workers", "2", "--admin_socket", admin, "-d", "ERR", ports=(20000, 21999))
    try:
        make_sessions(d, 450)       # more than admin.PAGE on each worker
        listed = json.loads(ctl(admin, "--json", "list").stdout)["sessions"]
        assert sorted(s["call_id"] for s in listed) == sorted("idle%d" % k for k in range(450))
    finally:
        d.stop()
