"""A network namespace of a test's own (needs root, like the e2e tests):
nothing else on the machine sees its addresses or ports, so a test may use
fixed ports there and send packets to every port of a range.

    with NetNs() as ns:
        daemon = Daemon(..., command=ns.command(sys.executable, "-m", "rtpproxy_py"))
        with ns.inside():
            sock = socket.socket(...)     # created in the namespace, stays there
"""

import contextlib
import ctypes
import os
import random
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "setns: %s" % os.strerror(errno))


class NetNs:
    def __init__(self):
        self.name = "rtpp%d_%06x" % (os.getpid(), random.randrange(1 << 24))
        out = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        assert out.returncode == 0, "cannot create a network namespace (run the tests as root): %s" % (
            out.stderr.strip())
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def command(self, *argv):
        """``argv`` run inside the namespace (ip netns exec keeps the pid)."""
        return ["ip", "netns", "exec", self.name] + list(argv)

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

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
