"""dtls_gw and ice_lite (modules.md 7, 8) with the daemon as a real process:
a WebRTC-style peer (tests/webrtc_peer.py: ICE checks, DTLS-SRTP with
pyOpenSSL + pylibsrtp, rtcp-mux) calls a plain RTP phone through the relay;
a tone goes both ways and must decode with a good SNR."""

import os
import re
import struct
import sys

import numpy as np
import pytest

from audio import snr_db, tone
from helpers import Endpoint, rtp_packet, wait_for
from rtpproxy_py.media.codecs import g711
from rtpproxy_py.modules import stun
from webrtc_peer import WebRtcPeer

HOST = "127.0.0.1"
FP = re.compile(r"^(actpass|active|passive) SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$")


def webrtc_dso_paths(directory):
    """``--dso`` arguments loading dtls_gw and ice_lite (marker files in ``directory``)."""
    paths = []
    for name in ("dtls_gw", "ice_lite"):
        path = os.path.join(str(directory), "rtpp_%s.so" % name)
        open(path, "wb").close()
        paths += ["--dso", path]
    return paths


@pytest.fixture
def webrtc_dso(tmp_path):
    return webrtc_dso_paths(tmp_path)


def rtcp_sr(ssrc):
    """A sender report without report blocks."""
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 0, 0, 0, 0, 0)


def ulaw_packets(samples, ssrc, pt=0):
    payload = g711.ulaw_encode(samples)
    return [rtp_packet(n, n * 160, ssrc, pt, payload[n * 160:(n + 1) * 160])
            for n in range(len(payload) // 160)]


def decode_ulaw(packets):
    body = b"".join(p[12:] for p in sorted(packets, key=lambda p: struct.unpack_from("!H", p, 2)[0]))
    return g711.ulaw_decode(body).astype(np.int16)


def setup_call(d, peer, phone, peer_role, fingerprint=None):
    """Offer from the WebRTC peer (stream 1), answer from the phone (stream 0).
    Returns (port the peer talks to, ICE ufrag, ICE pwd, relay fingerprint)."""
    fingerprint = fingerprint or peer.fingerprint
    mode = "A" if peer_role == "active" else "P"
    reply = d.command("U wcall %s %d ftag && M5:1 A %s %s && M5:1 C %s && M4:1 %s SHA-256 %s" % (
        HOST, peer.address[1], peer.ufrag, peer.pwd, peer.candidate(), mode, fingerprint))
    phone_port = int(reply.split()[0])
    assert reply == "%d %s" % (phone_port, HOST)       # silent successes add nothing
    reply = d.command("L wcall %s %d ftag ttag && M5:1 S && M4:1 S" % (HOST, phone.port))
    port_host, ice, dtls = reply.split(" && ")
    port = port_host.split()[0]
    ufrag, pwd, cand = ice.split()
    assert len(ufrag) == len(peer.ufrag) and len(pwd) == len(peer.pwd)     # A set the lengths
    assert cand == "c:7f000001%%201%%20UDP%%202113929471%%20127.0.0.1%%20%s%%20typ%%20host" % port
    match = FP.match(dtls)
    assert match, dtls
    assert match.group(1) == ("passive" if peer_role == "active" else "active")
    return int(port), phone_port, ufrag, pwd, match.group(2)


@pytest.mark.parametrize("peer_role", ["active", "passive"])
def test_webrtc_peer_and_plain_phone_hear_each_other(rtpproxy, webrtc_dso, peer_role):
    d = rtpproxy("-l", HOST, *webrtc_dso)
    peer, phone = WebRtcPeer(), Endpoint()
    try:
        port, phone_port, ufrag, pwd, relay_fp = setup_call(d, peer, phone, peer_role)
        relay = (HOST, port)
        answer = peer.check(relay, ufrag, pwd)
        assert answer is not None and answer.msg_type == stun.BINDING_SUCCESS
        assert answer.integrity_ok(pwd.encode()) and answer.fingerprint_ok
        assert stun.read_xor_address(answer.get(stun.XOR_MAPPED_ADDRESS), answer.transaction) == peer.address
        peer.handshake(relay, client=peer_role == "active")
        assert peer.relay_fingerprint == relay_fp
        assert peer.profile == b"SRTP_AES128_CM_SHA1_80"

        reference = tone(1.0, freq=440.0)
        from_peer = ulaw_packets(reference, 0x5EED)
        from_phone = ulaw_packets(tone(1.0, freq=620.0), 0xF00D)
        for packet in from_peer:
            peer.send_rtp(packet)
        got = [data for data, _ in phone.drain(0.5)]
        assert len(got) == len(from_peer) and all(len(p) == 172 for p in got)
        assert snr_db(reference, decode_ulaw(got)) > 30

        for packet in from_phone:
            phone.send(packet, HOST, phone_port)
        heard = []
        while True:
            item = peer.receive(0.5)
            if item is None:
                break
            assert item[0] is False
            heard.append(item[1])
        assert len(heard) == len(from_phone)
        assert snr_db(tone(1.0, freq=620.0), decode_ulaw(heard)) > 30

        # rtcp-mux: SRTCP on the peer's one port reaches the phone's RTCP port
        # as plain RTCP, and the phone's RTCP comes back muxed and encrypted
        rtcp_phone = Endpoint(port=phone.port + 1)
        try:
            peer.send_rtcp(rtcp_sr(0x5EED))
            data, _ = rtcp_phone.recv(2.0)
            assert data == rtcp_sr(0x5EED)
            rtcp_phone.send(rtcp_sr(0xF00D), HOST, phone_port + 1)
            item = peer.receive(2.0)
            assert item == (True, rtcp_sr(0xF00D))
        finally:
            rtcp_phone.close()
        stats = d.command("Qv wcall ftag ttag npkts_ina npkts_ino nrelayed ndropped")
        assert stats == "npkts_ina=%d npkts_ino=%d nrelayed=%d ndropped=0" % (
            len(from_peer), len(from_phone), len(from_peer) + len(from_phone))
    finally:
        peer.close()
        phone.close()


def error_of(answer):
    assert answer is not None and answer.msg_type == stun.BINDING_ERROR
    return stun.read_error_code(answer.get(stun.ERROR_CODE))


def test_ice_answers_errors_and_completes_only_with_a_signalled_candidate(rtpproxy, webrtc_dso):
    d = rtpproxy("-l", HOST, *webrtc_dso)
    peer, phone = WebRtcPeer(), Endpoint()
    try:
        d.command("U icall %s %d ftag && M5:1 A %s %s" % (HOST, peer.address[1], peer.ufrag, peer.pwd))
        reply = d.command("L icall %s %d ftag ttag && M5:1 S" % (HOST, phone.port))
        port_host, ice = reply.split(" && ")
        relay, (ufrag, pwd, _) = (HOST, int(port_host.split()[0])), ice.split()
        assert reply == d.command("L icall %s %d ftag ttag && M5:1 S" % (HOST, phone.port))   # same values
        assert error_of(peer.check(relay, ufrag, pwd, integrity=False)) == 400
        assert error_of(peer.check(relay, ufrag, "x" * 24)) == 401
        assert error_of(peer.check(relay, ufrag, pwd, username="%s:other" % ufrag)) == 401
        answer = peer.check(relay, ufrag, pwd, role=stun.ICE_CONTROLLED)
        assert error_of(answer) == 487 and answer.integrity_ok(pwd.encode())
        assert peer.check(relay, ufrag, pwd, fingerprint=False, timeout=0.5) is None

        def media_flows():
            peer.sock.sendto(rtp_packet(1, ssrc=0xAB), relay)
            data, _ = phone.recv(0.5)
            return data == rtp_packet(1, ssrc=0xAB)

        # a nominating check from an address the peer never signalled: answered, not completed
        assert peer.check(relay, ufrag, pwd).msg_type == stun.BINDING_SUCCESS
        assert not media_flows()
        d.command("U icall %s %d ftag && M5:1 C %s" % (HOST, peer.address[1], peer.candidate()))
        assert peer.check(relay, ufrag, pwd, use_candidate=False).msg_type == stun.BINDING_SUCCESS
        assert not media_flows()          # no USE-CANDIDATE: still not complete
        assert peer.check(relay, ufrag, pwd).msg_type == stun.BINDING_SUCCESS
        assert media_flows()
        # detached: STUN is not answered any more, media relayed as usual
        assert d.command("U icall %s %d ftag && M5:1 D" % (HOST, peer.address[1])).endswith(" && 0") is False
        assert peer.check(relay, ufrag, pwd, timeout=0.3) is None
        assert stun.is_stun(phone.recv(0.5)[0])      # now it is just a packet to relay
        assert media_flows()
        assert d.command("U icall %s %d ftag && M5:1 D" % (HOST, peer.address[1])).endswith(" && -1")
    finally:
        peer.close()
        phone.close()


@pytest.mark.parametrize("fingerprint, flows", [("lower", True), ("wrong", False)])
def test_dtls_fingerprint_check_without_ice(rtpproxy, webrtc_dso, fingerprint, flows):
    """Lower case is accepted (the reference drops the media; README says why
    we do not); a certificate that is not the one signalled gets no media."""
    d = rtpproxy("-l", HOST, *webrtc_dso)
    peer, phone = WebRtcPeer(), Endpoint()
    try:
        given = peer.fingerprint.lower() if fingerprint == "lower" else WebRtcPeer().fingerprint
        d.command("U fcall %s %d ftag && M4:1 A SHA-256 %s" % (HOST, peer.address[1], given))
        reply = d.command("L fcall %s %d ftag ttag && M4:1 S" % (HOST, phone.port))
        port = int(reply.split()[0])
        assert reply.endswith(" && passive SHA-256 " + reply.split()[-1])
        peer.handshake((HOST, port), client=True)      # completes for the peer either way
        for n in range(5):
            peer.send_rtp(rtp_packet(n, ssrc=0xCD))
        got = [data for data, _ in phone.drain(0.4)]
        assert got == ([rtp_packet(n, ssrc=0xCD) for n in range(5)] if flows else [])
        stats = d.command("Qv fcall ftag ttag nrelayed ndropped")
        assert stats == ("nrelayed=5 ndropped=0" if flows else "nrelayed=0 ndropped=5")
    finally:
        peer.close()
        phone.close()


def test_subcommand_replies(rtpproxy, webrtc_dso):
    d = rtpproxy("-l", HOST, *webrtc_dso)
    fp = WebRtcPeer().fingerprint
    u = "U vcall %s 4000 ftag && " % HOST
    port = d.command(u + "M4:1 S").split()[0]
    ok, fail = "%s %s" % (port, HOST), "%s %s && -1" % (port, HOST)
    for args, expect in (
            ("M4:1 D", fail),                     # nothing on the addressed stream yet
            ("M4:1 A SHA-1 %s" % fp, fail), ("M4:1 A SHA-256 %s" % fp[:-1], fail),
            ("M4:1 A SHA-256 %s 12x" % fp, fail), ("M4:1 A", fail), ("M4:1 S x", fail),
            ("M4:1 A sha-256 %s 4294967297" % fp, ok),
            ("M4:1 D", ok), ("M4:1 D", fail),
            ("M5:1 C 1 1 UDP 1 127.0.0.1 5 typ host", fail),      # no agent yet
            ("M5:1 A abc %s" % ("p" * 22), fail), ("M5:1 A abcd %s" % ("p" * 21), fail),
            ("M5:1 A abcd %s" % ("p" * 22), ok),
            ("M5:1 C 1 1 UDP 1 127.0.0.1 5 type host", fail), ("M5:1 C 1 1 TCP 1 127.0.0.1 5 typ host", fail),
            ("M5:1 C 1 1 UDP 1 example.com 5 typ host", fail), ("M5:1 C 1 1 UDP 1 127.0.0.1 5 typ", fail),
            ("M5:1 C 1 1 udp 1 ::1 5 TYP srflx raddr 1.2.3.4 rport 9", ok),
            ("M5:1 D", ok), ("M5:1 D", fail), ("M5:1", fail)):
        assert d.command(u + args) == expect, args
    assert re.match(r"^%s && actpass SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$" % port,
                    d.command(u + "M4:1 S").replace(" " + HOST, "", 1))
    # P needs the peer's address; then the role is fixed once the handshake started
    assert d.command("U hcall 0.0.0.0 4000 ftag && M4:1 P SHA-256 %s" % fp).endswith(" && -1")
    assert d.command("U pcall %s 4000 ftag && M4:1 P SHA-256 %s" % (HOST, fp)) == \
        d.command("U pcall %s 4000 ftag" % HOST)
    assert d.command("U pcall %s 4000 ftag && M4:1 A SHA-256 %s" % (HOST, fp)).endswith(" && -1")
    # P on the creating U gave the caller's leg its port: the later L returns it, with "active"
    assert re.match(r"^\d+ %s && active SHA-256 " % HOST, d.command("L pcall %s 4002 ftag ttag && M4:1 S" % HOST))


def test_three_relays_two_dtls_gateways_around_a_plain_forwarder(rtpproxy, webrtc_dso):
    """Like upstream's dtls_gw/basic: phone A - relay 1 (plain -> DTLS) - relay 2
    (forwards SRTP untouched) - relay 3 (DTLS -> plain) - phone B; relay 1 is
    the DTLS client, relay 3 the server."""
    r1, r2, r3 = (rtpproxy("-l", HOST, *webrtc_dso), rtpproxy("-l", HOST), rtpproxy("-l", HOST, *webrtc_dso))
    phone_a, phone_b = Endpoint(), Endpoint()
    try:
        def port(reply):
            return int(reply.split()[0])
        reply = r1.command("U g1 %s %d ftag && M4:1 S" % (HOST, phone_a.port))
        r1_0, offer = port(reply), reply.split(" && ")[1]
        assert FP.match(offer).group(1) == "actpass"
        r2_0 = port(r2.command("U g2 %s %d ftag" % (HOST, r1_0)))
        r3_0 = port(r3.command("U g3 %s %d ftag && M4:1 A %s" % (HOST, r2_0, offer.split(" ", 1)[1])))
        reply = r3.command("L g3 %s %d ftag ttag && M4:1 S" % (HOST, phone_b.port))
        r3_1, answer = port(reply), reply.split(" && ")[1]
        assert FP.match(answer).group(1) == "passive"
        r2_1 = port(r2.command("L g2 %s %d ftag ttag" % (HOST, r3_1)))
        r1_1 = port(r1.command("L g1 %s %d ftag ttag && M4:1 P %s" % (HOST, r2_1, answer.split(" ", 1)[1])))

        a_tone, b_tone = tone(1.0, freq=500.0), tone(1.0, freq=700.0)
        from_a, from_b = ulaw_packets(a_tone, 0xA1), ulaw_packets(b_tone, 0xB1)

        probe = [0]

        def a_reaches_b():      # probes of their own SSRC: SRTP's replay check drops repeats
            probe[0] += 1
            packet = rtp_packet(probe[0], ssrc=0xAA)
            phone_a.send(packet, HOST, r1_1)
            data, _ = phone_b.recv(0.2)
            return data == packet
        assert wait_for(a_reaches_b, timeout=8.0), "no media through the DTLS gateways"   # the handshake runs through relay 2
        phone_b.drain(0.2)
        for packet in from_a:
            phone_a.send(packet, HOST, r1_1)
        heard_b = [data for data, _ in phone_b.drain(0.5)]
        for packet in from_b:
            phone_b.send(packet, HOST, r3_0)
        heard_a = [data for data, _ in phone_a.drain(0.5)]
        assert len(heard_b) == len(from_a) and len(heard_a) == len(from_b)
        assert snr_db(a_tone, decode_ulaw(heard_b)) > 30
        assert snr_db(b_tone, decode_ulaw(heard_a)) > 30
        stats = r2.command("Qv g2 ftag ttag nrelayed ndropped")
        assert stats.endswith(" ndropped=0")
        # only probes sent before the handshake ended were dropped (by relay 1)
        dropped = r1.command("Qv g1 ftag ttag ndropped")
        assert int(dropped.split("=")[1]) < probe[0]
        assert r3.command("Qv g3 ftag ttag ndropped") == "ndropped=0"
    finally:
        phone_a.close()
        phone_b.close()


@pytest.mark.parametrize("profile", [b"SRTP_AES128_CM_SHA1_32", b"SRTP_AEAD_AES_128_GCM",
                                     b"SRTP_AEAD_AES_256_GCM"])
def test_every_srtp_profile_upstream_offers(rtpproxy, webrtc_dso, profile):
    """(AES128_CM_SHA1_80 is the one the tests above use.)"""
    d = rtpproxy("-l", HOST, *webrtc_dso)
    peer, phone = WebRtcPeer(profiles=profile), Endpoint()
    try:
        phone_port = int(d.command("U pcall %s %d ftag && M4:1 A SHA-256 %s" % (
            HOST, peer.address[1], peer.fingerprint)).split()[0])
        port = int(d.command("L pcall %s %d ftag ttag && M4:1 S" % (HOST, phone.port)).split()[0])
        peer.handshake((HOST, port), client=True)
        assert peer.profile == profile
        peer.send_rtp(rtp_packet(1, ssrc=0x11))
        assert phone.recv(2.0)[0] == rtp_packet(1, ssrc=0x11)
        phone.send(rtp_packet(7, ssrc=0x22), HOST, phone_port)
        assert peer.receive(2.0) == (False, rtp_packet(7, ssrc=0x22))
    finally:
        peer.close()
        phone.close()


def test_dtls_flights_are_retransmitted(rtpproxy, webrtc_dso):
    """The relay as DTLS client: its ClientHello goes at once to the peer's
    address and again when no answer comes (the session greenlet's timer)."""
    d = rtpproxy("-l", HOST, *webrtc_dso)
    silent = Endpoint()
    try:
        fp = WebRtcPeer().fingerprint
        reply = d.command("U rcall %s %d ftag && M4:1 P SHA-256 %s" % (HOST, silent.port, fp))
        assert reply == "%s %s" % (reply.split()[0], HOST)
        first, source = silent.recv(2.0)
        assert first is not None and first[0] == 22 and first[13] == 1      # handshake, ClientHello
        again, source_again = silent.recv(3.0)
        assert again is not None and again[0] == 22 and again[13] == 1 and source_again == source
        # the port it came from is the caller's leg, allocated by P: the L returns it
        assert d.command("L rcall %s 4000 ftag ttag" % HOST).split()[0] == str(source[1])
    finally:
        silent.close()


def test_debug_build_leaves_nothing_after_a_webrtc_call(rtpproxy, tmp_path):
    """rtpproxy_debug with the _debug modules (as upstream's dtls_gw/basic):
    after an ICE + DTLS-SRTP call is deleted, the leak report is all clear."""
    args = []
    for name in ("dtls_gw", "ice_lite"):
        path = tmp_path / ("rtpp_%s_debug.so" % name)
        path.write_bytes(b"")
        args += ["--dso", str(path)]
    debug = [os.path.join(os.path.dirname(sys.executable), "rtpproxy_debug")]
    d = rtpproxy("-l", HOST, *args, command=debug, env={"RTPP_PROFILE": "off"})
    peer, phone = WebRtcPeer(), Endpoint()
    try:
        port, phone_port, ufrag, pwd, _ = setup_call(d, peer, phone, "active")
        assert peer.check((HOST, port), ufrag, pwd).msg_type == stun.BINDING_SUCCESS
        peer.handshake((HOST, port), client=True)
        peer.send_rtp(rtp_packet(1, ssrc=0x31))
        assert phone.recv(2.0)[0] == rtp_packet(1, ssrc=0x31)
        assert d.command("D wcall ftag ttag") == "0"
    finally:
        peer.close()
        phone.close()
    assert d.stop() == 0
    assert "leak report: all clear (sessions 0, ports 0, sockets 0, greenlets 0, fds 0)" in d.log(), d.log()
