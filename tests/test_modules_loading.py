"""--dso / --config through the real program (modules.md 2, 9): upstream's
refusals exit 1 at start with its messages, good loads start daemonized and
stop on TERM and HUP, and no capability answer depends on modules."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from helpers import TOP, Daemon, free_port, port_range, wait_for

BIN = os.path.dirname(sys.executable)
NAMES = ("acct_csv", "acct_rtcp_hep", "catch_dtmf", "badmod1", "badmod2", "badmod3", "badmod4")


@pytest.fixture
def moddir(tmp_path):
    for name in NAMES:
        for suffix in ("", "_debug"):
            (tmp_path / ("rtpp_%s%s.so" % (name, suffix))).write_bytes(b"")
    return tmp_path


def run(moddir, *args, program="rtpproxy"):
    return subprocess.run([os.path.join(BIN, program), "-f", "-F", "-p", "/dev/null", "-s",
                           "udp:127.0.0.1:%d" % free_port()] + list(args),
                          capture_output=True, text=True, timeout=30, cwd=str(moddir),
                          env=dict(os.environ, PYTHONPATH=TOP))


@pytest.mark.parametrize("program,args,last", [
    ("rtpproxy", ["--dso", ""], "rtpproxy: realpath: : No such file or directory"),
    ("rtpproxy", ["--dso", "rtpp_missing.so"], "rtpproxy: realpath: rtpp_missing.so: No such file or directory"),
    ("rtpproxy", ["--dso", "rtpp_badmod1.so"], "rtpproxy: {d}/rtpp_badmod1.so: dymanic module load has failed"),
    ("rtpproxy", ["--dso", "rtpp_badmod4.so"], "rtpproxy: {d}/rtpp_badmod4.so: dymanic module load has failed"),
    ("rtpproxy_debug", ["--dso", "rtpp_badmod3.so"], "rtpproxy: {d}/rtpp_badmod3.so: dymanic module load has failed"),
    ("rtpproxy", ["--dso", "rtpp_catch_dtmf_debug.so"],
     "rtpproxy: {d}/rtpp_catch_dtmf_debug.so: dymanic module load has failed"),
    ("rtpproxy", ["--dso", "rtpp_catch_dtmf.so", "--dso", "rtpp_acct_rtcp_hep.so"],
     "rtpproxy: {d}/rtpp_acct_rtcp_hep.so: dymanic module requires configuration, cannot be loaded via --dso option"),
    ("rtpproxy", ["--config", "nowhere.conf"], "rtpproxy: rtpp_cfile_process() failed"),
])
def test_refusals_exit_1_at_start_with_upstreams_message(moddir, program, args, last):
    out = run(moddir, *args, program=program)
    assert out.returncode == 1, out
    assert out.stderr.strip().splitlines()[-1] == last.format(d=moddir)


@pytest.mark.parametrize("n,line", list(enumerate([
    "capt_port = -9060", "capt_id = -101", "capt_id = garbage", "capt_port = garbage",
    "capt_ptype = typo", None, "unknown = 123"], 1)))
def test_upstreams_seven_broken_hep_configs_are_refused(moddir, n, line):
    conf = moddir / ("broken%d.conf" % n)
    conf.write_text("modules {:\n" if line is None else
                    "modules {\n  acct_rtcp_hep {\n    load = rtpp_acct_rtcp_hep.so\n    %s\n  }\n}\n" % line)
    out = run(moddir, "--config", str(conf))
    assert out.returncode == 1 and out.stderr.strip().endswith("rtpproxy: rtpp_cfile_process() failed"), out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_good_loads_start_daemonized_and_stop(moddir, sig):
    """upstream's startstop: --config with acct_rtcp_hep and acct_csv, --dso
    catch_dtmf twice; daemonized (the parent exits 0 once the daemon is ready)."""
    (moddir / "rtpproxy.conf").write_text(
        "modules {\n acct_rtcp_hep { load = rtpp_acct_rtcp_hep.so; capt_host = 127.0.0.1 }\n"
        " acct_csv { load = rtpp_acct_csv.so }\n}\n")
    pidfile, port = moddir / "rtpproxy.pid", free_port()
    lo, hi = port_range()
    out = subprocess.run([os.path.join(BIN, "rtpproxy"), "-F", "-p", str(pidfile), "-s", "udp:127.0.0.1:%d" % port,
                          "-m", str(lo), "-M", str(hi), "-b", "--config", "rtpproxy.conf", "--dso", "rtpp_catch_dtmf.so",
                          "--dso", "rtpp_catch_dtmf.so", "--workers", "2"],
                         capture_output=True, text=True, timeout=30, cwd=str(moddir), env=dict(os.environ, PYTHONPATH=TOP))
    assert out.returncode == 0, out
    pid = int(pidfile.read_text())
    try:
        assert (moddir / "rtpproxy_acct.csv").exists()          # the start directory, not /
        ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ctl.settimeout(3)
        for n, (command, expected) in enumerate(((b"U c 127.0.0.1 4000 f && M3:3 t", b"E3"),
                                  (b"U c 127.0.0.1 4000 f && M3:2 t", b"%d && -1" % lo), (b"D c f", b"0"))):
            ctl.sendto(b"k%d %s" % (n, command), ("127.0.0.1", port))
            assert ctl.recv(100) == b"k%d %s\n" % (n, expected)
        ctl.close()
    finally:
        os.kill(pid, sig)
    assert wait_for(lambda: not pidfile.exists(), timeout=10)
    assert len((moddir / "rtpproxy_acct.csv").read_text().splitlines()) == 2


def test_capabilities_do_not_depend_on_modules(rtpproxy, moddir):
    """VF 20230205 (the catch_dtmf h modifier) and the rest answer as without modules."""
    plain = rtpproxy("--workers", "1")
    loaded = rtpproxy("--dso", str(moddir / "rtpp_catch_dtmf.so"), "--workers", "1")
    for date in ("20230205", "20230424", "20150420", "20071218"):
        assert loaded.command("VF " + date) == plain.command("VF " + date)
