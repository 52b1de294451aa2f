"""From recorded RTP packets to the call's audio, as extractaudio does it.

extractaudio.md sections 2-5, as plain objects (no files, no printing):

* ``PacketArrays`` holds the packets of a recording as one NumPy array per
  header field, parsed by media/rtp.py (``parse_rtp`` is one datagram through
  the same parser, for callers holding bytes);
* ``ChannelSet`` sorts packets into channels by SSRC, each kept in order with
  duplicates dropped (section 2 steps 7-9; a channel never spans both files,
  and a stream that restarts is a new channel where it restarted);
* ``decode_channel``/``decode_arrays`` turn one channel into 8 kHz samples,
  filling timestamp and arrival gaps with silence (section 4);
* ``mix`` lines the channels up on the call's timeline and mixes them into
  mono or stereo (section 5).

The work is whole-array: runs of packets that simply follow one another are
checked and decoded with NumPy (G.711 straight from the file's bytes); a
Python step per packet only where something happens (a gap, a jump, a codec
with a decoder library).
"""

import numpy as np

from . import codecs, rtp
from .codecs import g711
from .codecs.payload_types import payload_samples

U32 = 0xFFFFFFFF
RATE = 8000
MAX_GAP_STEP = 4000         # silence is inserted at most this many samples at a time
MAX_DECODE = 4096           # samples one packet may decode to
ARRIVAL_SLACK = 0.2         # seconds the decoded audio may lag the arrival times
SIDE_A, SIDE_B = "A", "B"   # A: answer side (.a), B: originate side (.o)
# A marked packet whose sequence number and timestamp both went back by more
# than a reordered packet ever does starts the stream over (a restart).
RESTART_SEQ_BACK = 50
RESTART_TS_BACK = RATE      # one second of 8 kHz audio
FIRST_WINDOW = 64           # packets checked at once for a run; grows while runs hold
G711_TABLE = np.concatenate([g711.ULAW_DECODE, g711.ALAW_DECODE])   # index: byte + 256 * (pt == 8)


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
    header, reason = rtp.parse_with_reason(data)
    if header is None:
        raise RtpParseError(reason)
    packet = RtpPacket(header.seq, header.ts, header.ssrc, header.pt, header.marker, arrival,
                       bytes(data[header.payload_offset:header.payload_end]))
    packet.nsamples = payload_samples(packet.pt, packet.payload)
    return packet


class PacketArrays:
    """Packets as arrays: ``seq``, ``ts``, ``ssrc``, ``pt``, ``marker``,
    ``arrival``, and each payload as ``buf[start:end]``."""

    FIELDS = ("seq", "ts", "ssrc", "pt", "marker", "arrival", "start", "end")

    def __init__(self, buf, **fields):
        self.buf = buf
        for name in self.FIELDS:
            setattr(self, name, fields[name])

    def __len__(self):
        return len(self.seq)

    @classmethod
    def from_headers(cls, buf, headers, arrival, keep=None):
        """From rtp.parse_array's result (the datagrams ``keep`` selects)."""
        sel = (lambda a: a) if keep is None else (lambda a: a[keep])
        return cls(buf, seq=sel(headers.seq), ts=sel(headers.ts), ssrc=sel(headers.ssrc),
                   pt=sel(headers.pt), marker=sel(headers.marker), arrival=sel(arrival),
                   start=sel(headers.payload_start), end=sel(headers.payload_end))

    @classmethod
    def from_packets(cls, packets):
        payloads = [p.payload for p in packets]
        lengths = np.array([len(x) for x in payloads], dtype=np.int64)
        end = np.cumsum(lengths)
        buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)

        def column(name, dtype):
            return np.array([getattr(p, name) for p in packets], dtype=dtype)

        return cls(buf, seq=column("seq", np.int64), ts=column("ts", np.int64),
                   ssrc=column("ssrc", np.int64), pt=column("pt", np.int64),
                   marker=column("marker", bool), arrival=column("arrival", np.float64),
                   start=end - lengths, end=end)

    def take(self, idx) -> "PacketArrays":
        return PacketArrays(self.buf, **{name: getattr(self, name)[idx] for name in self.FIELDS})

    def payload(self, i: int) -> bytes:
        return self.buf[int(self.start[i]):int(self.end[i])].tobytes()


def sample_counts(arrays: "PacketArrays") -> np.ndarray:
    """Section 3's sample count of every packet, 0 where unknown."""
    n = arrays.end - arrays.start
    pt = arrays.pt
    out = np.zeros(len(n), dtype=np.int64)
    g711_722 = (pt == 0) | (pt == 8) | (pt == 9)
    out[g711_722] = n[g711_722]
    g729 = pt == 18
    out[g729] = 80 * (n[g729] // 10) + np.where(n[g729] % 10 != 0, 80, 0)
    gsm = pt == 3
    out[gsm] = 160 * (n[gsm] // 33)
    for i in np.flatnonzero(pt == 4):                # G.723.1: frames walked one by one
        out[i] = payload_samples(4, arrays.payload(i)) or 0
    out[n == 0] = 0
    return out


def decoded_lengths(arrays: "PacketArrays") -> np.ndarray:
    """Samples upstream's decoder produces for each payload (0: undecodable)."""
    from .codecs.g729 import decode_frame_size
    n = arrays.end - arrays.start
    pt = arrays.pt
    out = np.zeros(len(n), dtype=np.int64)
    g711_722 = (pt == 0) | (pt == 8) | (pt == 9)
    out[g711_722] = np.minimum(n[g711_722], MAX_DECODE)
    gsm = (pt == 3) & (n >= 33)
    out[gsm] = 160 * np.minimum(n[gsm] // 33, MAX_DECODE // 160)
    for i in np.flatnonzero((pt == 18) & (n > 0)):
        size = decode_frame_size(int(n[i]))
        out[i] = 80 * min(int(n[i]) // size, MAX_DECODE // 80) if size else 0
    return out


def decoded_length(pt, payload):
    """Samples upstream's decoder produces for one payload (0: undecodable)."""
    one = PacketArrays(np.frombuffer(bytes(payload), dtype=np.uint8),
                       seq=np.zeros(1, np.int64), ts=np.zeros(1, np.int64),
                       ssrc=np.zeros(1, np.int64), pt=np.array([pt], np.int64),
                       marker=np.zeros(1, bool), arrival=np.zeros(1),
                       start=np.zeros(1, np.int64), end=np.array([len(payload)], np.int64))
    return int(decoded_lengths(one)[0])


class Channel:
    """The packets of one SSRC, ordered as upstream's decoder takes them.

    Built from objects (``insert``, ``packets``) or from arrays (``arrays``,
    already in decode order)."""

    def __init__(self, ssrc, side, first=None, arrays=None, first_arrival=None):
        self.ssrc = ssrc
        self.side = side
        self.duplicates = 0
        self.samples = None
        self.arrays = arrays
        if arrays is not None:
            # the packet that created the channel: the first in file order
            self.first_arrival = first_arrival
            self.packets = None
        else:
            self.first_arrival = first.arrival
            self.packets = [first]

    def __len__(self):
        return len(self.arrays) if self.arrays is not None else len(self.packets)

    def packet_arrays(self):
        return self.arrays if self.arrays is not None else PacketArrays.from_packets(self.packets)

    def insert(self, packet):
        """Ordered insert from the tail (section 2 step 8). False for a duplicate."""
        at = ordered_position(self.packets, packet.seq, packet.ts, lambda p: (p.seq, p.ts))
        if at is None:
            self.duplicates += 1
            return False
        if at == len(self.packets):
            self.packets.append(packet)
        else:
            self.packets.insert(at, packet)
        return True


def ordered_position(items, seq, ts, key):
    """Where section 2 step 8 inserts (seq, ts) into ``items``; None for a duplicate."""
    i = len(items) - 1
    while i >= 0:
        other_seq, other_ts = key(items[i])
        if other_seq == seq:
            return None
        if other_ts < ts or other_seq < seq:
            break
        i -= 1
    return i + 1


def is_restart(marker: bool, seq: int, ts: int, prev_seq: int, prev_ts: int) -> bool:
    """A marked packet far behind the previous one of its SSRC in both
    sequence and timestamp: the sender started the stream over."""
    return bool(marker) and seq < prev_seq and ts < prev_ts and (
        prev_seq - seq > RESTART_SEQ_BACK or prev_ts - ts > RESTART_TS_BACK)


class ChannelSet:
    """Channels of both files, by side and SSRC, in the order of their first arrival.

    Upstream looks an SSRC up across both files, so when the two directions
    carry the same SSRC (sipp does that, so do some gateways) the second
    file's packets land in the first file's channel as "duplicates" and one
    side of the call disappears. Here each file keeps its own channels.

    A stream that restarts (same SSRC, marker bit, sequence number and
    timestamp back near the start) gets a new channel from that packet on:
    sorted into the old channel its packets would go before the audio already
    there (or be dropped as duplicates of old sequence numbers); as a channel
    of its own it continues where it arrived."""

    def __init__(self):
        self.channels = []
        self._by_ssrc = {}
        self._last = {}

    def add(self, packet, side):
        key = (side, packet.ssrc)
        channel = self._by_ssrc.get(key)
        last = self._last.get(key)
        self._last[key] = (packet.seq, packet.ts)
        if channel is not None and not is_restart(packet.marker, packet.seq, packet.ts, *last):
            return channel.insert(packet)
        channel = Channel(packet.ssrc, side, packet)
        self._by_ssrc[key] = channel
        self._place(channel)
        return True

    def add_arrays(self, arrays: "PacketArrays", side: str) -> None:
        """Every packet of ``arrays`` (file order, all with samples) for ``side``."""
        if len(arrays) == 0:
            return
        ssrc = arrays.ssrc
        if (ssrc == ssrc[0]).all():
            keys = [int(ssrc[0])]
        else:                           # in the order first seen (np.unique would load numpy.ma)
            keys = list(dict.fromkeys(ssrc.tolist()))
        for key in keys:
            members = np.flatnonzero(ssrc == key)
            for part in self._split_restarts(arrays, members):
                order = self._insertion_order(arrays, part)
                channel = Channel(key, side, arrays=arrays.take(order),
                                  first_arrival=float(arrays.arrival[part[0]]))
                channel.duplicates = len(part) - len(order)
                self._place(channel)
                # a later object-path add of this SSRC continues this channel
                self._by_ssrc[(side, channel.ssrc)] = channel

    @staticmethod
    def _split_restarts(arrays, members):
        seq, ts, marker = arrays.seq[members], arrays.ts[members], arrays.marker[members]
        back = marker[1:] & (seq[1:] < seq[:-1]) & (ts[1:] < ts[:-1]) & (
            (seq[:-1] - seq[1:] > RESTART_SEQ_BACK) | (ts[:-1] - ts[1:] > RESTART_TS_BACK))
        cuts = (np.flatnonzero(back) + 1).tolist()
        return [members[a:b] for a, b in zip([0] + cuts, cuts + [len(members)])]

    @staticmethod
    def _insertion_order(arrays, part):
        """The packets of ``part`` as section 2 step 8 orders them, duplicates
        dropped. When each packet goes after the one before (the usual case),
        that is file order."""
        seq, ts = arrays.seq[part], arrays.ts[part]
        appends = (seq[1:] != seq[:-1]) & ((ts[:-1] < ts[1:]) | (seq[:-1] < seq[1:]))
        if appends.all():
            return part
        kept = []
        for i, s, t in zip(part.tolist(), seq.tolist(), ts.tolist()):
            at = ordered_position(kept, s, t, lambda item: (item[1], item[2]))
            if at is not None:
                kept.insert(at, (i, s, t))
        return np.array([i for i, _, _ in kept], dtype=np.int64)

    def _place(self, channel):
        # after the last channel whose creating packet is strictly earlier, else first
        at = 0
        for i in range(len(self.channels) - 1, -1, -1):
            if self.channels[i].first_arrival < channel.first_arrival:
                at = i + 1
                break
        self.channels.insert(at, channel)

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


def decode_channel(packets, nosync=False, on_unavailable=None):
    """One channel's 8 kHz samples (int16) from RtpPacket objects in decode order."""
    return decode_arrays(PacketArrays.from_packets(packets), nosync, on_unavailable)


def decode_arrays(arrays: "PacketArrays", nosync: bool = False,
                  on_unavailable=None) -> np.ndarray:
    """One channel's 8 kHz samples (int16), gaps filled as section 4 says.

    ``nosync`` (-n): gaps are skipped instead of filled with silence.
    """
    count = len(arrays)
    if count == 0:
        return np.zeros(0, dtype=np.int16)
    arrival, ts, pt = arrays.arrival, arrays.ts, arrays.pt
    lengths = decoded_lengths(arrays)
    g711 = (pt == 0) | (pt == 8)
    nbytes = arrays.end - arrays.start
    # packets a run may take: G.711, and the codecs whose output is a fixed
    # number of samples per byte or frame, so that one call decodes a run
    runnable = (g711 | (pt == 9) | (pt == 3) | ((pt == 18) & (nbytes % 10 == 0) & (nbytes <= 510))) \
        & (lengths > 0)
    stime = float(arrival[0])
    nticks = sticks = int(ts[0])
    dticks = 0.0
    pieces = []       # int: that many zeros; (k, e): G.711 packets k..e-1; array: decoded samples
    decoders = _Decoders(on_unavailable)
    k = 0
    window = FIRST_WINDOW
    try:
        while k < count:
            kpt = int(pt[k])
            if runnable[k] and (kpt in (0, 8) or decoders.get(kpt)):
                hi = min(count, k + window)
                same = g711[k:hi] if kpt in (0, 8) else (pt[k:hi] == kpt)
                e = _plain_run(k, hi, runnable[k:hi] & same, lengths, arrival, ts, stime, sticks,
                               nticks, dticks)
                window = window * 4 if e == hi else FIRST_WINDOW
                if e > k:
                    total = int(lengths[k:e].sum())
                    if kpt in (0, 8):
                        pieces.append((k, e))
                    else:
                        samples = decoders.get(kpt).decode(_run_bytes(arrays, lengths, kpt, k, e))
                        assert len(samples) == total, (kpt, len(samples), total)
                        pieces.append(samples)
                    nticks = (nticks + total) & U32
                    dticks += total
                    k = e
                    continue
            kt, kts = float(arrival[k]), int(ts[k])      # Python numbers, as section 4's C does
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
            n, kpt = int(lengths[k]), int(pt[k])
            k += 1
            if n == 0:
                continue
            if kpt in (0, 8):
                pieces.append((k - 1, k))
            else:
                codec = decoders.get(kpt)
                if not codec:
                    continue
                samples = _decode(codec, kpt, arrays.payload(k - 1), n)
                if len(samples) == 0:
                    continue
                n = len(samples)
                pieces.append(samples)
            nticks = (nticks + n) & U32
            dticks += n
    finally:
        decoders.close()
    return _assemble(pieces, arrays, lengths)


def _run_bytes(arrays, lengths, pt, k, e):
    """The bytes one decoder call takes for the packets k..e-1 of one codec:
    what the packet-by-packet path would give it, one packet after another."""
    n = lengths[k:e]
    if pt == 3:
        used = 33 * (n // 160)              # whole GSM frames
    elif pt == 18:
        used = n // 8                       # 10-byte G.729 frames, 80 samples each
    else:
        used = n                            # G.722: a byte per sample
    start = arrays.start[k:e]
    index = np.repeat(start - (np.cumsum(used) - used), used) + np.arange(int(used.sum()))
    return arrays.buf[index].tobytes()


def _plain_run(k, hi, ok, lengths, arrival, ts, stime, sticks, nticks, dticks):
    """The end of the run of packets from k (before hi) that decode one after
    the other: ``ok`` (one codec), and none of section 4's gap or re-base
    rules applies."""
    if not ok.all():
        hi = k + int(np.argmin(ok))
    if hi <= k:
        return k
    n = lengths[k:hi]
    before = np.cumsum(n) - n
    expected = (nticks + before) & U32
    expected[0] = nticks                          # not masked until a packet is decoded
    elapsed = arrival[k:hi] - stime
    kts = ts[k:hi]
    stop = ((((kts - sticks) & U32) // RATE) > elapsed + 1.0) | (expected < kts) | \
        (elapsed - (dticks + before) / RATE > ARRIVAL_SLACK)
    return k + int(np.argmax(stop)) if stop.any() else hi


def _decode(codec, pt, payload, n):
    if pt == 9:
        return codec.decode(payload[:n])
    if pt == 3:
        return codec.decode(payload[:33 * (n // 160)])
    return codec.decode(payload)[:n]


def _assemble(pieces, arrays, lengths):
    """Silence, G.711 runs decoded straight from the payload bytes, and codec
    output, written into one array."""
    sizes = [p if isinstance(p, int) else (int(lengths[p[0]:p[1]].sum()) if isinstance(p, tuple)
                                           else len(p)) for p in pieces]
    out = np.zeros(sum(sizes), dtype=np.int16)
    pos = 0
    for piece, size in zip(pieces, sizes):
        if isinstance(piece, tuple):
            _g711_into(out[pos:pos + size], arrays, lengths, *piece)
        elif not isinstance(piece, int):
            out[pos:pos + size] = piece
        pos += size
    return out


def _g711_into(dest, arrays, lengths, k, e):
    """Decode the G.711 packets k..e-1 into ``dest``."""
    buf = arrays.buf
    start, n, pt = arrays.start[k:e], lengths[k:e], arrays.pt[k:e]
    if e - k > 1 and (n == n[0]).all() and (pt == pt[0]).all():
        stride = np.diff(start)
        if (stride == stride[0]).all() and stride[0] >= n[0]:
            # records of one size: the payloads are a 2-D strided view of the file
            view = np.ndarray(shape=(e - k, int(n[0])), dtype=np.uint8, buffer=buf,
                              offset=int(start[0]), strides=(int(stride[0]), 1))
            table = G711_TABLE[256:] if pt[0] == 8 else G711_TABLE[:256]
            np.take(table, view, out=dest.reshape(e - k, int(n[0])), mode="clip")
            return
    total = int(n.sum())
    index = np.repeat(start - (np.cumsum(n) - n), n) + np.arange(total)
    dest[:] = G711_TABLE[buf[index] + np.repeat(np.where(pt == 8, 256, 0), n)]


def _half(values):
    """C's ``value / 2`` on integers: rounds toward zero."""
    return (values + (values < 0)) >> 1


def mix(channels, stereo=False, nosync=False):
    """Mix decoded channels (``channel.samples`` set) into the output.

    Returns (int16 array: N samples, or N x 2 for stereo with A left and B
    right; samples consumed from the A channels; from the B channels).
    """
    m = Mix(channels, stereo, nosync)
    return m.block(0, m.total), m.consumed[SIDE_A], m.consumed[SIDE_B]


class Mix:
    """The mixed output of decoded channels, produced a block at a time (a
    one-hour call need not exist twice in memory): ``total`` frames,
    ``block(lo, hi)`` the frames lo..hi-1 (section 5)."""

    def __init__(self, channels, stereo=False, nosync=False):
        self.stereo = stereo
        channels = [c for c in channels if c.samples is not None]
        sides = {SIDE_A: [c for c in channels if c.side == SIDE_A],
                 SIDE_B: [c for c in channels if c.side == SIDE_B]}
        self.consumed = {side: sum(len(c.samples) for c in chans) for side, chans in sides.items()}
        if nosync:
            # each side's channels one after the other, in list order
            placed = {}
            for side, chans in sides.items():
                pos, spans = 0, []
                for c in chans:
                    spans.append((pos, c.samples))
                    pos += len(c.samples)
                placed[side] = spans
        else:
            base = min((c.first_arrival for c in channels), default=0.0)
            placed = {side: [(int((c.first_arrival - base) * RATE), c.samples) for c in chans]
                      for side, chans in sides.items()}
        self.total = max((start + len(x) for spans in placed.values() for start, x in spans),
                         default=0)
        self.spans = {side: _without_overlap(spans, self.total) for side, spans in placed.items()}

    def block(self, lo: int, hi: int) -> np.ndarray:
        hi = min(hi, self.total)
        n = max(hi - lo, 0)
        if self.stereo:
            out = np.zeros((n, 2), dtype=np.int16)
            for column, side in enumerate((SIDE_A, SIDE_B)):
                for start, x in self.spans[side]:
                    a, b = max(start, lo), min(start + len(x), hi)
                    if a < b:
                        out[a - lo:b - lo, column] = x[a - start:b - start]
            return out
        both = np.zeros(n, dtype=np.int32)
        for side in (SIDE_A, SIDE_B):
            for start, x in self.spans[side]:
                a, b = max(start, lo), min(start + len(x), hi)
                if a < b:
                    both[a - lo:b - lo] += x[a - start:b - start]
        return _half(both).astype(np.int16)


def _without_overlap(spans, total):
    """One side's (start, samples) list made non-overlapping: where a later
    channel overlaps earlier ones the two are averaged (section 5, C integer
    division), in list order."""
    ordered = sorted(spans, key=lambda item: item[0])
    if not any(a[0] + len(a[1]) > b[0] for a, b in zip(ordered, ordered[1:])):
        return spans
    acc = np.zeros(total, dtype=np.int32)
    filled = np.zeros(total, dtype=bool)
    for start, x in spans:       # list order: each later channel is averaged in
        span = slice(start, start + len(x))
        x = x.astype(np.int32)
        seen = filled[span]
        acc[span] = np.where(seen, _half(acc[span] + x), x) if seen.any() else x
        filled[span] = True
    return [(0, acc)]


def written_count(samples, channels, block=1024):
    """Upstream's ``written:`` figure: half the shorts of each 1024-short write."""
    shorts = samples * channels
    return (shorts // block) * (block // 2) + (shorts % block) // 2
