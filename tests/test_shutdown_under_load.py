"""SIGTERM in the middle of everything: media flowing, calls being recorded,
control clients asking. Replies stop cleanly (every reply that was started is
whole, then the connection ends), the daemon exits 0, and every recording is
complete: moved out of the spool, readable to its last record, holding every
packet the relay forwarded.

(Prompt playback is not on main yet; when it is, a playing session belongs
here too.)"""

import os
import signal
import socket
import threading
import time

from helpers import Endpoint, port_range, rtp_packet
from rtpproxy_py.media import recording_reader

HOST = "127.0.0.1"
CALLS = 8


def test_sigterm_while_recording_and_answering(rtpproxy, tmp_path):
    final, spool = tmp_path / "final", tmp_path / "spool"
    final.mkdir()
    spool.mkdir()
    d = rtpproxy("-l", HOST, "-r", str(final), "-S", str(spool), "-P", control="tcp",
                 ports=port_range(200))
    calls = []
    for n in range(CALLS):
        caller, callee = Endpoint(), Endpoint()
        d.command("U c%d %s %d ft" % (n, HOST, caller.port))
        to_caller = int(d.command("L c%d %s %d ft tt" % (n, HOST, callee.port)).split()[0])
        assert d.command("R c%d ft" % n) == "0"               # what the caller sends
        calls.append((caller, callee, to_caller))

    stop = threading.Event()
    sent = [[] for _ in range(CALLS)]
    received = [[] for _ in range(CALLS)]

    def talk():
        seq = 0
        while not stop.is_set():
            for n, (caller, _, to_caller) in enumerate(calls):
                packet = rtp_packet(seq, seq * 160, 0x1000 + n)
                try:
                    caller.send(packet, HOST, to_caller)
                except OSError:
                    pass
                sent[n].append(packet)
            seq += 1
            time.sleep(0.002)

    def listen(n):
        callee = calls[n][1]
        while not stop.is_set():
            data, _ = callee.recv(0.1)
            if data is not None:
                received[n].append(data)

    replies = []

    def ask():
        conn = socket.create_connection(("127.0.0.1", d.ctl_port), timeout=5)
        data = b""
        try:
            while True:
                conn.sendall(b"Q c0 ft tt\nG nsess_created\n")
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            conn.close()
        replies.append(data)

    threads = [threading.Thread(target=talk), threading.Thread(target=ask)]
    threads += [threading.Thread(target=listen, args=(n,)) for n in range(CALLS)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert d.stop(signal.SIGTERM) == 0
    stop.set()
    for t in threads:
        t.join(10)
    time.sleep(0.2)          # what was in flight when the relay stopped
    for n, (caller, callee, _) in enumerate(calls):
        for data, _ in callee.drain(0.05):
            received[n].append(data)
        caller.close()
        callee.close()

    # replies: whole lines up to the end, then the connection closed
    [stream] = replies
    lines = stream.split(b"\n")
    assert lines[-1] == b"", "a reply was cut: %r" % lines[-1][-80:]
    assert len(lines) > 50
    for line in lines[:-1]:        # G; Q; or Q after shutdown began ending the sessions
        assert line in (b"%d" % CALLS, b"E50") or len(line.split()) == 5, line

    # recordings: all moved out of the spool, whole, with every relayed packet
    assert os.listdir(spool) == []
    for n in range(CALLS):
        rec = recording_reader.read(str(final / ("c%d=ft.o.rtp" % n)))
        assert not rec.truncated
        recorded = [p.data for p in rec.packets]
        assert len(received[n]) > 100, ([len(r) for r in received], [len(s) for s in sent], lines[-6:])
        assert set(received[n]) <= set(recorded), "relayed but not recorded"
        assert recorded == sent[n][:len(recorded)], "recorded something not sent, or out of order"
