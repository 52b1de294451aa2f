"""One --workers worker process: the single-process daemon's relay and
dispatcher, fed by the front end over a private channel instead of control
sockets.

Started by the front end (workers.py): forked at startup, or later a new
interpreter running ``main([CHANNEL_FD, PORTS_FD, NUMBER])``; the first
message on the channel carries the configuration. The packet path is exactly the single-process one (relay.py);
the worker allocates ports from the table all workers share (ports.py), sends
timeout notifications through the front end (which has the one connection per
target upstream keeps), and exits when told to or when the front end is gone.
"""

import logging
import marshal
import os
import pickle
import signal
import socket
import sys
import time

from . import channel as ch
from .channel import worker_for
from . import daemon, daemon_log
from .admin import PAGE, local_sessions
from .control.transports import CLIENT_RETRY, count_shed, loop_turn
from .service import LocalMedia, Service
from .ports import FamilyPorts, SharedPortTable
from .protocol.context import CommandContext

log = logging.getLogger("rtpproxy")

SNAPSHOT_INTERVAL = 1.0
COMMAND_BURST = 8           # commands run before the packets waiting meanwhile are relayed
# No garbage collector setting of its own: an ended session leaves no
# reference cycle (Session.release, at the end of Dispatcher.destroy), so
# reference counting frees it at once. A full collection at every
# collection of the middle generation, which kept the ended sessions
# piling up between two full collections fewer (issue 18.6), made no
# difference once they were gone (BENCHMARKS.md, "ended sessions
# collected sooner") and cost full collections while many sessions live.


class ChannelNotifier:
    """Stands in for notify.Notifier: the front end sends the notification."""

    def __init__(self, link):
        self.link = link
        self.sent = 0

    def notify(self, target, tag, source_ip, local_ip):
        self.link.send(ch.NOTIFY, target.text, tag, source_ip, local_ip)
        self.sent += 1

    def close(self):
        pass


class Worker:
    """One worker: a service.Service with the in-process media back end
    (so every feature wired there runs here too) and no control sockets;
    the channel to the front end feeds it commands instead."""

    def __init__(self, config, link, ports, number):
        self.config = config
        self.link = link
        self.number = number
        shared = FamilyPorts(config.port_min, config.port_max, config.sequential_ports,
                             shared=ports, owner=number)
        self.media = LocalMedia(config, ports=shared, notifier=ChannelNotifier(link))
        self.service = Service(config, self.media)

    @property
    def dispatcher(self):
        return self.media.dispatcher

    def run(self, to_syslog):
        import gevent
        daemon.setup_logging(self.config, to_syslog=to_syslog)
        # says which worker a line comes from (a prefix, not a logger filter:
        # a filter would send every line off daemon_log's direct path)
        daemon_log.set_prefix(log, "worker %d: " % self.number)
        _set_name("rtpproxy-w%d" % self.number)
        service = self.service
        service.start()
        if os.geteuid() == 0:
            # -u, as the front end does after its own start. A worker started
            # again later (after one died) already runs as the front end's user.
            daemon.drop_privileges(self.config)
        # Ctrl-C and SIGHUP reach the front end, which tells the workers what
        # to do; SIGTERM (systemd stops the whole unit) still stops a worker.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.dispatcher.on_idle = lambda: self.link.send(ch.IDLE)
        self._report_guest_calls()
        serving = gevent.spawn(self._serve)
        gevent.spawn(self._snapshots)
        self.link.send(ch.READY, os.getpid())
        log.info("started, pid %d", os.getpid())
        try:
            service.stop_event.wait()
        finally:
            service.shutdown()
            serving.kill(block=False)
            self.link.close()
        return 0

    def _report_guest_calls(self):
        """A call the front end placed here though its Call-ID hashes to
        another worker (that one was full): say when its last session ends,
        so the Call-ID goes back to its own worker."""
        dispatcher, link = self.dispatcher, self.link
        destroy, own, count = dispatcher.destroy, self.number - 1, self.config.workers

        def destroy_and_report(session, timed_out=False):
            destroy(session, timed_out)
            call_id = session.call_id
            if call_id not in dispatcher.table.by_call_id and worker_for(call_id, count) != own:
                link.send(ch.GONE, call_id)
        dispatcher.destroy = destroy_and_report

    def _serve(self):
        dispatcher, link = self.dispatcher, self.link
        write_held_lines = daemon_log.write_held_lines
        served = 0

        def run(data, source_ip, local_ip, deadline):
            """A command's reply (ch.SHED: past its deadline, not run)."""
            if deadline and time.monotonic() > deadline:
                count_shed(dispatcher.tally, "a command waited %.0f s for worker %d" % (
                    CLIENT_RETRY, self.number))
                return ch.SHED
            return dispatcher.execute(data, CommandContext(source_ip, local_ip))

        while True:
            message = link.receive()
            if message is None:          # the front end is gone
                break
            served += 1
            if served % COMMAND_BURST == 0:
                # Media waiting behind a burst of commands goes first (one
                # loop turn, without the 0.2-1 ms wait a short timer costs).
                loop_turn()
            kind = message[0]
            if kind == ch.COMMAND:
                answer = run(*message[1:])
                write_held_lines()      # its log lines before the reply
                link.send(ch.REPLY, answer)
            elif kind == ch.COMMANDS:
                # their replies in one message, sent before any loop turn
                commands = message[1]
                answers = [run(*commands[0])]
                for command in commands[1:]:
                    served += 1
                    if served % COMMAND_BURST == 0:
                        write_held_lines()
                        link.send(ch.REPLIES, answers)
                        answers = []
                        loop_turn()
                    answers.append(run(*command))
                write_held_lines()
                link.send(ch.REPLIES, answers)
            elif kind == ch.STATS:
                link.send(ch.REPLY, dispatcher.stat_values(message[1] if len(message) > 1 else None))
            elif kind == ch.METRICS:
                metrics = self.media.metrics
                link.send(ch.REPLY, metrics.exposition() if metrics is not None else None)
            elif kind == ch.ADMIN:
                try:
                    page = local_sessions(self.media, message[1], message[2], PAGE)
                except Exception:        # rtpproxy-ctl must never stop a worker serving
                    log.exception("admin listing failed")
                    page = []
                link.send(ch.REPLY, page)
            elif kind == ch.DELETE_ALL:
                dispatcher.close_all()
                write_held_lines()
                link.send(ch.REPLY, None)
            elif kind == ch.DEORBIT:
                dispatcher.start_deorbit()
            elif kind == ch.STOP:
                break
        self.service.stop_event.set()

    def _snapshots(self):
        import gevent
        while True:
            gevent.sleep(SNAPSHOT_INTERVAL)
            self.link.send(ch.SNAPSHOT, self.dispatcher.stat_values()[0])


def _set_name(name):
    """The name top and ps -o comm show for this worker (Linux)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)     # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def main(argv=None):
    channel_fd, ports_fd, number = (int(a) for a in (sys.argv[1:] if argv is None else argv))
    sock = socket.socket(fileno=channel_fd)
    # The configuration comes first; read it before any event loop exists.
    first = sock.recv(ch.RECV_BUFFER)
    if not first:
        return 0            # the front end did not start after all (its own error says why)
    kind, pickled, to_syslog = marshal.loads(first)
    if kind != ch.CONFIG:
        raise SystemExit("rtpproxy worker: started without a configuration")
    config = pickle.loads(pickled)
    ports = SharedPortTable(config.port_min, config.port_max, fd=ports_fd)
    return Worker(config, ch.Channel(sock), ports, number).run(to_syslog)


if __name__ == "__main__":
    sys.exit(main())
