"""Test helpers: run the real daemon as a subprocess and talk to it on real sockets."""

import configparser
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def console_scripts():
    """name -> entry point of every command setup.cfg declares."""
    config = configparser.ConfigParser()
    config.read(os.path.join(TOP, "setup.cfg"))
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines if line.strip())


def free_port(kind=socket.SOCK_DGRAM, host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, kind)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_range(size=40):
    """A random even base port with ``size`` ports free above it (best effort).
    Below the kernel's ephemeral range (32768-60999 here) when it can: a client
    socket the test or another process opens meanwhile cannot take a port of it."""
    for attempt in range(400):
        top = 32768 if attempt < 200 else 60000     # then anywhere, if something fills the low part
        base = random.randrange(20000, top - size, 2)
        if all(_udp_free(p) for p in range(base, base + size)):
            return base, base + size - 1
    raise RuntimeError("no free port range")


def _udp_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def rtp_packet(seq, ts=0, ssrc=0x1234, pt=0, payload=b"\xff" * 160, marker=False):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


class Endpoint:
    """A UDP party of a call (a phone)."""

    def __init__(self, host="127.0.0.1", port=0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(1.0)
        self.host = host
        self.port = self.sock.getsockname()[1]

    def send(self, data, host, port):
        self.sock.sendto(data, (host, port))

    def recv(self, timeout=1.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recvfrom(65535)
        except socket.timeout:
            return None, None

    def drain(self, timeout=0.2):
        got = []
        while True:
            data, source = self.recv(timeout)
            if data is None:
                return got
            got.append((data, source))

    def close(self):
        self.sock.close()


class Daemon:
    """The real rtpproxy process. ``control`` picks the socket tests use."""

    def __init__(self, *args, control="udp", env=None, foreground=True, ports=None, command=None,
                 cwd=TOP):
        self.tmp = tempfile.mkdtemp(prefix="rtpp-test-")
        self.control_kind = control
        self.ports = ports or port_range()
        if control == "udp":
            self.ctl_port = free_port()
            self.control_spec = "udp:127.0.0.1:%d" % self.ctl_port
        elif control == "udp6":
            self.ctl_port = free_port(host="::1")
            self.control_spec = "udp6:::1:%d" % self.ctl_port
        elif control == "tcp":
            self.ctl_port = free_port(socket.SOCK_STREAM)
            self.control_spec = "tcp:127.0.0.1:%d" % self.ctl_port
        elif control == "tcp6":
            self.ctl_port = free_port(socket.SOCK_STREAM, host="::1")
            self.control_spec = "tcp6:::1:%d" % self.ctl_port
        elif control in ("unix", "cunix"):
            self.ctl_path = os.path.join(self.tmp, "ctl.sock")
            self.control_spec = "%s:%s" % (control, self.ctl_path)
        elif control in ("stdio", "stdioc"):
            self.control_spec = control + ":"
        else:
            raise ValueError(control)
        # command: the program to run instead of this interpreter's rtpproxy_py.
        argv = list(command or [sys.executable, "-m", "rtpproxy_py"]) + ["-F", "-p", "/dev/null",
                "-s", self.control_spec, "-m", str(self.ports[0]), "-M", str(self.ports[1])]
        if foreground:
            argv.append("-f")
        argv += list(args)
        if os.environ.get("RTPPROXY_TEST_NO_FASTPATH") and command is None:
            argv.append("--no_fastpath")    # tests/test_no_fastpath.py: the pure-Python relay
        if not any(a.startswith("-d") for a in args):
            argv += ["-d", "INFO"]
        self.argv = argv
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        # RTPP_PROFILE: where a debug build's profile goes, not into the tree
        full_env = dict(os.environ, PYTHONPATH=TOP, RTPP_PROFILE=self.tmp)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if control.startswith("stdio") else subprocess.DEVNULL,
            stdout=subprocess.PIPE if control.startswith("stdio") else subprocess.DEVNULL,
            stderr=self.stderr, env=full_env, cwd=cwd)
        self._stream = None
        self._cookie = random.randrange(1 << 20)
        self.udp = None
        self._wait_ready()

    # --- control ------------------------------------------------------------

    def _wait_ready(self, timeout=15.0):
        if self.control_kind.startswith("stdio"):
            # A pipe keeps what was written until the daemon reads it: one V and
            # one long wait (a V resent after a short wait would leave a late
            # reply in the pipe, read as the answer to the next command).
            try:
                if self.command("V", timeout=timeout) == "20040107":
                    return
            except (OSError, TimeoutError):
                pass
            self.stop(signal.SIGKILL)
            raise RuntimeError("rtpproxy did not answer V on stdio: %s" % self.log())
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rtpproxy exited %s: %s" % (self.proc.returncode, self.log()))
            try:
                if self.command("V", timeout=0.5) == "20040107":
                    return
            except (OSError, socket.timeout, TimeoutError):
                # a stream connection may still deliver this V's reply later,
                # where the next command would read it: start a new one
                if self._stream is not None:
                    self._stream.close()
                    self._stream = None
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError("rtpproxy did not answer V: %s" % self.log())

    def log(self):
        if not self.stderr.closed:
            self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def raw(self, data, timeout=3.0):
        """Send raw command bytes, return the raw reply bytes (cookie included on UDP)."""
        kind = self.control_kind
        if kind in ("udp", "udp6"):
            if self.udp is None:
                family = socket.AF_INET6 if kind == "udp6" else socket.AF_INET
                self.udp = socket.socket(family, socket.SOCK_DGRAM)
            self.udp.settimeout(timeout)
            target = ("::1" if kind == "udp6" else "127.0.0.1", self.ctl_port)
            self.udp.sendto(data, target)
            return self.udp.recv(65535)
        if kind == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.ctl_path)
            s.sendall(data)
            chunks = []
            while True:
                chunk = s.recv(65535)
                if not chunk:
                    break
                chunks.append(chunk)
            s.close()
            return b"".join(chunks)
        return self._stream_command(data, timeout)

    def _stream_command(self, data, timeout):
        kind = self.control_kind
        if kind.startswith("stdio"):
            self.proc.stdin.write(data + b"\n")
            self.proc.stdin.flush()
            return _read_reply(lambda n: os.read(self.proc.stdout.fileno(), n), timeout,
                               self.proc.stdout.fileno())
        if self._stream is None:
            if kind == "cunix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.ctl_path)
            else:
                family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
                s = socket.socket(family, socket.SOCK_STREAM)
                s.connect(("::1" if kind == "tcp6" else "127.0.0.1", self.ctl_port))
            self._stream = s
        self._stream.settimeout(timeout)
        self._stream.sendall(data + b"\n")
        return _read_reply(self._stream.recv, timeout, None)

    def command(self, text, timeout=3.0):
        """Send one command, return the reply text without cookie and final LF."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        if self.control_kind in ("udp", "udp6"):
            self._cookie += 1
            cookie = b"%d_%d" % (os.getpid(), self._cookie)
            reply = self.raw(cookie + b" " + data, timeout)
            mine = b"%d_" % os.getpid()
            while not reply.startswith(cookie + b" ") and reply.startswith(mine):
                reply = self.udp.recv(65535)    # a late reply to an earlier command (a V resent while starting)
            assert reply.startswith(cookie + b" "), reply
            reply = reply[len(cookie) + 1:]
        else:
            reply = self.raw(data, timeout)
        assert reply.endswith(b"\n"), reply
        return reply[:-1].decode("utf-8")

    # --- lifecycle ----------------------------------------------------------

    def alive(self):
        return self.proc.poll() is None

    def pids(self):
        """The daemon's process and its descendants (--workers: its workers)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                    todo.extend(int(child) for child in f.read().split())
            except OSError:
                pass
        return found

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._stream is not None:
            self._stream.close()
        if self.udp is not None:
            self.udp.close()
        self.stderr.close()
        return self.proc.returncode


def _read_reply(recv, timeout, fd):
    """Read until a LF ends the data read so far (multi-line replies arrive whole)."""
    import select
    deadline = time.time() + timeout
    buf = b""
    while True:
        if fd is not None:
            left = deadline - time.time()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no reply")
        chunk = recv(65535)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        if buf.endswith(b"\n"):
            return buf      # multi-line replies (I) are written in one go


def wait_for(predicate, timeout=5.0, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def relay_one_call(command, count=5, host="127.0.0.1", call_id="call1"):
    """A whole call through a relay: U from the caller, L from the callee,
    ``count`` RTP packets each way, then D. ``command`` sends one control
    command and returns the reply text. Returns (payloads the callee got,
    payloads the caller got, the packets they sent) so callers can compare."""
    caller, callee = Endpoint(host), Endpoint(host)
    try:
        to_callee = int(command("U %s %s %d ftag" % (call_id, host, caller.port)).split()[0])
        to_caller = int(command("L %s %s %d ftag ttag" % (call_id, host, callee.port)).split()[0])
        sent = [rtp_packet(i, i * 160, 0x5151) for i in range(count)]
        got_callee, got_caller = [], []
        for packet in sent:
            caller.send(packet, host, to_caller)   # L's port is the one the caller sends to
            got_callee.append(callee.recv()[0])
            callee.send(packet, host, to_callee)
            got_caller.append(caller.recv()[0])
        assert command("D %s ftag ttag" % call_id) == "0"
        return got_callee, got_caller, sent
    finally:
        caller.close()
        callee.close()


def relay_reader_calls(stats):
    """In a pstats.Stats profile: calls of the relay's per-packet readers
    (relay.py's read* callbacks)."""
    return sum(value[1] for (filename, _, function), value in stats.stats.items()
               if filename.endswith("relay.py") and function.startswith("read"))


class ServiceManagerSocket:
    """The service manager's end of systemd's notify protocol (Type=notify):
    a unix datagram socket at ``path`` whose messages ``receive`` returns."""

    def __init__(self, path):
        if os.path.exists(path):
            os.unlink(path)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)

    def receive(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


class NotifyListener:
    """A timeout-notification listener (what a SIP proxy runs): a stream server
    (TCP, or unix with family=AF_UNIX) that collects the lines it receives."""

    def __init__(self, family=socket.AF_INET, address=None, reply=None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family != socket.AF_UNIX:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1] if family != socket.AF_UNIX else None
        self.lines = []
        self.connections = 0
        self.peers = []
        self.reply = reply
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.peers.append(peer)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.lines.append(line)
                if self.reply:
                    conn.sendall(self.reply)

    @property
    def data(self):
        """Everything received, as bytes (whole lines only)."""
        return b"".join(line + b"\n" for line in self.lines)

    def close(self):
        self.sock.close()
