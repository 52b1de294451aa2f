#!/usr/bin/env python3
"""Session churn: create and end SESSIONS sessions in a loop and check that the
daemon's resident memory, open file descriptors and greenlets come back to
where they were (tests/test_churn.py runs a small version).

    bench/churn.py [SESSIONS]          (default 100000; needs root)
    bench/churn.py --udp [SESSIONS] [WORKERS]   (default 300000, the default workers)

``--udp`` measures what the UDP control socket's reply cache leaves behind
(issue 18.6): the production daemon (``--workers`` as given), U, L and D of
every session over UDP with a cookie each, a window of commands in flight;
the resident memory of the daemon and its workers (VmRSS from /proc, summed,
and each process's VmRSS, anonymous and file parts and PSS) at start (once
every worker serves), after a warm-up once the cache window (35 s) has
passed, at the end of the churn, and once the cache window has passed again.

The daemon is ``rtpproxy_debug`` (the production code plus a line every
second saying what the process holds; its profiler off) in a network
namespace of its own, with ``-T 1``, controlled over a ``cunix:`` socket (no UDP reply cache, whose 35 s
of replies would hide what sessions leave behind). Sessions come in batches;
of every four, one is a call with media both ways then deleted, one a call
without media then deleted, one a call left to time out, and one an offer
without answer left to time out (setup TTL). After a warm-up (a fifth of
SESSIONS) the baseline is taken once every session has ended, so that it
includes what the allocator keeps after the peak; the same figures are taken
again, with every session ended, after each quarter of the run.
"""

import os
import re
import resource
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests"))

from helpers import Daemon, rtp_packet, wait_for  # noqa: E402
from netns import Netns  # noqa: E402

PORT_MIN, PORT_MAX = 20000, 60000
TTL = 1
BATCH = 200
NOFILE = 200000
_HOLDING = re.compile(r"holding sessions (\d+), greenlets (\d+), fds (\d+), rss (\d+) kB")


class Control:
    """A cunix: connection; commands are pipelined a batch at a time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(30)
        self.pending = b""

    def batch(self, commands):
        self.sock.sendall(b"".join(c.encode() + b"\n" for c in commands))
        replies = []
        while len(replies) < len(commands):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("control connection closed")
            self.pending += chunk
            *lines, self.pending = self.pending.split(b"\n")
            replies.extend(line.decode() for line in lines)
        return replies

    def close(self):
        self.sock.close()


class Resources:
    """The daemon's "holding ..." lines, read as the daemon writes them."""

    def __init__(self, daemon):
        self.path = daemon.stderr_path
        self.offset = 0
        self.partial = b""
        self.peak = None

    def read(self):
        """The lines written since the last call, as dicts; keeps the peak."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        states = []
        for line in lines:
            found = _HOLDING.search(line.decode("utf-8", "replace"))
            if found:
                sessions, greenlets, fds, rss = map(int, found.groups())
                states.append({"sessions": sessions, "greenlets": greenlets, "fds": fds, "rss_kb": rss})
        for state in states:
            self.peak = state if self.peak is None else {k: max(self.peak[k], state[k]) for k in state}
        return states

    def wait_empty(self, timeout=30.0):
        """Wait for a line written from now on that shows no session."""
        self.read()
        deadline = time.time() + timeout
        while time.time() < deadline:
            for state in self.read():
                if state["sessions"] == 0:
                    return state
            time.sleep(0.2)
        raise AssertionError("sessions still live after %d s (peak %s)" % (timeout, self.peak))


def run_batch(ctl, first, count, caller, callee):
    """Sessions first..first+count-1, in the four kinds the docstring lists."""
    ids = range(first, first + count)
    ctl.batch(["U c%d 127.0.0.1 %d ft" % (i, caller.getsockname()[1]) for i in ids])
    answered = [i for i in ids if i % 4 != 3]
    replies = ctl.batch(["L c%d 127.0.0.1 %d ft tt" % (i, callee.getsockname()[1]) for i in answered])
    assert all(r.split()[0].isdigit() for r in replies), [r for r in replies if not r[0].isdigit()][:3]
    media = [(i, int(r.split()[0])) for i, r in zip(answered, replies) if i % 4 == 0]
    u_ports = ctl.batch(["Q c%d ft tt" % i for i, _ in media])          # keeps the order simple
    assert all(not q.startswith("E") for q in u_ports)
    for i, to_caller in media:
        for seq in range(2):
            caller.sendto(rtp_packet(seq, ssrc=i), ("127.0.0.1", to_caller))
    got = 0
    callee.settimeout(2)
    while got < 2 * len(media):
        callee.recv(2048)
        got += 1
    ctl.batch(["D c%d ft tt" % i for i in ids if i % 4 in (0, 1)])


def churn(daemon, ns, sessions, batch=BATCH, warmup=None, checkpoints=4, report=print):
    """Run ``warmup`` sessions (default a fifth of ``sessions``), wait until
    all have ended and take the baseline; then ``sessions`` more, stopping
    ``checkpoints`` times to let every session end and measure again.
    Returns (baseline, [state at each checkpoint], peak, seconds)."""
    warmup = warmup or max(batch, sessions // 5)
    resources = Resources(daemon)
    ctl = Control(daemon.ctl_path)
    with ns.inside():
        caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        caller.bind(("127.0.0.1", 0))
        callee.bind(("127.0.0.1", 0))
    try:
        next_id = 0
        while next_id < warmup:
            run_batch(ctl, next_id, batch, caller, callee)
            next_id += batch
        baseline = resources.wait_empty()
        report("baseline after %d warm-up sessions: %s" % (next_id, baseline))
        resources.peak = dict(baseline)
        states = []
        seconds = 0.0
        done = 0
        for checkpoint in range(1, checkpoints + 1):
            target = sessions * checkpoint // checkpoints
            start = time.time()
            while done < target:
                n = min(batch, target - done)
                run_batch(ctl, next_id, n, caller, callee)
                next_id += n
                done += n
                resources.read()
            seconds += time.time() - start
            states.append(resources.wait_empty())
            report("after %d sessions (%.1f s of churn): %s" % (done, seconds, states[-1]))
        report("peak: %s" % resources.peak)
        return baseline, states, resources.peak, seconds
    finally:
        ctl.close()
        caller.close()
        callee.close()


def nofile_limit():
    """NOFILE, or the hard limit where this process may not raise it (no
    CAP_SYS_RESOURCE, as in many containers): -L refuses to start beyond what
    setrlimit grants, as upstream does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= NOFILE:
        return NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, NOFILE))
        return NOFILE
    except (ValueError, OSError):
        return hard


def start_daemon(ns, port_min=PORT_MIN, port_max=PORT_MAX):
    debug = os.path.join(os.path.dirname(sys.executable), "rtpproxy_debug")
    return Daemon("-l", "127.0.0.1", "-T", str(TTL), "-L", str(nofile_limit()), control="cunix",
                  ports=(port_min, port_max), env={"RTPP_LOOP_HEALTH": "1", "RTPP_PROFILE": "off"},
                  command=ns.exec_argv([debug]))


class UdpControl:
    """Commands over UDP with cookies, WINDOW in flight, retransmitted (same
    cookie: the reply cache answers) when no reply came within RETRY."""

    WINDOW = 16
    RETRY = 0.5

    def __init__(self, sock, target):
        self.sock = sock
        self.target = target
        self.cookie = 0
        self.retransmitted = 0
        sock.settimeout(self.RETRY)

    def batch(self, commands):
        replies = {}
        queue = list(enumerate(commands))
        pending = {}                            # cookie -> (index, datagram, sent at)
        while queue or pending:
            while queue and len(pending) < self.WINDOW:
                index, text = queue.pop(0)
                self.cookie += 1
                cookie = b"%d_%d" % (os.getpid(), self.cookie)
                data = cookie + b" " + text.encode()
                pending[cookie] = (index, data, time.monotonic())
                self.sock.sendto(data, self.target)
            try:
                reply = self.sock.recv(65536)
            except socket.timeout:
                reply = None
            if reply is not None:
                cookie, _, text = reply.partition(b" ")
                entry = pending.pop(cookie, None)
                if entry is not None:
                    replies[entry[0]] = text.decode().rstrip("\n")
            now = time.monotonic()
            for cookie, (index, data, sent) in list(pending.items()):
                if now - sent > self.RETRY:
                    self.sock.sendto(data, self.target)
                    pending[cookie] = (index, data, now)
                    self.retransmitted += 1
        return [replies[i] for i in range(len(commands))]


def process_memory_kb(pid):
    """VmRSS of ``pid`` and its parts (kB): anonymous memory, file pages
    (shared library code, counted in every process that maps it, though in
    memory once) and the proportional share (PSS: each shared page divided
    among the processes that map it)."""
    with open("/proc/%d/status" % pid) as f:
        status = {line.split(":")[0]: line.split()[1] for line in f if line.endswith("kB\n")}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        rollup = {line.split(":")[0]: int(line.split()[1]) for line in f if line.endswith("kB\n")}
    return {"rss": int(status["VmRSS"]), "anon": int(status["RssAnon"]),
            "file": int(status["RssFile"]), "pss": rollup.get("Pss", 0)}


def tree_memory(daemon):
    """The daemon's processes (the front end first, then its workers): their
    memory figures, and the VmRSS summed."""
    parts = []
    for pid in daemon.pids():
        try:
            parts.append(process_memory_kb(pid))
        except (OSError, KeyError):
            pass
    return sum(part["rss"] for part in parts), parts


def tree_rss_kb(daemon):
    """VmRSS of the daemon and its workers, summed."""
    return tree_memory(daemon)[0]


def describe(parts):
    return " | ".join("%s rss %d (anon %d, file %d), pss %d" % (
        "front end" if k == 0 else "worker %d" % k, p["rss"], p["anon"], p["file"], p["pss"])
        for k, p in enumerate(parts))


def udp_churn(sessions, workers=None, warmup=2000, batch=BATCH, report=print):
    """U, L, D of ``sessions`` sessions over UDP; RSS at each point (kB)."""
    from rtpproxy_py.control.reply_cache import LIFETIME, SWEEP_INTERVAL
    window = LIFETIME + 2 * SWEEP_INTERVAL + 1
    args = ["-l", "127.0.0.1", "-s", "udp:127.0.0.1:22222"]
    if workers is not None:
        args += ["--workers", str(workers)]
    points = {}
    with Netns("udpchurn") as ns:
        daemon = Daemon(*args, control="cunix", ports=(PORT_MIN, PORT_MAX),
                        command=ns.exec_argv([sys.executable, "-m", "rtpproxy_py"]))
        try:
            with ns.inside():
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ctl = UdpControl(sock, ("127.0.0.1", 22222))
            detail = {}

            def measure(name):
                points[name], detail[name] = tree_memory(daemon)
                report("    %s" % describe(detail[name]))
                return points[name]

            # The front end answers V before its workers have built their
            # relay and event loop (about 4 MB each): the start is once they
            # all serve.
            if len(daemon.pids()) > 1:
                wait_for(lambda: " workers serving, pids " in daemon.log(), timeout=15)
            measure("start")
            report("start: %d kB (%d processes)" % (points["start"], len(daemon.pids())))

            def run(first, count):
                done = 0
                while done < count:
                    n = min(batch, count - done)
                    ids = range(first + done, first + done + n)
                    replies = ctl.batch(["U c%d 127.0.0.1 4000 ft" % i for i in ids])
                    replies += ctl.batch(["L c%d 127.0.0.1 4002 ft tt" % i for i in ids])
                    assert all(r.split()[0].isdigit() for r in replies), replies[:3]
                    assert set(ctl.batch(["D c%d ft tt" % i for i in ids])) == {"0"}
                    done += n
            run(0, warmup)
            time.sleep(window)
            measure("baseline")
            report("after %d warm-up sessions and %d s: %d kB" % (warmup, window, points["baseline"]))
            start = time.time()
            step = max(batch, sessions // 6 // batch * batch)
            done = 0
            while done < sessions:
                n = min(step, sessions - done)
                run(warmup + done, n)
                done += n
                report("  %d sessions (%.0f/s): %d kB" % (
                    done, done / (time.time() - start), tree_rss_kb(daemon)))
            seconds = time.time() - start
            measure("end")
            time.sleep(window)
            measure("after_window")
            report("%d sessions in %.1f s (%.0f/s, %d retransmissions); at the end %d kB; "
                   "%d s later %d kB" % (sessions, seconds, sessions / seconds, ctl.retransmitted,
                                         points["end"], window, points["after_window"]))
            sock.close()
        finally:
            code = daemon.stop()
        report("exit %s" % code)
    points["processes"] = detail
    return points


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--udp":
        sessions = int(sys.argv[2]) if len(sys.argv) > 2 else 300000
        workers = int(sys.argv[3]) if len(sys.argv) > 3 else None
        points = udp_churn(sessions, workers)
        print("RSS kB: start %(start)d, baseline %(baseline)d, end %(end)d, "
              "after the cache window %(after_window)d" % points)
        for name in ("start", "after_window"):
            print("  %s: %s" % (name, describe(points["processes"][name])))
        return
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    with Netns("churn") as ns:
        daemon = start_daemon(ns)
        try:
            baseline, states, peak, seconds = churn(daemon, ns, sessions)
        finally:
            code = daemon.stop()
        report = [line for line in daemon.log().splitlines() if "leak report" in line]

        def row(name, state):
            print("%-22s rss %6d kB  fds %5d  greenlets %5d" % (
                name, state["rss_kb"], state["fds"], state["greenlets"]))
        print("sessions: %d in %.1f s of churn (%.0f/s), at most %d at once" % (
            sessions, seconds, sessions / seconds, peak["sessions"]))
        row("baseline", baseline)
        for n, state in enumerate(states, 1):
            row("after %d" % (sessions * n // len(states)), state)
        row("peak (sessions live)", peak)
        print("exit %s; %s" % (code, report[-1].split(": ", 1)[-1] if report else "no leak report"))


if __name__ == "__main__":
    main()
