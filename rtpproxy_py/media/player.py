"""Prompt playback into a stream (playback-and-resizing.md Part A), sans I/O.

A Player reads a makeann file through a ``source`` (anything with
``read(offset, size) -> bytes``), cuts it into packets of whole codec frames
and stamps them with its own SSRC, sequence and timestamp space. It never
sleeps or sends: ``poll(now)`` returns the packets due at ``now`` and
``next_due`` says when to ask again; the session's greenlet in relay.py does
the waiting and the sending.
"""

import random
import re
from typing import Any, List, Optional, Protocol, Sequence

from . import rtp
from .feature import FASTPATH, FOREVER, PRECEDENCE_PROMPT, Feature

DEFAULT_PTIME = 10       # ms per packet unless P ... session picked a z<N> value
# Bytes and milliseconds of one frame, per payload type the player can cut.
# G.711 and G.722 have no frames: 8 bytes are one millisecond (8 kHz RTP clock).
FRAMES = {0: (8, 1), 8: (8, 1), 9: (8, 1), 18: (10, 10), 3: (33, 20), 4: (24, 30)}
TICKS_PER_MS = 8
# A wake-up this early still counts as on time (timers and clocks disagree slightly).
EARLY = 0.0005
# A prompt waiting for its party's address checks this often whether it is known.
START_POLL = 0.01


def parse_codec_list(text: str) -> List[int]:
    """'0,8,18' -> [0, 8, 18]; any single non-digit character separates."""
    return [int(part) for part in re.split(r"[^0-9]", text) if part]


class PromptSource(Protocol):
    """Where a Player reads its prompt from (prompt_file.PromptFile, BytesSource)."""

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``."""

    def close(self) -> None:
        """The player is done with it."""


class Player(Feature):
    """One prompt playing towards one party, a per-packet feature
    (feature.py): relayed media to the party is dropped while it plays (the
    stream's target), which the kernel cannot be told to do."""

    reason = "prompt playing"
    precedence = PRECEDENCE_PROMPT

    def __init__(self, source: "PromptSource", pt: int, ptime_ms: int = DEFAULT_PTIME, count: int = 1,
                 rng: Any = random) -> None:
        self.source = source
        self.pt = pt
        frame = FRAMES.get(pt)
        if frame is None:
            # a prompt file of a codec the player cannot cut: nothing is sent,
            # but the player stays (and keeps relayed media muted) until stopped
            self.packet_bytes: Optional[int] = None
            self.packet_ms: Optional[int] = None
        else:
            frame_bytes, frame_ms = frame
            frames = -(-ptime_ms // frame_ms)
            self.packet_bytes = frames * frame_bytes
            self.packet_ms = frames * frame_ms
        self.plays_left = count          # negative: forever
        self.offset = 0
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.ssrc = rng.getrandbits(32)
        self.started_at: Optional[float] = None
        self.next_due: Optional[float] = None             # None: not started, or nothing more to send
        self.sent = 0
        self.finished = False

    def start(self, now: float) -> None:
        """The party's address is known: the first packet is due now."""
        if self.started_at is None and not self.finished:
            self.started_at = now
            if self.packet_bytes is not None:
                self.next_due = now

    def poll(self, now: float) -> Sequence[bytes]:
        """The packets due at ``now`` (a list of RTP datagrams), in order."""
        due = self.next_due
        if due is None or due > now + EARLY:
            return ()
        # next_due is set only once started, and only when the codec can be cut
        packet_ms, started_at = self.packet_ms, self.started_at
        assert packet_ms is not None and started_at is not None
        out = []
        step = packet_ms / 1000.0
        while due <= now + EARLY:
            payload = self._next_payload()
            if payload is None:
                self.finish()
                break
            out.append(rtp.build(self.pt, self.seq, self.ts, self.ssrc, payload,
                                 marker=self.sent == 0))
            self.seq = (self.seq + 1) & 0xFFFF
            self.ts = (self.ts + TICKS_PER_MS * packet_ms) & 0xFFFFFFFF
            self.sent += 1
            due = started_at + self.sent * step
            self.next_due = due
        return out

    def _next_payload(self) -> Optional[bytes]:
        """The next packet's bytes; at the end of the file rewind if plays remain."""
        size = self.packet_bytes
        assert size is not None     # only asked for while next_due is set
        data = self.source.read(self.offset, size)
        if len(data) < size:                 # the partial tail is discarded
            if self.plays_left == 1:
                return None
            if self.plays_left > 1:
                self.plays_left -= 1
            data = self.source.read(0, size)
            if len(data) < size:             # shorter than one packet: nothing to play
                return None
            self.offset = 0
        self.offset += size
        return data

    def next_deadline(self, now: float) -> float:
        """The next packet's time; before the start, a look for the party's
        address every START_POLL; FOREVER once nothing more is sent."""
        if self.started_at is None and not self.finished:
            return now + START_POLL
        return FOREVER if self.next_due is None else self.next_due

    def user_space_reason(self, tier: str) -> Optional[str]:
        return None if tier == FASTPATH else self.reason

    def finish(self) -> None:
        """Stop for good (end of prompt, S, another P, or the session ends)."""
        self.finished = True
        self.next_due = None
        self.source.close()


class BytesSource:
    """A prompt held in memory (tests, benchmarks)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]

    def close(self) -> None:
        pass
