"""Log lines that an attacker or an overload could repeat thousands of times
a second (ports exhausted, file descriptors gone) are written at most once per
interval per kind, with a count of the ones held back."""

import logging
import time
from typing import Any, Callable, Dict

INTERVAL = 10.0


class LogThrottle:
    def __init__(self, logger: logging.Logger, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._next: Dict[str, float] = {}       # kind -> time the next line of that kind may be written
        self._held: Dict[str, int] = {}         # kind -> lines held back since the last one written

    def log(self, level: int, kind: str, message: str, *args: Any) -> bool:
        """Log ``message % args`` unless a line of ``kind`` went out less than
        ``interval`` seconds ago. Returns whether it was written."""
        now = self.clock()
        if now < self._next.get(kind, now):
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        if held:
            message += " (%d more like this in the last %d s)" % (held, self.interval)
        self.logger.log(level, message, *args)
        self._next[kind] = now + self.interval
        return True
