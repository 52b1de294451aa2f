"""The per-packet feature interface (media/feature.py) on plain objects: what
a feature does with a packet (pass, drop, consumed), its deadline, and
whether its stream may leave user space (--kernel_offload, the fast path)."""

import socket
import struct
import types

from rtpproxy_py import fastpath, offload
from rtpproxy_py.config import BindAddress
from rtpproxy_py.media.analyzer import RtpAnalyzer
from rtpproxy_py.media.feature import (CONSUMED, DROP, FASTPATH, FOREVER, KERNEL, PASS, Feature,
                                       PRECEDENCE_TAP)
from rtpproxy_py.media.player import BytesSource, Player
from rtpproxy_py.media.resizer import Resizer
from rtpproxy_py.session import Session, SessionTable

CALLER, CALLEE = ("198.51.100.7", 4000), ("203.0.113.9", 5000)
LOCAL = BindAddress(socket.AF_INET, "192.0.2.1")
HANDLES = {}        # the relay's sockets of each stream (Relay.handles), as far as the tiers read them


def rtp(seq, ssrc=0xAAAA, payload=160):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xd5" * payload


def latched_session():
    """Both parties' RTP latched, with relay sockets as far as the tiers read them."""
    session = Session("cid", "ft", 0.0, 60)
    SessionTable().add(session)         # running totals of its own
    for k, (party, port) in enumerate(((CALLEE, 30000), (CALLER, 30002))):
        stream = session.rtp[k]
        stream.port, stream.local = port, LOCAL
        stream.rem_addr, stream.latched = party, True
        stream.recheck_at = FOREVER
        stream.refresh_target()
    for k in (0, 1):
        stream = session.rtp[k]
        HANDLES[stream] = types.SimpleNamespace(twin=object(), twin_addr=stream.rem_addr,
                                                resizing=False, port=stream.port)
    return session


class EveryOther(Feature):
    """Drops (or takes) every second packet; counts what it saw."""

    reason = "test feature"
    precedence = PRECEDENCE_TAP

    def __init__(self, verdict):
        self.verdict, self.seen = verdict, 0

    def on_packet(self, stream, data, source, now):
        self.seen += 1
        return self.verdict if self.seen % 2 == 0 else PASS


def test_a_feature_that_drops_packets():
    session = latched_session()
    stream = session.rtp[1]
    dropper = EveryOther(DROP)
    stream.add_feature(dropper)
    targets = [stream.on_latched_packet(rtp(n), 1.0) for n in range(4)]
    targets.append(stream.on_packet(rtp(4), CALLER, 1.0))
    targets.append(stream.on_packet(rtp(5), CALLER, 1.0))
    assert targets == [CALLEE, None, CALLEE, None, CALLEE, None]
    assert (stream.npkts_in, stream.nrelayed, stream.ndropped, stream.nignored) == (6, 3, 3, 3)
    assert session.totals.npkts_discard == 3
    stream.remove_feature(dropper)
    assert stream.taps is None and stream.on_latched_packet(rtp(6), 1.0) == CALLEE
    assert dropper.seen == 6


def test_a_feature_that_consumes_packets():
    """Consumed: received, not relayed, not counted as dropped."""
    session = latched_session()
    stream = session.rtp[1]
    stream.add_feature(EveryOther(CONSUMED))
    assert [stream.on_latched_packet(rtp(n), 1.0) for n in range(4)] == [CALLEE, None] * 2
    assert (stream.npkts_in, stream.nrelayed, stream.ndropped) == (4, 2, 0)


def test_features_run_after_the_analyzer_sees_the_packet():
    """The analyzer stays inlined (no per-packet callable) and sees dropped packets too."""
    stream = latched_session().rtp[1]
    stream.set_analyzer(RtpAnalyzer())
    stream.add_feature(EveryOther(DROP))
    assert stream.taps is not None and len(stream.taps) == 1
    assert stream.analysis_run is stream.analyzer.run
    for n in range(10):
        stream.on_latched_packet(rtp(n), 1.0 + n * 0.02)
    assert stream.analyzer.sequence_totals()[1] == 10
    stream.set_analyzer(None)
    assert stream.analyzer is None and stream.analysis_run is None and len(stream.taps) == 1


class Timed(Feature):
    def __init__(self, at):
        self.at = at

    def next_deadline(self, now):
        return self.at


def test_the_stream_answers_its_features_next_deadline():
    stream = latched_session().rtp[1]
    assert stream.next_deadline(5.0) == FOREVER
    stream.add_feature(Timed(9.0), notify=False)
    stream.add_feature(Timed(7.5), notify=False)
    assert stream.next_deadline(5.0) == 7.5
    # the resizer's next output packet; a prompt's next packet
    resizer = Resizer(40)
    assert resizer.next_deadline(0.0) == FOREVER
    assert resizer.enqueue(rtp(1), 10.0)         # 20 ms queued of the 40 ms it sends
    packets, wake_at = resizer.dequeue(10.0)
    assert packets == [] and wake_at is not None and wake_at > 10.0
    assert resizer.next_deadline(10.0) == wake_at
    stream.resizer = resizer
    assert stream.next_deadline(10.0) == min(7.5, wake_at)
    player = Player(BytesSource(b"\xd5" * 800), 0, ptime_ms=20)
    assert player.next_deadline(3.0) == 3.0 + 0.01        # looks for the party's address
    player.start(3.0)
    player.poll(3.0)
    assert player.next_deadline(3.0) == 3.02
    player.finish()
    assert player.next_deadline(3.1) == FOREVER


def test_a_prompt_is_its_streams_feature_while_it_plays():
    """P: the Player joins the stream's features (its next packet is the
    stream's deadline, the kernel must not relay), S takes it off."""
    session = latched_session()
    stream = session.rtp[1]
    player = Player(BytesSource(b"\xd5" * 800), 0, ptime_ms=20)
    session.start_playback(1, player, 2.0)
    assert player in stream.features and stream.muted and stream.target is None
    player.start(2.0)
    assert stream.next_deadline(2.0) == 2.0
    assert offload.blocker(session) == "prompt playing"
    assert fastpath.blocker(session.rtp[0], HANDLES) == "nowhere to send"    # its party is muted
    session.stop_playback(1)
    assert player not in stream.features and stream.features == () and not stream.muted
    assert offload.blocker(session) is None and stream.next_deadline(2.0) == FOREVER


def test_a_feature_that_keeps_the_stream_in_user_space():
    session = latched_session()
    assert offload.blocker(session) is None
    assert fastpath.blocker(session.rtp[1], HANDLES) is None
    seen = []
    session.on_media_change = seen.append
    feature = EveryOther(DROP)
    session.rtp[1].add_feature(feature)
    assert seen == [session]                                  # the relay re-decides at once
    assert not session.rtp[1].may_leave_user_space(KERNEL)
    assert offload.blocker(session) == "test feature"
    assert fastpath.blocker(session.rtp[1], HANDLES) == "test feature"
    session.rtp[1].remove_feature(feature)
    assert offload.blocker(session) is None and fastpath.blocker(session.rtp[1], HANDLES) is None


def test_a_feature_may_answer_per_tier():
    """RTP analysis: the fast path analyzes, the kernel cannot."""
    session = latched_session()
    session.rtp[0].set_analyzer(RtpAnalyzer())
    assert session.rtp[0].may_leave_user_space(FASTPATH)
    assert fastpath.blocker(session.rtp[0], HANDLES) is None
    assert offload.blocker(session) == "RTP analysis"
    assert session.rtp[0].user_space_reason(KERNEL) == "RTP analysis"


def test_the_first_reason_by_precedence_and_vetoes_together():
    stream = latched_session().rtp[0]
    stream.veto_offload("b reason")
    stream.veto_offload("a reason")
    assert stream.user_space_reason(KERNEL) == "a reason, b reason"
    stream.add_tap(lambda *args: None)
    stream.set_muted(True)
    assert stream.user_space_reason(KERNEL) == "prompt playing"
    assert stream.user_space_reason(FASTPATH) == "recording or copying"
