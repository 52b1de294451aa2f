"""The session's one timer (Session.get_timer / handle_timer, as aioquic's)
and its clock: a Session and its Streams driven in memory with time passed
in, on two time bases far apart. Nothing here has a socket or a greenlet; if
the core read the wall clock, the monotonic clock or a module global instead
of ``now``, one of the two bases would see other results."""

import random
import struct

import pytest

from rtpproxy_py.media import rtp
from rtpproxy_py.media.player import BytesSource, Player
from rtpproxy_py.media.resizer import Resizer
from rtpproxy_py.session import FOREVER, RELATCH_WINDOW, SEQ_RESYNC_INTERVAL, Session

CALLER = ("10.0.0.1", 4000)
CALLEE = ("10.0.0.2", 5000)
STRANGER = ("10.0.0.9", 7000)
NAT = ("10.0.0.7", 4002)

# far before and far after any plausible time.monotonic() / time.time()
BASES = [3.0, 4.0e9]


def packet(seq, ssrc=0xAAAA, payload=b"\xff" * 80):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 80, ssrc) + payload


def new_session(t0, ttl=30):
    s = Session("cid", "ft", t0, setup_ttl=ttl, established_ttl=ttl)
    for stream in s.streams():
        stream.port = 30000 + 2 * stream.index + (0 if stream.is_rtp else 1)   # as a driver would
        stream.refresh_target()
    return s


@pytest.mark.parametrize("t0", BASES)
def test_latching_follows_the_time_passed_in(t0):
    s = new_session(t0)
    caller = s.rtp[1]
    s.rtp[0].signal_address(CALLEE, False, t0)
    caller.signal_address(CALLER, False, t0)
    caller.signal_address(CALLER, False, t0 + 1)        # a re-INVITE: the 10 s window opens
    # within the window a new source is followed but not latched
    assert caller.on_packet(packet(1), NAT, t0 + 2) == CALLEE
    assert caller.rem_addr == NAT and not caller.latched
    # after it, the next packet latches it
    assert caller.on_packet(packet(2), NAT, t0 + 1 + RELATCH_WINDOW) == CALLEE
    assert caller.latched and caller.ssrc == 0xAAAA
    # and a stranger with another SSRC is refused
    assert caller.on_packet(packet(3, ssrc=0xBBBB), STRANGER, t0 + 2 + RELATCH_WINDOW) is None
    assert caller.rem_addr == NAT and caller.nignored == 1
    # the latched sequence number is checked again SEQ_RESYNC_INTERVAL after the latching packet
    assert caller.recheck_at == pytest.approx(t0 + 1 + RELATCH_WINDOW + SEQ_RESYNC_INTERVAL)


@pytest.mark.parametrize("t0", BASES)
def test_expiry_through_get_timer_and_handle_timer(t0):
    s = new_session(t0, ttl=30)
    assert s.get_timer(t0) == t0 + 31                   # one counter tick after the TTL
    assert not s.handle_timer(t0 + 30.5).expired
    s.rtp[1].signal_address(CALLER, False, t0)
    s.rtp[1].on_packet(packet(1), CALLER, t0 + 20)     # media keeps it alive
    deadline = s.get_timer(t0 + 20)
    assert deadline == t0 + 51
    assert not s.handle_timer(deadline - 0.001).expired
    due = s.handle_timer(deadline)
    assert due.expired and due.relayed == [] and due.played == []


@pytest.mark.parametrize("t0", BASES)
def test_module_timers_run_in_handle_timer_and_set_its_deadline(t0):
    s = new_session(t0)
    runs = []

    def waker(now):
        runs.append(now)
        return now + 0.2

    s.add_waker(waker)
    assert s.get_timer(t0) < t0                         # a new waker runs at the next wake-up
    s.handle_timer(t0 + 1)
    assert runs == [t0 + 1] and s.get_timer(t0 + 1) == pytest.approx(t0 + 1.2)
    s.remove_waker(waker)
    s.handle_timer(t0 + 1.2)
    assert runs == [t0 + 1]


@pytest.mark.parametrize("t0", BASES)
def test_prompt_packets_are_due_at_the_timer(t0):
    s = new_session(t0)
    s.rtp[1].rem_addr = CALLER
    player = Player(BytesSource(bytes(240)), 0, 10, 1, rng=random.Random(1))    # 3 x 10 ms
    s.start_playback(1, player, t0)
    assert s.get_timer(t0) == pytest.approx(t0 + 0.01)  # not started: polls for the address
    sent = []
    now = t0
    for _ in range(10):
        due = s.handle_timer(now)
        assert not due.expired and due.relayed == []
        sent += [(now, stream.index, len(data)) for stream, data in due.played]
        now = s.get_timer(now)
        if s.players is None:
            break
    assert [t for t, _, _ in sent] == pytest.approx([t0, t0 + 0.01, t0 + 0.02])
    assert {(index, size) for _, index, size in sent} == {(1, 92)}
    assert s.npkts_played == 3 and s.players is None
    assert s.get_timer(now) == s.expires_at()           # only expiry left


@pytest.mark.parametrize("t0", BASES)
def test_resizer_deadline_through_the_stream(t0):
    s = new_session(t0)
    caller, callee = s.rtp[1], s.rtp[0]
    caller.signal_address(CALLER, False, t0)
    callee.signal_address(CALLEE, False, t0)
    caller.resizer = Resizer(20)
    assert caller.next_deadline(t0) == FOREVER and s.get_timer(t0) == s.expires_at()
    # two 10 ms packets, as a driver's reader hands them to the resizer
    for k, at in enumerate((t0 + 1.0, t0 + 1.01)):
        assert caller.on_packet(packet(k + 1), CALLER, at) == CALLEE
        assert caller.resizer.enqueue(packet(k + 1), at)
    due = s.handle_timer(t0 + 1.01)
    out = list(due.relayed)
    now = t0 + 1.01
    for _ in range(10):
        if out:
            break
        now = s.get_timer(now)
        assert t0 + 1.01 <= now < t0 + 2                # the resizer's deadline, not expiry
        out += s.handle_timer(now).relayed
    assert len(out) == 1
    stream, data, target = out[0]
    assert stream is callee and target == CALLEE        # sent from the peer's port to the callee
    header = rtp.parse(data)
    assert header.payload_end - header.payload_offset == 160    # two 10 ms packets in one
    assert s.get_timer(now) == s.expires_at()           # queue empty: only expiry left


@pytest.mark.parametrize("t0", BASES)
def test_resizer_deadline_moved_by_the_packet_path_is_the_one_asked(t0):
    """The resizer answers its deadline as a feature only: a dequeue on the
    packet path (relay.py's resizing reader) that empties the queue leaves
    no earlier wake-up from the timer's own last dequeue behind."""
    s = new_session(t0)
    caller, callee = s.rtp[1], s.rtp[0]
    caller.signal_address(CALLER, False, t0)
    callee.signal_address(CALLEE, False, t0)
    caller.resizer = Resizer(20)
    assert caller.on_packet(packet(1), CALLER, t0 + 1.0) == CALLEE
    assert caller.resizer.enqueue(packet(1), t0 + 1.0)
    assert s.handle_timer(t0 + 1.0).relayed == []       # 10 ms of the 20 ms it sends
    first = s.get_timer(t0 + 1.0)
    assert t0 + 1.0 < first < t0 + 2                    # waits for more audio
    # the second packet completes it: the reader sends it and the queue is empty
    assert caller.on_packet(packet(2), CALLER, t0 + 1.01) == CALLEE
    assert caller.resizer.enqueue(packet(2), t0 + 1.01)
    sent, wake_at = caller.resizer.dequeue(t0 + 1.01)
    assert len(sent) == 1 and wake_at is None
    assert caller.next_deadline(t0 + 1.01) == FOREVER
    assert s.get_timer(t0 + 1.01) == s.expires_at()     # not the timer's stale `first`
