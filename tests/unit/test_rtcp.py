"""media/rtcp.py and rtp.well_formed: what strict latching counts as RTCP and as RTP."""

import struct

from rtpproxy_py.media import rtcp, rtp


def test_sender_ssrc_of_reports():
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0xDEADBEEF)
    sr = struct.pack("!BBHI", 0x80, 200, 6, 0x1234) + b"\0" * 20
    assert rtcp.sender_ssrc(rr) == 0xDEADBEEF
    assert rtcp.sender_ssrc(sr) == 0x1234
    assert rtcp.looks_like_rtcp(rr)


def test_malformed_rtcp_is_rejected():
    assert rtcp.sender_ssrc(b"") is None
    assert rtcp.sender_ssrc(b"\x80\xc9\x00") is None                                  # runt
    assert rtcp.sender_ssrc(struct.pack("!BBHI", 0x40, 201, 1, 1)) is None           # version 1
    assert rtcp.sender_ssrc(struct.pack("!BBHI", 0x80, 8, 1, 1)) is None             # RTP type
    assert rtcp.sender_ssrc(struct.pack("!BBHI", 0x80, 200, 6, 1)) is None           # too short for its length


def test_well_formed_rtp_excludes_rtcp_and_junk():
    good = struct.pack("!BBHII", 0x80, 8, 1, 160, 7) + b"\xd5" * 160
    assert rtp.well_formed(good).ssrc == 7
    assert rtp.well_formed(struct.pack("!BBHI", 0x80, 200, 6, 1) + b"\0" * 20) is None
    assert rtp.well_formed(b"\x80\x00") is None
    assert rtp.well_formed(b"\x80" + b"\x00" * 10) is None          # 11 bytes
