"""Stream forking: the ``C CALLID FROMTAG TOTAG`` sub-command of a U that has
both tags (capability 20260309, control-protocol.md 6.2).

``U cid2 ... f2 t2 && C cid1 f1 t1`` forks both streams of session cid1 into
session cid2: from then on, every packet cid1 accepts from one of its parties
is also sent by cid2, as if cid2 had received it on the same side. So each
party of cid2 receives what the matching party of cid1 receives: cid2's
callee side (its stream 0, the L address) gets what cid1's caller says, its
caller side (the U address) what cid1's callee says. When the C names cid1's
tags the other way round (T F), the sides swap, as for every other command.
RTP and RTCP are both forked. A recording server (SIPREC) is the usual user.

Packets go out of cid2's own sockets, to cid2's current remote addresses
(nothing while that party is unknown or a prompt plays to it). The fork ends
with either session. Both sessions live in one process: with --workers, a C
naming a Call-ID held by another worker finds no session and fails (-1).
"""

from typing import Dict, List


class Fork:
    """The taps one ``C`` sub-command put on the source session's streams."""

    __slots__ = ("source", "into", "taps")

    def __init__(self, source, into):
        self.source = source
        self.into = into
        self.taps = []          # [(source stream, tap)]

    def close(self):
        for stream, tap in self.taps:
            stream.remove_tap(tap)
        self.taps = []


def _sender(out, send_from):
    """A tap that sends each packet out of stream ``out``'s socket to its
    party (``send_from``: the relay's, which owns the sockets)."""

    def fork_tap(stream, data, source, now):
        target = out.target
        if target is not None:
            send_from(out, data, target)
    return fork_tap


class Forks:
    def __init__(self):
        self.by_session: Dict[object, List[Fork]] = {}   # both ends of every fork

    def fork(self, source, direction, into, send_from):
        """Fork ``source`` (matched with ``direction``, section 5.1) into ``into``.
        A second C between the same two sessions replaces the first.
        ``send_from(stream, data, address)`` sends from a stream's socket
        (MediaPort.send_from)."""
        for old in list(self.by_session.get(into, ())):
            if old.source is source and old.into is into:
                self._end(old)
        fork = Fork(source, into)
        for k in (0, 1):
            side = k ^ direction      # into's stream that plays the part of source's stream k
            for streams_from, streams_into in ((source.rtp, into.rtp), (source.rtcp, into.rtcp)):
                tap = _sender(streams_into[side].peer, send_from)
                streams_from[k].add_tap(tap)
                fork.taps.append((streams_from[k], tap))
        for session in (source, into):
            self.by_session.setdefault(session, []).append(fork)

    def session_ended(self, session):
        for fork in list(self.by_session.get(session, ())):
            self._end(fork)

    def _end(self, fork):
        fork.close()
        for session in (fork.source, fork.into):
            forks = self.by_session.get(session)
            if forks is not None and fork in forks:
                forks.remove(fork)
                if not forks:
                    del self.by_session[session]
