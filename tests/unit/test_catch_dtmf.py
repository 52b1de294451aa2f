"""catch_dtmf's detector on plain Session objects (modules.md 6.2-6.4): which
packets make a notification, and a tap returning True drops and counts."""

import struct

import pytest

from rtpproxy_py.modules import ModuleSpec, SubcommandFailed
from rtpproxy_py.modules.catch_dtmf import CatchDtmf, url_decode_tag
from rtpproxy_py.session import Session


class Host:
    def __init__(self):
        self.sent = []

    def notify(self, armed, message):
        self.sent.append((armed, message))


def packet(ts, code, duration, end=False, volume=10, pt=101):
    return struct.pack("!BBHII", 0x80, pt, 1, ts, 7) + struct.pack(
        "!BBH", code, (0x80 if end else 0) | volume, duration)


@pytest.fixture
def setup():
    host = Host()
    module = CatchDtmf(ModuleSpec("catch_dtmf", 3, 1, "/x/rtpp_catch_dtmf.so"), host)
    session = Session("call", "ftag", 0.0, 60)
    session.notify = ("target", b"ntag", "127.0.0.1", None)
    for stream in session.rtp:
        stream.port, stream.rem_addr, stream.target = 1000, ("127.0.0.1", 2000), ("127.0.0.1", 2000)
    return host, module, session


def feed(stream, *packets):
    return [stream.on_packet(p, ("127.0.0.1", 2000), 1.0) for p in packets]


def test_one_notification_per_event_with_an_end(setup):
    host, module, session = setup
    stream = session.rtp[1]
    assert module.subcommand(["tag"], session, stream, session.rtp[0], None) is None
    feed(stream, packet(100, 1, 160), packet(100, 1, 320), *[packet(100, 1, 480, True)] * 3)
    feed(stream, packet(200, 2, 480, True))                          # a lone end: nothing
    feed(stream, packet(300, 3, 160), packet(300, 3, 320))           # no end: nothing
    feed(stream, packet(400, 4, 640, True, 5), packet(400, 4, 800, True, 5))   # ends only: one
    feed(stream, packet(400, 6, 900, True))                          # other digit, known ts: ignored
    feed(stream, packet(500, 18, 100), packet(500, 18, 100, True))   # event 18: ignored
    feed(stream, packet(600, 7, 100, pt=96), packet(600, 7, 100, True, pt=96))   # another PT
    assert [m for _, m in host.sent] == [b"tag 1 10 480 0", b"tag 4 5 800 0"]
    assert all(armed == session.notify for armed, _ in host.sent)
    assert stream.ndropped == 0 and stream.nrelayed == 15


def test_h_drops_event_packets_and_counts_them(setup):
    host, module, session = setup
    stream = session.rtp[0]
    module.subcommand(["a%20b", "96", "H"], session, stream, session.rtp[1], None)
    assert feed(stream, packet(1, 11, 10, pt=96), packet(1, 11, 20, True, pt=96),
                packet(2, 0, 0, pt=0)) == [None, None, ("127.0.0.1", 2000)]
    assert (stream.ndropped, stream.nignored, stream.nrelayed) == (2, 2, 1)
    assert host.sent == [(session.notify, b"a b # 10 20 1")]
    # again: PT and h change, the tag stays
    module.subcommand(["other"], session, stream, session.rtp[1], None)
    feed(stream, packet(3, 16, 5), packet(3, 17, 5, True), packet(3, 16, 9, True))
    assert host.sent[-1] == (session.notify, b"a b   10 9 1") and stream.nrelayed == 4


@pytest.mark.parametrize("args", [[], ["t", "128"], ["t", "-1"], ["t", "7a"], ["t", "101", "hx"],
                                  ["t", "101", "h", "x"], ["bad%zz"], ["bad%4"]])
def test_bad_arguments_fail(setup, args):
    _, module, session = setup
    with pytest.raises(SubcommandFailed):
        module.subcommand(args, session, session.rtp[1], session.rtp[0], None)


def test_needs_an_armed_notification_and_decodes_tags(setup):
    _, module, session = setup
    session.notify = None
    with pytest.raises(SubcommandFailed):
        module.subcommand(["t"], session, session.rtp[1], session.rtp[0], None)
    assert url_decode_tag("Hello,+Max!%20:D%00") == b"Hello, Max! :D\0"
    assert url_decode_tag(b"\xff+") == b"\xff "
