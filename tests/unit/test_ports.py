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


def test_each_address_family_has_its_own_table():
    import socket
    from rtpproxy_py.ports import FamilyPorts
    ports = FamilyPorts(12000, 12006, sequential=True)
    v4, v6 = ports.table(socket.AF_INET), ports.table(socket.AF_INET6)
    for table in (v4, v6, v4, v6):
        table.taken(next(table.candidates()))
    assert sorted(v4.in_use) == sorted(v6.in_use) == [12000, 12002]
    assert len(ports.in_use) == 4 and ports.free == 4
    ports.released(12000, socket.AF_INET6)
    assert sorted(v4.in_use) == [12000, 12002] and sorted(v6.in_use) == [12002]


def test_shared_table_has_a_part_per_family_across_workers():
    import os
    import socket
    from rtpproxy_py.ports import FamilyPorts, SharedPortTable
    table = SharedPortTable(12000, 12006)
    worker = SharedPortTable(12000, 12006, fd=os.dup(table.fd))     # another process's map
    one = FamilyPorts(12000, 12006, sequential=True, shared=table, owner=1)
    two = FamilyPorts(12000, 12006, sequential=True, shared=worker, owner=2)
    for ports, family, expected in ((one, socket.AF_INET, 12000), (two, socket.AF_INET6, 12000),
                                    (two, socket.AF_INET, 12002), (one, socket.AF_INET6, 12002)):
        allocator = ports.table(family)
        port = next(allocator.candidates())
        assert port == expected
        allocator.taken(port)
    assert table.family(socket.AF_INET).owner(12000) == 1
    assert table.family(socket.AF_INET6).owner(12000) == 2
    table.release_all(2)
    assert table.family(socket.AF_INET6).owner(12000) == 0 and table.family(socket.AF_INET).owner(12002) == 0
    assert table.held() == 2
