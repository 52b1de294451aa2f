"""Which media port to try next (media-relay.md section 1).

The allocator only hands out candidate even ports inside -m..-M and remembers
which are taken by us; the relay does the binding and reports back. Random
order by default (a shuffled table walked from a moving cursor), strictly
sequential and cyclic with -b.

With --workers, every worker process allocates from the whole range and a
SharedPortTable (memory all workers map) says which pairs are held and by
whom, and keeps the -b cursor: the range, the -b order and E71/E72 behave as
in one process. Two workers racing for one port is settled by bind(): the
loser gets EADDRINUSE and the relay tries the next candidate.
"""

import mmap
import os
import random
import struct

_CURSOR = struct.Struct("=I")


class PortsExhausted(Exception):
    """No free RTP/RTCP port pair could be bound."""


class SharedPortTable:
    """Owner (worker number, 0 = free) of each RTP port of the range, and the
    sequential cursor, in a memfd every worker process maps."""

    def __init__(self, port_min, port_max, fd=None):
        self.port_min = port_min
        self.pairs = (port_max - port_min) // 2 + 1
        size = _CURSOR.size + self.pairs
        if fd is None:
            fd = os.memfd_create("rtpproxy-ports")
            os.ftruncate(fd, size)
        self.fd = fd
        self.mem = mmap.mmap(fd, size)

    def _slot(self, port):
        return _CURSOR.size + (port - self.port_min) // 2

    def owner(self, port):
        return self.mem[self._slot(port)]

    def claim(self, port, owner):
        self.mem[self._slot(port)] = owner

    def release(self, port, owner):
        slot = self._slot(port)
        if self.mem[slot] == owner:
            self.mem[slot] = 0

    def release_all(self, owner):
        """A worker died: the kernel closed its sockets, its ports are free."""
        mem = self.mem
        for slot in range(_CURSOR.size, _CURSOR.size + self.pairs):
            if mem[slot] == owner:
                mem[slot] = 0

    def held(self):
        return self.pairs - self.mem[_CURSOR.size:].count(0)

    @property
    def cursor(self):
        return _CURSOR.unpack_from(self.mem, 0)[0]

    @cursor.setter
    def cursor(self, value):
        _CURSOR.pack_into(self.mem, 0, value)


class PortAllocator:
    def __init__(self, port_min, port_max, sequential=False, rng=None, shared=None, owner=0):
        self.ports = list(range(port_min, port_max + 1, 2))
        self.sequential = sequential
        self.shared = shared        # SharedPortTable with --workers, else None
        self.owner = owner
        self.rng = rng or random.SystemRandom()
        if not sequential:
            self.rng.shuffle(self.ports)
        self.position = {port: i for i, port in enumerate(self.ports)}
        self.cursor = 0
        self.in_use = set()

    def __len__(self):
        return len(self.ports)

    @property
    def free(self):
        if self.shared is not None:
            return len(self.ports) - self.shared.held()
        return len(self.ports) - len(self.in_use)

    def candidates(self):
        """Yield each port of the range at most once, starting at the cursor."""
        n = len(self.ports)
        shared = self.shared
        if shared is not None and self.sequential:
            self.cursor = shared.cursor % n
        for step in range(n):
            index = (self.cursor + step) % n
            port = self.ports[index]
            if port in self.in_use or (shared is not None and shared.owner(port)):
                continue
            yield port

    def taken(self, port):
        """The relay bound ``port`` (and port+1): the next walk starts after it."""
        self.in_use.add(port)
        n = len(self.ports)
        if self.sequential:
            self.cursor = (port - self.ports[0]) // 2 + 1
        else:
            # Reshuffle as we walk: swap the used slot with a random later one.
            self.cursor = (self.position[port] + 1) % n
            other = self.rng.randrange(n)
            a, b = self.ports[self.cursor], self.ports[other]
            self.ports[self.cursor], self.ports[other] = b, a
            self.position[a], self.position[b] = other, self.cursor
        self.cursor %= n
        if self.shared is not None:
            self.shared.claim(port, self.owner)
            if self.sequential:
                self.shared.cursor = self.cursor

    def released(self, port):
        self.in_use.discard(port)
        if self.shared is not None:
            self.shared.release(port, self.owner)
