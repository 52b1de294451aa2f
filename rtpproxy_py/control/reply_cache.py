"""UDP reply cache (control-protocol.md 1.2): a retransmitted cookie gets the
reply it got before, and the command does not run twice."""

import collections

LIFETIME = 35.0
SWEEP_INTERVAL = 3.0


class ReplyCache:
    def __init__(self, lifetime=LIFETIME):
        self.lifetime = lifetime
        self.replies = {}                       # cookie -> reply bytes
        self.expiry = collections.deque()       # (expires at, cookie), oldest first

    def __len__(self):
        return len(self.replies)

    def get(self, cookie):
        return self.replies.get(cookie)

    def put(self, cookie, data, now):
        if cookie not in self.replies:
            self.expiry.append((now + self.lifetime, cookie))
        self.replies[cookie] = data

    def sweep(self, now):
        """Forget replies older than the lifetime (run every SWEEP_INTERVAL)."""
        expiry = self.expiry
        while expiry and expiry[0][0] <= now:
            _, cookie = expiry.popleft()
            self.replies.pop(cookie, None)
