"""What U, L and D do for a call that may never send media (issue 16, "Call
set-up under load"): RTP analysis is switched on at U but its RtpAnalyzer
is made by the stream's first packet (or the first read of
Stream.analyzer), with every count as if it had been made at U; and the
real relay works out a command's twins and readers once (session_updated),
not also when it binds a leg's ports."""

import socket
import struct

import gevent
import pytest

from helpers import Endpoint
from rtpproxy_py.config import BindAddress, Config
from rtpproxy_py.dispatcher import QUERY_COUNTERS, Dispatcher
from rtpproxy_py.media.analyzer import RtpAnalyzer
from rtpproxy_py.media.feature import FASTPATH, KERNEL
from rtpproxy_py.relay import Relay
from rtpproxy_py.session import PendingAnalysis, Session
from rtpproxy_py.stats import Counters

LOCAL = BindAddress(socket.AF_INET, "127.0.0.1")


def rtp(seq, ts=None, ssrc=0x4242, pt=0):
    ts = seq * 160 if ts is None else ts
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + b"\xff" * 160


# A stream with a loss, a reordered packet, a duplicate, a timestamp jump,
# a new SSRC and a runt: every branch of the analyzer.
PACKETS = ([rtp(n) for n in range(1, 30)] + [rtp(32), rtp(31), rtp(31), rtp(33, ts=9000 * 160)]
           + [rtp(n, ssrc=0x99) for n in range(500, 520)] + [b"\x80\x00"] + [rtp(520, ssrc=0x99)])


def _pair():
    """Two sessions' caller-facing RTP streams: one analyzed lazily (as U
    now does), one with its RtpAnalyzer made up front (as U did)."""
    lazy, eager = Session("c", "f", 0.0, 60), Session("c", "f", 0.0, 60)
    lazy.rtp[1].analyze()
    eager.rtp[1].set_analyzer(RtpAnalyzer())
    return lazy, eager


def _results(stream):
    analyzer = stream.analyzer
    return {name: getattr(analyzer, name) for name in QUERY_COUNTERS if name.startswith("rtpa_")
            } | {"longest_ipi": analyzer.longest_ipi, "clock": analyzer.jitter_clock()}


@pytest.mark.parametrize("first_path", ["main socket", "latched twin"])
def test_lazy_analysis_counts_as_an_analyzer_made_at_u(first_path):
    lazy, eager = _pair()
    stream = lazy.rtp[1]
    assert stream.started_analyzer is None          # nothing made before a packet
    for session in (lazy, eager):
        s = session.rtp[1]
        s.rem_addr, s.recheck_at = ("192.0.2.1", 4000), float("inf")
        s.peer.target = ("192.0.2.2", 5000)
        for k, data in enumerate(PACKETS):
            now = 10.0 + 0.02 * k + (0.003 if k % 7 == 0 else 0.0)
            if first_path == "main socket" and k == 0:
                s.on_packet(data, s.rem_addr, now)
            else:
                s.on_latched_packet(data, now)
    assert isinstance(stream.started_analyzer, RtpAnalyzer)
    assert _results(stream) == _results(eager.rtp[1])
    assert lazy.summary() == eager.summary()
    totals, expected = Counters(), Counters()
    from rtpproxy_py.stats import _add_media
    _add_media(totals.done, lazy)
    _add_media(expected.done, eager)
    assert totals.done == expected.done


def test_lazy_analysis_keeps_the_stream_in_its_tiers_and_reads_as_empty():
    lazy, eager = _pair()
    stream = lazy.rtp[1]
    assert isinstance(stream.features[0], PendingAnalysis)
    for tier in (KERNEL, FASTPATH):
        assert stream.user_space_reason(tier) == eager.rtp[1].user_space_reason(tier)
    # a session without media: the end-of-session lines and G's totals as before
    assert lazy.summary() == eager.summary()
    assert "sent 0, received 0, lost 0" in lazy.summary()[1]
    assert stream.started_analyzer is None
    # Q (or anything else reading the analyzer) gets an empty RtpAnalyzer
    assert _results(stream) == _results(eager.rtp[1])
    assert stream.started_analyzer is stream.analyzer
    assert stream.analysis_run is stream.analyzer.run
    assert [type(f) for f in stream.features] == [type(f) for f in eager.rtp[1].features]
    # and switching analysis off still works
    stream.set_analyzer(None)
    assert stream.analyzer is None and stream.analysis_run is None and stream.features == ()


class CountingRelay(Relay):
    """The real relay, counting how often it works out a session's twins and
    readers, and how often it re-installs the readers."""

    syncs = rewires = 0

    def _sync_twins(self, session, force_rewire=False):
        self.syncs += 1
        super()._sync_twins(session, force_rewire)

    def _rewire(self, session):
        self.rewires += 1
        super()._rewire(session)


@pytest.fixture
def relay():
    config = Config(listen4=[LOCAL], primary=LOCAL, fastpath=False, poll_batch=0.0)
    media = CountingRelay(config)
    dispatcher = Dispatcher(config, media, None, media.clock)
    media.on_expired = dispatcher.expire
    yield media, dispatcher
    for session in list(dispatcher.table):
        dispatcher.destroy(session)
    media.shutdown()
    media._tick.stop()


def _wait_for(condition, timeout=5.0):
    deadline = gevent.get_hub().loop.now() + timeout
    while not condition():
        assert gevent.get_hub().loop.now() < deadline, "condition not met in %.0f s" % timeout
        gevent.sleep(0.01)


def test_u_and_l_install_readers_once_and_media_flows(relay):
    media, dispatcher = relay
    caller, callee = Endpoint(), Endpoint()
    try:
        for_callee = int(dispatcher.execute(b"U c1 127.0.0.1 %d ft" % caller.port).split()[0])
        assert (media.syncs, media.rewires) == (1, 1)
        session = dispatcher.table.find("c1", "ft")[0]
        assert session.rtp[0].started_analyzer is None
        for_caller = int(dispatcher.execute(
            b"L c1 127.0.0.1 %d ft tt" % callee.port).split()[0])
        assert (media.syncs, media.rewires) == (2, 2)
        # both directions relayed by the readers that one rewire each installed
        for n in range(1, 4):
            caller.send(rtp(n), "127.0.0.1", for_caller)
            callee.send(rtp(n, ssrc=7), "127.0.0.1", for_callee)
        _wait_for(lambda: session.rtp[1].npkts_in == 3 and session.rtp[0].npkts_in == 3)
        assert [callee.recv()[0] for _ in range(3)] == [rtp(n) for n in range(1, 4)]
        assert [caller.recv()[0] for _ in range(3)] == [rtp(n, ssrc=7) for n in range(1, 4)]
        assert session.rtp[1].started_analyzer.rtpa_nrcvd == 3
        # the twins the latched parties got re-installed readers; a U that
        # changes nothing re-installs nothing
        syncs, rewires = media.syncs, media.rewires
        dispatcher.execute(b"U c1 127.0.0.1 %d ft tt" % caller.port)
        assert (media.syncs, media.rewires) == (syncs + 1, rewires)
        assert dispatcher.execute(b"D c1 ft tt") == "0\n"
        assert media.handles == {} and media.open_sockets == 0
    finally:
        caller.close()
        callee.close()
