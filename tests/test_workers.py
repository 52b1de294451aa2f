"""--workers N (workers.py, worker.py): the front end routes every command of a
Call-ID to one worker process, adds the workers' figures up, and restarts a
worker that dies without disturbing the other workers' calls."""

import os
import re
import signal
import socket
import time

import pytest

from helpers import NotifyListener as Listener, Endpoint, free_port, port_range, rtp_packet, wait_for
from test_control_commands import TRANSPORTS, worked_examples

HOST = "127.0.0.1"


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


def worker_pids(d):
    """{worker number: pid} from the log lines the workers write at start."""
    return {int(n): int(pid) for n, pid in re.findall(r"worker (\d+): started, pid (\d+)", d.log())}


def placement(d):
    """{Call-ID: worker number} from the workers' 'new session' log lines."""
    return {cid: int(n) for n, cid in re.findall(r"worker (\d+): new session (\S+),", d.log())}


class Call:
    """Two parties and a session on the relay; ``talk`` checks both ways."""

    def __init__(self, d, call_id):
        self.d, self.call_id = d, call_id
        self.caller, self.callee = Endpoint(), Endpoint()
        self.to_callee = int(d.command("U %s %s %d ft" % (call_id, HOST, self.caller.port)).split()[0])
        self.to_caller = int(d.command("L %s %s %d ft tt" % (call_id, HOST, self.callee.port)).split()[0])
        self.seq = 0

    def talk(self, count=3, timeout=1.0):
        """Both parties send ``count`` packets; True if every one arrived."""
        ok = True
        for _ in range(count):
            self.seq += 1
            packet = rtp_packet(self.seq, ssrc=0x1000)
            self.caller.send(packet, HOST, self.to_caller)
            ok = ok and self.callee.recv(timeout)[0] == packet
            back = rtp_packet(self.seq, ssrc=0x2000)
            self.callee.send(back, HOST, self.to_callee)
            ok = ok and self.caller.recv(timeout)[0] == back
        return ok

    def close(self):
        self.caller.close()
        self.callee.close()


def test_default_is_one_worker_per_core_and_one_process_with_workers_1(rtpproxy):
    single = rtpproxy("--workers", "1")
    assert children(single.proc.pid) == []
    assert "workers serving" not in single.log()
    several = rtpproxy("--workers", "3")
    assert len(children(several.proc.pid)) == 3
    default = rtpproxy()
    assert len(children(default.proc.pid)) == (len(os.sched_getaffinity(0)) if
                                                len(os.sched_getaffinity(0)) > 1 else 0)


def test_calls_spread_over_workers_and_figures_add_up(rtpproxy):
    d = rtpproxy("--workers", "2", "-l", HOST, ports=port_range(100))
    calls = [Call(d, "spread-%d" % n) for n in range(12)]
    try:
        for call in calls:
            assert call.talk(2)
        where = placement(d)
        assert set(where.values()) == {1, 2}, where
        for number, pid in worker_pids(d).items():      # what top and ps -o comm show
            with open("/proc/%d/comm" % pid) as f:
                assert f.read().strip() == "rtpproxy-w%d" % number
        # every packet counted once, by the worker that relayed it
        assert d.command("G nsess_created npkts_rcvd npkts_relayed") == "12 48 48"
        assert d.command("I").splitlines() == [
            "sessions created: 12", "active sessions: 12", "active streams: 24",
            "packets received: 48", "packets transmitted: 48"]
        # the load is the CPU of all three processes, in cores; not a G counter
        load = d.command("Il").splitlines()[-1]
        assert load.startswith("average load: ") and 0 <= float(load.split(": ")[1]) < 3
        # commands are counted once each: the G itself is in ncmds_rcvd already
        received = int(d.command("G ncmds_rcvd"))
        assert d.command("Gv ncmds_rcvd ncmds_succd") == "ncmds_rcvd=%d ncmds_succd=%d" % (
            received + 1, received)
        assert d.command("G _average_load").startswith("E")
        assert d.command("Q spread-3 ft tt") == "60 2 2 4 0"
        # X reaches every worker
        assert d.command("X") == "0"
        assert d.command("I").splitlines()[1:3] == ["active sessions: 0", "active streams: 0"]
        assert d.command("G nsess_destroyed") == "12"
        assert not calls[0].talk(1, timeout=0.2)
    finally:
        for call in calls:
            call.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_worked_examples_with_three_workers(rtpproxy, transport):
    """The spec's examples (sequential ports, counters, errors) are the same
    when their Call-IDs land on different workers."""
    d = rtpproxy("-b", "--workers", "3", control=transport)
    sent = 1
    for command, expected in worked_examples(d.ports[0]):
        if command == "" and transport == "unix":
            command = " "       # unix: an empty connection is closed silently
        assert d.command(command) == expected, command
        sent += 1
    assert d.command("Gv nsess_created ncmds_rcvd") == "nsess_created=1 ncmds_rcvd=%d" % (sent + 1)


def test_port_range_is_shared_by_the_workers(rtpproxy):
    """One pair in the range: whichever worker holds it, the others get E72."""
    lo, _ = port_range(8)
    d = rtpproxy("-b", "--workers", "2", ports=(lo, lo + 3))
    assert d.command("U one 127.0.0.1 4000 f") == str(lo)
    assert d.command("L one 127.0.0.1 4002 f t") == str(lo + 2)
    for n in range(6):      # Call-IDs on both workers
        assert d.command("U other%d 127.0.0.1 4000 f" % n) == "E72"
    assert d.command("L one 127.0.0.1 4002 f t") == str(lo + 2)
    assert d.command("D one f") == "0"
    assert d.command("U other0 127.0.0.1 4000 f") == str(lo)


def test_commands_of_one_call_run_in_order_while_pipelined(rtpproxy):
    """Many datagrams sent at once: each gets its reply, and a D sent right
    after its U finds the session (one worker runs a call's commands in order)."""
    d = rtpproxy("--workers", "2")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    replies = {}
    for first in range(0, 100, 5):      # bursts that fit the 16 KiB control socket buffer
        for n in range(first, first + 5):
            sock.sendto(b"u%d U pipe%d 127.0.0.1 4000 f" % (n, n), (HOST, d.ctl_port))
            sock.sendto(b"d%d D pipe%d f" % (n, n), (HOST, d.ctl_port))
        replies.update(sock.recv(100).split(b" ", 1) for _ in range(10))
    sock.close()
    assert all(replies[b"u%d" % n].rstrip().isdigit() for n in range(100))
    assert all(replies[b"d%d" % n] == b"0\n" for n in range(100))
    assert d.command("I").splitlines()[:2] == ["sessions created: 100", "active sessions: 0"]


def test_retransmission_during_the_command_gets_the_same_reply(rtpproxy):
    d = rtpproxy("--workers", "2")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    for _ in range(3):
        sock.sendto(b"same_cookie U again 127.0.0.1 4000 f", (HOST, d.ctl_port))
    replies = {sock.recv(100) for _ in range(3)}
    sock.close()
    assert len(replies) == 1 and replies.pop().split()[1].isdigit()
    assert d.command("G nsess_created ncmds_rcvd_ndups") == "1 2"


def test_notifications_go_to_each_commands_source_over_one_connection(rtpproxy):
    """tcp:%%CC_SELF%%: a session remembers the address its U came from (the
    front end passes it to the worker), and the front end keeps one
    connection per client address, as upstream does."""
    port = free_port(socket.SOCK_STREAM, host="127.0.0.5")
    clients = {}
    listeners = {}
    for ip in ("127.0.0.5", "127.0.0.6"):
        listeners[ip] = Listener(address=(ip, port))
        clients[ip] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        clients[ip].bind((ip, 0))
        clients[ip].settimeout(5)
    target = "tcp:%%CC_SELF%%:" + str(port)
    d = rtpproxy("--workers", "2", "-T", "1", "-n", target)
    try:
        expected = {ip: [] for ip in clients}
        for n in range(8):
            ip = ("127.0.0.5", "127.0.0.6")[n % 2]
            clients[ip].sendto(b"c%d U idle%d 127.0.0.1 4000 ft %s tag%d" % (n, n, target.encode(), n),
                               (HOST, d.ctl_port))
            assert clients[ip].recv(100).split()[1].isdigit()
            expected[ip].append(b"tag%d" % n)
        assert set(placement(d).values()) == {1, 2}
        for ip, listener in listeners.items():
            assert wait_for(lambda: len(listener.lines) == 4, timeout=10), listener.lines
            assert sorted(listener.lines) == expected[ip]
            assert listener.connections == 1
            assert listener.peers[0][0] == HOST       # from the control socket's address
        assert d.command("G nsess_timeout") == "8"
    finally:
        for ip in clients:
            clients[ip].close()
            listeners[ip].close()


def test_a_killed_worker_comes_back_and_the_other_calls_go_on(rtpproxy):
    lo, _ = port_range(80)
    d = rtpproxy("--workers", "2", "-l", HOST, ports=(lo, lo + 79))
    calls = [Call(d, "kill-%d" % n) for n in range(10)]
    try:
        for call in calls:
            assert call.talk(2)
        where = placement(d)
        victim, survivor = 1, 2
        lost = [c for c in calls if where[c.call_id] == victim]
        kept = [c for c in calls if where[c.call_id] == survivor]
        assert lost and kept, where
        pids = worker_pids(d)
        time.sleep(1.5)     # workers report their counters once a second
        os.kill(pids[victim], signal.SIGKILL)
        assert wait_for(lambda: worker_pids(d).get(victim) not in (None, pids[victim]), timeout=10), \
            d.log()
        new_pid = worker_pids(d)[victim]
        assert sorted(children(d.proc.pid)) == sorted([new_pid, pids[survivor]])
        assert "worker %d (pid %d) was killed by signal 9; starting it again" % (
            victim, pids[victim]) in d.log()
        # the survivor's calls are untouched: same ports, media flows, counters kept
        for call in kept:
            assert call.talk(2), call.call_id
            assert d.command("Q %s ft tt" % call.call_id) == "60 4 4 8 0"
        # the victim's calls are unknown now, as upstream would say
        for call in lost:
            assert not call.talk(1, timeout=0.2)
            assert d.command("Q %s ft tt" % call.call_id) == "E50"
            assert d.command("L %s %s %d ft tt" % (call.call_id, HOST, call.callee.port)) == "0"
            assert d.command("D %s ft tt" % call.call_id) == "E50"
        assert d.command("I").splitlines()[1] == "active sessions: %d" % len(kept)
        # counters do not go back: the dead worker's sessions count as created and destroyed
        assert d.command("G nsess_created") == "%d" % (len(calls))
        # its Call-IDs work again on the new worker
        again = Call(d, lost[0].call_id)
        try:
            assert again.talk(2)
        finally:
            again.close()
        assert d.command("G nsess_created") == "%d" % (len(calls) + 1)
    finally:
        for call in calls:
            call.close()
    # stopping still stops every worker
    assert d.stop() == 0
    assert wait_for(lambda: not any(os.path.exists("/proc/%d" % p) for p in
                                    list(worker_pids(d).values())), timeout=5)


def test_dead_worker_ports_are_free_again(rtpproxy):
    """The kernel closed the dead worker's sockets; the shared table lets
    the other workers have those ports."""
    lo, _ = port_range(8)
    d = rtpproxy("-b", "--workers", "2", ports=(lo, lo + 3))
    assert d.command("U hold 127.0.0.1 4000 f") == str(lo)
    assert d.command("L hold 127.0.0.1 4002 f t") == str(lo + 2)
    holder = placement(d)["hold"]
    pids = worker_pids(d)
    os.kill(pids[holder], signal.SIGKILL)
    assert wait_for(lambda: worker_pids(d).get(holder) != pids[holder], timeout=10), d.log()
    # both pairs again, whichever workers the calls land on
    assert d.command("U probe1 127.0.0.1 4000 f") == str(lo)
    assert d.command("U probe2 127.0.0.1 4000 f") == str(lo + 2)
    assert d.command("U probe3 127.0.0.1 4000 f") == "E72"


def test_sighup_with_workers_exits_when_every_worker_is_idle(rtpproxy):
    d = rtpproxy("--workers", "2")
    for n in range(6):
        assert d.command("U hup%d 127.0.0.1 4000 f" % n).isdigit()
    assert set(placement(d).values()) == {1, 2}
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "graceful shutdown: no new sessions" in d.log()), d.log()
    assert d.command("U late 127.0.0.1 4000 f") == "E99"
    for n in range(5):
        assert d.command("D hup%d f" % n) == "0"
    # the one session left keeps it serving
    assert d.command("I").splitlines()[1] == "active sessions: 1"
    assert not wait_for(lambda: not d.alive(), timeout=0.3)    # fails at once if it exits
    assert d.alive()
    assert d.command("D hup5 f") == "0"
    assert d.proc.wait(5) == 0


def test_bad_workers_value_is_one_sentence():
    import subprocess
    import sys
    from helpers import TOP
    out = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-f", "--workers", "many"],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=TOP))
    assert out.returncode == 1
    assert out.stderr == ("rtpproxy: --workers many: the number of worker processes must be a "
                          "whole number from 1 to 64.\n")


def test_each_worker_watches_its_own_open_files_limit(rtpproxy):
    """-L is a limit per process: a worker warns when the sessions it holds
    (not the daemon's total) near it."""
    from rtpproxy_py.workers import worker_for
    d = rtpproxy("-L", "32", "--workers", "2")
    first = [cid for cid in ("fd%d" % n for n in range(400)) if worker_for(cid, 2) == 0][:16]
    second = [cid for cid in ("fd%d" % n for n in range(400)) if worker_for(cid, 2) == 1][:5]
    for cid in second:
        assert d.command("U %s 127.0.0.1 4000 f" % cid).isdigit()
    held = 0
    for cid in first:
        if "open-files limit" in d.log():
            break
        assert d.command("U %s 127.0.0.1 4000 f" % cid).isdigit(), d.log()
        held += 1
    # worker 1 warned about what it holds, more than worker 2's 5 sessions
    # (the daemon's total would have crossed 80 % earlier); worker 2 did not
    assert held > len(second), d.log()
    assert re.search(r"worker 1: \d+ media sockets and \d+ other descriptors open: 80% of the "
                     r"open-files limit \(32\) is in use", d.log()), d.log()
    assert d.log().count("open-files limit") == 1
