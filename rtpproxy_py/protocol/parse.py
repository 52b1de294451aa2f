"""Command text -> command objects (control-protocol.md sections 2, 5 and 6).

``parse(data)`` takes the bytes of one command (cookie already removed) and
returns one of the objects of ``protocol.commands`` or raises ``CommandError``
with the code upstream rtpproxy answers. The checks run in upstream's order:
tokenization (E5), command letter (E0), token count (E1), modifiers on a
command that takes none (E2), sub-commands where none are allowed (E3), then
the command's own grammar.
"""

import re
import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import commands as c
from . import errors as e
from .commands import Command, SubCommand
from .errors import CommandError

MAX_TOKENS_PER_SEGMENT = 23
MAX_SUBCOMMANDS = 15
MAX_COMMAND_BYTES = 8191

_SEPARATORS = re.compile(rb"[ \t\r\n]+")

# letter -> (min tokens, max tokens, takes modifiers, takes && sub-commands)
_GRAMMAR = {
    "u": (5, 8, True, True),
    "l": (5, 6, True, True),
    "d": (3, 4, True, False),
    "p": (5, 6, True, False),
    "s": (3, 4, False, False),
    "r": (3, 4, True, False),
    "c": (4, 5, True, False),
    "n": (3, 4, True, False),
    "q": (3, 15, True, True),
    "i": (1, 1, True, False),
    "v": (1, 1, False, False),
    "vf": (2, 2, False, False),
    "x": (1, 1, False, False),
    "g": (1, 30, True, False),
}


def tokenize(data: bytes) -> List[List[str]]:
    """Split a command into segments of str tokens (the first is the main one).

    Any byte is ordinary, as upstream has no UTF-8 check: a token is decoded
    as UTF-8 with ``surrogateescape``, so bytes that are not UTF-8 become lone
    surrogates and ``raw(token)`` gives back exactly the bytes the client sent
    (Call-IDs and tags in file names, notifications, --workers routing).
    """
    if type(data) is not bytes:
        data = bytes(data)
    if b"\0" in data:
        raise CommandError(e.SYNTAX_ERROR)      # in some token: no separator is NUL
    if b"\x0b" in data or b"\x0c" in data:
        tokens = [t for t in _SEPARATORS.split(data) if t]
    else:
        # split() takes exactly the separators above, and VT and FF, here absent
        tokens = data.split()
    if not tokens:
        raise CommandError(e.SYNTAX_ERROR)
    if len(tokens) <= MAX_TOKENS_PER_SEGMENT and b"&&" not in data:
        # one segment (the common case): every check below would pass
        return [[token.decode("utf-8", "surrogateescape") for token in tokens]]
    segments: List[List[str]] = [[]]
    for token in tokens:
        if token == b"&&":
            if not segments[-1] or len(segments) > MAX_SUBCOMMANDS:
                raise CommandError(e.SYNTAX_ERROR)
            segments.append([])
            continue
        if len(segments[-1]) == MAX_TOKENS_PER_SEGMENT:
            raise CommandError(e.SYNTAX_ERROR)
        segments[-1].append(token.decode("utf-8", "surrogateescape"))
    if not segments[-1]:
        raise CommandError(e.SYNTAX_ERROR)
    return segments


def raw(text: str) -> bytes:
    """The bytes a token (or a string built from tokens) came from."""
    return text.encode("utf-8", "surrogateescape")


def parse(data: bytes) -> Command:
    segments = tokenize(data)
    letter, modifiers = _verb(segments)
    return _PARSERS[letter](modifiers, segments[0][1:], segments[1:])


def _verb(segments: List[List[str]]) -> Tuple[str, str]:
    """(command letter, modifiers) once the checks every command shares
    passed (E0, E1, E2, E3 for sub-commands where none are allowed)."""
    main, subs = segments[0], segments[1:]
    word = main[0]
    letter = word[0].lower()
    modifiers = word[1:]
    if letter == "v" and modifiers[:1] in ("f", "F"):
        letter, modifiers = "vf", modifiers[1:]
    grammar = _GRAMMAR.get(letter)
    if grammar is None:
        raise CommandError(e.UNKNOWN_COMMAND)
    lo, hi, takes_modifiers, takes_subcommands = grammar
    if not lo <= len(main) <= hi:
        raise CommandError(e.BAD_ARG_COUNT)
    if modifiers and not takes_modifiers:
        raise CommandError(e.MODIFIERS_NOT_ALLOWED)
    if subs and not takes_subcommands:
        raise CommandError(e.SUBCOMMAND_ERROR)
    return letter, modifiers


# Commands whose first argument is a Call-ID (U L D P S R C N Q).
_NAMES_CALL = frozenset("uldpsrcnq")


def route(data: bytes) -> Tuple[Optional[str], bool, Optional[str]]:
    """What the --workers front end needs to choose the worker, without the
    command's own grammar (the worker parses the command, once):
    (Call-ID or None, whether it is a U, the Call-ID a ``&& C`` sub-command
    copies from or None). Raises CommandError as ``parse`` does for what
    every command shares (tokens, letter, count, modifiers allowed)."""
    segments = tokenize(data)
    letter, _ = _verb(segments)
    if letter not in _NAMES_CALL:
        return None, False, None
    main = segments[0]
    source = None
    if letter == "u" and len(main) in (6, 8):        # a U with a to-tag may fork (&& C)
        for sub in segments[1:]:
            if sub[0].lower() == "c" and len(sub) == 4:
                source = sub[1]
                break
    return main[1], letter == "u", source


def _parse_version(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Version:
    return c.Version()


def _parse_feature_check(modifiers: str, args: List[str], subs: List[List[str]]) -> c.FeatureCheck:
    return c.FeatureCheck(args[0])


def _parse_update(modifiers: str, args: List[str], subs: List[List[str]],
                  lookup: bool = False) -> c.Update:
    mods = parse_update_modifiers(modifiers)
    call_id, addr, port, from_tag = args[:4]
    to_tag: Optional[str] = None
    notify_socket: Optional[str] = None
    notify_tag: Optional[str] = None
    rest = args[4:]
    if len(rest) == 1:
        to_tag = rest[0]
    elif len(rest) == 2:
        notify_socket, notify_tag = rest
    elif len(rest) == 3:
        to_tag, notify_socket, notify_tag = rest
    tag = url_decode(notify_tag) if notify_tag is not None else None
    cmd = c.Update(lookup, mods, call_id, addr, port, from_tag, to_tag,
                   notify_socket, tag)
    if subs:
        cmd.subcommands = [_parse_subcommand(s, cmd) for s in subs]
    return cmd


def _parse_lookup(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Update:
    return _parse_update(modifiers, args, subs, lookup=True)


def _tags(args: List[str]) -> Tuple[str, Optional[str]]:
    """(from_tag, to_tag or None) from the tail of a command."""
    return args[0], (args[1] if len(args) > 1 else None)


def _parse_delete(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Delete:
    weak = False
    for ch in modifiers:
        if ch not in "wW":
            raise CommandError(e.DELETE_BAD_MODIFIER)
        weak = True
    return c.Delete(weak, args[0], *_tags(args[1:]))


_SIGNED_INT = re.compile(r"[+-]?[0-9]+\Z")


def _parse_play(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Play:
    if modifiers:
        if not _SIGNED_INT.match(modifiers):
            raise CommandError(e.BAD_PLAY_COUNT)
        count = int(modifiers)
    else:
        count = 1
    call_id, prompt, codecs = args[:3]
    return c.Play(count, call_id, prompt, codecs, *_tags(args[3:]))


def _parse_stop_play(modifiers: str, args: List[str], subs: List[List[str]]) -> c.StopPlay:
    return c.StopPlay(args[0], *_tags(args[1:]))


def _parse_record(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Record:
    single = False
    for ch in modifiers.lower():
        if ch == "s":
            single = True
        elif ch == "p":
            raise CommandError(e.RECORD_MODIFIER_NOT_ALLOWED)
        else:
            raise CommandError(e.RECORD_BAD_MODIFIER)
    return c.Record(single, args[0], *_tags(args[1:]))


def _parse_copy(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Copy:
    single = reply_port = False
    for ch in modifiers.lower():
        if ch == "s":
            single = True
        elif ch == "p":
            reply_port = True
        else:
            raise CommandError(e.RECORD_BAD_MODIFIER)
    return c.Copy(single, reply_port, args[0], args[1], *_tags(args[2:]))


def _parse_stop_record(modifiers: str, args: List[str], subs: List[List[str]]) -> c.StopRecord:
    mods = modifiers.lower()
    if mods and mods[0] != "a":
        raise CommandError(e.RECORD_BAD_MODIFIER)
    if len(mods) > 1:
        raise CommandError(e.RECORD_MODIFIER_NOT_ALLOWED)
    return c.StopRecord(mods == "a", args[0], *_tags(args[1:]))


def _parse_query(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Query:
    verbose = False
    for ch in modifiers:
        if ch not in "vV":
            raise CommandError(e.QUERY_BAD_MODIFIER)
        verbose = True
    call_id, from_tag = args[:2]
    to_tag = args[2] if len(args) > 2 else None
    cmd = c.Query(verbose, call_id, from_tag, to_tag, list(args[3:]))
    if subs:
        cmd.subcommands = [_parse_subcommand(s, cmd) for s in subs]
    return cmd


def _parse_info(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Info:
    brief = load = False
    for ch in modifiers.lower():
        if ch == "b":
            brief = True
        elif ch == "l":
            load = True
        else:
            raise CommandError(e.INFO_BAD_MODIFIER)
    return c.Info(brief, load)


def _parse_delete_all(modifiers: str, args: List[str], subs: List[List[str]]) -> c.DeleteAll:
    return c.DeleteAll()


def _parse_stats(modifiers: str, args: List[str], subs: List[List[str]]) -> c.Stats:
    verbose = False
    for ch in modifiers:
        if ch not in "vV":
            raise CommandError(e.STATS_BAD_MODIFIER)
        verbose = True
    if len(args) > 29:
        raise CommandError(e.BAD_ARG_COUNT)
    return c.Stats(verbose, list(args))


_PARSERS: Dict[str, Callable[[str, List[str], List[List[str]]], Command]] = {
    "u": _parse_update,
    "l": _parse_lookup,
    "d": _parse_delete,
    "p": _parse_play,
    "s": _parse_stop_play,
    "r": _parse_record,
    "c": _parse_copy,
    "n": _parse_stop_record,
    "q": _parse_query,
    "i": _parse_info,
    "v": _parse_version,
    "vf": _parse_feature_check,
    "x": _parse_delete_all,
    "g": _parse_stats,
}


# --- U/L modifiers -------------------------------------------------------

def _take(text: str, pos: int, allowed: str) -> Tuple[str, int]:
    end = pos
    while end < len(text) and text[end] in allowed:
        end += 1
    return text[pos:end], end


def _take_address(text: str, pos: int, error: int) -> Tuple[Tuple[str, str], int]:
    """Read ``1.2.3.4``, ``[v6]`` or ``{label}`` at ``pos`` (labels only for ``l``).

    Returns ((kind, value), new position); kind is "addr" or "label".
    """
    if pos < len(text) and text[pos] in "[{":
        close = "]" if text[pos] == "[" else "}"
        end = text.find(close, pos + 1)
        if end < 0 or end == pos + 1:
            raise CommandError(error)
        value = text[pos + 1:end]
        if close == "}":
            if error != e.BAD_LOCAL_ADDR_SYNTAX:
                raise CommandError(error)
            return ("label", value), end + 1
        return ("addr6", value), end + 1
    value, end = _take(text, pos, "0123456789.")
    try:
        socket.inet_pton(socket.AF_INET, value)
    except OSError:
        raise CommandError(error) from None
    return ("addr", value), end


_HEX_ADDRESS = re.compile(r"[0-9a-fA-F:.]+\Z")


# What a U/L without modifier letters carries (most do): one object, which
# nothing changes after parsing, instead of a new one per command.
_NO_MODIFIERS = c.UpdateModifiers()


def parse_update_modifiers(text: str) -> c.UpdateModifiers:
    if not text:
        return _NO_MODIFIERS
    mods = c.UpdateModifiers()
    pos = 0
    while pos < len(text):
        ch = text[pos].lower()
        pos += 1
        if ch == "a":
            mods.asymmetric = True
        elif ch == "s":
            mods.asymmetric = False
        elif ch == "w":
            mods.weak = True
        elif ch == "6":
            mods.ipv6 = True
        elif ch in "ei":
            if len(mods.interfaces) == 2:
                raise CommandError(e.EXTERNAL_IF_INVALID if ch == "e" else e.INTERNAL_IF_INVALID)
            mods.interfaces += ch
        elif ch == "z":
            digits, pos = _take(text, pos, "0123456789")
            if not digits or not 0 < int(digits) < 1000:
                raise CommandError(e.BAD_PTIME)
            mods.ptime = int(digits)
        elif ch == "c":
            codecs, pos = _take(text, pos, "0123456789,")
            if not codecs or mods.codecs is not None:
                raise CommandError(e.BAD_CODECS)
            mods.codecs = codecs
        elif ch == "l":
            (kind, value), pos = _take_address(text, pos, e.BAD_LOCAL_ADDR_SYNTAX)
            mods.local = ("label" if kind == "label" else "addr", value)
        elif ch == "r":
            (kind, value), pos = _take_address(text, pos, e.BAD_REMOTE_ADDR_SYNTAX)
            if kind == "addr6":
                try:
                    socket.inet_pton(socket.AF_INET6, value)
                except (OSError, UnicodeError):     # UnicodeError: bytes that are not UTF-8
                    # hex digits and colons that are no address: no route (E32,
                    # as upstream: r[1:2:3:4:5]); anything else is bad syntax
                    bad = e.NO_ROUTE_TO_REMOTE if _HEX_ADDRESS.match(value) else e.BAD_REMOTE_ADDR_SYNTAX
                    raise CommandError(bad) from None
            mods.route_to = value
        elif ch == "n":
            mods.new_port = True
        elif ch == "k":
            mods.strict = True
        else:
            raise CommandError(e.UPDATE_BAD_MODIFIER)
    return mods


# --- sub-commands ----------------------------------------------------------

def _parse_subcommand(tokens: List[str], main: Command) -> SubCommand:
    try:
        return _parse_subcommand_tokens(tokens, main)
    except CommandError:
        raise CommandError(e.SUBCOMMAND_ERROR) from None


# M<id>:<inst>; whether such a module is loaded is the dispatcher's check
_MODULE_WORD = re.compile(r"[Mm]([0-9]+):([0-9]+)\Z")


def _has_both_tags(main: Command) -> bool:
    return isinstance(main, c.Update) and not main.lookup and main.to_tag is not None


def _parse_subcommand_tokens(tokens: List[str], main: Command) -> SubCommand:
    word = tokens[0]
    letter, mods = word[0].lower(), word[1:]
    if letter == "d" and len(tokens) == 1 and mods.lower() in ("", "w"):
        return c.SubDelete(weak=bool(mods))
    if letter == "s" and len(tokens) == 2 and mods.lower() in ("", "r"):
        name, sep, value = tokens[1].partition("=")
        if sep and name in ("ttl", "tos") and _DIGITS.match(value) and int(value) > 0:
            return c.SubSet(bool(mods), name, int(value))
    if letter == "l" and len(tokens) == 3 and _has_both_tags(main):
        lookup_mods = parse_update_modifiers(mods)
        remote_sockaddr(tokens[1], tokens[2], lookup_mods.ipv6)   # E37 here: E3 for the whole command
        return c.SubLookup(lookup_mods, tokens[1], tokens[2])
    if letter == "c" and len(tokens) == 4 and not mods and _has_both_tags(main):
        return c.SubCopy(*tokens[1:])
    module = _MODULE_WORD.match(word if isinstance(word, str) else word.decode("latin-1"))
    if module and int(module.group(1)) > 0 and int(module.group(2)) > 0:
        return c.SubModule(int(module.group(1)), int(module.group(2)), list(tokens[1:]))
    raise CommandError(e.SUBCOMMAND_ERROR)


_DIGITS = re.compile(r"[0-9]+\Z")
_AF_INET = socket.AF_INET
_inet_pton, _inet_ntop = socket.inet_pton, socket.inet_ntop


def remote_sockaddr(addr: str, port: str, ipv6: bool) -> Optional[Tuple[Any, ...]]:
    """The remote address a U/L (or an ``L`` sub-command) carries, section 5.7:
    None when its length is implausible for the family (silently ignored),
    else the numeric sockaddr; anything else is E37."""
    lo, hi = (2, 45) if ipv6 else (7, 15)
    # upstream counts bytes (an ASCII token has as many as characters)
    if not lo <= (len(addr) if addr.isascii() else len(raw(addr))) <= hi:
        return None
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    try:
        if not _DIGITS.match(port):
            raise ValueError
        number = int(port)
        if number > 65535:
            raise ValueError
        if not ipv6:
            # A plain dotted quad (what SIP proxies send) is its own numeric
            # form: no resolver call. Anything else (127.1, 0x7f.0.0.1, 010.0.0.1
            # and E37 material) goes to getaddrinfo, as before.
            try:
                if _inet_ntop(_AF_INET, _inet_pton(_AF_INET, addr)) == addr:
                    return (addr, number)
            except (OSError, UnicodeError):
                pass
        return socket.getaddrinfo(addr, number, family, socket.SOCK_DGRAM, 0,
                                  socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)[0][4]
    except (ValueError, socket.gaierror, UnicodeError):
        raise CommandError(e.BAD_REMOTE_ADDR) from None


# --- notify tags -----------------------------------------------------------

_HEX = "0123456789abcdefABCDEF"


def url_decode(text: str) -> bytes:
    """Decode ``%XX`` escapes of a notify tag; a malformed escape is E10."""
    data = raw(text)
    if b"%" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == 0x25:  # '%'
            pair = data[i + 1:i + 3].decode("ascii", "replace")
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise CommandError(e.BAD_NOTIFY_TAG)
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(ch)
            i += 1
    return bytes(out)
