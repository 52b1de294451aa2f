"""The daemon's options, validated. Every startup error is a ConfigError whose
message is one plain sentence naming the bad value and what to do about it."""

import errno
import grp
import logging
import os
import pwd
import re
import socket
import syslog
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple, cast

if TYPE_CHECKING:
    from .modules import ModuleSpec
    from .sd_daemon import InheritedSocket

DEFAULT_CONTROL = "unix:/var/run/rtpproxy.sock"
DEFAULT_CONTROL_PORT = 22222
DEFAULT_PIDFILE = "/var/run/rtpproxy.pid"
LATCHING_MODES = ("upstream", "strict")


class ConfigError(Exception):
    """A startup problem; str() is the sentence shown to the operator."""


@dataclass
class BindAddress:
    """A local media address: where relay sockets are bound."""

    family: int
    host: str                 # numeric; "0.0.0.0" / "::" when wildcard
    wildcard: bool = False
    advertised: Optional[str] = None
    label: Optional[str] = None

    @property
    def ipv6(self) -> bool:
        return self.family == socket.AF_INET6

    def reply_address(self) -> Optional[str]:
        """What U/L replies carry after the port (None: port only)."""
        if self.advertised:
            return self.advertised
        return None if self.wildcard else self.host


@dataclass
class ControlSpec:
    text: str
    kind: str                  # unix cunix udp udp6 tcp tcp6 stdio stdioc
    path: Optional[str] = None
    host: Optional[str] = None
    port: Optional[int] = None
    inherited: Optional["InheritedSocket"] = None    # systemd: the socket served

    @property
    def family(self) -> int:
        if self.inherited is not None:
            return self.inherited.family
        return socket.AF_INET6 if self.kind in ("udp6", "tcp6") else socket.AF_INET


@dataclass
class NotifyTarget:
    text: str
    kind: str                  # "unix" or "tcp"
    path: Optional[str] = None
    host: Optional[str] = None
    port: Optional[int] = None
    wildcard: bool = False     # tcp:%%CC_SELF%%:PORT

    def matches(self, socket_text: str) -> bool:
        if socket_text == self.text:
            return True
        return self.kind == "unix" and socket_text == self.path


@dataclass
class Config:
    controls: List[ControlSpec] = field(default_factory=list)
    listen4: List[BindAddress] = field(default_factory=list)
    listen6: List[BindAddress] = field(default_factory=list)
    primary: Optional[BindAddress] = None
    bridge: Optional[Tuple[BindAddress, BindAddress]] = None   # (internal, external)
    port_min: int = 35000
    port_max: int = 64998          # highest RTP (even) port
    sequential_ports: bool = False
    ttl: int = 60
    setup_ttl: int = 60
    independent_ttl: bool = False
    notify_targets: List[NotifyTarget] = field(default_factory=list)
    foreground: bool = False
    log_level: int = logging.WARNING
    log_facility: int = syslog.LOG_DAEMON
    pidfile: Optional[str] = DEFAULT_PIDFILE
    pidfile_given: bool = False   # -p named it: not writable is an error, not a warning
    user: Optional[str] = None
    user_spec: Optional[str] = None    # the -u text, for messages
    uid: Optional[int] = None
    gid: Optional[int] = None
    socket_mode: Optional[int] = None
    socket_group_given: bool = False
    nofile: Optional[int] = None
    tos: int = 0xB8
    dup_small: bool = False
    record_dir: Optional[str] = None
    spool_dir: Optional[str] = None
    record_rtcp: bool = True
    record_pcap: bool = False
    record_all: bool = False
    force_asymmetric: bool = False
    bridge_symmetric: bool = False
    allow_root: bool = False
    nice: Optional[int] = None
    rt_policy: Optional[str] = None
    no_chdir: bool = False
    no_resolve: bool = False
    no_redirect: bool = False
    debug_build: bool = False
    poll_batch: float = 0.002     # seconds libev gathers I/O events between polls
    rtp_analysis: bool = True     # feed relayed RTP to the analyzer (rtpa_* counters), as upstream
    metrics: Optional[Tuple[str, int]] = None   # (host, port) of the Prometheus endpoint
    latching: str = "upstream"    # "upstream" (media-relay.md 3) or "strict" (RTP Bleed)
    latch_window: float = 3.0     # strict: seconds after a U/L in which sources are learned
    workers: int = 1              # worker processes (1: the single-process daemon)
    kernel_offload: bool = False  # nftables forwards eligible latched streams
    modules: List["ModuleSpec"] = field(default_factory=list)   # from --dso/--config
    admin_socket: Optional[str] = None   # unix socket rtpproxy-ctl talks to (admin.py)
    fastpath: bool = True         # compiled forwarder for latched streams (--no_fastpath: off)

    def all_listen(self) -> List[BindAddress]:
        return self.listen4 + self.listen6

    @property
    def bridging(self) -> bool:
        return self.bridge is not None


_LEVELS = {"DBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "ERR": logging.ERROR, "CRIT": logging.CRITICAL}
_FACILITIES = {
    "auth": syslog.LOG_AUTH, "cron": syslog.LOG_CRON, "daemon": syslog.LOG_DAEMON,
    "kern": syslog.LOG_KERN, "lpr": syslog.LOG_LPR, "mail": syslog.LOG_MAIL,
    "news": syslog.LOG_NEWS, "user": syslog.LOG_USER, "uucp": syslog.LOG_UUCP,
    "authpriv": syslog.LOG_AUTHPRIV, "syslog": syslog.LOG_SYSLOG,
    "ftp": getattr(syslog, "LOG_FTP", 11 << 3),
}
for _n in range(8):
    _FACILITIES["local%d" % _n] = getattr(syslog, "LOG_LOCAL%d" % _n)


def _int_option(value: Optional[str], flag: str, lo: int, hi: int, what: str) -> int:
    try:
        number = int(value, 10)  # type: ignore[arg-type]  # None: TypeError, as a bad value
    except (TypeError, ValueError):
        raise ConfigError("%s %s: %s must be a whole number from %d to %d." % (flag, value, what, lo, hi)) from None
    if not lo <= number <= hi:
        raise ConfigError("%s %s: %s must be from %d to %d." % (flag, value, what, lo, hi))
    return number


def parse_log_level(text: str) -> Tuple[int, int]:
    level, _, facility = text.partition(":")
    if level.upper() not in _LEVELS:
        raise ConfigError("-d %s: the log level must be one of DBUG, INFO, WARN, ERR or CRIT." % text)
    fac = syslog.LOG_DAEMON
    if facility:
        name = facility.lower()
        if name.startswith("log_"):
            name = name[4:]
        if name not in _FACILITIES:
            raise ConfigError("-d %s: unknown syslog facility %r; use one of %s." % (
                text, facility, ", ".join(sorted(_FACILITIES))))
        fac = _FACILITIES[name]
    return _LEVELS[level.upper()], fac


def _split_host_port(text: str, default_port: Optional[int], what: str) -> Tuple[str, Optional[int]]:
    """HOST[:PORT] with the last ':' separating the port; [v6]:port also taken."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ConfigError("%s: missing ']' after the IPv6 address." % what)
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not port:
        return host, default_port
    try:
        number = int(port)
    except ValueError:
        raise ConfigError("%s: the port %r is not a number." % (what, port)) from None
    if not 0 < number < 65536:
        raise ConfigError("%s: the port %d is outside 1-65535." % (what, number))
    return host, number


def _resolve(host: str, family: int, what: str, no_resolve: bool) -> str:
    if host in ("*", ""):
        return "::" if family == socket.AF_INET6 else "0.0.0.0"
    flags = socket.AI_NUMERICHOST if no_resolve else 0
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM, 0, flags)
    except socket.gaierror:
        kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
        raise ConfigError("%s: %r is not a usable %s address%s." % (
            what, host, kind, " (--no_resolve allows numeric addresses only)" if no_resolve else "")) from None
    return str(infos[0][4][0])


def parse_control(text: str, no_resolve: bool = False) -> ControlSpec:
    what = "-s %s" % text
    for prefix in ("unix", "cunix", "udp6", "udp", "tcp6", "tcp", "stdioc", "stdio", "systemd"):
        if text.startswith(prefix + ":"):
            rest = text[len(prefix) + 1:]
            break
    else:
        prefix, rest = "unix", text
    if prefix in ("unix", "cunix"):
        if not rest:
            raise ConfigError("%s: give the path of the control socket." % what)
        return ControlSpec(text, prefix, path=rest)
    if prefix in ("stdio", "stdioc"):
        return ControlSpec(text, prefix)
    if prefix == "systemd":
        if rest:
            raise ConfigError("%s: write it as -s systemd: (the sockets come from systemd, "
                              "configured in rtpproxy.socket)." % what)
        return ControlSpec(text, prefix)
    host, port = _split_host_port(rest, DEFAULT_CONTROL_PORT, what)
    family = socket.AF_INET6 if prefix.endswith("6") else socket.AF_INET
    return ControlSpec(text, prefix, host=_resolve(host, family, what, no_resolve), port=port)


_HOST_PORT = re.compile(r"\[?[0-9A-Za-z.:-]*[0-9A-Za-z.\]]:[0-9]{1,5}\Z")


def unix_path_meant_as_udp(spec: ControlSpec) -> Optional[str]:
    """``-s 127.0.0.1:22222`` (no scheme) is a unix socket path for upstream and
    for us, but was probably meant as udp: the text to suggest, or None."""
    if spec.kind != "unix" or spec.text != spec.path or "/" in spec.text:
        return None
    if not _HOST_PORT.match(spec.text):
        return None
    return ("udp6:" if spec.text.count(":") > 1 else "udp:") + spec.text


def parse_notify_target(text: str, no_resolve: bool = False) -> NotifyTarget:
    what = "-n %s" % text
    if text.startswith("tcp:"):
        host, port = _split_host_port(text[4:], None, what)
        if port is None:
            raise ConfigError("%s: a tcp notification target needs a port (tcp:HOST:PORT)." % what)
        if host == "%%CC_SELF%%":
            return NotifyTarget(text, "tcp", port=port, wildcard=True)
        return NotifyTarget(text, "tcp", host=_resolve(host, socket.AF_INET, what, no_resolve), port=port)
    path = text[5:] if text.startswith("unix:") else text
    if not path:
        raise ConfigError("%s: give the path of the notification socket." % what)
    return NotifyTarget(text, "unix", path=path)


def parse_metrics_address(text: str) -> Tuple[str, int]:
    """--metrics HOST:PORT, [V6]:PORT or PORT -> (host, port)."""
    what = "--metrics %s" % text
    if text.isdigit():
        text = "127.0.0.1:" + text
    host, port = _split_host_port(text, None, what)
    if port is None or not host:
        raise ConfigError("%s: give the address to serve metrics on as HOST:PORT, for example "
                          "--metrics 127.0.0.1:9100." % what)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    host = _resolve(host, family, what, False)
    return host, port


def _check_local(host: str, family: int, flag: str) -> None:
    """Fail now, not at the first call, when the address is not on this host."""
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((host, 0))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                "%s %s: this address is not on this host, so media cannot be bound to it; "
                "if it is your public address behind NAT, use %s <local address> -A %s." % (
                    flag, host, flag, host)) from None
        raise ConfigError("%s %s: cannot bind media sockets there (%s)." % (flag, host, exc.strerror)) from None
    finally:
        probe.close()


def is_local_address(host: str, family: int) -> bool:
    """Can media sockets be bound to ``host`` (an address of this host)?"""
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((host, 0))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _parse_one_address(text: str, family: int, flag: str, no_resolve: bool) -> BindAddress:
    """addr[=adv] -> BindAddress (label handled by the caller)."""
    host, _, adv = text.partition("=")
    resolved = _resolve(host, family, "%s %s" % (flag, text), no_resolve)
    wildcard = resolved in ("0.0.0.0", "::")
    if not wildcard:
        _check_local(resolved, family, flag)
    return BindAddress(family, resolved, wildcard, adv or None)


def _parse_listen(values: List[str], family: int, flag: str, no_resolve: bool
                  ) -> Tuple[List[BindAddress], Optional[Tuple[Optional[BindAddress], BindAddress]]]:
    """-l / -6 values -> (addresses, bridge pair or None)."""
    addresses: List[BindAddress] = []
    bridge: Optional[Tuple[Optional[BindAddress], BindAddress]] = None
    for n, value in enumerate(values):
        if not value.strip():
            # upstream refuses an empty address too; "*" is the way to say "all"
            raise ConfigError("%s '': give an address (or '*' for all addresses of the family)." % flag)
        label: Optional[str]
        label, at, rest = value.partition("@")
        if not at:
            label, rest = None, value
        if "/" in rest:
            if n != 0:
                raise ConfigError("%s %s: only the first %s address can be a bridge (internal/external)." % (flag, value, flag))
            first, _, second = rest.partition("/")
            if not second:
                raise ConfigError("%s %s: a bridge needs two addresses, %s internal/external." % (flag, value, flag))
            if not first and family == socket.AF_INET:
                raise ConfigError("-l %s: give the internal address before the '/' (only -6 /addr may "
                                  "leave it out, to bridge IPv4 and IPv6)." % value)
            external = _parse_one_address(second, family, flag, no_resolve)
            if first:
                internal = _parse_one_address(first, family, flag, no_resolve)
                internal.label = label
                addresses.append(internal)
                bridge = (internal, external)
            else:
                bridge = (None, external)    # "-6 /addr": internal side is the IPv4 primary
            addresses.append(external)
            continue
        address = _parse_one_address(rest, family, flag, no_resolve)
        if n > 0 and not label:
            raise ConfigError("%s %s: extra listen addresses need a label (%s label@%s) so commands can pick them." % (
                flag, value, flag, value))
        address.label = label
        addresses.append(address)
    return addresses, bridge


def build(opts: Mapping[str, Any], debug_build: bool = False) -> Config:
    """docopt's dict -> Config."""
    c = Config(debug_build=debug_build)
    c.no_resolve = bool(opts["--no_resolve"])
    c.foreground = bool(opts["-f"])
    c.allow_root = bool(opts["-F"])
    c.modules = _modules(opts, debug_build)

    # media addresses
    c.listen4, bridge4 = _parse_listen(opts["-l"], socket.AF_INET, "-l", c.no_resolve)
    c.listen6, bridge6 = _parse_listen(opts["--ipv6"], socket.AF_INET6, "-6", c.no_resolve)
    if bridge4 and bridge6:
        raise ConfigError("-l and -6 both name a bridge; only one of them can carry the /external part.")
    if not c.listen4 and not c.listen6:
        c.listen4 = [BindAddress(socket.AF_INET, "0.0.0.0", True)]
    c.primary = c.listen4[0] if c.listen4 else c.listen6[0]
    if bridge4:
        c.bridge = cast(Tuple[BindAddress, BindAddress], bridge4)   # -l always names the internal side
    elif bridge6:
        internal, external = bridge6
        if internal is None:
            if not c.listen4:
                raise ConfigError("-6 /%s: a v4/v6 bridge needs an IPv4 internal address from -l." % external.host)
            internal = c.listen4[0]
        c.bridge = (internal, external)
    if opts["-A"] is not None:
        adv = opts["-A"]
        first, slash, second = adv.partition("/")
        if not first or any(ch.isspace() for ch in adv) or (slash and not second and not c.bridge):
            raise ConfigError("-A %r: give the address to report to clients, -A addr (or -A "
                              "internal/external with a bridge)." % adv)
        if c.bridge:
            if not (first and second):
                raise ConfigError("-A %s: in bridging mode give both advertised addresses, -A internal/external." % adv)
            c.bridge[0].advertised = first
            c.bridge[1].advertised = second
        else:
            if slash:
                raise ConfigError("-A %s: two advertised addresses only make sense with a bridge (-l int/ext)." % adv)
            c.primary.advertised = first

    # control sockets
    controls = opts["-s"] or [DEFAULT_CONTROL]
    c.controls = _inherit_sockets([parse_control(text, c.no_resolve) for text in controls])
    stdio = [s for s in c.controls if s.kind in ("stdio", "stdioc")]
    if stdio and not c.foreground:
        raise ConfigError("-s %s: stdio control needs -f (stay in the foreground)." % stdio[0].text)
    if len(stdio) > 1:
        raise ConfigError("only one stdio: control channel can be given.")

    # ports
    lo = _int_option(opts["-m"], "-m", 1, 65535, "the lowest port")
    hi = _int_option(opts["-M"], "-M", 1, 65535, "the highest port")
    c.port_min = lo + (lo & 1)
    c.port_max = hi - 1 if hi & 1 else hi - 2
    if c.port_min > c.port_max:
        raise ConfigError("-m %d -M %d: the range holds no even RTP port with its RTCP port above it; "
                          "widen it (for example -m 35000 -M 65000)." % (lo, hi))
    c.sequential_ports = bool(opts["-b"])

    # time-outs
    c.ttl = _int_option(opts["-T"], "-T", 1, 2 ** 31 - 1, "the idle time-out in seconds")
    c.setup_ttl = c.ttl if opts["-W"] is None else _int_option(
        opts["-W"], "-W", 1, 2 ** 31 - 1, "the setup time-out in seconds")
    c.independent_ttl = bool(opts["-i"])

    c.notify_targets = [parse_notify_target(t, c.no_resolve) for t in opts["-n"]]

    # logging
    level = opts["-d"]
    if level is not None:
        c.log_level, c.log_facility = parse_log_level(level)
    else:
        c.log_level = logging.DEBUG if (c.foreground or debug_build) else logging.WARNING

    pidfile = opts["-p"]
    c.pidfile_given = pidfile is not None
    if pidfile is None:
        pidfile = DEFAULT_PIDFILE
    c.pidfile = None if pidfile in ("", "/dev/null") else pidfile

    if opts["-u"]:
        _parse_user(c, opts["-u"])
    c.socket_mode = 0o755
    if opts["-w"] is not None:
        c.socket_mode = _int_option(opts["-w"], "-w", 0, 4095, "the socket mode (decimal, 432 = 0660)")
    if opts["-L"] is not None:
        c.nofile = _int_option(opts["-L"], "-L", 1, 2 ** 31 - 1, "the open-files limit")
    c.tos = _int_option(opts["-t"], "-t", 0, 255, "the TOS value")
    c.dup_small = bool(opts["--dup-small"])

    # recording
    c.record_dir = opts["-r"]
    c.spool_dir = opts["-S"]
    if c.spool_dir and not c.record_dir:
        raise ConfigError("-S %s: a spool directory needs a final directory too; add -r DIR." % c.spool_dir)
    for flag, d in (("-r", c.record_dir), ("-S", c.spool_dir)):
        if d and not os.path.isdir(d):
            raise ConfigError("%s %s: no such directory; create it or name another." % (flag, d))
    c.record_rtcp = not opts["-R"]
    c.record_pcap = bool(opts["-P"])
    c.record_all = bool(opts["-a"])

    if opts["--overload_prot"] is not None:
        try:
            float(opts["--overload_prot"])
        except ValueError:
            raise ConfigError("--overload_prot=%s: give a number (it is accepted for compatibility and "
                              "has no effect)." % opts["--overload_prot"]) from None
    c.force_asymmetric = bool(opts["--force_asymmetric"])
    c.bridge_symmetric = bool(opts["--bridge_symmetric"])
    if opts["--nice"] is not None:
        c.nice = _int_option(opts["--nice"], "--nice", -20, 19, "the nice value")
    if opts["-c"] is not None:
        if opts["-c"] not in ("fifo", "rr"):
            raise ConfigError("-c %s: the scheduling policy must be fifo or rr." % opts["-c"])
        c.rt_policy = opts["-c"]
    c.no_chdir = bool(opts["-D"])
    try:
        batch_ms = float(opts["--poll_batch"])
    except (TypeError, ValueError):
        batch_ms = -1
    if not 0 <= batch_ms <= 20:
        raise ConfigError("--poll_batch %s: give milliseconds from 0 to 20 (default 2)." % opts["--poll_batch"])
    c.poll_batch = batch_ms / 1000.0
    c.kernel_offload = bool(opts["--kernel_offload"])
    c.rtp_analysis = _rtp_analysis(opts, c.kernel_offload)
    if opts.get("--admin_socket"):
        c.admin_socket = os.path.abspath(opts["--admin_socket"])
    if opts["--metrics"] is not None:
        c.metrics = parse_metrics_address(opts["--metrics"])
    c.latching = opts["--latching"]
    if c.latching not in LATCHING_MODES:
        raise ConfigError("--latching %s: the mode must be upstream (the default) or strict." % c.latching)
    c.latch_window = _int_option(opts["--latch_window"], "--latch_window", 1, 60,
                                 "the strict latching window in seconds")
    c.workers = _workers(opts["--workers"], debug_build)
    # the debug build relays in Python: its profile and leak report see every packet
    c.fastpath = not opts.get("--no_fastpath") and not debug_build
    c.no_redirect = bool(opts["--no_redirect"]) or debug_build
    return c


def _modules(opts: Mapping[str, Any], debug_build: bool) -> List["ModuleSpec"]:
    """--dso (in command line order) then --config: the modules to run (modules.md 2)."""
    dsos, config_file = opts["--dso"] or [], opts["--config"]
    if not dsos and config_file is None:
        return []
    from .modules.loader import Loader, LoadError
    loader = Loader(debug_build)
    try:
        for path in dsos:
            loader.dso(path)
        if config_file is not None:
            loader.config_file(config_file)
    except LoadError as exc:
        raise ConfigError(str(exc)) from None
    return loader.specs


def _rtp_analysis(opts: Mapping[str, Any], kernel_offload: bool) -> bool:
    """On by default, as upstream always analyzes. --no_rtp_analysis turns it
    off; so does --kernel_offload unless --rtp_analysis is given too, because
    an analyzed stream needs its packets and would never go to the kernel."""
    on, off = bool(opts["--rtp_analysis"]), bool(opts["--no_rtp_analysis"])
    if on and off:
        raise ConfigError("--rtp_analysis and --no_rtp_analysis contradict each other; give one of them.")
    if off:
        return False
    return on or not kernel_offload


def _inherit_sockets(controls: List[ControlSpec]) -> List[ControlSpec]:
    """``-s systemd:`` stands for every socket systemd passed (socket
    activation, sd_daemon.listen_fds): one ControlSpec each."""
    wanted = [spec for spec in controls if spec.kind == "systemd"]
    if not wanted:
        return controls
    if len(wanted) > 1:
        raise ConfigError("-s systemd: is given twice; once takes every socket systemd passes.")
    from .sd_daemon import listen_fds
    try:
        inherited = listen_fds()
    except OSError as exc:
        raise ConfigError("-s systemd:: a descriptor systemd passed is not a socket (%s); check "
                          "rtpproxy.socket." % exc.strerror) from None
    if not inherited:
        raise ConfigError("-s systemd:: systemd passed no sockets to this process (no LISTEN_FDS "
                          "for it); start it through rtpproxy.socket, or use unix:, udp: or tcp:.")
    out: List[ControlSpec] = []
    for spec in controls:
        if spec.kind != "systemd":
            out.append(spec)
            continue
        for sock in inherited:
            host: Optional[str] = None
            port: Optional[int] = None
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                address = cast(Tuple[str, int], sock.address)
                host, port = address[0], address[1]
            elif sock.family != socket.AF_UNIX:
                raise ConfigError("-s systemd:: systemd passed %s, which is neither a unix nor an "
                                  "IP socket; check rtpproxy.socket." % sock.describe())
            out.append(ControlSpec("systemd:%s" % sock.describe(), "systemd", host=host, port=port,
                                   inherited=sock))
    return out


def _workers(value: Optional[str], debug_build: bool) -> int:
    """--workers: default one per core this process may run on; the debug build
    is one process so that its profile and leak report see every packet."""
    if value is None:
        return 1 if debug_build else len(os.sched_getaffinity(0))
    count = _int_option(value, "--workers", 1, 64, "the number of worker processes")
    if debug_build and count > 1:
        raise ConfigError("--workers %s: rtpproxy_debug runs in one process so that its profile and "
                          "leak report see every packet; drop the option or use rtpproxy." % value)
    return count


def _parse_user(c: Config, text: str) -> None:
    c.user_spec = text
    user, _, group = text.partition(":")
    if not user and not group:
        raise ConfigError("-u %s: name a user, user:group or :group to run as." % text)
    if user:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise ConfigError("-u %s: there is no user %r on this host; create it or name another." % (text, user)) from None
        c.user, c.uid, c.gid = user, entry.pw_uid, entry.pw_gid
    if group:
        try:
            c.gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError("-u %s: there is no group %r on this host; create it or name another." % (text, group)) from None
        c.socket_group_given = True
