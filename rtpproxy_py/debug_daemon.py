"""rtpproxy_debug: the production daemon plus what a developer needs to see.

* debug-level logging to stderr by default (config.build does that);
* a loop-health line every ``$RTPP_LOOP_HEALTH`` seconds (default 10), with
  what the process holds: sessions, greenlets, file descriptors, resident
  memory (bench/churn.py reads it);
* on exit, a profile file (see debugtools for where it goes) and a leak
  report: the sessions, ports, sockets, greenlets and file descriptors still
  held once every session has ended. A clean run reports "all clear" in the
  log and, as upstream's debug build does, ends by printing exactly
  ``MEMDEB(rtpproxy): all clear`` on stdout (scripts written for upstream
  compare stdout); otherwise that stdout line says what leaked.

None of this adds work to the packet path: the relay's readers are the same
objects as in ``rtpproxy``; the profiler only runs in this build.

``RTPP_DEBUG_LEAK=1`` (this build only) injects a fault: the first session
that ends is neither removed from the session table nor has its sockets
closed, so the leak report has something to find.
"""

import gc
import logging
import os
import weakref

from greenlet import greenlet as raw_greenlet

from . import debugtools
from .config import ConfigError
from .service import LocalMedia, Service

log = logging.getLogger("rtpproxy")

LEAK_ENV = "RTPP_DEBUG_LEAK"


def live_greenlets():
    return [g for g in gc.get_objects() if isinstance(g, raw_greenlet) and not g.dead]


open_fds = debugtools.open_fds


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Snapshot:
    """What the process holds before the first session: the baseline."""

    def __init__(self):
        self.greenlets = weakref.WeakSet(live_greenlets())
        self.fds = open_fds()


class LeakReport:
    """Resources held after every session ended that the baseline did not hold."""

    def __init__(self, media, baseline):
        self.sessions = len(media.dispatcher.table)
        self.ports = len(media.relay.ports.in_use)
        self.sockets = media.relay.open_sockets
        self.greenlets = [g for g in live_greenlets() if g not in baseline.greenlets]
        self.fds = {fd: what for fd, what in open_fds().items() if baseline.fds.get(fd) != what}

    @property
    def clean(self):
        return not (self.sessions or self.ports or self.sockets or self.greenlets or self.fds)

    def text(self):
        counts = "sessions %d, ports %d, sockets %d, greenlets %d, fds %d" % (
            self.sessions, self.ports, self.sockets, len(self.greenlets), len(self.fds))
        if self.clean:
            return "leak report: all clear (%s)" % counts
        details = []
        if self.greenlets:
            details.append("greenlets: " + ", ".join(sorted(_describe(g) for g in self.greenlets)))
        if self.fds:
            details.append("fds: " + ", ".join("%d=%s" % item for item in sorted(self.fds.items())))
        return "leak report: LEAKS after every session ended: %s; %s" % (counts, "; ".join(details))


def _describe(g):
    run = getattr(g, "_run", None) or getattr(g, "run", None)
    return getattr(run, "__qualname__", None) or type(g).__name__


class DebugParts:
    """The debug build's additions to a service (service.Service ``parts``):
    the profile runs from before the event loop starts; the loop-health line
    and the leak baseline start once the service is up; the leak report runs
    after it stopped."""

    def __init__(self):
        try:
            self.health_period = debugtools.env_seconds(
                debugtools.LOOP_HEALTH_ENV, debugtools.LOOP_HEALTH_PERIOD)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        # Resolved now: daemonizing changes directory later.
        self.profile = debugtools.Profile("rtpproxy_debug", log)
        self.media = self.health = self.baseline = None

    def before_start(self, service):
        self.profile.start()

    def started(self, service):
        self.media = service.media
        self.health = debugtools.LoopHealth(log, self.health_period, extra=self.resources)
        self.health.start()
        if os.environ.get(LEAK_ENV):
            self._inject_leak()
        self.baseline = Snapshot()

    def resources(self):
        return "holding sessions %d, greenlets %d, fds %d, rss %d kB" % (
            len(self.media.dispatcher.table), len(live_greenlets()), len(open_fds()), rss_kb())

    def stopped(self, service):
        self.health.stop()
        self.profile.finish()   # first, so the report's own work is not in it
        import gevent
        gevent.sleep(0.05)      # let the greenlets killed above unwind
        report = LeakReport(self.media, self.baseline)
        log.log(logging.INFO if report.clean else logging.ERROR, "%s", report.text())
        debugtools.print_verdict("rtpproxy", None if report.clean else report.text())

    def _inject_leak(self):
        table, relay = self.media.dispatcher.table, self.media.relay
        real_remove, real_ended = table.remove, relay.session_ended
        leaked = []

        def remove(session):
            if not leaked:
                leaked.append(session)
                log.warning("%s: leaking session %s on purpose", LEAK_ENV, session.call_id)
                return
            real_remove(session)

        def session_ended(session):
            if session not in leaked:
                real_ended(session)

        table.remove = remove
        relay.session_ended = session_ended


def debug_service(config):
    """rtpproxy_debug's service: the single-process one with DebugParts."""
    return Service(config, LocalMedia(config), parts=[DebugParts()])
