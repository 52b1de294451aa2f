"""Media sockets and the per-session timers: the only place packets move.

Packet path (measured on this machine kind, see BENCHMARKS.md): one libev io
watcher per relay socket, level-triggered; its callback reads one datagram,
asks the Stream where it goes and sends it from the peer's socket. No
greenlet switch, no drain loop, no logging, no per-packet dict lookups.

Each session also gets a greenlet that sleeps until the session's next
deadline (idle expiry now; playback and re-packetizing later) and acts on it.
"""

import errno
import logging
import socket
import time

import gevent
from gevent.event import Event

from .ports import PortAllocator, PortsExhausted

log = logging.getLogger("rtpproxy")

RECV_SIZE = 8192
RCVBUF = 256 * 1024
SMALL_PACKET = 128          # -2: packets shorter than this are sent twice
_RETRY_BIND = (errno.EADDRINUSE, errno.EACCES)


class MediaSocket:
    """A bound relay socket and its io watcher."""

    __slots__ = ("sock", "watcher", "port", "family")

    def __init__(self, sock, watcher, port, family):
        self.sock = sock
        self.watcher = watcher
        self.port = port
        self.family = family

    def close(self):
        self.watcher.stop()
        self.watcher.close()
        self.sock.close()


def _make_reader(stream, sock, out_sock, clock, duplicate_small):
    """The io watcher callback for ``stream``'s socket."""
    recvfrom = sock.recvfrom
    on_packet = stream.on_packet
    if out_sock is None:
        def read_only():
            try:
                data, source = recvfrom(RECV_SIZE)
            except OSError:
                return
            on_packet(data, source, clock())
        return read_only
    sendto = out_sock.sendto
    if duplicate_small:
        def read_and_send_twice():
            try:
                data, source = recvfrom(RECV_SIZE)
            except OSError:
                return
            target = on_packet(data, source, clock())
            if target is not None:
                try:
                    sendto(data, target)
                    if len(data) < SMALL_PACKET:
                        sendto(data, target)
                except OSError:
                    pass
        return read_and_send_twice

    def read_and_send():
        try:
            data, source = recvfrom(RECV_SIZE)
        except OSError:
            return
        target = on_packet(data, source, clock())
        if target is not None:
            try:
                sendto(data, target)
            except OSError:
                pass
    return read_and_send


class Relay:
    def __init__(self, config, clock=time.monotonic):
        self.config = config
        self.clock = clock
        self.loop = gevent.get_hub().loop
        # One port table for both families, so numbers stay unique per host
        # (the spec's worked example continues the -b sequence across U and U6).
        self.ports = PortAllocator(config.port_min, config.port_max, config.sequential_ports)
        self.on_expired = None       # dispatcher.expire, set by main
        self.open_sockets = 0

    # --- ports ------------------------------------------------------------

    def _bind(self, family, host, port, tos):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in _RETRY_BIND:
                return None
            raise
        return sock

    def open_leg(self, session, leg, local):
        """Bind an RTP/RTCP pair for ``leg`` on ``local``; replaces an old pair."""
        family = local.family
        stream = session.rtp[leg]
        tos = stream.tos if stream.tos is not None else self.config.tos
        port, rtp_sock, rtcp_sock = self._bind_pair(local, tos)
        self._close_leg(session, leg)
        for stream, sock, number in ((session.rtp[leg], rtp_sock, port),
                                     (session.rtcp[leg], rtcp_sock, port + 1)):
            watcher = self.loop.io(sock.fileno(), 1)
            stream.handle = MediaSocket(sock, watcher, number, family)
            stream.port = number
            stream.local = local
        self.open_sockets += 2
        self._rewire(session)

    def _bind_pair(self, local, tos):
        """A free even/odd port pair bound on ``local``: (port, rtp sock, rtcp sock)."""
        family = local.family
        allocator = self.ports
        for port in allocator.candidates():
            try:
                rtp_sock = self._bind(family, local.host, port, tos)
                if rtp_sock is None:
                    continue
                rtcp_sock = self._bind(family, local.host, port + 1, tos)
            except OSError as exc:
                log.error("cannot bind media port %d on %s: %s", port, local.host, exc.strerror)
                raise PortsExhausted() from None
            if rtcp_sock is None:
                rtp_sock.close()
                continue
            allocator.taken(port)
            return port, rtp_sock, rtcp_sock
        log.error("no free media port pair in %d-%d on %s", self.config.port_min,
                  self.config.port_max + 1, local.host)
        raise PortsExhausted()

    def _close_leg(self, session, leg):
        for stream in (session.rtp[leg], session.rtcp[leg]):
            handle = stream.handle
            if handle is None:
                continue
            handle.close()
            self.open_sockets -= 1
            if stream.is_rtp:
                self.ports.released(handle.port)
            stream.handle = None
            stream.port = None
            stream.refresh_target()

    def _rewire(self, session):
        """(Re)start every watcher of the session with a fresh reader."""
        dup = self.config.dup_small
        for stream in session.streams():
            handle = stream.handle
            if handle is None:
                continue
            peer = stream.peer.handle
            reader = _make_reader(stream, handle.sock, peer.sock if peer else None, self.clock, dup)
            handle.watcher.stop()
            handle.watcher.start(reader)

    def set_tos(self, session, leg, tos):
        """``S tos=N``: IPv4 legs only; a leg without sockets yet gets it when bound."""
        for stream in (session.rtp[leg], session.rtcp[leg]):
            handle = stream.handle
            if handle is not None:
                if handle.family != socket.AF_INET:
                    return False
                handle.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
            stream.tos = tos
        return True

    def route_source(self, host, family):
        """The local address the kernel would use to reach ``host``, or None."""
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect((host, 9))
            return probe.getsockname()[0]
        except OSError:
            return None
        finally:
            probe.close()

    # --- per-session greenlet ----------------------------------------------

    def session_started(self, session):
        wake = Event()
        session.timer = (wake, gevent.spawn(self._session_loop, session, wake))

    def session_changed(self, session):
        """Something moved the session's next deadline earlier: re-plan."""
        if session.timer is not None:
            session.timer[0].set()

    def session_ended(self, session):
        for leg in (0, 1):
            self._close_leg(session, leg)
        if session.timer is not None:
            session.timer[0].set()

    def _session_loop(self, session, wake):
        clock = self.clock
        while not session.closed:
            now = clock()
            deadline = session.expires_at()
            if now >= deadline:
                self.on_expired(session)
                return
            wake.wait(deadline - now)
            wake.clear()

    def free_ports(self):
        return self.ports.free

    # --- stream copies (C udp:HOST:PORT) --------------------------------------

    def open_copy(self, local, target):
        """A fresh port pair on ``local`` that sends copies to ``target`` (RTP)
        and target port + 1 (RTCP). Raises PortsExhausted."""
        port, rtp_sock, rtcp_sock = self._bind_pair(local, self.config.tos)
        self.open_sockets += 2
        return StreamCopy(self, port, rtp_sock, rtcp_sock, target)


class StreamCopy:
    """The sockets of one ``C udp:`` copy; ``tap(is_rtp)`` gives the Stream tap."""

    def __init__(self, relay, port, rtp_sock, rtcp_sock, target):
        self.relay = relay
        self.port = port
        self.socks = (rtp_sock, rtcp_sock)
        host, dport = target[0], target[1]
        self.targets = ((host, dport), (host, dport + 1) if dport < 65535 else None)

    def tap(self, is_rtp):
        sock, target = (self.socks[0], self.targets[0]) if is_rtp else (self.socks[1], self.targets[1])
        sendto = sock.sendto

        def copy_tap(stream, data, source, now):
            # sent only when the relay would forward it (as a recording captures it)
            peer = stream.peer
            if peer.port is None or peer.muted or target is None:
                return
            try:
                sendto(data, target)
            except OSError:
                pass
        return copy_tap

    def close(self):
        if self.socks is None:
            return
        for sock in self.socks:
            sock.close()
        self.socks = None
        self.relay.open_sockets -= 2
        self.relay.ports.released(self.port)
