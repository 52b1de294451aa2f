"""Listen addresses in U/L replies and where relay sockets are bound: -l/-6 forms,
labels, advertised addresses (-A, =adv), bridging on loopback addresses, e/i,
l, 6, and forced asymmetry (cli.md -l/-6/-A, control-protocol.md 3 and 5.6).

127.0.0.0/8 is all local, so 127.0.0.1 and 127.0.0.2 serve as two interfaces
here; test_bridging.py does the same across real separate networks."""

import pytest

from helpers import Endpoint, rtp_packet


def _port_addr(reply):
    fields = reply.split()
    return int(fields[0]), fields[1:]


def _source_seen(sender, receiver, host, port, payload=None):
    """``sender`` sends to the relay at host:port; returns the source ``receiver`` sees."""
    payload = payload or rtp_packet(1)
    sender.send(payload, host, port)
    data, source = receiver.recv()
    assert data == payload
    return source[:2]


BRIDGE = ("-l", "127.0.0.1/127.0.0.2")
DUAL = ("-l", "127.0.0.1", "-6", "::1")

# listen options -> [(command, what follows the port in the reply)]
REPLIES = {
    (): [("U c 127.0.0.1 4000 f", [])],                                  # '*' default: port only
    ("-l", "*", "-A", "198.51.100.9"): [("U c 127.0.0.1 4000 f", ["198.51.100.9"])],
    ("-l", "127.0.0.1=203.0.113.5"): [("U c 127.0.0.1 4000 f", ["203.0.113.5"])],
    ("-l", "127.0.0.1", "-A", "203.0.113.6"): [("U c 127.0.0.1 4000 f", ["203.0.113.6"])],
    ("-6", "::1=2001:db8::5"): [("U6 c ::1 4000 f", ["2001:db8::5", "6"])],
    ("-6", "::"): [("U6 c ::1 4000 f", [])],
    DUAL: [
        ("U6 c6 ::1 4000 f", ["::1", "6"]),
        ("U c4 127.0.0.1 4000 f", ["127.0.0.1"]),
        ("Ul[::1] cl 127.0.0.1 4000 f", ["::1", "6"]),
    ],
    ("-l", "in@127.0.0.1", "-l", "pub@127.0.0.3=203.0.113.3", "-6", "::1", "-6", "v6@::1=2001:db8::7"): [
        ("U c0 127.0.0.1 4000 f", ["127.0.0.1"]),
        ("Ul{pub} c1 127.0.0.1 4000 f", ["203.0.113.3"]),
        ("Ul127.0.0.3 c2 127.0.0.1 4000 f", ["203.0.113.3"]),
        ("Ul{in} c3 127.0.0.1 4000 f", ["127.0.0.1"]),
        ("U6l{v6} c4 ::1 4000 f", ["2001:db8::7", "6"]),
    ],
    BRIDGE: [
        ("U c0 127.0.0.1 4000 f", ["127.0.0.1"]),        # no e/i: internal
        ("Uie c1 127.0.0.1 4000 f", ["127.0.0.2"]),      # the second letter: this reply's side
        ("Uei c2 127.0.0.1 4000 f", ["127.0.0.1"]),
        ("Uee c3 127.0.0.1 4000 f", ["127.0.0.2"]),
        ("Ue c4 127.0.0.1 4000 f", ["127.0.0.1"]),       # one letter names the offerer's side
    ],
    BRIDGE + ("-A", "192.0.2.1/198.51.100.1"): [
        ("Uie c1 127.0.0.1 4000 f", ["198.51.100.1"]),
        ("Uei c2 127.0.0.1 4000 f", ["192.0.2.1"]),
    ],
    ("-l", "127.0.0.1=192.0.2.7/127.0.0.2=198.51.100.7"): [("Uie c 127.0.0.1 4000 f", ["198.51.100.7"])],
    ("-l", "127.0.0.1", "-6", "/::1"): [                 # v4/v6 bridge
        ("Uie c1 127.0.0.1 4000 f", ["::1", "6"]),
        ("Uei6 c2 ::1 4000 f", ["127.0.0.1"]),
    ],
    ("-6", "::1/::1=2001:db8::9"): [("U6ie c ::1 4000 f", ["2001:db8::9", "6"])],
}


@pytest.mark.parametrize("args", list(REPLIES), ids=lambda a: " ".join(a) or "default")
def test_reply_address(rtpproxy, args):
    d = rtpproxy(*args)
    for command, expected in REPLIES[args]:
        port, addr = _port_addr(d.command(command))
        assert port >= d.ports[0] and addr == expected, command


ERRORS = {
    (): [("Uei c 127.0.0.1 4000 f", "E11"),                 # e/i without a bridge
         ("Uie c 127.0.0.1 4000 f", "E12")],
    BRIDGE: [("Ueie c 127.0.0.1 4000 f", "E11"),            # a third letter
             ("Ueii c 127.0.0.1 4000 f", "E12")],
    ("-l", "127.0.0.1=203.0.113.5"): [
        ("U6 c ::1 4000 f", "E36"),                         # no IPv6 listen address
        ("Ul{nosuch} c 127.0.0.1 4000 f", "E31"),
        ("Ul127.0.0.9 c 127.0.0.1 4000 f", "E31"),
        # the advertised address is what clients see, not a name for the listen address
        ("Ul203.0.113.5 c 127.0.0.1 4000 f", "E31"),
        ("Ul c 127.0.0.1 4000 f", "E15"),
        ("Ul[::1] c 127.0.0.1 4000 f", "E31"),
        ("Ur[::1] c 127.0.0.1 4000 f", "E32"),
    ],
    ("-6", "::1"): [("U c 127.0.0.1 4000 f", "E36")],
}


@pytest.mark.parametrize("args", list(ERRORS), ids=lambda a: " ".join(a) or "default")
def test_address_errors(rtpproxy, args):
    d = rtpproxy(*args)
    for command, code in ERRORS[args]:
        assert d.command(command) == code, command
    assert d.command("I").startswith("sessions created: 0")


def test_bridge_legs_bound_per_interface_and_planned_by_the_offer(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1/127.0.0.2")
    caller, callee = Endpoint("127.0.0.2"), Endpoint("127.0.0.1")
    p0, a0 = _port_addr(d.command("Uie c1 127.0.0.2 %d ft" % caller.port))
    assert a0 == ["127.0.0.2"]
    # the L's own letters do not move the caller's leg: the offer put it on the internal side
    p1, a1 = _port_addr(d.command("Lee c1 127.0.0.1 %d ft tt" % callee.port))
    assert a1 == ["127.0.0.1"]
    assert _source_seen(caller, callee, "127.0.0.1", p1) == ("127.0.0.2", p0)
    assert _source_seen(callee, caller, "127.0.0.2", p0) == ("127.0.0.1", p1)
    # n with letters: a fresh pair on the interface the second letter names
    p1b, a1b = _port_addr(d.command("Lnie c1 127.0.0.1 %d ft tt" % callee.port))
    assert a1b == ["127.0.0.2"] and p1b != p1
    # n without letters: a fresh pair where the leg already was
    p1c, a1c = _port_addr(d.command("Ln c1 127.0.0.1 %d ft tt" % callee.port))
    assert a1c == ["127.0.0.2"] and p1c != p1b
    # the single-shot form plans the same way
    reply = d.command("Uei c3 127.0.0.1 4000 ft tt && L 127.0.0.2 4002")
    assert reply.split(" && ")[0].split()[1] == "127.0.0.1" and reply.split(" && ")[1].split()[1] == "127.0.0.2"


def test_l_modifier_gateway_without_bridge(rtpproxy):
    """Non-bridged IPv4/IPv6 gateway: the offer picks the callee's family with l,
    the caller's leg gets the family the offer's address had (6)."""
    d = rtpproxy("-l", "127.0.0.1", "-6", "::1")
    caller, callee = Endpoint("::1"), Endpoint("127.0.0.1")
    p0, a0 = _port_addr(d.command("U6l127.0.0.1 gw ::1 %d ft" % caller.port))
    assert a0 == ["127.0.0.1"]
    p1, a1 = _port_addr(d.command("L gw 127.0.0.1 %d ft tt" % callee.port))
    assert a1 == ["::1", "6"]
    assert _source_seen(caller, callee, "::1", p1) == ("127.0.0.1", p0)
    assert _source_seen(callee, caller, "127.0.0.1", p0) == ("::1", p1)


def test_labelled_address_binds_there(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", "-l", "side@127.0.0.3=203.0.113.3")
    a, b = Endpoint("127.0.0.1"), Endpoint("127.0.0.1")
    p0, addr = _port_addr(d.command("Ul{side} lab 127.0.0.1 %d ft" % a.port))
    assert addr == ["203.0.113.3"]
    p1, addr = _port_addr(d.command("L lab 127.0.0.1 %d ft tt" % b.port))
    assert addr == ["127.0.0.1"]
    assert _source_seen(b, a, "127.0.0.3", p0) == ("127.0.0.1", p1)
    assert _source_seen(a, b, "127.0.0.1", p1) == ("127.0.0.3", p0)


@pytest.mark.parametrize("flags,latches", [([], False), (["--bridge_symmetric"], True)])
def test_bridging_forces_asymmetric_unless_bridge_symmetric(rtpproxy, flags, latches):
    d = rtpproxy("-l", "127.0.0.1/127.0.0.2", *flags)
    signalled = Endpoint("127.0.0.1")          # where the answer SDP says the callee is
    actual = Endpoint("127.0.0.1")             # where the callee really sends from (NAT)
    caller = Endpoint("127.0.0.1")
    p0 = _port_addr(d.command("Uei sym 127.0.0.1 %d ft" % caller.port))[0]
    p1 = _port_addr(d.command("Lie sym 127.0.0.1 %d ft tt" % signalled.port))[0]
    actual.send(rtp_packet(1, ssrc=7), "127.0.0.1", p0)
    assert caller.recv()[0] == rtp_packet(1, ssrc=7)
    caller.send(rtp_packet(1, ssrc=8), "127.0.0.2", p1)
    got_actual = actual.recv(0.5)[0]
    got_signalled = signalled.recv(0.3)[0]
    if latches:
        assert got_actual == rtp_packet(1, ssrc=8) and got_signalled is None
    else:
        assert got_signalled == rtp_packet(1, ssrc=8) and got_actual is None


def test_explicit_s_undoes_forced_asymmetry(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1/127.0.0.2")
    signalled, actual, caller = Endpoint("127.0.0.1"), Endpoint("127.0.0.1"), Endpoint("127.0.0.1")
    p0 = _port_addr(d.command("Uei sym 127.0.0.1 %d ft" % caller.port))[0]
    p1 = _port_addr(d.command("Lies sym 127.0.0.1 %d ft tt" % signalled.port))[0]
    actual.send(rtp_packet(1, ssrc=7), "127.0.0.1", p0)
    assert caller.recv()[0] is not None
    caller.send(rtp_packet(1, ssrc=8), "127.0.0.2", p1)
    assert actual.recv(0.5)[0] == rtp_packet(1, ssrc=8)
