"""dtls_gw (modules.md 7): a DTLS-SRTP <-> plain RTP gateway on a stream.

``M4:<inst> S`` gives our setup role and certificate fingerprint; ``A``/``P
SHA-256 FP [SSRC]`` the peer's (peer active -> we are the DTLS server, peer
passive -> we are the client and send the ClientHello at once); ``D``/``U``
detach. The endpoint of a stream is a PacketFilter on its RTP side: DTLS
records are consumed (handshake flights go out of the stream's own port),
SRTP/SRTCP is decrypted on the way in and plain RTP/RTCP from the other leg
is encrypted on the way out. Retransmission timers run in the session's
greenlet (Session.add_waker).

This file (and pyOpenSSL, cryptography, pylibsrtp) is imported only when
dtls_gw is loaded; calls without an endpoint never reach it.

Fingerprints are compared case-insensitively: the reference compares text
and a lower-case fingerprint (which some SDP stacks send) kills the media
there; here it works (README "dtls_gw").
"""

import datetime
import logging
import secrets
from typing import Optional

import pylibsrtp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from ..session import DROP, FOREVER, PacketFilter
from . import Module, SubcommandFailed, mode_letter, token_text

log = logging.getLogger("rtpproxy")

SRTP_PROFILES = b"SRTP_AES128_CM_SHA1_80:SRTP_AES128_CM_SHA1_32:SRTP_AEAD_AES_128_GCM:SRTP_AEAD_AES_256_GCM"
# profile name -> (pylibsrtp profile, key length, salt length)
_PROFILES = {
    b"SRTP_AES128_CM_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
    b"SRTP_AES128_CM_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14),
    b"SRTP_AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    b"SRTP_AEAD_AES_256_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32, 12),
}
REPLAY_WINDOW = 128
MTU = 1200


def make_certificate():
    """A fresh self-signed certificate as upstream makes one per instance:
    EC P-256, SHA-256, CN dtls@rtpproxy, valid 1 year back to 10 ahead."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtls@rtpproxy")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(secrets.randbits(32) or 1)
            .not_valid_before(now - datetime.timedelta(days=365))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return cert, key


def fingerprint(cert) -> str:
    """SHA-256 of the DER, upper-case hex pairs joined by ':' (95 chars)."""
    digest = cert.fingerprint(hashes.SHA256())
    return ":".join("%02X" % b for b in digest)


def is_dtls(data) -> bool:
    """RFC 7983's test, as upstream applies it: 13+ bytes, first byte 20-63."""
    return len(data) >= 13 and 20 <= data[0] <= 63


def is_rtcp(data) -> bool:
    return len(data) >= 8 and data[0] >> 6 == 2 and 200 <= data[1] <= 213


def srtp_sessions(profile_name: bytes, material: bytes, is_client: bool, inbound_ssrc=None):
    """(outbound, inbound) pylibsrtp sessions from the RFC 5764 exporter output
    (client key | server key | client salt | server salt)."""
    profile, key_len, salt_len = _PROFILES[profile_name]
    client_key = material[:key_len]
    server_key = material[key_len:2 * key_len]
    client_salt = material[2 * key_len:2 * key_len + salt_len]
    server_salt = material[2 * key_len + salt_len:]
    ours, theirs = (client_key + client_salt, server_key + server_salt)
    if not is_client:
        ours, theirs = theirs, ours
    tx = pylibsrtp.Policy(key=ours, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    tx.allow_repeat_tx = True       # the other leg may resend a packet: relay it again
    tx.window_size = REPLAY_WINDOW
    if inbound_ssrc is None:
        rx = pylibsrtp.Policy(key=theirs, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    else:
        rx = pylibsrtp.Policy(key=theirs, ssrc_type=pylibsrtp.Policy.SSRC_SPECIFIC,
                              ssrc_value=inbound_ssrc, srtp_profile=profile)
    rx.window_size = REPLAY_WINDOW
    return pylibsrtp.Session(tx), pylibsrtp.Session(rx)


def material_length(profile_name: bytes) -> int:
    _, key_len, salt_len = _PROFILES[profile_name]
    return 2 * (key_len + salt_len)


class DtlsEndpoint(PacketFilter):
    """DTLS-SRTP on one stream."""

    order = 20              # after ice_lite's gate

    def __init__(self, module, stream):
        self.module = module
        self.stream = stream
        self.peer_role: Optional[str] = None     # None (S only), "active" or "passive"
        self.remote_fp: Optional[str] = None
        self.ssrc: Optional[int] = None
        self.ssl: Optional[SSL.Connection] = None
        self.flight_to = None                    # the peer's DTLS source, once it sent a record
        self.next_timeout = FOREVER
        self.tx = self.rx = None                 # pylibsrtp sessions once established
        self.dead = False
        self.profile: Optional[bytes] = None

    # --- signalling ---------------------------------------------------------

    def our_mode(self) -> str:
        return {None: "actpass", "active": "passive", "passive": "active"}[self.peer_role]

    def configure(self, role: str, remote_fp: str, ssrc: Optional[int]):
        if self.peer_role is not None and self.peer_role != role and self.ssl is not None:
            raise SubcommandFailed()        # a role change after the handshake started
        if role == "passive" and self.stream.rem_addr is None:
            raise SubcommandFailed()
        self.peer_role, self.remote_fp, self.ssrc = role, remote_fp, ssrc
        if role == "passive" and self.ssl is None:
            self._start(client=True, now=self.module.host.dispatcher.clock())

    # --- DTLS ----------------------------------------------------------------

    def _start(self, client: bool, now: float):
        self.ssl = SSL.Connection(self.module.context, None)
        self.ssl.set_ciphertext_mtu(MTU)
        if client:
            self.ssl.set_connect_state()
        else:
            self.ssl.set_accept_state()
        self._step(now)

    def _step(self, now):
        """Run the handshake as far as it goes; send what it produced."""
        ssl = self.ssl
        if self.tx is None:
            try:
                ssl.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as exc:
                self._die("DTLS handshake failed: %s" % (exc,))
            else:
                self._established()
        else:
            try:
                while ssl.recv(2048):
                    pass
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            except SSL.Error:
                pass
        self._flush()
        self._plan(now)

    def _flush(self):
        """Send what OpenSSL wrote: to where the peer's records come from, or,
        before any came, to the stream's current remote (which ICE may have
        moved since the ClientHello first went out)."""
        ssl, host = self.ssl, self.module.host
        destination = self.flight_to or self.stream.rem_addr
        while True:
            try:
                out = ssl.bio_read(65536)
            except SSL.WantReadError:
                return
            if not out:
                return
            host.send_from(self.stream, out, destination)

    def _plan(self, now):
        timeout = None
        if self.ssl is not None and self.tx is None and not self.dead:
            timeout = self.ssl.DTLSv1_get_timeout()
        wake = FOREVER if timeout is None else now + timeout
        earlier = wake < self.next_timeout
        self.next_timeout = wake
        if earlier:
            self.module.host.wake(self.stream.session)

    def wake(self, now) -> float:
        """Session.add_waker: DTLS retransmission."""
        if self.ssl is not None and self.tx is None and not self.dead and now >= self.next_timeout:
            try:
                self.ssl.DTLSv1_handle_timeout()
            except SSL.Error as exc:
                self._die("DTLS timeout handling failed: %s" % (exc,))
            self._flush()
            timeout = self.ssl.DTLSv1_get_timeout()
            self.next_timeout = FOREVER if timeout is None else now + max(timeout, 0.01)
        return self.next_timeout

    def _established(self):
        ssl = self.ssl
        peer = ssl.get_peer_certificate()
        if self.remote_fp is not None:
            got = peer.to_cryptography().fingerprint(hashes.SHA256()) if peer is not None else b""
            if ":".join("%02X" % b for b in got) != self.remote_fp.upper():
                return self._die("DTLS peer certificate does not match the fingerprint given")
        profile = ssl.get_selected_srtp_profile()
        if profile not in _PROFILES:
            return self._die("DTLS peer agreed no SRTP profile")
        material = ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", material_length(profile))
        self.tx, self.rx = srtp_sessions(profile, material, self.peer_role == "passive", self.ssrc)
        self.profile = profile
        self.next_timeout = FOREVER
        log.info("dtls_gw: %s: DTLS-SRTP established (%s) with %s", self.stream.session.call_id,
                 profile.decode(), self.flight_to or self.stream.rem_addr)

    def _die(self, why):
        """Upstream: the endpoint is dead, its media dropped; the call goes on."""
        log.warning("dtls_gw: %s: %s; media on this stream is dropped",
                    self.stream.session.call_id, why)
        self.dead = True
        self.tx = self.rx = None
        self.next_timeout = FOREVER

    # --- packets ----------------------------------------------------------------

    def receive(self, stream, data, source, now):
        if is_dtls(data):
            if not self.dead:
                self._on_record(data, source, now)
            return None
        rx = self.rx
        if rx is None:
            return DROP
        try:
            return rx.unprotect_rtcp(data) if is_rtcp(data) else rx.unprotect(data)
        except pylibsrtp.Error:
            return DROP

    def _on_record(self, data, source, now):
        if self.ssl is None:
            if self.peer_role == "passive":
                return          # we are the client: a stray record before our hello
            self._start(client=False, now=now)
        elif self.tx is not None and data[0] == 22 and data[3:5] == b"\0\0" and data[13:14] == b"\x01":
            return self._die("DTLS renegotiation (a new ClientHello) after the handshake")
        self.flight_to = source
        self.ssl.bio_write(bytes(data))
        self._step(now)

    def send(self, stream, data, now):
        tx = self.tx
        if tx is None:
            return None
        try:
            return tx.protect_rtcp(data) if is_rtcp(data) else tx.protect(data)
        except pylibsrtp.Error:
            return None


def _parse_peer(args):
    """``ALG FP [SSRC]`` of A/P (modules.md 7.1); SubcommandFailed if bad."""
    if len(args) not in (2, 3):
        raise SubcommandFailed()
    alg, fp = token_text(args[0]), token_text(args[1])
    if alg.upper() != "SHA-256" or len(fp) != 95:
        raise SubcommandFailed()
    ssrc = None
    if len(args) == 3:
        text = token_text(args[2])
        if not text.isdigit():
            raise SubcommandFailed()
        ssrc = int(text) & 0xFFFFFFFF
    return fp, ssrc


class DtlsGateway(Module):
    name = "dtls_gw"
    module_id = 4
    has_subcommand = True

    def __init__(self, spec, host):
        super().__init__(spec, host)
        self.endpoints = {}         # RTP Stream -> DtlsEndpoint
        self.context = None
        self.fingerprint = None

    def start(self):
        cert, key = make_certificate()
        self.fingerprint = fingerprint(cert)
        ctx = SSL.Context(SSL.DTLS_METHOD)
        try:
            ctx.use_certificate(cert)
            ctx.use_privatekey(key)
        except TypeError:
            # Debian 12's pyOpenSSL (23.0) takes only its own X509/PKey wrappers
            ctx.use_certificate(crypto.X509.from_cryptography(cert))
            ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        ctx.set_tlsext_use_srtp(SRTP_PROFILES)
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        self.context = ctx

    def subcommand(self, args, session, addressed, opposite, ctx):
        if not args:
            raise SubcommandFailed()
        mode, rest = mode_letter(args[0]), args[1:]
        if mode in ("s", "d", "u") and rest:
            raise SubcommandFailed()
        if mode == "s":
            endpoint = self._endpoint(opposite)
            return "%s SHA-256 %s" % (endpoint.our_mode(), self.fingerprint)
        if mode in ("a", "p"):
            fp, ssrc = _parse_peer(rest)
            if mode == "p" and addressed.port is None:
                self.host.open_port(session, addressed)
            endpoint = self._endpoint(addressed)
            endpoint.configure("active" if mode == "a" else "passive", fp, ssrc)
            return None
        if mode in ("d", "u"):
            if not self._detach(addressed if mode == "d" else opposite):
                raise SubcommandFailed()
            return None
        raise SubcommandFailed()

    def _endpoint(self, stream) -> DtlsEndpoint:
        endpoint = self.endpoints.get(stream)
        if endpoint is None:
            endpoint = self.endpoints[stream] = DtlsEndpoint(self, stream)
            stream.add_filter(endpoint)
            stream.session.add_waker(endpoint.wake)
            self.host.media_changed(stream.session)
        return endpoint

    def _detach(self, stream) -> bool:
        endpoint = self.endpoints.pop(stream, None)
        if endpoint is None:
            return False
        stream.remove_filter(endpoint)
        stream.session.remove_waker(endpoint.wake)
        self.host.media_changed(stream.session)
        return True

    def session_ended(self, session, now):
        for stream in session.rtp:
            self.endpoints.pop(stream, None)
