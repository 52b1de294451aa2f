"""Bridging two real networks (media-relay.md section 4): a public network and a
VPN, each in its own network namespace, joined only through the relay's
namespace, where the daemon runs with ``-l internal/external``."""

import sys

import pytest

from helpers import rtp_packet
from netns import Networks, require_root

N = Networks


@pytest.fixture
def networks():
    made = []

    def make(public_ipv6=False):
        require_root()
        nets = Networks(public_ipv6)
        made.append(nets)
        return nets

    yield make
    for nets in made:
        nets.delete()


def _relay_in(nets, rtpproxy, *args):
    return rtpproxy(*args, control="unix", command=nets.relay.exec_argv([sys.executable, "-m", "rtpproxy_py"]))


def _exchange(a, a_target, b, b_target):
    """RTP both ways between parties a and b; returns the sources each saw
    as {(a|b, rtp|rtcp): (host, port)}."""
    seen = {}
    for n in range(3):
        a.send(rtp_packet(n, ssrc=0xA), *a_target)
        data, source = b.recv()
        assert data == rtp_packet(n, ssrc=0xA), "a -> b lost"
        seen["b", "rtp"] = source[:2]
        b.send(rtp_packet(n, ssrc=0xB), *b_target)
        data, source = a.recv()
        assert data == rtp_packet(n, ssrc=0xB), "b -> a lost"
        seen["a", "rtp"] = source[:2]
    return seen


def _assert_isolated(nets, public_phone, vpn_phone):
    """The public side cannot reach the VPN by itself: its packets do get to the relay's
    namespace (default route), which does not forward them. Turning forwarding on shows
    the check would notice."""
    public_phone.send(b"direct", nets.VPN_PHONE, vpn_phone.port)
    assert vpn_phone.recv(0.3) == (None, None)
    nets.relay.sysctl("net.ipv4.ip_forward", 1)
    public_phone.send(b"forwarded", nets.VPN_PHONE, vpn_phone.port)
    data, source = vpn_phone.recv()
    assert data == b"forwarded" and source[0] == nets.PUBLIC_PHONE
    nets.relay.sysctl("net.ipv4.ip_forward", 0)


def test_call_from_public_side_is_relayed_into_the_vpn(networks, rtpproxy):
    nets = networks()
    d = _relay_in(nets, rtpproxy, "-l", "%s/%s" % (N.VPN_RELAY, N.PUBLIC_RELAY))
    caller = nets.public.endpoint(N.PUBLIC_PHONE)       # on the internet
    callee = nets.vpn.endpoint(N.VPN_PHONE)             # behind the VPN
    caller_rtcp = nets.public.endpoint(N.PUBLIC_PHONE, caller.port + 1)
    callee_rtcp = nets.vpn.endpoint(N.VPN_PHONE, callee.port + 1)

    # Kamailio: offer received from the external side, sent to the internal one ("ei"),
    # the answer the other way ("ie").
    offer = d.command("Uei call1 %s %d ft" % (N.PUBLIC_PHONE, caller.port)).split()
    assert offer[1] == N.VPN_RELAY                      # goes into the SDP the callee gets
    answer = d.command("Lie call1 %s %d ft tt" % (N.VPN_PHONE, callee.port)).split()
    assert answer[1] == N.PUBLIC_RELAY                  # goes into the SDP the caller gets
    to_callee_port, to_caller_port = int(offer[0]), int(answer[0])

    seen = _exchange(caller, (N.PUBLIC_RELAY, to_caller_port), callee, (N.VPN_RELAY, to_callee_port))
    # each party sees the relay's address on its own network
    assert seen["b", "rtp"] == (N.VPN_RELAY, to_callee_port)
    assert seen["a", "rtp"] == (N.PUBLIC_RELAY, to_caller_port)
    # RTCP on the odd ports, same sides
    caller_rtcp.send(b"\x81\xc8rtcp-a", N.PUBLIC_RELAY, to_caller_port + 1)
    data, source = callee_rtcp.recv()
    assert data == b"\x81\xc8rtcp-a" and source[:2] == (N.VPN_RELAY, to_callee_port + 1)
    callee_rtcp.send(b"\x81\xc8rtcp-b", N.VPN_RELAY, to_callee_port + 1)
    data, source = caller_rtcp.recv()
    assert data == b"\x81\xc8rtcp-b" and source[:2] == (N.PUBLIC_RELAY, to_caller_port + 1)

    # each relay socket is bound on its side's address, not on a wildcard
    bound = {(host, port) for host, port, proc in nets.relay.udp_sockets()
             if any("pid=%d," % pid in proc for pid in d.pids())}
    assert bound == {(N.VPN_RELAY, to_callee_port), (N.VPN_RELAY, to_callee_port + 1),
                     (N.PUBLIC_RELAY, to_caller_port), (N.PUBLIC_RELAY, to_caller_port + 1)}

    # a public host cannot inject media towards the VPN through the internal socket:
    # bridged legs are asymmetric, so only the signalled VPN host is accepted there
    intruder = nets.public.endpoint(N.PUBLIC_PHONE)
    intruder.send(rtp_packet(9, ssrc=0xEE), N.VPN_RELAY, to_callee_port)
    assert caller.recv(0.3) == (None, None) and callee.recv(0.1) == (None, None)
    _assert_isolated(nets, caller, callee)
    assert d.command("D call1 ft") == "0"


def test_call_from_the_vpn_goes_out_on_the_public_side(networks, rtpproxy):
    nets = networks()
    d = _relay_in(nets, rtpproxy, "-l", "%s/%s" % (N.VPN_RELAY, N.PUBLIC_RELAY))
    caller = nets.vpn.endpoint(N.VPN_PHONE)
    callee = nets.public.endpoint(N.PUBLIC_PHONE)
    offer = d.command("Uie call2 %s %d ft" % (N.VPN_PHONE, caller.port)).split()
    assert offer[1] == N.PUBLIC_RELAY
    # a plain L (no e/i, as some clients send) still gives the caller the VPN side:
    # the interface for that leg was fixed by the offer
    answer = d.command("L call2 %s %d ft tt" % (N.PUBLIC_PHONE, callee.port)).split()
    assert answer[1] == N.VPN_RELAY
    seen = _exchange(caller, (N.VPN_RELAY, int(answer[0])), callee, (N.PUBLIC_RELAY, int(offer[0])))
    assert seen["b", "rtp"] == (N.PUBLIC_RELAY, int(offer[0]))
    assert seen["a", "rtp"] == (N.VPN_RELAY, int(answer[0]))


def test_ipv6_public_side_to_ipv4_vpn(networks, rtpproxy):
    """IPv4/IPv6 gateway: -l v4 -6 /v6, driven as Kamailio's x flag does (EI6 / IE)."""
    nets = networks(public_ipv6=True)
    d = _relay_in(nets, rtpproxy, "-l", N.VPN_RELAY, "-6", "/" + N.PUBLIC_RELAY6)
    caller = nets.public.endpoint(N.PUBLIC_PHONE6)
    callee = nets.vpn.endpoint(N.VPN_PHONE)
    offer = d.command("UEI6 call3 %s %d ft" % (N.PUBLIC_PHONE6, caller.port)).split()
    assert offer[1:] == [N.VPN_RELAY]                   # IPv4 for the VPN callee
    answer = d.command("LIE call3 %s %d ft tt" % (N.VPN_PHONE, callee.port)).split()
    assert answer[1:] == [N.PUBLIC_RELAY6, "6"]         # IPv6 for the public caller
    seen = _exchange(caller, (N.PUBLIC_RELAY6, int(answer[0])), callee, (N.VPN_RELAY, int(offer[0])))
    assert seen["b", "rtp"] == (N.VPN_RELAY, int(offer[0]))
    assert seen["a", "rtp"] == (N.PUBLIC_RELAY6, int(answer[0]))
    bound = {(host, port) for host, port, proc in nets.relay.udp_sockets()
             if any("pid=%d," % pid in proc for pid in d.pids())}
    assert (N.PUBLIC_RELAY6, int(answer[0])) in bound and (N.VPN_RELAY, int(offer[0])) in bound
    assert len(bound) == 4
    # the public side has no IPv4 at all: it can only talk to the relay's IPv6 address
    with pytest.raises(OSError):
        caller.send(b"direct", "::ffff:" + N.VPN_PHONE, callee.port)
