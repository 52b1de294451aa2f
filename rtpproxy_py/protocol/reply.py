"""Reply text (control-protocol.md section 3). Every reply ends in one LF."""

from typing import Optional, Sequence, Union


def number(value: int) -> str:
    return "%d\n" % value


def error(code: int) -> str:
    return "E%d\n" % code


def port(port: int, addr: Optional[str] = None, ipv6: bool = False) -> str:
    """``PORT``, ``PORT ADDR`` or ``PORT ADDR 6`` (addr None: wildcard listen)."""
    if addr is None:
        return "%d" % port
    if ipv6:
        return "%d %s 6" % (port, addr)
    return "%d %s" % (port, addr)


def with_subcommand_results(main: str, results: Sequence[Union[None, str, int]]) -> str:
    """Append `` && RESULT`` items for executed sub-commands (section 6.3).

    ``results`` holds, in order, ``None`` for a silent success, a string for a
    success with text, or an int (negative) for the failure that stopped the run.
    """
    last_printed = -1
    for i, result in enumerate(results):
        if result is not None:
            last_printed = i
    parts = [main]
    for result in results[:last_printed + 1]:
        parts.append("0" if result is None else str(result))
    return " && ".join(parts) + "\n"
