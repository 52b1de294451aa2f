"""Media through the real daemon: relaying, latching (NAT), asymmetric mode,
RTCP, IPv6 and hold (media-relay.md)."""

import re
import time

import pytest

from helpers import Endpoint, rtp_packet


def setup_call(d, caller, callee, mods_u="", mods_l="", host="127.0.0.1", caller_addr=None):
    """U from the caller, L from the callee; returns (port the caller sends to,
    port the callee sends to)."""
    ca = caller_addr or (caller.host, caller.port)
    u = d.command("U%s call %s %d ftag" % (mods_u, ca[0], ca[1]))
    to_callee = int(u.split()[0])
    l_reply = d.command("L%s call %s %d ftag ttag" % (mods_l, callee.host, callee.port))
    to_caller = int(l_reply.split()[0])
    # U's port goes to the callee, L's port to the caller
    return to_caller, to_callee


def exchange(a, b, host, port_a_sends_to, port_b_sends_to, count=5, ssrc_a=0x1111, ssrc_b=0x2222):
    """a and b send ``count`` packets each; return what each received."""
    got_b, got_a = [], []
    for i in range(count):
        a.send(rtp_packet(i, i * 160, ssrc_a), host, port_a_sends_to)
        data, src = b.recv()
        got_b.append((data, src))
        b.send(rtp_packet(i, i * 160, ssrc_b), host, port_b_sends_to)
        data, src = a.recv()
        got_a.append((data, src))
    return got_a, got_b


def test_relays_both_ways_and_counts(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b)
    got_a, got_b = exchange(a, b, "127.0.0.1", pa, pb, count=10)
    assert [data for data, _ in got_b] == [rtp_packet(i, i * 160, 0x1111) for i in range(10)]
    assert [data for data, _ in got_a] == [rtp_packet(i, i * 160, 0x2222) for i in range(10)]
    # each side sees the relay's port as the source
    assert {src[1] for _, src in got_b} == {pb}
    assert {src[1] for _, src in got_a} == {pa}
    assert d.command("Q call ftag ttag") == "60 10 10 20 0"
    assert d.command("G npkts_rcvd npkts_relayed") == "20 20"
    info = d.command("I").splitlines()
    assert info[3:] == ["packets received: 20", "packets transmitted: 20"]
    assert d.command("D call ftag ttag") == "0"
    a.send(rtp_packet(99), "127.0.0.1", pa)
    assert b.recv(0.3)[0] is None


def test_nat_latches_real_source(rtpproxy):
    """The caller's SDP address is wrong (behind NAT): media from its real
    address is latched and the callee's media goes there."""
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b, caller_addr=("192.0.2.55", 4444))
    # callee talks first: relay sends towards the signalled (wrong) address
    b.send(rtp_packet(0, ssrc=0x2222), "127.0.0.1", pb)
    assert a.recv(0.3)[0] is None
    got_a, got_b = exchange(a, b, "127.0.0.1", pa, pb, count=5)
    assert all(data is not None for data, _ in got_b)
    assert all(data is not None for data, _ in got_a)


def test_latched_source_is_not_stolen(rtpproxy):
    """Once latched, a packet from another address with another SSRC is dropped."""
    d = rtpproxy("-l", "127.0.0.1")
    a, b, evil = Endpoint(), Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b, caller_addr=("192.0.2.55", 4444))
    exchange(a, b, "127.0.0.1", pa, pb, count=3)
    evil.send(rtp_packet(500, ssrc=0x6666), "127.0.0.1", pa)
    assert b.recv(0.3)[0] is None
    b.send(rtp_packet(10, ssrc=0x2222), "127.0.0.1", pb)
    assert evil.recv(0.3)[0] is None
    assert a.recv()[0] == rtp_packet(10, ssrc=0x2222)
    assert d.command("G npkts_discard") == "1"
    # the same SSRC continuing its sequence from a new address (NAT rebinding) re-latches
    a2 = Endpoint()
    a2.send(rtp_packet(3, ssrc=0x1111), "127.0.0.1", pa)
    assert b.recv()[0] == rtp_packet(3, ssrc=0x1111)
    b.send(rtp_packet(11, ssrc=0x2222), "127.0.0.1", pb)
    assert a2.recv()[0] == rtp_packet(11, ssrc=0x2222)


def test_first_packet_latches_when_address_unknown(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    # "0" is too short to be an address: ignored, the caller is learned from media
    u = d.command("U call 0 0 ftag")
    port_u, addr = u.split()
    assert addr == "127.0.0.1"
    pb = int(port_u)
    pa = int(d.command("L call 127.0.0.1 %d ftag ttag" % b.port).split()[0])
    b.send(rtp_packet(0, ssrc=0x2222), "127.0.0.1", pb)
    assert a.recv(0.3)[0] is None          # caller unknown yet: dropped
    a.send(rtp_packet(0, ssrc=0x1111), "127.0.0.1", pa)
    assert b.recv()[0] == rtp_packet(0, ssrc=0x1111)
    b.send(rtp_packet(1, ssrc=0x2222), "127.0.0.1", pb)
    assert a.recv()[0] == rtp_packet(1, ssrc=0x2222)


def test_asymmetric_leg_keeps_signalled_address(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    a_rx = Endpoint()
    # caller asymmetric: it receives on a_rx's port but sends from a's
    pa, pb = setup_call(d, a, b, mods_u="a", caller_addr=("127.0.0.1", a_rx.port))
    a.send(rtp_packet(0, ssrc=0x1111), "127.0.0.1", pa)
    assert b.recv()[0] == rtp_packet(0, ssrc=0x1111)
    b.send(rtp_packet(0, ssrc=0x2222), "127.0.0.1", pb)
    assert a_rx.recv()[0] == rtp_packet(0, ssrc=0x2222)
    assert a.recv(0.3)[0] is None
    # asymmetric accepts any port of the signalled host, never other hosts
    other_host = Endpoint("127.0.0.5")
    other_host.send(rtp_packet(1, ssrc=0x1111), "127.0.0.1", pa)
    assert b.recv(0.3)[0] is None


def test_fresh_ports_of_a_latched_call_relay_at_once(rtpproxy):
    """``n`` (media-relay.md 3.4) on a call whose parties are latched (and, when
    it is built, relayed by the compiled fast path): the leg's new port pair
    relays both ways at once, what goes to the party leaves from it, and the
    old pair is closed. (U and L set up the new sockets' readers once the
    command is done: a leg left without them would be silent.)"""
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b)
    exchange(a, b, "127.0.0.1", pa, pb, count=10)
    for command, ssrcs in (("Un call 127.0.0.1 %d ftag ttag" % a.port, (0x3333, 0x4444)),
                           ("Ln call 127.0.0.1 %d ftag ttag" % b.port, (0x5555, 0x6666))):
        fresh = int(d.command(command).split()[0])
        old, (pa, pb) = (pb, (pa, fresh)) if command[0] == "U" else (pa, (fresh, pb))
        assert fresh != old
        got_a, got_b = exchange(a, b, "127.0.0.1", pa, pb, count=5, ssrc_a=ssrcs[0], ssrc_b=ssrcs[1])
        assert got_b == [(rtp_packet(i, i * 160, ssrcs[0]), ("127.0.0.1", pb)) for i in range(5)], command
        assert got_a == [(rtp_packet(i, i * 160, ssrcs[1]), ("127.0.0.1", pa)) for i in range(5)], command
        (a if command[0] == "L" else b).send(rtp_packet(99), "127.0.0.1", old)
        assert a.recv(0.2)[0] is None and b.recv(0.05)[0] is None, command
    assert d.command("Q call ftag ttag npkts_ina npkts_ino nrelayed ndropped") == "20 20 40 0"


def test_rtcp_on_the_odd_port(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    a_rtcp, b_rtcp = Endpoint(port=a.port + 1 if a.port < 65535 else 0), None
    b_rtcp = Endpoint(port=b.port + 1)
    pa, pb = setup_call(d, a, b)
    report = b"\x81\xc8\x00\x06" + b"\x00" * 24
    a_rtcp.send(report, "127.0.0.1", pa + 1)
    data, src = b_rtcp.recv()
    assert data == report and src[1] == pb + 1
    b_rtcp.send(report, "127.0.0.1", pb + 1)
    data, src = a_rtcp.recv()
    assert data == report and src[1] == pa + 1
    # RTCP counts in G but not in the RTP counters of Q
    assert d.command("Q call ftag ttag") == "60 0 0 0 0"
    assert d.command("G npkts_rcvd npkts_relayed") == "2 2"


def test_ipv6(rtpproxy):
    d = rtpproxy("-6", "::1")
    a, b = Endpoint("::1"), Endpoint("::1")
    u = d.command("U6 call ::1 %d ftag" % a.port)
    port_u, addr, six = u.split()
    assert (addr, six) == ("::1", "6")
    l_reply = d.command("L6 call ::1 %d ftag ttag" % b.port)
    pa, pb = int(l_reply.split()[0]), int(port_u)
    got_a, got_b = exchange(a, b, "::1", pa, pb, count=3)
    assert [x for x, _ in got_b] == [rtp_packet(i, i * 160, 0x1111) for i in range(3)]
    assert [x for x, _ in got_a] == [rtp_packet(i, i * 160, 0x2222) for i in range(3)]


def test_hold_and_unhold(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b)
    exchange(a, b, "127.0.0.1", pa, pb, count=2)
    # re-INVITE to hold: the caller's SDP carries 0.0.0.0; nothing is torn down
    assert d.command("U call 0.0.0.0 %d ftag ttag" % a.port).split()[0] == str(pb)
    assert d.command("L call 127.0.0.1 %d ftag ttag" % b.port).split()[0] == str(pa)
    got_a, got_b = exchange(a, b, "127.0.0.1", pa, pb, count=2)
    assert all(x is not None for x, _ in got_a + got_b)
    # unhold
    assert d.command("U call 127.0.0.1 %d ftag ttag" % a.port).split()[0] == str(pb)
    got_a, got_b = exchange(a, b, "127.0.0.1", pa, pb, count=2)
    assert all(x is not None for x, _ in got_a + got_b)


def test_media_before_answer_is_dropped_then_flows(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    u = d.command("U call 127.0.0.1 %d ftag" % a.port)
    pb = int(u.split()[0])
    # early media from the callee (it got the offer): relayed to the known caller?
    # stream 1 (caller side) has no socket before L, so nothing can be sent yet.
    b.send(rtp_packet(0, ssrc=0x2222), "127.0.0.1", pb)
    assert a.recv(0.3)[0] is None
    assert d.command("Q call ftag") == "60 0 1 0 1"
    l_reply = d.command("L call 127.0.0.1 %d ftag ttag" % b.port)
    pa = int(l_reply.split()[0])
    got_a, got_b = exchange(a, b, "127.0.0.1", pa, pb, count=2)
    assert all(x is not None for x, _ in got_a + got_b)


def test_duplicate_small_packets(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", "-2")
    a, b = Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b)
    a.send(rtp_packet(0, payload=b"x" * 20), "127.0.0.1", pa)
    assert len(b.drain(0.3)) == 2
    a.send(rtp_packet(1, payload=b"x" * 160), "127.0.0.1", pa)
    assert len(b.drain(0.3)) == 1


@pytest.mark.parametrize("mode", [[], ["--latching", "strict"]])
def test_odd_datagrams_from_the_latched_party_are_relayed_whole(rtpproxy, mode):
    """The relay is transparent for an accepted source: empty and runt
    datagrams, non-RTP, RTCP on the RTP port and datagrams up to the UDP
    maximum (far over any MTU, and over the 8 KiB older buffers truncated to)
    arrive unchanged, in both latching modes."""
    d = rtpproxy("-l", "127.0.0.1", *mode)
    a, b = Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b)
    exchange(a, b, "127.0.0.1", pa, pb, count=2)          # both latched
    for data in (b"", b"\x80", b"GET / HTTP/1.0\r\n\r\n", b"\x81\xc9\x00\x01" + b"\x00" * 4,
                 rtp_packet(7, payload=b"\x55" * 1400), rtp_packet(8, payload=b"\x66" * 20000),
                 rtp_packet(9, payload=b"\x77" * (65507 - 12))):
        a.send(data, "127.0.0.1", pa)
        assert b.recv()[0] == data, len(data)
        b.send(data, "127.0.0.1", pb)
        assert a.recv()[0] == data, len(data)


def test_burst_at_latch_time_stays_in_order(rtpproxy):
    """The first packets of a party arrive before its stream is latched and
    queue on the main socket; once latched, new ones go to the connected twin.
    None may overtake the queued ones."""
    d = rtpproxy("-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    a.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 1 << 20)
    for call in range(5):
        pb = int(d.command("U c%d 127.0.0.1 %d ft" % (call, a.port)).split()[0])
        assert d.command("L c%d 127.0.0.1 %d ft tt" % (call, b.port)).split()[0].isdigit()
        for i in range(600):
            b.send(rtp_packet(i, i * 160, 0x2222), "127.0.0.1", pb)
            if i % 20 == 19:
                time.sleep(0.0005)      # keep packets coming while the relay latches
        got = [data for data, _ in a.drain(0.5)]
        seqs = [int.from_bytes(p[2:4], "big") for p in got]
        assert seqs == sorted(seqs), "reordered at latch time: %s" % seqs[:60]
        assert len(seqs) >= 590
        d.command("D c%d ft" % call)


def test_asymmetric_party_from_another_port_is_counted_once(rtpproxy):
    """Issue 14: an asymmetric caller (`Ua`) sending from another port of its
    signalled host: relayed, and counted once, on its own leg, as upstream."""
    d = rtpproxy("-l", "127.0.0.1")
    a, b, a_other_port = Endpoint(), Endpoint(), Endpoint()
    pa, pb = setup_call(d, a, b, mods_u="a")
    for i in range(2):
        a_other_port.send(rtp_packet(i, ssrc=0x1111), "127.0.0.1", pa)
        assert b.recv()[0] == rtp_packet(i, ssrc=0x1111)
    assert d.command("Qv call ftag ttag") == "ttl=60 npkts_ina=2 npkts_ino=0 nrelayed=2 ndropped=0"
    assert d.command("G npkts_rcvd npkts_relayed npkts_discard") == "2 2 0"


def test_latches_and_the_end_of_a_session_are_logged(rtpproxy):
    """Issue 15: at INFO, each latch with its SSRC and sequence number, each
    refused source, and one line per stream when the session ends."""
    d = rtpproxy("-l", "127.0.0.1", "-d", "INFO")
    a, b, evil = Endpoint(), Endpoint(), Endpoint("127.0.0.9")
    pa, pb = setup_call(d, a, b)
    exchange(a, b, "127.0.0.1", pa, pb, count=3)
    evil.send(rtp_packet(500, ssrc=0x6666), "127.0.0.1", pa)
    assert b.recv(0.3)[0] is None
    assert d.command("D call ftag ttag") == "0"
    log = d.log()
    assert ("session call, tag ftag: caller's address latched in: 127.0.0.1:%d (RTP), "
            "SSRC=0x00001111, Seq=0" % a.port) in log
    assert ("session call, tag ftag: callee's address latched in: 127.0.0.1:%d (RTP), "
            "SSRC=0x00002222, Seq=0" % b.port) in log
    assert ("session call, tag ftag: caller's RTP from 127.0.0.9:%d refused (the party sends "
            "from its signalled address 127.0.0.1:%d)" % (evil.port, a.port)) in log
    # (sent and lost come from RTP analysis, when it is on)
    pattern = (r"session call, tag ftag: caller RTP from 127\.0\.0\.1:%d: (sent 3, )?received 4, "
               r"(lost 0, )?relayed 3, dropped 1\n" % a.port)
    assert re.search(pattern, log), log
    for who, kind in (("callee", "RTP"), ("caller", "RTCP"), ("callee", "RTCP")):
        assert "session call, tag ftag: %s %s from 127.0.0.1:" % (who, kind) in log
