"""Upstream's loadable modules (modules.md), built in.

rtpproxy 3.x loads ``rtpp_<name>.so`` files with ``--dso`` or a ``modules``
section of ``--config``. rtpproxy-py cannot load those C objects; the file
name selects the built-in implementation instead (loader.py), with
upstream's checks and messages. Each module is a ``Module``: it may

* watch sessions begin and end (``session_created`` / ``session_ended``,
  called by the dispatcher),
* put per-packet features on a session's streams (media/feature.py:
  ``Stream.add_feature``, or ``Stream.add_tap`` for a plain callable that
  returns True to drop the packet; packet filters, ``Stream.add_filter``)
  -- streams of sessions no module taps keep the plain packet path,
* answer its ``M<id>:<inst>`` sub-command of U/L/Q (``subcommand``).

``ModuleHost`` (host.py) holds the running instances of one process: the
single-process daemon or each ``--workers`` worker.
"""

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple


@dataclass
class ModuleSpec:
    """One module instance to run, as --dso/--config named it (picklable:
    --workers sends it to the workers with the rest of the configuration)."""

    name: str                     # acct_csv, acct_rtcp_hep, catch_dtmf, ...
    module_id: int                # fixed per module (modules.md 1)
    instance: int                 # 1 for the first copy of this module id, 2, ...
    path: str                     # the file that selected it
    section: Optional[str] = None  # config section name; None for --dso
    options: Dict[str, object] = field(default_factory=dict)   # validated config keys
    workdir: str = "/"            # the directory rtpproxy started in


class SubcommandFailed(Exception):
    """A module sub-command failed: `` && -1`` (control-protocol.md 6.3)."""


class ModuleStartError(Exception):
    """A module could not start; str() is the errno text upstream appends."""


class OptionError(Exception):
    """A bad config value: str() is the module's message."""


class Module:
    """Base of the built-in modules; every hook is optional."""

    name = ""
    module_id = 0
    config_keys: Tuple[str, ...] = ()      # keys besides ``load`` (lower case)
    needs_config = False                   # refused via --dso (acct_rtcp_hep)
    has_subcommand = False

    def __init__(self, spec: ModuleSpec, host):
        self.spec = spec
        self.host = host

    @classmethod
    def check_option(cls, key: str, value):
        """The validated value of config key ``key`` (lower case); OptionError if bad."""
        return value

    def start(self):
        """Open files and sockets; ModuleStartError if that fails."""

    def session_created(self, session, now):
        pass

    def session_ended(self, session, now):
        pass

    def subcommand(self, args, session, addressed, opposite, ctx) -> Optional[str]:
        """``M<id>:<inst> ARGS``: text to print, or None; SubcommandFailed for -1."""
        raise SubcommandFailed()

    def close(self):
        """At shutdown, after every session ended."""


def token_text(token) -> str:
    return token.decode("utf-8", "surrogateescape") if isinstance(token, bytes) else token


def mode_letter(token) -> str:
    """The mode word of a dtls_gw/ice_lite sub-command, lower case. Upstream
    ORs the word's first two characters (modules.md 7.1: ``SS`` works as ``S``)."""
    word = token_text(token).lower()
    code = ord(word[0]) | (ord(word[1]) if len(word) > 1 else 0)
    return chr(code) if code < 0x110000 else ""


# name -> (module id, "submodule:Class" of the implementation, or None: not built in yet)
REGISTRY = {
    "acct_csv": (1, "acct_csv:AcctCsv"),
    "acct_rtcp_hep": (2, "acct_rtcp_hep:AcctRtcpHep"),
    "catch_dtmf": (3, "catch_dtmf:CatchDtmf"),
    "dtls_gw": (4, "dtls_gw:DtlsGateway"),
    "ice_lite": (5, "ice_lite:IceLite"),
}


def implementation(name):
    """The Module class built in for ``name`` (None if not built in yet)."""
    import importlib
    target = REGISTRY[name][1]
    if target is None:
        return None
    submodule, cls = target.split(":")
    return getattr(importlib.import_module("." + submodule, __name__), cls)
