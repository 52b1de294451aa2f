"""End-to-end harness: real Kamailio, sipp and tcpdump around rtpproxy-py, on loopback.

Reusable by any test that needs a real SIP proxy in front of the relay (the
announcement tests drive ``rtpproxy_stream2uac`` through it, the recording
tests ``start_recording()``). Nothing in here knows about one particular check.

* ``Lab``: one per test (the ``lab`` fixture). Starts relays, Kamailio, sipp
  and a capture in its own temporary directory and stops every one of them at
  the end, in reverse order, whatever happened.
* ``Kamailio``: runs ``examples/kamailio/kamailio.cfg`` itself (or any config),
  with its ``#!define`` defaults overridden through ``-A``.
* ``Scenario``: builds a sipp scenario (one party of a call) step by step:
  ``call``/``answer``, ``play``/``pause_audio``/``resume_audio``, ``wait``,
  ``reinvite``/``accept_reinvite``, ``hangup``/``accept_bye``.
* ``Sipp``: runs a scenario for one user agent, ``UA`` says where it lives.
* ``Capture``: tcpdump on ``lo``; ``packets()`` parses the pcap while it runs.
  ``sip_messages``, ``rtp_packets`` and ``sdp_media`` pick what the tests look at.
* ``tone``/``ulaw_encode``/``ulaw_decode``/``write_pcmu``: the audio the phones play.
* ``call_ids``, ``sdp_to``, ``relayed``, ``wait_until``: reading a call out of a capture.

To drive another function of Kamailio's rtpproxy module (``rtpproxy_stream2uac``,
``start_recording``...), add it to the example config behind ``#!ifdef WITH_<NAME>``
(documented there and in the README like the other defines) and start Kamailio with
``lab.kamailio(relay, defines={"WITH_<NAME>": None})``: the tests keep running the
very file users copy.

Addresses, in a 127.N.0.0/16 block of the test process's own (``LAB_NET``, N random
or ``RTPP_E2E_NET``): Kamailio on 127.N.0.1, the relays' media on 127.N.0.10 and
127.N.0.11 (``-l``), phone A on 127.N.0.2 and phone B on 127.N.0.3. The phones are
"behind NAT": the addresses they write in Via, Contact and SDP (127.N.100.x, port
5060) are not the ones they send from, which Kamailio's nathelper and the relay
have to cope with. Relays' control sockets stay on 127.0.0.1.
"""

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from helpers import Daemon, free_port, port_range  # noqa: E402

EXAMPLE_CFG = os.path.join(TOP, "examples", "kamailio", "kamailio.cfg")

# Every test process takes its own 127.N.0.0/16 block of loopback addresses, so that
# end-to-end runs of several worktrees on one machine never see each other's calls.
_NET = int(os.environ.get("RTPP_E2E_NET") or random.Random(os.getpid() ^ int(time.time()))
           .randrange(16, 240))
LAB_NET = "127.%d.0.0/16" % _NET
# what a capture keeps by default: the UDP of this block (phones, proxy, relays' media)
LAB_FILTER = "udp and net " + LAB_NET


def lab_ip(c, d):
    return "127.%d.%d.%d" % (_NET, c, d)


KAMAILIO_IP = lab_ip(0, 1)
RELAY_IP = lab_ip(0, 10)
RELAY2_IP = lab_ip(0, 11)

TOOLS = ("kamailio", "sipp", "tcpdump")

# ports each relay gets (-m/-M): 4 per session, room for 100 sessions
RELAY_PORTS = 400


def missing_tools():
    return [tool for tool in TOOLS if shutil.which(tool) is None and not os.path.exists(
        os.path.join("/usr/sbin", tool))]


def _which(tool):
    return shutil.which(tool) or os.path.join("/usr/sbin", tool)


# --- audio -----------------------------------------------------------------------------

def tone(seconds=1.0, freq=440.0, amplitude=0.4, rate=8000):
    """A sine tone as int16 samples."""
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def ulaw_encode(samples):
    """int16 samples -> G.711 mu-law bytes, as the ITU-T G.191 reference (ulaw_compress)."""
    x = np.asarray(samples, dtype=np.int32)
    absno = np.minimum((np.where(x < 0, ~x, x) >> 2) + 33, 0x1FFF)
    top = absno >> 6
    segno = np.where(top > 0, np.floor(np.log2(np.maximum(top, 1))).astype(np.int32) + 1, 0) + 1
    low = 0x0F - ((absno >> segno) & 0x0F)
    out = ((0x08 - segno) << 4) | low
    return np.where(x >= 0, out | 0x80, out).astype(np.uint8).tobytes()


def ulaw_decode(data):
    """G.711 mu-law bytes -> int16 samples (ITU-T G.191 ulaw_expand)."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def write_pcmu(path, samples):
    """Raw mu-law file, the format sipp's ``rtp_stream`` plays (160 bytes per 20 ms)."""
    with open(path, "wb") as f:
        f.write(ulaw_encode(samples))
    return path


# --- sipp scenarios ----------------------------------------------------------------------

UA = namedtuple("UA", "ip nat_ip nat_port")
UA.__doc__ = """A phone: ``ip`` it sends from; ``nat_ip``:``nat_port`` the address it believes
it has, behind its NAT (Via, Contact; ``nat_ip`` also in SDP)."""

PHONE_A = UA(lab_ip(0, 2), lab_ip(100, 2), 5060)
PHONE_B = UA(lab_ip(0, 3), lab_ip(100, 3), 5060)

_SDP = """v=0
o=- {sess} {version} IN IP4 [nat_ip]
s=-
c=IN IP4 {conn}
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a={direction}
"""

_ANSWER_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly", "sendrecv": "sendrecv",
                     "inactive": "inactive"}


class Scenario:
    """A sipp scenario for one party of a call, built step by step.

    The caller side: ``call()``, then media and in-dialog steps, ``hangup()``.
    The callee side: ``answer()``, ..., ``accept_bye()``. Keywords sipp fills in
    from ``Sipp(keys=...)``: ``[nat_ip]`` (always given) and ``[callee]`` (the
    caller's Request-URI host:port).
    """

    def __init__(self, name):
        self.name = name
        self.steps = []
        self.cseq = 1
        self.sdp_version = 1
        self.sess = 1

    # --- SDP and headers -----------------------------------------------------------

    def _sdp(self, direction="sendrecv", hold_address=False):
        text = _SDP.format(sess=self.sess, version=self.sdp_version, direction=direction,
                           conn="0.0.0.0" if hold_address else "[nat_ip]")
        self.sdp_version += 1
        return text

    def _cdata(self, text):
        return "<![CDATA[\n%s\n]]>" % text

    def _uac_headers(self, method, uri, cseq, to_tag=True):
        return (
            "{method} {uri} SIP/2.0\n"
            "Via: SIP/2.0/[transport] [nat_ip]:[nat_port];branch=[branch];rport\n"
            "From: <sip:caller@[nat_ip]:[nat_port]>;tag=[pid]SIPpTag00[call_number]\n"
            "To: <sip:[service]@[callee]>{to_tag}\n"
            "Call-ID: [call_id]\n"
            "{routes}"
            "CSeq: {cseq} {method}\n"
            "Contact: <sip:caller@[nat_ip]:[nat_port]>\n"
            "Max-Forwards: 70\n"
        ).format(method=method, uri=uri, cseq=cseq, to_tag="[peer_tag_param]" if to_tag else "",
                 routes="[routes]\n" if to_tag else "")

    # --- caller side ---------------------------------------------------------------

    def call(self, direction="sendrecv", ring_ok=True):
        """INVITE with an SDP offer, wait for 200 (1xx optional), ACK."""
        self.sess = 1
        head = self._uac_headers("INVITE", "sip:[service]@[callee]", 1, to_tag=False)
        body = self._sdp(direction)
        self.steps.append('<send retrans="500">%s</send>' % self._cdata(
            head + "Content-Type: application/sdp\nContent-Length: [len]\n\n" + body))
        for code in ("100", "180", "183"):
            self.steps.append('<recv response="%s" optional="true"/>' % code)
        self.steps.append('<recv response="200" rrs="true"/>')
        self._ack(1)
        return self

    def _ack(self, cseq):
        head = self._uac_headers("ACK", "[next_url]", cseq)
        self.steps.append("<send>%s</send>" % self._cdata(head + "Content-Length: 0\n"))

    def reinvite(self, direction="sendonly", hold_address=False):
        """Re-INVITE from the caller: ``sendonly`` (+``hold_address``: c=0.0.0.0) holds,
        ``sendrecv`` resumes. Waits for the 200 and ACKs it."""
        self.cseq += 1
        head = self._uac_headers("INVITE", "[next_url]", self.cseq)
        body = self._sdp(direction, hold_address)
        self.steps.append('<send retrans="500">%s</send>' % self._cdata(
            head + "Content-Type: application/sdp\nContent-Length: [len]\n\n" + body))
        self.steps.append('<recv response="100" optional="true"/>')
        self.steps.append('<recv response="200"/>')
        self._ack(self.cseq)
        return self

    def hangup(self):
        """BYE from the caller, wait for its 200."""
        self.cseq += 1
        head = self._uac_headers("BYE", "[next_url]", self.cseq)
        self.steps.append('<send retrans="500">%s</send>' % self._cdata(head + "Content-Length: 0\n"))
        self.steps.append('<recv response="200" crlf="true"/>')
        return self

    # --- callee side ---------------------------------------------------------------

    def _reply(self, code, reason, sdp=None, new_tag=False):
        lines = ["SIP/2.0 %s %s" % (code, reason), "[last_Via:]", "[last_From:]",
                 "[last_To:]" + (";tag=[pid]SIPpTag01[call_number]" if new_tag else ""),
                 "[last_Call-ID:]", "[last_CSeq:]"]
        if new_tag:
            lines.append("[last_Record-Route:]")
        lines.append("Contact: <sip:callee@[nat_ip]:[nat_port]>")
        if sdp is None:
            lines.append("Content-Length: 0\n")
        else:
            lines += ["Content-Type: application/sdp", "Content-Length: [len]", "", sdp]
        return "<send>%s</send>" % self._cdata("\n".join(lines))

    def answer(self, ring=True, direction="sendrecv"):
        """Wait for the INVITE, answer 180 (optional) and 200 with SDP, wait for the ACK."""
        self.sess = 2
        self.steps.append('<recv request="INVITE" crlf="true" rrs="true"/>')
        if ring:
            self.steps.append(self._reply(180, "Ringing", new_tag=True))
        self.steps.append(self._reply(200, "OK", self._sdp(direction), new_tag=True))
        self.steps.append('<recv request="ACK" crlf="true"/>')
        return self

    def accept_reinvite(self, direction="sendrecv"):
        """Wait for a re-INVITE, answer 200 with SDP (``direction``), wait for the ACK."""
        self.steps.append('<recv request="INVITE" crlf="true"/>')
        self.steps.append(self._reply(200, "OK", self._sdp(direction)))
        self.steps.append('<recv request="ACK" crlf="true"/>')
        return self

    def accept_bye(self):
        self.steps.append('<recv request="BYE"/>')
        self.steps.append(self._reply(200, "OK"))
        return self

    # --- media and time --------------------------------------------------------------

    def play(self, path, loops=-1, payload_type=0):
        """Start sending RTP from the file (raw payload, e.g. ``write_pcmu``); ``loops=-1``
        repeats it until ``pause_audio`` or the end of the call."""
        self.steps.append('<nop><action><exec rtp_stream="%s,%d,%d"/></action></nop>'
                          % (path, loops, payload_type))
        return self

    def pause_audio(self):
        self.steps.append('<nop><action><exec rtp_stream="pause"/></action></nop>')
        return self

    def resume_audio(self):
        self.steps.append('<nop><action><exec rtp_stream="resume"/></action></nop>')
        return self

    def wait(self, ms):
        self.steps.append('<pause milliseconds="%d"/>' % ms)
        return self

    def xml(self):
        return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="%s">\n%s\n</scenario>\n'
                % (self.name, "\n".join(self.steps)))

    def write(self, path):
        with open(path, "w") as f:
            f.write(self.xml())
        return path


# --- processes -------------------------------------------------------------------------

class Process:
    """A child process with its output in a file, stopped by ``stop()``."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(workdir, name + ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=workdir, env=env,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running after %ss:\n%s"
                                 % (self.name, timeout, self.log()[-3000:])) from None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the process (and its children: it leads its own process group)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def sip_options(ip, port, timeout=0.5):
    """Send OPTIONS to a SIP server, return the reply's status code or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    s.settimeout(timeout)
    local = s.getsockname()
    msg = ("OPTIONS sip:{ip}:{port} SIP/2.0\r\n"
           "Via: SIP/2.0/UDP {lip}:{lport};branch=z9hG4bK{rand};rport\r\n"
           "From: <sip:ping@{lip}>;tag={rand}\r\nTo: <sip:{ip}:{port}>\r\n"
           "Call-ID: {rand}@{lip}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
           "Content-Length: 0\r\n\r\n").format(ip=ip, port=port, lip=local[0], lport=local[1],
                                                 rand=os.urandom(6).hex())
    try:
        s.sendto(msg.encode(), (ip, port))
        data = s.recv(65535)
        return int(data.split(None, 2)[1])
    except (socket.timeout, OSError, ValueError, IndexError):
        return None
    finally:
        s.close()


class Kamailio(Process):
    """Kamailio running a config file (the example by default) in the foreground.

    ``defines`` become ``-A NAME=VALUE`` (or ``-A NAME`` for a value of None);
    string values must carry their own double quotes, as in the config.
    """

    def __init__(self, workdir, rtpproxy_sock, config=EXAMPLE_CFG, defines=None,
                 ip=KAMAILIO_IP, port=None, name="kamailio", ready_timeout=15):
        self.ip = ip
        self.port = port or free_port(host=ip)
        rundir = os.path.join(workdir, name + "-run")
        os.makedirs(rundir, exist_ok=True)
        merged = {"SIP_LISTEN": "udp:%s:%d" % (ip, self.port),
                  "RTPPROXY_SOCK": '"%s"' % rtpproxy_sock, "CHILDREN": "2"}
        merged.update(defines or {})
        argv = [_which("kamailio"), "-f", config, "-DD", "-E", "-Y", rundir, "-w", rundir,
                "-m", "64", "-M", "8"]
        for key, value in merged.items():
            argv += ["-A", key if value is None else "%s=%s" % (key, value)]
        super().__init__(name, argv, workdir)
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            if not self.alive():
                self.stop()
                raise RuntimeError("kamailio exited %s:\n%s" % (self.proc.returncode, self.log()))
            if sip_options(ip, self.port) == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("kamailio did not answer OPTIONS:\n%s" % self.log())

    @property
    def address(self):
        return "%s:%d" % (self.ip, self.port)

    def lines(self, pattern):
        """Log lines matching a regular expression."""
        return [line for line in self.log().splitlines() if re.search(pattern, line)]


class Sipp(Process):
    """One sipp user agent running ``scenario`` (a Scenario or a path).

    ``remote`` is where it sends (host:port, for a caller: Kamailio); ``calls``
    is sipp's ``-m`` (the callee exits after that many calls as well).
    """

    _count = 0

    def __init__(self, workdir, scenario, ua, remote=None, calls=1, rate=None, limit=None,
                 keys=None, timeout=60, extra=(), media_port=None, port=None):
        Sipp._count += 1
        name = "sipp%d" % Sipp._count
        if isinstance(scenario, Scenario):
            path = scenario.write(os.path.join(workdir, "%s-%s.xml" % (name, scenario.name)))
        else:
            path = scenario
        self.ua = ua
        self.port = port or free_port(host=ua.ip)
        self.media_port = media_port or _free_even_port(ua.ip)
        argv = [_which("sipp"), "-sf", path, "-i", ua.ip, "-p", str(self.port),
                "-mi", ua.ip, "-mp", str(self.media_port), "-m", str(calls),
                "-nostdin", "-timeout", "%ds" % timeout, "-timeout_error",
                "-trace_err", "-trace_stat", "-fd", "1",
                "-key", "nat_ip", ua.nat_ip, "-key", "nat_port", str(ua.nat_port)]
        if rate is not None:
            argv += ["-r", str(rate)]
        if limit is not None:
            argv += ["-l", str(limit)]
        for key, value in (keys or {}).items():
            argv += ["-key", key, str(value)]
        argv += list(extra)
        if remote:
            argv.append(remote)
        self.workdir = workdir
        super().__init__(name, argv, workdir)

    @property
    def address(self):
        return "%s:%d" % (self.ua.ip, self.port)

    def errors(self):
        """sipp's own error log (unexpected messages, time-outs)."""
        found = []
        for entry in os.listdir(self.workdir):
            if entry.endswith("_%d_errors.log" % self.pid):
                with open(os.path.join(self.workdir, entry), errors="replace") as f:
                    found.append(f.read())
        return "\n".join(found)

    def stats(self):
        """The last line of sipp's statistics CSV, as a dict (SuccessfulCall(C), ...)."""
        for entry in os.listdir(self.workdir):
            if entry.endswith("_%d_.csv" % self.pid):
                with open(os.path.join(self.workdir, entry)) as f:
                    rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
                if len(rows) >= 2:
                    return dict(zip(rows[0], rows[-1]))
        return {}

    def finish(self, timeout=60):
        """Wait for the end of the run; assert every call succeeded."""
        code = self.wait(timeout)
        assert code == 0, "%s exited %s (0: all calls succeeded)\n%s\n%s" % (
            self.name, code, self.errors()[-4000:], self.log()[-3000:])
        return self.stats()


def _free_even_port(ip):
    for _ in range(100):
        port = free_port(host=ip)
        if port % 2 == 0 and port < 65000:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((ip, port + 1))
                return port
            except OSError:
                continue
            finally:
                s.close()
    raise RuntimeError("no free even port on %s" % ip)


# --- capture ---------------------------------------------------------------------------

Packet = namedtuple("Packet", "time src dst payload")
Packet.__doc__ = "A captured UDP datagram: ``src``/``dst`` are (ip, port)."


class Capture(Process):
    """tcpdump on the loopback interface, writing a pcap that can be read at any time."""

    def __init__(self, workdir, bpf=LAB_FILTER, iface="lo", name="tcpdump"):
        self.path = os.path.join(workdir, name + ".pcap")
        argv = [_which("tcpdump"), "-i", iface, "-n", "-U", "--immediate-mode", "-Z", "root", "-B", "32768",
                "-s", "2048", "-w", self.path, bpf]
        super().__init__(name, argv, workdir)
        deadline = time.time() + 10
        while "listening on" not in self.log():
            if not self.alive() or time.time() > deadline:
                self.stop()
                raise RuntimeError("tcpdump did not start:\n%s" % self.log())
            time.sleep(0.05)

    def stop(self, sig=signal.SIGINT, timeout=10):
        code = super().stop(sig, timeout)
        return code

    def dropped(self):
        """Packets the kernel dropped before tcpdump read them (known once stopped)."""
        match = re.search(r"(\d+) packets? dropped by kernel", self.log())
        return int(match.group(1)) if match else None

    def packets(self):
        """What was captured so far (packets of the last few milliseconds may still be
        on their way: ``finish`` for a complete count)."""
        return read_pcap(self.path)

    def finish(self, settle=0.2):
        """Stop capturing and return every packet; fails if the kernel dropped any."""
        time.sleep(settle)
        self.stop()
        assert self.dropped() == 0, "the capture lost packets:\n" + self.log()
        return read_pcap(self.path)


def read_pcap(path):
    """UDP datagrams of a pcap file (Ethernet or Linux cooked link type, IPv4/IPv6)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a pcap file: %s" % path)
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 0: 4, 276: 20}[linktype]
    out = []
    pos = 24
    header = struct.Struct(endian + "IIII")
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = header.unpack_from(data, pos)
        pos += 16
        frame = data[pos:pos + incl]
        pos += incl
        if len(frame) < incl:
            break      # a record still being written
        packet = _udp(frame[link_len:], sec + frac / (1e9 if nano else 1e6))
        if packet is not None:
            out.append(packet)
    return out


def _udp(ip, when):
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or len(ip) < ihl + 8:
            return None
        src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
        udp = ip[ihl:]
    elif version == 6:
        if ip[6] != 17 or len(ip) < 48:
            return None
        src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
        udp = ip[40:]
    else:
        return None
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    return Packet(when, (src, sport), (dst, dport), udp[8:length])


# --- what the tests look at ------------------------------------------------------------

SipMessage = namedtuple("SipMessage", "time src dst first_line headers body")


def sip_messages(packets):
    """SIP messages among captured packets; ``headers`` maps lower-case names to lists."""
    out = []
    for p in packets:
        if b"SIP/2.0" not in p.payload[:200]:
            continue
        try:
            text = p.payload.decode("utf-8")
        except UnicodeDecodeError:
            continue
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        if not (lines[0].endswith("SIP/2.0") or lines[0].startswith("SIP/2.0 ")):
            continue
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        out.append(SipMessage(p.time, p.src, p.dst, lines[0], headers, body))
    return out


def is_request(msg, method):
    return msg.first_line.startswith(method + " ")


def is_reply(msg, code, method=None):
    if not msg.first_line.startswith("SIP/2.0 %d " % code):
        return False
    return method is None or msg.headers.get("cseq", [""])[0].split()[-1:] == [method]


def sdp_media(body):
    """(connection address, audio port, direction attribute, all a= lines) of an SDP."""
    conn = port = None
    direction = "sendrecv"
    attrs = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if line.startswith("c=IN IP"):
            conn = line.split()[-1]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
        elif line.startswith("a="):
            attrs.append(line[2:])
            if line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = line[2:]
    return conn, port, direction, attrs


RtpPacket = namedtuple("RtpPacket", "time src dst pt seq ts ssrc data")


def rtp_packets(packets):
    """Captured datagrams that are RTP (version 2, not RTCP), with their header fields."""
    out = []
    for p in packets:
        d = p.payload
        if len(d) < 12 or d[0] >> 6 != 2 or 200 <= d[1] <= 204:
            continue
        pt = d[1] & 0x7F
        seq, ts, ssrc = struct.unpack("!HII", d[2:12])
        out.append(RtpPacket(p.time, p.src, p.dst, pt, seq, ts, ssrc, d))
    return out


# --- the lab -----------------------------------------------------------------------------

class Lab:
    """Everything one end-to-end test starts, stopped by ``close()``."""

    def __init__(self, keep=False):
        self.dir = tempfile.mkdtemp(prefix="rtpp-e2e-")
        self.started = []
        self.keep = keep

    def path(self, name):
        return os.path.join(self.dir, name)

    def relay(self, *args, **kwargs):
        """A real rtpproxy-py relaying media on RELAY_IP (control on UDP by default)."""
        if not any(a == "-l" for a in args):
            args = ("-l", RELAY_IP) + args
        kwargs.setdefault("ports", port_range(RELAY_PORTS))
        daemon = Daemon(*args, **kwargs)
        self.started.append(daemon)
        return daemon

    def kamailio(self, relays, **kwargs):
        """Kamailio with the example config; ``relays``: a Daemon, a list of Daemons or
        of (Daemon, weight), or an rtpproxy_sock string."""
        kam = Kamailio(self.dir, rtpproxy_sock_for(relays), **kwargs)
        self.started.append(kam)
        return kam

    def sipp(self, scenario, ua, **kwargs):
        s = Sipp(self.dir, scenario, ua, **kwargs)
        self.started.append(s)
        return s

    def capture(self, bpf=LAB_FILTER):
        cap = Capture(self.dir, bpf)
        self.started.append(cap)
        return cap

    def tone(self, name="tone.ulaw", seconds=1.0, freq=440.0):
        return write_pcmu(self.path(name), tone(seconds, freq))

    def close(self):
        """Stop everything (callee sipps, Kamailio, relays...), newest first."""
        errors = []
        for proc in reversed(self.started):
            try:
                proc.stop()
            except Exception as exc:   # keep stopping the others
                errors.append(exc)
        self.started = []
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise errors[0]


def rtpproxy_sock_for(relays):
    if isinstance(relays, str):
        return relays
    if isinstance(relays, Daemon):
        relays = [relays]
    parts = []
    for item in relays:
        daemon, weight = item if isinstance(item, tuple) else (item, None)
        spec = daemon.control_spec
        parts.append(spec if weight is None else "%s=%d" % (spec, weight))
    return " ".join(parts)


# --- reading a call out of a capture ------------------------------------------------------

def call_ids(messages):
    """Call-IDs in order of their first INVITE."""
    seen = []
    for m in messages:
        if is_request(m, "INVITE"):
            cid = m.headers["call-id"][0]
            if cid not in seen:
                seen.append(cid)
    return seen


def sdp_to(messages, call_id, ip, kind):
    """The SDPs a phone at ``ip`` received for a call, in order, as (time, conn, port,
    direction, attrs): ``kind`` "offer" for INVITEs, "answer" for 200 OKs to INVITEs."""
    out = []
    for m in messages:
        if m.dst[0] != ip or m.headers.get("call-id", [None])[0] != call_id or not m.body:
            continue
        if (kind == "offer" and is_request(m, "INVITE")) or (
                kind == "answer" and is_reply(m, 200, "INVITE")):
            out.append((m.time,) + sdp_media(m.body))
    return out


def sdp_from(messages, call_id, ip, kind):
    """The SDPs a phone at ``ip`` sent for a call (its own media address), as sdp_to."""
    out = []
    for m in messages:
        if m.src[0] != ip or m.headers.get("call-id", [None])[0] != call_id or not m.body:
            continue
        if (kind == "offer" and is_request(m, "INVITE")) or (
                kind == "answer" and is_reply(m, 200, "INVITE")):
            out.append((m.time,) + sdp_media(m.body))
    return out


def relayed(rtp, src, relay_in, relay_out, dst):
    """RTP that ``src`` sent to the relay's ``relay_in``, and what the relay sent from
    ``relay_out`` to ``dst``: two lists of RtpPacket. Addresses are (ip, port); a port
    of None matches any port."""
    def match(addr, want):
        return addr[0] == want[0] and (want[1] is None or addr[1] == want[1])
    sent = [p for p in rtp if match(p.src, src) and match(p.dst, relay_in)]
    delivered = [p for p in rtp if match(p.src, relay_out) and match(p.dst, dst)]
    return sent, delivered


def wait_until(predicate, timeout=10.0, interval=0.05):
    """Poll ``predicate`` until it is true; return the time.time() when it first was,
    or None after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while True:
        now = time.time()
        if predicate():
            return now
        if now > deadline:
            return None
        time.sleep(interval)
