"""RTP Bleed: an attacker on another host sprays every port of the relay's
range during live calls (README "Latching modes").

Each test runs the daemon in a network namespace of its own, so the spray
reaches only this daemon's ports and fixed port numbers are safe. The parties
(A the caller, B the callee, three calls) and the attacker M are sockets in
that namespace; every packet carries a label, and after each packet sent the
test records who received which label.

* default latching: media-relay.md section 3 with the default mode's guards
  (README "Latching modes"): a party that sent from exactly its signalled
  address keeps its streams (RTCP too) against the attacker, also within 10 s
  of a U/L; a stream whose party has not sent yet goes to the first source,
  as upstream, until the party's own packets take it back; RTCP learned from
  a packet stays with it; a datagram that is not RTP/RTCP never moves a stream.
* strict latching: the attacker receives nothing and injects nothing, and
  every call keeps its media both ways.
"""

import select
import socket
import struct
import sys
import threading
import time

import pytest

from helpers import rtp_packet
from netns import Netns, require_root

BASE = 30000                 # -m; the namespace is ours, so fixed ports are fine
PAIRS = 6                    # three calls, two legs each: the whole range
HOST = "127.0.0.1"           # where the parties are, and what U/L signal
ATTACKER = ("127.0.0.66", 50000)
SSRC = {"A": 0xA000, "B": 0xB000}
QUIET = 0.12                 # seconds without a packet that end a step


def rtcp_packet(ssrc, label):
    """A receiver report (8 bytes, sender SSRC) with the label after it."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc) + label.encode()


class Lab:
    """The parties' and the attacker's sockets, and what they received."""

    def __init__(self, ns):
        self.socks = {}
        with ns.inside():
            for call in (1, 2, 3):
                for party, base in (("A", 40000), ("B", 42000)):
                    for kind, offset in (("rtp", 0), ("rtcp", 1)):
                        self._bind("%s%d%s" % (party, call, kind), (HOST, base + 10 * call + offset))
            self._bind("M", ATTACKER)

    def _bind(self, name, address):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(address)
        self.socks[name] = s

    def party_port(self, party, call):
        return self.socks["%s%drtp" % (party, call)].getsockname()[1]

    def send(self, name, data, port):
        self.socks[name].sendto(data, (HOST, port))

    def collect(self, quiet=QUIET):
        """[(receiver, label)] until ``quiet`` seconds pass without a packet."""
        got = []
        by_fd = {s.fileno(): name for name, s in self.socks.items()}
        while True:
            ready, _, _ = select.select(list(self.socks.values()), [], [], quiet)
            if not ready:
                return sorted(got)
            for s in ready:
                data = s.recv(65536)
                got.append((by_fd[s.fileno()], label_of(data)))

    def close(self):
        for s in self.socks.values():
            s.close()


def label_of(data):
    if data[1] == 201:
        return data[8:].decode()
    return data[12:].rstrip(b"\0").decode()


def party_rtp(party, call, seq):
    label = "%s%d rtp %d" % (party, call, seq)
    return rtp_packet(seq, seq * 160, SSRC[party] + call, payload=label.encode().ljust(160, b"\0")), label


def ports(call):
    """Relay ports of a call with -b: stream 0 (B sends there), then stream 1 (A)."""
    r0 = BASE + 8 * 0 + 4 * (call - 1)
    return {"r0": r0, "r0c": r0 + 1, "r1": r0 + 2, "r1c": r0 + 3}


@pytest.fixture
def lab():
    require_root()
    with Netns("bleed") as ns:
        net = Lab(ns)
        try:
            yield ns, net
        finally:
            net.close()


def start(rtpproxy, ns, *mode):
    return rtpproxy("-l", HOST, "-b", *mode, control="unix", ports=(BASE, BASE + 2 * PAIRS - 1),
                    command=ns.exec_argv([sys.executable, "-m", "rtpproxy_py"]))


def set_up_calls(d, net):
    """Three calls; 1 and 3 latched by two packets each way; 3 then re-offered
    and re-answered (a re-INVITE: both streams within 10 s of a U/L)."""
    for call in (1, 2, 3):
        u = d.command("U c%d %s %d ft" % (call, HOST, net.party_port("A", call)))
        l_reply = d.command("L c%d %s %d ft tt" % (call, HOST, net.party_port("B", call)))
        assert (int(u.split()[0]), int(l_reply.split()[0])) == (ports(call)["r0"], ports(call)["r1"])
    for call in (1, 3):
        for seq in (0, 1):
            data, label = party_rtp("A", call, seq)
            net.send("A%drtp" % call, data, ports(call)["r1"])
            assert net.collect() == [("B%drtp" % call, label)]
            data, label = party_rtp("B", call, seq)
            net.send("B%drtp" % call, data, ports(call)["r0"])
            assert net.collect() == [("A%drtp" % call, label)]
    d.command("U c3 %s %d ft tt" % (HOST, net.party_port("A", 3)))
    d.command("L c3 %s %d ft tt" % (HOST, net.party_port("B", 3)))


def spray(net):
    """One packet from M to every port of the range (RTP to the even ones, RTCP
    to the odd ones); who got what, per port."""
    seen = {}
    for port in range(BASE, BASE + 2 * PAIRS):
        label = "M>%d" % port
        if port % 2:
            data = rtcp_packet(0xBAD, label)
        else:
            data = rtp_packet(port, ssrc=0xBAD, payload=label.encode().ljust(160, b"\0"))
        net.send("M", data, port)
        seen[port] = net.collect()
    return seen


def talk(net, call):
    """A and B each send two RTP packets and one RTCP report, alternately."""
    seen = []
    p = ports(call)
    for party, seq in (("A", 10), ("B", 10), ("A", 11), ("B", 11)):
        data, label = party_rtp(party, call, seq)
        net.send("%s%drtp" % (party, call), data, p["r1" if party == "A" else "r0"])
        seen.append((label, net.collect()))
    for party in ("A", "B"):
        label = "%s%d rtcp" % (party, call)
        net.send("%s%drtcp" % (party, call), rtcp_packet(SSRC[party] + call, label),
                 p["r1c" if party == "A" else "r0c"])
        seen.append((label, net.collect()))
    return seen


def test_default_latching_behaves_as_documented(rtpproxy, lab):
    ns, net = lab
    d = start(rtpproxy, ns)
    set_up_calls(d, net)
    seen = spray(net)

    def at(call, port):
        return seen[ports(call)[port]]

    def m(call, port):
        return "M>%d" % ports(call)[port]

    # calls 1 (latched) and 3 (latched, then a U/L less than 10 s ago): both
    # parties sent from the addresses they signalled, so M gets nothing, RTCP
    # included (not heard yet, but the parties' RTP comes from another host)
    for call in (1, 3):
        for port in ("r0", "r0c", "r1", "r1c"):
            assert at(call, port) == [], (call, port)
    # call 2, where nobody has sent yet: M takes every stream, as upstream
    assert at(2, "r0") == [("A2rtp", m(2, "r0"))]
    assert at(2, "r0c") == [("A2rtcp", m(2, "r0c"))]
    assert at(2, "r1") == [("M", m(2, "r1"))]
    assert at(2, "r1c") == [("M", m(2, "r1c"))]

    def fill(rows, call):
        def f(text):
            return text.replace("%d", str(call))
        return [(f(label), [(f(who), f(what)) for who, what in got]) for label, got in rows]

    normal = [
        ("A%d rtp 10", [("B%drtp", "A%d rtp 10")]), ("B%d rtp 10", [("A%drtp", "B%d rtp 10")]),
        ("A%d rtp 11", [("B%drtp", "A%d rtp 11")]), ("B%d rtp 11", [("A%drtp", "B%d rtp 11")]),
        ("A%d rtcp", [("B%drtcp", "A%d rtcp")]), ("B%d rtcp", [("A%drtcp", "B%d rtcp")])]
    assert talk(net, 1) == fill(normal, 1)
    assert talk(net, 3) == fill(normal, 3)
    # call 2: each party's first packet from its signalled address takes its
    # stream back (and its RTCP stream with it, as M's RTCP came from another
    # host); A's first RTP still went to M, which held B's side until then
    assert talk(net, 2) == fill([("A%d rtp 10", [("M", "A%d rtp 10")])] + normal[1:], 2)
    # dropped: M's packets to calls 1 and 3
    assert d.command("G npkts_discard") == "8"


def test_default_spray_while_phones_talk_leaks_nothing(rtpproxy, lab):
    """Issue 18.2: phones that send from the addresses they signalled, an
    attacker spraying every port with RTP, RTCP, runts, junk and big
    datagrams while they talk, one call re-offered and re-answered meanwhile
    (the 10 s re-latch window): nothing leaks, nothing is injected."""
    ns, net = lab
    d = start(rtpproxy, ns)
    for call in (1, 2, 3):
        d.command("U c%d %s %d ft" % (call, HOST, net.party_port("A", call)))
        d.command("L c%d %s %d ft tt" % (call, HOST, net.party_port("B", call)))
    for call in (1, 2, 3):                  # each party's first packet
        p = ports(call)
        net.send("A%drtp" % call, party_rtp("A", call, 0)[0], p["r1"])
        net.send("B%drtp" % call, party_rtp("B", call, 0)[0], p["r0"])
    assert len(net.collect()) == 6
    stop = threading.Event()
    kinds = [rtp_packet(1, ssrc=0xBAD, payload=b"M"), rtcp_packet(0xBAD, "M"), b"\x80", b"junk" * 10,
             rtp_packet(2, ssrc=0xA001, payload=b"M" * 1400), rtp_packet(3, ssrc=0xBAD, payload=b"M" * 9000)]
    sent = [0]

    def sprayer():
        attacker = net.socks["M"]
        while not stop.is_set():
            for port in range(BASE, BASE + 2 * PAIRS):
                attacker.sendto(kinds[sent[0] % len(kinds)], (HOST, port))
                sent[0] += 1
            time.sleep(0.005)

    thread = threading.Thread(target=sprayer, daemon=True)
    thread.start()
    try:
        for seq in range(1, 41):
            if seq == 20:                   # a re-INVITE on call 3: same addresses
                d.command("U c3 %s %d ft tt" % (HOST, net.party_port("A", 3)))
                d.command("L c3 %s %d ft tt" % (HOST, net.party_port("B", 3)))
            for call in (1, 2, 3):
                p = ports(call)
                net.send("A%drtp" % call, party_rtp("A", call, seq)[0], p["r1"])
                net.send("B%drtp" % call, party_rtp("B", call, seq)[0], p["r0"])
                if seq % 10 == 5:
                    for party, port in (("A", "r1c"), ("B", "r0c")):
                        net.send("%s%drtcp" % (party, call),
                                 rtcp_packet(SSRC[party] + call, "%s%d rtcp %d" % (party, call, seq)), p[port])
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    got = {name: [] for name in net.socks}
    for name, label in net.collect(quiet=0.3):
        got[name].append(label)
    assert sent[0] > 1000
    assert got["M"] == []
    for call in (1, 2, 3):
        for me, other in (("A", "B"), ("B", "A")):
            assert sorted(got["%s%drtp" % (other, call)]) == sorted(
                "%s%d rtp %d" % (me, call, s) for s in range(1, 41))
            assert sorted(got["%s%drtcp" % (other, call)]) == sorted(
                "%s%d rtcp %d" % (me, call, s) for s in (5, 15, 25, 35))
    assert int(d.command("G npkts_discard")) > 0


def test_malformed_datagrams_never_move_a_stream(rtpproxy, lab):
    """Issue 18.1: M sends runts, non-RTP and oversize datagrams to a live
    call's ports, from the first packet on; the caller is behind NAT (sends
    from other ports than it signalled), so only the upstream rules protect
    it. M gets nothing and every RTCP report of the call arrives."""
    ns, net = lab
    d = start(rtpproxy, ns)
    signalled_a = 45000                     # nobody there: A's NAT sends from its own ports
    d.command("U c1 %s %d ft" % (HOST, signalled_a))
    d.command("L c1 %s %d ft tt" % (HOST, net.party_port("B", 1)))
    p = ports(1)
    junk = [b"", b"\x80", b"junk" * 10, b"\x00" * 40, b"\x80\xc9", b"x" * 9000]
    got = {name: [] for name in net.socks}
    for seq in range(12):
        for i, data in enumerate(junk):
            net.send("M", data, p[("r0", "r0c", "r1", "r1c")[(seq + i) % 4]])
        net.send("A1rtp", party_rtp("A", 1, seq)[0], p["r1"])
        net.send("B1rtp", party_rtp("B", 1, seq)[0], p["r0"])
        if seq % 3 == 0:
            net.send("A1rtcp", rtcp_packet(SSRC["A"] + 1, "A1 rtcp %d" % seq), p["r1c"])
            net.send("B1rtcp", rtcp_packet(SSRC["B"] + 1, "B1 rtcp %d" % seq), p["r0c"])
        for name, label in net.collect(quiet=0.05):
            got[name].append(label)
    for name, label in net.collect():
        got[name].append(label)
    assert got["M"] == []
    assert sorted(got["B1rtcp"]) == sorted("A1 rtcp %d" % s for s in range(0, 12, 3))
    # A's first report may be relayed before A's first RTP packet latched A (and
    # so A's RTCP port was guessed): it then went to the signalled port, as upstream
    reports_to_a = sorted("B1 rtcp %d" % s for s in range(0, 12, 3))
    assert sorted(got["A1rtcp"]) in (reports_to_a, reports_to_a[1:]), got["A1rtcp"]
    assert len(got["B1rtp"]) == 12 and len(got["A1rtp"]) >= 11      # A's first may precede A's latch
    assert int(d.command("G npkts_discard")) >= 12 * len(junk) - 4


def test_one_rtcp_packet_from_a_stranger_does_not_divert_rtcp(rtpproxy, lab):
    """Issue 18.1: RTCP learned from the caller's packets stays with it: one
    well-formed report from M mid-call is dropped. The caller is behind NAT
    (its RTCP does not come from the signalled address), so the upstream lock
    alone decides."""
    ns, net = lab
    d = start(rtpproxy, ns)
    d.command("U c1 %s %d ft" % (HOST, 45000))
    d.command("L c1 %s %d ft tt" % (HOST, net.party_port("B", 1)))
    p = ports(1)
    for seq in range(3):
        net.send("A1rtp", party_rtp("A", 1, seq)[0], p["r1"])
        net.send("A1rtcp", rtcp_packet(SSRC["A"] + 1, "A1 rtcp %d" % seq), p["r1c"])
        net.send("B1rtcp", rtcp_packet(SSRC["B"] + 1, "B1 rtcp %d" % seq), p["r0c"])
        net.collect()
    net.send("M", rtcp_packet(0xBAD, "M rtcp"), p["r1c"])
    assert net.collect() == []
    net.send("B1rtcp", rtcp_packet(SSRC["B"] + 1, "B1 rtcp 9"), p["r0c"])
    net.send("A1rtcp", rtcp_packet(SSRC["A"] + 1, "A1 rtcp 9"), p["r1c"])
    assert net.collect() == [("A1rtcp", "B1 rtcp 9"), ("B1rtcp", "A1 rtcp 9")]


def test_strict_latching_gives_the_attacker_nothing(rtpproxy, lab):
    ns, net = lab
    d = start(rtpproxy, ns, "--latching", "strict")
    set_up_calls(d, net)
    seen = spray(net)
    assert seen == {port: [] for port in range(BASE, BASE + 2 * PAIRS)}
    for call in (1, 2, 3):
        assert talk(net, call) == [
            ("A%d rtp 10" % call, [("B%drtp" % call, "A%d rtp 10" % call)]),
            ("B%d rtp 10" % call, [("A%drtp" % call, "B%d rtp 10" % call)]),
            ("A%d rtp 11" % call, [("B%drtp" % call, "A%d rtp 11" % call)]),
            ("B%d rtp 11" % call, [("A%drtp" % call, "B%d rtp 11" % call)]),
            ("A%d rtcp" % call, [("B%drtcp" % call, "A%d rtcp" % call)]),
            ("B%d rtcp" % call, [("A%drtcp" % call, "B%d rtcp" % call)]),
        ]
    assert d.command("G npkts_discard") == "12"       # every sprayed packet


def test_strict_modifier_k_protects_one_session(rtpproxy, lab):
    """Without --latching strict, a U/L with k makes that call strict; the others stay upstream."""
    ns, net = lab
    d = start(rtpproxy, ns)
    for call in (1, 2):
        k = "k" if call == 1 else ""
        d.command("U%s c%d %s %d ft" % (k, call, HOST, net.party_port("A", call)))
        d.command("L c%d %s %d ft tt" % (call, HOST, net.party_port("B", call)))
    seen = spray(net)
    for port in range(ports(1)["r0"], ports(1)["r1c"] + 1):
        assert seen[port] == []
    assert seen[ports(2)["r0"]] == [("A2rtp", "M>%d" % ports(2)["r0"])]


def test_strict_spray_all_the_time_while_calls_run(rtpproxy, lab):
    """M sprays every port with RTP, RTCP, runts, junk and big datagrams, from
    before the first U to after the last packet; three calls talk meanwhile."""
    ns, net = lab
    d = start(rtpproxy, ns, "--latching", "strict")
    stop = threading.Event()
    kinds = [rtp_packet(1, ssrc=0xBAD), rtcp_packet(0xBAD, "M"), b"\x80", b"junk" * 10,
             rtp_packet(2, ssrc=0xBAD, payload=b"\0" * 1400), rtp_packet(3, ssrc=0xBAD, payload=b"\0" * 9000)]
    sent = [0]

    def sprayer():
        attacker = net.socks["M"]
        while not stop.is_set():
            for port in range(BASE, BASE + 2 * PAIRS):
                attacker.sendto(kinds[sent[0] % len(kinds)], (HOST, port))
                sent[0] += 1
            time.sleep(0.005)

    thread = threading.Thread(target=sprayer, daemon=True)
    thread.start()
    try:
        for call in (1, 2, 3):
            d.command("U c%d %s %d ft" % (call, HOST, net.party_port("A", call)))
            d.command("L c%d %s %d ft tt" % (call, HOST, net.party_port("B", call)))
        for seq in range(40):
            for call in (1, 2, 3):
                p = ports(call)
                net.send("A%drtp" % call, party_rtp("A", call, seq)[0], p["r1"])
                net.send("B%drtp" % call, party_rtp("B", call, seq)[0], p["r0"])
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    got = {name: [] for name in net.socks}
    for name, label in net.collect(quiet=0.3):
        got[name].append(label)
    assert sent[0] > 1000
    assert got["M"] == []
    for call in (1, 2, 3):
        assert sorted(got["B%drtp" % call]) == sorted("A%d rtp %d" % (call, s) for s in range(40))
        assert sorted(got["A%drtp" % call]) == sorted("B%d rtp %d" % (call, s) for s in range(40))
    assert int(d.command("G npkts_discard")) > 0
