"""One plain object per control command, as produced by ``protocol.parse``.

Nothing here knows about sockets or sessions: these are the parsed words of a
command, already checked against the grammar of control-protocol.md.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union


@dataclass
class UpdateModifiers:
    """Modifier letters of U/L (and of the L sub-command), control-protocol.md 5.6."""

    asymmetric: Optional[bool] = None   # 'a' True, 's' False, neither None
    weak: bool = False
    ipv6: bool = False
    interfaces: str = ""          # up to two of 'e'/'i': offerer leg first, answerer leg second
    ptime: Optional[int] = None   # z<N>
    codecs: Optional[str] = None  # c<list>, kept verbatim ("0,8,101")
    local: Optional[Tuple[str, str]] = None   # ("addr", "192.0.2.1") / ("label", "pub")
    route_to: Optional[str] = None            # r<addr>: numeric remote host
    new_port: bool = False
    strict: bool = False          # k: strict latching for the session (not upstream's)


@dataclass
class SubDelete:
    weak: bool = False


@dataclass
class SubSet:
    """``S ttl=N`` / ``Sr tos=N``."""

    reverse: bool
    name: str   # "ttl" or "tos"
    value: int


@dataclass
class SubLookup:
    mods: UpdateModifiers
    addr: str
    port: str


@dataclass
class SubCopy:
    call_id: str
    from_tag: str
    to_tag: str


@dataclass
class SubModule:
    """``M<id>:<inst> ARG...``: a loaded module's sub-command (modules.md 3)."""

    module_id: int
    instance: int
    args: List[object] = field(default_factory=list)


@dataclass
class Version:
    pass


@dataclass
class FeatureCheck:
    datestamp: str


@dataclass
class Update:
    """``U`` (create/update) or, with ``lookup`` set, ``L``."""

    lookup: bool
    mods: UpdateModifiers
    call_id: str
    addr: str
    port: str
    from_tag: str
    to_tag: Optional[str] = None
    notify_socket: Optional[str] = None
    notify_tag: Optional[bytes] = None
    subcommands: List[object] = field(default_factory=list)


@dataclass
class Delete:
    weak: bool
    call_id: str
    from_tag: str
    to_tag: Optional[str] = None


@dataclass
class Play:
    count: int
    call_id: str
    prompt: str
    codecs: str
    from_tag: str
    to_tag: Optional[str] = None


@dataclass
class StopPlay:
    call_id: str
    from_tag: str
    to_tag: Optional[str] = None


@dataclass
class Record:
    single_file: bool
    call_id: str
    from_tag: str
    to_tag: Optional[str] = None


@dataclass
class Copy:
    single_file: bool
    reply_port: bool
    call_id: str
    target: str
    from_tag: str
    to_tag: Optional[str] = None


@dataclass
class StopRecord:
    both_legs: bool
    call_id: str
    from_tag: str
    to_tag: Optional[str] = None


@dataclass
class Query:
    verbose: bool
    call_id: str
    from_tag: str
    to_tag: Optional[str] = None
    counters: List[str] = field(default_factory=list)
    subcommands: List[object] = field(default_factory=list)


@dataclass
class Info:
    brief: bool = False
    load: bool = False


@dataclass
class DeleteAll:
    pass


@dataclass
class Stats:
    verbose: bool
    names: List[str] = field(default_factory=list)


# What protocol.parse returns, and what an ``&&`` sub-command parses to.
Command = Union[Version, FeatureCheck, Update, Delete, Play, StopPlay, Record, Copy,
                StopRecord, Query, Info, DeleteAll, Stats]
SubCommand = Union[SubDelete, SubSet, SubLookup, SubCopy, SubModule]
