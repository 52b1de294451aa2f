"""Sessions and their streams, without sockets: latching, idle time, counters.

A session joins two parties. Stream 0 faces the callee (its port goes into
the offer the callee receives), stream 1 faces the caller. Each party has an
RTP stream and an RTCP stream; a packet received on stream k is sent out of
stream 1-k to stream 1-k's remote address.

``Stream.on_packet(data, source, now)`` is the whole per-packet decision: it
returns the address to send the packet to, or None to drop it. The relay owns
the sockets and does the sending. Time is always passed in (``now`` in
seconds of a monotonic clock), so these objects can be driven by tests.

Per-packet features (media/feature.py: RTP analysis, the resizer, a prompt,
recording/copy and module taps, module packet filters) are one set per
stream (``Stream.features``). When it changes the stream precomputes what
the packet path reads: the per-packet callables (``taps``), the analyzer
and its run (inlined in ``on_latched_packet``), the resizer the relay
feeds, the filters relay.deliver runs. ``Stream.user_space_reason(tier)``
tells --kernel_offload and the compiled fast path whether the stream may
leave this program.

The latching rules are the session's strategy (latching.py, README
"Latching modes"): the upstream rules with three guards by default, or
strict learning (``--latching strict`` or the ``k`` modifier of U/L) against
RTP Bleed; each stream's latching state is its ``latch``
(latching.LatchState). Both run in the slow path (``_check_source``);
packets from ``rem_addr`` before ``recheck_at`` never reach them.

Latches, re-latches and refused sources are logged at INFO from the slow path
only (rate-limited per stream, and refusals also overall, so a spray cannot
flood the log); ``Session.summary()`` gives the end-of-session lines.
"""

import logging
from typing import (TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Generic, Iterator, List,
                    Optional, Tuple, TypeVar, Union, overload)

from .media import rtcp, rtp  # noqa: F401
from .media.analyzer import FastRun, RtpAnalyzer, header_int
from .media.feature import (CONSUMED, DROPPED, KERNEL, PRECEDENCE_PROMPT, PRECEDENCE_VETO,
                            Analysis, Feature, Muted, Mux, PacketFilter, PacketHook, Tap, Veto,
                            features_reason)
from .media.resizer import Resizer
from .latching import (PREFER_LAPSE, RELATCH_MAX_SEQ_DISTANCE, RELATCH_WINDOW,  # noqa: F401
                       SEQ_RESYNC_INTERVAL, STRICT, LatchingRules, LatchState, rules)

if TYPE_CHECKING:
    from .config import BindAddress
    from .media.player import Player

log = logging.getLogger("rtpproxy")

Address = Tuple[Any, ...]   # (host, port) or (host, port, flowinfo, scope_id)
Waker = Callable[[float], float]

_RTP_HEADER = slice(12)     # data[:12] would build this slice object per packet

# Address events (latch, re-latch) logged per stream per LOG_INTERVAL; beyond
# that they are counted and the count goes with the next line.
LOG_BURST = 8
LOG_INTERVAL = 10.0
# Refused sources: one line per stream per LOG_INTERVAL, and at most this
# many lines a second over all streams.
REFUSAL_LINES_PER_SECOND = 20

class RunningTotals:
    """The packet counters of G and I as running totals over every stream of
    one session table (SessionTable.add hands it to each stream), so G and I
    cost the same at any session count. Relayed = received - dropped."""

    __slots__ = ("npkts_rcvd", "npkts_dropped", "npkts_discard", "npkts_played", "nplrs_destroyed")
    npkts_rcvd: int
    npkts_dropped: int
    npkts_discard: int
    npkts_played: int
    nplrs_destroyed: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


NEVER = float("-inf")
FOREVER = float("inf")


T = TypeVar("T")


class _LatchField(Generic[T]):
    """A Stream attribute that is its LatchState's (readers outside latching.py)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, stream: None, owner: Any = None) -> "_LatchField[T]": ...

    @overload
    def __get__(self, stream: "Stream", owner: Any = None) -> T: ...

    def __get__(self, stream: Optional["Stream"], owner: Any = None) -> Any:
        if stream is None:
            return self         # read on the class (help(), introspection)
        return getattr(stream.latch, self.name)

    def __set__(self, stream: "Stream", value: T) -> None:
        setattr(stream.latch, self.name, value)


class Stream:
    """One direction's socket side: RTP or RTCP of one party."""

    __slots__ = (
        "session", "index", "is_rtp", "peer", "twin",
        # where packets go and come from; until when a packet from rem_addr
        # skips the latching rules (the packet path reads both per packet)
        "rem_addr", "target", "recheck_at",
        # what the session's latching rules (latching.py) remember of this stream
        "latch",
        # log rate limits: (window end, lines left, lines held) for address
        # events, (next line time, refusals held) for refused sources
        "log_window", "log_refusals",
        "on_hold", "hold_count", "muted",
        # local side (Session.ports_bound); the sockets are the driver's own
        "port", "local",
        # per-packet features (media/feature.py), and what the packet path
        # reads of them, precomputed when they change (None when off): the
        # per-packet callables, the analyzer and its run, the resizer
        "features", "taps", "_analyzer", "analysis_run", "_resizer",
        # module packet filters (PacketFilter), demultiplexing and muxing (relay.deliver)
        "filters", "demux", "egress",
        # signalling state kept for other features
        "codecs", "resize_ptime", "prompt_ptime", "tos",
        # counters (totals: the table's RunningTotals)
        "totals", "npkts_in", "nrelayed", "ndropped", "nignored", "last_rx",
        # bytes: of accepted packets (only with --metrics, by a tap), and of
        # dropped ones (counted on the drop paths only)
        "nbytes_in", "nbytes_ignored", "nbytes_unsent",
    )

    # The other party's stream of the same kind, and this party's stream of
    # the other kind (RTP <-> RTCP). Not set here: the four streams of a
    # session need each other, so Session.__init__ links them right after
    # making them, before anything can use them (Streams are made nowhere
    # else). Typed as always present, so the packet path reads them unchecked.
    peer: "Stream"
    twin: "Stream"

    def __init__(self, session: "Session", index: int, is_rtp: bool) -> None:
        self.session = session
        self.index = index
        self.is_rtp = is_rtp
        self.rem_addr: Optional[Address] = None
        self.target: Optional[Address] = None
        self.recheck_at = NEVER
        self.latch = LatchState()
        self.log_window: Optional[List[float]] = None
        self.log_refusals: Optional[List[float]] = None
        self.on_hold = False
        self.hold_count = 0
        self.muted = False
        self.port: Optional[int] = None
        self.local: Optional["BindAddress"] = None
        self.features: Tuple[Feature, ...] = ()
        self.taps: Optional[Tuple[PacketHook, ...]] = None   # the features' per-packet callables
        # media.analyzer.RtpAnalyzer (RTP streams, analysis on) or, until the
        # first packet, its PendingAnalysis; and its fast path's state (inlined
        # in on_latched_packet): both set or both None. Read from outside
        # through ``analyzer``, which is always the RtpAnalyzer.
        self._analyzer: Optional["AnyAnalyzer"] = None
        self.analysis_run: Optional[FastRun] = None
        self._resizer: Optional[Resizer] = None   # z modifier; the relay feeds it
        self.filters: Optional[Tuple[PacketFilter, ...]] = None
        self.demux: Optional[Callable[[bytes], Optional[Stream]]] = None
        self.egress: Optional[Stream] = None
        self.codecs: Optional[str] = None
        self.resize_ptime: Optional[int] = None
        self.prompt_ptime: Optional[int] = None
        self.tos: Optional[int] = None
        self.totals: RunningTotals = session.totals
        self.npkts_in = 0
        self.nrelayed = 0
        self.ndropped = 0
        self.nignored = 0
        self.last_rx: Optional[float] = None
        self.nbytes_in = 0
        self.nbytes_ignored = 0
        self.nbytes_unsent = 0

    # --- the packet path ------------------------------------------------

    def on_packet(self, data: bytes, source: Address, now: float) -> Optional[Address]:
        """Account a packet received from ``source``; return where to send it."""
        self.npkts_in += 1
        self.totals.npkts_rcvd += 1
        if source != self.rem_addr or now >= self.recheck_at:
            if not self._check_source(data, source, now):
                self.last_rx = now
                self.ndropped += 1
                self.nignored += 1
                self.totals.npkts_dropped += 1
                self.totals.npkts_discard += 1
                self.nbytes_ignored += len(data)
                return None
        self.last_rx = now
        analyzer = self._analyzer
        if analyzer is not None:
            analyzer.feed(data, now)
        if self.taps is not None:
            for tap in self.taps:
                verdict = tap(self, data, source, now)
                if verdict:
                    return self._tap_verdict(data, verdict)
        target = self.peer.target
        if target is None:
            self.ndropped += 1
            self.totals.npkts_dropped += 1
            self.nbytes_unsent += len(data)
            return None
        self.nrelayed += 1
        return target

    def on_latched_packet(self, data: bytes, now: float) -> Optional[Address]:
        """A packet the kernel already matched to ``rem_addr`` (the relay's
        connected socket for a latched stream): no source check needed."""
        self.npkts_in += 1
        self.totals.npkts_rcvd += 1
        self.last_rx = now
        if now >= self.recheck_at:
            self._recheck(data, now)
        run = self.analysis_run
        if run is not None:
            # RtpAnalyzer.feed, inlined: a call per packet costs more than this
            h = header_int(data[_RTP_HEADER])
            if h == run.expect:
                run.expect = h + run.step
                run.append(now)
            else:
                # not per packet: only when the run breaks (a lost or
                # reordered packet, a new SSRC, the first packet: PendingAnalysis's
                # run predicts nothing); analysis_run implies analyzer
                analyzer = self._analyzer
                assert analyzer is not None
                analyzer.feed_unexpected(data, h, now)
        if self.taps is not None:
            for tap in self.taps:
                verdict = tap(self, data, self.rem_addr, now)
                if verdict:
                    return self._tap_verdict(data, verdict)
        target = self.peer.target
        if target is None:
            self.ndropped += 1
            self.totals.npkts_dropped += 1
            self.nbytes_unsent += len(data)
            return None
        self.nrelayed += 1
        return target

    def _tap_verdict(self, data: bytes, verdict: Any) -> Optional[Address]:
        """A feature said drop (catch_dtmf's h: counted as dropped and
        discarded) or consumed (received, neither relayed nor dropped).
        Returns on_packet's answer: None, nowhere to send it."""
        if verdict == CONSUMED:
            return None
        self.ndropped += 1
        self.nignored += 1
        self.totals.npkts_dropped += 1
        self.totals.npkts_discard += 1
        self.nbytes_ignored += len(data)
        return None

    def _check_source(self, data: bytes, source: Address, now: float) -> bool:
        """Latching rules of media-relay.md 3.2/3.3 (the slow path): the
        session's strategy (latching.py) decides."""
        accepted = self.session.latching.check_source(self, data, source, now)
        if not accepted and log.isEnabledFor(logging.INFO):
            self._log_refused(data, source, now)
        return accepted

    def _recheck(self, data: bytes, now: float) -> None:
        """A packet from the latched source after ``recheck_at`` (the packet
        path, the fast path's newest packet)."""
        self.session.latching.recheck(self, data, now)

    # --- logs (slow path only) ---------------------------------------------

    def _who(self) -> str:
        return "caller" if self.index == 1 else "callee"

    def _kind(self) -> str:
        return "RTP" if self.is_rtp else "RTCP"

    def _ssrc_text(self) -> str:
        latch = self.latch
        if self.is_rtp and latch.ssrc is not None:
            return ", SSRC=0x%08X, Seq=%d" % (latch.ssrc, latch.seq)
        return ""

    def _log_latch(self, now: float) -> None:
        self._log_event(now, "'s address latched in: %s (%s)%s", _format_addr(self.rem_addr),
                        self._kind(), self._ssrc_text())

    def _log_event(self, now: float, message: str, *args: Any) -> None:
        """An address event at INFO, at most LOG_BURST per LOG_INTERVAL per stream."""
        window = self.log_window
        if window is None or now >= window[0]:
            held = window[2] if window is not None else 0
            window = self.log_window = [now + LOG_INTERVAL, LOG_BURST, 0]
            if held:
                message += " (%d address events not logged before this one)" % held
        if window[1] <= 0:
            window[2] += 1
            return
        window[1] -= 1
        session = self.session
        log.info("session %s, tag %s: " + self._who() + message, session.call_id,
                 session.from_tag, *args)

    def _log_refused(self, data: bytes, source: Address, now: float) -> None:
        """A refused source at INFO: one line per stream per LOG_INTERVAL (with
        the count since the last one), at most REFUSAL_LINES_PER_SECOND overall."""
        state = self.log_refusals
        if state is not None and now < state[0]:
            state[1] += 1
            return
        held = state[1] if state is not None else 0
        if not _REFUSAL_BUDGET.take(now):
            if state is None:
                self.log_refusals = [NEVER, 1]
            else:
                state[1] += 1
            return
        self.log_refusals = [now + LOG_INTERVAL, 0]
        why = self.session.latching.refusal_reason(self, data, source)
        session = self.session
        log.info("session %s, tag %s: %s's %s from %s refused (%s)%s", session.call_id,
                 session.from_tag, self._who(), self._kind(), _format_addr(source), why,
                 "; %d more refused since the last line" % held if held else "")

    def release(self) -> None:
        """The session ended (Session.release): drop what points back at the
        session or at other streams (the session, peer, twin, mux, and the
        features, which may hold their stream), so that reference counting
        frees the stream at once. Nothing may use the stream after this."""
        del self.session, self.peer, self.twin
        self.demux = self.egress = None
        self.features = ()
        self.taps = self.filters = None
        if type(self._analyzer) is PendingAnalysis:
            self._analyzer.release()
        self._analyzer = self.analysis_run = self._resizer = None

    # --- latching state (latching.LatchState), for readers outside the rules ----

    latched: _LatchField[bool] = _LatchField('latched')
    untrusted: _LatchField[bool] = _LatchField('untrusted')
    asymmetric: _LatchField[bool] = _LatchField('asymmetric')
    signalled: _LatchField[Optional[Address]] = _LatchField('signalled')
    confirmed: _LatchField[bool] = _LatchField('confirmed')
    ssrc: _LatchField[Optional[int]] = _LatchField('ssrc')
    seq: _LatchField[int] = _LatchField('seq')

    # --- signalling -----------------------------------------------------

    def signal_address(self, address: Optional[Address], asymmetric: bool, now: float) -> None:
        """Apply the address a U/L carried (None: the null host, i.e. hold)."""
        self.session.latching.signal_address(self, address, asymmetric, now)

    def pin_remote(self, address: Address) -> None:
        """A module chose the party's address (ICE nomination): latched there,
        and later U/L addresses do not move it."""
        self.session.latching.pin(self, address)


    def _address_changed(self) -> None:
        self.recheck_at = NEVER
        self.refresh_target()

    def refresh_target(self) -> None:
        """Recompute where the peer's packets go (None: nowhere)."""
        if self.port is None or self.muted:
            self.target = None
        else:
            self.target = self.rem_addr

    def set_muted(self, muted: bool) -> None:
        """While a prompt plays to this party, relayed media to it is dropped.
        The prompt's Player (Session.start_playback put it in ``players``
        first) joins the stream's features; without one, a marker does."""
        self.muted = muted
        self.refresh_target()
        prompt: Optional[Feature] = None
        if muted:
            players = self.session.players
            prompt = players.get(self.index) if players and self.is_rtp else None
            if prompt is None:
                prompt = PROMPT_PLAYING
        features = tuple(f for f in self.features if f.precedence != PRECEDENCE_PROMPT)
        if prompt is not None:
            features = tuple(sorted(features + (prompt,), key=_by_precedence))
        self.features = features
        self._features_changed(True)

    # --- per-packet features (media/feature.py) --------------------------------

    def add_feature(self, feature: Feature, notify: bool = True) -> None:
        """Put ``feature`` on this stream (once); ``notify``: tell the session
        (the relay re-decides which tier relays the stream)."""
        if feature not in self.features:
            self.features = tuple(sorted(self.features + (feature,), key=_by_precedence))
        self._features_changed(notify)

    def remove_feature(self, feature: Feature, notify: bool = True) -> None:
        self.features = tuple(f for f in self.features if f is not feature)
        self._features_changed(notify)

    def _features_changed(self, notify: bool) -> None:
        """Precompute what the packet path reads of the features, so that it
        does no more work than before they were objects."""
        features = self.features
        hooks = tuple(hook for hook in (f.packet_hook() for f in features) if hook is not None)
        self.taps = hooks or None
        analyzer = next((f.analysis for f in features if f.analysis is not None), None)
        self._analyzer = analyzer
        self.analysis_run = analyzer.run if analyzer is not None else None
        self._resizer = next((f for f in features if isinstance(f, Resizer)), None)
        filters = tuple(sorted((f for f in features if isinstance(f, PacketFilter)), key=_by_order))
        self.filters = filters or None
        if notify:
            self.session.media_changed()

    def user_space_reason(self, tier: str) -> Optional[str]:
        """Why this stream's packets must stay in this program for ``tier``
        (feature.KERNEL or feature.FASTPATH), None if they may leave it: the
        latching rules' reason, then the features' (features_reason)."""
        reason = self.session.latching.user_space_reason(tier)
        if reason is not None:
            return reason
        return features_reason(self.features, tier, self.resize_ptime is not None)

    def may_leave_user_space(self, tier: str) -> bool:
        return self.user_space_reason(tier) is None

    def set_analyzer(self, analyzer: Optional[RtpAnalyzer]) -> None:
        """RTP analysis on (an RtpAnalyzer) or off (None)."""
        for feature in self.features:
            if isinstance(feature, Analysis):
                self.remove_feature(feature, notify=False)
        if analyzer is not None:
            self.add_feature(Analysis(analyzer), notify=False)

    def analyze(self) -> None:
        """RTP analysis on, its RtpAnalyzer made when the stream's first packet
        comes or something reads ``analyzer`` (PendingAnalysis): a call that
        ends before its media starts never pays for one. What a fresh stream
        (no features yet, as U makes it) gets is set directly."""
        pending = PendingAnalysis(self)
        if self.features:
            self.set_analyzer(None)
            self.add_feature(pending, notify=False)
            return
        self.features = (pending,)
        self._analyzer = pending
        self.analysis_run = PENDING_RUN

    @property
    def analyzer(self) -> Optional[RtpAnalyzer]:
        """The stream's RtpAnalyzer (None: analysis off); made now if no
        packet has made it yet."""
        analyzer = self._analyzer
        if type(analyzer) is PendingAnalysis:
            return analyzer.start()
        return analyzer     # type: ignore[return-value]

    @property
    def started_analyzer(self) -> Optional[RtpAnalyzer]:
        """The RtpAnalyzer if analysis is on and it exists yet (None: off, or
        nothing fed yet: every count is 0), for readers that only add up."""
        analyzer = self._analyzer
        if type(analyzer) is PendingAnalysis:
            return None
        return analyzer     # type: ignore[return-value]

    @property
    def analysis_on(self) -> bool:
        return self._analyzer is not None

    @property
    def resizer(self) -> Optional[Resizer]:
        """The stream's re-packetizer (z), a feature the relay's reader feeds."""
        return self._resizer

    @resizer.setter
    def resizer(self, resizer: Optional[Resizer]) -> None:
        if self._resizer is not None:
            self.remove_feature(self._resizer, notify=False)
        if resizer is not None:
            self.add_feature(resizer, notify=False)

    def add_tap(self, tap: PacketHook) -> None:
        """Call ``tap(stream, data, source, now)`` for every accepted packet;
        a tap returning a true value drops the packet (a feature.Tap)."""
        self.add_feature(Tap(tap))

    def remove_tap(self, tap: PacketHook) -> None:
        self.features = tuple(f for f in self.features if not (isinstance(f, Tap) and f.tap is tap))
        self._features_changed(True)

    # --- module packet filters (dtls_gw, ice_lite) ----------------------------

    def add_filter(self, packet_filter: PacketFilter) -> None:
        """Put a PacketFilter on this stream (kept sorted by its ``order``).
        A stream with filters, or whose peer has filters or an egress, is
        read by the relay's filtering reader (relay.deliver) and never offloaded."""
        self.add_feature(packet_filter)

    def remove_filter(self, packet_filter: PacketFilter) -> None:
        self.remove_feature(packet_filter)

    def set_mux(self, demux: Optional[Callable[[bytes], Optional["Stream"]]],
                egress: Optional["Stream"]) -> None:
        """Module demultiplexing: ``demux(data)`` names the stream a received
        packet is accounted and relayed as (None: this one); ``egress`` is the
        stream whose socket and address send what would leave this one."""
        self.demux = demux
        self.egress = egress
        if demux is not None or egress is not None:
            self.add_feature(MUX)
        else:
            self.remove_feature(MUX)

    def count_dropped(self, data: bytes, now: float) -> None:
        """A filter refused a packet (e.g. SRTP before the DTLS handshake):
        received and dropped, as a failed source check counts it."""
        self.npkts_in += 1
        self.last_rx = now
        self.ndropped += 1
        self.nignored += 1
        totals = self.totals
        totals.npkts_rcvd += 1
        totals.npkts_dropped += 1
        totals.npkts_discard += 1
        self.nbytes_ignored += len(data)

    def unsent(self, data: bytes) -> None:
        """A packet this stream accepted could not go out (an outgoing filter
        refused it): dropped, not relayed."""
        self.nrelayed -= 1
        self.ndropped += 1
        self.totals.npkts_dropped += 1
        self.nbytes_unsent += len(data)

    def veto_offload(self, reason: str) -> None:
        """A per-packet feature without an object here needs this stream's
        packets: it stays in user space until ``allow_offload(reason)``."""
        if reason not in self._veto_reasons():
            self.features = tuple(sorted(self.features + (Veto(reason),), key=_by_precedence))
        self._features_changed(True)

    def allow_offload(self, reason: str) -> None:
        self.features = tuple(f for f in self.features
                              if not (isinstance(f, Veto) and f.reason == reason))
        self._features_changed(True)

    def _veto_reasons(self) -> FrozenSet[str]:
        return frozenset(f.reason for f in self.features if isinstance(f, Veto))

    @property
    def offload_vetoes(self) -> Optional[FrozenSet[str]]:
        """The reasons given by vetoes, filters and mux (None: none)."""
        reasons = frozenset(reason for reason in (f.user_space_reason(KERNEL) for f in self.features
                                                  if f.precedence >= PRECEDENCE_VETO)
                            if reason is not None)
        return reasons or None

    # --- timed features (Session.get_timer / handle_timer) -----------------------

    def next_deadline(self, now: float) -> float:
        """When this stream's timed features (re-packetizing, a prompt played
        to its party) next need ``handle_timer``; FOREVER: not before a
        packet or a command changes something."""
        # asked once each, as features (media/feature.py): the resizer (its
        # last dequeue, by the timer or the packet path) and the prompt's
        # Player (a feature of its stream while it plays: set_muted)
        return min((f.next_deadline(now) for f in self.features), default=FOREVER)

    def handle_timer(self, now: float, due: "TimerOutput") -> None:
        """Do what this stream's timed features have due at ``now``: the
        re-packetized packets go into ``due.relayed`` (sent from the peer's
        socket to where the peer sends), the prompt's into ``due.played``."""
        resizer = self.resizer
        if resizer is not None:
            packets, _ = resizer.dequeue(now)       # its next_deadline() says when again
            if packets:
                peer = self.peer
                target = peer.target
                if target is not None:
                    relayed = due.relayed
                    for packet in packets:
                        relayed.append((peer, packet, target))
        players = self.session.players
        if players is not None and self.is_rtp and self.index in players:
            self.session._play(self.index, now, due.played)




# The run of an analyzer not made yet: it predicts no header (header_int is
# never negative), so on_latched_packet's first packet goes to
# PendingAnalysis.feed_unexpected, which makes the analyzer. Never appended to.
PENDING_RUN = FastRun()


class PendingAnalysis(Analysis):
    """RTP analysis on a stream that has not had a packet yet (Stream.analyze):
    the feature and the stream's analyzer at once. It keeps the stream's place
    among the tiers as Analysis does; the first packet fed to it (either
    packet path, where it is not predicted anyway) or the first read of
    ``Stream.analyzer`` puts a real RtpAnalyzer in its place, so every count
    is the same as with one made at U."""

    __slots__ = ("stream",)
    run = PENDING_RUN

    def __init__(self, stream: Stream) -> None:
        self.analysis = self        # type: ignore[assignment]
        self.stream = stream

    def start(self) -> RtpAnalyzer:
        """The stream's RtpAnalyzer, made now (in this feature's place)."""
        stream = self.stream
        analyzer = RtpAnalyzer()
        stream.features = tuple(Analysis(analyzer) if f is self else f for f in stream.features)
        stream._features_changed(False)
        del self.analysis           # its reference to itself: else a cycle keeps it and the stream
        return analyzer

    def release(self) -> None:
        """Its stream ended (Stream.release): drop the references to itself
        and to the stream, so that reference counting frees both."""
        del self.analysis, self.stream

    def feed(self, data: bytes, t: float) -> None:
        self.start().feed(data, t)

    def feed_unexpected(self, data: bytes, h: int, t: float) -> None:
        self.start().feed_unexpected(data, h, t)


AnyAnalyzer = Union[RtpAnalyzer, PendingAnalysis]


class TimerOutput:
    """What ``Session.handle_timer(now)`` found due; the driver does it.

    ``expired``: the session is idle past its TTL. The driver ends it, once
    it has brought in the packets relayed outside the program (the fast
    path, the kernel), which may show that it was not idle after all.
    ``relayed``: re-packetized media as (stream whose socket sends it,
    datagram, destination), sent as relayed packets are (``-2`` doubles the
    small ones). ``played``: prompt packets as (stream, datagram), sent from
    the stream's socket to its party (``stream.rem_addr``).
    """

    __slots__ = ("expired", "relayed", "played")

    def __init__(self) -> None:
        self.expired = False
        self.relayed: List[Tuple[Stream, bytes, Address]] = []
        self.played: List[Tuple[Stream, bytes]] = []


class Session:
    """One media stream of a call: two parties, their RTP and RTCP streams.

    As aioquic's connection, it has one timer: ``get_timer(now)`` says when
    it next needs ``handle_timer(now)`` (idle expiry, the next prompt or
    re-packetized packet, a module's timer), and ``handle_timer`` does what
    is due and returns what the driver (relay.py, media_port.py) must send
    or end. Time is always passed in.
    """

    on_media_change: Optional[Callable[["Session"], None]]
    players: Optional[Dict[int, "Player"]]
    wakers: Optional[Tuple[Waker, ...]]

    def __init__(self, call_id: str, from_tag: str, now: float, setup_ttl: float,
                 established_ttl: Optional[float] = None, unified_ttl: bool = True) -> None:
        self.call_id = call_id
        self.from_tag = from_tag
        # the other party's tag, once a U/L named it (rtpproxy-ctl)
        self.to_tag: Optional[str] = None
        self.created_at = now
        self.totals: RunningTotals = UNCOUNTED   # SessionTable.add gives the table's
        rtp0, rtp1 = Stream(self, 0, True), Stream(self, 1, True)
        rtcp0, rtcp1 = Stream(self, 0, False), Stream(self, 1, False)
        self.rtp = [rtp0, rtp1]
        self.rtcp = [rtcp0, rtcp1]
        # Stream.peer and Stream.twin are typed as always set: they are, from here on
        rtp0.peer, rtp1.peer, rtcp0.peer, rtcp1.peer = rtp1, rtp0, rtcp1, rtcp0
        rtp0.twin, rtp1.twin, rtcp0.twin, rtcp1.twin = rtcp0, rtcp1, rtp0, rtp1
        self.strong = True
        self.weak = [False, False]
        self.complete = False
        self.unified_ttl = unified_ttl
        self.ttl = [setup_ttl, setup_ttl]
        self.established_ttl = setup_ttl if established_ttl is None else established_ttl
        self.reset_at = [now, now]
        # (notify.NotifyTarget, tag bytes, command source ip, local ip)
        self.notify: Optional[Tuple[Any, ...]] = None
        # latching.py: the default rules, or strict (below)
        self.latching: LatchingRules = rules(False)
        self.latch_until = now      # strict: new sources may be learned until then
        self.closed = False
        self.end_reason: Optional[str] = None
        self.players = None         # {stream index: media.player.Player} while prompts play
        self.npkts_played = 0
        self.nplrs_destroyed = 0
        # The one listener of the session: called with the session whenever a
        # per-packet feature goes on or off on one of its streams (a tap, a
        # prompt's mute, an offload veto), so a driver that hands streams to
        # other tiers (the fast path, the kernel) re-decides at once. None: nobody listens.
        self.on_media_change = None
        self.wakers = None          # module timers: callables now -> next wake-up time
        self.wakers_due = FOREVER   # the earliest time they asked for at their last run

    def __repr__(self) -> str:
        return "<Session %s %s>" % (self.call_id, self.from_tag)

    @property
    def strict(self) -> bool:
        """Strict learning (--latching strict, U/L modifier k): the session's
        streams follow latching.STRICT instead of the default rules."""
        return self.latching is STRICT

    @strict.setter
    def strict(self, strict: bool) -> None:
        self.latching = rules(strict)

    def streams(self) -> List[Stream]:
        return self.rtp + self.rtcp

    def add_waker(self, waker: Waker) -> None:
        """``waker(now)`` runs in ``handle_timer``, at every wake-up of the
        session's timer, and returns when it next needs to run (FOREVER: not
        until something changes). A new one runs at the next wake-up."""
        self.wakers = (self.wakers or ()) + (waker,)
        self.wakers_due = NEVER

    def remove_waker(self, waker: Waker) -> None:
        self.wakers = tuple(w for w in (self.wakers or ()) if w is not waker) or None

    def media_changed(self) -> None:
        """A per-packet feature went on or off on one of its streams."""
        if self.on_media_change is not None:
            self.on_media_change(self)

    def release(self) -> None:
        """The session has ended and its driver let go of it (the last step of
        Dispatcher.destroy): break the reference cycles it is made of (its
        streams point back at it and at each other; timers, listeners and
        features may hold it), so that CPython frees the session and all it
        owns by reference counting as soon as the last outside reference
        goes, with no garbage collection (issue 18.6). Tags, counters and
        addresses stay readable (the streams' too); nothing that needs a
        stream's session, peer or features (the packet path, latching,
        ``summary``'s analysis) may run any more."""
        rtp, rtcp = self.rtp, self.rtcp
        for stream in (rtp[0], rtp[1], rtcp[0], rtcp[1]):
            stream.release()
        self.wakers = None
        self.on_media_change = None
        self.players = None

    # --- the timer (as aioquic's get_timer / handle_timer) ---------------------

    def get_timer(self, now: float) -> float:
        """When the session next needs ``handle_timer``: its idle expiry, a
        module timer, or a stream's timed feature, whichever comes first."""
        wake = self.expires_at()
        if self.wakers is not None and self.wakers_due < wake:
            wake = self.wakers_due
        for stream in self.rtp:
            if stream._resizer is not None or self.players is not None:
                at = stream.next_deadline(now)
                if at < wake:
                    wake = at
        return wake

    def handle_timer(self, now: float) -> TimerOutput:
        """Do what is due at ``now`` and return what the driver must do.
        Nothing else is done once the session is found expired. Module
        timers run at every call; it may be called early or late (a
        feature's deadline moved, the driver was busy)."""
        due = TimerOutput()
        if now >= self.expires_at():
            due.expired = True
            return due
        wakers = self.wakers
        if wakers is not None:
            wake = FOREVER
            for waker in wakers:
                at = waker(now)
                if at < wake:
                    wake = at
            self.wakers_due = wake
        for stream in self.rtp:
            if stream.resizer is not None or self.players is not None:
                stream.handle_timer(now, due)
        return due

    # --- local addresses ------------------------------------------------------

    def ports_bound(self, leg: int, local: Any, port: int) -> None:
        """The driver bound leg ``leg``'s RTP/RTCP pair on ``local`` (a
        config.BindAddress) at ``port`` and ``port + 1``: the local address
        its party is told (U/L replies, Q, rtpproxy-ctl). The sockets are
        the driver's; the caller refreshes where packets go."""
        self.rtp[leg].port, self.rtcp[leg].port = port, port + 1
        self.rtp[leg].local = self.rtcp[leg].local = local

    def ports_released(self, leg: int) -> None:
        """The driver closed leg ``leg``'s pair: nothing is relayed to its
        party until it has ports again (its local interface is kept)."""
        for stream in (self.rtp[leg], self.rtcp[leg]):
            stream.port = None
            stream.target = None        # (refresh_target: no port, no target)

    # --- idle time ------------------------------------------------------

    def _activity(self, leg: int) -> float:
        last = self.reset_at[leg]
        for stream in (self.rtp[leg], self.rtcp[leg]):
            if stream.last_rx is not None and stream.last_rx > last:
                last = stream.last_rx
        return last

    def _leg_deadlines(self) -> List[float]:
        """When each leg's idle counter runs out (unified: one shared counter)."""
        if self.unified_ttl:
            last = max(self._activity(0), self._activity(1))
            return [last + self.ttl[0], last + self.ttl[1]]
        return [self._activity(k) + self.ttl[k] for k in (0, 1)]

    def remaining_ttl(self, now: float) -> int:
        """The Q ``ttl`` value: whole seconds left, minimum over both legs."""
        return max(0, min(int(d - now + 0.999999) for d in self._leg_deadlines()))

    def expires_at(self) -> float:
        """The session dies one counter tick after its idle counter hits 0."""
        return min(self._leg_deadlines()) + 1.0

    def touch(self, now: float) -> None:
        """A U/L on this session: counters back to their maximum."""
        self.reset_at = [now, now]

    def set_ttl(self, leg: int, ttl: float, now: float) -> None:
        """``S ttl=N``: new maximum for the leg (both when unified), restarted."""
        legs = (0, 1) if self.unified_ttl else (leg,)
        self.established_ttl = ttl
        for k in legs:
            self.ttl[k] = ttl
            self.reset_at[k] = now

    def mark_complete(self, now: float) -> None:
        """The second leg got its ports: from now on the established TTL counts."""
        self.complete = True
        self.ttl = [self.established_ttl, self.established_ttl]
        self.reset_at = [now, now]

    # --- prompt playback (P/S) ---------------------------------------------

    def start_playback(self, index: int, player: "Player", now: float) -> None:
        """Play ``player`` to the party of RTP stream ``index``; media relayed
        to that party is dropped until the prompt ends."""
        self.stop_playback(index)
        if self.players is None:
            self.players = {}
        self.players[index] = player
        self.rtp[index].set_muted(True)

    def stop_playback(self, index: int) -> bool:
        """End the prompt playing to stream ``index``, if any; relaying resumes."""
        player = self.players.pop(index, None) if self.players else None
        if player is None:
            return False
        player.finish()
        self.nplrs_destroyed += 1
        self.totals.nplrs_destroyed += 1
        self.rtp[index].set_muted(False)
        if not self.players:
            self.players = None
        return True

    def playback_due(self, now: float) -> List[Tuple[Stream, bytes]]:
        """The played packets due at ``now`` as [(stream to send from, packet)]."""
        out: List[Tuple[Stream, bytes]] = []
        for index in list(self.players or ()):
            self._play(index, now, out)
        return out

    def _play(self, index: int, now: float, out: List[Tuple[Stream, bytes]]) -> None:
        """The packets of the prompt playing to RTP stream ``index`` that are
        due at ``now``, appended to ``out``. A player starts once its party's
        address is known and the stream has a port; a player whose prompt is
        over is removed."""
        players = self.players
        if players is None:
            return
        player = players[index]
        stream = self.rtp[index]
        if player.started_at is None:
            if stream.rem_addr is None or stream.port is None:
                return
            player.start(now)
        count = 0
        for packet in player.poll(now):
            out.append((stream, packet))
            count += 1
        if player.finished:
            self.stop_playback(index)
        self.npkts_played += count
        self.totals.npkts_played += count

    def next_playback_at(self, now: float) -> float:
        """When playback next needs attention (FOREVER when nothing is due)."""
        wake = FOREVER
        for player in (self.players or {}).values():
            wake = min(wake, player.next_deadline(now))
        return wake

    # --- accounting ---------------------------------------------------------

    def duration(self, now: float) -> float:
        return now - self.created_at

    def summary(self) -> List[str]:
        """The end-of-session log lines (INFO), one per stream: what the party
        sent (RTP analysis: by sequence numbers) and what the relay did with it."""
        lines = []
        for stream in self.rtp + self.rtcp:
            counts = []
            if stream.analysis_on:
                analyzer = stream.started_analyzer
                sent, received, _ = (analyzer.sequence_totals() if analyzer is not None
                                     else (0, 0, 0))
                counts += ["sent %d" % sent, "received %d" % stream.npkts_in,
                           "lost %d" % max(0, sent - received)]
            else:
                counts.append("received %d" % stream.npkts_in)
            counts += ["relayed %d" % stream.nrelayed, "dropped %d" % stream.ndropped]
            lines.append("session %s, tag %s: %s %s from %s: %s" % (
                self.call_id, self.from_tag, stream._who(), stream._kind(),
                _format_addr(stream.rem_addr), ", ".join(counts)))
        return lines


class SessionTable:
    """Sessions by Call-ID, with upstream's tag matching (control-protocol 5.1)."""

    def __init__(self) -> None:
        self.by_call_id: Dict[str, List[Session]] = {}
        self.count = 0
        self.totals = RunningTotals()

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Session]:
        for sessions in list(self.by_call_id.values()):
            yield from list(sessions)

    def add(self, session: Session) -> None:
        session.totals = totals = self.totals
        for stream in session.rtp + session.rtcp:
            stream.totals = totals
        self.by_call_id.setdefault(session.call_id, []).append(session)
        self.count += 1

    def remove(self, session: Session) -> None:
        sessions = self.by_call_id.get(session.call_id)
        if sessions and session in sessions:
            sessions.remove(session)
            self.count -= 1
            if not sessions:
                del self.by_call_id[session.call_id]

    def find(self, call_id: str, from_tag: str,
             to_tag: Optional[str] = None) -> Tuple[Optional[Session], Optional[int]]:
        """(session, direction) for U/L/Q/P/S/C, or (None, None)."""
        sessions = self.by_call_id.get(call_id)
        if not sessions:
            return None, None
        for session in sessions:
            if session.from_tag == from_tag:
                return session, 0
        if to_tag is not None:
            suffix = _media_suffix(from_tag)
            for session in sessions:
                stored = session.from_tag
                if stored == to_tag:
                    return session, 1
                if suffix is not None and stored == to_tag + suffix:
                    return session, 1
        return None, None

    def find_for_delete(self, call_id: str, from_tag: str, to_tag: Optional[str] = None,
                        every: bool = False) -> List[Tuple[Session, int]]:
        """[(session, leg)] matched with D/R/N's prefix-aware rule (5.8): every
        session of the Call-ID whose from-tag is FROMTAG[;N] (leg 1, the
        caller's packets) or else TOTAG[;N] (leg 0). D stops at an exact match;
        R and N (``every``, recording-formats.md 2) take every match."""
        matches = []
        for session in list(self.by_call_id.get(call_id, ())):
            stored = session.from_tag
            exact = None
            if stored == from_tag or stored.startswith(from_tag + ";"):
                leg, exact = 1, stored == from_tag
            elif to_tag is not None and (stored == to_tag or stored.startswith(to_tag + ";")):
                leg, exact = 0, stored == to_tag
            else:
                continue
            matches.append((session, leg))
            if exact and not every:
                break
        return matches


DROP = DROPPED      # PacketFilter.receive: counted as received and dropped
PROMPT_PLAYING = Muted()    # the feature of a stream a prompt plays to (set_muted)
MUX = Mux()                 # the feature of a stream with module mux/demux (set_mux)


def _by_precedence(feature: Feature) -> int:
    return feature.precedence


def _by_order(packet_filter: PacketFilter) -> int:
    return packet_filter.order


UNCOUNTED = RunningTotals()   # a session's until it joins a table (nothing reads it)


def count_bytes(stream: Stream, data: bytes, source: Address, now: float) -> None:
    """A tap (with --metrics): bytes of the packets the stream accepts."""
    stream.nbytes_in += len(data)


# --kernel_offload credits the bytes it relays (offload.py; feature.Tap reads the mark)
setattr(count_bytes, "kernel_counts", True)


class _RefusalBudget:
    """REFUSAL_LINES_PER_SECOND over all streams (one process)."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self.second = NEVER
        self.left = 0

    def take(self, now: float) -> bool:
        if now - self.second >= 1.0 or now < self.second:     # (or another clock: tests)
            self.second, self.left = now, self.per_second
        if self.left <= 0:
            return False
        self.left -= 1
        return True


_REFUSAL_BUDGET = _RefusalBudget(REFUSAL_LINES_PER_SECOND)


def _format_addr(address: Optional[Address]) -> str:
    if address is None:
        return "(none)"
    host = address[0]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, address[1])


def _media_suffix(tag: str) -> Optional[str]:
    """``;N`` at the end of a tag (text after the last ';'), or None."""
    pos = tag.rfind(";")
    return tag[pos:] if pos >= 0 else None
