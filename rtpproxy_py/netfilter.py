"""The kernel interfaces --kernel_offload uses, with no program to run per
change: nftables through libnftables (ctypes), and conntrack entry deletion
over netlink. Both need CAP_NET_ADMIN in the network namespace."""

import ctypes
import ctypes.util
import errno
import json
import socket
import struct

# libnftables output flags (nftables/libnftables.h)
_OUTPUT_JSON = 1 << 4


class NftError(Exception):
    """nft refused a command; str() is its error text."""


class Nftables:
    """An nft context in this process. Raises OSError without libnftables."""

    def __init__(self):
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def run(self, commands, as_json=False):
        """Run nft commands (one transaction); their output, parsed if ``as_json``."""
        lib, ctx = self.lib, self.ctx
        lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON if as_json else 0)
        failed = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        output = lib.nft_ctx_get_output_buffer(ctx) or b""
        error = lib.nft_ctx_get_error_buffer(ctx) or b""
        if failed:
            raise NftError(error.decode("utf-8", "replace").strip() or "nft failed")
        if as_json:
            return json.loads(output) if output.strip() else {}
        return output.decode()

    def close(self):
        if self.ctx:
            self.lib.nft_ctx_free(self.ctx)
            self.ctx = None


# netlink / ctnetlink numbers (linux/netlink.h, linux/netfilter/nfnetlink*.h)
_NETLINK_NETFILTER = 12
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_CT_DELETE = (1 << 8) | 2          # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE
_NESTED = 0x8000
_CTA_TUPLE_ORIG, _CTA_ZONE = 1, 18
_CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2
_CTA_IP_V4_SRC, _CTA_IP_V4_DST = 1, 2
_CTA_PROTO_NUM, _CTA_PROTO_SRC_PORT, _CTA_PROTO_DST_PORT = 1, 2, 3


def _attr(kind, payload):
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def delete_request(seq, source, destination, zone=0):
    """The netlink message deleting the UDP conntrack entry that has the tuple
    ``source`` -> ``destination`` ((ip, port) each) in either direction."""
    address = (_attr(_CTA_IP_V4_SRC, socket.inet_aton(source[0]))
               + _attr(_CTA_IP_V4_DST, socket.inet_aton(destination[0])))
    proto = (_attr(_CTA_PROTO_NUM, bytes([socket.IPPROTO_UDP]))
             + _attr(_CTA_PROTO_SRC_PORT, struct.pack("!H", source[1]))
             + _attr(_CTA_PROTO_DST_PORT, struct.pack("!H", destination[1])))
    tuple_ = _attr(_CTA_TUPLE_IP | _NESTED, address) + _attr(_CTA_TUPLE_PROTO | _NESTED, proto)
    body = (struct.pack("=BBH", socket.AF_INET, 0, 0) + _attr(_CTA_TUPLE_ORIG | _NESTED, tuple_)
            + _attr(_CTA_ZONE, struct.pack("!H", zone)))
    return struct.pack("=IHHII", 16 + len(body), _CT_DELETE, _NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body


class Conntrack:
    """Deletes conntrack entries (a netlink socket kept open)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.seq = 0

    def delete(self, source, destination, zone=0):
        """True if an entry was deleted, False if there was none."""
        self.seq += 1
        self.sock.send(delete_request(self.seq, source, destination, zone))
        while True:
            data = self.sock.recv(65536)
            length, kind, _, seq, _ = struct.unpack_from("=IHHII", data)
            if kind == _NLMSG_ERROR and seq == self.seq:
                code = -struct.unpack_from("=i", data, 16)[0]
                if code in (0, errno.ENOENT):
                    return code == 0
                raise OSError(code, "conntrack delete: %s" % errno.errorcode.get(code, code))

    def close(self):
        self.sock.close()


def has_net_admin():
    """CAP_NET_ADMIN in this process's effective set."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        pass
    return False
