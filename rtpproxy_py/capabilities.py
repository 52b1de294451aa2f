"""Protocol capability dates (control-protocol.md 5.3): what VF answers 1 to
and what -v lists. A date is listed here only once the feature works."""

BASE_VERSION = "20040107"

# (date, description) of every extension this daemon really implements,
# in upstream's table order.
EXTENSIONS = (
    ("20050322", "Support for multiple RTP streams and MOH"),   # MOH: P/S playback
    ("20060704", "Support for extra parameter in the V command"),
    ("20071116", "Support for RTP re-packetization"),
    ("20071218", "Support for forking (copying) RTP stream"),
    ("20080403", "Support for RTP statistics querying"),
    ("20081102", "Support for setting codecs in the update/lookup command"),
    ("20081224", "Support for session timeouts notification"),
    ("20090810", "Support for automatic bridging"),
    ("20140323", "Support for tracking/reporting load"),
    # -W: the setup TTL runs until the session is connected (its second leg
    # allocated); from then on -T (control-protocol.md section 8)
    ("20140617", "Support for anchoring session connect time"),
    ("20141004", "Support for extendable performance counters"),
    ("20150330", "Support for allocating a new port (\"Un\"/\"Ln\")"),
    ("20150420", "Support for SEQ tracking and new rtpa_ counters; Q handler takes extra args"),
    ("20150617", "Support for the wildcard %%CC_SELF%% as a disconnect notify target"),
    ("20191015", "Support for the && sub-command specifier"),
    ("20200226", "Support for the N command (stop recording)"),
    ("20230205", "Support for the rtpa_nlost counter"),
    ("20230314", "Support for D as a sub-command (\"fusing\")"),
    ("20230424", "Support for longest_ipi, rtpa_jlast, rtpa_jmax and rtpa_javg counters"),
    ("20250523", "Support for the P modifier in the C command (reply with the copy's port)"),
    ("20251015", "Support for changing TTL and TOS of the stream with the S sub-command"),
    ("20260306", "Support for address labels in the Ul/Ll commands"),
    ("20260308", "Support for single-shot dual-leg setup with U && L"),
    ("20260309", "Support for forking both streams of a session with the C sub-command"),
)

_NOTIFY = "20081224"
# The dates whose counters need RTP analysis (off with --no_rtp_analysis).
_ANALYSIS = ("20150420", "20230205", "20230424")


def supported(datestamp: str, notify_configured: bool, analysis: bool = True) -> bool:
    """VF: is this capability date supported?"""
    if datestamp == BASE_VERSION:
        return True
    if datestamp == _NOTIFY and not notify_configured:
        return False
    if datestamp in _ANALYSIS and not analysis:
        return False
    return any(date == datestamp for date, _ in EXTENSIONS)


def listing() -> str:
    """The -v text."""
    lines = ["Basic version: %s" % BASE_VERSION]
    lines += ["Extension %s: %s" % (date, text) for date, text in EXTENSIONS]
    return "\n".join(lines) + "\n"
