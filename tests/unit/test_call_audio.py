"""extractaudio's audio path as plain objects: channels, gap filling, impairments,
mixing (extractaudio.md 2-5), on real codec output."""

import struct

import numpy as np
import pytest

from rtpproxy_py.media import call_audio, codecs
from rtpproxy_py.media.call_audio import (
    SIDE_A, SIDE_B, ChannelSet, RtpParseError, decode_channel, mix, parse_rtp, written_count)

T0 = 1700000000.0


def rtp(seq, ts, ssrc=0x1234, pt=0, payload=b"\x55" * 160, marker=False, cc=0, ext=None, pad=0):
    b0 = 0x80 | cc | (0x10 if ext is not None else 0) | (0x20 if pad else 0)
    data = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc) + bytes(4 * cc)
    if ext is not None:
        data += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    data += payload
    if pad:
        data += bytes(pad - 1) + bytes([pad])
    return data


def packet(seq, ts, arrival, **kw):
    return parse_rtp(rtp(seq, ts, **kw), arrival)


def ramp_payloads(n, pt=0):
    """n distinct 160-sample payloads (a slow ramp), encoded with ``pt``."""
    codec = codecs.get_codec(pt)
    pcm = (np.arange(160 * n) * 3 % 20000 - 10000).astype(np.int16)
    return [codec.encode(pcm[i * 160:(i + 1) * 160]) for i in range(n)], pcm


def stream(n, pt=0, ssrc=0x1234, t0=T0, ts0=1000, seq0=0):
    payloads, pcm = ramp_payloads(n, pt)
    return [packet(seq0 + i, ts0 + 160 * i, t0 + 0.02 * i, ssrc=ssrc, pt=pt, payload=payloads[i])
            for i in range(n)], pcm


def channel_samples(packets, nosync=False):
    channels = ChannelSet()
    for p in packets:
        channels.add(p, SIDE_A)
    assert len(channels) == 1
    return decode_channel(list(channels)[0].packets, nosync)


# --- RTP parsing (section 3) -----------------------------------------------------

def test_parse_header_variants():
    p = parse_rtp(rtp(7, 99, cc=2, ext=b"\x01\x02\x03\x04", pad=4, payload=b"abcd"), 1.0)
    assert (p.seq, p.ts, p.payload, p.nsamples) == (7, 99, b"abcd", 4)
    for data, reason in (
            (b"\x80" * 11, "packet is too short for RTP header"),
            (b"\x40" + bytes(11), "incorrect RTP header version"),
            (bytes([0x90]) + bytes(11), "packet is too short for extended RTP header size"),
            (bytes([0x90]) + bytes(11) + b"\x00\x00\x00\x05", "packet is too short for extended RTP header"),
            (bytes([0xA0]) + bytes(11), "packet is too short for RTP padding size"),
            (bytes([0xA0]) + bytes(12), "invalid RTP padding size"),
            (bytes([0xA0]) + bytes(11) + b"\x09", "packet is too short for RTP padding")):
        with pytest.raises(RtpParseError, match="^%s$" % reason):
            parse_rtp(data, 1.0)


def test_sample_counts_per_codec():
    assert parse_rtp(rtp(0, 0, pt=18, payload=bytes(22)), 0).nsamples == 160 + 80
    assert parse_rtp(rtp(0, 0, pt=3, payload=bytes(66)), 0).nsamples == 320
    assert parse_rtp(rtp(0, 0, pt=101, payload=bytes(4)), 0).nsamples is None     # DTMF event
    assert parse_rtp(rtp(0, 0, pt=13, payload=bytes(1)), 0).nsamples is None      # comfort noise
    assert parse_rtp(rtp(0, 0, pt=0, payload=b""), 0).nsamples is None


# --- decoding one channel (section 4) ----------------------------------------------

@pytest.mark.parametrize("pt", [0, 8, 9, 18, 3])
def test_every_codec_decodes_a_tone(pt):
    codec = codecs.get_codec(pt)
    t = np.arange(8000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    step = 160
    pkts = [packet(i, 160 * i, T0 + 0.02 * i, pt=pt, payload=codec.encode(pcm[i * step:(i + 1) * step]))
            for i in range(50)]
    out = channel_samples(pkts)
    assert len(out) == 8000
    ref = codecs.get_codec(pt).decode(b"".join(p.payload for p in pkts)) if pt in (0, 8, 9, 3) else None
    if ref is not None:
        assert np.array_equal(out, ref)       # stateful codecs: one decoder per channel
    # a clean tone comes back (lossy codecs delay it a little)
    spectrum = np.abs(np.fft.rfft(out.astype(float)))
    assert abs(np.argmax(spectrum) * 8000 / len(out) - 440) < 5


def test_in_order_stream_is_the_codec_output():
    pkts, pcm = stream(20)
    out = channel_samples(pkts)
    assert np.array_equal(out, codecs.get_codec(0).decode(b"".join(p.payload for p in pkts)))


def test_loss_is_filled_with_silence():
    pkts, _ = stream(20)
    lost = pkts[:5] + pkts[8:]               # three packets lost
    out = channel_samples(lost)
    assert len(out) == 20 * 160
    assert not out[5 * 160:8 * 160].any()
    full = channel_samples(pkts)
    assert np.array_equal(out[8 * 160:], full[8 * 160:])


def test_reordering_and_duplicates():
    pkts, _ = stream(20)
    shuffled = pkts[:5] + [pkts[6], pkts[5]] + pkts[7:12] + [pkts[11], pkts[3]] + pkts[12:]
    assert np.array_equal(channel_samples(shuffled), channel_samples(pkts))


def test_timestamp_jump_is_rebased_not_a_huge_gap():
    pkts, _ = stream(20)
    for p in pkts[10:]:
        p.ts += 8000 * 3600                  # an hour ahead of the wall clock
    out = channel_samples(pkts)
    assert len(out) == 20 * 160              # no hour of silence


def test_arrival_gap_is_filled_in_halving_steps():
    pkts, _ = stream(20)
    for p in pkts[10:]:
        p.arrival += 1.0                     # a second of nothing on the wire
        p.ts += 0                            # ... but the timestamps continue
    out = channel_samples(pkts)
    # the lag is filled until it is under 200 ms: 4000 + 2000 + 1000 + 500 (+...) zeros
    extra = len(out) - 20 * 160
    assert 8000 - 1600 <= extra <= 8000
    assert not out[10 * 160:10 * 160 + 4000].any()


def test_nosync_skips_the_gaps():
    pkts, _ = stream(20)
    out = channel_samples(pkts[:5] + pkts[8:], nosync=True)
    assert len(out) == 17 * 160


def test_dtmf_and_comfort_noise_leave_silence():
    pkts, _ = stream(20)
    # packets 5..9 replaced by RFC 2833 events / CN: dropped at load, the time is silence
    loadable = [p for p in pkts[:5] + pkts[10:]]
    out = channel_samples(loadable)
    assert len(out) == 20 * 160 and not out[5 * 160:10 * 160].any()


def test_ssrc_change_makes_two_channels_averaged_where_they_overlap():
    first, _ = stream(10, ssrc=1)
    second, _ = stream(10, ssrc=2, t0=T0 + 0.125, ts0=5000)
    channels = ChannelSet()
    for p in sorted(first + second, key=lambda p: p.arrival):
        channels.add(p, SIDE_A)
    assert [c.ssrc for c in channels] == [1, 2]
    for c in channels:
        c.samples = decode_channel(c.packets)
    out, consumed_a, consumed_b = mix(list(channels))
    assert (consumed_a, consumed_b) == (3200, 0)
    assert len(out) == 1000 + 1600
    a1, a2 = list(channels)[0].samples.astype(int), list(channels)[1].samples.astype(int)
    expected_a = np.trunc((a1[1000:] + a2[:600]) / 2)
    assert np.array_equal(out[1000:1600], np.trunc(expected_a / 2).astype(np.int16))


def test_channels_ordered_by_first_arrival():
    channels = ChannelSet()
    channels.add(packet(0, 0, T0 + 1.0, ssrc=1), SIDE_A)
    channels.add(packet(0, 0, T0 + 0.5, ssrc=2), SIDE_B)
    channels.add(packet(0, 0, T0 + 2.0, ssrc=3), SIDE_B)
    channels.add(packet(1, 160, T0 + 0.5, ssrc=4), SIDE_A)
    assert [c.ssrc for c in channels] == [4, 2, 1, 3]


# --- mixing (section 5) -------------------------------------------------------------

def _two_sides(offset_b=0.0):
    a_pkts, a_pcm = stream(10, ssrc=1)
    b_pkts, b_pcm = stream(10, ssrc=2, pt=8, t0=T0 + offset_b)
    channels = ChannelSet()
    for p in a_pkts:
        channels.add(p, SIDE_A)
    for p in b_pkts:
        channels.add(p, SIDE_B)
    for c in channels:
        c.samples = decode_channel(c.packets)
    return list(channels)


def test_stereo_left_is_a_right_is_b_aligned_by_arrival():
    chans = _two_sides(offset_b=0.0625)
    out, consumed_a, consumed_b = mix(chans, stereo=True)
    a, b = chans[0].samples, chans[1].samples
    assert out.shape == (500 + 1600, 2)
    assert np.array_equal(out[:1600, 0], a) and not out[1600:, 0].any()
    assert not out[:500, 1].any() and np.array_equal(out[500:, 1], b)
    assert (consumed_a, consumed_b) == (1600, 1600)


def test_mono_is_half_the_sum_rounded_toward_zero():
    chans = _two_sides()
    out, _, _ = mix(chans)
    s = chans[0].samples.astype(int) + chans[1].samples.astype(int)
    assert np.array_equal(out, np.trunc(s / 2).astype(np.int16))
    one_side, _, _ = mix(chans[:1])
    assert np.array_equal(one_side, np.trunc(chans[0].samples / 2).astype(np.int16))


def test_nosync_mix_concatenates_each_side():
    chans = _two_sides(offset_b=5.0)
    out, _, _ = mix(chans, stereo=True, nosync=True)
    assert out.shape == (1600, 2)


def test_written_count_is_upstreams_half_shorts():
    assert written_count(12000, 2) == 12000
    assert written_count(12000, 1) == 11 * 512 + (12000 % 1024) // 2
    assert written_count(0, 1) == 0


def test_codec_without_library_is_silence():
    pkts = [packet(i, 160 * i, T0 + 0.02 * i, pt=4, payload=bytes(24)) for i in range(5)]
    assert all(p.nsamples == 240 for p in pkts)
    out = channel_samples(pkts)
    assert not out.any() and len(out) == 4 * 160 + 0
    assert call_audio.decoded_length(4, bytes(24)) == 0


def test_same_ssrc_in_both_directions_stays_two_channels():
    """sipp (and some gateways) use one SSRC both ways: each side keeps its audio."""
    a_pkts, _ = stream(10, ssrc=0xCA110000)
    b_pkts, _ = stream(10, ssrc=0xCA110000, pt=8)
    channels = ChannelSet()
    for p in a_pkts:
        channels.add(p, SIDE_A)
    for p in b_pkts:
        channels.add(p, SIDE_B)
    assert sorted(c.side for c in channels) == [SIDE_A, SIDE_B]
    assert all(len(c.packets) == 10 and c.duplicates == 0 for c in channels)


def test_whole_array_parser_agrees_with_the_relays_parser():
    """One set of rules: rtp.parse_array (the tools) accepts exactly what
    rtp.parse (the relay) accepts, with the same fields, over random datagrams."""
    import random
    from rtpproxy_py.media import rtp as rtp_module
    rng = random.Random(7)
    datagrams = []
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        if data and rng.random() < 0.8:
            data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
        datagrams.append(data)
    buf = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
    lengths = np.array([len(d) for d in datagrams])
    headers = rtp_module.parse_array(buf, np.cumsum(lengths) - lengths, lengths)
    accepted = 0
    for i, data in enumerate(datagrams):
        one = rtp_module.parse(data)
        assert (one is None) == (headers.reason[i] != 0), data.hex()
        if one is not None:
            accepted += 1
            start = int(np.cumsum(lengths)[i] - lengths[i])
            assert (one.seq, one.ts, one.ssrc, one.pt, one.marker) == (
                headers.seq[i], headers.ts[i], headers.ssrc[i], headers.pt[i], headers.marker[i])
            assert (one.payload_offset, one.payload_end) == (
                headers.payload_start[i] - start, headers.payload_end[i] - start)
    assert accepted > 50
