"""Module packet filters on the relay's Python path (session.PacketFilter,
Stream.set_mux, Relay.deliver), in memory but with real UDP sockets: what
is consumed, dropped, transformed and redirected, and how it is counted."""

import socket
import types

import pytest

from rtpproxy_py import relay as relay_mod
from rtpproxy_py.relay import MediaSocket, Relay
from rtpproxy_py.session import DROP, PacketFilter, Session

HOST = "127.0.0.1"


class Upper(PacketFilter):
    def __init__(self, consume=b"", drop=b"", refuse_out=False):
        self.consume, self.drop, self.refuse_out = consume, drop, refuse_out

    def receive(self, stream, data, source, now):
        if self.consume and data.startswith(self.consume):
            return None
        if self.drop and data.startswith(self.drop):
            return DROP
        return data.upper()

    def send(self, stream, data, now):
        return None if self.refuse_out else b"<" + data + b">"


def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(1.0)
    return sock


@pytest.fixture
def call():
    """A session whose four streams have sockets; parties' sockets by (leg, rtp)."""
    session = Session("c", "f", 0.0, 60)
    parties, socks, handles = {}, [], {}
    for stream in session.streams():
        sock = udp()
        socks.append(sock)
        handles[stream] = MediaSocket(sock, None, sock.getsockname()[1], socket.AF_INET)
        stream.port = handles[stream].port
        party = udp()
        socks.append(party)
        parties[stream.index, stream.is_rtp] = party
        stream.signal_address(party.getsockname(), False, 0.0)
        stream.refresh_target()
    relay = types.SimpleNamespace(handles=handles, _sync_twins=None, fastpath=None)
    relay.send_from = lambda *args: Relay.send_from(relay, *args)
    relay.deliver = lambda *args: Relay.deliver(relay, *args)
    yield session, parties, relay
    for sock in socks:
        sock.close()


def deliver(relay, stream, data, source):
    Relay.deliver(relay, stream, data, source, 100.0)


def test_consumed_dropped_and_transformed(call):
    session, parties, relay = call
    rtp1 = session.rtp[1]
    rtp1.add_filter(Upper(consume=b"stun", drop=b"bad"))
    source = parties[1, True].getsockname()
    deliver(relay, rtp1, b"stun check", source)
    assert (rtp1.npkts_in, rtp1.ndropped, rtp1.nrelayed) == (0, 0, 0)
    deliver(relay, rtp1, b"bad packet", source)
    assert (rtp1.npkts_in, rtp1.ndropped, rtp1.nrelayed) == (1, 1, 0)
    deliver(relay, rtp1, b"media", source)
    assert (rtp1.npkts_in, rtp1.ndropped, rtp1.nrelayed) == (2, 1, 1)
    assert parties[0, True].recv(100) == b"MEDIA"


def test_outgoing_filter_of_the_sending_stream(call):
    session, parties, relay = call
    rtp0, rtp1 = session.rtp
    rtp0.add_filter(Upper())
    deliver(relay, rtp1, b"plain", parties[1, True].getsockname())
    data, source = parties[0, True].recvfrom(100)
    assert data == b"<plain>" and source[1] == rtp0.port
    rtp0.remove_filter(rtp0.filters[0])
    rtp0.add_filter(Upper(refuse_out=True))
    deliver(relay, rtp1, b"plain", parties[1, True].getsockname())
    assert (rtp1.nrelayed, rtp1.ndropped) == (1, 1)


def test_demux_and_egress(call):
    """rtcp-mux: RTCP on the RTP port counts and goes as RTCP; RTCP to the
    muxed party leaves through its RTP socket."""
    session, parties, relay = call
    rtp1, rtcp1 = session.rtp[1], session.rtcp[1]
    # well-formed RTCP (a receiver report without blocks): only RTCP may set
    # where an RTCP stream goes
    report, back = b"\x80\xc9\x00\x01\x00\x00\x00\x01", b"\x80\xc9\x00\x01\x00\x00\x00\x02"
    rtp1.set_mux(lambda data: rtcp1 if data[1] == 0xC9 else None, None)
    rtcp1.set_mux(None, rtp1)
    deliver(relay, rtp1, report, parties[1, True].getsockname())
    assert (rtp1.npkts_in, rtcp1.npkts_in, rtcp1.nrelayed) == (0, 1, 1)
    assert parties[0, False].recv(100) == report
    deliver(relay, session.rtcp[0], back, parties[0, False].getsockname())
    data, source = parties[1, True].recvfrom(100)
    assert data == back and source[1] == rtp1.port
    assert rtp1.offload_vetoes == {"module filter"}
    rtp1.set_mux(None, None)
    rtcp1.set_mux(None, None)
    assert rtp1.offload_vetoes is None


def test_streams_without_filters_keep_the_plain_readers(call):
    session, parties, relay = call
    rtp0, rtp1 = session.rtp
    plain = relay_mod._main_reader(relay, rtp1, relay.handles[rtp1], relay.handles[rtp0], False)
    assert plain.__qualname__.startswith("_main_reader")
    rtp0.add_filter(Upper())         # the peer encrypts: this stream's packets are filtered too
    filtered = relay_mod._main_reader(relay, rtp1, relay.handles[rtp1], relay.handles[rtp0], False)
    assert filtered.__qualname__.startswith("_filtering_reader")
    assert relay_mod._main_reader(relay, session.rtcp[1], relay.handles[session.rtcp[1]],
                                  relay.handles[session.rtcp[0]], False).__qualname__.startswith("_main_reader")
