"""Global counters for G and I (control-protocol.md 5.15, 5.17).

The packet counters (received, relayed, discarded, played, players ended)
are running totals kept by the streams themselves (session.RunningTotals,
one per session table), so ``G`` and ``I`` cost the same at any session
count. The RTP analysis totals (``rtpa_*``), the re-packetizer counters and
the byte counts the metrics endpoint shows are still the sum over live
streams plus what destroyed sessions left behind: they are computed only
when a ``G`` names one of them (or the metrics endpoint is scraped).
"""

import math

# G counter names in upstream's order; the value is how to print it.
COUNTER_NAMES = (
    "nsess_created", "nsess_destroyed", "nsess_timeout", "nsess_complete",
    "nsess_nortp", "nsess_owrtp", "nsess_nortcp", "nsess_owrtcp",
    "nplrs_created", "nplrs_destroyed",
    "npkts_rcvd", "npkts_played", "npkts_relayed",
    "npkts_resizer_in", "npkts_resizer_out", "npkts_resizer_discard",
    "npkts_discard", "total_duration",
    "ncmds_rcvd", "ncmds_rcvd_ndups", "ncmds_succd", "ncmds_errs", "ncmds_repld",
    "rtpa_nsent", "rtpa_nrcvd", "rtpa_ndups", "rtpa_nlost", "rtpa_perrs",
    "pps_in",
)
# Not upstream's, known to G all the same: commands dropped unanswered under
# overload (README "Hardening").
EXTRA_COUNTER_NAMES = ("ncmds_shed",)
ALL_COUNTER_NAMES = COUNTER_NAMES + EXTRA_COUNTER_NAMES
FLOAT_COUNTERS = ("total_duration", "pps_in")

# The running totals (session.RunningTotals) and what G and I call them.
PACKET_TOTALS = ("npkts_rcvd", "npkts_relayed", "npkts_discard", "npkts_dropped",
                 "npkts_played", "nplrs_destroyed")
# RTP analysis (per RTP stream analyzer) and re-packetizer counters.
_ANALYZER_SUMS = ("rtpa_nsent", "rtpa_nrcvd", "rtpa_ndups", "rtpa_nlost", "rtpa_perrs")
_RESIZER_SUMS = (("npkts_resizer_in", "n_in"), ("npkts_resizer_out", "n_out"),
                 ("npkts_resizer_discard", "n_discard"))
MEDIA_TOTALS = frozenset(_ANALYZER_SUMS + tuple(n for n, _ in _RESIZER_SUMS))
# Not G counters: bytes (RTP and RTCP), for the metrics endpoint.
BYTE_TOTALS = ("bytes_relayed", "bytes_dropped")
# I's "average load" is the daemon's CPU use (fraction of one core), smoothed
# over about this many seconds.
LOAD_WINDOW = 10.0


class Counters:
    def __init__(self):
        for name in ALL_COUNTER_NAMES:
            setattr(self, name, 0.0 if name in FLOAT_COUNTERS else 0)
        # media totals of sessions already destroyed
        self.done = {name: 0 for name in _ANALYZER_SUMS}
        self.done.update({name: 0 for name, _ in _RESIZER_SUMS})
        self.done.update({name: 0 for name in BYTE_TOTALS})
        self._pps_mark = None      # (time, npkts_rcvd) at the last pps sample
        self.average_load = 0.0
        self._load_mark = None     # (time, CPU seconds) at the last load sample

    # protocol.context.CommandTally: what the control transports count
    def replied(self):
        self.ncmds_repld += 1

    def repeated(self):
        self.ncmds_rcvd_ndups += 1

    def shed(self, count=1):
        self.ncmds_shed += count

    def session_destroyed(self, session, now, timed_out):
        self.nsess_destroyed += 1
        if timed_out:
            self.nsess_timeout += 1
        self.total_duration += session.duration(now)
        rtp = session.rtp
        if session.complete:
            rtcp = session.rtcp
            rtp_dirs = (1 if rtp[0].npkts_in else 0) + (1 if rtp[1].npkts_in else 0)
            rtcp_dirs = (1 if rtcp[0].npkts_in else 0) + (1 if rtcp[1].npkts_in else 0)
            self.nsess_nortp += rtp_dirs == 0
            self.nsess_owrtp += rtp_dirs == 1
            self.nsess_nortcp += rtcp_dirs == 0
            self.nsess_owrtcp += rtcp_dirs == 1
        for stream in rtp:
            resizer = stream.resizer
            if resizer is not None:
                self.resizer_done(resizer)
                stream.resizer = None
        _add_media(self.done, session)

    def resizer_done(self, resizer):
        """A resizer is removed: its queue is discarded and its counts kept."""
        resizer.discard()
        for total, attr in _RESIZER_SUMS:
            self.done[total] += getattr(resizer, attr)

    @staticmethod
    def packet_totals(table):
        """The packet counters of ``table`` (a session.SessionTable), live and
        past sessions: read from its running totals, whatever its size."""
        t = table.totals
        return {"npkts_rcvd": t.npkts_rcvd, "npkts_relayed": t.npkts_rcvd - t.npkts_dropped,
                "npkts_discard": t.npkts_discard, "npkts_dropped": t.npkts_dropped,
                "npkts_played": t.npkts_played, "nplrs_destroyed": t.nplrs_destroyed}

    def sample_pps(self, table, now):
        """Called once a second: recompute pps_in."""
        received = table.totals.npkts_rcvd
        if self._pps_mark is not None:
            then, before = self._pps_mark
            if now > then:
                self.pps_in = (received - before) / (now - then)
        self._pps_mark = (now, received)

    def sample_load(self, cpu_seconds, now):
        """Called once a second with the process's CPU time: recompute the load."""
        if self._load_mark is not None:
            then, before = self._load_mark
            if now > then:
                busy = (cpu_seconds - before) / (now - then)
                weight = 1.0 - math.exp(-(now - then) / LOAD_WINDOW)
                self.average_load += weight * (busy - self.average_load)
        self._load_mark = (now, cpu_seconds)

    def media_totals(self, sessions):
        """RTP analysis, re-packetizer and byte totals, live and past sessions."""
        totals = {name: self.done[name] for name in
                  _ANALYZER_SUMS + tuple(n for n, _ in _RESIZER_SUMS) + BYTE_TOTALS}
        for session in sessions:
            _add_media(totals, session)
            for stream in session.rtp:
                if stream.resizer is not None:
                    for total, attr in _RESIZER_SUMS:
                        totals[total] += getattr(stream.resizer, attr)
        return totals

    def values(self, table, names=None):
        """G counters by name (all, or at least ``names``), packet totals
        filled in. The media totals walk the live streams: only when asked."""
        out = {name: getattr(self, name) for name in ALL_COUNTER_NAMES}
        out.update((name, value) for name, value in self.packet_totals(table).items()
                   if name in out)
        if names is None or not MEDIA_TOTALS.isdisjoint(names):
            out.update((name, value) for name, value in self.media_totals(table).items()
                       if name in out)
        return out


def _add_media(totals, session):
    """Add a session's RTP analysis sums and byte counts to ``totals``."""
    for stream in session.rtp:
        analyzer = stream.started_analyzer      # (none yet: nothing to add)
        if analyzer is not None:
            sent, rcvd, dups = analyzer.sequence_totals()
            totals["rtpa_nsent"] += sent
            totals["rtpa_nrcvd"] += rcvd
            totals["rtpa_ndups"] += dups
            totals["rtpa_nlost"] += max(0, sent - rcvd)
            totals["rtpa_perrs"] += analyzer.perrs
    relayed = dropped = 0
    for stream in session.streams():
        # nbytes_in is only counted with --metrics (session.count_bytes)
        unsent = stream.nbytes_unsent
        relayed += stream.nbytes_in - unsent
        dropped += stream.nbytes_ignored + unsent
    totals["bytes_relayed"] += relayed
    totals["bytes_dropped"] += dropped


def format_counter(name, value):
    if name in FLOAT_COUNTERS:
        return "%f" % value
    return "%d" % value
