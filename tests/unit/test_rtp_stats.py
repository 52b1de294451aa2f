"""extractaudio's per-file statistics (extractaudio.md 7)."""

import pytest

from rtpproxy_py.media.rtp_stats import RtpStreamStats, StatsInconsistent

T0 = 1700000000.0


def feed(stats, seqs, ssrc=0xABCD, pt=0, marker_at=()):
    for i, seq in enumerate(seqs):
        stats.update(seq & 0xFFFF, 160 * i, ssrc, i in marker_at, pt, T0 + 0.02 * i)


def test_clean_stream():
    s = RtpStreamStats()
    feed(s, range(100, 200))
    s.finish()
    lines = s.lines()
    assert lines[0] == "pcount=100, min_seq=100, max_seq=199, seq_offset=0, ssrc=0x0000ABCD, duplicates=0"
    assert lines[1] == "ssrc_changes=1, psent=100, precvd=100, plost=0"
    assert lines[2] == "last_jitter=0.000000,average_jitter=0.000000,max_jitter=0.000000"


def test_loss_and_duplicates():
    s = RtpStreamStats()
    feed(s, [0, 1, 2, 2, 5, 6, 6, 7])
    s.finish()
    assert s.lines()[0].endswith("duplicates=2")
    assert s.lines()[1] == "ssrc_changes=1, psent=8, precvd=6, plost=2"


def test_wrap_extends_the_sequence():
    s = RtpStreamStats()
    feed(s, range(65530, 65540))
    s.finish()
    assert s.lines()[0].startswith("pcount=10, min_seq=65530, max_seq=65539, seq_offset=65536")
    assert s.lines()[1] == "ssrc_changes=1, psent=10, precvd=10, plost=0"


def test_ssrc_change_starts_a_segment():
    s = RtpStreamStats()
    feed(s, range(10))
    feed(s, range(500, 505), ssrc=0x77)
    s.finish()
    assert s.lines()[0] == "pcount=5, min_seq=500, max_seq=504, seq_offset=0, ssrc=0x00000077, duplicates=0"
    assert s.lines()[1] == "ssrc_changes=2, psent=15, precvd=15, plost=0"


def test_jitter_only_for_known_clock_rates():
    s = RtpStreamStats()
    feed(s, range(10), pt=101)
    s.finish()
    assert len(s.lines()) == 2


def test_jitter_measures_late_packets():
    s = RtpStreamStats()
    for i in range(50):
        late = 0.005 if i % 2 else 0.0
        s.update(i, 160 * i, 1, False, 0, T0 + 0.02 * i + late)
    s.finish()
    last, avg, jmax = (float(x.split("=")[1]) for x in s.lines()[2].split(","))
    assert 20 < avg < 80 and jmax >= last > 0          # about 40 ticks (5 ms at 8 kHz)


def test_old_packet_after_a_wrap_is_inconsistent():
    s = RtpStreamStats()
    feed(s, range(65400, 65536 + 100))
    s.update(65450, 0, 0xABCD, False, 0, T0 + 100)       # a late pre-wrap packet: counted
    with pytest.raises(StatsInconsistent):
        s.update(65300, 0, 0xABCD, False, 0, T0 + 100)   # older than the segment after a wrap


def test_whole_array_form_gives_the_same_lines_as_packet_by_packet():
    """update_many (runs counted with NumPy) against update, on streams with
    loss, reordering, duplicates, SSRC changes, marked resets, timestamp jumps,
    wraps and jitter."""
    import random
    import numpy as np
    for trial in range(40):
        rng = random.Random(trial)
        seq, ts, ssrc, t = rng.randrange(65536), rng.randrange(1 << 32), 1, 1.7e9 + rng.random()
        pt = rng.choice([0, 8, 18, 101])
        packets = []
        for _ in range(rng.choice([20, 400, 3000])):
            r, marker = rng.random(), False
            if r < 0.01:
                ssrc = rng.randrange(4)
            elif r < 0.02:
                seq, marker = rng.randrange(65536), rng.random() < 0.5
            elif r < 0.03:
                ts = rng.randrange(1 << 32)
            elif r < 0.05:
                seq = (seq - rng.randrange(1, 5)) & 0xFFFF
            elif r < 0.06:
                seq = (seq + rng.randrange(2, 700)) & 0xFFFF
            elif r < 0.07:
                pt = rng.choice([0, 8, 18, 101, 13])
            packets.append((seq, ts & 0xFFFFFFFF, ssrc, marker or rng.random() < 0.01, pt, t))
            seq, ts = (seq + 1) & 0xFFFF, ts + 160
            t += 0.02 + rng.gauss(0, 0.002)
        one = RtpStreamStats()
        stop_one = None
        for i, p in enumerate(packets):
            try:
                one.update(*p)
            except StatsInconsistent:
                stop_one = i
                break
        one.finish()
        many = RtpStreamStats()
        columns = [np.array([p[k] for p in packets], dtype=dtype) for k, dtype in
                   enumerate((np.int64, np.int64, np.int64, bool, np.int64, np.float64))]
        stop_many = None
        try:
            many.update_many(*columns)
        except StatsInconsistent as exc:
            stop_many = exc.index
        many.finish()
        assert (many.lines(), stop_many) == (one.lines(), stop_one), trial
