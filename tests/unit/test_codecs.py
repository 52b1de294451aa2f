"""The codec layer on real audio: G.711 exhaustively against audioop, every
codec round-tripped on a tone and a chirp (SNR), encoder and decoder output
pinned byte for byte to stored vectors, and the payload-type table."""

import os
import warnings

import numpy as np
import pytest

from audio import chirp, snr_db, tone
from rtpproxy_py.media.codecs import (ENCODABLE_PTS, CodecUnavailable, get_codec,
                                      payload_samples, unavailable_reason)
from rtpproxy_py.media.codecs import g711
from rtpproxy_py.media.codecs.native import load_library

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

VECTORS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "codec_vectors")
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_encoder_matches_audioop_for_every_input():
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encoder_matches_audioop_for_every_input():
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_decoder_is_audioop_except_the_two_upstream_codes():
    reference = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16).copy()
    reference[0x7F], reference[0xFF] = -2, 2
    assert g711.ulaw_decode(ALL_CODES).tolist() == reference.tolist()
    assert audioop.ulaw2lin(b"\x7f\xff", 2) == b"\x00\x00\x00\x00"   # the quirk is ours


def test_alaw_decoder_matches_audioop():
    reference = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    assert g711.alaw_decode(ALL_CODES).tolist() == reference.tolist()


# Minimum SNR in dB after a round trip (tone, chirp). The waveform coders keep
# the signal; GSM and G.729 are speech coders, poorer on a sweep. A codec that
# outputs garbage or silence measures at or below 0 dB.
THRESHOLDS = {0: (33, 33), 8: (33, 33), 9: (50, 45), 3: (25, 7), 18: (18, 10)}
DELAY = 60   # no codec here delays by more than this many samples


@pytest.mark.parametrize("pt", ENCODABLE_PTS)
@pytest.mark.parametrize("signal", ["tone", "chirp"])
def test_round_trip_snr(pt, signal):
    source = tone(2.0) if signal == "tone" else chirp(2.0)
    encoder, decoder = get_codec(pt), get_codec(pt)
    payload = encoder.encode(source)
    frames = len(source) // encoder.frame_samples
    assert len(payload) == frames * (encoder.frame_bytes)
    decoded = decoder.decode(payload)
    assert decoded.dtype == np.int16 and len(decoded) == len(source)
    minimum = THRESHOLDS[pt][0 if signal == "tone" else 1]
    assert snr_db(source, decoded, max_lag=DELAY, skip=400) >= minimum


@pytest.mark.parametrize("signal", ["tone", "chirp"])
def test_g722_wideband_round_trip(signal):
    source = tone(2.0, rate=16000) if signal == "tone" else chirp(2.0, rate=16000, f1=7000)
    payload = get_codec(9, sample_rate=16000).encode(source)
    assert len(payload) == len(source) // 2          # 8000 bytes per second either way
    decoded = get_codec(9, sample_rate=16000).decode(payload)
    assert len(decoded) == len(source)
    assert snr_db(source, decoded, max_lag=DELAY, skip=800) >= (30 if signal == "tone" else 22)


def test_stream_encoding_in_pieces_equals_one_call():
    """Codec objects keep their state between calls (one per stream)."""
    source = chirp(0.5)
    for pt in ENCODABLE_PTS:
        whole = get_codec(pt).encode(source)
        codec = get_codec(pt)
        pieces = b"".join(codec.encode(source[i:i + 160]) for i in range(0, len(source), 160))
        assert pieces == whole, pt


def _vector(name):
    with open(os.path.join(VECTORS, name), "rb") as f:
        return f.read()


@pytest.mark.parametrize("pt", ENCODABLE_PTS)
def test_encoder_and_decoder_match_stored_vectors(pt):
    source = np.frombuffer(_vector("in.sln"), dtype="<i2")
    encoded = get_codec(pt).encode(source)
    assert encoded == _vector("enc.%d" % pt)
    assert get_codec(pt).decode(encoded).astype("<i2").tobytes() == _vector("dec.%d" % pt)


def test_g729_vad_vector_has_sid_and_silent_frames():
    source = np.frombuffer(_vector("in.sln"), dtype="<i2")
    codec = get_codec(18, vad=True)
    lengths = [len(codec.encode_frame(source[i:i + 80])) for i in range(0, len(source), 80)]
    assert set(lengths) <= {0, 2, 10} and 10 in lengths and min(lengths) < 10
    assert get_codec(18, vad=True).encode(source) == _vector("enc.18v")


def test_frame_codecs_pad_the_last_frame():
    assert len(get_codec(3).encode(tone(0.01))) == 33          # 80 samples -> one frame
    assert len(get_codec(18).encode(tone(0.015))) == 20        # 120 samples -> two frames
    assert len(get_codec(0).encode(tone(0.015))) == 120


def test_g729_decoder_splits_payloads_like_upstream():
    speech = get_codec(18).encode(tone(0.02))
    assert len(get_codec(18).decode(speech)) == 160
    assert len(get_codec(18).decode(speech[:8])) == 80      # one 8-byte "frame"
    assert len(get_codec(18).decode(speech[:7])) == 0       # no valid frame size
    assert len(get_codec(3).decode(get_codec(3).encode(tone(0.02))[:32])) == 0


def test_unknown_payload_type_is_unavailable():
    with pytest.raises(CodecUnavailable, match="G723"):
        get_codec(4)
    with pytest.raises(CodecUnavailable, match="payload type 96"):
        get_codec(96)
    with pytest.raises(ValueError):
        get_codec(0, sample_rate=16000)
    assert unavailable_reason(0) is None and "G723" in unavailable_reason(4)


def test_missing_library_names_codec_and_debian_package():
    with pytest.raises(CodecUnavailable) as info:
        load_library("libno-such-codec.so.7", "GSM 06.10", "libgsm1")
    message = str(info.value)
    assert "GSM 06.10" in message and "apt-get install libgsm1" in message
    # the other codecs are unaffected
    assert get_codec(0).encode(tone(0.01))


def test_payload_sample_counts():
    assert payload_samples(0, b"x" * 160) == 160
    assert payload_samples(8, b"x" * 80) == 80
    assert payload_samples(9, b"x" * 160) == 160
    assert payload_samples(18, b"x" * 20) == 160
    assert payload_samples(18, b"x" * 22) == 240          # trailing SID counts a frame
    assert payload_samples(3, b"x" * 66) == 320
    assert payload_samples(3, b"x" * 32) == 0
    assert payload_samples(4, b"\x00" + b"x" * 23 + b"\x01" + b"x" * 19 + b"\x02xxx") == 720
    assert payload_samples(4, b"\x03" + b"x" * 23) is None
    assert payload_samples(0, b"") is None
    assert payload_samples(13, b"x") is None
    assert payload_samples(101, b"x" * 4) is None
