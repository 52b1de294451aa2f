"""Per-packet features of a stream, behind one interface.

Everything that looks at a stream's packets (RTP analysis, re-packetizing,
a prompt playing, recording and copying taps, module taps and packet
filters) is a ``Feature``, and a stream keeps one set of them
(``session.Stream.features``). A feature answers three questions:

* ``on_packet(stream, data, source, now)``: what to do with a packet the
  stream accepted: PASS (falsy; relay it unless another feature objects),
  DROP (counted as received and dropped; a tap's old ``True``), or CONSUMED
  (the feature took it: received, neither relayed nor dropped);
* ``next_deadline(now)``: when it next needs the session's timer (FOREVER:
  not until something changes);
* ``user_space_reason(tier)``: why the stream must stay in this program for
  a tier that relays without it (KERNEL: --kernel_offload; FASTPATH: the
  compiled forwarder, which also does RTP analysis and counts bytes), or
  None when the stream may leave.

The packet path stays as cheap as before: the stream does not call each
feature per packet but precomputes, when its features change, the tuple of
per-packet callables (``packet_hook()``; None for a feature whose packet
work happens elsewhere: the resizer is fed by the relay's reader, a filter by
relay.deliver) and the analyzer's run, which it inlines.

No sockets, no clock: ``now`` is passed in.
"""

from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Union

if TYPE_CHECKING:
    from .analyzer import FastRun, RtpAnalyzer

FOREVER = float("inf")

# What a feature does with a packet (on_packet)
PASS = 0            # falsy: go on
DROP = 1            # == True, what a plain tap returns to drop a packet
CONSUMED = 2        # taken by the feature: not relayed, not counted as dropped

# Tiers that relay a stream's packets outside this program
KERNEL = "kernel"           # --kernel_offload (nftables)
FASTPATH = "fastpath"       # the compiled forwarder (fastpath.py)

# The order in which a stream names the reason it stays in user space (the
# first that applies); vetoes come last and are named together.
PRECEDENCE_PROMPT = 10
PRECEDENCE_ANALYSIS = 20
PRECEDENCE_TAP = 30
PRECEDENCE_RESIZER = 40
PRECEDENCE_VETO = 90

# tap(stream, data, source, now) -> a verdict (falsy: pass)
PacketHook = Callable[[Any, bytes, Any, float], Any]


class Feature:
    """One per-packet feature of a stream. Subclasses override what applies."""

    __slots__ = ()

    # why it keeps its stream in user space (user_space_reason's default)
    reason: str = "per-packet feature"
    precedence: int = PRECEDENCE_VETO
    # the RtpAnalyzer a feature feeds: the stream inlines its fast case
    analysis: Optional["RtpAnalyzer"] = None
    # a module packet filter (receive/send run by relay.deliver)
    is_filter: bool = False

    def on_packet(self, stream: Any, data: bytes, source: Any, now: float) -> Any:
        """What to do with an accepted packet: PASS, DROP or CONSUMED."""
        return PASS

    def packet_hook(self) -> Optional[PacketHook]:
        """The callable the stream runs per accepted packet (None: nothing per
        packet on the stream's path). Asked when the features change."""
        if type(self).on_packet is Feature.on_packet:
            return None
        return self.on_packet

    def next_deadline(self, now: float) -> float:
        """When this feature next needs the session's timer."""
        return FOREVER

    def user_space_reason(self, tier: str) -> Optional[str]:
        """Why the stream must stay in this program for ``tier`` (None: it may leave)."""
        return self.reason


class Tap(Feature):
    """A plain callable ``tap(stream, data, source, now)`` (recording, copying,
    modules' taps): a true result drops the packet. A callable marked
    ``kernel_counts`` (--metrics' byte count) lets the stream leave: both
    tiers count bytes themselves."""

    __slots__ = ("tap", "reason")
    precedence = PRECEDENCE_TAP

    def __init__(self, tap: PacketHook, reason: str = "recording or copying") -> None:
        self.tap = tap
        self.reason = reason

    def packet_hook(self) -> Optional[PacketHook]:
        return self.tap

    def on_packet(self, stream: Any, data: bytes, source: Any, now: float) -> Any:
        return self.tap(stream, data, source, now)

    def user_space_reason(self, tier: str) -> Optional[str]:
        if getattr(self.tap, "kernel_counts", False):
            return None
        return self.reason


class Analysis(Feature):
    """RTP analysis (the ``rtpa_*`` counters) on one stream: the stream feeds
    ``analyzer`` itself (its run inlined on the latched path). The compiled
    fast path analyzes too; the kernel cannot."""

    __slots__ = ("analysis",)
    reason = "RTP analysis"
    precedence = PRECEDENCE_ANALYSIS

    def __init__(self, analyzer: "RtpAnalyzer") -> None:
        self.analysis = analyzer

    @property
    def run(self) -> "FastRun":
        assert self.analysis is not None
        return self.analysis.run

    def on_packet(self, stream: Any, data: bytes, source: Any, now: float) -> Any:
        assert self.analysis is not None
        self.analysis.feed(data, now)
        return PASS

    def packet_hook(self) -> Optional[PacketHook]:
        return None             # specialised: the stream inlines the analyzer's run

    def user_space_reason(self, tier: str) -> Optional[str]:
        return None if tier == FASTPATH else self.reason


class Muted(Feature):
    """A prompt plays to the stream's party: relayed media to it is dropped
    (by its target, not per packet), and the kernel cannot be told to."""

    __slots__ = ()
    reason = "prompt playing"
    precedence = PRECEDENCE_PROMPT

    def user_space_reason(self, tier: str) -> Optional[str]:
        return None if tier == FASTPATH else self.reason


class Veto(Feature):
    """A reason without a feature object to keep the stream in user space
    (Stream.veto_offload / allow_offload)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Mux(Feature):
    """Module demultiplexing and muxing (Stream.set_mux): relay.deliver reads
    the stream's ``demux``/``egress``."""

    __slots__ = ()
    reason = "module filter"


DROPPED = False     # PacketFilter.receive: counted as received and dropped


class PacketFilter(Feature):
    """A module's transform of one stream's packets (dtls_gw, ice_lite).

    ``receive`` sees every datagram arriving on the stream before anything is
    counted: it returns the bytes to relay (the same or transformed), None
    when it consumed the packet itself (a STUN check, a DTLS record: not
    counted at all), or DROP (session.DROP, False here: counted as received
    and dropped). ``send`` sees every packet about to leave the stream's
    socket: the bytes to send, or None to drop it (counted against the
    stream that received it). A stream with filters never leaves user space.
    """

    order = 50      # filters run in ascending order on receive
    reason = "module filter"
    is_filter = True

    def receive(self, stream: Any, data: bytes, source: Any, now: float) -> Union[bytes, None, bool]:
        return data

    def send(self, stream: Any, data: bytes, now: float) -> Optional[bytes]:
        return data


def features_reason(features: Tuple[Feature, ...], tier: str, resizing: bool = False) -> Optional[str]:
    """The reason the first feature (by precedence) keeps its stream in user
    space for ``tier``; vetoes are named together, sorted. ``resizing``: a
    re-packetizing was signalled (``z``) before the resizer exists."""
    best: Optional[Tuple[int, str]] = (PRECEDENCE_RESIZER, "re-packetizing") if resizing else None
    vetoes = set()
    for feature in features:
        reason = feature.user_space_reason(tier)
        if reason is None:
            continue
        if feature.precedence >= PRECEDENCE_VETO:
            vetoes.add(reason)
        elif best is None or feature.precedence < best[0]:
            best = (feature.precedence, reason)
    if best is not None:
        return best[1]
    if vetoes:
        return ", ".join(sorted(vetoes))
    return None
