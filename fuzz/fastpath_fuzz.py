"""Fuzz target for the compiled fast path's packet code (rtpproxy_py/_fastpath.c).

Run it (atheris, libFuzzer's options):

    .venv/bin/python fuzz/fastpath_fuzz.py -runs=1000000

One input is a stream of datagrams and the times they arrive: each op byte
either sends the next packet of a modelled RTP sender (next, lost, duplicated,
late, new SSRC, marked reset, other payload type, odd timestamp step) or a raw
datagram cut from the input (runts, RTCP, padding and extension lengths that
lie), and sometimes makes Python read the C stream (as the relay does once a
second and before Q). Every datagram goes through ``_fastpath.feed``, the code
the relaying thread runs per packet; the C stream's results, drained into an
RtpAnalyzer by fastpath.Feed, must equal those of an RtpAnalyzer fed the same
datagrams in pure Python (the oracle: the same rtpa_* counts exactly, the
same jitter and longest interval to 1e-9), and the packet and byte counts must
match what was fed. A crash or an out-of-bounds read under AddressSanitizer
(tests/test_fastpath.py builds it so once) fails the input.
"""

import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rtpproxy_py import _fastpath  # noqa: E402
from rtpproxy_py.fastpath import Feed  # noqa: E402
from rtpproxy_py.media.analyzer import RtpAnalyzer  # noqa: E402

MAX_PACKETS = 400
PAYLOAD = b"\xd5" * 160


def packets(data):
    """(datagram or None for "read now", arrival time) from the fuzzer's bytes."""
    seq, ts, ssrc, pt, t = 1000, 5000, 0x11223344, 0, 100.0
    sent = []
    pos, n = 0, len(data)
    while pos < n and len(sent) < MAX_PACKETS:
        op = data[pos]
        pos += 1
        arg = data[pos] if pos < n else 0
        t += (0.02 if op & 0x80 == 0 else arg / 1000.0)
        kind = op & 0x0F
        marker = False
        if kind <= 5:                     # the usual next packet
            seq, ts = seq + 1, ts + 160
        elif kind == 6:                   # some lost
            pos += 1
            seq, ts = seq + 1 + arg % 40, ts + 160 * (1 + arg % 40)
        elif kind == 7:                   # duplicate or late
            pos += 1
            old = seq - arg % 30
            sent.append((_rtp(old, ts - 160 * (seq - old), ssrc, pt, False), t))
            continue
        elif kind == 8:                   # new SSRC
            pos += 1
            ssrc = (ssrc * 31 + arg) & 0xFFFFFFFF
            seq = (seq + arg * 257) & 0xFFFF
        elif kind == 9:                   # marked sequence reset or a jump
            pos += 1
            seq, marker = arg * 11, True
        elif kind == 10:                  # payload type change (one without a clock: no jitter)
            pos += 1
            pt = arg & 0x7F
            seq, ts = seq + 1, ts + 160
        elif kind == 11:                  # an odd timestamp step
            pos += 1
            seq, ts = seq + 1, ts + arg * 37
        elif kind == 12:                  # Python reads the C stream now
            sent.append((None, t))
            continue
        else:                             # a raw datagram from the input
            pos += 1
            size = arg % 100
            sent.append((data[pos:pos + size], t))
            pos += size
            continue
        seq &= 0xFFFF
        ts &= 0xFFFFFFFF
        sent.append((_rtp(seq, ts, ssrc, pt, marker), t))
    return sent


def _rtp(seq, ts, ssrc, pt, marker):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + PAYLOAD


def results(a):
    sent, rcvd, dups = a.sequence_totals()
    return {"nsent": sent, "nrcvd": rcvd, "ndups": dups, "perrs": a.perrs,
            "ssrc_changes": a.ssrc_changes, "jlast": a.rtpa_jlast, "jmax": a.rtpa_jmax,
            "javg": a.rtpa_javg, "longest_ipi": a.longest_ipi}


def check(data):
    reference = RtpAnalyzer()
    fed = RtpAnalyzer()
    slot = _fastpath.add(-1, -1, False, True)
    feed = Feed(slot, fed)
    npkts = nbytes = 0
    try:
        feed.arm()
        for datagram, t in packets(data):
            if datagram is None:
                got = feed.sync()
                npkts += got[0]
                nbytes += got[1]
                continue
            reference.feed(datagram, t)
            if not _fastpath.feed(slot, datagram, t):
                got = feed.sync()          # the queue was full: the thread would pause
                npkts += got[0]
                nbytes += got[1]
                assert _fastpath.feed(slot, datagram, t)
        got = feed.absorb(_fastpath.remove(slot))
        slot = None
        npkts += got[0]
        nbytes += got[1]
    finally:
        if slot is not None:
            _fastpath.remove(slot)
    sent = [d for d, _ in packets(data) if d is not None]
    assert npkts == len(sent), (npkts, len(sent))
    assert nbytes == sum(map(len, sent)), (nbytes, sum(map(len, sent)))
    want, have = results(reference), results(fed)
    for name, value in want.items():
        if isinstance(value, float):
            assert math.isclose(value, have[name], rel_tol=1e-9, abs_tol=1e-9), (name, value, have)
        else:
            assert value == have[name], (name, value, have)


def main():
    import atheris

    from rtpproxy_py import fastpath
    from rtpproxy_py.media import analyzer, rtp, rtp_stats
    # Coverage of the Python side guides the fuzzer: the analyzer's branches
    # (and its statistics engine's) are the C path's cases (the C file itself
    # is not instrumented).
    for module in (fastpath, analyzer, rtp_stats, rtp, sys.modules[__name__]):
        for value in vars(module).values():
            if callable(value) and getattr(value, "__module__", None) == module.__name__:
                if isinstance(value, type):
                    for name, member in vars(value).items():
                        if callable(member) and hasattr(member, "__code__"):
                            setattr(value, name, atheris.instrument_func(member))
                elif hasattr(value, "__code__"):
                    setattr(module, value.__name__, atheris.instrument_func(value))
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
