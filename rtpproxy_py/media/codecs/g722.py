"""G.722 at 64 kbit/s through the PyPI package ``G722`` (Sippy's libg722).

The RTP clock of G.722 is 8000 Hz and one byte covers one tick. In 8 kHz mode
(what upstream's makeann and extractaudio use) the encoder takes 8 kHz input
and the decoder gives 8 kHz output, one sample per byte; in 16 kHz mode (wide
band) two samples per byte.
"""

import numpy as np

from .native import CodecUnavailable

RATES = (8000, 16000)


class G722:
    pt = 9
    name = "G722"
    frame_bytes = 1

    def __init__(self, sample_rate=8000):
        if sample_rate not in RATES:
            raise ValueError("G.722 works at 8000 or 16000 Hz, not %r" % (sample_rate,))
        try:
            import G722 as _g722
        except ImportError:
            raise CodecUnavailable("G.722 is unavailable: the Python package G722 is not installed; "
                                   "install it with pip install G722") from None
        self._module = _g722
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate // 8000     # input samples per output byte
        self._enc = None
        self._dec = None

    def encode(self, samples):
        pcm = np.ascontiguousarray(samples, dtype=np.int16)
        if len(pcm) % self.frame_samples:
            pcm = np.concatenate([pcm, np.zeros(1, dtype=np.int16)])
        if self._enc is None:
            self._enc = self._module.G722(self.sample_rate, 64000)
        return self._enc.encode(pcm)

    def decode(self, payload):
        if not payload:
            return np.zeros(0, dtype=np.int16)
        if self._dec is None:
            self._dec = self._module.G722(self.sample_rate, 64000)
        return np.frombuffer(self._dec.decode(bytes(payload)), dtype=np.int16).copy()

    def close(self):
        self._enc = self._dec = None
