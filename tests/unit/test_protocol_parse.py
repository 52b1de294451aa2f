"""The command parser alone (no daemon): grammar, error precedence, modifiers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtpproxy_py.protocol import commands as c
from rtpproxy_py.protocol.errors import CommandError
from rtpproxy_py.protocol.parse import parse, parse_update_modifiers, raw, tokenize, url_decode


def code_of(text):
    with pytest.raises(CommandError) as info:
        parse(text if isinstance(text, bytes) else text.encode())
    return info.value.code


@pytest.mark.parametrize("text,code", [
    ("", 5), ("   \t\r\n", 5), ("A x", 0), ("B", 0), ("E", 0),
    ("U", 1), ("U a b c", 1), ("L a b c d e f g", 1), ("D a", 1), ("D a b c d", 1),
    ("V x", 1), ("VF", 1), ("VF a b", 1), ("X x", 1), ("I x", 1),
    ("Vx", 2), ("VFx 1", 2), ("Sx a b", 2), ("Xx", 2),
    ("D a b && D", 3), ("P a b c d && D", 3), ("V && V", 3),
    ("Ux a b c d", 35), ("Dx a b", 8), ("Gx", 9), ("Ix", 18), ("Qx a b", 19),
    ("Px a b c d", 17), ("P1.5 a b c d", 17), ("Rp a b", 6), ("Rx a b", 7),
    ("Cx a b c", 7), ("Nx a b", 7), ("Nab a b", 6),
    ("Uz a b c d", 13), ("Uz0 a b c d", 13), ("Uzx a b c d", 13), ("Uz1000 a b c d", 13),
    ("Uc a b c d", 14), ("Uc,c1 a b c d", 14), ("Ul a b c d", 15), ("Ulx a b c d", 15),
    ("Ur a b c d", 16), ("Ur[nothex] a b c d", 16), ("Ueie a b c d", 11), ("Ueii a b c d", 12),
    ("U a b c d e s %zz", 10), ("U a b c d s %4", 10),
    ("U " + " ".join(["x"] * 23), 5), ("U a b c d && ", 5), ("U a b c d && &&", 5),
])
def test_error_codes(text, code):
    assert code_of(text) == code


def test_nul_is_a_syntax_error_and_other_bytes_are_ordinary():
    assert code_of(b"U a\x00b 1.2.3.4 5 f") == 5
    assert isinstance(parse("U cé 127.0.0.1 4000 f".encode()), c.Update)
    # not UTF-8: no error (upstream has no UTF-8 check); the bytes come back whole
    cmd = parse(b"U c\xff\xfe 127.0.0.1 4000 f\x80 unix:/n t\xfe%20x")
    assert raw(cmd.call_id) == b"c\xff\xfe" and raw(cmd.from_tag) == b"f\x80"
    assert cmd.notify_tag == b"t\xfe x"
    assert code_of(b"\xff") == 0


def test_token_limits():
    assert len(tokenize(b"G " + b" ".join([b"x"] * 22))[0]) == 23
    assert code_of(b"G " + b" ".join([b"x"] * 23)) == 5
    sub = b" && ".join([b"D"] * 15)
    assert len(tokenize(b"U a b c d && " + sub)) == 16
    assert code_of(b"U a b c d && " + sub + b" && D") == 5


def test_update_token_counts_decide_meaning():
    u5 = parse(b"U cid 1.2.3.4 5 ft")
    assert (u5.to_tag, u5.notify_socket) == (None, None)
    u6 = parse(b"U cid 1.2.3.4 5 ft tt")
    assert u6.to_tag == "tt"
    u7 = parse(b"U cid 1.2.3.4 5 ft sock r%2017")
    assert (u7.to_tag, u7.notify_socket, u7.notify_tag) == (None, "sock", b"r 17")
    u8 = parse(b"U cid 1.2.3.4 5 ft tt sock tag")
    assert (u8.to_tag, u8.notify_socket, u8.notify_tag) == ("tt", "sock", b"tag")


def test_modifiers():
    m = parse_update_modifiers("ASw")
    assert m.asymmetric is False and m.weak
    m = parse_update_modifiers("a6z20c0,8,101nl{pub}")
    assert m.asymmetric and m.ipv6 and m.ptime == 20 and m.codecs == "0,8,101"
    assert m.new_port and m.local == ("label", "pub")
    m = parse_update_modifiers("IEl10.0.0.1r[2001:db8::1]")
    assert m.interfaces == "ie" and m.local == ("addr", "10.0.0.1") and m.route_to == "2001:db8::1"
    m = parse_update_modifiers("Z30c18")
    assert m.ptime == 30 and m.codecs == "18"


def test_subcommands_parse():
    cmd = parse(b"U c 1.2.3.4 5 f t && L6 ::1 4000 && S ttl=5 && Sr tos=46 && Dw && C c2 f2 t2")
    kinds = [type(s) for s in cmd.subcommands]
    assert kinds == [c.SubLookup, c.SubSet, c.SubSet, c.SubDelete, c.SubCopy]
    assert cmd.subcommands[0].mods.ipv6
    assert cmd.subcommands[2].reverse and cmd.subcommands[2].name == "tos"
    assert cmd.subcommands[3].weak
    assert isinstance(parse(b"Q c f t && D").subcommands[0], c.SubDelete)
    # the L sub-command's address and port are checked like a U's (E37), at parse time
    assert code_of(b"U c 1.2.3.4 5 f t && L 127.0.0.1 notaport") == 3
    assert code_of(b"U c 1.2.3.4 5 f t && L6 ::zz 4000") == 3
    assert code_of(b"U c 1.2.3.4 5 f t && L 127.0.0.1 65536") == 3
    assert code_of(b"U c 1.2.3.4 5 f t && S ttl=\xd9\xa3") == 3     # an Arabic-Indic digit
    assert parse(b"U c 1.2.3.4 5 f t && L garbage-address-way-too-long 5").subcommands   # ignored, as in U
    assert code_of(b"U c 1.2.3.4 5 f t && L \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 5") == 3   # 8 bytes: a plausible length


def test_other_commands():
    assert parse(b"P-1 c p session f t").count == -1
    assert parse(b"P c p 0,8 f").count == 1 and parse(b"P c p 0,8 f").to_tag is None
    assert parse(b"Cps c udp:1.2.3.4:5 f t").reply_port
    assert parse(b"Na c f").both_legs
    assert parse(b"Rs c f t").single_file
    q = parse(b"Qv c f t ttl nrelayed")
    assert q.verbose and q.counters == ["ttl", "nrelayed"]
    assert parse(b"IBL").load and parse(b"ib").brief
    assert parse(b"Gv a b").names == ["a", "b"]
    assert isinstance(parse(b"vf 20050322"), c.FeatureCheck)
    assert isinstance(parse(b"x"), c.DeleteAll)


def test_url_decode():
    assert url_decode("r%2017") == b"r 17"
    assert url_decode("%25%25T%25%25") == b"%%T%%"
    assert url_decode("plain") == b"plain"
    for bad in ("%", "%1", "%%", "%G0"):
        with pytest.raises(CommandError):
            url_decode(bad)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_parser_never_crashes(data):
    try:
        parse(data)
    except CommandError as exc:
        assert exc.code in {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 35}


def test_strict_latching_modifier_k():
    """k (strict latching) is ours; the letters around it stay E35 as upstream's."""
    assert parse_update_modifiers("k").strict
    assert parse_update_modifiers("Kz20").strict
    assert not parse_update_modifiers("a").strict
    for letter in "bdfgjmopqtuvxy":
        with pytest.raises(CommandError) as err:
            parse_update_modifiers(letter)
        assert err.value.code == 35


def test_route_reads_what_the_workers_front_end_needs_and_agrees_with_parse():
    """--workers: the front end only routes (the worker parses, once); the
    Call-ID, U-ness and && C source it reads are the ones parse gives."""
    from rtpproxy_py.protocol.parse import route
    from rtpproxy_py.protocol.commands import SubCopy, Update
    for data in (b"U cid 192.0.2.1 4000 ft tt && C other ft2 tt2", b"U cid 192.0.2.1 4000 ft",
                 b"L cid 192.0.2.1 4000 ft tt", b"D cid ft", b"P2 cid prompt 0 ft", b"S cid ft",
                 b"R cid ft tt", b"C cid udp:192.0.2.9:4000 ft", b"NA cid ft", b"Qv cid ft tt",
                 b"U c\xff 192.0.2.1 4000 ft", b"I", b"G", b"V", b"VF 20040107", b"X"):
        cmd = parse(data)
        source = next((s.call_id for s in getattr(cmd, "subcommands", None) or ()
                       if isinstance(s, SubCopy)), None)
        expected = (getattr(cmd, "call_id", None), isinstance(cmd, Update) and not cmd.lookup, source)
        assert route(data) == expected, data
    # what every command shares is checked as parse checks it
    for data in (b"Z cid", b"D cid", b"Sx cid ft", b"", b"D cid ft && D"):
        with pytest.raises(CommandError) as parsed:
            parse(data)
        with pytest.raises(CommandError) as routed:
            route(data)
        assert routed.value.code == parsed.value.code, data
