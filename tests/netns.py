"""Real separate networks for bridging tests: network namespaces joined by veth pairs.

Everything is created by the test and deleted at the end; names carry the pid
and a counter so parallel runs on one machine never meet. A UDP socket "inside"
a namespace is opened by a tiny helper run with ``ip netns exec`` and handed
back over a unix socket (SCM_RIGHTS), so the test drives it like any socket
while the kernel keeps it in that namespace's network; or, for any kind of
socket, the test's thread enters the namespace for a moment (``inside()``).
A namespace of its own also lets a test use fixed ports and spray every port
of a range without touching anything else on the machine.
"""

import contextlib
import ctypes
import itertools
import os
import socket
import subprocess
import sys

import pytest

from helpers import Endpoint

_counter = itertools.count()

# Run inside the namespace: bind a UDP socket, pass its descriptor back, exit.
_OPEN_SOCKET = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
back = socket.socket(fileno=int(sys.argv[3]))
socket.send_fds(back, [b"ok"], [s.fileno()])
"""


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "setns: %s" % os.strerror(errno))


def require_root():
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root: run `make test` as root (CI does)")


def unique_name(role):
    return "rtpp4-%d-%d-%s" % (os.getpid(), next(_counter), role)


class Netns:
    """A named network namespace with its loopback up."""

    def __init__(self, role):
        self.name = unique_name(role)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args):
        subprocess.run(["ip", "-n", self.name] + list(args), check=True)

    def exec_argv(self, argv):
        return ["ip", "netns", "exec", self.name] + list(argv)

    def run(self, *argv):
        return subprocess.run(self.exec_argv(argv), capture_output=True, text=True, timeout=10)

    def sysctl(self, key, value):
        path = "/proc/sys/" + key.replace(".", "/")
        out = self.run("sh", "-c", "echo %s > %s" % (value, path))
        assert out.returncode == 0, out.stderr

    def endpoint(self, host, port=0):
        """A UDP Endpoint bound on ``host`` inside this namespace."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            proc = subprocess.run(
                self.exec_argv([sys.executable, "-c", _OPEN_SOCKET, host, str(port), str(theirs.fileno())]),
                pass_fds=[theirs.fileno()], capture_output=True, text=True, timeout=10)
            assert proc.returncode == 0, proc.stderr
            _, fds, _, _ = socket.recv_fds(mine, 16, 1)
        finally:
            mine.close()
            theirs.close()
        return NsEndpoint(socket.socket(fileno=fds[0]))

    def udp_sockets(self):
        """``ss -uanp`` inside the namespace: [(local address, local port, process text)]."""
        out = self.run("ss", "-uanpH")
        assert out.returncode == 0, out.stderr
        sockets = []
        for line in out.stdout.splitlines():
            fields = line.split()
            # State Recv-Q Send-Q Local Peer Process
            local = fields[3]
            host, _, port = local.rpartition(":")
            sockets.append((host.strip("[]"), int(port), " ".join(fields[5:])))
        return sockets

    @contextlib.contextmanager
    def inside(self):
        """This thread is in the namespace for the block: sockets made there stay there."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open("/var/run/netns/" + self.name, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield self
            finally:
                _setns(home)
        finally:
            os.close(home)
            os.close(target)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.delete()


class NsEndpoint(Endpoint):
    """helpers.Endpoint around a socket that was opened inside a namespace."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(1.0)
        self.host, self.port = sock.getsockname()[:2]


def join(a, a_if, a_addr, b, b_if, b_addr):
    """A veth pair between namespaces ``a`` and ``b`` with one address at each end
    (``addr/prefix``; IPv6 addresses skip duplicate detection so they work at once)."""
    a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
    for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
        extra = ["nodad"] if ":" in addr else []
        ns.ip("addr", "add", addr, "dev", ifname, *extra)
        ns.ip("link", "set", ifname, "up")


class Networks:
    """The relay's namespace between a public network and a VPN.

    relay:  pub0 = PUBLIC_RELAY (v4) or PUBLIC_RELAY6 (v6)   vpn0 = VPN_RELAY
    public: up0  = PUBLIC_PHONE / PUBLIC_PHONE6, default route via the relay
    vpn:    up0  = VPN_PHONE, default route via the relay
    The relay does not forward packets, so the only way across is the relay daemon.
    """

    PUBLIC_RELAY, PUBLIC_PHONE = "203.0.113.1", "203.0.113.10"
    PUBLIC_RELAY6, PUBLIC_PHONE6 = "2001:db8:77::1", "2001:db8:77::10"
    VPN_RELAY, VPN_PHONE = "10.77.0.1", "10.77.0.10"

    def __init__(self, public_ipv6=False):
        self.namespaces = []
        try:
            self.relay = self._add("r")
            self.public = self._add("p")
            self.vpn = self._add("v")
            for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
                self.relay.sysctl(key, 0)
            if public_ipv6:
                join(self.relay, "pub0", self.PUBLIC_RELAY6 + "/64",
                     self.public, "up0", self.PUBLIC_PHONE6 + "/64")
                self.public.ip("-6", "route", "add", "default", "via", self.PUBLIC_RELAY6)
            else:
                join(self.relay, "pub0", self.PUBLIC_RELAY + "/24",
                     self.public, "up0", self.PUBLIC_PHONE + "/24")
                self.public.ip("route", "add", "default", "via", self.PUBLIC_RELAY)
            join(self.relay, "vpn0", self.VPN_RELAY + "/24", self.vpn, "up0", self.VPN_PHONE + "/24")
            self.vpn.ip("route", "add", "default", "via", self.VPN_RELAY)
        except BaseException:
            self.delete()
            raise

    def _add(self, role):
        ns = Netns(role)
        self.namespaces.append(ns)
        return ns

    def delete(self):
        for ns in self.namespaces:
            ns.delete()
