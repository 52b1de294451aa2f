"""Global counters for G and I (control-protocol.md 5.15, 5.17).

Packet counters are not touched per packet: they are the sum over live
streams plus what destroyed sessions left behind, computed when asked.
"""

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
FLOAT_COUNTERS = ("total_duration", "pps_in")

# Per-stream packet counters that are summed into the global ones.
_STREAM_SUMS = (("npkts_rcvd", "npkts_in"), ("npkts_relayed", "nrelayed"),
                ("npkts_discard", "nignored"))
# Per-session counters (prompt playback) summed the same way.
_SESSION_SUMS = ("npkts_played", "nplrs_destroyed")


class Counters:
    def __init__(self):
        for name in COUNTER_NAMES:
            setattr(self, name, 0.0 if name in FLOAT_COUNTERS else 0)
        # packet totals of sessions already destroyed
        self.done = {name: 0 for name, _ in _STREAM_SUMS}
        self.done.update({name: 0 for name in _SESSION_SUMS})
        self._pps_mark = None      # (time, npkts_rcvd) at the last pps sample

    def session_destroyed(self, session, now, timed_out):
        self.nsess_destroyed += 1
        if timed_out:
            self.nsess_timeout += 1
        self.total_duration += session.duration(now)
        if session.complete:
            rtp_dirs = sum(1 for s in session.rtp if s.npkts_in)
            rtcp_dirs = sum(1 for s in session.rtcp if s.npkts_in)
            self.nsess_nortp += rtp_dirs == 0
            self.nsess_owrtp += rtp_dirs == 1
            self.nsess_nortcp += rtcp_dirs == 0
            self.nsess_owrtcp += rtcp_dirs == 1
        for total, attr in _STREAM_SUMS:
            self.done[total] += sum(getattr(s, attr) for s in session.streams())
        for name in _SESSION_SUMS:
            self.done[name] += getattr(session, name)

    def packet_totals(self, sessions):
        totals = dict(self.done)
        for session in sessions:
            for name in _SESSION_SUMS:
                totals[name] += getattr(session, name)
            for stream in session.streams():
                for total, attr in _STREAM_SUMS:
                    totals[total] += getattr(stream, attr)
        return totals

    def sample_pps(self, sessions, now):
        """Called once a second: recompute pps_in."""
        received = self.packet_totals(sessions)["npkts_rcvd"]
        if self._pps_mark is not None:
            then, before = self._pps_mark
            if now > then:
                self.pps_in = (received - before) / (now - then)
        self._pps_mark = (now, received)

    def values(self, sessions):
        """All G counters by name, with packet totals filled in."""
        out = {name: getattr(self, name) for name in COUNTER_NAMES}
        out.update(self.packet_totals(sessions))
        return out


def format_counter(name, value):
    if name in FLOAT_COUNTERS:
        return "%f" % value
    return "%d" % value
