"""Re-packetization (``z``) through the real daemon: real encoded audio sent
at 10, 20 and 30 ms packet times comes out at the requested packet time,
decodes to exactly the audio that went in, and is paced in real time
(playback-and-resizing.md Part B)."""

import socket
import struct
import time

import numpy as np
import pytest

from audio import chirp
from helpers import Endpoint, rtp_packet
from rtpproxy_py.media import rtp
from rtpproxy_py.media.codecs import get_codec, payload_samples

HOST = "127.0.0.1"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def encode(pt, seconds):
    audio = chirp(seconds)
    return get_codec(pt).encode(audio[:len(audio) // 160 * 160]), len(audio) // 160 * 160


def packets_of(pt, payload, total, ptime_ms, seq0=30000, ts0=4000000, ssrc=0x51):
    per = ptime_ms * 8
    ratio = len(payload) / total
    return [rtp.build(pt, seq0 + k, ts0 + k * per, ssrc,
                      payload[round(k * per * ratio):round((k + 1) * per * ratio)], marker=k == 0)
            for k in range(total // per)]


def send_paced(endpoint, port, packets, ptime_ms):
    start = time.monotonic() + 0.02
    for k, packet in enumerate(packets):
        pause = start + k * ptime_ms / 1000.0 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        endpoint.send(packet, HOST, port)


def receive_stamped(endpoint, quiet=0.4):
    """Everything queued on the endpoint, with the kernel's receive times."""
    sock = endpoint.sock
    got = []
    sock.settimeout(quiet)
    while True:
        try:
            data, anc, _, _ = sock.recvmsg(65535, 256)
        except socket.timeout:
            return got
        stamp = None
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                stamp = sec + nsec / 1e9
        got.append((stamp, data))


def payload(packet):
    h = rtp.parse(packet)
    return packet[h.payload_offset:h.payload_end]


CASES = [(0, 10, 30), (8, 30, 10), (18, 20, 30), (9, 30, 20), (3, 20, 60), (0, 20, 10)]


@pytest.mark.parametrize("pt,in_ms,z", CASES)
def test_real_audio_is_reframed_and_paced(rtpproxy, pt, in_ms, z):
    d = rtpproxy("-l", HOST)
    caller, callee = Endpoint(), Endpoint()
    callee.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    callee.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    d.command("Uz%d c %s %d ft" % (z, HOST, caller.port))
    to_caller = int(d.command("L c %s %d ft tt" % (HOST, callee.port)).split()[0])
    encoded, total = encode(pt, 0.96)
    sent = packets_of(pt, encoded, total, in_ms)
    send_paced(caller, to_caller, sent, in_ms)
    got = receive_stamped(callee)
    out = [data for _, data in got]
    headers = [rtp.parse(p) for p in out]
    unit = 160 if pt == 3 else 80
    target = -(-z * 8 // unit) * unit
    samples = [payload_samples(pt, payload(p)) for p in out]
    assert samples[:-1] == [target] * (len(out) - 1) and 0 < samples[-1] <= target
    assert sum(samples) == total
    assert [h.ts for h in headers] == [4000000 + sum(samples[:k]) for k in range(len(out))]
    assert [h.seq for h in headers] == [30000 + k for k in range(len(out))]
    assert [h.marker for h in headers] == [True] + [False] * (len(out) - 1)
    assert {(h.pt, h.ssrc) for h in headers} == {(pt, 0x51)}
    # the same audio: the decoder gets the same bytes in the same order
    decoded_in = get_codec(pt).decode(b"".join(payload(p) for p in sent))
    decoded_out = get_codec(pt).decode(b"".join(payload(p) for p in out))
    assert np.array_equal(decoded_out, decoded_in)
    # paced in real time, not in bursts
    gaps = np.diff([stamp for stamp, _ in got[:-1]]) * 1000.0
    if z < in_ms:
        # a packet cut in pieces: the pieces leave z ms apart
        assert abs(np.median(gaps) - z) < 0.3 * z, gaps
        assert np.mean(gaps < z / 2) < 0.1, gaps
    else:
        # joined packets leave with the input that completes them: z ms apart on average
        assert abs(np.mean(gaps) - z) < 0.2 * z, gaps
        assert np.mean(gaps < in_ms / 2) < 0.1, gaps
    assert d.command("G npkts_resizer_in npkts_resizer_out npkts_resizer_discard") == \
        "%d %d 0" % (len(sent), len(out))
    caller.close()
    callee.close()


def test_events_pass_unchanged_and_lz_works_the_other_way(rtpproxy):
    """Telephone events and comfort noise are not re-packetized: they keep
    their sequence numbers. Lz sets the callee's side."""
    d = rtpproxy("-l", HOST)
    caller, callee = Endpoint(), Endpoint()
    to_callee = int(d.command("U c %s %d ft" % (HOST, caller.port)).split()[0])
    d.command("Lz20 c %s %d ft tt" % (HOST, callee.port))
    audio = [rtp_packet(100 + k, 80 * k, 0x77, payload=bytes([k]) * 80) for k in range(6)]
    event = rtp_packet(106, 480, 0x77, pt=101, payload=b"\x05\x0a\x00\xa0")
    for packet in audio[:3] + [event] + audio[3:]:
        callee.send(packet, HOST, to_callee)
        time.sleep(0.01)
    got = [data for data, _ in caller.drain(0.3)]
    assert event in got
    resized = [p for p in got if p != event]
    assert [payload(p) for p in resized] == [bytes([0]) * 80 + bytes([1]) * 80,
                                             bytes([2]) * 80 + bytes([3]) * 80,
                                             bytes([4]) * 80 + bytes([5]) * 80]
    assert [rtp.parse(p).seq for p in resized] == [100, 101, 102]
    caller.close()
    callee.close()


def test_bad_ptime_is_refused(rtpproxy):
    d = rtpproxy("-l", HOST)
    for mods in ("z0", "z1000", "z"):
        assert d.command("U%s c %s 4000 ft" % (mods, HOST)) == "E13"
    assert d.command("Uz999 c %s 4000 ft" % HOST).split()[0].isdigit()


def test_datagrams_that_are_not_rtp_pass_unchanged(rtpproxy):
    """With z20, what is not RTP (text, STUN, a runt, an empty datagram, RTCP
    on the RTP port) is relayed at once and unchanged, as upstream, before the
    party is latched and while the resizer holds audio; the audio around it
    still comes out re-packetized."""
    d = rtpproxy("-l", HOST, "--workers", "1")
    caller, callee = Endpoint(), Endpoint()
    d.command("Uz20 c %s %d ft" % (HOST, caller.port))
    to_caller = int(d.command("L c %s %d ft tt" % (HOST, callee.port)).split()[0])
    junk = [b"GET / HTTP/1.0\r\n\r\n", b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12), b"\x80",
            b"", b"\x81\xc8\x00\x06" + bytes(24)]
    caller.send(junk[0], HOST, to_caller)                   # the first packet of the party
    assert callee.recv()[0] == junk[0]
    audio = [rtp_packet(200 + k, 80 * k, 0x99, payload=bytes([k]) * 80) for k in range(8)]
    for k, packet in enumerate(audio):
        caller.send(packet, HOST, to_caller)                # 10 ms: the resizer holds every other one
        if k % 2 == 0:
            caller.send(junk[1 + k // 2], HOST, to_caller)  # while a packet is held
        time.sleep(0.01)
    got = [data for data, _ in callee.drain(0.3)]
    assert [p for p in got if p in junk] == junk[1:]
    resized = [p for p in got if p not in junk]
    assert [payload(p) for p in resized] == [bytes([k]) * 80 + bytes([k + 1]) * 80 for k in (0, 2, 4, 6)]
    assert d.command("G npkts_resizer_in npkts_resizer_out") == "8 4"
    caller.close()
    callee.close()
