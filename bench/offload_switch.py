#!/usr/bin/env python3
"""--kernel_offload hand-over: for CALLS calls, how long after the second
party's first packet (the second latch) the kernel starts relaying, and
whether a packet is lost, doubled or reordered in the switch.

    bench/offload_switch.py [CALLS] [GAP_MS]      (root)

The relay runs in a network namespace between a caller's and a callee's
(tests/netns_helpers.py); each party sends a packet every GAP_MS ms for
300 ms, the callee starting 20 ms after the caller. A packet the program
relayed arrives with IP TTL 64, one the kernel forwarded with 63, so the
first TTL-63 packet marks the switch. The relay's own debug log gives the
time it spent adding the nftables elements.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from helpers import rtp_packet                              # noqa: E402
from netns_helpers import CALLEE_IP, CALLER_IP, RELAY_IP, Topology   # noqa: E402


def command(path, text):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(text.encode())
    reply = s.recv(1000).decode().strip()
    s.close()
    return reply


def one_call(topo, ctl, n, gap):
    caller = topo.endpoint(topo.caller, CALLER_IP)
    callee = topo.endpoint(topo.callee, CALLEE_IP)
    to_callee = int(command(ctl, "U sw%d %s %d ft" % (n, CALLER_IP, caller.port)).split()[0])
    to_caller = int(command(ctl, "L sw%d %s %d ft tt" % (n, CALLEE_IP, callee.port)).split()[0])
    sent = {}               # (direction, seq) -> send time
    start = time.monotonic()
    seq = {0: 0, 1: 0}
    second_latch = None
    next_at = start
    while time.monotonic() - start < 0.3:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += gap
        seq[0] += 1
        caller.send(rtp_packet(seq[0], ssrc=0xA), RELAY_IP, to_caller)
        sent[(0, seq[0])] = time.monotonic()
        if time.monotonic() - start >= 0.02:
            seq[1] += 1
            if second_latch is None:
                second_latch = time.monotonic()
            callee.send(rtp_packet(seq[1], ssrc=0xB), RELAY_IP, to_callee)
            sent[(1, seq[1])] = time.monotonic()
    got = {0: [], 1: []}
    for direction, party in ((0, callee), (1, caller)):
        while True:
            data, _, ttl = party.recv_ttl(0.3)
            if data is None:
                break
            got[direction].append((int.from_bytes(data[2:4], "big"), ttl))
    command(ctl, "D sw%d ft tt" % n)
    caller.close()
    callee.close()
    kernel_sends = [sent[(d, s)] for d in (0, 1) for s, ttl in got[d] if ttl == 63]
    lost = sum(seq[d] - len({s for s, _ in got[d]}) for d in (0, 1))
    dups = sum(len(got[d]) - len({s for s, _ in got[d]}) for d in (0, 1))
    reordered = sum(1 for d in (0, 1) for a, b in zip(got[d], got[d][1:]) if b[0] < a[0])
    return {"switch_ms": (min(kernel_sends) - second_latch) * 1000 if kernel_sends else None,
            "sent": seq[0] + seq[1], "lost": lost, "dups": dups, "reordered": reordered}


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    gap = (float(sys.argv[2]) if len(sys.argv) > 2 else 1.0) / 1000
    topo = Topology()
    tmp = tempfile.mkdtemp()
    ctl = os.path.join(tmp, "ctl.sock")
    log = open(os.path.join(tmp, "relay.log"), "w+")
    relay = subprocess.Popen(topo.relay_command() + [
        "-f", "-F", "-p", "/dev/null", "-s", "unix:" + ctl, "-l", RELAY_IP, "-m", "30000", "-M", "40000",
        "-d", "DBUG", "--workers", "1", "--kernel_offload"], stderr=log)
    try:
        while not os.path.exists(ctl):
            time.sleep(0.05)
        time.sleep(0.3)
        results = [one_call(topo, ctl, n, gap) for n in range(calls)]
    finally:
        relay.terminate()
        relay.wait()
        topo.close()
    log.seek(0)
    setup = [float(x) for x in re.findall(r"set up in ([\d.]+) ms", log.read())]
    switch = [r["switch_ms"] for r in results if r["switch_ms"] is not None]
    print(json.dumps({
        "calls": calls, "gap_ms": gap * 1000, "offloaded": len(switch),
        "switch_ms": {"median": round(statistics.median(switch), 2),
                      "p90": round(sorted(switch)[int(0.9 * len(switch))], 2),
                      "max": round(max(switch), 2)},
        "nft_setup_ms": {"median": round(statistics.median(setup), 3), "max": round(max(setup), 3)},
        "packets": sum(r["sent"] for r in results), "lost": sum(r["lost"] for r in results),
        "dups": sum(r["dups"] for r in results), "reordered": sum(r["reordered"] for r in results),
    }))


if __name__ == "__main__":
    main()
