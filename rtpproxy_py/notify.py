"""Timeout notifications (control-protocol.md section 7).

Each destination (a unix path, or a TCP host:port) gets a channel: a bounded
queue drained by its own greenlet over one kept-open stream connection.
``Notifier.notify`` only queues, so a slow or dead listener never delays a
command reply or a packet. Whatever the listener writes back is read and
thrown away.
"""

import collections
import logging

import gevent
from gevent import socket
from gevent.event import Event

log = logging.getLogger("rtpproxy")

QUEUE_LIMIT = 4096          # notifications waiting per destination
CONNECT_TIMEOUT = 3.0
SEND_TRIES = 3


class Channel:
    def __init__(self, key):
        self.key = key
        self.queue = collections.deque()
        self.ready = Event()
        self.sock = None
        self.dropped = 0
        self.worker = gevent.spawn(self._run)

    def put(self, message):
        if len(self.queue) >= QUEUE_LIMIT:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("notification queue for %s full: %d dropped", self._name(), self.dropped)
        self.queue.append(message)
        self.ready.set()

    def _name(self):
        if self.key[0] == "unix":
            return "unix:" + self.key[1]
        return "tcp:%s:%d" % (self.key[1], self.key[2])

    def _connect(self):
        if self.key[0] == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address = self.key[1]
        else:
            _, host, port, local = self.key
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            if local and local not in ("0.0.0.0", "::"):
                try:
                    sock.bind((local, 0))
                except OSError:
                    pass
            address = (host, port)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        gevent.spawn(self._discard_replies, sock)
        return sock

    def _discard_replies(self, sock):
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        if self.sock is sock:
            self.sock = None
            sock.close()

    def _send(self, message):
        for attempt in range(SEND_TRIES):
            try:
                if self.sock is None:
                    self.sock = self._connect()
                self.sock.sendall(message)
                return True
            except OSError as exc:
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
                if attempt == SEND_TRIES - 1:
                    log.error("cannot send timeout notification to %s: %s", self._name(), exc)
        return False

    def _run(self):
        while True:
            self.ready.wait()
            self.ready.clear()
            while self.queue:
                self._send(self.queue.popleft())


class Notifier:
    def __init__(self):
        self.channels = {}
        self.sent = 0

    def notify(self, target, tag, source_ip, local_ip):
        if target.kind == "unix":
            key = ("unix", target.path)
        elif target.wildcard:
            key = ("tcp", source_ip or "127.0.0.1", target.port, local_ip)
        else:
            key = ("tcp", target.host, target.port, None)
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = Channel(key)
        channel.put(tag + b"\n")
        self.sent += 1

    def close(self):
        for channel in self.channels.values():
            channel.worker.kill(block=False)
            if channel.sock is not None:
                channel.sock.close()
