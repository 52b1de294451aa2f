"""A burst of UDP commands to one process loses none to the kernel.

The control socket's receive buffer is upstream's 16 KiB. A client with many
commands out (Kamailio's workers, bench/control_cycle.py's ctlbench with 32)
sends a new one for each reply; one process that read one datagram at a time
kept the kernel's buffer nearly full (Linux releases the space of what was read
only once the reader has emptied the queue or read a quarter of the buffer),
so a few commands were dropped and answered only after the client's 1 s
resend. It now reads what the socket holds before running the batch.
"""

import select
import socket
import time

import pytest

from helpers import Daemon

HOST = "127.0.0.1"
REPLY_WAIT = 2.0    # seconds without a reply: a command was lost (a client resends after 1)


def short_datagrams_the_buffer_holds():
    """How many short commands a 16 KiB UDP receive buffer holds on loopback
    (39 on Linux 6.x; it depends on the kernel's per-datagram overhead)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        receiver.bind((HOST, 0))
        for k in range(200):
            sender.sendto(b"c%d_%d V" % (k, k), receiver.getsockname())
        receiver.setblocking(False)
        held = 0
        try:
            while True:
                receiver.recv(100)
                held += 1
        except BlockingIOError:
            pass
        return held
    finally:
        receiver.close()
        sender.close()


def windowed_commands(port, window, total):
    """``window`` commands sent at once, then one more for each reply until
    ``total`` were sent, never resent: the replies' count, and the cookies
    of the commands still unanswered after REPLY_WAIT without a reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect((HOST, port))
    out, sent, answered = set(), 0, 0
    try:
        def send():
            nonlocal sent
            cookie = b"w%d" % sent
            sock.send(cookie + b" V")
            out.add(cookie)
            sent += 1

        while sent < window:
            send()
        while out and select.select([sock], [], [], REPLY_WAIT)[0]:
            cookie, _, text = sock.recv(200).partition(b" ")
            assert text == b"20040107\n", (cookie, text)
            out.discard(cookie)
            answered += 1
            if sent < total:
                send()
    finally:
        sock.close()
    return answered, sorted(out)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_burst_of_commands_in_flight_loses_none(workers):
    """As many commands at once as the socket buffer holds but three, then a
    new one for each reply: every one answered without a resend, nothing shed."""
    window = short_datagrams_the_buffer_holds() - 3
    assert window >= 16, window
    d = Daemon("--workers", workers, "-d", "WARN")
    try:
        answered, lost = windowed_commands(d.ctl_port, window, 600)
        assert not lost and answered == 600, (window, answered, lost[:10])
        assert d.command("G ncmds_shed") == "0"
        assert "receive buffer was full" not in d.log()
    finally:
        d.stop()
