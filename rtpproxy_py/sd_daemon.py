"""systemd's service protocols, spoken directly (no libsystemd, no new dependency).

* Readiness (sd_notify(3)): one datagram such as ``READY=1`` to the unix socket
  named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).
  Without the variable (not started by a ``Type=notify`` unit) nothing is sent.
* Socket activation (sd_listen_fds(3)): systemd passes the sockets of
  ``rtpproxy.socket`` as fds 3, 4, ... with ``LISTEN_FDS`` (how many) and
  ``LISTEN_PID`` (the process they are meant for).
* The journal (sd-daemon(3) log prefixes): a line written to stderr that
  starts with ``<N>`` gets syslog priority N; ``$JOURNAL_STREAM`` (device:inode)
  says stderr is connected to the journal.
"""

import os
import socket
from dataclasses import dataclass
from typing import List, Optional

SD_LISTEN_FDS_START = 3


def notify(state: str) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STOPPING=1"``, ...) to the service
    manager; True when a manager listens. Never raises: a daemon must not die
    because its supervisor went away."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
        return True
    except OSError:
        return False


@dataclass
class InheritedSocket:
    """One socket passed by systemd: its fd and what kind of socket it is."""

    fd: int
    family: int
    type: int
    name: Optional[str]
    address: object          # getsockname(): a path (str/bytes) or (host, port, ...)

    def describe(self) -> str:
        if self.family == socket.AF_UNIX:
            path = self.address.decode("utf-8", "replace") if isinstance(self.address, bytes) else self.address
            where = "unix " + (path or "(unnamed)")
        else:
            proto = "udp" if self.type == socket.SOCK_DGRAM else "tcp"
            where = "%s%s %s:%d" % (proto, "6" if self.family == socket.AF_INET6 else "",
                                     self.address[0], self.address[1])
        return "fd %d (%s)" % (self.fd, where)


def listen_fds() -> List[InheritedSocket]:
    """The sockets systemd passed to this very process (empty if none). The
    variables and the fds are left as they are: a start script that checks
    the options first and then execs the daemon is the same process (the
    daemon marks them close-on-exec when it adopts them)."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    found = []
    for n in range(count):
        fd = SD_LISTEN_FDS_START + n
        probe = socket.socket(fileno=fd)
        try:
            found.append(InheritedSocket(fd, probe.family, probe.type, names[n] if n < len(names) else None,
                                         probe.getsockname()))
        finally:
            probe.detach()
    return found


def stderr_is_journal() -> bool:
    """True when stderr is the stream systemd connected to the journal."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        st = os.fstat(2)
        return bool(stream) and (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


# logging levels -> syslog priorities (sd-daemon(3) prefixes)
_PRIORITY = ((50, 2), (40, 3), (30, 4), (20, 6))


def priority(levelno: int) -> int:
    """The syslog priority of a logging level: CRITICAL 2, ERROR 3, WARNING 4,
    INFO 6, DEBUG 7."""
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7
