import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import Daemon  # noqa: E402


@pytest.fixture
def rtpproxy():
    """Start real rtpproxy processes: rtpproxy(*args, control="udp"). All are
    stopped with SIGTERM at the end of the test and must exit cleanly."""
    started = []

    def start(*args, **kwargs):
        daemon = Daemon(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        was_alive = daemon.alive()
        code = daemon.stop()
        if was_alive:
            assert code == 0, "rtpproxy exited %s on SIGTERM:\n%s" % (code, daemon.log())
        assert "Traceback" not in daemon.log(), daemon.log()
