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
