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


def test_shared_table_keeps_sequential_order_across_workers():
    from rtpproxy_py.ports import SharedPortTable
    table = SharedPortTable(100, 106)
    one = PortAllocator(100, 106, sequential=True, shared=table, owner=1)
    two = PortAllocator(100, 106, sequential=True, shared=table, owner=2)
    for allocator, expected in ((one, 100), (two, 102), (one, 104)):
        port = next(allocator.candidates())
        assert port == expected
        allocator.taken(port)
    assert (table.owner(100), table.owner(102), table.owner(104), table.owner(106)) == (1, 2, 1, 0)
    assert one.free == two.free == 1
    two.released(102)
    one.released(102)           # not its port: the owner's mark stays as it is
    assert table.owner(102) == 0
    assert next(two.candidates()) == 106
    two.taken(106)
    assert next(two.candidates()) == 102      # wraps around, skipping worker 1's ports
    assert list(one.candidates()) == [102]


def test_shared_table_random_order_skips_other_workers_ports():
    from rtpproxy_py.ports import SharedPortTable
    table = SharedPortTable(2000, 2098)
    one = PortAllocator(2000, 2098, shared=table, owner=1, rng=random.Random(1))
    two = PortAllocator(2000, 2098, shared=table, owner=2, rng=random.Random(2))
    held = set()
    for n in range(50):
        allocator = (one, two)[n % 2]
        port = next(allocator.candidates())
        assert port not in held
        held.add(port)
        allocator.taken(port)
    assert list(one.candidates()) == [] and one.free == 0


def test_a_dead_workers_ports_are_released_and_the_table_is_shared_memory():
    import os
    from rtpproxy_py.ports import SharedPortTable
    table = SharedPortTable(100, 110)
    table.claim(100, 3)
    table.claim(104, 3)
    table.claim(102, 1)
    table.cursor = 2
    other = SharedPortTable(100, 110, fd=os.dup(table.fd))    # what a worker process maps
    assert (other.owner(100), other.owner(102), other.cursor) == (3, 1, 2)
    other.release_all(3)
    assert (table.owner(100), table.owner(102), table.owner(104)) == (0, 1, 0)
    assert table.held() == 1
