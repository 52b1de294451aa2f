"""Strict latching (session.py, README "Latching modes") on plain objects with
a fake clock: what a stream learns, and what it drops, when the session is strict."""

import struct

from rtpproxy_py.session import Session

CALLER = ("10.0.0.1", 4000)          # signalled by U
CALLEE = ("10.0.0.2", 5000)          # signalled by L
ATTACKER = ("10.6.6.6", 4000)
WINDOW = 3.0


def rtp(seq, ssrc=0xAAAA, pt=0):
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + b"\0" * 160


def rtcp_rr(ssrc):
    """An RTCP receiver report without report blocks: 8 bytes, length 1."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def strict_call(now=0.0, caller=CALLER, callee=CALLEE):
    """A strict session after U (caller's address) and L (callee's) at ``now``."""
    s = Session("cid", "ft", now, setup_ttl=60, established_ttl=60)
    s.strict = True
    for stream in s.streams():
        stream.port = 1
        stream.refresh_target()
    signal(s, 1, caller, now)
    signal(s, 0, callee, now)
    return s


def signal(s, leg, address, now):
    """What the dispatcher does for a U/L that carries ``address`` for ``leg``."""
    s.latch_until = now + WINDOW
    s.rtp[leg].signal_address(address, False, now)
    s.rtcp[leg].signal_address((address[0], address[1] + 1), False, now)


def test_signalled_address_latches_at_any_time():
    s = strict_call()
    assert s.rtp[1].on_packet(rtp(1), CALLER, 100.0) == CALLEE
    assert s.rtp[1].latched and s.rtp[1].ssrc == 0xAAAA


def test_attacker_host_is_never_learned_not_even_in_the_window():
    s = strict_call()
    for now in (0.1, 1.0, 50.0):
        assert s.rtp[1].on_packet(rtp(1, 0x6666), ATTACKER, now) is None
        assert s.rtcp[1].on_packet(rtcp_rr(0x6666), (ATTACKER[0], 4001), now) is None
    assert s.rtp[1].rem_addr == CALLER and not s.rtp[1].latched
    assert s.rtp[1].nignored == 3 and s.rtcp[1].nignored == 3
    # and the real caller still latches afterwards
    assert s.rtp[1].on_packet(rtp(2), CALLER, 60.0) == CALLEE


def test_nat_port_is_learned_from_the_signalled_host_within_the_window():
    s = strict_call()
    natted = (CALLER[0], 61000)
    assert s.rtp[1].on_packet(rtp(1), natted, 1.0) == CALLEE
    assert s.rtp[1].rem_addr == natted and s.rtp[1].latched


def test_nat_port_after_the_window_is_dropped():
    s = strict_call()
    assert s.rtp[1].on_packet(rtp(1), (CALLER[0], 61000), WINDOW + 0.01) is None
    assert s.rtp[1].rem_addr == CALLER


def test_a_new_u_or_l_reopens_the_window():
    s = strict_call()
    signal(s, 1, CALLER, 100.0)          # re-INVITE with the same address
    assert s.rtp[1].on_packet(rtp(1), (CALLER[0], 61000), 101.0) == CALLEE


def test_only_well_formed_rtp_is_learned():
    s = strict_call()
    natted = (CALLER[0], 61000)
    for junk in (b"", b"\x80\x00\x00", b"hello world, not rtp", rtcp_rr(0xAAAA),
                 b"\x40" + rtp(1)[1:]):          # version 1
        assert s.rtp[1].on_packet(junk, natted, 1.0) is None
    assert s.rtp[1].rem_addr == CALLER and not s.rtp[1].latched


def test_latched_stream_moves_only_with_ssrc_and_sequence_continuity():
    s = strict_call()
    s.rtp[1].on_packet(rtp(10), CALLER, 0.5)
    assert s.rtp[1].latched
    # in the window, from the signalled host, but another SSRC: dropped
    assert s.rtp[1].on_packet(rtp(11, 0xBBBB), (CALLER[0], 61000), 1.0) is None
    # same SSRC, far sequence number: dropped
    assert s.rtp[1].on_packet(rtp(5000), ("192.0.2.7", 7000), 1.0) is None
    # same SSRC, next sequence numbers, from anywhere (NAT rebinding, new network): followed
    assert s.rtp[1].on_packet(rtp(12), ("192.0.2.7", 7000), 50.0) == CALLEE
    assert s.rtp[1].rem_addr == ("192.0.2.7", 7000)


def test_non_rtp_from_the_latched_source_is_relayed():
    s = strict_call()
    s.rtp[1].on_packet(rtp(1), CALLER, 0.5)
    assert s.rtp[1].on_packet(b"x", CALLER, 0.6) == CALLEE


def test_nothing_signalled_means_nothing_learned():
    s = Session("cid", "ft", 0.0, setup_ttl=60)
    s.strict = True
    for stream in s.streams():
        stream.port = 1
        stream.refresh_target()
    signal(s, 1, CALLER, 0.0)            # U only: the callee side (stream 0) has no address
    assert s.rtp[0].on_packet(rtp(1, 0x6666), ATTACKER, 0.1) is None
    assert s.rtp[0].on_packet(rtp(1, 0x7777), CALLEE, 0.1) is None
    assert s.rtp[0].rem_addr is None


def test_a_changed_signalled_address_replaces_the_learned_one():
    s = strict_call()
    natted = (CALLER[0], 61000)
    s.rtp[1].on_packet(rtp(1), natted, 1.0)
    assert s.rtp[1].rem_addr == natted
    # same signalled address again: the learned one stays (upstream's rule)
    signal(s, 1, CALLER, 10.0)
    assert s.rtp[1].rem_addr == natted and s.rtp[1].latched
    # a transfer: the proxy names another device, which latches with its own SSRC
    other = ("10.0.0.9", 6000)
    signal(s, 1, other, 20.0)
    assert s.rtp[1].rem_addr == other and not s.rtp[1].latched
    assert s.rtp[1].on_packet(rtp(1, 0xCCCC), natted, 20.5) is None
    assert s.rtp[1].on_packet(rtp(1, 0xCCCC), other, 20.5) == CALLEE


def test_rtcp_follows_the_latched_rtp_ssrc():
    s = strict_call()
    natted_rtp, natted_rtcp = (CALLER[0], 61000), ("203.0.113.5", 61001)
    s.rtp[1].on_packet(rtp(1), natted_rtp, 1.0)
    # the first report comes seconds later, after the window, from yet another
    # mapping: accepted because its sender SSRC is the latched RTP SSRC
    assert s.rtcp[1].on_packet(rtcp_rr(0xAAAA), natted_rtcp, 8.0) == (CALLEE[0], CALLEE[1] + 1)
    assert s.rtcp[1].rem_addr == natted_rtcp
    assert s.rtcp[1].on_packet(rtcp_rr(0x6666), (ATTACKER[0], 1), 9.0) is None


def test_rtcp_from_the_signalled_host_within_the_window():
    s = strict_call()
    assert s.rtcp[1].on_packet(rtcp_rr(0x1), (CALLER[0], 61001), 1.0) == (CALLEE[0], CALLEE[1] + 1)
    assert s.rtcp[1].on_packet(rtp(1), (CALLER[0], 61003), 1.0) is None     # not RTCP


def test_asymmetric_strict_stream_checks_the_host():
    s = strict_call()
    s.rtp[1].signal_address(CALLER, True, 0.0)
    assert s.rtp[1].on_packet(b"anything", (CALLER[0], 1234), 100.0) == CALLEE
    assert s.rtp[1].on_packet(rtp(1), ATTACKER, 100.0) is None
    assert s.rtp[1].rem_addr == CALLER


def test_upstream_mode_is_unchanged_by_the_strict_code():
    """The same spray against a non-strict session: the documented hijack."""
    s = strict_call()
    s.strict = False
    assert s.rtp[1].on_packet(rtp(1, 0x6666), ATTACKER, 100.0) == CALLEE
    assert s.rtp[1].rem_addr == ATTACKER
