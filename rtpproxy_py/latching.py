"""Latching rules: where a stream's packets may come from, as strategies.

A session picks its rules (``Session.latching``): UPSTREAM, the rules of
media-relay.md section 3 with the guards of README "Latching modes" (a
datagram that is not RTP/RTCP never moves a stream, RTCP learned from a
packet stays with that source, and a party that sends from exactly the
address it signalled is preferred), or STRICT (``--latching strict`` or the
``k`` modifier of U/L, against RTP Bleed: learn only from the signalled
host, only well-formed RTP/RTCP, only within ``--latch_window`` of the
latest U/L, and once latched move only to a source that continues the
latched SSRC).

The strategies hold no state of their own: each stream has a ``LatchState``
(``Stream.latch``) they read and write. Two things stay on the stream, as
the packet path reads them for every packet: ``rem_addr`` (where the party
is) and ``recheck_at`` (until when a packet from ``rem_addr`` skips every
rule); ``source == rem_addr and now < recheck_at`` never reaches this module.

Log lines of address events and refusals are the stream's (rate-limited
there); the strategies give their text.
"""

import logging
from typing import Any, Optional, Protocol, Tuple

from .media import rtcp, rtp
from .media.feature import FOREVER

log = logging.getLogger("rtpproxy")

NEVER = float("-inf")

# A signalled address is open to a new media source for this long after a
# U/L changed it (media-relay.md 3.2: "within 10 s after the last U/L update").
RELATCH_WINDOW = 10.0
# How far the sequence number of a packet from a new source may be from the
# latched one and still be taken as the same sender (media-relay.md 3.2).
RELATCH_MAX_SEQ_DISTANCE = 536
# The latched sequence number is refreshed at most this often.
SEQ_RESYNC_INTERVAL = 1.0
# Default mode: a party that sent from exactly its signalled address keeps its
# stream against strangers until it has been silent this long (a new device
# behind the address then latches as upstream; its own NAT rebinding, the same
# SSRC continuing from a new port, is followed as soon as the old port is silent).
PREFER_LAPSE = 10.0

Address = Tuple[Any, ...]


class LatchingSession(Protocol):
    """What the rules read of a stream's session (session.Session)."""

    @property
    def latch_until(self) -> float:
        """Strict mode: new sources may be learned until then."""


class LatchedStream(Protocol):
    """What the rules read and write of a stream: session.Stream, which
    passes itself. A protocol, not an import of session.py (session imports
    this module, and tests/test_imports.py counts TYPE_CHECKING imports as
    module level); mypy checks session.Stream against it wherever it is
    passed to the rules."""

    is_rtp: bool
    latch: "LatchState"
    rem_addr: Optional[Address]
    recheck_at: float
    on_hold: bool
    hold_count: int
    npkts_in: int
    nignored: int
    last_rx: Optional[float]

    @property
    def twin(self) -> "LatchedStream":
        """The party's stream of the other kind (RTP <-> RTCP)."""

    @property
    def session(self) -> LatchingSession: ...

    def _address_changed(self) -> None: ...

    def refresh_target(self) -> None: ...

    def _log_latch(self, now: float) -> None: ...

    def _log_event(self, now: float, message: str, *args: Any) -> None: ...

    def _ssrc_text(self) -> str: ...


class LatchState:
    """What one stream's latching rules remember."""

    __slots__ = (
        # latched: the source is locked (no longer re-learned freely);
        # untrusted: rem_addr came from a packet, not from signalling;
        # asymmetric: the signalled host, any port (U/L a), never re-learned
        "latched", "untrusted", "asymmetric",
        # the address before the latest U/L moved a latched stream; the
        # address the latest U/L gave; when a U/L last changed a known one
        "prev_addr", "signalled", "last_update",
        # default mode: the party sent from exactly ``signalled`` (preferred), and
        # when it was last known to send (accepted-packet count, time), and
        # (source, accepted count) of the last same-SSRC stranger
        "confirmed", "pref_count", "pref_seen", "pref_candidate",
        # the latched sender (RTP: SSRC and sequence number; strict RTCP: SSRC)
        "ssrc", "seq",
    )

    def __init__(self) -> None:
        self.latched = False
        self.untrusted = False
        self.asymmetric = False
        self.prev_addr: Optional[Address] = None
        self.signalled: Optional[Address] = None
        self.last_update = NEVER
        self.confirmed = False
        self.pref_count = 0
        self.pref_seen = NEVER
        self.pref_candidate: Optional[Tuple[Address, int]] = None
        self.ssrc: Optional[int] = None
        self.seq = 0


def _kind(s: LatchedStream) -> str:
    return "RTP" if s.is_rtp else "RTCP"


def _format_addr(address: Optional[Address]) -> str:
    if address is None:
        return "(none)"
    host = address[0]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, address[1])


def _host(address: Optional[Address]) -> str:
    return "(none)" if address is None else str(address[0])


def _parses(s: LatchedStream, data: bytes) -> bool:
    """``data`` is RTP (RTP stream) or RTCP (RTCP stream) that may teach an address."""
    if s.is_rtp:
        return rtp.parse(data) is not None
    return rtcp.sender_ssrc(data) is not None


def _close_seq(seq: int, latched: int) -> bool:
    distance = (seq - latched) & 0xFFFF
    return min(distance, 0x10000 - distance) <= RELATCH_MAX_SEQ_DISTANCE


class LatchingRules:
    """What both modes share: signalling, the periodic re-check of the
    latched source, learning an address."""

    name = "rules"
    # why a stream under these rules cannot leave user space (None: it may)
    hold_reason: Optional[str] = None

    def new_state(self) -> LatchState:
        return LatchState()

    def user_space_reason(self, tier: str) -> Optional[str]:
        return self.hold_reason

    # --- the slow path ----------------------------------------------------------

    def check_source(self, s: LatchedStream, data: bytes, source: Address, now: float) -> bool:
        """Accept (True) or refuse a packet from ``source``: a packet from a new
        address, or from ``rem_addr`` once ``recheck_at`` has come."""
        raise NotImplementedError

    def refusal_reason(self, s: LatchedStream, data: bytes, source: Address) -> str:
        """The text of a refused source's log line."""
        raise NotImplementedError

    def recheck(self, s: LatchedStream, data: bytes, now: float) -> None:
        """A packet from the latched source after ``recheck_at``: refresh the
        latched sequence number (or latch, if not yet)."""
        if s.latch.latched:
            self._resync(s, data, now)
        else:
            self._try_latch(s, data, now)
            if s.latch.latched and log.isEnabledFor(logging.INFO):
                s._log_latch(now)

    # --- signalling -------------------------------------------------------------

    def signal_address(self, s: LatchedStream, address: Optional[Address], asymmetric: bool,
                       now: float) -> None:
        """Apply the address a U/L carried (None: the null host, i.e. hold)."""
        st = s.latch
        if address is None:
            s.on_hold = True
            s.hold_count += 1
            return
        s.on_hold = False
        if s.rem_addr is not None:
            st.last_update = now
        if address != st.signalled:
            self._moved_by_signalling(st)
            st.confirmed = False
        st.signalled = address
        if not st.untrusted and address != s.rem_addr:
            if st.latched:
                st.prev_addr = s.rem_addr
            s.rem_addr = address
            s._address_changed()
        st.asymmetric = asymmetric
        if asymmetric:
            st.latched = True
        s.recheck_at = NEVER

    def _moved_by_signalling(self, st: LatchState) -> None:
        """The proxy gave the party another address."""

    def pin(self, s: LatchedStream, address: Address) -> None:
        """A module chose the party's address (ICE nomination): latched there,
        and later U/L addresses do not move it."""
        st = s.latch
        s.rem_addr = address
        st.latched = True
        st.untrusted = True
        st.asymmetric = False
        s.recheck_at = FOREVER
        s.refresh_target()

    # --- shared steps -----------------------------------------------------------

    def _learn(self, s: LatchedStream, source: Address) -> None:
        s.rem_addr = source
        st = s.latch
        st.untrusted = True
        st.confirmed = False
        s._address_changed()

    def _try_latch(self, s: LatchedStream, data: bytes, now: float) -> None:
        st = s.latch
        if not s.is_rtp:
            # RTCP learned from a packet stays with it (media-relay.md 3.2): no
            # SSRC re-latch exists for RTCP, so it is locked at once.
            if rtcp.sender_ssrc(data) is None:
                st.latched = False
                s.recheck_at = NEVER
                return
            st.latched = True
            s.recheck_at = FOREVER
            return
        if now - st.last_update < RELATCH_WINDOW:
            return
        header = rtp.parse(data)
        if header is None:
            st.latched = False
            s.recheck_at = NEVER
            return
        st.latched = True
        st.ssrc, st.seq = header.ssrc, header.seq
        s.recheck_at = now + SEQ_RESYNC_INTERVAL

    def _resync(self, s: LatchedStream, data: bytes, now: float) -> None:
        """Latched and the source matches: refresh the sequence number."""
        st = s.latch
        if st.ssrc is None:
            s.recheck_at = FOREVER
            return
        pair = rtp.ssrc_and_seq(data)
        if pair is not None:
            if pair[0] == st.ssrc:
                st.seq = pair[1]
            else:
                self._try_latch(s, data, now)
                if st.ssrc == pair[0] and log.isEnabledFor(logging.INFO):
                    s._log_latch(now)        # the party's SSRC changed
        s.recheck_at = now + SEQ_RESYNC_INTERVAL


class UpstreamLatching(LatchingRules):
    """The default: upstream's rules (media-relay.md 3.2/3.3) with the
    guards of README "Latching modes"."""

    name = "upstream"

    def check_source(self, s: LatchedStream, data: bytes, source: Address, now: float) -> bool:
        st = s.latch
        current = s.rem_addr
        if current is None:
            if not _parses(s, data):
                return False         # a datagram that is not RTP/RTCP never sets an address
            self._fill(s, data, source, now)
            return True
        if st.asymmetric:
            if source[0] != current[0]:
                return False
            if source == current:
                s.recheck_at = FOREVER
            return True
        if source == current:
            self.recheck(s, data, now)
            if source == st.signalled:
                self._confirm(s, data, now)
            return True
        if not _parses(s, data):
            return False             # nor moves one
        if source == st.signalled:
            # The party sends from exactly the address it signalled: it takes
            # its stream back from whoever held it (beyond upstream).
            was = current if st.untrusted else None     # None: first learned address
            self._try_latch(s, data, now)
            if s.is_rtp:
                header = rtp.parse(data)                # the party's SSRC, not the stranger's
                st.ssrc, st.seq = header.ssrc, header.seq
            self._learn(s, source)
            self._confirm(s, data, now)
            self._moved(s, was, "the party sends from its signalled address", now)
            return True
        if st.confirmed:
            if self._continues_ssrc(s, data):
                # The party's own SSRC from a new address: NAT rebinding once
                # nothing came from the signalled address between two of its
                # packets; a second sender of the same SSRC is never followed.
                accepted = s.npkts_in - 1 - s.nignored
                if st.pref_candidate == (source, accepted):
                    was = current
                    self._learn(s, source)
                    self._moved(s, was, "same SSRC, sequence continues, the signalled address "
                                "fell silent", now)
                    return True
                st.pref_candidate = (source, accepted)
            if self._preferred_sending(s, now):
                return False
        if not st.latched:
            twin = s.twin.latch
            if (not s.is_rtp and twin.confirmed and twin.signalled is not None
                    and source[0] != twin.signalled[0]):
                # RTCP not yet heard while the party's RTP comes from exactly
                # its signalled address: its RTCP comes from that host too.
                return False
            was = current if st.untrusted else None
            self._try_latch(s, data, now)
            self._learn(s, source)
            self._moved(s, was, "not latched (within %d s of a U/L update)" % RELATCH_WINDOW, now)
            return True
        if self._relatch_allowed(s, data, now):
            was = current
            within = now - st.last_update < RELATCH_WINDOW
            self._learn(s, source)
            self._moved(s, was, "within %d s of a U/L update" % RELATCH_WINDOW if within
                        else "same SSRC, sequence continues", now)
            return True
        return False

    def refusal_reason(self, s: LatchedStream, data: bytes, source: Address) -> str:
        st = s.latch
        current = s.rem_addr
        # (refused: so an address is known, rem_addr or the twin's signalled one)
        if st.asymmetric:
            return "asymmetric: not the signalled host %s" % _host(current)
        if not _parses(s, data):
            return "not %s" % _kind(s)
        if st.confirmed:
            return "the party sends from its signalled address %s" % _format_addr(current)
        if not s.is_rtp and not st.latched:
            return "the party's RTP comes from %s" % _host(s.twin.latch.signalled)
        return "latched to %s%s" % (_format_addr(current), s._ssrc_text())

    def _fill(self, s: LatchedStream, data: bytes, source: Address, now: float) -> None:
        st = s.latch
        st.latched = source != st.prev_addr
        st.ssrc = None
        if st.latched and s.is_rtp:
            header = rtp.parse(data)
            if header is not None:
                st.ssrc, st.seq = header.ssrc, header.seq
        self._learn(s, source)
        twin = s.twin
        if s.is_rtp and (twin.rem_addr is None or twin.rem_addr[0] != source[0]):
            twin.rem_addr = (source[0], source[1] + 1) + tuple(source[2:])
            tw = twin.latch
            tw.untrusted = True
            tw.latched = tw.confirmed = False
            twin._address_changed()
        s.recheck_at = now + SEQ_RESYNC_INTERVAL if st.ssrc is not None else FOREVER
        if log.isEnabledFor(logging.INFO):
            s._log_latch(now)

    def _moved(self, s: LatchedStream, was: Optional[Address], reason: str, now: float) -> None:
        """A packet moved the stream: log it; an RTP stream that moved to
        another host takes its RTCP twin's lock off (the guess of ``_fill``),
        as the party's RTCP now comes from there."""
        source = s.rem_addr
        assert source is not None
        if s.is_rtp:
            twin = s.twin
            guess = (source[0], source[1] + 1) + tuple(source[2:])
            if twin.rem_addr is None or twin.rem_addr[0] != source[0]:
                twin.rem_addr = guess
                tw = twin.latch
                tw.untrusted = True
                tw.latched = tw.confirmed = False
                twin._address_changed()
        if log.isEnabledFor(logging.INFO):
            if was is None:
                s._log_latch(now)
            else:
                s._log_event(now, "'s address re-latched: %s -> %s (%s), reason: %s%s",
                             _format_addr(was), _format_addr(source), _kind(s), reason,
                             s._ssrc_text())

    def _continues_ssrc(self, s: LatchedStream, data: bytes) -> bool:
        """RTP with the latched SSRC and a sequence number close to the latched one."""
        st = s.latch
        if not s.is_rtp or st.ssrc is None:
            return False
        header = rtp.parse(data)
        if header is None or header.ssrc != st.ssrc:
            return False
        return _close_seq(header.seq, st.seq)

    def _confirm(self, s: LatchedStream, data: bytes, now: float) -> None:
        """A packet from exactly the signalled address (which is ``rem_addr``):
        the party is preferred from now on, while it keeps sending."""
        st = s.latch
        if not st.confirmed:
            if not _parses(s, data):
                return
            st.confirmed = True
            st.pref_count = s.npkts_in - s.nignored    # then moved by strangers only
        st.pref_seen = now

    def _preferred_sending(self, s: LatchedStream, now: float) -> bool:
        """Has the preferred party sent within PREFER_LAPSE? Read from the
        counters (packets accepted since the last look) so that nothing is
        added to the fast path; ``last_rx`` is still the previous packet's
        time here, an upper bound of the party's last packet."""
        st = s.latch
        accepted = s.npkts_in - 1 - s.nignored     # this packet is not accepted (yet)
        if accepted != st.pref_count:
            st.pref_count = accepted
            if s.last_rx is not None and s.last_rx > st.pref_seen:
                st.pref_seen = s.last_rx
        return now - st.pref_seen < PREFER_LAPSE

    def _relatch_allowed(self, s: LatchedStream, data: bytes, now: float) -> bool:
        st = s.latch
        if not s.is_rtp or st.ssrc is None:
            return False
        header = rtp.parse(data)
        if header is None:
            return False
        if now - st.last_update >= RELATCH_WINDOW:
            if header.ssrc != st.ssrc or not _close_seq(header.seq, st.seq):
                return False
        st.ssrc, st.seq = header.ssrc, header.seq
        s.recheck_at = now + SEQ_RESYNC_INTERVAL
        return True


class StrictLatching(LatchingRules):
    """Strict learning against RTP Bleed (README "Latching modes")."""

    name = "strict"
    # Its checks are on the slow path, but it follows the latched SSRC from
    # every packet, which neither the kernel nor the fast path can.
    hold_reason = "strict latching"

    def check_source(self, s: LatchedStream, data: bytes, source: Address, now: float) -> bool:
        st = s.latch
        current = s.rem_addr
        if current is None:
            return False             # nothing signalled: nobody to learn from
        if source == current:
            if st.latched:
                self._resync(s, data, now)
            elif self._latch(s, data, now) and log.isEnabledFor(logging.INFO):
                s._log_latch(now)
            return True
        if st.asymmetric:            # as upstream: the signalled host, any port
            return bool(source[0] == current[0])
        if self._continues(s, data, now):
            self._learn(s, source)
            if log.isEnabledFor(logging.INFO):
                s._log_event(now, "'s address re-latched: %s -> %s (%s), reason: %s%s",
                             _format_addr(current), _format_addr(source), _kind(s),
                             "same SSRC, sequence continues", s._ssrc_text())
            return True
        if st.latched:
            return False
        signalled = st.signalled
        if (now < s.session.latch_until and signalled is not None
                and source[0] == signalled[0] and self._latch(s, data, now)):
            self._learn(s, source)
            if log.isEnabledFor(logging.INFO):
                s._log_latch(now)
            return True
        return False

    def refusal_reason(self, s: LatchedStream, data: bytes, source: Address) -> str:
        st = s.latch
        signalled = st.signalled
        if signalled is None or source[0] != signalled[0]:
            return "strict latching: not the signalled host %s" % (
                "(none signalled)" if signalled is None else signalled[0])
        if st.latched:
            return "strict latching: latched to %s%s" % (_format_addr(s.rem_addr), s._ssrc_text())
        return "strict latching: not well-formed %s, or after the latch window" % _kind(s)

    def _moved_by_signalling(self, st: LatchState) -> None:
        # The proxy moved this party (a transfer, a re-INVITE to another
        # device): what the packets taught no longer counts.
        st.untrusted = st.latched = False
        st.ssrc = None

    def _latch(self, s: LatchedStream, data: bytes, now: float) -> bool:
        """Latch on ``data`` if it is well-formed for this stream; False if not."""
        st = s.latch
        if s.is_rtp:
            header = rtp.well_formed(data)
            if header is None:
                s.recheck_at = NEVER
                return False
            st.ssrc, st.seq = header.ssrc, header.seq
            s.recheck_at = now + SEQ_RESYNC_INTERVAL
        else:
            ssrc = rtcp.sender_ssrc(data)
            if ssrc is None:
                s.recheck_at = NEVER
                return False
            st.ssrc = ssrc
            s.recheck_at = FOREVER
        st.latched = True
        return True

    def _continues(self, s: LatchedStream, data: bytes, now: float) -> bool:
        """The packet comes from the sender already latched (NAT rebinding):
        RTP with the latched SSRC and a close sequence number, or RTCP sent by
        the SSRC latched on the party's RTP stream."""
        st = s.latch
        if not s.is_rtp:
            twin = s.twin.latch
            ssrc = twin.ssrc
            if ssrc is None or not twin.latched or rtcp.sender_ssrc(data) != ssrc:
                return False
            st.ssrc, st.latched, s.recheck_at = ssrc, True, FOREVER
            return True
        if not st.latched or st.ssrc is None:
            return False
        header = rtp.well_formed(data)
        if header is None or header.ssrc != st.ssrc or not _close_seq(header.seq, st.seq):
            return False
        st.seq = header.seq
        s.recheck_at = now + SEQ_RESYNC_INTERVAL
        return True


UPSTREAM = UpstreamLatching()
STRICT = StrictLatching()


def rules(strict: bool) -> LatchingRules:
    """The rules a session uses: strict or the default."""
    return STRICT if strict else UPSTREAM
