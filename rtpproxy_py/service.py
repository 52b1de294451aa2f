"""The daemon's process life, built from its parts (issue 17).

``Service`` owns what every run of the daemon has: the control sockets, the
admin socket, the metrics endpoint, the pid file, daemonizing, -u, signals,
the once-a-second statistics and the shutdown order. What executes the
commands is a *media back end* it is given:

* ``LocalMedia``: the in-process relay, notifier and dispatcher (the
  single-process daemon, and each --workers worker);
* ``workers.WorkersMedia``: the --workers front end, whose dispatcher sends
  commands to worker processes.

Optional *parts* (the debug build's loop health, profile and leak report,
debug_daemon.py) join by composition: each may define ``before_start``,
``started`` and ``stopped``, called with the service.

main.py only parses the command line and picks which service to run.
"""

import gc
import logging
import os
import signal
import time

from . import daemon, daemon_log, sd_daemon, version_string
from .config import ConfigError, unix_path_meant_as_udp

log = logging.getLogger("rtpproxy")

STATS_INTERVAL = 1.0
# The collector's youngest generation is collected after this many more
# container objects were made than freed (Python's default: 700). A session
# is freed by reference counting (Session.release), so those collections
# found almost nothing, but with calls in flight they ran every ~14 U+L+D
# cycles and pushed the live sessions on into the older generations, whose
# collections then walked the whole heap: about 10 us of CPU per cycle
# (bench/control_cycle.py, BENCHMARKS.md). 10x the default: about 1 us.
GC_YOUNG_THRESHOLD = 7000


class LocalMedia:
    """The relay, the notifier and the dispatcher in this process.

    ``ports`` and ``notifier`` stand in for the relay's own port table and a
    notify.Notifier (a --workers worker passes the shared port table and its
    channel to the front end)."""

    def __init__(self, config, ports=None, notifier=None):
        self.config = config
        self._ports = ports
        self._notifier = notifier
        self.relay = self.notifier = self.dispatcher = self.recordings = None
        self.metrics = None

    def build(self):
        from .dispatcher import Dispatcher
        from .notify import Notifier
        from .recording import Recordings
        from .relay import Relay

        config = self.config
        self.relay = Relay(config, clock=time.monotonic, ports=self._ports)
        self.notifier = self._notifier if self._notifier is not None else Notifier()
        self.dispatcher = Dispatcher(config, self.relay, self.notifier, time.monotonic)
        self.relay.on_expired = self.dispatcher.expire
        self.recordings = Recordings(config, self.relay)
        self.dispatcher.recorder = self.recordings

    def start_metrics(self, metrics_sock):
        """--metrics: count commands, and serve /metrics if this process
        holds the endpoint (a --workers worker only counts; the front end
        asks it for its figures)."""
        if self.config.metrics is None:
            return
        from .metrics import Metrics
        self.metrics = Metrics(self.dispatcher, self.relay)
        self.dispatcher.metrics = self.metrics
        if metrics_sock is not None:
            self.metrics.serve(metrics_sock)

    def serving(self, announce):
        """Every control socket is bound and served as soon as the service
        waits: ready now."""
        announce()

    def admin_sessions(self, call_id):
        """rtpproxy-ctl's session listing (all, or one Call-ID's)."""
        from .admin import local_sessions
        return local_sessions(self, call_id)

    def stop(self):
        """Every session ended."""
        self.dispatcher.close_all()
        self.dispatcher.close_modules()     # after the last session's accounting
        self.recordings.shutdown()    # every recording flushed, closed and moved
        self.relay.shutdown()


class Service:
    def __init__(self, config, media, parts=()):
        self.config = config
        self.media = media
        self.parts = list(parts)
        self.metrics_sock = None
        self.servers = []
        self.admin = None               # admin.AdminServer with --admin_socket
        self.stopping = False
        self.stop_event = None

    @property
    def dispatcher(self):
        return self.media.dispatcher

    def _check_root(self):
        c = self.config
        if os.geteuid() != 0 or c.user is not None or c.allow_root:
            return
        if any(s.kind in ("udp", "udp6") for s in c.controls):
            raise ConfigError(
                "refusing to run as root with a UDP control socket (anyone who can send it a "
                "datagram controls the relay); add -u user[:group] to drop privileges, or -F to "
                "run as root anyway.")
        log.warning("running as root without -u; consider -u user[:group]")

    def run(self):
        config = self.config
        daemon.setup_logging(config, to_syslog=False)
        self._check_root()
        try:
            return self._run()
        except BaseException:
            for server in self.servers + [self.admin]:   # unix socket files go away on a failed start
                if server is not None:
                    server.close()
            raise

    def _run(self):
        config = self.config
        from .control.transports import open_control
        for spec in config.controls:
            self.servers.append(open_control(spec, config))
        if config.admin_socket is not None:
            from .admin import AdminServer
            self.admin = AdminServer(config.admin_socket, config)
        self.metrics_sock = None
        if config.metrics is not None:
            from . import metrics
            self.metrics_sock = metrics.listen(config.metrics)
        for spec in config.controls:
            meant = unix_path_meant_as_udp(spec)
            if meant:
                log.warning("-s %s is a unix socket path (a file of that name in the working "
                            "directory), as with upstream; for a UDP control socket write -s %s",
                            spec.text, meant)
        for server in self.servers:
            host = server.spec.host     # None for unix sockets, also those systemd passes
            if server.spec.kind in ("udp", "udp6", "tcp", "tcp6", "systemd") and host and host not in (
                    "127.0.0.1", "::1") and not host.startswith("127."):
                log.warning("control socket %s is reachable from the network and the protocol has "
                            "no authentication; firewall it", server.spec.text)
        if config.nofile is not None:
            refused = daemon.set_open_files(config.nofile)
            if refused:
                raise ConfigError(refused)     # as upstream: -L it cannot have is fatal
        daemon.set_priority(config)
        pidfile = self._open_pidfile()
        ready_fd = None
        if not config.foreground:
            ready_fd = daemon.daemonize(config.no_chdir, redirect=not config.no_redirect)
            daemon.setup_logging(config, to_syslog=not config.no_redirect)
        try:
            # Everything is imported and set up before -u takes effect: the new user
            # may not be able to read the Python installation.
            self.start()
            daemon.drop_privileges(config)
            daemon.check_directories(config)
            daemon.check_media_ports(config)
        except ConfigError as exc:
            daemon.report_ready(ready_fd, str(exc))
            raise
        except Exception as exc:     # one sentence, also from the daemonized child
            if isinstance(exc, OSError):
                message = "startup failed: %s" % exc
            else:
                message = "startup failed (%s: %s); this is a bug, please report it." % (type(exc).__name__, exc)
            daemon.report_ready(ready_fd, message)
            raise ConfigError(message) from None
        pidfile.write()
        daemon.report_ready(ready_fd)
        for server in self.servers:
            log.debug("control socket %s open", server.spec.text)
        log.info("%s", self.start_line())
        self.media.serving(self.announce)
        try:
            self.stop_event.wait()
        finally:
            sd_daemon.notify("STOPPING=1")
            self.shutdown()
            pidfile.remove()
        return 0

    def announce(self):
        """Readiness to systemd (Type=notify), after the log lines of the
        start-up (held until the loop turn ends otherwise), so what READY
        follows is in the log when the manager hears it."""
        daemon_log.write_held_lines()
        sd_daemon.notify("READY=1\nSTATUS=serving %d control socket%s\nMAINPID=%d" % (
            len(self.servers), "" if len(self.servers) == 1 else "s", os.getpid()))

    def start_line(self):
        """What an operator checks first when audio is one-way: where the
        proxy reaches the relay, where media is bound and which address
        replies carry, the port range and the processes."""
        c = self.config
        roles = {}
        if c.bridge is not None:
            roles = {id(c.bridge[0]): "internal", id(c.bridge[1]): "external"}
        media = []
        for address in c.all_listen():
            text = ("all %s addresses" % ("IPv6" if address.ipv6 else "IPv4")) if address.wildcard else address.host
            notes = [roles[id(address)]] if id(address) in roles else []
            if address.label:
                notes.append("label %s" % address.label)
            if address.advertised:
                notes.append("advertised as %s" % address.advertised)
            media.append(text + (" (%s)" % ", ".join(notes) if notes else ""))
        processes = "%d workers" % c.workers if c.workers > 1 else "1 process"
        return "rtpproxy-py %s started, pid %d; control %s; media on %s; ports %d-%d; %s" % (
            version_string(), os.getpid(), ", ".join(server.spec.text for server in self.servers),
            ", ".join(media), c.port_min, c.port_max + 1, processes)

    def _open_pidfile(self):
        config = self.config
        try:
            return daemon.PidFile(config.pidfile)
        except OSError as exc:
            if config.pidfile_given:
                # the operator named it (init scripts, monitors read it): refuse
                raise ConfigError("-p %s: cannot write the pid file (%s); choose a writable path or "
                                  "-p /dev/null." % (config.pidfile, exc.strerror)) from None
            # the default path (an unprivileged user, a read-only /var/run): upstream
            # logs it and runs on
            log.warning("cannot write the pid file %s (%s); running without one (-p names "
                        "another, -p /dev/null asks for none)", config.pidfile, exc.strerror)
            return daemon.PidFile(None)

    def start(self):
        """The event loop, the media back end, the control sockets, signals.
        A --workers worker calls this without control sockets."""
        import gevent
        from gevent.event import Event

        for part in self.parts:
            getattr(part, "before_start", _nothing)(self)
        gevent.reinit()
        self.stop_event = Event()
        media = self.media
        media.build()
        media.start_metrics(self.metrics_sock)
        dispatcher = media.dispatcher
        dispatcher.on_idle = self.stop_event.set
        only_stdio = len(self.servers) == 1
        for server in self.servers:
            on_eof = None
            if server.spec.kind == "stdioc" or (server.spec.kind == "stdio" and only_stdio):
                on_eof = self.deorbit
            server.start(dispatcher, on_eof)
        if self.admin is not None:
            self.admin.start(media.admin_sessions, dispatcher)
        gevent.signal_handler(signal.SIGTERM, self._on_stop_signal, signal.SIGTERM)
        gevent.signal_handler(signal.SIGINT, self._on_stop_signal, signal.SIGINT)
        gevent.signal_handler(signal.SIGHUP, self.deorbit)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        gevent.spawn(self._stats_ticker)
        for part in self.parts:
            getattr(part, "started", _nothing)(self)
        settle_collector()

    def _stats_ticker(self):
        import gevent
        dispatcher = self.media.dispatcher
        while True:
            gevent.sleep(STATS_INTERVAL)
            now = time.monotonic()
            counters = dispatcher.counters
            counters.sample_pps(dispatcher.table, now)
            dispatcher.tidy()
            cpu = os.times()
            counters.sample_load(cpu.user + cpu.system, now)

    def deorbit(self):
        log.warning("graceful shutdown: no new sessions; exiting when the last one ends")
        self.media.dispatcher.start_deorbit()

    def _on_stop_signal(self, signum):
        if self.stopping:
            _exit_now(128 + signum)
        self.stopping = True
        # A second SIGTERM/SIGINT during shutdown forces the exit at once.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, frame: _exit_now(128 + number))
        log.warning("signal %d: shutting down", signum)
        self.stop_event.set()

    def shutdown(self):
        media = self.media
        media.stop()
        for server in self.servers:
            server.close()
        if self.admin is not None:
            self.admin.close()
        media.notifier.close()
        if media.metrics is not None:
            media.metrics.close()
        log.info("stopped")
        for part in self.parts:
            getattr(part, "stopped", _nothing)(self)


def settle_collector() -> None:
    """After start-up: what it made (modules, configuration, the event loop:
    most of the heap) is left out of every later collection (gc.freeze, as
    the --workers front end does before it forks), so a full collection
    walks only what came after; and the youngest generation is collected
    less often (GC_YOUNG_THRESHOLD)."""
    gc.collect()        # start-up's garbage is freed, not kept frozen
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _nothing(service):
    pass


def _exit_now(code: int) -> None:
    """A forced exit (a second stop signal): the held log lines first
    (os._exit skips logging.shutdown)."""
    daemon_log.flush_held_lines()
    os._exit(code)
