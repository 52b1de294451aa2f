"""Media sockets and the per-session timers: the only place packets move.

Packet path (measured on this machine kind, see BENCHMARKS.md): one libev io
watcher per relay socket, level-triggered; its callback reads one datagram,
asks the Stream where it goes and sends it from the peer's socket. No
greenlet switch, no drain loop, no logging, no per-packet dict lookups.

Each session also gets a greenlet that sleeps until the session's next
deadline (idle expiry, the next prompt packet) and acts on it.
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
        allocator = self.ports
        stream = session.rtp[leg]
        tos = stream.tos if stream.tos is not None else self.config.tos
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
            break
        else:
            log.error("no free media port pair in %d-%d on %s", self.config.port_min,
                      self.config.port_max + 1, local.host)
            raise PortsExhausted()
        allocator.taken(port)
        self._close_leg(session, leg)
        for stream, sock, number in ((session.rtp[leg], rtp_sock, port),
                                     (session.rtcp[leg], rtcp_sock, port + 1)):
            watcher = self.loop.io(sock.fileno(), 1)
            stream.handle = MediaSocket(sock, watcher, number, family)
            stream.port = number
            stream.local = local
        self.open_sockets += 2
        self._rewire(session)

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
            if session.players is not None:
                self._send_played(session.playback_due(now))
                deadline = min(deadline, session.next_playback_at(now))
            wake.wait(max(deadline - now, 0.0))
            wake.clear()

    @staticmethod
    def _send_played(due):
        """Prompt packets go out of the party's own stream socket to its address."""
        for stream, packet in due:
            handle, target = stream.handle, stream.rem_addr
            if handle is None or target is None:
                continue
            try:
                handle.sock.sendto(packet, target)
            except OSError:
                pass

    def free_ports(self):
        return self.ports.free
