"""From recorded RTP packets to the call's audio, as extractaudio does it.

extractaudio.md sections 2-5, as plain objects (no files, no printing):

* ``parse_rtp`` reads one datagram (section 3, with upstream's reasons);
* ``ChannelSet`` sorts packets into channels by SSRC, each kept in order with
  duplicates dropped (section 2 steps 7-9; a channel never spans both files);
* ``decode_channel`` turns one channel into 8 kHz samples, filling timestamp
  and arrival gaps with silence (section 4);
* ``mix`` lines the channels up on the call's timeline and mixes them into
  mono or stereo (section 5).

Per-packet work is a Python loop over packets; everything per sample is NumPy.
"""

import struct

import numpy as np

from . import codecs
from .codecs import g711
from .codecs.payload_types import payload_samples

U32 = 0xFFFFFFFF
RATE = 8000
MAX_GAP_STEP = 4000         # silence is inserted at most this many samples at a time
MAX_DECODE = 4096           # samples one packet may decode to
ARRIVAL_SLACK = 0.2         # seconds the decoded audio may lag the arrival times
SIDE_A, SIDE_B = "A", "B"   # A: answer side (.a), B: originate side (.o)

_FIXED = struct.Struct("!BBHII")


class RtpParseError(Exception):
    """The datagram is not RTP; the message is upstream's reason."""


class RtpPacket:
    __slots__ = ("seq", "ts", "ssrc", "pt", "marker", "arrival", "payload", "nsamples")

    def __init__(self, seq, ts, ssrc, pt, marker, arrival, payload):
        self.seq = seq
        self.ts = ts
        self.ssrc = ssrc
        self.pt = pt
        self.marker = marker
        self.arrival = arrival
        self.payload = payload
        self.nsamples = None


def parse_rtp(data, arrival):
    """An RtpPacket, or RtpParseError with upstream's reason (section 3)."""
    n = len(data)
    if n < 12:
        raise RtpParseError("packet is too short for RTP header")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpParseError("incorrect RTP header version")
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if offset + 4 > n:
            raise RtpParseError("packet is too short for extended RTP header size")
        offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
        if offset > n:
            raise RtpParseError("packet is too short for extended RTP header")
    end = n
    if b0 & 0x20:
        if offset >= n:
            raise RtpParseError("packet is too short for RTP padding size")
        pad = data[n - 1]
        if pad == 0:
            raise RtpParseError("invalid RTP padding size")
        if offset + pad > n:
            raise RtpParseError("packet is too short for RTP padding")
        end = n - pad
    if offset > n:
        raise RtpParseError("packet is too short for RTP header")
    packet = RtpPacket(seq, ts, ssrc, b1 & 0x7F, bool(b1 & 0x80), arrival, data[offset:end])
    packet.nsamples = payload_samples(packet.pt, packet.payload)
    return packet


class Channel:
    """The packets of one SSRC, ordered as upstream's decoder takes them."""

    def __init__(self, ssrc, side, first):
        self.ssrc = ssrc
        self.side = side
        self.first_arrival = first.arrival
        self.packets = [first]
        self.duplicates = 0
        self.samples = None

    def insert(self, packet):
        """Ordered insert from the tail (section 2 step 8). False for a duplicate."""
        packets = self.packets
        seq, ts = packet.seq, packet.ts
        i = len(packets) - 1
        while i >= 0:
            other = packets[i]
            if other.seq == seq:
                self.duplicates += 1
                return False
            if other.ts < ts or other.seq < seq:
                break
            i -= 1
        if i == len(packets) - 1:
            packets.append(packet)
        else:
            packets.insert(i + 1, packet)
        return True


class ChannelSet:
    """Channels of both files, by side and SSRC, in the order of their first arrival.

    Upstream looks an SSRC up across both files, so when the two directions
    carry the same SSRC (sipp does that, so do some gateways) the second
    file's packets land in the first file's channel as "duplicates" and one
    side of the call disappears. Here each file keeps its own channels."""

    def __init__(self):
        self.channels = []
        self._by_ssrc = {}

    def add(self, packet, side):
        key = (side, packet.ssrc)
        channel = self._by_ssrc.get(key)
        if channel is not None:
            return channel.insert(packet)
        channel = Channel(packet.ssrc, side, packet)
        self._by_ssrc[key] = channel
        # after the last channel whose creating packet is strictly earlier, else first
        at = 0
        for i in range(len(self.channels) - 1, -1, -1):
            if self.channels[i].first_arrival < channel.first_arrival:
                at = i + 1
                break
        self.channels.insert(at, channel)
        return True

    def __iter__(self):
        return iter(self.channels)

    def __len__(self):
        return len(self.channels)


class _Decoders:
    """One decoder per payload type per channel, created on first use."""

    def __init__(self, on_unavailable=None):
        self.codecs = {}
        self.on_unavailable = on_unavailable

    def get(self, pt):
        codec = self.codecs.get(pt)
        if codec is None:
            try:
                codec = codecs.get_codec(pt)
            except codecs.CodecUnavailable as exc:
                codec = False
                if self.on_unavailable is not None:
                    self.on_unavailable(pt, str(exc))
            self.codecs[pt] = codec
        return codec

    def close(self):
        for codec in self.codecs.values():
            if codec:
                codec.close()


def decoded_length(pt, payload):
    """Samples upstream's decoder produces for one payload (0: undecodable)."""
    n = len(payload)
    if pt in (0, 8, 9):
        return min(n, MAX_DECODE)
    if pt == 3:
        return 160 * min(n // 33, MAX_DECODE // 160) if n >= 33 else 0
    if pt == 18:
        from .codecs.g729 import decode_frame_size
        size = decode_frame_size(n) if n else None
        return 80 * min(n // size, MAX_DECODE // 80) if size else 0
    return 0


def decode_channel(packets, nosync=False, on_unavailable=None):
    """One channel's 8 kHz samples (int16), gaps filled as section 4 says.

    ``nosync`` (-n): gaps are skipped instead of filled with silence.
    """
    first = packets[0]
    stime = first.arrival
    nticks = sticks = first.ts
    dticks = 0.0
    pieces = []                 # int: that many zeros; (pt, bytes): G.711 to decode; array
    g711_parts = {0: [], 8: []}
    decoders = _Decoders(on_unavailable)
    k, count = 0, len(packets)
    try:
        while k < count:
            packet = packets[k]
            kt, kts = packet.arrival, packet.ts
            elapsed = kt - stime
            if ((kts - sticks) & U32) // RATE > elapsed + 1.0:
                # a timestamp far ahead of the wall clock: re-base instead of a huge gap
                nticks = kts
                sticks = int(kts - elapsed * RATE) & U32
            if nticks < kts:
                t = min(kts - nticks, MAX_GAP_STEP)
                if not nosync:
                    pieces.append(t)
                nticks += t
                dticks += t
                continue
            if elapsed - dticks / RATE > ARRIVAL_SLACK:
                t = min(int((elapsed * RATE - dticks) / 2), MAX_GAP_STEP)
                if not nosync:
                    pieces.append(t)
                dticks += t
                continue
            k += 1
            pt = packet.pt
            n = decoded_length(pt, packet.payload)
            if n == 0:
                continue
            if pt in (0, 8):
                g711_parts[pt].append(packet.payload[:n])
                pieces.append((pt, n))
            else:
                codec = decoders.get(pt)
                if not codec:
                    continue
                samples = _decode(codec, pt, packet.payload, n)
                if len(samples) == 0:
                    continue
                n = len(samples)
                pieces.append(samples)
            nticks = (nticks + n) & U32
            dticks += n
    finally:
        decoders.close()
    return _assemble(pieces, g711_parts)


def _decode(codec, pt, payload, n):
    if pt == 9:
        return codec.decode(payload[:n])
    if pt == 3:
        return codec.decode(payload[:33 * (n // 160)])
    return codec.decode(payload)[:n]


def _assemble(pieces, g711_parts):
    """Concatenate silence, bulk-decoded G.711 and codec output in one go."""
    decoded = {0: None, 8: None}
    for pt, table in ((0, g711.ULAW_DECODE), (8, g711.ALAW_DECODE)):
        if g711_parts[pt]:
            decoded[pt] = table[np.frombuffer(b"".join(g711_parts[pt]), dtype=np.uint8)]
    offsets = {0: 0, 8: 0}
    arrays = []
    for piece in pieces:
        if isinstance(piece, int):
            arrays.append(np.zeros(piece, dtype=np.int16))
        elif isinstance(piece, tuple):
            pt, n = piece
            start = offsets[pt]
            arrays.append(decoded[pt][start:start + n])
            offsets[pt] = start + n
        else:
            arrays.append(piece.astype(np.int16, copy=False))
    if not arrays:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(arrays)


def _half(values):
    """C's ``value / 2`` on integers: rounds toward zero."""
    return (values + (values < 0)) >> 1


def mix(channels, stereo=False, nosync=False):
    """Mix decoded channels (``channel.samples`` set) into the output.

    Returns (int16 array: N samples, or N x 2 for stereo with A left and B
    right; samples consumed from the A channels; from the B channels).
    """
    channels = [c for c in channels if c.samples is not None]
    sides = {SIDE_A: [c for c in channels if c.side == SIDE_A],
             SIDE_B: [c for c in channels if c.side == SIDE_B]}
    consumed = {side: sum(len(c.samples) for c in chans) for side, chans in sides.items()}
    if not channels:
        empty = np.zeros((0, 2) if stereo else 0, dtype=np.int16)
        return empty, consumed[SIDE_A], consumed[SIDE_B]
    if nosync:
        # each side's channels one after the other, in list order
        streams = {side: (np.concatenate([c.samples for c in chans]) if chans
                          else np.zeros(0, dtype=np.int16)) for side, chans in sides.items()}
        total = max(len(s) for s in streams.values())
        mixed = {}
        for side, stream in streams.items():
            out = np.zeros(total, dtype=np.int32)
            out[:len(stream)] = stream
            mixed[side] = out
    else:
        base = min(c.first_arrival for c in channels)
        offsets = {id(c): int((c.first_arrival - base) * RATE) for c in channels}
        total = max(offsets[id(c)] + len(c.samples) for c in channels)
        mixed = {}
        for side, chans in sides.items():
            out = np.zeros(total, dtype=np.int32)
            filled = np.zeros(total, dtype=bool)
            for c in chans:       # list order: each later channel is averaged in
                start = offsets[id(c)]
                span = slice(start, start + len(c.samples))
                x = c.samples.astype(np.int32)
                overlap = filled[span]
                if overlap.any():
                    out[span] = np.where(overlap, _half(out[span] + x), x)
                else:
                    out[span] = x
                filled[span] = True
            mixed[side] = out
    a, b = mixed[SIDE_A], mixed[SIDE_B]
    if stereo:
        result = np.stack([a, b], axis=1).astype(np.int16)
    else:
        result = _half(a + b).astype(np.int16)
    return result, consumed[SIDE_A], consumed[SIDE_B]


def written_count(samples, channels, block=1024):
    """Upstream's ``written:`` figure: half the shorts of each 1024-short write."""
    shorts = samples * channels
    return (shorts // block) * (block // 2) + (shorts % block) // 2
