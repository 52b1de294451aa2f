"""Ports and addresses as upstream (control-protocol.md 5.6): one port table
per address family, addresses of this host that a wildcard covers, the IPv6
address registered last for U6/L6, l[v6]/r[v6] making a leg IPv6."""

import pytest


@pytest.mark.parametrize("workers", ["1", "2"])
def test_each_address_family_has_its_own_port_table(rtpproxy, workers):
    d = rtpproxy("-b", "-l", "127.0.0.1", "-6", "::1", "--workers", workers)
    b = d.ports[0]
    assert d.command("U c1 127.0.0.7 30000 ft1") == "%d 127.0.0.1" % b
    assert d.command("U6 c2 ::1 30000 ft2") == "%d ::1 6" % b
    assert d.command("U c3 127.0.0.7 30000 ft3") == "%d 127.0.0.1" % (b + 2)
    assert d.command("U6 c4 ::1 30000 ft4") == "%d ::1 6" % (b + 2)
    assert d.command("D c2 ft2") == "0"
    assert d.command("L6 c4 ::1 30002 ft4 tt4") == "%d ::1 6" % (b + 4)


def test_wildcard_ipv6_ports_do_not_take_the_ipv4_ones(rtpproxy):
    """A "::" media socket is IPv6 only: with both families on wildcards the
    IPv4 and IPv6 sessions still get the same port numbers."""
    d = rtpproxy("-b", "-l", "0.0.0.0", "-6", "::")
    b = d.ports[0]
    assert [d.command(c) for c in ("U c1 127.0.0.1 4000 f", "U6 c2 ::1 4000 f",
                                   "U6 c3 ::1 4000 f", "U c4 127.0.0.1 4000 f")] == \
        [str(b), str(b), str(b + 2), str(b + 2)]


def test_l_names_an_address_that_a_wildcard_covers(rtpproxy):
    d = rtpproxy("-l", "0.0.0.0", "-6", "/::")
    port, addr = d.command("Ul127.0.0.1 c 127.0.0.1 4000 f").split()
    assert addr == "127.0.0.1"
    assert d.command("Ll127.0.0.1 c 127.0.0.1 4002 f t").split()[1] == "127.0.0.1"
    # bound on the named address, not on the wildcard
    assert set(_udp_bound_addresses(int(port))) == {"0100007F"}


def _udp_bound_addresses(port):
    """Local addresses (as /proc/net/udp writes them) of the UDP sockets on ``port``."""
    with open("/proc/net/udp") as table:
        rows = [line.split()[1] for line in table.readlines()[1:]]
    return [addr for addr, _, hexport in (row.partition(":") for row in rows)
            if int(hexport, 16) == port]


def test_u6_without_l_or_r_takes_the_ipv6_address_given_last(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", "-6", "::", "-6", "lo@::1")
    assert d.command("U6 c ::1 4000 f").split()[1:] == ["::1", "6"]
    assert d.command("L6 c ::1 4002 f t").split()[1:] == ["::1", "6"]
    assert d.command("U c4 127.0.0.1 4000 f").split()[1:] == ["127.0.0.1"]
    # an IPv6 bridge: no e/i letter still means its internal side
    d = rtpproxy("-l", "127.0.0.1", "-6", "::1/::1=2001:db8::9")
    assert d.command("U6 c ::1 4000 f").split()[1:] == ["::1", "6"]


def test_an_ipv6_l_or_r_makes_the_leg_ipv6_without_6(rtpproxy):
    d = rtpproxy()               # the default: IPv4 wildcard, no -6
    assert d.command("ur[::1]wW CID 0.0.0.0 4000 as1 1623").split()[1:] == ["::1", "6"]
    assert d.command("uZ20l[::1] CID2 :: 0 FTAG T").split()[1:] == ["::1", "6"]


def test_r_with_an_impossible_ipv6_address_is_no_route(rtpproxy):
    d = rtpproxy("-l", "127.0.0.1", "-6", "::1")
    assert d.command("Ur[1:2:3:4:5] c 127.0.0.1 4000 f") == "E32"
    assert d.command("Ur[zz] c 127.0.0.1 4000 f") == "E16"       # not an address at all
    assert d.command("Ul[1:2:3:4:5] c 127.0.0.1 4000 f") == "E31"
