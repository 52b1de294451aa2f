import random

from rtpproxy_py.ports import PortAllocator


def test_sequential_is_cyclic_not_lowest_free():
    a = PortAllocator(100, 106, sequential=True)
    assert a.ports == [100, 102, 104, 106]
    first = next(a.candidates())
    a.taken(first)
    assert first == 100
    second = next(a.candidates())
    a.taken(second)
    a.released(first)
    assert next(a.candidates()) == 104      # continues after the last one
    a.taken(104)
    a.taken(106)
    assert next(a.candidates()) == 100      # wraps around


def test_random_order_covers_range_once():
    a = PortAllocator(2000, 2998, rng=random.Random(1))
    seen = set()
    for _ in range(len(a)):
        port = next(a.candidates())
        assert port not in seen and port % 2 == 0
        seen.add(port)
        a.taken(port)
    assert list(a.candidates()) == []
    assert a.free == 0
