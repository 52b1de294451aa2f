"""Timeout notifications to listeners that are unreachable, slow, resetting or
gone never delay relaying or command replies, and what waits for them is
bounded (notify.py)."""

import socket
import struct
import threading
import time

import gevent
import pytest

from helpers import Endpoint, free_port, port_range, rtp_packet
from rtpproxy_py import notify

TAG_BYTES = 7000
SESSIONS_PER_TARGET = 120
SLOW_SESSIONS = 600
MAX_DELAY = 0.25


class Listeners:
    """The bad notification listeners, on loopback ports of their own."""

    def __init__(self, tmp_path):
        self.sockets = []
        # black hole: a full accept queue drops SYNs, so connect() hangs
        self.black = self._listen(backlog=0)
        self.fillers = [socket.create_connection(("127.0.0.1", self.port(self.black)), timeout=2)]
        # the accept queue holds that one; the next SYN is dropped
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        with pytest.raises(OSError):
            probe.connect(("127.0.0.1", self.port(self.black)))
        self.fillers.append(probe)
        # slow: accepts, never reads, tiny receive buffer
        self.slow = self._listen(rcvbuf=4096)
        self.slow_conns = []
        # reset: accepts and answers with a RST
        self.reset = self._listen()
        self.closed_port = free_port(socket.SOCK_STREAM)           # nobody listens
        self.gone_path = str(tmp_path / "gone.sock")                # no such socket
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _listen(self, backlog=16, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind(("127.0.0.1", 0))
        s.listen(backlog)
        s.settimeout(0.05)
        self.sockets.append(s)
        return s

    @staticmethod
    def port(s):
        return s.getsockname()[1]

    def _serve(self):
        while not self.stop.is_set():
            for listener in (self.slow, self.reset):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                if listener is self.slow:
                    self.slow_conns.append(conn)
                else:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()

    def targets(self):
        return {
            "black": "tcp:127.0.0.1:%d" % self.port(self.black),
            "slow": "tcp:127.0.0.1:%d" % self.port(self.slow),
            "reset": "tcp:127.0.0.1:%d" % self.port(self.reset),
            "closed": "tcp:127.0.0.1:%d" % self.closed_port,
            "gone": "unix:" + self.gone_path,
        }

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.sockets + self.fillers + self.slow_conns:
            s.close()


@pytest.fixture
def listeners(tmp_path):
    bad = Listeners(tmp_path)
    yield bad
    bad.close()


def test_bad_listeners_never_delay_media_or_replies(rtpproxy, listeners):
    targets = listeners.targets()
    args = ["-l", "127.0.0.1", "-T", "1"]
    for target in targets.values():
        args += ["-n", target]
    d = rtpproxy(*args, ports=port_range(2400))
    # sessions that will time out within two seconds, each notifying a bad listener
    n = 0
    for name, target in targets.items():
        for _ in range(SLOW_SESSIONS if name == "slow" else SESSIONS_PER_TARGET):
            n += 1
            tag = ("%s-%d-" % (name, n)).ljust(TAG_BYTES, "x")
            assert d.command("U n%d 127.0.0.1 4000 ft %s %s" % (n, target, tag)).split()[0].isdigit()
    # a live call, kept alive by its media
    a, b = Endpoint(), Endpoint()
    d.command("U live 127.0.0.1 %d ft" % a.port)
    to_caller = int(d.command("L live 127.0.0.1 %d ft tt" % b.port).split()[0])
    # while they expire and their notifications pile up: packets and commands
    media_delays, reply_delays = [], []
    deadline = time.monotonic() + 6
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        sent = time.monotonic()
        a.send(rtp_packet(seq, ssrc=0xA, payload=struct.pack("!d", sent)), "127.0.0.1", to_caller)
        data, _ = b.recv(2.0)
        assert data is not None, "packet %d lost" % seq
        media_delays.append(time.monotonic() - sent)
        sent = time.monotonic()
        assert d.command("V") == "20040107"
        reply_delays.append(time.monotonic() - sent)
        time.sleep(0.01)
    created, timeouts = map(int, d.command("G nsess_created nsess_timeout").split())
    assert created == n + 1 and timeouts == n, "the sessions did not all time out meanwhile"
    assert max(media_delays) < MAX_DELAY, sorted(media_delays)[-5:]
    assert max(reply_delays) < MAX_DELAY, sorted(reply_delays)[-5:]
    log = d.log()
    # what piled up for the slow listener was cut, not kept
    assert "notification queue for %s full" % targets["slow"] in log
    # the refused ones are said once per ten seconds each, not once per notification
    for name in ("closed", "gone"):
        assert log.count("cannot send timeout notification to %s" % targets[name]) == 1
    assert d.alive()


# --- the bounds themselves, on plain objects (no listener, the loop never runs) --


def test_channel_queue_is_bounded_in_bytes_and_count():
    channel = notify.Channel(("tcp", "127.0.0.1", 9, None))
    try:
        for n in range(1000):
            channel.put(b"x" * 7000 + b"\n")
        assert channel.queued_bytes <= notify.QUEUE_BYTES
        assert len(channel.queue) == notify.QUEUE_BYTES // 7001
        assert channel.dropped == 1000 - len(channel.queue)
        for n in range(notify.QUEUE_LIMIT + 10):
            channel.put(b"t\n")
        assert len(channel.queue) == notify.QUEUE_LIMIT
    finally:
        channel.close()


def test_notifier_keeps_at_most_max_channels():
    from rtpproxy_py.config import NotifyTarget
    notifier = notify.Notifier()
    wildcard = NotifyTarget("tcp:%%CC_SELF%%:9", "tcp", port=9, wildcard=True)
    try:
        for n in range(notify.MAX_CHANNELS + 50):
            notifier.notify(wildcard, b"tag", "10.%d.%d.1" % (n // 250, n % 250), None)
        assert len(notifier.channels) == notify.MAX_CHANNELS
        # the ones used longest ago were closed; the newest are kept
        assert ("tcp", "10.0.1.1", 9, None) not in notifier.channels
        assert ("tcp", "10.0.177.1", 9, None) in notifier.channels
    finally:
        notifier.close()
        gevent.sleep(0)
