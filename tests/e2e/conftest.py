"""Fixtures of the end-to-end tests (real Kamailio, sipp, tcpdump)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Lab, missing_tools  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _tools_installed():
    missing = missing_tools()
    if missing:
        pytest.fail("missing %s: run `make system-deps` (tests/apt-packages.txt)" % ", ".join(missing))


@pytest.fixture
def lab(request):
    """A Lab: start relays, Kamailio, sipp, captures through it; all are stopped at the
    end of the test, and every relay must have exited cleanly without a traceback.
    Set RTPP_E2E_KEEP=1 to keep the logs and pcaps (their directory is printed)."""
    keep = bool(os.environ.get("RTPP_E2E_KEEP"))
    the_lab = Lab(keep=keep)
    yield the_lab
    relays = [p for p in the_lab.started if hasattr(p, "control_spec")]
    alive = {id(r): r.alive() for r in relays}
    the_lab.close()
    if keep:
        print("e2e files kept in", the_lab.dir)
    for relay in relays:
        log = relay.log()
        assert "Traceback" not in log, log
        if alive[id(relay)]:
            assert relay.proc.returncode == 0, "rtpproxy exited %s:\n%s" % (relay.proc.returncode, log)
