"""Issue 18 point 3, scaled down: a UDP command flood in a network namespace
of its own (the daemon with --workers 2, its UDP control socket on a fixed
port there), beside a ``cunix:`` and a ``unix:`` client.

What only the overload work delivers: every stream command answered, promptly;
what the UDP socket answers, answered in time (p99 bounded); and what it does
not answer counted as shed (G ncmds_shed and the metrics), the datagrams the
kernel dropped from the full socket buffer included, so that every datagram
sent is either answered or counted.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from helpers import Daemon, wait_for
from netns import Netns, require_root
from test_metrics import scrape

HOST = "127.0.0.1"
UDP_PORT = 22222
METRICS_PORT = 9642
RATE = 20000          # commands/s, as in the issue (a third U, a third D, a third junk)
SECONDS = 3.0
# The target for answered commands is a p99 of 100 ms, met by the
# full-size run (bench/control_load.sh flood); here, with every test of the
# suite sharing the machine, twice that for UDP (the code before the
# overload work: 265-611 ms) and 95 % within 100 ms for the stream clients.
UDP_P99_BOUND = 0.2
STREAM_BOUND = 0.1

FLOODER = r"""
import json, socket, sys, time
port, seconds, rate = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.setblocking(False)
sent_at, latencies = {}, []
start = time.time(); n = 0

def drain():
    while True:
        try:
            reply = s.recv(65535)
        except OSError:
            return
        at = sent_at.pop(int(reply.split(b" ", 1)[0][1:]), None)
        if at is not None:
            latencies.append(time.perf_counter() - at)

while time.time() - start < seconds:
    due = int((time.time() - start) * rate)
    while n < due:
        kind = n % 3       # a session created, deleted, and junk
        cmd = (b"U flood%d 127.0.0.1 4000 ft" % n, b"D flood%d ft" % (n - 1),
               b"junk%d \x01\xff garbage" % n)[kind]
        sent_at[n] = time.perf_counter()
        try:
            s.sendto(b"f%d %s" % (n, cmd), ("127.0.0.1", port))
        except OSError:
            pass
        n += 1
    drain()
    time.sleep(0.001)
end = time.time() + 1.5
while time.time() < end:
    drain()
    time.sleep(0.01)
latencies.sort()
print(json.dumps({"sent": n, "answered": len(latencies),
                  "p99": latencies[int(len(latencies) * 0.99)] if latencies else None}))
"""


def stream_client_latencies(path, seconds, one_shot):
    """Commands sent one after another for ``seconds``: their latencies, or
    None for one that got no reply within 5 s."""
    out = []
    end = time.time() + seconds
    conn = None
    k = 0
    while time.time() < end:
        k += 1
        if conn is None or one_shot:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(5.0)
            conn.connect(path)
        start = time.perf_counter()
        try:
            conn.sendall(b"Q stream%d ft\n" % k if not one_shot else b"Q stream%d ft" % k)
            reply = conn.recv(100)
            out.append(time.perf_counter() - start if reply == b"E50\n" else None)
        except OSError:
            out.append(None)
            conn = None
        if one_shot:
            conn.close()
            time.sleep(0.02)
    if conn is not None:
        conn.close()
    return out


def percentile(values, fraction):
    return sorted(values)[int(len(values) * fraction)]


@pytest.fixture
def ns():
    require_root()
    with Netns("flood") as net:
        yield net


def start_daemon(ns, *args):
    where = tempfile.mkdtemp(prefix="rtpp-flood-")
    paths = {"cunix": os.path.join(where, "c.sock"), "unix": os.path.join(where, "u.sock")}
    d = Daemon(*args, "-d", "WARN", "-s", "unix:" + paths["unix"],
               "-s", "udp:%s:%d" % (HOST, UDP_PORT), "--metrics", "%s:%d" % (HOST, METRICS_PORT),
               control="cunix", ports=(20000, 59999),
               command=ns.exec_argv([sys.executable, "-m", "rtpproxy_py"]))
    return d, paths


def shed_figures(d, ns):
    """G ncmds_shed, and the metric: the same count."""
    shed = int(d.command("G ncmds_shed"))
    with ns.inside():
        metric = scrape(METRICS_PORT)["rtpproxy_commands_shed_total"]
    assert metric == shed, (metric, shed)
    return shed


def test_udp_flood_answers_in_time_serves_stream_clients_and_counts_the_rest(ns):
    d, paths = start_daemon(ns, "--workers", "2")
    try:
        shed_before = shed_figures(d, ns)
        flood = subprocess.Popen(ns.exec_argv([sys.executable, "-c", FLOODER, str(UDP_PORT),
                                               str(SECONDS), str(RATE)]), stdout=subprocess.PIPE)
        results = {}
        one_shot = threading.Thread(target=lambda: results.update(
            unix=stream_client_latencies(paths["unix"], SECONDS, True)))
        one_shot.start()
        streamed = stream_client_latencies(d.ctl_path, SECONDS, False)
        one_shot.join()
        udp = json.loads(flood.communicate(timeout=30)[0])
        assert udp["sent"] > RATE * SECONDS * 0.8 and udp["answered"] > 1000, udp
        # what is answered is answered in time (the client retries after 1 s)
        assert udp["p99"] < UDP_P99_BOUND, udp
        # Every stream command answered, promptly: 95 % within the bound (a
        # few dozen one-shot commands make a p99 their slowest one, and on a
        # busy shared machine one scheduling stall can hold any process).
        for name, latencies in (("cunix", streamed), ("unix", results["unix"])):
            assert latencies and None not in latencies, (name, latencies.count(None), len(latencies))
            assert percentile(latencies, 0.95) < STREAM_BOUND, (name, sorted(latencies)[-5:], len(latencies))
        # Every datagram is answered or counted as shed: by the front end, by a
        # worker, or dropped by the kernel from the full socket buffer.
        shed = shed_figures(d, ns) - shed_before
        assert shed > 0 and udp["answered"] + shed == udp["sent"], (udp, shed)
        assert "control commands shed unanswered" in d.log()
        assert d.alive()
    finally:
        d.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_datagrams_the_kernel_dropped_are_counted_as_shed(ns, workers):
    """The daemon stopped (SIGSTOP) while a client sends far more than its
    16 KiB socket buffer holds: after SIGCONT, what the kernel dropped is in
    G ncmds_shed, and everything the buffer held is answered."""
    d, paths = start_daemon(ns, "--workers", workers)
    try:
        with ns.inside():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sent = 2000
        shed_before = shed_figures(d, ns)
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            for k in range(sent):
                sock.sendto(b"k%d V" % k, (HOST, UDP_PORT))
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        sock.settimeout(1.0)
        answered = set()
        try:
            while True:
                answered.add(sock.recv(100).split()[0])
        except socket.timeout:
            pass
        sock.close()
        assert 0 < len(answered) < sent, len(answered)
        shed = wait_for(lambda: shed_figures(d, ns) - shed_before == sent - len(answered))
        assert shed, (shed_figures(d, ns) - shed_before, sent, len(answered))
        assert d.command("V") == "20040107"
    finally:
        d.stop()
