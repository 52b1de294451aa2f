"""The compiled fast path: a C thread (``_fastpath.c``) relays latched RTP
streams that need nothing done per packet but counting and RTP analysis.

It is the middle tier of one hand-over mechanism (offload.py has the
kernel's): when a stream's RTP is latched (the relay has its connected
"twin" socket), the other party's twin is open too, and ``blocker`` finds no
per-packet feature, the relay stops the twin's io watcher and the C thread
reads that socket instead, with recvmmsg, and sends with sendmmsg out of the
other party's twin. The moment anything changes (a U/L that moves an
address, recording, a copy, a prompt, re-packetizing, a packet accepted on
the main socket from a new source, the session's end) the stream is taken
back (``release``) and the Python readers run again. Packets waiting in the
socket stay there, so none is lost or reordered by the switch.

What the thread counts is added to the Stream's counters (npkts_in,
nrelayed, last_rx, and the bytes when --metrics counts them) once a second,
before Q, G and --metrics read them, and before an idle session is expired.
RTP analysis: the thread runs the analyzer's fast path (the predicted
header) and its interval and jitter arithmetic; every other packet is queued
for Python, which feeds it to the stream's RtpAnalyzer and arms the
prediction again, so the results are the analyzer's own (``_apply_run``
mirrors RtpAnalyzer.settle for the packets the thread counted).

The latched sequence number is refreshed from the newest packet once a
second (Stream._recheck, as on_latched_packet does on the Python path).

Not built (no compiler) or --no_fastpath: ``FastPath.start`` returns None and
every packet is relayed in Python.
"""

import logging
import socket
import struct

from .media.analyzer import RING_SIZE, header_int
from .media.feature import FASTPATH

log = logging.getLogger("rtpproxy")

try:
    from . import _fastpath
except ImportError:                     # built without a C compiler
    _fastpath = None

POLL_INTERVAL = 1.0         # every stream's counters are read this often...
POLL_SLICES = 20            # ...a slice of them at a time
SYNC_ROUNDS = 8             # queues drained per stream and sync, at most


def available():
    return _fastpath is not None


def blocker(stream, handles):
    """Why ``stream``'s incoming RTP must stay on the Python path (None: the
    C thread may relay it). What the sockets and addresses allow is checked
    here; the stream's latching rules and features answer for themselves
    (``Stream.user_space_reason(FASTPATH)``). ``handles``: the relay's
    sockets of each stream (Relay.handles)."""
    session = stream.session
    if session.closed:
        return "ended"
    if not stream.is_rtp:
        return "RTCP"
    reason = session.latching.user_space_reason(FASTPATH)
    if reason is not None:
        return reason
    if stream.asymmetric or stream.peer.asymmetric:
        return "asymmetric"         # packets from other ports come in on the main socket
    handle, peer = handles.get(stream), stream.peer
    if handle is None or handle.twin is None or handle.resizing:
        return "not latched"
    peer_handle = handles.get(peer)
    if peer_handle is None or peer.target is None:
        return "nowhere to send"
    if _out(peer_handle, peer.target) is None:
        return "scoped IPv6 address"
    if peer.filters is not None or peer.egress is not None:
        return "module filter on the way out"   # e.g. dtls_gw encrypts what leaves the peer
    return stream.user_space_reason(FASTPATH)


def _out(handle, target):
    """(socket, packed address or b"") the other party's packets go out of
    (``handle``: its sockets, ``target``: where it sends): its connected
    twin, or its main socket and a destination; None if the address cannot
    be packed here."""
    if handle.twin is not None and handle.twin_addr == target:
        return handle.twin, b""
    host, port = target[0], target[1]
    try:
        if handle.family == socket.AF_INET:
            return handle.sock, (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
                                 + socket.inet_aton(host) + bytes(8))
        scope = target[3] if len(target) > 3 else 0
        return handle.sock, (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
                             + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", scope))
    except (OSError, ValueError, struct.error):
        return None


def _snapshot_data(prefix, length, last):
    """The datagram as far as the analyzer and latching read it: exact up to
    SNAP_PREFIX bytes; longer ones keep their length and last byte (padding)."""
    if length <= len(prefix):
        return prefix
    return prefix + bytes(length - len(prefix) - 1) + bytes((last,))


def _apply_run(analyzer, n, last_t, max_gap, prev_rts, jlast, jmax, jtotal):
    """RtpAnalyzer.settle for ``n`` predicted packets whose intervals and
    jitter the C thread already computed."""
    step = analyzer.fast_ts_step
    analyzer.max_seq += n
    analyzer.pcount += n
    analyzer.last_seq = (analyzer.last_seq + n) & 0xFFFF
    first_ts = analyzer.last_ts
    analyzer.last_ts = (first_ts + n * step) & 0xFFFFFFFF
    analyzer.last_t, analyzer.max_gap = last_t, max_gap
    rec = analyzer.jrec
    if rec is not None:
        rec.prev_rts, rec.jlast, rec.jmax, rec.jtotal = prev_rts, jlast, jmax, jtotal
        rec.pcount += n
        rec.prev_ts = analyzer.last_ts
        k = min(n, RING_SIZE)
        rec.ring_pos = (rec.ring_pos + n - k) % RING_SIZE
        for i in range(n - k + 1, n + 1):
            rec.push((first_ts + i * step) & 0xFFFFFFFF)


class Feed:
    """One C stream slot and the analyzer its packets go to: the part of the
    driver that needs no relay (tests and the fuzz target use it alone)."""

    __slots__ = ("slot", "analyzer", "out", "target")

    def __init__(self, slot, analyzer, out=None, target=None):
        self.slot = slot
        self.analyzer = analyzer
        self.out = out              # (socket, packed address) packets leave by
        self.target = target        # the address they go to

    def arm(self):
        """Hand the analyzer's prediction to C; False if packets came meanwhile."""
        a = self.analyzer
        if a is None:
            return True
        a.settle()
        run, rec = a.run, a.jrec
        if rec is None:
            return _fastpath.arm(self.slot, run.expect, run.step, float(a.fast_ts_step),
                                 _float(a.last_t), float(a.max_gap), False, 0.0, 0.0, 0.0, 0.0, 0.0)
        return _fastpath.arm(self.slot, run.expect, run.step, float(a.fast_ts_step),
                             _float(a.last_t), float(a.max_gap), True, float(a.jclock),
                             float(rec.prev_rts), float(rec.jlast), float(rec.jmax),
                             float(rec.jtotal))

    def absorb(self, state):
        """Apply a read()/remove() state to the analyzer; returns (packets,
        bytes, last_rx, newest packet data or None, its time)."""
        (npkts, nbytes, last_rx, last, run_n, expect, last_t, max_gap, prev_rts, jlast, jmax,
         jtotal, queue) = state
        a = self.analyzer
        if a is not None:
            if run_n:
                _apply_run(a, run_n, last_t, max_gap, prev_rts, jlast, jmax, jtotal)
            if expect >= 0:
                a.run.expect = expect       # the thread's prediction, for the Python path
            for prefix, length, byte, t in queue:
                data = _snapshot_data(prefix, length, byte)
                a.feed_unexpected(data, header_int(data[:12]), t)
        newest = None
        if last is not None:
            newest = (_snapshot_data(last[0], last[1], last[2]), last[3])
        return npkts, nbytes, last_rx, newest

    def sync(self):
        """Everything the thread counted since the last sync, applied; the
        prediction re-armed when it had to stop."""
        npkts = nbytes = 0
        last_rx = newest = None
        for _ in range(SYNC_ROUNDS):
            state = _fastpath.read(self.slot)
            n, b, rx, new = self.absorb(state)
            npkts += n
            nbytes += b
            if rx is not None:
                last_rx = rx
            if new is not None:
                newest = new
            if not state[12] and state[5] >= 0:
                return npkts, nbytes, last_rx, newest     # still armed: nothing to re-arm
            if self.arm():
                break
        # (still not armed after SYNC_ROUNDS: packets that need Python keep
        # coming; the rest waits for the next attention or poll)
        return npkts, nbytes, last_rx, newest


def _float(value):
    return 0.0 if value is None else float(value)


class FastPath:
    """The relay's compiled tier: which streams the C thread owns."""

    def __init__(self, relay, notify_fd):
        import gevent
        self.relay = relay
        self.owned = {}             # Stream -> Feed
        self.by_slot = {}           # slot -> Stream
        self.watcher = relay.loop.io(notify_fd, 1)
        self.watcher.start(self._attention)
        self.poller = gevent.spawn(self._poll)

    @classmethod
    def start(cls, relay, config):
        """The fast path, or None (not built, or --no_fastpath)."""
        if not config.fastpath:
            return None
        if _fastpath is None:
            log.info("the compiled fast path is not built; relaying every packet in Python")
            return None
        try:
            notify_fd = _fastpath.start()
        except OSError as exc:
            log.warning("the compiled fast path cannot start (%s); relaying every packet in "
                        "Python", exc)
            return None
        return cls(relay, notify_fd)

    def close(self):
        for stream in list(self.owned):
            self.release(stream)
        self.watcher.stop()
        self.poller.kill(block=False)
        _fastpath.stop()

    # --- hand-over --------------------------------------------------------------

    def update(self, session):
        """Take the session's eligible RTP streams, give back the others."""
        handles = self.relay.handles
        owned = self.owned
        for stream in session.rtp:
            if stream not in owned:
                handle = handles.get(stream)
                if handle is None or handle.twin is None:
                    continue        # not latched (blocker says so too): nothing to take
            reason = blocker(stream, handles)
            if stream in owned:
                feed = owned[stream]
                peer = stream.peer
                if reason is not None or feed.analyzer is not stream.analyzer \
                        or feed.target != peer.target or feed.out != _out(handles[peer], peer.target):
                    self.release(stream)
                else:
                    continue
            if reason is None:
                self._acquire(stream)

    def release_session(self, session):
        for stream in session.rtp:
            if stream in self.owned:
                self.release(stream)

    def _acquire(self, stream):
        handles = self.relay.handles
        handle = handles[stream]
        analyzer = stream.analyzer
        out = _out(handles[stream.peer], stream.peer.target)
        try:
            slot = _fastpath.add(handle.twin.fileno(), out[0].fileno(),
                                 self.relay.config.dup_small, analyzer is not None, out[1])
        except OSError as exc:
            log.debug("port %d: the fast path cannot take it (%s)", handle.port, exc)
            return
        feed = Feed(slot, analyzer, out, stream.peer.target)
        feed.arm()
        handle.twin_watcher.stop()
        self.owned[stream] = feed
        self.by_slot[slot] = stream
        log.debug("port %d: relayed by the fast path", handle.port)

    def release(self, stream):
        """Back to the Python readers; the thread no longer reads its socket."""
        feed = self.owned.pop(stream)
        del self.by_slot[feed.slot]
        self._credit(stream, feed.absorb(_fastpath.remove(feed.slot)), recheck=False)
        handle = self.relay.handles.get(stream)
        if handle is not None:
            log.debug("port %d: relayed in Python again", handle.port)
        if handle is not None and handle.twin is not None and not stream.session.closed:
            handle.twin_watcher.start(self.relay.twin_reader(stream))

    def owns(self, stream):
        return stream in self.owned

    # --- counters -----------------------------------------------------------------

    def _credit(self, stream, counts, recheck=True):
        npkts, nbytes, last_rx, newest = counts
        if not npkts:
            return False
        stream.npkts_in += npkts
        stream.nrelayed += npkts
        stream.totals.npkts_rcvd += npkts       # G's running totals (relayed = received - dropped)
        if stream.taps is not None:         # --metrics' count_bytes: the only tap allowed here
            stream.nbytes_in += nbytes
        if last_rx is not None:
            stream.last_rx = last_rx
        if recheck and newest is not None and last_rx is not None and last_rx >= stream.recheck_at:
            stream._recheck(newest[0], newest[1])
        return True

    def _sync(self, stream):
        feed = self.owned.get(stream)
        if feed is None:
            return False
        latched = stream.latched
        active = self._credit(stream, feed.sync())
        if stream.latched != latched:
            self.relay._sync_twins(stream.session)
        return active

    def refresh(self, session):
        """Fresh counters for ``session``; True if its streams saw packets."""
        active = False
        for stream in session.rtp:
            if stream in self.owned and self._sync(stream):
                active = True
        return active

    def refresh_all(self):
        for stream in list(self.owned):
            if stream in self.owned:
                self._sync(stream)

    def _attention(self):
        for slot in _fastpath.attention():
            stream = self.by_slot.get(slot)
            if stream is not None:
                self._sync(stream)

    def _poll(self):
        """Every stream is read once per POLL_INTERVAL, a slice at each of
        POLL_SLICES ticks: reading 2000 streams at once would hold the loop
        (and a command arriving then) for about 10 ms."""
        import gevent
        todo = []
        tick = 0
        while True:
            gevent.sleep(POLL_INTERVAL / POLL_SLICES)
            try:
                # A round starts every POLL_SLICES ticks, also when nothing is
                # owned (else the line below would be logged at every tick).
                if tick == 0:
                    todo = list(self.owned)
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("fast path: %d streams; packets %d, queued for Python %d, "
                                  "pauses %d, wake-ups %d", len(todo), *_fastpath.stats())
                count = -(-len(todo) // (POLL_SLICES - tick)) if todo else 0
                for stream in todo[-count:] if count else ():
                    if stream in self.owned:
                        self._sync(stream)
                del todo[len(todo) - count:]
                tick = (tick + 1) % POLL_SLICES
            except Exception:       # keep polling; the error is a bug to see in the log
                todo = []
                tick = 0
                log.exception("fast path: reading the counters failed")
