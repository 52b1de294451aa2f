"""Timeout notifications (control-protocol.md section 7).

Each destination (a unix path, or a TCP host:port) gets a channel: a bounded
queue drained by its own greenlet over one kept-open stream connection.
``Notifier.notify`` only queues, so a slow or dead listener never delays a
command reply or a packet. Whatever the listener writes back is read and
thrown away.

Memory is bounded: each queue holds at most QUEUE_LIMIT notifications and
QUEUE_BYTES bytes (the oldest are dropped, and counted in the log), a send
that a listener does not read within SEND_TIMEOUT counts as failed, and at
most MAX_CHANNELS destinations are kept (wildcard targets make one per
client address); the one unused longest is closed to make room.
"""

import collections
import logging
from typing import TYPE_CHECKING, Any, Deque, Optional, Tuple

import gevent
from gevent import socket
from gevent.event import Event

from .throttle import LogThrottle

if TYPE_CHECKING:
    from .config import NotifyTarget

log = logging.getLogger("rtpproxy")
throttle = LogThrottle(log)

QUEUE_LIMIT = 4096          # notifications waiting per destination
QUEUE_BYTES = 256 * 1024    # bytes waiting per destination
MAX_CHANNELS = 128          # destinations with a queue and a connection
CONNECT_TIMEOUT = 3.0
SEND_TIMEOUT = 5.0
SEND_TRIES = 3

# ("unix", path) or ("tcp", host, port, local address to send from or None)
ChannelKey = Tuple[Any, ...]


class Channel:
    def __init__(self, key: ChannelKey) -> None:
        self.key = key
        self.queue: Deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.ready = Event()
        self.sock: Any = None       # gevent socket while connected
        self.dropped = 0
        self.worker = gevent.spawn(self._run)

    def put(self, message: bytes) -> None:
        while self.queue and (len(self.queue) >= QUEUE_LIMIT
                              or self.queued_bytes + len(message) > QUEUE_BYTES):
            self.queued_bytes -= len(self.queue.popleft())
            self.dropped += 1
            throttle.log(logging.WARNING, "queue " + self._name(), "notification queue for %s "
                         "full: %d dropped so far", self._name(), self.dropped)
        self.queue.append(message)
        self.queued_bytes += len(message)
        self.ready.set()

    def close(self) -> None:
        self.worker.kill(block=False)
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _name(self) -> str:
        if self.key[0] == "unix":
            return "unix:" + self.key[1]
        return "tcp:%s:%d" % (self.key[1], self.key[2])

    def _connect(self) -> Any:
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

    def _discard_replies(self, sock: Any) -> None:
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        if self.sock is sock:
            self.sock = None
            sock.close()

    def _send(self, message: bytes) -> bool:
        for attempt in range(SEND_TRIES):
            try:
                if self.sock is None:
                    self.sock = self._connect()
                with gevent.Timeout(SEND_TIMEOUT, OSError("not read for %d s" % SEND_TIMEOUT)):
                    self.sock.sendall(message)
                return True
            except OSError as exc:
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
                if attempt == SEND_TRIES - 1:
                    throttle.log(logging.ERROR, "send " + self._name(), "cannot send timeout "
                                 "notification to %s: %s", self._name(), exc)
        return False

    def _run(self) -> None:
        while True:
            self.ready.wait()
            self.ready.clear()
            while self.queue:
                message = self.queue.popleft()
                self.queued_bytes -= len(message)
                self._send(message)


class Notifier:
    def __init__(self) -> None:
        # least recently used first
        self.channels: "collections.OrderedDict[ChannelKey, Channel]" = collections.OrderedDict()
        self.sent = 0

    def notify(self, target: "NotifyTarget", tag: bytes, source_ip: Optional[str],
               local_ip: Optional[str]) -> None:
        key: ChannelKey
        if target.kind == "unix":
            key = ("unix", target.path)
        elif target.wildcard:
            key = ("tcp", source_ip or "127.0.0.1", target.port, local_ip)
        else:
            key = ("tcp", target.host, target.port, None)
        channel = self.channels.get(key)
        if channel is None:
            if len(self.channels) >= MAX_CHANNELS:
                _, oldest = self.channels.popitem(last=False)
                throttle.log(logging.WARNING, "channels", "%d notification destinations open; "
                             "closing %s (%d notifications not sent)", MAX_CHANNELS,
                             oldest._name(), len(oldest.queue))
                oldest.close()
            channel = self.channels[key] = Channel(key)
        else:
            self.channels.move_to_end(key)
        channel.put(tag + b"\n")
        self.sent += 1

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
