"""The default latching mode's guards (README "Latching modes") and the
latching logs, on plain objects with a fake clock: a datagram that is not
RTP/RTCP never moves a stream, RTCP learned from a packet stays with it, a
party sending from exactly its signalled address is preferred while it keeps
sending, and NAT still latches as upstream."""

import logging
import struct

from rtpproxy_py.media.analyzer import RtpAnalyzer
from rtpproxy_py.session import PREFER_LAPSE, Session

CALLER = ("10.0.0.1", 4000)
CALLEE = ("10.0.0.2", 5000)
STRANGER = ("6.6.6.6", 1000)


def rtp(seq, ssrc=0xAAAA):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\0" * 160


def rtcp(ssrc=0xAAAA):
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def call(caller=CALLER, callee=CALLEE, now=0.0):
    """U (caller's address) then L (callee's), as the dispatcher applies them."""
    s = Session("cid", "ft", now, setup_ttl=60, established_ttl=60)
    for stream in s.streams():
        stream.port = 1
        stream.refresh_target()
    for k, address in ((1, caller), (0, callee)):
        s.rtp[k].signal_address(address, False, now)
        s.rtcp[k].signal_address((address[0], address[1] + 1), False, now)
    return s


def test_malformed_datagram_from_a_stranger_never_moves_a_stream():
    s = call()
    # not latched yet (nobody sent): upstream follows the first RTP source,
    # but junk, runts and RTCP-port non-RTCP from a stranger change nothing
    for junk in (b"", b"\x80", b"junk" * 10, b"\x00" * 40):
        assert s.rtp[1].on_packet(junk, STRANGER, 1.0) is None
        assert s.rtcp[1].on_packet(junk, STRANGER, 1.0) is None
    assert s.rtcp[1].on_packet(rtp(1), STRANGER, 1.0) is None      # RTP is not RTCP
    assert s.rtp[1].rem_addr == CALLER and s.rtcp[1].rem_addr == (CALLER[0], CALLER[1] + 1)
    assert s.rtp[1].nignored == 4 and s.rtcp[1].nignored == 5
    # nor fills an empty address
    s2 = Session("c2", "f", 0.0, setup_ttl=60)
    assert s2.rtp[1].on_packet(b"junk", STRANGER, 1.0) is None and s2.rtp[1].rem_addr is None
    # from the party itself, anything is relayed
    assert s.rtp[1].on_packet(b"\x80", CALLER, 2.0) == CALLEE


def test_rtcp_learned_from_a_packet_stays_with_it():
    """A NATed caller (nothing from its signalled address): its first RTCP
    packet sets and locks the RTCP stream, as upstream; a well-formed report
    from anyone else later is dropped, inside or outside the 10 s window."""
    nat = ("192.0.2.9", 31000)
    s = call(caller=("10.9.9.9", 4000))
    assert s.rtp[1].on_packet(rtp(1), nat, 20.0) == CALLEE
    assert s.rtcp[1].on_packet(rtcp(), (nat[0], 31007), 21.0) == (CALLEE[0], CALLEE[1] + 1)
    assert s.rtcp[1].latched and s.rtcp[1].rem_addr == (nat[0], 31007)
    assert s.rtcp[1].on_packet(rtcp(0xBAD), STRANGER, 31.0) is None
    s.rtcp[1].signal_address(("10.9.9.9", 4001), False, 40.0)        # a re-INVITE
    assert s.rtcp[1].on_packet(rtcp(0xBAD), STRANGER, 41.0) is None
    assert s.rtcp[1].rem_addr == (nat[0], 31007)
    # the party's own reports keep flowing
    assert s.rtcp[1].on_packet(rtcp(), (nat[0], 31007), 42.0) == (CALLEE[0], CALLEE[1] + 1)


def test_rtcp_follows_its_rtp_to_another_host():
    """The lock comes off when the party's RTP re-latches to another host
    (upstream's RTCP guess, as at the first packet)."""
    s = call(caller=("10.9.9.9", 4000))
    s.rtp[1].on_packet(rtp(1), ("192.0.2.9", 31000), 20.0)
    s.rtcp[1].on_packet(rtcp(), ("192.0.2.9", 31001), 20.0)
    s.rtp[1].signal_address(("10.9.9.9", 4000), False, 30.0)
    assert s.rtp[1].on_packet(rtp(50, 0xCCCC), ("198.51.100.4", 7000), 31.0) == CALLEE
    assert s.rtcp[1].rem_addr == ("198.51.100.4", 7001) and not s.rtcp[1].latched
    assert s.rtcp[1].on_packet(rtcp(0xCCCC), ("198.51.100.4", 7001), 32.0) is not None
    assert s.rtcp[1].latched


def test_signalled_party_is_preferred_while_it_sends():
    s = call()
    assert s.rtp[1].on_packet(rtp(1), CALLER, 1.0) == CALLEE
    assert s.rtp[1].confirmed
    # a re-INVITE with the same address opens upstream's 10 s window: any RTP
    # would take over; not while the caller keeps sending from its address
    s.rtp[1].signal_address(CALLER, False, 5.0)
    assert s.rtp[1].confirmed
    for t in range(6, 15):
        assert s.rtp[1].on_packet(rtp(t), CALLER, float(t)) == CALLEE
        assert s.rtp[1].on_packet(rtp(900, 0xEEEE), STRANGER, t + 0.5) is None
        # its own SSRC from another port of its host (a second stream): dropped too
        assert s.rtp[1].on_packet(rtp(t), (CALLER[0], 4002), t + 0.5) is None
    assert s.rtp[1].rem_addr == CALLER
    # RTCP not heard yet: a stranger's report is dropped, the party's host latches
    assert s.rtcp[1].on_packet(rtcp(0xBAD), STRANGER, 15.0) is None
    assert s.rtcp[1].on_packet(rtcp(), (CALLER[0], 4005), 15.0) is not None
    assert s.rtcp[1].rem_addr == (CALLER[0], 4005)


def test_nat_rebinding_of_a_preferred_party_is_followed_once_its_address_is_silent():
    """The same SSRC continuing from a new port: while the signalled address
    still sends (a second stream), never followed; once a packet from the new
    port finds that nothing came from the old one since the previous, followed."""
    s = call()
    for t in range(1, 4):
        s.rtp[1].on_packet(rtp(t), CALLER, float(t))
    second = (CALLER[0], 4444)
    for seq in range(4, 10):                  # both send: the second stream is dropped
        assert s.rtp[1].on_packet(rtp(seq), CALLER, 4.0 + seq / 50) == CALLEE
        assert s.rtp[1].on_packet(rtp(seq), second, 4.01 + seq / 50) is None
    assert s.rtp[1].rem_addr == CALLER
    moved = (CALLER[0], 5555)                 # then the old port falls silent: rebinding
    assert s.rtp[1].on_packet(rtp(10), CALLER, 4.98) == CALLEE
    assert s.rtp[1].on_packet(rtp(11), moved, 5.0) is None       # the old port sent since
    assert s.rtp[1].on_packet(rtp(12), moved, 5.02) == CALLEE
    assert s.rtp[1].rem_addr == moved and not s.rtp[1].confirmed
    # the signalled address takes it back when it sends again
    assert s.rtp[1].on_packet(rtp(13), CALLER, 6.0) == CALLEE and s.rtp[1].rem_addr == CALLER


def test_preference_lapses_when_the_party_falls_silent():
    """Silent PREFER_LAPSE seconds, a preferred party is latched over as
    upstream would (within 10 s of a U/L, any RTP) until it sends again."""
    s = call()
    for t in range(1, 4):
        s.rtp[1].on_packet(rtp(t), CALLER, float(t))
    s.rtp[1].signal_address(CALLER, False, 5.0)
    assert s.rtp[1].on_packet(rtp(1, 0xEEEE), STRANGER, 5.5) is None
    assert s.rtp[1].on_packet(rtp(2, 0xEEEE), STRANGER, 3.0 + PREFER_LAPSE - 0.1) is None
    assert s.rtp[1].on_packet(rtp(3, 0xEEEE), STRANGER, 3.0 + PREFER_LAPSE + 0.1) == CALLEE
    assert s.rtp[1].rem_addr == STRANGER
    assert s.rtp[1].on_packet(rtp(4), CALLER, 14.0) == CALLEE and s.rtp[1].rem_addr == CALLER


def test_signalled_party_takes_its_stream_back():
    """Before the party sends, the first source takes the stream, as upstream
    (it may be the party behind NAT); a packet from exactly the signalled
    address takes it back at once, even latched and outside any window."""
    s = call()
    assert s.rtp[1].on_packet(rtp(1, 0xBAD), STRANGER, 20.0) == CALLEE
    assert s.rtp[1].rem_addr == STRANGER and s.rtp[1].latched
    assert s.rtp[1].on_packet(rtp(1), CALLER, 40.0) == CALLEE
    assert s.rtp[1].rem_addr == CALLER and s.rtp[1].confirmed and s.rtp[1].ssrc == 0xAAAA
    assert s.rtp[1].on_packet(rtp(2, 0xBAD), STRANGER, 40.1) is None


def test_nat_party_latches_and_rebinds_as_upstream():
    s = call(caller=("10.9.9.9", 4000))
    nat = ("192.0.2.9", 31000)
    assert s.rtp[1].on_packet(rtp(1), nat, 20.0) == CALLEE
    assert s.rtp[1].rem_addr == nat and s.rtp[1].latched and not s.rtp[1].confirmed
    assert s.rtp[1].on_packet(rtp(2, 0xEEEE), STRANGER, 21.0) is None
    assert s.rtp[1].on_packet(rtp(3), ("192.0.2.9", 31002), 22.0) == CALLEE   # rebinding
    assert s.rtp[1].rem_addr == ("192.0.2.9", 31002)


def test_latch_relatch_and_refusals_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="rtpproxy")
    s = call(caller=("10.9.9.9", 4000))
    s.rtp[1].on_packet(rtp(7), ("192.0.2.7", 4000), 20.0)
    s.rtp[1].on_packet(rtp(8), ("192.0.2.7", 4002), 22.0)
    for i in range(1000):
        s.rtp[1].on_packet(rtp(900, 0xEEEE), STRANGER, 23.0 + i * 0.001)
    s.rtp[1].on_packet(rtp(900, 0xEEEE), STRANGER, 40.0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("session cid, tag ft: caller's address latched in: 192.0.2.7:4000 (RTP), "
                        "SSRC=0x0000AAAA, Seq=7")
    assert lines[1] == ("session cid, tag ft: caller's address re-latched: 192.0.2.7:4000 -> "
                        "192.0.2.7:4002 (RTP), reason: same SSRC, sequence continues, "
                        "SSRC=0x0000AAAA, Seq=8")
    refused = [line for line in lines if "refused" in line]
    assert refused == [
        "session cid, tag ft: caller's RTP from 6.6.6.6:1000 refused (latched to 192.0.2.7:4002, "
        "SSRC=0x0000AAAA, Seq=8)",
        "session cid, tag ft: caller's RTP from 6.6.6.6:1000 refused (latched to 192.0.2.7:4002, "
        "SSRC=0x0000AAAA, Seq=8); 999 more refused since the last line"]


def test_strict_refusals_are_logged_and_throttled(caplog):
    caplog.set_level(logging.INFO, logger="rtpproxy")
    s = call()
    s.strict = True
    for i in range(500):
        s.rtp[1].on_packet(rtp(1, 0xBAD), ("6.6.6.%d" % (i % 200), 1000), 1.0 + i * 0.001)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == ["session cid, tag ft: caller's RTP from 6.6.6.0:1000 refused "
                       "(strict latching: not the signalled host 10.0.0.1)"]


def test_end_of_session_summary_per_stream():
    s = call()
    s.rtp[1].set_analyzer(RtpAnalyzer())
    for seq in (1, 2, 4, 5):                 # 3 lost
        s.rtp[1].on_packet(rtp(seq), CALLER, seq * 0.02)
    s.rtp[1].on_packet(rtp(9, 0xEEEE), STRANGER, 0.2)
    s.rtcp[0].on_packet(rtcp(0xBBBB), (CALLEE[0], CALLEE[1] + 1), 0.3)
    assert s.summary() == [
        "session cid, tag ft: callee RTP from 10.0.0.2:5000: received 0, relayed 0, dropped 0",
        "session cid, tag ft: caller RTP from 10.0.0.1:4000: sent 5, received 5, lost 1, "
        "relayed 4, dropped 1",
        "session cid, tag ft: callee RTCP from 10.0.0.2:5001: received 1, relayed 1, dropped 0",
        "session cid, tag ft: caller RTCP from 10.0.0.1:4001: received 0, relayed 0, dropped 0"]
