#!/usr/bin/env python3
"""U+L+D cycles/s and idle U latency, as sidebyside.py's ``cycle`` and ``lat``
rows, for quick iteration on the control plane (root: a private network
namespace; relay pinned to RELAY_CPUS, default 1, the client to CPU 0).

    bench/control_cycle.py [--rounds R] [-n N] [--profile OUT.svg|OUT.txt]
                           [--py-spy PATH] [--level LEVEL] NAME=COMMAND [NAME=COMMAND ...]

COMMAND is the relay's command line without -s/-l/-m/-M/-d/-L (added, as
sidebyside.py adds them: -d ERR unless ``--level`` says otherwise); ``crelay`` runs the minimal C relay. Besides the
rate it prints the CPU the relay's whole process tree spent per cycle (from
/proc): on a shared machine the figure to compare when the rate only says
how much of its core the relay was given. ctlbench and
crelay are built from ../shared/bench into /tmp/ctlbench-kit. With
``--profile`` the first relay's cycle run is sampled by py-spy (its
processes and their children; ``--py-spy`` names the binary) and written as
a flame graph (.svg) or py-spy's raw collapsed stacks (.txt).
"""

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KIT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "bench"))
if not os.path.isdir(KIT):
    KIT = "/work/shared/bench"
B = "/tmp/ctlbench-kit"
CTL = "127.0.0.1:22222"


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids):
    """utime + stime of these processes (all their threads)."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def build():
    os.makedirs(B, exist_ok=True)
    for prog in ("ctlbench", "crelay"):
        if not os.path.exists(os.path.join(B, prog)):
            subprocess.check_call(["cc", "-O2", "-o", os.path.join(B, prog), os.path.join(KIT, prog + ".c")])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("-W", type=int, default=32)
    ap.add_argument("--profile")
    ap.add_argument("--py-spy", default="py-spy")
    ap.add_argument("--no-lat", action="store_true")
    ap.add_argument("--level", default="ERR",
                    help="the relays' -d (default ERR, as sidebyside.py runs them; DBUG: the foreground default)")
    ap.add_argument("relays", nargs="+")
    args = ap.parse_args()
    build()
    relay_cpus = os.environ.get("RELAY_CPUS", "1")
    ns = "ctlcyc%d" % os.getpid()
    subprocess.check_call(["ip", "netns", "add", ns])
    inns = ["ip", "netns", "exec", ns]
    subprocess.check_call(inns + ["ip", "link", "set", "lo", "up"])
    relays = [r.split("=", 1) for r in args.relays]
    results = []

    def start(name, cmd):
        if name == "crelay":
            argv = [os.path.join(B, "crelay"), "-s", CTL, "-l", "127.0.0.1", "-m", "20000", "-M", "60000"]
        else:
            argv = shlex.split(cmd) + ["-s", "udp:" + CTL, "-l", "127.0.0.1", "-m", "20000", "-M", "60000",
                                       "-d", args.level, "-L", "20000"]
        p = subprocess.Popen(inns + ["taskset", "-c", relay_cpus] + argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(2.0)
        return p

    def stop(p):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        time.sleep(0.3)

    def client(argv):
        r = subprocess.run(inns + ["taskset", "-c", "0"] + argv, capture_output=True, text=True, timeout=300)
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    try:
        for rnd in range(args.rounds):
            for i, (name, cmd) in enumerate(relays):
                p = start(name, cmd)
                spy = None
                if args.profile and i == 0 and rnd == 0 and name != "crelay":
                    fmt = "raw" if args.profile.endswith(".txt") else "flamegraph"
                    spy = subprocess.Popen([args.py_spy, "record", "-r", "500", "-s", "-f", fmt, "-o",
                                            args.profile, "--pid", str(p.pid)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1.0)
                pids = tree(p.pid)
                cpu0 = cpu_seconds(pids)
                rows = client([os.path.join(B, "ctlbench"), "-c", CTL, "-m", "cycle", "-n", str(args.n),
                               "-W", str(args.W), "-p", str(p.pid), "-P", "c%d" % rnd])
                cpu = cpu_seconds(pids) - cpu0
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                if rows:
                    r = rows[-1]
                    row = {"relay": name, "round": rnd, "test": "cycle",
                           "rate": r.get("sess_per_s_5_95") or r.get("sess_per_s"),
                           "relay_cpu_pct": r.get("relay_cpu_pct"), "processes": len(pids),
                           "cpu_us_per_cycle": round(cpu / args.n * 1e6, 1), "retx": r.get("retx"),
                           "errors": r.get("errors"),
                           "failed": r.get("failed")}
                    results.append(row)
                    print(json.dumps(row), flush=True)
                stop(p)
                if not args.no_lat:
                    p = start(name, cmd)
                    rows = client([os.path.join(B, "ctlbench"), "-c", CTL, "-m", "lat", "-n", "300", "-r", "100",
                                   "-P", "l%d" % rnd])
                    if rows:
                        row = {"relay": name, "round": rnd, "test": "lat",
                               "p50": rows[-1]["u_lat_us"]["p50"], "p99": rows[-1]["u_lat_us"]["p99"]}
                        results.append(row)
                        print(json.dumps(row), flush=True)
                    stop(p)
    finally:
        subprocess.call(["ip", "netns", "del", ns])
    for name, _ in relays:
        rates = [r["rate"] for r in results if r["relay"] == name and r["test"] == "cycle"]
        cpus = [r["cpu_us_per_cycle"] for r in results if r["relay"] == name and r["test"] == "cycle"]
        p50 = [r["p50"] for r in results if r["relay"] == name and r["test"] == "lat"]
        p99 = [r["p99"] for r in results if r["relay"] == name and r["test"] == "lat"]
        print("%-10s cycles/s %s  CPU/cycle %s us  U p50/p99 %s/%s us" % (
            name, "%.0f" % statistics.median(rates) if rates else "-",
            "%.0f" % statistics.median(cpus) if cpus else "-",
            "%.0f" % statistics.median(p50) if p50 else "-", "%.0f" % statistics.median(p99) if p99 else "-"))


if __name__ == "__main__":
    main()
