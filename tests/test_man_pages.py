"""man/: the pages are clean roff and document exactly what the programs
accept. For rtpproxy the option and command lists come from the code; for a
tool declared in setup.cfg they come from what the program prints (its
--help, and the usage it prints when run without arguments); for a tool not
written yet, from the spec's flag list kept here."""

import os
import re
import subprocess
import sys

import pytest

from helpers import TOP, console_scripts

from rtpproxy_py import cli
from rtpproxy_py.protocol import errors, parse
from rtpproxy_py.protocol.errors import CommandError

MAN = os.path.join(TOP, "man")
PAGES = {"rtpproxy": "rtpproxy.8", "makeann": "makeann.1", "extractaudio": "extractaudio.1",
         "rtpproxy-ctl": "rtpproxy-ctl.8"}

# From /work/shared/spec/makeann.md and extractaudio.md section 1, for as long
# as the program is not declared in setup.cfg.
SPEC_OPTIONS = {
    "makeann": {"-l", "-L", "-v"},
    "extractaudio": {"-A", "-B", "-s", "-F", "-D", "-n", "-d", "-i", "-e", "-S",
                     "--alice-crypto", "--bob-crypto"},
}

_OPTION = re.compile(r"(?<![\w-])(--[a-z][\w-]*|-[A-Za-z]+)")


def read_page(name):
    with open(os.path.join(MAN, PAGES[name])) as f:
        return f.read()


def section(page, title):
    """The lines of ``.Sh title`` (up to the next .Sh)."""
    match = re.search(r"^\.Sh %s\n(.*?)(?=^\.Sh |\Z)" % re.escape(title), page, re.M | re.S)
    assert match, "no section %s" % title
    return match.group(1)


def _fl_words(line):
    """Options named by Fl macros on one line: 'Fl -nice' is --nice, 'Fl 2ab' is -2 -a -b
    only in a synopsis cluster (see synopsis_options)."""
    return ["-" + word for word in re.findall(r"\bFl ([\w-]+)", line)]


def page_options(page):
    """Options of the OPTIONS list (the .It lines)."""
    found = set()
    for line in section(page, "OPTIONS").splitlines():
        if line.startswith(".It "):
            found.update(_fl_words(line))
    return found


def synopsis_options(page):
    found = set()
    for line in section(page, "SYNOPSIS").splitlines():
        for word in _fl_words(line):
            if not word.startswith("--") and len(word) > 2:
                found.update("-" + letter for letter in word[1:])     # a cluster: -deins
            else:
                found.add(word)
        found.update("-" + w for w in re.findall(r"\| (\w)\b", line))    # Fl V | v | C | h
    return found


def program_options(path):
    """The options a tool lists: in its --help (when that succeeds), and in the
    usage it prints when run without arguments."""
    texts = []
    for args in (["--help"], []):
        out = subprocess.run([path] + args, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL, cwd=TOP)
        assert "Traceback" not in out.stderr, out.stderr
        if args and out.returncode != 0:
            continue
        texts.append(out.stdout + out.stderr)
    found = set()
    for word in _OPTION.findall("\n".join(texts)):
        if word.startswith("--") or len(word) == 2:
            found.add(word)
        else:
            found.update("-" + letter for letter in word[1:])        # [-dsine]
    return found


def rtpproxy_options():
    return {"-" + letter for letter in cli._WITH_ARGUMENT | cli._FLAGS} | set(cli._LONG)


def test_rtpproxy_page_lists_every_option():
    page = read_page("rtpproxy")
    assert page_options(page) == rtpproxy_options()
    assert synopsis_options(page) <= page_options(page)


def test_rtpproxy_page_lists_every_command():
    commands_section = section(read_page("rtpproxy"), "CONTROL COMMANDS")
    documented = set(re.findall(r"^\.It Cm ([A-Z]+)", commands_section, re.M))
    assert documented == {verb.upper() for verb in parse._GRAMMAR}


def accepted_update_modifiers():
    accepted = set()
    for char in "abcdefghijklmnopqrstuvwxyz0123456789":
        try:
            parse.parse_update_modifiers(char)
        except CommandError as exc:
            if exc.code == errors.UPDATE_BAD_MODIFIER:
                continue
        accepted.add(char)
    return accepted


def test_rtpproxy_page_lists_every_update_modifier():
    modifiers = re.search(r"^\.Ss U and L modifiers\n(.*?)^\.Ss ", read_page("rtpproxy"), re.M | re.S)
    documented = set(re.findall(r"Cm ([a-z0-9])\b", modifiers.group(1)))
    assert documented == accepted_update_modifiers() == set("aswei6zclrnk")


@pytest.mark.parametrize("tool", ["makeann", "extractaudio"])
def test_tool_page_matches_the_program(tool):
    page = read_page(tool)
    scripts = console_scripts()
    if tool in scripts:
        path = os.path.join(os.path.dirname(sys.executable), tool)
        assert os.access(path, os.X_OK), "%s is declared in setup.cfg but not installed" % tool
        expected = program_options(path)
        assert expected, "%s printed no option list" % tool
    else:
        expected = SPEC_OPTIONS[tool]
    help_flags = {"-h", "--help"}           # the page may or may not list these
    assert page_options(page) - help_flags == expected - help_flags
    assert synopsis_options(page) <= page_options(page)


def test_every_command_has_a_page():
    """Each console script is named by a page (_debug variants by their base
    command's page), so the package can give it one."""
    named = set()
    for name in PAGES:
        named.update(re.findall(r"^\.Nm ([\w-]+)", read_page(name), re.M))
    assert set(console_scripts()) <= named
    assert {"rtpproxy_debug", "rtpproxy-debug", "makeann_debug", "extractaudio_debug"} <= named


def test_pages_are_clean_roff():
    paths = [os.path.join(MAN, page) for page in sorted(PAGES.values())]
    out = subprocess.run(["mandoc", "-T", "lint", "-W", "warning"] + paths, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stdout + out.stderr
    # and they render
    for path in paths:
        text = subprocess.run(["mandoc", "-T", "utf8", path], capture_output=True, text=True,
                              timeout=60, check=True).stdout
        text = re.sub(".\x08", "", text)          # drop the overstriking of bold and underline
        assert "SYNOPSIS" in text and "OPTIONS" in text
