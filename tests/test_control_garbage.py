"""Garbage on the control sockets: the daemon answers with E-codes and keeps serving."""

import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

words = st.sampled_from([b"U", b"L", b"D", b"Q", b"G", b"I", b"V", b"VF", b"X", b"P", b"S", b"R", b"C",
                         b"N", b"&&", b"Uz20", b"Lc0,8", b"Ul{x}", b"Ur[::1]", b"U6", b"Dw", b"Qv",
                         b"cid", b"ft", b"tt", b"127.0.0.1", b"::1", b"0.0.0.0", b"4000", b"%%",
                         b"S ttl=5", b"tcp:%%CC_SELF%%:1", b"ttl", b"nrelayed"])
commands = st.one_of(
    st.binary(max_size=200),
    st.lists(words, min_size=1, max_size=30).map(b" ".join),
)


def test_garbage_over_udp(rtpproxy):
    d = rtpproxy()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    counter = [0]

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(commands)
    def check(command):
        counter[0] += 1
        cookie = b"fz%d" % counter[0]
        sock.sendto(cookie + b" " + command, ("127.0.0.1", d.ctl_port))
        reply = sock.recv(65535)
        assert reply.startswith(cookie + b" ")
        assert reply.endswith(b"\n")

    check()
    assert d.alive()
    assert d.command("V") == "20040107"


def test_oversized_and_unterminated_stream_input(rtpproxy):
    d = rtpproxy(control="tcp")
    big = socket.create_connection(("127.0.0.1", d.ctl_port))
    big.sendall(b"U " + b"x" * 9000)          # no LF within 8 KiB: connection dropped
    big.settimeout(3)
    try:
        assert big.recv(100) == b""
    except ConnectionResetError:
        pass
    half = socket.create_connection(("127.0.0.1", d.ctl_port))
    half.sendall(b"U cid 127.0.0.1 40")       # half a line, then silence
    idle = socket.create_connection(("127.0.0.1", d.ctl_port))   # connects, never sends
    assert d.command("V") == "20040107"
    half.sendall(b"00 ft\nV\n")
    half.settimeout(3)
    data = b""
    while data.count(b"\n") < 2:
        data += half.recv(100)
    assert data.split(b"\n")[1] == b"20040107"
    for s in (big, half, idle):
        s.close()
    assert d.command("V") == "20040107"


def test_oversized_udp_datagram(rtpproxy):
    d = rtpproxy()
    reply = d.raw(b"big U " + b"x" * 20000)
    assert reply.startswith(b"big E")
    assert d.command("V") == "20040107"


def test_unix_connection_without_data_is_closed_silently(rtpproxy):
    d = rtpproxy(control="unix")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.ctl_path)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(3)
    assert s.recv(10) == b""
    s.close()
    assert d.command("V") == "20040107"
