"""Small questions to the kernel's network stack, shared by the relay and
the --workers front end (which has no relay)."""

import socket
from typing import Optional


def route_source(host: str, family: int) -> Optional[str]:
    """The local address the kernel would use to reach ``host``, or None."""
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect((host, 9))
        return probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
