"""Test audio: generated tones and chirps, and an SNR that tolerates codec delay."""

import numpy as np


def tone(seconds, rate=8000, freq=440.0, level=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def chirp(seconds, rate=8000, f0=200.0, f1=3400.0, level=0.3):
    """A linear sweep from f0 to f1 Hz."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return np.round(np.sin(phase) * level * 32767).astype(np.int16)


def best_lag(reference, decoded, max_lag=400):
    """The delay (in samples) of ``decoded`` against ``reference``."""
    ref = reference.astype(np.float64)
    dec = decoded.astype(np.float64)
    n = min(len(ref), len(dec)) - max_lag
    scores = [np.dot(ref[:n], dec[lag:lag + n]) for lag in range(max_lag + 1)]
    return int(np.argmax(scores))


def snr_db(reference, decoded, max_lag=400, skip=0):
    """SNR of ``decoded`` against ``reference`` after aligning the codec delay.

    ``skip`` leading samples (decoder warm-up) are left out of the measure.
    """
    lag = best_lag(reference, decoded, max_lag)
    n = min(len(reference), len(decoded) - lag)
    ref = reference[skip:n].astype(np.float64)
    dec = decoded[lag + skip:lag + n].astype(np.float64)
    noise = np.sum((ref - dec) ** 2)
    return 10 * np.log10(np.sum(ref ** 2) / max(noise, 1e-9))
