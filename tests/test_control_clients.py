"""Control clients that misbehave at the socket level (transports.py): one
that never reads its replies, hundreds that connect and stay silent, a
``unix:`` client that connects and never sends. The daemon keeps answering
everyone else, and drops what holds resources for nothing."""

import os
import socket
import threading
import time

import pytest

from helpers import Endpoint, free_port, rtp_packet, wait_for
from rtpproxy_py.control import transports


def connect(d):
    if d.control_kind == "tcp":
        return socket.create_connection(("127.0.0.1", d.ctl_port), timeout=3)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(d.ctl_path)
    return s


def open_fds(d):
    return len(os.listdir("/proc/%d/fd" % d.proc.pid))


def ask(s, line=b"V"):
    s.sendall(line + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        data += s.recv(4096)
    return data


@pytest.mark.parametrize("control", ["tcp", "cunix"])
def test_client_that_never_reads_is_dropped_and_others_are_served(rtpproxy, control):
    d = rtpproxy(control=control)
    good = connect(d)
    assert ask(good) == b"20040107\n"
    fds = open_fds(d)
    bad = connect(d)
    bad.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    bad.setblocking(False)
    queued = 0
    try:                                     # as many commands as the buffers take
        while queued < 50 * 1024 * 1024:
            queued += bad.send(b"I\n" * 4096)
    except BlockingIOError:
        pass
    assert queued > 64 * 1024
    started = time.monotonic()
    slowest = 0.0
    while time.monotonic() - started < transports.WRITE_TIMEOUT + 3:
        t = time.monotonic()
        assert ask(good) == b"20040107\n"
        slowest = max(slowest, time.monotonic() - t)
        time.sleep(0.05)
    assert slowest < 0.5
    assert wait_for(lambda: "did not read its replies" in d.log(), timeout=5), d.log()[-2000:]
    assert wait_for(lambda: open_fds(d) == fds, timeout=5)
    bad.close()
    assert ask(good) == b"20040107\n"


def test_silent_connections_beyond_the_cap_push_out_the_longest_idle(rtpproxy, monkeypatch):
    d = rtpproxy(control="tcp")
    first = connect(d)
    assert ask(first) == b"20040107\n"
    idle = [connect(d) for _ in range(transports.MAX_CONNECTIONS - 2)]
    talker = connect(d)
    assert ask(talker) == b"20040107\n"      # used recently: not the longest idle
    assert ask(first) == b"20040107\n"       # neither is this one now
    # the cap is reached: each new connection closes the longest idle one
    late = [connect(d) for _ in range(3)]
    for s in late:
        assert ask(s) == b"20040107\n"
    for s in idle[:3]:
        s.settimeout(3)
        assert s.recv(10) == b""             # closed by the daemon
    idle[3].settimeout(0.2)
    with pytest.raises(socket.timeout):
        idle[3].recv(10)                     # still open
    assert ask(first) == b"20040107\n" and ask(talker) == b"20040107\n"
    assert "connections open; closing the one idle longest" in d.log()
    for s in idle + late + [first, talker]:
        s.close()


def test_unix_client_that_never_sends_is_closed(rtpproxy):
    d = rtpproxy(control="unix")
    silent = [connect(d) for _ in range(20)]
    assert d.command("V") == "20040107"        # served meanwhile
    for s in silent:
        s.settimeout(transports.ONE_SHOT_TIMEOUT + 3)
        assert s.recv(10) == b""
        s.close()
    assert d.command("V") == "20040107"


def test_command_flood_does_not_starve_media_or_other_clients(rtpproxy):
    """A UDP client sending commands as fast as it can: packets of a live call
    and another client's commands still go through at once (the serving
    greenlet lets the event loop run every few commands)."""
    tcp_port = free_port(socket.SOCK_STREAM)
    d = rtpproxy("-l", "127.0.0.1", "-s", "tcp:127.0.0.1:%d" % tcp_port)
    a, b = Endpoint(), Endpoint()
    d.command("U live 127.0.0.1 %d ft" % a.port)
    to_caller = int(d.command("L live 127.0.0.1 %d ft tt" % b.port).split()[0])
    stop = threading.Event()
    flooded = [0]

    def flood():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        while not stop.is_set():
            try:
                s.sendto(b"f%d I" % flooded[0], ("127.0.0.1", d.ctl_port))
                flooded[0] += 1
            except OSError:
                pass
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
        s.close()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    other = socket.create_connection(("127.0.0.1", tcp_port), timeout=3)
    try:
        time.sleep(0.3)
        worst_packet = worst_reply = 0.0
        for seq in range(150):
            sent = time.monotonic()
            a.send(rtp_packet(seq, ssrc=0xA), "127.0.0.1", to_caller)
            assert b.recv(1.0)[0] == rtp_packet(seq, ssrc=0xA), "packet %d" % seq
            worst_packet = max(worst_packet, time.monotonic() - sent)
            sent = time.monotonic()
            assert ask(other) == b"20040107\n"
            worst_reply = max(worst_reply, time.monotonic() - sent)
    finally:
        stop.set()
        thread.join()
        other.close()
    time.sleep(0.2)        # the flood's last datagrams fill the 16 KiB socket buffer a moment longer
    commands = int(d.command("G ncmds_rcvd"))
    assert flooded[0] > 5000 and commands > 2000, (flooded[0], commands)
    assert worst_packet < 0.1 and worst_reply < 0.1, (worst_packet, worst_reply)
