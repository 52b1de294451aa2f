"""The rtpproxy command line (cli.md), parsed with docopt into a Config.

docopt cannot name options after digits, so ``-6`` and ``-2`` are rewritten to
``--ipv6`` and ``--dup-small`` before it runs; clustered short options
(``-fb``, ``-m35000``) are split the way getopt would split them.
"""

import inspect
import re
import sys

from docopt import DocoptExit, docopt

from . import config as cfg

USAGE = """\
rtpproxy: a media relay for SIP proxies, controlled like Sippy's rtpproxy.

Usage:
  rtpproxy [options] [-l ADDR]... [-6 ADDR]... [-s CTRL]... [-n TARGET]... [--dso PATH]...
  rtpproxy -V | -v | -C
  rtpproxy -h | --help

Options:
  -l ADDR           IPv4 media address: [label@]addr[=advertised] or int/ext (bridge); '*' = all
  -6 ADDR           IPv6 media address, same forms as -l
  -A ADV            address(es) to report to clients instead of the bound one: adv[/adv2]
  -s CTRL           control socket: unix:PATH cunix:PATH udp:HOST[:PORT] udp6:HOST:PORT
                    tcp:HOST[:PORT] tcp6:HOST:PORT stdio: stdioc: systemd: (repeatable;
                    default unix:/var/run/rtpproxy.sock)
  -m PORT           lowest media port [default: 35000]
  -M PORT           highest media port [default: 65000]
  -b                hand out ports sequentially instead of randomly
  -T SECONDS        idle time-out of an established session [default: 60]
  -W SECONDS        idle time-out until the second leg exists (default: -T)
  -i                independent idle counters per leg
  -n TARGET         timeout notification target: unix:PATH, PATH, tcp:HOST:PORT,
                    tcp:%%CC_SELF%%:PORT (repeatable)
  -f                stay in the foreground (log to stderr, default level DBUG)
  -F                allow running as root without -u
  -d LEVEL          log level DBUG|INFO|WARN|ERR|CRIT, optionally :facility
  -p PIDFILE        pid file, /dev/null for none (default /var/run/rtpproxy.pid;
                    if that one cannot be written, a warning and none)
  -u USER           drop privileges to user[:group] (or :group) after binding
  -w MODE           permissions of the unix control socket, decimal (432 = 0660)
  -L NOFILE         raise the open-files limit to NOFILE
  -t TOS            IP TOS of media packets, 0-255 [default: 184]
  -2                send relayed packets under 128 bytes twice
  -r DIR            directory for recordings
  -S DIR            spool directory for recordings in progress (needs -r)
  -R                do not record RTCP
  -P                record in pcap format
  -a                record all sessions
  -c POLICY         real-time scheduling policy fifo or rr, at its lowest priority
                    (needs root or CAP_SYS_NICE)
  -D                do not chdir to / when daemonizing
  -V                print the version and exit
  -v                print the supported protocol extensions and exit
  -C                print the clock in use and exit
  -h --help         print this help and exit
  --dso PATH        load a module: rtpp_<name>.so selects the built-in acct_csv or
                    catch_dtmf (repeatable; see the man page, MODULES)
  --bridge_symmetric  in bridging mode do not force asymmetric clients
  --nice N          process priority
  --overload_prot LIMIT  accepted for compatibility; no effect
  --config FILE     configuration file with a modules { ... } section (UCL)
  --force_asymmetric  treat every client as asymmetric
  --no_resolve      numeric addresses only, no DNS lookups
  --no_redirect     keep logging to stderr when daemonizing
  --poll_batch MS   gather packets for up to MS milliseconds between polls: fewer
                    wake-ups under load, at most MS ms added delay; 0 = poll per
                    packet; not used while the fast path runs [default: 2]
  --rtp_analysis    analyze relayed RTP for Q's rtpa_* counters, jitter and
                    longest_ipi: the default, as upstream (with --kernel_offload
                    it must be given to keep analysis on)
  --no_rtp_analysis  do not analyze relayed RTP (saves CPU per packet; Q's rtpa_*
                    counters read 0 and VF 20150420/20230205/20230424 answer 0)
  --metrics ADDR    serve Prometheus metrics on http://ADDR/metrics; ADDR is
                    HOST:PORT, [IPv6]:PORT or just PORT (on 127.0.0.1)
  --latching MODE   how media sources are learned: upstream (media-relay.md rules)
                    or strict (against RTP Bleed; see the man page) [default: upstream]
  --latch_window SECONDS  strict latching: seconds after a U/L in which a new
                    source may be learned, 1-60 [default: 3]
  --workers N       worker processes, each relaying its share of the calls on its
                    own event loop (default: one per core; 1 = a single process)
  --kernel_offload  let the kernel forward latched streams that use no per-packet
                    feature (nftables NAT; needs CAP_NET_ADMIN)
  --admin_socket PATH  unix socket where rtpproxy-ctl lists the live sessions
                    and counters (not a control socket; mode 0660)
  --no_fastpath     relay every packet in Python: no compiled forwarder for latched
                    streams (it is used when it was built)
"""

# Short options that take an argument, as in upstream's getopt string.
_WITH_ARGUMENT = set("l6sSAtrpTLmMundcwW")
_FLAGS = set("vf2RFiPaVbDCh")
_DIGIT_OPTIONS = {"6": "--ipv6", "2": "--dup-small"}

# Long options as the usage text lists them: name -> whether it takes a value.
_LONG = {m.group(1): bool(m.group(2)) for m in re.finditer(r"^  (--[a-z_]+)( [A-Z]+)?", USAGE, re.M)}
_LONG["--help"] = False

_DOCOPT_USAGE = USAGE.replace("  -6 ADDR   ", "  --ipv6 ADDR").replace(
    "[-6 ADDR]...", "[--ipv6 ADDR]...").replace("  -2        ", "  --dup-small")


# docopt-ng calls the switch for its built-in -h handling default_help=; the
# original docopt 0.6.2 (Debian's python3-docopt) calls it help=.
_NO_BUILTIN_HELP = {
    "default_help" if "default_help" in inspect.signature(docopt).parameters else "help": False}


class UsageError(Exception):
    pass


def normalize_argv(argv):
    """Split clustered short options, rename the digit ones and complete long
    option prefixes for docopt; an unknown option or a stray argument is a
    UsageError naming it (docopt's own messages do not)."""
    out = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            if i < len(argv):
                raise UsageError("unexpected argument %r: rtpproxy takes options only" % argv[i])
            break
        if arg.startswith("--"):
            i = _long_option(arg, argv, i, out)
            continue
        if not arg.startswith("-") or arg == "-":
            raise UsageError("unexpected argument %r: rtpproxy takes options only" % arg)
        pos = 1
        while pos < len(arg):
            letter = arg[pos]
            pos += 1
            name = _DIGIT_OPTIONS.get(letter, "-" + letter)
            if letter in _WITH_ARGUMENT:
                value = arg[pos:]
                if not value:
                    if i >= len(argv):
                        raise UsageError("option -%s needs a value" % letter)
                    value = argv[i]
                    i += 1
                out.extend([name, value])
                break
            if letter not in _FLAGS:
                raise UsageError("unknown option -%s" % letter)
            out.append(name)
    return _keep_last(out)


_REPEATABLE = ("-l", "--ipv6", "-s", "-n", "--dso")


def _keep_last(tokens):
    """As with getopt, an option given twice that is not a list (-p, -d, -f, ...)
    keeps its last value instead of being an error."""
    options = []        # (key, its tokens) in order
    i = 0
    while i < len(tokens):
        name = tokens[i]
        key = name.partition("=")[0]
        takes_value = "=" not in name and (
            name == "--ipv6" or (len(name) == 2 and name[1] in _WITH_ARGUMENT) or _LONG.get(name, False))
        width = 2 if takes_value else 1
        options.append((key, tokens[i:i + width]))
        i += width
    last = {key: n for n, (key, _) in enumerate(options)}
    out = []
    for n, (key, group) in enumerate(options):
        if key in _REPEATABLE or last[key] == n:
            out.extend(group)
    return out


def _long_option(arg, argv, i, out):
    """Append ``--name[=value]`` (a unique prefix is enough, as with getopt_long)
    to ``out``; returns the index of the next unread argument."""
    name, eq, value = arg.partition("=")
    matches = [n for n in _LONG if n.startswith(name)]
    if name in _LONG:
        matches = [name]
    if len(matches) != 1:
        raise UsageError("%s option %s" % ("ambiguous" if matches else "unknown", name))
    name = matches[0]
    if name == "--overload_prot":
        out.append("%s=%s" % (name, value if eq else "0.85"))   # the value is optional
    elif not _LONG[name]:
        if eq:
            raise UsageError("option %s takes no value" % name)
        out.append(name)
    elif eq:
        out.extend([name, value])
    elif i < len(argv):
        out.extend([name, argv[i]])
        i += 1
    else:
        raise UsageError("option %s needs a value" % name)
    return i


def parse_args(argv):
    """argv (without the program name) -> docopt's option dict."""
    try:
        return docopt(_DOCOPT_USAGE, normalize_argv(argv), **_NO_BUILTIN_HELP)
    except DocoptExit:
        # normalize_argv caught the rest: what is left is -V/-v/-C/-h mixed with others.
        raise UsageError("%s: -V, -v, -C and -h each stand alone; give one of them without "
                         "other options" % " ".join(argv)) from None


def print_usage_error(message):
    sys.stderr.write("rtpproxy: %s\n\n%s" % (message, USAGE))


def config_from_argv(argv, debug_build=False):
    """Parse and validate; raises UsageError or config.ConfigError."""
    return cfg.build(parse_args(argv), debug_build=debug_build)
