"""Audio codecs of the relay's payload types, shared by makeann, the player
and extractaudio.

    codec = get_codec(0)                  # a fresh encoder/decoder pair with its own state
    payload = codec.encode(int16_array)   # bytes
    pcm = codec.decode(payload)           # int16 numpy array

Every codec object has ``pt``, ``name``, ``sample_rate`` (of the audio it
takes and gives), ``frame_samples`` (input samples per encoded frame) and
``frame_bytes``. Frame codecs (GSM, G.729) zero-pad the last partial frame.
``payload_types`` holds the static payload-type table and the sample-count
rules. Codecs whose system library is missing raise ``CodecUnavailable``
from ``get_codec`` with a message naming the Debian package to install;
the others keep working.
"""

from . import g711
from .native import CodecUnavailable
from .payload_types import PAYLOAD_TYPES, PayloadType, clock_rate, lookup, payload_samples

__all__ = ["get_codec", "CodecUnavailable", "ENCODABLE_PTS", "PAYLOAD_TYPES", "PayloadType",
           "clock_rate", "lookup", "payload_samples", "unavailable_reason"]

# Payload types with an encoder and a decoder, in makeann's output order.
ENCODABLE_PTS = (0, 3, 18, 8, 9)


class _G711:
    sample_rate = 8000
    frame_samples = 1
    frame_bytes = 1

    def close(self):
        pass


class PCMU(_G711):
    pt = 0
    name = "PCMU"
    encode = staticmethod(g711.ulaw_encode)
    decode = staticmethod(g711.ulaw_decode)


class PCMA(_G711):
    pt = 8
    name = "PCMA"
    encode = staticmethod(g711.alaw_encode)
    decode = staticmethod(g711.alaw_decode)


def get_codec(pt, sample_rate=8000, vad=False):
    """A new codec object for payload type ``pt``.

    ``sample_rate`` may be 16000 for G.722 only (wide-band audio in and out);
    ``vad`` turns on G.729 voice activity detection (10, 2 or 0 bytes per frame).
    Raises CodecUnavailable for a payload type without a codec here, or when
    the codec's library is not installed.
    """
    if sample_rate != 8000 and pt != 9:
        raise ValueError("payload type %d works at 8000 Hz only" % pt)
    if pt == 0:
        return PCMU()
    if pt == 8:
        return PCMA()
    if pt == 9:
        from .g722 import G722
        return G722(sample_rate)
    if pt == 18:
        from .g729 import G729
        return G729(vad=vad)
    if pt == 3:
        from .gsm import GSM
        return GSM()
    entry = PAYLOAD_TYPES.get(pt)
    name = entry.name if entry else "payload type %d" % pt
    raise CodecUnavailable("%s (payload type %d) has no encoder or decoder here" % (name, pt))


def unavailable_reason(pt):
    """None if ``get_codec(pt)`` works, else the reason it does not."""
    try:
        get_codec(pt).close()
    except CodecUnavailable as exc:
        return str(exc)
    return None
