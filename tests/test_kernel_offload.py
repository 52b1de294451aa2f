"""--kernel_offload (offload.py, netfilter.py) on a real kernel: the relay runs
in a network namespace between a caller's and a callee's (netns_helpers), so
its kernel really forwards. A packet the relay program sent arrives with IP
TTL 64, one the relay's kernel forwarded with 63."""

import os
import re
import signal
import socket
import sys
import time

import pytest

from helpers import NotifyListener as Listener, free_port, rtp_packet, wait_for
from netns_helpers import CALLEE_IP, CALLER_IP, RELAY_IP, Topology

ZONE = "29296"


@pytest.fixture
def topo():
    if os.geteuid() != 0:
        pytest.fail("the kernel offload tests need root (network namespaces, nftables)")
    for tool in ("nft", "conntrack"):
        if not any(os.path.exists(os.path.join(d, tool)) for d in ("/usr/sbin", "/sbin", "/usr/bin")):
            pytest.fail("missing %s: run `make system-deps` (tests/apt-packages.txt)" % tool)
    topology = Topology()
    yield topology
    topology.close()


def relay(rtpproxy, topo, *args, prefix=()):
    return rtpproxy("-l", RELAY_IP, "--kernel_offload", *args, control="unix",
                    command=topo.relay_command(*prefix))


class Call:
    def __init__(self, d, topo, call_id="call", mods=""):
        self.d, self.call_id = d, call_id
        self.caller = topo.endpoint(topo.caller, CALLER_IP)
        self.callee = topo.endpoint(topo.callee, CALLEE_IP)
        self.to_callee = int(d.command("U%s %s %s %d ft" % (mods, call_id, CALLER_IP, self.caller.port)).split()[0])
        self.to_caller = int(d.command("L %s %s %d ft tt" % (call_id, CALLEE_IP, self.callee.port)).split()[0])
        self.seq = 0

    def burst(self, count, gap=0.002):
        """Both parties send ``count`` packets; what each received:
        ([(seq, ttl, source)] at the callee, the same at the caller)."""
        first = self.seq
        for _ in range(count):
            self.seq += 1
            self.caller.send(rtp_packet(self.seq, ssrc=0xA), RELAY_IP, self.to_caller)
            self.callee.send(rtp_packet(self.seq, ssrc=0xB), RELAY_IP, self.to_callee)
            time.sleep(gap)
        return self._collect(self.callee, first, count), self._collect(self.caller, first, count)

    @staticmethod
    def _collect(party, first, count):
        got = []
        while len(got) < count:
            data, source, ttl = party.recv_ttl(0.5)
            if data is None:
                break
            got.append((int.from_bytes(data[2:4], "big"), ttl, source))
        return got

    def ttls(self, count=3):
        at_callee, at_caller = self.burst(count, gap=0.01)
        return {ttl for _, ttl, _ in at_callee + at_caller} or {None}

    def close(self):
        self.caller.close()
        self.callee.close()


def offloaded_keys(topo, table):
    text = topo.run_in(topo.relay, "nft", "list", "set", "ip", table, "offloaded")
    return re.findall(r"([\d.]+ \. \d+ \. [\d.]+ \. \d+)", text)


def zone_entries(topo):
    return topo.run_in(topo.relay, "conntrack", "-L", "-w", ZONE, check=False).strip()


def test_latched_call_moves_to_the_kernel_without_loss_and_keeps_counting(rtpproxy, topo):
    d = relay(rtpproxy, topo, "--workers", "1")
    call = Call(d, topo)
    try:
        at_callee, at_caller = call.burst(300)
        # nothing lost or doubled while the kernel took over
        assert sorted(seq for seq, _, _ in at_callee) == list(range(1, 301))
        assert sorted(seq for seq, _, _ in at_caller) == list(range(1, 301))
        # the first packets went through the program, the rest through the kernel,
        # from the same relay ports the parties were told about
        for got, port in ((at_callee, call.to_callee), (at_caller, call.to_caller)):
            assert got[0][1] == 64 and got[-1][1] == 63
            assert sum(1 for _, ttl, _ in got if ttl == 63) > 250
            assert {source for _, _, source in got} == {(RELAY_IP, port)}
        table = "rtpproxy_%d" % d.proc.pid
        assert topo.tables() == [table]
        assert sorted(offloaded_keys(topo, table)) == sorted([
            "%s . %d . %s . %d" % (CALLER_IP, call.caller.port, RELAY_IP, call.to_caller),
            "%s . %d . %s . %d" % (CALLEE_IP, call.callee.port, RELAY_IP, call.to_callee)])
        # Q, I and G count what the kernel relayed
        time.sleep(0.2)
        assert d.command("Q call ft tt") == "60 300 300 600 0"
        assert d.command("G npkts_rcvd npkts_relayed") == "600 600"
        # D takes it back: no map entry, no translation left in conntrack
        assert d.command("D call ft tt") == "0"
        assert offloaded_keys(topo, table) == []
        assert zone_entries(topo) == ""
        assert call.burst(2) == ([], [])
    finally:
        call.close()
    # the table goes at exit
    assert d.stop() == 0
    assert topo.tables() == []


def test_metrics_byte_count_keeps_the_call_in_the_kernel_and_counts_its_bytes(rtpproxy, topo):
    """--metrics counts bytes with a tap on every stream; the kernel's counters
    stand in for it, so the call is still offloaded and its bytes counted."""
    d = relay(rtpproxy, topo, "--workers", "1", "--metrics", "127.0.0.1:9464")
    call = Call(d, topo)
    try:
        at_callee, at_caller = call.burst(200)
        assert len(at_callee) == len(at_caller) == 200
        assert sum(1 for _, ttl, _ in at_callee + at_caller if ttl == 63) > 300
        time.sleep(1.2)          # the kernel's counters are read once a second
        scrape = ("import urllib.request; print(urllib.request.urlopen("
                  "'http://127.0.0.1:9464/metrics', timeout=5).read().decode())")
        text = topo.run_in(topo.relay, sys.executable, "-c", scrape)
        figures = dict(line.rsplit(" ", 1) for line in text.splitlines()
                       if line.startswith("rtpproxy_") and " " in line)
        assert float(figures["rtpproxy_packets_relayed_total"]) == 400
        assert float(figures["rtpproxy_bytes_relayed_total"]) == 400 * len(rtp_packet(1, ssrc=0xA))
    finally:
        call.close()


def test_a_feature_takes_the_stream_back_and_gives_it_again(rtpproxy, topo):
    d = relay(rtpproxy, topo, "--workers", "1")
    call = Call(d, topo)
    try:
        call.burst(3)
        assert call.ttls() == {63}
        # a re-offer asking for re-packetizing: every packet must pass the program
        assert d.command("Uz30 call %s %d ft" % (CALLER_IP, call.caller.port)).split()[0].isdigit()
        assert call.ttls() == {64}
        assert zone_entries(topo) == ""
        assert d.command("U call %s %d ft" % (CALLER_IP, call.caller.port)).split()[0].isdigit()
        assert call.ttls() == {63}
        # asymmetric parties and strict latching stay in the program
        for call_id, mods in (("asym", "a"), ("strict", "k")):
            other = Call(d, topo, call_id, mods=mods)
            try:
                other.burst(3)
                assert other.ttls() == {64}, call_id
            finally:
                other.close()
        time.sleep(0.2)
        assert d.command("Q call ft tt") == "60 12 12 24 0"
    finally:
        call.close()


def test_recording_takes_the_stream_back_until_it_stops(rtpproxy, topo, tmp_path):
    d = relay(rtpproxy, topo, "--workers", "1", "-r", str(tmp_path))
    call = Call(d, topo)
    try:
        call.burst(3)
        assert call.ttls() == {63}
        assert d.command("R call ft") == "0"           # the caller's packets, to a file
        assert call.ttls() == {64}
        assert d.command("N call ft") == "0"
        assert call.ttls() == {63}
    finally:
        call.close()
    recorded = tmp_path / "call=ft.o.rtp"
    assert wait_for(lambda: recorded.exists() and recorded.stat().st_size > 3 * 172, timeout=5)


def test_a_new_party_address_moves_the_kernel_path(rtpproxy, topo):
    """NAT rebinding: the caller's packets come from a new port (within the
    re-latch window); the relay re-latches in user space and the kernel
    follows."""
    d = relay(rtpproxy, topo, "--workers", "1")
    call = Call(d, topo)
    moved = topo.endpoint(topo.caller, CALLER_IP)
    try:
        call.burst(3)
        assert call.ttls() == {63}
        old = call.caller
        call.caller = moved
        at_callee, at_caller = call.burst(20)
        # The first packet from the new port is dropped: the caller sent from
        # its signalled address, so the relay follows its SSRC elsewhere only
        # once that address was silent between two packets (README "Default
        # latching guards"); the replies meanwhile go to the old port.
        assert len(at_callee) >= 19 and len(at_caller) >= 18
        assert at_caller[-1][1] == 63 and at_callee[-1][1] == 63
        keys = offloaded_keys(topo, "rtpproxy_%d" % d.proc.pid)
        assert "%s . %d . %s . %d" % (CALLER_IP, moved.port, RELAY_IP, call.to_caller) in keys
        assert len(keys) == 2
        old.close()
    finally:
        call.close()


def test_idle_timer_and_notification_follow_the_kernel_counters(rtpproxy, topo):
    port = free_port(socket.SOCK_STREAM)
    with topo.inside(topo.relay):
        listener = Listener(address=("127.0.0.1", port))
    target = "tcp:127.0.0.1:%d" % port
    d = relay(rtpproxy, topo, "--workers", "1", "-T", "2", "-n", target)
    caller = topo.endpoint(topo.caller, CALLER_IP)
    callee = topo.endpoint(topo.callee, CALLEE_IP)
    try:
        to_callee = int(d.command("U idle %s %d ft %s bye" % (CALLER_IP, caller.port, target)).split()[0])
        to_caller = int(d.command("L idle %s %d ft tt" % (CALLEE_IP, callee.port)).split()[0])
        started = time.time()
        seq = 0
        while time.time() - started < 4.5:       # more than twice the 2 s time-out, all by the kernel
            seq += 1
            caller.send(rtp_packet(seq, ssrc=1), RELAY_IP, to_caller)
            callee.send(rtp_packet(seq, ssrc=2), RELAY_IP, to_callee)
            assert callee.recv_ttl(1)[0] is not None and caller.recv_ttl(1)[0] is not None
            time.sleep(0.1)
        assert d.command("Q idle ft tt ttl") in ("2", "1")
        assert listener.lines == []
        # silence: it ends after its time-out and the proxy is told
        assert wait_for(lambda: listener.lines == [b"bye"], timeout=6)
        assert d.command("Q idle ft tt") == "E50"
        assert d.command("G nsess_timeout npkts_rcvd") == "1 %d" % (2 * seq)
        assert zone_entries(topo) == ""
    finally:
        caller.close()
        callee.close()
        listener.close()


def test_stale_table_is_removed_at_start(rtpproxy, topo):
    dead = 1
    while os.path.exists("/proc/%d" % dead):
        dead += 7919
    stale = "rtpproxy_%d" % dead
    topo.run_in(topo.relay, "nft", "add table ip %s; add set ip %s offloaded { type ipv4_addr . inet_service "
                ". ipv4_addr . inet_service; }; add element ip %s offloaded { 10.77.1.2 . 4000 . "
                "10.77.1.1 . 5000 }" % (stale, stale, stale))
    d = relay(rtpproxy, topo, "--workers", "1")
    assert topo.tables() == ["rtpproxy_%d" % d.proc.pid]
    assert "removed table %s left by a process that is gone" % stale in d.log()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_without_cap_net_admin_it_says_so_once_and_relays_in_user_space(rtpproxy, topo, workers):
    d = relay(rtpproxy, topo, "--workers", workers, prefix=("setpriv", "--bounding-set", "-net_admin"))
    call = Call(d, topo)
    try:
        call.burst(3)
        assert call.ttls() == {64}
        assert call.ttls() == {64}
    finally:
        call.close()
    assert d.log().count("--kernel_offload: it needs CAP_NET_ADMIN") == 1
    assert topo.tables() == []


def test_each_worker_offloads_its_calls_and_a_dead_workers_table_goes(rtpproxy, topo):
    d = relay(rtpproxy, topo, "--workers", "2")
    calls = [Call(d, topo, "w%d" % n) for n in range(6)]
    try:
        for call in calls:
            call.burst(2)
            assert call.ttls() == {63}
        where = {cid: int(n) for n, cid in re.findall(r"worker (\d+): new session (\S+),", d.log())}
        pids = {int(n): int(p) for n, p in re.findall(r"worker (\d+): started, pid (\d+)", d.log())}
        assert set(where.values()) == {1, 2}
        assert sorted(topo.tables()) == sorted("rtpproxy_%d" % p for p in pids.values())
        os.kill(pids[1], signal.SIGKILL)
        assert wait_for(lambda: len(re.findall(r"worker 1: started, pid", d.log())) == 2, timeout=10)
        new_pid = int(re.findall(r"worker 1: started, pid (\d+)", d.log())[-1])
        # the new worker removed the dead one's table: its calls get no more media
        assert sorted(topo.tables()) == sorted(["rtpproxy_%d" % new_pid, "rtpproxy_%d" % pids[2]])
        for call in calls:
            if where[call.call_id] == 1:
                assert call.burst(2) == ([], [])
            else:
                assert call.ttls() == {63}
    finally:
        for call in calls:
            call.close()
    assert d.stop() == 0
    assert topo.tables() == []


def test_explicit_rtp_analysis_keeps_offloaded_relay_analyzing(rtpproxy, topo):
    """Analysis is on by default, but --kernel_offload alone turns it off (the
    operator chose the kernel path); with --rtp_analysis too, every call is
    analyzed and so stays in the program."""
    plain = relay(rtpproxy, topo, "--workers", "1")
    assert plain.command("VF 20150420") == "0"
    plain.stop()
    d = relay(rtpproxy, topo, "--workers", "1", "--rtp_analysis")
    assert d.command("VF 20150420") == "1"
    call = Call(d, topo)
    try:
        call.burst(5)
        assert call.ttls() == {64}
        assert d.command("Qv call ft tt rtpa_nrcvd") == "rtpa_nrcvd=8"
    finally:
        call.close()
