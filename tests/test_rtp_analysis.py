"""RTP analysis through the real daemon: a sender we control injects loss,
duplicates, reordering, garbage, pauses and jitter, and Q/G/I report it
(control-protocol.md 5.14, 5.15, 5.17)."""

import time

import pytest

from helpers import Endpoint, rtp_packet, wait_for
from rtpproxy_py.stats import COUNTER_NAMES

HOST = "127.0.0.1"


class Call:
    """A caller and a callee through the relay (U from the caller, L from the callee)."""

    def __init__(self, d, call_id="call", mods_u=""):
        self.d = d
        self.id = call_id
        self.caller, self.callee = Endpoint(), Endpoint()
        self.to_callee = int(d.command("U%s %s %s %d ft" % (mods_u, call_id, HOST, self.caller.port)).split()[0])
        self.to_caller = int(d.command("L %s %s %d ft tt" % (call_id, HOST, self.callee.port)).split()[0])

    def caller_sends(self, packets, interval=0.0):
        """Packets from the caller (counted on the stream Q ... ft tt reports)."""
        for data in packets:
            self.caller.send(data, HOST, self.to_caller)
            if interval:
                time.sleep(interval)

    def callee_sends(self, packets, interval=0.0):
        for data in packets:
            self.callee.send(data, HOST, self.to_callee)
            if interval:
                time.sleep(interval)

    def q_caller(self, *names):
        return self.d.command("Qv %s ft tt %s" % (self.id, " ".join(names)))

    def q_callee(self, *names):
        return self.d.command("Qv %s tt ft %s" % (self.id, " ".join(names)))

    def close(self):
        self.caller.close()
        self.callee.close()


def values(reply):
    return {k: float(v) if "." in v else int(v) for k, v in (item.split("=") for item in reply.split())}


SEQ_COUNTERS = ("npkts_ina", "rtpa_nsent", "rtpa_nrcvd", "rtpa_ndups", "rtpa_nlost", "rtpa_perrs")


def test_loss_duplicates_reordering_and_garbage_are_counted_exactly(rtpproxy):
    d = rtpproxy("-l", HOST, "--rtp_analysis")
    call = Call(d)
    order = [k for k in range(200) if k not in (10, 11, 12, 150)]   # 4 lost
    order.insert(50, 40)                                             # 40 again
    order.insert(90, 89)                                             # 89 again
    i = order.index(120)
    order[i], order[i + 1] = order[i + 1], order[i]                  # 120/121 swapped
    order[i + 10:i + 13] = [order[i + 12], order[i + 10], order[i + 11]]
    packets = [rtp_packet(1000 + k, 160 * k, 0x5151) for k in order]
    packets[30:30] = [b"\x00" * 40, b"\x40junk-not-rtp"]             # 2 not RTP
    call.caller_sends(packets)
    expected = {"npkts_ina": len(packets), "rtpa_nsent": 200, "rtpa_nrcvd": 196, "rtpa_ndups": 2,
                "rtpa_nlost": 4, "rtpa_perrs": 2}
    assert wait_for(lambda: values(call.q_caller(*SEQ_COUNTERS)) == expected), call.q_caller(*SEQ_COUNTERS)
    # the other direction is counted on its own
    call.callee_sends([rtp_packet(k, 160 * k, 0x7272) for k in range(0, 30, 3)])
    assert wait_for(lambda: values(call.q_callee("rtpa_nsent", "rtpa_nrcvd", "rtpa_nlost")) ==
                    {"rtpa_nsent": 28, "rtpa_nrcvd": 10, "rtpa_nlost": 18})
    # plain Q with names: values only, in the order asked
    assert d.command("Q call ft tt rtpa_nlost rtpa_ndups rtpa_nsent") == "4 2 200"
    # G: totals over both streams
    assert d.command("Gv rtpa_nsent rtpa_nrcvd rtpa_ndups rtpa_nlost rtpa_perrs") == \
        "rtpa_nsent=228 rtpa_nrcvd=206 rtpa_ndups=2 rtpa_nlost=22 rtpa_perrs=2"
    # fused Q && D: the figures from before the delete, then the session is gone
    assert d.command("Q call ft tt rtpa_nsent rtpa_nlost && D") == "200 4"
    assert d.command("Q call ft tt") == "E50"
    # G keeps what the destroyed session counted
    assert d.command("G rtpa_nsent rtpa_nlost") == "228 22"
    call.close()


def test_sequence_wrap_and_ssrc_change(rtpproxy):
    d = rtpproxy("-l", HOST, "--rtp_analysis")
    call = Call(d)
    first = [rtp_packet(s & 0xFFFF, 0, 0xA) for s in range(65500, 65600) if s != 65540]
    second = [rtp_packet(s, 0, 0xB) for s in range(7000, 7050)]
    call.caller_sends(first + second)
    assert wait_for(lambda: values(call.q_caller("rtpa_nsent", "rtpa_nrcvd", "rtpa_nlost")) ==
                    {"rtpa_nsent": 150, "rtpa_nrcvd": 149, "rtpa_nlost": 1}), call.q_caller("rtpa_nsent")
    call.close()


def send_paced(endpoint, port, count, delays, ssrc, ts_jump=0):
    """``count`` 20 ms packets, packet k sent delays[k] seconds after its
    slot; timestamps move on by ``ts_jump`` with the first delayed packet
    (a pause in talking, not a late network)."""
    start = time.monotonic() + 0.05
    jumped = 0
    for k in range(count):
        due = start + 0.02 * k + delays[k]
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if delays[k] and ts_jump:
            jumped = ts_jump
        endpoint.send(rtp_packet(k, 160 * k + jumped, ssrc), HOST, port)


def test_jitter_and_longest_interval(rtpproxy):
    """A steady sender shows little jitter; one whose packets alternate
    between on time and 15 ms late shows about 15 ms (120 timestamp units at
    8 kHz): each transit time differs from the previous one by 15 ms. Arrival
    times are the poll times, 0-2 ms late (--poll_batch 2), hence the margins."""
    d = rtpproxy("-l", HOST, "--rtp_analysis")
    call = Call(d)
    steady = [0.0] * 60 + [0.4] * 40                  # and a 0.42 s pause after packet 59
    jittery = [0.015 * (k % 2) for k in range(100)]
    send_paced(call.caller, call.to_caller, 100, steady, 0x1, ts_jump=3200)
    send_paced(call.callee, call.to_callee, 100, jittery, 0x2)
    time.sleep(0.1)
    quiet = values(call.q_caller("rtpa_jlast", "rtpa_jmax", "rtpa_javg", "longest_ipi"))
    noisy = values(call.q_callee("rtpa_jlast", "rtpa_jmax", "rtpa_javg", "longest_ipi"))
    assert quiet["rtpa_javg"] < 40, quiet
    assert 0.38 <= quiet["longest_ipi"] <= 0.6, quiet
    assert 80 <= noisy["rtpa_jlast"] <= 200, noisy
    assert noisy["rtpa_jmax"] >= noisy["rtpa_jlast"]
    assert noisy["rtpa_javg"] > 2 * quiet["rtpa_javg"] + 20, (quiet, noisy)
    assert 0.02 <= noisy["longest_ipi"] <= 0.2, noisy
    # %f: six decimals
    reply = call.q_caller("longest_ipi", "rtpa_jlast")
    assert all(len(v.split(".")[1]) == 6 for v in (item.split("=")[1] for item in reply.split()))
    call.close()


def test_g_knows_every_counter_name(rtpproxy):
    d = rtpproxy("-l", HOST, "--rtp_analysis")
    names = list(COUNTER_NAMES)
    assert len(names) == 29
    for part in (names[:15], names[15:]):
        reply = d.command("Gv " + " ".join(part))
        assert [item.split("=")[0] for item in reply.split()] == part
    assert d.command("G rtpa_nsent npkts_dropped") == "E68"     # not an upstream name


def test_repacketizer_counters_in_g(rtpproxy):
    d = rtpproxy("-l", HOST, "--rtp_analysis")
    call = Call(d, mods_u="z30")
    call.caller_sends([rtp_packet(k, 160 * k, 0x3, payload=bytes(160)) for k in range(9)], 0.02)
    assert wait_for(lambda: d.command("G npkts_resizer_in npkts_resizer_out") == "9 6")
    # audio whose time was sent already is discarded
    call.caller_sends([rtp_packet(3, 480, 0x3, payload=bytes(160))])
    assert wait_for(lambda: d.command("G npkts_resizer_in npkts_resizer_discard") == "10 1")
    # z200 holds less than 200 ms for up to 400 ms; a U without z then discards it
    d.command("Uz200 call %s %d ft" % (HOST, call.caller.port))
    call.caller_sends([rtp_packet(9, 1440, 0x3, payload=bytes(80))])
    assert wait_for(lambda: d.command("G npkts_resizer_in") == "11", interval=0.01)
    d.command("U call %s %d ft" % (HOST, call.caller.port))
    assert d.command("G npkts_resizer_in npkts_resizer_out npkts_resizer_discard") == "11 6 2"
    # and packets pass unchanged again
    call.callee.drain(0.1)
    call.caller_sends([rtp_packet(10, 1520, 0x3, payload=bytes(160))])
    assert call.callee.recv()[0] == rtp_packet(10, 1520, 0x3, payload=bytes(160))
    call.close()


def test_info_and_load(rtpproxy):
    d = rtpproxy("-l", HOST, "--rtp_analysis")
    call = Call(d)
    call.caller_sends([rtp_packet(k, 160 * k, 0x9) for k in range(2000)])
    lines = d.command("Il").splitlines()
    assert lines[:3] == ["sessions created: 1", "active sessions: 1", "active streams: 2"]
    assert d.command("Ib").splitlines()[:3] == lines[:3]
    assert wait_for(lambda: float(d.command("Il").splitlines()[-1].split(": ")[1]) > 0, timeout=8)
    load = d.command("Il").splitlines()[-1]
    assert load.startswith("average load: ") and 0 < float(load.split(": ")[1]) < 2.5
    assert len(load.split(".")[1]) == 6
    call.close()


@pytest.mark.parametrize("date", ["20071116", "20140323", "20141004", "20150420", "20230205",
                                  "20230424"])
def test_capability_dates(rtpproxy, date):
    d = rtpproxy("-l", HOST, "--rtp_analysis")
    assert d.command("VF " + date) == "1"


def test_analysis_is_on_by_default_as_upstream(rtpproxy):
    """Upstream always analyzes: without any option VF 20150420 (OpenSIPS
    probes it before rtpproxy_all_stats()), 20230205 and 20230424 answer 1 and
    Q and G carry real rtpa_* values."""
    d = rtpproxy("-l", HOST)
    assert [d.command("VF " + date) for date in ("20150420", "20230205", "20230424")] == ["1", "1", "1"]
    call = Call(d)
    call.caller_sends([rtp_packet(k, 160 * k, 0x9) for k in range(20) if k != 5])
    assert wait_for(lambda: values(call.q_caller("npkts_ina")) == {"npkts_ina": 19})
    got = values(call.q_caller("rtpa_nsent", "rtpa_nrcvd", "rtpa_nlost"))
    assert got == {"rtpa_nsent": 20, "rtpa_nrcvd": 19, "rtpa_nlost": 1}
    assert d.command("G rtpa_nsent rtpa_nlost") == "20 1"
    call.close()


def test_no_rtp_analysis_turns_it_off(rtpproxy):
    """--no_rtp_analysis: nothing is analyzed, the counters read 0 and VF
    says so, so clients (OpenSIPS probes 20150420) do not rely on them."""
    d = rtpproxy("-l", HOST, "--no_rtp_analysis")
    call = Call(d)
    call.caller_sends([rtp_packet(k, 160 * k, 0x9) for k in range(20) if k != 5])
    assert wait_for(lambda: values(call.q_caller("npkts_ina")) == {"npkts_ina": 19})
    assert call.q_caller("rtpa_nsent", "rtpa_nlost", "rtpa_javg", "longest_ipi") == \
        "rtpa_nsent=0 rtpa_nlost=0 rtpa_javg=0.000000 longest_ipi=0.000000"
    assert d.command("G rtpa_nsent") == "0"
    assert [d.command("VF " + date) for date in ("20150420", "20230205", "20230424", "20071116")] == \
        ["0", "0", "0", "1"]
    # relaying itself is the same
    assert len(call.callee.drain(0.2)) == 19
    call.close()
