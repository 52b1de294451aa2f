"""The RTP analyzer (media/analyzer.py): sequence tracking with known loss,
duplicates, reordering, wraps, SSRC changes and resets; RFC 3550 jitter
against a direct computation; the longest interval; and the fast path giving
exactly the slow path's results."""

import random
import struct

import pytest

from rtpproxy_py.media.analyzer import RtpAnalyzer


class SlowOnly(RtpAnalyzer):
    """The same analyzer with the fast path never armed."""

    __slots__ = ()

    def _arm(self, *args):
        pass


def pkt(seq, ts=None, ssrc=0x1234, pt=0, marker=False, payload=b"\xff" * 160):
    ts = seq * 160 if ts is None else ts
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


def feed(analyzer, packets, t0=100.0, step=0.02):
    for k, p in enumerate(packets):
        analyzer.feed(p, t0 + k * step)
    return analyzer


def counts(a):
    return a.rtpa_nsent, a.rtpa_nrcvd, a.rtpa_ndups, a.rtpa_nlost, a.rtpa_perrs


def test_clean_stream():
    a = feed(RtpAnalyzer(), [pkt(1000 + k) for k in range(500)])
    assert counts(a) == (500, 500, 0, 0, 0)
    assert a.ssrc_changes == 1
    assert a.longest_ipi == pytest.approx(0.02)


def test_known_loss():
    lost = {10, 11, 12, 250, 499 - 1}
    a = feed(RtpAnalyzer(), [pkt(k) for k in range(500) if k not in lost])
    assert counts(a) == (500, 495, 0, 5, 0)


def test_known_duplicates():
    packets = []
    for k in range(200):
        packets.append(pkt(k))
        if k in (5, 6, 100):
            packets.append(pkt(k))
        if k == 150:
            packets.append(pkt(140))                 # an old one again
    a = feed(RtpAnalyzer(), packets)
    assert counts(a) == (200, 200, 4, 0, 0)


def test_reordering_is_not_loss():
    order = list(range(300))
    for k in range(10, 290, 20):
        order[k], order[k + 1] = order[k + 1], order[k]
    order[100:105] = [104, 100, 101, 102, 103]
    a = feed(RtpAnalyzer(), [pkt(k) for k in order])
    assert counts(a) == (300, 300, 0, 0, 0)


def test_reordered_loss_and_duplicates_together():
    order = [0, 1, 2, 4, 3, 3, 6, 7, 9, 8, 8, 10]          # 5 lost, 3 and 8 twice
    a = feed(RtpAnalyzer(), [pkt(k) for k in order])
    assert counts(a) == (11, 10, 2, 1, 0)


def test_sequence_wrap():
    a = feed(RtpAnalyzer(), [pkt(65400 + k) for k in range(300) if k != 200])
    assert counts(a) == (300, 299, 0, 1, 0)
    assert a.seq_offset == 65536


def test_late_packet_from_before_the_wrap():
    seqs = list(range(65530, 65536)) + [0, 1, 2]
    seqs.insert(7, 65535)                                    # 65535 again, after 0
    seqs.remove(65534)
    seqs.insert(8, 65534)                                    # 65534 late, after 1
    a = feed(RtpAnalyzer(), [pkt(s) for s in seqs])
    assert counts(a) == (9, 9, 1, 0, 0)


def test_ssrc_change_starts_a_segment():
    first = [pkt(k, ssrc=1) for k in range(100) if k != 50]
    second = [pkt(30000 + k, ssrc=2) for k in range(60) if k not in (7, 8)]
    a = feed(RtpAnalyzer(), first + second)
    assert counts(a) == (160, 157, 0, 3, 0)
    assert a.ssrc_changes == 2


def test_jump_starts_a_segment_without_counting_the_gap_as_loss():
    a = feed(RtpAnalyzer(), [pkt(k) for k in range(50)] + [pkt(5000 + k) for k in range(50)])
    assert counts(a) == (100, 100, 0, 0, 0)


def test_marked_sequence_reset():
    packets = [pkt(k) for k in range(100, 150)] + [pkt(10, marker=True)] + \
        [pkt(k) for k in range(11, 40)]
    a = feed(RtpAnalyzer(), packets)
    assert counts(a) == (80, 80, 0, 0, 0)


def test_unparsable_packets():
    bad = [b"\x00" * 20, b"\x80\x00", struct.pack("!BBHII", 0xA0, 0, 1, 0, 1) + b"\x00"]
    a = feed(RtpAnalyzer(), [pkt(0), bad[0], pkt(1), bad[1], bad[2], pkt(2)])
    assert counts(a) == (3, 3, 0, 0, 3)


def reference_jitter(times, timestamps, clock=8000):
    """RFC 3550 6.4.1, as extractaudio.md section 7 computes it."""
    jlast = jmax = jtotal = 0.0
    prev = None
    for t, ts in zip(times, timestamps):
        rts = (t * clock) // 1
        if prev is not None:
            d = (rts - ts) - (prev[0] - prev[1])
            jlast += (abs(d) - jlast) / 16
            jmax = max(jmax, jlast)
            jtotal += jlast
        prev = (rts, ts)
    return jlast, jmax, jtotal / (len(times) - 1)


def test_jitter_of_known_delays():
    rng = random.Random(3)
    n = 400
    delays = [rng.choice([0.0, 0.001, 0.004, 0.012]) for _ in range(n)]
    times = [50.0 + k * 0.02 + delays[k] for k in range(n)]
    timestamps = [9000 + 160 * k for k in range(n)]
    a = RtpAnalyzer()
    for t, ts, k in zip(times, timestamps, range(n)):
        a.feed(pkt(k, ts), t)
    jlast, jmax, javg = reference_jitter(times, timestamps)
    assert (a.rtpa_jlast, a.rtpa_jmax, a.rtpa_javg) == pytest.approx((jlast, jmax, javg), rel=1e-12)
    assert 20 < a.rtpa_javg < 60                      # timestamp units: a few ms at 8 kHz


def test_steady_stream_has_no_jitter():
    a = feed(RtpAnalyzer(), [pkt(k) for k in range(100)], t0=10.0, step=0.02)
    assert a.rtpa_jmax < 1.0                          # float rounding of the times only
    assert a.rtpa_javg < 1.0


def test_jitter_skips_unknown_clocks():
    a = feed(RtpAnalyzer(), [pkt(k, pt=101) for k in range(50)], step=0.033)
    assert (a.rtpa_jlast, a.rtpa_jmax, a.rtpa_javg) == (0.0, 0.0, 0.0)
    assert counts(a) == (50, 50, 0, 0, 0)


def test_longest_interval():
    a = RtpAnalyzer()
    times = [1.0, 1.02, 1.04, 1.54, 1.56, 1.6]
    for k, t in enumerate(times):
        a.feed(pkt(k), t)
    assert a.longest_ipi == pytest.approx(0.5)


def test_fast_path_takes_regular_packets():
    slow_calls = []

    class Counting(RtpAnalyzer):
        __slots__ = ()

        def feed_unexpected(self, data, h, t):
            slow_calls.append(1)
            return RtpAnalyzer.feed_unexpected(self, data, h, t)

    a = Counting()
    feed(a, [pkt(k, marker=k == 0) for k in range(1000)])
    assert len(slow_calls) <= 3
    assert counts(a) == (1000, 1000, 0, 0, 0)


def random_stream(rng, n):
    seq, ts, ssrc, t, pt = rng.randrange(65536), rng.randrange(1 << 32), 1, 100.0, 0
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            seq += rng.randrange(2, 10)
            ts += 160 * rng.randrange(2, 10)
        elif r < 0.03 and out:
            out.append((out[-1][0], t))
            continue
        elif r < 0.04 and len(out) > 3:
            out.append((out[-3][0], t))
            continue
        elif r < 0.045:
            ssrc += 1
        elif r < 0.05:
            seq += rng.randrange(600, 30000)
        elif r < 0.055:
            pt = rng.choice([0, 8, 101, 18])
        elif r < 0.06:
            ts += rng.randrange(1 << 32)
        elif r < 0.065:
            out.append((b"\x00\x01", t))
            continue
        t += rng.choice([0.02, 0.019, 0.021, 0.0, 0.04, 0.002])
        out.append((pkt(seq, ts, ssrc, pt, rng.random() < 0.01), t))
        seq += 1
        ts += 160
    return out


def results(a):
    return counts(a) + (a.ssrc_changes, a.longest_ipi)


def jitter(a):
    return a.rtpa_jlast, a.rtpa_jmax, a.rtpa_javg


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_equals_slow_path(seed):
    """Counts exactly; jitter to 1e-9 (long runs are settled with NumPy,
    whose closed form rounds differently from the packet-by-packet loop)."""
    rng = random.Random(seed)
    fast, slow = RtpAnalyzer(), SlowOnly()
    for i, (data, t) in enumerate(random_stream(rng, rng.randrange(10, 3000))):
        fast.feed(data, t)
        slow.feed(data, t)
        if i % 97 == 0:
            assert results(fast) == results(slow)
            assert jitter(fast) == pytest.approx(jitter(slow), rel=1e-9, abs=1e-9)
    assert results(fast) == results(slow)
    assert jitter(fast) == pytest.approx(jitter(slow), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("run", [5, 63, 64, 200, 1500, 3000])
def test_long_runs_settle_alike(run):
    """A run of regular packets settled in one go (NumPy for 64 and more, in
    chunks past 1024) gives the loop's jitter and interval."""
    rng = random.Random(run)
    packets = [pkt(k) for k in range(run + 2)]
    times = [10.0 + 0.02 * k + rng.choice([0, 0.001, 0.0035, 0.02]) for k in range(run + 2)]
    fast, slow = RtpAnalyzer(), SlowOnly()
    for data, t in zip(packets, times):
        fast.feed(data, t)
        slow.feed(data, t)
    assert len(fast.run) == run
    assert results(fast) == results(slow)
    assert jitter(fast) == pytest.approx(jitter(slow), rel=1e-12)


def test_tidy_settles_long_runs_only():
    a = feed(RtpAnalyzer(), [pkt(k) for k in range(100)])
    a.tidy()
    assert len(a.run) == 98
    feed(a, [pkt(k) for k in range(100, 1100)], t0=102.0)
    a.tidy()
    assert list(a.run) == [] and a.pcount == 1100


@pytest.mark.parametrize("seed", range(5))
def test_stream_inlined_fast_path_matches_feed(seed):
    """Stream.on_latched_packet inlines the fast path: same results as feed()."""
    from rtpproxy_py.session import Session
    session = Session("c", "f", 0.0, 60)
    stream = session.rtp[0]
    stream.set_analyzer(RtpAnalyzer())
    stream.rem_addr = ("127.0.0.1", 4000)
    direct = RtpAnalyzer()
    for data, t in random_stream(random.Random(seed), 2000):
        stream.on_latched_packet(data, t)
        direct.feed(data, t)
    assert results(stream.analyzer) == results(direct)
    assert jitter(stream.analyzer) == pytest.approx(jitter(direct), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_agrees_with_extractaudio_statistics(seed):
    """The relay's analyzer and extractaudio's statistics (media/rtp_stats.py,
    written separately and checked against upstream's outputs) are the same
    engine (extractaudio.md 7): same counts, SSRC changes and jitter."""
    from rtpproxy_py.media import rtp
    from rtpproxy_py.media.rtp_stats import RtpStreamStats
    analyzer, stats = RtpAnalyzer(), RtpStreamStats()
    for data, t in random_stream(random.Random(seed), 2000):
        analyzer.feed(data, t)
        header = rtp.parse(data)
        if header is not None:
            stats.update(header.seq, header.ts, header.ssrc, header.marker, header.pt, t)
    stats.finish()
    assert (analyzer.rtpa_nsent, analyzer.rtpa_nrcvd, analyzer.rtpa_ndups, analyzer.ssrc_changes) == \
        (stats.psent, stats.precvd, stats.duplicates, stats.ssrc_changes)
    assert (analyzer.rtpa_jlast, analyzer.rtpa_javg, analyzer.rtpa_jmax) == \
        pytest.approx(stats.jitter.summary(), rel=1e-9)


def test_the_analysis_replay_bench_analyzes_its_on_variant():
    """bench/analysis_replay.py (the packet path's cost with analysis on and
    off) switches analysis on through the Stream's API (Stream.analyzer is a
    read-only property now), and its "on" streams really count."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    try:
        import analysis_replay
    finally:
        sys.path.pop(0)
    on, off = analysis_replay.build(2, True), analysis_replay.build(2, False)
    assert all(st.analyzer is None and st.analysis_run is None for st in off)
    for st, packets in zip(on, analysis_replay.packets(on, 10)):
        for k, data in enumerate(packets):
            st.on_latched_packet(data, 1000.0 + 0.02 * k)
        assert st.analyzer.rtpa_nrcvd == 10 and st.analysis_run is st.analyzer.run
    assert analysis_replay.run(2, 0.2, True) > 0 and analysis_replay.run(2, 0.2, False) > 0
