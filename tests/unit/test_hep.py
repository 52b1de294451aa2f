"""acct_rtcp_hep's bytes (modules.md 5.4, 5.5): the HEP3 chunk layout and the
JSON text of RTCP packets, against the message observed on upstream."""

import socket
import struct

from rtpproxy_py.modules import hep

SR = struct.pack("!BBHIIIIII", 0x80, 200, 6, 4090175489, 2209022881, 3942779706, 37920, 158, 39816)
SR_JSON = ('{\n "ssrc": 4090175489,\n "sender_information": {\n  "ntp_timestamp_sec": 2209022881,\n'
           '  "ntp_timestamp_usec": 3942779706,\n  "rtp_timestamp": 37920,\n  "packets": 158,\n'
           '  "octets": 39816\n },\n "type": 200,\n "report_count": 0\n}').encode()
OBSERVED_HEAD = bytes.fromhex(
    "48455033014b0000000100070200000002000711000000070008 81ae000000080008 7a47000000090"
    "00a6b134a5c0000000a000a0002bcbe0000000b000705000000 0c000a0065000000000011000d6865"
    "7063616c6c0000000300 0a7f0000010000000400 0a7f0000010000000f00e1".replace(" ", ""))


def block(lost, ssrc=2864434397):
    return struct.pack("!IB3sIIII", ssrc, 12, lost, 70000, 33, 16909060, 65536)


def test_sender_report_json_is_upstreams_219_bytes():
    compound = SR + struct.pack("!BBH", 0x81, 202, 1) + b"\x00" * 4
    assert hep.rtcp_json(compound) == SR_JSON and len(SR_JSON) == 219


def test_message_matches_the_observed_capture_byte_for_byte():
    ts = 0x6B134A5C + 0x0002BCBE / 1e6
    message = hep.message(socket.AF_INET, ("127.0.0.1", 0x81AE), ("127.0.0.1", 0x7A47), ts, 101,
                          b"hepcall", SR_JSON)
    assert len(message) == 331
    assert message[:len(OBSERVED_HEAD)] == OBSERVED_HEAD and message[len(OBSERVED_HEAD):] == SR_JSON


def test_capture_id_quirk_and_ipv6_chunks():
    for capt_id, raw in ((101, "00650000"), (70000, "11700000"), (4294967295, "ffff0000")):
        message = hep.message(socket.AF_INET6, ("::1", 5), ("::1", 6), 1.5, capt_id, b"c", b"")
        chunks = parse_chunks(message)
        assert chunks[0x000C] == bytes.fromhex(raw)
    assert chunks[0x0001] == b"\x0a" and chunks[0x0005] == socket.inet_pton(socket.AF_INET6, "::1")
    assert 0x0006 in chunks and 0x0003 not in chunks and len(message) == 73 + 7 + 44 + 6


def test_receiver_report_blocks_and_the_packets_lost_quirk():
    rr = struct.pack("!BBHI", 0x82, 201, 13, 287454020) + block(b"\x00\x01\x05") + block(b"\x01\x00\x07", 1)
    text = hep.rtcp_json(rr).decode()
    assert text.startswith('{\n "ssrc": 287454020,\n "type": 201,\n "report_blocks": [\n  {\n'
                           '   "source_ssrc": 2864434397,\n   "fraction_lost": 12,\n'
                           '   "packets_lost": 261,\n')
    assert '  }\n  ,\n  {\n   "source_ssrc": 1,\n   "fraction_lost": 12,\n   "packets_lost": -1,\n' in text
    assert text.endswith('  }\n ],\n "report_count": 2\n}')
    assert '"packets_lost": 65538,' in hep.rtcp_json(
        struct.pack("!BBHI", 0x81, 201, 7, 1) + block(b"\x02\x00\x02")).decode()


def test_compound_objects_are_concatenated_and_bad_packets_not_exported():
    rr = struct.pack("!BBHI", 0x80, 201, 1, 7)
    assert hep.rtcp_json(SR + rr) == SR_JSON + b'{\n "ssrc": 7,\n "type": 201,\n "report_count": 0\n}'
    assert hep.rtcp_json(struct.pack("!BBH", 0x81, 202, 1) + b"\0" * 4) == b""
    for bad in (b"\x80\xc8", b"\x40" + SR[1:], SR[:-4], struct.pack("!BBHI", 0x81, 201, 1, 7)):
        assert hep.rtcp_json(bad) is None


def parse_chunks(message):
    """{type: data} of a HEP3 message (what the test collectors parse)."""
    assert message[:4] == b"HEP3" and struct.unpack("!H", message[4:6])[0] == len(message)
    out, pos = {}, 6
    while pos < len(message):
        vendor, kind, length = struct.unpack_from("!HHH", message, pos)
        assert vendor == 0 and length >= 6
        out[kind] = message[pos + 6:pos + length]
        pos += length
    return out
