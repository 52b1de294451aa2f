"""The Sippy B2BUA's own rtpproxy client (``sippy.Rtp_proxy``, PyPI package sippy)
drives rtpproxy-py over UDP and over a unix socket."""

import os
import re
import socket
import time
from urllib.parse import quote

import pytest
from sippy.Core.EventDispatcher import ED2
from sippy.MsgBody import MsgBody
from sippy.Rtp_proxy.client import CAPSTABLE, Rtp_proxy_client
from sippy.Rtp_proxy.session import Rtp_proxy_session
from sippy.Time.Timeout import Timeout

from harness import PHONE_A, PHONE_B, RELAY_IP, sdp_media
from helpers import Endpoint, NotifyListener, rtp_packet

TTL = 2


def run_until(predicate, timeout=5.0):
    """Run sippy's event loop until ``predicate()`` holds (or ``timeout`` seconds pass)."""
    def check():
        if predicate():
            ED2.breakLoop()
    timer = Timeout(check, 0.02, -1)
    try:
        deadline = time.time() + timeout
        while not predicate() and time.time() < deadline:
            ED2.loop(max(0.01, deadline - time.time()))
    finally:
        timer.cancel()
    return predicate()


def sdp_change(handler, endpoint):
    """Feed a phone's SDP to on_caller/on_callee_sdp_change; return the SDP the
    client builds for the other side (relay address and port)."""
    body = MsgBody("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
                   "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
                   .format(ip=endpoint.host, port=endpoint.port))
    done = {}

    def result(sdp_body, ex=None):
        done["body"], done["ex"] = sdp_body, ex
    handler(body, result)
    assert run_until(lambda: done), "no answer from the relay"
    assert done["ex"] is None and done["body"] is not None, done
    return sdp_media(str(done["body"]))


def relay_commands(relay):
    return [c.replace("\\n", "").strip() for c in re.findall(r"command b'([^']*)' ->", relay.log())]


@pytest.mark.parametrize("control", ["udp", "unix"])
def test_sippy_b2bua_client(lab, control):
    notify_path = lab.path("b2bua.sock")
    listener = NotifyListener(socket.AF_UNIX, notify_path)
    relay = lab.relay("-T", str(TTL), "-n", "unix:" + notify_path, "-d", "DBUG", control=control)
    config = {"_sip_address": "127.0.0.1"}
    client = Rtp_proxy_client(config, spath=relay.control_spec)
    client.notify_socket = "unix:" + notify_path
    config["rtp_proxy_client"] = client
    phone_a, phone_b = Endpoint(PHONE_A.ip), Endpoint(PHONE_B.ip)
    calls = []
    try:
        # version handshake and capability probes: the client reads exactly what the relay says
        assert run_until(lambda: client.online), relay.log()
        for datestamp, attribute in sorted(CAPSTABLE.items()):
            assert getattr(client, attribute) == (relay.command("VF " + datestamp) == "1"), attribute
        assert client.tnot_supported and client.sbind_supported and client.wdnt_supported
        sent = relay_commands(relay)
        assert "V" in sent and all("VF " + d in sent for d in CAPSTABLE)

        # its heartbeat: Ib once a second, parsed into the client's counters
        assert run_until(lambda: client.active_sessions == 0 and client.sessions_created == 0)

        # a call: caller's offer, callee's answer, both through U (the B2BUA never sends L)
        call = Rtp_proxy_session(config, call_id="b2b-1", from_tag="caller-tag",
                                 to_tag="callee-tag", notify_tag=quote("r 123"))
        calls.append(call)
        to_callee = sdp_change(call.on_caller_sdp_change, phone_a)
        to_caller = sdp_change(call.on_callee_sdp_change, phone_b)
        assert to_callee[0] == to_caller[0] == RELAY_IP
        offers = [c for c in relay_commands(relay) if c.startswith("U")]
        assert [o.split()[1:] for o in offers] == [
            ["b2b-1-0", phone_a.host, str(phone_a.port), "caller-tag",
             "unix:" + notify_path, "r%20123"],
            ["b2b-1-0", phone_b.host, str(phone_b.port), "callee-tag", "caller-tag",
             "unix:" + notify_path, "r%20123"]]

        # media both ways through the relay
        for seq in range(50):
            phone_a.send(rtp_packet(seq, ssrc=0xA), RELAY_IP, to_caller[1])
            phone_b.send(rtp_packet(seq, ssrc=0xB), RELAY_IP, to_callee[1])
        got_b = [d for d, src in phone_b.drain(0.3) if src == (RELAY_IP, to_callee[1])]
        got_a = [d for d, src in phone_a.drain(0.3) if src == (RELAY_IP, to_caller[1])]
        assert got_b == [rtp_packet(seq, ssrc=0xA) for seq in range(50)]
        assert got_a == [rtp_packet(seq, ssrc=0xB) for seq in range(50)]

        # the client's Q: (ttl, from caller, from callee, relayed, dropped)
        stats = {}
        call.stats(lambda result: stats.update(result=result))
        assert run_until(lambda: stats)
        ttl, from_caller, from_callee, nrelayed, ndropped = stats["result"]
        assert (from_caller, from_callee, nrelayed, ndropped) == (50, 50, 100, 0) and ttl > 0
        assert run_until(lambda: client.active_sessions == 1 and client.preceived == 100
                         and client.ptransmitted == 100)

        # hang-up: D for the stream, the relay forgets the call, the heartbeat sees it
        call.delete()
        assert run_until(lambda: client.active_sessions == 0)
        assert relay.command("Q b2b-1-0 caller-tag callee-tag") == "E50"
        assert "D b2b-1-0 caller-tag callee-tag" in relay_commands(relay)

        # a call whose media never starts: the relay times it out after -T and notifies
        # the B2BUA on its socket with the decoded tag
        quiet = Rtp_proxy_session(config, call_id="b2b-2", from_tag="f2", to_tag="t2",
                                  notify_tag=quote("r 124"))
        calls.append(quiet)
        sdp_change(quiet.on_caller_sdp_change, phone_a)
        sdp_change(quiet.on_callee_sdp_change, phone_b)
        assert run_until(lambda: listener.data, timeout=TTL + 4), relay.log()[-2000:]
        assert listener.data == b"r 124\n"
        assert run_until(lambda: client.active_sessions == 0)

        heartbeats = [c for c in relay_commands(relay) if c == "Ib"]
        assert len(heartbeats) >= TTL + 1
    finally:
        for call in calls:
            call.delete()
        run_until(lambda: False, timeout=0.3)    # let the last commands go out
        client.shutdown()
        listener.close()
        phone_a.close()
        phone_b.close()
        if os.path.exists(notify_path):
            os.unlink(notify_path)
