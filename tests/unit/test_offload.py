"""The plain parts of --kernel_offload: when a session may leave the program,
what goes into the nftables maps, how kernel counts become stream counts,
and the veto hook per-packet features use."""

import socket
import struct

from rtpproxy_py import netfilter
from rtpproxy_py.config import BindAddress
from rtpproxy_py.offload import Flow, blocker, credit, flow_of, parse_counters
from rtpproxy_py.media.analyzer import RtpAnalyzer
from rtpproxy_py.session import Session, count_bytes

LOCAL = BindAddress(socket.AF_INET, "192.0.2.1")
ANY = BindAddress(socket.AF_INET, "0.0.0.0", wildcard=True)


def latched_session(local=LOCAL):
    session = Session("cid", "ft", 0.0, 60)
    for k, (party, port) in enumerate(((("198.51.100.7", 4000), 30000), (("203.0.113.9", 5000), 30002))):
        stream = session.rtp[k]
        stream.port, stream.local = port, local      # ports bound (the sockets are the relay's)
        stream.rem_addr, stream.latched = party, True
    return session


def test_only_a_plain_latched_ipv4_pair_may_go_to_the_kernel():
    session = latched_session()
    assert blocker(session) is None
    checks = [
        (lambda s: setattr(s.rtp[1], "latched", False), "not latched"),
        (lambda s: setattr(s.rtp[0], "asymmetric", True), "asymmetric"),
        (lambda s: s.rtp[0].add_tap(lambda *a: None), "recording or copying"),
        (lambda s: s.rtp[1].set_muted(True), "prompt playing"),
        (lambda s: setattr(s.rtp[0], "resize_ptime", 30), "re-packetizing"),
        (lambda s: s.rtp[0].set_analyzer(RtpAnalyzer()), "RTP analysis"),
        (lambda s: s.rtp[1].veto_offload("strict latching"), "strict latching"),
        (lambda s: setattr(s.rtp[0], "rem_addr", ("2001:db8::1", 4000, 0, 0)), "IPv6"),
        (lambda s: setattr(s.rtp[0], "port", None), "not set up"),
        (lambda s: setattr(s, "closed", True), "ended"),
        (lambda s: setattr(s, "strict", True), "strict latching"),
    ]
    for change, reason in checks:
        session = latched_session()
        change(session)
        assert blocker(session) == reason
    # --metrics' byte count is a tap the kernel's counters stand in for
    session = latched_session()
    for stream in session.rtp:
        stream.add_tap(count_bytes)
    assert blocker(session) is None
    session.rtp[1].add_tap(lambda *a: None)
    assert blocker(session) == "recording or copying"


def test_features_tell_the_session_when_they_change():
    session = latched_session()
    seen = []
    session.on_media_change = seen.append
    stream = session.rtp[0]
    stream.veto_offload("strict latching")
    stream.veto_offload("another")
    stream.allow_offload("strict latching")
    assert stream.offload_vetoes == {"another"} and blocker(session) == "another"
    stream.allow_offload("another")
    assert stream.offload_vetoes is None and blocker(session) is None
    tap = object()
    stream.add_tap(tap)
    stream.remove_tap(tap)
    session.rtp[1].set_muted(True)
    assert seen == [session] * 7


def test_flow_elements_translate_each_party_to_the_other():
    flow = flow_of(latched_session(), route_source=None)
    assert flow == Flow(("198.51.100.7", 4000), ("192.0.2.1", 30000), ("203.0.113.9", 5000),
                        ("192.0.2.1", 30002))
    offloaded, to_peer, from_relay, flows = flow.elements()
    assert offloaded == ("198.51.100.7 . 4000 . 192.0.2.1 . 30000, "
                         "203.0.113.9 . 5000 . 192.0.2.1 . 30002")
    # party 0 -> its relay port: DNAT to party 1 (and the other way round)
    assert to_peer == ("198.51.100.7 . 4000 . 192.0.2.1 . 30000 : 203.0.113.9 . 5000, "
                       "203.0.113.9 . 5000 . 192.0.2.1 . 30002 : 198.51.100.7 . 4000")
    # party 0's packets reach party 1 from party 1's relay port
    assert from_relay == ("198.51.100.7 . 4000 . 203.0.113.9 . 5000 : 192.0.2.1 . 30002, "
                          "203.0.113.9 . 5000 . 198.51.100.7 . 4000 : 192.0.2.1 . 30000")
    assert flows == ("198.51.100.7 . 4000 . 203.0.113.9 . 5000, "
                     "203.0.113.9 . 5000 . 198.51.100.7 . 4000")
    assert flow.counter_keys() == (("198.51.100.7", 4000, "203.0.113.9", 5000),
                                   ("203.0.113.9", 5000, "198.51.100.7", 4000))


def test_wildcard_listen_uses_the_address_the_kernel_sends_from():
    asked = []

    def route_source(host, family):
        asked.append(host)
        return "192.0.2.77"
    flow = flow_of(latched_session(ANY), route_source)
    assert flow[1] == ("192.0.2.77", 30000) and flow[3] == ("192.0.2.77", 30002)
    assert asked == ["198.51.100.7", "203.0.113.9"]
    assert flow_of(latched_session(ANY), lambda host, family: None) is None


def test_kernel_counts_become_stream_counts():
    text = """table ip rtpproxy_1 {
	set flows {
		type ipv4_addr . inet_service . ipv4_addr . inet_service
		counter
		elements = { 198.51.100.7 . 4000 . 203.0.113.9 . 5000 counter packets 12 bytes 2064,
			     203.0.113.9 . 5000 . 198.51.100.7 . 4000 counter packets 0 bytes 0 }
	}
}"""
    # packets, and UDP payload bytes (IPv4 and UDP headers taken off: 12 * 172)
    assert parse_counters(text) == {("198.51.100.7", 4000, "203.0.113.9", 5000): (12, 1728),
                                    ("203.0.113.9", 5000, "198.51.100.7", 4000): (0, 0)}
    stream = latched_session().rtp[0]
    stream.ssrc, stream.seq, stream.npkts_in, stream.nrelayed = 0x1234, 0xFFF0, 5, 5
    credit(stream, 20, 42.5, 20 * 172)
    assert (stream.npkts_in, stream.nrelayed, stream.last_rx) == (25, 25, 42.5)
    assert stream.nbytes_in == 20 * 172
    assert stream.seq == 0x0004       # wrapped: a NAT re-latch compares against it


def test_conntrack_delete_message_names_the_tuple_and_zone():
    message = netfilter.delete_request(7, ("198.51.100.7", 4000), ("192.0.2.1", 30000), zone=29296)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", message)
    assert length == len(message) and length % 4 == 0
    assert (kind, flags, seq) == ((1 << 8) | 2, 1 | 4, 7)
    assert socket.inet_aton("198.51.100.7") in message and socket.inet_aton("192.0.2.1") in message
    assert struct.pack("!H", 4000) in message and struct.pack("!H", 30000) in message
    assert message.endswith(struct.pack("=HH", 6, 18) + struct.pack("!H", 29296) + b"\0\0")
