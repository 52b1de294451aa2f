"""debugtools: the profile written on exit, run_debug for the tools' _debug
builds, and the loop-health line."""

import os
import pstats
import subprocess
import sys

from rtpproxy_py import debugtools

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A stand-in tool: logs at debug level, burns a little CPU, exits 3.
TOOL = """
import logging, sys
from rtpproxy_py import debugtools

def crunch():
    return sum(i * i for i in range(200000))

def main(name, debug=False):
    assert debug
    logging.getLogger("tool").debug("hello from %s", name)
    crunch()
    sys.exit(3)

sys.exit(debugtools.run_debug(main, "tool_debug", "x", debug=True))
"""


def _run_tool(cwd, **env):
    return subprocess.run([sys.executable, "-c", TOOL], capture_output=True, text=True, timeout=30,
                          cwd=str(cwd), env=dict(os.environ, PYTHONPATH=TOP, **env))


def _run_tool_without_profile_env(cwd):
    env = {k: v for k, v in os.environ.items() if k != "RTPP_PROFILE"}
    return subprocess.run([sys.executable, "-c", TOOL], capture_output=True, text=True, timeout=30,
                          cwd=str(cwd), env=dict(env, PYTHONPATH=TOP))


def test_run_debug_logs_at_debug_level_and_profiles_into_the_named_dir(tmp_path):
    where = tmp_path / "profiles"
    where.mkdir()
    out = _run_tool(tmp_path, RTPP_PROFILE=str(where))
    assert out.returncode == 3, out.stderr
    assert "DEBUG: hello from x" in out.stderr
    [profile] = where.glob("tool_debug.*.pstats")
    assert "profile of where time went written to %s" % profile in out.stderr
    names = {key[2] for key in pstats.Stats(str(profile)).stats}
    assert {"main", "crunch"} <= names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles"]


def test_no_profile_and_no_file_unless_asked(tmp_path):
    """Scripts run the debug builds in their own directories: without
    RTPP_PROFILE nothing is written there (nor anywhere)."""
    out = _run_tool_without_profile_env(tmp_path)
    assert out.returncode == 3 and "DEBUG: hello from x" in out.stderr
    assert "profile" not in out.stderr
    assert not list(tmp_path.iterdir())


def test_profile_env_names_the_file(tmp_path):
    target = tmp_path / "where.pstats"
    out = _run_tool(tmp_path, RTPP_PROFILE=str(target))
    assert out.returncode == 3
    assert target.exists() and not list(tmp_path.glob("tool_debug.*"))


def test_unwritable_profile_is_one_warning_and_keeps_the_exit_code(tmp_path):
    out = _run_tool(tmp_path, RTPP_PROFILE="/nonexistent/dir/p.pstats")
    assert out.returncode == 3
    assert ("tool_debug: cannot write the profile to /nonexistent/dir/p.pstats (No such file or "
            "directory); set RTPP_PROFILE to a writable file or directory.") in out.stderr
    assert "Traceback" not in out.stderr


def test_profile_directory_is_fixed_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("RTPP_PROFILE", ".")
    monkeypatch.chdir(tmp_path)
    profile = debugtools.Profile("prog")
    monkeypatch.chdir("/")          # as a daemon does when it detaches
    assert profile.path() == str(tmp_path / ("prog.%d.pstats" % os.getpid()))


def test_loop_health_line():
    line = debugtools.LoopHealth.describe([0.001] * 99 + [0.050], 5.0)
    assert line == ("loop health: 100 timers in 5.0 s ran late by avg 1.49 ms, p99 50.00 ms, "
                    "max 50.00 ms")


def test_env_seconds(monkeypatch):
    monkeypatch.setenv("X_PERIOD", "2.5")
    assert debugtools.env_seconds("X_PERIOD", 10) == 2.5
    monkeypatch.delenv("X_PERIOD")
    assert debugtools.env_seconds("X_PERIOD", 10) == 10
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("X_PERIOD", bad)
        try:
            debugtools.env_seconds("X_PERIOD", 10)
        except ValueError as exc:
            assert str(exc) == "X_PERIOD=%s: give a positive number of seconds." % bad
        else:
            raise AssertionError("accepted %s" % bad)


def test_profile_off(tmp_path):
    out = _run_tool(tmp_path, RTPP_PROFILE="off")
    assert out.returncode == 3 and "DEBUG: hello from x" in out.stderr
    assert "profile" not in out.stderr
    assert not list(tmp_path.iterdir()) and not os.path.exists(os.path.join(TOP, "off"))


def test_verdict_line_names_leaked_descriptors(tmp_path):
    script = ("import sys; from rtpproxy_py import debugtools\n"
              "def main(leak):\n"
              "    if leak:\n"
              "        main.kept = open(%r, 'w')\n"
              "    return 0\n"
              "sys.exit(debugtools.run_debug(main, 't_debug', sys.argv[1] == '1', verdict='t'))\n"
              % str(tmp_path / "kept.txt"))
    runs = [subprocess.run([sys.executable, "-c", script, leak], capture_output=True, text=True,
                           timeout=30, cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=TOP))
            for leak in ("0", "1")]
    assert runs[0].stdout == "MEMDEB(t): all clear\n"
    assert runs[1].stdout.startswith("MEMDEB(t): leaked 1 file descriptor: ")
    assert runs[1].stdout.rstrip().endswith("=%s" % (tmp_path / "kept.txt"))
