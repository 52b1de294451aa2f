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


# --- the whole-array form, for the tools ---------------------------------------------
#
# The same rules as ``parse`` over every datagram of a recording at once, with
# the reason a datagram is not RTP (extractaudio.md section 3 names them).
# NumPy is imported here, not at the top: the relay never calls this.

PARSE_OK = 0
PARSE_REASONS = (
    None,
    "packet is too short for RTP header",
    "incorrect RTP header version",
    "packet is too short for extended RTP header size",
    "packet is too short for extended RTP header",
    "packet is too short for RTP padding size",
    "invalid RTP padding size",
    "packet is too short for RTP padding",
)
(_SHORT, _VERSION, _EXT_SIZE, _EXT, _PAD_SIZE, _PAD_ZERO, _PAD) = range(1, 8)


class HeaderArrays:
    """Parsed headers of many datagrams, one NumPy array per field.

    ``reason`` is 0 for RTP, else an index into PARSE_REASONS (the other
    fields are then meaningless). ``payload_start``/``payload_end`` are
    offsets into the buffer the datagrams were parsed from."""

    __slots__ = ("seq", "ts", "ssrc", "pt", "marker", "payload_start", "payload_end", "reason")

    def __len__(self) -> int:
        return len(self.reason)


def parse_array(buf, starts, lengths) -> HeaderArrays:
    """Parse the datagrams ``buf[starts[i]:starts[i] + lengths[i]]`` (``buf`` a
    uint8 array) as ``parse`` does, without a Python step per datagram."""
    import numpy as np
    starts = np.asarray(starts, dtype=np.int64)
    n = np.asarray(lengths, dtype=np.int64)
    if len(buf) == 0:
        buf = np.zeros(1, dtype=np.uint8)       # every datagram is empty: nothing to read
    last = len(buf) - 1

    def byte(at, valid):
        return np.where(valid, buf[np.clip(at, 0, last)], 0).astype(np.int64)

    reason = np.zeros(len(starts), dtype=np.uint8)
    ok = n >= HEADER_SIZE
    reason[~ok] = _SHORT
    b0 = byte(starts, ok)
    bad = ok & (b0 >> 6 != 2)
    reason[bad] = _VERSION
    ok &= ~bad
    offset = HEADER_SIZE + 4 * (b0 & 0x0F)
    ext = ok & ((b0 & 0x10) != 0)
    bad = ext & (offset + 4 > n)
    reason[bad] = _EXT_SIZE
    ok &= ~bad
    ext &= ok
    words = (byte(starts + offset + 2, ext) << 8) | byte(starts + offset + 3, ext)
    offset = np.where(ext, offset + 4 + 4 * words, offset)
    bad = ext & (offset > n)
    reason[bad] = _EXT
    ok &= ~bad
    end = n.copy()
    padded = ok & ((b0 & 0x20) != 0)
    bad = padded & (offset >= n)
    reason[bad] = _PAD_SIZE
    ok &= ~bad
    padded &= ok
    pad = byte(starts + n - 1, padded)
    bad = padded & (pad == 0)
    reason[bad] = _PAD_ZERO
    ok &= ~bad
    padded &= ok
    bad = padded & (offset + pad > n)
    reason[bad] = _PAD
    ok &= ~bad
    end = np.where(padded, n - pad, end)
    bad = ok & (offset > n)
    reason[bad] = _SHORT
    out = HeaderArrays()
    field = np.where(ok, starts, 0)[:, None] + np.arange(1, HEADER_SIZE)
    raw = buf[np.clip(field, 0, last)].astype(np.uint32) if len(starts) else \
        np.zeros((0, HEADER_SIZE - 1), dtype=np.uint32)
    out.marker = (raw[:, 0] & 0x80) != 0
    out.pt = (raw[:, 0] & 0x7F).astype(np.int64)
    out.seq = ((raw[:, 1] << 8) | raw[:, 2]).astype(np.int64)
    out.ts = ((raw[:, 3] << 24) | (raw[:, 4] << 16) | (raw[:, 5] << 8) | raw[:, 6]).astype(np.int64)
    out.ssrc = ((raw[:, 7] << 24) | (raw[:, 8] << 16) | (raw[:, 9] << 8) | raw[:, 10]).astype(np.int64)
    out.payload_start = starts + offset
    out.payload_end = starts + end
    out.reason = reason
    return out


def parse_with_reason(data):
    """(RtpHeader, None) or (None, the reason ``data`` is not RTP): one datagram
    through ``parse_array``, for callers that must say why."""
    import numpy as np
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    h = parse_array(buf, [0], [len(buf)])
    if h.reason[0]:
        return None, PARSE_REASONS[h.reason[0]]
    return RtpHeader(bool(h.marker[0]), int(h.pt[0]), int(h.seq[0]), int(h.ts[0]), int(h.ssrc[0]),
                     int(h.payload_start[0]), int(h.payload_end[0])), None
