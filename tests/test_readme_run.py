"""The README's run command (`make run`) starts a daemon that relays a call.

It runs inside a private network namespace so the fixed default control port
(udp:127.0.0.1:22222) cannot clash with anything else on the machine."""

import os
import re
import signal
import subprocess
import sys
import textwrap

from helpers import TOP

CALL = textwrap.dedent("""
    import socket, sys, time
    sys.path.insert(0, %r)
    from helpers import relay_one_call
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.settimeout(1.0)
    n = [0]
    def command(text):
        n[0] += 1
        cookie = b"readme_%%d" %% n[0]
        ctl.sendto(cookie + b" " + text.encode(), ("127.0.0.1", 22222))
        reply = ctl.recv(1000)
        assert reply.startswith(cookie + b" "), reply
        return reply[len(cookie) + 1:].decode().strip()
    for _ in range(100):
        try:
            if command("V") == "20040107":
                break
        except OSError:
            time.sleep(0.1)
    got_callee, got_caller, sent = relay_one_call(command)
    assert got_callee == sent and got_caller == sent, (got_callee, got_caller)
    print("relayed", len(sent), "packets each way")
""") % os.path.join(TOP, "tests")


def test_readme_names_make_run_and_make_test():
    readme = open(os.path.join(TOP, "README.md")).read()
    assert re.search(r"^\s+make run$", readme, re.M)
    assert re.search(r"^\s+make test$", readme, re.M)
    assert "make test" in open(os.path.join(TOP, ".ci", "run")).read()


def test_make_run_relays_a_call():
    ns = "readme%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    daemon = None
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        daemon = subprocess.Popen(["ip", "netns", "exec", ns, "make", "-s", "-C", TOP, "run"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True)
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CALL],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "relayed 5 packets each way" in out.stdout
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(10)
        subprocess.run(["ip", "netns", "del", ns])
