"""Announcements through real Kamailio: ``rtpproxy_stream2uac``/``uas`` play a
makeann prompt into a call between two sipp phones, and
``rtpproxy_stop_stream2uac``/``uas`` stop it (playback-and-resizing.md Part A,
clients.md 1.3).

Kamailio runs the example config with two additions made here: the 200 OK of
the initial INVITE starts the prompt (count -1: until stopped), and the
caller's re-INVITE stops it. A capture on the loopback shows what each phone
received.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from harness import (EXAMPLE_CFG, KAMAILIO_IP, LAB_FILTER, PHONE_A, PHONE_B, RELAY_IP, Scenario,
                     is_reply, is_request, rtp_packets, sip_messages, tone)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from audio import snr_db  # noqa: E402

from rtpproxy_py.media.codecs import get_codec  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT_MS = 2500          # from the 200 OK to the re-INVITE that stops the prompt
AFTER_STOP_MS = 1500


def announcement_config(lab, target):
    """The example config, plus: 200 OK to the first INVITE -> stream2<target>,
    re-INVITE -> stop_stream2<target>."""
    with open(EXAMPLE_CFG) as f:
        text = f.read()
    start = ('\t\tif (status == "200" && is_method("INVITE") && $cs == 1) {\n'
             '\t\t\trtpproxy_stream2%s("%s", "-1");\n'
             '\t\t}\n' % (target, lab.path("prompt")))
    answer = "\t\trtpproxy_answer();\n#!endif\n"
    reply_route = text.index("onreply_route[REPLY] {")
    assert answer in text[reply_route:], "the example config changed shape"
    cut = text.index(answer, reply_route) + len(answer)
    text = text[:cut] + start + text[cut:]
    stop_marker = '\t\tif (is_method("BYE")) {\n\t\t\troute(MEDIA_END);'
    assert stop_marker in text
    # Kamailio's rtpproxy module remembers the selected proxy set per process only
    # once an offer/answer ran in it: name the set before stopping.
    text = text.replace(stop_marker, '\t\tif (is_method("INVITE")) {\n'
                        '\t\t\tset_rtp_proxy_set("0");\n'
                        '\t\t\trtpproxy_stop_stream2%s();\n\t\t}\n' % target + stop_marker)
    path = lab.path("kamailio-%s.cfg" % target)
    with open(path, "w") as f:
        f.write(text)
    return path


def make_prompt(lab):
    """A 1 kHz tone, 1 s, through makeann: prompt.0 ... prompt.9 in the lab."""
    source = tone(1.0, freq=1000.0)
    with open(lab.path("prompt.sln"), "wb") as f:
        f.write(source.astype("<i2").tobytes())
    subprocess.run([sys.executable, os.path.join(TOP, "tools", "makeann.py"),
                    lab.path("prompt.sln"), lab.path("prompt")], check=True, timeout=60)
    with open(lab.path("prompt.0"), "rb") as f:
        return source, f.read()


@pytest.mark.parametrize("target", ["uac", "uas"])
def test_stream2_plays_and_stops_the_prompt(lab, target):
    source, prompt = make_prompt(lab)
    relay = lab.relay()
    kam = lab.kamailio(relay, config=announcement_config(lab, target))
    capture = lab.capture(LAB_FILTER)
    audio = lab.tone("talk.ulaw", seconds=1.0, freq=440.0)
    # sipp stops its audio when a re-INVITE arrives: the callee starts it again
    callee = (Scenario("callee").answer().play(audio).accept_reinvite().resume_audio()
              .accept_bye())
    caller = (Scenario("caller").call().play(audio).wait(PROMPT_MS).reinvite("sendrecv")
              .wait(AFTER_STOP_MS).pause_audio().wait(300).hangup())
    b = lab.sipp(callee, PHONE_B, timeout=30)
    a = lab.sipp(caller, PHONE_A, remote=kam.address, keys={"callee": b.address}, timeout=30)
    a.finish(30)
    b.finish(30)
    listener, talker = (a, b) if target == "uac" else (b, a)
    capture.stop()
    packets = capture.packets()
    rtp = rtp_packets(packets)
    messages = sip_messages(packets)
    # Kamailio sends P when the callee's 200 OK reaches it, S when the re-INVITE does
    answered = min(m.time for m in messages if is_reply(m, 200, "INVITE")
                   and m.dst[0] == KAMAILIO_IP and m.src[0] == PHONE_B.ip)
    reinvited = max(m.time for m in messages if is_request(m, "INVITE")
                    and m.dst[0] == KAMAILIO_IP and m.src[0] == PHONE_A.ip)
    to_listener = [p for p in rtp if p.src[0] == RELAY_IP and p.dst == (listener.ua.ip,
                                                                        listener.media_port)]
    from_talker = {p.ssrc for p in rtp if p.src[0] == talker.ua.ip}
    played = [p for p in to_listener if p.ssrc not in from_talker]
    relayed = [p for p in to_listener if p.ssrc in from_talker]

    # the prompt: PCMU (the phones offered only PT 0), 10 ms packets of 80 bytes,
    # one SSRC, marker on the first packet, the file over and over from the start
    assert len(played) > 150, "only %d prompt packets reached the %s" % (len(played), target)
    assert {p.pt for p in played} == {0} and len({p.ssrc for p in played}) == 1
    assert played[0].data[1] & 0x80 and not any(p.data[1] & 0x80 for p in played[1:])
    body = b"".join(p.data[12:] for p in played)
    assert {len(p.data) for p in played} == {92}
    assert body == (prompt * (len(body) // len(prompt) + 1))[:len(body)]
    assert [(p.seq - played[0].seq) & 0xFFFF for p in played] == list(range(len(played)))
    gaps = np.diff([p.time for p in played])
    assert abs(float(np.median(gaps)) - 0.010) < 0.002
    assert 0 <= played[0].time - answered < 0.25
    # (packets already on their way while Kamailio handles the re-INVITE may follow it)
    assert -0.05 <= reinvited - played[-1].time < 0.25
    expected = (played[-1].time - played[0].time) / 0.010 + 1
    assert abs(len(played) - expected) <= 0.02 * expected + 2
    heard = get_codec(0).decode(body[:len(prompt)])
    assert snr_db(source, heard, max_lag=60, skip=400) > 33

    # while the prompt played, the other phone's audio did not reach this one;
    # after the stop it did again, and no prompt packet followed
    assert relayed, "relaying to the %s did not resume after the stop" % target
    assert min(p.time for p in relayed) > played[-1].time
    assert len(relayed) > 0.5 * AFTER_STOP_MS / 20

    assert relay.command("G nplrs_created nplrs_destroyed") == "1 1"
    assert int(relay.command("G npkts_played")) == len(played)
