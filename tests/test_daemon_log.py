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



def _burst(d, commands):
    """Send every command at once (one datagram each) and, as each reply
    arrives, read the log at once: (command, reply, log text then) in the
    order the replies arrived."""
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5.0)
    try:
        for n, command in enumerate(commands):
            sock.sendto(b"burst%d %s" % (n, command.encode()), ("127.0.0.1", d.ctl_port))
        seen = []
        for _ in commands:
            cookie, text = sock.recv(65535).decode().split(" ", 1)
            with open(d.stderr_path) as f:      # no wait: what is in the file now
                seen.append((commands[int(cookie[5:])], text, f.read()))
        return seen
    finally:
        sock.close()


def test_a_command_s_lines_are_in_the_log_before_its_reply_arrives():
    # 16 commands in a row are served in one loop turn: lines held until the
    # turn's end would still be missing when the first replies arrive
    d = Daemon("-d", "DBUG", "--workers", "1")
    try:
        seen = _burst(d, ["U before%d 127.0.0.2 %d ft%d" % (n, 10000 + 2 * n, n) for n in range(16)])
    finally:
        d.stop()
    for command, text, log in seen:
        call_id, tag = command.split()[1], command.split()[4]
        assert "INFO: new session %s, tag %s, port %s" % (call_id, tag, text.split()[0]) in log, (command, log)
        assert "DEBUG: command b' %s' -> %r" % (command, text) in log, (command, log)


def test_the_front_end_s_own_replies_follow_their_lines_too():
    # --workers: V, G, I, X are answered by the front end itself, each V in
    # a greenlet of its own (16 of them in one loop turn)
    d = Daemon("-d", "DBUG", "--workers", "2")
    line = "DEBUG: command b' V' -> '20040107\\n'"
    try:
        before = d.log().count(line)        # the V the start-up waited with
        seen = _burst(d, ["V"] * 16)
    finally:
        d.stop()
    for arrived, (command, text, log) in enumerate(seen):
        assert text == "20040107\n"
        assert log.count(line) >= before + arrived + 1, (arrived, log)
