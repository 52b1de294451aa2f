"""What the debug builds add, shared by rtpproxy_debug, makeann_debug and
extractaudio_debug: debug logging, a profile of where time went written on
exit, and a measure of how late the event loop runs its timers.

The production commands never import this module.

A profile is written only when ``$RTPP_PROFILE`` names where: a file name, or
an existing directory to put ``PROGRAM.PID.pstats`` in. Unset, empty or
``off``: nothing is profiled and no file is left anywhere (scripts run the
debug builds in their own directories; the profiler also makes the daemon
about four times slower). Read a profile with ``python3 -m pstats FILE``.

A tool's ``_debug`` entry point is one line::

    def main_debug():
        return debugtools.run_debug(main, "makeann_debug", debug=True)
"""

import cProfile
import io
import logging
import os
import pstats
import sys
import time

PROFILE_ENV = "RTPP_PROFILE"
LOOP_HEALTH_ENV = "RTPP_LOOP_HEALTH"     # seconds between loop-health lines
LOOP_HEALTH_PERIOD = 10.0
LOOP_HEALTH_TICK = 0.05                  # the probe timer's interval
TOP_FUNCTIONS = 12                       # how many profile lines go to the log


def setup_debug_logging(level=logging.DEBUG):
    """Everything at ``level`` to stderr, for the tools (the daemon has its own)."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def env_seconds(name, default):
    """A positive number of seconds from the environment, or ``default``."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError("%s=%s: give a positive number of seconds." % (name, text))
    return value


class Profile:
    """cProfile over the whole run; ``finish()`` writes the pstats file.

    The destination is resolved at construction, so a daemon that changes
    directory when it detaches still writes where it was started (a relative
    ``$RTPP_PROFILE`` is relative to the starting directory)."""

    def __init__(self, program, log=None):
        self.program = program
        self.log = log
        # CPU time, not wall time: the hours a daemon waits in the loop would
        # otherwise bury the work (and greenlet switches skew wall time).
        self.profiler = cProfile.Profile(time.process_time)
        wanted = os.environ.get(PROFILE_ENV)
        self.off = not wanted or wanted == "off"
        self.directory = self.filename = None
        if self.off:
            return
        if os.path.isdir(wanted):
            self.directory = os.path.abspath(wanted)
        else:
            self.filename = os.path.abspath(wanted)

    def path(self):
        """The file name; the pid is the one at exit (after any fork)."""
        if self.filename:
            return self.filename
        return os.path.join(self.directory, "%s.%d.pstats" % (self.program, os.getpid()))

    def start(self):
        if not self.off:
            self.profiler.enable()

    def finish(self):
        """Stop profiling, write the file and say where it is. Returns the path
        or None when it could not be written (said too, with the reason)."""
        if self.off:
            return None
        self.profiler.disable()
        path = self.path()
        try:
            self.profiler.dump_stats(path)
        except OSError as exc:
            self._say(logging.WARNING, "%s: cannot write the profile to %s (%s); set %s to a "
                      "writable file or directory." % (self.program, path, exc.strerror, PROFILE_ENV))
            return None
        self._say(logging.INFO, "%s: profile of where time went written to %s "
                  "(read it with: python3 -m pstats %s)" % (self.program, path, path))
        if self.log is not None and self.log.isEnabledFor(logging.DEBUG):
            for line in self.top_functions():
                self.log.debug("profile: %s", line)
        return path

    def top_functions(self, limit=TOP_FUNCTIONS):
        """The heaviest functions by own time, as pstats prints them."""
        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out)
        stats.sort_stats("tottime").print_stats(limit)
        lines = out.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), None)
        return [line for line in lines[start:] if line.strip()] if start is not None else []

    def _say(self, level, message):
        if self.log is not None:
            self.log.log(level, "%s", message)
        else:
            sys.stderr.write(message + "\n")


def print_verdict(name: str, leaks: str | None) -> None:
    """Upstream's memory-debug verdict on stdout: ``MEMDEB(name): all clear``
    when ``leaks`` is empty, else ``MEMDEB(name): `` and what leaked."""
    line = "MEMDEB(%s): %s\n" % (name, leaks if leaks else "all clear")
    try:
        sys.stdout.write(line)
        sys.stdout.flush()
    except (OSError, ValueError):       # stdout closed (a detached daemon): nothing to tell
        pass


def open_fds() -> dict:
    """fd -> what it is (readlink of /proc/self/fd/N); empty where /proc is missing."""
    fds = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return fds
    for name in names:
        try:
            fds[int(name)] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass          # the directory listing's own fd, already closed
    return fds


def fd_leaks(baseline: dict) -> str:
    """What ``open_fds()`` holds now that ``baseline`` did not, as text ('' if nothing)."""
    leaked = {fd: what for fd, what in open_fds().items() if baseline.get(fd) != what}
    if not leaked:
        return ""
    return "leaked %d file descriptor%s: %s" % (
        len(leaked), "s" if len(leaked) > 1 else "",
        ", ".join("%d=%s" % item for item in sorted(leaked.items())))


def run_debug(main, program, *args, verdict=None, **kwargs):
    """Run a tool's ``main(*args, **kwargs)`` as its debug build: debug logging
    to stderr and a profile written on exit (also when main raises or calls
    sys.exit). ``verdict``: the name under which the end-of-run leak check
    (file descriptors the run opened and did not close) prints upstream's
    ``MEMDEB(name): ...`` line on stdout; None prints none (makeann_debug,
    as upstream)."""
    setup_debug_logging()
    profile = Profile(program)
    baseline = open_fds()
    profile.start()
    try:
        return main(*args, **kwargs)
    finally:
        profile.finish()
        if verdict is not None:
            print_verdict(verdict, fd_leaks(baseline))


class LoopHealth:
    """Measures how late the gevent loop runs a timer due every ``tick``
    seconds and logs one line per ``period``: the loop's lag is what every
    session timer, playback and reply waits on top of its own work."""

    def __init__(self, log, period=LOOP_HEALTH_PERIOD, tick=LOOP_HEALTH_TICK, clock=time.monotonic,
                 extra=None):
        self.log = log
        self.period = period
        self.tick = tick
        self.clock = clock
        self.extra = extra        # a callable whose text is appended to each line
        self.greenlet = None

    def start(self):
        import gevent
        self.greenlet = gevent.spawn(self._run)

    def stop(self):
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None

    def _run(self):
        import gevent
        clock = self.clock
        lateness = []
        window_start = clock()
        while True:
            due = clock() + self.tick
            gevent.sleep(self.tick)
            lateness.append(clock() - due)
            now = clock()
            if now - window_start >= self.period:
                line = self.describe(lateness, now - window_start)
                if self.extra is not None:
                    line += "; " + self.extra()
                self.log.info("%s", line)
                lateness = []
                window_start = now

    @staticmethod
    def describe(lateness, seconds):
        ordered = sorted(lateness)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return ("loop health: %d timers in %.1f s ran late by avg %.2f ms, p99 %.2f ms, max %.2f ms"
                % (len(ordered), seconds, 1000 * sum(ordered) / len(ordered), 1000 * p99,
                   1000 * ordered[-1]))
