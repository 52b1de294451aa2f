"""UDP reply cache (control-protocol.md 1.2): a retransmitted cookie gets the
reply it got before, and the command does not run twice.

Bounded by time and by memory. Entries live at least LIFETIME seconds, but
the cache never holds more than MAX_BYTES: a flood of new cookies, or a busy
proxy, would otherwise keep 35 s of replies (at 10,000 commands a second,
350,000 entries). Past the bound the oldest replies are forgotten first.
A short reply costs about 80 bytes here, so 32 MiB keep the whole lifetime
up to about 10,000 commands a second, and beyond that still far more than a
SIP proxy's retry time (Kamailio: 1 s, 5 retries).

Why not a dict of cookie -> reply: every entry was then four small Python
objects (about 270 bytes), and the allocator keeps the memory of small
objects in 1 MiB arenas that a single live object elsewhere pins. Measured
over UDP (bench/churn.py --udp, 300,000 sessions), 26 MB of the cache's
33 MB stayed with the process after every reply had expired. Here the
replies of a few seconds live in one bucket: a bytearray of records and an
open-addressing table of two arrays (the cookies' hashes and the records'
offsets), all large buffers from the C allocator; an expired bucket is
dropped whole and, when any was, ``malloc_trim`` gives the freed pages back.
"""

import ctypes
import struct
from array import array

LIFETIME = 35.0
SWEEP_INTERVAL = 3.0
MAX_BYTES = 32 * 1024 * 1024
# A bucket takes the replies of at most this many seconds, and of at most
# 1/BUCKET_SHARE of MAX_BYTES (so that eviction forgets a small share at once).
BUCKET_SECONDS = 3.0
BUCKET_SHARE = 8
_FIRST_SLOTS = 256
_RECORD = struct.Struct("<HI")         # cookie length, reply length; then both
_SLOT_BYTES = 16                       # a hash (int64) and an offset (uint64) per table slot
# The lookup's shortcut (ReplyCache.newest): for each value of a cookie
# hash's low bits, the serial (1-255, 0: none yet) of the newest bucket that
# took a reply with those bits. A new cookie, the usual case, is then mostly
# known absent with one byte read instead of a probe of every bucket (a
# long-running daemon has about a dozen). 64 KiB: while the cache holds well
# under 65,536 replies (a few hundred commands a second) most slots are 0;
# beyond, it still spares the buckets newer than the byte names.
_NEWEST_BITS = 16
_NEWEST_MASK = (1 << _NEWEST_BITS) - 1


def _malloc_trim():
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None                    # not glibc: freed memory is the allocator's business
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


class _Bucket:
    """The replies put during a few seconds: records in ``blob``, found
    through an open-addressing table (``hashes``, ``refs``: record offset + 1,
    0 for an empty slot). Among the slots of equal hashes along a probe
    chain the newest record (the largest ref) comes first. ``nbytes`` is
    size(): the buffers' bytes."""

    __slots__ = ("until", "started", "blob", "hashes", "refs", "count", "mask", "nbytes")

    def __init__(self, now):
        self.started = now
        self.until = now
        self.blob = bytearray()
        self.hashes = array("q", bytes(8 * _FIRST_SLOTS))
        self.refs = array("Q", bytes(8 * _FIRST_SLOTS))
        self.count = 0
        self.mask = _FIRST_SLOTS - 1
        self.nbytes = _SLOT_BYTES * _FIRST_SLOTS

    def size(self):
        return self.nbytes

    def find(self, cookie, h):
        hashes, refs, mask, blob = self.hashes, self.refs, self.mask, self.blob
        i = h & mask
        while True:
            ref = refs[i]
            if ref == 0:
                return None
            if hashes[i] == h:
                offset = ref - 1
                clen, rlen = _RECORD.unpack_from(blob, offset)
                start = offset + _RECORD.size
                if blob[start:start + clen] == cookie:
                    return bytes(blob[start + clen:start + clen + rlen])
            i = (i + 1) & mask

    def add(self, cookie, h, data):
        """Adds the record; returns the bytes size() grew by."""
        before = self.nbytes
        if 3 * (self.count + 1) > 2 * (self.mask + 1):
            self._grow()
        blob = self.blob
        ref = len(blob) + 1
        blob += _RECORD.pack(len(cookie), len(data)) + cookie + data
        self._place(h, ref)
        self.count += 1
        self.nbytes = nbytes = len(blob) + _SLOT_BYTES * (self.mask + 1)
        return nbytes - before

    def _place(self, h, ref):
        hashes, refs, mask = self.hashes, self.refs, self.mask
        i = h & mask
        while refs[i] != 0:
            if hashes[i] == h and refs[i] < ref:
                # the same cookie again (or a hash twin): the newer record first
                hashes[i], h = h, hashes[i]
                refs[i], ref = ref, refs[i]
            i = (i + 1) & mask
        hashes[i] = h
        refs[i] = ref

    def _grow(self):
        old_hashes, old_refs = self.hashes, self.refs
        slots = 2 * (self.mask + 1)
        self.hashes = array("q", bytes(8 * slots))
        self.refs = array("Q", bytes(8 * slots))
        self.mask = slots - 1
        place = self._place       # in any order: _place keeps the newest of equal hashes first
        for h, ref in zip(old_hashes, old_refs):
            if ref != 0:
                place(h, ref)


class ReplyCache:
    def __init__(self, lifetime=LIFETIME, max_bytes=MAX_BYTES):
        self.lifetime = lifetime
        self.max_bytes = max_bytes
        self.buckets = []               # oldest first
        self.size = 0                   # bytes held by the buckets' buffers
        self.evicted = 0                # entries forgotten before their time
        self.trimmed = 0                # times freed memory was given back
        self.newest = bytearray(1 << _NEWEST_BITS)
        self.serial = 0                 # the newest bucket's (1-255, cycling)

    def __len__(self):
        return sum(bucket.count for bucket in self.buckets)

    def get(self, cookie):
        h = hash(cookie)
        marked = self.newest[h & _NEWEST_MASK]
        if marked == 0:
            return None
        buckets = self.buckets
        # How many buckets back the newest reply with these hash bits went
        # (never more than it really is, serials cycling mod 255): none newer
        # holds the cookie, and if that bucket is gone, no bucket does.
        back = (self.serial - marked) % 255
        if back >= len(buckets):
            return None
        for index in range(len(buckets) - 1 - back, -1, -1):
            bucket = buckets[index]
            if bucket.refs[h & bucket.mask] == 0:
                continue                # its home slot is empty: not in this bucket
            found = bucket.find(cookie, h)
            if found is not None:
                return found
        return None

    def put(self, cookie, data, now):
        buckets = self.buckets
        bucket = buckets[-1] if buckets else None
        if (bucket is None or now - bucket.started >= BUCKET_SECONDS
                or bucket.nbytes * BUCKET_SHARE >= self.max_bytes):
            bucket = _Bucket(now)
            buckets.append(bucket)
            self.size += bucket.nbytes
            self.serial = self.serial % 255 + 1
        h = hash(cookie)
        self.size += bucket.add(cookie, h, data)
        self.newest[h & _NEWEST_MASK] = self.serial
        bucket.until = now + self.lifetime
        while self.size > self.max_bytes and len(buckets) > 1:
            dropped = buckets.pop(0)
            self.size -= dropped.size()
            self.evicted += dropped.count

    def sweep(self, now):
        """Forget the buckets whose newest reply is older than the lifetime
        (run every SWEEP_INTERVAL), and give their memory back."""
        buckets = self.buckets
        dropped = 0
        while buckets and buckets[0].until <= now:
            self.size -= buckets.pop(0).size()
            dropped += 1
        if dropped and _TRIM is not None:
            _TRIM(0)
            self.trimmed += 1
