"""--workers: the front end's UDP path (transports.UdpControl._serve_concurrent,
FrontDispatcher.submit, WorkerLink.submit/flush, the worker's COMMANDS):
edge cases pinned with a real daemon on real sockets."""

import os
import re
import signal
import socket
import time

from helpers import wait_for
from rtpproxy_py.workers import worker_for

HOST = "127.0.0.1"


def worker_pids(d):
    """{worker number: pid} from the log lines the workers write at start."""
    return {int(n): int(pid) for n, pid in re.findall(r"worker (\d+): started, pid (\d+)", d.log())}


def same_worker(call_id, count, prefix):
    """``count`` Call-IDs that hash to the worker ``call_id`` hashes to (of two)."""
    out, k = [], 0
    while len(out) < count:
        k += 1
        if worker_for("%s%d" % (prefix, k), 2) == worker_for(call_id, 2):
            out.append("%s%d" % (prefix, k))
    return out


def read_at_once(d, sock, datagrams):
    """Send ``datagrams`` while the front end is stopped, so that it reads
    them all in one go (one batch of _serve_concurrent)."""
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        for data in datagrams:
            sock.sendto(data, (HOST, d.ctl_port))
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)


def replies(sock, count, timeout=5.0):
    """{cookie: reply text} of ``count`` datagrams."""
    sock.settimeout(timeout)
    out = {}
    for _ in range(count):
        cookie, _, text = sock.recv(1000).partition(b" ")
        out[cookie.decode()] = text.decode().rstrip("\n")
    return out


def test_a_forking_u_and_the_next_command_of_its_call_run_in_order(rtpproxy):
    """``U c2 ... && C c1`` takes the slow way (its worker is the forked
    call's), the next command of c2, read with it, the quick one: the D must
    still reach the worker after the U (one call's commands in the order
    they came), so it finds the session and nothing is left behind."""
    d = rtpproxy("-l", HOST, "--workers", "2")
    assert d.command("U cid1 %s 4000 f1" % HOST).split()[0].isdigit()
    assert d.command("L cid1 %s 4002 f1 t1" % HOST).split()[0].isdigit()
    forks = same_worker("cid1", 5, "fork")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for k, call_id in enumerate(forks):
            read_at_once(d, sock, [
                b"u%d U %s %s 4004 f2 t2 && C cid1 f1 t1" % (k, call_id.encode(), HOST.encode()),
                b"d%d D %s f2" % (k, call_id.encode())])
            got = replies(sock, 2)
            assert got["u%d" % k].split()[0].isdigit(), got
            assert got["d%d" % k] == "0", got
        assert d.command("I").splitlines()[1] == "active sessions: 1"
    finally:
        sock.close()
