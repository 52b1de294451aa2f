"""acct_csv (modules.md 4): one CSV line per session, written when the
session ends (D, X, time-out, shutdown), to ``rtpproxy_acct.csv`` in the
directory rtpproxy started in.

Lines are single ``write``s to a file opened with O_APPEND, so several
processes (--workers, or several daemons) can share the file without lines
mixing; the header is written under an fcntl lock when the file is empty.
Before each line the path is checked: a file renamed away (log rotation) is
followed by a new one, with a header.
"""

import fcntl
import logging
import os
import socket
import time

from . import Module, ModuleStartError

log = logging.getLogger("rtpproxy")

FILE_NAME = "rtpproxy_acct.csv"
RECORD_VERSION = "1.2"
HEADER = (
    "rec_ver,rtpp_node_id,rtpp_pid,sess_uid,call_id,from_tag,setup_ts,teardown_ts,"
    "first_rtp_ts_ino,last_rtp_ts_ino,first_rtp_ts_ina,last_rtp_ts_ina,rtp_npkts_ina,"
    "rtp_npkts_ino,rtp_nrelayed,rtp_ndropped,rtcp_npkts_ina,rtcp_npkts_ino,"
    "rtcp_nrelayed,rtcp_ndropped,rtpa_nsent_ino,rtpa_nrcvd_ino,rtpa_ndups_ino,"
    "rtpa_nlost_ino,rtpa_perrs_ino,rtpa_ssrc_last_ino,rtpa_ssrc_cnt_ino,"
    "rtpa_pt_last_ino,rtpa_nsent_ina,rtpa_nrcvd_ina,rtpa_ndups_ina,rtpa_nlost_ina,"
    "rtpa_perrs_ina,rtpa_ssrc_last_ina,rtpa_ssrc_cnt_ina,rtpa_pt_last_ina,"
    "rtpa_jitter_last_ino,rtpa_jitter_max_ino,rtpa_jitter_avg_ino,"
    "rtpa_jitter_last_ina,rtpa_jitter_max_ina,rtpa_jitter_avg_ina,"
    "rtpp_rtp_rmt_ip_o,rtpp_rtp_rmt_pt_o,rtpp_rtp_rmt_ip_a,rtpp_rtp_rmt_pt_a,"
    "rtpp_rtcp_rmt_ip_o,rtpp_rtcp_rmt_pt_o,rtpp_rtcp_rmt_ip_a,rtpp_rtcp_rmt_pt_a,"
    "rtpp_hld_sts_o,rtpp_hld_sts_a,rtpp_hld_cnt_o,rtpp_hld_cnt_a\n").encode()
HOSTNAME_REFRESH = 1.0


class _Record:
    """What the line needs that the session does not keep."""

    __slots__ = ("uid", "setup_ts", "first_rx", "first_pt")

    def __init__(self, uid, setup_ts):
        self.uid = uid
        self.setup_ts = setup_ts
        self.first_rx = [None, None]     # dispatcher-clock time of stream k's first RTP packet
        self.first_pt = [-1, -1]


class AcctCsv(Module):
    name = "acct_csv"
    module_id = 1

    def __init__(self, spec, host):
        super().__init__(spec, host)
        self.path = os.path.join(spec.workdir, FILE_NAME)
        self.fd = None
        self.identity = None
        self.records = {}              # Session -> _Record
        self.next_uid = 0
        self._hostname = (None, 0.0)

    # --- the file -------------------------------------------------------------

    def start(self):
        try:
            self._open()
        except OSError as exc:
            text = "%s (%d)" % (exc.strerror, exc.errno)
            log.error("can't open '%s' for writing: %s", FILE_NAME, text)
            log.error("module 'acct_csv' failed to initialize")
            raise ModuleStartError(text) from None

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                st = os.fstat(fd)
                if st.st_size == 0:
                    os.write(fd, HEADER)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
        except OSError:
            os.close(fd)
            raise
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.identity = fd, (st.st_dev, st.st_ino)

    def _write(self, line: bytes):
        try:
            st = os.stat(self.path)
            current = (st.st_dev, st.st_ino)
        except OSError:
            current = None
        try:
            if current != self.identity:
                self._open()            # rotated or removed: a new file, with a header
            os.write(self.fd, line)
        except OSError as exc:
            log.error("acct_csv: cannot write to %s: %s", self.path, exc.strerror)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # --- sessions ---------------------------------------------------------------

    def session_created(self, session, now):
        record = self.records[session] = _Record(self.next_uid, self.host.wall(now))
        self.next_uid += 1
        for stream in session.rtp:
            stream.add_tap(_first_packet_tap(record, stream.index))

    def session_ended(self, session, now):
        record = self.records.pop(session, None)
        if record is None:
            return
        self._write(self.line(session, record, self.host.wall(now)))

    def hostname(self):
        name, checked = self._hostname
        now = time.monotonic()
        if name is None or now - checked >= HOSTNAME_REFRESH:
            try:
                name = socket.gethostname() or "UNKNOWN"
            except OSError:
                name = "UNKNOWN"
            self._hostname = (name, now)
        return name

    def line(self, session, record, teardown_ts) -> bytes:
        rtp, rtcp = session.rtp, session.rtcp
        # one clock offset for the whole line: two wall() calls may read the
        # clocks a microsecond apart and put a first packet after the last
        offset = self.host.wall(0.0)
        fields = [RECORD_VERSION, self.hostname(), "%d" % os.getpid(), "%d" % record.uid,
                  session.call_id, session.from_tag, "%f" % record.setup_ts, "%f" % teardown_ts]
        for k in (0, 1):
            first = record.first_rx[k]
            last = rtp[k].last_rx if first is not None else None
            fields += ["%f" % (first + offset if first is not None else 0.0),
                       "%f" % (last + offset if last is not None else 0.0)]
        fields += ["%d" % n for n in (
            rtp[1].npkts_in, rtp[0].npkts_in, rtp[0].nrelayed + rtp[1].nrelayed,
            rtp[0].ndropped + rtp[1].ndropped,
            rtcp[1].npkts_in, rtcp[0].npkts_in, rtcp[0].nrelayed + rtcp[1].nrelayed,
            rtcp[0].ndropped + rtcp[1].ndropped)]
        jitter = []
        for k in (0, 1):
            counts, more = _analysis(rtp[k].analyzer, record.first_pt[k])
            fields += counts
            jitter += more
        fields += jitter
        for stream in (rtp[0], rtp[1], rtcp[0], rtcp[1]):
            fields += _address(stream.rem_addr)
        fields += ["t" if rtp[0].on_hold else "f", "t" if rtp[1].on_hold else "f",
                   "%d" % rtp[0].hold_count, "%d" % rtp[1].hold_count]
        return b",".join(f if isinstance(f, bytes) else f.encode("utf-8", "surrogateescape")
                         for f in fields) + b"\n"


def _first_packet_tap(record, index):
    """Notes the stream's first RTP packet, then takes itself off the stream."""
    def tap(stream, data, source, now):
        record.first_rx[index] = now
        if len(data) >= 2:
            record.first_pt[index] = data[1] & 0x7F
        stream.remove_tap(tap)
    return tap


def _analysis(analyzer, fallback_pt):
    """([nsent, nrcvd, ndups, nlost, perrs, ssrc_last, ssrc_cnt, pt_last], [jitter last, max, avg]).

    pt_last: the analyzer keeps no payload type, but its fast path predicts
    the next header (the last packet's PT) while the stream runs regularly;
    otherwise the stream's first PT stands in."""
    if analyzer is None:
        return ["0", "0", "0", "0", "0", "", "0", "-1"], ["%f" % 0.0] * 3     # analysis off
    nsent, nrcvd, ndups = analyzer.sequence_totals()
    ssrc = analyzer.seg_ssrc
    pt = fallback_pt
    expect = analyzer.run.expect
    if expect >= 0:
        pt = (expect >> 80) & 0x7F          # the header the fast path expects next
    counts = ["%d" % n for n in (nsent, nrcvd, ndups, max(0, nsent - nrcvd), analyzer.perrs)]
    counts += ["" if ssrc is None else "0x%08X" % ssrc, "%d" % analyzer.ssrc_changes, "%d" % pt]
    jitter = ["%f" % v for v in (analyzer.rtpa_jlast, analyzer.rtpa_jmax, analyzer.rtpa_javg)]
    return counts, jitter


def _address(address):
    if address is None:
        return ["", ""]
    host = address[0]
    return ["[%s]" % host if ":" in host else host, "%d" % address[1]]


