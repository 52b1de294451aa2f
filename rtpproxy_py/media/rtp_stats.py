"""Per-file RTP statistics as extractaudio prints them (extractaudio.md 7).

Sequence tracking in "segments" (a new one on an SSRC change, a marked
sequence reset or a desynchronisation), and RFC 3550-style interarrival
jitter kept per SSRC. The arithmetic deliberately follows the reference
algorithm, quirks included (32-bit unsigned sequence values, no wrap logic
in places), because the printed lines are compared with upstream's.
"""

from .codecs.payload_types import clock_rate

U32 = 0xFFFFFFFF
SEEN_BITS = 131072
MAX_JITTER_RECORDS = 10
TS_RING = 10

NORMAL, SEQ_RESET = 0, 1


class StatsInconsistent(Exception):
    """The sequence engine cannot place a packet (upstream stops loading the file)."""


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
