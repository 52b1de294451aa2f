"""The RTP statistics engine (extractaudio.md section 7): sequence tracking
in segments, loss and duplicates, RFC 3550 interarrival jitter per SSRC.

One engine, two ways to feed it:

* per packet, ``RtpStats.account``: the relay's ``rtpa_*`` counters
  (media/analyzer.py, RtpAnalyzer, which adds the longest interval,
  unparsable packets and a fast path for the common packet);
* whole arrays, ``RtpStats.account_many``: extractaudio's per-file lines
  (RtpStreamStats here), with runs of packets that simply follow one
  another applied at once (``RtpStats.extend_run``, ``Jitter.run_arrays``) and
  every other packet through ``account``.

Both give the same statistics for the same packets (tests/unit/
test_rtp_stats_engine.py feeds one sequence both ways).

The rules, in order (first match wins) for each packet (seq ``s``):

1. first packet, or an SSRC other than the segment's: a new segment
   (``seq_offset`` is kept), ``ssrc_changes += 1``;
2. ``x = s + seq_offset``; marked and behind the newest (unless the newest
   ends in 0xFFFF): the sender restarted, a new segment at ``x``;
3. jitter is updated (hint "sequence reset" when ``x == 0``);
4. a late packet from before a wrap (``x -= 65536``), a wrap
   (``seq_offset += 65536``), or more than 536 away: a new segment at ``x``;
5. seen before in the segment: a duplicate; else counted.

Totals: ``psent`` (sum of max - min + 1 over segments), ``precvd`` (unique
packets), ``duplicates``; lost = psent - precvd.

Two variants of the arithmetic, chosen when the engine is made:

* ``upstream_u32=True`` (extractaudio, whose lines are compared with
  upstream's): sequence values are 32-bit unsigned, so a late pre-wrap
  packet before the first wrap becomes a huge "newest" number, and a packet
  older than its segment after a wrap raises StatsInconsistent (upstream
  stops loading the file);
* ``upstream_u32=False`` (the relay): plain integers (that packet lowers
  ``min_seq`` below 0), and the packet older than its segment is left out.
"""

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .codecs.payload_types import clock_rate

U32 = 0xFFFFFFFF
# How far behind the newest sequence number a packet can still be tested for
# being a duplicate (536 back, or 1071 back for a late packet from before a
# wrap); older seen numbers may be forgotten.
SEEN_WINDOW = 2048
# Jitter: SSRC records kept before the oldest is folded into totals, and the
# recent timestamps each remembers.
MAX_SSRC_RECORDS = 10
RING_SIZE = 10

HINT_NORMAL = 0
HINT_SEQ_RESET = 1

MAX_RUN_STEP = 100          # account_many: a sequence step up to this is "the next packet" of a run

# The closed form of the jitter recurrence (Jitter.run_closed_form).
_CHUNK = 1024
_POW = (15 / 16) ** np.arange(1, _CHUNK + 1, dtype=np.float64)
_IPOW16 = 1.0 / _POW / 16


class StatsInconsistent(Exception):
    """The sequence engine cannot place a packet (upstream stops loading the file).
    ``index``: the packet's position in ``account_many``'s arrays."""

    def __init__(self, index: Optional[int] = None) -> None:
        super().__init__(index)
        self.index = index


# --- jitter -----------------------------------------------------------------------------

class JitterRecord:
    """RFC 3550 jitter state of one SSRC, and its ten latest timestamps (a
    ring: ``ring_pos`` is where the next one goes)."""

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

    def push_many(self, timestamps: Sequence[int], count: Optional[int] = None) -> None:
        """``push`` each of ``count`` timestamps (default: all given), of which
        ``timestamps`` holds at least the last RING_SIZE: only those can still
        be in the ring."""
        n = len(timestamps) if count is None else count
        k = min(n, RING_SIZE)
        self.ring_pos = (self.ring_pos + n - k) % RING_SIZE
        for ts in timestamps[len(timestamps) - k:]:
            self.push(ts)


class Jitter:
    """Interarrival jitter per SSRC, in RTP timestamp units (extractaudio.md 7):
    up to MAX_SSRC_RECORDS records, newest first; an older one is folded into
    the ``fold_*`` totals. Only payload types with a known clock count."""

    __slots__ = ("records", "fold_jmax", "fold_jtotal", "fold_count", "clock")

    def __init__(self) -> None:
        self.records: List[JitterRecord] = []
        self.fold_jmax = 0.0
        self.fold_jtotal = 0.0
        self.fold_count = 0
        self.clock = 0              # clock rate of the latest packet that had one

    def find(self, ssrc: int) -> Optional[JitterRecord]:
        for rec in self.records:
            if rec.ssrc == ssrc:
                return rec
        return None

    def record(self, ssrc: int) -> JitterRecord:
        rec = self.find(ssrc)
        if rec is not None:
            return rec
        if len(self.records) >= MAX_SSRC_RECORDS:
            old = self.records.pop()
            if old.pcount >= 2:
                self.fold_jmax = max(self.fold_jmax, old.jmax)
                self.fold_jtotal += old.jtotal
                self.fold_count += old.pcount - 1
        rec = JitterRecord(ssrc)
        self.records.insert(0, rec)
        return rec

    def update(self, ssrc: int, pt: int, ts: int, t: float, hint: int) -> None:
        """One packet arriving at ``t`` seconds."""
        clock = clock_rate(pt)
        if clock is None:
            return
        self.clock = clock
        rec = self.record(ssrc)
        rts = (t * clock) // 1
        if ts in rec.ring:
            if rec.pcount == 1:
                rec.prev_rts, rec.prev_ts = rts, ts
            return
        if rec.prev_rts != 0 and hint != HINT_SEQ_RESET:
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
        if hint != HINT_SEQ_RESET or rec.prev_rts == 0:
            rec.pcount += 1
        self._save(rec, ts, rts)

    @staticmethod
    def _save(rec: JitterRecord, ts: int, rts: float) -> None:
        rec.push(ts)
        rec.prev_rts = rts
        rec.prev_ts = ts

    # A run: packets of one SSRC and clock, each after ``rec``'s latest with a
    # higher timestamp that is not in the ring, and a sequence number that
    # made it the newest (so the hint is normal and no timestamp went back).
    # Of ``update``'s rules only the timestamp jump can apply.

    def run(self, rec: JitterRecord, clock: int, times: Iterable[float],
            timestamps: Sequence[int]) -> None:
        """``update`` for each packet of a run, exactly (the same float
        operations in the same order); lists, for short runs."""
        prev_rts, prev_ts = rec.prev_rts, rec.prev_ts
        deviations = []
        for t, ts in zip(times, timestamps):
            rts = (t * clock) // 1
            d = prev_rts - rts
            if d == 0 or ts - prev_ts <= abs(d) * 1024:    # else a timestamp jump: not counted
                deviations.append(abs((rts - ts) - (prev_rts - prev_ts)))
            prev_rts, prev_ts = rts, ts
        self._recur(rec, deviations)
        rec.prev_rts, rec.prev_ts = prev_rts, prev_ts
        rec.push_many(timestamps)

    def run_arrays(self, rec: JitterRecord, clock: int, times: np.ndarray,
                   timestamps: np.ndarray) -> None:
        """``run`` for long runs (extractaudio): the deviations with NumPy (the
        same exact float64 values), the recurrence in order."""
        n = len(times)
        rts = np.empty(n + 1)
        rts[0] = rec.prev_rts
        np.floor(times * clock, out=rts[1:])
        ts = np.empty(n + 1, dtype=np.int64)
        ts[0] = rec.prev_ts
        ts[1:] = timestamps
        d = rts[:-1] - rts[1:]
        counted = (d == 0) | (ts[1:] - ts[:-1] <= np.abs(d) * 1024)
        deviation = np.abs((rts[1:] - ts[1:]) - (rts[:-1] - ts[:-1]))
        self._recur(rec, deviation[counted].tolist())
        rec.prev_rts, rec.prev_ts = float(rts[-1]), int(ts[-1])
        rec.push_many(ts[-RING_SIZE:].tolist(), n)

    @staticmethod
    def _recur(rec: JitterRecord, deviations: List[float]) -> None:
        """The RFC 3550 recurrence over the |D| of the packets counted, in order."""
        jlast, jmax, jtotal = rec.jlast, rec.jmax, rec.jtotal
        for dev in deviations:
            jlast += (dev - jlast) / 16
            if jlast > jmax:
                jmax = jlast
            jtotal += jlast
        rec.jlast, rec.jmax, rec.jtotal = jlast, jmax, jtotal
        rec.pcount += len(deviations)

    def run_closed_form(self, rec: JitterRecord, clock: int, times: Sequence[float],
                        step: int) -> None:
        """``run`` for a long run whose timestamps advance by ``step`` <= 1024
        (the jump rule cannot apply), in few NumPy calls (each costs about a
        microsecond whatever its size): j[k] = j[k-1] + (D[k] - j[k-1]) / 16
        in closed form over chunks of _CHUNK packets. Agrees with ``run`` to
        about 1e-15 (the relay's fast path; extractaudio prints exact values)."""
        n = len(times)
        rts = np.empty(n + 1)
        rts[0] = 0.0
        rts[1:] = times
        rts *= clock
        np.floor(rts, out=rts)
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
        rec.pcount += n
        first_ts = rec.prev_ts
        rec.prev_ts = first_ts + n * step
        k = min(n, RING_SIZE)
        rec.push_many(range(first_ts + (n - k + 1) * step, first_ts + (n + 1) * step, step))

    def summary(self) -> Optional[Tuple[float, float, float]]:
        """(last, average, max) jitter, or None when no SSRC has two packets."""
        qualifying = [r for r in self.records if r.pcount >= 2]
        if not qualifying and not self.fold_count:
            return None
        last = qualifying[0].jlast if qualifying else 0.0
        intervals = self.fold_count + sum(r.pcount - 1 for r in qualifying)
        total = self.fold_jtotal + sum(r.jtotal for r in qualifying)
        jmax = max([self.fold_jmax] + [r.jmax for r in qualifying])
        return last, (total / intervals if intervals else 0.0), jmax


def _jitter_rates() -> np.ndarray:
    """Clock rate by payload type (0: none, no jitter)."""
    return np.array([clock_rate(pt) or 0 for pt in range(128)], dtype=np.int64)


_RATES = _jitter_rates()


# --- sequence tracking ----------------------------------------------------------------------

class RtpStats:
    """The engine: segments and their totals, and the jitter records."""

    __slots__ = (
        "seq_mask", "strict",
        # totals over closed segments
        "ssrc_changes", "psent", "precvd", "duplicates",
        # the open segment
        "seg_ssrc", "pcount", "min_seq", "max_seq", "seq_offset", "seg_dups", "run_lo", "seen",
        "prune_at", "jitter",
    )

    def __init__(self, upstream_u32: bool = False) -> None:
        # x & -1 is x: plain integers unless upstream's 32-bit arithmetic is asked for
        self.seq_mask = U32 if upstream_u32 else -1
        self.strict = upstream_u32
        self.ssrc_changes = self.psent = self.precvd = self.duplicates = 0
        self.seg_ssrc: int = None  # type: ignore[assignment]  # None until the first packet
        self.pcount = self.min_seq = self.max_seq = self.seq_offset = self.seg_dups = 0
        self.run_lo = 0
        self.seen: List[List[int]] = []
        self.prune_at = 32
        self.jitter = Jitter()

    def account(self, s: int, ts: int, ssrc: int, marker: bool, pt: int, t: float) -> bool:
        """One packet (the rules of the module's docstring). Returns True when
        it became the newest of its segment; raises StatsInconsistent (only
        with ``upstream_u32``)."""
        if ssrc != self.seg_ssrc:             # the first packet, or a new SSRC
            if self.seg_ssrc is not None:
                self._close_segment()
            self._start_segment(ssrc, s)      # at the raw number; the offset is kept
            self.ssrc_changes += 1
            self.jitter.update(ssrc, pt, ts, t, HINT_NORMAL)
            return True
        mask = self.seq_mask
        x = (s + self.seq_offset) & mask
        max_seq = self.max_seq
        if marker and x < max_seq and max_seq & 0xFFFF != 0xFFFF:
            self._close_segment()             # the sender restarted its sequence
            self._start_segment(ssrc, x)
            self.jitter.update(ssrc, pt, ts, t, HINT_SEQ_RESET)
            return True
        hint = HINT_SEQ_RESET if x == 0 and max_seq & 0xFFFF < 65500 else HINT_NORMAL
        self.jitter.update(ssrc, pt, ts, t, hint)
        if max_seq % 65536 < 536 and s > 65000:
            x = (x - 65536) & mask            # a late packet from before the wrap
        elif max_seq > 65000 and x < max_seq - 65000:
            self.seq_offset = (self.seq_offset + 65536) & mask      # the sequence number wrapped
            x = (x + 65536) & mask
        elif x + 536 < max_seq or x > max_seq + 536:
            self._close_segment()             # too far off: a new segment
            self._start_segment(ssrc, x)
            return True
        if x > max_seq:                       # (every number seen is at most max_seq)
            if x != max_seq + 1:
                self._forget_run(x)
            self.max_seq = x
            self.pcount += 1
            return True
        if self._seen(x):
            self.seg_dups += 1
            return False
        if x >= self.min_seq or self.seq_offset == 0:
            if x < self.min_seq:
                self.min_seq = x
            self.pcount += 1
            self._remember(x)
        elif self.strict:
            raise StatsInconsistent()
        # else: a packet older than the segment after a wrap, left out
        return False

    def extend_run(self, new_max: int, n: int, gaps: Sequence[Tuple[int, int]] = (),
                   wraps: int = 0) -> None:
        """``n`` packets of the open segment, each newer than the one before
        (what ``account`` does for them, jitter aside): the newest is now
        ``new_max``; ``gaps``: (last number before, first after) of each lost
        stretch; ``wraps``: 16-bit wraps on the way."""
        for before, after in gaps:
            self.seen.append([self.run_lo, before])
            self.run_lo = after
        self.max_seq = new_max
        self.pcount += n
        if wraps:
            self.seq_offset = (self.seq_offset + 65536 * wraps) & self.seq_mask
        if gaps:
            self._prune()

    def _start_segment(self, ssrc: int, x: int) -> None:
        self.seg_ssrc = ssrc
        self.min_seq = self.max_seq = self.run_lo = x
        self.pcount = 1
        self.seg_dups = 0
        self.seen = []
        self.prune_at = 32

    def _close_segment(self) -> None:
        if self.pcount > 0:
            self.psent += (self.max_seq - self.min_seq + 1) & self.seq_mask
            self.precvd += self.pcount
            self.duplicates += self.seg_dups

    # The sequence numbers seen in a segment: all of run_lo..max_seq, plus
    # older runs in ``seen`` as [low, high] pairs. (Upstream keeps a
    # 131072-bit map; only the last SEEN_WINDOW numbers can be looked up again,
    # so older runs are dropped.)

    def _seen(self, x: int) -> bool:
        if self.run_lo <= x <= self.max_seq:
            return True
        for low, high in reversed(self.seen):    # newest first: a late packet is usually recent
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
        if len(self.seen) > self.prune_at:
            floor = self.max_seq - SEEN_WINDOW
            self.seen = [pair for pair in self.seen if pair[1] >= floor]
            # a lossy stream keeps many runs in the window: filter again only
            # once the list has doubled (amortized constant cost per run)
            self.prune_at = max(32, 2 * len(self.seen))

    # --- the whole-array form ---------------------------------------------------------
    #
    # Most packets of a recording simply follow the one before: same SSRC and
    # payload type, sequence number a little higher, timestamp higher. Such a
    # run is applied at once (extend_run, Jitter.run_arrays); every other packet
    # goes through ``account``. The result is the same, bit for bit.

    def account_many(self, seq: np.ndarray, ts: np.ndarray, ssrc: np.ndarray,
                     marker: np.ndarray, pt: np.ndarray, arrival: np.ndarray) -> None:
        """``account`` for each packet of the arrays, in order. Raises
        StatsInconsistent (with ``upstream_u32``) with the index of the packet
        that cannot be placed."""
        count = len(seq)
        if count == 0:
            return
        rate = _RATES[pt & 0x7F]
        rts = (arrival * rate).astype(np.int64)
        step = (seq[1:] - seq[:-1]) & 0xFFFF
        # A marked packet may be a restart, and sequence number 0 gives the
        # jitter a "sequence reset" hint: ``account`` takes those.
        follows = ((ssrc[1:] == ssrc[:-1]) & (step >= 1) & (step <= MAX_RUN_STEP)
                   & (pt[1:] == pt[:-1]) & ((rate[1:] == 0) | ((ts[1:] > ts[:-1]) & (rts[1:] > 0)))
                   & ~marker[1:] & (seq[1:] != 0))
        breaks = np.flatnonzero(~follows) + 1         # packets that do not follow their predecessor
        # Python numbers for ``account``: whole lists when many packets need it
        columns: Sequence = (seq, ts, ssrc, marker, pt, arrival)
        if len(breaks) > count // 8:
            columns = [c.tolist() for c in columns]
        seq_c, ts_c, ssrc_c, marker_c, pt_c, arrival_c = columns
        i = 0
        while i < count:
            try:
                self.account(int(seq_c[i]), int(ts_c[i]), int(ssrc_c[i]), bool(marker_c[i]),
                             int(pt_c[i]), float(arrival_c[i]))
            except StatsInconsistent:
                raise StatsInconsistent(i) from None
            i += 1
            k = int(np.searchsorted(breaks, i))
            end = int(breaks[k]) if k < len(breaks) else count
            if end > i:
                i = self._run(i, end, seq, ts, rate, rts, arrival)

    def _run(self, i: int, end: int, seq: np.ndarray, ts: np.ndarray, rate: np.ndarray,
             rts: np.ndarray, arrival: np.ndarray) -> int:
        """Account packets i..end-1, each following its predecessor; returns the
        index of the first packet not accounted (then handled by ``account``)."""
        if self.seg_ssrc is None or self.max_seq != int(seq[i - 1]) + self.seq_offset:
            return i                          # the one before did not become the newest
        clock = int(rate[i])
        rec = None
        if clock:
            rec = self.jitter.find(self.seg_ssrc)
            if rec is None or rec.prev_ts != int(ts[i - 1]) or rec.prev_rts != int(rts[i - 1]) \
                    or rec.prev_rts == 0:
                return i
            ring = [v for v in rec.ring if v is not None]
            ring_hit = np.flatnonzero(np.isin(ts[i:min(end, i + RING_SIZE)], ring))
            if len(ring_hit):
                end = i + int(ring_hit[0])    # a timestamp seen lately: ``account`` decides
                if end == i:
                    return i
        steps = (seq[i:end] - seq[i - 1:end - 1]) & 0xFFFF
        x = self.max_seq + np.cumsum(steps)
        if self.strict and int(x[-1]) > U32:
            return i                          # past 32 bits: ``account`` wraps it as upstream
        gap_at = np.flatnonzero(steps != 1)
        gaps = list(zip((x[gap_at] - steps[gap_at]).tolist(), x[gap_at].tolist()))
        wraps = int(np.count_nonzero(seq[i:end] < seq[i - 1:end - 1]))
        self.extend_run(int(x[-1]), end - i, gaps, wraps)
        if rec is not None:
            self.jitter.run_arrays(rec, clock, arrival[i:end], ts[i:end])
        return end

    # --- results -------------------------------------------------------------------

    def sequence_totals(self) -> Tuple[int, int, int]:
        """(sent, received, duplicates) over every segment so far, the open one included."""
        sent, rcvd, dups = self.psent, self.precvd, self.duplicates
        if self.pcount > 0:
            sent += (self.max_seq - self.min_seq + 1) & self.seq_mask
            rcvd += self.pcount
            dups += self.seg_dups
        return sent, rcvd, dups


# --- extractaudio's lines ------------------------------------------------------------------

class RtpStreamStats(RtpStats):
    """Sequence and jitter statistics of the RTP packets of one file, in file
    order, as extractaudio prints them (upstream's 32-bit arithmetic)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(upstream_u32=True)

    def update(self, seq: int, ts: int, ssrc: int, marker: bool, pt: int, arrival: float) -> None:
        """Account one packet. Raises StatsInconsistent."""
        self.account(seq, ts, ssrc, marker, pt, arrival)

    def finish(self) -> None:
        self._close_segment()

    def update_many(self, seq: np.ndarray, ts: np.ndarray, ssrc: np.ndarray,
                    marker: np.ndarray, pt: np.ndarray, arrival: np.ndarray) -> None:
        """``update`` for each packet of the arrays, in order. Raises
        StatsInconsistent with the index of the packet that cannot be placed."""
        self.account_many(seq, ts, ssrc, marker, pt, arrival)

    def lines(self) -> List[str]:
        """The two or three lines extractaudio prints for the file."""
        if self.seg_ssrc is None:
            head = (0, 0, 0, self.seq_offset, 0, 0)
        else:
            head = (self.pcount, self.min_seq, self.max_seq, self.seq_offset, self.seg_ssrc,
                    self.seg_dups)
        out = ["pcount=%u, min_seq=%u, max_seq=%u, seq_offset=%u, ssrc=0x%.8X, duplicates=%u" % head,
               "ssrc_changes=%u, psent=%u, precvd=%u, plost=%d" % (
                   self.ssrc_changes, self.psent, self.precvd, self.psent - self.precvd)]
        jitter = self.jitter.summary()
        if jitter is not None:
            out.append("last_jitter=%f,average_jitter=%f,max_jitter=%f" % jitter)
        return out
