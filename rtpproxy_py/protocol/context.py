"""What the control transports hand the command executor, and what they
report back: below both control/transports.py and dispatcher.py, so neither
reaches into the other (issue 17)."""

from dataclasses import dataclass
from typing import Optional, Protocol


@dataclass
class CommandContext:
    """Where a command came from (for %%CC_SELF%% notification targets)."""

    source_ip: str = "127.0.0.1"
    local_ip: Optional[str] = None
    # monotonic time after which the client has retried: the command may then
    # be shed unanswered (--workers; 0: a stream client, always answered)
    deadline: float = 0.0


class CommandTally(Protocol):
    """What a transport counts about the commands it serves (G ncmds_repld,
    ncmds_rcvd_ndups, ncmds_shed); stats.Counters is one."""

    def replied(self) -> None:
        """A reply was sent."""

    def repeated(self) -> None:
        """A retransmitted command was answered from the reply cache."""

    def shed(self, count: int = 1) -> None:
        """``count`` commands were dropped unanswered (overload)."""
