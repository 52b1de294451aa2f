"""The daemon's log: the "rtpproxy" logger's handlers and formatters, and a
shorter way to them for the plain calls.

In the foreground at the default level (DBUG) a U+L+D cycle logs 9 lines;
through the standard logging machinery (a LogRecord per line, logger and
handler filters, Formatter.format, the handler's emit) they were about a
third of the cycle's CPU. ``DaemonLogger`` formats such a line itself, from
the level, the message and its arguments, exactly as the handler's formatter
would, and hands the text to the handler: same bytes, same destination, no
LogRecord. Everything else (exc_info/extra/stack_info, a dict argument, a
message that does not format, any filter, handler or formatter that
setup_logging did not put there, propagation) takes the standard path, so
what a caller, a test or a module adds keeps working as before.

``StreamLines`` (stderr) holds the DEBUG/INFO lines a serving greenlet logs
until the event loop's turn ends and writes them in one write; see its
docstring for what is written at once. A command's lines do not wait for the
turn's end: Dispatcher.execute writes what is held before it returns the
reply (``write_held_lines``), so they are in the log before the reply leaves.
"""

import collections.abc
import logging
import logging.handlers
import os
import socket
import time
import weakref
from typing import List, Optional

from greenlet import getcurrent

from . import sd_daemon

STREAM_FORMAT = "%(asctime)s %(levelname)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s: %(message)s"
SYSLOG_FORMAT = "rtpproxy[%(process)d]: %(levelname)s: %(message)s"

_level_name = logging.getLevelName
_time = time.time


def show_raw_bytes(record: logging.LogRecord) -> bool:
    """Log filter: bytes of a Call-ID or tag that are not UTF-8 (carried as
    surrogates, see protocol.parse.tokenize) are written as ``\\xNN``;
    the syslog handler would otherwise fail to encode the line."""
    try:
        text = record.getMessage()
        text.encode("utf-8")
    except UnicodeEncodeError:
        record.msg = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        record.args = None
    except Exception:   # a bad format string: the handler reports it as usual
        pass
    else:
        record.msg, record.args = text, None    # formatted once: the formatter takes it as is
    return True


def _raw_bytes_shown(text: str) -> str:
    """show_raw_bytes for a message already formatted."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


_LINE_FILTERS = [show_raw_bytes]


# Formatters. Each also has line(levelno, message, created): exactly what
# format() gives for a record of that level, message and time with no
# exception or stack information.

class RelativeTimeFormatter(logging.Formatter):
    """RTPP_LOG_TFORM=rel: timestamps in seconds since start."""

    def __init__(self, fmt: str, start: float) -> None:
        super().__init__(fmt)
        self.start = start

    def formatTime(self, record, datefmt=None):
        return "%.6f" % (record.created - self.start)

    def line(self, levelno: int, message: str, created: float) -> str:
        return "%.6f %s: %s" % (created - self.start, _level_name(levelno), message)


class SecondCachedFormatter(logging.Formatter):
    """logging.Formatter's own time stamp, with the date and time text made
    once a second instead of for every record (strftime per record was about
    a fifth of a record's cost)."""

    _second = None
    _text = ""

    def formatTime(self, record, datefmt=None):
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._text, record.msecs)

    def line(self, levelno: int, message: str, created: float) -> str:
        # LogRecord's msecs, as Python 3.8-3.11 compute it
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(created))
            self._second = second
        return "%s,%03d %s: %s" % (self._text, (created - second) * 1000, _level_name(levelno), message)


class JournalFormatter(logging.Formatter):
    """sd-daemon(3) prefixes: every line of a record (a traceback's too)
    starts with <priority>."""

    def format(self, record):
        prefix = "<%d>" % sd_daemon.priority(record.levelno)
        return "\n".join(prefix + line for line in super().format(record).split("\n"))

    def line(self, levelno: int, message: str, created: float) -> str:
        prefix = "<%d>" % sd_daemon.priority(levelno)
        return "\n".join(prefix + line for line in ("%s: %s" % (_level_name(levelno), message)).split("\n"))


class SyslogFormatter(logging.Formatter):
    """SYSLOG_FORMAT; the process id is the caller's, as the record's is."""

    def __init__(self) -> None:
        super().__init__(SYSLOG_FORMAT)

    def line(self, levelno: int, message: str, created: float) -> str:
        return "rtpproxy[%d]: %s: %s" % (os.getpid(), _level_name(levelno), message)


# Handlers. Each also has emit_line(levelno, line): what emit() does with the
# formatted text of a record of that level. Called with the handler's lock held.

class StreamLines(logging.StreamHandler):
    """The stderr handler. A line logged by a serving greenlet (commands,
    session ends) below WARNING is held until the event loop's current turn
    ends (a loop callback writes what the turn logged in one write; a U+L+D
    cycle logs 9 lines, and a write per line was a quarter of their cost);
    a command's lines are written before its reply (write_held_lines).
    Everything else is written at once, after what is held: warnings and
    errors, records taking the standard path (exceptions and the like),
    lines from the main greenlet (start-up, shut-down) or
    another thread. flush() (logging.shutdown at exit, a fork, setup_logging
    again) writes what is held."""

    def __init__(self, stream=None) -> None:
        super().__init__(stream)
        self._held: List[str] = []
        _stream_handlers.add(self)

    def emit(self, record):
        try:
            self._write(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def emit_line(self, levelno: int, line: str) -> None:
        if levelno < logging.WARNING:
            # a greenlet gevent runs has the hub, with its loop, as parent;
            # the main greenlet's parent is None
            loop = getattr(getcurrent().parent, "loop", None)
            if loop is not None:
                held = self._held
                held.append(line + self.terminator)
                if len(held) == 1:
                    loop.run_callback(self._end_of_turn)
                    holding.append(self)
                elif len(held) >= HELD_LINES:
                    self._write("")
                return
        self._write(line + self.terminator)

    def _write(self, text: str) -> None:
        """Writes what is held, then text (the handler's lock held)."""
        held = self._held
        if held:
            text = "".join(held) + text
            held.clear()
            if self in holding:
                holding.remove(self)
        stream = self.stream
        if text:
            stream.write(text)
        if stream and hasattr(stream, "flush"):     # as StreamHandler.flush
            stream.flush()

    def flush(self):
        with self.lock:
            self._write("")

    def _end_of_turn(self) -> None:
        try:
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "(the lines held until the end of the loop turn)"}))


HELD_LINES = 64                 # held lines written at once when this many are held
_stream_handlers: "weakref.WeakSet[StreamLines]" = weakref.WeakSet()
# The StreamLines that hold lines now (in the order they began to): empty
# whenever nothing is held, so that "is anything held?" before a reply is
# one truth test (Dispatcher.execute asks it after every command).
holding: List[StreamLines] = []


def flush_held_lines() -> None:
    """Writes the lines every StreamLines holds (before a fork, so that the
    child does not write them again)."""
    for handler in list(_stream_handlers):
        try:
            handler.flush()
        except Exception:
            pass


os.register_at_fork(before=flush_held_lines)


def write_held_lines() -> None:
    """Writes what is held now, if anything (Dispatcher.execute at the end
    of every command, so that a command's lines are in the log before its
    reply leaves, as when each line was written at once; the service before
    READY=1). Costs one truth test when nothing is held."""
    while holding:
        handler = holding[0]
        handler._end_of_turn()      # _write takes it out of holding; errors reported, not raised
        if holding and holding[0] is handler:   # (cannot happen: _write clears before it writes)
            holding.pop(0)


class SysLogLines(logging.handlers.SysLogHandler):

    def emit_line(self, levelno: int, line: str) -> None:
        # SysLogHandler.emit from the formatted text on
        if self.ident:
            line = self.ident + line
        if self.append_nul:
            line += "\000"
        prio = "<%d>" % self.encodePriority(self.facility, self.mapPriority(_level_name(levelno)))
        msg = prio.encode("utf-8") + line.encode("utf-8")
        if not self.socket:
            self.createSocket()
        if self.unixsocket:
            try:
                self.socket.send(msg)
            except OSError:
                self.socket.close()
                self._connect_unixsocket(self.address)
                self.socket.send(msg)
        elif self.socktype == socket.SOCK_DGRAM:
            self.socket.sendto(msg, self.address)
        else:
            self.socket.sendall(msg)


class DaemonLogger(logging.Logger):
    """The "rtpproxy" logger once setup_logging has run (it sets the class of
    the existing logger object, which every module already holds).

    ``prefix`` (a worker's "worker N: ", see set_prefix) goes in front of the
    message of every record, on either path, as a logger filter doing
    ``record.msg = prefix + str(record.msg)`` did; unlike a filter it keeps
    the plain calls on the direct path."""

    line_handler: Optional[logging.Handler] = None    # set by setup_logging
    line_formatter: Optional[logging.Formatter] = None
    _line_handlers: list = []
    prefix: str = ""

    def _emit(self, levelno: int, msg, args) -> bool:
        """Writes the line as the standard path would; False: take that path."""
        handler = self.line_handler
        handlers = self.handlers
        # only what setup_logging set up: anything added since (a handler,
        # a filter, a formatter, propagation) gets the standard path
        if (handler is None or handlers != self._line_handlers or self.filters or self.propagate
                or self.disabled or levelno < handler.level or handler.formatter is not self.line_formatter
                or handler.filters != _LINE_FILTERS):
            return False
        try:
            text = msg if type(msg) is str else str(msg)
            if self.prefix:
                text = self.prefix + text
            if args:
                if len(args) == 1 and isinstance(args[0], collections.abc.Mapping) and args[0]:
                    return False    # LogRecord takes a lone dict as the arguments themselves
                text = text % args
        except Exception:
            return False            # the standard path reports it as it does
        if not text.isascii():
            text = _raw_bytes_shown(text)
        with handler.lock:
            try:
                handler.emit_line(levelno, self.line_formatter.line(levelno, text, _time()))
            except RecursionError:
                raise
            except Exception:
                # text has the prefix already: not self.makeRecord
                handler.handleError(logging.Logger.makeRecord(
                    self, self.name, levelno, "(unknown file)", 0, text, (), None))
        return True

    def makeRecord(self, *args, **kwargs):
        """The standard path's record, with the prefix (as the filter put it)."""
        record = super().makeRecord(*args, **kwargs)
        if self.prefix:
            record.msg = self.prefix + str(record.msg)
        return record

    def debug(self, msg, *args, **kwargs):
        if self.isEnabledFor(logging.DEBUG) and (kwargs or not self._emit(logging.DEBUG, msg, args)):
            self._log(logging.DEBUG, msg, args, **kwargs)

    def info(self, msg, *args, **kwargs):
        if self.isEnabledFor(logging.INFO) and (kwargs or not self._emit(logging.INFO, msg, args)):
            self._log(logging.INFO, msg, args, **kwargs)

    def warning(self, msg, *args, **kwargs):
        if self.isEnabledFor(logging.WARNING) and (kwargs or not self._emit(logging.WARNING, msg, args)):
            self._log(logging.WARNING, msg, args, **kwargs)

    def error(self, msg, *args, **kwargs):
        if self.isEnabledFor(logging.ERROR) and (kwargs or not self._emit(logging.ERROR, msg, args)):
            self._log(logging.ERROR, msg, args, **kwargs)

    def critical(self, msg, *args, **kwargs):
        if self.isEnabledFor(logging.CRITICAL) and (kwargs or not self._emit(logging.CRITICAL, msg, args)):
            self._log(logging.CRITICAL, msg, args, **kwargs)

    fatal = critical

    def log(self, level, msg, *args, **kwargs):
        if type(level) is not int or kwargs:
            return super().log(level, msg, *args, **kwargs)
        if self.isEnabledFor(level) and not self._emit(level, msg, args):
            self._log(level, msg, args)


def install(logger: logging.Logger, handler: logging.Handler) -> None:
    """Makes ``logger`` a DaemonLogger writing its plain calls straight to
    ``handler`` (one of the handlers above with one of the formatters above)."""
    logger.__class__ = DaemonLogger
    logger.line_handler = handler
    logger._line_handlers = [handler]
    logger.line_formatter = handler.formatter


def set_prefix(logger: logging.Logger, prefix: str) -> None:
    """Every line ``logger`` (a DaemonLogger: setup_logging has run) writes
    from now on starts its message with ``prefix`` (a worker's "worker N: ")."""
    if not isinstance(logger, DaemonLogger):
        raise TypeError("set_prefix needs the logger setup_logging installed")
    logger.prefix = prefix
