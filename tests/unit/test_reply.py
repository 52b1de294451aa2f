from rtpproxy_py.protocol.reply import port, with_subcommand_results


def test_port_forms():
    assert port(23820) == "23820"
    assert port(23820, "192.0.2.1") == "23820 192.0.2.1"
    assert port(23820, "2001:db8::1", True) == "23820 2001:db8::1 6"


def test_subcommand_results_encoding():
    assert with_subcommand_results("1", [None]) == "1\n"
    assert with_subcommand_results("1", [None, "2"]) == "1 && 0 && 2\n"
    assert with_subcommand_results("1", [-1]) == "1 && -1\n"
    assert with_subcommand_results("1", [None, None, -1]) == "1 && 0 && 0 && -1\n"
