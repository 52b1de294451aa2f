"""--workers: the front end's UDP path (transports.UdpControl._serve_concurrent,
FrontDispatcher.submit, WorkerLink.submit/flush, the worker's COMMANDS):
edge cases pinned with a real daemon on real sockets."""

import os
import re
import signal
import socket
import time

from helpers import wait_for
from rtpproxy_py.workers import worker_for

HOST = "127.0.0.1"


def worker_pids(d):
    """{worker number: pid} from the log lines the workers write at start."""
    return {int(n): int(pid) for n, pid in re.findall(r"worker (\d+): started, pid (\d+)", d.log())}


def same_worker(call_id, count, prefix):
    """``count`` Call-IDs that hash to the worker ``call_id`` hashes to (of two)."""
    out, k = [], 0
    while len(out) < count:
        k += 1
        if worker_for("%s%d" % (prefix, k), 2) == worker_for(call_id, 2):
            out.append("%s%d" % (prefix, k))
    return out


def stopped(pid):
    """True once ``pid`` is stopped (kill returns before it is)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def read_at_once(d, sock, datagrams):
    """Send ``datagrams`` while the front end is stopped, so that it reads
    them all in one go (one batch of _serve_concurrent)."""
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        assert wait_for(lambda: stopped(d.proc.pid), timeout=5, interval=0.001)
        for data in datagrams:
            sock.sendto(data, (HOST, d.ctl_port))
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)


def replies(sock, count, timeout=5.0):
    """{cookie: reply text} of ``count`` datagrams."""
    sock.settimeout(timeout)
    out = {}
    for _ in range(count):
        cookie, _, text = sock.recv(1000).partition(b" ")
        out[cookie.decode()] = text.decode().rstrip("\n")
    return out


def test_a_forking_u_and_the_next_command_of_its_call_run_in_order(rtpproxy):
    """``U c2 ... && C c1`` takes the slow way (its worker is the forked
    call's), the next command of c2, read with it, the quick one: the D must
    still reach the worker after the U (one call's commands in the order
    they came), so it finds the session and nothing is left behind."""
    d = rtpproxy("-l", HOST, "--workers", "2")
    assert d.command("U cid1 %s 4000 f1" % HOST).split()[0].isdigit()
    assert d.command("L cid1 %s 4002 f1 t1" % HOST).split()[0].isdigit()
    forks = same_worker("cid1", 5, "fork")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for k, call_id in enumerate(forks):
            read_at_once(d, sock, [
                b"u%d U %s %s 4004 f2 t2 && C cid1 f1 t1" % (k, call_id.encode(), HOST.encode()),
                b"d%d D %s f2" % (k, call_id.encode())])
            got = replies(sock, 2)
            assert got["u%d" % k].split()[0].isdigit(), got
            assert got["d%d" % k] == "0", got
        assert d.command("I").splitlines()[1] == "active sessions: 1"
    finally:
        sock.close()


def g_counters(d, names):
    return dict(zip(names.split(), (int(v) for v in d.command("G " + names).split())))


def inflight_is_free(d, stalled_pid, sock):
    """True if exactly the socket's MAX_INFLIGHT (64) places are free: with a
    worker stopped, 63 X wait for it (I and G no longer do: ASK_TIMEOUT), a V after them is still answered, and
    one more is shed (a place lost, or counted back twice, shows)."""
    from rtpproxy_py.control.transports import MAX_INFLIGHT

    def v(cookie):
        sock.sendto(cookie + b" V", (HOST, d.ctl_port))
        try:
            return sock.recv(100) == cookie + b" 20040107\n"
        except socket.timeout:
            return False

    sock.settimeout(2.0)
    os.kill(stalled_pid, signal.SIGSTOP)
    try:
        for k in range(MAX_INFLIGHT - 1):
            sock.sendto(b"free%d X" % k, (HOST, d.ctl_port))
            if k % 8 == 7:
                # answered once the X before it are read: within the socket buffer
                assert v(b"sync%d" % k)
        # read in one go: the first takes the last place, the second finds none
        read_at_once(d, sock, [b"freeV V", b"overV V"])
        try:
            answered = [sock.recv(100)]
            sock.settimeout(0.3)
            answered.append(sock.recv(100))
        except socket.timeout:
            pass
    finally:
        os.kill(stalled_pid, signal.SIGCONT)
    got = replies(sock, MAX_INFLIGHT - 1)
    return answered == [b"freeV 20040107\n"] and len(got) == MAX_INFLIGHT - 1


def test_a_worker_killed_with_a_batch_unanswered(rtpproxy):
    """SIGKILL to a worker that holds a COMMANDS message unanswered: each
    command runs again once on the new worker (or is shed there, past its
    deadline, counted), none is answered twice, none is lost; afterwards
    the socket's in-flight count is back to 0."""
    d = rtpproxy("--workers", "2")
    pids = wait_for(lambda: len(worker_pids(d)) == 2 and worker_pids(d))
    ones = same_worker("w1-", 1, "probe")[0]
    victim = pids[worker_for(ones, 2) + 1]
    survivor = pids[2 - worker_for(ones, 2)]
    call_ids = same_worker(ones, 12, "kill")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        created = g_counters(d, "nsess_created ncmds_shed")
        os.kill(victim, signal.SIGSTOP)
        read_at_once(d, sock, [b"k%d U %s %s 4000 f" % (k, c.encode(), HOST.encode())
                               for k, c in enumerate(call_ids)])
        # a retransmission of each, while they wait
        for k, c in enumerate(call_ids):
            sock.sendto(b"k%d U %s %s 4000 f" % (k, c.encode(), HOST.encode()), (HOST, d.ctl_port))
        time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: len(worker_pids(d)) == 2 and victim not in worker_pids(d).values(),
                        timeout=10), d.log()
        sock.settimeout(3.0)
        got = []
        try:
            while True:
                got.append(sock.recv(100))
        except socket.timeout:
            pass
        after = g_counters(d, "nsess_created ncmds_shed")
        cookies = [g.split()[0] for g in got]
        # each command: its reply twice (original + retransmission), or shed
        answered = set(cookies)
        assert all(cookies.count(c) == 2 for c in answered), got
        assert len(answered) + after["ncmds_shed"] - created["ncmds_shed"] == len(call_ids), (got, after)
        assert inflight_is_free(d, survivor, sock)
    finally:
        sock.close()


def test_sighup_then_the_last_deletes_in_one_batch_with_other_commands(rtpproxy):
    """Deorbiting: the D that ends a worker's last session comes in one
    batch with other commands: every one is answered before the daemon
    exits (cleanly), none twice."""
    d = rtpproxy("--workers", "2")
    call_ids = same_worker("hup", 3, "hup") + [c for c in ("x%d" % k for k in range(40))
                                                if worker_for(c, 2) != worker_for("hup", 2)][:3]
    for call_id in call_ids:
        assert d.command("U %s %s 4000 f" % (call_id, HOST)).split()[0].isdigit()
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "graceful shutdown: no new sessions" in d.log()), d.log()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        batch = []
        for k, call_id in enumerate(call_ids):
            batch.append(b"q%d Q %s f" % (k, call_id.encode()))
            batch.append(b"d%d D %s f" % (k, call_id.encode()))
            batch.append(b"n%d U new%d %s 4000 f" % (k, k, HOST.encode()))
        read_at_once(d, sock, batch)
        got = replies(sock, len(batch))
        assert all(got["d%d" % k] == "0" for k in range(len(call_ids))), got
        assert all(got["n%d" % k] == "E99" for k in range(len(call_ids))), got
        assert all(got["q%d" % k].startswith("60 ") for k in range(len(call_ids))), got
        assert d.proc.wait(5) == 0
        sock.settimeout(0.2)
        try:
            extra = sock.recv(100)
        except socket.timeout:
            extra = None
        assert extra is None, extra
    finally:
        sock.close()


def test_sigterm_with_udp_commands_in_flight(rtpproxy):
    """SIGTERM read with a batch of commands for both workers: the daemon
    exits cleanly (0, no traceback) and no command is answered twice."""
    d = rtpproxy("--workers", "2")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            for k in range(20):
                sock.sendto(b"t%d U term%d %s 4000 f" % (k, k, HOST.encode()), (HOST, d.ctl_port))
            os.kill(d.proc.pid, signal.SIGTERM)
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        assert d.proc.wait(10) == 0
        sock.settimeout(0.3)
        got = []
        try:
            while True:
                got.append(sock.recv(100).split()[0])
        except socket.timeout:
            pass
        assert len(got) == 20, got         # each answered (by its worker, before STOP)
        assert len(got) == len(set(got)), got
        assert "Traceback" not in d.log(), d.log()
    finally:
        sock.close()


def test_commands_for_a_worker_that_is_down_are_answered_by_the_front_end(rtpproxy):
    """A worker that dies again soon after its restart stays down for a
    while (RESTART_DELAYS): UDP commands for its calls, those it held
    unanswered and those that come meanwhile, are answered by the front end
    as for unknown sessions, each once; once it is back it serves them."""
    d = rtpproxy("--workers", "2")
    pids = wait_for(lambda: len(worker_pids(d)) == 2 and worker_pids(d))
    call_ids = same_worker("down", 6, "down")
    number = worker_for(call_ids[0], 2) + 1
    for call_id in call_ids:
        assert d.command("U %s %s 4000 f" % (call_id, HOST)).split()[0].isdigit()
    os.kill(pids[number], signal.SIGKILL)
    assert wait_for(lambda: worker_pids(d).get(number) not in (None, pids[number]), timeout=10)
    second = worker_pids(d)[number]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        os.kill(second, signal.SIGSTOP)
        read_at_once(d, sock, [b"h%d Q %s f" % (k, c.encode()) for k, c in enumerate(call_ids[:3])])
        time.sleep(0.05)
        os.kill(second, signal.SIGKILL)     # a quick second death: down for 0.5 s
        assert wait_for(lambda: "worker %d (pid %d) was killed by signal 9; starting it again in" % (
            number, second) in d.log(), timeout=5), d.log()
        read_at_once(d, sock, [b"m%d Q %s f" % (k, c.encode()) for k, c in enumerate(call_ids[3:])])
        got = replies(sock, 6)
        assert worker_pids(d)[number] == second         # answered before it is back
        assert got == {("h%d" if k < 3 else "m%d") % (k % 3): "E50" for k in range(6)}, got
        sock.settimeout(0.3)
        try:
            extra = sock.recv(100)
        except socket.timeout:
            extra = None
        assert extra is None, extra
        assert wait_for(lambda: worker_pids(d).get(number) not in (None, second), timeout=10)
        assert d.command("U %s %s 4000 f" % (call_ids[0], HOST)).split()[0].isdigit()
        assert inflight_is_free(d, pids[3 - number], sock)
    finally:
        sock.close()


def test_retransmissions_waiting_on_stalled_commands_run_once_the_worker_sheds_them(rtpproxy):
    """A worker stalls past the clients' retry time with four commands of
    one batch waiting; four more are shed by the front end's queue rule;
    retransmissions of all eight come meanwhile. Once the worker runs again
    it sheds the four stale ones, and the retransmissions waiting on them
    take their places: each of those four commands is answered (to each
    retransmission, the same bytes), though the commands ahead of it in the
    worker's queue are old (stale ones shed at once, not a worker behind).
    The others' retransmissions are shed (the worker is behind then).
    Afterwards all MAX_INFLIGHT places are free (a leak would shed every
    command of the socket for good)."""
    d = rtpproxy("--workers", "2")
    pids = wait_for(lambda: len(worker_pids(d)) == 2 and worker_pids(d))
    call_ids = same_worker("stall", 8, "stall")
    number = worker_for(call_ids[0], 2) + 1
    other = [c for c in ("ok%d" % k for k in range(40)) if worker_for(c, 2) != number - 1][:4]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        shed = int(d.command("G ncmds_shed"))
        commands = [b"s%d U %s %s 4000 f" % (k, c.encode(), HOST.encode()) for k, c in enumerate(call_ids)]
        os.kill(pids[number], signal.SIGSTOP)
        try:
            read_at_once(d, sock, commands[:4])        # these wait for the worker
            time.sleep(0.1)
            read_at_once(d, sock, commands[4:])        # shed: the queue is 100 ms behind
            time.sleep(1.1)
            read_at_once(d, sock, commands * 2)        # retransmissions, as the clients retry
            # the other worker serves meanwhile
            read_at_once(d, sock, [b"o%d U %s %s 4000 f" % (k, c.encode(), HOST.encode())
                                   for k, c in enumerate(other)])
            assert sorted(replies(sock, len(other), timeout=2.0)) == ["o%d" % k for k in range(len(other))]
        finally:
            os.kill(pids[number], signal.SIGCONT)
        got = replies_until_quiet(sock)
        assert sorted(got) == sorted(b"s%d" % k for k in range(4) for _ in range(2)), got
        assert all(len(set(texts)) == 1 and texts[0].split()[0].isdigit() for texts in got.values()), got
        assert int(d.command("G ncmds_shed")) - shed == 4 + 4 + 8
        assert d.command("G nsess_created") == "%d" % (4 + len(other))
        assert inflight_is_free(d, pids[3 - number], sock)
    finally:
        sock.close()


def replies_until_quiet(sock, quiet=1.0):
    """[cookie, ...] of the datagrams that come until none has for ``quiet``
    seconds, as {cookie: [reply, ...]} would lose the count: a list of
    cookies, one per datagram, with ``texts`` by cookie."""
    sock.settimeout(quiet)
    out = Replies()
    try:
        while True:
            cookie, _, text = sock.recv(1000).partition(b" ")
            out.add(cookie, text)
    except socket.timeout:
        pass
    return out


class Replies(list):
    """The cookies of the replies that came, one per datagram; ``values()``:
    the replies' texts by cookie."""

    def __init__(self):
        super().__init__()
        self.texts = {}

    def add(self, cookie, text):
        self.append(cookie)
        self.texts.setdefault(cookie, []).append(text)

    def values(self):
        return self.texts.values()


def test_g_and_i_read_after_commands_in_one_batch_count_them(rtpproxy):
    """G and I (the front end's, asking every worker) read in one batch
    after U commands for both workers: the U commands reach their workers
    first (sent before the loop's turn), so the figures count them all."""
    d = rtpproxy("--workers", "2")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for round_ in range(3):
            batch = [b"u%d_%d U gi%d_%d %s 4000 f" % (round_, k, round_, k, HOST.encode()) for k in range(6)]
            read_at_once(d, sock, batch + [b"g%d G nsess_created" % round_, b"i%d I" % round_])
            got = replies(sock, len(batch) + 2)
            assert got["g%d" % round_] == "%d" % (6 * (round_ + 1)), got
            assert got["i%d" % round_].splitlines()[:2] == [
                "sessions created: %d" % (6 * (round_ + 1)), "active sessions: %d" % (6 * (round_ + 1))], got
        from rtpproxy_py.workers import worker_for as hashed
        assert {hashed("gi0_%d" % k, 2) for k in range(6)} == {0, 1}
    finally:
        sock.close()


def placement(d):
    """{Call-ID: worker number} from the workers' 'new session' log lines."""
    return {cid: int(n) for n, cid in re.findall(r"worker (\d+): new session (\S+),", d.log())}


def test_new_calls_read_at_once_for_a_full_worker_are_placed_on_another(rtpproxy):
    """-L is per process: U commands read in one batch for a worker that is
    full each get E72 from it and are placed on the other worker (each in
    a greenlet of its own, side by side); a retransmission read with them
    gets the same reply; later commands of those calls find them."""
    d = rtpproxy("-L", "32", "--workers", "2", "-d", "INFO")
    full = same_worker("fill", 60, "fill")
    number = worker_for(full[0], 2) + 1
    for call_id in full:        # until the worker is full: the next goes to the other one
        assert d.command("U %s %s 4000 f" % (call_id, HOST)).split()[0].isdigit()
        if wait_for(lambda: call_id in placement(d), timeout=2) and placement(d)[call_id] != number:
            break
    else:
        raise AssertionError("worker %d never full" % number)
    new = same_worker(full[0], 5, "late")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        batch = [b"p%d U %s %s 4000 f" % (k, c.encode(), HOST.encode()) for k, c in enumerate(new)]
        read_at_once(d, sock, batch + batch[:2])
        got = replies_until_quiet(sock, quiet=0.5)
        assert sorted(got) == sorted([b"p%d" % k for k in range(5)] + [b"p0", b"p1"]), got
        assert all(len(set(texts)) == 1 and texts[0].split()[0].isdigit() for texts in got.values()), got
        where = placement(d)
        assert all(where[c] == 3 - number for c in new), where
        for call_id in new:
            assert d.command("Q %s f" % call_id).startswith("60 "), call_id
        assert d.command("G ncmds_rcvd_ndups") == "2"
    finally:
        sock.close()


def test_a_stream_connection_s_replies_stay_in_order_beside_udp_batches(rtpproxy):
    """A tcp: client pipelines commands for both workers while UDP batches
    go to the same workers: its replies come in the order of its commands
    (one stream connection is served a command at a time)."""
    from helpers import free_port, port_range
    uport = free_port()
    d = rtpproxy("--workers", "2", "-s", "udp:127.0.0.1:%d" % uport, control="tcp", ports=port_range(100))
    stream = socket.create_connection((HOST, d.ctl_port), timeout=5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        lines = []
        for k in range(12):
            lines.append(b"U st%d %s 4000 f\nQ st%d f\n" % (k, HOST.encode(), k))
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            stream.sendall(b"".join(lines))
            for k in range(24):
                sock.sendto(b"x%d U ud%d %s 4000 f" % (k, k, HOST.encode()), (HOST, uport))
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        data = b""
        while data.count(b"\n") < 24:
            chunk = stream.recv(4096)
            assert chunk, data
            data += chunk
        got = data.decode().splitlines()
        assert all(got[2 * k].split()[0].isdigit() and got[2 * k + 1].startswith("60 ") for k in range(12)), got
        assert len(replies(sock, 24)) == 24
        assert {worker_for("st%d" % k, 2) for k in range(12)} == {0, 1}
    finally:
        stream.close()
        sock.close()


def test_in_flight_places_are_all_free_after_a_flood(rtpproxy):
    """A flood past MAX_INFLIGHT (shed by the socket's bound, by the queue
    rule, dropped by the kernel), many datagrams retransmissions of others:
    once it is over every place is free again and commands are served."""
    d = rtpproxy("--workers", "2", "-d", "ERR")
    with open("/proc/%d/task/%d/children" % (d.proc.pid, d.proc.pid)) as f:
        worker = int(f.read().split()[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for k in range(3000):
            n = k % 700          # most cookies come more than once
            sock.sendto(b"f%d %s fl%d %s 4000 f" % (n, b"UD"[n % 2:n % 2 + 1], n // 2, HOST.encode()),
                        (HOST, d.ctl_port))
        replies_until_quiet(sock, quiet=0.5)
        assert int(d.command("G ncmds_shed")) > 0       # it was a flood
        assert inflight_is_free(d, worker, sock)
        assert d.command("Q nosuch f") == "E50"          # a worker serves it
    finally:
        sock.close()
