"""dtls_gw + ice_lite against a real WebRTC stack: aiortc (full ICE agent
aioice, DTLS-SRTP, rtcp-mux, BUNDLE) offers a call with a G.711 tone track,
the daemon (a real process) answers for a plain RTP phone; the proxy's part
(the U/L with module sub-commands, the SDP answer built from their replies)
is done by the test. The tone must arrive at the phone, and the phone's tone
at aiortc's track, with a good SNR."""

import asyncio
import fractions
import re
from urllib.parse import unquote

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame

import aioice.ice
from audio import snr_db, tone
from helpers import Endpoint
from test_modules_webrtc import decode_ulaw, ulaw_packets, webrtc_dso_paths

HOST = "127.0.0.1"


class ToneTrack(AudioStreamTrack):
    """20 ms frames of ``samples`` (8 kHz mono), paced as aiortc expects."""

    def __init__(self, samples):
        super().__init__()
        self.samples = samples
        self.offset = 0

    async def recv(self):
        frame = await super().recv()          # pacing and timestamps of the base track
        chunk = self.samples[self.offset:self.offset + 160]
        self.offset += 160
        if len(chunk) < 160:
            chunk = np.zeros(160, dtype=np.int16)
        out = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate, out.pts, out.time_base = 8000, frame.pts, fractions.Fraction(1, 8000)
        return out


def sdp_value(sdp, key):
    match = re.search(r"^a=%s:(.*)$" % re.escape(key), sdp, re.M)
    return match.group(1).strip()


def answer_sdp(port, ufrag, pwd, candidate, mode, fingerprint):
    return "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 %s" % HOST, "s=-", "t=0 0", "a=group:BUNDLE 0", "a=ice-lite",
        "m=audio %d UDP/TLS/RTP/SAVPF 0" % port, "c=IN IP4 %s" % HOST,
        "a=mid:0", "a=sendrecv", "a=rtcp-mux", "a=rtpmap:0 PCMU/8000",
        "a=ice-ufrag:%s" % ufrag, "a=ice-pwd:%s" % pwd,
        "a=fingerprint:sha-256 %s" % fingerprint, "a=setup:%s" % mode,
        "a=candidate:%s" % candidate, "a=end-of-candidates", ""])


async def webrtc_call(d, phone, sent_tone, phone_tone):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    heard = []
    got_track = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        async def collect():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                heard.append(frame.to_ndarray().reshape(-1).astype(np.int16))
        asyncio.ensure_future(collect())
        got_track.set()

    transceiver = pc.addTransceiver(ToneTrack(sent_tone), direction="sendrecv")
    transceiver.setCodecPreferences([c for c in transceiver.sender.getCapabilities("audio").codecs
                                     if c.mimeType == "audio/PCMU"])
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    m_port = int(re.search(r"^m=audio (\d+) ", offer, re.M).group(1))
    candidates = [line[len("a=candidate:"):] for line in offer.splitlines()
                  if line.startswith("a=candidate:") and " 1 udp " in line.lower()]
    fp = sdp_value(offer, "fingerprint").split()[1]
    subs = " && ".join(["M5:1 A %s %s" % (sdp_value(offer, "ice-ufrag"), sdp_value(offer, "ice-pwd"))]
                       + ["M5:1 C %s" % c for c in candidates] + ["M4:1 A SHA-256 %s" % fp])
    reply = d.command("U acall %s %d ftag && %s" % (HOST, m_port, subs))
    phone_port = int(reply.split()[0])
    reply = d.command("L acall %s %d ftag ttag && M5:1 S && M4:1 S" % (HOST, phone.port))
    port_host, ice, dtls = reply.split(" && ")
    ufrag, pwd, cand = ice.split()
    mode, _, relay_fp = dtls.split()
    await pc.setRemoteDescription(RTCSessionDescription(
        answer_sdp(int(port_host.split()[0]), ufrag, pwd, unquote(cand[2:]), mode, relay_fp), "answer"))
    for _ in range(100):
        if pc.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    assert pc.connectionState == "connected", pc.connectionState
    await asyncio.wait_for(got_track.wait(), 5)
    # the phone talks while aiortc's tone is still playing
    for packet in ulaw_packets(phone_tone, 0xF0F0):
        phone.send(packet, HOST, phone_port)
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)
    await pc.close()
    return heard


def test_aiortc_offers_and_hears_a_plain_phone(rtpproxy, monkeypatch, tmp_path):
    # aioice leaves 127.0.0.1 out of its host candidates; the test keeps all
    # traffic on the loopback interface
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [HOST])
    d = rtpproxy("-l", HOST, *webrtc_dso_paths(tmp_path))
    phone = Endpoint()
    try:
        sent_tone, phone_tone = tone(3.0, freq=440.0), tone(2.0, freq=660.0)
        heard = asyncio.run(webrtc_call(d, phone, sent_tone, phone_tone))
        packets = [data for data, _ in phone.drain(0.5)]
        assert len(packets) >= 100 and {p[1] & 0x7F for p in packets} == {0}
        at_phone = decode_ulaw(packets)
        assert snr_db(sent_tone[:len(at_phone)][:8000], at_phone[:8000 + 400], max_lag=400) > 25
        got = np.concatenate(heard) if heard else np.zeros(0, dtype=np.int16)
        assert len(got) >= 8000
        # the frames that carried the phone's tone (aiortc outputs silence until then)
        start = int(np.argmax(np.abs(got) > 1000))
        assert snr_db(phone_tone[:8000], got[start:start + 8400], max_lag=400) > 25
    finally:
        phone.close()
