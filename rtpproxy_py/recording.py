"""Recordings and stream copies of sessions: R, C, N and -a, -r, -S, -P, -R.

File names, layouts and which packets are written follow
recording-formats.md. How the work is split so that the relay never waits on
the disk:

* packet path: a Stream tap appends the packet to its file's batch (one
  tuple; media/recorder.py ``make_tap``), or for ``C udp:`` sends a copy;
* flusher greenlet: every FLUSH_INTERVAL it encodes each file's batch and
  queues the bytes;
* writer thread: does every write, close and spool-to-final rename, in order.
  A file is therefore at most about FLUSH_INTERVAL behind the call, and
  always a whole number of records.

Opening a file happens in the command that asks for it, so that a missing or
unwritable directory is answered at once (R: E50, C: E65, as upstream).
"""

import logging
import os
import queue
import threading
import time

import gevent

from .media.feature import Tap
from .media.recorder import AdhocFormat, PcapFormat, RecordingFile, make_tap
from .ports import PortsExhausted
from .protocol.parse import raw

log = logging.getLogger("rtpproxy")

FLUSH_INTERVAL = 0.2
FLUSH_SLICE = 0.0005        # at most this much encoding between two looks at the sockets
MAX_YIELD = 0.02            # ... and at most this long a wait for the loop to be idle
DIRECTION_SUFFIX = (".a", ".o")    # leg 0 receives the callee ("answer"), leg 1 the caller


class CopyFailed(Exception):
    """A C command could not start; the message says why (for the log)."""


class DiskWriter:
    """One thread that runs file jobs (write, finish) in submission order."""

    def __init__(self):
        self.jobs = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self.thread.start()

    def submit(self, job, *args):
        self.jobs.put((job, args))

    def _run(self):
        while True:
            item = self.jobs.get()
            if item is None:
                return
            job, args = item
            try:
                message = job(*args)
                if message:
                    log.error("%s", message)
            except Exception:   # a bug in one job must not stop every recording
                log.exception("recording writer job failed")

    def close(self):
        """Finish every queued job, then stop the thread."""
        self.jobs.put(None)
        self.thread.join()


class _Attachment:
    """A tap (a feature.Tap) on one stream and what it feeds (a RecordingFile or a StreamCopy).

    ``group`` is shared by the attachments one command made (the .rtp and
    .rtcp files of an R): when one of its files fails, the whole group stops."""

    __slots__ = ("stream", "tap", "target", "by_record", "group")

    def __init__(self, stream, tap, target, by_record=False, group=None):
        self.stream = stream
        self.tap = tap
        self.target = target
        self.by_record = by_record
        self.group = group


class _SessionRecordings:
    def __init__(self):
        self.legs = [[], []]       # _Attachment lists per leg
        self.single = None         # the shared single-file recording, if any


class Recordings:
    def __init__(self, config, relay, wall_clock=time.time):
        self.config = config
        self.relay = relay
        self.wall_clock = wall_clock     # read per recorded packet: its arrival time
        self.sessions = {}          # Session -> _SessionRecordings
        self.files = []             # open RecordingFiles, flushed by the flusher
        self.writer = None
        self.flusher = None
        self._route_cache = {}
        self._warned_no_dir = False

    # --- commands ---------------------------------------------------------------

    def record(self, session, leg, single=False):
        """R on one leg; True if it started or was already recorded per direction."""
        if not self.config.record_dir:
            log.warning("R %s: no recording directory (-r), not recording", session.call_id)
            return False
        state = self._state(session)
        base = _file_name("%s=%s" % (session.call_id, _strip_media_number(session.from_tag)))
        if single and self.config.record_pcap:
            return self._attach_single(session, state, leg, base + ".pcap") is not None
        if any(a.by_record for a in state.legs[leg]):
            return True
        try:
            self._attach_per_direction(session, state, leg, base + DIRECTION_SUFFIX[leg], True)
        except OSError as exc:
            log.error("R %s: cannot create recording %s: %s", session.call_id,
                      exc.filename or base, exc.strerror)
            return False
        return True

    def copy_to_file(self, session, leg, name, single=False):
        """C with a file name target. Raises CopyFailed."""
        if not self.config.record_dir:
            raise CopyFailed("no recording directory (-r)")
        name = _file_name(name)
        state = self._state(session)
        if single and self.config.record_pcap:
            # One single file per session, as upstream: Cs on the other leg
            # joins it (whatever name it gives). A leg already copied into
            # per-direction files, or already in the single file, cannot.
            if any(isinstance(a.target, RecordingFile) and a.target is not state.single
                   for a in state.legs[leg]):
                raise CopyFailed("this leg is already copied into per-direction files")
            if self._attach_single(session, state, leg, name) is None:
                raise CopyFailed("this leg is already in the session's single file"
                                 if state.single is not None else "cannot create %s" % name)
            return
        try:
            self._attach_per_direction(session, state, leg, name, False)
        except OSError as exc:
            raise CopyFailed("cannot create %s: %s" % (exc.filename or name, exc.strerror)) from None

    def copy_to_udp(self, session, leg, local, target):
        """C udp:HOST:PORT; returns the StreamCopy (its ``port`` is the reply). Raises CopyFailed."""
        try:
            copy = self.relay.open_copy(local, target)
        except PortsExhausted:
            raise CopyFailed("no free port pair for the copy") from None
        state = self._state(session)
        for stream in self._leg_streams(session, leg):
            tap = Tap(copy.tap(stream.is_rtp))
            stream.add_feature(tap)
            state.legs[leg].append(_Attachment(stream, tap, copy, group=copy))
        return copy

    def stop(self, session, leg):
        """N on one leg: stop every recording and copy of it; True if any stopped."""
        state = self.sessions.get(session)
        if state is None or not state.legs[leg]:
            return False
        attachments = state.legs[leg]
        state.legs[leg] = []
        self._detach(state, attachments)
        if not state.legs[0] and not state.legs[1]:
            del self.sessions[session]
        return True

    def session_ended(self, session):
        state = self.sessions.pop(session, None)
        if state is not None:
            self._detach(state, state.legs[0] + state.legs[1])

    def record_all(self, session):
        """-a: both directions from the session's creation (one file with -P)."""
        if not self.config.record_dir:
            if not self._warned_no_dir:
                log.warning("-a without -r: there is no directory to record into")
                self._warned_no_dir = True
            return
        for leg in (1, 0):
            self.record(session, leg, single=True)

    def shutdown(self):
        """Close every recording and wait until all of it is on disk and moved."""
        for session in list(self.sessions):
            self.session_ended(session)
        if self.flusher is not None:
            self.flusher.kill()
            self.flusher = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # --- attaching -------------------------------------------------------------

    def _state(self, session):
        state = self.sessions.get(session)
        if state is None:
            state = self.sessions[session] = _SessionRecordings()
        return state

    def _leg_streams(self, session, leg):
        streams = [session.rtp[leg]]
        if self.config.record_rtcp:
            streams.append(session.rtcp[leg])
        return streams

    def _attach_per_direction(self, session, state, leg, name, by_record):
        fmt = PcapFormat if self.config.record_pcap else AdhocFormat
        opened = []
        try:
            for stream in self._leg_streams(session, leg):
                suffix = ".rtp" if stream.is_rtp else ".rtcp"
                opened.append((stream, self._open_file(name + suffix, fmt())))
        except OSError:
            for _, rec in opened:
                self._release(rec)
            raise
        group = object()
        for stream, rec in opened:
            self._attach(state, leg, stream, rec, by_record, group)

    def _attach_single(self, session, state, leg, name):
        """Attach ``leg`` to the session's single pcap file (created if needed).
        Returns the file, or None if nothing new was attached."""
        rec = state.single
        if rec is None:
            try:
                rec = self._open_file(name, PcapFormat(single_file=True))
            except OSError as exc:
                log.error("%s: cannot create recording %s: %s", session.call_id,
                          exc.filename or name, exc.strerror)
                return None
            state.single = rec
        elif any(a.target is rec for a in state.legs[leg]):
            return None
        group = object()
        for stream in self._leg_streams(session, leg):
            self._attach(state, leg, stream, rec, True, group)
        return rec

    def _attach(self, state, leg, stream, rec, by_record, group):
        tap = Tap(make_tap(rec.pending, self.wall_clock))
        stream.add_feature(tap)
        rec.users += 1
        state.legs[leg].append(_Attachment(stream, tap, rec, by_record, group))

    def _detach(self, state, attachments):
        for attachment in attachments:
            attachment.stream.remove_feature(attachment.tap)
            target = attachment.target
            if isinstance(target, RecordingFile):
                if target is state.single and not any(
                        a.target is target for leg in state.legs for a in leg):
                    state.single = None
                self._release(target)
            else:
                target.close()

    # --- files -------------------------------------------------------------------

    def _open_file(self, name, fmt):
        config = self.config
        rec = RecordingFile(name, config.record_dir, fmt, spool=config.spool_dir,
                            local_for=self._local_for)
        rec.open()
        self.files.append(rec)
        if self.writer is None:
            self.writer = DiskWriter()
        if self.flusher is None:
            self.flusher = gevent.spawn(self._flush_loop)
        log.info("recording to %s", rec.path)
        return rec

    def _release(self, rec):
        """One user less; the last one closes the file (flushed, then moved)."""
        rec.users -= 1
        if rec.users > 0 or rec.closed:
            return
        rec.closed = True
        if rec in self.files:
            self.files.remove(rec)
        blob = rec.take()
        if blob:
            self.writer.submit(rec.write, blob)
        self.writer.submit(rec.finish)

    def flush(self, pause=None):
        """Queue every file's batch for the writer; stop files that failed.

        ``pause`` (the flusher passes _yield_to_packets) is called whenever
        FLUSH_SLICE of encoding has passed, so that packets waiting in the
        event loop are relayed between files instead of after all of them.
        (gevent.sleep(0) would not do: its wake-up is a callback, which the hub
        may run again before it polls the sockets.)"""
        timer = time.perf_counter
        slice_end = timer() + FLUSH_SLICE
        for rec in list(self.files):
            if rec.closed:          # closed by a command during a pause
                continue
            if rec.error is not None:
                self._stop_failed(rec)
                continue
            blob = rec.take()
            if blob:
                self.writer.submit(rec.write, blob)
            if pause is not None and timer() > slice_end:
                pause()
                slice_end = timer() + FLUSH_SLICE

    def _flush_loop(self):
        while True:
            gevent.sleep(FLUSH_INTERVAL)
            self.flush(pause=_yield_to_packets)

    def _stop_failed(self, rec):
        """A write failed (disk full, I/O error): the call goes on, the recording stops."""
        log.error("recording %s stopped: %s", rec.path, rec.error.strerror or rec.error)
        for session, state in list(self.sessions.items()):
            for leg in (0, 1):
                groups = {a.group for a in state.legs[leg] if a.target is rec}
                failed = [a for a in state.legs[leg] if a.group in groups]
                if failed:
                    state.legs[leg][:] = [a for a in state.legs[leg] if a.group not in groups]
                    self._detach(state, failed)
        if not rec.closed:   # not attached anywhere any more: close it anyway
            rec.users = 1
            self._release(rec)

    def _local_for(self, remote_host, family):
        """The local address the kernel uses towards ``remote_host`` (pcap headers
        of a wildcard-bound relay socket)."""
        key = (remote_host, family)
        host = self._route_cache.get(key)
        if host is None:
            host = self.relay.route_source(remote_host, family)
            if len(self._route_cache) > 1024:
                self._route_cache.clear()
            self._route_cache[key] = host
        return host


def _yield_to_packets():
    """Let waiting packets go first: return once the event loop has nothing else
    to do, or after MAX_YIELD, so that a saturated relay still writes (and does
    not pile up) its recordings."""
    with gevent.Timeout(MAX_YIELD, False):
        gevent.idle()


def _file_name(text):
    """A file name made of command tokens, as the str that the file system
    turns back into exactly the bytes the client sent (whatever the locale)."""
    return os.fsdecode(raw(text))


def _strip_media_number(tag):
    """``9f3;1`` -> ``9f3`` (file names use the tag without the media number)."""
    return tag.split(";", 1)[0]
