"""Every command and error code as request/reply pairs, on every control
transport (control-protocol.md section 10 worked examples and more)."""

import pytest

TRANSPORTS = ["stdio", "udp", "udp6", "unix", "cunix", "tcp", "tcp6"]


def worked_examples(base):
    """(command, expected reply) in order; ports relative to the -m base with -b."""
    p0, p1 = str(base), str(base + 2)
    return [
        ("V", "20040107"),
        ("Vx", "E2"),
        ("VF 20080403", "1"),
        ("VF 20081224", "0"),
        ("VF 12345678", "0"),
        ("VF", "E1"),
        ("Vfgarbage x", "E2"),
        ("", "E5"),
        ("A something", "E0"),
        ("U", "E1"),
        ("Ugarbage cid addr port ftag ttag", "E35"),
        ("Uie cid addr port ftag ttag", "E12"),
        ("Uei cid addr port ftag ttag", "E11"),
        ("Uz0 cid addr port ftag ttag", "E13"),
        ("Uz1000 cid addr port ftag ttag", "E13"),
        ("Uc cid addr port ftag ttag", "E14"),
        ("Uc0c8 cid addr port ftag ttag", "E14"),
        ("Ul cid addr port ftag ttag", "E15"),
        ("Ul[1:2:3:4:5] cid a p ftag ttag", "E31"),
        ("Ul{nolabel} cid a p ftag ttag", "E31"),
        ("Ur cid addr port ftag ttag", "E16"),
        ("U6 cid ::1 4000 ftag ttag", "E36"),
        ("U cid 127.0.0.1 notaport ftag ttag", "E37"),
        ("U cid 300.0.0.1 4000 ftag ttag", "E37"),
        ("U cid W3.IT2Nl-garbage 39d9 ftag ttag", p0),
        ("U cid x y ftag ttag %%S%% %%T%%", "E10"),
        ("U cid x y ftag ttag %%S%% %25%25T%25%25", "E75"),
        ("U cid x y ftag ttag %%S%%", "E10"),   # 7 tokens: ttag is the notify socket
        ("U cid x y ftag ttag tag", "E75"),
        ("L cid x y ftag ttag", p1),
        ("L cid x y ftag ttag a b", "E1"),
        ("L nosuch 1.2.3.4 5 a b", "0"),
        ("Dgarbage cid ftag", "E8"),
        ("D cid nosuch", "E50"),
        ("D cid ftag ttag extra", "E1"),
        ("P cid prompt 0,8 ftag ttag", "E60"),
        ("P cid prompt session ftag ttag", "E35"),
        ("P0 cid prompt 0,8 ftag ttag", "0"),
        ("P nosuch prompt 0,8 ftag ttag", "E50"),
        ("Pgarbage cid prompt 0 ftag ttag", "E17"),
        ("R cid ftag ttag", "E50"),
        ("Rp cid ftag ttag", "E6"),
        ("Rx cid ftag ttag", "E7"),
        ("Cgarbage cid tgt ftag ttag", "E7"),
        ("C cid tgt ftag ttag", "E65"),
        ("C nosuch tgt ftag ttag", "E50"),
        ("Nax cid ftag", "E6"),
        ("Nx cid ftag", "E7"),
        ("N cid ftag ttag", "E50"),
        ("S cid ftag ttag", "0"),
        ("Sx cid ftag ttag", "E2"),
        ("S nosuch ftag ttag", "E50"),
        ("Q cid ttag ftag", "60 0 0 0 0"),
        ("Qv cid ftag ttag", "ttl=60 npkts_ina=0 npkts_ino=0 nrelayed=0 ndropped=0"),
        ("Qg cid ftag ttag", "E19"),
        ("Qv cid ftag ttag garbage", "E62"),
        ("Qv cid ftag ttag ttl longest_ipi rtpa_jlast rtpa_jmax rtpa_javg",
         "ttl=60 longest_ipi=0.000000 rtpa_jlast=0.000000 rtpa_jmax=0.000000 rtpa_javg=0.000000"),
        ("Q nosuch ftag ttag", "E50"),
        ("I", "sessions created: 1\nactive sessions: 1\nactive streams: 2\n"
              "packets received: 0\npackets transmitted: 0"),
        ("Ib", "sessions created: 1\nactive sessions: 1\nactive streams: 2\n"
               "packets received: 0\npackets transmitted: 0"),
        ("Il", "sessions created: 1\nactive sessions: 1\nactive streams: 2\n"
               "packets received: 0\npackets transmitted: 0\naverage load: 0.000000"),
        ("Igarbage", "E18"),
        ("I x", "E1"),
        ("X", "0"),
        ("X x", "E1"),
        ("Xx", "E2"),
        ("G nonsense", "E68"),
        ("Ggarbage nonsense", "E9"),
        ("G nsess_created nsess_destroyed", "1 1"),
        ("G", ""),
        ("U cid 127.0.0.1 12345 f 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19", "E5"),
        ("U cid 127.0.0.1 12345 f &&", "E5"),
        ("U cid 127.0.0.1 12345 f && 1 2 3", "E3"),
        ("D cid f && D", "E3"),
        ("U cid5 127.0.0.1 4000 f5 && L 127.0.0.1 5000", "E3"),
        ("U cid6 127.0.0.1 4000 f6 t6 && M4:1 S", "E3"),
        ("U cid\x00x 127.0.0.1 4000 f6 t6", "E5"),
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_worked_examples(rtpproxy, transport):
    d = rtpproxy("-b", control=transport)
    base = d.ports[0]
    sent = 1  # the V the helper sent to see the daemon was up
    for command, expected in worked_examples(base):
        if command == "" and transport == "unix":
            # unix: an empty connection is closed silently; send one space instead
            command = " "
        reply = d.command(command)
        sent += 1
        assert reply == expected, "%s: %r -> %r, expected %r" % (transport, command, reply, expected)
    # the G command itself is already counted in ncmds_rcvd
    assert d.command("Gv nsess_created ncmds_rcvd") == "nsess_created=1 ncmds_rcvd=%d" % (sent + 1)


def test_concrete_addresses_in_replies(rtpproxy):
    d = rtpproxy("-b", "-l", "127.0.0.1", "-6", "::1")
    b = d.ports[0]
    assert d.command("U c1 127.0.0.7 30000 ft1;1") == "%d 127.0.0.1" % b
    assert d.command("L c1 127.0.0.9 40000 ft1;1 tt1;1") == "%d 127.0.0.1" % (b + 2)
    # IPv6 has its own port table, as upstream: its -b sequence starts at the base too
    assert d.command("U6 c2 ::1 30000 ft2;1") == "%d ::1 6" % b


def test_advertised_address(rtpproxy):
    d = rtpproxy("-b", "-l", "127.0.0.1", "-A", "203.0.113.1")
    assert d.command("U c1 127.0.0.7 30000 ft") == "%d 203.0.113.1" % d.ports[0]


def test_listen_address_with_inline_advertised_and_labels(rtpproxy):
    d = rtpproxy("-b", "-l", "127.0.0.1=198.51.100.1", "-l", "lo2@127.0.0.2")
    b = d.ports[0]
    assert d.command("U c1 127.0.0.7 30000 ft") == "%d 198.51.100.1" % b
    assert d.command("Ul{lo2} c2 127.0.0.7 30000 ft") == "%d 127.0.0.2" % (b + 2)
    assert d.command("Ul127.0.0.2 c3 127.0.0.7 30000 ft") == "%d 127.0.0.2" % (b + 4)
    # the kernel reaches 127.0.0.2 from 127.0.0.1: the primary address answers
    assert d.command("Ur127.0.0.2 c4 127.0.0.7 30000 ft") == "%d 198.51.100.1" % (b + 6)
    assert d.command("Ul127.0.0.9 c5 127.0.0.7 30000 ft") == "E31"


def test_remote_route_with_no_matching_listen_address(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1")
    # ::1 is reached from ::1, and there is no IPv6 listen address
    assert d.command("Ur[::1] c1 127.0.0.7 30000 ft") == "E32"
    assert d.command("Ur[zz] c1 127.0.0.7 30000 ft") == "E16"


def test_subcommands(rtpproxy):
    d = rtpproxy("-b")
    b = d.ports[0]
    assert d.command("U cid 127.0.0.1 12345 ftag ttag && L 127.0.0.1 54321") == "%d && %d" % (b, b + 2)
    assert d.command("U cid2 127.0.0.1 12345 ftag ttag && S ttl=2") == "%d" % (b + 4)
    assert d.command("Q cid2 ftag ttag ttl") == "2"
    assert d.command("U cid3 127.0.0.1 12345 ftag ttag && S ttl=2 && L 127.0.0.1 54321") == \
        "%d && 0 && %d" % (b + 6, b + 8)
    assert d.command("U cid4 127.0.0.1 4000 f4 t4 && C nosuchcall nf nt") == "%d && -1" % (b + 10)
    assert d.command("U cid5 127.0.0.1 4000 f5 && L 127.0.0.1 5000") == "E3"
    # a bad address/port in the L sub-command rejects the whole command at parse time
    assert d.command("U cid8 127.0.0.1 4000 f8 t8 && L 127.0.0.1 notaport") == "E3"
    assert d.command("U cid8 127.0.0.1 4000 f8 t8 && L 127.0.0.x 5000") == "E3"
    assert d.command("Q cid8 f8 t8") == "E50"                  # nothing was executed
    assert d.command("S tos=5") == "E1"
    # S with a bad value and D with extra words are sub-command parse errors
    assert d.command("U cid6 127.0.0.1 4000 f6 && S ttl=0") == "E3"
    assert d.command("U cid6 127.0.0.1 4000 f6 && S ttl=x") == "E3"
    assert d.command("U cid6 127.0.0.1 4000 f6 && D x") == "E3"
    # fused delete: the session is gone after the reply
    assert d.command("Q cid ftag ttag && D") == "60 0 0 0 0"
    assert d.command("Q cid ftag ttag") == "E50"
    assert d.command("U cid7 127.0.0.1 4000 f7 t7 && S tos=46") == "%d" % (b + 12)
    assert d.command("U cid7 127.0.0.1 4000 f7 t7 && Sr ttl=7 && S tos=46") == "%d" % (b + 12)
    assert d.command("Q cid7 f7 t7 ttl") == "7"


def test_subcommand_limit(rtpproxy):
    d = rtpproxy()
    fifteen = " && ".join(["S ttl=5"] * 15)
    sixteen = " && ".join(["S ttl=5"] * 16)
    assert d.command("U c 127.0.0.1 4000 f && " + fifteen).isdigit()
    assert d.command("U c 127.0.0.1 4000 f && " + sixteen) == "E5"


def test_new_port_modifier(rtpproxy):
    d = rtpproxy("-b")
    b = d.ports[0]
    assert d.command("U c 127.0.0.1 4000 f") == str(b)
    assert d.command("L c 127.0.0.1 4002 f t") == str(b + 2)
    assert d.command("Un c 127.0.0.1 4000 f t") == str(b + 4)
    assert d.command("Ln c 127.0.0.1 4002 f t") == str(b + 6)
    assert d.command("U c 127.0.0.1 4000 f t") == str(b + 4)


def test_port_exhaustion_and_recovery(rtpproxy):
    # two RTP/RTCP pairs: one session takes both
    d = rtpproxy("-b", ports=None)
    d2 = rtpproxy("-b", ports=(d.ports[0] + 100, d.ports[0] + 103))
    b = d2.ports[0]
    assert d2.command("U c1 127.0.0.1 4000 f") == str(b)
    assert d2.command("L c1 127.0.0.1 4002 f t") == str(b + 2)
    assert d2.command("U c2 127.0.0.1 4000 f") == "E72"
    assert d2.command("U c3 127.0.0.1 4000 g") == "E72"
    assert d2.command("D c1 f") == "0"
    assert d2.command("U c2 127.0.0.1 4000 f").isdigit()
    assert d2.command("U c4 127.0.0.1 4000 f").isdigit()
    assert d2.command("L c4 127.0.0.1 4000 f t") == "E71"
    assert d.command("V") == "20040107"


def test_udp_retransmission_served_from_cache(rtpproxy):
    d = rtpproxy("-b")
    b = d.ports[0]
    first = d.raw(b"4711_1 U c1 127.0.0.7 30000 a")
    assert first == b"4711_1 %d\n" % b
    again = d.raw(b"4711_1 U c1 127.0.0.7 30000 a")
    assert again == first
    # not executed twice: one session, one duplicate counted
    assert d.command("G nsess_created ncmds_rcvd_ndups") == "1 1"
    # a cookie reused for another command within the lifetime gets the old reply
    assert d.raw(b"4711_1 V") == first
    assert d.raw(b"4711_2") == b"4711_2 E5\n"
    assert d.raw(b"   ") == b"E5\n"
    assert d.raw(b"4711_3 G") == b"4711_3 \n"


def test_feature_check_with_notify(rtpproxy, tmp_path):
    d = rtpproxy("-n", "unix:" + str(tmp_path / "n.sock"))
    assert d.command("VF 20081224") == "1"
    assert d.command("VF 20150617") == "1"
    assert d.command("VF 20050322") == "1"
    # copying, recording stop and C's p modifier work (tests/test_recording.py)
    assert d.command("VF 20071218") == "1"
    assert d.command("VF 20200226") == "1"
    assert d.command("VF 20250523") == "1"
    assert d.command("VF 20170313") == "0"


def test_delete_weak_strong_and_media_number_tags(rtpproxy):
    d = rtpproxy()
    for n in (1, 2):
        assert d.command("U c 127.0.0.1 4000 ft;%d" % n).isdigit()
        assert d.command("L c 127.0.0.1 4002 ft;%d tt;%d" % (n, n)).isdigit()
    assert d.command("I").splitlines()[1] == "active sessions: 2"
    # D without ;N removes every media stream of the call
    assert d.command("D c ft tt") == "0"
    assert d.command("I").splitlines()[1] == "active sessions: 0"
    # a weak session survives a plain D, goes with Dw on its weak leg
    assert d.command("Uw w 127.0.0.1 4000 wf").isdigit()
    assert d.command("D w wf") == "0"
    assert d.command("Q w wf") != "E50"
    assert d.command("Dw w xx wf") == "0"
    assert d.command("Q w wf") == "E50"
    # a strong U on a weak session: D removes strong but weak leg keeps it
    assert d.command("Uw s 127.0.0.1 4000 sf").isdigit()
    assert d.command("U s 127.0.0.1 4000 sf").isdigit()
    assert d.command("D s sf") == "0"
    assert d.command("Q s sf") != "E50"


def test_graceful_shutdown_on_stdin_eof(rtpproxy):
    d = rtpproxy(control="stdio")
    assert d.command("U c 127.0.0.1 4000 f").isdigit()
    d.proc.stdin.close()
    # sessions keep the process alive; deleting the last one ends it
    from helpers import wait_for
    assert wait_for(lambda: "graceful shutdown: no new sessions" in d.log()), d.log()
    assert not wait_for(lambda: not d.alive(), timeout=0.3)    # fails at once if it exits
    d.proc.send_signal(__import__("signal").SIGTERM)
    assert d.proc.wait(5) == 0


def test_sighup_refuses_new_sessions_and_exits_when_idle(rtpproxy):
    import signal
    from helpers import wait_for
    d = rtpproxy()
    assert d.command("U c 127.0.0.1 4000 f").isdigit()
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "graceful shutdown: no new sessions" in d.log()), d.log()
    assert d.command("U c2 127.0.0.1 4000 f") == "E99"
    assert d.command("U c 127.0.0.1 4000 f").isdigit()   # existing sessions still work
    assert d.command("D c f") == "0"
    assert d.proc.wait(5) == 0
