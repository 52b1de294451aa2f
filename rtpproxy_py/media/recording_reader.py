"""Reading recordings back: the ad hoc and pcap files of recording-formats.md.

Used by extractaudio and the tests. The reader rules are upstream's (sections
4 and 5 "Reader rules"): records too short for RTP are skipped, a record that
runs past the end of the file makes the file "truncated" (what came before
is still returned), pcap records that are not IPv4 are skipped.
"""

import socket
import struct

from .recorder import ADHOC_HEADER, MIN_RTP_SIZE, PCAP_MAGIC

_PCAP_GLOBAL = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
_ADHOC_FAMILIES = (2, 10, 28)     # AF_INET, Linux AF_INET6, BSD AF_INET6 (one byte)

# The other pcap magics, for a precise message (pcap files we cannot read).
_OTHER_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": "a big-endian pcap file",
    b"\x4d\x3c\xb2\xa1": "a nanosecond-resolution pcap file",
    b"\xa1\xb2\x3c\x4d": "a nanosecond-resolution pcap file",
    b"\x0a\x0d\x0d\x0a": "a pcapng file",
}


class RecordingError(Exception):
    """The file cannot be read as a recording at all (message says why)."""


class Packet:
    """One recorded datagram: its bytes, arrival time (wall clock), sender and
    (pcap only) destination address."""

    __slots__ = ("data", "arrival", "source", "dest")

    def __init__(self, data, arrival, source, dest=None):
        self.data = data
        self.arrival = arrival
        self.source = source
        self.dest = dest


class Recording:
    """What was read from a file: ``packets`` in file order, ``kind`` ("adhoc"
    or "pcap"), ``records`` (upstream's scan count), and ``truncated``."""

    def __init__(self, path, kind):
        self.path = path
        self.kind = kind
        self.packets = []
        self.records = 0
        self.truncated = False
        self.linktype = None


def detect(head):
    """"pcap" or "adhoc" from the first bytes of a file (section 4)."""
    if len(head) >= 4 and struct.unpack("<I", head[:4])[0] == PCAP_MAGIC:
        return "pcap"
    return "adhoc"


def read(path):
    """Read a recording file. Raises RecordingError (missing, empty, foreign)."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise RecordingError("%s does not exist" % path) from None
    except IsADirectoryError:
        raise RecordingError("%s is a directory, not a recording" % path) from None
    except OSError as exc:
        raise RecordingError("cannot read %s: %s" % (path, exc.strerror)) from None
    if not blob:
        raise RecordingError("%s is empty" % path)
    if detect(blob) == "pcap":
        return _read_pcap(path, blob)
    if blob[:4] in _OTHER_PCAP_MAGICS:
        raise RecordingError("%s is %s; only little-endian microsecond pcap (as rtpproxy writes) "
                             "is supported" % (path, _OTHER_PCAP_MAGICS[blob[:4]]))
    return _read_adhoc(path, blob)


def _adhoc_family(blob, offset):
    family = blob[offset] | (blob[offset + 1] << 8)
    return family if family in _ADHOC_FAMILIES else None


def _read_adhoc(path, blob):
    rec = Recording(path, "adhoc")
    size = len(blob)
    if size < ADHOC_HEADER.size or _adhoc_family(blob, 0) is None:
        raise RecordingError("%s is not an rtpproxy recording (neither the ad hoc format nor "
                             "pcap)" % path)
    unpack = ADHOC_HEADER.unpack_from
    packets = rec.packets
    offset = 0
    count = 0
    while offset < size:
        if offset + ADHOC_HEADER.size > size:
            rec.truncated = True
            break
        family, port, area, arrival, plen = unpack(blob, offset)
        start = offset + ADHOC_HEADER.size
        end = start + plen
        if end > size:
            rec.truncated = True
            break
        offset = end
        if plen < MIN_RTP_SIZE:
            continue
        count += 1
        packets.append(Packet(blob[start:end], arrival, (_adhoc_host(family & 0xFF, area),
                                                         int.from_bytes(port, "big"))))
    rec.records = count
    return rec


def _adhoc_host(family, area):
    if family == 2:
        return socket.inet_ntop(socket.AF_INET, area[:4])
    return socket.inet_ntop(socket.AF_INET6, area)


def _read_pcap(path, blob):
    rec = Recording(path, "pcap")
    if len(blob) < _PCAP_GLOBAL.size:
        raise RecordingError("%s is a truncated pcap file (no complete header)" % path)
    _, major, minor, _, _, _, linktype = _PCAP_GLOBAL.unpack_from(blob)
    if (major, minor) != (2, 4):
        raise RecordingError("%s is pcap version %d.%d; only 2.4 is supported" % (path, major, minor))
    if linktype not in (LINKTYPE_NULL, LINKTYPE_ETHERNET):
        raise RecordingError("%s has pcap link type %d; only Ethernet (1) and loopback (0) are "
                             "supported" % (path, linktype))
    rec.linktype = linktype
    link_size = 14 if linktype == LINKTYPE_ETHERNET else 4
    fixed = link_size + 20 + 8
    size = len(blob)
    offset = _PCAP_GLOBAL.size
    unpack = _PCAP_RECORD.unpack_from
    packets = rec.packets
    count = 0
    while offset < size:
        if offset + _PCAP_RECORD.size > size:
            rec.truncated = True
            break
        sec, usec, incl_len, _orig = unpack(blob, offset)
        start = offset + _PCAP_RECORD.size
        end = start + incl_len
        if end > size:
            rec.truncated = True
            break
        offset = end
        if linktype == LINKTYPE_ETHERNET:
            is_ipv4 = incl_len >= 14 and blob[start + 12:start + 14] == b"\x08\x00"
        else:
            is_ipv4 = incl_len >= 4 and blob[start:start + 4] == b"\x02\x00\x00\x00"
        if not is_ipv4:
            continue
        count += 1
        if incl_len < fixed:
            rec.truncated = True
            break
        ip = start + link_size
        if end - (ip + 28) < MIN_RTP_SIZE:
            continue
        source = (socket.inet_ntop(socket.AF_INET, blob[ip + 12:ip + 16]),
                  int.from_bytes(blob[ip + 20:ip + 22], "big"))
        dest = (socket.inet_ntop(socket.AF_INET, blob[ip + 16:ip + 20]),
                int.from_bytes(blob[ip + 22:ip + 24], "big"))
        packets.append(Packet(blob[ip + 28:end], sec + usec * 1e-6, source, dest))
    rec.records = count
    return rec


def scan_count(path):
    """extractaudio -S: the number of records upstream's reader iterates, or -1
    (missing, empty, unsupported or truncated file)."""
    try:
        rec = read(path)
    except RecordingError:
        return -1, None
    if rec.truncated:
        return -1, rec
    return rec.records, rec
