"""The control protocol has no authentication: a control socket reachable from
the network is warned about, and the root rules of -F hold (cli.md section 5:
as root without -u, a UDP control socket is refused unless -F is given, other
control sockets are only warned about; -u drops privileges)."""

import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time

from helpers import TOP, Daemon, free_port, port_range
from netns import Netns, require_root

WARNING = "is reachable from the network and the protocol has no authentication; firewall it"


def test_non_loopback_control_sockets_are_warned_about():
    """In a namespace of its own where 192.0.2.1 is a local address (so nothing
    outside can reach it): the sockets bound there are named in a warning,
    the loopback and unix ones are not."""
    require_root()
    with Netns("exposed") as ns:
        subprocess.run(["ip", "-n", ns.name, "addr", "add", "192.0.2.1/32", "dev", "lo"], check=True)
        d = Daemon("-s", "udp:192.0.2.1:22222", "-s", "tcp:192.0.2.1:22223",
                   "-s", "udp:127.0.0.1:22224", control="unix",
                   command=ns.exec_argv([sys.executable, "-m", "rtpproxy_py"]))
        try:
            with ns.inside():
                client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.settimeout(3)
            client.sendto(b"k1 V", ("192.0.2.1", 22222))
            assert client.recv(100) == b"k1 20040107\n"          # it is really served there
            client.close()
            log = d.log()
        finally:
            assert d.stop() == 0
    assert "control socket udp:192.0.2.1:22222 " + WARNING in log
    assert "control socket tcp:192.0.2.1:22223 " + WARNING in log
    assert log.count(WARNING) == 2


def start(*args):
    """The daemon without the test helper's -F; returns (process, log path)."""
    lo, hi = port_range()
    fd, log = tempfile.mkstemp(prefix="rtpp-root-", suffix=".log")
    stderr = os.fdopen(fd, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "rtpproxy_py", "-f", "-p", "/dev/null",
                             "-m", str(lo), "-M", str(hi), "-d", "INFO"] + list(args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                            env=dict(os.environ, PYTHONPATH=TOP), cwd=TOP)
    stderr.close()
    deadline = time.time() + 15
    while time.time() < deadline and proc.poll() is None and "started, pid" not in read(log):
        time.sleep(0.05)
    return proc, log


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def stop(proc, log):
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        return proc.returncode, read(log)
    finally:
        os.unlink(log)


def ask_udp(port, command=b"V"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b"c1 " + command, ("127.0.0.1", port))
    try:
        return s.recv(100)
    finally:
        s.close()


def test_root_without_u_and_f_refuses_udp_but_warns_for_stream_control(tmp_path):
    require_root()
    proc, log = start("-s", "udp:127.0.0.1:%d" % free_port())
    code, text = stop(proc, log)
    assert code == 1
    assert "refusing to run as root with a UDP control socket" in text and "-u" in text and "-F" in text
    port = free_port(socket.SOCK_STREAM)
    proc, log = start("-s", "tcp:127.0.0.1:%d" % port, "-s", "unix:%s" % (tmp_path / "ctl.sock"))
    assert proc.poll() is None
    conn = socket.create_connection(("127.0.0.1", port), timeout=3)
    conn.sendall(b"V\n")
    assert conn.recv(100) == b"20040107\n"
    conn.close()
    code, text = stop(proc, log)
    assert code == 0
    assert "running as root without -u; consider -u user[:group]" in text


def test_minus_f_allows_udp_control_as_root():
    require_root()
    port = free_port()
    proc, log = start("-F", "-s", "udp:127.0.0.1:%d" % port)
    assert ask_udp(port) == b"c1 20040107\n"
    code, text = stop(proc, log)
    assert code == 0
    assert "refusing" not in text and "running as root" not in text


def test_minus_u_drops_privileges_after_binding():
    require_root()
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    proc, log = start("-u", "nobody", "-s", "udp:127.0.0.1:%d" % port)
    assert ask_udp(port) == b"c1 20040107\n"
    assert ask_udp(port, b"U cid 127.0.0.1 4000 ft").split()[1].isdigit()   # media sockets too
    with open("/proc/%d/status" % proc.pid) as f:
        status = dict(line.split(":", 1) for line in f)
    assert status["Uid"].split() == [str(nobody.pw_uid)] * 4
    assert status["Gid"].split() == [str(nobody.pw_gid)] * 4
    code, text = stop(proc, log)
    assert code == 0, text
    assert "running as root" not in text
