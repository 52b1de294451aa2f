"""dtls_gw and ice_lite (modules.md 7, 8) with the daemon as a real process:
a WebRTC-style peer (tests/webrtc_peer.py: ICE checks, DTLS-SRTP with
pyOpenSSL + pylibsrtp, rtcp-mux) calls a plain RTP phone through the relay;
a tone goes both ways and must decode with a good SNR."""

import re
import socket
import struct

import numpy as np
import pytest

from audio import snr_db, tone
from helpers import Endpoint, rtp_packet, wait_for
from rtpproxy_py.media.codecs import g711
from rtpproxy_py.modules import stun
from webrtc_peer import WebRtcPeer

HOST = "127.0.0.1"
FP = re.compile(r"^(actpass|active|passive) SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$")


@pytest.fixture
def webrtc_dso(tmp_path):
    paths = []
    for name in ("dtls_gw", "ice_lite"):
        path = tmp_path / ("rtpp_%s.so" % name)
        path.write_bytes(b"")
        paths += ["--dso", str(path)]
    return paths


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
