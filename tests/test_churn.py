"""Session churn (bench/churn.py, small): sessions created and deleted, with
and without media, and timed out, in a loop; once they have all ended, the
daemon holds the same file descriptors and greenlets as before and about the
same memory. BENCHMARKS.md has the 100,000-session run."""

import os
import sys

from helpers import TOP
from netns import Netns, require_root

sys.path.insert(0, os.path.join(TOP, "bench"))

import churn  # noqa: E402

RSS_SLACK_KB = 3000


def test_churn_returns_to_baseline():
    require_root()
    with Netns("churn") as ns:
        daemon = churn.start_daemon(ns, 20000, 30000)
        try:
            baseline, states, peak, _ = churn.churn(daemon, ns, 4000, warmup=3000, checkpoints=2,
                                                     report=lambda text: None)
        finally:
            code = daemon.stop()
        log = daemon.log()
    assert code == 0, log[-3000:]
    assert peak["sessions"] >= 300 and peak["fds"] > baseline["fds"] + 600
    for state in states:
        assert state["sessions"] == 0
        assert state["fds"] == baseline["fds"], (baseline, states)
        assert state["greenlets"] == baseline["greenlets"], (baseline, states)
        assert state["rss_kb"] <= baseline["rss_kb"] + RSS_SLACK_KB, (baseline, states)
    assert "leak report: all clear" in log
    assert "Traceback" not in log


def test_churn_counts():
    """The same loop's bookkeeping: every session ended, half of them by time-out."""
    require_root()
    with Netns("churn") as ns:
        daemon = churn.start_daemon(ns, 20000, 30000)
        try:
            churn.churn(daemon, ns, 800, warmup=200, checkpoints=1, report=lambda text: None)
            created, destroyed, timeouts = map(int, daemon.command(
                "G nsess_created nsess_destroyed nsess_timeout").split())
        finally:
            daemon.stop()
    assert created == destroyed == 1000
    assert timeouts == 500
