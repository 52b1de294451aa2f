"""catch_dtmf (modules.md 6): RFC 4733 telephone events on a stream, reported
to the session's notify target as ``TAG DIGIT VOLUME DURATION SIDE``.

``U|L ... && M3:<inst> TAG [PT [FLAGS]]`` puts a detector on the addressed
stream: a tap that looks only at packets of payload type PT (default 101)
and, with the ``h`` flag, drops them (counted as dropped/discarded).
"""

import collections
import logging
import struct

from ..media.feature import PRECEDENCE_TAP, Feature
from . import Module, SubcommandFailed

log = logging.getLogger("rtpproxy")

DEFAULT_PT = 101
REMEMBERED_EVENTS = 4
# RFC 4733 event -> the character reported; 17 is reported as a NUL byte.
DIGITS = [b"%d" % n for n in range(10)] + [b"*", b"#", b"A", b"B", b"C", b"D", b" ", b"\0"]
_EVENT = struct.Struct("!BBH")
_TS = struct.Struct("!I")


def _token_bytes(token):
    return token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")


def url_decode_tag(token) -> bytes:
    """``%XX`` escapes and ``+`` as a space; SubcommandFailed on a bad escape."""
    raw = _token_bytes(token)
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == 0x25:      # %
            pair = raw[i + 1:i + 3]
            try:
                if len(pair) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
                    raise ValueError
                out.append(int(pair, 16))
            except ValueError:
                raise SubcommandFailed() from None
            i += 3
            continue
        out.append(0x20 if ch == 0x2B else ch)
        i += 1
    return bytes(out)


class _Event:
    __slots__ = ("ts", "digit", "duration", "pending")

    def __init__(self, ts, digit, duration):
        self.ts, self.digit, self.duration, self.pending = ts, digit, duration, True


class Detector(Feature):
    """One instance's detector on one stream."""

    # a per-packet feature (media/feature.py): the stream stays in user space
    reason = "recording or copying"
    precedence = PRECEDENCE_TAP

    def __init__(self, module, stream, tag, armed):
        self.module = module
        self.stream = stream
        self.tag = tag
        self.armed = armed          # the notify target when the detector was made
        self.pt = DEFAULT_PT
        self.drop = False
        self.side = b"%d" % (1 - stream.index)
        self.events = collections.deque(maxlen=REMEMBERED_EVENTS)

    def on_packet(self, stream, data, source, now):
        """Per packet of the watched stream: True (feature.DROP) drops it."""
        if len(data) < 16 or data[1] & 0x7F != self.pt:
            return False
        self._event(data)
        return self.drop

    def _event(self, data):
        code, flags, duration = _EVENT.unpack_from(data, 12)
        if code >= len(DIGITS):
            return
        digit = DIGITS[code]
        ts = _TS.unpack_from(data, 4)[0]
        for event in self.events:
            if event.ts == ts:
                break
        else:
            self.events.append(_Event(ts, digit, duration))   # the first packet is only recorded
            return
        if event.digit != digit:
            log.warning("catch_dtmf: event %r with the timestamp of event %r ignored", digit, event.digit)
            return
        if duration > event.duration:
            event.duration = duration
        if flags & 0x80 and event.pending:
            event.pending = False
            self.module.host.notify(self.armed, b"%s %s %d %d %s" % (
                self.tag, digit, flags & 0x3F, event.duration, self.side))


class CatchDtmf(Module):
    name = "catch_dtmf"
    module_id = 3
    has_subcommand = True

    def __init__(self, spec, host):
        super().__init__(spec, host)
        self.detectors = {}         # Stream -> Detector

    def subcommand(self, args, session, addressed, opposite, ctx):
        if session.notify is None or not 1 <= len(args) <= 3:
            raise SubcommandFailed()
        tag = url_decode_tag(args[0])
        pt = DEFAULT_PT
        if len(args) > 1:
            text = _token_bytes(args[1])
            if not text.isdigit() or int(text) > 127:
                raise SubcommandFailed()
            pt = int(text)
        drop = False
        if len(args) > 2:
            flags = _token_bytes(args[2])
            if not flags or any(ch not in b"hH" for ch in flags):
                raise SubcommandFailed()
            drop = True
        detector = self.detectors.get(addressed)
        if detector is None:
            detector = self.detectors[addressed] = Detector(self, addressed, tag, session.notify)
            addressed.add_feature(detector)
        detector.pt, detector.drop = pt, drop     # tag and target stay as first set
        return None

    def session_ended(self, session, now):
        for stream in session.rtp:
            self.detectors.pop(stream, None)
