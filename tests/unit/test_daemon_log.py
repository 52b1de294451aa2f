"""daemon_log: the plain log calls write exactly the line the standard
logging path writes (same format per level and formatter, same handler),
without a LogRecord; anything else still takes the standard path."""

import io
import logging
import os
import socket
import tempfile

import pytest

from rtpproxy_py import daemon, daemon_log
from rtpproxy_py.config import Config

LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL, 25]
T = 1764916199.9225     # a fixed clock: the lines must be comparable byte for byte

FORMATTERS = {
    "stream": lambda: daemon_log.SecondCachedFormatter(daemon_log.STREAM_FORMAT),
    "relative": lambda: daemon_log.RelativeTimeFormatter(daemon_log.STREAM_FORMAT, T - 12.5),
    "journal": lambda: daemon_log.JournalFormatter(daemon_log.JOURNAL_FORMAT),
}


def _logger(name, handler, formatter):
    logger = logging.getLogger("rtpproxy-test." + name)
    logger.handlers[:] = []
    logger.filters[:] = []
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler.setFormatter(formatter)
    handler.addFilter(daemon_log.show_raw_bytes)
    logger.addHandler(handler)
    daemon_log.install(logger, handler)
    return logger


def _standard_line(handler, levelno, msg, args):
    """What the standard path makes of the call: a LogRecord at time T,
    the handler's filter, the handler's formatter."""
    record = logging.LogRecord("x", levelno, __file__, 1, msg, args, None)
    record.created = T
    record.msecs = int((T - int(T)) * 1000) + 0.0
    assert handler.filter(record)
    return handler.format(record)


@pytest.fixture
def records(monkeypatch):
    """Counts the LogRecords made; the fast path's clock reads T."""
    made = []
    factory = logging.getLogRecordFactory()

    def counting(*args, **kwargs):
        made.append(args)
        return factory(*args, **kwargs)

    logging.setLogRecordFactory(counting)
    monkeypatch.setattr(daemon_log, "_time", lambda: T)
    yield made
    logging.setLogRecordFactory(factory)


CALLS = [
    ("command %r -> %r", (b" U cid1 127.0.0.2 10000 ft1", "40030 127.0.0.1\n")),
    ("new session %s, tag %s, port %d", ("cid1", "ft1", 40030)),
    ("%s", ("session cid1, tag ft1: caller RTP from 127.0.0.2:10000: sent 0",)),
    ("no arguments, 100%", ()),
    ("raw Call-ID %s", ("a\udcff\udcfeb",)),        # bytes that are not UTF-8, as tokenize carries them
    ("two\nlines %d", (2,)),
    (12345, ()),                                    # not a string: str() of it, as LogRecord does
]


@pytest.mark.parametrize("kind", sorted(FORMATTERS))
def test_lines_are_the_standard_lines_at_every_level_without_a_record(kind, records):
    stream = io.StringIO()
    handler = daemon_log.StreamLines(stream)
    logger = _logger(kind, handler, FORMATTERS[kind]())
    expected = []
    for levelno in LEVELS:
        for msg, args in CALLS:
            if levelno == 25:
                logger.log(levelno, msg, *args)
            else:
                getattr(logger, logging.getLevelName(levelno).lower())(msg, *args)
            expected.append(_standard_line(handler, levelno, msg, args) + "\n")
    assert records == [], "a plain call made a LogRecord"
    assert stream.getvalue() == "".join(expected)
    assert "raw Call-ID a\\xff\\xfeb" in stream.getvalue()


def test_each_line_is_written_when_logged(records):
    # no buffering: a test or an operator tailing the log sees the line at once
    stream = io.StringIO()
    logger = _logger("prompt", daemon_log.StreamLines(stream), FORMATTERS["stream"]())
    logger.info("first %s", "line")
    assert stream.getvalue().endswith("INFO: first line\n")
    logger.debug("second")
    assert stream.getvalue().endswith("DEBUG: second\n")


def test_below_the_level_nothing_is_formatted(records):
    stream = io.StringIO()
    logger = _logger("level", daemon_log.StreamLines(stream), FORMATTERS["stream"]())
    logger.setLevel(logging.ERROR)

    class Loud:
        def __str__(self):
            raise AssertionError("formatted below the level")

    logger.info("%s", Loud())
    logger.warning("%s", Loud())
    assert stream.getvalue() == ""


def test_everything_else_takes_the_standard_path(records):
    stream = io.StringIO()
    handler = daemon_log.StreamLines(stream)
    logger = _logger("standard", handler, FORMATTERS["stream"]())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed %s", "here")
    assert "ERROR: failed here\nTraceback (most recent call last):" in stream.getvalue()
    assert "ValueError: boom" in stream.getvalue()
    logger.info("%(a)s and %(b)s", {"a": 1, "b": 2})     # a lone dict: the arguments by name
    assert stream.getvalue().endswith("INFO: 1 and 2\n")
    assert len(records) == 2

    # a logger filter (the workers' "worker N: " prefix) applies
    class Prefix(logging.Filter):
        def filter(self, record):
            record.msg = "worker 1: " + str(record.msg)
            return True

    prefix = Prefix()
    logger.addFilter(prefix)
    logger.info("started, pid %d", 7)
    assert stream.getvalue().endswith("INFO: worker 1: started, pid 7\n")
    logger.removeFilter(prefix)

    # a second handler gets the records too
    other = io.StringIO()
    extra = logging.StreamHandler(other)
    logger.addHandler(extra)
    logger.warning("to both")
    logger.removeHandler(extra)
    assert stream.getvalue().endswith("WARNING: to both\n") and other.getvalue() == "to both\n"
    # propagation (pytest's caplog) reaches the parents' handlers
    logger.propagate = True
    parent = logging.getLogger("rtpproxy-test")
    seen = []
    catcher = logging.Handler()
    catcher.emit = seen.append
    parent.addHandler(catcher)
    try:
        logger.info("propagated")
    finally:
        parent.removeHandler(catcher)
        logger.propagate = False
    assert [r.getMessage() for r in seen] == ["propagated"]
    # and back to the fast path: no further record
    count = len(records)
    logger.info("fast again")
    assert len(records) == count and stream.getvalue().endswith("INFO: fast again\n")


def test_a_message_that_does_not_format_is_reported_as_before(records, capsys):
    stream = io.StringIO()
    logger = _logger("bad", daemon_log.StreamLines(stream), FORMATTERS["stream"]())
    logger.info("%d sessions", "many")
    assert stream.getvalue() == ""
    assert "--- Logging error ---" in capsys.readouterr().err


def test_syslog_datagrams_are_the_standard_ones(records):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "log")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(2)
        handler = daemon_log.SysLogLines(path, facility=3)
        logger = _logger("syslog", handler, daemon_log.SyslogFormatter())
        try:
            for levelno in LEVELS:
                logger.log(levelno, "session %s ended", "cid\udcff")
                fast = server.recv(4096)
                record = logging.LogRecord("x", levelno, __file__, 1, "session %s ended", ("cid\udcff",), None)
                handler.handle(record)      # the standard path: the filter, then SysLogHandler.emit
                assert fast == server.recv(4096)
                assert b">rtpproxy[%d]: " % os.getpid() in fast and fast.endswith(b": session cid\\xff ended\x00")
        finally:
            handler.close()
            server.close()
    assert records == []


def test_setup_logging_installs_it_on_the_daemon_logger(records, capsys):
    logger = logging.getLogger("rtpproxy")
    saved = (logger.__class__, logger.handlers[:], logger.level, logger.propagate, logger.__dict__.copy())
    flags = (logging._srcfile, logging.logThreads, logging.logMultiprocessing)
    try:
        config = Config()
        config.log_level = logging.DEBUG
        daemon.setup_logging(config, to_syslog=False)
        assert isinstance(logger, daemon_log.DaemonLogger)
        logger.info("new session %s, tag %s, port %d", "cid1", "ft1", 40030)
        assert records == []
        assert capsys.readouterr().err.endswith(" INFO: new session cid1, tag ft1, port 40030\n")
    finally:
        cls, handlers, level, propagate, state = saved
        logger.__class__ = cls
        logger.__dict__.clear()
        logger.__dict__.update(state)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logging._srcfile, logging.logThreads, logging.logMultiprocessing = flags


def test_a_serving_greenlet_s_lines_are_written_at_the_end_of_the_loop_turn(records):
    import gevent
    stream = io.StringIO()
    logger = _logger("held", daemon_log.StreamLines(stream), FORMATTERS["stream"]())
    seen = []

    def serve():
        logger.info("new session %s", "cid1")
        logger.debug("command %r", b"U")
        seen.append(stream.getvalue())          # held while the greenlet runs on
        logger.warning("a warning")             # written at once, after the held lines
        seen.append(stream.getvalue())
        logger.info("session %s ended", "cid1")
        seen.append(stream.getvalue())

    gevent.spawn(serve).join()
    assert seen[0] == ""
    assert seen[1].endswith("INFO: new session cid1\n" + seen[1][:24] + "DEBUG: command b'U'\n"
                            + seen[1][:24] + "WARNING: a warning\n")
    assert seen[2] == seen[1]
    assert stream.getvalue() == seen[1] + seen[1][:24] + "INFO: session cid1 ended\n"
    assert records == []


def test_held_lines_are_written_by_flush_as_at_exit_and_before_a_standard_record(records):
    import gevent
    stream = io.StringIO()
    handler = daemon_log.StreamLines(stream)
    logger = _logger("flush", handler, FORMATTERS["stream"]())

    def serve(flush):
        logger.info("one")
        if flush:
            handler.flush()                     # logging.shutdown does this at exit
        else:
            logger.info("%(two)s", {"two": "two"})     # the standard path
        seen.append(stream.getvalue())

    seen = []
    gevent.spawn(serve, True).join()
    assert seen[0].endswith(" INFO: one\n")
    stream.truncate(0)
    stream.seek(0)
    seen.clear()
    gevent.spawn(serve, False).join()
    lines = seen[0].splitlines()
    assert len(lines) == 2 and lines[0].endswith(" INFO: one") and lines[1].endswith(" INFO: two")


def test_many_held_lines_are_written_before_the_turn_ends(records):
    import gevent
    stream = io.StringIO()
    logger = _logger("many", daemon_log.StreamLines(stream), FORMATTERS["stream"]())
    seen = []

    def serve():
        for n in range(daemon_log.HELD_LINES):
            logger.debug("line %d", n)
        seen.append(stream.getvalue().count("\n"))

    gevent.spawn(serve).join()
    assert seen == [daemon_log.HELD_LINES]


def test_a_write_error_is_reported_as_the_standard_path_does_and_not_raised(records, capsys):
    stream = io.StringIO()
    logger = _logger("closed", daemon_log.StreamLines(stream), FORMATTERS["stream"]())
    stream.close()
    logger.info("session %s ended", "cid1")      # must not raise into the dispatcher
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "I/O operation on closed file" in err


class _OldWorkerPrefix(logging.Filter):
    """What a worker put on the logger before set_prefix (its lines must not change)."""

    def filter(self, record):
        record.msg = "worker 2: " + str(record.msg)
        return True


@pytest.mark.parametrize("kind", sorted(FORMATTERS))
def test_a_worker_s_prefixed_lines_are_the_old_filter_s_lines_without_a_record(kind, records):
    stream = io.StringIO()
    handler = daemon_log.StreamLines(stream)
    logger = _logger("prefix-" + kind, handler, FORMATTERS[kind]())
    daemon_log.set_prefix(logger, "worker 2: ")
    old = _OldWorkerPrefix()
    expected = []
    for levelno in LEVELS:
        for msg, args in CALLS:
            if levelno == 25:
                logger.log(levelno, msg, *args)
            else:
                getattr(logger, logging.getLevelName(levelno).lower())(msg, *args)
            record = logging.LogRecord("x", levelno, __file__, 1, msg, args, None)
            record.created = T
            record.msecs = int((T - int(T)) * 1000) + 0.0
            assert old.filter(record) and handler.filter(record)
            expected.append(handler.format(record) + "\n")
    assert records == [], "a plain call made a LogRecord"
    assert stream.getvalue() == "".join(expected)
    assert ": worker 2: raw Call-ID a\\xff\\xfeb\n" in stream.getvalue()

    # the standard path (an exception, a lone dict, extra=) has the prefix once, where the filter put it
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed %s", "here")
    logger.info("%(a)s and %(b)s", {"a": 1, "b": 2})
    logger.warning("with %s", "extra", extra={"k": 1})
    assert len(records) == 3
    lines = stream.getvalue()[len("".join(expected)):].splitlines()
    assert lines[0].endswith("ERROR: worker 2: failed here") and lines[1].endswith("Traceback (most recent call last):")
    assert lines[-2].endswith("INFO: worker 2: 1 and 2") and lines[-1].endswith("WARNING: worker 2: with extra")
    assert not any("worker 2: worker 2:" in line for line in lines)


def test_set_prefix_needs_the_installed_logger():
    with pytest.raises(TypeError):
        daemon_log.set_prefix(logging.getLogger("rtpproxy-test.plain"), "worker 1: ")


def test_write_held_lines_writes_what_a_serving_greenlet_holds_at_once(records):
    # a worker calls it before it sends a command's reply
    import gevent
    stream = io.StringIO()
    logger = _logger("worker-reply", daemon_log.StreamLines(stream), FORMATTERS["stream"]())
    seen = []

    def serve():
        logger.info("new session %s", "cid1")
        seen.append(stream.getvalue())
        daemon_log.write_held_lines()
        seen.append(stream.getvalue())

    gevent.spawn(serve).join()
    assert seen[0] == "" and seen[1].endswith(" INFO: new session cid1\n")
    assert stream.getvalue() == seen[1]
