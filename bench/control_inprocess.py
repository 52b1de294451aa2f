#!/usr/bin/env python3
"""CPU per U+L+D cycle inside one process, without a client or a kernel
round trip in the way: the daemon's own parts (config.build from a command
line, service.LocalMedia: the real Relay with its sockets, the Dispatcher),
and the UDP control transport's per-datagram handling (UdpControl's
handle_datagram: cookie, reply cache, execute, reply) with the reply sent to
a local socket nobody reads.

    .venv/bin/python bench/control_inprocess.py [-n CYCLES] [--profile] [--execute-only]
                                                [--level LEVEL] [--log-to PATH] [-- RTPPROXY ARGS]

Prints µs of CPU per cycle (and per command kind). ``--profile`` prints
cProfile's top functions instead (by internal time).

Logging is set up as the daemon sets it up in the foreground
(daemon.setup_logging, at the command line's -d level: DBUG without -d, the
foreground default; ``--level ERR`` as sidebyside.py and control_cycle.py
run the relays), with the daemon's stderr sent to ``--log-to`` (default
/dev/null, as bench/control_cycle.py does). The cycles run in a greenlet,
as the daemon's control sockets are served.
"""

import argparse
import os
import resource
import socket
import sys
import time

import gevent


def build(argv, log_to):
    from rtpproxy_py import cli, daemon
    from rtpproxy_py.config import build as build_config
    from rtpproxy_py.control.transports import open_control
    from rtpproxy_py.service import LocalMedia
    opts = cli.parse_args(argv)
    config = build_config(opts)
    daemon.setup_logging(config, to_syslog=False)
    media = LocalMedia(config)
    media.build()
    server = open_control(config.controls[0], config)
    server.start(media.dispatcher)
    out = os.open(log_to, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 2)     # after the set-up, so that its errors are seen
    os.close(out)
    return config, media, server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--execute-only", action="store_true", help="time Dispatcher.execute alone")
    ap.add_argument("--level", help="-d for the default command line (none: DBUG, the foreground default)")
    ap.add_argument("--log-to", default="/dev/null", help="where the daemon's stderr log goes")
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    argv = args.rest or ["-F", "-f", "-s", "udp:127.0.0.1:%d" % (61000 + os.getpid() % 4000), "-l", "127.0.0.1",
                         "-m", "20000", "-M", "60000"] + (["-d", args.level] if args.level else [])
    config, media, server = build(argv, args.log_to)
    gevent.sleep(0)
    dispatcher = media.dispatcher
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    source = sink.getsockname()

    def cycle(i, prefix):
        cid = b"%s-%d" % (prefix, i)
        cmds = (b"U %s 127.0.0.2 %d ft%d" % (cid, 10000 + i % 20000, i),
                b"L %s 127.0.0.3 %d ft%d tt%d" % (cid, 10000 + i % 20000, i, i),
                b"D %s ft%d tt%d" % (cid, i, i))
        for k, cmd in enumerate(cmds):
            if args.execute_only:
                dispatcher.execute(cmd)
            else:
                server.handle_datagram(b"%s%x_%d " % (prefix, i, k) + cmd, source, dispatcher.execute)

    def drain():
        sink.setblocking(False)
        try:
            while True:
                sink.recv(2048)
        except BlockingIOError:
            pass

    for i in range(500):            # warm up
        cycle(i, b"w")
    drain()
    gevent.sleep(0.01)
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        for i in range(args.n):
            cycle(i, b"p")
            if i % 16 == 0:
                drain()
                gevent.sleep(0)
        prof.disable()
        pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "45")))
        return
    best = None
    for rep in range(args.rounds):
        t0 = time.process_time()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(args.n):
            cycle(i, b"r%d" % rep)
            if i % 16 == 0:
                drain()
                gevent.sleep(0)     # the session greenlets start and park, as in the daemon
        spent = time.process_time() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        per = spent / args.n * 1e6
        best = per if best is None else min(best, per)
        print("round %d: %.1f us CPU per U+L+D cycle (user %.1f, system %.1f)" % (
            rep, per, (r1.ru_utime - r0.ru_utime) / args.n * 1e6, (r1.ru_stime - r0.ru_stime) / args.n * 1e6),
            flush=True)
    print("best: %.1f us per cycle (%s)" % (best, "execute only" if args.execute_only else "datagram handling"))


if __name__ == "__main__":
    # in a greenlet of its own, as the daemon's control sockets are served
    sys.exit(gevent.spawn(main).get())
