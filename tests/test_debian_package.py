"""The Debian package (debian/): built with dpkg-buildpackage from a clean
git copy of the tree (which it leaves clean), lintian-clean, installed with
apt-get, the daemon started the way rtpproxy.service starts it (its packaged
start script, as the packaged user, with the packaged defaults, under Debian's
python3, with a test-owned $NOTIFY_SOCKET for Type=notify, and once more
socket-activated), one call relayed through it; the unit's hardening score,
the compatibility with older /etc/default/rtpproxy and /etc/sysconfig/rtpproxy
files, every codec of makeann and extractaudio on G.722 and SRTP recordings
through the installed commands; then purged.

The install-to-purge test holds a machine-wide lock, since it changes the
machine: /usr/bin/rtpproxy and /etc/default/rtpproxy exist while it runs. It
leaves none of them behind, whatever happens; the system user rtpproxy stays
after the purge, as Debian does.
About 30 s in all here (build ~13 s, install to purge ~11 s, lintian ~3 s).
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

from helpers import TOP, ServiceManagerSocket, console_scripts, relay_one_call

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


def _git(source, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=str(source),
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The .deb, .changes and the source tree it was built in: a git copy of
    the tree's files without anything git ignores (no .venv, no leftovers)."""
    root = tmp_path_factory.mktemp("deb")
    source = root / "rtpproxy-py"
    source.mkdir()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=TOP, capture_output=True, check=True).stdout
    names = [name for name in files.decode().split("\0") if name and os.path.exists(os.path.join(TOP, name))]
    subprocess.run(["tar", "-cf", str(root / "tree.tar"), "--"] + names, cwd=TOP, check=True)
    subprocess.run(["tar", "-xf", str(root / "tree.tar")], cwd=str(source), check=True)
    _git(source, "init", "-q")
    _git(source, "add", "-A")
    _git(source, "commit", "-q", "-m", "tree")
    out = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=str(source), env=SYSTEM_ENV,
                         capture_output=True, text=True, timeout=600)
    (root / "build.log").write_text(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    arch = run(["dpkg", "--print-architecture"]).strip()
    [deb] = root.glob("%s_*_%s.deb" % (PACKAGE, arch))
    [changes] = root.glob("%s_*.changes" % PACKAGE)
    return deb, changes, source


def test_build_leaves_the_tree_clean(built):
    """No untracked file after the build, and nothing at all after its clean."""
    _, _, source = built
    assert _git(source, "status", "--porcelain") == ""
    subprocess.run(["debian/rules", "clean"], cwd=str(source), env=SYSTEM_ENV, capture_output=True,
                   check=True, timeout=120)
    assert _git(source, "status", "--porcelain", "--ignored") == ""


def test_build_dependencies_are_the_package_own(built):
    """debian/control lists what the build needs (a C compiler's Python headers
    for G.722 and our extensions, pip to fetch G.722's source); the test
    machine gets them with apt-get build-dep, not from a hand-kept list."""
    control = open(os.path.join(TOP, "debian", "control")).read()
    build_depends = re.search(r"^Build-Depends:(.*?)^\S", control, re.S | re.M).group(1)
    names = {dep.strip().split()[0] for dep in build_depends.split(",") if dep.strip()}
    assert {"python3-all-dev", "python3-pip", "debhelper-compat", "dh-python"} <= names
    listed = {line.strip() for line in open(os.path.join(TOP, "tests", "apt-packages.txt"))
              if line.strip() and not line.startswith("#")}
    assert not (names - {"ca-certificates"}) & listed
    assert "apt-get build-dep" in open(os.path.join(TOP, "tools", "install-system-deps.sh")).read()
    readme = open(os.path.join(TOP, "README.md")).read()
    assert "apt-get build-dep ./" in readme and "dpkg-buildpackage" in readme


def test_readme_and_example_use_the_packaged_control_socket():
    """What an operator copies works with the package: the socket the service
    listens on, and the group that opens it to the proxy."""
    defaults = read_environment_file(os.path.join(TOP, "debian", "rtpproxy.default"))
    socket_path = defaults["CONTROL_SOCK"]
    example = open(os.path.join(TOP, "examples", "kamailio", "kamailio.cfg")).read()
    assert '#!define RTPPROXY_SOCK "%s"' % socket_path in example
    readme = open(os.path.join(TOP, "README.md")).read()
    assert "adduser kamailio rtpproxy" in readme and "adduser kamailio rtpproxy" in example
    assert "| `RTPPROXY_SOCK` | `\"%s\"`" % socket_path in readme
    assert "python3-venv" in readme


def test_lintian_reports_no_errors_or_warnings(built):
    deb, changes, _ = built
    out = subprocess.run(["lintian", "--fail-on", "error,warning", str(changes)], env=SYSTEM_ENV,
                         capture_output=True, text=True, timeout=600)
    tags = [line for line in out.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert out.returncode == 0 and not tags, out.stdout + out.stderr


def test_package_fields_and_files(built):
    deb, _, _ = built
    fields = {name: run(["dpkg-deb", "-f", str(deb), name]).strip()
              for name in ("Package", "Version", "Provides", "Conflicts", "Replaces", "Depends")}
    assert fields["Package"] == PACKAGE
    assert version_string().startswith(fields["Version"] + ".")
    for name in ("Provides", "Conflicts", "Replaces"):
        assert fields[name] == "rtpproxy"
    depends = {dep.split()[0] for dep in fields["Depends"].split(", ")}
    assert {"python3-gevent", "python3-docopt", "python3-numpy", "python3-soundfile", "adduser",
            "python3-pylibsrtp", "libbcg729-0", "libgsm1"} <= depends
    assert "python3-docopt-ng" not in depends

    files = set(re.findall(r" \.(/\S+)", run(["dpkg-deb", "-c", str(deb)])))
    # every command setup.cfg declares (makeann, extractaudio and their _debug
    # builds too, once they are there), each with its man page
    for command in console_scripts():
        assert "/usr/bin/" + command in files
        assert any(re.fullmatch(r"/usr/share/man/man[18]/%s\.[18]\.gz" % re.escape(command), f)
                   for f in files), command
    assert {"/etc/default/rtpproxy", "/lib/systemd/system/rtpproxy.service",
            "/lib/systemd/system/rtpproxy.socket", "/usr/libexec/rtpproxy-py/rtpproxy-service",
            "/usr/share/doc/rtpproxy-py/README.md.gz"} <= files
    assert any(re.fullmatch(r"/usr/lib/rtpproxy-py/python/G722\.cpython-3\d+-.*\.so", f) for f in files)
    if os.path.isdir(os.path.join(TOP, "examples")):
        assert any(f.startswith("/usr/share/doc/rtpproxy-py/examples/") for f in files)

    scripts = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    control = subprocess.run(["tar", "-xOf", "-", "./prerm", "./postrm", "./conffiles"], input=scripts,
                             capture_output=True, check=True).stdout.decode()
    assert "deb-systemd-invoke stop 'rtpproxy.service'" in control     # removal stops the service
    assert "deluser" not in control and "rm -rf /var/lib/rtpproxy" in control   # the user stays
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
    return subprocess.run(APT + ["purge", PACKAGE], env=SYSTEM_ENV, capture_output=True, text=True, timeout=600)


SERVICE_SCRIPT = "/usr/libexec/rtpproxy-py/rtpproxy-service"
NOTIFY_DIR = "/run/rtpproxy-package-test"

# As rtpproxy.socket: bind the control socket as root, give it to the user,
# pass it as fd 3 (LISTEN_FDS/LISTEN_PID), drop to the user, exec the unit's
# ExecStart (the same process, so LISTEN_PID stays right).
SOCKET_ACTIVATOR = r"""
import os, pwd, socket, sys
path, start = sys.argv[1], sys.argv[2]
user = pwd.getpwnam("rtpproxy")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chown(path, user.pw_uid, user.pw_gid)
os.chmod(path, 0o660)
s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.setgroups([])
os.setgid(user.pw_gid)
os.setuid(user.pw_uid)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(start, [start])
"""


class ServiceManager(ServiceManagerSocket):
    """systemd's end of Type=notify: a unix datagram socket the service's
    user may write to."""

    def __init__(self, user):
        os.makedirs(NOTIFY_DIR, exist_ok=True)
        os.chmod(NOTIFY_DIR, 0o755)
        super().__init__(os.path.join(NOTIFY_DIR, "notify.sock"))
        os.chown(self.path, user.pw_uid, user.pw_gid)

    def close(self):
        super().close()
        shutil.rmtree(NOTIFY_DIR, ignore_errors=True)


def start_service(argv, unit, user, log, env=None):
    """A process as rtpproxy.service runs it: its user, umask, directory."""
    return subprocess.Popen(argv, env=dict(SYSTEM_ENV, **(env or {})), user=user.pw_uid, group=user.pw_gid,
                            extra_groups=[], umask=int(unit["UMask"], 8), cwd=unit["WorkingDirectory"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def service_script(user, *args):
    """The packaged start script, as the service's user."""
    return subprocess.run([SERVICE_SCRIPT] + list(args), env=SYSTEM_ENV, user=user.pw_uid, group=user.pw_gid,
                          extra_groups=[], capture_output=True, text=True, timeout=60)


def check_conffile_compatibility(user):
    """Older configuration files are honoured, or stop the service with one
    sentence naming the variable to change."""
    defaults = "/etc/default/rtpproxy"
    sysconfig_dir = "/etc/sysconfig"
    made_sysconfig = not os.path.exists(sysconfig_dir)
    shipped = open(defaults).read()
    try:
        # Debian's rtpproxy package: CONTROL_SOCK and EXTRA_OPTS only; -l in EXTRA_OPTS
        with open(defaults, "w") as f:
            f.write('CONTROL_SOCK=udp:127.0.0.1:22222\nEXTRA_OPTS="-l 127.0.0.1 -d INFO"\n')
        out = service_script(user, "--print")
        assert out.returncode == 0, out.stderr
        argv = shlex.split(out.stdout)
        assert argv[0] == "/usr/bin/rtpproxy" and "-f" in argv
        assert argv[argv.index("-s") + 1] == "udp:127.0.0.1:22222"
        assert argv.count("-l") == 1 and argv[argv.index("-l") + 1] == "127.0.0.1"    # no "need a label"
        assert argv.count("-d") == 1 and argv[argv.index("-d") + 1] == "INFO"
        for missing in ("PORT_MIN", "PORT_MAX", "TTL", "RECORD_DIR"):      # named, defaulted
            assert re.search(r"^rtpproxy\.service: /etc/default/rtpproxy does not set %s; using " % missing,
                             out.stderr, re.M), out.stderr
        assert "LISTEN" not in out.stderr and "LOG_LEVEL" not in out.stderr    # EXTRA_OPTS gives them

        # upstream's /etc/sysconfig/rtpproxy OPTIONS= line
        os.makedirs(sysconfig_dir, exist_ok=True)
        with open(defaults, "w") as f:
            f.write(shipped)
        with open(os.path.join(sysconfig_dir, "rtpproxy"), "w") as f:
            f.write('OPTIONS="-s udp:127.0.0.1:7722 -l 127.0.0.1 -m 20000 -M 30000"\n')
        out = service_script(user, "--print")
        assert out.returncode == 0, out.stderr
        argv = shlex.split(out.stdout)
        assert argv[argv.index("-s") + 1] == "udp:127.0.0.1:7722" and argv.count("-s") == 1
        assert argv[argv.index("-m") + 1] == "20000" and argv.count("-m") == 1
        assert argv.count("-l") == 1
        os.unlink(os.path.join(sysconfig_dir, "rtpproxy"))

        # what cannot work: one sentence naming the variable, exit 1
        for text, variable in (('EXTRA_OPTS="-u kamailio"', "EXTRA_OPTS"),
                               ('EXTRA_OPTS="-q"', "EXTRA_OPTS"),
                               ('LISTEN="192.0.2.99"', "LISTEN"),
                               ('PORT_MIN="x"', "PORT_MIN"),
                               ('USER=kamailio', "USER")):
            with open(defaults, "w") as f:
                f.write(shipped + text + "\n")
            out = service_script(user, "--print")
            lines = out.stderr.splitlines()
            assert out.returncode == 1 and out.stdout == "", (text, out)
            assert len(lines) == 1 and lines[0].startswith("rtpproxy.service: ") and variable in lines[0], (text, lines)
            assert "Traceback" not in out.stderr
    finally:
        with open(defaults, "w") as f:
            f.write(shipped)
        if made_sysconfig:
            shutil.rmtree(sysconfig_dir, ignore_errors=True)
        elif os.path.exists(os.path.join(sysconfig_dir, "rtpproxy")):
            os.unlink(os.path.join(sysconfig_dir, "rtpproxy"))


def check_codecs_and_recordings(workdir):
    """makeann writes all five codecs, extractaudio decodes G.722 and SRTP,
    through the installed commands under Debian's python3."""
    import base64

    import pylibsrtp
    import soundfile

    from recording_helpers import tone, tone_snr
    from rtpproxy_py.media import codecs
    from test_extractaudio_cli import tone_stream, write_recording

    os.makedirs(workdir, exist_ok=True)
    wav = os.path.join(workdir, "tone.wav")
    soundfile.write(wav, tone(440, 1.0), 8000, subtype="PCM_16")
    out = subprocess.run(["/usr/bin/makeann", wav, os.path.join(workdir, "prompt")], env=SYSTEM_ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr, out
    for pt in (0, 3, 8, 9, 18):          # PCMU GSM PCMA G.722 G.729
        assert os.path.getsize(os.path.join(workdir, "prompt.%d" % pt)) > 0, pt
    g722 = codecs.get_codec(9)
    decoded = g722.decode(open(os.path.join(workdir, "prompt.9"), "rb").read())
    assert tone_snr(decoded[800:], 440) > 20

    # a G.722 call recording, both directions
    prefix = os.path.join(workdir, "cid=tag")
    write_recording(prefix + ".o.rtp", tone_stream(440, 1.0, pt=9, ssrc=0xB))
    write_recording(prefix + ".a.rtp", tone_stream(1000, 1.0, pt=9, ssrc=0xA))
    out = subprocess.run(["/usr/bin/extractaudio", "-s", "-D", "pcm_16", prefix,
                          os.path.join(workdir, "g722.wav")], env=SYSTEM_ENV, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    audio, _ = soundfile.read(os.path.join(workdir, "g722.wav"), dtype="int16")
    assert tone_snr(audio[:, 1], 440) > 20 and tone_snr(audio[:, 0], 1000) > 20

    # an SRTP pcap, decrypted with its key
    key = bytes(range(30))
    sender = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    srtp = os.path.join(workdir, "srtp.pcap")
    write_recording(srtp, [(sender.protect(data), t) for data, t in tone_stream(440, 0.5, ssrc=0x5EC)], pcap=True)
    out = subprocess.run(["/usr/bin/extractaudio", "--alice-crypto",
                          "AES_CM_128_HMAC_SHA1_80:" + base64.b64encode(key).decode(), "-D", "pcm_16",
                          "-A", srtp, os.path.join(workdir, "srtp.wav")], env=SYSTEM_ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    audio, _ = soundfile.read(os.path.join(workdir, "srtp.wav"), dtype="int16")
    assert tone_snr(audio, 440) > 30


def test_install_run_as_the_unit_does_and_purge(built):
    deb, _, _ = built
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one package test per machine at a time
        daemon = manager = None
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
            assert pwd.getpwuid(os.stat("/var/lib/rtpproxy/recordings").st_uid).pw_name == USER

            if os.path.isdir("/run/systemd/system"):      # postinst started it: use our own
                subprocess.run(["systemctl", "stop", "rtpproxy.service"], env=SYSTEM_ENV)
            # systemd's own check of the units: syntax, ExecStart, the man page they name
            for name in ("rtpproxy.service", "rtpproxy.socket"):
                verify = subprocess.run(["systemd-analyze", "verify", "/lib/systemd/system/" + name],
                                        env=SYSTEM_ENV, capture_output=True, text=True, timeout=120)
                assert verify.returncode == 0 and not verify.stdout + verify.stderr, verify
            # hardening: systemd's own score, 3.0 or lower is "OK"
            security = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                                       "/lib/systemd/system/rtpproxy.service"], env=SYSTEM_ENV,
                                      capture_output=True, text=True, timeout=120)
            score = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", security.stdout)
            assert score and float(score.group(1)) <= 3.0, security.stdout[-2000:] + security.stderr
            unit = read_unit("/lib/systemd/system/rtpproxy.service")
            assert (unit["User"], unit["Group"]) == (USER, USER)
            assert unit["Type"] == "notify" and unit["ExecStart"] == SERVICE_SCRIPT
            assert float(unit["RestartSec"].rstrip("s")) > 0
            assert unit["StateDirectory"] == "rtpproxy" and unit["ProtectSystem"] == "strict"
            env = read_environment_file("/etc/default/rtpproxy")
            assert env["CONTROL_SOCK"] == "unix:/run/rtpproxy/rtpproxy.sock"
            assert env["RECORD_DIR"] == "/var/lib/rtpproxy/recordings"
            # the shipped Kamailio example uses the packaged control socket
            example = subprocess.run(["zcat", "-f"] + [os.path.join(root, f) for root, _, fs in os.walk(
                "/usr/share/doc/rtpproxy-py/examples/kamailio") for f in fs if f.startswith("kamailio.cfg")],
                capture_output=True, text=True, check=True).stdout
            assert '#!define RTPPROXY_SOCK "%s"' % env["CONTROL_SOCK"] in example

            # RuntimeDirectory=, as systemd makes it
            runtime = "/run/" + unit["RuntimeDirectory"]
            os.makedirs(runtime, exist_ok=True)
            os.chown(runtime, user.pw_uid, user.pw_gid)
            os.chmod(runtime, int(unit["RuntimeDirectoryMode"], 8))
            control = env["CONTROL_SOCK"][len("unix:"):]
            manager = ServiceManager(user)
            log = open(os.path.join(str(deb.parent), "daemon.log"), "w+")
            daemon = start_service([unit["ExecStart"]], unit, user, log, {"NOTIFY_SOCKET": manager.path})
            ready = manager.receive(timeout=60)
            assert ready is not None and "READY=1" in ready.splitlines(), _read(log)
            # ready means serving: the socket answers at once
            assert daemon.poll() is None, _read(log)
            status = open("/proc/%d/status" % daemon.pid).read()
            assert re.search(r"^Uid:\s+%d\s" % user.pw_uid, status, re.M)
            assert stat.S_IMODE(os.stat(control).st_mode) == 0o770        # UMask=0007
            assert os.stat(control).st_gid == user.pw_gid
            command = unix_command(control)
            assert command("V") == "20040107"
            got_callee, got_caller, sent = relay_one_call(command)
            assert got_callee == sent and got_caller == sent
            # rtpproxy-ctl finds the packaged daemon on its default admin socket
            ctl = subprocess.run(["/usr/bin/rtpproxy-ctl", "--json", "counters"], env=SYSTEM_ENV,
                                 capture_output=True, text=True, timeout=60)
            assert ctl.returncode == 0 and '"nsess_created"' in ctl.stdout, ctl
            assert re.search(r"started, pid %d; control unix:%s; media on all IPv4 addresses; ports 35000-64999; "
                             % (daemon.pid, control), _read(log)), _read(log)

            daemon.send_signal(signal.SIGTERM)
            assert manager.receive(timeout=15) == "STOPPING=1"
            assert daemon.wait(15) == 0, _read(log)
            assert not os.path.exists(control)
            assert "Traceback" not in _read(log)

            # socket activation, as rtpproxy.socket does it: Kamailio's unix: commands
            log = open(os.path.join(str(deb.parent), "activated.log"), "w+")
            daemon = subprocess.Popen(["/usr/bin/python3", "-c", SOCKET_ACTIVATOR, control, SERVICE_SCRIPT],
                                      env=dict(SYSTEM_ENV, NOTIFY_SOCKET=manager.path), cwd=unit["WorkingDirectory"],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            ready = manager.receive(timeout=60)
            assert ready is not None and "READY=1" in ready.splitlines(), _read(log)
            assert "control systemd:fd 3 (unix %s)" % control in _read(log)
            assert unix_command(control)("V") == "20040107"
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(15) == 0, _read(log)
            assert os.path.exists(control)              # systemd's socket stays
            os.unlink(control)

            check_conffile_compatibility(user)
            check_codecs_and_recordings(os.path.join(str(deb.parent), "codecs"))
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            if manager is not None:
                manager.close()
            purge = _purge()
            shutil.rmtree("/run/rtpproxy", ignore_errors=True)
        assert purge.returncode == 0 and "crontab" not in purge.stdout + purge.stderr, purge
        # purge removed the package, its configuration and its files; the user stays
        assert subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode != 0
        for path in ("/usr/bin/rtpproxy", "/etc/default/rtpproxy", "/var/lib/rtpproxy", "/run/rtpproxy"):
            assert not os.path.exists(path), path
        assert grp.getgrgid(pwd.getpwnam(USER).pw_gid).gr_name == USER


def _read(f):
    f.flush()
    f.seek(0)
    return f.read()
