"""The command line: outputs, startup errors as one plain sentence, daemon life."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import TOP, free_port, port_range, wait_for


def run(*args, timeout=15):
    env = dict(os.environ, PYTHONPATH=TOP)
    return subprocess.run([sys.executable, "-m", "rtpproxy_py"] + list(args), capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=TOP)


def test_version_and_capabilities():
    out = run("-V")
    assert out.returncode == 0 and out.stdout.startswith("1.")
    caps = run("-v").stdout.splitlines()
    assert caps[0] == "Basic version: 20040107"
    dates = [line.split()[1].rstrip(":") for line in caps[1:]]
    assert "20050322" in dates and "20071116" in dates and "20230424" in dates
    assert "20170313" not in dates
    assert all(line.startswith("Extension ") for line in caps[1:])
    assert run("-C").stdout.strip() == "CLOCK_MONOTONIC"
    assert "Usage:" in run("-h").stdout


def test_console_scripts_exist():
    bindir = os.path.dirname(sys.executable)
    for name in ("rtpproxy", "rtpproxy_debug", "rtpproxy-debug"):
        path = os.path.join(bindir, name)
        assert os.access(path, os.X_OK), path
        out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=15)
        assert out.returncode == 0 and out.stdout.startswith("1.")


@pytest.mark.parametrize("args,fragment", [
    (["-q"], "unknown option -q"),
    (["-f", "extra"], ""),
    (["-m"], "needs a value"),
    (["--nice"], "--nice needs a value"),
    (["--no_such_option"], ""),
])
def test_usage_errors(args, fragment):
    out = run(*args)
    assert out.returncode != 0
    assert fragment in out.stderr and "Usage:" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args,fragment", [
    (["-l", "203.0.113.77"], "-l <local address> -A 203.0.113.77"),
    (["-m", "x"], "-m x"),
    (["-m", "70000"], "-m 70000"),
    (["-m", "40001", "-M", "40002"], "holds no even RTP port"),
    (["-T", "0"], "-T 0"),
    (["-t", "300"], "-t 300"),
    (["-d", "LOUD"], "log level"),
    (["-d", "INFO:nowhere"], "facility"),
    (["-S", "/tmp"], "needs a final directory"),
    (["-r", "/nonexistent/dir"], "no such directory"),
    (["-u", "no_such_user_xyz"], "no user"),
    (["-s", "udp:127.0.0.1:99999"], "outside 1-65535"),
    (["-s", "udp:203.0.113.77:22222"], "not on this host"),
    (["-s", "/nonexistent/dir/ctl.sock"], "does not exist"),
    (["-n", "tcp:127.0.0.1"], "needs a port"),
    (["-l", "1.2.3.4/5.6.7.8", "-6", "::1/::2"], ""),
    (["--dso", "x.so"], "realpath: x.so: No such file or directory"),
    (["--dso", ""], "realpath: : No such file or directory"),
    (["-p", "/nonexistent/dir/pid"], "pid file"),
    # every flag that takes a value, with a bad one
    (["-l", "1.2.3.4.5", "--no_resolve"], "'1.2.3.4.5' is not a usable IPv4 address"),
    (["-l", "::1"], "'::1' is not a usable IPv4 address"),
    (["-l", "/127.0.0.1"], "give the internal address before the '/'"),
    (["-l", "127.0.0.1/"], "a bridge needs two addresses"),
    (["-l", "127.0.0.1", "-l", "127.0.0.2"], "need a label (-l label@127.0.0.2)"),
    (["-l", "127.0.0.1", "-l", "x@127.0.0.2/127.0.0.3"], "only the first -l address can be a bridge"),
    (["-6", "127.0.0.1"], "'127.0.0.1' is not a usable IPv6 address"),
    (["-6", "2001:db8::99"], "-6 2001:db8::99: this address is not on this host"),
    (["-6", "/::1"], "a v4/v6 bridge needs an IPv4 internal address from -l"),
    (["-A", ""], "-A ''"),
    (["-A", "a b"], "-A 'a b'"),
    (["-A", "192.0.2.1/192.0.2.2"], "only make sense with a bridge"),
    (["-l", "127.0.0.1/127.0.0.2", "-A", "192.0.2.1"], "give both advertised addresses"),
    (["-s", "systemd:"], "systemd passed no sockets to this process"),
    (["-s", "unix:"], "give the path of the control socket"),
    (["-s", "udp6:127.0.0.1:5000"], "not a usable IPv6 address"),
    (["-s", "tcp:127.0.0.1:x"], "the port 'x' is not a number"),
    (["-t", "x"], "-t x: the TOS value must be a whole number"),
    (["-t", "-1"], "-t -1"),
    (["-S", "/nonexistent/spool", "-r", "/tmp"], "-S /nonexistent/spool: no such directory"),
    (["-p", "/"], "-p /: cannot write the pid file"),
    (["-T", "x"], "-T x"),
    (["-W", "0"], "-W 0"),
    (["-W", "x"], "-W x"),
    (["-L", "0"], "-L 0"),
    (["-L", "x"], "-L x"),
    (["-m", "0"], "-m 0"),
    (["-M", "0"], "-M 0"),
    (["-M", "70000"], "-M 70000"),
    (["-u", ":no_such_group_xyz"], "no group 'no_such_group_xyz'"),
    (["-u", ":"], "-u :: name a user"),
    (["-w", "5000"], "-w 5000"),
    (["-w", "x"], "-w x"),
    (["-n", "unix:"], "give the path of the notification socket"),
    (["-n", "tcp:127.0.0.1:x"], "-n tcp:127.0.0.1:x: the port 'x' is not a number"),
    (["-d", ""], "-d : the log level"),
    (["-c", "batch"], "-c batch: the scheduling policy must be fifo or rr"),
    (["--nice", "40"], "--nice 40"),
    (["--nice", "x"], "--nice x"),
    (["--overload_prot=x"], "--overload_prot=x: give a number"),
    # refused at start as upstream does (an empty address is no wildcard: '*' is)
    (["-6", ""], "-6 '': give an address"),
    (["-l", ""], "-l '': give an address"),
    (["-L", str(2 ** 31 - 1)], "sysctl fs.nr_open"),    # above any kernel's ceiling
])
def test_startup_errors_are_one_sentence(args, fragment):
    out = run("-f", "-F", *args)
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("rtpproxy: ") and fragment in lines[0], lines[0]


def test_repeated_options_keep_the_last_value_as_getopt_does(tmp_path):
    """-p twice, -d twice, -f twice: not an error (upstream uses getopt)."""
    lo, hi = port_range()
    env = dict(os.environ, PYTHONPATH=TOP)
    out = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-f", "-f", "-F", "-p", str(tmp_path / "nowhere" / "pid"),
                          "-p", "/dev/null", "-d", "LOUD", "-d", "INFO", "-m", "x", "-m", str(lo), "-M", str(hi),
                          "-s", "stdio:"], input="V\n", capture_output=True, text=True, timeout=15, env=env, cwd=TOP)
    assert out.returncode == 0 and out.stdout == "20040107\n", out.stderr
    from rtpproxy_py.cli import parse_args
    opts = parse_args(["-p", "/a", "-p", "/b", "-ff", "-dLOUD", "-d", "INFO", "--nice", "-5",
                       "-l", "127.0.0.1", "-l", "x@127.0.0.2"])
    assert opts["-p"] == "/b" and opts["-f"] and opts["-d"] == "INFO" and opts["--nice"] == "-5"
    assert opts["-l"] == ["127.0.0.1", "x@127.0.0.2"]


def test_stdio_needs_foreground():
    out = run("-F", "-s", "stdio:")
    assert out.returncode == 1 and "needs -f" in out.stderr


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_busy_control_socket(kind):
    port = free_port(socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", port))
    if kind == "tcp":
        busy.listen(1)
    try:
        out = run("-f", "-F", "-s", "%s:127.0.0.1:%d" % (kind, port))
        assert out.returncode == 1
        assert "already in use" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    finally:
        busy.close()


def test_root_without_user_refuses_udp_control():
    port = free_port()
    if os.geteuid() == 0:
        out = run("-f", "-s", "udp:127.0.0.1:%d" % port)
        assert out.returncode == 1 and "-F" in out.stderr and "-u" in out.stderr
    else:
        # the rule only concerns root: an ordinary user starts normally
        p = subprocess.Popen([sys.executable, "-m", "rtpproxy_py", "-f", "-p", "/dev/null",
                              "-s", "udp:127.0.0.1:%d" % port], env=dict(os.environ, PYTHONPATH=TOP))
        time.sleep(1.5)
        assert p.poll() is None
        p.terminate()
        assert p.wait(10) == 0


def test_daemonizes_writes_pidfile_and_cleans_up(tmp_path):
    pidfile = tmp_path / "rtpproxy.pid"
    sock = tmp_path / "ctl.sock"
    lo, hi = port_range()
    out = run("-F", "-p", str(pidfile), "-s", "unix:" + str(sock), "-m", str(lo), "-M", str(hi))
    # the parent returns once the daemon is up
    assert out.returncode == 0, out.stderr
    assert pidfile.exists() and sock.exists()
    pid = int(pidfile.read_text())
    assert pidfile.read_text() == "%d\n" % pid
    os.kill(pid, 0)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock))
    s.sendall(b"V")
    assert s.recv(100) == b"20040107\n"
    s.close()
    # detached: its own session, not our child
    assert os.getsid(pid) == pid or os.getsid(pid) != os.getsid(0)
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not os.path.exists("/proc/%d" % pid), timeout=10)
    assert not pidfile.exists() and not sock.exists()


def test_daemon_startup_failure_reaches_the_terminal(tmp_path):
    port = free_port()
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", port))
    try:
        out = run("-F", "-p", str(tmp_path / "p"), "-s", "udp:127.0.0.1:%d" % port)
        assert out.returncode == 1 and "already in use" in out.stderr
    finally:
        busy.close()


def test_sigterm_removes_unix_socket_and_closes_sessions(rtpproxy):
    d = rtpproxy(control="unix")
    assert d.command("U c 127.0.0.1 4000 f").isdigit()
    assert os.path.exists(d.ctl_path)
    assert d.stop() == 0
    assert not os.path.exists(d.ctl_path)


def test_second_signal_forces_exit(rtpproxy):
    d = rtpproxy()
    # SIGTERM then SIGINT quickly: a clean 0 or the forced 128+signal
    d.proc.send_signal(signal.SIGTERM)
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(10) in (0, 130, 143)


def test_debug_build_logs_debug_to_stderr(rtpproxy, tmp_path):
    env = dict(os.environ, PYTHONPATH=TOP, RTPP_PROFILE=str(tmp_path))   # not into the tree
    lo, hi = port_range()
    port = free_port()
    p = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "rtpproxy_debug"), "-f", "-F",
                          "-p", "/dev/null", "-s", "udp:127.0.0.1:%d" % port, "-m", str(lo), "-M", str(hi)],
                         stderr=subprocess.PIPE, env=env)
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=10)[1].decode()
    assert p.returncode == 0 and "started" in err


@pytest.mark.parametrize("args,sentence", [
    (["-f", "extra"], "unexpected argument 'extra': rtpproxy takes options only"),
    (["--bogus"], "unknown option --bogus"),
    (["--no_r"], "ambiguous option --no_r"),
    (["--nice"], "option --nice needs a value"),
    (["--no_resolve=yes"], "option --no_resolve takes no value"),
    (["-V", "-f"], "-V -f: -V, -v, -C and -h each stand alone; give one of them without other options"),
])
def test_usage_errors_name_the_argument(args, sentence):
    out = run(*args)
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == "rtpproxy: " + sentence
    assert "Traceback" not in out.stderr


def test_long_option_prefixes_and_values():
    """getopt_long style: a unique prefix, and --opt=value or --opt value."""
    from rtpproxy_py import cli
    assert cli.parse_args(["--no_res", "--nice", "5"])["--no_resolve"] is True
    assert cli.parse_args(["--nice=7"])["--nice"] == "7"
    assert cli.parse_args(["--overload_prot"])["--overload_prot"] == "0.85"
# The seed's debugging case: upstream starts with -l set to the public address of a
# host behind NAT and only fails at the first call ("can't bind to the IPv4 port ...:
# Cannot assign requested address"). Here it fails before serving, with one sentence
# that names the address and the fix.
SEED_SENTENCE = ("rtpproxy: -l 203.0.113.5: this address is not on this host, so media cannot "
                 "be bound to it; if it is your public address behind NAT, use "
                 "-l <local address> -A 203.0.113.5.\n")


@pytest.mark.parametrize("foreground", [True, False])
def test_listen_address_not_on_this_host_fails_at_once(tmp_path, foreground):
    port = free_port()
    pidfile = tmp_path / "rtpproxy.pid"
    args = ["-F", "-p", str(pidfile), "-s", "udp:127.0.0.1:%d" % port, "-l", "203.0.113.5"]
    started = time.time()
    out = run(*(["-f"] if foreground else []) + args)
    assert time.time() - started < 10
    assert (out.returncode, out.stdout, out.stderr) == (1, "", SEED_SENTENCE)
    # nothing was left behind: no pid file, nobody serving the control port
    assert not pidfile.exists()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", port))
    probe.close()


def test_listen_address_not_on_this_host_ipv6_names_its_flag():
    out = run("-f", "-F", "-p", "/dev/null", "-6", "2001:db8::5")
    assert out.returncode == 1
    assert out.stderr == ("rtpproxy: -6 2001:db8::5: this address is not on this host, so media "
                          "cannot be bound to it; if it is your public address behind NAT, use "
                          "-6 <local address> -A 2001:db8::5.\n")


def test_the_suggested_fix_works(rtpproxy):
    """-l <local address> -A <public address>: binds locally, tells clients the public one."""
    d = rtpproxy("-l", "127.0.0.1", "-A", "203.0.113.5")
    port, address = d.command("U seed-call 127.0.0.1 4000 ftag").split()
    assert address == "203.0.113.5" and int(port) % 2 == 0
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError):
        probe.bind(("127.0.0.1", int(port)))     # the relay holds it on the local address
    probe.close()
