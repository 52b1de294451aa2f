"""R / C / N through the real daemon: file names, layouts, spool, -a, -R, -P,
remote copies, SIGTERM, unwritable directories and a full disk
(recording-formats.md, control-protocol.md 5.11-5.13)."""

import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from helpers import Endpoint, wait_for
from recording_helpers import RTCP_REPORT, Call, HOST, wait_file
from rtpproxy_py.media import recording_reader
from rtpproxy_py.media.recorder import ADHOC_HEADER, internet_checksum

CID = "call1@example"
BASE = CID + "=ftag"


def records(path, count=None):
    """The recording at ``path``; with ``count``, first wait until it holds that
    many packets (files are written by the daemon's writer thread)."""
    if count is not None:
        wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0 and
                 len(recording_reader.read(str(path)).packets) >= count)
    rec = recording_reader.read(str(path))
    assert not rec.truncated, path
    return rec


def test_record_both_directions_adhoc(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST, "-r", str(tmp_path))
    call = Call(d)
    assert d.command("R %s ftag" % CID) == "0"              # caller -> .o
    assert d.command("R %s ttag ftag" % CID) == "0"         # callee -> .a
    assert d.command("R %s ttag" % CID) == "E50"            # matches no session
    t0 = time.time()
    from_caller, from_callee = call.talk(20)
    assert call.caller_says(RTCP_REPORT, rtcp=True) == RTCP_REPORT
    assert d.command("D %s ftag ttag" % CID) == "0"
    assert sorted(os.listdir(tmp_path)) == sorted(BASE + s for s in (
        ".o.rtp", ".o.rtcp", ".a.rtp", ".a.rtcp"))
    o = records(tmp_path / (BASE + ".o.rtp"), 20)
    a = records(tmp_path / (BASE + ".a.rtp"), 20)
    assert o.kind == a.kind == "adhoc"
    assert [p.data for p in o.packets] == from_caller
    assert [p.data for p in a.packets] == from_callee
    assert {p.source for p in o.packets} == {(HOST, call.caller.port)}
    assert {p.source for p in a.packets} == {(HOST, call.callee.port)}
    arrivals = [p.arrival for p in o.packets]
    assert arrivals == sorted(arrivals) and t0 - 1 < arrivals[0] <= arrivals[-1] < time.time() + 1
    rtcp = records(tmp_path / (BASE + ".o.rtcp"), 1)
    assert [p.data for p in rtcp.packets] == [RTCP_REPORT]
    assert os.path.getsize(tmp_path / (BASE + ".a.rtcp")) == 0
    # layout: 30-byte header + datagram, back to back
    blob = (tmp_path / (BASE + ".o.rtp")).read_bytes()
    assert len(blob) == 20 * (30 + 172)
    family, port, area, _, plen = ADHOC_HEADER.unpack_from(blob)
    assert (family, int.from_bytes(port, "big"), area, plen) == (
        2, call.caller.port, socket.inet_aton(HOST) + bytes(12), 172)


def test_r_without_record_dir_and_n(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST)
    Call(d)
    assert d.command("R %s ftag" % CID) == "E50"            # no -r (upstream's answer)
    assert d.command("C %s name ftag;1" % CID) == "E65"
    d2 = rtpproxy("-l", HOST, "-r", str(tmp_path))
    call = Call(d2)
    assert d2.command("N %s ftag" % CID) == "E50"           # nothing recording
    assert d2.command("R %s ftag ttag" % CID) == "0"
    assert d2.command("R %s ftag ttag" % CID) == "0"        # already recording: still 0
    call.talk(3)
    assert d2.command("N %s ftag" % CID) == "0"
    assert d2.command("N %s ftag" % CID) == "E50"
    call.talk(3)                                           # not recorded any more
    assert len(records(tmp_path / (BASE + ".o.rtp"), 3).packets) == 3
    # Na stops both legs
    assert d2.command("R %s ftag" % CID) == "0"
    assert d2.command("R %s ttag ftag" % CID) == "0"
    assert d2.command("Na %s ftag" % CID) == "0"
    assert d2.command("Na %s ftag" % CID) == "E50"
    assert d2.command("Nx %s ftag" % CID) == "E7"
    assert d2.command("Nax %s ftag" % CID) == "E6"
    assert d2.command("Rp %s ftag" % CID) == "E6"
    assert d2.command("Rq %s ftag" % CID) == "E7"
    assert d2.command("R nosuch ftag") == "E50"


def test_pcap_per_direction(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-P")
    call = Call(d)
    assert d.command("R %s ftag ttag" % CID) == "0"
    from_caller, _ = call.talk(5)
    assert call.caller_says(RTCP_REPORT, rtcp=True) == RTCP_REPORT
    assert d.command("N %s ftag ttag" % CID) == "0"
    path = tmp_path / (BASE + ".o.rtp")     # pcap content, .rtp name (section 3)
    assert wait_file(str(tmp_path / (BASE + ".o.rtcp")))
    rec = records(path, 5)
    assert rec.kind == "pcap" and rec.linktype == 1
    assert [p.data for p in rec.packets] == from_caller
    blob = path.read_bytes()
    assert blob[:24] == bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
    frame = blob[24 + 16:24 + 16 + 42 + 172]
    src_ip, dst_ip = socket.inet_aton(HOST), socket.inet_aton(HOST)
    assert frame[:12] == b"\x00\x00" + dst_ip + b"\x00\x00" + src_ip
    ip = frame[14:34]
    assert ip[0] == 0x45 and ip[8] == 127 and ip[9] == 17 and internet_checksum(ip) == 0
    sport, dport, ulen, _ = struct.unpack("!HHHH", frame[34:42])
    assert (sport, dport, ulen) == (call.caller.port, call.to_caller_port, 8 + 172)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
    assert internet_checksum(pseudo + frame[34:]) == 0
    ids = [struct.unpack("!H", blob[24 + i * (16 + 214) + 16 + 18:][:2])[0] for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5       # the process-wide counter
    assert [p.data for p in records(tmp_path / (BASE + ".o.rtcp"), 1).packets] == [RTCP_REPORT]


def test_pcap_single_file(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-P")
    call = Call(d)
    assert d.command("Rs %s ftag ttag" % CID) == "0"
    assert d.command("Rs %s ftag ttag" % CID) == "E50"      # that leg is already in the file
    assert d.command("Rs %s ttag ftag" % CID) == "0"
    from_caller, from_callee = call.talk(10)
    assert call.callee_says(RTCP_REPORT, rtcp=True) == RTCP_REPORT
    assert d.command("N %s ftag" % CID) == "0"               # one direction stops...
    assert os.listdir(tmp_path) == [BASE + ".pcap"]
    call.talk(2)
    assert d.command("D %s ftag ttag" % CID) == "0"          # ...the file closes with the session
    rec = records(tmp_path / (BASE + ".pcap"), 23)
    datas = [p.data for p in rec.packets]
    assert [x for x in datas if x in from_caller] == from_caller
    assert len(datas) == 10 + 12 + 1
    # RTCP in a single file: outbound view, from the relay socket towards the caller
    blob = (tmp_path / (BASE + ".pcap")).read_bytes()
    rtcp_at = blob.index(RTCP_REPORT)
    sport, dport = struct.unpack("!HH", blob[rtcp_at - 8:rtcp_at - 4])
    assert (sport, dport) == (call.to_caller_port + 1, call.caller_rtcp.port)
    [rtcp] = [p for p in rec.packets if p.data == RTCP_REPORT]
    assert rtcp.source == (HOST, call.to_caller_port + 1)


def test_s_is_ignored_without_pcap(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-R")
    call = Call(d)
    assert d.command("Rs %s ftag ttag" % CID) == "0"
    call.talk(2)
    assert d.command("D %s ftag ttag" % CID) == "0"
    assert os.listdir(tmp_path) == [BASE + ".o.rtp"]          # -R: no RTCP file


def test_spool_then_move(rtpproxy, tmp_path):
    final, spool = tmp_path / "final", tmp_path / "spool"
    final.mkdir()
    spool.mkdir()
    d = rtpproxy("-l", HOST, "-r", str(final), "-S", str(spool))
    call = Call(d)
    assert d.command("R %s ftag" % CID) == "0"
    from_caller, _ = call.talk(5)
    # in progress: in the spool, already readable (flushed within a fraction of a second)
    assert os.listdir(final) == []
    path = spool / (BASE + ".o.rtp")
    assert wait_file(str(path), lambda size: size == 5 * (30 + 172))
    assert [p.data for p in records(path).packets] == from_caller
    assert d.command("N %s ftag" % CID) == "0"
    assert wait_for(lambda: sorted(os.listdir(final)) == [BASE + ".o.rtcp", BASE + ".o.rtp"])
    assert os.listdir(spool) == []
    assert [p.data for p in records(final / (BASE + ".o.rtp")).packets] == from_caller


def test_record_all_pcap_single_file(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-P", "-a")
    call = Call(d)
    from_caller, from_callee = call.talk(4)
    assert d.command("D %s ftag ttag" % CID) == "0"
    assert wait_for(lambda: os.listdir(tmp_path) == [BASE + ".pcap"])
    datas = [p.data for p in records(tmp_path / (BASE + ".pcap"), 8).packets]
    assert sorted(datas) == sorted(from_caller + from_callee)


def test_record_all_adhoc(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-a", "-R")
    call = Call(d)
    from_caller, from_callee = call.talk(4)
    assert d.command("D %s ftag ttag" % CID) == "0"
    assert wait_for(lambda: sorted(os.listdir(tmp_path)) == [BASE + ".a.rtp", BASE + ".o.rtp"])
    assert [p.data for p in records(tmp_path / (BASE + ".o.rtp"), 4).packets] == from_caller
    assert [p.data for p in records(tmp_path / (BASE + ".a.rtp"), 4).packets] == from_callee


def test_copy_to_named_files(rtpproxy, tmp_path):
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-P")
    call = Call(d)
    assert d.command("C %s mycopy ftag;1 ttag;1" % CID) == "0"   # leg of the caller (from-tag matches)
    assert d.command("Cp %s other ftag;1 ttag;1" % CID) == "E65"  # p needs a udp: target
    assert d.command("Cs %s single.pcap ttag;1 ftag;1" % CID) == "0"
    assert d.command("Cs %s again.pcap ftag;1 ttag;1" % CID) == "E65"   # that leg has a plain C
    assert d.command("Cx %s x ftag;1 ttag;1" % CID) == "E7"
    assert d.command("C nosuch x ftag;1 ttag;1") == "E50"
    from_caller, from_callee = call.talk(3)
    assert d.command("D %s ftag ttag" % CID) == "0"
    assert wait_for(lambda: sorted(os.listdir(tmp_path)) == ["mycopy.rtcp", "mycopy.rtp", "single.pcap"])
    assert [p.data for p in records(tmp_path / "mycopy.rtp", 3).packets] == from_caller
    assert [p.data for p in records(tmp_path / "single.pcap", 3).packets] == from_callee


def test_single_file_copy_holds_both_legs(rtpproxy, tmp_path):
    """Cs on the second leg joins the session's single file (its name is not
    used); N then stops that leg; Cs on a leg with a plain C is refused."""
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-P", "-R")
    call = Call(d)
    assert d.command("Cs %s both.pcap ttag;1 ftag;1" % CID) == "0"       # callee's leg
    assert d.command("Cs %s other.pcap ftag;1 ttag;1" % CID) == "0"      # caller's leg joins
    assert d.command("Cs %s other.pcap ftag;1 ttag;1" % CID) == "E65"    # already in it
    from_caller, from_callee = call.talk(10)
    assert d.command("N %s ftag" % CID) == "0"                           # the caller's leg stops
    more_caller, more_callee = call.talk(2)
    assert d.command("D %s ftag ttag" % CID) == "0"
    assert wait_for(lambda: os.listdir(tmp_path) == ["both.pcap"])
    datas = [p.data for p in records(tmp_path / "both.pcap", 22).packets]
    assert sorted(datas) == sorted(from_caller + from_callee + more_callee)
    # an independent reader sees both directions
    out = subprocess.run(["tshark", "-r", str(tmp_path / "both.pcap"), "-T", "fields",
                          "-e", "udp.srcport"], capture_output=True, text=True, timeout=60)
    ports = out.stdout.split()
    assert sorted(set(ports)) == sorted({str(call.caller.port), str(call.callee.port)})
    assert len(ports) == 22
    # a leg already copied into per-direction files cannot go into a single file
    call2 = Call(d, call_id="call2")
    assert d.command("C call2 plain ftag;1 ttag;1") == "0"
    assert d.command("Cs call2 single2.pcap ftag;1 ttag;1") == "E65"
    assert d.command("Cs call2 single2.pcap ttag;1 ftag;1") == "0"       # the other leg can


def test_copy_to_udp_listener(rtpproxy):
    d = rtpproxy("-l", HOST)
    call = Call(d)
    listener = Endpoint()
    listener_rtcp = Endpoint(port=listener.port + 1)
    reply = d.command("Cp %s udp:%s:%d ftag;1 ttag;1" % (CID, HOST, listener.port))
    port, addr = reply.split()
    assert addr == HOST and int(port) % 2 == 0
    from_caller, _ = call.talk(25)
    assert call.caller_says(RTCP_REPORT, rtcp=True) == RTCP_REPORT
    got = listener.drain(0.3)
    assert [data for data, _ in got] == from_caller          # every packet, in order
    assert {src for _, src in got} == {(HOST, int(port))}
    assert listener_rtcp.recv()[0] == RTCP_REPORT
    assert d.command("C %s udp:%s:%d ttag;1 ftag;1" % (CID, HOST, listener.port)) == "0"
    more_caller, from_callee = call.talk(2)
    assert sorted(data for data, _ in listener.drain(0.3)) == sorted(more_caller + from_callee)
    assert d.command("Na %s ftag" % CID) == "0"              # N stops copies too
    call.talk(2)
    assert listener.drain(0.2) == []
    for bad in ("udp:%s" % HOST, "udp::5", "udp:%s:0" % HOST, "udp:%s:x" % HOST, "udp:no.such.host.invalid:5"):
        assert d.command("C %s %s ftag;1 ttag;1" % (CID, bad)) == "E65", bad


def test_sigterm_mid_call_leaves_complete_files(rtpproxy, tmp_path):
    final, spool = tmp_path / "final", tmp_path / "spool"
    final.mkdir()
    spool.mkdir()
    d = rtpproxy("-l", HOST, "-r", str(final), "-S", str(spool), "-P")
    call = Call(d)
    assert d.command("R %s ftag" % CID) == "0"
    assert d.command("R %s ttag ftag" % CID) == "0"
    from_caller, from_callee = call.talk(30)
    assert d.stop(signal.SIGTERM) == 0
    assert os.listdir(spool) == []
    assert [p.data for p in records(final / (BASE + ".o.rtp")).packets] == from_caller
    assert [p.data for p in records(final / (BASE + ".a.rtp")).packets] == from_callee


def test_unwritable_directory(rtpproxy, tmp_path):
    rdir = tmp_path / "gone"
    rdir.mkdir()
    d = rtpproxy("-l", HOST, "-r", str(rdir))
    call = Call(d)
    rdir.rmdir()                            # the directory vanished under the daemon
    assert d.command("R %s ftag" % CID) == "E50"
    assert d.command("C %s name ftag;1" % CID) == "E65"
    call.talk(3)                            # the call goes on
    assert "cannot create recording" in d.log()


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB tmpfs, so the recording runs out of space (needs root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    assert done.returncode == 0, "cannot mount a tmpfs (run the tests as root): " + done.stderr
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_keeps_the_call(rtpproxy, small_disk):
    d = rtpproxy("-l", HOST, "-r", str(small_disk))
    call = Call(d)
    assert d.command("R %s ftag" % CID) == "0"
    payload = [bytes([i & 0xFF]) * 1000 for i in range(100)]
    for i in range(100):                      # 100 KB of recording for a 64 KiB disk
        call.talk(1, caller_payloads=[payload[i]], callee_payloads=[payload[i]])
        if i % 20 == 19:
            time.sleep(0.25)                  # let the flusher write
    assert wait_for(lambda: "stopped: No space left on device" in d.log(), 3.0), d.log()
    call.talk(5)                              # still relaying
    assert d.command("N %s ftag" % CID) == "E50"   # the recording has stopped
    rec = records(small_disk / (BASE + ".o.rtp"))  # whole records only
    assert 20 <= len(rec.packets) < 100
    assert [p.data[12:] for p in rec.packets] == payload[:len(rec.packets)]


def test_wireshark_reads_the_pcap(rtpproxy, tmp_path):
    """tshark (Wireshark) opens a daemon-written pcap, finds the checksums good
    and decodes the RTP inside."""
    tshark = shutil.which("tshark")
    assert tshark, "tshark is missing: make test installs it (tests/apt-packages.txt)"
    d = rtpproxy("-l", HOST, "-r", str(tmp_path), "-P")
    call = Call(d)
    assert d.command("Rs %s ftag ttag" % CID) == "0"
    assert d.command("Rs %s ttag ftag" % CID) == "0"
    call.talk(4)
    assert call.caller_says(RTCP_REPORT, rtcp=True) == RTCP_REPORT
    assert d.command("D %s ftag ttag" % CID) == "0"
    path = tmp_path / (BASE + ".pcap")
    records(path, 9)
    done = subprocess.run(
        [tshark, "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
         "-d", "udp.port==%d,rtp" % call.to_caller_port, "-d", "udp.port==%d,rtp" % call.to_callee_port,
         "-T", "fields", "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "rtp.seq"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert len(rows) == 9
    assert all(row[0] == "1" and row[1] == "1" for row in rows)        # 1: checksum good
    assert sorted(row[2] for row in rows if row[2]) == sorted(["0", "1", "2", "3"] * 2)
