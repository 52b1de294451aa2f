#!/usr/bin/env python3
"""CPU of the 9 DBUG lines of a U+L+D cycle as a worker logs them (a
serving greenlet, "worker 1: " prefix, stderr to /dev/null, held lines
written before each reply): the prefix as the logger filter it was
(``filter``: the standard logging path) or as daemon_log's prefix
(``prefix``: the direct path).

    .venv/bin/python bench/worker_log_prefix.py filter|prefix [-n N]
"""

import argparse
import logging
import os
import sys
import time

import gevent

from rtpproxy_py import daemon, daemon_log
from rtpproxy_py.config import Config


class _Prefix(logging.Filter):
    """The worker's prefix as it was."""

    def filter(self, record):
        record.msg = "worker 1: " + str(record.msg)
        return True


def cycle(log, flush):
    log.info("new session %s, tag %s, port %d", "cid1", "ft1", 40030)
    log.debug("command %r -> %r", b" U cid1 127.0.0.2 10000 ft1", "40030 127.0.0.1\n")
    flush()     # before each reply, as the worker does
    log.debug("command %r -> %r", b" L cid1 127.0.0.3 10002 ft1 tt1", "40032 127.0.0.1\n")
    flush()
    log.info("session %s, tag %s ended (%s)", "cid1", "ft1", "deleted")
    for stream in ("callee RTP", "caller RTP", "callee RTCP", "caller RTCP"):
        log.info("session %s, tag %s: %s from %s: sent %d, received %d",
                 "cid1", "ft1", stream, "127.0.0.2:10000", 0, 0)
    log.debug("command %r -> %r", b" D cid1 ft1 tt1", "0\n")
    flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["filter", "prefix"])
    parser.add_argument("-n", type=int, default=20000)
    args = parser.parse_args()
    out = sys.stdout
    sys.stderr = open(os.devnull, "w")
    config = Config()
    config.log_level = logging.DEBUG
    daemon.setup_logging(config, to_syslog=False)
    log = logging.getLogger("rtpproxy")
    if args.mode == "filter":
        log.addFilter(_Prefix())
    else:
        daemon_log.set_prefix(log, "worker 1: ")
    flush = daemon_log.write_held_lines

    def run():
        for _ in range(args.n):
            cycle(log, flush)

    best = None
    for _ in range(4):
        start = time.process_time()
        gevent.spawn(run).join()
        spent = time.process_time() - start
        best = spent if best is None else min(best, spent)
    out.write("%s: %.1f us of CPU per cycle (9 lines), best of 4 runs of %d\n" % (args.mode, best / args.n * 1e6, args.n))


if __name__ == "__main__":
    main()
