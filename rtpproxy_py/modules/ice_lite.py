"""ice_lite (modules.md 8): an ICE-lite agent on a stream, and RTCP mux/demux.

``M5:<inst> S`` gives our ufrag, pwd and host candidate; ``A UFRAG PWD`` the
peer's credentials; ``C ...`` a peer candidate; ``D``/``U`` detach. The
agent is a PacketFilter on the stream's RTP side: it answers STUN binding
requests from the stream's own port (a lite, controlled agent), drops media
until a check with USE-CANDIDATE succeeds from a candidate given with ``C``,
then pins the stream to that source. RTCP arriving on the RTP port is relayed
as the stream's RTCP (demux); the other leg's RTCP goes out of the RTP port
(mux).
"""

import ipaddress
import secrets
import string
from typing import Optional, Set, Tuple
from urllib.parse import quote

from ..session import DROP, PacketFilter
from . import Module, SubcommandFailed, mode_letter, token_text
from . import stun

SOFTWARE = b"ice stunsrv v3.2.0 (?/?)"
HOST_PRIORITY = 2113929471
_ALPHABET = string.ascii_letters + string.digits + "+/"


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def is_rtcp(data) -> bool:
    """RTCP by RFC 5761's test: version 2 and a packet type 200-213 in byte 1
    (the same bytes in SRTCP)."""
    return len(data) >= 8 and data[0] >> 6 == 2 and 200 <= data[1] <= 213


def _address_key(host: str, port: int) -> Tuple[str, int]:
    return str(ipaddress.ip_address(host.split("%")[0])), port


class IceAgent(PacketFilter):
    """The lite agent of one stream (sans-IO but for ``host.send_from``)."""

    order = 10              # before dtls_gw: STUN and ICE gating come first

    def __init__(self, module, stream, ufrag_len=4, pwd_len=24):
        self.module = module
        self.stream = stream
        self.local_ufrag = _random_text(ufrag_len)
        self.local_pwd = _random_text(pwd_len)
        self.remote_ufrag: Optional[str] = None
        self.remote_pwd: Optional[str] = None
        self.remote_candidates: Set[Tuple[str, int]] = set()
        self.selected: Optional[Tuple] = None
        self.nchecks = 0

    # --- signalling ------------------------------------------------------------

    def candidate(self) -> str:
        stream = self.stream
        local = stream.local
        host = local.host if local is not None and local.host else "0.0.0.0"
        packed = ipaddress.ip_address(host).packed
        if len(packed) == 4:
            foundation = "%08x" % int.from_bytes(packed, "big")
        else:   # as observed: the last 32 bits as a little-endian word
            foundation = "%08x" % int.from_bytes(packed[12:], "little")
        return "%s 1 UDP %d %s %d typ host" % (foundation, HOST_PRIORITY, host, stream.port or 0)

    def add_candidate(self, tokens):
        if len(tokens) < 8 or token_text(tokens[6]).lower() != "typ":
            raise SubcommandFailed()
        if token_text(tokens[2]).lower() != "udp":
            raise SubcommandFailed()
        try:
            int(token_text(tokens[1]))
            int(token_text(tokens[3]))
            port = int(token_text(tokens[5]))
            key = _address_key(token_text(tokens[4]), port)
        except ValueError:
            raise SubcommandFailed() from None
        self.remote_candidates.add(key)     # raddr/rport only describe it: no use here

    # --- packets ------------------------------------------------------------------

    def receive(self, stream, data, source, now):
        if stun.is_stun(data):
            self._on_stun(data, source, now)
            return None
        selected = self.selected
        if selected is None or source != selected:
            return DROP
        return data

    def _on_stun(self, data, source, now):
        message = stun.parse(data)
        if message is None or message.msg_type != stun.BINDING_REQUEST:
            return                      # answers, indications, garbage: nothing to say
        if message.fingerprint_ok is not True:
            return                      # observed: no FINGERPRINT, no answer
        key = self.local_pwd.encode()
        if message.integrity_at is None:
            return self._reply_error(message, source, 400, None)
        username = message.get(stun.USERNAME) or b""
        local, _, remote = username.partition(b":")
        if (local != self.local_ufrag.encode()
                or (self.remote_ufrag is not None and remote != self.remote_ufrag.encode())
                or not message.integrity_ok(key)):
            return self._reply_error(message, source, 401, None)
        if message.has(stun.ICE_CONTROLLED):
            return self._reply_error(message, source, 487, key)
        self.nchecks += 1
        reply = stun.Message(stun.BINDING_SUCCESS, message.transaction)
        reply.add(stun.XOR_MAPPED_ADDRESS, stun.xor_address(source, message.transaction))
        reply.add(stun.SOFTWARE, SOFTWARE)
        self.module.host.send_from(self.stream, reply.encode(key), source)
        if (message.has(stun.USE_CANDIDATE) and source != self.selected
                and _address_key(source[0], source[1]) in self.remote_candidates):
            self._complete(source, now)

    def _reply_error(self, message, source, code, key):
        reply = stun.Message(stun.BINDING_ERROR, message.transaction)
        reply.add(stun.ERROR_CODE, stun.error_code(code))
        reply.add(stun.SOFTWARE, SOFTWARE)
        self.module.host.send_from(self.stream, reply.encode(key), source)

    def _complete(self, source, now):
        """Nominated: media flows from and to this source only."""
        self.selected = source
        self.stream.pin_remote(source)
        self.module.host.media_changed(self.stream.session)


class IceLite(Module):
    name = "ice_lite"
    module_id = 5
    has_subcommand = True

    def __init__(self, spec, host):
        super().__init__(spec, host)
        self.agents = {}            # RTP Stream -> IceAgent

    def subcommand(self, args, session, addressed, opposite, ctx):
        if not args:
            raise SubcommandFailed()
        mode = mode_letter(args[0])
        rest = args[1:]
        if mode == "s":
            agent = self._agent(opposite)
            return "%s %s c:%s" % (agent.local_ufrag, agent.local_pwd,
                                   quote(agent.candidate(), safe="-_.~"))
        if mode == "a":
            if len(rest) != 2:
                raise SubcommandFailed()
            ufrag, pwd = token_text(rest[0]), token_text(rest[1])
            if len(ufrag) < 4 or len(pwd) < 22:
                raise SubcommandFailed()
            agent = self._agent(addressed, len(ufrag), len(pwd))
            agent.remote_ufrag, agent.remote_pwd = ufrag, pwd
            return None
        if mode == "c":
            agent = self.agents.get(addressed)
            if agent is None:
                raise SubcommandFailed()
            agent.add_candidate(rest)
            return None
        if mode in ("d", "u"):
            stream = addressed if mode == "d" else opposite
            if not self._detach(stream):
                raise SubcommandFailed()
            return None
        raise SubcommandFailed()

    def _agent(self, stream, ufrag_len=4, pwd_len=24) -> IceAgent:
        agent = self.agents.get(stream)
        if agent is None:
            agent = self.agents[stream] = IceAgent(self, stream, ufrag_len, pwd_len)
            rtcp = stream.twin
            stream.add_filter(agent)
            stream.set_mux(lambda data: rtcp if is_rtcp(data) else None, None)
            rtcp.set_mux(None, stream)
            self.host.media_changed(stream.session)
        return agent

    def _detach(self, stream) -> bool:
        agent = self.agents.pop(stream, None)
        if agent is None:
            return False
        stream.remove_filter(agent)
        stream.set_mux(None, None)
        stream.twin.set_mux(None, None)
        stream.untrusted = False        # latching returns to normal
        self.host.media_changed(stream.session)
        return True

    def session_ended(self, session, now):
        for stream in session.rtp:
            self.agents.pop(stream, None)
