"""--workers N: a front end that owns the control sockets, and N worker processes.

Each worker (worker.py) is the single-process relay with its own event loop:
it holds the sessions of the Call-IDs that hash to it and relays their media.
The front end reads every command, keeps the UDP reply cache, and

* sends a command that names a Call-ID (U, L, D, P, S, R, C, N, Q) to the
  worker holding that Call-ID, over that worker's channel (channel.py);
  one worker runs its commands in the order they came;
* answers V and VF itself, X by telling every worker, and I and G by adding
  up every worker's counters (its own command counters included, since each
  command is counted by whoever executed it);
* sends the timeout notifications workers ask for, so each target keeps its
  single connection;
* places a new call elsewhere when its worker is full: -L (the open-files
  limit) is each process's, so a U that its Call-ID's worker refuses with
  E72 is tried on the others, and the Call-ID is then routed to the worker
  that took it until that worker reports its last session gone (GONE). A new
  session fails only when every worker is full, as in one process.

A UDP command takes no greenlet of its own: the transport starts it with
FrontDispatcher.submit, the commands it read at once go to each worker in
one COMMANDS message, and the link's reader hands each reply to the
transport's completion.

Every queue between the front end and a worker is bounded: a UDP socket has
at most transports.MAX_INFLIGHT commands out, a worker at most MAX_PENDING
sheddable ones waiting, and a worker sheds a command whose client has
retried by the time its turn comes (README "Hardening").

All workers take media ports from shared memory (ports.SharedPortTable, one
table per address family), so the port range behaves as in one process. They
are forked when the daemon starts, before the front end has an event loop,
and configured once it serves.

A worker that dies is started again. The commands it had not answered run
again on the new one (what the dead worker did is gone with it), so its lost
calls get the answers upstream gives for sessions it does not know. While a
worker cannot be started at all, the front end gives those answers itself.
The other workers' calls are untouched.
"""

import collections
import gc
import logging
import os
import pickle
import signal
import sys
import time

import gevent
from gevent._hub_local import get_hub_if_exists
from gevent.event import AsyncResult, Event

from . import channel as ch
from . import daemon_log
from .channel import worker_for  # noqa: F401 (tests and worker.py name it here)
from .admin import PAGE
from .dispatcher import LOAD, Dispatcher
from .net import route_source
from .ports import PortsExhausted, SharedPortTable
from .protocol import reply
from .protocol.context import CommandContext
from .protocol.errors import SESSION_CREATE_FAILED
from .protocol.parse import route
from .control.transports import count_shed

log = logging.getLogger("rtpproxy")

START_TIMEOUT = 30.0        # for every worker to report ready at startup
STOP_TIMEOUT = 5.0          # for a worker to exit after STOP, before SIGKILL
STATS_AT_STOP_TIMEOUT = 1.0  # for the workers' last figures when the daemon stops
# Seconds I, G, --metrics and rtpproxy-ctl's listing wait for each worker: one
# that is alive but stuck (stopped, a long pause) must not hold monitoring or
# the UDP socket's in-flight places; its last SNAPSHOT (at most a second old)
# answers for it meanwhile.
ASK_TIMEOUT = 0.5
STALL_WARNING_INTERVAL = 60.0   # at most one "did not answer" warning per worker this often
RESTART_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0)   # after quick successive deaths
STEADY = 10.0               # a worker that ran this long died "for the first time"
MAX_PENDING = 128           # sheddable commands waiting for one worker; beyond: shed
# Seconds the command a worker has longest been given may have waited before
# new UDP commands for that worker are shed (the queue bound in time: under
# overload the queue stays this short, so what is answered is answered in
# time, whatever the CPU the worker gets; a queue that long otherwise only
# forms behind one slow command).
QUEUE_TARGET = 0.03

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_SESSION_REFUSED = reply.error(SESSION_CREATE_FAILED)
QUEUE_FULL = object()       # WorkerLink.request: shed before it was sent


def add_values(total, values):
    """Add one worker's G values into ``total`` (both dicts by counter name)."""
    for name, value in values.items():
        total[name] = total.get(name, 0) + value
    return total


def retire(values):
    """What a dead worker's last counters leave behind: its live sessions count
    as destroyed, so created - destroyed stays the number of live sessions."""
    values = dict(values)
    values["nsess_destroyed"] = values.get("nsess_created", 0)
    values.pop(LOAD, None)           # a dead process uses no CPU
    return values


class _Request:
    __slots__ = ("message", "done", "retried", "queued")

    def __init__(self, message, queued, done):
        self.message = message
        self.done = done                # called with the reply (None: the worker cannot answer)
        self.retried = False
        self.queued = queued            # monotonic time it joined the queue


class WorkerLink:
    """One worker process as the front end sees it: its channel, the requests
    still waiting for a reply (in the order they were sent), its restarts."""

    def __init__(self, pool, number):
        self.pool = pool
        self.number = number             # 1..N; 0 is "free" in the port table
        self.pid = None
        self.exited = None
        self.link = None
        self.ready = False
        self.down = False                # cannot be started now: answer locally
        self.idle = False                # deorbiting and empty
        self.pending = collections.deque()
        self.batch = []                  # submitted commands not sent yet (flush)
        self.started_at = 0.0
        self.quick_deaths = 0
        self.snapshot = {}
        self.metrics_text = None         # its last --metrics exposition
        self.stalled = None              # AsyncResult of an ask that timed out, until answered
        self.warned_at = -STALL_WARNING_INTERVAL

    # --- process ------------------------------------------------------------

    def start(self):
        self.launch()
        self.watch()

    def launch(self):
        front_end, worker_end = ch.pair()
        fds = (worker_end.fileno(), self.pool.ports.fd)
        argv = [str(fds[0]), str(fds[1]), str(self.number)]
        try:
            self.pid = _start_process(argv, fds)
        except OSError as exc:
            front_end.close()
            worker_end.close()
            log.error("cannot start worker %d: %s", self.number, exc)
            self.link = None
            self._mark_down()
            gevent.spawn_later(RESTART_DELAYS[-1], self._restart)
            return
        worker_end.close()
        self.link = ch.Channel(front_end)
        self.ready = False
        self.idle = False
        self.exited = AsyncResult()
        self.started_at = time.monotonic()

    def watch(self):
        """Configure the launched worker (it starts serving) and follow it."""
        if self.link is not None:
            self.link.send(ch.CONFIG, pickle.dumps(self.pool.config), self.pool.to_syslog)
            gevent.spawn(self._read, self.link, self.pid, self.exited)

    def _read(self, link, pid, exited):
        while True:
            message = link.receive()
            if message is None:
                break
            kind = message[0]
            if kind == ch.REPLIES or kind == ch.REPLY:
                pending = self.pending
                for answer in (message[1] if kind == ch.REPLIES else message[1:]):
                    if not pending:
                        break
                    try:
                        pending.popleft().done(answer)
                    except Exception:   # the reader must go on: later replies would be lost
                        log.exception("completing a command failed")
            elif kind == ch.READY:
                self._on_ready()
            elif kind == ch.NOTIFY:
                self.pool.notify(*message[1:])
            elif kind == ch.IDLE:
                self.idle = True
                self.pool.check_idle()
            elif kind == ch.SNAPSHOT:
                self.snapshot = message[1]
            elif kind == ch.GONE:
                if self.pool.placed.get(message[1]) is self:
                    del self.pool.placed[message[1]]
        link.close()
        code = _reap(pid)
        exited.set(code)
        self._on_exit(code)

    def _on_ready(self):
        self.ready = True
        self.down = False
        self.batch = []                 # pending: sent now, with the rest
        for request in self.pending:
            self.link.send(*request.message)
        if self.pool.deorbiting:
            self.link.send(ch.DEORBIT)
        self.pool.worker_ready.set()

    def _on_exit(self, code):
        self.batch = []                 # still pending: sent again or answered below
        self.pool.ports.release_all(self.number)
        for call_id in [k for k, link in self.pool.placed.items() if link is self]:
            del self.pool.placed[call_id]       # its calls are gone with it
        self.pool.retired = add_values(self.pool.retired, retire(self.snapshot))
        self.snapshot = {}
        self.metrics_text = None
        was_ready, self.ready = self.ready, False
        if self.pool.stopping:
            self._answer_pending()
            return
        lived = time.monotonic() - self.started_at
        self.quick_deaths = self.quick_deaths + 1 if lived < STEADY else 1
        # A worker that served and died for the first time in a while comes
        # back at once; one that keeps dying, or cannot start, after a pause.
        step = self.quick_deaths - 1 if was_ready else self.quick_deaths
        delay = RESTART_DELAYS[min(step, len(RESTART_DELAYS) - 1)]
        log.error("worker %d (pid %d) %s; starting it again%s", self.number, self.pid,
                  "exited with code %d" % code if code >= 0 else "was killed by signal %d" % -code,
                  " in %.1f s" % delay if delay else "")
        if was_ready and not delay:
            # Its sessions are gone: the commands it had not answered run again
            # on the new worker, once (a command that kills workers is not retried).
            kept = collections.deque()
            for request in self.pending:
                if request.message[0] == ch.COMMAND and not request.retried:
                    request.retried = True
                    kept.append(request)
                else:
                    _answer(request, None)
            self.pending = kept
            self.start()
        else:
            self._mark_down()
            gevent.spawn_later(delay, self._restart)

    def _restart(self):
        if not self.pool.stopping:
            self.start()

    def _mark_down(self):
        self.down = True
        self._answer_pending()

    def _answer_pending(self):
        while self.pending:
            _answer(self.pending.popleft(), None)

    # --- requests -------------------------------------------------------------

    def request(self, *message, sheddable=False):
        """Send ``message`` and wait for the reply; None if the worker cannot
        answer (it is down, or died twice with this command); QUEUE_FULL if
        the command is ``sheddable`` and MAX_PENDING commands wait, or the
        oldest has waited QUEUE_TARGET (not sent); ch.SHED if the worker found
        it past its deadline (and counted it)."""
        if self.down or self.pool.stopping:
            return None
        now = time.monotonic()
        pending = self.pending
        if sheddable and pending and (len(pending) >= MAX_PENDING
                                      or now - pending[0].queued > QUEUE_TARGET):
            return QUEUE_FULL
        result = AsyncResult()
        pending.append(_Request(message, now, result.set))
        self.send(*message)
        return result.get()

    def ask(self, *message, timeout=ASK_TIMEOUT):
        """As ``request``, for a question every worker is asked (I, G,
        --metrics, listings): None if the worker has not answered in
        ``timeout`` s. The request then stays in ``pending``, so the late
        reply is matched to it (and dropped), not to a later request; until
        it comes, the worker is not asked again (None at once). None at once
        too while it starts again: the new process has no figures yet."""
        if self.stalled is not None and not self.stalled.ready():
            return None
        if self.down or self.pool.stopping or not self.ready:
            return None
        result = AsyncResult()
        self.pending.append(_Request(message, time.monotonic(), result.set))
        self.send(*message)
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            self.stalled = result
            now = time.monotonic()
            if now - self.warned_at >= STALL_WARNING_INTERVAL:
                self.warned_at = now
                log.warning("worker %d did not answer in %.1f s; its last figures are used",
                            self.number, timeout)
            return None

    def submit(self, message, done, again=False):
        """A sheddable command without waiting (the UDP path): ``done(reply)``
        runs later, in this link's reader (or as the worker's end answers its
        requests: None), and must not wait. False if it was shed before it
        was sent (as request's QUEUE_FULL). The caller checks ``down``.
        ``again``: a retransmission taking the place of its command, which
        the worker shed past its deadline: not held to the queue's time bound
        (the worker runs, and the commands ahead of it may be stale ones
        it sheds at once)."""
        now = time.monotonic()
        pending = self.pending
        if pending and (len(pending) >= MAX_PENDING or (
                not again and now - pending[0].queued > QUEUE_TARGET)):
            return False
        pending.append(_Request(message, now, done))
        if self.ready:
            batch = self.batch
            if not batch:
                self.pool.unsent.append(self)
            batch.append(message[1:])
        return True

    def flush(self):
        """Send the commands ``submit`` queued: one message for all of them."""
        batch = self.batch
        if batch and self.ready:
            self.batch = []
            if len(batch) == 1:
                self.link.send(ch.COMMAND, *batch[0])
            else:
                self.link.send(ch.COMMANDS, batch)

    def send(self, *message):
        """Send ``message`` now if the worker is up, after the commands
        ``submit`` queued (replies come in the order requests were sent)."""
        if self.ready:
            if self.batch:
                self.flush()
            self.link.send(*message)

    def stop(self):
        if self.pid is None:
            return
        self.send(ch.STOP)
        self.exited.wait(STOP_TIMEOUT)
        if not self.exited.ready():
            log.error("worker %d (pid %d) did not stop; killing it", self.number, self.pid)
            os.kill(self.pid, signal.SIGKILL)
            self.exited.wait()


def _answer(request, answer):
    """Hand a request its reply. A completion that fails must not stop the
    reader it runs in (every later reply of the worker would be lost)."""
    try:
        request.done(answer)
    except Exception:
        log.exception("completing a command failed")


def _start_process(argv, fds):
    """A worker process; its pid. At startup, before this process has an event
    loop (and before -u), a fork that runs the worker at once: no interpreter
    start, and it drops privileges itself. Later (restarts) a fresh
    interpreter running worker.main, as the user this process
    runs as: with -u that user must be able to read the Python installation
    (as the Debian package's user can). A fork of a process whose event loop
    runs would carry that loop's greenlets and watchers along."""
    if get_hub_if_exists() is None:
        pid = os.fork()
        if pid == 0:
            _run_forked(argv, fds)
        return pid
    for fd in fds:
        os.set_inheritable(fd, True)
    null = os.open(os.devnull, os.O_RDWR)
    # this very package, whatever the current directory holds
    code = "import sys; sys.path.insert(0, %r); from rtpproxy_py.worker import main; sys.exit(main())" % (
        _PACKAGE_PARENT)
    try:
        # stdin and stdout may be a stdio: control channel: not the worker's
        return os.posix_spawn(sys.executable, [sys.executable, "-c", code] + argv, os.environ,
                              file_actions=[(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)])
    finally:
        os.close(null)


def _run_forked(argv, keep):
    """In the forked child: keep stderr, the channel and the port table only
    (not the control sockets, the pid file, a daemonizing parent's pipe)."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        keep = sorted(keep)
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 16)
        from . import worker
        code = worker.main(argv)
    except BaseException:
        log.exception("worker %s failed", argv[-1])
    finally:
        daemon_log.flush_held_lines()    # os._exit skips logging.shutdown
        os._exit(code or 0)


def _reap(pid):
    """Wait (without blocking the loop) for ``pid`` to exit; its exit code,
    negative for a signal."""
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        if done:
            return os.waitstatus_to_exitcode(status)
        gevent.sleep(0.02)


class Workers:
    """The worker processes, and what the front end asks of all of them."""

    def __init__(self, config, notifier, to_syslog):
        self.config = config
        self.notifier = notifier
        self.to_syslog = to_syslog
        self.ports = SharedPortTable(config.port_min, config.port_max)
        self.links = [WorkerLink(self, k + 1) for k in range(config.workers)]
        self.retired = {}            # counters of workers that died
        self.placed = {}             # Call-ID -> WorkerLink: calls its hash worker could not take
        self.unsent = []             # links with submitted commands to send (flush)
        self.stopping = False
        self.deorbiting = False
        self.on_idle = None
        self.worker_ready = Event()

    def launch(self):
        """Fork every worker, now that this process has no event loop yet.
        They wait for their configuration (``watch``): a start that fails later
        (-u, its checks) leaves them to exit without a word."""
        # Everything made so far (modules, configuration: most of the heap)
        # lives as long as the processes: out of the collector's reach, a
        # full collection in any process walks only what came after. Under a
        # flood such a collection took 60-130 ms (media and commands wait
        # meanwhile), 12-46 ms with this; and the workers' collections no
        # longer write to the inherited pages (fewer copied on write).
        gc.freeze()
        for link in self.links:
            link.launch()

    def watch(self):
        """Configure the workers and follow them; commands wait for a worker
        until it is ready. True once every worker serves."""
        for link in self.links:
            link.watch()
        deadline = time.monotonic() + START_TIMEOUT
        while not all(link.ready for link in self.links):
            if time.monotonic() > deadline:
                log.error("workers %s are not ready after %d s", " ".join(
                    str(link.number) for link in self.links if not link.ready), START_TIMEOUT)
                return False
            self.worker_ready.clear()
            self.worker_ready.wait(0.1)
        log.info("%d workers serving, pids %s", len(self.links),
                 " ".join(str(link.pid) for link in self.links))
        return True

    def flush(self):
        """Send what was submitted: each worker's commands in one message."""
        unsent = self.unsent
        while unsent:
            unsent.pop().flush()

    def for_call(self, call_id):
        link = self.placed.get(call_id)
        if link is not None:
            return link
        return self.links[worker_for(call_id, len(self.links))]

    def ask_all(self, *message, bounded=True):
        """Send ``message`` to every worker at once; their replies (None for a
        worker that cannot answer, or, if ``bounded``, has not in
        ASK_TIMEOUT), in worker order."""
        jobs = [gevent.spawn(link.ask if bounded else link.request, *message)
                for link in self.links]
        gevent.joinall(jobs)
        return [job.value for job in jobs]

    def stats(self, values, live, names=None):
        """Add every worker's I/G figures (and dead workers' last ones) to the
        front end's own ``values`` and ``live``."""
        answers = self.ask_all(ch.STATS, None if names is None else list(names))
        # Added up only now: a worker that exited while we waited has moved
        # its last figures from its snapshot to the retired ones.
        total = add_values(dict(values), self.retired)
        for link, answer in zip(self.links, answers):
            if answer is not None:
                add_values(total, answer[0])
                live += answer[1]
            else:
                # stopping, down or stuck: its last report (until it exits
                # and its counters join the retired ones)
                add_values(total, link.snapshot)
        return total, live

    def delete_all(self):
        self.ask_all(ch.DELETE_ALL, bounded=False)
        self.placed.clear()

    def deorbit(self, on_idle):
        self.deorbiting = True
        self.on_idle = on_idle
        for link in self.links:
            link.send(ch.DEORBIT)
        self.check_idle()

    def check_idle(self):
        if self.deorbiting and self.on_idle is not None and all(
                link.idle or link.down for link in self.links):
            self.on_idle()

    def notify(self, target_text, tag, source_ip, local_ip):
        for target in self.config.notify_targets:
            if target.text == target_text:
                self.notifier.notify(target, tag, source_ip, local_ip)
                return

    def stop(self):
        # Each worker's figures as it stops serving: what I and G answered
        # meanwhile add up (a worker may not have sent its first snapshot yet).
        jobs = [gevent.spawn(link.request, ch.STATS) for link in self.links]
        gevent.joinall(jobs, timeout=STATS_AT_STOP_TIMEOUT)
        for link, job in zip(self.links, jobs):
            if job.ready() and job.value is not None:
                link.snapshot = job.value[0]
        self.stopping = True
        gevent.killall(jobs, block=False)
        gevent.joinall([gevent.spawn(link.stop) for link in self.links])


class _NoMedia:
    """The front end's stand-in for a relay: it never holds a session, so the
    commands it answers itself fail as they do for an unknown session."""

    def open_leg(self, session, leg, local):
        raise PortsExhausted()

    def route_source(self, host, family):
        return route_source(host, family)


class FrontDispatcher(Dispatcher):
    """Dispatcher.execute for the front end: a command naming a Call-ID runs on
    that Call-ID's worker; V, VF, I, G, X and malformed commands run here."""

    concurrent = True    # execute waits for workers: transports serve commands side by side
    runs_modules = False     # each worker runs the modules for its sessions

    def __init__(self, config, workers, notifier, clock):
        super().__init__(config, _NoMedia(), notifier, clock)
        self.workers = workers

    def execute(self, data, ctx=None):
        # Only what routing needs is read here; the worker parses the command
        # (one parse per command, issue 17). A command that fails the checks
        # every command shares is answered (and counted) here; one that fails
        # its own grammar is answered by the worker, with the same error.
        try:
            call_id, new_session, fork_source = route(data)
        except Exception:
            call_id = None              # malformed: answered (and counted) here
        if call_id is not None:
            ctx = ctx or CommandContext()
            message = (ch.COMMAND, bytes(data), ctx.source_ip, ctx.local_ip, ctx.deadline)
            link = self._worker_for(call_id, fork_source)
            text = link.request(*message, sheddable=bool(ctx.deadline))
            if text == _SESSION_REFUSED and new_session:
                text = self._place_elsewhere(call_id, link, message) or text
            if text is QUEUE_FULL:
                count_shed(self.tally, "a worker has %d commands waiting, or one for %d ms" % (
                    MAX_PENDING, QUEUE_TARGET * 1000))
                return None
            if text is ch.SHED:
                return None             # counted by the worker
            if text is not None:
                return text
        return super().execute(data, ctx)

    def submit(self, data, source_ip, local_ip, deadline, done, again=False):
        """The UDP path without a greenlet per command: a command that names a
        Call-ID is sent to its worker and this returns; ``done(text)`` runs once
        it is answered (from the worker link's reader), ``done(None)`` if it
        was shed (counted). As ``execute``, but False (nothing done) for what
        may wait on the way: a command that is not routed (V, VF, I, G, X,
        malformed), a U that may fork another call's streams, a worker that
        is down; the transport runs ``execute`` in a greenlet for those.
        Sent by ``flush``, with the other commands started meanwhile. A
        worker's E72 to a new session (placement elsewhere) and a worker that
        cannot answer take a greenlet on the way back. ``again``: a
        retransmission whose command was shed (WorkerLink.submit)."""
        try:
            call_id, new_session, fork_source = route(data)
        except Exception:
            return False
        workers = self.workers
        if call_id is None or workers.stopping:
            return False
        link = workers.for_call(call_id)
        if link.down or (fork_source is not None and fork_source != call_id and call_id not in
                         workers.placed and workers.for_call(fork_source) is not link):
            # A U forking a call of another worker: where it runs takes a
            # round trip (_worker_for). One forking its own worker's call is
            # sent here, so the call's next commands read with it follow it.
            return False
        message = (ch.COMMAND, bytes(data), source_ip, local_ip, deadline)

        def answered(text):
            if text is None or (new_session and text == _SESSION_REFUSED):
                gevent.spawn(self._answer_slowly, text, data, CommandContext(source_ip, local_ip, deadline),
                             call_id, link, message, done)
            else:
                done(None if text is ch.SHED else text)    # ch.SHED: counted by the worker

        if not link.submit(message, answered, again):
            count_shed(self.tally, "a worker has %d commands waiting, or one for %d ms" % (
                MAX_PENDING, QUEUE_TARGET * 1000))
            done(None)
        return True

    def flush(self):
        """Send the commands ``submit`` started (the transport calls it once
        it has started what it read): one channel message per worker."""
        self.workers.flush()

    def _answer_slowly(self, text, data, ctx, call_id, link, message, done):
        """submit's rare ends, as execute has them: E72 to a new session (its
        worker is full: another one may take it), or no answer from the
        worker (it is down: answered here, as for an unknown session)."""
        answer = None
        try:
            if text is not None:
                answer = self._place_elsewhere(call_id, link, message) or text
            else:
                answer = Dispatcher.execute(self, data, ctx)
        finally:
            done(answer)

    def _worker_for(self, call_id, source):
        """The worker that runs a command for ``call_id``. A new Call-ID whose U
        forks another call's streams (``&& C``, from ``source``) joins the worker
        holding that call, since a fork needs both sessions in one process; it
        stays there until its last session ends (the worker reports GONE)."""
        workers = self.workers
        link = workers.for_call(call_id)
        if source is None or source == call_id or call_id in workers.placed:
            return link
        holder = workers.for_call(source)
        if holder is link or link.request(ch.ADMIN, call_id, 0):
            return link         # same worker, or the Call-ID has sessions on its own
        workers.placed[call_id] = holder
        return holder

    def _place_elsewhere(self, call_id, refused, message):
        """-L is per process: a new session its worker refused goes to the
        first other worker that takes it; None if none does."""
        workers = self.workers
        if call_id in workers.placed or refused.request(ch.ADMIN, call_id, 0):
            return None         # the Call-ID has sessions there: they keep it there
        for link in workers.links:
            if link is refused or call_id in workers.placed:
                continue
            text = link.request(*message)
            if isinstance(text, str) and not text.startswith("E"):
                workers.placed[call_id] = link
                return text
        return None

    def stat_values(self, names=None):
        values, live = super().stat_values(names)
        return self.workers.stats(values, live, names)

    def handle_delete_all(self, cmd, ctx):
        self.workers.delete_all()
        return reply.number(0)

    def start_deorbit(self):
        self.deorbiting = True
        self.workers.deorbit(lambda: self.on_idle and self.on_idle())

    def close_all(self):
        pass                 # the workers close their own sessions when stopped


class WorkersMedia:
    """The media back end of the daemon with --workers N > 1 (service.Service
    gives it the process life, control sockets and signals): FrontDispatcher
    with the worker processes behind it."""

    def __init__(self, config):
        self.config = config
        self.notifier = self.workers = self.dispatcher = self.metrics = None

    def build(self):
        from .notify import Notifier

        config = self.config
        if config.kernel_offload:
            from .offload import unusable
            why = unusable(config)
            if why is not None:     # said once here rather than by every worker
                log.warning("--kernel_offload: %s; relaying every stream in user space", why)
                config.kernel_offload = False
        if config.modules:
            # Start and stop the modules once here, so that a module that cannot
            # start (modules.md 2.5) stops the daemon before any worker runs.
            from .modules.host import ModuleHost
            ModuleHost(config.modules, None).start()
        self.notifier = Notifier()
        to_syslog = not config.foreground and not config.no_redirect
        self.workers = Workers(config, self.notifier, to_syslog)
        self.workers.launch()
        self.dispatcher = FrontDispatcher(config, self.workers, self.notifier, time.monotonic)

    def serving(self, announce):
        """Runs once the service waits for work, i.e. after -u and its checks
        passed: configure the workers; ready only once every worker serves."""
        def watch():
            if self.workers.watch():
                announce()
        gevent.spawn(watch)

    def start_metrics(self, metrics_sock):
        """--metrics: the front end serves every process's figures added up."""
        if self.config.metrics is None:
            return
        from .metrics import MergedCollector, Metrics
        self.metrics = Metrics(self.dispatcher, None)      # the commands it answers itself
        self.dispatcher.metrics = self.metrics

        def fetch():
            texts = [self.metrics.exposition()]
            for link, text in zip(self.workers.links, self.workers.ask_all(ch.METRICS)):
                if text:
                    link.metrics_text = text
                elif text is None and link.metrics_text and not link.down:
                    text = link.metrics_text    # stuck: its last figures
                if text:
                    texts.append(text)
            return texts

        self.metrics.serve(metrics_sock, MergedCollector(fetch))

    def admin_sessions(self, call_id):
        """rtpproxy-ctl's listing: every worker's sessions, a page at a time
        (one Call-ID's: from the worker that holds it)."""
        links = [self.workers.for_call(call_id)] if call_id is not None else self.workers.links
        out = []
        for link in links:
            offset = 0
            while True:
                page = link.ask(ch.ADMIN, call_id, offset)
                if not page:
                    break
                out.extend(page)
                if len(page) < PAGE:
                    break
                offset += PAGE
        return out

    def stop(self):
        self.workers.stop()
