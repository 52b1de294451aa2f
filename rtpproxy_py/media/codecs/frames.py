"""Helpers shared by the frame-based codecs (G.729, GSM): whole frames of PCM."""

import numpy as np
from numpy.typing import ArrayLike


def pad_to_frames(samples: ArrayLike, frame: int) -> np.ndarray:
    """``samples`` as contiguous int16 PCM, zero-padded to a whole number of
    ``frame``-sample frames (the native encoders take whole frames only)."""
    pcm = np.ascontiguousarray(samples, dtype=np.int16)
    extra = -len(pcm) % frame
    if extra:
        pcm = np.concatenate([pcm, np.zeros(extra, dtype=np.int16)])
    return pcm
