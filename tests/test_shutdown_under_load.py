"""SIGTERM in the middle of everything: media flowing, calls being recorded,
prompts playing, control clients asking. Replies stop cleanly (every reply
that was started is whole, then the connection ends), prompts stop, the
daemon exits 0, and every recording is complete: moved out of the spool,
readable to its last record, holding every packet the relay forwarded."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from audio import tone
from helpers import TOP, Endpoint, port_range, rtp_packet
from rtpproxy_py.media import recording_reader, rtp

HOST = "127.0.0.1"
CALLS = 8
PLAYING = 4            # calls 0-3 also play a prompt to their caller, forever


def make_prompt(folder):
    (folder / "tone.sln").write_bytes(tone(0.5, freq=1000).astype("<i2").tobytes())
    subprocess.run([sys.executable, os.path.join(TOP, "tools", "makeann.py"),
                    str(folder / "tone.sln"), str(folder / "tone")], check=True, timeout=60)
    return str(folder / "tone")


def test_sigterm_while_recording_and_answering(rtpproxy, tmp_path):
    final, spool = tmp_path / "final", tmp_path / "spool"
    final.mkdir()
    spool.mkdir()
    prompt = make_prompt(tmp_path)
    d = rtpproxy("-l", HOST, "-r", str(final), "-S", str(spool), "-P", control="tcp",
                 ports=port_range(200))
    calls = []
    for n in range(CALLS):
        caller, callee = Endpoint(), Endpoint()
        d.command("U c%d %s %d ft" % (n, HOST, caller.port))
        to_caller = int(d.command("L c%d %s %d ft tt" % (n, HOST, callee.port)).split()[0])
        assert d.command("R c%d ft" % n) == "0"               # what the caller sends
        calls.append((caller, callee, to_caller))
    for n in range(PLAYING):
        assert d.command("P-1 c%d %s 8 ft tt" % (n, prompt)) == "0"

    stop = threading.Event()
    sent = [[] for _ in range(CALLS)]
    received = [[] for _ in range(CALLS)]
    played = [[] for _ in range(PLAYING)]

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

    def hear(n):
        caller = calls[n][0]
        while not stop.is_set():
            data, _ = caller.recv(0.1)
            if data is not None:
                played[n].append((time.monotonic(), data))

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
    threads += [threading.Thread(target=hear, args=(n,)) for n in range(PLAYING)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert d.stop(signal.SIGTERM) == 0
    stopped = time.monotonic()
    time.sleep(0.3)
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

    # prompts: played in PCMA until the signal, then nothing
    for n in range(PLAYING):
        headers = [rtp.parse(data) for _, data in played[n]]
        assert len(headers) > 50, n
        assert {h.pt for h in headers} == {8} and len({h.ssrc for h in headers}) == 1
        assert max(t for t, _ in played[n]) < stopped + 0.05

    # recordings: all moved out of the spool, whole, with every relayed packet
    assert os.listdir(spool) == []
    for n in range(CALLS):
        rec = recording_reader.read(str(final / ("c%d=ft.o.rtp" % n)))
        assert not rec.truncated
        recorded = [p.data for p in rec.packets]
        assert len(received[n]) > 100, ([len(r) for r in received], [len(s) for s in sent], lines[-6:])
        assert set(received[n]) <= set(recorded), "relayed but not recorded"
        assert recorded == sent[n][:len(recorded)], "recorded something not sent, or out of order"
