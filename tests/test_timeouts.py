"""Idle time-outs and timeout notifications (control-protocol.md 7 and 8)."""

import socket
import time

from helpers import Endpoint, NotifyListener as Listener, free_port, rtp_packet, wait_for


def count_sessions(d):
    return int(d.command("I").splitlines()[1].split(": ")[1])


def test_idle_session_expires_and_notifies_tcp(rtpproxy):
    port = free_port(socket.SOCK_STREAM)
    listener = Listener(address=("127.0.0.1", port), reply=b"OK\n")
    target = "tcp:127.0.0.1:%d" % port
    d = rtpproxy("-T", "2", "-n", target)
    start = time.time()
    assert d.command("U c1 127.0.0.1 4000 ft %s r%%2017" % target).isdigit()
    assert d.command("U c2 127.0.0.1 4000 ft %s r%%2018" % target).isdigit()
    assert d.command("U c3 127.0.0.1 4000 ft").isdigit()         # not armed
    assert wait_for(lambda: count_sessions(d) == 0, timeout=6)
    elapsed = time.time() - start
    assert 2.0 <= elapsed <= 4.5, elapsed
    assert wait_for(lambda: len(listener.lines) == 2)
    assert sorted(listener.lines) == [b"r 17", b"r 18"]
    assert listener.connections == 1          # one kept-open connection
    assert d.command("G nsess_timeout nsess_destroyed") == "3 3"
    # the listener's "OK" replies never disturb the daemon; later ones reuse the link
    assert d.command("U c4 127.0.0.1 4000 ft %s x" % target).isdigit()
    assert wait_for(lambda: len(listener.lines) == 3, timeout=6)
    assert listener.connections == 1
    listener.close()


def test_notification_over_unix_socket(rtpproxy, tmp_path):
    path = str(tmp_path / "notify.sock")
    listener = Listener(socket.AF_UNIX, path)
    d = rtpproxy("-T", "1", "-n", "unix:" + path)
    # a bare path matches the unix: target
    assert d.command("U c1 127.0.0.1 4000 ft %s tag%%3Bone" % path).isdigit()
    assert wait_for(lambda: listener.lines, timeout=5)
    assert listener.lines == [b"tag;one"]
    listener.close()


def test_wildcard_target_connects_to_command_source(rtpproxy):
    port = free_port(socket.SOCK_STREAM)
    listener = Listener(address=("127.0.0.1", port))
    wildcard = "tcp:%%CC_SELF%%:" + str(port)
    d = rtpproxy("-T", "1", "-n", wildcard)
    assert d.command("VF 20150617") == "1"
    assert d.command("U c9 127.0.0.1 30000 ft9 %s r%%2017" % wildcard).isdigit()
    assert wait_for(lambda: listener.lines, timeout=5)
    assert listener.lines == [b"r 17"]
    listener.close()


def test_unmatched_notify_socket_still_creates_session(rtpproxy, tmp_path):
    d = rtpproxy("-n", "unix:" + str(tmp_path / "n.sock"))
    assert d.command("U c1 127.0.0.1 4000 ft tt;1 kamailio-timeout-socket").isdigit()
    assert "matches no -n target" in d.log()


def test_media_keeps_session_alive(rtpproxy):
    d = rtpproxy("-T", "2", "-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    assert d.command("U c 127.0.0.1 %d ft" % a.port).split()[0].isdigit()
    pa = int(d.command("L c 127.0.0.1 %d ft tt" % b.port).split()[0])
    end = time.time() + 4
    seq = 0
    while time.time() < end:
        a.send(rtp_packet(seq), "127.0.0.1", pa)   # one direction is enough (unified TTL)
        seq += 1
        time.sleep(0.2)
    assert count_sessions(d) == 1
    ttl = int(d.command("Q c ft tt ttl"))
    assert 1 <= ttl <= 2
    assert wait_for(lambda: count_sessions(d) == 0, timeout=5)


def test_independent_leg_ttl(rtpproxy):
    d = rtpproxy("-T", "2", "-i", "-l", "127.0.0.1")
    a, b = Endpoint(), Endpoint()
    d.command("U c 127.0.0.1 %d ft" % a.port)
    pa = int(d.command("L c 127.0.0.1 %d ft tt" % b.port).split()[0])
    start = time.time()
    while time.time() - start < 5 and count_sessions(d):
        a.send(rtp_packet(0), "127.0.0.1", pa)    # only the caller's leg is active
        time.sleep(0.2)
    # the silent callee leg expires the session despite the caller's media
    assert count_sessions(d) == 0
    assert time.time() - start < 4.6


def test_setup_ttl_until_second_leg(rtpproxy):
    d = rtpproxy("-T", "30", "-W", "1")
    d.command("U half 127.0.0.1 4000 ft")
    d.command("U full 127.0.0.1 4000 ft")
    assert d.command("Q full ft nosuchtag ttl") == "1"
    d.command("L full 127.0.0.1 4002 ft tt")
    assert d.command("Q full ft tt ttl") == "30"
    assert wait_for(lambda: count_sessions(d) == 1, timeout=4)
    assert d.command("Q half ft") == "E50"
    assert d.command("Q full ft tt ttl").isdigit()


def test_session_connect_time_is_anchored_and_announced(rtpproxy):
    """VF 20140617 ("anchoring of session connect time") answers 1 as on the
    reference: the setup TTL (-W) runs from the first U until the session is
    connected by its second leg, whose allocation anchors the -T TTL, however
    late it comes inside the setup window."""
    d = rtpproxy("-T", "5", "-W", "2")
    assert d.command("VF 20140617") == "1"
    d.command("U late 127.0.0.1 4000 ft")
    assert wait_for(lambda: d.command("Q late ft nosuchtag ttl") == "1", timeout=3)
    d.command("L late 127.0.0.1 4002 ft tt")
    assert d.command("Q late ft tt ttl") == "5"      # -T from the connect time on


def test_unreachable_notify_target_does_not_block(rtpproxy):
    port = free_port(socket.SOCK_STREAM)      # nothing listens there
    target = "tcp:127.0.0.1:%d" % port
    d = rtpproxy("-T", "1", "-n", target)
    for i in range(20):
        d.command("U c%d 127.0.0.1 4000 ft %s t%d" % (i, target, i))
    assert wait_for(lambda: count_sessions(d) == 0, timeout=5)
    t = time.time()
    assert d.command("V") == "20040107"
    assert time.time() - t < 0.5
