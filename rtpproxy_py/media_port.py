"""A media port in memory: what the Dispatcher needs from a relay, without sockets.

The Dispatcher (dispatcher.py) runs the control protocol against the session
table and asks its ``relay`` for everything that touches the network. This
module names that interface (``MediaPort``) and gives it an in-memory
implementation (``MemoryMediaPort``): ports come from the same allocator as
the real relay's (ports.FamilyPorts) but nothing is bound, and a datagram
"received" on a port goes through the same Stream.on_packet decision and ends
up in an outbox instead of on the wire. Tests pump datagrams through it as
aioquic's tests pump them between two connections in memory; time is always
passed in.

relay.Relay is the socket implementation of the same interface.
"""

import socket
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Set, Tuple

from .ports import FamilyPorts, PortsExhausted

if TYPE_CHECKING:
    from .config import BindAddress
    from .session import Session, Stream

Address = Tuple[Any, ...]   # (host, port) or (host, port, flowinfo, scope_id)
# A Stream tap: (stream, datagram, source, now) -> True to drop the packet
Tap = Callable[["Stream", bytes, Address, float], Optional[bool]]
FOREVER = float("inf")


class MediaPort(Protocol):
    """What dispatcher.Dispatcher (and recording.Recordings) call on their relay.

    ``session``/``stream`` are session.Session/session.Stream; ``local`` is a
    config.BindAddress.
    """

    def open_leg(self, session: "Session", leg: int, local: "BindAddress") -> None:
        """Give leg ``leg`` an RTP/RTCP port pair on ``local`` (replacing an old
        one) and tell the session (``Session.ports_bound``; the sockets stay
        the port's own). Raises ports.PortsExhausted when no pair is free."""

    def session_started(self, session: "Session") -> None:
        """A new session: arm its one timer (``Session.get_timer``) and call
        ``Session.handle_timer`` whenever it is due."""

    def session_updated(self, session: "Session") -> None:
        """A U/L changed addresses, latching, re-packetizing or filters."""

    def session_changed(self, session: "Session") -> None:
        """The session's next deadline may have moved earlier (P, S ttl=):
        re-arm its timer."""

    def session_ended(self, session: "Session") -> None:
        """Release the session's ports (``Session.ports_released``); drop its timer."""

    def set_tos(self, session: "Session", leg: int, tos: int) -> bool:
        """``S tos=N``; False when the leg is not IPv4."""

    def route_source(self, host: str, family: int) -> Optional[str]:
        """The local address that reaches ``host``, or None."""

    def refresh_counters(self, session: "Session") -> None:
        """Before Q and module accounting: counters kept elsewhere, brought in."""

    def free_ports(self) -> int:
        """RTP port pairs left."""

    def send_from(self, stream: "Stream", data: bytes, address: Optional[Address]) -> bool:
        """Send ``data`` from ``stream``'s own port to ``address`` (a fork's
        copy, a module's answer); False when it has no port (the sockets
        are the port's own, not the stream's)."""

    def open_copy(self, local: "BindAddress", target: Address) -> "MemoryCopy":
        """A port pair sending copies to ``target`` (``C udp:``): an object with
        ``port``, ``tap(is_rtp)`` and ``close()``. Raises ports.PortsExhausted."""


class MemoryCopy:
    """One ``C udp:`` copy in memory: copied datagrams go to the port's outbox."""

    def __init__(self, port_owner: "MemoryMediaPort", port: int, family: int, target: Address) -> None:
        self.owner = port_owner
        self.port = port
        self.family = family
        host, dport = target[0], target[1]
        self.targets: Tuple[Address, Optional[Address]] = (
            (host, dport), (host, dport + 1) if dport < 65535 else None)
        self.closed = False

    def tap(self, is_rtp: bool) -> Tap:
        target = self.targets[0] if is_rtp else self.targets[1]
        port = self.port if is_rtp else self.port + 1
        outbox = self.owner.outbox

        def copy_tap(stream: "Stream", data: bytes, source: Address, now: float) -> None:
            # as relay.StreamCopy: sent only when the relay would forward it
            peer = stream.peer
            if peer.port is None or peer.muted or target is None:
                return
            outbox.append((port, data, target))
        return copy_tap

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner.ports.released(self.port, self.family)


class MemoryMediaPort:
    """MediaPort without sockets. ``outbox`` holds (local port, datagram,
    destination) for every datagram the relay would have sent."""

    def __init__(self, port_min: int = 35000, port_max: int = 35998, sequential: bool = True,
                 routes: Optional[Dict[str, str]] = None) -> None:
        self.ports = FamilyPorts(port_min, port_max, sequential)
        self.routes: Dict[str, str] = dict(routes or {})   # remote host -> local source address
        self.sessions: Set["Session"] = set()
        self.on_expired: Optional[Callable[["Session"], None]] = None         # dispatcher.expire
        self.outbox: List[Tuple[int, bytes, Address]] = []
        self.updates = 0        # session_updated calls (a U/L re-wired the session)
        self.changes = 0        # session_changed calls (a deadline may be earlier)

    # --- the MediaPort interface ---------------------------------------------------

    def open_leg(self, session: "Session", leg: int, local: "BindAddress") -> None:
        allocator = self.ports.table(local.family)
        for port in allocator.candidates():
            allocator.taken(port)
            break
        else:
            raise PortsExhausted()
        self._close_leg(session, leg)
        session.ports_bound(leg, local, port)

    def _close_leg(self, session: "Session", leg: int) -> None:
        rtp = session.rtp[leg]
        if rtp.port is not None and rtp.local is not None:
            self.ports.released(rtp.port, rtp.local.family)
        session.ports_released(leg)

    def session_started(self, session: "Session") -> None:
        self.sessions.add(session)

    def session_updated(self, session: "Session") -> None:
        self.updates += 1

    def session_changed(self, session: "Session") -> None:
        self.changes += 1

    def session_ended(self, session: "Session") -> None:
        for leg in (0, 1):
            self._close_leg(session, leg)
        self.sessions.discard(session)

    def set_tos(self, session: "Session", leg: int, tos: int) -> bool:
        for stream in (session.rtp[leg], session.rtcp[leg]):
            local = stream.local
            if stream.port is not None and local is not None and local.family != socket.AF_INET:
                return False
            stream.tos = tos
        return True

    def route_source(self, host: str, family: int) -> Optional[str]:
        return self.routes.get(host)

    def refresh_counters(self, session: "Session") -> None:
        pass

    def free_ports(self) -> int:
        return self.ports.free

    def send_from(self, stream: "Stream", data: bytes, address: Optional[Address]) -> bool:
        if stream.port is None or address is None:
            return False
        self.outbox.append((stream.port, data, address))
        return True

    def open_copy(self, local: "BindAddress", target: Address) -> MemoryCopy:
        allocator = self.ports.table(local.family)
        for port in allocator.candidates():
            allocator.taken(port)
            return MemoryCopy(self, port, local.family, target)
        raise PortsExhausted()

    def shutdown(self) -> None:
        pass

    # --- driving it -------------------------------------------------------------------

    def stream_at(self, port: int) -> Optional["Stream"]:
        """The Stream bound to local ``port`` (RTP: even, RTCP: odd), or None."""
        for session in self.sessions:
            for stream in session.streams():
                if stream.port == port:
                    return stream
        return None

    def receive(self, port: int, data: bytes, source: Address, now: float) -> Optional[Address]:
        """A datagram from ``source`` arrives on local ``port``: the stream's
        own rules decide, as relay.py's readers; what is sent lands in the
        outbox (from the peer's port). Returns the destination, or None."""
        stream = self.stream_at(port)
        if stream is None:
            return None
        target = stream.on_packet(data, source, now)
        if target is None:
            return None
        # (a target is set only while the peer has its port: refresh_target)
        sender = stream.peer.port
        resizer = stream.resizer
        if sender is not None and (resizer is None or not resizer.enqueue(data, now)):
            self.outbox.append((sender, data, target))
        if sender is not None and resizer is not None:
            due, _ = resizer.dequeue(now)
            for packet in due:
                self.outbox.append((sender, packet, target))
        return target

    def next_deadline(self, session: "Session", now: float) -> float:
        """When the session next needs ``handle_timer`` (Session.get_timer)."""
        return session.get_timer(now)

    def handle_timer(self, now: float) -> None:
        """What relay.py's session timers do at ``now`` (Session.handle_timer):
        expire idle sessions (through ``on_expired``), send due prompt and
        re-packetized packets."""
        for session in list(self.sessions):
            if session.closed:
                continue
            due = session.handle_timer(now)
            if due.expired:
                if self.on_expired is not None:
                    self.on_expired(session)
                continue
            # as relay.py: nothing goes out of a stream without its port
            for stream, packet, target in due.relayed:
                if stream.port is not None:
                    self.outbox.append((stream.port, packet, target))
            for stream, packet in due.played:
                if stream.rem_addr is not None and stream.port is not None:
                    self.outbox.append((stream.port, packet, stream.rem_addr))

    def datagrams_to_send(self) -> List[Tuple[int, bytes, Address]]:
        """The outbox, emptied: [(local port, datagram, destination)]."""
        out = list(self.outbox)
        self.outbox.clear()         # the same list: copy taps hold it
        return out
