"""HEP version 3 messages and the JSON text of RTCP packets, byte for byte as
upstream's acct_rtcp_hep sends them (modules.md 5.4, 5.5)."""

import socket
import struct
from typing import Optional

_CHUNK = struct.Struct("!HHH")
_SR = struct.Struct("!IIIIII")          # ssrc, ntp sec, ntp frac, rtp ts, packets, octets
_BLOCK = struct.Struct("!IB3sIIII")     # ssrc, fraction, lost (24 bits), seq, jitter, lsr, dlsr
_RR_SSRC = struct.Struct("!I")
PROTO_RTCP = 5
IPPROTO_UDP = 17


def chunk(kind: int, data: bytes) -> bytes:
    return _CHUNK.pack(0, kind, 6 + len(data)) + data


def message(family: int, src, dst, ts: float, capt_id: int, call_id: bytes, payload: bytes) -> bytes:
    """One HEP3 message: ``src``/``dst`` are (address, port)."""
    seconds = int(ts)
    micros = int(round((ts - seconds) * 1e6))
    if micros >= 1000000:
        seconds, micros = seconds + 1, micros - 1000000
    v6 = family == socket.AF_INET6
    body = b"".join((
        chunk(0x0001, bytes((10 if v6 else 2,))),
        chunk(0x0002, bytes((IPPROTO_UDP,))),
        chunk(0x0007, struct.pack("!H", src[1])),
        chunk(0x0008, struct.pack("!H", dst[1])),
        chunk(0x0009, struct.pack("!I", seconds)),
        chunk(0x000A, struct.pack("!I", micros)),
        chunk(0x000B, bytes((PROTO_RTCP,))),
        # upstream's quirk: the low 16 bits of capt_id, then two zero bytes
        chunk(0x000C, struct.pack("!H", capt_id & 0xFFFF) + b"\0\0"),
        chunk(0x0011, call_id),
        chunk(0x0005 if v6 else 0x0003, socket.inet_pton(family, src[0])),
        chunk(0x0006 if v6 else 0x0004, socket.inet_pton(family, dst[0])),
        chunk(0x000F, payload),
    ))
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


def _packets_lost(raw: bytes) -> int:
    """Upstream's reading of the 24-bit cumulative loss: -1 when the lowest
    bit of its first byte is set, else that byte shifted right once."""
    if raw[0] & 1:
        return -1
    return (raw[0] >> 1) << 16 | raw[1] << 8 | raw[2]


def _blocks(data, offset, count):
    items = []
    for n in range(count):
        src, fraction, lost, seq, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset + 24 * n)
        items.append(
            '  {\n   "source_ssrc": %d,\n   "fraction_lost": %d,\n   "packets_lost": %d,\n'
            '   "highest_seq_no": %d,\n   "ia_jitter": %d,\n   "lsr": %d,\n   "dlsr": %d\n  }\n'
            % (src, fraction, _packets_lost(lost), seq, jitter, lsr, dlsr))
    return ' "report_blocks": [\n' + "  ,\n".join(items) + " ],\n"


def rtcp_json(data: bytes) -> Optional[bytes]:
    """The JSON upstream exports for an RTCP compound packet; None when it
    does not convert (then nothing is exported)."""
    if len(data) < 4 or data[0] >> 6 != 2:
        return None
    out = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            return None
        b0, pt, words = struct.unpack_from("!BBH", data, offset)
        length = (words + 1) * 4
        if offset + length > len(data):
            return None
        count = b0 & 0x1F
        if pt == 200:
            if 28 + 24 * count > length:
                return None
            ssrc, sec, frac, rtp_ts, packets, octets = _SR.unpack_from(data, offset + 4)
            text = ('{\n "ssrc": %d,\n "sender_information": {\n  "ntp_timestamp_sec": %d,\n'
                    '  "ntp_timestamp_usec": %d,\n  "rtp_timestamp": %d,\n  "packets": %d,\n'
                    '  "octets": %d\n },\n "type": 200,\n' % (ssrc, sec, frac, rtp_ts, packets, octets))
            if count:
                text += _blocks(data, offset + 28, count)
            out.append(text + ' "report_count": %d\n}' % count)
        elif pt == 201:
            if 8 + 24 * count > length:
                return None
            ssrc = _RR_SSRC.unpack_from(data, offset + 4)[0]
            text = '{\n "ssrc": %d,\n "type": 201,\n' % ssrc
            if count:
                text += _blocks(data, offset + 8, count)
            out.append(text + ' "report_count": %d\n}' % count)
        offset += length
    return "".join(out).encode()
