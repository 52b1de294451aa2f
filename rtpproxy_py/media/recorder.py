"""Recording files: the ad hoc and pcap layouts and the per-file packet batch.

recording-formats.md sections 3-5 give the byte layouts. Everything here is
plain Python: no gevent, no sockets. The packet path only appends a captured
packet to ``RecordingFile.pending`` (see ``make_tap``); the owner of the file
(recording.Recordings in the daemon) periodically takes the batch, encodes it
with the file's format and hands the bytes to a writer thread.

A captured packet is the tuple ``(data, source, stream, arrival)``: the
datagram, the sender's address, the Stream that received it (its local
address/port go into pcap headers) and its receive time; the file adds its
``wall_offset`` when encoding (0 when the tap reads the wall clock itself).
"""

import os
import socket
import struct

# --- ad hoc format (section 4) ---------------------------------------------

AF_INET_LINUX = 2
AF_INET6_LINUX = 10
# family (LE u16), port (network order), 16-byte address area, arrival (LE double), plen (LE u16)
ADHOC_HEADER = struct.Struct("<H2s16sdH")
MIN_RTP_SIZE = 12


def _packed_address(host):
    """(Linux family, 16-byte zero-filled address area) of a numeric host."""
    if ":" in host:
        return AF_INET6_LINUX, socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    return AF_INET_LINUX, socket.inet_pton(socket.AF_INET, host) + bytes(12)


class AdhocFormat:
    """Header-less concatenation of (30-byte header + datagram) records."""

    name = "adhoc"

    def __init__(self):
        self._last_source = None
        self._source_fields = None

    def file_header(self):
        return b""

    def encode(self, batch, wall_offset, local_for=None):
        parts = []
        pack = ADHOC_HEADER.pack
        for data, source, _stream, arrival in batch:
            if source != self._last_source:
                family, area = _packed_address(source[0])
                self._source_fields = (family, source[1].to_bytes(2, "big"), area)
                self._last_source = source
            family, port, area = self._source_fields
            parts.append(pack(family, port, area, arrival + wall_offset, len(data)))
            parts.append(data)
        return b"".join(parts)


# --- pcap format (section 5) -------------------------------------------------

PCAP_MAGIC = 0xA1B2C3D4
PCAP_GLOBAL_HEADER = struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, 1)
PCAP_RECORD = struct.Struct("<IIII")
ETHERTYPE_IPV4 = b"\x08\x00"
ETHERTYPE_IPV6 = b"\x86\xdd"
IPV4_OVERHEAD = 14 + 20 + 8      # Ethernet + IPv4 + UDP
IPV6_OVERHEAD = 14 + 40 + 8


def ones_complement_sum(data):
    """16-bit one's complement sum of ``data`` (padded with a zero byte if odd).

    2**16 == 1 (mod 0xFFFF), so the sum of the big-endian 16-bit words is
    congruent to the whole buffer read as one big integer: one C-level
    conversion instead of a Python loop over words.
    """
    if len(data) & 1:
        data += b"\x00"
    value = int.from_bytes(data, "big")
    if value == 0:
        return 0
    folded = value % 0xFFFF
    return folded or 0xFFFF


def internet_checksum(data):
    return ~ones_complement_sum(data) & 0xFFFF


def fake_mac(packed_ip):
    """The fake MAC of an address: 00 00 + IPv4, or the folded IPv6 address."""
    if len(packed_ip) == 4:
        return b"\x00\x00" + packed_ip
    mac = bytearray(packed_ip[:6])
    for i in range(6, 16):
        mac[i % 6] ^= packed_ip[i]
    return bytes(mac)


def pcap_timestamp(t):
    """(ts_sec, ts_usec) of a wall-clock time, rounding to the microsecond."""
    sec = int(t)
    usec = int(round((t - sec) * 1e6))
    if usec >= 1000000:
        sec += 1
        usec -= 1000000
    return sec, usec


class IpIdCounter:
    """The process-wide 16-bit IPv4 identification shared by every pcap file."""

    def __init__(self):
        self.value = 0

    def next(self):
        value = self.value
        self.value = (value + 1) & 0xFFFF
        return value


PROCESS_IP_ID = IpIdCounter()


def _word_sum(data):
    """Sum of the big-endian 16-bit words of ``data``, reduced mod 0xFFFF."""
    if len(data) & 1:
        data += b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF


def _fold_checksum(total):
    """The checksum field for a one's complement sum congruent to ``total``
    (mod 0xFFFF) of words that are not all zero."""
    return ~(total % 0xFFFF or 0xFFFF) & 0xFFFF


# IPv4 header words that never change: version/IHL/TOS, flags/fragment, TTL/protocol
_IPV4_CONST_SUM = 0x4500 + 0 + ((127 << 8) | 17)


class _Flow:
    """What every packet between two addresses shares: the fake Ethernet header,
    the constant parts of the IP header and the checksum sums of the addresses."""

    __slots__ = ("v4", "prefix", "src_ip", "dst_ip", "ports", "address_sum", "ip_sum")

    def __init__(self, src, dst):
        src_ip, src_port = src
        dst_ip, dst_port = dst
        self.v4 = len(src_ip) == 4
        size = 4 if self.v4 else 16
        if len(dst_ip) != size:
            dst_ip = bytes(size)
        self.src_ip, self.dst_ip = src_ip, dst_ip
        self.prefix = fake_mac(dst_ip) + fake_mac(src_ip) + (ETHERTYPE_IPV4 if self.v4 else ETHERTYPE_IPV6)
        self.ports = struct.pack("!HH", src_port, dst_port)
        # UDP pseudo-header addresses and protocol, and the UDP ports
        self.address_sum = _word_sum(src_ip + dst_ip) + 17 + src_port + dst_port
        self.ip_sum = _IPV4_CONST_SUM + _word_sum(src_ip + dst_ip)


def pcap_packet(data, src, dst, arrival, ip_id, flow=None):
    """One pcap record (record header + fake Ethernet/IP/UDP + datagram).

    ``src``/``dst`` are (packed address, port); the family of ``src`` chooses
    IPv4 or IPv6 framing. ``arrival`` is wall-clock seconds. ``flow`` (a
    _Flow for the same src/dst) saves recomputing what they share.
    """
    if flow is None:
        flow = _Flow(src, dst)
    n = len(data)
    udp_len = 8 + n
    # UDP checksum: pseudo-header (addresses, protocol, length) + header + data
    udp_sum = _fold_checksum(flow.address_sum + 2 * udp_len + _word_sum(data))
    udp_header = flow.ports + struct.pack("!HH", udp_len, udp_sum)
    if flow.v4:
        total = 20 + udp_len
        ip_sum = _fold_checksum(flow.ip_sum + total + ip_id)
        ip_header = struct.pack("!BBHHHBBH", 0x45, 0, total, ip_id, 0, 127, 17, ip_sum) + \
            flow.src_ip + flow.dst_ip
    else:
        ip_header = b"\x60\x00\x00\x00" + struct.pack("!HBB", udp_len, 17, 64) + flow.src_ip + flow.dst_ip
    frame_len = 14 + len(ip_header) + udp_len
    sec, usec = pcap_timestamp(arrival)
    return b"".join((PCAP_RECORD.pack(sec, usec, frame_len, frame_len), flow.prefix,
                     ip_header, udp_header, data))


class PcapFormat:
    """libpcap, Ethernet link type, one fake UDP/IP frame per packet.

    ``single_file``: RTCP is written in the "outbound view" (from the relay
    socket that forwards it to the receiving party), RTP in the inbound view.
    ``local_for(remote_host, family)`` resolves a wildcard local address to the
    one the kernel would use towards the remote host (None: skip the packet).
    """

    name = "pcap"

    def __init__(self, single_file=False, ip_id=PROCESS_IP_ID):
        self.single_file = single_file
        self.ip_id = ip_id
        self._packed = {}
        self._flows = {}

    def file_header(self):
        return PCAP_GLOBAL_HEADER

    def _pack(self, host):
        packed = self._packed.get(host)
        if packed is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            packed = socket.inet_pton(family, host.split("%", 1)[0])
            if len(self._packed) > 256:
                self._packed.clear()
            self._packed[host] = packed
        return packed

    def _local(self, stream, remote_host, local_for):
        local = stream.local
        if local is None or stream.port is None:
            return None
        host = local.host
        if local.wildcard:
            host = local_for(remote_host, local.family) if local_for is not None else None
            if host is None:
                return None
        return self._pack(host), stream.port

    def encode(self, batch, wall_offset, local_for=None):
        parts = []
        for data, source, stream, arrival in batch:
            if self.single_file and not stream.is_rtp:
                # outbound view: relay socket forwarding it -> receiving party
                peer = stream.peer
                remote = peer.rem_addr
                if remote is None:
                    zero = bytes(16 if ":" in source[0] else 4)
                    dst = (zero, 0)
                    src = self._local(peer, source[0], local_for)
                else:
                    dst = (self._pack(remote[0]), remote[1])
                    src = self._local(peer, remote[0], local_for)
            else:
                src = (self._pack(source[0]), source[1])
                dst = self._local(stream, source[0], local_for)
            if src is None or dst is None:
                continue
            key = (src, dst)
            flow = self._flows.get(key)
            if flow is None:
                if len(self._flows) > 64:
                    self._flows.clear()
                flow = self._flows[key] = _Flow(src, dst)
            parts.append(pcap_packet(data, src, dst, arrival + wall_offset, self.ip_id.next(), flow))
        return b"".join(parts)


# --- one open file ---------------------------------------------------------------

class RecordingFile:
    """An open recording: the batch the packet path fills, and the file it goes to.

    ``open()`` creates the file (in the spool directory if there is one) and
    writes the format's header; it raises OSError, which the command that
    asked for the recording turns into its error reply. ``take()`` encodes and
    empties the batch (called off the packet path); ``write()`` and
    ``finish()`` do the disk work and are meant for the writer thread. A write
    error closes the file (cutting back any partly written batch so the file
    stays a whole number of records) and records the error in ``error``.
    """

    def __init__(self, name, directory, fmt, spool=None, wall_offset=0.0, local_for=None):
        self.name = name
        self.fmt = fmt
        self.final_path = directory + "/" + name
        self.path = (spool + "/" + name) if spool else self.final_path
        self.wall_offset = wall_offset
        self.local_for = local_for
        self.pending = []
        self.fd = None
        self.size = 0
        self.error = None
        self.closed = False     # no more batches will be taken
        self.users = 0          # legs (or copy commands) still writing into it

    def open(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        header = self.fmt.file_header()
        if header:
            try:
                self._write_all(header)
            except OSError:
                os.close(self.fd)
                self.fd = None
                raise
        return self

    def take(self):
        """Encode and clear the batch; b"" when there is nothing to write."""
        pending = self.pending
        if not pending:
            return b""
        batch = pending[:]
        pending.clear()
        return self.fmt.encode(batch, self.wall_offset, self.local_for)

    def _write_all(self, blob):
        view = memoryview(blob)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(blob)

    def write(self, blob):
        if self.fd is None or not blob:
            return
        try:
            self._write_all(blob)
        except OSError as exc:
            self.error = exc
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            self._close_fd()

    def _close_fd(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError as exc:
                self.error = self.error or exc
            self.fd = None

    def finish(self):
        """Close the file and move it from the spool to the final directory.

        Returns an error message for the log, or None."""
        self._close_fd()
        if self.path != self.final_path:
            try:
                os.rename(self.path, self.final_path)
            except OSError as exc:
                return "cannot move recording %s to %s: %s" % (self.path, self.final_path, exc.strerror)
        return None


def make_tap(pending, clock=None):
    """A Stream tap that captures every packet the relay would forward.

    Not captured (recording-formats.md 2): packets while the opposite leg has
    no socket yet, and packets suppressed because a prompt plays to the
    receiver. The only work on the packet path is one tuple appended to a list.

    ``clock``: read for each packet's arrival time (the daemon passes
    time.time: the relay's own ``now`` is only refreshed every 0.1 s, too
    coarse for a recording); None takes the ``now`` the stream passes.
    """
    append = pending.append

    if clock is None:
        def record_tap(stream, data, source, now):
            peer = stream.peer
            if peer.port is None or peer.muted:
                return
            append((data, source, stream, now))
        return record_tap

    def record_tap_clocked(stream, data, source, now):
        peer = stream.peer
        if peer.port is None or peer.muted:
            return
        append((data, source, stream, clock()))
    return record_tap_clocked
