"""Prompt playback (P/S) through the real daemon: a prompt made with makeann
from a known tone is played into live sessions and received by real UDP
endpoints, decoded and compared with the source (playback-and-resizing.md A)."""

import os
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from audio import snr_db, tone
from helpers import TOP, Endpoint, rtp_packet, wait_for
from rtpproxy_py.media import rtp
from rtpproxy_py.media.codecs import get_codec

PROMPT_SECONDS = 0.5
# Minimum SNR of the received prompt against the source tone, per codec.
MIN_SNR = {0: 33, 8: 33, 9: 40, 3: 25, 18: 9}
# Packet spacing per codec at the default 10 ms (GSM frames are 20 ms).
SPACING = {0: 0.010, 8: 0.010, 9: 0.010, 18: 0.010, 3: 0.020}


@pytest.fixture(scope="module")
def prompt(tmp_path_factory):
    """(path prefix, source samples): makeann's five files of a 1 kHz tone."""
    folder = tmp_path_factory.mktemp("prompt")
    source = tone(PROMPT_SECONDS, freq=1000)
    (folder / "tone.sln").write_bytes(source.astype("<i2").tobytes())
    subprocess.run([sys.executable, os.path.join(TOP, "tools", "makeann.py"),
                    str(folder / "tone.sln"), str(folder / "tone")], check=True, timeout=60)
    return str(folder / "tone"), source


def call(d, name, caller, callee, u_mods="", l_mods=""):
    """U from the caller, L from the callee: ports (caller sends to, callee sends to)."""
    u = d.command("U%s %s %s %d ftag" % (u_mods, name, caller.host, caller.port))
    l_reply = d.command("L%s %s %s %d ftag ttag" % (l_mods, name, callee.host, callee.port))
    return int(l_reply.split()[0]), int(u.split()[0])


def collect(endpoints, seconds, stop_after_quiet=None):
    """Receive on all endpoints for ``seconds``: {endpoint: [(arrival, datagram)]}."""
    got = {ep: [] for ep in endpoints}
    socks = {ep.sock: ep for ep in endpoints}
    deadline = time.monotonic() + seconds
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline or (stop_after_quiet and now - last > stop_after_quiet):
            return got
        ready, _, _ = select.select(list(socks), [], [], min(deadline - now, 0.05))
        for sock in ready:
            data = sock.recv(65535)
            last = time.monotonic()
            got[socks[sock]].append((last, data))


def payloads(packets, ssrc=None):
    headers = [(rtp.parse(d), d) for _, d in packets]
    return [d[h.payload_offset:] for h, d in headers if ssrc is None or h.ssrc == ssrc]


def test_prompt_plays_to_the_caller_in_every_codec(rtpproxy, prompt):
    """Five sessions play at once, one codec each, twice over (P2)."""
    base, source = prompt
    d = rtpproxy("-l", "127.0.0.1")
    callers = {}
    for pt in (0, 8, 9, 3, 18):
        caller, callee = Endpoint(), Endpoint()
        call(d, "play%d" % pt, caller, callee)
        callers[pt] = caller
    for pt in callers:
        assert d.command("P2 play%d %s %d,0 ftag ttag" % (pt, base, pt)) == "0"
    got = collect(list(callers.values()), 2 * PROMPT_SECONDS + 1.0, stop_after_quiet=0.5)
    for pt, caller in callers.items():
        packets = got[caller]
        headers = [rtp.parse(data) for _, data in packets]
        assert {h.pt for h in headers} == {pt}
        assert len({h.ssrc for h in headers}) == 1
        assert [h.marker for h in headers] == [True] + [False] * (len(headers) - 1)
        with open("%s.%d" % (base, pt), "rb") as f:
            prompt_bytes = f.read()
        body = b"".join(payloads(packets))
        assert body == prompt_bytes * 2                       # file played twice, in order
        spacing = SPACING[pt]
        assert len(packets) == round(2 * PROMPT_SECONDS / spacing)
        gaps = np.diff([t for t, _ in packets])
        assert abs(np.median(gaps) - spacing) < 0.002, (pt, np.median(gaps))
        duration = packets[-1][0] - packets[0][0]
        assert abs(duration - (len(packets) - 1) * spacing) < 0.1, (pt, duration)
        # each play was encoded from the codec's initial state: decode each on its own
        for play in (body[:len(prompt_bytes)], body[len(prompt_bytes):]):
            decoded = get_codec(pt).decode(play)
            assert snr_db(source, decoded, max_lag=60, skip=400) >= MIN_SNR[pt], pt
    assert d.command("G nplrs_created nplrs_destroyed") == "5 5"
    played = int(d.command("G npkts_played"))
    assert played == sum(len(p) for p in got.values())
    assert d.command("I").splitlines()[4] == "packets transmitted: %d" % played


def test_relayed_media_is_dropped_while_playing_and_s_stops(rtpproxy, prompt):
    base, _ = prompt
    d = rtpproxy("-l", "127.0.0.1")
    caller, callee = Endpoint(), Endpoint()
    to_caller_side, to_callee_side = call(d, "stop", caller, callee)
    assert d.command("P-1 stop %s 0 ftag ttag" % base) == "0"     # forever
    # the callee talks meanwhile: nothing of it reaches the caller
    for i in range(20):
        callee.send(rtp_packet(i, ssrc=0xCA11EE), "127.0.0.1", to_callee_side)
        time.sleep(0.01)
    during = collect([caller], 0.3)[caller]
    ssrcs = {rtp.parse(data).ssrc for _, data in during}
    assert len(ssrcs) == 1 and 0xCA11EE not in ssrcs
    assert len(during) > 30
    # ... while the caller's own media still reaches the callee
    caller.send(rtp_packet(1, ssrc=0xC0FFEE), "127.0.0.1", to_caller_side)
    data, _ = callee.recv()
    assert rtp.parse(data).ssrc == 0xC0FFEE
    assert d.command("S stop ftag ttag") == "0"
    assert wait_for(lambda: not collect([caller], 0.05)[caller])    # whatever was in flight
    assert collect([caller], 0.3)[caller] == []
    callee.send(rtp_packet(99, ssrc=0xCA11EE), "127.0.0.1", to_callee_side)
    data, _ = caller.recv()
    assert rtp.parse(data).ssrc == 0xCA11EE  # relaying to the caller resumed
    assert d.command("G nplrs_created nplrs_destroyed") == "1 1"


def test_session_codecs_and_ptime_from_z(rtpproxy, prompt):
    """P ... session: the caller offered 8 first (Uc8,0); the callee's Lz60 sets
    60 ms packets for prompts to the caller."""
    base, source = prompt
    d = rtpproxy("-l", "127.0.0.1")
    caller, callee = Endpoint(), Endpoint()
    call(d, "sess", caller, callee, u_mods="c8,0,101", l_mods="z60")
    assert d.command("P sess %s session ftag ttag" % base) == "0"
    packets = collect([caller], PROMPT_SECONDS + 1.0, stop_after_quiet=0.4)[caller]
    headers = [rtp.parse(data) for _, data in packets]
    assert {h.pt for h in headers} == {8}
    assert len(packets) == round(PROMPT_SECONDS / 0.060)        # 4000 bytes / 480: 8 packets
    assert {len(p) for p in payloads(packets)} == {480}
    assert [(h.ts - headers[0].ts) & 0xFFFFFFFF for h in headers] == [480 * k for k in range(8)]
    gaps = np.diff([t for t, _ in packets])
    assert abs(np.median(gaps) - 0.060) < 0.003


def test_prompt_waits_until_the_party_is_known(rtpproxy, prompt):
    """P towards the callee before its address is known: the prompt starts
    when the callee's first packet latches it."""
    base, _ = prompt
    d = rtpproxy("-l", "127.0.0.1")
    callee = Endpoint()
    to_callee_side = int(d.command("U late 127.0.0.1 9 ftag").split()[0])
    d.command("L late x y ftag ttag")                   # no usable address: ignored
    assert d.command("P late %s 18 ttag ftag" % base) == "0"
    assert collect([callee], 0.2)[callee] == []
    callee.send(rtp_packet(1, ssrc=0x77), "127.0.0.1", to_callee_side)
    packets = collect([callee], PROMPT_SECONDS + 1.0, stop_after_quiet=0.4)[callee]
    assert len(packets) == 50 and {rtp.parse(data).pt for _, data in packets} == {18}


def test_play_errors(rtpproxy, prompt, tmp_path):
    base, _ = prompt
    d = rtpproxy("-l", "127.0.0.1")
    caller, callee = Endpoint(), Endpoint()
    call(d, "err", caller, callee)
    assert d.command("P nosuch %s 0 ftag ttag" % base) == "E50"
    assert d.command("P err %s 4,96 ftag ttag" % base) == "E60"       # no such files
    assert d.command("P err %s/none 0,8 ftag ttag" % base) == "E60"
    assert d.command("P err %s session ftag ttag" % base) == "E35"    # no c list
    assert d.command("Px err %s 0 ftag ttag" % base) == "E17"
    (tmp_path / "dir.0").mkdir()
    assert d.command("P err %s/dir 0,8 ftag ttag" % tmp_path) == "E60"  # not a file
    assert d.command("S nosuch ftag ttag") == "E50"
    assert d.command("Sx err ftag ttag") == "E2"
    assert d.command("S err ftag ttag") == "0"                          # nothing playing
    # P0 stops a playing prompt
    assert d.command("P-1 err %s 0 ftag ttag" % base) == "0"
    assert wait_for(lambda: caller.recv(0.5)[0] is not None)
    assert d.command("P0 err %s 0 ftag ttag" % base) == "0"
    assert wait_for(lambda: not collect([caller], 0.05)[caller])    # in flight, drained
    assert collect([caller], 0.2)[caller] == []
    # a file that is not a whole packet long plays nothing and ends
    (tmp_path / "tiny.0").write_bytes(b"\xff" * 50)
    assert d.command("P err %s/tiny 0 ftag ttag" % tmp_path) == "0"
    assert collect([caller], 0.2)[caller] == []
    assert wait_for(lambda: d.command("G nplrs_created nplrs_destroyed") == "2 2")
    assert d.command("D err ftag ttag") == "0"


def test_deleting_the_session_ends_the_prompt(rtpproxy, prompt):
    base, _ = prompt
    d = rtpproxy("-l", "127.0.0.1")
    caller, callee = Endpoint(), Endpoint()
    call(d, "del", caller, callee)
    assert d.command("P-1 del %s 0 ftag ttag" % base) == "0"
    assert len(collect([caller], 0.2)[caller]) > 5
    assert d.command("D del ftag ttag") == "0"
    assert wait_for(lambda: not collect([caller], 0.05)[caller])    # in flight, drained
    assert collect([caller], 0.2)[caller] == []
    assert d.command("G nplrs_created nplrs_destroyed") == "1 1"


def test_prompt_plays_over_ipv6(rtpproxy, prompt):
    base, source = prompt
    d = rtpproxy("-l", "127.0.0.1", "-6", "::1")
    caller, callee = Endpoint("::1"), Endpoint("::1")
    call(d, "v6", caller, callee, u_mods="6", l_mods="6")
    assert d.command("P v6 %s 3 ftag ttag" % base) == "0"
    packets = collect([caller], PROMPT_SECONDS + 1.0, stop_after_quiet=0.4)[caller]
    assert len(packets) == 25 and {rtp.parse(data).pt for _, data in packets} == {3}
    decoded = get_codec(3).decode(b"".join(payloads(packets)))
    assert snr_db(source, decoded, max_lag=60, skip=400) >= MIN_SNR[3]
