"""acct_csv (modules.md 4) through the daemon as a real process: one line of
54 columns per session when it ends by D, X, time-out or SIGTERM, in
rtpproxy_acct.csv of the start directory, followed across log rotation and
shared by several processes without mixed lines."""

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import TOP, Endpoint, free_port, rtp_packet, wait_for
from rtpproxy_py.modules.acct_csv import HEADER

HOST = "127.0.0.1"
COLUMNS = HEADER.decode().strip().split(",")


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "rtpp_acct_csv.so").write_bytes(b"")
    return tmp_path


def rows(path):
    with open(path, "rb") as f:
        lines = f.read().decode().splitlines()
    assert lines[0].split(",") == COLUMNS
    return [dict(zip(COLUMNS, line.split(","))) for line in lines[1:]], lines


def start(rtpproxy, workdir, *extra):
    return rtpproxy("--dso", "rtpp_acct_csv.so", *extra, cwd=str(workdir))


def test_one_line_per_session_with_every_column(rtpproxy, workdir):
    assert len(COLUMNS) == 54
    d = start(rtpproxy, workdir, "--workers", "1", "--rtp_analysis", "-T", "2", "-W", "2")
    csv = workdir / "rtpproxy_acct.csv"
    assert csv.read_bytes() == HEADER                 # written at start
    caller, callee = Endpoint(HOST), Endpoint(HOST)
    try:
        before = time.time()
        to_callee = int(d.command("U call-1@host %s %d ftag;1" % (HOST, caller.port)))
        to_caller = int(d.command("L call-1@host %s %d ftag;1 ttag" % (HOST, callee.port)))
        for n in range(10):
            caller.send(rtp_packet(n, n * 160, 0x12345678, 8), HOST, to_caller)
        for n in range(3):
            caller.send(rtp_packet(100 + n, n * 160, 0xCAFE0001, 18), HOST, to_caller)
        for n in range(4):
            callee.send(rtp_packet(n, n * 160, 0x1111, 0), HOST, to_callee)
        assert wait_for(lambda: len(callee.drain(0.05)) + len(caller.drain(0.05)) == 0 and
                        d.command("Qv call-1@host ftag;1 ttag nrelayed") == "nrelayed=17")
        d.command("L call-1@host 0.0.0.0 %d ftag;1 ttag" % callee.port)       # callee on hold
        assert d.command("D call-1@host ftag;1 ttag") == "0"
        assert d.command("U call-2 %s %d ftag2" % (HOST, caller.port)) and d.command("D call-2 ftag2") == "0"
        assert wait_for(lambda: len(rows(csv)[0]) == 2)
        (one, two), lines = rows(csv)
        assert all(len(line.split(",")) == 54 for line in lines)
        assert one["rec_ver"] == "1.2" and one["rtpp_pid"] == str(d.proc.pid)
        assert one["call_id"] == "call-1@host" and one["from_tag"] == "ftag;1"
        assert before <= float(one["setup_ts"]) <= float(one["teardown_ts"]) <= time.time()
        for side in ("ino", "ina"):
            assert before <= float(one["first_rtp_ts_" + side]) <= float(one["last_rtp_ts_" + side])
        assert (one["rtp_npkts_ina"], one["rtp_npkts_ino"], one["rtp_nrelayed"], one["rtp_ndropped"]) == \
            ("13", "4", "17", "0")
        assert [one["rtpa_%s_ino" % k] for k in ("nsent", "nrcvd", "ndups", "nlost", "perrs",
                                                 "ssrc_last", "ssrc_cnt", "pt_last")] == \
            ["4", "4", "0", "0", "0", "0x00001111", "1", "0"]
        assert [one["rtpa_%s_ina" % k] for k in ("nrcvd", "ssrc_last", "ssrc_cnt", "pt_last")] == \
            ["13", "0xCAFE0001", "2", "18"]
        assert [one[k] for k in ("rtpp_rtp_rmt_ip_o", "rtpp_rtp_rmt_pt_o", "rtpp_rtp_rmt_ip_a",
                                 "rtpp_rtp_rmt_pt_a", "rtpp_rtcp_rmt_pt_a")] == \
            [HOST, str(callee.port), HOST, str(caller.port), str(caller.port + 1)]
        assert [one[k] for k in ("rtpp_hld_sts_o", "rtpp_hld_sts_a", "rtpp_hld_cnt_o", "rtpp_hld_cnt_a")] == \
            ["t", "f", "1", "0"]
        assert two["call_id"] == "call-2" and two["first_rtp_ts_ino"] == "0.000000"
        assert (two["rtpa_ssrc_last_ino"], two["rtpa_ssrc_cnt_ino"], two["rtpa_pt_last_ino"]) == ("", "0", "-1")
        assert (two["rtpp_rtp_rmt_ip_o"], two["rtpp_rtp_rmt_ip_a"], two["rtpp_rtcp_rmt_pt_a"]) == \
            ("", HOST, str(caller.port + 1))
        assert one["sess_uid"] != two["sess_uid"]
        # X, a time-out (-T 2), and SIGTERM each end sessions with a line
        d.command("U call-x %s 4000 f" % HOST)
        assert d.command("X") == "0"
        d.command("U call-idle %s 4000 f" % HOST)
        assert wait_for(lambda: len(rows(csv)[0]) == 4, timeout=8)
        d.command("U call-term %s 4000 f" % HOST)
        assert d.stop(signal.SIGTERM) == 0
        assert [r["call_id"] for r in rows(csv)[0]] == ["call-1@host", "call-2", "call-x", "call-idle",
                                                         "call-term"]
    finally:
        caller.close()
        callee.close()


def test_rotation_by_rename_starts_a_new_file_with_a_header(rtpproxy, workdir):
    d = start(rtpproxy, workdir, "--workers", "1")
    csv = workdir / "rtpproxy_acct.csv"
    d.command("U a %s 4000 f" % HOST)
    d.command("D a f")
    assert wait_for(lambda: len(rows(csv)[0]) == 1)
    os.rename(csv, workdir / "rtpproxy_acct.csv.1")
    d.command("U b %s 4000 f" % HOST)
    d.command("D b f")
    assert wait_for(lambda: csv.exists() and len(rows(csv)[0]) == 1)
    assert rows(csv)[0][0]["call_id"] == "b" and rows(workdir / "rtpproxy_acct.csv.1")[0][0]["call_id"] == "a"


def test_several_processes_share_one_file_whole_lines_one_header(rtpproxy, workdir):
    daemons = [start(rtpproxy, workdir, "--workers", "2") for _ in range(2)]
    for d in daemons:   # the front end answers V before its workers serve
        assert wait_for(lambda: "2 workers serving" in d.log(), timeout=15), d.log()
    for n in range(40):
        d = daemons[n % 2]
        reply = d.command("U call%d %s 4000 f" % (n, HOST))
        assert reply.split()[0].isdigit(), reply    # a session, so a line at the end
    for d in daemons:
        assert d.stop(signal.SIGTERM) == 0
    found, lines = rows(workdir / "rtpproxy_acct.csv")
    assert len(lines) == 41 and all(len(line.split(",")) == 54 for line in lines)
    assert sorted(r["call_id"] for r in found) == sorted("call%d" % n for n in range(40))
    assert len({r["rtpp_pid"] for r in found}) == 4           # two workers of each daemon wrote


@pytest.mark.parametrize("workers", ["1", "2"])
def test_start_fails_when_the_file_cannot_be_opened(workdir, workers):
    (workdir / "rtpproxy_acct.csv").mkdir()
    out = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-f", "-F", "-p", "/dev/null", "-s",
                          "udp:127.0.0.1:%d" % free_port(), "--dso", "rtpp_acct_csv.so",
                          "--workers", workers],
                         capture_output=True, text=True, timeout=20, cwd=str(workdir),
                         env=dict(os.environ, PYTHONPATH=TOP))
    assert out.returncode == 1
    assert "can't open 'rtpproxy_acct.csv' for writing: Is a directory (21)" in out.stderr
    assert out.stderr.strip().splitlines()[-1] == \
        "rtpproxy: acct_csv: dymanic module start has failed: Is a directory (21)"
