"""The re-packetizer (media/resizer.py) on real encoded audio, driven by a
simulated clock: output packet time, timestamps, sequence numbers and marker,
decoded audio identical to the input's, pacing, and the B.3/B.4 rules."""

import random
import struct

import numpy as np
import pytest

from audio import chirp
from rtpproxy_py.media import rtp
from rtpproxy_py.media.codecs import get_codec, payload_samples
from rtpproxy_py.media.resizer import Resizer

FRAME = {0: 1, 8: 1, 9: 1, 18: 80, 3: 160}       # samples per codec frame


def encoded_stream(pt, seconds=1.2):
    """Real audio encoded with the codec of ``pt``: the payload bytes and the
    samples per byte (G.711/G.722: 1; G.729: 8; GSM: 160/33)."""
    audio = chirp(seconds)
    audio = audio[:len(audio) // 160 * 160]
    return get_codec(pt).encode(audio), len(audio)


def packetize(pt, payload, total_samples, ptime_ms, seq0=4000, ts0=123456, ssrc=0xCAFE):
    """Cut an encoded stream into RTP packets of ``ptime_ms``."""
    per_packet = ptime_ms * 8
    bytes_per_sample = len(payload) / total_samples
    packets = []
    for k in range(total_samples // per_packet):
        chunk = payload[round(k * per_packet * bytes_per_sample):
                        round((k + 1) * per_packet * bytes_per_sample)]
        packets.append(rtp.build(pt, seq0 + k, ts0 + k * per_packet, ssrc, chunk, marker=k == 0))
    return packets


def run(resizer, arrivals, tail=1.0):
    """Feed (time, packet) arrivals; return [(send time, packet)] and the
    packets passed through unchanged. Wakes the resizer when it asks to."""
    sent, passed = [], []
    wake = None
    events = list(arrivals)
    end = (events[-1][0] if events else 0) + tail
    i = 0
    while True:
        next_arrival = events[i][0] if i < len(events) else None
        if next_arrival is not None and (wake is None or next_arrival <= wake):
            now, packet = events[i]
            i += 1
            if not resizer.enqueue(packet, now):
                passed.append((now, packet))
        elif wake is not None and wake <= end:
            now = wake
        else:
            break
        out, wake = resizer.dequeue(now)
        sent.extend((now, p) for p in out)
    return sent, passed


def decode_all(pt, packets):
    codec = get_codec(pt)
    return codec.decode(b"".join(packets))


def payloads(packets):
    out = []
    for p in packets:
        h = rtp.parse(p)
        out.append(p[h.payload_offset:h.payload_end])
    return out


PTIMES = [(10, 20), (10, 30), (20, 10), (20, 30), (30, 10), (30, 20), (20, 60), (30, 30)]
# GSM frames are 20 ms: GSM input comes in 20 and 40 ms packets
CASES = [(pt, i, z) for pt in (0, 8, 9, 18) for i, z in PTIMES] + \
        [(3, i, z) for i, z in ((20, 10), (20, 30), (20, 60), (40, 20), (40, 60), (20, 20))]


@pytest.mark.parametrize("pt,in_ms,z", CASES)
def test_reframes_real_audio(pt, in_ms, z):
    payload, total = encoded_stream(pt)
    packets = packetize(pt, payload, total, in_ms)
    arrivals = [(100.0 + k * in_ms / 1000.0, p) for k, p in enumerate(packets)]
    resizer = Resizer(z)
    sent, passed = run(resizer, arrivals)
    assert passed == []
    out = [p for _, p in sent]
    headers = [rtp.parse(p) for p in out]
    unit = {3: 160}.get(pt, 80)
    target = -(-max(z * 8, unit) // unit) * unit
    samples = [payload_samples(pt, pl) for pl in payloads(out)]
    # every packet has the requested duration but the last (the flushed tail)
    assert samples[:-1] == [target] * (len(out) - 1)
    assert 0 < samples[-1] <= target
    assert sum(samples) == total
    # timestamps run on without gaps from the first input's, sequence numbers by one
    assert [h.ts for h in headers] == [123456 + sum(samples[:k]) for k in range(len(out))]
    assert [h.seq for h in headers] == [(4000 + k) & 0xFFFF for k in range(len(out))]
    assert [h.marker for h in headers] == [True] + [False] * (len(out) - 1)
    assert {h.ssrc for h in headers} == {0xCAFE} and {h.pt for h in headers} == {pt}
    # the same bytes in the same order, so the decoded audio is the input's
    assert b"".join(payloads(out)) == payload[:len(b"".join(payloads(out)))]
    assert len(b"".join(payloads(out))) == len(b"".join(payloads(packets)))
    assert np.array_equal(decode_all(pt, payloads(out)), decode_all(pt, payloads(packets)))
    assert (resizer.n_in, resizer.n_out, resizer.n_discard) == (len(packets), len(out), 0)


@pytest.mark.parametrize("in_ms,z", [(30, 10), (60, 20), (20, 10)])
def test_split_packets_are_paced_not_bursted(in_ms, z):
    payload, total = encoded_stream(0)
    packets = packetize(0, payload, total, in_ms)
    arrivals = [(50.0 + k * in_ms / 1000.0, p) for k, p in enumerate(packets)]
    sent, _ = run(Resizer(z), arrivals)
    times = [t for t, _ in sent]
    gaps = np.diff(times)
    assert np.allclose(gaps, z / 1000.0, atol=1e-6), gaps
    # each packet leaves when its first sample is due, counted from the first arrival
    first_ts = rtp.parse(packets[0]).ts
    for t, p in sent:
        assert t == pytest.approx(50.0 + (rtp.parse(p).ts - first_ts) / 8000.0, abs=1e-6)


@pytest.mark.parametrize("in_ms,z", [(10, 30), (20, 40), (20, 30)])
def test_joined_packets_leave_when_their_audio_is_complete(in_ms, z):
    payload, total = encoded_stream(0)
    packets = packetize(0, payload, total, in_ms)
    arrivals = [(50.0 + k * in_ms / 1000.0, p) for k, p in enumerate(packets)]
    sent, _ = run(Resizer(z), arrivals)
    first_ts = rtp.parse(packets[0]).ts
    for t, p in sent[:-1]:
        h = rtp.parse(p)
        end_ts = h.ts + len(p) - 12           # PCMU: one sample per byte
        # sent with the arrival of the input packet holding its last sample, not later
        holder = (end_ts - 1 - first_ts) // (in_ms * 8)
        assert t == pytest.approx(50.0 + holder * in_ms / 1000.0, abs=1e-6)
    gaps = np.diff([t for t, _ in sent[:-1]])
    assert gaps.min() >= in_ms / 1000.0 - 1e-6
    assert np.mean(gaps) == pytest.approx(z / 1000.0, rel=0.05)


def test_tail_is_flushed_when_the_stream_stops():
    """Less than one output packet left: it goes once the oldest audio is
    max_buf (here 2 x 30 ms) old, not never."""
    payload, total = encoded_stream(0, 0.1)
    packets = packetize(0, payload, total, 20)[:4]          # 80 ms in, z30: 30 + 30 + 20
    arrivals = [(10.0 + k * 0.02, p) for k, p in enumerate(packets)]
    resizer = Resizer(30)
    sent, _ = run(resizer, arrivals)
    assert [len(p) - 12 for _, p in sent] == [240, 240, 160]
    assert resizer.queue == [] and resizer.queued == 0
    last_ts = rtp.parse(sent[-1][1]).ts
    start_ts = rtp.parse(packets[0]).ts
    # the tail left when the reference clock passed its timestamp + max_buf (480)
    assert sent[-1][0] == pytest.approx(10.0 + (last_ts + 480 - 40 - start_ts) / 8000.0, abs=2e-4)


def test_g723_frames_are_walked_by_type():
    """G.723.1 (no codec needed): 24/20/4-byte frames by the low two bits."""
    rng = random.Random(7)
    frames = []
    for _ in range(40):
        kind = rng.choice([0, 1, 2])
        size = (24, 20, 4)[kind]
        frames.append(bytes([(rng.randrange(64) << 2) | kind]) + bytes(rng.randrange(256) for _ in range(size - 1)))
    packets = [rtp.build(4, 10 + k, 240 * 2 * k, 5, frames[2 * k] + frames[2 * k + 1], marker=k == 0)
               for k in range(20)]                                          # 60 ms packets
    sent, _ = run(Resizer(30), [(1.0 + k * 0.06, p) for k, p in enumerate(packets)])
    out = payloads([p for _, p in sent])
    assert out == frames                                 # one 30 ms frame per packet, in order
    assert [rtp.parse(p).ts for _, p in sent] == [240 * k for k in range(40)]


def test_g729_sid_ends_a_packet():
    """A G.729 payload ending with a 2-byte SID frame is not appended to."""
    speech = get_codec(18).encode(chirp(0.1))                # 10 frames
    packets = [rtp.build(18, 1, 0, 9, speech[:20], marker=True),
               rtp.build(18, 2, 160, 9, speech[20:30] + b"\x01\x02"),   # speech + SID
               rtp.build(18, 3, 320, 9, speech[30:50])]
    sent, _ = run(Resizer(60), [(1.0, packets[0]), (1.02, packets[1]), (1.04, packets[2])])
    assert [len(p) - 12 for _, p in sent] == [32, 20]


def test_other_payloads_pass_unchanged_and_keep_their_numbers():
    resizer = Resizer(20)
    dtmf = rtp.build(101, 77, 0, 1, b"\x01\x00\x00\xa0")
    cn = rtp.build(13, 78, 0, 1, b"\x40")
    empty = rtp.build(0, 79, 0, 1, b"")
    short_gsm = rtp.build(3, 80, 0, 1, bytes(20))
    bad_g723 = rtp.build(4, 81, 0, 1, b"\x03" + bytes(23))
    for packet in (dtmf, cn, empty, short_gsm, bad_g723, b"\x00" * 20, b"short"):
        assert resizer.enqueue(packet, 1.0) is False
    assert resizer.n_in == 0


def test_late_packet_is_discarded_and_ssrc_change_restarts_the_clock():
    resizer = Resizer(20)
    a = [rtp.build(0, 1 + k, 160 * k, 1, bytes(160), marker=k == 0) for k in range(3)]
    sent, _ = run(resizer, [(1.0, a[0]), (1.02, a[1])])
    assert len(sent) == 2
    assert resizer.enqueue(a[0], 1.05) is True              # already sent: too late
    assert resizer.n_discard == 1 and resizer.queue == []
    # a new source with timestamps far behind is taken: last_sent is forgotten
    b = rtp.build(0, 500, 7, 2, bytes(160), marker=True)
    assert resizer.enqueue(b, 1.06) is True
    out, _ = resizer.dequeue(1.06)
    h = rtp.parse(out[0])
    assert (h.ssrc, h.ts, h.seq) == (2, 7, 3)               # the output counter goes on


def test_reordered_input_leaves_in_timestamp_order():
    payload, total = encoded_stream(8, 0.2)
    packets = packetize(8, payload, total, 10)
    order = list(range(len(packets)))
    order[3], order[4] = order[4], order[3]
    arrivals = [(2.0 + k * 0.01, packets[i]) for k, i in enumerate(order)]
    sent, _ = run(Resizer(20), arrivals)
    assert b"".join(payloads([p for _, p in sent])) == b"".join(payloads(packets))


def test_retune_and_discard():
    resizer = Resizer(20)
    assert (resizer.out, resizer.max_buf) == (160, 320)
    resizer.retune(100)
    assert (resizer.out, resizer.max_buf) == (800, 1600)
    resizer.enqueue(rtp.build(0, 1, 0, 1, bytes(80)), 1.0)
    resizer.enqueue(rtp.build(0, 2, 80, 1, bytes(80)), 1.01)
    resizer.discard()
    assert resizer.n_discard == 2 and resizer.queued == 0


def test_odd_ptime_rounds_up_to_whole_units():
    """z25 on G.711 makes 30 ms packets (multiples of 10 ms); z10 on GSM 20 ms."""
    payload, total = encoded_stream(0, 0.5)
    sent, _ = run(Resizer(25), [(1 + k * 0.01, p) for k, p in
                                enumerate(packetize(0, payload, total, 10))])
    assert {len(p) - 12 for _, p in sent[:-1]} == {240}
    payload, total = encoded_stream(3, 0.5)
    sent, _ = run(Resizer(10), [(1 + k * 0.04, p) for k, p in
                                enumerate(packetize(3, payload, total, 40))])
    assert {len(p) - 12 for _, p in sent} == {33}


def test_header_extensions_are_kept_and_padding_dropped():
    ext = struct.pack("!BBHII", 0x90, 0, 1, 0, 3) + b"\xbe\xde\x00\x01" + b"\x10\xaa\x00\x00"
    packet = ext + bytes(320)
    padded = struct.pack("!BBHII", 0xA0, 0, 2, 320, 3) + bytes(320) + b"\x00\x00\x03"
    resizer = Resizer(20)
    assert resizer.enqueue(packet, 1.0) and resizer.enqueue(padded, 1.04)
    out, _ = resizer.dequeue(1.5)
    assert out[0][:2] == b"\x90\x00" and out[0][12:20] == b"\xbe\xde\x00\x01\x10\xaa\x00\x00"
    assert [rtp.parse(p).payload_end - rtp.parse(p).payload_offset for p in out] == [160] * 4
    assert all(p[0] & 0x20 == 0 for p in out)
