"""The plain parts of --workers: which worker holds a Call-ID, adding up
counters, and the front end <-> worker channel."""

import collections

import gevent

from rtpproxy_py import channel
from rtpproxy_py.workers import add_values, retire, worker_for


def test_call_ids_spread_evenly_and_stay_put():
    counts = collections.Counter(worker_for("call-%d@host" % n, 4) for n in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800
    assert worker_for("abc", 3) == worker_for("abc", 3)
    # any token the parser accepts hashes, even undecodable bytes carried as surrogates
    assert 0 <= worker_for("x\udcff", 2) < 2


def test_counters_add_up_and_a_dead_worker_leaves_its_totals():
    total = add_values({"nsess_created": 2, "pps_in": 1.5}, {"nsess_created": 3, "pps_in": 2.0,
                                                            "npkts_rcvd": 7})
    assert total == {"nsess_created": 5, "pps_in": 3.5, "npkts_rcvd": 7}
    gone = retire({"nsess_created": 4, "nsess_destroyed": 1, "npkts_rcvd": 10})
    assert gone == {"nsess_created": 4, "nsess_destroyed": 4, "npkts_rcvd": 10}


def test_channel_keeps_order_past_a_full_socket_buffer():
    front, back = channel.pair()
    sender, receiver = channel.Channel(front), channel.Channel(back)
    big = b"x" * 8000
    for n in range(300):        # more than the socket buffer holds: some wait in the outbox
        sender.send(channel.COMMAND, big, "127.0.0.1", str(n))
    assert sender.outbox
    got = [receiver.receive()[3] for _ in range(300)]
    assert got == [str(n) for n in range(300)]
    gevent.sleep(0)
    assert not sender.outbox
    sender.close()
    assert receiver.receive() is None
    receiver.close()
