"""STUN messages as ICE uses them (RFC 5389 / RFC 8445), without sockets.

Just what an ICE-lite agent and a test peer need: parse a message, check
MESSAGE-INTEGRITY (short-term credentials: the key is the password) and
FINGERPRINT, and build binding responses and requests. Checked against the
RFC 5769 test vectors (tests/unit/test_stun.py).
"""

import hmac
import ipaddress
import socket
import struct
import zlib
from hashlib import sha1
from typing import Dict, List, Optional, Tuple

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")
_ATTR = struct.Struct("!HH")

BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
BINDING_INDICATION = 0x0011

MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A

_FINGERPRINT_XOR = 0x5354554E
ERROR_REASONS = {400: "Bad Request", 401: "Unauthorized", 487: "Role Conflict"}


def is_stun(data: bytes) -> bool:
    """A STUN message as ICE demultiplexes it: 20+ bytes, top bits 00, the cookie."""
    return len(data) >= 20 and data[0] < 4 and data[4:8] == b"\x21\x12\xa4\x42"


class Message:
    """A parsed or to-be-built STUN message; attributes in wire order."""

    def __init__(self, msg_type: int, transaction: bytes, attributes=None):
        self.msg_type = msg_type
        self.transaction = transaction
        self.attributes: List[Tuple[int, bytes]] = list(attributes or [])
        self.raw = b""                      # the bytes it was parsed from
        self.integrity_at: Optional[int] = None   # offset of MESSAGE-INTEGRITY in raw
        self.fingerprint_ok: Optional[bool] = None  # None: no FINGERPRINT

    def get(self, attr_type: int) -> Optional[bytes]:
        for kind, value in self.attributes:
            if kind == attr_type:
                return value
        return None

    def has(self, attr_type: int) -> bool:
        return any(kind == attr_type for kind, _ in self.attributes)

    # --- checks -------------------------------------------------------------

    def integrity_ok(self, key: bytes) -> bool:
        """MESSAGE-INTEGRITY present and made with ``key``."""
        at = self.integrity_at
        if at is None:
            return False
        head = bytearray(self.raw[:at])
        struct.pack_into("!H", head, 2, at + 24 - 20)   # length as if MI ended the message
        expected = hmac.new(key, bytes(head), sha1).digest()
        return hmac.compare_digest(expected, self.raw[at + 4:at + 24])

    # --- building ----------------------------------------------------------------

    def add(self, attr_type: int, value: bytes = b""):
        self.attributes.append((attr_type, value))
        return self

    def encode(self, integrity_key: Optional[bytes] = None, fingerprint: bool = True,
               pad: bytes = b"\0") -> bytes:
        """The wire form; ``pad``: the padding byte (RFC 5769's vectors use spaces)."""
        body = b"".join(_attribute(kind, value, pad) for kind, value in self.attributes)
        if integrity_key is not None:
            head = HEADER.pack(self.msg_type, len(body) + 24, MAGIC_COOKIE, self.transaction)
            mac = hmac.new(integrity_key, head + body, sha1).digest()
            body += _attribute(MESSAGE_INTEGRITY, mac)
        if fingerprint:
            head = HEADER.pack(self.msg_type, len(body) + 8, MAGIC_COOKIE, self.transaction)
            crc = (zlib.crc32(head + body) ^ _FINGERPRINT_XOR) & 0xFFFFFFFF
            body += _attribute(FINGERPRINT, struct.pack("!I", crc))
        return HEADER.pack(self.msg_type, len(body), MAGIC_COOKIE, self.transaction) + body


def _attribute(kind: int, value: bytes, pad: bytes = b"\0") -> bytes:
    return _ATTR.pack(kind, len(value)) + value + pad * (-len(value) % 4)


def parse(data: bytes) -> Optional[Message]:
    """The message in ``data``, or None if it is not well-formed STUN."""
    if not is_stun(data):
        return None
    msg_type, length, _, transaction = HEADER.unpack_from(data)
    if length % 4 or 20 + length != len(data):
        return None
    message = Message(msg_type, transaction)
    message.raw = bytes(data)
    pos = 20
    while pos < len(data):
        if pos + 4 > len(data):
            return None
        kind, size = _ATTR.unpack_from(data, pos)
        end = pos + 4 + size
        if end > len(data):
            return None
        value = bytes(data[pos + 4:end])
        if kind == MESSAGE_INTEGRITY and message.integrity_at is None:
            if size != 20:
                return None
            message.integrity_at = pos
        elif kind == FINGERPRINT:
            if size != 4:
                return None
            head = bytearray(data[:pos])
            crc = (zlib.crc32(bytes(head)) ^ _FINGERPRINT_XOR) & 0xFFFFFFFF
            message.fingerprint_ok = struct.unpack("!I", value)[0] == crc
        message.attributes.append((kind, value))
        pos = end + (-size % 4)
    return message


def xor_address(address: Tuple, transaction: bytes) -> bytes:
    """An (ip, port) as an XOR-MAPPED-ADDRESS value."""
    ip = ipaddress.ip_address(address[0])
    port = address[1] ^ (MAGIC_COOKIE >> 16)
    key = struct.pack("!I", MAGIC_COOKIE) + transaction
    raw = bytes(a ^ b for a, b in zip(ip.packed, key))
    return struct.pack("!BBH", 0, 1 if ip.version == 4 else 2, port) + raw


def read_xor_address(value: bytes, transaction: bytes) -> Tuple[str, int]:
    family, port = value[1], struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    key = struct.pack("!I", MAGIC_COOKIE) + transaction
    raw = bytes(a ^ b for a, b in zip(value[4:], key))
    host = socket.inet_ntop(socket.AF_INET if family == 1 else socket.AF_INET6, raw)
    return host, port


def error_code(code: int) -> bytes:
    reason = ERROR_REASONS.get(code, "").encode()
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason


def read_error_code(value: bytes) -> int:
    return value[2] * 100 + value[3]


def attribute_map(message: Message) -> Dict[int, bytes]:
    return {kind: value for kind, value in reversed(message.attributes)}
