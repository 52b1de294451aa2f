"""Daemon life (cli.md -u -w -F -p -f -D -d -L -t): privileges, detaching,
syslog facility, the open-files limit and the TOS byte on relayed packets.

Tests that create users, mount namespaces or detached daemons need root; CI
runs as root."""

import errno
import os
import pty
import random
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from helpers import TOP, Endpoint, free_port, port_range, rtp_packet, wait_for
from netns import require_root

RTPPROXY = [sys.executable, "-m", "rtpproxy_py"]
ENV = dict(os.environ, PYTHONPATH=TOP)


# --- helpers -------------------------------------------------------------------

def _run_tool(*argv):
    """useradd and friends; retried while another process holds /etc/passwd's lock."""
    for _ in range(50):
        out = subprocess.run(list(argv), capture_output=True, text=True)
        if out.returncode == 0 or "lock" not in out.stderr:
            return out
        time.sleep(0.1)
    return out


@pytest.fixture
def system_user():
    """A throw-away system user with its own group, plus a second group."""
    require_root()
    name = "rtpp%d_%d" % (os.getpid(), random.randrange(1000))
    group = name + "g"
    out = _run_tool("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "--user-group", name)
    assert out.returncode == 0, out.stderr
    try:
        out = _run_tool("groupadd", "--system", group)
        assert out.returncode == 0, out.stderr
        import grp
        import pwd
        entry = pwd.getpwnam(name)
        yield {"name": name, "uid": entry.pw_uid, "gid": entry.pw_gid,
               "group": group, "group_gid": grp.getgrnam(group).gr_gid}
    finally:
        _run_tool("userdel", name)
        _run_tool("groupdel", group)


def _user_dir(owner_uid):
    """A directory the dropped user can work in (pytest's tmp_path is root-only)."""
    path = tempfile.mkdtemp(prefix="rtpp-life-")
    os.chown(path, owner_uid, -1)
    os.chmod(path, 0o755)
    return path


def _privileged_udp_port():
    for _ in range(200):
        port = random.randrange(600, 1024)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port below 1024")


def _udp_command(port, text, timeout=0.5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        cookie = "%d_%d" % (os.getpid(), random.randrange(1 << 30))
        s.sendto(("%s %s" % (cookie, text)).encode(), ("127.0.0.1", port))
        reply = s.recv(1000).decode()
    finally:
        s.close()
    assert reply.startswith(cookie + " ")
    return reply[len(cookie) + 1:].rstrip("\n")


def _unix_command(path, text):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        s.sendall(text.encode())
        return s.recv(1000).decode().rstrip("\n")
    finally:
        s.close()


def _proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


def _proc_stat(pid):
    """(ppid, pgrp, session, tty_nr) from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[1]), int(rest[2]), int(rest[3]), int(rest[4])


def _open_files_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open files line")


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0): look at its state
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def _stop_daemon(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    assert wait_for(lambda: _gone(pid), timeout=10)


def _one_sentence(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out
    assert lines[0].startswith("rtpproxy: ") and "Traceback" not in out.stderr
    return lines[0]


# --- -u, -w, -F ------------------------------------------------------------------

@pytest.mark.parametrize("spec,mode_args,group_kind,mode", [
    ("{name}:{group}", ["-w", "432"], "group_gid", 0o660),   # -w is decimal: 432 = 0660
    ("{name}:{group}", [], "group_gid", 0o755),              # a group: 0755 unless -w
    ("{name}", [], "gid", None),                             # user only: mode left alone
])
def test_u_binds_as_root_then_runs_as_the_user(system_user, spec, mode_args, group_kind, mode):
    user = system_user
    workdir = _user_dir(user["uid"])
    sock_path = os.path.join(workdir, "ctl.sock")
    pidfile = os.path.join(workdir, "rtpproxy.pid")
    low_port = _privileged_udp_port()            # only root may bind it
    lo, hi = port_range()
    proc = subprocess.Popen(RTPPROXY + ["-f", "-u", spec.format(**user), *mode_args, "-p", pidfile,
                                        "-s", "unix:" + sock_path, "-s", "udp:127.0.0.1:%d" % low_port,
                                        "-m", str(lo), "-M", str(hi), "-d", "INFO"],
                            env=ENV, cwd=TOP, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, timeout=15), \
            proc.stderr.read() if proc.poll() is not None else "no pid file"
        assert open(pidfile).read() == "%d\n" % proc.pid
        status = _proc_status(proc.pid)
        gid = user[group_kind]
        assert status["Uid"] == [str(user["uid"])] * 4
        assert status["Gid"] == [str(gid)] * 4
        assert status["Groups"] == [str(gid)]                 # root's groups are gone too
        st = os.stat(sock_path)
        assert (st.st_uid, st.st_gid) == (user["uid"], gid)
        if mode is not None:
            assert stat.S_IMODE(st.st_mode) == mode
        # the privileged UDP control port serves, and media ports open as the user
        assert _udp_command(low_port, "V") == "20040107"
        a, b = Endpoint(), Endpoint()
        p0 = int(_udp_command(low_port, "U c1 127.0.0.1 %d ft" % a.port))
        p1 = int(_unix_command(sock_path, "L c1 127.0.0.1 %d ft tt" % b.port))
        b.send(rtp_packet(1), "127.0.0.1", p0)
        assert a.recv()[0] == rtp_packet(1)
        a.send(rtp_packet(2), "127.0.0.1", p1)
        assert b.recv()[0] == rtp_packet(2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
        assert not os.path.exists(sock_path) and not os.path.exists(pidfile)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", workdir])


def test_u_refuses_what_the_user_cannot_use(system_user):
    user = system_user
    root_only = tempfile.mkdtemp(prefix="rtpp-root-")      # 0700, owned by root
    try:
        lo, hi = port_range()
        base = ["-f", "-u", user["name"], "-p", "/dev/null", "-s", "udp:127.0.0.1:%d" % free_port()]
        out = subprocess.run(RTPPROXY + base + ["-m", str(lo), "-M", str(hi), "-r", root_only],
                             env=ENV, cwd=TOP, capture_output=True, text=True, timeout=20)
        line = _one_sentence(out)
        assert "-r %s" % root_only in line and "not writable by user %s" % user["name"] in line
        out = subprocess.run(RTPPROXY + base + ["-m", "200", "-M", "400"],
                             env=ENV, cwd=TOP, capture_output=True, text=True, timeout=20)
        line = _one_sentence(out)
        assert "need root" in line and user["name"] in line
    finally:
        os.rmdir(root_only)


def test_root_rules():
    require_root()
    lo, hi = port_range()
    common = ["-f", "-p", "/dev/null", "-m", str(lo), "-M", str(hi), "-d", "INFO"]
    # UDP control as root without -u: refused, naming -u and -F
    out = subprocess.run(RTPPROXY + common + ["-s", "udp:127.0.0.1:%d" % free_port()],
                         env=ENV, cwd=TOP, capture_output=True, text=True, timeout=20)
    line = _one_sentence(out)
    assert "-u" in line and "-F" in line
    # -u :group keeps uid 0, so the rule still applies (upstream checks the user name)
    out = subprocess.run(RTPPROXY + common + ["-u", ":daemon", "-s", "udp:127.0.0.1:%d" % free_port()],
                         env=ENV, cwd=TOP, capture_output=True, text=True, timeout=20)
    assert "-F" in _one_sentence(out)
    # other control sockets as root: a warning only; -F silences it
    for extra, warned in (([], True), (["-F"], False)):
        with tempfile.TemporaryDirectory() as tmp:
            sock_path = os.path.join(tmp, "ctl.sock")
            proc = subprocess.Popen(RTPPROXY + common + extra + ["-s", "unix:" + sock_path],
                                    env=ENV, cwd=TOP, stderr=subprocess.PIPE, text=True)
            try:
                assert wait_for(lambda: os.path.exists(sock_path), timeout=15)
                assert wait_for(lambda: _try_unix(sock_path) == "20040107", timeout=10)
            finally:
                proc.send_signal(signal.SIGTERM)
                err = proc.communicate(timeout=10)[1]
            assert proc.returncode == 0
            assert ("running as root without -u" in err) == warned, err


def _try_unix(path):
    try:
        return _unix_command(path, "V")
    except OSError:
        return None


# --- daemonizing ----------------------------------------------------------------------

def _spawn_on_terminal(argv):
    """Run argv as the leader of a new session whose controlling terminal is a pty;
    returns (pid, master fd)."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.chdir(TOP)
            os.execve(argv[0], argv, ENV)
        finally:
            os._exit(127)
    return pid, master


def _read_until_exit(pid, master, timeout=20):
    output = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), output
        if select.select([master], [], [], 0.1)[0]:
            try:
                output += os.read(master, 4096)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
    raise AssertionError("still running: %r" % output)


@pytest.mark.parametrize("no_chdir", [False, True])
def test_daemon_detaches_from_the_terminal(tmp_path, no_chdir):
    pidfile = tmp_path / "rtpproxy.pid"
    sock_path = str(tmp_path / "ctl.sock")
    lo, hi = port_range()
    argv = RTPPROXY + ["-F", "-p", str(pidfile), "-s", "unix:" + sock_path, "-m", str(lo), "-M", str(hi)]
    if no_chdir:
        argv.append("-D")
    starter, master = _spawn_on_terminal(argv)
    try:
        code, output = _read_until_exit(starter, master)
        assert code == 0, output                      # the starting process returns once serving
        pid = int(pidfile.read_text())
        try:
            assert pid != starter
            assert _unix_command(sock_path, "V") == "20040107"
            ppid, pgrp, session, tty = _proc_stat(pid)
            assert tty == 0                            # no controlling terminal
            assert session not in (starter, os.getsid(0)) and session != pid   # can never get one back
            assert ppid != starter and ppid != os.getpid()
            for fd in (0, 1, 2):
                assert os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null"
            assert os.readlink("/proc/%d/cwd" % pid) == (TOP if no_chdir else "/")
        finally:
            _stop_daemon(pid)
        assert not pidfile.exists() and not os.path.exists(sock_path)
    finally:
        os.close(master)


def test_foreground_keeps_the_terminal(tmp_path):
    pidfile = tmp_path / "rtpproxy.pid"
    sock_path = str(tmp_path / "ctl.sock")
    lo, hi = port_range()
    pid, master = _spawn_on_terminal(RTPPROXY + ["-f", "-F", "-p", str(pidfile), "-s", "unix:" + sock_path,
                                                 "-m", str(lo), "-M", str(hi)])
    try:
        assert wait_for(lambda: pidfile.exists() and pidfile.stat().st_size > 0, timeout=15)
        assert int(pidfile.read_text()) == pid          # no fork
        _, _, session, tty = _proc_stat(pid)
        assert session == pid and tty != 0
        os.kill(pid, signal.SIGTERM)
        code, output = _read_until_exit(pid, master)
        assert code == 0
        assert b"started" in output and b"DEBUG" in output   # -f logs to the terminal at DBUG
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
        os.close(master)


# --- syslog facility -----------------------------------------------------------------

# In a private mount namespace: /dev becomes a tmpfs holding the real null, zero
# and urandom, and a log socket of the test's own at /dev/log.
_PRIVATE_DEV_LOG = """
set -e
T="$1"; shift
mount --bind /dev "$T/realdev"
mount -t tmpfs -o mode=755 tmpfs /dev
for n in null zero random urandom; do touch /dev/$n; mount --bind "$T/realdev/$n" /dev/$n; done
touch /dev/log
mount --bind "$T/log.sock" /dev/log
exec "$@"
"""


@pytest.mark.parametrize("level,pri_base", [("INFO:local3", 19 * 8), ("info:LOG_MAIL", 2 * 8), ("INFO", 3 * 8)])
def test_daemon_logs_to_syslog_with_the_facility(tmp_path, level, pri_base):
    require_root()
    os.mkdir(tmp_path / "realdev")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "log.sock"))
    receiver.settimeout(0.2)
    pidfile = tmp_path / "rtpproxy.pid"
    lo, hi = port_range()
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _PRIVATE_DEV_LOG, "sh",
            str(tmp_path)] + RTPPROXY + ["-F", "-d", level, "-p", str(pidfile),
                                         "-s", "unix:" + str(tmp_path / "ctl.sock"), "-m", str(lo), "-M", str(hi)]
    try:
        out = subprocess.run(argv, env=ENV, cwd=TOP, capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        pid = int(pidfile.read_text())
        assert _unix_command(str(tmp_path / "ctl.sock"), "U c 127.0.0.1 4000 f").isdigit()
        os.kill(pid, signal.SIGHUP)          # graceful shutdown: a WARNING, then exit when idle
        assert _unix_command(str(tmp_path / "ctl.sock"), "D c f") == "0"
        messages = []
        deadline = time.time() + 10
        while time.time() < deadline and not any(b"stopped" in m for m in messages):
            try:
                messages.append(receiver.recv(4096))
            except socket.timeout:
                pass
        tag = b"rtpproxy[%d]: " % pid
        started = [m for m in messages if b"started" in m]
        warned = [m for m in messages if b"graceful shutdown" in m]
        assert started and warned, messages
        assert started[0].startswith(b"<%d>" % (pri_base + 6)) and tag in started[0]   # info
        assert warned[0].startswith(b"<%d>" % (pri_base + 4)) and tag in warned[0]    # warning
        assert wait_for(lambda: _gone(pid), timeout=10)
    finally:
        receiver.close()
        if pidfile.exists():
            _stop_daemon(int(pidfile.read_text()))


# --- -L ---------------------------------------------------------------------------------

def _has_cap_sys_resource():
    caps = int(_proc_status(os.getpid())["CapEff"][0], 16)
    return bool(caps & (1 << 24))


def test_open_files_limit_raised(rtpproxy):
    d = rtpproxy("-L", "4096")
    assert _open_files_limit(d.proc.pid) == (4096, 4096)


def test_open_files_limit_above_the_hard_limit_says_why(rtpproxy):
    require_root()
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open("/proc/sys/fs/nr_open") as f:
        nr_open = int(f.read())
    wanted = min(hard + 1000, nr_open)
    if _has_cap_sys_resource():
        d = rtpproxy("-L", str(wanted))
        assert _open_files_limit(d.proc.pid) == (wanted, wanted)
    else:
        # refused at start, as upstream does when setrlimit fails, saying why
        with pytest.raises(RuntimeError, match="CAP_SYS_RESOURCE") as failed:
            rtpproxy("-L", str(wanted))
        assert "exited 1" in str(failed.value)
    # beyond what the kernel allows anyone: refused, and told why
    with pytest.raises(RuntimeError, match="sysctl fs.nr_open") as failed:
        rtpproxy("-L", str(nr_open + 1))
    assert "exited 1" in str(failed.value) and "-L %d: cannot raise" % (nr_open + 1) in str(failed.value)


NOFILE_WARNING = re.compile(r"(\d+) media sockets and (\d+) other descriptors open: 80% of the "
                            r"open-files limit \(32\) is in use")


def test_warns_once_at_80_percent_of_the_open_files_limit(rtpproxy):
    # The limit is per process: one process here (with --workers each worker
    # warns about the descriptors it holds itself). The relay counts every
    # descriptor of the process (issue 17: the one open-files warning).
    d = rtpproxy("-L", "32", "--workers", "1")     # 80 %: 25.6 descriptors
    created = 0
    while "open-files limit (32)" not in d.log():
        reply = d.command("U fd%d 127.0.0.1 4000 f" % created)
        assert reply.isdigit(), (reply, d.log())    # warned before any call is refused
        created += 1
        assert created < 16, d.log()
    found = NOFILE_WARNING.search(d.log())
    assert found, d.log()
    media, other = int(found.group(1)), int(found.group(2))
    # said when the pair that crossed 80 % was opened, not before
    assert media == 2 * created and media + other >= 25.6 > media - 2 + other, d.log()
    assert d.command("U fd%d 127.0.0.1 4000 f" % created).isdigit()
    assert d.log().count("open-files limit (32)") == 1


# --- -t --------------------------------------------------------------------------------

def _tos_endpoint():
    e = Endpoint()
    e.sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    return e


def _received_tos(endpoint):
    endpoint.sock.settimeout(1.0)
    data, ancillary, _, _ = endpoint.sock.recvmsg(2048, socket.CMSG_SPACE(1))
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == socket.IP_TOS:
            return data, value[0]
    raise AssertionError("no TOS ancillary data")


@pytest.mark.parametrize("args,tos", [([], 0xB8), (["-t", "40"], 40), (["-t", "0"], 0)])
def test_relayed_packets_carry_the_tos(rtpproxy, args, tos):
    d = rtpproxy(*args)
    a, b = _tos_endpoint(), _tos_endpoint()
    p0 = int(d.command("U t 127.0.0.1 %d ft" % a.port))
    p1 = int(d.command("L t 127.0.0.1 %d ft tt" % b.port))
    b.send(rtp_packet(1), "127.0.0.1", p0)
    assert _received_tos(a) == (rtp_packet(1), tos)
    a.send(rtp_packet(2), "127.0.0.1", p1)
    assert _received_tos(b) == (rtp_packet(2), tos)


def test_s_tos_changes_one_leg(rtpproxy):
    d = rtpproxy("-t", "40")
    a, b = _tos_endpoint(), _tos_endpoint()
    p0 = int(d.command("U t 127.0.0.1 %d ft tt && S tos=104" % a.port))   # towards the caller
    p1 = int(d.command("L t 127.0.0.1 %d ft tt" % b.port))
    b.send(rtp_packet(1), "127.0.0.1", p0)
    assert _received_tos(a) == (rtp_packet(1), 104)
    a.send(rtp_packet(2), "127.0.0.1", p1)
    assert _received_tos(b) == (rtp_packet(2), 40)


# --- --nice, -c ---------------------------------------------------------------------------

def test_nice_and_realtime_policy(rtpproxy):
    d = rtpproxy("--nice", "5")
    assert os.getpriority(os.PRIO_PROCESS, d.proc.pid) == 5
    cap_sys_nice = int(_proc_status(os.getpid())["CapEff"][0], 16) & (1 << 23)
    if os.geteuid() == 0 and cap_sys_nice:
        d2 = rtpproxy("-c", "rr")
        assert os.sched_getscheduler(d2.proc.pid) == os.SCHED_RR
    else:
        lo, hi = port_range()
        out = subprocess.run(RTPPROXY + ["-f", "-F", "-p", "/dev/null", "-c", "rr", "-s", "stdio:",
                                         "-m", str(lo), "-M", str(hi)],
                             env=ENV, cwd=TOP, capture_output=True, text=True, timeout=20)
        assert "-c rr: cannot switch to real-time scheduling" in _one_sentence(out)


def test_s_tos_on_a_leg_already_carrying_media(rtpproxy):
    d = rtpproxy()
    a, b = _tos_endpoint(), _tos_endpoint()
    p0 = int(d.command("U t 127.0.0.1 %d ft tt" % a.port))
    p1 = int(d.command("L t 127.0.0.1 %d ft tt" % b.port))
    for n in range(3):      # both sides latched, so the relay may use connected sockets
        b.send(rtp_packet(n), "127.0.0.1", p0)
        assert _received_tos(a) == (rtp_packet(n), 0xB8)
        a.send(rtp_packet(n), "127.0.0.1", p1)
        assert _received_tos(b) == (rtp_packet(n), 0xB8)
    assert d.command("U t 127.0.0.1 %d ft tt && S tos=72" % a.port) == str(p0)
    b.send(rtp_packet(9), "127.0.0.1", p0)
    assert _received_tos(a) == (rtp_packet(9), 72)
    a.send(rtp_packet(9), "127.0.0.1", p1)
    assert _received_tos(b) == (rtp_packet(9), 0xB8)
