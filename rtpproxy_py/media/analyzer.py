"""RTP analysis of one received stream: the ``rtpa_*`` counters, jitter and
the longest inter-packet interval (control-protocol.md 5.14, media-relay.md 10).

The statistics are media/rtp_stats.py's engine (extractaudio.md section 7,
the analyser upstream uses both for extractaudio's statistics and for the
relay's per-stream counters), fed one packet at a time:

* sequence tracking in *segments* (RtpStats): ``nsent`` (sum of max - min + 1
  over segments), ``nrcvd`` (unique packets), ``ndups``, ``nlost = nsent -
  nrcvd``;
* RFC 3550 interarrival jitter per SSRC, in RTP timestamp units (Jitter);

and, here: ``perrs`` (packets that do not parse as RTP) and the longest
interval between two packets.

It does no I/O: ``feed(data, t)`` takes the datagram and its arrival time in
seconds (any monotonic clock). The relay passes the time its event loop woke
up for the batch of packets (Relay.now while analysis is on): with
``--poll_batch 2`` a packet's time is late by 0-2 ms, which shows as jitter
(README, "RTP analysis").

Cost: this runs for every relayed RTP packet, so the common packet (same
SSRC, next sequence number, the usual timestamp step) takes a fast path: its
12-byte header, read as one integer, is compared with the header predicted
from the previous packet, and only its arrival time is kept. Counts,
intervals, jitter and the timestamp ring for such runs are settled later in
one go (the engine's extend_run and Jitter.run, or its NumPy closed form for
long runs): before any result is read, at the next unusual packet, and by
the daemon's once-a-second tidy() when a run is long.
Stream.on_latched_packet inlines the fast path, as a method call per packet
cost more than the comparison (BENCHMARKS.md, "RTP analysis"); the compiled
fast path (_fastpath.c, fastpath.py) has a C copy of it.
"""

import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import rtp
from .codecs.payload_types import clock_rate
from .rtp_stats import RING_SIZE, JitterRecord, RtpStats

__all__ = ["RING_SIZE", "SETTLE_BATCH", "FastRun", "RtpAnalyzer", "header_int"]

# A timestamp step larger than this could trip the "timestamp jump" rule, so
# such streams stay on the slow path (1024 ticks = 128 ms at 8 kHz).
MAX_FAST_TS_STEP = 1024

_SEQ_BIT = 1 << 64          # the sequence number's lowest bit in a header read as one integer
# Fast-path packets keep only their arrival time until settled: the daemon's
# housekeeping settles a stream once this many have piled up (20 s at 50
# packets/s), and runs this long or longer are settled with NumPy.
SETTLE_BATCH = 1024
NUMPY_FROM = 64

if sys.version_info >= (3, 11):
    header_int = int.from_bytes           # big-endian by default; cheaper without the argument
else:                                     # pragma: no cover
    def header_int(data: bytes) -> int:
        return int.from_bytes(data, "big")
# Steps are shared between streams (most use the same one), so the one a
# packet adds is usually in the CPU's cache.
_STEPS: Dict[int, int] = {}


class FastRun(list):
    """The fast path's state: the arrival times of the packets that came as
    predicted (the list itself), the next header predicted (as an integer),
    and the step to the one after. One object, so the packet path touches
    as little memory as it can."""

    __slots__ = ("expect", "step")

    def __init__(self) -> None:
        list.__init__(self)
        self.expect = -1
        self.step = 0


class RtpAnalyzer(RtpStats):
    """Statistics of the RTP packets received on one stream."""

    __slots__ = (
        # the fast path's state (a FastRun), and what the run continues from
        "run", "fast_ts_step", "jrec",
        "perrs",
        # the latest packet's sequence number and timestamp (the fast path's base)
        "last_seq", "last_ts",
        # arrival times
        "last_t", "max_gap",
    )

    def __init__(self) -> None:
        RtpStats.__init__(self)
        self.run = FastRun()
        self.fast_ts_step = 0
        self.jrec: Optional[JitterRecord] = None
        self.perrs = 0
        # None until the first packet; the fast path and settle() run only after it
        self.last_seq: int = None  # type: ignore[assignment]
        self.last_ts: int = None  # type: ignore[assignment]
        self.last_t: float = None  # type: ignore[assignment]  # None until the first packet
        self.max_gap = 0.0

    @property
    def jclock(self) -> int:
        """Clock rate of the latest packet that had one (0: none yet)."""
        return self.jitter.clock

    # --- per packet ------------------------------------------------------------

    def feed(self, data: bytes, t: float) -> None:
        """Account one received datagram that arrived at ``t`` seconds."""
        run = self.run
        h = header_int(data[:12])
        if h != run.expect:
            return self.feed_unexpected(data, h, t)
        # Same SSRC, payload type and flags, sequence + 1, timestamp + the usual
        # step: only the arrival time is kept; settle() does the rest later.
        # (Stream.on_latched_packet has a copy of these lines.)
        run.expect = h + run.step
        run.append(t)

    # --- the general case ------------------------------------------------------

    def settle(self) -> None:
        """Apply what fast-path packets deferred: counts, intervals, jitter and
        the timestamp ring. Runs before anything reads the results, on the next
        unusual packet, and from the daemon's housekeeping once SETTLE_BATCH
        arrival times have piled up (tidy)."""
        run = self.run
        n = len(run)
        if not n:
            return
        times = run[:]
        del run[:]
        step = self.fast_ts_step
        self.extend_run(self.max_seq + n, n)
        self.last_seq = (self.last_seq + n) & 0xFFFF
        first_ts = self.last_ts
        self.last_ts = (first_ts + n * step) & 0xFFFFFFFF
        rec = self.jrec
        if n < NUMPY_FROM:
            last_t, longest = self.last_t, self.max_gap
            for t in times:
                if t - last_t > longest:
                    longest = t - last_t
                last_t = t
            self.last_t, self.max_gap = last_t, longest
            if rec is not None:
                self.jitter.run(rec, self.jitter.clock, times,
                                range(first_ts + step, first_ts + (n + 1) * step, step))
        else:
            arrivals = np.array(times)
            spans = arrivals[1:] - arrivals[:-1]
            self.max_gap = max(self.max_gap, times[0] - self.last_t,
                               float(spans.max()) if n > 1 else 0.0)
            self.last_t = times[-1]
            if rec is not None:
                self.jitter.run_closed_form(rec, self.jitter.clock, times, step)

    def tidy(self) -> None:
        """Housekeeping (once a second): settle a long run of fast-path packets."""
        if len(self.run) >= SETTLE_BATCH:
            self.settle()

    def feed_unexpected(self, data: bytes, h: int, t: float) -> None:
        """A packet the fast path did not predict (``h``: its header as an integer)."""
        self.settle()
        self.run.expect = -1
        if self.last_t is not None:
            gap = t - self.last_t
            if gap > self.max_gap:
                self.max_gap = gap
        self.last_t = t
        header = rtp.parse(data)
        if header is None:
            self.perrs += 1
            return
        seq, ts = header.seq, header.ts
        prev_seq, prev_ts, prev_ssrc = self.last_seq, self.last_ts, self.seg_ssrc
        newest = self.account(seq, ts, header.ssrc, header.marker, header.pt, t)
        self.last_seq, self.last_ts = seq, ts
        if (newest and data[0] == 0x80 and header.ssrc == prev_ssrc and prev_seq == seq - 1
                and self.max_seq == seq + self.seq_offset):
            self._arm(h, header.pt, ts, (ts - prev_ts) & 0xFFFFFFFF)

    def _arm(self, h: int, pt: int, ts: int, ts_step: int) -> None:
        """The packet just handled continues its stream regularly: predict the
        next header, if the fast path would give exactly the slow path's results
        for it (the timestamp rules of Jitter.update cannot trigger, and the
        timestamp ring holds none of the next ten timestamps)."""
        if not 0 < ts_step <= MAX_FAST_TS_STEP:
            return
        rec = None
        if clock_rate(pt) is not None:
            rec = self.jitter.find(self.seg_ssrc)
            if rec is None or rec.prev_ts != ts or rec.prev_rts == 0:
                return
            for old in rec.ring:
                if old is not None:
                    ahead = (old - ts) & 0xFFFFFFFF
                    if ahead and ahead % ts_step == 0 and ahead <= RING_SIZE * ts_step:
                        return
        self.jrec = rec
        self.fast_ts_step = ts_step
        step = _SEQ_BIT + (ts_step << 32)
        step = _STEPS.setdefault(step, step)
        self.run.step = step
        self.run.expect = h + step

    # --- results -------------------------------------------------------------------

    def sequence_totals(self) -> Tuple[int, int, int]:
        """(nsent, nrcvd, ndups) over every segment so far."""
        self.settle()
        return RtpStats.sequence_totals(self)

    @property
    def rtpa_nsent(self) -> int:
        return self.sequence_totals()[0]

    @property
    def rtpa_nrcvd(self) -> int:
        return self.sequence_totals()[1]

    @property
    def rtpa_ndups(self) -> int:
        return self.sequence_totals()[2]

    @property
    def rtpa_nlost(self) -> int:
        sent, rcvd, _ = self.sequence_totals()
        return max(0, sent - rcvd)

    @property
    def longest_ipi(self) -> float:
        """The longest time between two packets, seconds."""
        self.settle()
        return self.max_gap

    @property
    def rtpa_perrs(self) -> int:
        return self.perrs

    def _jitter_summary(self) -> Tuple[float, float, float]:
        self.settle()
        return self.jitter.summary() or (0.0, 0.0, 0.0)

    @property
    def rtpa_jlast(self) -> float:
        """jlast of the newest SSRC with at least two packets, timestamp units."""
        return self._jitter_summary()[0]

    @property
    def rtpa_jmax(self) -> float:
        return self._jitter_summary()[2]

    @property
    def rtpa_javg(self) -> float:
        return self._jitter_summary()[1]

    def jitter_clock(self) -> int:
        """Clock rate of the newest SSRC's payload (to turn jitter into seconds)."""
        return self.jitter.clock or 8000
