"""A two-party call through the real daemon, for the recording tests."""

import math
import os

from helpers import Endpoint, rtp_packet, wait_for

HOST = "127.0.0.1"
RTCP_REPORT = b"\x81\xc8\x00\x06" + bytes(24)


def endpoint_pair(host=HOST):
    """An RTP endpoint and its RTCP endpoint on the next port."""
    for _ in range(100):
        rtp = Endpoint(host)
        try:
            rtcp = Endpoint(host, rtp.port + 1)
        except OSError:
            rtp.close()
            continue
        return rtp, rtcp
    raise RuntimeError("no free consecutive port pair")


class Call:
    """Caller (the U party, stream 1, ``.o``) and callee (the L party, stream 0, ``.a``)."""

    def __init__(self, daemon, call_id="call1@example", from_tag="ftag;1", to_tag="ttag;1"):
        self.d = daemon
        self.call_id, self.from_tag, self.to_tag = call_id, from_tag, to_tag
        self.caller, self.caller_rtcp = endpoint_pair()
        self.callee, self.callee_rtcp = endpoint_pair()
        reply = daemon.command("U %s %s %d %s" % (call_id, HOST, self.caller.port, from_tag))
        self.to_callee_port = int(reply.split()[0])     # the callee sends here
        reply = daemon.command("L %s %s %d %s %s" % (call_id, HOST, self.callee.port, from_tag, to_tag))
        self.to_caller_port = int(reply.split()[0])     # the caller sends here
        self.caller_ssrc, self.callee_ssrc = 0x11112222, 0x33334444
        self.caller_seq = self.callee_seq = 0

    def caller_says(self, packet, rtcp=False):
        """The caller sends; returns what the callee received (None if nothing)."""
        src, dst = (self.caller_rtcp, self.callee_rtcp) if rtcp else (self.caller, self.callee)
        src.send(packet, HOST, self.to_caller_port + (1 if rtcp else 0))
        return dst.recv(1.0)[0]

    def callee_says(self, packet, rtcp=False):
        src, dst = (self.callee_rtcp, self.caller_rtcp) if rtcp else (self.callee, self.caller)
        src.send(packet, HOST, self.to_callee_port + (1 if rtcp else 0))
        return dst.recv(1.0)[0]

    def talk(self, count, caller_pt=0, callee_pt=0, caller_payloads=None, callee_payloads=None):
        """``count`` packets each way, interleaved; returns (caller's, callee's) packets."""
        sent_caller, sent_callee = [], []
        for i in range(count):
            p = rtp_packet(self.caller_seq, self.caller_seq * 160, self.caller_ssrc, caller_pt,
                           caller_payloads[i] if caller_payloads else bytes([0x55]) * 160)
            self.caller_seq += 1
            assert self.caller_says(p) == p
            sent_caller.append(p)
            q = rtp_packet(self.callee_seq, self.callee_seq * 160, self.callee_ssrc, callee_pt,
                           callee_payloads[i] if callee_payloads else bytes([0xd5]) * 160)
            self.callee_seq += 1
            assert self.callee_says(q) == q
            sent_callee.append(q)
        return sent_caller, sent_callee

    def close(self):
        for e in (self.caller, self.caller_rtcp, self.callee, self.callee_rtcp):
            e.close()


def tone(freq, seconds, amplitude=8000, rate=8000, phase=0.0):
    import numpy as np
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t + phase)).astype(np.int16)


def snr_db(reference, measured):
    """SNR of ``measured`` against ``reference`` after a least-squares gain fit."""
    import numpy as np
    ref = reference.astype(np.float64)
    got = measured.astype(np.float64)
    gain = np.dot(ref, got) / max(np.dot(ref, ref), 1e-9)
    noise = got - gain * ref
    return 10 * math.log10(np.dot(gain * ref, gain * ref) / max(np.dot(noise, noise), 1e-9))


def wait_file(path, predicate=lambda size: size > 0, timeout=5.0):
    return wait_for(lambda: os.path.exists(path) and predicate(os.path.getsize(path)), timeout)



def tone_snr(signal, freqs, rate=8000):
    """SNR (dB) of ``signal`` against the best-fitting sum of sines at ``freqs``
    (each with any phase and amplitude)."""
    import numpy as np
    x = np.asarray(signal, dtype=np.float64)
    t = np.arange(len(x)) / rate
    columns = [np.ones_like(t)]
    for freq in (freqs if isinstance(freqs, (list, tuple)) else [freqs]):
        columns += [np.sin(2 * math.pi * freq * t), np.cos(2 * math.pi * freq * t)]
    basis = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fit = basis @ coef
    noise = x - fit
    return 10 * math.log10(max(np.dot(fit, fit), 1e-9) / max(np.dot(noise, noise), 1e-9))


def paced_call(call, seconds, caller_audio, callee_audio, caller_pt=0, callee_pt=8,
               ptime_ms=20):
    """Both parties send their (already encoded, per-packet) audio in real time."""
    import time
    n = len(caller_audio)
    start = time.monotonic()
    sent = ([], [])
    for i in range(n):
        due = start + i * ptime_ms / 1000.0
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        p = rtp_packet(call.caller_seq, call.caller_seq * 8 * ptime_ms, call.caller_ssrc, caller_pt,
                       caller_audio[i], marker=(i == 0))
        call.caller_seq += 1
        q = rtp_packet(call.callee_seq, call.callee_seq * 8 * ptime_ms, call.callee_ssrc, callee_pt,
                       callee_audio[i], marker=(i == 0))
        call.callee_seq += 1
        call.caller.send(p, HOST, call.to_caller_port)
        call.callee.send(q, HOST, call.to_callee_port)
        sent[0].append(p)
        sent[1].append(q)
    # everything relayed reached the other side
    got_callee = call.callee.drain(0.3)
    got_caller = call.caller.drain(0.05)
    return sent, got_callee, got_caller
