"""config.build and cli.normalize_argv: listen addresses, bridges, -A, repeated options."""

import socket

import pytest

from rtpproxy_py.cli import normalize_argv, parse_args
from rtpproxy_py.config import ConfigError, build


def config(*argv):
    return build(parse_args(list(argv)))


def test_bridge_and_advertised_addresses():
    c = config("-l", "in@127.0.0.1=192.0.2.1/127.0.0.2", "-A", "192.0.2.10/198.51.100.10")
    internal, external = c.bridge
    assert (internal.host, internal.label, external.host) == ("127.0.0.1", "in", "127.0.0.2")
    # -A wins over =adv
    assert (internal.reply_address(), external.reply_address()) == ("192.0.2.10", "198.51.100.10")
    assert c.primary is internal and c.bridging


def test_v4_v6_bridge_uses_the_ipv4_primary_as_internal():
    c = config("-l", "127.0.0.1", "-6", "/::1")
    internal, external = c.bridge
    assert internal.family == socket.AF_INET and external.family == socket.AF_INET6
    assert external.reply_address() == "::1" and internal is c.primary


def test_wildcard_default_and_labels():
    c = config()
    assert c.primary.wildcard and c.primary.reply_address() is None and not c.bridging
    c = config("-l", "127.0.0.1", "-l", "x@127.0.0.3=203.0.113.3", "-6", "::1")
    assert [(a.host, a.label, a.advertised) for a in c.all_listen()] == [
        ("127.0.0.1", None, None), ("127.0.0.3", "x", "203.0.113.3"), ("::1", None, None)]


@pytest.mark.parametrize("argv,fragment", [
    (["-l", "/127.0.0.1"], "internal address before"),
    (["-l", "127.0.0.1/127.0.0.2", "-6", "::1/::1"], "only one of them"),
    (["-A", "a/b"], "only make sense with a bridge"),
    (["-d", ""], "log level"),
])
def test_bad_values(argv, fragment):
    with pytest.raises(ConfigError) as info:
        config(*argv)
    assert fragment in str(info.value)


def test_normalize_argv_like_getopt():
    assert normalize_argv(["-fb", "-m35000", "-6", "::1", "-2", "--nice", "-5", "-p", "a", "-p", "b", "-f"]) == [
        "-b", "-m", "35000", "--ipv6", "::1", "--dup-small", "--nice", "-5", "-p", "b", "-f"]
    assert normalize_argv(["-l", "a", "-s", "x", "-l", "b", "--overload_prot"]) == [
        "-l", "a", "-s", "x", "-l", "b", "--overload_prot=0.85"]
