"""Re-packetization to a requested packet time: the ``z<N>`` modifier of U/L
(playback-and-resizing.md Part B), sans I/O.

A Resizer sits on the stream that receives a party's packets and re-frames
them to ``N`` ms before they are relayed to the other party:

    taken = resizer.enqueue(packet, now)      # False: relay the packet unchanged
    packets, wake_at = resizer.dequeue(now)   # send these; ask again at wake_at

Frames are split and joined across packets by the rules of B.3/B.4: the
output keeps the first input packet's SSRC, payload type, marker and
timestamp and gets its own running sequence number. Packets whose sample
count is unknown (comfort noise, telephone events, unknown codecs) are not
taken.

Pacing. The spec's reference sends whatever is ready at each poll, so the
parts of a split packet leave back to back. Here every output packet also
has a due time: the arrival time of the audio it starts with, as if the
input's samples arrived in real time (``base_time + (ts - base_ts) / 8000``,
re-based whenever a packet arrives early or more than LATE_TOLERANCE late).
A 30 ms packet cut into 10 ms ones therefore leaves as three packets 10 ms
apart; joined packets leave as soon as the audio that completes them has
arrived. Only when more audio is waiting than the reference would buffer
(``out + max(max_buf, 2 x the largest input packet)`` samples) does a packet
leave before its due time.

One deliberate difference from upstream: a G.722 packet is cut at ``k``
bytes for ``k`` samples (one byte per 8 kHz tick), where upstream cuts at
``k/2`` bytes and so garbles the audio (B.4, "upstream quirk").
"""

from typing import List, Optional, Tuple

from . import rtp
from .codecs.payload_types import payload_samples
from .feature import FOREVER, PRECEDENCE_RESIZER, Feature

CLOCK = 8000                # every codec the resizer handles runs an 8 kHz RTP clock
MASK = 0xFFFFFFFF
HALF = 1 << 31
ALIGN = 40                  # samples the reference clock starts ahead of the first packet
DRIFT_SLACK = 160           # samples a packet may lag the clock before it is pulled back
MAX_PACKET = 8192           # bytes an output packet never exceeds
LATE_TOLERANCE = 0.005      # s a packet may arrive late without moving the schedule
EARLY = 0.0005              # s a wake-up may come early and still count as on time
# The smallest output unit per payload type (B.4 step 3): GSM and G.723.1
# frames; 10 ms for the others.
_UNIT = {3: 160, 4: 240}
_DEFAULT_UNIT = 80
_G723_FRAME_BYTES = (24, 20, 4, None)


def _before(a: int, b: int) -> bool:
    """Timestamp a is before b (RFC 1982-style, modulo 2**32)."""
    return ((a - b) & MASK) > HALF


def _signed(d: int) -> int:
    d &= MASK
    return d - (1 << 32) if d >= HALF else d


class _Queued:
    """An input packet (or what is left of it after a split) in the queue."""

    __slots__ = ("header", "payload", "pt", "seq", "ts", "marker", "samples", "appendable")

    def __init__(self, header: bytes, payload: bytes, pt: int, seq: int, ts: int, marker: bool,
                 samples: int) -> None:
        self.header = header
        self.payload = payload
        self.pt = pt
        self.seq = seq
        self.ts = ts
        self.marker = marker
        self.samples = samples
        # a G.729 payload ending with a SID frame cannot be followed by more frames
        self.appendable = not (pt == 18 and len(payload) % 10)


def _chunk(item: _Queued, k: int) -> Optional[Tuple[int, int]]:
    """(bytes, samples) of the first chunk of ``item`` with at least ``k``
    samples, or None when that chunk is the whole packet (B.4 chunk rule)."""
    pt, n = item.pt, item.samples
    if pt in (0, 8, 9):
        return None if k >= n else (k, k)
    if pt == 18:
        frames = -(-k // 80)
        return None if 80 * frames >= n else (10 * frames, 80 * frames)
    if pt == 3:
        frames = -(-k // 160)
        return None if 160 * frames >= n else (33 * frames, 160 * frames)
    if pt == 4:
        frames = -(-k // 240)
        if 240 * frames >= n:
            return None
        payload, offset = item.payload, 0
        for _ in range(frames):
            offset += _G723_FRAME_BYTES[payload[offset] & 3]  # type: ignore[operator]  # type 3: None, a TypeError as before
        return offset, 240 * frames
    return None


class Resizer(Feature):
    """The re-packetizer of one stream, a per-packet feature (feature.py):
    the relay's reader feeds it, and its stream stays in user space."""

    reason = "re-packetizing"
    precedence = PRECEDENCE_RESIZER

    def __init__(self, ptime_ms: int) -> None:
        self.wake_at: Optional[float] = None     # when dequeue() wants to be asked again
        self.out = self.max_buf = 0
        self.retune(ptime_ms)
        self.queue: List[_Queued] = []
        self.queued = 0              # samples in the queue
        self.ssrc: Optional[int] = None
        self.last_sent: Optional[int] = None        # timestamp after the last output packet
        self.delta: Optional[int] = None      # reference clock offset (B.3 step 3)
        self.out_seq: Optional[int] = None          # sequence number of the next output packet
        self.base_time: Optional[float] = None   # pacing: when the audio at base_ts arrived
        self.base_ts = 0
        self.largest_in = 0
        self.n_in = 0
        self.n_out = 0
        self.n_discard = 0

    def retune(self, ptime_ms: int) -> None:
        """A new ``z`` value for the same stream; queued audio is kept."""
        self.ptime = ptime_ms
        self.out = ptime_ms * 8
        self.max_buf = max(2 * self.out, 320)

    # --- input ----------------------------------------------------------------------

    def enqueue(self, packet: bytes, now: float) -> bool:
        """Take ``packet`` (received at ``now`` seconds) into the queue. Returns
        False for a packet the resizer does not handle: relay it unchanged."""
        header = rtp.parse(packet)
        if header is None:
            return False
        payload = packet[header.payload_offset:header.payload_end]
        samples = payload_samples(header.pt, payload)
        if not samples:                  # unknown, or a GSM payload shorter than a frame
            return False
        self.n_in += 1
        ts = header.ts
        if header.ssrc != self.ssrc:
            if self.ssrc is not None:
                self.last_sent = self.delta = None
                self.base_time = None
            self.ssrc = header.ssrc
        if self.last_sent is not None and _before(ts, self.last_sent):
            self.n_discard += 1          # its time has been sent already
            return True
        self._align(ts, now)
        item = _Queued(packet[:header.payload_offset], payload, header.pt, header.seq, ts,
                       header.marker, samples)
        queue = self.queue
        pos = len(queue)
        while pos > 0 and _before(ts, queue[pos - 1].ts):
            pos -= 1
        queue.insert(pos, item)
        self.queued += samples
        if samples > self.largest_in:
            self.largest_in = samples
        return True

    def _align(self, ts: int, now: float) -> None:
        """B.3 step 3 (the reference clock), and the pacing schedule."""
        it = int(now * CLOCK) & MASK
        if self.delta is None:
            self.delta = (ts - it + ALIGN) & MASK
        else:
            ref = (it + self.delta) & MASK
            if _before(ref, ts):
                self.delta = (ts - it + ALIGN) & MASK
            else:
                late_edge = (ts + self.out + DRIFT_SLACK) & MASK
                if _before(late_edge, ref):
                    self.delta = (self.delta - ((ref - late_edge) & MASK) // 2) & MASK
        if self.base_time is None:
            self.base_time, self.base_ts = now, ts
            return
        due = self._due(ts)
        if due > now or due < now - LATE_TOLERANCE:
            self.base_time, self.base_ts = now, ts

    def _due(self, ts: int) -> float:
        # base_time is set by _align before anything is queued or due
        return self.base_time + _signed(ts - self.base_ts) / CLOCK  # type: ignore[operator]

    # --- output ---------------------------------------------------------------------

    def dequeue(self, now: float) -> Tuple[List[bytes], Optional[float]]:
        """The packets to send at ``now`` and when to ask again (None: only
        when another packet comes)."""
        out: List[bytes] = []
        queue = self.queue
        while queue:
            head = queue[0]
            # delta is set by _align whenever the queue holds a packet
            ref = ((int(now * CLOCK) & MASK) + self.delta) & MASK  # type: ignore[operator]
            aged_at = (head.ts + self.max_buf) & MASK
            if self.queued < self.out and _before(ref, aged_at):
                self.wake_at = now + ((aged_at - ref) & MASK) / CLOCK
                return out, self.wake_at
            backlog = self.out + max(self.max_buf, 2 * self.largest_in)
            due = self._due(head.ts)
            if due > now + EARLY and self.queued <= backlog:
                self.wake_at = due
                return out, due
            out.append(self._build())
        self.wake_at = None
        return out, None

    def next_deadline(self, now: float) -> float:
        """When the queue next has a packet due (FOREVER: when another comes)."""
        return FOREVER if self.wake_at is None else self.wake_at

    def _build(self) -> bytes:
        """One output packet from the head of the queue (B.4 steps 3-5)."""
        queue = self.queue
        head = queue[0]
        unit = _UNIT.get(head.pt, _DEFAULT_UNIT)
        target = -(-max(self.out, unit) // unit) * unit
        first = head
        ts, marker, pt = head.ts, head.marker, head.pt
        split = _chunk(head, target) if head.samples > target else None
        if split is not None:
            nbytes, samples = split
            parts = [head.payload[:nbytes]]
            self._cut(head, nbytes, samples)
        else:
            queue.pop(0)
            parts = [head.payload]
            samples, size = head.samples, len(head.payload)
            appendable = head.appendable
            while queue and samples < target and appendable:
                nxt = queue[0]
                if (ts + samples) & MASK != nxt.ts or nxt.pt != pt:
                    break
                left = target - samples
                chunk = _chunk(nxt, left) if left < nxt.samples else None
                nbytes = chunk[0] if chunk is not None else len(nxt.payload)
                if size + nbytes > MAX_PACKET:
                    break
                if chunk is not None:
                    parts.append(nxt.payload[:nbytes])
                    samples += chunk[1]
                    self._cut(nxt, nbytes, chunk[1])
                    break
                queue.pop(0)
                parts.append(nxt.payload)
                samples += nxt.samples
                size += nbytes
                appendable = nxt.appendable
        if self.out_seq is None:
            self.out_seq = first.seq
        packet = _rewrite(first.header, pt, self.out_seq, ts, marker) + b"".join(parts)
        self.out_seq = (self.out_seq + 1) & 0xFFFF
        self.last_sent = (ts + samples) & MASK
        self.queued -= samples
        self.n_out += 1
        return packet

    @staticmethod
    def _cut(item: _Queued, nbytes: int, nsamples: int) -> None:
        """The first ``nbytes`` of ``item`` went out: keep the rest queued."""
        item.payload = item.payload[nbytes:]
        item.ts = (item.ts + nsamples) & MASK
        item.samples -= nsamples
        item.marker = False

    def discard(self) -> None:
        """The resizer is removed (U/L without z, or the session ends):
        queued packets are dropped and counted as discards."""
        self.n_discard += len(self.queue)
        self.queue = []
        self.queued = 0


def _rewrite(header: bytes, pt: int, seq: int, ts: int, marker: bool) -> bytes:
    """The input header (CSRC list and extension kept) with new fields; the
    padding bit is cleared, as padding is never carried over."""
    out = bytearray(header)
    out[0] &= 0xDF
    out[1] = (0x80 if marker else 0) | pt
    out[2:8] = ((seq & 0xFFFF) << 32 | (ts & MASK)).to_bytes(6, "big")
    return bytes(out)
