"""throttle.LogThrottle with a fake clock."""

import logging

from rtpproxy_py.throttle import LogThrottle


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_one_line_per_interval_per_kind_with_the_held_back_count(caplog):
    clock = Clock()
    log = logging.getLogger("throttle-test")
    throttle = LogThrottle(log, interval=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="throttle-test"):
        assert throttle.log(logging.ERROR, "ports", "range %s full", "a-b")
        for _ in range(5):
            assert not throttle.log(logging.ERROR, "ports", "range %s full", "a-b")
        assert throttle.log(logging.ERROR, "fds", "no fds")      # another kind is not held
        clock.now += 10
        assert throttle.log(logging.ERROR, "ports", "range %s full", "a-b")
    assert [r.getMessage() for r in caplog.records] == [
        "range a-b full", "no fds", "range a-b full (5 more like this in the last 10 s)"]
