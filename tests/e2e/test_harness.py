"""The harness's own pieces that other tests trust: the G.711 codec and the pcap reader."""

import struct
import tempfile

import numpy as np

from harness import read_pcap, rtp_packets, tone, ulaw_decode, ulaw_encode


def _g191_ulaw_compress(x):
    """A literal port of ulaw_compress() from the ITU-T G.191 software tools."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    out = ((0x0008 - segno) << 4) | (0x000F - ((absno >> segno) & 0x000F))
    return out | 0x80 if x >= 0 else out


def test_ulaw_matches_the_itu_reference():
    x = np.arange(-32768, 32768, dtype=np.int16)
    encoded = ulaw_encode(x)
    assert list(encoded) == [_g191_ulaw_compress(int(v)) for v in x]
    # decoding: the 256 code words, then a round trip within half a quantization step
    assert list(ulaw_decode(bytes([0x00, 0x7F, 0x80, 0xFF]))) == [-32124, 0, 32124, 0]
    error = np.abs(ulaw_decode(encoded).astype(np.int32) - x)
    assert error.max() <= 1024 // 2 + 132
    assert len(ulaw_encode(tone(0.02))) == 160


def test_read_pcap_finds_udp_rtp():
    rtp = struct.pack("!BBHII", 0x80, 0, 7, 160, 0xABC) + b"\xff" * 160
    udp = struct.pack("!HHHH", 4000, 5000, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 2]), bytes([127, 0, 0, 3])) + udp
    frame = b"\x00" * 12 + b"\x08\x00" + ip
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    data += struct.pack("<IIII", 100, 250000, len(frame), len(frame)) + frame
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(data)
        f.flush()
        [packet] = read_pcap(f.name)
    assert packet.time == 100.25 and packet.src == ("127.0.0.2", 4000)
    assert packet.dst == ("127.0.0.3", 5000) and packet.payload == rtp
    [r] = rtp_packets([packet])
    assert (r.pt, r.seq, r.ts, r.ssrc) == (0, 7, 160, 0xABC)
