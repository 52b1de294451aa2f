"""The relay's static payload-type table (codecs.md section 1) and the rules
that turn a payload length into a number of 8 kHz samples.

Shared by the player (frame sizes), the re-packetizer and extractaudio
(sample counts). Payload types outside the table (dynamic 96-127, including
telephone-event) have an unknown clock rate and an unknown sample count.
"""

from typing import NamedTuple, Optional

TELEPHONE_EVENT_PTS = (100, 101)


class PayloadType(NamedTuple):
    pt: int
    name: str
    clock_rate: Optional[int]     # RTP clock in Hz; None: unknown
    channels: Optional[int]
    frame_ms: Optional[int]       # duration of one codec frame; 1 for sample codecs
    frame_bytes: Optional[int]    # bytes of one frame (G.723.1: the 6.3 kbit/s frame)

    @property
    def frame_samples(self):
        """8 kHz samples (RTP ticks) in one frame, or None."""
        return None if self.frame_ms is None else self.frame_ms * 8


def _pt(pt, name, clock, channels=1, frame_ms=None, frame_bytes=None):
    return PayloadType(pt, name, clock, channels, frame_ms, frame_bytes)


PAYLOAD_TYPES = {p.pt: p for p in (
    _pt(0, "PCMU", 8000, frame_ms=1, frame_bytes=8),
    _pt(3, "GSM", 8000, frame_ms=20, frame_bytes=33),
    _pt(4, "G723", 8000, frame_ms=30, frame_bytes=24),
    _pt(5, "DVI4", 8000),
    _pt(6, "DVI4", 16000),
    _pt(7, "LPC", 8000),
    _pt(8, "PCMA", 8000, frame_ms=1, frame_bytes=8),
    # G.722 audio is 16 kHz but its RTP clock is 8000 Hz: one byte per tick.
    _pt(9, "G722", 8000, frame_ms=1, frame_bytes=8),
    _pt(10, "L16", 44100),
    _pt(11, "L16", 44100, channels=2),
    _pt(12, "QCELP", 8000),
    _pt(13, "CN", 8000),
    _pt(14, "MPA", 90000, channels=2),
    _pt(15, "G728", 8000),
    _pt(16, "DVI4", 11025),
    _pt(17, "DVI4", 22050),
    _pt(18, "G729", 8000, frame_ms=10, frame_bytes=10),
)}
# For G.711 and G.722 a "frame" above is one millisecond (8 bytes), the unit
# the player reads prompt files in (playback-and-resizing.md A.2).

# G.723.1 frame length by the low two bits of a frame's first byte.
_G723_FRAME_BYTES = (24, 20, 4, None)


def lookup(pt):
    """The PayloadType for ``pt``, or None when the relay does not know it."""
    return PAYLOAD_TYPES.get(pt)


def clock_rate(pt):
    entry = PAYLOAD_TYPES.get(pt)
    return None if entry is None else entry.clock_rate


def payload_samples(pt, payload):
    """8 kHz samples carried by ``payload`` (bytes) of type ``pt``; None if unknown.

    Rules of extractaudio.md section 3: G.711/G.722 one per byte, G.729 80 per
    10-byte frame plus 80 for a trailing SID, GSM 160 per whole 33-byte frame,
    G.723.1 240 per frame walked by frame type. Empty payloads are unknown.
    """
    n = len(payload)
    if n == 0:
        return None
    if pt in (0, 8, 9):
        return n
    if pt == 18:
        return 80 * (n // 10) + (80 if n % 10 else 0)
    if pt == 3:
        return 160 * (n // 33)
    if pt == 4:
        return _g723_samples(payload)
    return None


def _g723_samples(payload):
    offset, frames, n = 0, 0, len(payload)
    while offset < n:
        size = _G723_FRAME_BYTES[payload[offset] & 3]
        if size is None:
            return None
        offset += size
        frames += 1
    return 240 * frames
