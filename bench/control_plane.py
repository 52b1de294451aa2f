#!/usr/bin/env python3
"""Control-plane load: how many calls (U, then L, then D) a relay sets up and
tears down per second while it holds SESSIONS other sessions, and how long
each command waits for its reply.

    control_plane.py HOST:PORT [-s SESSIONS] [-c CALLS] [-w WINDOW] [-p PID,..] [-T TAG]

WINDOW calls are in flight at once (each call's commands one after the other,
as a SIP proxy's worker sends them); every command is a UDP datagram with its
own cookie, resent after 1 s. Prints one JSON line: calls/s, commands/s,
latency p50/p99/max in ms, the relay's CPU per call (from /proc for -p PIDs)
and this client's own CPU per call.
"""

import argparse
import json
import os
import selectors
import socket
import time

RESEND = 1.0


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


class Client:
    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.cookie = 0
        self.pending = {}        # cookie -> (payload, sent at, first sent at, callback)
        self.resent = 0

    def send(self, text, callback):
        self.cookie += 1
        cookie = b"%x" % self.cookie
        payload = cookie + b" " + text.encode()
        now = time.monotonic()
        self.pending[cookie] = (payload, now, now, callback)
        self.sock.sendto(payload, self.address)

    def poll(self, timeout=0.05):
        for _ in self.selector.select(timeout):
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    break
                cookie, _, reply = data.partition(b" ")
                entry = self.pending.pop(cookie, None)
                if entry is not None:
                    entry[3](reply.decode().strip(), time.monotonic() - entry[2])
        now = time.monotonic()
        for cookie, (payload, sent, first, callback) in list(self.pending.items()):
            if now - sent > RESEND:
                self.pending[cookie] = (payload, now, first, callback)
                self.sock.sendto(payload, self.address)
                self.resent += 1

    def run_until(self, done):
        while not done():
            self.poll()


def setup_background(client, count, window):
    """``count`` sessions set up (U then L) and kept."""
    state = {"next": 0, "done": 0, "failed": 0}

    def start():
        n = state["next"]
        state["next"] += 1
        client.send("U bg-%d 127.0.0.2 %d ft%d" % (n, 10000 + n % 50000, n),
                    lambda r, t, n=n: lookup(n, r))

    def lookup(n, reply):
        if not reply[:1].isdigit():
            state["failed"] += 1
        client.send("L bg-%d 127.0.0.3 %d ft%d tt%d" % (n, 10000 + n % 50000, n, n),
                    lambda r, t: finish(r))

    def finish(reply):
        state["done"] += 1
        if not reply[:1].isdigit():
            state["failed"] += 1
        if state["next"] < count:
            start()

    for _ in range(min(window, count)):
        start()
    client.run_until(lambda: state["done"] >= count)
    return state["failed"]


def run_calls(client, calls, window):
    """``calls`` calls of U, L, D; the latency of every command."""
    latencies = []
    state = {"next": 0, "done": 0, "failed": 0}

    def check(reply, ok):
        if not ok(reply):
            state["failed"] += 1

    def start():
        n = state["next"]
        state["next"] += 1
        client.send("U cp-%d 127.0.0.2 %d f%d" % (n, 20000 + n % 40000, n), lambda r, t: step_l(n, r, t))

    def step_l(n, reply, took):
        latencies.append(took)
        check(reply, lambda r: r[:1].isdigit())
        client.send("L cp-%d 127.0.0.3 %d f%d t%d" % (n, 20000 + n % 40000, n, n),
                    lambda r, t: step_d(n, r, t))

    def step_d(n, reply, took):
        latencies.append(took)
        check(reply, lambda r: r[:1].isdigit())
        client.send("D cp-%d f%d t%d" % (n, n, n), lambda r, t: finish(r, t))

    def finish(reply, took):
        latencies.append(took)
        check(reply, lambda r: r == "0")
        state["done"] += 1
        if state["next"] < calls:
            start()

    for _ in range(min(window, calls)):
        start()
    client.run_until(lambda: state["done"] >= calls)
    return latencies, state["failed"]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("control", help="HOST:PORT of the relay's UDP control socket")
    parser.add_argument("-s", "--sessions", type=int, default=1000)
    parser.add_argument("-c", "--calls", type=int, default=5000)
    parser.add_argument("-w", "--window", type=int, default=32)
    parser.add_argument("-p", "--pids", default="")
    parser.add_argument("-T", "--tag", default="")
    args = parser.parse_args()
    host, _, port = args.control.rpartition(":")
    client = Client((host, int(port)))
    pids = [int(p) for p in args.pids.split(",") if p]
    bg_failed = setup_background(client, args.sessions, args.window)
    time.sleep(0.5)
    relay_before = cpu_ticks(pids) if pids else 0
    own_before = os.times()
    started = time.monotonic()
    latencies, failed = run_calls(client, args.calls, args.window)
    elapsed = time.monotonic() - started
    own = os.times()
    relay_ms = (cpu_ticks(pids) - relay_before) * 1000.0 / os.sysconf("SC_CLK_TCK") if pids else None
    own_ms = (own.user + own.system - own_before.user - own_before.system) * 1000.0
    print(json.dumps({
        "tag": args.tag, "sessions": args.sessions, "calls": args.calls, "window": args.window,
        "calls_per_s": round(args.calls / elapsed, 1),
        "cmds_per_s": round(3 * args.calls / elapsed, 1),
        "lat_ms": {"p50": round(percentile(latencies, 50) * 1000, 3),
                   "p99": round(percentile(latencies, 99) * 1000, 3),
                   "max": round(max(latencies) * 1000, 3)},
        "relay_cpu_ms_per_call": round(relay_ms / args.calls, 4) if relay_ms is not None else None,
        "client_cpu_ms_per_call": round(own_ms / args.calls, 4),
        "failed": failed + bg_failed, "resent": client.resent,
    }))
    # leave the relay as it was
    for n in range(args.sessions):
        client.send("D bg-%d ft%d tt%d" % (n, n, n), lambda r, t: None)
        if n % args.window == 0:
            client.poll(0.001)
    deadline = time.monotonic() + 5
    while client.pending and time.monotonic() < deadline:
        client.poll()


if __name__ == "__main__":
    main()
