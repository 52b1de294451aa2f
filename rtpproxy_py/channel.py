"""The message link between the --workers front end and one worker process.

A SOCK_SEQPACKET unix socket pair: one datagram per message, delivered in
order and reliably. A message is a marshal'd tuple whose first item names its
kind (the constants below). ``send`` never blocks or yields: a message that
does not fit in the socket buffer waits in an outbox that a writer greenlet
drains, so messages always leave in the order they were sent.
"""

import collections
import marshal
import socket
import zlib

import gevent
from gevent.socket import wait_write

RECV_BUFFER = 256 * 1024


def worker_for(call_id, count):
    """The worker (0-based) that holds ``call_id``: stable across restarts
    (the front end routes by it; a worker checks whether a call is its own)."""
    return zlib.crc32(call_id.encode("utf-8", "surrogateescape")) % count


# front end -> worker
CONFIG = "config"          # (CONFIG, pickled Config, log to syslog): the first message
COMMAND = "cmd"            # (COMMAND, command bytes, source ip, local ip, deadline) -> REPLY
                           # text, or SHED: not run, the deadline (0: none) had passed
COMMANDS = "cmds"          # (COMMANDS, [(command bytes, source ip, local ip, deadline), ...]):
                           # as many COMMANDs, each answered by its REPLY
STATS = "stats"            # (STATS, names or None) -> REPLY (G values by name, live sessions)
DELETE_ALL = "delete_all"  # (DELETE_ALL,) -> REPLY None; X, not counted as a command
DEORBIT = "deorbit"        # SIGHUP: no new sessions; IDLE once the last one ends
STOP = "stop"              # close every session and exit
METRICS = "metrics"        # (METRICS,) -> REPLY exposition text (--metrics), or None
ADMIN = "admin"            # (ADMIN, call id or None, offset) -> REPLY [session dict] (admin.PAGE at most)
# worker -> front end
READY = "ready"            # (READY, pid): serving
REPLY = "reply"            # answers requests in the order they were sent
REPLIES = "replies"        # (REPLIES, [reply, ...]): as many REPLYs
NOTIFY = "notify"          # (NOTIFY, -n target text, tag, source ip, local ip)
IDLE = "idle"              # deorbiting and the last session ended
SNAPSHOT = "snapshot"      # (SNAPSHOT, G values): once a second, kept if the worker dies
GONE = "gone"              # (GONE, call id): the last session of a call placed here ended

SHED = False               # a REPLY to a COMMAND that was shed unanswered


def pair():
    """Two connected ends (front end's, worker's)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Channel:
    def __init__(self, sock):
        sock.setblocking(False)
        self.sock = sock
        self.outbox = collections.deque()
        self.closed = False
        self._buffer = bytearray(RECV_BUFFER)
        self._readable = None           # the event loop's read watcher, made at the first wait

    def send(self, *message):
        if self.closed:
            return
        data = marshal.dumps(message)
        if self.outbox:
            self.outbox.append(data)
            return
        try:
            self.sock.send(data)
        except BlockingIOError:
            self.outbox.append(data)
            gevent.spawn(self._drain)
        except OSError:
            self.closed = True      # the other end is gone; its reader sees EOF

    def _drain(self):
        outbox = self.outbox
        while outbox and not self.closed:
            try:
                wait_write(self.sock.fileno())
                while outbox:
                    self.sock.send(outbox[0])
                    outbox.popleft()
            except BlockingIOError:
                continue
            except OSError:
                self.closed = True
                outbox.clear()

    def receive(self):
        """The next message, waiting for it; None once the other end closed."""
        sock, buffer = self.sock, self._buffer
        while True:
            try:
                size = sock.recv_into(buffer)
            except BlockingIOError:
                readable = self._readable
                if readable is None:
                    hub = gevent.get_hub()
                    readable = self._readable = hub.loop.io(sock.fileno(), 1)
                    self._wait = hub.wait
                try:
                    self._wait(readable)    # one watcher for every wait: cheaper than wait_read
                except OSError:
                    return None
                continue
            except OSError:
                return None
            if not size:
                return None
            return marshal.loads(memoryview(buffer)[:size])

    def close(self):
        self.closed = True
        if self._readable is not None and not self._readable.active:
            self._readable.close()
        self.sock.close()
