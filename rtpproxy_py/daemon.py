"""Process life: logging, daemonizing, pid file, privileges, limits."""

import logging
import logging.handlers
import os
import pwd
import resource
import sys
import time

from . import daemon_log, sd_daemon
from .config import ConfigError

log = logging.getLogger("rtpproxy")


def setup_logging(config, to_syslog):
    logger = logging.getLogger("rtpproxy")
    for handler in list(logger.handlers):
        handler.flush()     # the lines a StreamLines holds
        logger.removeHandler(handler)
    logger.setLevel(config.log_level)
    logger.propagate = False
    # No format here shows the caller's file and line or the thread: skip
    # collecting them for every record (the logging HOWTO's "Optimization"
    # flags; in the foreground at DBUG a U+L+D cycle logs 9 records).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = None
    if to_syslog:
        try:
            # config holds syslog.LOG_* values (facility << 3); the handler wants the number
            handler = daemon_log.SysLogLines("/dev/log", facility=config.log_facility >> 3)
            handler.setFormatter(daemon_log.SyslogFormatter())
        except OSError:
            handler = None
    if handler is None:
        handler = daemon_log.StreamLines(sys.stderr)
        fmt = daemon_log.STREAM_FORMAT
        if sd_daemon.stderr_is_journal():
            # journald stamps the time itself and reads the priority from the
            # <N> prefix, so `journalctl -p warning` finds the warnings
            handler.setFormatter(daemon_log.JournalFormatter(daemon_log.JOURNAL_FORMAT))
        elif os.environ.get("RTPP_LOG_TFORM") == "rel":
            start = float(os.environ.get("RTPP_LOG_TSTART", time.time()))
            handler.setFormatter(daemon_log.RelativeTimeFormatter(fmt, start))
        else:
            handler.setFormatter(daemon_log.SecondCachedFormatter(fmt))
    handler.addFilter(daemon_log.show_raw_bytes)
    logger.addHandler(handler)
    # the plain log calls (almost all) format their line and hand it to the
    # handler without a LogRecord: see daemon_log
    daemon_log.install(logger, handler)


def daemonize(no_chdir, redirect):
    """Double fork. The first parent waits until the daemon reports ready and
    exits 0, or prints the daemon's startup error and exits 1. Returns the fd
    on which the daemon reports (see ``report_ready``)."""
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        chunks = []
        while True:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        status = b"".join(chunks)
        if status.startswith(b"OK"):
            os._exit(0)
        sys.stderr.write(status.decode("utf-8", "replace") or "rtpproxy: the daemon died during startup.\n")
        os._exit(1)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    if not no_chdir:
        os.chdir("/")
    os.umask(0o022)
    if redirect:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
    return write_end


def report_ready(fd, error=None):
    if fd is None:
        return
    try:
        os.write(fd, b"OK" if error is None else ("rtpproxy: %s\n" % error).encode())
    finally:
        os.close(fd)


def _nr_open():
    """The kernel's ceiling for any process's open-files limit (fs.nr_open)."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def set_open_files(limit):
    """-L: set RLIMIT_NOFILE soft and hard to ``limit``.

    Returns None when granted, else the sentence saying why not (the caller
    refuses to start, as upstream does when setrlimit fails)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        return None
    except (ValueError, OSError) as exc:
        error = getattr(exc, "strerror", None) or str(exc)
    ceiling = _nr_open()
    finite_hard = hard if hard != resource.RLIM_INFINITY else None
    if ceiling is not None and limit > ceiling:
        why = "the kernel allows at most %d (sysctl fs.nr_open); raise fs.nr_open or ask for less" % ceiling
    elif finite_hard is not None and limit > finite_hard and os.geteuid() != 0:
        why = ("only root may raise the hard limit (%d); start rtpproxy as root (with -u to drop "
               "privileges) or raise LimitNOFILE / limits.conf" % finite_hard)
    elif finite_hard is not None and limit > finite_hard:
        why = ("the hard limit is %d and this process may not raise it (no CAP_SYS_RESOURCE, as in "
               "many containers); raise it where rtpproxy is started (ulimit -Hn, LimitNOFILE)" % finite_hard)
    else:
        why = "the system refused it (%s)" % error
    return "-L %d: cannot raise the open-files limit that far (it is %d now): %s." % (
        limit, soft, why)


_POLICIES = {"fifo": getattr(os, "SCHED_FIFO", None), "rr": getattr(os, "SCHED_RR", None)}


def set_priority(config):
    """--nice and -c, while still privileged."""
    if config.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, config.nice)
        except OSError as exc:
            raise ConfigError("--nice %d: cannot set the priority (%s); only root may go below 0." % (
                config.nice, exc.strerror)) from None
    if config.rt_policy is not None:
        policy = _POLICIES[config.rt_policy]
        try:
            os.sched_setscheduler(0, policy, os.sched_param(os.sched_get_priority_min(policy)))
        except OSError as exc:
            raise ConfigError("-c %s: cannot switch to real-time scheduling (%s); it needs root with "
                              "CAP_SYS_NICE, or leave out -c." % (config.rt_policy, exc.strerror)) from None


def check_media_ports(config):
    """After -u: media ports are bound per call, so they must be bindable now."""
    if os.geteuid() == 0:
        return
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            first_free = int(f.read())
    except (OSError, ValueError):
        first_free = 1024
    if config.port_max < first_free:
        raise ConfigError("-M %d: ports below %d need root, and media ports are opened per call by "
                          "%s; use a range above %d." % (config.port_max + 1, first_free, _who(), first_free))
    if config.port_min < first_free:
        log.warning("-m %d: ports below %d need root, and media ports are opened per call by %s; "
                    "those ports will be skipped", config.port_min, first_free, _who())


def drop_privileges(config):
    """-u: switch group, then user, for good (no way back to root)."""
    if config.uid is None and config.gid is None:
        return
    # Modules Python would otherwise load at the first command (getaddrinfo on a
    # str host encodes it with idna), while files are still readable.
    "x".encode("idna")
    try:
        if config.gid is not None:
            os.setgroups([config.gid])
            os.setgid(config.gid)
        if config.uid is not None:
            os.setuid(config.uid)
    except OSError as exc:
        raise ConfigError("-u %s: cannot switch to that user/group (%s); start rtpproxy as root "
                          "or leave out -u." % (config.user_spec, exc.strerror)) from None


def check_directories(config):
    """-r/-S must be usable by the user the daemon runs as (checked after -u)."""
    for flag, path in (("-r", config.record_dir), ("-S", config.spool_dir)):
        if path and not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError("%s %s: the directory is not writable by %s; fix its permissions or "
                              "name another." % (flag, path, _who()))


def _who():
    try:
        return "user %s" % pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "uid %d" % os.geteuid()


class PidFile:
    def __init__(self, path):
        self.path = path
        self.file = open(path, "w") if path else None

    def write(self):
        if self.file is not None:
            self.file.write("%u\n" % os.getpid())
            self.file.close()

    def remove(self):
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
