"""Process life: logging, daemonizing, pid file, privileges, limits."""

import logging
import logging.handlers
import os
import resource
import sys
import time

log = logging.getLogger("rtpproxy")


class _RelativeTimeFormatter(logging.Formatter):
    """RTPP_LOG_TFORM=rel: timestamps in seconds since start."""

    def __init__(self, fmt, start):
        super().__init__(fmt)
        self.start = start

    def formatTime(self, record, datefmt=None):
        return "%.6f" % (record.created - self.start)


def setup_logging(config, to_syslog):
    logger = logging.getLogger("rtpproxy")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(config.log_level)
    logger.propagate = False
    handler = None
    if to_syslog:
        try:
            handler = logging.handlers.SysLogHandler("/dev/log", facility=config.log_facility)
            handler.setFormatter(logging.Formatter("rtpproxy[%(process)d]: %(levelname)s: %(message)s"))
        except OSError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s: %(message)s"
        if os.environ.get("RTPP_LOG_TFORM") == "rel":
            start = float(os.environ.get("RTPP_LOG_TSTART", time.time()))
            handler.setFormatter(_RelativeTimeFormatter(fmt, start))
        else:
            handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)


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


def set_open_files(limit):
    """-L: set RLIMIT_NOFILE; returns a warning sentence if not fully granted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        return None
    except (ValueError, OSError):
        pass
    granted = min(limit, hard) if hard != resource.RLIM_INFINITY else limit
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (granted, hard))
    except (ValueError, OSError):
        granted = soft
    return ("-L %d: could only raise the open-files limit to %d (hard limit %s); run as root or "
            "raise LimitNOFILE / limits.conf." % (limit, granted, hard))


def drop_privileges(config):
    if config.uid is None and config.gid is None:
        return
    if config.gid is not None:
        os.setgroups([config.gid])
        os.setgid(config.gid)
    if config.uid is not None:
        os.setuid(config.uid)


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
