"""The recording formats and files as plain objects (recording-formats.md 4-6)."""

import os
import socket
import struct

from hypothesis import given, strategies as st

from rtpproxy_py.config import BindAddress
from rtpproxy_py.media import recording_reader
from rtpproxy_py.media.recorder import (
    PCAP_GLOBAL_HEADER, AdhocFormat, IpIdCounter, PcapFormat, RecordingFile, fake_mac,
    internet_checksum, make_tap, pcap_timestamp)
from rtpproxy_py.session import Session

# the spec's worked example (section 6)
EXAMPLE_RTP = bytes.fromhex("800012340000 0a00cafebabe fffe7f7e".replace(" ", ""))
EXAMPLE_T = 1700000000.25
EXAMPLE_ADHOC = bytes.fromhex(
    "02009c40c000020a0000000000000000"
    "00000000000010 40fc54d941 1000 8000"
    "123400000a00cafebabefffe7f7e".replace(" ", ""))
EXAMPLE_PCAP_GLOBAL = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
EXAMPLE_PCAP_RECORD = bytes.fromhex(
    "00f1536590d003003a0000003a000000"
    "0000c633640500 00c000020a08004500".replace(" ", "") +
    "002c000000007f114f7ec000020ac633"
    "64059c4088b800184d12800012340000"
    "0a00cafebabefffe7f7e")


def relay_stream(host="198.51.100.5", port=35000, wildcard=False):
    """A real Session's stream 1 RTP, bound (as far as the formats care) on host:port."""
    session = Session("cid", "ftag", 0.0, 60)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for stream in session.streams():
        stream.local = BindAddress(family, host, wildcard)
        stream.port = port if stream.is_rtp else port + 1
    return session.rtp[1]


def test_worked_example_adhoc():
    blob = AdhocFormat().encode([(EXAMPLE_RTP, ("192.0.2.10", 40000), relay_stream(), EXAMPLE_T)], 0.0)
    assert blob == EXAMPLE_ADHOC
    assert len(blob) == 30 + 16


def test_worked_example_pcap():
    fmt = PcapFormat(ip_id=IpIdCounter())
    assert fmt.file_header() == PCAP_GLOBAL_HEADER == EXAMPLE_PCAP_GLOBAL
    blob = fmt.encode([(EXAMPLE_RTP, ("192.0.2.10", 40000), relay_stream(), EXAMPLE_T)], 0.0)
    assert blob == EXAMPLE_PCAP_RECORD
    # the identification counts every record the process writes
    second = fmt.encode([(EXAMPLE_RTP, ("192.0.2.10", 40000), relay_stream(), EXAMPLE_T)], 0.0)
    assert second[16 + 14 + 4:16 + 14 + 6] == b"\x00\x01"


def test_wall_offset_is_added_to_the_monotonic_arrival():
    blob = AdhocFormat().encode([(EXAMPLE_RTP, ("192.0.2.10", 40000), relay_stream(), 0.25)],
                                EXAMPLE_T - 0.25)
    assert blob == EXAMPLE_ADHOC


def test_wildcard_local_address_is_resolved():
    fmt = PcapFormat(ip_id=IpIdCounter())
    stream = relay_stream("0.0.0.0", wildcard=True)
    blob = fmt.encode([(EXAMPLE_RTP, ("192.0.2.10", 40000), stream, EXAMPLE_T)], 0.0,
                      local_for=lambda host, family: "198.51.100.5")
    assert blob == EXAMPLE_PCAP_RECORD
    # a failed lookup skips the packet
    assert fmt.encode([(EXAMPLE_RTP, ("192.0.2.10", 40000), stream, EXAMPLE_T)], 0.0,
                      local_for=lambda host, family: None) == b""


def test_pcap_ipv6_frame():
    stream = relay_stream("2001:db8::5")
    blob = PcapFormat(ip_id=IpIdCounter()).encode(
        [(EXAMPLE_RTP, ("2001:db8::10", 40000), stream, EXAMPLE_T)], 0.0)
    assert len(blob) == 78 + 16          # 78-byte headers for IPv6 (58 for IPv4)
    frame = blob[16:]
    src = socket.inet_pton(socket.AF_INET6, "2001:db8::10")
    dst = socket.inet_pton(socket.AF_INET6, "2001:db8::5")
    assert frame[:6] == fake_mac(dst) and frame[6:12] == fake_mac(src) and frame[12:14] == b"\x86\xdd"
    ip = frame[14:54]
    assert ip[:4] == b"\x60\x00\x00\x00" and struct.unpack("!HBB", ip[4:8]) == (24, 17, 64)
    assert ip[8:24] == src and ip[24:40] == dst
    pseudo = src + dst + struct.pack("!I3xB", 24, 17)
    assert internet_checksum(pseudo + frame[54:]) == 0


def test_fake_mac_folds_ipv6():
    addr = bytes(range(16))
    mac = bytearray(addr[:6])
    for i in range(6, 16):
        mac[i % 6] ^= addr[i]
    assert fake_mac(addr) == bytes(mac)
    assert fake_mac(b"\xc0\x00\x02\x0a") == b"\x00\x00\xc0\x00\x02\x0a"


def _naive_checksum(data):
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=300))
def test_checksum_matches_the_word_by_word_definition(data):
    assert internet_checksum(data) == _naive_checksum(data)


def test_pcap_timestamp_rounds_and_carries():
    assert pcap_timestamp(1.25) == (1, 250000)
    assert pcap_timestamp(1.9999996) == (2, 0)


def test_recording_file_spool_move_and_reader(tmp_path):
    final, spool = tmp_path / "final", tmp_path / "spool"
    final.mkdir()
    spool.mkdir()
    rec = RecordingFile("c=f.o.rtp", str(final), AdhocFormat(), spool=str(spool),
                        wall_offset=EXAMPLE_T).open()
    tap = make_tap(rec.pending)
    stream = relay_stream()
    stream.peer.port = None
    tap(stream, EXAMPLE_RTP, ("192.0.2.10", 40000), 0.0)      # peer has no socket: not captured
    assert rec.pending == []
    stream.peer.port = 35002
    for i in range(3):
        tap(stream, EXAMPLE_RTP, ("192.0.2.10", 40000), float(i))
    stream.peer.set_muted(True)                                # a prompt plays: not captured
    tap(stream, EXAMPLE_RTP, ("192.0.2.10", 40000), 9.0)
    rec.write(rec.take())
    assert rec.pending == [] and rec.take() == b""
    path = spool / "c=f.o.rtp"
    got = recording_reader.read(str(path))          # readable while still open
    assert got.kind == "adhoc" and got.records == 3
    assert [p.arrival - EXAMPLE_T for p in got.packets] == [0.0, 1.0, 2.0]
    assert rec.finish() is None
    assert not path.exists()
    assert recording_reader.read(str(final / "c=f.o.rtp")).records == 3


def test_recording_file_open_errors(tmp_path):
    rec = RecordingFile("x.rtp", str(tmp_path / "missing"), AdhocFormat())
    try:
        rec.open()
    except OSError as exc:
        assert exc.filename == str(tmp_path / "missing" / "x.rtp")
    else:
        raise AssertionError("open in a missing directory succeeded")


def test_write_error_is_recorded_and_the_file_closed(tmp_path):
    rec = RecordingFile("x.rtp", str(tmp_path), AdhocFormat()).open()
    os.close(rec.fd)                     # the descriptor goes bad under the writer
    rec.write(b"abc")
    assert rec.error is not None and rec.fd is None
    assert rec.finish() is None


def test_reader_truncated_keeps_what_came_before(tmp_path):
    blob = EXAMPLE_ADHOC * 3
    path = tmp_path / "t.a.rtp"
    path.write_bytes(blob[:-5])
    got = recording_reader.read(str(path))
    assert got.truncated and len(got.packets) == 2
    assert recording_reader.scan_count(str(path))[0] == -1
    path.write_bytes(EXAMPLE_PCAP_GLOBAL + EXAMPLE_PCAP_RECORD * 2 + EXAMPLE_PCAP_RECORD[:20])
    got = recording_reader.read(str(path))
    assert got.kind == "pcap" and got.truncated and [p.data for p in got.packets] == [EXAMPLE_RTP] * 2
    assert got.packets[0].source == ("192.0.2.10", 40000)


def test_reader_skips_short_records_and_counts_like_upstream(tmp_path):
    short = EXAMPLE_ADHOC[:28] + b"\x04\x00" + b"abcd"
    path = tmp_path / "s.a.rtp"
    path.write_bytes(EXAMPLE_ADHOC + short + EXAMPLE_ADHOC)
    assert recording_reader.scan_count(str(path))[0] == 2


def test_reader_refuses_foreign_files(tmp_path):
    for name, blob, words in (
            ("w.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40), "not an rtpproxy recording"),
            ("be.pcap", b"\xa1\xb2\xc3\xd4" + bytes(40), "big-endian pcap"),
            ("ng.pcap", b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng"),
            ("e.rtp", b"", "is empty")):
        path = tmp_path / name
        path.write_bytes(blob)
        try:
            recording_reader.read(str(path))
        except recording_reader.RecordingError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(name)
    try:
        recording_reader.read(str(tmp_path / "nope"))
    except recording_reader.RecordingError as exc:
        assert "does not exist" in str(exc)
