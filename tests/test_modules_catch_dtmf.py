"""catch_dtmf (modules.md 6) through the daemon as a real process: the
sub-command replies of upstream's catch_dtmf/basic, then RFC 4733 events sent
through a live call (start, repeats, ends with the E bit, retransmitted ends)
and the lines the notify listener receives; ``h`` drops and counts."""

import struct

import pytest

from helpers import Endpoint, NotifyListener, rtp_packet, wait_for

HOST = "127.0.0.1"


def event(seq, ts, code, duration, end=False, volume=10, pt=101, ssrc=0xD7F):
    return rtp_packet(seq, ts, ssrc, pt, struct.pack("!BBH", code, (0x80 if end else 0) | volume, duration))


def digit(sender, port, seq, ts, code, volume=10, ends=3):
    """A usual event: start, two continuations, ``ends`` end packets; returns the next seq."""
    for n, duration in enumerate((160, 320, 480)):
        sender.send(event(seq + n, ts, code, duration, volume=volume), HOST, port)
    for n in range(ends):
        sender.send(event(seq + 3 + n, ts, code, 640, end=True, volume=volume), HOST, port)
    return seq + 3 + ends


@pytest.fixture
def dso(tmp_path):
    path = tmp_path / "rtpp_catch_dtmf.so"     # any file with the module's name
    path.write_bytes(b"")
    return str(path)


@pytest.fixture
def listener():
    server = NotifyListener(address=(HOST, 0))
    yield server
    server.close()


def start(rtpproxy, dso, listener, *extra):
    return rtpproxy("--dso", dso, "-n", "tcp:%s:%d" % (HOST, listener.port), "-b", *extra)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_subcommand_replies_as_upstreams_basic_test(rtpproxy, dso, listener, workers):
    d = start(rtpproxy, dso, listener, "--workers", workers)
    lo = d.ports[0]
    notify = "tcp:%s:%d DTAG" % (HOST, listener.port)
    for bad in ("MX:1", "M3:Y", "M0:1", "M1:0", "M300:0", "M3:2", "M2:1", "M3", "M3:1x"):
        assert d.command("U c1 %s 4000 ftag %s && %s t" % (HOST, notify, bad)) == "E3"
    assert d.command("D c1 ftag && M3:1 t") == "E3"
    assert d.command("U c1 %s 4000 ftag && M3:1 t" % HOST) == "%d && -1" % lo     # no notify armed
    for args, reply in (("t", ""), ("t 22", ""), ("", " && -1"), ("t nonsense", " && -1"),
                        ("bad%zz", " && -1"), ("a b c d", " && -1"), ("t 33 nonsense", " && -1"),
                        ("t 128", " && -1"), ("t -1", " && -1"), ("t 7a", " && -1"), ("t 101 hx", " && -1"),
                        ("t 101 Hh", ""), ("Hello,+Razvan@OpenSIPS!+:-) 101", "")):
        line = "U c1 %s 4000 ftag %s && M3:1 %s" % (HOST, notify, args)
        assert d.command(line.rstrip()) == "%d%s" % (lo, reply), line
    assert d.command("L c1 %s 4002 ftag ttag && M3:1 Hello,%%20Max!%%20:D 101 H" % HOST) == "%d" % (lo + 2)
    # a failing module sub-command stops the later ones; silent success then text shows as 0
    assert d.command("U c1 %s 4000 ftag %s && M3:1 && M3:1 t" % (HOST, notify)) == "%d && -1" % lo
    assert d.command("L c2 %s 4002 ftag ttag && M3:1 t" % HOST) == "0"        # no session: none run
    query = d.command("Q c1 ftag ttag")
    assert d.command("Q c1 ftag ttag && M3:1 t && M3:1") == query + " && 0 && -1"


def test_events_through_a_live_call_are_notified_once_and_h_drops(rtpproxy, dso, listener):
    d = start(rtpproxy, dso, listener, "--workers", "1")
    caller, callee = Endpoint(HOST), Endpoint(HOST)
    try:
        notify = "tcp:%s:%d DTAG" % (HOST, listener.port)
        to_callee = int(d.command("U call %s %d ftag %s && M3:1 caller+side" % (HOST, caller.port, notify)))
        to_caller = int(d.command("L call %s %d ftag ttag && M3:1 Hello,%%20Max!%%20:D 101 H"
                                  % (HOST, callee.port)))
        # caller (stream 1, side 0): relayed; one line per event with an end
        seq = digit(caller, to_caller, 1, 1000, 5)                     # usual: 1 line
        caller.send(event(seq, 2000, 1, 640, end=True), HOST, to_caller)       # lone end: none
        for n in range(4):                                             # no end: none
            caller.send(event(seq + 1 + n, 3000, 2, 160 * n), HOST, to_caller)
        for n in range(3):                                             # ends only: 1 line
            caller.send(event(seq + 5 + n, 4000, 9, 800, end=True, volume=7), HOST, to_caller)
        caller.send(event(seq + 8, 4000, 3, 900, end=True), HOST, to_caller)   # other digit, known ts
        seq = digit(caller, to_caller, seq + 9, 5000, 16)              # space
        seq = digit(caller, to_caller, seq, 6000, 17)                  # NUL byte
        caller.send(rtp_packet(seq, 7000, 0xD7F, 0), HOST, to_caller)  # audio: not an event
        assert wait_for(lambda: len(listener.lines) >= 4), listener.lines
        # callee (stream 0, side 1): H drops its events
        digit(callee, to_callee, 100, 9000, 11, ends=1)
        assert wait_for(lambda: len(listener.lines) >= 5), listener.lines
        assert listener.lines == [b"caller side 5 10 640 0", b"caller side 9 7 800 0",
                                  b"caller side   10 640 0", b"caller side \0 10 640 0",
                                  b"Hello, Max! :D # 10 640 1"]
        got_callee = callee.drain()
        assert len(got_callee) == 6 + 1 + 4 + 4 + 6 + 6 + 1      # everything the caller sent
        assert caller.drain() == []                                # the callee's events were dropped
        assert d.command("Qv call ftag ttag npkts_ina npkts_ino nrelayed ndropped") == \
            "npkts_ina=28 npkts_ino=4 nrelayed=28 ndropped=4"
        assert d.command("G npkts_discard") == "4"
        # again on the same stream: PT and drop flag change, tag and target stay
        assert d.command("L call %s %d ftag ttag && M3:1 newtag" % (HOST, callee.port)) == str(to_caller)
        digit(callee, to_callee, 200, 10000, 4, ends=2)
        assert wait_for(lambda: len(listener.lines) >= 6) and listener.lines[5] == b"Hello, Max! :D 4 10 640 1"
        assert len(caller.drain()) == 5                           # relayed again
        assert d.command("D call ftag ttag") == "0"
    finally:
        caller.close()
        callee.close()


def test_two_instances_are_independent_detectors(rtpproxy, dso, listener):
    d = rtpproxy("--dso", dso, "--dso", dso, "-n", "tcp:%s:%d" % (HOST, listener.port), "--workers", "1")
    caller = Endpoint(HOST)
    try:
        notify = "tcp:%s:%d DTAG" % (HOST, listener.port)
        d.command("U call %s %d ftag %s && M3:1 one && M3:2 two 96" % (HOST, caller.port, notify))
        port = int(d.command("L call %s 4000 ftag ttag" % HOST))
        digit(caller, port, 1, 1000, 1)
        digit(caller, port, 10, 2000, 2, volume=3)
        for n in range(2):
            caller.send(event(20 + n, 3000, 3, 100, end=True, pt=96), HOST, port)
        assert wait_for(lambda: len(listener.lines) >= 3)
        assert listener.lines == [b"one 1 10 640 0", b"one 2 3 640 0", b"two 3 10 100 0"]
    finally:
        caller.close()


def test_notifications_of_a_worker_reach_the_target(rtpproxy, dso, listener):
    d = start(rtpproxy, dso, listener, "--workers", "2")
    callers = [Endpoint(HOST) for _ in range(4)]
    try:
        notify = "tcp:%s:%d DTAG" % (HOST, listener.port)
        for n, caller in enumerate(callers):           # Call-IDs spread over both workers
            d.command("U call%d %s %d ftag %s && M3:1 tag%d" % (n, HOST, caller.port, notify, n))
            port = int(d.command("L call%d %s 4000 ftag ttag" % (n, HOST)))
            digit(caller, port, 1, 1000, n)
        assert wait_for(lambda: len(listener.lines) >= 4)
        assert sorted(listener.lines) == [b"tag%d %d 10 640 0" % (n, n) for n in range(4)]
    finally:
        for caller in callers:
            caller.close()
