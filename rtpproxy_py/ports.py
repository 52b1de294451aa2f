"""Which media port to try next (media-relay.md section 1).

The allocator only hands out candidate even ports inside -m..-M and remembers
which are taken by us; the relay does the binding and reports back. Random
order by default (a shuffled table walked from a moving cursor), strictly
sequential and cyclic with -b.

As upstream, each address family has its own table (FamilyPorts): with
``-b -m 12000`` an IPv4 session takes 12000 and a following IPv6 session
12000 too (control-protocol.md 5.6).

With --workers, every worker process allocates from the whole range and a
SharedPortTable (memory all workers map) says which pairs are held and by
whom, and keeps the -b cursor, per family: the range, the -b order and
E71/E72 behave as in one process. Two workers racing for one port is settled
by bind(): the loser gets EADDRINUSE and the relay tries the next candidate.
"""

import mmap
import os
import random
import socket
import struct
from typing import Callable, Dict, Iterator, Optional, Set, Tuple

_CURSOR = struct.Struct("=I")
FAMILIES = (socket.AF_INET, socket.AF_INET6)


class PortsExhausted(Exception):
    """No free RTP/RTCP port pair could be bound."""


class SharedPortTable:
    """Owner (worker number, 0 = free) of each RTP port of the range, and the
    sequential cursor, per address family, in a memfd every worker process
    maps. ``family(af)`` is one family's table; the methods here without a
    family act on the IPv4 one (and release_all on both)."""

    def __init__(self, port_min: int, port_max: int, fd: Optional[int] = None) -> None:
        self.port_min = port_min
        self.pairs = (port_max - port_min) // 2 + 1
        self.stride = _CURSOR.size + self.pairs
        size = self.stride * len(FAMILIES)
        if fd is None:
            fd = os.memfd_create("rtpproxy-ports")
            os.ftruncate(fd, size)
        self.fd = fd
        self.mem = mmap.mmap(fd, size)
        self._views: Dict[int, _SharedFamily] = {
            af: _SharedFamily(self, n * self.stride) for n, af in enumerate(FAMILIES)}

    def family(self, af: int) -> "_SharedFamily":
        return self._views[af]

    def owner(self, port: int) -> int:
        return self._views[socket.AF_INET].owner(port)

    def claim(self, port: int, owner: int) -> None:
        self._views[socket.AF_INET].claim(port, owner)

    def release(self, port: int, owner: int) -> None:
        self._views[socket.AF_INET].release(port, owner)

    def release_all(self, owner: int) -> None:
        """A worker died: the kernel closed its sockets, its ports are free."""
        for view in self._views.values():
            view.release_all(owner)

    def held(self) -> int:
        return sum(view.held() for view in self._views.values())

    @property
    def cursor(self) -> int:
        return self._views[socket.AF_INET].cursor

    @cursor.setter
    def cursor(self, value: int) -> None:
        self._views[socket.AF_INET].cursor = value


class _SharedFamily:
    """One address family's part of a SharedPortTable."""

    def __init__(self, table: SharedPortTable, base: int) -> None:
        self.table = table
        self.base = base
        self.port_min = table.port_min
        self.pairs = table.pairs
        self.mem = table.mem

    def _slot(self, port: int) -> int:
        return self.base + _CURSOR.size + (port - self.port_min) // 2

    def owner(self, port: int) -> int:
        return self.mem[self._slot(port)]

    def claim(self, port: int, owner: int) -> None:
        self.mem[self._slot(port)] = owner

    def release(self, port: int, owner: int) -> None:
        slot = self._slot(port)
        if self.mem[slot] == owner:
            self.mem[slot] = 0

    def release_all(self, owner: int) -> None:
        mem = self.mem
        first = self.base + _CURSOR.size
        for slot in range(first, first + self.pairs):
            if mem[slot] == owner:
                mem[slot] = 0

    def held(self) -> int:
        first = self.base + _CURSOR.size
        return self.pairs - self.mem[first:first + self.pairs].count(0)

    @property
    def cursor(self) -> int:
        return _CURSOR.unpack_from(self.mem, self.base)[0]

    @cursor.setter
    def cursor(self, value: int) -> None:
        _CURSOR.pack_into(self.mem, self.base, value)


_RANDOM_BLOCK = 4096        # bytes of os.urandom read at once: 512 ports taken
_U64 = struct.Struct("<Q")
_random_bytes = b""
_random_used = 0


def _urandom_below(n: int) -> int:
    """8 bytes of os.urandom reduced modulo n; the bytes are read a block at
    a time (one getrandom call per 512 ports taken, not one per port)."""
    global _random_bytes, _random_used
    used = _random_used
    if used + 8 > len(_random_bytes):
        _random_bytes, used = os.urandom(_RANDOM_BLOCK), 0
    _random_used = used + 8
    return _U64.unpack_from(_random_bytes, used)[0] % n


def _forget_random_bytes() -> None:
    """A forked process (a --workers worker) reads its own: two processes
    must not take ports in the same order."""
    global _random_bytes, _random_used
    _random_bytes, _random_used = b"", 0


os.register_at_fork(after_in_child=_forget_random_bytes)


class PortAllocator:
    def __init__(self, port_min: int, port_max: int, sequential: bool = False,
                 rng: Optional[random.Random] = None, shared: Optional["_SharedFamily"] = None,
                 owner: int = 0) -> None:
        self.ports = list(range(port_min, port_max + 1, 2))
        self.sequential = sequential
        self.shared = shared        # SharedPortTable with --workers, else None
        self.owner = owner
        self.rng = rng or random.SystemRandom()
        self._random_index: Callable[[int], int]
        if rng is None:
            # The system's randomness, as SystemRandom().randrange gives it, for
            # half its cost per port taken: 8 bytes reduced modulo the
            # table size (the bias is below 2**-48 for any port range).
            self._random_index = _urandom_below
        else:
            self._random_index = self.rng.randrange
        if not sequential:
            self.rng.shuffle(self.ports)
        self.position = {port: i for i, port in enumerate(self.ports)}
        self.cursor = 0
        self.in_use: Set[int] = set()

    def __len__(self) -> int:
        return len(self.ports)

    @property
    def free(self) -> int:
        if self.shared is not None:
            return len(self.ports) - self.shared.held()
        return len(self.ports) - len(self.in_use)

    def candidates(self) -> Iterator[int]:
        """Yield each port of the range at most once, starting at the cursor."""
        ports = self.ports
        n = len(ports)
        shared = self.shared
        if shared is not None and self.sequential:
            self.cursor = shared.cursor % n
        # (nothing moves the cursor or the table while the relay walks it:
        # taken() ends the walk)
        cursor, in_use = self.cursor, self.in_use
        for step in range(n):
            port = ports[(cursor + step) % n]
            if port in in_use or (shared is not None and shared.owner(port)):
                continue
            yield port

    def taken(self, port: int) -> None:
        """The relay bound ``port`` (and port+1): the next walk starts after it."""
        self.in_use.add(port)
        ports = self.ports
        n = len(ports)
        if self.sequential:
            self.cursor = ((port - ports[0]) // 2 + 1) % n
        else:
            # Reshuffle as we walk: swap the used slot with a random later one.
            position = self.position
            self.cursor = cursor = (position[port] + 1) % n
            other = self._random_index(n)
            a, b = ports[cursor], ports[other]
            ports[cursor], ports[other] = b, a
            position[a], position[b] = other, cursor
        if self.shared is not None:
            self.shared.claim(port, self.owner)
            if self.sequential:
                self.shared.cursor = self.cursor

    def released(self, port: int) -> None:
        self.in_use.discard(port)
        if self.shared is not None:
            self.shared.release(port, self.owner)


class FamilyPorts:
    """One PortAllocator per address family, as upstream keeps one port table
    per family: what the relay holds as ``relay.ports``."""

    def __init__(self, port_min: int, port_max: int, sequential: bool = False,
                 rng: Optional[random.Random] = None,
                 shared: Optional[SharedPortTable] = None, owner: int = 0) -> None:
        self.tables: Dict[int, PortAllocator] = {
            af: PortAllocator(port_min, port_max, sequential, rng,
                              shared.family(af) if shared is not None else None, owner)
            for af in FAMILIES}

    def table(self, family: int) -> PortAllocator:
        return self.tables[family]

    def released(self, port: int, family: int) -> None:
        self.tables[family].released(port)

    @property
    def in_use(self) -> Set[Tuple[int, int]]:
        """(family, port) of every RTP port held."""
        return {(af, port) for af, table in self.tables.items() for port in table.in_use}

    @property
    def free(self) -> int:
        return sum(table.free for table in self.tables.values())

    def __len__(self) -> int:
        return sum(len(table) for table in self.tables.values())
