"""mypy on the typed modules (setup.cfg [mypy] sections: every function of
these modules is annotated). A type error, or an unannotated function in one of
them, fails the test."""

import os
import subprocess
import sys

from helpers import TOP

TYPED = [
    "rtpproxy_py/protocol",
    "rtpproxy_py/capabilities.py",
    "rtpproxy_py/throttle.py",
    "rtpproxy_py/ports.py",
    "rtpproxy_py/media_port.py",
    "rtpproxy_py/media/codecs/frames.py",
    "rtpproxy_py/notify.py",
    "rtpproxy_py/media/player.py",
    "rtpproxy_py/media/resizer.py",
    "rtpproxy_py/media/analyzer.py",
    "rtpproxy_py/media/rtp_stats.py",
    "rtpproxy_py/net.py",
    "rtpproxy_py/config.py",
    "rtpproxy_py/session.py",
    "rtpproxy_py/latching.py",
    "rtpproxy_py/media/feature.py",
]


def test_typed_modules_pass_mypy():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", os.path.join(TOP, "setup.cfg"),
         "--no-incremental", "--cache-dir", os.devnull] + TYPED,
        cwd=TOP, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_every_typed_module_is_strict_in_setup_cfg():
    """A module in TYPED without disallow_untyped_defs would pass while unannotated."""
    text = open(os.path.join(TOP, "setup.cfg"), encoding="utf-8").read()
    strict = [line for line in text.splitlines() if line.startswith("[mypy-rtpproxy_py.protocol")][0]
    for path in TYPED:
        name = path[:-3] if path.endswith(".py") else path + ".*"
        assert name.replace("/", ".") in strict, name
