"""control.transports.loop_turn: the turn a --workers worker (and the front
end while few commands are in flight) gives the event loop between bursts of
commands runs the I/O that is ready and does not wait. A microsecond timer
made libev wait its epoll minimum (up to a millisecond) each time instead."""

import resource
import socket

import gevent

from rtpproxy_py.control.transports import loop_turn


def test_a_turn_runs_the_ready_io_before_it_returns():
    hub = gevent.get_hub()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = []
    watcher = hub.loop.io(sock.fileno(), 1)
    watcher.start(lambda: got.append(sock.recv(100)))
    try:
        loop_turn()                     # the watcher is in the poll set from here on
        sender.sendto(b"x", sock.getsockname())     # queued on return (loopback)
        loop_turn()
        assert got == [b"x"]
    finally:
        watcher.stop()
        watcher.close()
        sock.close()
        sender.close()


def test_turns_do_not_wait():
    """Waiting in the poll is a voluntary context switch (of this thread:
    other threads of the test process do not count); a turn with
    nothing to do must not make one (a microsecond timer made 150-190 in
    1000 turns here)."""
    loop_turn()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    for _ in range(1000):
        loop_turn()
    switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
    assert switches < 20, switches
