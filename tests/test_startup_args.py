"""Start-up as upstream (issue 14): an unwritable default pid file is a
warning, not a refusal; -s HOST:PORT without a scheme is a unix socket path,
with a warning naming the udp: spelling that was probably meant. (-L and
-6 '' refusals: test_cli.py, test_daemon_life.py.)"""

import os
import socket
import subprocess
import sys

from helpers import TOP, free_port, port_range

# As root, /var/run is made read-only in a mount namespace of its own; a user
# cannot write there anyway.
READ_ONLY_RUN = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                 'mount --bind /run /run && mount -o remount,bind,ro /run && exec "$@"', "sh"]


def test_unwritable_default_pid_file_is_one_warning_and_the_daemon_runs(tmp_path):
    lo, hi = port_range(4)
    argv = [sys.executable, "-m", "rtpproxy_py", "-f", "-F", "-d", "WARN", "-s", "stdio:",
            "-m", str(lo), "-M", str(hi)]
    if os.geteuid() == 0:
        argv = READ_ONLY_RUN + argv
    out = subprocess.run(argv, input="V\nVF 20150420\n", capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, PYTHONPATH=TOP), cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "20040107\n1\n"
    warnings = [line for line in out.stderr.splitlines() if "pid file" in line]
    assert len(warnings) == 1 and "/var/run/rtpproxy.pid" in warnings[0], out.stderr
    assert "WARNING" in warnings[0]


def test_host_port_without_scheme_is_a_unix_socket_with_a_warning(rtpproxy, tmp_path):
    port = free_port()
    text = "127.0.0.1:%d" % port
    d = rtpproxy("-s", text, cwd=str(tmp_path))
    assert [line for line in d.log().splitlines() if "udp:" + text in line and "WARNING" in line] != []
    assert d.log().count("udp:" + text) == 1
    # a unix socket of that name in the working directory serves commands
    path = tmp_path / text
    assert path.is_socket()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
        ctl.settimeout(3)
        ctl.connect(str(path))
        ctl.sendall(b"V\n")
        assert ctl.recv(100) == b"20040107\n"
    # and nothing listens on the UDP port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))
