"""Control under overload (issue 18, points 3-5), scaled down to run in
seconds; bench/control_load.sh runs them at full size.

* G and I read running totals: their cost does not grow with the sessions.
* (The UDP command flood beside cunix: and unix: clients is in
  tests/test_overload_flood.py, in a network namespace.)
* A burst of G beside relaying calls costs the media nothing, and every G is
  answered or counted as shed.
* With --workers and -L, a new session fails only when the whole daemon is full.
"""

import os
import select
import socket
import statistics
import tempfile
import threading
import time

from helpers import Daemon, Endpoint, rtp_packet, wait_for

HOST = "127.0.0.1"


def udp_batch(port, commands, window=32, timeout=5.0):
    """Send ``commands`` over UDP with at most ``window`` unanswered; their
    replies (without cookies) in order. Retransmits once after 1 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    replies = [None] * len(commands)
    sent_at = {}
    nxt = 0
    deadline = time.time() + timeout + len(commands) / 500.0
    try:
        while (nxt < len(commands) or sent_at) and time.time() < deadline:
            while nxt < len(commands) and len(sent_at) < window:
                sock.sendto(b"b%d %s" % (nxt, commands[nxt].encode()), (HOST, port))
                sent_at[nxt] = time.time()
                nxt += 1
            if select.select([sock], [], [], 0.2)[0]:
                data = sock.recv(65535)
                cookie, _, text = data.partition(b" ")
                k = int(cookie[1:])
                if sent_at.pop(k, None) is not None:
                    replies[k] = text.decode().rstrip("\n")
            now = time.time()
            for k, at in list(sent_at.items()):
                if now - at > 1.0:
                    sock.sendto(b"b%d %s" % (k, commands[k].encode()), (HOST, port))
                    sent_at[k] = now
    finally:
        sock.close()
    return replies


def make_sessions(d, count, prefix="idle"):
    replies = udp_batch(d.ctl_port, ["U %s%d %s %d ft" % (prefix, k, HOST, 4000 + k % 1000)
                                     for k in range(count)])
    assert all(r is not None and r[0].isdigit() for r in replies), replies[:5]


def round_trip(d, text):
    start = time.perf_counter()
    d.command(text)
    return time.perf_counter() - start


def test_g_costs_the_same_at_any_session_count():
    d = Daemon("--workers", "1", "-d", "ERR", ports=(20000, 29999))
    try:
        make_sessions(d, 3000)
        assert d.command("I").count("active sessions: 3000") == 1
        # G beside V (which reads no counter), pair by pair so the machine's
        # load cancels out: summing 3000 sessions' streams cost ~7-11 ms here.
        extra = [round_trip(d, "G npkts_rcvd npkts_relayed nsess_created") - round_trip(d, "V")
                 for _ in range(100)]
        assert statistics.median(extra) < 0.0015, sorted(extra)[::10]
    finally:
        d.stop()


class MediaCall:
    """A call with both parties sending 50 packets/s; counts what arrives."""

    def __init__(self, d, k):
        self.caller, self.callee = Endpoint(), Endpoint()
        call_id = "media%d" % k
        self.to_callee = int(d.command("U %s %s %d ft" % (call_id, HOST, self.caller.port)).split()[0])
        self.to_caller = int(d.command("L %s %s %d ft tt" % (call_id, HOST, self.callee.port)).split()[0])
        self.sent = self.received = 0
        self.seq = 0

    def send(self):
        self.seq += 1
        self.caller.send(rtp_packet(self.seq, ssrc=1), HOST, self.to_caller)
        self.callee.send(rtp_packet(self.seq, ssrc=2), HOST, self.to_callee)
        self.sent += 2

    def sockets(self):
        return [self.caller.sock, self.callee.sock]


def run_media(calls, seconds, stop):
    socks = [s for call in calls for s in call.sockets()]
    owner = {s: call for call in calls for s in call.sockets()}
    start = time.time()
    tick = 0
    while time.time() - start < seconds:
        due = start + tick * 0.02
        while time.time() >= due:
            for call in calls:
                call.send()
            tick += 1
            due = start + tick * 0.02
        for s in select.select(socks, [], [], max(0.0, due - time.time()))[0]:
            s.recv(2048)
            owner[s].received += 1
    end = time.time() + 1.0
    while time.time() < end and sum(c.received for c in calls) < sum(c.sent for c in calls):
        for s in select.select(socks, [], [], 0.1)[0]:
            s.recv(2048)
            owner[s].received += 1
    stop.set()


def g_burst(port, rate, seconds, replies):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sent = 0
    start = time.time()
    while time.time() - start < seconds:
        while sent < (time.time() - start) * rate:
            sock.sendto(b"g%d G npkts_rcvd nsess_created" % sent, (HOST, port))
            sent += 1
        time.sleep(0.002)
    end = time.time() + 2.0
    got = set()
    while time.time() < end and len(got) < sent:
        if select.select([sock], [], [], 0.1)[0]:
            got.add(sock.recv(200).split()[0])
    sock.close()
    replies["sent"], replies["answered"] = sent, len(got)


def test_g_burst_costs_media_nothing():
    d = Daemon("--workers", "2", "-d", "ERR", ports=(20000, 39999))
    try:
        make_sessions(d, 5000)
        calls = [MediaCall(d, k) for k in range(4)]
        shed_before = int(d.command("G ncmds_shed"))
        stop = threading.Event()
        media = threading.Thread(target=run_media, args=(calls, 4.0, stop))
        media.start()
        time.sleep(0.5)
        burst = {}
        g_burst(d.ctl_port, 500, 2.0, burst)
        media.join()
        sent = sum(c.sent for c in calls)
        lost = sent - sum(c.received for c in calls)
        assert lost <= sent * 0.005, (lost, sent)
        shed = int(d.command("G ncmds_shed")) - shed_before
        assert burst["answered"] + shed == burst["sent"], (burst, shed)
    finally:
        d.stop()


def call_ids_of_worker(worker, count, prefix):
    """Call-IDs the front end hashes to ``worker`` (0-based) of two."""
    from rtpproxy_py.workers import worker_for
    out, k = [], 0
    while len(out) < count:
        k += 1
        if worker_for("%s%d" % (prefix, k), 2) == worker:
            out.append("%s%d" % (prefix, k))
    return out


def test_open_files_limit_is_the_daemons_not_a_workers():
    d = Daemon("--workers", "2", "-L", "64", "-d", "ERR", ports=(20000, 29999))
    try:
        # Every call hashes to the first worker: it fills up, then the second takes them.
        created = []
        for call_id in call_ids_of_worker(0, 200, "one"):
            if d.command("U %s %s 4000 ft" % (call_id, HOST)) == "E72":
                break
            created.append(call_id)
        assert len(created) > 40, len(created)     # about twice what one worker holds (28)
        # Full now: no Call-ID finds room, whichever worker it hashes to.
        for worker in (0, 1):
            for call_id in call_ids_of_worker(worker, 4, "more%d_" % worker):
                assert d.command("U %s %s 4000 ft" % (call_id, HOST)) == "E72"
        for call_id in created[:3] + created[-3:]:
            assert d.command("D %s ft" % call_id) == "0"
        # Six freed (three on each worker): six new calls, each on its first try,
        # and their later commands find them on whichever worker took them.
        for call_id in call_ids_of_worker(0, 6, "again"):
            assert d.command("U %s %s 4000 ft" % (call_id, HOST))[0].isdigit(), call_id
            assert d.command("Q %s ft" % call_id)[0].isdigit(), call_id
    finally:
        d.stop()


def test_a_command_the_client_has_given_up_on_is_shed_not_answered():
    """A worker stalls for longer than a client's retry time: the UDP commands
    queued for it meanwhile are dropped and counted, not answered late; a
    stream client's command waits and is answered."""
    import re
    import signal
    where = tempfile.mkdtemp(prefix="rtpp-shed-")
    cunix = os.path.join(where, "c.sock")
    from helpers import free_port
    from test_metrics import scrape
    mport = free_port(socket.SOCK_STREAM)
    d = Daemon("--workers", "2", "-s", "cunix:" + cunix, "--metrics", "%s:%d" % (HOST, mport))
    try:
        pids = wait_for(lambda: len(set(re.findall(r"worker (\d+): started, pid (\d+)", d.log()))) == 2
                        and dict(re.findall(r"worker (\d+): started, pid (\d+)", d.log())))
        stalled = int(pids["1"])
        queued = call_ids_of_worker(0, 10, "late")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stream.connect(cunix)
        os.kill(stalled, signal.SIGSTOP)
        try:
            for k, call_id in enumerate(queued):
                sock.sendto(b"late%d Q %s ft" % (k, call_id.encode()), (HOST, d.ctl_port))
            stream.sendall(b"Q %s ft\n" % queued[0].encode())
            time.sleep(1.3)          # past the 1 s a client waits before it retries
        finally:
            os.kill(stalled, signal.SIGCONT)
        stream.settimeout(5.0)
        assert stream.recv(100) == b"E50\n"
        sock.settimeout(0.5)
        try:
            late = sock.recv(100)
        except socket.timeout:
            late = None
        assert late is None, late
        assert d.command("G ncmds_shed") == "10"
        assert scrape(mport)["rtpproxy_commands_shed_total"] == 10
        # said once per interval, not once per command
        assert d.log().count("control commands shed unanswered") == 1
        assert d.command("Q %s ft" % queued[0]) == "E50"      # the worker serves again
        sock.close()
        stream.close()
    finally:
        d.stop()


def test_a_retransmission_waiting_on_a_command_the_worker_sheds_gets_one_reply():
    """The front end starts a UDP command and reads on: a retransmission that
    comes while it runs waits for its reply. Here the worker stalls past the
    client's retry time, so it sheds the first (counted once); the
    retransmission then runs and gets the one reply."""
    import re
    import signal
    d = Daemon("--workers", "2")
    try:
        pids = wait_for(lambda: len(set(re.findall(r"worker (\d+): started, pid (\d+)", d.log()))) == 2
                        and dict(re.findall(r"worker (\d+): started, pid (\d+)", d.log())))
        stalled = int(pids["1"])
        command = b"again1 U %s %s 4000 ft" % (call_ids_of_worker(0, 1, "again")[0].encode(), HOST.encode())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2.0)
        shed_before = int(d.command("G ncmds_shed"))
        os.kill(stalled, signal.SIGSTOP)
        try:
            sock.sendto(command, (HOST, d.ctl_port))
            time.sleep(1.2)          # past the 1 s a client waits before it retries
            sock.sendto(command, (HOST, d.ctl_port))
            # V is the front end's own: once it is answered, the retransmission
            # before it has been read (and waits for the first)
            sock.sendto(b"againV V", (HOST, d.ctl_port))
            assert sock.recv(100) == b"againV 20040107\n"
        finally:
            os.kill(stalled, signal.SIGCONT)
        cookie, port = sock.recv(100).split()
        assert cookie == b"again1" and port.isdigit()
        sock.settimeout(0.3)
        try:
            late = sock.recv(100)
        except socket.timeout:
            late = None
        assert late is None, late
        assert int(d.command("G ncmds_shed")) - shed_before == 1
        assert d.command("G nsess_created ncmds_rcvd_ndups") == "1 0"
        sock.close()
    finally:
        d.stop()


def test_a_worker_whose_queue_is_behind_gets_no_more_udp_commands():
    """The queue bound in time: once the command a worker has longest been
    given has waited 30 ms, new UDP commands for that worker are shed by the
    front end at once, while the ones it already has are answered."""
    import re
    import signal
    d = Daemon("--workers", "2")
    try:
        pids = wait_for(lambda: len(set(re.findall(r"worker (\d+): started, pid (\d+)", d.log()))) == 2
                        and dict(re.findall(r"worker (\d+): started, pid (\d+)", d.log())))
        stalled = int(pids["1"])
        call_ids = call_ids_of_worker(0, 6, "behind")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        shed_before = int(d.command("G ncmds_shed"))
        os.kill(stalled, signal.SIGSTOP)
        try:
            sock.sendto(b"behind0 Q %s ft" % call_ids[0].encode(), (HOST, d.ctl_port))
            time.sleep(0.1)         # the worker is now 100 ms behind
            for k, call_id in enumerate(call_ids[1:], 1):
                sock.sendto(b"behind%d Q %s ft" % (k, call_id.encode()), (HOST, d.ctl_port))
            # V is the front end's own: once it is answered, the five before
            # it have met the bound (handled in the order they came)
            sock.sendto(b"behindV V", (HOST, d.ctl_port))
            sock.settimeout(2.0)
            assert sock.recv(100) == b"behindV 20040107\n"
            assert "or one for 30 ms" in d.log(), d.log()
        finally:
            os.kill(stalled, signal.SIGCONT)
        assert sock.recv(100) == b"behind0 E50\n"     # queued before: answered
        sock.settimeout(0.3)
        try:
            late = sock.recv(100)
        except socket.timeout:
            late = None
        assert late is None, late
        assert int(d.command("G ncmds_shed")) - shed_before == 5
        sock.close()
    finally:
        d.stop()
