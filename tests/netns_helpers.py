"""Three private network namespaces for tests that need a real router: the
relay's, a caller's and a callee's, joined by veth pairs (root only).

    caller 10.77.1.2 --- 10.77.1.1 [relay] 10.77.2.1 --- 10.77.2.2 callee

The relay forwards between the two links (net.ipv4.ip_forward=1 in its
namespace). Names carry this process's pid so parallel runs never meet;
nothing is created in the host's namespace.
"""

import contextlib
import ctypes
import os
import socket
import struct
import subprocess
import sys

from helpers import Endpoint

CLONE_NEWNET = 0x40000000
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)      # linux/in.h
RELAY_IP, CALLER_IP, CALLEE_IP = "10.77.1.1", "10.77.1.2", "10.77.2.2"
_libc = ctypes.CDLL(None, use_errno=True)
_counter = [0]


def sh(*argv, check=True):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and out.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), out.stderr))
    return out.stdout


class Topology:
    def __init__(self):
        _counter[0] += 1
        tag = "%d_%d" % (os.getpid(), _counter[0])
        self.relay, self.caller, self.callee = ("rtpp%s_%s" % (n, tag) for n in ("r", "a", "b"))
        self.created = []
        try:
            for ns in (self.relay, self.caller, self.callee):
                sh("ip", "netns", "add", ns)
                self.created.append(ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            for far, near, peer in ((self.caller, "1", CALLER_IP), (self.callee, "2", CALLEE_IP)):
                link = "v" + near
                sh("ip", "-n", self.relay, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                   "netns", far)
                sh("ip", "-n", self.relay, "addr", "add", "10.77.%s.1/24" % near, "dev", link)
                sh("ip", "-n", self.relay, "link", "set", link, "up")
                sh("ip", "-n", far, "addr", "add", peer + "/24", "dev", "eth0")
                sh("ip", "-n", far, "link", "set", "eth0", "up")
                sh("ip", "-n", far, "route", "add", "default", "via", "10.77.%s.1" % near)
            self.run_in(self.relay, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        except Exception:
            self.close()
            raise

    def run_in(self, ns, *argv, check=True):
        return sh("ip", "netns", "exec", ns, *argv, check=check)

    def relay_command(self, *prefix):
        """argv prefix that runs the daemon inside the relay's namespace."""
        return ["ip", "netns", "exec", self.relay] + list(prefix) + [sys.executable, "-m", "rtpproxy_py"]

    @contextlib.contextmanager
    def inside(self, ns):
        """Run the block with this thread in namespace ``ns`` (sockets made
        there stay there)."""
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open("/var/run/netns/" + ns, os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns")
            yield
        finally:
            _libc.setns(home, CLONE_NEWNET)
            os.close(target)
            os.close(home)

    def endpoint(self, ns, host):
        with self.inside(ns):
            party = TtlEndpoint(host)
        return party

    def tables(self):
        """Names of the rtpproxy tables in the relay's namespace."""
        return [line.split()[2] for line in self.run_in(self.relay, "nft", "list", "tables").splitlines()
                if line.startswith("table ip rtpproxy_")]

    def close(self):
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []


class TtlEndpoint(Endpoint):
    """An Endpoint that also tells the IP TTL of what it receives: 64 when
    the relay program sent the packet, 63 when the relay's kernel forwarded it."""

    def __init__(self, host):
        super().__init__(host)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        # room for a whole test burst (root may exceed rmem_max)
        self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 4 << 20)

    def recv_ttl(self, timeout=1.0):
        """(data, source, ttl) or (None, None, None)."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, source = self.sock.recvmsg(65535, socket.CMSG_SPACE(4))
        except socket.timeout:
            return None, None, None
        ttl = None
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IP and kind == socket.IP_TTL:
                ttl = struct.unpack("i", value[:4])[0]
        return data, source, ttl
