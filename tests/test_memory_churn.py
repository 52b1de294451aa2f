"""Memory that comes back with worker processes (issue 18.6): sessions
created and deleted in a loop leave the daemon's processes, the front end
and its workers together, near the resident memory they had once started.

Each worker used to grow by about 4 MB in its first thousands of sessions
and keep it: an ended session is freed by a full garbage collection only
(its objects point at each other), and CPython ran one so rarely that some
600 ended sessions piled up first, growing the heap for good. An ended
session now breaks its own cycles (session.Session.release), so reference
counting frees it at once. BENCHMARKS.md has the 300,000-session run over UDP."""

import os
import sys

from helpers import TOP, Daemon, port_range, wait_for

sys.path.insert(0, os.path.join(TOP, "bench"))

import churn  # noqa: E402

WORKERS = 2                 # the default on a 2-core machine; named so that any machine runs workers
SESSIONS = 6000
BATCH = 200
# Measured on a 2-core machine: +2.4 to +3.6 MB with the fix, +8 to +11 MB
# before it (each worker +4 MB).
RSS_SLACK_KB = 5 * 1024


def test_rss_of_front_end_and_workers_comes_back_after_churn():
    # cunix: no UDP reply cache, whose 35 s of replies would hide what the
    # sessions leave behind (bench/churn.py --udp measures both)
    daemon = Daemon("-l", "127.0.0.1", "--workers", str(WORKERS), control="cunix",
                    ports=port_range(4 * BATCH + 40))
    try:
        wait_for(lambda: "%d workers serving" % WORKERS in daemon.log(), timeout=15)
        assert len(daemon.pids()) == WORKERS + 1
        start, parts = churn.tree_memory(daemon)
        ctl = churn.Control(daemon.ctl_path)
        try:
            for first in range(0, SESSIONS, BATCH):
                ids = range(first, first + BATCH)
                replies = ctl.batch(["U c%d 127.0.0.1 4000 ft" % i for i in ids])
                replies += ctl.batch(["L c%d 127.0.0.1 4002 ft tt" % i for i in ids])
                assert all(r.split()[0].isdigit() for r in replies), replies[:3]
                assert set(ctl.batch(["D c%d ft tt" % i for i in ids])) == {"0"}
        finally:
            ctl.close()
        assert daemon.command("G nsess_created nsess_destroyed") == "%d %d" % (SESSIONS, SESSIONS)
        end, end_parts = churn.tree_memory(daemon)
        assert end <= start + RSS_SLACK_KB, "RSS %d kB at start, %d kB after %d sessions: %s -> %s" % (
            start, end, SESSIONS, churn.describe(parts), churn.describe(end_parts))
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()[-3000:]
    assert "Traceback" not in daemon.log()
