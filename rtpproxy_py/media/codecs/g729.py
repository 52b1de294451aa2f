"""G.729 (Annex A compatible) through Debian's libbcg729 (package libbcg729-0)."""

import ctypes

import numpy as np

from .frames import pad_to_frames
from .native import load_library

SONAME = "libbcg729.so.0"
PACKAGE = "libbcg729-0"
FRAME_SAMPLES = 80
FRAME_BYTES = 10

_lib = None


def _library():
    global _lib
    if _lib is None:
        lib = load_library(SONAME, "G.729", PACKAGE)
        lib.initBcg729EncoderChannel.argtypes = [ctypes.c_uint8]
        lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
        lib.closeBcg729EncoderChannel.argtypes = [ctypes.c_void_p]
        lib.bcg729Encoder.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.POINTER(ctypes.c_uint8)]
        lib.initBcg729DecoderChannel.argtypes = []
        lib.initBcg729DecoderChannel.restype = ctypes.c_void_p
        lib.closeBcg729DecoderChannel.argtypes = [ctypes.c_void_p]
        lib.bcg729Decoder.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint8,
                                      ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint8,
                                      ctypes.c_void_p]
        _lib = lib
    return _lib


def decode_frame_size(n):
    """Frame size upstream's decoder splits an n-byte payload into (None: undecodable)."""
    for size in (10, 8, 15, 2):
        if n % size == 0:
            return size
    return None


class G729:
    pt = 18
    name = "G729"
    sample_rate = 8000
    frame_samples = FRAME_SAMPLES
    frame_bytes = FRAME_BYTES

    def __init__(self, vad=False):
        self._enc = self._dec = None      # before anything can fail: __del__ looks at them
        self._lib = _library()
        self._vad = vad
        self._out = (ctypes.c_uint8 * FRAME_BYTES)()
        self._out_len = ctypes.c_uint8()
        self._pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)

    def encode_frame(self, frame):
        """80 int16 samples -> 10 bytes (with VAD: 10, 2 (SID) or 0 bytes)."""
        if self._enc is None:
            self._enc = self._lib.initBcg729EncoderChannel(1 if self._vad else 0)
        pcm = np.ascontiguousarray(frame, dtype=np.int16)
        self._lib.bcg729Encoder(self._enc, pcm.ctypes.data, self._out, ctypes.byref(self._out_len))
        return bytes(self._out[:self._out_len.value])

    def encode(self, samples):
        """int16 samples (zero-padded to whole 10 ms frames) -> G.729 frames."""
        pcm = pad_to_frames(samples, FRAME_SAMPLES)
        if self._vad:                 # frames of 10, 2 or 0 bytes
            return b"".join(self.encode_frame(pcm[i:i + FRAME_SAMPLES])
                            for i in range(0, len(pcm), FRAME_SAMPLES))
        # without VAD every frame is 10 bytes: the encoder writes straight into
        # one buffer (the C encoder is the cost; ctypes releases the GIL meanwhile)
        if self._enc is None:
            self._enc = self._lib.initBcg729EncoderChannel(0)
        count = len(pcm) // FRAME_SAMPLES
        out = ctypes.create_string_buffer(count * FRAME_BYTES)
        encoder, enc, length = self._lib.bcg729Encoder, self._enc, ctypes.byref(self._out_len)
        src, dst = pcm.ctypes.data, ctypes.addressof(out)
        for i in range(count):
            encoder(enc, src + 2 * FRAME_SAMPLES * i, dst + FRAME_BYTES * i, length)
        return out.raw

    def decode(self, payload):
        """Payload -> int16 samples, 80 per frame; frames sized as upstream does."""
        size = decode_frame_size(len(payload))
        if size is None or not payload:
            return np.zeros(0, dtype=np.int16)
        if self._dec is None:
            self._dec = self._lib.initBcg729DecoderChannel()
        count = len(payload) // size
        out = np.empty(count * FRAME_SAMPLES, dtype=np.int16)
        data = (ctypes.c_uint8 * len(payload)).from_buffer_copy(payload)
        base = ctypes.addressof(data)
        for i in range(count):
            self._lib.bcg729Decoder(self._dec, base + i * size, size, 0, 0, 0,
                                    out.ctypes.data + 2 * FRAME_SAMPLES * i)
        return out

    def close(self):
        if self._enc is not None:
            self._lib.closeBcg729EncoderChannel(self._enc)
            self._enc = None
        if self._dec is not None:
            self._lib.closeBcg729DecoderChannel(self._dec)
            self._dec = None

    __del__ = close
