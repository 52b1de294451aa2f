"""Entry points: parse the command line, set the process up, serve until told to stop."""

import logging
import os
import signal
import sys
import time

from . import capabilities, cli, daemon, version_string
from .config import ConfigError

log = logging.getLogger("rtpproxy")

STATS_INTERVAL = 1.0


def main(argv=None, debug_build=False):
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = cli.parse_args(argv)
    except cli.UsageError as exc:
        cli.print_usage_error(str(exc))
        return 2
    if opts["--help"]:
        sys.stdout.write(cli.USAGE)
        return 0
    if opts["-V"]:
        print(version_string())
        return 0
    if opts["-v"]:
        sys.stdout.write(capabilities.listing())
        return 0
    if opts["-C"]:
        print("CLOCK_MONOTONIC")
        return 0
    try:
        from .config import build
        config = build(opts, debug_build=debug_build)
        if debug_build:
            from .debug_daemon import DebugDaemon
            return DebugDaemon(config).run()
        if config.workers > 1:
            from .workers import FrontEnd
            return FrontEnd(config).run()
        return Daemon(config).run()
    except ConfigError as exc:
        sys.stderr.write("rtpproxy: %s\n" % exc)
        return 1


def main_debug():
    """rtpproxy_debug / rtpproxy-debug: the same daemon with debug logging to
    stderr, loop-health lines, a profile and a leak report (debug_daemon.py)."""
    return main(debug_build=True)


class Daemon:
    def __init__(self, config):
        self.config = config
        self.metrics_sock = self.metrics = None
        self.servers = []
        self.admin = None               # admin.AdminServer with --admin_socket
        self.stopping = False

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
        self.metrics_sock = self.metrics = None
        if config.metrics is not None:
            from . import metrics
            self.metrics_sock = metrics.listen(config.metrics)
        for server in self.servers:
            if server.spec.kind in ("udp", "udp6", "tcp", "tcp6") and server.spec.host not in (
                    "127.0.0.1", "::1") and not server.spec.host.startswith("127."):
                log.warning("control socket %s is reachable from the network and the protocol has "
                            "no authentication; firewall it", server.spec.text)
        if config.nofile is not None:
            warning = daemon.set_open_files(config.nofile)
            if warning:
                log.warning(warning)
        daemon.set_priority(config)
        pidfile = self._open_pidfile()
        ready_fd = None
        if not config.foreground:
            ready_fd = daemon.daemonize(config.no_chdir, redirect=not config.no_redirect)
            daemon.setup_logging(config, to_syslog=not config.no_redirect)
        try:
            # Everything is imported and set up before -u takes effect: the new user
            # may not be able to read the Python installation.
            self._start()
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
        for address in config.all_listen():
            log.debug("media address %s%s%s", address.host,
                      " (reported as %s)" % address.advertised if address.advertised else "",
                      " label %s" % address.label if address.label else "")
        log.info("rtpproxy-py %s started, pid %d", version_string(), os.getpid())
        try:
            self.stop_event.wait()
        finally:
            self._shutdown()
            pidfile.remove()
        return 0

    def _open_pidfile(self):
        try:
            return daemon.PidFile(self.config.pidfile)
        except OSError as exc:
            raise ConfigError("-p %s: cannot write the pid file (%s); choose a writable path or "
                              "-p /dev/null." % (self.config.pidfile, exc.strerror)) from None

    def _start(self):
        import gevent
        from gevent.event import Event

        gevent.reinit()
        self.stop_event = Event()
        self._build()
        self._start_metrics()
        self.dispatcher.on_idle = self.stop_event.set
        only_stdio = len(self.servers) == 1
        for server in self.servers:
            on_eof = None
            if server.spec.kind == "stdioc" or (server.spec.kind == "stdio" and only_stdio):
                on_eof = self._deorbit
            server.start(self.dispatcher, on_eof)
        if self.admin is not None:
            self.admin.start(self.admin_sessions, self.dispatcher)
        gevent.signal_handler(signal.SIGTERM, self._on_stop_signal, signal.SIGTERM)
        gevent.signal_handler(signal.SIGINT, self._on_stop_signal, signal.SIGINT)
        gevent.signal_handler(signal.SIGHUP, self._deorbit)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        gevent.spawn(self._stats_ticker)

    def _build(self):
        """What executes commands: the relay, the notifier and the dispatcher.
        A --workers worker process builds the same; the front end overrides it."""
        from .dispatcher import Dispatcher
        from .notify import Notifier
        from .recording import Recordings
        from .relay import Relay

        config = self.config
        self.relay = Relay(config, clock=time.monotonic)
        self.notifier = Notifier()
        self.dispatcher = Dispatcher(config, self.relay, self.notifier, time.monotonic)
        self.relay.on_expired = self.dispatcher.expire
        self.recordings = Recordings(config, self.relay)
        self.dispatcher.recorder = self.recordings

    def _start_metrics(self):
        """--metrics: count commands, and serve /metrics if this process
        holds the endpoint (a --workers worker only counts; the front end
        asks it for its figures)."""
        if self.config.metrics is None:
            return
        from .metrics import Metrics
        self.metrics = Metrics(self.dispatcher, self.relay)
        self.dispatcher.metrics = self.metrics
        if self.metrics_sock is not None:
            self.metrics.serve(self.metrics_sock)

    def admin_sessions(self, call_id):
        """rtpproxy-ctl's session listing (all, or one Call-ID's)."""
        from .admin import local_sessions
        return local_sessions(self, call_id)

    def _stats_ticker(self):
        import gevent
        fd_watch = daemon.FdWatch()
        while True:
            gevent.sleep(STATS_INTERVAL)
            now = time.monotonic()
            counters = self.dispatcher.counters
            counters.sample_pps(self.dispatcher.table, now)
            self.dispatcher.tidy()
            cpu = os.times()
            counters.sample_load(cpu.user + cpu.system, now)
            fd_watch.check(len(self.dispatcher.table))

    def _deorbit(self):
        log.warning("graceful shutdown: no new sessions; exiting when the last one ends")
        self.dispatcher.start_deorbit()

    def _on_stop_signal(self, signum):
        if self.stopping:
            os._exit(128 + signum)
        self.stopping = True
        # A second SIGTERM/SIGINT during shutdown forces the exit at once.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, frame: os._exit(128 + number))
        log.warning("signal %d: shutting down", signum)
        self.stop_event.set()

    def _shutdown(self):
        self._stop_media()
        for server in self.servers:
            server.close()
        if self.admin is not None:
            self.admin.close()
        self.notifier.close()
        if self.metrics is not None:
            self.metrics.close()
        log.info("stopped")

    def _stop_media(self):
        """Every session ended (the --workers front end stops its workers)."""
        self.dispatcher.close_all()
        self.recordings.shutdown()    # every recording flushed, closed and moved
        self.relay.shutdown()
