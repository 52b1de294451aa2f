"""UDP reply cache (control-protocol.md 1.2): a retransmitted cookie gets the
reply it got before, and the command does not run twice.

Bounded by time and by memory. Entries live LIFETIME seconds, but the cache
never holds more than MAX_BYTES (entries counted at what they really cost,
ENTRY_OVERHEAD measured): a flood of new cookies, or a busy proxy, would
otherwise keep 35 s of replies (at 10,000 commands a second, 350,000 entries,
about 95 MB). Past the bound the oldest replies are forgotten first; at
10,000 commands a second the cache still answers retransmissions for about
13 s, far beyond a SIP proxy's retry time (Kamailio: 1 s, 5 retries).

A dict never gives back the table it grew to when entries are deleted, so
after a sweep that left it much smaller than its peak it is copied into a
fresh one: the memory of a busy minute comes back once its replies expire
(bench/churn.py --udp measures it).
"""

import collections

LIFETIME = 35.0
SWEEP_INTERVAL = 3.0
MAX_BYTES = 32 * 1024 * 1024
# What one entry costs besides the cookie's and reply's bytes, measured with
# tracemalloc on 350,000 entries (3.11: about 255 bytes in all with a
# 10-byte cookie and a 25-byte reply): two bytes objects, the (expiry,
# cookie) tuple and its float, the dict slot and the deque slot.
ENTRY_OVERHEAD = 220
# Rebuild the dict when a sweep leaves it with fewer than 1/SHRINK_RATIO of
# the entries it held at its peak (and the peak was worth it).
SHRINK_RATIO = 4
SHRINK_MIN_PEAK = 4096


class ReplyCache:
    def __init__(self, lifetime=LIFETIME, max_bytes=MAX_BYTES):
        self.lifetime = lifetime
        self.max_bytes = max_bytes
        self.replies = {}                       # cookie -> reply bytes
        self.expiry = collections.deque()       # (expires at, cookie), oldest first
        self.size = 0                           # bytes held, overhead included
        self.evicted = 0                        # entries forgotten before their time
        self.peak = 0                           # most entries since the dict was last rebuilt

    def __len__(self):
        return len(self.replies)

    def get(self, cookie):
        return self.replies.get(cookie)

    def put(self, cookie, data, now):
        replies = self.replies
        old = replies.get(cookie)
        if old is None:
            self.expiry.append((now + self.lifetime, cookie))
            self.size += len(cookie) + ENTRY_OVERHEAD
        else:
            self.size -= len(old)
        replies[cookie] = data
        self.size += len(data)
        while self.size > self.max_bytes and len(self.expiry) > 1:
            self._forget(self.expiry.popleft()[1])
            self.evicted += 1
        if len(replies) > self.peak:
            self.peak = len(replies)

    def sweep(self, now):
        """Forget replies older than the lifetime (run every SWEEP_INTERVAL);
        give the dict's table back once it has shrunk well below its peak."""
        expiry = self.expiry
        while expiry and expiry[0][0] <= now:
            self._forget(expiry.popleft()[1])
        if self.peak >= SHRINK_MIN_PEAK and len(self.replies) * SHRINK_RATIO < self.peak:
            self.replies = dict(self.replies)
            self.peak = len(self.replies)

    def _forget(self, cookie):
        data = self.replies.pop(cookie, None)
        if data is not None:
            self.size -= len(cookie) + len(data) + ENTRY_OVERHEAD
