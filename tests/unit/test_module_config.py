"""--dso / --config: which built-in module a file selects, the UCL subset
upstream accepts (modules.md 2.3) and every refusal of 2.2-2.4 and 5.2, with
upstream's messages. Module files are empty files with the right names."""

import os

import pytest

from rtpproxy_py.cli import parse_args
from rtpproxy_py.config import ConfigError, build
from rtpproxy_py.modules import ucl
from rtpproxy_py.modules.loader import Loader, LoadError


@pytest.fixture
def moddir(tmp_path):
    for name in ("acct_csv", "acct_rtcp_hep", "catch_dtmf", "badmod1", "badmod2", "badmod3",
                 "badmod4", "dtls_gw"):
        for suffix in ("", "_debug"):
            (tmp_path / ("rtpp_%s%s.so" % (name, suffix))).write_bytes(b"")
    return tmp_path


def load(tmp_path, dsos=(), conf=None, debug=False):
    """(specs, stderr lines) or raises LoadError (its lines in .lines_seen)."""
    lines = []
    loader = Loader(debug, workdir=str(tmp_path), report=lines.append)
    try:
        for path in dsos:
            loader.dso(path)
        if conf is not None:
            (tmp_path / "rtpproxy.conf").write_text(conf)
            loader.config_file("rtpproxy.conf")
    except LoadError as exc:
        exc.lines_seen = lines
        raise
    return loader.specs, lines


# --- the UCL subset ------------------------------------------------------------

def test_ucl_pair_forms_comments_and_bare_strings():
    top = ucl.parse("""
    # comment
    a = 1; b: 0x10, c 9k
    /* block
       comment */
    d = 9060 capt_id = 7
    e = "quoted # not a comment"
    f = 1.5
    g = true
    // = x
    obj: { inner = "v" }
    """)
    assert top == [("a", 1), ("b", 16), ("c", 9000), ("d", "9060 capt_id = 7"),
                   ("e", "quoted # not a comment"), ("f", 1.5), ("g", True), ("//", "x"),
                   ("obj", [("inner", "v")])]


def test_ucl_accepts_json_and_refuses_broken_text():
    assert ucl.parse('{"modules": {"x": {"load": "/a"}}}') == [("modules", [("x", [("load", "/a")])])]
    for text in ("", "  \n# only a comment\n", "modules {:", "modules { a = 1", "h = ::1",
                 'h = "open'):
        with pytest.raises(ucl.UclError):
            ucl.parse(text)


# --- --dso ---------------------------------------------------------------------

def test_dso_selects_module_by_file_name_and_numbers_instances(moddir):
    specs, _ = load(moddir, ["rtpp_catch_dtmf.so", str(moddir / "rtpp_catch_dtmf.so"), "rtpp_acct_csv.so"])
    assert [(s.name, s.module_id, s.instance) for s in specs] == [
        ("catch_dtmf", 3, 1), ("catch_dtmf", 3, 2), ("acct_csv", 1, 1)]
    assert specs[0].path == str(moddir / "rtpp_catch_dtmf.so") and specs[0].workdir == str(moddir)
    specs, _ = load(moddir, ["rtpp_catch_dtmf_debug.so"], debug=True)
    assert specs[0].name == "catch_dtmf"


@pytest.mark.parametrize("name,debug", [
    ("rtpp_badmod1.so", False), ("rtpp_badmod2.so", False), ("rtpp_badmod3.so", False),
    ("rtpp_badmod4.so", False), ("rtpp_badmod3_debug.so", True), ("rtpp_badmod3.so", True),
    ("rtpp_catch_dtmf_debug.so", False), ("rtpp_catch_dtmf.so", True), ("rtpp_acct_csv_debug.so", False),
])
def test_dso_incompatible_modules_are_refused_as_upstream(moddir, name, debug):
    with pytest.raises(LoadError) as info:
        load(moddir, [name], debug=debug)
    path = str(moddir / name)
    assert str(info.value) == "%s: dymanic module load has failed" % path
    assert info.value.lines_seen == [
        "rtpp_mif_load: incompatible API version in the %s, consider recompiling the module" % path]


def test_dso_missing_empty_not_a_module_and_needing_config(moddir):
    for arg in ("", "nonexistent.so"):
        with pytest.raises(LoadError) as info:
            load(moddir, [arg])
        assert str(info.value) == "realpath: %s: No such file or directory" % arg
    (moddir / "passwd").write_text("root:x:0:0\n")
    with pytest.raises(LoadError) as info:
        load(moddir, ["passwd"])
    assert info.value.lines_seen == [
        "rtpp_modules_lookup: can't dlopen() module: %s/passwd: invalid ELF header" % moddir]
    with pytest.raises(LoadError) as info:
        load(moddir, ["rtpp_acct_rtcp_hep.so"])
    assert str(info.value) == ("%s/rtpp_acct_rtcp_hep.so: dymanic module requires configuration, "
                               "cannot be loaded via --dso option" % moddir)


def test_a_failing_dso_stops_before_later_ones(moddir):
    with pytest.raises(LoadError):
        load(moddir, ["rtpp_badmod1.so", "nonexistent.so"])


# --- --config ------------------------------------------------------------------

def test_config_sections_defaults_duplicates_and_quirks(moddir):
    conf = """
    other_section { foo = bar }
    Modules {
        foo { load = rtpp_catch_dtmf.so }
        acct_rtcp_hep {
            capt_host = "::1"
            CAPT_PORT = 9061
            capt_port = 9062
            capt_ptype = TCP
            LOAD = /nowhere/rtpp_x.so
        }
        foo { load = /nonexistent }
        acct_csv: { }
    }
    """
    specs, _ = load(moddir, ["rtpp_catch_dtmf.so"], conf)
    assert [(s.name, s.instance, s.section) for s in specs] == [
        ("catch_dtmf", 1, None), ("catch_dtmf", 2, "foo"), ("acct_rtcp_hep", 1, "acct_rtcp_hep"),
        ("acct_csv", 1, "acct_csv")]
    assert specs[2].options == {"capt_host": "::1", "capt_port": 9062, "capt_ptype": "tcp"}
    assert specs[3].path.endswith("/rtpproxy/rtpp_acct_csv.so")
    assert load(moddir, [], "modules { }")[0] == []
    assert load(moddir, [], "nothing { }")[0] == []


BROKEN_HEP = [   # modules.md 5.6: upstream's broken1..7, then more values of 5.2
    ("capt_port = -9060", "error in config file; invalid value for port in section 'capt_port': -9060"),
    ("capt_id = -101", "error in config file; invalid value for capt_id in section 'capt_id': -101"),
    ("capt_id = garbage", "error in config file; invalid value for capt_id in section 'capt_id': 'garbage'"),
    ("capt_port = garbage", "error in config file; invalid value for port in section 'capt_port': 'garbage'"),
    ("capt_ptype = typo", "error in config file; invalid value for ptype in section 'capt_ptype': 'typo'"),
    ("capt_port = 65536", "error in config file; invalid value for port in section 'capt_port': 65536"),
    ("capt_port = 1.5", "error in config file; invalid value for port in section 'capt_port': '1.500000'"),
    ('capt_port = "9060"', "error in config file; invalid value for port in section 'capt_port': '9060'"),
    ("capt_id = 4294967296", "error in config file; invalid value for capt_id in section 'capt_id': 0"),
]


@pytest.mark.parametrize("line,message", BROKEN_HEP)
def test_broken_hep_values_are_refused_with_upstreams_message(moddir, line, message):
    key = line.split()[0]
    with pytest.raises(LoadError) as info:
        load(moddir, [], "modules {\n acct_rtcp_hep {\n  load = rtpp_acct_rtcp_hep.so\n  %s\n }\n}\n" % line)
    assert str(info.value) == "rtpp_cfile_process() failed"
    assert info.value.lines_seen == [message, "Config parsing issue in section acct_rtcp_hep",
                                     "\tparameter %s" % key]


@pytest.mark.parametrize("conf,lines", [
    ("modules {:", ["ucl_parser_get_object() failed"]),              # broken6
    ("", ["ucl_parser_get_object() failed"]),
    ("modules {\n acct_rtcp_hep {\n  unknown = 123\n }\n}\n",        # broken7
     ["Unknown key 'unknown' in section 'acct_rtcp_hep'", "Config parsing issue in section acct_rtcp_hep"]),
    ("modules {\n acct_csv {\n  logfile = /tmp/x.csv\n }\n}\n",       # upstream's own sample
     ["Unknown key 'logfile' in section 'acct_csv'", "Config parsing issue in section acct_csv"]),
    ("modules {\n x {\n  load = 5\n }\n}\n",
     ['Error: "load" parameter in x has a wrong type, string is expected']),
    ("modules {\n x {\n  load = /nonexistent/rtpp_acct_csv.so\n }\n}\n",
     ["realpath() failed: /nonexistent/rtpp_acct_csv.so: No such file or directory"]),
])
def test_broken_configs_are_refused(moddir, conf, lines):
    with pytest.raises(LoadError) as info:
        load(moddir, [], conf)
    assert str(info.value) == "rtpp_cfile_process() failed"
    assert info.value.lines_seen == lines


def test_unknown_section_without_load_and_the_modules_scalar_quirk(moddir):
    for conf, name in (("modules { nosuch { } }", "nosuch"), ("modules = 5", "modules")):
        with pytest.raises(LoadError) as info:
            load(moddir, [], conf)
        assert "rtpp_%s.so: cannot open shared object file" % name in info.value.lines_seen[0]


def test_config_build_turns_refusals_into_config_errors(moddir, monkeypatch, capsys):
    monkeypatch.chdir(moddir)
    c = build(parse_args(["--dso", "rtpp_catch_dtmf.so", "--dso", "rtpp_acct_csv.so"]))
    assert [s.name for s in c.modules] == ["catch_dtmf", "acct_csv"]
    assert build(parse_args([])).modules == []
    with pytest.raises(ConfigError) as info:
        build(parse_args(["--dso", "rtpp_badmod2.so"]))
    assert str(info.value).endswith("rtpp_badmod2.so: dymanic module load has failed")
    assert "incompatible API version" in capsys.readouterr().err
    (moddir / "c.conf").write_text("modules { acct_csv { } }\n")
    c = build(parse_args(["--config", "x.conf", "--config", "c.conf"]))     # the last one counts
    assert [s.name for s in c.modules] == ["acct_csv"]
    assert os.path.isabs(c.modules[0].workdir)


# --- M<id>:<inst> sub-commands (modules.md 3) -----------------------------------

def test_module_subcommand_syntax():
    from rtpproxy_py.protocol import commands as c
    from rtpproxy_py.protocol.errors import CommandError
    from rtpproxy_py.protocol.parse import parse
    cmd = parse(b"U c 1.2.3.4 5 f && m3:12 Hello%20x 101 h && M4:1 S")
    assert cmd.subcommands == [c.SubModule(3, 12, ["Hello%20x", "101", "h"]), c.SubModule(4, 1, ["S"])]
    assert parse(b"Q c f t && M3:1 z").subcommands == [c.SubModule(3, 1, ["z"])]
    for bad in (b"MX:1", b"M3:Y", b"M0:1", b"M1:0", b"M", b"M3", b"M3:1x", b"M3:1:1"):
        with pytest.raises(CommandError) as info:
            parse(b"U c 1.2.3.4 5 f && " + bad + b" t")
        assert info.value.code == 3
    with pytest.raises(CommandError):
        parse(b"D c f && M4:1 S")
