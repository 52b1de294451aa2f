"""What systemd sees of the real daemon, without systemd as PID 1: the test
plays the service manager. Readiness (Type=notify): a unix datagram socket of
the test is $NOTIFY_SOCKET. Socket activation: a small launcher binds the
sockets as rtpproxy.socket would, puts them at fds 3, 4, ... and execs the
daemon with LISTEN_FDS/LISTEN_PID. The journal: stderr is "the journal" when
$JOURNAL_STREAM names it. Also the start line operators read first."""

import os
import re
import signal
import socket
import subprocess
import sys

from helpers import TOP, ServiceManagerSocket, port_range, relay_one_call, wait_for

# Binds each of $RTPP_TEST_LISTEN ("unix:PATH", "udp:HOST:PORT", "tcp:HOST:PORT")
# as systemd does for a .socket unit, then becomes the daemon (same pid).
ACTIVATOR = r"""
import os, socket, sys
fds = []
for spec in os.environ.pop("RTPP_TEST_LISTEN").split():
    kind, _, where = spec.partition(":")
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(where)
        s.listen(16)
    else:
        host, _, port = where.rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        s.bind((host, int(port)))
        if kind == "tcp":
            s.listen(16)
    fds.append(os.dup(s.fileno()))
    s.close()
high = [os.dup2(fd, 200 + n) for n, fd in enumerate(fds)]
for fd in fds:
    os.close(fd)
for n, fd in enumerate(high):
    os.dup2(fd, 3 + n)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(high))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "rtpproxy_py"] + sys.argv[1:])
"""

# Makes stderr "the journal": $JOURNAL_STREAM = its device:inode, as systemd sets it.
JOURNAL = r"""
import os, sys
st = os.fstat(2)
os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
os.execv(sys.executable, [sys.executable, "-m", "rtpproxy_py"] + sys.argv[1:])
"""


class Manager(ServiceManagerSocket):
    """The service manager's end of the notify protocol."""

    def __init__(self, tmp_path):
        super().__init__(str(tmp_path / "notify.sock"))


def start(argv, tmp_path, env=None, program=None):
    log = open(str(tmp_path / "daemon.log"), "w+")
    command = [sys.executable] + (["-c", program] if program else ["-m", "rtpproxy_py"])
    proc = subprocess.Popen(command + ["-f", "-F", "-p", "/dev/null", "-d", "INFO"] + argv,
                            env=dict(os.environ, PYTHONPATH=TOP, **(env or {})), cwd=TOP,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    return proc, log


def read(log):
    log.flush()
    log.seek(0)
    return log.read()


def stop(proc, log):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, read(log)
    assert "Traceback" not in read(log), read(log)


def wait_started(d):
    """The start line is logged once every worker serves (the front end
    answers V before)."""
    assert wait_for(lambda: " started, pid %d" % d.proc.pid in d.log(), timeout=30), d.log()


def unix_command(path, text, line=False):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(path)
        s.sendall(text.encode() + (b"\n" if line else b""))
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.decode()


def test_ready_only_once_the_control_socket_serves_and_stopping_at_sigterm(tmp_path):
    manager = Manager(tmp_path)
    control = str(tmp_path / "ctl.sock")
    lo, hi = port_range()
    proc, log = start(["-s", "unix:" + control, "-l", "127.0.0.1", "-m", str(lo), "-M", str(hi)],
                      tmp_path, env={"NOTIFY_SOCKET": manager.path})
    try:
        message = manager.receive(timeout=30)
        assert message is not None, read(log)
        fields = dict(line.split("=", 1) for line in message.splitlines())
        assert fields["READY"] == "1" and fields["MAINPID"] == str(proc.pid), message
        # at READY the socket answers at once, and a call gets ports
        assert unix_command(control, "V") == "20040107\n"
        assert re.fullmatch(r"\d+ 127\.0\.0\.1\n", unix_command(control, "U c1 10.0.0.1 5000 f1"))
        assert manager.receive(timeout=0.2) is None           # READY=1 is said once
        proc.send_signal(signal.SIGTERM)
        assert manager.receive(timeout=15) == "STOPPING=1"
        assert proc.wait(15) == 0
    finally:
        stop(proc, log)
        manager.close()


def test_workers_front_end_is_ready_only_when_every_worker_serves(tmp_path):
    manager = Manager(tmp_path)
    control = str(tmp_path / "ctl.sock")
    lo, hi = port_range()
    proc, log = start(["-s", "unix:" + control, "-l", "127.0.0.1", "-m", str(lo), "-M", str(hi),
                       "--workers", "2"], tmp_path, env={"NOTIFY_SOCKET": manager.path})
    try:
        message = manager.receive(timeout=30)
        assert message is not None and "READY=1" in message.splitlines(), read(log)
        # both workers had reported ready before; commands go through at once
        assert "2 workers serving" in read(log)
        for n in range(4):      # Call-IDs spread over both workers
            reply = unix_command(control, "U call%d 10.0.0.1 5000 f1" % n)
            assert re.fullmatch(r"\d+ 127\.0\.0\.1\n", reply), reply
    finally:
        stop(proc, log)
        manager.close()


def test_socket_activation_unix_and_udp_from_systemd(rtpproxy, tmp_path):
    unix_path = str(tmp_path / "activated.sock")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp_port = udp.getsockname()[1]
    udp.close()
    d = rtpproxy("-l", "127.0.0.1", "-s", "systemd:", command=[sys.executable, "-c", ACTIVATOR],
                 env={"RTPP_TEST_LISTEN": "unix:%s udp:127.0.0.1:%d" % (unix_path, udp_port)})
    wait_started(d)
    log = d.log()
    assert "systemd:fd 3 (unix %s)" % unix_path in log and "systemd:fd 4 (udp 127.0.0.1:%d)" % udp_port in log
    # Kamailio's unix: client: one command without LF, one reply, closed
    assert unix_command(unix_path, "V") == "20040107\n"
    # a line client (the spec's systemd: framing): several commands on one connection
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(unix_path)
        s.sendall(b"V\nVF 20040107\n")
        got = b""
        while got.count(b"\n") < 2:
            got += s.recv(4096)
        assert got == b"20040107\n1\n"
    # the datagram socket: cookies, as udp:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"abc V", ("127.0.0.1", udp_port))
        assert s.recv(4096) == b"abc 20040107\n"

    def command(text):
        return unix_command(unix_path, text).rstrip("\n")

    got_callee, got_caller, sent = relay_one_call(command)
    assert got_callee == sent and got_caller == sent
    assert d.stop() == 0
    assert os.path.exists(unix_path)      # the socket is systemd's: not unlinked


def test_socket_activation_without_sockets_is_one_sentence(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-f", "-F", "-s", "systemd:"],
                         env=dict(os.environ, PYTHONPATH=TOP, LISTEN_FDS="1", LISTEN_PID="1"),
                         capture_output=True, text=True, timeout=30, cwd=TOP)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "rtpproxy: -s systemd:: systemd passed no sockets to this process (no LISTEN_FDS for it); "
        "start it through rtpproxy.socket, or use unix:, udp: or tcp:."]


def test_start_line_names_control_media_ports_and_processes(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1=198.51.100.7", "-l", "lo2@127.0.0.2", "--workers", "2")
    wait_started(d)
    line = [l for l in d.log().splitlines() if " started, pid %d" % d.proc.pid in l]
    assert len(line) == 1, d.log()
    line = line[0]
    assert "control %s;" % d.control_spec in line
    assert "media on 127.0.0.1 (advertised as 198.51.100.7), 127.0.0.2 (label lo2);" in line
    assert "ports %d-%d;" % d.ports in line or "ports %d-%d;" % (d.ports[0], d.ports[1] + 1) in line
    assert line.endswith("2 workers")


def test_start_line_single_process_all_addresses(rtpproxy):
    d = rtpproxy("--workers", "1")
    [line] = [l for l in d.log().splitlines() if " started, pid " in l]
    assert "media on all IPv4 addresses;" in line and line.endswith("; 1 process"), line


def test_journal_lines_carry_their_priority(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", command=[sys.executable, "-c", JOURNAL])
    assert wait_for(lambda: " started, pid " in d.log(), timeout=30), d.log()
    d.command("U c1 10.0.0.1 5000 f1")
    d.command("X")
    assert d.stop() == 0
    lines = d.log().splitlines()
    assert lines and all(re.match(r"<[2-7]>", line) for line in lines), lines
    assert any(line.startswith("<6>INFO: rtpproxy-py ") and " started, pid " in line for line in lines)
    # warnings (the signal, running as root) are priority 4: journalctl -p warning shows them
    assert any(line.startswith("<4>WARNING: signal 15") for line in lines), lines
    assert not any(re.match(r"<\d>\d{4}-\d\d-\d\d", line) for line in lines)   # journald stamps the time

    # JOURNAL_STREAM inherited but stderr redirected elsewhere: plain lines
    d = rtpproxy("-l", "127.0.0.1", env={"JOURNAL_STREAM": "1:1"})
    wait_started(d)
    assert d.stop() == 0
    assert not any(line.startswith("<") for line in d.log().splitlines())
    assert re.search(r"^\d{4}-\d\d-\d\d .* INFO: rtpproxy-py ", d.log(), re.M)

