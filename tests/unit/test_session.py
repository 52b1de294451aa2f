"""Latching, hold, idle time and tag matching on plain objects with a fake clock."""

from rtpproxy_py.session import Session, SessionTable

import struct


def rtp(seq, ssrc=0xAAAA):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\0" * 160


CALLER = ("10.0.0.1", 4000)
CALLEE = ("10.0.0.2", 5000)


def new_session(now=0.0):
    s = Session("cid", "ft", now, setup_ttl=60, established_ttl=60)
    for stream in s.streams():
        stream.port = 1          # as if the relay had bound it
        stream.refresh_target()
    return s


def test_signalled_addresses_route_packets():
    s = new_session()
    s.rtp[1].signal_address(CALLER, False, 0)
    s.rtp[0].signal_address(CALLEE, False, 0)
    assert s.rtp[1].on_packet(rtp(1), CALLER, 1.0) == CALLEE
    assert s.rtp[0].on_packet(rtp(1, 0xBBBB), CALLEE, 1.0) == CALLER
    assert (s.rtp[1].npkts_in, s.rtp[1].nrelayed) == (1, 1)


def test_nat_source_replaces_signalled_address_and_latches():
    s = new_session()
    s.rtp[1].signal_address(("192.0.2.1", 9), False, 0)
    s.rtp[0].signal_address(CALLEE, False, 0)
    assert s.rtp[1].on_packet(rtp(1), CALLER, 1.0) == CALLEE
    assert s.rtp[1].rem_addr == CALLER and s.rtp[1].latched
    # the learned address wins over later signalling
    s.rtp[1].signal_address(("192.0.2.1", 9), False, 2.0)
    assert s.rtp[1].rem_addr == CALLER


def test_latched_stream_drops_foreign_source_outside_window():
    s = new_session()
    s.rtp[0].signal_address(CALLEE, False, 0)
    s.rtp[1].on_packet(rtp(1), CALLER, 100.0)
    assert s.rtp[1].latched
    assert s.rtp[1].on_packet(rtp(900, 0xEEEE), ("6.6.6.6", 1), 101.0) is None
    assert s.rtp[1].nignored == 1 and s.rtp[1].rem_addr == CALLER
    # same SSRC, close sequence: NAT rebinding, accepted and followed
    assert s.rtp[1].on_packet(rtp(5), ("10.0.0.1", 4002), 102.0) == CALLEE
    assert s.rtp[1].rem_addr == ("10.0.0.1", 4002)
    # same SSRC but a far sequence number: dropped
    assert s.rtp[1].on_packet(rtp(3000), ("10.0.0.1", 4004), 103.0) is None


def test_relatch_window_after_update():
    s = new_session()
    s.rtp[0].signal_address(CALLEE, False, 0)
    s.rtp[1].on_packet(rtp(1), CALLER, 100.0)
    # a re-INVITE touches the address: for 10 s any parseable RTP may take over
    s.rtp[1].signal_address(("10.0.0.9", 7000), False, 200.0)
    assert s.rtp[1].on_packet(rtp(77, 0xCCCC), ("10.0.0.9", 7000), 205.0) == CALLEE
    assert s.rtp[1].rem_addr == ("10.0.0.9", 7000)
    # but not non-RTP
    assert s.rtp[1].on_packet(b"junk", ("10.0.0.8", 1), 206.0) is None


def test_rtcp_twin_guessed_from_rtp_source():
    s = new_session()
    s.rtp[1].on_packet(rtp(1), CALLER, 1.0)
    assert s.rtcp[1].rem_addr == ("10.0.0.1", 4001)


def test_asymmetric_checks_host_only_and_pins_address():
    s = new_session()
    s.rtp[1].signal_address(CALLER, True, 0)
    s.rtp[0].signal_address(CALLEE, False, 0)
    assert s.rtp[1].on_packet(rtp(1), ("10.0.0.1", 9999), 1.0) == CALLEE
    assert s.rtp[1].rem_addr == CALLER
    assert s.rtp[1].on_packet(rtp(2), ("10.0.0.7", 4000), 1.0) is None


def test_hold_keeps_addresses():
    s = new_session()
    s.rtp[1].signal_address(CALLER, False, 0)
    s.rtp[1].signal_address(None, False, 1)
    assert s.rtp[1].on_hold and s.rtp[1].rem_addr == CALLER and s.rtp[1].hold_count == 1
    s.rtp[1].signal_address(CALLER, False, 2)
    assert not s.rtp[1].on_hold


def test_packets_dropped_while_peer_unbound_or_muted():
    s = new_session()
    s.rtp[1].signal_address(CALLER, False, 0)
    s.rtp[1].port = None
    s.rtp[1].refresh_target()
    assert s.rtp[0].on_packet(rtp(1), CALLEE, 1.0) is None
    assert s.rtp[0].ndropped == 1
    s.rtp[1].port = 1
    s.rtp[1].set_muted(True)
    assert s.rtp[0].on_packet(rtp(2), CALLEE, 1.0) is None
    s.rtp[1].set_muted(False)
    assert s.rtp[0].on_packet(rtp(3), CALLEE, 1.0) == CALLER


def test_idle_time_unified_and_independent():
    s = Session("c", "f", 0.0, setup_ttl=5, established_ttl=20)
    assert s.remaining_ttl(0.0) == 5 and s.expires_at() == 6.0
    s.mark_complete(1.0)
    assert s.remaining_ttl(1.0) == 20
    s.rtp[0].last_rx = 10.0
    assert s.expires_at() == 31.0          # unified: one leg's media keeps both
    s2 = Session("c", "f", 0.0, setup_ttl=5, established_ttl=20, unified_ttl=False)
    s2.mark_complete(0.0)
    s2.rtp[0].last_rx = 10.0
    assert s2.expires_at() == 21.0         # the silent leg decides
    s2.set_ttl(1, 3, 12.0)
    assert s2.remaining_ttl(12.0) == 3


def test_tag_matching():
    t = SessionTable()
    a = Session("cid", "ft;1", 0, 60)
    b = Session("cid", "ft;2", 0, 60)
    t.add(a)
    t.add(b)
    assert t.find("cid", "ft;1") == (a, 0)
    assert t.find("cid", "tt;1", "ft;1") == (a, 1)
    # Kamailio's $rtpstat: "Q CID TT;1 FT" finds ft;1 through the ;1 suffix
    assert t.find("cid", "tt;1", "ft") == (a, 1)
    assert t.find("cid", "tt;2", "ft") == (b, 1)
    assert t.find("cid", "nope") == (None, None)
    assert [x for x, _ in t.find_for_delete("cid", "ft")] == [a, b]
    assert t.find_for_delete("cid", "ft;2") == [(b, 1)]
    assert t.find_for_delete("cid", "xx", "ft") == [(a, 0), (b, 0)]


def test_one_prefix_rule_for_delete_and_recording():
    """D stops at the exact tag; R and N (every=True) take every FT[;N] match."""
    t = SessionTable()
    exact, forked = Session("cid", "ft", 0, 60), Session("cid", "ft;2", 0, 60)
    t.add(exact)
    t.add(forked)
    assert t.find_for_delete("cid", "ft") == [(exact, 1)]
    assert t.find_for_delete("cid", "ft", every=True) == [(exact, 1), (forked, 1)]
    assert t.find_for_delete("cid", "xx", "ft", every=True) == [(exact, 0), (forked, 0)]
