"""Running out of media ports and of file descriptors: U answers E72, L E71,
one log line names the limit, media of existing calls keeps flowing, and new
calls work again as soon as sessions end."""

from helpers import Endpoint, port_range, rtp_packet, wait_for


def new_call(d, n, party=None):
    port = party.port if party else 4000 + n
    return d.command("U call%d 127.0.0.1 %d ft" % (n, port))


def test_full_port_range(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", ports=port_range(4))          # two pairs
    assert new_call(d, 1).split()[0].isdigit()
    assert new_call(d, 2).split()[0].isdigit()
    assert new_call(d, 3) == "E72"                                  # no pair for a new session
    assert d.command("L call1 127.0.0.1 5000 ft tt") == "E71"      # nor for a second leg
    assert "the -m/-M range is full (2 of its 2 pairs used by this relay" in d.log()
    assert d.command("D call2 ft") == "0"
    assert d.command("L call1 127.0.0.1 5000 ft tt").split()[0].isdigit()   # at once
    assert new_call(d, 3) == "E72"
    assert d.command("D call1 ft") == "0"
    assert new_call(d, 3).split()[0].isdigit()
    assert new_call(d, 4).split()[0].isdigit()                      # the range is full again
    # a flood of failing commands logs one line per ten seconds, not one per command
    for n in range(5, 50):
        assert new_call(d, n) == "E72"
    assert d.log().count("range is full") <= 2


def test_open_files_limit(rtpproxy):
    """-L 32: about 26 descriptors left for media sockets, far fewer than the
    100 port pairs of the range."""
    d = rtpproxy("-l", "127.0.0.1", "-L", "32", ports=port_range(200))
    a, b = Endpoint(), Endpoint()
    to_callee = int(new_call(d, 0, a).split()[0])                 # a call, not latched yet
    to_caller = int(d.command("L call0 127.0.0.1 %d ft tt" % b.port).split()[0])
    d.command("U half 127.0.0.1 4000 ft")                          # a session with one leg
    created = 0
    while True:
        reply = new_call(d, 100 + created)
        if reply == "E72":
            break
        created += 1
        assert created < 50, "no E72 before the port range ran out"
    assert created >= 3
    assert d.command("L half 127.0.0.1 5000 ft tt") == "E71"
    log = d.log()
    assert "80% of the open-files limit (32) is in use" in log
    assert "the open-files limit is reached (RLIMIT_NOFILE 32" in log and "-L" in log
    # the call that existed keeps its media, though its streams cannot get a
    # connected twin socket now (the relay says so once and uses the plain one)
    for seq in range(20):
        a.send(rtp_packet(seq, ssrc=0xA), "127.0.0.1", to_caller)
        assert b.recv()[0] == rtp_packet(seq, ssrc=0xA)
        b.send(rtp_packet(seq, ssrc=0xB), "127.0.0.1", to_callee)
        assert a.recv()[0] == rtp_packet(seq, ssrc=0xB)
    assert 1 <= d.log().count("no connected socket") <= 2
    # sessions end: the next ones get ports at once
    for n in range(100, 100 + created):
        assert d.command("D call%d ft" % n) == "0"
    assert d.command("L half 127.0.0.1 5000 ft tt").split()[0].isdigit()
    assert new_call(d, 999).split()[0].isdigit()
    assert d.command("G nsess_created") == str(2 + created + 1)


def test_sessions_timing_out_free_their_ports(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", "-T", "1", ports=port_range(4))
    assert new_call(d, 1).split()[0].isdigit()
    assert new_call(d, 2).split()[0].isdigit()
    assert new_call(d, 3) == "E72"
    assert wait_for(lambda: new_call(d, 3).split()[0].isdigit(), timeout=6)
