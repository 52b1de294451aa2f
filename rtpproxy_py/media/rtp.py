"""RTP header parsing and building (RFC 3550 section 5.1)."""

import struct

_FIXED = struct.Struct("!BBHII")
HEADER_SIZE = 12


class RtpHeader:
    __slots__ = ("marker", "pt", "seq", "ts", "ssrc", "payload_offset", "payload_end")

    def __init__(self, marker, pt, seq, ts, ssrc, payload_offset, payload_end):
        self.marker = marker
        self.pt = pt
        self.seq = seq
        self.ts = ts
        self.ssrc = ssrc
        self.payload_offset = payload_offset
        self.payload_end = payload_end


def parse(data):
    """Return an RtpHeader, or None if ``data`` is not a well-formed RTP packet.

    Well-formed: version 2, the CSRC list, header extension and padding all fit
    inside the datagram.
    """
    n = len(data)
    if n < HEADER_SIZE:
        return None
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    offset = HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if offset + 4 > n:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
    end = n
    if b0 & 0x20:
        pad = data[n - 1]
        if pad == 0:
            return None
        end -= pad
    if offset > end:
        return None
    return RtpHeader(bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, offset, end)


def ssrc_and_seq(data):
    """(ssrc, seq) of a plausible RTP packet, or None. Cheaper than ``parse``."""
    if len(data) < HEADER_SIZE or data[0] >> 6 != 2:
        return None
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    return ssrc, seq


def build(pt, seq, ts, ssrc, payload, marker=False):
    return _FIXED.pack(0x80, (0x80 if marker else 0) | (pt & 0x7F),
                       seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF) + payload


def well_formed(data):
    """An RtpHeader if ``data`` is RTP that strict latching may learn from:
    ``parse`` accepts it and it is not RTCP (whose type byte also parses as a
    marker bit plus payload type 72-95)."""
    if len(data) >= 2 and 192 <= data[1] <= 223:
        return None
    return parse(data)
