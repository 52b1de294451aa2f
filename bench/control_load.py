#!/usr/bin/env python3
"""Issue 18's overload runs at full size (BENCHMARKS.md "Control under
overload"); tests/test_control_load.py runs them scaled down. Run through
bench/control_load.sh (a private network namespace, the relay pinned).

  control_load.py gcost  UDP_PORT COUNTS          median G round trip at each session count
  control_load.py flood  UDP_PORT CUNIX UNIX RATE SECONDS
                                                 UDP flood (valid and junk) beside a cunix:
                                                 and a unix: client; capacity measured first
  control_load.py gburst UDP_PORT SESSIONS RATE SECONDS
                                                 idle sessions created, then a G burst
                                                 (media: rtpbench, started by the .sh)

Prints one JSON line per measure.
"""

import json
import multiprocessing
import os
import select
import socket
import sys
import time

HOST = "127.0.0.1"


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 2)


def udp_batch(port, commands, window=32):
    """Commands with ``window`` outstanding (retransmitted after 1 s); replies."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    replies, sent_at, nxt = [None] * len(commands), {}, 0
    batch = os.urandom(4).hex().encode()      # cookies never repeat (the reply cache)
    while nxt < len(commands) or sent_at:
        while nxt < len(commands) and len(sent_at) < window:
            sock.sendto(b"%s_%d %s" % (batch, nxt, commands[nxt].encode()), (HOST, port))
            sent_at[nxt] = time.time()
            nxt += 1
        if select.select([sock], [], [], 0.2)[0]:
            cookie, _, text = sock.recv(65535).partition(b" ")
            k = int(cookie.split(b"_")[1])
            if sent_at.pop(k, None) is not None:
                replies[k] = text.decode().rstrip("\n")
        now = time.time()
        for k, at in list(sent_at.items()):
            if now - at > 1.0:
                sock.sendto(b"%s_%d %s" % (batch, k, commands[k].encode()), (HOST, port))
                sent_at[k] = now
    sock.close()
    return replies


def command(port, text):
    return udp_batch(port, [text])[0]


def shed_count(port):
    """G ncmds_shed, or None from a build without it (E68)."""
    text = command(port, "G ncmds_shed")
    return int(text) if text.isdigit() else None


def minus(a, b):
    return None if a is None or b is None else a - b


def create_idle(port, start, count, prefix="idle"):
    replies = udp_batch(port, ["U %s%d %s %d ft" % (prefix, k, HOST, 4000 + k % 1000)
                               for k in range(start, start + count)])
    bad = [r for r in replies if not r or not r[0].isdigit()]
    if bad:
        raise SystemExit("session creation failed: %s" % bad[:3])


def gcost(port, counts):
    made = 0
    for count in counts:
        create_idle(port, made, count - made)
        made = count
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        times = []
        for k in range(200):
            start = time.perf_counter()
            sock.sendto(b"c%d_%d G npkts_rcvd npkts_relayed nsess_created" % (count, k), (HOST, port))
            sock.recv(200)
            times.append(time.perf_counter() - start)
        sock.close()
        print(json.dumps({"measure": "gcost", "sessions": count,
                          "g_ms_p50": pct(times, 0.5), "g_ms_p99": pct(times, 0.99)}), flush=True)


FLOOD_MIX = (b"U flood%d 127.0.0.1 4000 ft", b"D flood%d ft", b"junk%d \x01\xff garbage")


def flood_commands(n):
    kind = n % 3
    return FLOOD_MIX[kind] % (n - 1 if kind == 1 else n)


class UdpLoad:
    """Sends at ``rate`` per second for ``seconds`` (0 rate: a closed loop of
    32 outstanding, i.e. capacity) and records each reply's latency."""

    def __init__(self, port, rate, seconds):
        self.port, self.rate, self.seconds = port, rate, seconds
        self.sent = 0
        self.latencies = []

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        stamps = {}
        start = time.time()
        outstanding = 0
        while time.time() - start < self.seconds + 1.5:
            now = time.time()
            sending = now - start < self.seconds
            if sending and self.rate:
                due = int((now - start) * self.rate)
            elif sending:
                due = self.sent + max(0, 32 - outstanding)
            else:
                due = self.sent
            while self.sent < due:
                n = self.sent
                stamps[n] = time.perf_counter()
                try:
                    sock.sendto(b"f%d %s" % (n, flood_commands(n)), (HOST, self.port))
                except OSError:
                    pass
                self.sent += 1
                outstanding += 1
            while True:
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    break
                at = stamps.pop(int(data.split(b" ", 1)[0][1:]), None)
                if at is not None:
                    self.latencies.append(time.perf_counter() - at)
                    outstanding -= 1
            if not self.rate:
                # closed loop: a lost datagram frees its slot after 0.5 s
                old = [n for n, at in stamps.items() if time.perf_counter() - at > 0.5]
                for n in old:
                    del stamps[n]
                    outstanding -= 1
            select.select([sock], [], [], 0.0005)
        sock.close()

    def summary(self):
        return {"sent": self.sent, "answered": len(self.latencies),
                "answered_pct": round(100.0 * len(self.latencies) / max(1, self.sent), 1),
                "per_s": round(len(self.latencies) / self.seconds),
                "p50_ms": pct(self.latencies, 0.5), "p99_ms": pct(self.latencies, 0.99)}


def stream_client(path, seconds, one_shot, out):
    latencies, failed, k = [], 0, 0
    end = time.time() + seconds
    conn = None
    while time.time() < end:
        k += 1
        try:
            if conn is None or one_shot:
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.settimeout(5.0)
                conn.connect(path)
            start = time.perf_counter()
            conn.sendall(b"Q stream%d ft" % k + (b"" if one_shot else b"\n"))
            if conn.recv(100):
                latencies.append(time.perf_counter() - start)
            else:
                failed += 1
        except OSError:
            failed += 1
            conn = None
        if one_shot:
            if conn is not None:
                conn.close()
            time.sleep(0.14)
    out.update(sent=k, answered=len(latencies), failed=failed,
               p50_ms=pct(latencies, 0.5), p99_ms=pct(latencies, 0.99),
               max_ms=round(max(latencies) * 1000, 2) if latencies else None,
               over_100ms=sum(1 for t in latencies if t > 0.1),
               max_at_s=round(sum(latencies[:latencies.index(max(latencies))]), 2) if latencies else None)


def stream_client_result(path, seconds, one_shot):
    out = {}
    stream_client(path, seconds, one_shot, out)
    return out


def flood(port, cunix, unix, rate, seconds):
    capacity = UdpLoad(port, 0, 5.0)
    capacity.run()
    print(json.dumps(dict(measure="capacity", **capacity.summary())), flush=True)
    shed_before = shed_count(port)
    load = UdpLoad(port, rate, seconds)
    # The stream clients are processes of their own: as threads beside the
    # busy UDP sender they waited for the GIL (5 ms a switch), and their
    # latencies were the client's more than the daemon's.
    clients = {name: multiprocessing.Pool(1) for name in ("cunix", "unix")}
    jobs = {"cunix": clients["cunix"].apply_async(stream_client_result, (cunix, seconds, False)),
            "unix": clients["unix"].apply_async(stream_client_result, (unix, seconds, True))}
    load.run()
    results = {name: job.get() for name, job in jobs.items()}
    for pool in clients.values():
        pool.close()
    time.sleep(1.0)
    shed = minus(shed_count(port), shed_before)
    print(json.dumps({"measure": "flood", "rate": rate, "seconds": seconds,
                      "udp": load.summary(), "cunix": results["cunix"], "unix": results["unix"],
                      "shed": shed}), flush=True)


def gburst(port, sessions, rate, seconds):
    create_idle(port, 0, sessions)
    print(json.dumps({"measure": "gburst_ready", "sessions": sessions}), flush=True)
    time.sleep(float(os.environ.get("BURST_DELAY", "5")))
    shed_before = shed_count(port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sent, stamps, latencies = 0, {}, []
    start = time.time()
    while time.time() - start < seconds + 2.0:
        while time.time() - start < seconds and sent < (time.time() - start) * rate:
            stamps[sent] = time.perf_counter()
            sock.sendto(b"g%d G npkts_rcvd nsess_created" % sent, (HOST, port))
            sent += 1
        if select.select([sock], [], [], 0.002)[0]:
            at = stamps.pop(int(sock.recv(200).split(b" ", 1)[0][1:]), None)
            if at is not None:
                latencies.append(time.perf_counter() - at)
    sock.close()
    shed = minus(shed_count(port), shed_before)
    print(json.dumps({"measure": "gburst", "sessions": sessions, "sent": sent,
                      "answered": len(latencies), "shed": shed,
                      "unaccounted": sent - len(latencies) - (shed or 0),
                      "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}), flush=True)


def main(argv):
    mode, port = argv[0], int(argv[1])
    if mode == "gcost":
        gcost(port, [int(n) for n in argv[2].split(",")])
    elif mode == "flood":
        flood(port, argv[2], argv[3], int(argv[4]), float(argv[5]))
    elif mode == "gburst":
        gburst(port, int(argv[2]), int(argv[3]), float(argv[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
