"""--workers: a worker that is alive but stuck (SIGSTOP) does not hold I and
G: they answer within ASK_TIMEOUT with its last snapshot, and its late
replies do not shift later answers (workers.WorkerLink.ask)."""

import os
import re
import signal
import time

import pytest

from helpers import wait_for
from rtpproxy_py.worker import SNAPSHOT_INTERVAL
from rtpproxy_py.workers import ASK_TIMEOUT, worker_for
from test_workers_udp_path import stopped, worker_pids


def u_answered(d, text):
    """``text``'s reply. Over UDP a U sent just after SIGCONT may be shed (the
    worker's queue holds the I and G it has not answered yet): resent, as a
    client does."""
    if d.control_kind != "udp":
        return d.command(text)
    for _ in range(10):
        try:
            return d.command(text, timeout=0.3)
        except TimeoutError:
            pass
    raise AssertionError("no reply to %r" % text)


@pytest.mark.parametrize("control", ["udp", "tcp"])
def test_i_and_g_answer_with_a_stuck_workers_last_snapshot(rtpproxy, control):
    d = rtpproxy("--workers", "2", control=control)
    pids = wait_for(lambda: len(worker_pids(d)) == 2 and worker_pids(d))
    calls = ["stuck%d" % k for k in range(6)]
    victim_calls = [c for c in calls if worker_for(c, 2) == 0]
    assert victim_calls and len(victim_calls) < len(calls)
    for c in calls:
        assert d.command("U %s 127.0.0.1 4000 f" % c).isdigit()
    # the worker reports its figures once a second: let one report carry them
    time.sleep(SNAPSHOT_INTERVAL * 1.5)
    victim = pids[1]
    os.kill(victim, signal.SIGSTOP)
    try:
        assert wait_for(lambda: stopped(victim), timeout=5, interval=0.001)
        for _ in range(2):      # the second finds the worker already known stuck
            start = time.monotonic()
            assert d.command("G nsess_created", timeout=ASK_TIMEOUT + 1.5) == str(len(calls))
            info = d.command("I", timeout=ASK_TIMEOUT + 1.5)
            assert time.monotonic() - start < 2 * ASK_TIMEOUT + 1.0
            assert "sessions created: %d\n" % len(calls) in info, info
    finally:
        os.kill(victim, signal.SIGCONT)
    # its late replies are dropped: the next commands get their own answers
    late = victim_calls[0] + "-late"
    while worker_for(late, 2) != 0:
        late += "x"
    assert u_answered(d, "U %s 127.0.0.1 4002 f" % late).isdigit()
    assert d.command("G nsess_created") == str(len(calls) + 1)
    assert d.command("V") == "20040107"
    warnings = re.findall(r"worker 1 did not answer in [0-9.]+ s; its last figures are used", d.log())
    assert len(warnings) == 1, d.log()
