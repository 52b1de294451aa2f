"""Control sockets (control-protocol.md section 1), each served by greenlets.

``open_control(spec, config)`` binds the socket (before daemonizing and
before privileges are dropped); ``ControlServer.start(execute)`` serves it.
``execute(data, ctx)`` is Dispatcher.execute: it never yields, so commands
from all sockets run one at a time, in arrival order, as upstream's single
command thread does. The --workers front end's execute waits for a worker
(its dispatcher says ``concurrent``): then a UDP command that names a Call-ID
is started with the dispatcher's ``submit`` and completed by a callback when
its worker answers (the socket is read on meanwhile), any other runs
``execute`` in a greenlet of its own, so commands for different workers run
side by side.

Under overload each source gets its share and nothing is answered too late
(README "Hardening"): with --workers a UDP socket has at most MAX_INFLIGHT
commands waiting for workers; what arrives beyond that is shed (dropped
unanswered and counted in G ``ncmds_shed``, the client retransmits), and a
command still queued CLIENT_RETRY seconds after it arrived is shed by the
worker rather than answered after the client has retried. A stream
connection has one command in flight at a time and is never shed; its
commands pass every queue bound, so a UDP flood cannot starve the SIP
proxy's stream socket.

Hostile or broken clients cost the others nothing: each stream connection has
its own greenlet, a reply that cannot be written within WRITE_TIMEOUT (a
client that never reads) drops that connection, a listener holds at most
MAX_CONNECTIONS and makes room by closing the one idle longest, and a
``unix:`` client gets ONE_SHOT_TIMEOUT to send its command.
"""

import collections
import errno
from functools import partial
import logging
import os
import re
import socket as stdsocket
import struct
import time

import gevent
from gevent import socket
from gevent.pool import Group

from ..config import ConfigError
from ..protocol.context import CommandContext, CommandTally
from ..throttle import LogThrottle
from .reply_cache import SWEEP_INTERVAL, ReplyCache

log = logging.getLogger("rtpproxy")
throttle = LogThrottle(log)

MAX_COMMAND = 8191
STREAM_BUFFER = 8192
UDP_RCVBUF = 16 * 1024
BACKLOG = 32
WRITE_TIMEOUT = 5.0       # seconds a reply may wait for a client to read
ONE_SHOT_TIMEOUT = 3.0    # unix: seconds from accept to the command
MAX_CONNECTIONS = 256     # open stream connections per listener
# Replies are short: a client that stops reading fills this, not the megabytes
# the kernel would grow the buffer to, before WRITE_TIMEOUT starts counting
# (with --workers an I or G waits for every worker, so replies come slower).
STREAM_SNDBUF = 64 * 1024
YIELD_EVERY = 16          # commands (or connections) handled in a row before the loop gets a turn
TURN_PAUSE = 1e-6         # seconds: wakes up right after the loop's next poll
TURN_PRIORITY = -1        # libev priority of loop_turn's timer: after the I/O callbacks
QUICK_TURNS_INFLIGHT = 32  # --workers: UDP commands in flight up to which turns do not wait
MAX_INFLIGHT = 64         # UDP commands of one socket waiting for workers (--workers)
# One process: datagrams read from a UDP control socket at once, before any
# runs; more than its UDP_RCVBUF holds (39 short commands on loopback).
READ_AT_ONCE = 64
CLIENT_RETRY = 1.0        # seconds: Kamailio's rtpproxy_tout; a reply after it is useless
# Linux: SO_RXQ_OVFL hands the socket's count of datagrams dropped from its
# full receive buffer along with each datagram; SO_MEMINFO reads it at any
# time (its ninth value, SK_MEMINFO_DROPS). The standard socket module names neither.
SO_RXQ_OVFL = 40
SO_MEMINFO = 55
_MEMINFO_DROPS = 8
_DROPS = struct.Struct("=I")
DROPS_POLL = 1.0          # seconds between reads of the drop count when no datagram tells it

SHED = None               # what execute returns for a command shed unanswered


def count_shed(tally: CommandTally, how, count=1):
    """``count`` commands shed: counted, and logged at most once per interval."""
    tally.shed(count)
    throttle.log(logging.WARNING, "shed", "overloaded: control commands shed unanswered (%s; "
                 "G ncmds_shed counts them)", how)


class Turns:
    """Counts what a serving greenlet did without waiting. A socket that always
    has input never makes a gevent greenlet wait, so a client that floods
    commands would keep the event loop (the packet path, timers, the other
    clients) from running; every YIELD_EVERY the loop gets a turn."""

    __slots__ = ("count",)

    def __init__(self):
        self.count = 0

    def done(self, quick=False):
        """One more done; True when the loop had its turn. ``quick``: a turn
        that does not wait (loop_turn), for the --workers front end."""
        self.count += 1
        if self.count >= YIELD_EVERY:
            self.count = 0
            if quick:
                loop_turn()
            else:
                # A timer, not sleep(0): gevent runs sleep(0)'s callback again
                # before it polls the sockets, for up to its 5 ms switch interval.
                gevent.sleep(TURN_PAUSE)
            return True
        return False


def loop_turn():
    """Give the event loop one turn (poll the sockets without waiting, run
    what is ready and due) and come back. Not sleep(0): gevent runs its
    callback again before it polls, for up to its 5 ms switch interval. Not a
    timer of a microsecond (TURN_PAUSE) either, where the loop's clock is
    fresh (a process that mostly waits: the --workers front end, a worker):
    libev rounds any wait shorter than its epoll minimum up to a millisecond,
    and the serving greenlet's own socket is not watched meanwhile, so every
    turn slept 0.2-1 ms with the next commands already queued (without it the
    default workers' U+L+D rate rose by a quarter or more, measured with
    bench/control_cycle.py). A timer due at once makes the poll not wait; at
    a low priority it runs after the I/O that poll found."""
    hub = gevent.get_hub()
    timer = hub.loop.timer(0.0, priority=TURN_PRIORITY)
    try:
        hub.wait(timer)
    finally:
        timer.close()


class SlowReader(Exception):
    """A stream client did not read its replies within WRITE_TIMEOUT."""


def bounded_sendall(conn, data):
    """sendall, but give up (SlowReader) after WRITE_TIMEOUT: while it waits
    the connection reads no more commands, so at most one reply is pending."""
    with gevent.Timeout(WRITE_TIMEOUT, SlowReader):
        conn.sendall(data)

_COOKIE = re.compile(rb"[ \t\r\n]*([^ \t\r\n]+)(.*)\Z", re.S)


class ControlServer:
    """Base: a bound socket (or stdio) and the greenlets serving it."""

    def __init__(self, spec, config):
        self.spec = spec
        self.config = config
        self.tally = None           # protocol.context.CommandTally
        self.greenlets = []
        self.sock = None

    def bind(self):
        raise NotImplementedError

    def start(self, dispatcher, on_eof=None):
        """Serve commands with ``dispatcher``: its ``execute``, and its
        ``tally`` (protocol.context.CommandTally) for what the transport counts."""
        self.tally = dispatcher.tally
        self.concurrent = getattr(dispatcher, "concurrent", False)
        self._serve_start(dispatcher.execute, on_eof)

    def _serve_start(self, execute, on_eof):
        raise NotImplementedError

    def close(self):
        for g in self.greenlets:
            g.kill(block=False)
        if self.sock is not None:
            self.sock.close()

    def _reply(self, send, text):
        send(text.encode("utf-8") if isinstance(text, str) else text)
        self.tally.replied()

    def _bind_error(self, exc):
        spec = self.spec.text
        if exc.errno == errno.EADDRINUSE:
            return ConfigError("-s %s: the control address is already in use; stop the other "
                               "program (another rtpproxy?) or choose another -s." % spec)
        if exc.errno == errno.EADDRNOTAVAIL:
            return ConfigError("-s %s: this address is not on this host; use a local address "
                               "(for example -s udp:127.0.0.1:22222)." % spec)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return ConfigError("-s %s: permission denied; run as a user who may bind there or "
                               "choose another path or port." % spec)
        if exc.errno == errno.ENOENT:
            return ConfigError("-s %s: the directory for the socket does not exist; create it "
                               "or choose another path." % spec)
        return ConfigError("-s %s: cannot open the control socket (%s)." % (spec, exc.strerror))


def _read_held(read_now, into, limit, space):
    """Append to ``into`` the datagrams the socket holds, without waiting,
    until it has ``limit``. ``read_now``: the non-blocking socket under the
    gevent one (None: read nothing)."""
    if read_now is None:
        return
    try:
        while len(into) < limit:
            into.append(read_now.recvmsg(MAX_COMMAND, space))
    except OSError:
        pass            # nothing more now (an error shows in the next read)


class UdpControl(ControlServer):
    """One datagram = one command, with a cookie; replies cached by cookie.

    With --workers (``concurrent``) the reading greenlet starts each command
    and reads on: the dispatcher's ``submit`` sends a routed command to its
    worker and calls back with the reply (from the worker link's reader),
    which is then cached and sent, and given to every retransmission of it
    that came meanwhile. What submit does not take (V, I, G, X, malformed
    commands, the rarer routes) runs ``execute`` in a greenlet of its own
    and ends the same way. With one process what the socket holds is read
    at once and run one command at a time, in arrival order (``_serve``)."""

    submit = flush = None

    def start(self, dispatcher, on_eof=None):
        self.submit = getattr(dispatcher, "submit", None)
        self.flush = getattr(dispatcher, "flush", None)
        super().start(dispatcher, on_eof)

    def bind(self):
        sock = stdsocket.socket(self.spec.family, stdsocket.SOCK_DGRAM)
        try:
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, UDP_RCVBUF)
            sock.bind((self.spec.host, self.spec.port))
        except OSError as exc:
            sock.close()
            raise self._bind_error(exc) from None
        self.raw = sock

    def _serve_start(self, execute, on_eof):
        self.sock = socket.socket(fileno=self.raw.detach())
        self.local_ip = self.spec.host
        self.cache = ReplyCache()
        self.execute = execute
        self.inet = self.spec.family == stdsocket.AF_INET
        # concurrent only: cookie -> retransmissions (data, source, received)
        # that came while its command runs; they get its reply
        self.running = {}
        self.inflight = 0       # datagrams read and not answered (or shed) yet (concurrent only)
        self.kernel_drops = self._drop_count()     # counted as shed beyond this
        try:
            self.sock.setsockopt(stdsocket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError:
            pass                # not Linux: the kernel's drops go uncounted
        self.greenlets = [gevent.spawn(self._serve, execute), gevent.spawn(self._sweep),
                          gevent.spawn(self._poll_drops)]

    def _sweep(self):
        while True:
            gevent.sleep(SWEEP_INTERVAL)
            self.cache.sweep(time.monotonic())

    def _drop_count(self):
        """The datagrams the kernel dropped from this socket's full receive
        buffer since it was opened; None where the kernel does not say."""
        try:
            info = self.sock.getsockopt(stdsocket.SOL_SOCKET, SO_MEMINFO, 4 * (_MEMINFO_DROPS + 1))
        except OSError:
            return None
        if len(info) < 4 * (_MEMINFO_DROPS + 1):
            return None
        return _DROPS.unpack_from(info, 4 * _MEMINFO_DROPS)[0]

    def _count_kernel_drops(self, total):
        """``total`` (the kernel's running count, 32 bits) is newer than what
        was counted: the difference is shed. Commands the kernel dropped were
        never read, so this is the only place they are counted."""
        if self.kernel_drops is None:
            self.kernel_drops = total
            return
        new = (total - self.kernel_drops) & 0xFFFFFFFF
        if 0 < new < 0x80000000:     # a datagram's count may be older than a poll's
            self.kernel_drops = total
            count_shed(self.tally, "%s: the socket's receive buffer was full" % self.spec.text, new)

    def _poll_drops(self):
        """Drops after the last datagram read show only in the next one's count:
        read it now and then, so G and the metrics have them without traffic."""
        while True:
            gevent.sleep(DROPS_POLL)
            total = self._drop_count()
            if total is not None:
                self._count_kernel_drops(total)

    def _ancillary(self, ancillary):
        # sent only once the kernel has dropped any (SO_RXQ_OVFL)
        level, kind, value = ancillary[0]
        if level == stdsocket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
            total = _DROPS.unpack_from(value)[0]
            if total != self.kernel_drops:
                self._count_kernel_drops(total)

    def _serve(self, execute):
        """One process: what the socket holds is read at once (up to
        READ_AT_ONCE datagrams, without waiting) and run one at a time in
        arrival order; it is read again once those have run, and after each
        of the loop's turns (every YIELD_EVERY commands). Read one at a time, a
        burst stayed in the kernel's small buffer (UDP_RCVBUF) while the
        first commands ran, and Linux releases the buffer space of what was
        read only once the reader has emptied the queue (or read a quarter of
        the buffer): a client with 32 commands out lost a few to the kernel,
        each answered only after its 1 s resend. Under a flood the kernel
        still drops what neither READ_AT_ONCE nor its buffer holds."""
        if self.concurrent:
            return self._serve_concurrent()
        sock = self.sock
        read_now = getattr(sock, "_sock", None)     # the same socket, read without waiting
        turns = Turns()
        space = stdsocket.CMSG_SPACE(_DROPS.size)
        pending = collections.deque()   # datagrams read and not run yet, oldest first

        def read_waiting():
            """Read what the socket holds, up to READ_AT_ONCE pending."""
            _read_held(read_now, pending, READ_AT_ONCE, space)

        while True:
            if not pending:
                read_waiting()          # what came while the last ones ran
                if not pending:
                    # Nothing: wait for one and run it at once (what comes with it
                    # is read after it): an idle relay's answer waits for no extra read.
                    try:
                        pending.append(sock.recvmsg(MAX_COMMAND, space))
                    except OSError as exc:
                        log.warning("control socket %s: %s", self.spec.text, exc)
                        gevent.sleep(0.01)
                        continue
            data, ancillary, _, source = pending.popleft()
            if ancillary:
                self._ancillary(ancillary)
            self.handle_datagram(data, source, execute)
            if turns.done():
                read_waiting()          # the loop had its turn: what came meanwhile

    def _serve_concurrent(self):
        """--workers: start each command and read on. What has come is read at
        once (up to MAX_INFLIGHT datagrams) before any is started: the socket's
        buffer is small (UDP_RCVBUF; reading 16 at a time, a client with 32
        commands out lost a few to the kernel). The commands started go to
        the workers (``flush``) once the batch is started, and before each
        loop turn (every YIELD_EVERY datagrams, as before)."""
        sock = self.sock
        read_now = getattr(sock, "_sock", None)     # the same socket, read without waiting
        flush = self.flush
        turns = Turns()
        shed = False        # a datagram was shed since the last turn
        space = stdsocket.CMSG_SPACE(_DROPS.size)
        while True:
            try:
                batch = [sock.recvmsg(MAX_COMMAND, space)]
            except OSError as exc:
                log.warning("control socket %s: %s", self.spec.text, exc)
                gevent.sleep(0.01)
                continue
            _read_held(read_now, batch, MAX_INFLIGHT, space)
            received = time.monotonic()
            for data, ancillary, _, source in batch:
                if ancillary:
                    self._ancillary(ancillary)
                if self.inflight < MAX_INFLIGHT:
                    self.inflight += 1
                    try:
                        self._begin(data, source, received)
                    except Exception:       # a bug must not stop the socket being read
                        log.exception("internal error serving a control datagram")
                else:
                    self._shed_or_repeat(data, source)
                    shed = True
                if turns.count == YIELD_EVERY - 1 and flush is not None:
                    flush()         # what was started leaves before the loop's turn
                # The front end's turns do not wait while its commands in flight
                # are few; under a flood (many in flight, or shedding) the pause
                # leaves them their share of the loop, as before.
                if turns.done(quick=not shed and self.inflight <= QUICK_TURNS_INFLIGHT):
                    shed = False
            if flush is not None:
                flush()             # what was started goes to the workers, one message each

    def _send_to(self, payload, source):
        try:
            self.sock.sendto(payload, source)
        except OSError as exc:
            log.warning("cannot reply to %s: %s", source, exc)
        self.tally.replied()

    def _begin(self, data, source, received, again=False):
        """Concurrent mode: serve one datagram (counted in ``inflight`` until
        it is answered or shed) without waiting for its answer. ``again``: a
        retransmission that waited on its command, which was shed unrun."""
        match = _COOKIE.match(data)
        if match is None:
            self.inflight -= 1
            self._send_to(b"E5\n", source)
            return
        cookie, command = match.group(1), match.group(2)
        retransmissions = self.running.get(cookie)
        if retransmissions is not None:
            retransmissions.append((data, source, received))    # its command's reply, once done
            return
        cached = self.cache.get(cookie)
        if cached is not None:
            self.inflight -= 1
            self.tally.repeated()
            self._send_to(cached, source)
            return
        self.running[cookie] = []
        source_ip = source[0] if self.inet else "127.0.0.1"
        deadline = received + CLIENT_RETRY      # may be shed then: the client retransmits
        done = partial(self._done, cookie, source)
        submit = self.submit
        if submit is None or not submit(command, source_ip, self.local_ip, deadline, done, again):
            gevent.spawn(self._execute, command, CommandContext(source_ip, self.local_ip, deadline), done)

    def _execute(self, command, ctx, done):
        text = SHED
        try:
            text = self.execute(command, ctx)
        finally:
            done(text)

    def _done(self, cookie, source, text):
        """A command ``_begin`` started has its reply (SHED: none)."""
        retransmissions = self.running.pop(cookie)
        self.inflight -= 1
        if text is SHED:
            # unanswered: a retransmission that came meanwhile runs it again
            if retransmissions:
                for retransmission in retransmissions:
                    self._begin(*retransmission, again=True)
                if self.flush is not None:
                    self.flush()
            return
        payload = cookie + b" " + text.encode("utf-8")
        self.cache.put(cookie, payload, time.monotonic())
        self._send_to(payload, source)
        for _, again, _ in retransmissions:
            self.inflight -= 1
            self.tally.repeated()
            self._send_to(payload, again)

    def _shed_or_repeat(self, data, source):
        """MAX_INFLIGHT commands are waiting: a retransmission whose reply is
        cached still gets it; anything else is shed, unparsed."""
        match = _COOKIE.match(data)
        cached = self.cache.get(match.group(1)) if match is not None else None
        if cached is not None:
            self.tally.repeated()
            try:
                self.sock.sendto(cached, source)
                self.tally.replied()
            except OSError:
                pass
            return
        count_shed(self.tally, "%s: more than %d commands waiting" % (self.spec.text, MAX_INFLIGHT))

    def handle_datagram(self, data, source, execute):
        """One process: run the command now; its reply, cached."""
        match = _COOKIE.match(data)

        def send(payload):
            try:
                self.sock.sendto(payload, source)
            except OSError as exc:
                log.warning("cannot reply to %s: %s", source, exc)

        if match is None:
            self._reply(send, b"E5\n")
            return
        cookie, command = match.group(1), match.group(2)
        cached = self.cache.get(cookie)
        if cached is not None:
            self.tally.repeated()
            self._reply(send, cached)
            return
        ctx = CommandContext(source[0] if self.spec.family == stdsocket.AF_INET else "127.0.0.1",
                             self.local_ip)
        text = execute(command, ctx)
        if text is SHED:
            return
        payload = cookie + b" " + text.encode("utf-8")
        self.cache.put(cookie, payload, time.monotonic())
        self._reply(send, payload)


class _StreamListener(ControlServer):
    """Shared by unix, cunix, tcp and tcp6: accept and serve each connection."""

    connections = None

    def _serve_start(self, execute, on_eof):
        self.sock = socket.socket(fileno=self.raw.detach())
        self.connections = Group()      # open client connections, closed with the listener
        self.idle = collections.OrderedDict()   # greenlet -> None, longest idle first
        self.greenlets = [gevent.spawn(self._accept, execute)]

    def close(self):
        super().close()
        if self.connections is not None:
            self.connections.kill(block=False)

    def _accept(self, execute):
        turns = Turns()
        while True:
            turns.done()
            try:
                conn, peer = self.sock.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    throttle.log(logging.ERROR, "accept", "control socket %s: cannot accept a "
                                 "connection, out of file descriptors", self.spec.text)
                    gevent.sleep(0.1)
                continue
            try:
                conn.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, STREAM_SNDBUF)
            except OSError:
                pass
            if len(self.idle) >= MAX_CONNECTIONS:
                oldest = next(iter(self.idle))
                self.idle.pop(oldest)
                throttle.log(logging.WARNING, "connections", "control socket %s: %d connections "
                             "open; closing the one idle longest", self.spec.text, MAX_CONNECTIONS)
                oldest.kill(block=False)
            greenlet = self.connections.spawn(self._serve_connection, conn, peer, execute)
            self.idle[greenlet] = None
            greenlet.rawlink(self._forget)

    def _forget(self, greenlet):
        self.idle.pop(greenlet, None)

    def _active(self):
        """The current connection just sent something: it is the least idle now."""
        current = gevent.getcurrent()
        if current in self.idle:
            self.idle.move_to_end(current)

    def _context(self, peer):
        if self.spec.kind == "tcp":
            return CommandContext(peer[0], self.spec.host)
        return CommandContext("127.0.0.1", None)

    def _serve_connection(self, conn, peer, execute):
        def recv(size):
            data = conn.recv(size)
            self._active()
            return data

        turns = Turns()

        def send(data):
            bounded_sendall(conn, data)
            turns.done()

        try:
            serve_lines(recv, send, self._context(peer), execute, self._reply)
        except OSError:
            pass
        except SlowReader:
            throttle.log(logging.WARNING, "slow reader", "control socket %s: a client did not "
                         "read its replies for %d s; connection closed", self.spec.text,
                         WRITE_TIMEOUT)
        finally:
            conn.close()


class TcpControl(_StreamListener):
    def bind(self):
        sock = stdsocket.socket(self.spec.family, stdsocket.SOCK_STREAM)
        try:
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
            sock.bind((self.spec.host, self.spec.port))
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            raise self._bind_error(exc) from None
        self.raw = sock


class UnixControl(_StreamListener):
    """``unix:`` one read = one command, reply, close; ``cunix:`` lines."""

    def bind(self):
        path = self.spec.path
        sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        try:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            sock.bind(path)
            sock.listen(BACKLOG)
            config = self.config
            if config.uid is not None or config.socket_group_given:
                # to the user and its group (the primary one unless -u names a group)
                os.chown(path, -1 if config.uid is None else config.uid,
                         -1 if config.gid is None else config.gid)
            if config.socket_group_given:
                os.chmod(path, config.socket_mode)
        except OSError as exc:
            sock.close()
            raise self._bind_error(exc) from None
        self.raw = sock

    def _serve_connection(self, conn, peer, execute):
        if self.spec.kind == "cunix":
            return super()._serve_connection(conn, peer, execute)
        try:
            data = None
            with gevent.Timeout(ONE_SHOT_TIMEOUT, False):
                data = conn.recv(MAX_COMMAND)
            if data:
                # the time-out is the client's: the command, once sent, is answered
                text = execute(data, CommandContext())
                self._reply(conn.sendall, text)   # one short reply: fits the socket buffer
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        super().close()
        try:
            os.unlink(self.spec.path)
        except OSError:
            pass


class StdioControl(ControlServer):
    """Commands on stdin, replies on stdout, one per line."""

    def bind(self):
        pass

    def _serve_start(self, execute, on_eof):
        from gevent import os as gos          # now, while the files are readable (-u)
        self.gos = gos
        self.greenlets = [gevent.spawn(self._serve, execute, on_eof)]

    def _serve(self, execute, on_eof):
        gos = self.gos
        gos.make_nonblocking(0)

        def recv(size):
            return gos.nb_read(0, size)

        turns = Turns()

        def send(data):
            view = memoryview(data)
            while view:
                view = view[gos.nb_write(1, view):]   # waits for stdout without blocking others
            turns.done()

        try:
            serve_lines(recv, send, CommandContext(), execute, self._reply)
        except OSError:
            pass
        if on_eof is not None:
            on_eof()


def serve_lines(recv, send, ctx, execute, reply):
    """LF-framed commands on a stream until EOF. The connection buffer holds
    8 KiB as upstream's: a line must end within it (so no command is longer
    than 8191 bytes), else the connection is closed."""
    buffer = b""
    while True:
        data = recv(STREAM_BUFFER - len(buffer))
        if not data:
            return
        buffer += data
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 1:]
            reply(send, execute(line, ctx))
        if len(buffer) >= STREAM_BUFFER:
            log.warning("control connection sent %d bytes without a line end; closed", len(buffer))
            return


def adopt(spec):
    """The socket systemd passed, as ours (not inherited by what we start)."""
    os.set_inheritable(spec.inherited.fd, False)
    return stdsocket.socket(fileno=spec.inherited.fd)


class InheritedDatagram(UdpControl):
    """``systemd:``, a datagram socket (ListenDatagram=): served as ``udp:``."""

    def bind(self):
        self.raw = adopt(self.spec)


class InheritedStream(_StreamListener):
    """``systemd:``, a listening stream socket (ListenStream=), unix or TCP.
    Lines as the spec's ``systemd:``; but a connection whose first read holds
    a command without a line end is served as ``unix:`` (that command, its
    reply, close): Kamailio's and OpenSIPS's ``unix:`` clients send no LF, so
    the packaged rtpproxy.socket keeps their configuration working. The socket
    file is systemd's: it is not unlinked at exit (systemd keeps listening and
    starts the service again on the next connection)."""

    def bind(self):
        self.raw = adopt(self.spec)

    def _context(self, peer):
        if self.spec.family == stdsocket.AF_INET:
            return CommandContext(peer[0], self.spec.host)
        return CommandContext("127.0.0.1", None)

    def _serve_connection(self, conn, peer, execute):
        try:
            # no time limit: a line client may connect long before its first command
            first = conn.recv(STREAM_BUFFER)
        except OSError:
            first = None
        if not first:
            conn.close()
            return
        if b"\n" not in first:
            try:
                self._reply(conn.sendall, execute(first, self._context(peer)))
            except OSError:
                pass
            finally:
                conn.close()
            return
        pending = [first]

        class _Replay:
            """The connection, with the first read handed out again."""

            def recv(self, size):
                return pending.pop() if pending else conn.recv(size)

            def sendall(self, data):
                conn.sendall(data)

            def setsockopt(self, *args):
                conn.setsockopt(*args)

            def close(self):
                conn.close()

        super()._serve_connection(_Replay(), peer, execute)


_KINDS = {
    "udp": UdpControl, "udp6": UdpControl,
    "tcp": TcpControl, "tcp6": TcpControl,
    "unix": UnixControl, "cunix": UnixControl,
    "stdio": StdioControl, "stdioc": StdioControl,
}


def open_control(spec, config):
    if spec.kind == "systemd":
        kind = InheritedDatagram if spec.inherited.type == stdsocket.SOCK_DGRAM else InheritedStream
        server = kind(spec, config)
        server.bind()
        return server
    server = _KINDS[spec.kind](spec, config)
    server.bind()
    return server
