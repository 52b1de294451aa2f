"""acct_rtcp_hep (modules.md 5) through the daemon as a real process: the RTCP
of a live call reaches a HEP collector (a small UDP or TCP listener here that
parses what arrives) as upstream sends it, 352 bytes for upstream's test packet."""

import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from helpers import TOP, Endpoint, free_port, rtp_packet, wait_for

HOST = "127.0.0.1"
SR = struct.pack("!BBHIIIIII", 0x80, 200, 6, 4090175489, 2209022881, 3942779706, 37920, 158, 39816)
SDES = struct.pack("!BBHIBB6s", 0x81, 202, 4, 4090175489, 1, 6, b"caller") + b"\0" * 4
RR = struct.pack("!BBHI", 0x81, 201, 7, 0x11112222) + struct.pack(
    "!IB3sIIII", 4090175489, 12, b"\x00\x01\x05", 70000, 33, 16909060, 65536)


class Collector:
    """A HEP collector: takes datagrams (UDP) or a byte stream (TCP) and
    splits it into messages by the HEP3 length field."""

    def __init__(self, kind):
        self.kind = kind
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.raw = b""
        self.datagrams = []
        if kind == "tcp":
            self.sock.listen(5)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            if self.kind == "udp":
                while True:
                    data = self.sock.recv(65535)
                    self.datagrams.append(data)
                    self.raw += data
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()
        except OSError:
            return

    def _read(self, conn):
        while True:
            data = conn.recv(65535)
            if not data:
                return
            self.raw += data

    def messages(self):
        out, pos, raw = [], 0, self.raw
        while pos + 6 <= len(raw):
            assert raw[pos:pos + 4] == b"HEP3", raw
            length = struct.unpack_from("!H", raw, pos + 4)[0]
            if pos + length > len(raw):
                break
            out.append(chunks(raw[pos:pos + length]))
            pos += length
        return out

    def close(self):
        self.sock.close()


def chunks(message):
    out, pos = [], 6
    while pos < len(message):
        vendor, kind, length = struct.unpack_from("!HHH", message, pos)
        assert vendor == 0
        out.append((kind, message[pos + 6:pos + length]))
        pos += length
    return out


def config(tmp_path, kind, port, capt_id=101):
    for name in ("acct_csv", "acct_rtcp_hep", "catch_dtmf"):
        (tmp_path / ("rtpp_%s.so" % name)).write_bytes(b"")
    (tmp_path / "rtpproxy.conf").write_text("""
modules {
    acct_csv { load = rtpp_acct_csv.so }
    acct_rtcp_hep {
        load = ./rtpp_acct_rtcp_hep.so
        capt_host = %s
        capt_port = %d
        capt_ptype = %s
        capt_id = %d
    }
    dtmf { load = "rtpp_catch_dtmf.so" }
}
""" % (HOST, port, kind.upper(), capt_id))
    return str(tmp_path / "rtpproxy.conf")


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_rtcp_of_a_call_reaches_the_collector_as_upstream_sends_it(rtpproxy, tmp_path, kind):
    collector = Collector(kind)
    caller, callee = Endpoint(HOST), Endpoint(HOST)
    try:
        d = rtpproxy("--config", config(tmp_path, kind, collector.port, 70000), "--workers", "1",
                     cwd=str(tmp_path))
        call_id = "acct_rtcp_hep.%s_%05d.rec." % (kind, collector.port)
        to_callee = int(d.command("U %s %s %d ftag" % (call_id, HOST, caller.port)))
        to_caller = int(d.command("L %s %s %d ftag ttag" % (call_id, HOST, callee.port)))
        caller.send(rtp_packet(1, 160, 1, 0), HOST, to_caller)           # RTP: never exported
        before = time.time()
        caller.send(SR + SDES, HOST, to_caller + 1)
        assert wait_for(lambda: len(collector.raw) >= 352)
        assert len(collector.raw) == 352                                 # upstream's test figure
        (message,) = collector.messages()
        assert [k for k, _ in message] == [1, 2, 7, 8, 9, 10, 11, 12, 0x11, 3, 4, 15]
        fields = dict(message)
        assert fields[1] == b"\x02" and fields[2] == b"\x11" and fields[11] == b"\x05"
        assert struct.unpack("!H", fields[7])[0] == caller.port
        assert struct.unpack("!H", fields[8])[0] == to_caller + 1
        stamp = struct.unpack("!I", fields[9])[0] + struct.unpack("!I", fields[10])[0] / 1e6
        assert before - 1 <= stamp <= time.time() + 1
        assert fields[12] == b"\x11\x70\x00\x00"                         # capt_id 70000, upstream's bytes
        assert fields[0x11] == call_id.encode() and len(call_id) == 28
        assert fields[3] == fields[4] == socket.inet_aton(HOST)
        assert json.loads(fields[15]) == {
            "ssrc": 4090175489, "type": 200, "report_count": 0,
            "sender_information": {"ntp_timestamp_sec": 2209022881, "ntp_timestamp_usec": 3942779706,
                                   "rtp_timestamp": 37920, "packets": 158, "octets": 39816}}
        # the callee's receiver report, and a packet that does not convert
        callee.send(b"\x40" + SR[1:], HOST, to_callee + 1)
        callee.send(RR, HOST, to_callee + 1)
        # (sent before the RR on the same socket: handled, not exported, by the time it arrives)
        assert wait_for(lambda: len(collector.messages()) == 2)
        (_, second) = collector.messages()
        second = dict(second)
        assert struct.unpack("!H", second[8])[0] == to_callee + 1
        block = json.loads(second[15])["report_blocks"][0]
        assert (block["packets_lost"], block["highest_seq_no"]) == (261, 70000)
        assert d.command("Qv %s ftag ttag npkts_ina" % call_id) == "npkts_ina=1"
        assert d.stop(signal.SIGTERM) == 0
        assert len(collector.messages()) == 2
        assert len((tmp_path / "rtpproxy_acct.csv").read_text().splitlines()) == 2
    finally:
        caller.close()
        callee.close()
        collector.close()


def test_tcp_collector_not_listening_stops_the_start(tmp_path):
    port = free_port(socket.SOCK_STREAM)
    out = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-f", "-F", "-p", "/dev/null", "-s",
                          "udp:127.0.0.1:%d" % free_port(), "--config", config(tmp_path, "tcp", port),
                          "--workers", "1"],
                         capture_output=True, text=True, timeout=20, cwd=str(tmp_path),
                         env=dict({"PATH": "/usr/bin:/bin"}, PYTHONPATH=TOP))
    assert out.returncode == 1, out
    assert out.stderr.strip().splitlines()[-1] == \
        "rtpproxy: acct_rtcp_hep: dymanic module start has failed: Connection refused (111)"
