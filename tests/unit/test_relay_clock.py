"""The real relay (relay.Relay, in this process, on 127.0.0.1 sockets) with
an injected clock on a time base far from the monotonic one: the packet
path passes the relay's clock to latching, and the session's one timer
expires the session when that clock says so (relay re-arms it from
Session.get_timer and acts on Session.handle_timer)."""

import socket
import struct

import gevent
import pytest

from helpers import Endpoint
from rtpproxy_py.config import BindAddress, Config
from rtpproxy_py.dispatcher import Dispatcher
from rtpproxy_py.relay import Relay

LOCAL = BindAddress(socket.AF_INET, "127.0.0.1")
BASE = 4.0e9


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def rtp(seq, ssrc=0x5151):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


def wait_for(condition, timeout=5.0):
    deadline = gevent.get_hub().loop.now() + timeout
    while not condition():
        assert gevent.get_hub().loop.now() < deadline, "condition not met in %.0f s" % timeout
        gevent.sleep(0.01)


@pytest.fixture
def relay():
    config = Config(listen4=[LOCAL], primary=LOCAL, fastpath=False, poll_batch=0.0)
    clock = Clock(BASE)
    media = Relay(config, clock=clock)
    dispatcher = Dispatcher(config, media, None, clock)
    media.on_expired = dispatcher.expire
    yield media, dispatcher, clock
    for session in list(dispatcher.table):
        dispatcher.destroy(session)
    media.shutdown()
    media._tick.stop()


def test_injected_clock_reaches_latching_and_expiry(relay):
    media, dispatcher, clock = relay
    caller, callee = Endpoint(), Endpoint()
    try:
        dispatcher.execute(b"U c1 127.0.0.1 %d ft" % caller.port)
        to_callee_side = int(dispatcher.execute(
            b"L c1 127.0.0.1 %d ft tt" % callee.port).split()[0])
        session = next(iter(dispatcher.table))
        assert media.timers[session].greenlet is not None
        clock.now = BASE + 5
        for seq in range(3):
            caller.send(rtp(seq), "127.0.0.1", to_callee_side)
        wait_for(lambda: session.rtp[1].npkts_in == 3)
        # the packet path's time is the injected clock's, not the monotonic one
        assert session.rtp[1].last_rx == pytest.approx(BASE + 5, abs=0.2)
        assert session.rtp[1].latched
        assert callee.recv()[0] == rtp(0)
        # the session's timer: due at the injected clock's expiry time
        deadline = session.get_timer(clock.now)
        assert BASE + 5 < deadline < BASE + 1000
        clock.now = deadline
        media.session_changed(session)          # re-arm: the timer sees the clock's time
        wait_for(lambda: session.closed)
        assert session.end_reason == "timeout" and session not in media.timers
        assert dispatcher.counters.nsess_timeout == 1
    finally:
        caller.close()
        callee.close()
