"""UDP reply cache (control-protocol.md 1.2): a retransmitted cookie gets the
reply it got before, and the command does not run twice.

Entries live LIFETIME seconds, but the cache never holds more than MAX_BYTES:
a flood of datagrams with new cookies (up to 8 KiB each) would otherwise grow
it without bound for 35 s. Legitimate load stays far below it (2000 commands
a second keep about 10 MiB); past it the oldest replies are forgotten first.
"""

import collections

LIFETIME = 35.0
SWEEP_INTERVAL = 3.0
MAX_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 120        # bytes a dict slot, a deque slot and two bytes objects cost besides their data


class ReplyCache:
    def __init__(self, lifetime=LIFETIME, max_bytes=MAX_BYTES):
        self.lifetime = lifetime
        self.max_bytes = max_bytes
        self.replies = {}                       # cookie -> reply bytes
        self.expiry = collections.deque()       # (expires at, cookie), oldest first
        self.size = 0                           # bytes held, overhead included
        self.evicted = 0                        # entries forgotten before their time

    def __len__(self):
        return len(self.replies)

    def get(self, cookie):
        return self.replies.get(cookie)

    def put(self, cookie, data, now):
        old = self.replies.get(cookie)
        if old is None:
            self.expiry.append((now + self.lifetime, cookie))
            self.size += len(cookie) + ENTRY_OVERHEAD
        else:
            self.size -= len(old)
        self.replies[cookie] = data
        self.size += len(data)
        while self.size > self.max_bytes and len(self.expiry) > 1:
            self._forget(self.expiry.popleft()[1])
            self.evicted += 1

    def sweep(self, now):
        """Forget replies older than the lifetime (run every SWEEP_INTERVAL)."""
        expiry = self.expiry
        while expiry and expiry[0][0] <= now:
            self._forget(expiry.popleft()[1])

    def _forget(self, cookie):
        data = self.replies.pop(cookie, None)
        if data is not None:
            self.size -= len(cookie) + len(data) + ENTRY_OVERHEAD
