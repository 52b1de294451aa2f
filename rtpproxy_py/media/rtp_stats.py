"""Per-file RTP statistics as extractaudio prints them (extractaudio.md 7).

Sequence tracking in "segments" (a new one on an SSRC change, a marked
sequence reset or a desynchronisation), and RFC 3550-style interarrival
jitter kept per SSRC. The arithmetic deliberately follows the reference
algorithm, quirks included (32-bit unsigned sequence values, no wrap logic
in places), because the printed lines are compared with upstream's.
"""

import functools
import itertools
import operator

from .codecs.payload_types import clock_rate

U32 = 0xFFFFFFFF
SEEN_BITS = 131072
MAX_JITTER_RECORDS = 10
TS_RING = 10

NORMAL, SEQ_RESET = 0, 1


MAX_RUN_STEP = 100          # a sequence step up to this is "the next packet" in a fast run


class StatsInconsistent(Exception):
    """The sequence engine cannot place a packet (upstream stops loading the file).
    ``index``: the packet's position in ``update_many``'s arrays."""

    def __init__(self, index=None):
        super().__init__(index)
        self.index = index


def _jitter_rate(pt):
    return clock_rate(pt) if (pt == 0 or 3 <= pt <= 18) else None


def _step(jlast, a):
    return jlast + (a - jlast) / 16.0


class _Segment:
    __slots__ = ("pcount", "min_seq", "max_seq", "ssrc", "duplicates", "base_ts", "base_rtime")

    def __init__(self, seq, ssrc, ts, rtime):
        self.pcount = 1
        self.min_seq = self.max_seq = seq
        self.ssrc = ssrc
        self.duplicates = 0
        self.base_ts = ts
        self.base_rtime = rtime


class _JitterRecord:
    __slots__ = ("ssrc", "prev_rtime_ts", "prev_ts", "jlast", "jmax", "jtotal", "pcount", "ring")

    def __init__(self, ssrc):
        self.ssrc = ssrc
        self.prev_rtime_ts = 0
        self.prev_ts = 0
        self.jlast = 0.0
        self.jmax = 0.0
        self.jtotal = 0.0
        self.pcount = 0
        self.ring = []


class Jitter:
    """Interarrival jitter per SSRC, in RTP timestamp units."""

    def __init__(self):
        self.records = []            # newest first
        self.folded_jmax = 0.0
        self.folded_jtotal = 0.0
        self.folded_intervals = 0
        self.ts_dups = 0

    def _record(self, ssrc):
        for rec in self.records:
            if rec.ssrc == ssrc:
                return rec
        if len(self.records) >= MAX_JITTER_RECORDS:
            old = self.records.pop()
            if old.pcount >= 2:
                self.folded_jmax = max(self.folded_jmax, old.jmax)
                self.folded_jtotal += old.jtotal
                self.folded_intervals += old.pcount - 1
        rec = _JitterRecord(ssrc)
        self.records.insert(0, rec)
        return rec

    def update(self, pt, ts, ssrc, arrival, hint):
        rate = clock_rate(pt) if (pt == 0 or 3 <= pt <= 18) else None
        if rate is None:
            return
        rec = self._record(ssrc)
        rts = int(arrival * rate)
        if ts in rec.ring:
            self.ts_dups += 1
            if rec.pcount == 1:
                rec.prev_rtime_ts, rec.prev_ts = rts, ts
            return
        count = True
        if rec.prev_rtime_ts != 0:
            if hint == SEQ_RESET:
                count = False
            else:
                d = rec.prev_rtime_ts - rts
                wrcorr = 0
                if rec.prev_ts > ts:
                    back = rec.prev_ts - ts
                    if back > 1 << 31:
                        wrcorr = 1 << 32
                    elif d != 0 and back > abs(d) * 50:
                        count = False
                elif d != 0 and ts - rec.prev_ts > abs(d) * 1024:
                    count = False
                if count:
                    delta = (rts - (ts + wrcorr)) - (rec.prev_rtime_ts - rec.prev_ts)
                    rec.jlast += (abs(delta) - rec.jlast) / 16.0
                    rec.jmax = max(rec.jmax, rec.jlast)
                    rec.jtotal += rec.jlast
        if count:
            rec.pcount += 1
        ring = rec.ring
        ring.append(ts)
        if len(ring) > TS_RING:
            del ring[0]
        rec.prev_rtime_ts, rec.prev_ts = rts, ts

    def summary(self):
        """(last, average, max) jitter, or None when no SSRC has two packets."""
        qualifying = [r for r in self.records if r.pcount >= 2]
        if not qualifying and not self.folded_intervals:
            return None
        last = qualifying[0].jlast if qualifying else 0.0
        intervals = self.folded_intervals + sum(r.pcount - 1 for r in qualifying)
        total = self.folded_jtotal + sum(r.jtotal for r in qualifying)
        jmax = max([self.folded_jmax] + [r.jmax for r in qualifying])
        return last, (total / intervals if intervals else 0.0), jmax


class RtpStreamStats:
    """Sequence and jitter statistics of the RTP packets of one file, in file order."""

    def __init__(self):
        self.ssrc_changes = 0
        self.psent = 0
        self.precvd = 0
        self.duplicates = 0
        self.seq_offset = 0
        self.seg = None
        self.seen = bytearray(SEEN_BITS)
        self.jitter = Jitter()

    def _close_segment(self):
        seg = self.seg
        if seg is not None and seg.pcount > 0:
            self.psent += (seg.max_seq - seg.min_seq + 1) & U32
            self.precvd += seg.pcount
            self.duplicates += seg.duplicates

    def _new_segment(self, seq, ssrc, ts, rtime):
        self.seen = bytearray(SEEN_BITS)
        self.seg = _Segment(seq, ssrc, ts, rtime)
        self.seen[seq % SEEN_BITS] = 1

    def update(self, seq, ts, ssrc, marker, pt, arrival):
        """Account one packet. Raises StatsInconsistent."""
        seg = self.seg
        if seg is None:
            self._new_segment(seq, ssrc, ts, arrival)
            self.ssrc_changes = 1
            self.jitter.update(pt, ts, ssrc, arrival, NORMAL)
            return
        if ssrc != seg.ssrc:
            self._close_segment()
            self._new_segment(seq, ssrc, ts, arrival)
            self.ssrc_changes += 1
            self.jitter.update(pt, ts, ssrc, arrival, NORMAL)
            return
        x = (seq + self.seq_offset) & U32
        max_seq = seg.max_seq
        if marker and x < max_seq and (max_seq & 0xFFFF) != 65535:
            self._close_segment()
            self._new_segment(x, ssrc, ts, arrival)
            self.jitter.update(pt, ts, ssrc, arrival, SEQ_RESET)
            return
        hint = SEQ_RESET if x == 0 and (max_seq & 0xFFFF) < 65500 else NORMAL
        self.jitter.update(pt, ts, ssrc, arrival, hint)
        if max_seq % 65536 < 536 and seq > 65000:
            x = (x - 65536) & U32
        elif max_seq > 65000 and x < max_seq - 65000:
            self.seq_offset = (self.seq_offset + 65536) & U32
            x = (x + 65536) & U32
            half = SEEN_BITS // 2
            if self.seq_offset % SEEN_BITS == 65536:
                self.seen[half:] = bytes(half)
            else:
                self.seen[:half] = bytes(half)
        elif x + 536 < max_seq or x > max_seq + 536:
            self._close_segment()
            base_ts, base_rtime = seg.base_ts, seg.base_rtime
            self._new_segment(x, ssrc, base_ts, base_rtime)
            return
        index = x % SEEN_BITS
        if self.seen[index]:
            seg.duplicates += 1
            return
        self.seen[index] = 1
        if x >= seg.max_seq:
            seg.max_seq = x
            seg.pcount += 1
        elif x >= seg.min_seq:
            seg.pcount += 1
        elif self.seq_offset == 0:
            seg.min_seq = x
            seg.pcount += 1
        else:
            raise StatsInconsistent()

    def finish(self):
        self._close_segment()

    # --- the whole-array form ------------------------------------------------------
    #
    # Most packets of a recording simply follow the one before: same SSRC and
    # payload type, sequence number a little higher, timestamp higher. For
    # such a run the per-packet rules above reduce to counting, setting bits
    # and one jitter recurrence, done here with NumPy; every other packet goes
    # through ``update``. The result is the same, bit for bit (the recurrence
    # is evaluated in the same order with the same float operations).

    def update_many(self, seq: "np.ndarray", ts: "np.ndarray", ssrc: "np.ndarray",
                    marker: "np.ndarray", pt: "np.ndarray", arrival: "np.ndarray") -> None:
        """``update`` for each packet of the arrays, in order. Raises
        StatsInconsistent with the index of the packet that cannot be placed."""
        import numpy as np
        count = len(seq)
        if count == 0:
            return
        rates = np.zeros(128, dtype=np.int64)
        for p in range(128):
            rates[p] = _jitter_rate(p) or 0
        rate = rates[pt & 0x7F]
        rts = (arrival * rate).astype(np.int64)
        step = (seq[1:] - seq[:-1]) & 0xFFFF
        follows = ((ssrc[1:] == ssrc[:-1]) & (step >= 1) & (step <= MAX_RUN_STEP)
                   & (pt[1:] == pt[:-1]) & ((rate[1:] == 0) | ((ts[1:] > ts[:-1]) & (rts[1:] > 0))))
        breaks = np.flatnonzero(~follows) + 1         # packets that do not follow their predecessor
        # Python numbers for ``update``: whole lists when many packets need it
        columns = (seq, ts, ssrc, marker, pt, arrival)
        if len(breaks) > count // 8:
            columns = [c.tolist() for c in columns]
        seq_c, ts_c, ssrc_c, marker_c, pt_c, arrival_c = columns
        i = 0
        while i < count:
            try:
                self.update(int(seq_c[i]), int(ts_c[i]), int(ssrc_c[i]), bool(marker_c[i]),
                            int(pt_c[i]), float(arrival_c[i]))
            except StatsInconsistent:
                raise StatsInconsistent(i) from None
            i += 1
            k = int(np.searchsorted(breaks, i))
            end = int(breaks[k]) if k < len(breaks) else count
            if end > i:
                i = self._run(i, end, seq, ts, int(pt_c[i]), rate, rts)

    def _run(self, i: int, end: int, seq: "np.ndarray", ts: "np.ndarray", pt: int,
             rate: "np.ndarray", rts: "np.ndarray") -> int:
        """Account packets i..end-1, each following its predecessor; returns the
        index of the first packet not accounted (then handled by ``update``)."""
        import numpy as np
        seg = self.seg
        prev_seq = int(seq[i - 1])
        if seg is None or seg.max_seq != prev_seq + self.seq_offset:
            return i
        jrate = int(rate[i])
        rec = None
        if jrate:
            rec = self.jitter.records[0] if self.jitter.records and \
                self.jitter.records[0].ssrc == seg.ssrc else self._find_record(seg.ssrc)
            if rec is None or rec.prev_ts != int(ts[i - 1]) or rec.prev_rtime_ts != int(rts[i - 1]) \
                    or rec.prev_rtime_ts == 0:
                return i
            ring_hit = np.flatnonzero(np.isin(ts[i:min(end, i + TS_RING)], rec.ring))
            if len(ring_hit):
                end = i + int(ring_hit[0])
                if end == i:
                    return i
        steps = (seq[i:end] - seq[i - 1:end - 1]) & 0xFFFF
        x = seg.max_seq + np.cumsum(steps)
        # wraps: the 16-bit value goes down; seq_offset grows, half of ``seen`` is reused
        wraps = np.flatnonzero(seq[i:end] < seq[i - 1:end - 1])
        bounds = [0] + wraps.tolist() + [end - i]
        seen = np.frombuffer(self.seen, dtype=np.uint8)
        half = SEEN_BITS // 2
        for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if n > 0:
                self.seq_offset = (self.seq_offset + 65536) & U32
                if self.seq_offset % SEEN_BITS == 65536:
                    self.seen[half:] = bytes(half)
                else:
                    self.seen[:half] = bytes(half)
            if b > a:
                idx = x[a:b] % SEEN_BITS
                if seen[idx].any():          # cannot happen for forward steps; be exact anyway
                    end = i + a
                    break
                seen[idx] = 1
                seg.max_seq = int(x[b - 1])
                seg.pcount += b - a
        if rec is not None and end > i:
            self._jitter_run(rec, ts[i - 1:end], rts[i - 1:end])
        return end

    def _find_record(self, ssrc):
        for rec in self.jitter.records:
            if rec.ssrc == ssrc:
                return rec
        return None

    @staticmethod
    def _jitter_run(rec, ts, rts):
        """Jitter of packets 1.. of the arrays (0: the one already accounted)."""
        import numpy as np
        d = rts[:-1] - rts[1:]
        jump = (d != 0) & (ts[1:] - ts[:-1] > np.abs(d) * 1024)
        counted = ~jump
        delta = (rts[1:] - ts[1:]) - (rts[:-1] - ts[:-1])
        values = np.abs(delta[counted])
        if len(values):
            if rec.jlast == 0.0 and not values.any():
                pass                             # every jlast stays 0.0
            else:
                series = list(itertools.accumulate(values.tolist(), _step, initial=rec.jlast))[1:]
                rec.jlast = series[-1]
                rec.jmax = max(rec.jmax, max(series))
                rec.jtotal = functools.reduce(operator.add, series, rec.jtotal)
            rec.pcount += len(values)
        rec.ring = (rec.ring + ts[1:].tolist())[-TS_RING:]
        rec.prev_rtime_ts, rec.prev_ts = int(rts[-1]), int(ts[-1])

    def lines(self):
        """The two or three lines extractaudio prints for the file."""
        seg = self.seg
        if seg is None:
            head = (0, 0, 0, self.seq_offset, 0, 0)
        else:
            head = (seg.pcount, seg.min_seq, seg.max_seq, self.seq_offset, seg.ssrc, seg.duplicates)
        out = ["pcount=%u, min_seq=%u, max_seq=%u, seq_offset=%u, ssrc=0x%.8X, duplicates=%u" % head,
               "ssrc_changes=%u, psent=%u, precvd=%u, plost=%d" % (
                   self.ssrc_changes, self.psent, self.precvd, self.psent - self.precvd)]
        jitter = self.jitter.summary()
        if jitter is not None:
            out.append("last_jitter=%f,average_jitter=%f,max_jitter=%f" % jitter)
        return out
