"""The sans-IO Player and the Session's playback bookkeeping, on a fake clock."""

import random

import pytest

from rtpproxy_py.media import rtp
from rtpproxy_py.media.player import BytesSource, Player, parse_codec_list
from rtpproxy_py.session import FOREVER, Session


def player(data, pt=0, ptime=10, count=1, seed=1):
    return Player(BytesSource(data), pt, ptime, count, rng=random.Random(seed))


def play_all(p, start=100.0, limit=10000):
    """Run the player to its end; [(send time, parsed header, payload)]."""
    p.start(start)
    out = []
    now = start
    while p.next_due is not None and len(out) < limit:
        now = p.next_due
        for packet in p.poll(now):
            h = rtp.parse(packet)
            out.append((now, h, packet[h.payload_offset:]))
    return out


@pytest.mark.parametrize("pt,size,ptime,count,packet_bytes,ticks", [
    (0, 48000, 10, 600, 80, 80),       # PCMU 6 s: 600 packets of 10 ms
    (8, 48000, 10, 600, 80, 80),
    (9, 48000, 10, 600, 80, 80),       # G.722: 8 bytes and 8 ticks per ms
    (18, 6000, 10, 600, 10, 80),
    (3, 9900, 10, 300, 33, 160),       # GSM frames are 20 ms: 10 ms rounds up
    (0, 48000, 60, 100, 480, 480),     # Lz60: 60 ms packets
    (3, 9900, 60, 100, 99, 480),
    (4, 2400, 10, 100, 24, 240),       # G.723: 30 ms frames
])
def test_packetization(pt, size, ptime, count, packet_bytes, ticks):
    data = bytes(i & 0xFF for i in range(size))
    sent = play_all(player(data, pt, ptime))
    assert len(sent) == count
    assert all(len(payload) == packet_bytes for _, _, payload in sent)
    assert b"".join(payload for _, _, payload in sent) == data[:count * packet_bytes]
    first = sent[0][1]
    assert first.marker and not any(h.marker for _, h, _ in sent[1:])
    assert {h.pt for _, h, _ in sent} == {pt}
    assert {h.ssrc for _, h, _ in sent} == {first.ssrc}
    for k, (when, h, _) in enumerate(sent):
        assert h.seq == (first.seq + k) & 0xFFFF
        assert h.ts == (first.ts + k * ticks) & 0xFFFFFFFF
        assert when == pytest.approx(100.0 + k * ticks / 8000.0)


def test_loops_discard_the_partial_tail_and_rewind():
    data = bytes(range(200))                 # 2 whole 80-byte packets + 40 bytes
    sent = play_all(player(data, count=3))
    assert [payload for _, _, payload in sent] == [data[:80], data[80:160]] * 3
    assert [h.seq - sent[0][1].seq for _, h, _ in sent] == list(range(6))


def test_negative_count_plays_forever():
    sent = play_all(player(bytes(160), count=-1), limit=1000)
    assert len(sent) == 1000


def test_file_shorter_than_a_packet_ends_at_once():
    p = player(bytes(79), count=-1)
    p.start(5.0)
    assert p.poll(5.0) == [] and p.finished and p.next_due is None


def test_unknown_codec_sends_nothing_but_stays():
    p = player(bytes(1000), pt=101)
    p.start(1.0)
    assert p.poll(2.0) == () and not p.finished and p.next_due is None


def test_late_poll_sends_every_due_packet_in_order():
    p = player(bytes(range(240)))
    p.start(0.0)
    burst = p.poll(0.025)                    # packets due at 0, 10 and 20 ms
    assert [rtp.parse(x).seq for x in burst] == [(p.seq - 3 + k) & 0xFFFF for k in range(3)]
    assert p.next_due == pytest.approx(0.030)


def test_random_start_values_differ_between_players():
    a, b = player(bytes(80), seed=1), player(bytes(80), seed=2)
    assert (a.seq, a.ts, a.ssrc) != (b.seq, b.ts, b.ssrc)


def test_codec_list_parsing():
    assert parse_codec_list("0,8,18") == [0, 8, 18]
    assert parse_codec_list("18;3 9") == [18, 3, 9]
    assert parse_codec_list("") == []


def _session():
    s = Session("cid", "ftag", 0.0, 60)
    for stream in s.rtp:
        stream.port = 30000 + 2 * stream.index
        stream.refresh_target()
    return s


def test_session_mutes_relay_towards_the_party_while_playing():
    s = _session()
    s.rtp[1].rem_addr = ("127.0.0.1", 5000)
    s.rtp[1].refresh_target()
    assert s.rtp[1].target == ("127.0.0.1", 5000)
    s.start_playback(1, player(bytes(160)), 0.0)
    assert s.rtp[1].target is None            # media from the other party is dropped
    due = s.playback_due(0.0)
    assert [stream.index for stream, _ in due] == [1]
    assert s.next_playback_at(0.0) == pytest.approx(0.010)
    assert len(s.playback_due(0.010)) == 1
    assert s.playback_due(0.020) == [] and s.players is None   # prompt over
    assert s.rtp[1].target == ("127.0.0.1", 5000)
    assert (s.npkts_played, s.nplrs_destroyed) == (2, 1)
    assert s.next_playback_at(0.03) == FOREVER


def test_session_player_waits_for_the_address():
    s = _session()
    s.start_playback(0, player(bytes(800)), 0.0)
    assert s.playback_due(0.0) == []
    assert s.next_playback_at(0.0) == pytest.approx(0.01)
    s.rtp[0].rem_addr = ("127.0.0.1", 6000)     # latched at 0.5 s
    assert len(s.playback_due(0.5)) == 1
    assert s.next_playback_at(0.5) == pytest.approx(0.51)


def test_stop_playback_unmutes_and_counts():
    s = _session()
    s.rtp[0].rem_addr = ("127.0.0.1", 6000)
    p = player(bytes(800))
    s.start_playback(0, p, 0.0)
    assert s.stop_playback(0) is True and p.finished
    assert s.stop_playback(0) is False
    assert s.rtp[0].muted is False and s.nplrs_destroyed == 1


def test_prompt_files_are_shared_and_reloaded_when_changed(tmp_path):
    import os
    from rtpproxy_py.media.prompt_file import open_prompt
    (tmp_path / "p.8").write_bytes(b"a" * 160)
    assert open_prompt(str(tmp_path / "p"), "0,9") is None
    pt, first = open_prompt(str(tmp_path / "p"), "0,8")
    _, second = open_prompt(str(tmp_path / "p"), "8")
    assert pt == 8 and first.data is second.data            # one copy in memory
    (tmp_path / "p.8").write_bytes(b"b" * 240)
    os.utime(tmp_path / "p.8", ns=(1, 1))
    _, third = open_prompt(str(tmp_path / "p"), "8")
    assert third.data == b"b" * 240
    (tmp_path / "d.0").mkdir()
    with pytest.raises(OSError):
        open_prompt(str(tmp_path / "d"), "0")
