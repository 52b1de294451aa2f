"""What an operator reads matches what the programs do: `rtpproxy -h` lists
only options the parser takes, rtpproxy(8) says what -c, -V and -v really do,
and `make run` installs the runtime only, quietly."""

import os
import re
import subprocess
import sys

from helpers import TOP

from rtpproxy_py import capabilities, cli, version_string

MAN = os.path.join(TOP, "man", "rtpproxy.8")


def _help_options():
    text = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-h"], capture_output=True, text=True,
                          cwd=TOP, timeout=30).stdout
    usage, _, options = text.partition("Options:")
    found = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[A-Za-z0-9])\b", usage))
    found.update(re.findall(r"^  (--[a-z][\w-]*|-[A-Za-z0-9])", options, re.M))
    return found, text


def test_every_option_rtpproxy_h_lists_is_accepted():
    options, text = _help_options()
    assert {"-6", "-l", "-s", "-c", "--workers"} <= options, text
    for option in sorted(options - {"-h", "--help", "-V", "-v", "-C"}):
        name = option.lstrip("-")
        takes_value = (len(name) == 1 and name in cli._WITH_ARGUMENT) or cli._LONG.get(option, False)
        if option == "--overload_prot":
            takes_value = False              # its value is optional: --overload_prot[=LIMIT]
        argv = [option, "1"] if takes_value else [option]
        try:
            cli.parse_args(argv)
        except cli.UsageError as exc:
            raise AssertionError("rtpproxy -h lists %s but the parser refuses it: %s" % (option, exc))
    assert "--ipv6" not in text


def test_man_page_says_what_c_V_and_v_do():
    page = open(MAN).read()
    c_item = re.search(r"^\.It Fl c Ar policy\n(.*?)^\.It ", page, re.M | re.S).group(1)
    assert "compatibility" not in c_item and "keeps the normal policy" not in c_item
    assert "CAP_SYS_NICE" in c_item
    v_item = re.search(r"^\.It Fl v\n(.*?)^\.It Fl C", page, re.M | re.S).group(1)
    listed = re.findall(r"^\.It Li (\d{8})$", v_item, re.M)
    assert listed == [date for date, _ in capabilities.EXTENSIONS]
    out = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-v"], capture_output=True, text=True,
                         cwd=TOP, timeout=30).stdout
    assert re.findall(r"Extension (\d{8})", out) == listed
    v_big = re.search(r"^\.It Fl V\n(.*?)^\.It ", page, re.M | re.S).group(1)
    assert version_string() in v_big
    assert re.search(r"^\.It Li systemd:", page, re.M)


def test_make_run_installs_the_runtime_only_and_quietly(tmp_path):
    """The venv `make run` makes (its prerequisite $(VENV)/.runtime, made here
    in a fresh directory; tests/test_readme_run.py runs `make run` itself):
    one line of output, no test tools, a daemon that starts."""
    venv = str(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV")}
    out = subprocess.run(["make", "-C", TOP, "--no-print-directory", "VENV=" + venv, venv + "/.runtime"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "installing the runtime into %s (pip's output: %s/install.log)" % (venv, venv)], out.stdout
    assert out.stderr == ""
    installed = subprocess.run([venv + "/bin/python", "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, timeout=60).stdout.lower()
    for runtime in ("gevent", "numpy", "g722", "pylibsrtp", "docopt-ng"):
        assert re.search(r"^%s==" % runtime, installed, re.M), (runtime, installed)
    for tool in ("pytest", "hypothesis", "atheris", "sippy"):
        assert not re.search(r"^%s==" % tool, installed, re.M), tool
    version = subprocess.run([venv + "/bin/rtpproxy", "-V"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == version_string()
