"""The Debian package (debian/): built with dpkg-buildpackage from a clean
copy of the tree, lintian-clean, installed with apt-get, the daemon started
the way rtpproxy.service starts it (as the packaged user, with the packaged
defaults, under Debian's python3), one call relayed through it, then purged.

The install-to-purge test holds a machine-wide lock, since it changes the
machine: /usr/bin/rtpproxy, the rtpproxy user and /etc/default/rtpproxy exist
while it runs. It leaves none of them behind, whatever happens.
"""

import fcntl
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess

import pytest

from helpers import TOP, console_scripts, relay_one_call, wait_for

from rtpproxy_py import version_string

PACKAGE = "rtpproxy-py"
USER = "rtpproxy"
LOCK = "/run/lock/rtpproxy-py-package-test.lock"
# What the build and the packaged programs see: Debian's tools and python3,
# not this test's virtualenv.
SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
              "DEBIAN_FRONTEND": "noninteractive"}
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600"]


def run(argv, **kwargs):
    kwargs.setdefault("env", SYSTEM_ENV)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert out.returncode == 0, "%s failed:\n%s%s" % (" ".join(argv), out.stdout, out.stderr)
    return out.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The .deb, .changes and build log, built from the tree's files without
    anything git ignores (no .venv, no build leftovers)."""
    root = tmp_path_factory.mktemp("deb")
    source = root / "rtpproxy-py"
    source.mkdir()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=TOP, capture_output=True, check=True).stdout
    names = [name for name in files.decode().split("\0") if name and os.path.exists(os.path.join(TOP, name))]
    subprocess.run(["tar", "-cf", str(root / "tree.tar"), "--"] + names, cwd=TOP, check=True)
    subprocess.run(["tar", "-xf", str(root / "tree.tar")], cwd=str(source), check=True)
    out = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=str(source), env=SYSTEM_ENV,
                         capture_output=True, text=True, timeout=600)
    (root / "build.log").write_text(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [deb] = root.glob("%s_*_all.deb" % PACKAGE)
    [changes] = root.glob("%s_*.changes" % PACKAGE)
    return deb, changes


def test_lintian_reports_no_errors_or_warnings(built):
    deb, changes = built
    out = subprocess.run(["lintian", "--fail-on", "error,warning", str(changes)], env=SYSTEM_ENV,
                         capture_output=True, text=True, timeout=600)
    tags = [line for line in out.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert out.returncode == 0 and not tags, out.stdout + out.stderr


def test_package_fields_and_files(built):
    deb, _ = built
    fields = {name: run(["dpkg-deb", "-f", str(deb), name]).strip()
              for name in ("Package", "Version", "Provides", "Conflicts", "Replaces", "Depends")}
    assert fields["Package"] == PACKAGE
    assert version_string().startswith(fields["Version"] + ".")
    for name in ("Provides", "Conflicts", "Replaces"):
        assert fields[name] == "rtpproxy"
    depends = {dep.split()[0] for dep in fields["Depends"].split(", ")}
    assert {"python3-gevent", "python3-docopt", "python3-numpy", "python3-soundfile", "adduser"} <= depends
    assert "python3-docopt-ng" not in depends

    files = set(re.findall(r" \.(/\S+)", run(["dpkg-deb", "-c", str(deb)])))
    # every command setup.cfg declares (makeann, extractaudio and their _debug
    # builds too, once they are there), each with its man page
    for command in console_scripts():
        assert "/usr/bin/" + command in files
        assert any(re.fullmatch(r"/usr/share/man/man[18]/%s\.[18]\.gz" % re.escape(command), f)
                   for f in files), command
    assert {"/etc/default/rtpproxy", "/lib/systemd/system/rtpproxy.service",
            "/usr/share/doc/rtpproxy-py/README.md.gz"} <= files
    if os.path.isdir(os.path.join(TOP, "examples")):
        assert any(f.startswith("/usr/share/doc/rtpproxy-py/examples/") for f in files)

    scripts = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    control = subprocess.run(["tar", "-xOf", "-", "./prerm", "./postrm", "./conffiles"], input=scripts,
                             capture_output=True, check=True).stdout.decode()
    assert "deb-systemd-invoke stop 'rtpproxy.service'" in control     # removal stops the service
    assert "deluser --system" in control and "rm -rf /var/lib/rtpproxy" in control
    assert "/etc/default/rtpproxy" in control                          # a conffile


# --- what systemd would do with the unit ----------------------------------------------

def read_unit(path):
    """The [Service] section: key -> value."""
    service, current = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                current = line
            elif current == "[Service]" and "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                service[key.strip()] = value.strip()
    return service


def read_environment_file(path):
    """systemd's EnvironmentFile=: KEY=VALUE lines, shell-style quotes, # comments."""
    env = {}
    with open(path) as f:
        for word in shlex.split(f.read(), comments=True):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def expand_exec(line, env):
    """ExecStart= as systemd expands it: ${VAR} is one word, a lone $VAR is
    split on whitespace."""
    words = []
    for word in shlex.split(line):
        lone = re.fullmatch(r"\$(\w+)", word)
        if lone:
            words.extend(env.get(lone.group(1), "").split())
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return words


def unix_command(path):
    def command(text):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(path)
            s.sendall(text.encode())
            reply = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.endswith(b"\n"), reply
        return reply[:-1].decode()
    return command


def _purge():
    subprocess.run(APT + ["purge", PACKAGE], env=SYSTEM_ENV, capture_output=True, text=True, timeout=600)


def test_install_run_as_the_unit_does_and_purge(built):
    deb, _ = built
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one package test per machine at a time
        daemon = None
        try:
            run(APT + ["install", "--no-install-recommends", str(deb)])
            for command in ("rtpproxy", "rtpproxy_debug", "rtpproxy-debug"):
                assert run(["/usr/bin/" + command, "-V"]).strip() == version_string()
            # every packaged command starts under Debian's python3 and libraries
            for command in set(console_scripts()) - {"rtpproxy", "rtpproxy_debug", "rtpproxy-debug"}:
                out = subprocess.run(["/usr/bin/" + command, "--help"], env=SYSTEM_ENV, timeout=60,
                                     capture_output=True, text=True, stdin=subprocess.DEVNULL)
                assert "Traceback" not in out.stderr, (command, out.stderr)
            user = pwd.getpwnam(USER)
            assert grp.getgrgid(user.pw_gid).gr_name == USER
            assert user.pw_dir == "/var/lib/rtpproxy" and os.path.isdir(user.pw_dir)

            if os.path.isdir("/run/systemd/system"):      # postinst started it: use our own
                subprocess.run(["systemctl", "stop", "rtpproxy.service"], env=SYSTEM_ENV)
            # systemd's own check of the unit: syntax, ExecStart, the man page it names
            verify = subprocess.run(["systemd-analyze", "verify", "/lib/systemd/system/rtpproxy.service"],
                                    env=SYSTEM_ENV, capture_output=True, text=True, timeout=120)
            assert verify.returncode == 0 and not verify.stdout + verify.stderr, verify
            unit = read_unit("/lib/systemd/system/rtpproxy.service")
            assert (unit["User"], unit["Group"]) == (USER, USER)
            env = read_environment_file(unit["EnvironmentFile"].lstrip("-"))
            assert env["CONTROL_SOCK"] == "unix:/run/rtpproxy/rtpproxy.sock"
            argv = expand_exec(unit["ExecStart"], env)
            assert argv[0] == "/usr/bin/rtpproxy"
            # RuntimeDirectory=, as systemd makes it
            runtime = "/run/" + unit["RuntimeDirectory"]
            os.makedirs(runtime, exist_ok=True)
            os.chown(runtime, user.pw_uid, user.pw_gid)
            os.chmod(runtime, int(unit["RuntimeDirectoryMode"], 8))
            log = open(os.path.join(str(deb.parent), "daemon.log"), "w+")
            daemon = subprocess.Popen(argv, env=dict(SYSTEM_ENV, **env), user=USER, group=USER,
                                      extra_groups=[], umask=int(unit["UMask"], 8),
                                      cwd=unit["WorkingDirectory"], stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log)
            control = env["CONTROL_SOCK"][len("unix:"):]
            assert wait_for(lambda: os.path.exists(control) or daemon.poll() is not None, timeout=30)
            assert daemon.poll() is None, _read(log)
            status = open("/proc/%d/status" % daemon.pid).read()
            assert re.search(r"^Uid:\s+%d\s" % user.pw_uid, status, re.M)
            assert stat.S_IMODE(os.stat(control).st_mode) == 0o770        # UMask=0007
            assert os.stat(control).st_gid == user.pw_gid

            command = unix_command(control)
            assert command("V") == "20040107"
            got_callee, got_caller, sent = relay_one_call(command)
            assert got_callee == sent and got_caller == sent

            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(15) == 0, _read(log)
            assert not os.path.exists(control)
            assert "Traceback" not in _read(log)
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            _purge()
            shutil.rmtree("/run/rtpproxy", ignore_errors=True)
        # purge removed the package, its configuration, the user and the user's files
        assert subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode != 0
        for path in ("/usr/bin/rtpproxy", "/etc/default/rtpproxy", "/var/lib/rtpproxy", "/run/rtpproxy"):
            assert not os.path.exists(path), path
        with pytest.raises(KeyError):
            pwd.getpwnam(USER)
        with pytest.raises(KeyError):
            grp.getgrnam(USER)


def _read(f):
    f.flush()
    f.seek(0)
    return f.read()
