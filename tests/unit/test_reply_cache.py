import tracemalloc

from rtpproxy_py.control.reply_cache import ReplyCache


def test_entries_live_until_swept_after_lifetime():
    cache = ReplyCache(lifetime=35)
    cache.put(b"c1", b"c1 0\n", 0.0)
    cache.put(b"c2", b"c2 0\n", 10.0)
    cache.sweep(34.9)
    assert cache.get(b"c1") == b"c1 0\n"
    cache.sweep(35.0)
    assert cache.get(b"c1") is None and cache.get(b"c2") == b"c2 0\n"
    cache.sweep(45.0)
    assert len(cache) == 0


def test_a_flood_of_new_cookies_is_bounded_in_bytes():
    cache = ReplyCache(lifetime=35, max_bytes=100000)
    for n in range(10000):
        cache.put(b"flood%05d" % n + b"x" * 200, b"E5\n", 0.0)
    assert cache.size <= 100000
    assert 250 < len(cache) < 450                 # each entry ~240 bytes with its overhead
    assert cache.get(b"flood09999" + b"x" * 200) == b"E5\n"     # the newest are kept
    assert cache.get(b"flood00000" + b"x" * 200) is None
    assert cache.evicted == 10000 - len(cache)
    cache.sweep(35.0)
    assert len(cache) == 0 and cache.size == 0


def _traced(build):
    """Bytes that ``build()``'s result holds, by tracemalloc."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        return kept, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_the_memory_bound_counts_what_entries_really_cost():
    """Many small replies (a busy proxy: short cookies, short replies) stay
    within the bound as Python really allocates them, not only as counted."""
    bound = 2 * 1024 * 1024

    def fill():
        cache = ReplyCache(lifetime=35, max_bytes=bound)
        for n in range(60000):
            cache.put(b"%d_1" % (4000000 + n), b"%d_1 30012 127.0.0.1\n" % (4000000 + n), n / 10000.0)
        return cache
    cache, held = _traced(fill)
    assert cache.evicted > 0
    assert held <= bound * 1.15, (held, len(cache))


def test_memory_comes_back_once_replies_expire():
    """After a busy spell every reply expires and the sweep gives the dict's
    table back: what the cache holds then is back to almost nothing."""
    def fill_and_sweep():
        cache = ReplyCache(lifetime=35)
        for n in range(100000):
            cache.put(b"%d_1" % n, b"%d_1 30012 127.0.0.1\n" % n, n / 10000.0)
        cache.sweep(10 + 35.0 + 1)
        return cache
    cache, held = _traced(fill_and_sweep)
    assert len(cache) == 0 and cache.size == 0
    assert held < 256 * 1024, held      # (the interpreter keeps up to 2000 spare tuples: ~110 KiB)


def test_retransmissions_find_their_reply_in_any_bucket():
    """Replies put over 40 s (a bucket every few seconds): each cookie finds
    its own reply until it expires, the newest one when a cookie was reused."""
    cache = ReplyCache(lifetime=35)
    for n in range(4000):
        cache.put(b"c%d" % n, b"c%d %d\n" % (n, n), n / 100.0)
    cache.put(b"c3999", b"c3999 again\n", 40.0)
    cache.sweep(40.0)
    assert cache.get(b"c3999") == b"c3999 again\n"
    assert all(cache.get(b"c%d" % n) == b"c%d %d\n" % (n, n) for n in range(600, 3999))
    assert cache.get(b"c0") is None and cache.get(b"nope") is None
    cache.sweep(80.0)
    assert len(cache) == 0 and cache.get(b"c3999") is None
