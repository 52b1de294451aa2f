"""The code under Debian's own python3 and libraries, as the package runs it:
python3-docopt (the original docopt 0.6.2, not docopt-ng) and python3-gevent
22.10. Command lines parse the same as in the virtualenv, and the daemon and
its debug build relay a call."""

import json
import os
import pstats
import subprocess

from helpers import TOP, relay_one_call, relay_reader_calls

from rtpproxy_py import cli

DEBIAN_PYTHON = "/usr/bin/python3"
ENV = dict(os.environ, PYTHONPATH=TOP)

ARGVS = [
    [], ["-f"], ["-fb", "-m35000", "-M36000"], ["-l", "127.0.0.1", "-l", "x@127.0.0.1"],
    ["-s", "udp:127.0.0.1:7722", "-s", "unix:/run/x.sock"], ["-6", "::1", "-2"],
    ["--overload_prot"], ["--overload_prot=0.9"], ["--nice", "5", "--no_res"], ["--nice=3"],
    ["-h"], ["--help"], ["-V"], ["-v"], ["-C"], ["-n", "tcp:%%CC_SELF%%:22223", "-n", "/tmp/n"],
    ["-d", "INFO:local0", "-u", "nobody", "-w", "432", "-T", "5", "-W", "3", "-i"],
    # usage errors
    ["-f", "extra"], ["--bogus"], ["--no_r"], ["--nice"], ["--no_resolve=1"], ["-V", "-f"],
    ["-q"], ["-m"], ["--", "x"],
]

PARSE_ALL = """
import json, sys
from rtpproxy_py import cli
out = []
for argv in json.loads(sys.argv[1]):
    try:
        out.append(cli.parse_args(argv))
    except cli.UsageError as exc:
        out.append("UsageError: %s" % exc)
print(json.dumps(out))
import docopt, gevent, inspect
print(json.dumps([getattr(docopt, "__version__", "?"), gevent.__version__,
                  sorted(inspect.signature(docopt.docopt).parameters)]))
"""


def _parse_here(argv):
    try:
        return cli.parse_args(argv)
    except cli.UsageError as exc:
        return "UsageError: %s" % exc


def test_debian_docopt_parses_every_command_line_like_docopt_ng():
    out = subprocess.run([DEBIAN_PYTHON, "-c", PARSE_ALL, json.dumps(ARGVS)], capture_output=True,
                         text=True, timeout=60, env=ENV, cwd=TOP)
    assert out.returncode == 0, out.stderr
    parsed, (docopt_version, gevent_version, docopt_parameters) = map(json.loads, out.stdout.splitlines())
    # the interpreter really has the original docopt and Debian's gevent
    assert "help" in docopt_parameters and "default_help" not in docopt_parameters, docopt_version
    assert gevent_version.startswith("22.10"), gevent_version
    for argv, theirs in zip(ARGVS, parsed):
        assert theirs == _parse_here(argv), argv
    errors = [p for p in parsed if isinstance(p, str)]
    assert len(errors) == 9 and all("Warning" not in e and "Usage:" not in e for e in errors), errors


def test_usage_error_is_one_sentence_under_debian_python():
    out = subprocess.run([DEBIAN_PYTHON, "-m", "rtpproxy_py", "-f", "stray"], capture_output=True,
                         text=True, timeout=60, env=ENV, cwd=TOP)
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == "rtpproxy: unexpected argument 'stray': rtpproxy takes options only"
    assert "Traceback" not in out.stderr


def test_daemon_relays_a_call_under_debian_python(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", command=[DEBIAN_PYTHON, "-m", "rtpproxy_py"])
    got_callee, got_caller, sent = relay_one_call(d.command)
    assert got_callee == sent and got_caller == sent
    assert d.command("G npkts_relayed") == str(2 * len(sent))


def test_debug_build_under_debian_python(rtpproxy, tmp_path):
    debug = [DEBIAN_PYTHON, "-c", "import sys; from rtpproxy_py.main import main_debug; "
             "sys.argv[0] = 'rtpproxy_debug'; sys.exit(main_debug())"]
    d = rtpproxy("-l", "127.0.0.1", command=debug, env={"RTPP_PROFILE": str(tmp_path)})
    got_callee, _, sent = relay_one_call(d.command)
    assert got_callee == sent
    assert d.stop() == 0
    assert "leak report: all clear" in d.log(), d.log()
    [profile] = tmp_path.glob("rtpproxy_debug.*.pstats")
    assert relay_reader_calls(pstats.Stats(str(profile))) >= 2 * len(sent)

