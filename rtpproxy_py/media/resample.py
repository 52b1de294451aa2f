"""Sample-rate conversion: a streaming polyphase windowed-sinc resampler (NumPy).

For a rational ratio up/down (after dividing by the gcd), output sample n
sits at input time n*down/up. It is the sum of the nearby input samples
weighted by a Kaiser-windowed sinc low-pass whose cut-off is just below the
lower of the two Nyquist frequencies, so downsampling does not alias. The
filter is centred on each output instant: no delay is added. One coefficient
row per phase (n*down mod up) is precomputed; the outputs of one phase read
windows at a fixed input stride, so each phase is one strided matrix-vector
product (no per-sample Python code).
"""

from math import ceil, gcd

import numpy as np

ZERO_CROSSINGS = 16   # sinc lobes on each side; sets the transition width
ROLLOFF = 0.92        # cut-off as a fraction of the lower Nyquist frequency
KAISER_BETA = 8.6     # about 90 dB stop-band attenuation


class Resampler:
    """Feed float chunks of one channel at ``in_rate``; get them back at ``out_rate``."""

    def __init__(self, in_rate, out_rate):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        g = gcd(int(in_rate), int(out_rate))
        self.up, self.down = int(out_rate) // g, int(in_rate) // g
        cutoff = min(1.0, self.up / self.down) * ROLLOFF   # relative to the input Nyquist
        self.half = int(ceil(ZERO_CROSSINGS / cutoff))
        self.coefs = _phase_filters(self.up, self.half, cutoff)
        self.buffer = np.zeros(self.half, dtype=np.float64)   # history, zeros before the start
        self.buffer_start = -self.half    # input index of buffer[0]
        self.consumed = 0                 # input samples fed so far
        self.produced = 0                 # output samples made so far

    def _output_count(self, available_end):
        """How many outputs (from ``produced`` on) have all their inputs below available_end."""
        # output n needs inputs up to floor(n*down/up) + half
        last = ((available_end - self.half) * self.up) // self.down
        while last >= 0 and (last * self.down) // self.up + self.half >= available_end:
            last -= 1
        return max(0, last + 1 - self.produced)

    def _run(self, count):
        if count <= 0:
            return np.zeros(0, dtype=np.float64)
        out = np.empty(count, dtype=np.float64)
        first = self.produced
        taps, up, down = 2 * self.half, self.up, self.down
        buf = np.ascontiguousarray(self.buffer)
        step = buf.strides[0]
        # Outputs of one phase are every up-th output, and their input windows
        # start every down-th input sample: one strided matrix-vector product each.
        for n0 in range(first, min(first + up, first + count)):
            k = (first + count - n0 + up - 1) // up          # outputs of this phase
            start = (n0 * down) // up - self.half + 1 - self.buffer_start
            windows = np.lib.stride_tricks.as_strided(
                buf[start:], shape=(k, taps), strides=(down * step, step), writeable=False)
            out[n0 - first::up] = windows @ self.coefs[(n0 * down) % up]
        self.produced += count
        # keep only the history the next output needs
        next_base = (self.produced * down) // up
        drop = next_base - self.half + 1 - self.buffer_start
        if drop > 0:
            self.buffer = self.buffer[drop:]
            self.buffer_start += drop
        return out

    def feed(self, samples):
        """Resample the next chunk; returns the outputs that are complete so far."""
        samples = np.asarray(samples, dtype=np.float64)
        self.buffer = np.concatenate([self.buffer, samples])
        self.consumed += len(samples)
        return self._run(self._output_count(self.buffer_start + len(self.buffer)))

    def flush(self):
        """The remaining outputs, treating the input as followed by silence."""
        total = -(-self.consumed * self.up // self.down)      # ceil(consumed * up / down)
        self.buffer = np.concatenate([self.buffer, np.zeros(2 * self.half + 1)])
        return self._run(total - self.produced)


def _phase_filters(up, half, cutoff):
    """coefs[p, j]: weight of input (base + j - half + 1) for an output at base + p/up."""
    offsets = np.arange(2 * half) - half + 1
    t = np.arange(up)[:, None] / up - offsets[None, :]     # output time minus input time
    x = np.clip(t / half, -1.0, 1.0)
    window = np.i0(KAISER_BETA * np.sqrt(1.0 - x * x)) / np.i0(KAISER_BETA)
    h = cutoff * np.sinc(cutoff * t) * window
    return h / h.sum(axis=1, keepdims=True)                 # unity gain at DC for every phase


def resample(samples, in_rate, out_rate):
    """Resample a whole signal (float array) in one go."""
    if in_rate == out_rate:
        return np.asarray(samples, dtype=np.float64)
    r = Resampler(in_rate, out_rate)
    return np.concatenate([r.feed(samples), r.flush()])
