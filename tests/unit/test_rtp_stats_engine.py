"""One statistics engine (media/rtp_stats.py) for the relay's rtpa_* counters
and extractaudio's lines: the same packets fed one at a time (RtpAnalyzer.feed
with its fast path, RtpStats.account) and as whole arrays
(RtpStats.account_many, RtpStreamStats.update_many) give the same statistics."""

import struct

import numpy as np
import pytest

from rtpproxy_py.media.analyzer import RtpAnalyzer
from rtpproxy_py.media.rtp_stats import RtpStats, RtpStreamStats

T0 = 1700000000.0
DTYPES = (np.int64, np.int64, np.int64, bool, np.int64, np.float64)


def talk(ssrc, seqs, start_ts, marker_at=(), ts_of=None):
    """(seq, ts, ssrc, marker, pt) for each sequence number; the timestamp
    follows the sequence number (160 per packet) unless ``ts_of`` says."""
    first = seqs[0]
    out = []
    for k, s in enumerate(seqs):
        ts = start_ts + 160 * (((s - first) & 0xFFFF) if ts_of is None else ts_of(k))
        out.append((s & 0xFFFF, ts & 0xFFFFFFFF, ssrc, k in marker_at, 0))
    return out


def packets():
    """One call's packets with every case of the rules, and their arrival times."""
    out = []
    # A: a wrap, loss (65410-65412), a duplicate twice, two swapped, and a
    # late packet from before the wrap (65530 after 2)
    a = [s for s in range(65400, 65536 + 200) if s not in (65410, 65411, 65412, 65530)]
    a.insert(a.index(65420) + 1, 65420)
    a.insert(a.index(65420) + 1, 65420)
    i = a.index(65450)
    a[i], a[i + 1] = a[i + 1], a[i]
    a.insert(a.index(65536 + 2) + 1, 65530)
    out += talk(0xA, a, 1000)
    # B: another SSRC; one lost, one duplicate
    b = [s for s in range(1000, 1100) if s != 1050]
    b.insert(b.index(1060), 1060)
    out += talk(0xB, b, 500000)
    # B restarts its sequence (marked), and goes on
    out += talk(0xB, list(range(10, 80)), 900000, marker_at=(0,))
    # C: a marked packet 72 numbers on, across the wrap: a restart too
    out += talk(0xC, list(range(65450, 65490)) + list(range(26, 60)), 2000, marker_at=(40,))
    # D: 66 numbers on across the wrap to 0: a "sequence reset" hint for the jitter
    out += talk(0xD, list(range(65440, 65471)) + list(range(0, 30)), 7000)
    times, t = [], T0
    for k in range(len(out)):
        t += (0.02, 0.021, 0.019, 0.02, 0.035)[k % 5]
        times.append(t)
    return out, times


def datagram(seq, ts, ssrc, marker, pt):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc) + b"\xd5" * 160


def columns(pkts, times):
    rows = [p + (t,) for p, t in zip(pkts, times)]
    return [np.array([r[k] for r in rows], dtype=dtype) for k, dtype in enumerate(DTYPES)]


def state(stats):
    """Everything the statistics say: totals, the open segment, jitter."""
    return (stats.sequence_totals(), stats.ssrc_changes, stats.pcount, stats.min_seq,
            stats.max_seq, stats.seq_offset, stats.seg_ssrc, stats.seg_dups)


def test_incremental_and_batch_give_the_same_statistics():
    pkts, times = packets()
    incremental = RtpAnalyzer()               # the relay: datagrams, its fast path
    for p, t in zip(pkts, times):
        incremental.feed(datagram(*p), t)
    per_packet = RtpStats()
    for p, t in zip(pkts, times):
        per_packet.account(*p, t)
    batch = RtpStats()
    batch.account_many(*columns(pkts, times))

    assert state(incremental) == state(per_packet) == state(batch)
    assert per_packet.jitter.summary() == batch.jitter.summary()    # exact: extractaudio prints them
    # (the relay settles long runs with NumPy's closed form: equal to about 1e-15)
    assert incremental.jitter.summary() == pytest.approx(batch.jitter.summary(), rel=1e-12)
    assert len(incremental.run) == 0 and incremental.fast_ts_step == 160   # the fast path ran

    # what the cases above add up to
    sent, rcvd, dups = batch.sequence_totals()
    assert batch.ssrc_changes == 4
    assert dups == 3                        # 65420 twice, 1060 once
    assert sent - rcvd == 3 + 1 + 65        # 65410-65412, 1050, and D's 65471-65535
    assert sent == 336 + 100 + 70 + 74 + 126
    assert batch.seg_ssrc == 0xD


def test_extractaudio_lines_are_the_same_one_by_one_and_as_arrays():
    """Upstream's 32-bit arithmetic (RtpStreamStats): update and update_many
    print the same lines, the marked packet across a wrap and the "sequence
    reset" hint at 0 included (update_many once counted both as a run)."""
    pkts, times = packets()
    one = RtpStreamStats()
    for p, t in zip(pkts, times):
        one.update(*p, t)
    one.finish()
    many = RtpStreamStats()
    many.update_many(*columns(pkts, times))
    many.finish()
    assert many.lines() == one.lines()
    assert many.lines()[1] == "ssrc_changes=4, psent=706, precvd=637, plost=69"


@pytest.mark.parametrize("case", ["marked restart across a wrap", "seq 0 after a wrap with a gap"])
def test_arrays_take_the_packet_by_packet_rules_at_a_wrap(case):
    """A packet 1-100 numbers on is normally applied as part of a run; at a wrap
    a marked one is a restart, and one at 0 changes the jitter (no count)."""
    if case == "marked restart across a wrap":
        pkts = talk(7, list(range(65450, 65490)) + list(range(26, 40)), 0, marker_at=(40,))
    else:
        pkts = talk(7, list(range(65440, 65471)) + list(range(0, 30)), 0)
    times = [T0 + 0.02 * k + (0.004 if k % 3 == 0 else 0.0) for k in range(len(pkts))]
    one = RtpStreamStats()
    for p, t in zip(pkts, times):
        one.update(*p, t)
    one.finish()
    many = RtpStreamStats()
    many.update_many(*columns(pkts, times))
    many.finish()
    assert many.lines() == one.lines()
