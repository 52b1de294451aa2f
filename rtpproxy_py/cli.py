"""The rtpproxy command line (cli.md), parsed with docopt into a Config.

docopt cannot name options after digits, so ``-6`` and ``-2`` are rewritten to
``--ipv6`` and ``--dup-small`` before it runs; clustered short options
(``-fb``, ``-m35000``) are split the way getopt would split them.
"""

import sys

from docopt import DocoptExit, docopt

from . import config as cfg

USAGE = """\
rtpproxy: a media relay for SIP proxies, controlled like Sippy's rtpproxy.

Usage:
  rtpproxy [options] [-l ADDR]... [--ipv6 ADDR]... [-s CTRL]... [-n TARGET]...
  rtpproxy -V | -v | -C
  rtpproxy -h | --help

Options:
  -l ADDR           IPv4 media address: [label@]addr[=advertised] or int/ext (bridge); '*' = all
  -6 ADDR           IPv6 media address, same forms as -l
  -A ADV            address(es) to report to clients instead of the bound one: adv[/adv2]
  -s CTRL           control socket: unix:PATH cunix:PATH udp:HOST[:PORT] udp6:HOST:PORT
                    tcp:HOST[:PORT] tcp6:HOST:PORT stdio: stdioc: (repeatable;
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
  -p PIDFILE        pid file, /dev/null for none [default: /var/run/rtpproxy.pid]
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
  -c POLICY         real-time scheduling policy: fifo or rr
  -D                do not chdir to / when daemonizing
  -V                print the version and exit
  -v                print the supported protocol extensions and exit
  -C                print the clock in use and exit
  -h --help         print this help and exit
  --dso PATH        load a module (not supported: rtpproxy-py has no modules)
  --bridge_symmetric  in bridging mode do not force asymmetric clients
  --nice N          process priority
  --overload_prot LIMIT  accepted for compatibility; no effect
  --config FILE     configuration file for modules (not supported)
  --force_asymmetric  treat every client as asymmetric
  --no_resolve      numeric addresses only, no DNS lookups
  --no_redirect     keep logging to stderr when daemonizing
"""

# Short options that take an argument, as in upstream's getopt string.
_WITH_ARGUMENT = set("l6sSAtrpTLmMundcwW")
_FLAGS = set("vf2RFiPaVbDCh")
_DIGIT_OPTIONS = {"6": "--ipv6", "2": "--dup-small"}

_DOCOPT_USAGE = USAGE.replace("  -6 ADDR   ", "  --ipv6 ADDR").replace(
    "  -2        ", "  --dup-small")


class UsageError(Exception):
    pass


_LONG_WITH_ARGUMENT = ("--dso", "--nice", "--config")
_REPEATABLE = ("-l", "--ipv6", "-s", "-n")


def normalize_argv(argv):
    """Split clustered short options and rename the digit ones for docopt.

    As with getopt, a repeated option that is not a list (-p, -d, -f, ...)
    keeps its last value instead of being an error."""
    items = []      # (name, value or None); positional arguments as (None, arg)
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            items.extend((None, a) for a in argv[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name == "--overload_prot" and not eq:
                value = "0.85"
            elif name in _LONG_WITH_ARGUMENT and not eq:
                if i >= len(argv):
                    raise UsageError("option %s needs a value" % name)
                value = argv[i]
                i += 1
            items.append((name, value if (eq or value) else None))
            continue
        if not arg.startswith("-") or arg == "-":
            items.append((None, arg))
            continue
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
                items.append((name, value))
                break
            if letter not in _FLAGS:
                raise UsageError("unknown option -%s" % letter)
            items.append((name, None))
    last = {name: n for n, (name, _) in enumerate(items) if name is not None and name not in _REPEATABLE}
    out = []
    for n, (name, value) in enumerate(items):
        if name is None:
            out.append(value)
        elif name in _REPEATABLE or last[name] == n:
            if value is None:
                out.append(name)
            elif name.startswith("--") and name not in _REPEATABLE:
                out.append("%s=%s" % (name, value))
            else:
                out.extend([name, value])
    return out


def parse_args(argv):
    """argv (without the program name) -> docopt's option dict."""
    try:
        return docopt(_DOCOPT_USAGE, normalize_argv(argv), default_help=False)
    except DocoptExit as exc:
        raise UsageError(str(exc).splitlines()[0] if str(exc) else "bad usage") from None


def print_usage_error(message):
    sys.stderr.write("rtpproxy: %s\n\n%s" % (message, USAGE))


def config_from_argv(argv, debug_build=False):
    """Parse and validate; raises UsageError or config.ConfigError."""
    return cfg.build(parse_args(argv), debug_build=debug_build)
