#!/usr/bin/env python3
"""CPU per relayed packet of a WebRTC call (ICE-lite + DTLS-SRTP on one leg,
plain RTP on the other) against a plain RTP call, through the daemon as a
real single process (--workers 1). The peers' own work (encryption in the
WebRTC peer) is not counted: only the daemon's utime+stime.

Usage: .venv/bin/python bench/webrtc_cost.py [PACKETS_EACH_WAY] [ROUNDS]
"""
import os
import statistics
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))

from helpers import Daemon, Endpoint, rtp_packet  # noqa: E402
from webrtc_peer import WebRtcPeer  # noqa: E402

HOST = "127.0.0.1"
PAYLOAD = bytes(160)          # 20 ms of G.711
BURST = 50


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pump(packets_a, send_a, packets_b, send_b, receivers):
    """Send bursts both ways; before the next burst, wait until the relay
    delivered this one (so nothing overflows and the CPU read at the end
    includes every packet)."""
    expected = 0
    got = [0]
    for start in range(0, len(packets_a), BURST):
        for packet in packets_a[start:start + BURST]:
            send_a(packet)
        for packet in packets_b[start:start + BURST]:
            send_b(packet)
        expected += len(packets_a[start:start + BURST]) + len(packets_b[start:start + BURST])
        deadline = time.monotonic() + 1.0
        while got[0] < expected and time.monotonic() < deadline:
            for sock in receivers:
                sock.settimeout(0.001)
                try:
                    while True:
                        sock.recv(65535)
                        got[0] += 1
                except OSError:
                    pass
    return got[0]


def plain_call(d, n, tag):
    a, b = Endpoint(), Endpoint()
    # caller a is in the U, callee b in the L; b sends to U's port, a to L's
    to_callee_side = int(d.command("U %s %s %d ftag" % (tag, HOST, a.port)).split()[0])
    to_caller_side = int(d.command("L %s %s %d ftag ttag" % (tag, HOST, b.port)).split()[0])
    pa = [rtp_packet(i, i * 160, 0xA, 0, PAYLOAD) for i in range(n)]
    pb = [rtp_packet(i, i * 160, 0xB, 0, PAYLOAD) for i in range(n)]
    return (lambda: pump(pa, lambda p: a.send(p, HOST, to_caller_side), pb,
                         lambda p: b.send(p, HOST, to_callee_side), (a.sock, b.sock)),
            lambda: (a.close(), b.close()))


def webrtc_call(d, n, tag):
    peer, phone = WebRtcPeer(), Endpoint()
    phone_port = int(d.command("U %s %s %d ftag && M5:1 A %s %s && M5:1 C %s && M4:1 A SHA-256 %s" % (
        tag, HOST, peer.address[1], peer.ufrag, peer.pwd, peer.candidate(), peer.fingerprint)).split()[0])
    reply = d.command("L %s %s %d ftag ttag && M5:1 S" % (tag, HOST, phone.port))
    port = int(reply.split()[0])
    ufrag, pwd = reply.split(" && ")[1].split()[:2]
    assert peer.check((HOST, port), ufrag, pwd) is not None
    peer.handshake((HOST, port), client=True)
    srtp = [peer.tx.protect(rtp_packet(i, i * 160, 0xC, 0, PAYLOAD)) for i in range(n)]
    plain = [rtp_packet(i, i * 160, 0xD, 0, PAYLOAD) for i in range(n)]
    relay = (HOST, port)
    return (lambda: pump(srtp, lambda p: peer.sock.sendto(p, relay), plain,
                         lambda p: phone.send(p, HOST, phone_port), (peer.sock, phone.sock)),
            lambda: (peer.close(), phone.close()))


def measure(kind, n):
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-l", HOST, "--workers", "1"]
        if kind == "webrtc":
            for name in ("dtls_gw", "ice_lite"):
                path = os.path.join(tmp, "rtpp_%s.so" % name)
                open(path, "w").close()
                args += ["--dso", path]
        d = Daemon(*args, "-d", "ERR")
        try:
            run, close = (webrtc_call if kind == "webrtc" else plain_call)(d, n, "bench-" + kind)
            before = cpu_seconds(d.proc.pid)
            run()
            used = cpu_seconds(d.proc.pid) - before
            stats = d.command("Qv bench-%s ftag ttag nrelayed ndropped" % kind)
            close()
        finally:
            d.stop()
    relayed = int(stats.split()[0].split("=")[1])
    return used / max(relayed, 1) * 1e6, stats


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results = {}
    for kind in ("plain", "webrtc"):
        runs = [measure(kind, n) for _ in range(rounds)]
        results[kind] = statistics.median(r[0] for r in runs)
        print("%-6s %6.1f us CPU per relayed packet (median of %d; last: %s)"
              % (kind, results[kind], rounds, runs[-1][1]))
    print("webrtc/plain: %.2fx, +%.1f us per packet"
          % (results["webrtc"] / results["plain"], results["webrtc"] - results["plain"]))


if __name__ == "__main__":
    main()
