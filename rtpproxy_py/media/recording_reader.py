"""Reading recordings back: the ad hoc and pcap files of recording-formats.md.

Used by extractaudio and the tests. The reader rules are upstream's (sections
4 and 5 "Reader rules"): records too short for RTP are skipped, a record that
runs past the end of the file makes the file "truncated" (what came before
is still returned), pcap records that are not IPv4 are skipped.

``read_table`` is the whole-array form extractaudio uses: the record chain is
walked in strides (a recording is mostly records of one size, so one NumPy
step covers thousands of them) and every field comes out as an array over
the file. ``read`` gives the same records as Packet objects.
"""

import socket
import struct

import numpy as np

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


class RecordTable:
    """The datagrams of a recording as arrays: ``buf`` (the file, uint8),
    ``start``/``length`` of each datagram in it, ``arrival`` (wall clock),
    ``dest_port`` (pcap; -1 for ad hoc). ``source(i)`` and ``dest(i)`` give
    the addresses of one record. ``kind``, ``records``, ``truncated`` as in
    Recording."""

    def __init__(self, path, kind, buf):
        self.path = path
        self.kind = kind
        self.buf = buf
        self.records = 0
        self.truncated = False
        self.linktype = None
        self.start = self.length = self.arrival = self.dest_port = None
        self.dest_key = None        # pcap: destination address and port as one number
        self._addr = None           # start of each record's address fields

    def __len__(self):
        return len(self.start)

    def data(self, i):
        start = int(self.start[i])
        return self.buf[start:start + int(self.length[i])].tobytes()

    def source(self, i):
        at = int(self._addr[i])
        b = self.buf
        if self.kind == "pcap":
            return (socket.inet_ntop(socket.AF_INET, b[at + 12:at + 16].tobytes()),
                    int(b[at + 20]) << 8 | int(b[at + 21]))
        port = int(b[at + 2]) << 8 | int(b[at + 3])
        return _adhoc_host(int(b[at]), b[at + 4:at + 20].tobytes()), port

    def dest(self, i):
        if self.kind != "pcap":
            return None
        at = int(self._addr[i])
        b = self.buf
        return (socket.inet_ntop(socket.AF_INET, b[at + 16:at + 20].tobytes()),
                int(b[at + 22]) << 8 | int(b[at + 23]))

    def subset(self, keep: np.ndarray) -> "RecordTable":
        """A table of the records selected by ``keep`` (a mask or indices)."""
        t = RecordTable(self.path, self.kind, self.buf)
        t.records, t.truncated, t.linktype = self.records, self.truncated, self.linktype
        t.start, t.length, t.arrival = self.start[keep], self.length[keep], self.arrival[keep]
        t.dest_port, t._addr = self.dest_port[keep], self._addr[keep]
        t.dest_key = self.dest_key[keep] if self.dest_key is not None else None
        return t


def _u16le(buf, at):
    return buf[at].astype(np.int64) | (buf[at + 1].astype(np.int64) << 8)


def _u32le(buf, at):
    return (_u16le(buf, at) | (_u16le(buf, at + 2) << 16))


def _record_chain(buf: np.ndarray, first: int, header: int, length_at: int,
                  length_size: int) -> tuple:
    """Walk records ``header`` bytes long followed by a body whose length is
    the little-endian field at ``length_at``; returns (record offsets, body
    lengths, truncated). Runs of equal records are checked a window at a
    time with NumPy; the window grows while the guess holds."""
    size = len(buf)
    offsets, lengths = [], []
    off = first
    window = 64
    read_len = _u16le if length_size == 2 else _u32le
    while off < size:
        if off + header > size:
            return offsets, lengths, True
        body = int(read_len(buf, np.int64(off + length_at)))
        stride = header + body
        if off + stride > size:
            return offsets, lengths, True
        count = min((size - off) // stride, window)
        cand = off + stride * np.arange(count, dtype=np.int64)
        same = read_len(buf, cand + length_at) == body
        k = count if same.all() else int(np.argmin(same))
        offsets.append(cand[:k])
        lengths.append(np.full(k, body, dtype=np.int64))
        off += stride * k
        window = window * 4 if k == count else 64
    return offsets, lengths, False


def _concat(parts, dtype=np.int64):
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def read_table(path: str) -> "RecordTable":
    """Read a recording file as a RecordTable. Raises RecordingError."""
    blob = _read_blob(path)
    buf = np.frombuffer(blob, dtype=np.uint8)
    if detect(blob) == "pcap":
        return _table_pcap(path, blob, buf)
    if blob[:4] in _OTHER_PCAP_MAGICS:
        raise RecordingError("%s is %s; only little-endian microsecond pcap (as rtpproxy writes) "
                             "is supported" % (path, _OTHER_PCAP_MAGICS[blob[:4]]))
    return _table_adhoc(path, blob, buf)


def _table_adhoc(path, blob, buf):
    if len(blob) < ADHOC_HEADER.size or _adhoc_family(blob, 0) is None:
        raise RecordingError("%s is not an rtpproxy recording (neither the ad hoc format nor "
                             "pcap)" % path)
    t = RecordTable(path, "adhoc", buf)
    hsize = ADHOC_HEADER.size
    offsets, lengths, t.truncated = _record_chain(buf, 0, hsize, hsize - 2, 2)
    rec = _concat(offsets)
    length = _concat(lengths)
    keep = length >= MIN_RTP_SIZE
    rec, length = rec[keep], length[keep]
    t.records = len(rec)
    t.start = rec + hsize
    t.length = length
    t._addr = rec
    stamp = rec[:, None] + np.arange(20, 28)
    t.arrival = np.ascontiguousarray(buf[stamp]).view("<f8").reshape(-1) if len(rec) else \
        np.zeros(0)
    t.dest_port = np.full(len(rec), -1, dtype=np.int64)
    return t


def _table_pcap(path, blob, buf):
    if len(blob) < _PCAP_GLOBAL.size:
        raise RecordingError("%s is a truncated pcap file (no complete header)" % path)
    _, major, minor, _, _, _, linktype = _PCAP_GLOBAL.unpack_from(blob)
    if (major, minor) != (2, 4):
        raise RecordingError("%s is pcap version %d.%d; only 2.4 is supported" % (path, major, minor))
    if linktype not in (LINKTYPE_NULL, LINKTYPE_ETHERNET):
        raise RecordingError("%s has pcap link type %d; only Ethernet (1) and loopback (0) are "
                             "supported" % (path, linktype))
    t = RecordTable(path, "pcap", buf)
    t.linktype = linktype
    link_size = 14 if linktype == LINKTYPE_ETHERNET else 4
    fixed = link_size + 20 + 8
    offsets, lengths, t.truncated = _record_chain(buf, _PCAP_GLOBAL.size, _PCAP_RECORD.size, 8, 4)
    rec = _concat(offsets)
    incl = _concat(lengths)
    start = rec + _PCAP_RECORD.size
    last = len(buf) - 1
    if linktype == LINKTYPE_ETHERNET:
        ipv4 = (incl >= 14) & (buf[np.minimum(start + 12, last)] == 8) & \
            (buf[np.minimum(start + 13, last)] == 0)
    else:
        ipv4 = (incl >= 4) & (_u32le(buf, np.minimum(start, last - 3)) == 2)
    rec, start, incl = rec[ipv4], start[ipv4], incl[ipv4]
    short = np.flatnonzero(incl < fixed)
    if len(short):                     # an IPv4 record too short for its headers: damage
        cut = int(short[0])
        t.truncated = True
        t.records = cut + 1
        rec, start, incl = rec[:cut], start[:cut], incl[:cut]
    else:
        t.records = len(rec)
    ip = start + link_size
    plen = start + incl - (ip + 28)
    keep = plen >= MIN_RTP_SIZE
    rec, ip, plen = rec[keep], ip[keep], plen[keep]
    t.start = ip + 28
    t.length = plen
    t._addr = ip
    t.arrival = _u32le(buf, rec).astype(np.float64) + _u32le(buf, rec + 4) * 1e-6
    t.dest_port = (buf[ip + 22].astype(np.int64) << 8) | buf[ip + 23]
    address = (buf[ip + 16].astype(np.int64) << 24) | (buf[ip + 17].astype(np.int64) << 16) | \
        (buf[ip + 18].astype(np.int64) << 8) | buf[ip + 19]
    t.dest_key = (address << 16) | t.dest_port
    return t


def detect(head):
    """"pcap" or "adhoc" from the first bytes of a file (section 4)."""
    if len(head) >= 4 and struct.unpack("<I", head[:4])[0] == PCAP_MAGIC:
        return "pcap"
    return "adhoc"


def _read_blob(path):
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
    return blob


def read(path):
    """Read a recording file. Raises RecordingError (missing, empty, foreign)."""
    table = read_table(path)
    rec = Recording(path, table.kind)
    rec.records, rec.truncated, rec.linktype = table.records, table.truncated, table.linktype
    rec.packets = [Packet(table.data(i), float(table.arrival[i]), table.source(i), table.dest(i))
                   for i in range(len(table))]
    return rec


def _adhoc_family(blob, offset):
    family = blob[offset] | (blob[offset + 1] << 8)
    return family if family in _ADHOC_FAMILIES else None


def _adhoc_host(family, area):
    if family == 2:
        return socket.inet_ntop(socket.AF_INET, area[:4])
    return socket.inet_ntop(socket.AF_INET6, area)


def scan_count(path):
    """extractaudio -S: the number of records upstream's reader iterates, or -1
    (missing, empty, unsupported or truncated file)."""
    try:
        rec = read_table(path)
    except RecordingError:
        return -1, None
    if rec.truncated:
        return -1, rec
    return rec.records, rec
