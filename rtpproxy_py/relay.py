"""Media sockets and the per-session timers: the only place packets move.

Packet path (measured on this machine kind, see BENCHMARKS.md): one libev io
watcher per relay socket, level-triggered; its callback reads one datagram,
asks the Stream where it goes and sends it from the peer's socket. No
greenlet switch, no drain loop, no logging, no per-packet dict lookups.

Latched streams get a second, *connected* socket on the same port (its
"twin", bound with SO_REUSEPORT for a moment and then made exclusive again).
The kernel delivers the latched party's packets to the twin and everything
else to the main socket, so the common case needs no source-address check
and no address conversion: ``recv``/``send`` instead of ``recvfrom``/``sendto``.
Packets from any other source still reach the main socket, where the full
latching rules (Stream.on_packet) decide.

Datagrams are read whole (up to the UDP maximum) and relayed unchanged,
whatever they hold: runts, non-RTP and RTCP on the RTP port included; which
sources may send is the Stream's business (session.py), and strict latching
is decided there too, on the slow path only.

When sockets run out (the -m/-M range is full, or the open-files limit is
reached) U/L answer E72/E71, one log line per ten seconds names the limit,
and the next session after one ends gets its ports again.

Each session also gets one timer, as aioquic's protocol re-arms its
connection's: a greenlet that sleeps until ``Session.get_timer(now)`` (idle
expiry, the next prompt packet, the next re-packetized packet, a module's
timer), calls ``Session.handle_timer(now)`` and does what it returns (sends
packets, ends the session). The timer (``SessionTimer``) is the relay's, in
its own map: the session only answers when and what. The greenlet is a plain
one parked on a libev timer, first switched to at the session's first
deadline or wake-up: a call deleted before then costs no switch at all.

A stream with a resizer (``z``) gets readers that hand its packets to the
resizer instead of sending them (_resizing_reader): what is due at once goes
out from the reader, the rest from the session greenlet when it is due.
Streams without one keep the plain readers, so they pay nothing for it.

``Relay.now``, the packet path's time, is read from the relay's clock (the
one it was given) every 0.1 s by a timer; with RTP analysis on it is read at
every loop iteration instead (a libev check watcher, which runs right after
the poll and before the I/O callbacks), so it is the time the batch of
packets was picked up: what the analyzer takes as the arrival time, at no
cost per packet. The readers pass it to the Stream, which never reads a
clock itself.

A stream with module packet filters (dtls_gw, ice_lite: session.PacketFilter),
or whose peer has them, is read by _filtering_reader: every datagram goes
through Relay.deliver, which lets the filters consume, drop or transform it,
demultiplexes (rtcp-mux) and encrypts on the way out. Streams without them
keep the plain readers and never reach that code.

With --kernel_offload, ``self.offload`` (offload.py) is told whenever a
session's latching, addresses, ports or per-packet features change, and hands
its RTP to the kernel or takes it back; nothing of it is on the packet path.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import resource
import socket
import sys
import time

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import gevent
from greenlet import greenlet

from .net import route_source
from .ports import FamilyPorts, PortsExhausted
from .throttle import LogThrottle

if TYPE_CHECKING:
    from .session import Address, Session, Stream

log = logging.getLogger("rtpproxy")

# Larger than any UDP datagram: nothing is ever truncated. (Measured: the
# bigger buffer costs nothing per packet; recv shrinks the bytes it returns.)
RECV_SIZE = 65536
RCVBUF = 256 * 1024
SMALL_PACKET = 128          # -2: packets shorter than this are sent twice
_RETRY_BIND = (errno.EADDRINUSE, errno.EACCES)
# Looked up once: sockets are opened on every U/L (plain ints, as the calls take them).
_SOCK_NONBLOCK = int(getattr(socket, "SOCK_NONBLOCK", 0))
_DGRAM_NONBLOCK = int(socket.SOCK_DGRAM) | _SOCK_NONBLOCK
_AF_INET = int(socket.AF_INET)
_SOL_SOCKET = int(socket.SOL_SOCKET)
_SO_RCVBUF = int(socket.SO_RCVBUF)
_IPPROTO_IP = int(socket.IPPROTO_IP)
_IP_TOS = int(socket.IP_TOS)
# A twin socket that could not be opened (no file descriptors) is not tried
# again for the same address before this many seconds.
TWIN_RETRY = 5.0
NOFILE_WARN_SHARE = 0.8     # -L: warn once when descriptors in use reach 80 % of the limit

# Packet arrival time as the packet path sees it (Relay.now): refreshed by a
# loop timer rather than read per packet. Idle time-outs, the 10 s re-latch
# window and the once-a-second sequence resync only need a tenth of a second
# (RTP analysis refreshes it at every loop iteration instead, see the module
# docstring).
CLOCK_TICK = 0.1
FOREVER = float("inf")
# A session's timer due within this long while a prompt paces it (and no
# resizer can move it earlier) is slept on plainly: an Event wait with a
# time-out costs several times more per wake-up. Commands that move the
# deadline meanwhile (S, another P, TTL) are seen at the next prompt packet.
PACED_SLEEP = 0.25
# A session with no deadline at all sleeps this long at a time (and re-reads it).
LONGEST_SLEEP = 86400.0


def set_io_collect_interval(loop, seconds):
    """Let libev gather events for ``seconds`` between polls (--poll_batch).

    At 200 sessions the relay otherwise wakes for nearly every packet burst;
    measured with bench/relay_vs_crelay.sh, 2 ms of batching took the CPU per
    packet from about 1.26x crelay's to about 0.92x (BENCHMARKS.md)."""
    import ctypes
    import gevent.libev.corecext as corecext
    try:
        fn = ctypes.CDLL(corecext.__file__).ev_set_io_collect_interval
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_void_p, ctypes.c_double]
    fn.restype = None
    fn(loop.ptr, seconds)
    return True


class MediaSocket:
    """A bound relay socket, its io watcher, and the optional connected twin."""

    __slots__ = ("sock", "watcher", "port", "family", "twin", "twin_watcher", "twin_addr",
                 "twin_refused", "resizing", "filtering")

    def __init__(self, sock, watcher, port, family):
        self.sock = sock
        self.watcher = watcher
        self.port = port
        self.family = family
        self.twin = None
        self.twin_watcher = None
        self.twin_addr = None
        self.twin_refused = None     # (address, retry time) after a failed twin
        self.resizing = False        # the readers hand packets to a resizer
        # the readers are _filtering_reader (module filters); None: no readers
        # yet (a new socket: the next session_updated installs them)
        self.filtering = None

    def close_twin(self):
        if self.twin is not None:
            self.twin_watcher.stop()
            self.twin_watcher.close()
            self.twin.close()
            self.twin = self.twin_watcher = self.twin_addr = None

    def close(self):
        if self.twin is not None:
            self.close_twin()
        self.watcher.stop()
        self.watcher.close()
        self.sock.close()


class SessionTimer:
    """The relay's one timer of a session: the greenlet that sleeps until the
    session's next deadline, the loop timer it sleeps on, and when it plans
    to wake (FOREVER: not waiting).

    The greenlet is a plain one (its parent the hub) that parks on a libev
    timer watcher; waking it early stops the watcher and switches to it from
    the loop. It is made when the session starts but first runs at the first
    deadline or wake-up: a call that ends before then (most do, well before
    their time-out) never switches to it. Measured with
    bench/control_inprocess.py: a gevent.Greenlet waiting on an Event took
    about 30 us of CPU per U+L+D cycle."""

    __slots__ = ("greenlet", "run", "armed_at", "watcher", "woken", "paced")

    def __init__(self) -> None:
        self.greenlet: Optional[greenlet] = None
        self.run: Optional[Callable[[], Any]] = None    # switches to the greenlet (the first switch starts it)
        self.armed_at = FOREVER
        self.watcher: Any = None    # the loop timer the greenlet sleeps on (None: not sleeping)
        self.woken = False          # a wake-up came while not sleeping: do not sleep next time
        self.paced = False          # a prompt's plain sleep: wake-ups wait for its end


def _wanted_twin(relay, stream, handle):
    """The address the stream's twin should be connected to (None: no twin)."""
    remote = stream.rem_addr
    if not stream.is_rtp or remote is None:
        return None
    if stream.latch.latched or handle.twin_addr == remote:
        refused = handle.twin_refused
        if refused is not None and refused[0] == remote and relay.now < refused[1]:
            return handle.twin_addr      # failed a moment ago: keep what there is
        return remote
    return None


def _sender(peer):
    """(send, sendto) for packets going out of ``peer``'s socket (one is None)."""
    if peer is None:
        return None, None
    if peer.twin is not None:
        return peer.twin.send, None
    return None, peer.sock.sendto


def _resizing_reader(relay, stream, handle, peer, dup, main):
    """Callback for a stream with a resizer: accepted packets are queued for
    re-packetizing; what the resizer does not take is relayed unchanged."""
    resizer = stream.resizer
    enqueue, dequeue = resizer.enqueue, resizer.dequeue
    clock = relay.clock
    session = stream.session
    timer = relay.timer_of(session)
    send, sendto = _sender(peer)
    if main:
        recvfrom, on_packet = handle.sock.recvfrom, stream.on_packet
        check_twin = relay._sync_twins
    else:
        recv, on_latched_packet = handle.twin.recv, stream.on_latched_packet

    def out(data, target):
        try:
            if send is not None:
                send(data)
                if dup and len(data) < SMALL_PACKET:
                    send(data)
            elif sendto is not None:
                sendto(data, target)
                if dup and len(data) < SMALL_PACKET:
                    sendto(data, target)
        except OSError:
            pass

    def read():
        try:
            if main:
                data, source = recvfrom(RECV_SIZE)
            else:
                data = recv(RECV_SIZE)
        except OSError:
            return
        if main:
            target = on_packet(data, source, relay.now)
        else:
            target = on_latched_packet(data, relay.now)
        if target is not None:
            now = clock()
            if not enqueue(data, now):
                out(data, target)
            due, wake_at = dequeue(now)
            for packet in due:
                out(packet, target)
            if wake_at is not None and wake_at < timer.armed_at:
                relay.wake_timer(timer)         # the session's timer must fire earlier
        if main and _wanted_twin(relay, stream, handle) != handle.twin_addr:
            check_twin(session)
    return read


def _filtering(stream):
    """The stream's packets pass module filters or mux/demux (relay.deliver)."""
    peer = stream.peer
    return (stream.filters is not None or stream.demux is not None
            or peer.filters is not None or peer.egress is not None)


def _filtering_reader(relay, stream, handle, main):
    """Callback for a stream with module filters (session.PacketFilter): every
    datagram goes through Relay.deliver. Streams without them keep the plain
    readers below and pay nothing for this."""
    deliver = relay.deliver
    session = stream.session
    if main:
        recvfrom = handle.sock.recvfrom
        check_twin = relay._sync_twins if stream.is_rtp else None
    else:
        recv = handle.twin.recv

    def read():
        try:
            if main:
                data, source = recvfrom(RECV_SIZE)
            else:
                data, source = recv(RECV_SIZE), handle.twin_addr
        except OSError:
            return
        deliver(stream, data, source, relay.now)
        if main and check_twin is not None and _wanted_twin(relay, stream, handle) != handle.twin_addr:
            check_twin(session)
    return read


def _main_reader(relay, stream, handle, peer, dup, filtering=None):
    """Callback for the main (unconnected) socket: full latching rules.
    (``filtering``: _filtering(stream), when the caller knows it.)"""
    if filtering if filtering is not None else _filtering(stream):
        return _filtering_reader(relay, stream, handle, main=True)
    if stream._resizer is not None:
        return _resizing_reader(relay, stream, handle, peer, dup, main=True)
    if not stream.is_rtp:
        return _main_reader_rtcp(relay, stream, handle, peer, dup)
    recvfrom = handle.sock.recvfrom
    on_packet = stream.on_packet
    check_twin = relay._sync_twins
    send, sendto = _sender(peer)
    fast = relay.fastpath
    fast_owned = fast.owned if fast is not None else ()

    def read():
        try:
            data, source = recvfrom(RECV_SIZE)
        except OSError:
            return
        if source != stream.rem_addr and (stream in fast_owned or stream.peer in fast_owned):
            # A new source may be accepted: fed to the analyzer, and made the
            # address the other party's packets go to. Both directions come
            # back from the C thread first, as the Python readers would not
            # run before this one is done.
            fast.release_session(stream.session)
            fast_owned_before = True
        else:
            fast_owned_before = False
        target = on_packet(data, source, relay.now)
        if target is not None:
            try:
                if send is not None:
                    send(data)
                    if dup and len(data) < SMALL_PACKET:
                        send(data)
                elif sendto is not None:
                    sendto(data, target)
                    if dup and len(data) < SMALL_PACKET:
                        sendto(data, target)
            except OSError:
                pass
        if check_twin is not None and _wanted_twin(relay, stream, handle) != handle.twin_addr:
            check_twin(stream.session)
        elif fast_owned_before:
            fast.update(stream.session)     # the C thread may take them again
    return read


def _main_reader_rtcp(relay, stream, handle, peer, dup):
    """_main_reader's callback for an RTCP stream (no twin, never in the fast
    path): a closure over fewer variables, made twice per call set-up."""
    recvfrom = handle.sock.recvfrom
    on_packet = stream.on_packet
    send, sendto = _sender(peer)

    def read():
        try:
            data, source = recvfrom(RECV_SIZE)
        except OSError:
            return
        target = on_packet(data, source, relay.now)
        if target is not None:
            try:
                if send is not None:
                    send(data)
                    if dup and len(data) < SMALL_PACKET:
                        send(data)
                elif sendto is not None:
                    sendto(data, target)
                    if dup and len(data) < SMALL_PACKET:
                        sendto(data, target)
            except OSError:
                pass
    return read


def _twin_reader(relay, stream, handle, peer, dup, filtering=None):
    """Callback for the connected twin: the latched party's packets only.
    (The send block is written out in each reader rather than shared through
    a function: a call per packet costs more than the lines it saves.)"""
    if filtering if filtering is not None else _filtering(stream):
        return _filtering_reader(relay, stream, handle, main=False)
    if stream._resizer is not None:
        return _resizing_reader(relay, stream, handle, peer, dup, main=False)
    recv = handle.twin.recv
    on_latched_packet = stream.on_latched_packet
    send, sendto = _sender(peer)

    if send is not None and not dup:
        def read_fast():
            try:
                data = recv(RECV_SIZE)
            except OSError:      # nothing queued, or an ICMP error on the connected socket
                return
            if on_latched_packet(data, relay.now) is not None:
                try:
                    send(data)
                except OSError:
                    pass
        return read_fast

    def read():
        try:
            data = recv(RECV_SIZE)
        except OSError:
            return
        target = on_latched_packet(data, relay.now)
        if target is not None:
            try:
                if send is not None:
                    send(data)
                    if dup and len(data) < SMALL_PACKET:
                        send(data)
                elif sendto is not None:
                    sendto(data, target)
                    if dup and len(data) < SMALL_PACKET:
                        sendto(data, target)
            except OSError:
                pass
    return read


class Relay:
    def __init__(self, config, clock=time.monotonic, ports=None):
        self.config = config
        self.clock = clock
        self.hub = gevent.get_hub()
        self.loop = self.hub.loop
        # One port table per address family, as upstream (control-protocol.md 5.6);
        # a --workers worker passes the table all workers share.
        self.ports = ports if ports is not None else FamilyPorts(
            config.port_min, config.port_max, config.sequential_ports)
        self.on_expired = None       # dispatcher.expire, set by service.LocalMedia
        self.now = clock()           # the packet path's time (see the module docstring)
        self.timers: Dict[Session, SessionTimer] = {}
        # each stream's sockets (the core's Stream knows only its port number);
        # the readers are built with their handles, so no lookup per packet
        self.handles: Dict[Stream, MediaSocket] = {}
        self.open_sockets = 0
        self.throttle = LogThrottle(log)
        self._nofile_warned = False
        self._other_fds = None       # descriptors that are not media sockets (counted once)
        self._nofile_quiet_below = 0.0   # descriptors in use that need no warning (limit last read)
        self._nofile_recheck_at = 0.0    # when to read the limit again anyway
        if config.rtp_analysis:
            self._tick = self.loop.check()      # after every poll, before the I/O callbacks
        else:
            self._tick = self.loop.timer(CLOCK_TICK, CLOCK_TICK)
        self._tick.start(self._update_clock)
        self.fastpath = None
        if config.fastpath:
            from .fastpath import FastPath
            self.fastpath = FastPath.start(self, config)
        # --poll_batch saves CPU per packet on the Python path, but every control
        # command waits for it too (up to the whole interval). With the fast path
        # the packets of latched calls are not on this loop, so it polls at once.
        if self.fastpath is None and config.poll_batch and not set_io_collect_interval(
                self.loop, config.poll_batch):
            log.info("this gevent build cannot batch polls; --poll_batch ignored")
        self.offload = None
        if config.kernel_offload:
            from .offload import KernelOffload
            self.offload = KernelOffload.start(config, self.route_source, clock)

    def _update_clock(self) -> None:
        self.now = self.clock()

    # --- ports ------------------------------------------------------------

    def _new_socket(self, family, tos):
        # Non-blocking from socket() on (SOCK_NONBLOCK: no fcntl calls; Python
        # sees it and sets the time-out to 0, as setblocking(False) does).
        # The C type itself, not socket.socket: its __init__ and close are
        # Python code, two calls on every media socket (4 per U+L+D).
        sock = _socket.socket(family, _DGRAM_NONBLOCK)
        try:
            if not _SOCK_NONBLOCK:
                sock.setblocking(False)
            setsockopt = sock.setsockopt
            setsockopt(_SOL_SOCKET, _SO_RCVBUF, RCVBUF)
            if family == _AF_INET:
                setsockopt(_IPPROTO_IP, _IP_TOS, tos)
            else:
                # IPv6 only: a "::" socket must not take the IPv4 port of the
                # same number, which belongs to the IPv4 port table
                setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        except OSError:
            sock.close()
            raise
        return sock

    def _bind(self, family, host, port, tos):
        """A socket bound to ``port``, or None if the port is taken."""
        sock = self._new_socket(family, tos)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in _RETRY_BIND:
                return None
            raise
        return sock

    def _bind_two(self, family, host, port, tos):
        """RTP and RTCP sockets on ``port`` and ``port + 1``, or None if either is taken."""
        rtp_sock = self._bind(family, host, port, tos)
        if rtp_sock is None:
            return None
        try:
            rtcp_sock = self._bind(family, host, port + 1, tos)
        except OSError:
            rtp_sock.close()
            raise
        if rtcp_sock is None:
            rtp_sock.close()
            return None
        return rtp_sock, rtcp_sock

    def _socket_error(self, exc, port, host):
        """Log (throttled) which limit stopped a port allocation."""
        code = exc.errno
        if code == errno.EMFILE:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self.throttle.log(
                logging.ERROR, "nofile", "cannot open media sockets: the open-files limit is "
                "reached (RLIMIT_NOFILE %d, %d media sockets open); new calls get E72/E71 until "
                "sessions end; raise the limit with -L", soft, self.open_sockets)
        elif code == errno.ENFILE:
            self.throttle.log(
                logging.ERROR, "enfile", "cannot open media sockets: the system-wide limit of "
                "open files is reached (sysctl fs.file-max); new calls get E72/E71 until files "
                "are closed")
        elif code in (errno.ENOBUFS, errno.ENOMEM):
            self.throttle.log(
                logging.ERROR, "nomem", "cannot open media sockets: the kernel is out of memory "
                "for sockets (%s); new calls get E72/E71", exc.strerror)
        else:
            self.throttle.log(logging.ERROR, "bind", "cannot bind media port %d on %s: %s",
                              port, host, exc.strerror)

    def _check_nofile_use(self):
        """-L (cli.md): one warning when media sockets and the process's other
        descriptors (control sockets, event loop, a worker's channel: counted
        at the first media socket) reach 80 % of the open-files limit."""
        if self._nofile_warned:
            return
        if self._other_fds is None:
            try:
                self._other_fds = max(len(os.listdir("/proc/self/fd")) - 1 - self.open_sockets, 0)
            except OSError:
                self._other_fds = 0
        in_use = self.open_sockets + self._other_fds
        now = time.monotonic()
        if in_use < self._nofile_quiet_below and now < self._nofile_recheck_at:
            return      # well under the limit read a moment ago: no system call per U/L
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._nofile_recheck_at = now + 1.0     # the limit is read again at least once a second
        if soft == resource.RLIM_INFINITY:
            self._nofile_quiet_below = float("inf")
            return
        self._nofile_quiet_below = NOFILE_WARN_SHARE * soft
        if in_use >= self._nofile_quiet_below:
            self._nofile_warned = True
            log.warning("%d media sockets and %d other descriptors open: 80%% of the open-files "
                        "limit (%d) is in use; raise it with -L", self.open_sockets,
                        self._other_fds, soft)

    def _stream_tos(self, stream):
        return stream.tos if stream.tos is not None else self.config.tos

    def open_leg(self, session, leg, local):
        """Bind an RTP/RTCP pair for ``leg`` on ``local``; replaces an old pair.
        Its readers (and the other leg's, which send from it) are installed
        by the ``session_updated`` the caller makes once the command has set
        the session up: the twins and readers are worked out once per command."""
        family = local.family
        rtp, rtcp = session.rtp[leg], session.rtcp[leg]
        tos = rtp.tos
        port, rtp_sock, rtcp_sock = self._bind_pair(local, tos if tos is not None else self.config.tos)
        handles = self.handles
        if rtp in handles or rtcp in handles or self.offload is not None:
            # (a leg without sockets yet: nothing to close, and nothing of the
            # session is in the fast path, which needs both legs' sockets)
            self._close_leg(session, leg)
        io = self.loop.io
        handles[rtp] = handle = MediaSocket(rtp_sock, io(rtp_sock.fileno(), 1), port, family)
        handle.resizing = rtp._resizer is not None
        handles[rtcp] = MediaSocket(rtcp_sock, io(rtcp_sock.fileno(), 1), port + 1, family)
        session.ports_bound(leg, local, port)
        self.open_sockets += 2
        self._check_nofile_use()

    def _bind_pair(self, local, tos):
        """A free even/odd port pair bound on ``local``: (port, rtp sock, rtcp sock)."""
        allocator = self.ports.table(local.family)
        for port in allocator.candidates():
            try:
                pair = self._bind_two(local.family, local.host, port, tos)
            except OSError as exc:
                self._socket_error(exc, port, local.host)
                raise PortsExhausted() from None
            if pair is not None:
                allocator.taken(port)
                return (port,) + pair
        self.throttle.log(
            logging.ERROR, "ports", "no free media port pair in %d-%d on %s: the -m/-M range "
            "is full (%d of its %d pairs used by this relay, the rest by other programs); "
            "new calls get E72/E71 until sessions end", self.config.port_min,
            self.config.port_max + 1, local.host, len(allocator.in_use), len(allocator))
        raise PortsExhausted()

    def _close_leg(self, session, leg, released=False):
        """Close leg ``leg``'s sockets (``released``: the fast path and the
        kernel have given the session back already)."""
        if not released:
            if self.fastpath is not None:
                self.fastpath.release_session(session)
            if self.offload is not None:
                self.offload.remove(session)
        closed = False
        for stream in (session.rtp[leg], session.rtcp[leg]):
            handle = self.handles.pop(stream, None)
            if handle is None:
                continue
            if handle.twin is not None:
                self.open_sockets -= 1
            handle.close()
            self.open_sockets -= 1
            if stream.is_rtp:
                self.ports.tables[handle.family].released(handle.port)
            closed = True
        if closed:
            session.ports_released(leg)

    # --- twins and watchers ---------------------------------------------------

    def _open_twin(self, stream, handle, address):
        """A second socket on the stream's port, connected to ``address``."""
        main = handle.sock
        twin = None
        try:
            main.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            twin = self._new_socket(handle.family, self._stream_tos(stream))
            twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            twin.bind(main.getsockname())
            twin.connect(address)
            # Back to exclusive: no other socket may join this port now.
            twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
        except OSError as exc:
            self.throttle.log(logging.WARNING, "twin", "port %d: no connected socket for %s (%s); "
                              "using the plain one", handle.port, address, exc.strerror)
            if twin is not None:
                twin.close()
            handle.twin_refused = (address, self.now + TWIN_RETRY)
            return False
        finally:
            main.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
        handle.twin = twin
        handle.twin_watcher = self.loop.io(twin.fileno(), 1)
        handle.twin_addr = address
        self.open_sockets += 1
        return True

    def _sync_twins(self, session, force_rewire=False):
        """Connect, move or drop each RTP stream's twin to match its state;
        re-install the readers if anything changed."""
        changed = force_rewire
        redirected = []
        for stream in session.rtp:
            handle = self.handles.get(stream)
            if handle is None:
                continue
            wanted = _wanted_twin(self, stream, handle)
            if wanted == handle.twin_addr:
                continue
            if not changed and self.fastpath is not None:
                # the C thread reads this twin or sends from it: take both back first
                self.fastpath.release_session(session)
            changed = True
            if wanted is None:
                handle.close_twin()
                self.open_sockets -= 1
            elif handle.twin is not None:
                try:
                    handle.twin.connect(wanted)
                    handle.twin_addr = wanted
                    redirected.append(stream)
                except OSError:
                    handle.close_twin()
                    self.open_sockets -= 1
            elif self._open_twin(stream, handle, wanted):
                redirected.append(stream)
        if changed:
            self._rewire(session)
        for stream in redirected:
            self._drain_main(self.handles[stream])
        self._media_changed(session)

    def _media_changed(self, session):
        """The session's latching or per-packet features changed: each tier
        (the compiled fast path, the kernel) takes or gives back its streams."""
        if self.fastpath is not None:
            self.fastpath.update(session)
        if self.offload is not None:
            self.offload.update(session)

    @staticmethod
    def _drain_main(handle, limit=256):
        """Relay what the main socket still holds from the party whose packets
        now go to the twin, before the twin's reader runs: keeps them in order."""
        read = handle.watcher.callback
        peek = handle.sock.recv
        for _ in range(limit):
            try:
                peek(1, socket.MSG_PEEK)
            except OSError:
                return
            read()

    def _rewire(self, session):
        """(Re)start every watcher of the session with fresh readers."""
        dup = self.config.dup_small
        if self.fastpath is not None:
            self.fastpath.release_session(session)
        handles = self.handles
        rtp, rtcp = session.rtp, session.rtcp
        for stream in (rtp[0], rtp[1], rtcp[0], rtcp[1]):
            handle = handles.get(stream)
            if handle is None:
                continue
            peer = handles.get(stream.peer)
            filtering = _filtering(stream)
            watcher = handle.watcher
            watcher.stop()
            watcher.start(_main_reader(self, stream, handle, peer, dup, filtering))
            if handle.twin is not None:
                handle.twin_watcher.stop()
                handle.twin_watcher.start(_twin_reader(self, stream, handle, peer, dup, filtering))
            handle.resizing = stream._resizer is not None
            handle.filtering = filtering

    def session_updated(self, session):
        """A command changed addresses, latching, re-packetizing, module
        filters or ports (open_leg): refresh twins and readers."""
        if not session.closed:
            handles = self.handles
            resizing_changed = filtering_changed = False
            rtp, rtcp = session.rtp, session.rtcp
            for s in (rtp[0], rtp[1], rtcp[0], rtcp[1]):
                handle = handles.get(s)
                if handle is None:
                    continue
                if handle.filtering != _filtering(s):
                    filtering_changed = True
                if s.is_rtp and handle.resizing != (s._resizer is not None):
                    resizing_changed = True
            self._sync_twins(session, force_rewire=resizing_changed or filtering_changed)
            if resizing_changed:
                self.session_changed(session)

    def set_tos(self, session, leg, tos):
        """``S tos=N``: IPv4 legs only; a leg without sockets yet gets it when bound."""
        for stream in (session.rtp[leg], session.rtcp[leg]):
            handle = self.handles.get(stream)
            if handle is not None:
                if handle.family != socket.AF_INET:
                    return False
                for sock in (handle.sock, handle.twin):
                    if sock is not None:
                        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
            stream.tos = tos
        return True

    def route_source(self, host, family):
        """The local address the kernel would use to reach ``host``, or None."""
        return route_source(host, family)

    # --- the per-session timer -------------------------------------------------

    def timer_of(self, session: Session) -> SessionTimer:
        """The session's SessionTimer (made on first use: a resizing reader
        may be built before the session is started)."""
        timer = self.timers.get(session)
        if timer is None:
            timer = SessionTimer()
            if not session.closed:
                self.timers[session] = timer
        return timer

    def session_started(self, session: Session) -> None:
        if self.offload is not None or self.fastpath is not None:
            session.on_media_change = self._media_changed
        timer = self.timer_of(session)
        timer.greenlet = greenlet(self._session_loop, self.hub)
        timer.run = partial(timer.greenlet.switch, session, timer)
        if timer.woken:
            self.loop.run_callback(timer.run)
        else:
            # After the command (a module may add its timers yet): when the
            # session is first due, its greenlet runs.
            self.loop.run_callback(self._arm_first, session, timer)

    def _arm_first(self, session: Session, timer: SessionTimer) -> None:
        if (session.closed or timer.run is None or timer.greenlet
                or timer.watcher is not None):
            return                  # ended, or already running
        now = self.clock()
        wake_at = session.get_timer(now)
        if wake_at <= now or timer.woken:
            self.loop.run_callback(timer.run)
            return
        timer.armed_at = wake_at
        timer.paced = False
        timer.watcher = watcher = self.loop.timer(min(wake_at - now, LONGEST_SLEEP))
        watcher.start(timer.run)

    def wake_timer(self, timer: SessionTimer) -> None:
        """Run the session's timer now: it re-reads the session's deadline."""
        watcher = timer.watcher
        if watcher is None or timer.paced:
            timer.woken = True      # running, pacing or not armed yet: it does not sleep past this
            return
        watcher.stop()
        watcher.close()
        timer.watcher = None
        self.loop.run_callback(timer.run)

    def session_changed(self, session: Session) -> None:
        """Something moved the session's next deadline earlier: re-arm."""
        timer = self.timers.get(session)
        if timer is not None:
            self.wake_timer(timer)

    def session_ended(self, session: Session) -> None:
        if self.fastpath is not None:
            self.fastpath.release_session(session)
        if self.offload is not None:
            self.offload.remove(session)
        self._close_leg(session, 0, released=True)
        self._close_leg(session, 1, released=True)
        timer = self.timers.pop(session, None)
        if timer is None:
            return
        if timer.greenlet is not None and not timer.greenlet:
            # never ran: nothing to unwind, no switch needed
            if timer.watcher is not None:
                timer.watcher.stop()
                timer.watcher.close()
                timer.watcher = None
            timer.greenlet = timer.run = None
            timer.armed_at = FOREVER
            return
        self.wake_timer(timer)

    def _session_loop(self, session: Session, timer: SessionTimer) -> None:
        """The session's greenlet (see SessionTimer)."""
        try:
            self._timer_loop(session, timer)
        except Exception:
            self.hub.handle_error(timer.greenlet, *sys.exc_info())
        finally:
            if timer.watcher is not None:
                timer.watcher.stop()
                timer.watcher.close()
                timer.watcher = None
            timer.run = None        # (it refers to the timer)

    def _sleep(self, timer: SessionTimer, seconds: float, paced: bool) -> None:
        """Park the session's greenlet for ``seconds`` (a wake_timer call ends
        it earlier, unless ``paced``)."""
        if paced:
            timer.woken = False     # what came before is seen after the paced sleep
        elif timer.woken:
            timer.woken = False
            return
        timer.paced = paced
        timer.watcher = watcher = self.loop.timer(seconds)
        watcher.start(timer.run)
        try:
            self.hub.switch()
        finally:
            if timer.watcher is watcher:
                watcher.stop()
                watcher.close()
                timer.watcher = None
            timer.paced = False

    def _timer_loop(self, session: Session, timer: SessionTimer) -> None:
        """The session's timer: wake at ``get_timer``, do what ``handle_timer``
        returns, re-arm."""
        clock = self.clock
        while not session.closed:
            now = clock()
            due = session.handle_timer(now)
            if due.expired:
                if self.fastpath is not None and self.fastpath.refresh(session):
                    continue        # the C thread relayed packets: not idle after all
                if self.offload is not None and self.offload.refresh(session):
                    continue        # the kernel relayed packets: not idle after all
                self.on_expired(session)
                break
            if due.relayed:
                self._send_relayed(due.relayed)
            if due.played:
                self._send_played(due.played)
            wake_at = session.get_timer(now)
            if (session.players is not None and wake_at - now < PACED_SLEEP
                    and session.rtp[0].resizer is None and session.rtp[1].resizer is None):
                # Pacing a prompt (PACED_SLEEP): a plain timer sleep.
                timer.armed_at = wake_at
                self._sleep(timer, max(wake_at - clock(), 0.0), paced=True)
                continue
            timer.armed_at = wake_at
            self._sleep(timer, min(max(wake_at - now, 0.0), LONGEST_SLEEP), paced=False)
        timer.armed_at = FOREVER
        if self.timers.get(session) is timer:
            del self.timers[session]

    def _send_relayed(self, due: List[Tuple[Stream, bytes, Address]]) -> None:
        """Re-packetized packets: (stream whose socket sends, packet, destination)."""
        dup = self.config.dup_small
        for stream, packet, target in due:
            handle = self.handles.get(stream)
            if handle is None:
                continue
            try:
                handle.sock.sendto(packet, target)
                if dup and len(packet) < SMALL_PACKET:
                    handle.sock.sendto(packet, target)
            except OSError:
                pass

    # --- module filters (session.PacketFilter) ----------------------------------

    def deliver(self, stream, data, source, now):
        """One datagram received on ``stream`` through its module filters,
        the stream's own rules, and the outgoing filters of the stream that
        sends it (the peer, or the peer's egress)."""
        filters = stream.filters
        if filters is not None:
            received = data
            for packet_filter in filters:
                data = packet_filter.receive(stream, data, source, now)
                if data is None:            # consumed by the module
                    return
                if data is False:           # session.DROP
                    stream.count_dropped(received, now)
                    return
        demux = stream.demux
        if demux is not None:
            stream = demux(data) or stream
        target = stream.on_packet(data, source, now)
        if target is None:
            return
        out = stream.peer
        if out.egress is not None:
            out = out.egress
            target = out.target
            if target is None:
                stream.unsent(data)
                return
        if out.filters is not None:
            plain = data
            for packet_filter in out.filters:
                data = packet_filter.send(out, data, now)
                if data is None:
                    stream.unsent(plain)
                    return
        self.send_from(out, data, target)

    def send_from(self, stream, data, address):
        """Send ``data`` from ``stream``'s own socket (a module's STUN answer,
        a DTLS flight, a relayed packet, a fork's copy); False if the stream
        has no socket."""
        handle = self.handles.get(stream)
        if handle is None or address is None:
            return False
        try:
            handle.sock.sendto(data, address)
        except OSError:
            return False
        return True

    def refresh_counters(self, session):
        """Before Q: packets the C thread or the kernel relayed for the
        session, counted now."""
        if self.fastpath is not None:
            self.fastpath.refresh(session)
        if self.offload is not None:
            self.offload.refresh(session)

    def twin_reader(self, stream):
        """The Python reader of ``stream``'s connected twin (the fast path
        hands a stream back with it)."""
        return _twin_reader(self, stream, self.handles.get(stream), self.handles.get(stream.peer),
                            self.config.dup_small)

    def refresh_all_counters(self):
        """Before G and --metrics: what the C thread relayed, counted now (the
        kernel's counters are read once a second)."""
        if self.fastpath is not None:
            self.fastpath.refresh_all()

    def shutdown(self):
        """After the last session ended: nothing left in the kernel."""
        if self.fastpath is not None:
            self.fastpath.close()
            self.fastpath = None
        if self.offload is not None:
            self.offload.close()
            self.offload = None

    def _send_played(self, due: List[Tuple[Stream, bytes]]) -> None:
        """Prompt packets go out of the party's own stream socket to its address
        (``due``: [(stream, packet)])."""
        for stream, packet in due:
            handle, target = self.handles.get(stream), stream.rem_addr
            if handle is None or target is None:
                continue
            try:
                handle.sock.sendto(packet, target)
            except OSError:
                pass

    def free_ports(self):
        return self.ports.free

    # --- stream copies (C udp:HOST:PORT) --------------------------------------

    def open_copy(self, local, target):
        """A fresh port pair on ``local`` that sends copies to ``target`` (RTP)
        and target port + 1 (RTCP). Raises PortsExhausted."""
        port, rtp_sock, rtcp_sock = self._bind_pair(local, self.config.tos)
        self.open_sockets += 2
        self._check_nofile_use()
        return StreamCopy(self, port, rtp_sock, rtcp_sock, target)


class StreamCopy:
    """The sockets of one ``C udp:`` copy; ``tap(is_rtp)`` gives the Stream tap."""

    def __init__(self, relay, port, rtp_sock, rtcp_sock, target):
        self.relay = relay
        self.port = port
        self.family = rtp_sock.family
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
        self.relay.ports.released(self.port, self.family)
