"""A small parser for the part of UCL that rtpproxy configuration files use
(modules.md 2.3), with the quirks of upstream's libucl kept:

* ``key = value``, ``key: value`` and ``key value`` pairs, ended by a line
  end, ``;`` or ``,``; ``name { ... }`` / ``name: { ... }`` objects; a whole
  JSON document is accepted too;
* ``#`` comments to the end of the line and ``/* ... */`` comments; ``//`` is
  *not* a comment (it starts a key);
* an unquoted value runs to the end of the line (``capt_port = 9060 capt_id =
  7`` gives capt_port the string ``9060 capt_id = 7``) and is then typed:
  decimal or ``0x`` integers with the UCL multipliers (``9k`` = 9000,
  ``9kb`` = 9216), floats, booleans, else a string; quoted values are strings;
* an unquoted value may not start with ``:`` or ``=`` (``::1`` must be quoted).

Objects are lists of (key, value) pairs in file order, duplicates kept, so
callers decide what a repeated key means.
"""

import re
from typing import Union

Value = Union[str, int, float, bool, None, "UclObject", list]


class UclError(Exception):
    """The text is not UCL (the caller reports it as upstream does)."""


class UclObject(list):
    """[(key, value)] in file order."""

    def first(self, key, fold_case=False):
        for k, v in self:
            if k == key or (fold_case and k.lower() == key.lower()):
                return v
        return None


_MULTIPLIERS = {"k": 1000, "m": 1000 ** 2, "g": 1000 ** 3,
                "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}
_INT = re.compile(r"([+-]?)(0x[0-9a-fA-F]+|[0-9]+)(k|m|g|kb|mb|gb)?\Z", re.I)
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?\Z")
_BOOLEANS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_KEY_END = set(" \t\r\n=:{[;,#\"")
_VALUE_END = set("\n;,}]#")


def parse(text: str) -> UclObject:
    """The top-level object of a UCL/JSON document; UclError if malformed or empty."""
    parser = _Parser(text)
    parser.skip()
    if parser.at_end():
        raise UclError("empty document")
    if parser.peek() == "{":
        parser.pos += 1
        obj = parser.object_body("}")
        parser.skip()
        if not parser.at_end():
            raise UclError("text after the top-level object")
        return obj
    return parser.object_body(None)


def typed(raw: str) -> Value:
    """An unquoted scalar -> int, float, bool, None or str."""
    m = _INT.match(raw)
    if m:
        sign, digits, suffix = m.groups()
        number = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
        if suffix:
            number *= _MULTIPLIERS[suffix.lower()]
        return -number if sign == "-" else number
    if _FLOAT.match(raw):
        return float(raw)
    lower = raw.lower()
    if lower in _BOOLEANS:
        return _BOOLEANS[lower]
    if lower == "null":
        return None
    return raw


class _Parser:
    def __init__(self, text):
        self.text = text
        self.pos = 0

    def at_end(self):
        return self.pos >= len(self.text)

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, newlines=True):
        """Whitespace and comments."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise UclError("unfinished comment")
                self.pos = end + 2
            else:
                return

    def object_body(self, close):
        obj = UclObject()
        while True:
            self.skip()
            if self.at_end():
                if close is not None:
                    raise UclError("missing %r" % close)
                return obj
            if close is not None and self.peek() == close:
                self.pos += 1
                return obj
            key = self.key()
            self.skip(newlines=False)
            if self.peek() in ("=", ":"):
                self.pos += 1
                self.skip()
            obj.append((key, self.value()))
            self.skip(newlines=False)
            if self.peek() in (";", ","):
                self.pos += 1

    def key(self):
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _KEY_END \
                and self.text[self.pos] not in "}]":
            self.pos += 1
        if self.pos == start:
            raise UclError("a key is expected at offset %d" % start)
        return self.text[start:self.pos]

    def value(self):
        ch = self.peek()
        if ch == "":
            raise UclError("a value is expected at the end")
        if ch == "{":
            self.pos += 1
            return self.object_body("}")
        if ch == "[":
            self.pos += 1
            return self.array()
        if ch == '"':
            return self.quoted()
        if ch in ":=;,}]":
            raise UclError("a value is expected at offset %d" % self.pos)
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in _VALUE_END \
                and not text.startswith("/*", self.pos):
            self.pos += 1
        return typed(text[start:self.pos].strip())

    def array(self):
        items = []
        while True:
            self.skip()
            if self.at_end():
                raise UclError("missing ']'")
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.value())
            self.skip()
            if self.peek() == ",":
                self.pos += 1

    def quoted(self):
        text = self.text
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(text):
                raise UclError("unfinished string")
            ch = text[self.pos]
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\n":
                raise UclError("line end inside a string")
            if ch == "\\":
                esc = text[self.pos:self.pos + 1]
                self.pos += 1
                if esc == "u":
                    digits = text[self.pos:self.pos + 4]
                    if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                        raise UclError("bad \\u escape")
                    out.append(chr(int(digits, 16)))
                    self.pos += 4
                elif esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                else:
                    raise UclError("bad escape")
            else:
                out.append(ch)


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def describe(value: Value) -> str:
    """A value as upstream's messages print it (floats with six decimals)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "%f" % value
    if value is None:
        return "null"
    return str(value)

