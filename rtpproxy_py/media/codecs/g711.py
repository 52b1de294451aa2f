"""G.711 µ-law and A-law through NumPy lookup tables.

The encoders match Python's ``audioop.lin2ulaw``/``lin2alaw`` for all 65 536
inputs (the classic Sun reference algorithm on ``sample >> 2`` for µ-law and
``sample >> 3`` for A-law). The µ-law decoder matches ``audioop.ulaw2lin``
except that codes 0x7F and 0xFF decode to -2 and +2, as upstream's decoder
does (codecs.md section 2). The tables are built once, vectorised.
"""

import numpy as np

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _segment(values, ends):
    """Index of the first segment end >= value (8 when beyond the last)."""
    return np.searchsorted(ends, values, side="left")


def _build_ulaw_encoder():
    """Code for every 14-bit input (sample >> 2), indexed by (sample >> 2) & 0x3FFF."""
    v = np.arange(1 << 14, dtype=np.int64)
    v = np.where(v >= 1 << 13, v - (1 << 14), v)          # back to signed 14-bit
    mask = np.where(v < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(v), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = _segment(mag, _ULAW_SEG_END)
    code = (seg << 4) | ((mag >> (seg + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encoder():
    """Code for every 13-bit input (sample >> 3), indexed by (sample >> 3) & 0x1FFF."""
    v = np.arange(1 << 13, dtype=np.int64)
    v = np.where(v >= 1 << 12, v - (1 << 13), v)
    mask = np.where(v >= 0, 0xD5, 0x55)
    mag = np.where(v >= 0, v, -v - 1)
    seg = _segment(mag, _ALAW_SEG_END)
    low = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0xF
    code = np.where(seg >= 8, 0x7F, (seg << 4) | low)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decoder():
    u = ~np.arange(256, dtype=np.int64) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    out = np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS)
    out[0x7F], out[0xFF] = -2, 2          # upstream's decoder quirk
    return out.astype(np.int16)


def _build_alaw_decoder():
    a = np.arange(256, dtype=np.int64) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encoder()
ALAW_ENCODE = _build_alaw_encoder()
ULAW_DECODE = _build_ulaw_decoder()
ALAW_DECODE = _build_alaw_decoder()


def _as_int16(samples):
    return np.asarray(samples, dtype=np.int16)


def ulaw_encode(samples):
    """int16 samples -> µ-law bytes, one per sample."""
    s = _as_int16(samples)
    return ULAW_ENCODE[(s >> 2).astype(np.int32) & 0x3FFF].tobytes()


def alaw_encode(samples):
    """int16 samples -> A-law bytes, one per sample."""
    s = _as_int16(samples)
    return ALAW_ENCODE[(s >> 3).astype(np.int32) & 0x1FFF].tobytes()


def ulaw_decode(data):
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data):
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
