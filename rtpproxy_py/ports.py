"""Which media port to try next (media-relay.md section 1).

The allocator only hands out candidate even ports inside -m..-M and remembers
which are taken by us; the relay does the binding and reports back. Random
order by default (a shuffled table walked from a moving cursor), strictly
sequential and cyclic with -b.
"""

import random


class PortsExhausted(Exception):
    """No free RTP/RTCP port pair could be bound."""


class PortAllocator:
    def __init__(self, port_min, port_max, sequential=False, rng=None):
        self.ports = list(range(port_min, port_max + 1, 2))
        self.sequential = sequential
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
        return len(self.ports) - len(self.in_use)

    def candidates(self):
        """Yield each port of the range at most once, starting at the cursor."""
        n = len(self.ports)
        for step in range(n):
            index = (self.cursor + step) % n
            port = self.ports[index]
            if port in self.in_use:
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

    def released(self, port):
        self.in_use.discard(port)
