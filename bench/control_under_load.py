#!/usr/bin/env python3
"""Call set-up under load (issue 16): U+L+D cycles/s, U latency idle and while
1000 sessions relay, with --workers 1 and with the default workers, and U
pipelined on one cunix: stream connection. Root (private network namespace);
uses the tools ../shared/bench/sidebyside.py builds into /tmp/sbs.

    bench/control_under_load.py [--rounds R] NAME="RELAY COMMAND" ...

For each relay and round (fresh relay process per measure, relay on CPU 1,
clients on CPU 0; RELAY_CPUS=0,1 gives the relay both, for the default
workers): ``cycle`` (ctlbench -m cycle -n 20000 -W 32), ``lat``
(ctlbench -m lat, 300 U at 100/s), ``lat1k`` (the same while rtpbench relays
1000 sessions), ``pipe`` (3,000 U written at once on one cunix: connection,
replies read as they come: U/s) and ``pipe1k`` (the same while 1000 sessions
relay). Prints JSON lines and a median table.
"""

import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

B = "/tmp/sbs"
# The relay's CPUs. Default workers are one per CPU the relay may use, so
# RELAY_CPUS=0,1 is what measures them (the clients stay on CPU 0).
RELAY_CPUS = os.environ.get("RELAY_CPUS", "1")
CTL = "127.0.0.1:22222"
PIPELINED = 3000


def main():
    args = sys.argv[1:]
    rounds = 3
    if args[:1] == ["--rounds"]:
        rounds = int(args[1])
        args = args[2:]
    relays = [a.split("=", 1) for a in args]
    if not relays or not os.path.exists(B + "/ctlbench"):
        sys.exit(__doc__ + "\n(run ../shared/bench/sidebyside.py once to build /tmp/sbs)")
    ns = "cul%d" % os.getpid()
    subprocess.check_call(["ip", "netns", "add", ns])
    subprocess.check_call(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
    inns = ["ip", "netns", "exec", ns]
    tmp = tempfile.mkdtemp(prefix="cul")
    results = []

    def emit(**row):
        results.append(row)
        print(json.dumps(row), flush=True)

    def start(cmd):
        sock = os.path.join(tmp, "ctl.sock")
        argv = shlex.split(cmd) + ["-s", "udp:" + CTL, "-s", "cunix:" + sock, "-l", "127.0.0.1",
                                   "-m", "20000", "-M", "60000", "-d", "ERR", "-L", "20000"]
        p = subprocess.Popen(inns + ["taskset", "-c", RELAY_CPUS] + argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(2.0)
        return p, sock

    def stop(p):
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        time.sleep(0.5)

    def client(argv):
        out = subprocess.run(inns + ["taskset", "-c", "0"] + argv, capture_output=True, text=True,
                             timeout=200).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def pipelined(sock_path, tag):
        """U/s for PIPELINED U written at once on one stream connection."""
        lines = b"".join(b"U pipe-%s-%d 127.0.0.2 %d ft%d\n" % (tag.encode(), n, 20000 + n, n)
                         for n in range(PIPELINED))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        s.settimeout(30)
        started = time.monotonic()
        s.sendall(lines)
        got = b""
        while got.count(b"\n") < PIPELINED:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        took = time.monotonic() - started
        s.close()
        return got.count(b"\n") / took

    try:
        for rnd in range(rounds):
            for name, cmd in relays:
                p, _ = start(cmd)
                rows = client([B + "/ctlbench", "-c", CTL, "-m", "cycle", "-n", "20000", "-W", "32",
                               "-P", "c%d" % rnd])
                if rows:
                    emit(relay=name, round=rnd, test="cycle",
                         rate=rows[-1].get("sess_per_s_5_95") or rows[-1].get("sess_per_s"))
                stop(p)
                p, _ = start(cmd)
                rows = client([B + "/ctlbench", "-c", CTL, "-m", "lat", "-n", "300", "-r", "100",
                               "-P", "l%d" % rnd])
                if rows:
                    emit(relay=name, round=rnd, test="lat", p50=rows[-1]["u_lat_us"]["p50"],
                         p99=rows[-1]["u_lat_us"]["p99"])
                stop(p)
                p, sock = start(cmd)
                emit(relay=name, round=rnd, test="pipe", rate=pipelined(sock, "i%d" % rnd))
                stop(p)
                p, sock = start(cmd)
                bench = subprocess.Popen(inns + ["taskset", "-c", "0", B + "/rtpbench", "-c", CTL,
                                                 "-n", "1000", "-t", "10", "-w", "2"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                time.sleep(5)
                rows = client([B + "/ctlbench", "-c", CTL, "-m", "lat", "-n", "200", "-r", "100",
                               "-P", "b%d" % rnd])
                if rows:
                    emit(relay=name, round=rnd, test="lat1k", p50=rows[-1]["u_lat_us"]["p50"],
                         p99=rows[-1]["u_lat_us"]["p99"])
                emit(relay=name, round=rnd, test="pipe1k", rate=pipelined(sock, "b%d" % rnd))
                out, _ = bench.communicate(timeout=200)
                rows = [r for r in (json.loads(line) for line in out.splitlines()
                                    if line.startswith("{")) if "loss_pct" in r]
                if rows:
                    emit(relay=name, round=rnd, test="load1k", loss=rows[-1]["loss_pct"])
                stop(p)
    finally:
        subprocess.call(["ip", "netns", "del", ns])

    def med(name, test, key):
        v = [r[key] for r in results if r["relay"] == name and r["test"] == test and r.get(key) is not None]
        return statistics.median(v) if v else None

    def f(x, fmt="{:.0f}"):
        return "-" if x is None else fmt.format(x)

    print("\n| relay | cycles/s | U p50/p99 idle (us) | U p50/p99, 1000 relaying (us) | pipelined U/s, idle | "
          "pipelined U/s, 1000 relaying | loss with 1000 |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in relays:
        print("| %s | %s | %s/%s | %s/%s | %s | %s | %s %% |" % (
            name, f(med(name, "cycle", "rate")), f(med(name, "lat", "p50")), f(med(name, "lat", "p99")),
            f(med(name, "lat1k", "p50")), f(med(name, "lat1k", "p99")), f(med(name, "pipe", "rate")),
            f(med(name, "pipe1k", "rate")), f(med(name, "load1k", "loss"), "{:.2f}")))


if __name__ == "__main__":
    main()
