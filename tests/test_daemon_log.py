"""The daemon's log at DBUG, as the foreground default writes it: every
line of a U+L+D cycle in the standard format, each written within its loop
turn (a test waiting for a line sees it at once), none lost at SIGTERM.
(daemon_log holds the lines a serving greenlet logs until its loop turn
ends; tests/unit/test_daemon_log.py compares the bytes with the standard
logging path.)"""

import re

from helpers import Daemon, wait_for

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR): \S")


def test_cycle_lines_are_written_at_once_and_kept_at_sigterm():
    d = Daemon("-d", "DBUG", "--workers", "1")
    try:
        port = d.command("U logcid 127.0.0.2 10000 ft1").split()[0]
        d.command("L logcid 127.0.0.3 10002 ft1 tt1")
        assert d.command("D logcid ft1 tt1") == "0"
        # the D's lines: logged by the serving greenlet, written when its turn ends
        wait_for(lambda: "DEBUG: command b' D logcid ft1 tt1' -> '0\\n'" in d.log(), timeout=2.0)
        d.command("U logcid2 127.0.0.2 10004 ft2")
    finally:
        assert d.stop() == 0
    lines = d.log().splitlines()
    assert all(LINE.match(line) for line in lines), [line for line in lines if not LINE.match(line)]
    text = [line.split(" ", 2)[2] for line in lines]
    calls = [t for t in text if "logcid" in t]      # not the timers' lines in between
    assert calls[0] == "INFO: new session logcid, tag ft1, port %s" % port
    assert calls[1].startswith("DEBUG: command b' U logcid 127.0.0.2 10000 ft1' -> '%s" % port)
    assert calls[2].startswith("DEBUG: command b' L logcid 127.0.0.3 10002 ft1 tt1' -> '")
    assert calls[3] == "INFO: session logcid, tag ft1 ended (deleted)"
    assert [t.split(":")[2] for t in calls[4:8]] == [
        " callee RTP from 127.0.0.3", " caller RTP from 127.0.0.2",
        " callee RTCP from 127.0.0.3", " caller RTCP from 127.0.0.2"]
    assert calls[8] == "DEBUG: command b' D logcid ft1 tt1' -> '0\\n'"
    # the last command's lines, logged just before SIGTERM, come before the shut-down's
    assert calls[9].startswith("INFO: new session logcid2, tag ft2, port ")
    assert calls[10].startswith("DEBUG: command b' U logcid2 127.0.0.2 10004 ft2' -> '")
    assert text.index(calls[10]) < text.index("WARNING: signal 15: shutting down")
    assert text[-1] == "INFO: stopped"
