"""RTCP header checks (RFC 3550 section 6.4, RFC 5761 section 4).

Only what strict latching needs: is a datagram a plausible RTCP compound
packet, and which SSRC sent it.
"""

import struct

_FIRST = struct.Struct("!BBHI")
# RFC 5761 section 4: a second byte of 192-223 is RTCP (SR 200, RR 201, SDES
# 202, BYE 203, APP 204, feedback 205/206, ...), never an RTP payload type
# worth relaying as media.
FIRST_TYPE, LAST_TYPE = 192, 223


def looks_like_rtcp(data):
    """The packet type byte says RTCP (what RTP/RTCP demultiplexing looks at)."""
    return len(data) >= 2 and FIRST_TYPE <= data[1] <= LAST_TYPE


def sender_ssrc(data):
    """SSRC of the sender of a well-formed RTCP packet, or None.

    Well-formed: version 2, an RTCP packet type, and the first packet's
    length field fits inside the datagram. SR, RR, SDES, BYE and APP all carry
    the sender's SSRC right after the first header word (the same SSRC as the
    sender's RTP stream).
    """
    if len(data) < 8:
        return None
    b0, packet_type, words, ssrc = _FIRST.unpack_from(data)
    if b0 >> 6 != 2 or not FIRST_TYPE <= packet_type <= LAST_TYPE:
        return None
    if (words + 1) * 4 > len(data):
        return None
    return ssrc
