"""A WebRTC-style peer for tests: ICE (controlling, full agent side of a
check), DTLS-SRTP with pyOpenSSL and pylibsrtp, over one UDP socket with
rtcp-mux, as a browser talks to an ICE-lite media server.

Deliberately separate from rtpproxy_py.modules.dtls_gw: the key schedule
(RFC 5764 4.2) and the handshake pump are written again here, so a mistake
in the daemon's does not cancel out against the same mistake in the peer.
Only the STUN message code (checked against RFC 5769's vectors) is shared.
"""

import datetime
import os
import secrets
import socket
import struct
import time

import pylibsrtp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from rtpproxy_py.modules import stun

KEY_SALT = {  # profile -> (pylibsrtp profile, key bytes, salt bytes)
    b"SRTP_AES128_CM_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
    b"SRTP_AES128_CM_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14),
    b"SRTP_AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    b"SRTP_AEAD_AES_256_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32, 12),
}


def _certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webrtc-peer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert, key


class WebRtcPeer:
    def __init__(self, host="127.0.0.1", profiles=b"SRTP_AES128_CM_SHA1_80"):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.address = self.sock.getsockname()[:2]
        self.ufrag = secrets.token_hex(4)
        self.pwd = secrets.token_hex(12)
        cert, key = _certificate()
        self.fingerprint = ":".join("%02X" % b for b in cert.fingerprint(hashes.SHA256()))
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
        ctx.set_tlsext_use_srtp(profiles)
        self.ctx = ctx
        self.remote = None
        self.tx = self.rx = None
        self.profile = None
        self.relay_fingerprint = None

    def candidate(self):
        """The tokens of our host candidate for ``M5:1 C``."""
        return "1 1 UDP 2130706431 %s %d typ host generation 0" % self.address

    def close(self):
        self.sock.close()

    # --- ICE ---------------------------------------------------------------

    def check(self, remote, ufrag, pwd, use_candidate=True, role=stun.ICE_CONTROLLING,
              integrity=True, username=None, fingerprint=True, timeout=2.0):
        """One connectivity check; returns the parsed answer (None: no answer)."""
        transaction = os.urandom(12)
        request = stun.Message(stun.BINDING_REQUEST, transaction)
        request.add(stun.USERNAME, (username or "%s:%s" % (ufrag, self.ufrag)).encode())
        request.add(stun.PRIORITY, struct.pack("!I", 1853824767))
        request.add(role, os.urandom(8))
        if use_candidate:
            request.add(stun.USE_CANDIDATE)
        self.sock.sendto(request.encode(pwd.encode() if integrity else None, fingerprint), remote)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data, source = self.sock.recvfrom(65535)
            except socket.timeout:
                return None
            answer = stun.parse(data)
            if answer is not None and answer.transaction == transaction:
                answer.source = source
                return answer
        return None

    # --- DTLS --------------------------------------------------------------------

    def handshake(self, remote, client, timeout=5.0):
        """Run DTLS with the relay at ``remote``; keys SRTP when done."""
        self.remote = remote
        conn = SSL.Connection(self.ctx, None)
        if client:
            conn.set_connect_state()
        else:
            conn.set_accept_state()
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn.do_handshake()
                done = True
            except SSL.WantReadError:
                done = False
            self._flush(conn)
            if done:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("DTLS handshake with the relay timed out")
            wait = conn.DTLSv1_get_timeout()
            self.sock.settimeout(min(wait if wait is not None else 0.2, 0.2) or 0.01)
            try:
                data, source = self.sock.recvfrom(65535)
            except socket.timeout:
                conn.DTLSv1_handle_timeout()
                self._flush(conn)
                continue
            if 20 <= data[0] <= 63:
                conn.bio_write(data)
        peer_cert = conn.get_peer_certificate().to_cryptography()
        self.relay_fingerprint = ":".join("%02X" % b for b in peer_cert.fingerprint(hashes.SHA256()))
        self.profile = conn.get_selected_srtp_profile()
        srtp_profile, key_len, salt_len = KEY_SALT[self.profile]
        km = conn.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        keys = {"client": km[:key_len], "server": km[key_len:2 * key_len]}
        salts = {"client": km[2 * key_len:2 * key_len + salt_len], "server": km[2 * key_len + salt_len:]}
        me, them = ("client", "server") if client else ("server", "client")
        self.tx = pylibsrtp.Session(pylibsrtp.Policy(
            key=keys[me] + salts[me], ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=srtp_profile))
        self.rx = pylibsrtp.Session(pylibsrtp.Policy(
            key=keys[them] + salts[them], ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=srtp_profile))
        self.conn = conn

    def _flush(self, conn):
        while True:
            try:
                out = conn.bio_read(65536)
            except SSL.WantReadError:
                return
            self.sock.sendto(out, self.remote)

    # --- media ---------------------------------------------------------------

    def send_rtp(self, packet):
        self.sock.sendto(self.tx.protect(packet), self.remote)

    def send_rtcp(self, packet):
        self.sock.sendto(self.tx.protect_rtcp(packet), self.remote)

    def receive(self, timeout=1.0):
        """The next SRTP/SRTCP datagram decrypted: (is_rtcp, plain bytes), or None."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                return None
            if stun.is_stun(data) or 20 <= data[0] <= 63:
                continue
            if 200 <= data[1] <= 213:
                return True, self.rx.unprotect_rtcp(data)
            return False, self.rx.unprotect(data)
