"""RTP analysis of one received stream: the ``rtpa_*`` counters, jitter and
the longest inter-packet interval (control-protocol.md 5.14, media-relay.md 10).

The engine follows extractaudio.md section 7, which describes the analyser
upstream uses both for extractaudio's statistics and for the relay's
per-stream counters:

* sequence tracking in *segments*: a segment is a run of packets with one
  SSRC and a plausible sequence progression; an SSRC change, a marked
  sequence reset or a jump of more than 536 starts a new one. Totals:
  ``nsent`` (sum of max - min + 1 over segments), ``nrcvd`` (unique packets),
  ``ndups``, ``nlost = nsent - nrcvd``;
* RFC 3550 interarrival jitter per SSRC, in RTP timestamp units;
* ``perrs``: packets that do not parse as RTP.

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
one go (NumPy for long runs): before any result is read, at the next
unusual packet, and by the daemon's once-a-second tidy() when a run is long.
Stream.on_latched_packet inlines the fast path, as a method call per packet
cost more than the comparison (BENCHMARKS.md, "RTP analysis").
"""

import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import rtp
from .codecs.payload_types import clock_rate

# How far behind the newest sequence number a packet can still be tested for
# being a duplicate (536 back, or 1071 back for a late packet from before a
# wrap); seen numbers older than this are forgotten.
SEEN_WINDOW = 2048
# Jitter: records kept per SSRC before the oldest is folded into totals.
MAX_SSRC_RECORDS = 10
RING_SIZE = 10
# A timestamp step larger than this could trip the "timestamp jump" rule, so
# such streams stay on the slow path (1024 ticks = 128 ms at 8 kHz).
MAX_FAST_TS_STEP = 1024

_HINT_NORMAL = 0
_HINT_SEQ_RESET = 1

_SEQ_BIT = 1 << 64          # the sequence number's lowest bit in a header read as one integer
# Fast-path packets keep only their arrival time until settled: the daemon's
# housekeeping settles a stream once this many have piled up (20 s at 50
# packets/s), and runs this long or longer are settled with NumPy.
SETTLE_BATCH = 1024
NUMPY_FROM = 64
_CHUNK = 1024
_POW = (15 / 16) ** np.arange(1, _CHUNK + 1, dtype=np.float64)
_IPOW16 = 1.0 / _POW / 16

if sys.version_info >= (3, 11):
    header_int = int.from_bytes           # big-endian by default; cheaper without the argument
else:                                     # pragma: no cover
    def header_int(data: bytes) -> int:
        return int.from_bytes(data, "big")
# Steps are shared between streams (most use the same one), so the one a
# packet adds is usually in the CPU's cache.
_STEPS: Dict[int, int] = {}


class _JitterRecord:
    """RFC 3550 jitter state of one SSRC (extractaudio.md section 7)."""

    __slots__ = ("ssrc", "prev_rts", "prev_ts", "jlast", "jmax", "jtotal", "pcount",
                 "ring", "ring_pos")

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.prev_rts: float = 0
        self.prev_ts: int = 0
        self.jlast = 0.0
        self.jmax = 0.0
        self.jtotal = 0.0
        self.pcount = 0
        self.ring: List[Optional[int]] = [None] * RING_SIZE
        self.ring_pos = 0

    def push(self, ts: int) -> None:
        self.ring[self.ring_pos] = ts
        self.ring_pos = (self.ring_pos + 1) % RING_SIZE


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


class RtpAnalyzer:
    """Statistics of the RTP packets received on one stream."""

    __slots__ = (
        # the fast path's state (a FastRun), and what the run continues from
        "run", "fast_ts_step", "jrec", "jclock",
        # totals over closed segments
        "psent", "precvd", "pdups", "ssrc_changes", "perrs",
        # the open segment
        "seg_ssrc", "pcount", "min_seq", "max_seq", "seq_offset", "seg_dups",
        "run_lo", "seen", "last_seq", "last_ts",
        # jitter records, newest first, and what folded records left behind
        "records", "fold_jmax", "fold_jtotal", "fold_count",
        # arrival times
        "last_t", "max_gap",
    )

    def __init__(self) -> None:
        self.run = FastRun()
        self.fast_ts_step = 0
        self.jrec: Optional[_JitterRecord] = None
        self.jclock = 0
        self.psent = self.precvd = self.pdups = self.ssrc_changes = self.perrs = 0
        self.seg_ssrc: int = None  # type: ignore[assignment]  # None until the first packet
        self.pcount = self.min_seq = self.max_seq = self.seq_offset = self.seg_dups = 0
        self.run_lo = 0
        self.seen: List[List[int]] = []
        # None until the first packet; the fast path and settle() run only after it
        self.last_seq: int = None  # type: ignore[assignment]
        self.last_ts: int = None  # type: ignore[assignment]
        self.records: List[_JitterRecord] = []
        self.fold_jmax = 0.0
        self.fold_jtotal = 0.0
        self.fold_count = 0
        self.last_t: float = None  # type: ignore[assignment]  # None until the first packet
        self.max_gap = 0.0

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
        self.max_seq += n
        self.pcount += n
        self.last_seq = (self.last_seq + n) & 0xFFFF
        first_ts = self.last_ts
        self.last_ts = (first_ts + n * step) & 0xFFFFFFFF
        rec = self.jrec
        if n < NUMPY_FROM:
            self._settle_times(times, rec, step)
        else:
            self._settle_times_numpy(times, rec, step)
        if rec is not None:
            rec.pcount += n
            rec.prev_ts = self.last_ts
            # the ring saw the run's timestamps; only the last ten can still be in it
            k = min(n, RING_SIZE)
            rec.ring_pos = (rec.ring_pos + n - k) % RING_SIZE
            for i in range(n - k + 1, n + 1):
                rec.push((first_ts + i * step) & 0xFFFFFFFF)

    def tidy(self) -> None:
        """Housekeeping (once a second): settle a long run of fast-path packets."""
        if len(self.run) >= SETTLE_BATCH:
            self.settle()

    def _settle_times(self, times: List[float], rec: Optional[_JitterRecord], step: int) -> None:
        """Intervals and jitter of a run, one packet at a time (short runs)."""
        last_t, longest = self.last_t, self.max_gap
        if rec is None:
            for t in times:
                if t - last_t > longest:
                    longest = t - last_t
                last_t = t
        else:
            clock = self.jclock
            prev_rts, jlast, jmax, jtotal = rec.prev_rts, rec.jlast, rec.jmax, rec.jtotal
            for t in times:
                if t - last_t > longest:
                    longest = t - last_t
                last_t = t
                rts = (t * clock) // 1
                d = (rts - prev_rts) - step
                if d < 0:
                    d = -d
                jlast += (d - jlast) / 16
                if jlast > jmax:
                    jmax = jlast
                jtotal += jlast
                prev_rts = rts
            rec.prev_rts, rec.jlast, rec.jmax, rec.jtotal = prev_rts, jlast, jmax, jtotal
        self.last_t, self.max_gap = last_t, longest

    def _settle_times_numpy(self, times: List[float], rec: Optional[_JitterRecord], step: int) -> None:
        """The same for a long run, vectorized, in few NumPy calls (each costs
        about a microsecond whatever its size). The jitter recurrence
        j[k] = j[k-1] + (D[k] - j[k-1]) / 16 is computed in closed form over
        chunks of _CHUNK packets; it agrees with the loop to about 1e-15."""
        n = len(times)
        arrivals = np.empty(n + 1)
        arrivals[0] = self.last_t
        arrivals[1:] = times
        spans = arrivals[1:] - arrivals[:-1]
        self.max_gap = max(self.max_gap, spans.max())
        self.last_t = times[-1]
        if rec is None:
            return
        rts = np.floor(arrivals * self.jclock)
        rts[0] = rec.prev_rts
        deviation = rts[1:] - rts[:-1]
        deviation -= step
        np.abs(deviation, out=deviation)
        jlast, jmax, jtotal = rec.jlast, rec.jmax, rec.jtotal
        for start in range(0, n, _CHUNK):
            part = deviation[start:start + _CHUNK]
            m = len(part)
            part *= _IPOW16[:m]
            np.cumsum(part, out=part)
            part += jlast
            part *= _POW[:m]
            jlast = part[-1]
            jmax = max(jmax, part.max())
            jtotal += part.sum()
        rec.jlast, rec.jmax, rec.jtotal = float(jlast), float(jmax), float(jtotal)
        rec.prev_rts = float(rts[-1])

    def feed_unexpected(self, data: bytes, h: int, t: float) -> None:
        """A packet the fast path did not predict (``h``: its header as an integer)."""
        self.settle()
        self.run.expect = -1
        if self.last_t is not None:
            gap = t - self.last_t
            if gap > self.max_gap:
                self.max_gap = gap
        self.last_t = t
        header = _parse(data)
        if header is None:
            self.perrs += 1
            return
        b0, marker, pt, seq, ts, ssrc = header
        prev_seq, prev_ts, prev_ssrc = self.last_seq, self.last_ts, self.seg_ssrc
        newest = self._sequence(seq, ts, ssrc, marker, pt, t)
        self.last_seq, self.last_ts = seq, ts
        if (newest and b0 == 0x80 and ssrc == prev_ssrc and prev_seq == seq - 1
                and self.max_seq == seq + self.seq_offset):
            self._arm(h, pt, ts, (ts - prev_ts) & 0xFFFFFFFF)

    def _arm(self, h: int, pt: int, ts: int, ts_step: int) -> None:
        """The packet just handled continues its stream regularly: predict the
        next header, if the fast path would give exactly the slow path's results
        for it (the timestamp rules of _jitter cannot trigger, and the timestamp
        ring holds none of the next ten timestamps)."""
        if not 0 < ts_step <= MAX_FAST_TS_STEP:
            return
        rec = None
        if clock_rate(pt) is not None:
            rec = self._find_record(self.seg_ssrc)
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

    def _sequence(self, s: int, ts: int, ssrc: int, marker: bool, pt: int, t: float) -> bool:
        """Sequence tracking (extractaudio.md 7, steps 1-6). Returns True when
        the packet became the newest of its segment."""
        if self.seg_ssrc is None:
            self._start_segment(ssrc, s)
            self.ssrc_changes = 1
            self._jitter(ssrc, pt, ts, t, _HINT_NORMAL)
            return True
        if ssrc != self.seg_ssrc:
            self._close_segment()
            self._start_segment(ssrc, s)      # at the raw number; the offset is kept
            self.ssrc_changes += 1
            self._jitter(ssrc, pt, ts, t, _HINT_NORMAL)
            return True
        x = s + self.seq_offset
        max_seq = self.max_seq
        if marker and x < max_seq and max_seq & 0xFFFF != 0xFFFF:
            self._close_segment()             # the sender restarted its sequence
            self._start_segment(ssrc, x)
            self._jitter(ssrc, pt, ts, t, _HINT_SEQ_RESET)
            return True
        hint = _HINT_SEQ_RESET if x == 0 and max_seq & 0xFFFF < 65500 else _HINT_NORMAL
        self._jitter(ssrc, pt, ts, t, hint)
        if max_seq % 65536 < 536 and s > 65000:
            x -= 65536                        # a late packet from before the wrap
        elif max_seq > 65000 and x < max_seq - 65000:
            self.seq_offset += 65536          # the sequence number wrapped
            x += 65536
        elif x + 536 < max_seq or x > max_seq + 536:
            self._close_segment()             # too far off: a new segment
            self._start_segment(ssrc, x)
            return True
        if self._seen(x):
            self.seg_dups += 1
            return False
        if x > max_seq:
            if x != max_seq + 1:
                self._forget_run(x)
            self.max_seq = x
            self.pcount += 1
            return True
        if x >= self.min_seq or self.seq_offset == 0:
            if x < self.min_seq:
                self.min_seq = x
            self.pcount += 1
            self._remember(x)
        # else: a packet older than the segment after a wrap; upstream's
        # extractaudio stops on it, the relay just leaves it out.
        return False

    def _start_segment(self, ssrc: int, x: int) -> None:
        self.seg_ssrc = ssrc
        self.min_seq = self.max_seq = self.run_lo = x
        self.pcount = 1
        self.seg_dups = 0
        self.seen = []

    def _close_segment(self) -> None:
        if self.pcount > 0:
            self.psent += self.max_seq - self.min_seq + 1
            self.precvd += self.pcount
            self.pdups += self.seg_dups

    # The sequence numbers seen in a segment: all of run_lo..max_seq, plus
    # older runs in ``seen`` as [low, high] pairs. (Upstream keeps a
    # 131072-bit map; only the last SEEN_WINDOW numbers can be looked up again,
    # so older runs are dropped.)

    def _seen(self, x: int) -> bool:
        if self.run_lo <= x <= self.max_seq:
            return True
        for low, high in self.seen:
            if low <= x <= high:
                return True
        return False

    def _forget_run(self, new_max: int) -> None:
        """A gap: the contiguous run ends here and becomes an older run."""
        self.seen.append([self.run_lo, self.max_seq])
        self.run_lo = new_max
        self._prune()

    def _remember(self, x: int) -> None:
        """A late packet filled a hole below the newest number."""
        if x == self.run_lo - 1:
            self.run_lo = x
            return
        for pair in self.seen:
            if x == pair[1] + 1:
                pair[1] = x
                return
            if x == pair[0] - 1:
                pair[0] = x
                return
        self.seen.append([x, x])
        self._prune()

    def _prune(self) -> None:
        if len(self.seen) > 32:
            floor = self.max_seq - SEEN_WINDOW
            self.seen = [pair for pair in self.seen if pair[1] >= floor]

    # --- jitter -------------------------------------------------------------------

    def _record(self, ssrc: int) -> _JitterRecord:
        rec = self._find_record(ssrc)
        if rec is not None:
            return rec
        if len(self.records) >= MAX_SSRC_RECORDS:
            old = self.records.pop()
            if old.pcount >= 2:
                self.fold_jmax = max(self.fold_jmax, old.jmax)
                self.fold_jtotal += old.jtotal
                self.fold_count += old.pcount - 1
        rec = _JitterRecord(ssrc)
        self.records.insert(0, rec)
        return rec

    def _jitter(self, ssrc: int, pt: int, ts: int, t: float, hint: int) -> None:
        clock = clock_rate(pt)
        if clock is None:
            return
        self.jclock = clock
        rec = self._record(ssrc)
        rts = (t * clock) // 1
        if ts in rec.ring:
            if rec.pcount == 1:
                rec.prev_rts, rec.prev_ts = rts, ts
            return
        if rec.prev_rts != 0 and hint != _HINT_SEQ_RESET:
            d = rec.prev_rts - rts
            prev_ts = rec.prev_ts
            wrcorr = 0
            if prev_ts > ts:
                if prev_ts - ts > 1 << 31:
                    wrcorr = 1 << 32
                elif d != 0 and prev_ts - ts > abs(d) * 50:
                    return self._save(rec, ts, rts)      # timestamp reset
            elif d != 0 and ts - prev_ts > abs(d) * 1024:
                return self._save(rec, ts, rts)          # timestamp jump
            big_d = (rts - (ts + wrcorr)) - (rec.prev_rts - prev_ts)
            rec.jlast += (abs(big_d) - rec.jlast) / 16
            if rec.jlast > rec.jmax:
                rec.jmax = rec.jlast
            rec.jtotal += rec.jlast
        if hint != _HINT_SEQ_RESET or rec.prev_rts == 0:
            rec.pcount += 1
        self._save(rec, ts, rts)

    @staticmethod
    def _save(rec: _JitterRecord, ts: int, rts: float) -> None:
        rec.push(ts)
        rec.prev_rts = rts
        rec.prev_ts = ts

    def _find_record(self, ssrc: int) -> Optional[_JitterRecord]:
        for rec in self.records:
            if rec.ssrc == ssrc:
                return rec
        return None

    # --- results -------------------------------------------------------------------

    def sequence_totals(self) -> Tuple[int, int, int]:
        """(nsent, nrcvd, ndups) over every segment so far."""
        self.settle()
        sent, rcvd, dups = self.psent, self.precvd, self.pdups
        if self.pcount > 0:
            sent += self.max_seq - self.min_seq + 1
            rcvd += self.pcount
            dups += self.seg_dups
        return sent, rcvd, dups

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

    def _jitter_records(self) -> List[_JitterRecord]:
        self.settle()
        return [rec for rec in self.records if rec.pcount >= 2]

    @property
    def rtpa_jlast(self) -> float:
        """jlast of the newest SSRC with at least two packets, timestamp units."""
        records = self._jitter_records()
        return records[0].jlast if records else 0.0

    @property
    def rtpa_jmax(self) -> float:
        return max([rec.jmax for rec in self._jitter_records()] + [self.fold_jmax])

    @property
    def rtpa_javg(self) -> float:
        records = self._jitter_records()
        count = sum(rec.pcount - 1 for rec in records) + self.fold_count
        if not count:
            return 0.0
        return (sum(rec.jtotal for rec in records) + self.fold_jtotal) / count

    def jitter_clock(self) -> int:
        """Clock rate of the newest SSRC's payload (to turn jitter into seconds)."""
        return self.jclock or 8000


def _parse(data: bytes) -> Optional[Tuple[int, bool, int, int, int, int]]:
    """(b0, marker, pt, seq, ts, ssrc) of a well-formed RTP packet, or None
    (the checks of extractaudio.md section 3)."""
    header = rtp.parse(data)
    if header is None:
        return None
    return data[0], header.marker, header.pt, header.seq, header.ts, header.ssrc
