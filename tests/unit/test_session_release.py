"""An ended session leaves no reference cycle (issue 18.6): CPython frees the
Session, its Streams and what they own by reference counting as soon as the
session ends (D, time-out), with the garbage collector off. Before,
the session and its streams pointed at each other, so ended sessions piled
up until a full collection.

In memory (the real Dispatcher on media_port.MemoryMediaPort, time passed
in) for every end path and the features that attach to streams (recording,
C copy, P prompt, z re-packetizing, RTP analysis), then on the real relay
in this process (its readers, its timer greenlet, the fast path's listener)."""

import gc
import select
import socket
import struct
import weakref

import gevent
import pytest

from helpers import Endpoint
from rtpproxy_py.config import BindAddress, Config
from rtpproxy_py.dispatcher import Dispatcher
from rtpproxy_py.media_port import MemoryMediaPort
from rtpproxy_py.recording import Recordings
from rtpproxy_py.relay import Relay

LOCAL = BindAddress(socket.AF_INET, "127.0.0.1")
CALLER = ("192.0.2.1", 4000)
CALLEE = ("192.0.2.2", 5000)


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def rtp(seq, ssrc):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


RTCP = b"\x80\xc8\x00\x01" + b"\0" * 4


@pytest.fixture
def no_gc():
    """The collector off, and nothing left over from before in its way."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def left_in_cycles():
    """The names of rtpproxy_py's types a collection finds only in cycles."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted({type(o).__name__ for o in gc.garbage
                       if type(o).__module__.startswith("rtpproxy_py")})
    finally:
        gc.set_debug(0)
        del gc.garbage[:]
        gc.collect()


def assert_freed(ref, what):
    """The session dead, freed by reference counting alone (the collector is
    off), and a collection finds none of its objects (streams, latching
    state, analyzers, features...) left in a cycle."""
    session = ref()
    holders = [type(r).__name__ for r in gc.get_referrers(session)] if session is not None else []
    del session
    ours = left_in_cycles()
    assert not holders, "%s: the ended session is still alive, held by %s" % (what, holders)
    assert not ours, "%s: the ended session's objects were left in cycles: %s" % (what, ours)


def in_memory(tmp_path, **config):
    config = Config(listen4=[LOCAL], primary=LOCAL, record_dir=str(tmp_path), **config)
    clock = Clock()
    port = MemoryMediaPort(35000, 35098, routes={"192.0.2.9": "127.0.0.1"})
    dispatcher = Dispatcher(config, port, None, clock)
    port.on_expired = dispatcher.expire
    dispatcher.recorder = Recordings(config, port)
    return dispatcher, port, clock


def tracked(dispatcher):
    """A weak reference to the only live session."""
    (session,) = list(dispatcher.table)
    return weakref.ref(session)


@pytest.mark.parametrize("extra", [
    [], ["R c1 ft tt"], ["Cp c1 udp:192.0.2.9:6000 ft tt"], ["P2 c1 {tmp}/hello 0 ft tt"],
    ["Uz20 c1 192.0.2.1 4000 ft"], ["R c1 ft tt", "Cp c1 udp:192.0.2.9:6000 ft tt",
                                      "Uz20 c1 192.0.2.1 4000 ft", "P2 c1 {tmp}/hello 0 tt ft"],
], ids=["plain", "record", "copy", "prompt", "z", "all"])
@pytest.mark.parametrize("end", ["D", "timeout"])
@pytest.mark.parametrize("analysis", [False, True], ids=["", "analysis"])
def test_an_ended_session_is_freed_without_a_collection(tmp_path, no_gc, extra, end, analysis):
    (tmp_path / "hello.0").write_bytes(b"\x7f" * 160 * 50)
    dispatcher, port, clock = in_memory(tmp_path, rtp_analysis=analysis)
    # U's port is the one the callee is told, L's the caller's
    callee_port = int(dispatcher.execute(b"U c1 %s %d ft" % (CALLER[0].encode(), CALLER[1])).split()[0])
    caller_port = int(dispatcher.execute(b"L c1 %s %d ft tt" % (CALLEE[0].encode(), CALLEE[1])).split()[0])
    for cmd in extra:
        assert dispatcher.execute(cmd.format(tmp=tmp_path).encode())[0] != "E", cmd
    ref = tracked(dispatcher)
    for seq in range(1, 6):
        clock.now += 0.02
        port.receive(caller_port, rtp(seq, 0x1111), CALLER, clock.now)
        port.receive(callee_port, rtp(seq, 0x2222), CALLEE, clock.now)
        port.receive(callee_port + 1, RTCP, (CALLEE[0], CALLEE[1] + 1), clock.now)
        port.handle_timer(clock.now)
    assert port.datagrams_to_send()
    if end == "D":
        assert dispatcher.execute(b"D c1 ft tt") == "0\n"
    else:
        clock.now += 3600
        port.handle_timer(clock.now)
        assert dispatcher.counters.nsess_timeout == 1
    assert len(dispatcher.table) == 0
    assert_freed(ref, "%s after %s" % (extra, end))
    dispatcher.recorder.shutdown()


def test_a_session_refused_for_want_of_ports_is_freed_without_a_collection(tmp_path, no_gc):
    dispatcher, port, clock = in_memory(tmp_path)
    port.ports = type(port.ports)(35000, 35002, True)     # two RTP/RTCP pairs
    replies = [dispatcher.execute(b"U c%d 192.0.2.1 4000 ft" % n) for n in range(6)]
    assert replies[0][0] != "E" and set(replies[2:]) == {"E72\n"}, replies     # ports exhausted
    left = left_in_cycles()
    assert not left, "refused sessions left in cycles: %s" % left
    dispatcher.recorder.shutdown()


def wait_for(condition, timeout=5.0):
    deadline = gevent.get_hub().loop.now() + timeout
    while not condition():
        assert gevent.get_hub().loop.now() < deadline, "condition not met in %.0f s" % timeout
        gevent.sleep(0.01)


def readable(endpoint):
    return bool(select.select([endpoint.sock], [], [], 0)[0])


def test_the_relay_s_ended_sessions_are_freed_without_a_collection(no_gc):
    """The real relay: sockets, twins and readers, the session's timer
    greenlet, the fast path's listener (Session.on_media_change), a time-out
    through the timer."""
    config = Config(listen4=[LOCAL], primary=LOCAL, poll_batch=0.0)
    clock = Clock(5000.0)
    media = Relay(config, clock=clock)
    dispatcher = Dispatcher(config, media, None, clock)
    media.on_expired = dispatcher.expire
    caller, callee = Endpoint(), Endpoint()
    try:
        for call, end in enumerate(["D", "timeout", "D"]):
            callee_port = int(dispatcher.execute(b"U c%d 127.0.0.1 %d ft" % (call, caller.port)).split()[0])
            caller_port = int(dispatcher.execute(
                b"L c%d 127.0.0.1 %d ft tt" % (call, callee.port)).split()[0])
            (session,) = list(dispatcher.table)
            ref = tracked(dispatcher)
            for seq in range(1, 4):
                caller.send(rtp(seq, 0x1111), "127.0.0.1", caller_port)
                callee.send(rtp(seq, 0x2222), "127.0.0.1", callee_port)
            wait_for(lambda: readable(caller) and readable(callee))      # relayed both ways
            if end == "D":
                assert dispatcher.execute(b"D c%d ft tt" % call) == "0\n"
            else:
                clock.now = session.get_timer(clock.now)
                media.session_changed(session)      # the timer sees the clock's time
                wait_for(lambda: session.closed)
            del session
            gevent.sleep(0.05)      # the loop runs the callbacks the end queued (the timer's)
            caller.drain(0.05), callee.drain(0.05)
            assert_freed(ref, "relay, %s" % end)
    finally:
        caller.close()
        callee.close()
        for session in list(dispatcher.table):
            dispatcher.destroy(session)
        media.shutdown()
        media._tick.stop()


@pytest.mark.parametrize("first", ["source", "fork"])
def test_a_forked_call_s_sessions_are_freed_without_a_collection(tmp_path, no_gc, first):
    """``U c2 ... && C c1``: c1's streams carry taps that send out of c2's
    streams; whichever session ends first, the fork ends with it and the
    other session goes on; each is freed at its end."""
    dispatcher, port, clock = in_memory(tmp_path, rtp_analysis=True)
    callee_port = int(dispatcher.execute(b"U c1 192.0.2.1 4000 ft").split()[0])
    caller_port = int(dispatcher.execute(b"L c1 192.0.2.2 5000 ft tt").split()[0])
    assert " && " in dispatcher.execute(b"U c2 192.0.2.5 7000 f2 t2 && L 192.0.2.6 7002 && C c1 ft tt")
    sessions = {s.call_id: weakref.ref(s) for s in dispatcher.table}

    def talk():
        for seq in range(1, 4):
            clock.now += 0.02
            port.receive(caller_port, rtp(seq, 0x1111), CALLER, clock.now)
            port.receive(callee_port, rtp(seq, 0x2222), CALLEE, clock.now)
        return {dst for _, _, dst in port.datagrams_to_send()}

    assert {("192.0.2.5", 7000), ("192.0.2.6", 7002), CALLER, CALLEE} <= talk()     # forked
    ended, other = ("c1", "c2") if first == "source" else ("c2", "c1")
    tags = {"c1": b"ft tt", "c2": b"f2 t2"}
    assert dispatcher.execute(b"D %s %s" % (ended.encode(), tags[ended])) == "0\n"
    assert_freed(sessions[ended], "%s forked, %s ended first" % (first, ended))
    if other == "c1":
        assert talk() == {CALLER, CALLEE}       # the call goes on, no longer forked
    assert dispatcher.execute(b"D %s %s" % (other.encode(), tags[other])) == "0\n"
    assert_freed(sessions[other], "%s forked, %s ended last" % (first, other))
    dispatcher.recorder.shutdown()
