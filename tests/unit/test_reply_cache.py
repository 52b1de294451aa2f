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
    assert 200 < len(cache) < 400                 # each entry ~330 bytes with its overhead
    assert cache.get(b"flood09999" + b"x" * 200) == b"E5\n"     # the newest are kept
    assert cache.get(b"flood00000" + b"x" * 200) is None
    assert cache.evicted == 10000 - len(cache)
    cache.sweep(35.0)
    assert len(cache) == 0 and cache.size == 0
