"""Sessions and their streams, without sockets: latching, idle time, counters.

A session joins two parties. Stream 0 faces the callee (its port goes into
the offer the callee receives), stream 1 faces the caller. Each party has an
RTP stream and an RTCP stream; a packet received on stream k is sent out of
stream 1-k to stream 1-k's remote address.

``Stream.on_packet(data, source, now)`` is the whole per-packet decision: it
returns the address to send the packet to, or None to drop it. The relay owns
the sockets and does the sending. An accepted RTP packet is first fed to the
stream's analyzer (the ``rtpa_*`` counters), when analysis is on; a stream
with a resizer (``z``) has its packets handed to it by the relay instead of
sent. Time is always passed in (``now`` in
seconds of a monotonic clock), so these objects can be driven by tests.

Two learning modes (README "Latching modes"): the upstream rules of
media-relay.md section 3 by default, and strict learning (``--latching
strict`` or the ``k`` modifier of U/L) against RTP Bleed: a stream learns a
source only from the host its U/L named, only from well-formed RTP/RTCP,
only within ``--latch_window`` seconds of the session's latest U/L, and once
latched moves only to a source that continues the latched SSRC. Everything
else is dropped. Both live in the slow path (``_check_source``); packets
from the latched source never reach it.
"""

from .media import rtcp, rtp
from .media.analyzer import header_int

_RTP_HEADER = slice(12)     # data[:12] would build this slice object per packet

# A signalled address is open to a new media source for this long after a
# U/L changed it (media-relay.md 3.2: "within 10 s after the last U/L update").
RELATCH_WINDOW = 10.0
# How far the sequence number of a packet from a new source may be from the
# latched one and still be taken as the same sender (media-relay.md 3.2).
RELATCH_MAX_SEQ_DISTANCE = 536
# The latched sequence number is refreshed at most this often.
SEQ_RESYNC_INTERVAL = 1.0

class RunningTotals:
    """The packet counters of G and I as running totals over every stream of
    one session table (SessionTable.add hands it to each stream), so G and I
    cost the same at any session count. Relayed = received - dropped."""

    __slots__ = ("npkts_rcvd", "npkts_dropped", "npkts_discard", "npkts_played", "nplrs_destroyed")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)


NEVER = float("-inf")
FOREVER = float("inf")
# A prompt waiting for its party's address checks this often whether it is known.
ADDRESS_POLL = 0.01


class Stream:
    """One direction's socket side: RTP or RTCP of one party."""

    __slots__ = (
        "session", "index", "is_rtp", "peer", "twin",
        # where packets go and come from
        "rem_addr", "target", "latched", "untrusted", "asymmetric", "prev_addr", "signalled",
        "last_update", "on_hold", "hold_count", "recheck_at", "muted",
        # latching state (RTP)
        "ssrc", "seq",
        # local side, set by the relay
        "port", "local", "handle",
        # per-packet features (None when off); reasons to keep it out of the kernel
        "taps", "analyzer", "analysis_run", "resizer", "offload_vetoes",
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

    def __init__(self, session, index, is_rtp):
        self.session = session
        self.index = index
        self.is_rtp = is_rtp
        self.peer = None
        self.twin = None
        self.rem_addr = None
        self.target = None
        self.latched = False
        self.untrusted = False
        self.asymmetric = False
        self.prev_addr = None
        self.signalled = None        # the address the latest U/L gave (strict mode)
        self.last_update = NEVER
        self.on_hold = False
        self.hold_count = 0
        self.recheck_at = NEVER
        self.muted = False
        self.ssrc = None
        self.seq = 0
        self.port = None
        self.local = None
        self.handle = None
        self.taps = None
        self.analyzer = None        # media.analyzer.RtpAnalyzer (RTP streams, analysis on)
        self.analysis_run = None    # its fast path's state (set_analyzer)
        self.resizer = None         # media.resizer.Resizer (z modifier); the relay feeds it
        self.offload_vetoes = None
        self.filters = None
        self.demux = None
        self.egress = None
        self.codecs = None
        self.resize_ptime = None
        self.prompt_ptime = None
        self.tos = None
        self.totals = session.totals
        self.npkts_in = 0
        self.nrelayed = 0
        self.ndropped = 0
        self.nignored = 0
        self.last_rx = None
        self.nbytes_in = 0
        self.nbytes_ignored = 0
        self.nbytes_unsent = 0

    # --- the packet path ------------------------------------------------

    def on_packet(self, data, source, now):
        """Account a packet received from ``source``; return where to send it."""
        self.npkts_in += 1
        self.totals.npkts_rcvd += 1
        self.last_rx = now
        if source != self.rem_addr or now >= self.recheck_at:
            if not self._check_source(data, source, now):
                self.ndropped += 1
                self.nignored += 1
                self.totals.npkts_dropped += 1
                self.totals.npkts_discard += 1
                self.nbytes_ignored += len(data)
                return None
        analyzer = self.analyzer
        if analyzer is not None:
            analyzer.feed(data, now)
        if self.taps is not None:
            for tap in self.taps:
                if tap(self, data, source, now):
                    return self._tap_dropped(data)
        target = self.peer.target
        if target is None:
            self.ndropped += 1
            self.totals.npkts_dropped += 1
            self.nbytes_unsent += len(data)
            return None
        self.nrelayed += 1
        return target

    def on_latched_packet(self, data, now):
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
                self.analyzer.feed_unexpected(data, h, now)
        if self.taps is not None:
            for tap in self.taps:
                if tap(self, data, self.rem_addr, now):
                    return self._tap_dropped(data)
        target = self.peer.target
        if target is None:
            self.ndropped += 1
            self.totals.npkts_dropped += 1
            self.nbytes_unsent += len(data)
            return None
        self.nrelayed += 1
        return target

    def _tap_dropped(self, data):
        """A tap said drop (catch_dtmf's h): counted as dropped and discarded."""
        self.ndropped += 1
        self.nignored += 1
        self.totals.npkts_dropped += 1
        self.totals.npkts_discard += 1
        self.nbytes_ignored += len(data)
        return None

    def _check_source(self, data, source, now):
        """Latching rules of media-relay.md 3.2/3.3 (the slow path)."""
        if self.session.strict:
            return self._check_source_strict(data, source, now)
        current = self.rem_addr
        if current is None:
            self._fill(data, source, now)
            return True
        if self.asymmetric:
            if source[0] != current[0]:
                return False
            if source == current:
                self.recheck_at = FOREVER
            return True
        if source == current:
            self._recheck(data, now)
            return True
        if not self.latched:
            self._try_latch(data, now)
            self._learn(source)
            return True
        if self._relatch_allowed(data, now):
            self._learn(source)
            return True
        return False

    def _recheck(self, data, now):
        if self.latched:
            self._resync(data, now)
        else:
            self._try_latch(data, now)

    def _fill(self, data, source, now):
        self.latched = source != self.prev_addr
        self.ssrc = None
        if self.latched and self.is_rtp:
            header = rtp.parse(data)
            if header is not None:
                self.ssrc, self.seq = header.ssrc, header.seq
        self._learn(source)
        twin = self.twin
        if self.is_rtp and (twin.rem_addr is None or twin.rem_addr[0] != source[0]):
            twin.rem_addr = (source[0], source[1] + 1) + tuple(source[2:])
            twin.untrusted = True
            twin._address_changed()
        self.recheck_at = now + SEQ_RESYNC_INTERVAL if self.ssrc is not None else FOREVER

    def _try_latch(self, data, now):
        if now - self.last_update < RELATCH_WINDOW:
            return
        header = rtp.parse(data) if self.is_rtp else None
        if header is None:
            self.latched = False
            self.recheck_at = NEVER
            return
        self.latched = True
        self.ssrc, self.seq = header.ssrc, header.seq
        self.recheck_at = now + SEQ_RESYNC_INTERVAL

    def _resync(self, data, now):
        """Latched and the source matches: refresh the sequence number."""
        if self.ssrc is None:
            self.recheck_at = FOREVER
            return
        pair = rtp.ssrc_and_seq(data)
        if pair is not None:
            if pair[0] == self.ssrc:
                self.seq = pair[1]
            else:
                self._try_latch(data, now)
        self.recheck_at = now + SEQ_RESYNC_INTERVAL

    def _relatch_allowed(self, data, now):
        if not self.is_rtp or self.ssrc is None:
            return False
        header = rtp.parse(data)
        if header is None:
            return False
        if now - self.last_update >= RELATCH_WINDOW:
            if header.ssrc != self.ssrc:
                return False
            distance = (header.seq - self.seq) & 0xFFFF
            if min(distance, 0x10000 - distance) > RELATCH_MAX_SEQ_DISTANCE:
                return False
        self.ssrc, self.seq = header.ssrc, header.seq
        self.recheck_at = now + SEQ_RESYNC_INTERVAL
        return True

    # --- strict learning -------------------------------------------------

    def _check_source_strict(self, data, source, now):
        current = self.rem_addr
        if current is None:
            return False             # nothing signalled: nobody to learn from
        if source == current:
            if self.latched:
                self._resync(data, now)
            else:
                self._latch_strict(data, now)
            return True
        if self.asymmetric:          # as upstream: the signalled host, any port
            return source[0] == current[0]
        if self._continues(data, now):
            self._learn(source)
            return True
        if self.latched:
            return False
        signalled = self.signalled
        if (now < self.session.latch_until and signalled is not None
                and source[0] == signalled[0] and self._latch_strict(data, now)):
            self._learn(source)
            return True
        return False

    def _latch_strict(self, data, now):
        """Latch on ``data`` if it is well-formed for this stream; False if not."""
        if self.is_rtp:
            header = rtp.well_formed(data)
            if header is None:
                self.recheck_at = NEVER
                return False
            self.ssrc, self.seq = header.ssrc, header.seq
            self.recheck_at = now + SEQ_RESYNC_INTERVAL
        else:
            ssrc = rtcp.sender_ssrc(data)
            if ssrc is None:
                self.recheck_at = NEVER
                return False
            self.ssrc = ssrc
            self.recheck_at = FOREVER
        self.latched = True
        return True

    def _continues(self, data, now):
        """The packet comes from the sender already latched (NAT rebinding):
        RTP with the latched SSRC and a close sequence number, or RTCP sent by
        the SSRC latched on the party's RTP stream."""
        if not self.is_rtp:
            ssrc = self.twin.ssrc
            if ssrc is None or not self.twin.latched or rtcp.sender_ssrc(data) != ssrc:
                return False
            self.ssrc, self.latched, self.recheck_at = ssrc, True, FOREVER
            return True
        if not self.latched or self.ssrc is None:
            return False
        header = rtp.well_formed(data)
        if header is None or header.ssrc != self.ssrc:
            return False
        distance = (header.seq - self.seq) & 0xFFFF
        if min(distance, 0x10000 - distance) > RELATCH_MAX_SEQ_DISTANCE:
            return False
        self.seq = header.seq
        self.recheck_at = now + SEQ_RESYNC_INTERVAL
        return True

    def _learn(self, source):
        self.rem_addr = source
        self.untrusted = True
        self._address_changed()

    # --- signalling -----------------------------------------------------

    def signal_address(self, address, asymmetric, now):
        """Apply the address a U/L carried (None: the null host, i.e. hold)."""
        if address is None:
            self.on_hold = True
            self.hold_count += 1
            return
        self.on_hold = False
        if self.rem_addr is not None:
            self.last_update = now
        if self.session.strict and address != self.signalled:
            # Strict: the proxy moved this party (a transfer, a re-INVITE to
            # another device): what the packets taught no longer counts.
            self.untrusted = self.latched = False
            self.ssrc = None
        self.signalled = address
        if not self.untrusted and address != self.rem_addr:
            if self.latched:
                self.prev_addr = self.rem_addr
            self.rem_addr = address
            self._address_changed()
        self.asymmetric = asymmetric
        if asymmetric:
            self.latched = True
        self.recheck_at = NEVER

    def _address_changed(self):
        self.recheck_at = NEVER
        self.refresh_target()

    def refresh_target(self):
        """Recompute where the peer's packets go (None: nowhere)."""
        if self.port is None or self.muted:
            self.target = None
        else:
            self.target = self.rem_addr

    def set_muted(self, muted):
        """While a prompt plays to this party, relayed media to it is dropped."""
        self.muted = muted
        self.refresh_target()
        self.session.media_changed()

    def set_analyzer(self, analyzer):
        self.analyzer = analyzer
        self.analysis_run = analyzer.run if analyzer is not None else None

    def add_tap(self, tap):
        """Call ``tap(stream, data, source, now)`` for every accepted packet;
        a tap returning a true value drops the packet."""
        self.taps = (self.taps or ()) + (tap,)
        self.session.media_changed()

    def remove_tap(self, tap):
        taps = tuple(t for t in (self.taps or ()) if t is not tap)
        self.taps = taps or None
        self.session.media_changed()

    # --- module packet filters (dtls_gw, ice_lite) ----------------------------

    def add_filter(self, packet_filter):
        """Put a PacketFilter on this stream (kept sorted by its ``order``).
        A stream with filters, or whose peer has filters or an egress, is
        read by the relay's filtering reader (relay.deliver) and never offloaded."""
        filters = tuple(f for f in (self.filters or ()) if f is not packet_filter) + (packet_filter,)
        self.filters = tuple(sorted(filters, key=lambda f: f.order))
        self.veto_offload("module filter")

    def remove_filter(self, packet_filter):
        filters = tuple(f for f in (self.filters or ()) if f is not packet_filter)
        self.filters = filters or None
        if self.filters is None and self.demux is None and self.egress is None:
            self.allow_offload("module filter")

    def set_mux(self, demux, egress):
        """Module demultiplexing: ``demux(data)`` names the stream a received
        packet is accounted and relayed as (None: this one); ``egress`` is the
        stream whose socket and address send what would leave this one."""
        self.demux = demux
        self.egress = egress
        if demux is not None or egress is not None:
            self.veto_offload("module filter")
        elif self.filters is None:
            self.allow_offload("module filter")

    def pin_remote(self, address):
        """A module chose the party's address (ICE nomination): latched there,
        and later U/L addresses do not move it."""
        self.rem_addr = address
        self.latched = True
        self.untrusted = True
        self.asymmetric = False
        self.recheck_at = FOREVER
        self.refresh_target()

    def count_dropped(self, data, now):
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

    def unsent(self, data):
        """A packet this stream accepted could not go out (an outgoing filter
        refused it): dropped, not relayed."""
        self.nrelayed -= 1
        self.ndropped += 1
        self.totals.npkts_dropped += 1
        self.nbytes_unsent += len(data)

    def veto_offload(self, reason):
        """A per-packet feature without a tap needs this stream's packets:
        --kernel_offload leaves the stream to the program until
        ``allow_offload(reason)``."""
        self.offload_vetoes = (self.offload_vetoes or frozenset()) | {reason}
        self.session.media_changed()

    def allow_offload(self, reason):
        self.offload_vetoes = (self.offload_vetoes or frozenset()) - {reason} or None
        self.session.media_changed()


class Session:
    """One media stream of a call: two parties, their RTP and RTCP streams."""

    def __init__(self, call_id, from_tag, now, setup_ttl, established_ttl=None, unified_ttl=True):
        self.call_id = call_id
        self.from_tag = from_tag
        self.to_tag = None          # the other party's tag, once a U/L named it (rtpproxy-ctl)
        self.created_at = now
        self.totals = UNCOUNTED      # SessionTable.add gives the table's
        self.rtp = [Stream(self, 0, True), Stream(self, 1, True)]
        self.rtcp = [Stream(self, 0, False), Stream(self, 1, False)]
        for k in (0, 1):
            self.rtp[k].peer = self.rtp[1 - k]
            self.rtcp[k].peer = self.rtcp[1 - k]
            self.rtp[k].twin = self.rtcp[k]
            self.rtcp[k].twin = self.rtp[k]
        self.strong = True
        self.weak = [False, False]
        self.complete = False
        self.unified_ttl = unified_ttl
        self.ttl = [setup_ttl, setup_ttl]
        self.established_ttl = setup_ttl if established_ttl is None else established_ttl
        self.reset_at = [now, now]
        self.notify = None          # (target, tag bytes, command source ip)
        self.strict = False         # strict learning (--latching strict, U/L modifier k)
        self.latch_until = now      # strict: new sources may be learned until then
        self.closed = False
        self.end_reason = None
        self.timer = None           # the relay's per-session wake-up handle
        self.players = None         # {stream index: media.player.Player} while prompts play
        self.npkts_played = 0
        self.nplrs_destroyed = 0
        self.on_media_change = None  # the relay's, with --kernel_offload
        self.wakers = None          # module timers: callables now -> next wake-up time

    def __repr__(self):
        return "<Session %s %s>" % (self.call_id, self.from_tag)

    def streams(self):
        return self.rtp + self.rtcp

    def add_waker(self, waker):
        """``waker(now)`` runs in the session greenlet at each wake-up and returns
        when it next needs to run (FOREVER: not until something changes)."""
        self.wakers = (self.wakers or ()) + (waker,)

    def remove_waker(self, waker):
        self.wakers = tuple(w for w in (self.wakers or ()) if w is not waker) or None

    def media_changed(self):
        """A per-packet feature went on or off on one of its streams."""
        if self.on_media_change is not None:
            self.on_media_change(self)

    # --- idle time ------------------------------------------------------

    def _activity(self, leg):
        last = self.reset_at[leg]
        for stream in (self.rtp[leg], self.rtcp[leg]):
            if stream.last_rx is not None and stream.last_rx > last:
                last = stream.last_rx
        return last

    def _leg_deadlines(self):
        """When each leg's idle counter runs out (unified: one shared counter)."""
        if self.unified_ttl:
            last = max(self._activity(0), self._activity(1))
            return [last + self.ttl[0], last + self.ttl[1]]
        return [self._activity(k) + self.ttl[k] for k in (0, 1)]

    def remaining_ttl(self, now):
        """The Q ``ttl`` value: whole seconds left, minimum over both legs."""
        return max(0, min(int(d - now + 0.999999) for d in self._leg_deadlines()))

    def expires_at(self):
        """The session dies one counter tick after its idle counter hits 0."""
        return min(self._leg_deadlines()) + 1.0

    def touch(self, now):
        """A U/L on this session: counters back to their maximum."""
        self.reset_at = [now, now]

    def set_ttl(self, leg, ttl, now):
        """``S ttl=N``: new maximum for the leg (both when unified), restarted."""
        legs = (0, 1) if self.unified_ttl else (leg,)
        self.established_ttl = ttl
        for k in legs:
            self.ttl[k] = ttl
            self.reset_at[k] = now

    def mark_complete(self, now):
        """The second leg got its ports: from now on the established TTL counts."""
        self.complete = True
        self.ttl = [self.established_ttl, self.established_ttl]
        self.reset_at = [now, now]

    # --- prompt playback (P/S) ---------------------------------------------

    def start_playback(self, index, player, now):
        """Play ``player`` to the party of RTP stream ``index``; media relayed
        to that party is dropped until the prompt ends."""
        self.stop_playback(index)
        if self.players is None:
            self.players = {}
        self.players[index] = player
        self.rtp[index].set_muted(True)

    def stop_playback(self, index):
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

    def playback_due(self, now):
        """The played packets due at ``now`` as [(stream to send from, packet)].

        A player starts once its party's address is known and the stream has
        a socket; a player whose prompt is over is removed.
        """
        out = []
        for index, player in list(self.players.items()):
            stream = self.rtp[index]
            if player.started_at is None:
                if stream.rem_addr is None or stream.port is None:
                    continue
                player.start(now)
            for packet in player.poll(now):
                out.append((stream, packet))
            if player.finished:
                self.stop_playback(index)
        self.npkts_played += len(out)
        self.totals.npkts_played += len(out)
        return out

    def next_playback_at(self, now):
        """When playback next needs attention (FOREVER when nothing is due)."""
        wake = FOREVER
        for player in (self.players or {}).values():
            if player.started_at is None:
                wake = min(wake, now + ADDRESS_POLL)
            elif player.next_due is not None:
                wake = min(wake, player.next_due)
        return wake

    # --- accounting ---------------------------------------------------------

    def duration(self, now):
        return now - self.created_at


class SessionTable:
    """Sessions by Call-ID, with upstream's tag matching (control-protocol 5.1)."""

    def __init__(self):
        self.by_call_id = {}
        self.count = 0
        self.totals = RunningTotals()

    def __len__(self):
        return self.count

    def __iter__(self):
        for sessions in list(self.by_call_id.values()):
            yield from list(sessions)

    def add(self, session):
        session.totals = totals = self.totals
        for stream in session.rtp + session.rtcp:
            stream.totals = totals
        self.by_call_id.setdefault(session.call_id, []).append(session)
        self.count += 1

    def remove(self, session):
        sessions = self.by_call_id.get(session.call_id)
        if sessions and session in sessions:
            sessions.remove(session)
            self.count -= 1
            if not sessions:
                del self.by_call_id[session.call_id]

    def find(self, call_id, from_tag, to_tag=None):
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

    def find_for_delete(self, call_id, from_tag, to_tag=None):
        """[(session, leg)] matched with D/R/N's prefix-aware rule (5.8)."""
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
            if exact:
                break
        return matches


DROP = False    # PacketFilter.receive: counted as received and dropped


class PacketFilter:
    """A module's transform of one stream's packets (dtls_gw, ice_lite).

    ``receive`` sees every datagram arriving on the stream before anything is
    counted: it returns the bytes to relay (the same or transformed), None
    when it consumed the packet itself (a STUN check, a DTLS record: not
    counted at all), or DROP (counted as received and dropped). ``send`` sees
    every packet about to leave the stream's socket: the bytes to send, or
    None to drop it (counted against the stream that received it).
    """

    order = 50      # filters run in ascending order on receive

    def receive(self, stream, data, source, now):
        return data

    def send(self, stream, data, now):
        return data


UNCOUNTED = RunningTotals()   # a session's until it joins a table (nothing reads it)


def count_bytes(stream, data, source, now):
    """A tap (with --metrics): bytes of the packets the stream accepts."""
    stream.nbytes_in += len(data)


count_bytes.kernel_counts = True    # --kernel_offload credits the bytes it relays (offload.py)


def _media_suffix(tag):
    """``;N`` at the end of a tag (text after the last ';'), or None."""
    pos = tag.rfind(";")
    return tag[pos:] if pos >= 0 else None
