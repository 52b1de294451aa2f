"""GSM 06.10 full rate through Debian's libgsm (package libgsm1)."""

import ctypes

import numpy as np

from .frames import pad_to_frames
from .native import load_library

SONAME = "libgsm.so.1"
PACKAGE = "libgsm1"
FRAME_SAMPLES = 160
FRAME_BYTES = 33

_lib = None


def _library():
    global _lib
    if _lib is None:
        lib = load_library(SONAME, "GSM 06.10", PACKAGE)
        lib.gsm_create.argtypes = []
        lib.gsm_create.restype = ctypes.c_void_p
        lib.gsm_destroy.argtypes = [ctypes.c_void_p]
        lib.gsm_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.gsm_decode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.gsm_decode.restype = ctypes.c_int
        _lib = lib
    return _lib


class GSM:
    pt = 3
    name = "GSM"
    sample_rate = 8000
    frame_samples = FRAME_SAMPLES
    frame_bytes = FRAME_BYTES

    def __init__(self):
        self._enc = self._dec = None      # before anything can fail: __del__ looks at them
        self._lib = _library()

    def encode(self, samples):
        """int16 samples (zero-padded to whole 20 ms frames) -> 33-byte frames."""
        if self._enc is None:
            self._enc = self._lib.gsm_create()
        pcm = pad_to_frames(samples, FRAME_SAMPLES)
        count = len(pcm) // FRAME_SAMPLES
        out = ctypes.create_string_buffer(count * FRAME_BYTES)
        base, src = ctypes.addressof(out), pcm.ctypes.data
        for i in range(count):
            self._lib.gsm_encode(self._enc, src + 2 * FRAME_SAMPLES * i, base + FRAME_BYTES * i)
        return out.raw

    def decode(self, payload):
        """Whole 33-byte frames -> 160 samples each (a trailing partial frame is ignored)."""
        count = len(payload) // FRAME_BYTES
        out = np.zeros(count * FRAME_SAMPLES, dtype=np.int16)
        if count == 0:
            return out
        if self._dec is None:
            self._dec = self._lib.gsm_create()
        data = ctypes.create_string_buffer(bytes(payload[:count * FRAME_BYTES]), count * FRAME_BYTES)
        base, dst = ctypes.addressof(data), out.ctypes.data
        for i in range(count):
            self._lib.gsm_decode(self._dec, base + FRAME_BYTES * i, dst + 2 * FRAME_SAMPLES * i)
        return out

    def close(self):
        for attr in ("_enc", "_dec"):
            handle = getattr(self, attr)
            if handle is not None:
                self._lib.gsm_destroy(handle)
                setattr(self, attr, None)

    __del__ = close
