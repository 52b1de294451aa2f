"""acct_rtcp_hep (modules.md 5): every RTCP packet received on a session's
RTCP sockets is exported to a HEP v3 collector (Homer) as JSON, over UDP or
TCP; the packet is relayed as usual. Configured only through --config:
``capt_host``, ``capt_port``, ``capt_ptype``, ``capt_id``.

Sends never block the packet path: UDP sends one datagram per message, TCP
writes what the socket takes and keeps the rest of a message (up to
MAX_PENDING bytes) for the next send. More than MAX_ERRORS failed sends make
the module reconnect (upstream pauses 2 s; here the reconnect is tried at the
next packet, at most once per RECONNECT_PAUSE).
"""

import errno
import logging
import os
import socket
import sys
import time

from . import Module, ModuleStartError, OptionError
from . import hep
from .ucl import describe

log = logging.getLogger("rtpproxy")

DEFAULTS = {"capt_host": "10.0.0.1", "capt_port": 9060, "capt_ptype": "udp", "capt_id": 101}
MAX_ERRORS = 50
RECONNECT_PAUSE = 2.0
MAX_PENDING = 256 * 1024


def _c_int(value):
    """A number printed as a C int (upstream's message for capt_id)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class AcctRtcpHep(Module):
    name = "acct_rtcp_hep"
    module_id = 2
    config_keys = ("capt_host", "capt_port", "capt_ptype", "capt_id")
    needs_config = True

    @classmethod
    def check_option(cls, key, value):
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if key == "capt_host":
            return describe(value)
        if key == "capt_port":
            if not is_int:
                raise OptionError("error in config file; invalid value for port in section "
                                  "'capt_port': '%s'" % describe(value))
            if not 1 <= value <= 65535:
                raise OptionError("error in config file; invalid value for port in section "
                                  "'capt_port': %d" % value)
            return value
        if key == "capt_ptype":
            if not isinstance(value, str) or value.lower() not in ("udp", "tcp"):
                raise OptionError("error in config file; invalid value for ptype in section "
                                  "'capt_ptype': '%s'" % describe(value))
            return value.lower()
        if key == "capt_id":
            if not is_int:
                raise OptionError("error in config file; invalid value for capt_id in section "
                                  "'capt_id': '%s'" % describe(value))
            if not 0 <= value <= 0xFFFFFFFF:
                raise OptionError("error in config file; invalid value for capt_id in section "
                                  "'capt_id': %d" % _c_int(value))
            return value
        return value

    def __init__(self, spec, host):
        super().__init__(spec, host)
        options = dict(DEFAULTS, **spec.options)
        self.capt_host = options["capt_host"]
        self.capt_port = options["capt_port"]
        self.tcp = options["capt_ptype"] == "tcp"
        self.capt_id = options["capt_id"]
        self.sock = None
        self.pending = b""
        self.errors = 0
        self.reconnect_at = 0.0
        self.sent = 0
        self.locals = {}            # Stream -> the local address its packets arrive on

    def start(self):
        try:
            self._connect()
        except socket.gaierror as exc:
            log.error("capture: getaddrinfo: %s", exc.strerror)
            log.error("%s->config() method has failed: %s", self.spec.path, self.name)
            raise ModuleStartError("Invalid argument (%d)" % errno.EINVAL) from None
        except OSError as exc:
            log.error("%s->config() method has failed: %s", self.spec.path, self.name)
            raise ModuleStartError("%s (%d)" % (exc.strerror or os.strerror(exc.errno), exc.errno)) from None

    def _connect(self):
        kind = socket.SOCK_STREAM if self.tcp else socket.SOCK_DGRAM
        family, kind, proto, _, address = socket.getaddrinfo(self.capt_host, self.capt_port, 0, kind)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(5.0)
            sock.connect(address)       # once, at start-up (or on reconnect)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.pending = b""
        self.errors = 0

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # --- sessions ---------------------------------------------------------------

    def session_created(self, session, now):
        for stream in session.rtcp:
            stream.add_tap(self._tap)

    def session_ended(self, session, now):
        for stream in session.rtcp:
            self.locals.pop(stream, None)

    def _local(self, stream, source):
        local = self.locals.get(stream)
        if local is None:
            bound = stream.local
            host = bound.host if bound is not None and not bound.wildcard else \
                self.host.route_source(source[0], bound.family if bound else socket.AF_INET)
            local = self.locals[stream] = host or ("::" if ":" in source[0] else "0.0.0.0")
        return local

    def _tap(self, stream, data, source, now):
        payload = hep.rtcp_json(data)
        if payload is None:
            return False
        call_id = stream.session.call_id
        if not isinstance(call_id, bytes):
            call_id = call_id.encode("utf-8", "surrogateescape")
        family = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
        try:
            message = hep.message(family, source[:2], (self._local(stream, source), stream.port),
                                  time.time(), self.capt_id, call_id, payload)
        except OSError:
            return False
        self._send(message)
        return False

    def _send(self, message):
        if self.sock is None or self.errors > MAX_ERRORS:
            if time.monotonic() < self.reconnect_at:
                return
            sys.stderr.write("HEP server is down... retrying after sleep...\n")
            self.reconnect_at = time.monotonic() + RECONNECT_PAUSE
            self.close()
            try:
                self._connect()
            except OSError:
                return
        if not self.tcp:
            try:
                self.sock.send(message)
                self.sent += 1
            except OSError:
                self.errors += 1       # the message is lost, as upstream's
            return
        # (a full backlog loses the new message: the one partly sent must be finished first)
        data = self.pending + message if len(self.pending) + len(message) <= MAX_PENDING else self.pending
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0                   # the collector is slow: keep whole messages for later
        except OSError:
            self.errors += 1
            self.pending = b""
            return
        self.pending = data[sent:]
        self.sent += 1
