"""The polyphase resampler on real signals: fidelity, no aliasing, streaming."""

import numpy as np
import pytest

from audio import chirp, snr_db, tone
from rtpproxy_py.media.resample import Resampler, resample


@pytest.mark.parametrize("rate", [11025, 16000, 22050, 32000, 44100, 48000])
def test_downsampled_chirp_matches_one_made_at_8khz(rate):
    out = resample(chirp(2.0, rate=rate, f1=3000).astype(np.float64), rate, 8000)
    assert len(out) == 16000
    assert snr_db(chirp(2.0, f1=3000), np.round(out).astype(np.int16), max_lag=2, skip=200) > 50


def test_upsampling_to_16khz():
    out = resample(chirp(2.0, f1=3000).astype(np.float64), 8000, 16000)
    assert len(out) == 32000
    assert snr_db(chirp(2.0, rate=16000, f1=3000), np.round(out).astype(np.int16),
                  max_lag=2, skip=400) > 45


def test_tones_above_the_new_nyquist_do_not_alias():
    out = resample(tone(1.0, rate=48000, freq=6000).astype(np.float64), 48000, 8000)
    level = np.sqrt(np.mean(tone(1.0, rate=48000, freq=6000).astype(np.float64) ** 2))
    assert np.sqrt(np.mean(out[100:-100] ** 2)) < level * 1e-3     # > 60 dB down


def test_chunked_feeding_equals_one_call():
    source = chirp(1.0, rate=44100).astype(np.float64)
    r = Resampler(44100, 8000)
    parts = [r.feed(source[i:i + 777]) for i in range(0, len(source), 777)] + [r.flush()]
    # the same outputs (up to floating-point summation order)
    assert np.allclose(np.concatenate(parts), resample(source, 44100, 8000), rtol=0, atol=1e-6)


def test_rejects_nonsense_rates():
    with pytest.raises(ValueError):
        Resampler(0, 8000)
