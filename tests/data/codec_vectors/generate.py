"""Regenerate the codec vectors in this folder (run from the repository top:
``.venv/bin/python tests/data/codec_vectors/generate.py``).

in.sln: 0.2 s chirp, 0.2 s silence, 0.1 s tone, 8 kHz signed 16-bit LE.
enc.<pt>: what the codec layer's encoder made of it (enc.18v: G.729 with VAD);
dec.<pt>: what its decoder makes of enc.<pt>. Made with libbcg729-0 1.1.1,
libgsm1 1.0.22 and G722 1.2.8; tests/unit/test_codecs.py checks them byte for byte.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from audio import chirp, tone  # noqa: E402

from rtpproxy_py.media.codecs import ENCODABLE_PTS, get_codec  # noqa: E402


def main():
    pcm = np.concatenate([chirp(0.2), np.zeros(1600, dtype=np.int16), tone(0.1, freq=1000)])
    with open(os.path.join(HERE, "in.sln"), "wb") as f:
        f.write(pcm.astype("<i2").tobytes())
    for pt in ENCODABLE_PTS:
        encoded = get_codec(pt).encode(pcm)
        with open(os.path.join(HERE, "enc.%d" % pt), "wb") as f:
            f.write(encoded)
        with open(os.path.join(HERE, "dec.%d" % pt), "wb") as f:
            f.write(get_codec(pt).decode(encoded).astype("<i2").tobytes())
    with open(os.path.join(HERE, "enc.18v"), "wb") as f:
        f.write(get_codec(18, vad=True).encode(pcm))


if __name__ == "__main__":
    main()
