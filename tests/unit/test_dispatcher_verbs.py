"""Every command verb against the real Dispatcher, with the media port in
memory (media_port.MemoryMediaPort): no sockets, no subprocess, time passed
in. Datagrams are pumped through Stream.on_packet as relay.py's readers do,
and what the relay would send is read from the port's outbox."""

import os
import socket
import struct

import pytest

from rtpproxy_py import capabilities
from rtpproxy_py.config import BindAddress, Config, NotifyTarget
from rtpproxy_py.dispatcher import CommandContext, Dispatcher
from rtpproxy_py.media_port import MemoryMediaPort
from rtpproxy_py.recording import Recordings

LOCAL = BindAddress(socket.AF_INET, "127.0.0.1")
CALLER = ("192.0.2.1", 4000)
CALLEE = ("192.0.2.2", 5000)
BASE = 35000


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class Notifications:
    def __init__(self):
        self.sent = []

    def notify(self, target, tag, source_ip, local_ip):
        self.sent.append((target.text, tag, source_ip))


class Relay:
    """A Dispatcher on a MemoryMediaPort, as main.py wires the real one."""

    def __init__(self, tmp_path=None, **config):
        config.setdefault("listen4", [LOCAL])
        config.setdefault("primary", LOCAL)
        self.config = Config(**config)
        self.clock = Clock()
        self.port = MemoryMediaPort(BASE, BASE + 98, routes={"192.0.2.9": "127.0.0.1"})
        self.notes = Notifications()
        self.d = Dispatcher(self.config, self.port, self.notes, self.clock)
        self.port.on_expired = self.d.expire
        self.d.recorder = Recordings(self.config, self.port)

    def __call__(self, text, ctx=None):
        return self.d.execute(text.encode(), ctx)

    def send(self, port, data, source):
        return self.port.receive(port, data, source, self.clock.now)

    def call(self, call_id="c1"):
        """U from the caller, L from the callee: (port for the callee, port for the caller)."""
        a = self("U %s %s %d ft" % ((call_id,) + CALLER))
        b = self("L %s %s %d ft tt" % ((call_id,) + CALLEE))
        return int(a.split()[0]), int(b.split()[0])


def rtp(seq, ssrc=0x1234, pt=0, payload=b"\xff" * 160):
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + payload


@pytest.fixture
def relay(tmp_path):
    r = Relay(record_dir=str(tmp_path))
    yield r
    r.d.close_all()
    r.d.recorder.shutdown()


def test_v_and_vf(relay):
    assert relay("V") == capabilities.BASE_VERSION + "\n"
    assert relay("VF 20040107") == "1\n"
    assert relay("VF 20191015") == "1\n"         # && sub-commands
    assert relay("VF 20081224") == "0\n"         # notification needs an -n target
    assert relay("VF 19990101") == "0\n"
    assert relay.d.counters.ncmds_rcvd == 5 and relay.d.counters.ncmds_succd == 5


def test_u_and_l_allocate_ports_in_memory(relay):
    free = relay.port.free_ports()
    assert relay("U c1 192.0.2.1 4000 ft") == "%d 127.0.0.1\n" % BASE
    assert relay.port.free_ports() == free - 1
    assert relay("U c1 192.0.2.1 4000 ft") == "%d 127.0.0.1\n" % BASE   # same session
    assert relay("L c1 192.0.2.2 5000 ft tt") == "%d 127.0.0.1\n" % (BASE + 2)
    assert relay("Un c1 192.0.2.1 4000 ft tt") == "%d 127.0.0.1\n" % (BASE + 4)
    session = next(iter(relay.d.table))
    assert [s.port for s in session.streams()] == [BASE + 4, BASE + 2, BASE + 5, BASE + 3]
    assert relay.d.counters.nsess_created == 1 and relay.d.counters.nsess_complete == 1


def test_l_on_unknown_session_and_bad_addresses(relay):
    assert relay("L nosuch 192.0.2.2 5000 ft tt") == "0\n"
    assert relay.d.counters.ncmds_errs == 1
    assert relay("U c1 192.0.2.x 4000 ft") == "E37\n"
    assert relay("Ue c1 192.0.2.1 4000 ft") == "E11\n"     # no bridging: no e/i interfaces
    assert relay("Ur198.51.100.1 c1 192.0.2.1 4000 ft") == "E32\n"   # no route in memory
    assert len(relay.d.table) == 0


def test_packets_are_relayed_and_counted(relay):
    callee_port, caller_port = relay.call()
    for seq in range(3):
        assert relay.send(caller_port, rtp(seq), CALLER) == CALLEE
    for seq in range(2):
        assert relay.send(callee_port, rtp(seq, ssrc=99), CALLEE) == CALLER
    sent = relay.port.datagrams_to_send()
    assert [(port, dest) for port, _, dest in sent] == \
        [(callee_port, CALLEE)] * 3 + [(caller_port, CALLER)] * 2
    assert sent[0][1] == rtp(0)
    # ttl npkts_ina npkts_ino nrelayed ndropped
    assert relay("Q c1 ft tt") == "60 3 2 5 0\n"
    assert relay("Q c1 tt ft") == "60 2 3 5 0\n"
    assert relay("Qv c1 ft tt rtpa_nrcvd rtpa_nlost") == "rtpa_nrcvd=3 rtpa_nlost=0\n"
    assert relay("Q c1 ft tt nosuchcounter") == "E62\n"
    assert relay("Q nosuch ft tt") == "E50\n"


def test_latched_source_wins_and_others_are_dropped(relay):
    callee_port, caller_port = relay.call()
    relay.send(caller_port, rtp(0), CALLER)
    # a stranger on the caller's port: not the latched source
    assert relay.send(caller_port, rtp(1, ssrc=7), ("198.51.100.7", 9)) is None
    assert relay("Q c1 ft tt npkts_ina ndropped") == "2 1\n"


def test_d_frees_ports_and_counts(relay):
    relay.call()
    free = relay.port.free_ports()
    assert relay("D c1 ft tt") == "0\n"
    assert relay.port.free_ports() == free + 2
    assert relay("D c1 ft tt") == "E50\n"
    assert relay.d.counters.nsess_destroyed == 1 and not relay.port.sessions


def test_weak_delete_keeps_a_strong_session(relay):
    relay("Uw c1 192.0.2.1 4000 ft")      # only weakly held, by the leg U created
    assert relay("D c1 ft") == "0\n"      # a strong D does not end it
    assert len(relay.d.table) == 1
    assert relay("Dw c1 tt ft") == "0\n"  # the weak D of that leg does
    assert len(relay.d.table) == 0


def test_x_deletes_everything(relay):
    free = relay.port.free_ports()
    relay.call("c1")
    relay.call("c2")
    assert relay.port.free_ports() == free - 4
    assert relay("X") == "0\n"
    assert len(relay.d.table) == 0 and relay.port.free_ports() == free


def test_i_ib_and_g(relay):
    callee_port, caller_port = relay.call()
    relay.send(caller_port, rtp(0), CALLER)
    info = relay("I")
    assert "sessions created: 1\n" in info and "active sessions: 1\n" in info
    assert "active streams: 2\n" in info and "packets received: 1\n" in info
    assert "packets transmitted: 1\n" in info
    assert relay("Ib") == relay("I")       # brief: the same lines, as upstream's short form
    assert "average load: " in relay("Il")
    assert relay("G nsess_created npkts_rcvd") == "1 1\n"
    assert relay("Gv nsess_created") == "nsess_created=1\n"
    assert relay("G nosuch") == "E68\n"


def test_idle_session_expires_on_the_timer_and_notifies():
    r = Relay(notify_targets=[NotifyTarget("unix:/tmp/n.sock", "unix", path="/tmp/n.sock")])
    assert r("U c1 192.0.2.1 4000 ft unix:/tmp/n.sock tag1").startswith(str(BASE))
    session = next(iter(r.d.table))
    r.clock.now += 30
    r.port.handle_timer(r.clock.now)
    assert len(r.d.table) == 1
    r.clock.now = session.expires_at()
    r.port.handle_timer(r.clock.now)
    assert len(r.d.table) == 0 and r.d.counters.nsess_timeout == 1
    assert r.notes.sent == [("unix:/tmp/n.sock", b"tag1", "127.0.0.1")]


def test_p_plays_a_prompt_and_s_stops_it(relay, tmp_path):
    prompt = tmp_path / "hello"
    (tmp_path / "hello.0").write_bytes(b"\x7f" * 160 * 5)
    callee_port, caller_port = relay.call()
    assert relay("P2 c1 %s 0 ft tt" % prompt) == "0\n"
    assert relay.d.counters.nplrs_created == 1
    relay.port.handle_timer(relay.clock.now)
    played = relay.port.datagrams_to_send()
    assert played and all(dest == CALLER and port == caller_port for port, _, dest in played)
    assert played[0][1][1] & 0x7F == 0 and set(played[0][1][12:]) == {0x7F}   # PCMU, the file's bytes
    # media relayed to the party hearing the prompt is dropped meanwhile
    assert relay.send(callee_port, rtp(0), CALLEE) is None
    assert relay("S c1 ft tt") == "0\n"
    assert relay.send(callee_port, rtp(1), CALLEE) == CALLER
    assert relay("P c1 %s 8 ft tt" % (tmp_path / "nosuch")) == "E60\n"
    assert relay("P c1 p 0 nosuch tt") == "E50\n"


def test_r_c_n_record_into_files(relay, tmp_path):
    callee_port, caller_port = relay.call()
    assert relay("R c1 ft tt") == "0\n"
    assert sorted(os.listdir(tmp_path)) == ["c1=ft.o.rtcp", "c1=ft.o.rtp"]
    relay.send(caller_port, rtp(0), CALLER)
    relay.send(caller_port, rtp(1), CALLER)
    assert relay("C c1 copy1 ft tt") == "0\n"
    assert any(name.startswith("copy1") for name in os.listdir(tmp_path))
    assert relay("N c1 ft tt") == "0\n"
    relay.d.recorder.shutdown()          # flushes the files
    assert os.path.getsize(tmp_path / "c1=ft.o.rtp") > 2 * len(rtp(0))
    assert relay("N nosuch ft tt") == "E50\n"
    assert relay("R nosuch ft") == "E50\n"


def test_c_udp_copies_relayed_packets_to_a_third_port(relay):
    callee_port, caller_port = relay.call()
    assert relay("Cp c1 udp:192.0.2.9:6000 ft tt") == "%d 127.0.0.1\n" % (BASE + 4)
    relay.port.datagrams_to_send()
    relay.send(caller_port, rtp(0), CALLER)       # the leg C names: the caller's packets
    relay.send(callee_port, rtp(1), CALLEE)
    out = relay.port.datagrams_to_send()
    # relayed from the peer's port: the caller's packet leaves the port the callee knows
    assert out == [(BASE + 4, rtp(0), ("192.0.2.9", 6000)), (callee_port, rtp(0), CALLEE),
                   (caller_port, rtp(1), CALLER)]
    assert relay("C c1 udp:198.51.100.1:6000 ft tt") == "E65\n"    # no route in memory


def test_subcommands(relay):
    ip = " 127.0.0.1"
    assert relay("U c1 192.0.2.1 4000 ft tt && L 192.0.2.2 5000") == \
        "%d%s && %d%s\n" % (BASE, ip, BASE + 2, ip)
    assert relay("U c2 192.0.2.1 4000 ft tt && S ttl=2") == "%d%s\n" % (BASE + 4, ip)
    assert relay("Q c2 ft tt ttl") == "2\n"
    assert relay("U c3 192.0.2.1 4000 ft tt && S tos=46 && L 192.0.2.2 5000") == \
        "%d%s && 0 && %d%s\n" % (BASE + 6, ip, BASE + 8, ip)
    session = relay.d.table.find("c3", "ft", "tt")[0]
    # S: the leg opposite the one whose port the reply returns; Sr: that one
    assert [s.tos for s in session.streams()] == [None, 46, None, 46]
    relay("U c3 192.0.2.1 4000 ft tt && Sr tos=40")
    assert [s.tos for s in session.streams()] == [40, 46, 40, 46]
    assert relay("U c4 192.0.2.1 4000 f4 t4 && C nosuchcall nf nt") == "%d%s && -1\n" % (BASE + 10, ip)
    assert relay("U c4 192.0.2.1 4000 f4 t4 && C c1 ft tt") == "%d%s\n" % (BASE + 10, ip)   # silent success
    source = relay.d.table.find("c1", "ft", "tt")[0]
    assert [f.into.call_id for f in relay.d.forks.by_session[source]] == ["c4"]
    assert relay("Q c1 ft tt && D") == "60 0 0 0 0\n"      # fused delete: silent success
    assert relay("Q c1 ft tt") == "E50\n"
    assert relay("U c5 192.0.2.1 4000 f5 && L 192.0.2.2 5000") == "E3\n"


def test_deorbit_refuses_new_sessions_and_reports_idle(relay):
    idle = []
    relay.d.on_idle = lambda: idle.append(True)
    relay.call()
    relay.d.start_deorbit()
    assert relay("U c2 192.0.2.1 4000 ft") == "E99\n"
    assert not idle
    relay("D c1 ft tt")
    assert idle == [True]


def test_command_context_reaches_notify(relay):
    r = Relay(notify_targets=[NotifyTarget("tcp:%%CC_SELF%%:9000", "tcp", port=9000, wildcard=True)])
    ctx = CommandContext(source_ip="192.0.2.50")
    r("U c1 192.0.2.1 4000 ft tcp:%%CC_SELF%%:9000 tag", ctx)
    session = next(iter(r.d.table))
    r.clock.now = session.expires_at()
    r.port.handle_timer(r.clock.now)
    assert r.notes.sent == [("tcp:%%CC_SELF%%:9000", b"tag", "192.0.2.50")]
