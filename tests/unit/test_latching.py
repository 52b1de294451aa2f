"""The latching rules as strategies (latching.py) on plain objects with a fake
clock: the session picks them, each stream's state is its LatchState, and
packets from the latched source within recheck_at never reach them."""

import struct

import pytest

from rtpproxy_py import latching
from rtpproxy_py.latching import STRICT, UPSTREAM, LatchState
from rtpproxy_py.session import Session

CALLER = ("10.0.0.1", 4000)
CALLEE = ("10.0.0.2", 5000)
STRANGER = ("6.6.6.6", 1000)


def rtp(seq, ssrc=0xAAAA):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\0" * 160


def call(strict=False, caller=CALLER, now=0.0):
    s = Session("cid", "ft", now, setup_ttl=60)
    s.strict = strict
    s.latch_until = now + 3.0
    for stream in s.streams():
        stream.port = 1
        stream.refresh_target()
    for k, address in ((1, caller), (0, CALLEE)):
        s.rtp[k].signal_address(address, False, now)
        s.rtcp[k].signal_address((address[0], address[1] + 1), False, now)
    return s


def test_the_session_picks_the_rules_and_streams_keep_their_state():
    s = Session("cid", "ft", 0.0, setup_ttl=60)
    assert s.latching is UPSTREAM and not s.strict
    s.strict = True
    assert s.latching is STRICT and s.strict
    assert isinstance(s.rtp[1].latch, LatchState) and s.rtp[1].latch is not s.rtp[0].latch
    s.rtp[1].signal_address(CALLER, False, 0.0)
    assert s.rtp[1].latch.signalled == CALLER == s.rtp[1].signalled


class Refusing(latching.UpstreamLatching):
    """Counts what reaches the rules; refuses everything."""

    def __init__(self):
        self.asked = 0

    def check_source(self, s, data, source, now):
        self.asked += 1
        return False

    def refusal_reason(self, s, data, source):
        return "test"


def test_the_latched_source_skips_the_rules_until_recheck_at():
    s = call()
    stream = s.rtp[1]
    assert stream.on_packet(rtp(1), CALLER, 1.0) == CALLEE        # latched (upstream rules)
    assert stream.latched and stream.recheck_at > 1.0
    rules = s.latching = Refusing()
    assert stream.on_packet(rtp(2), CALLER, 1.5) == CALLEE        # the fast case
    assert rules.asked == 0
    assert stream.on_packet(rtp(3), STRANGER, 1.5) is None        # another source: the rules
    assert stream.on_packet(rtp(4), CALLER, stream.recheck_at) is None   # recheck time: the rules
    assert rules.asked == 2


def test_upstream_follows_nat_rebinding_of_the_latched_ssrc():
    """Latched to a NATed source: past the 10 s window a new port is followed
    only with the same SSRC and a close sequence number."""
    s = call(caller=("10.9.9.9", 4000))           # the party never sends from there
    stream = s.rtp[1]
    nat, rebound = ("192.0.2.9", 31000), ("192.0.2.9", 31002)
    assert stream.on_packet(rtp(1), nat, 11.0) == CALLEE
    assert stream.rem_addr == nat and stream.latched and stream.latch.ssrc == 0xAAAA
    assert stream.on_packet(rtp(50, ssrc=0xBBBB), rebound, 20.0) is None   # another sender
    assert stream.on_packet(rtp(3000), rebound, 20.0) is None              # sequence too far
    assert stream.on_packet(rtp(2), rebound, 20.0) == CALLEE
    assert stream.rem_addr == rebound and stream.latch.seq == 2


def test_upstream_prefers_the_signalled_address():
    """A party sending from exactly its signalled address keeps its stream
    against a stranger, and takes it back from one that got it first."""
    s = call()
    stream = s.rtp[1]
    assert stream.on_packet(rtp(1, ssrc=0xEEEE), STRANGER, 0.5) == CALLEE   # first source wins
    assert stream.rem_addr == STRANGER and not stream.confirmed
    assert stream.on_packet(rtp(2), CALLER, 1.0) == CALLEE                  # the party takes it back
    assert stream.rem_addr == CALLER and stream.confirmed and stream.latch.ssrc == 0xAAAA
    assert stream.on_packet(rtp(3, ssrc=0xEEEE), STRANGER, 1.5) is None      # preferred now
    assert stream.rem_addr == CALLER


@pytest.mark.parametrize("source", [STRANGER, ("10.0.0.1", 4444)])
def test_strict_learns_only_from_the_signalled_host_and_follows_the_ssrc(source):
    s = call(strict=True)
    stream = s.rtp[1]
    assert stream.on_packet(rtp(1, ssrc=0xEEEE), STRANGER, 0.5) is None     # not the signalled host
    assert stream.on_packet(rtp(1), CALLER, 1.0) == CALLEE
    assert stream.latched and stream.latch.ssrc == 0xAAAA
    # latched: another sender is refused even from the signalled host; the
    # same SSRC continuing from a new address (NAT rebinding) is followed
    assert stream.on_packet(rtp(2, ssrc=0xEEEE), source, 1.5) is None
    assert stream.on_packet(rtp(2), source, 1.6) == CALLEE and stream.rem_addr == source
    assert s.rtp[1].user_space_reason("fastpath") == "strict latching"


def test_strict_forgets_what_packets_taught_when_signalling_moves_the_party():
    s = call(strict=True)
    stream = s.rtp[1]
    assert stream.on_packet(rtp(1), CALLER, 1.0) == CALLEE and stream.latched
    moved = ("10.0.0.7", 4000)
    stream.signal_address(moved, False, 2.0)
    assert not stream.latched and stream.latch.ssrc is None and stream.rem_addr == moved
    s.strict = False                    # the same change under the default rules keeps the latch
    s2 = call()
    assert s2.rtp[1].on_packet(rtp(1), CALLER, 11.0) == CALLEE and s2.rtp[1].latched
    s2.rtp[1].signal_address(moved, False, 12.0)
    assert s2.rtp[1].latched and s2.rtp[1].latch.ssrc == 0xAAAA
