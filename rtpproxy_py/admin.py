"""The local admin socket (``--admin_socket PATH``) that ``rtpproxy-ctl`` talks to.

A separate unix stream socket rather than new commands on the control
socket: upstream clients and the control protocol never see it (no verb an
upstream client or a fuzzer could send changes meaning, no reply can exceed
the protocol's 1 KiB / one-datagram limits), its file permissions decide who
may look, and a listing of thousands of sessions is one JSON document.

Protocol: the client sends one line of JSON, the daemon answers one JSON
document and closes the connection.

    {"cmd": "sessions"}                  -> {"sessions": [SESSION, ...]}
    {"cmd": "session", "call_id": "X"}   -> {"sessions": [SESSION, ...]} (that Call-ID)
    {"cmd": "counters"}                  -> {"counters": {G name: value, ...,
                                             "active_sessions": N, "average_load": F}}
    anything else                        -> {"error": "sentence"}

With --workers the front end serves it and asks every worker (channel
message ADMIN, PAGE sessions at a time), so the listing is the whole daemon's.
"""

import json
import logging
import os
import socket as stdsocket
from typing import Any, Dict, List, Optional

from .config import ConfigError

log = logging.getLogger("rtpproxy")

PAGE = 100                 # sessions per worker reply (a channel message stays small)
MAX_REQUEST = 4096
REQUEST_TIMEOUT = 5.0
MAX_CLIENTS = 8            # admin connections served at once


def _address(addr) -> Optional[str]:
    if addr is None:
        return None
    host, port = addr[0], addr[1]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _party(session, index: int, now: float) -> Dict[str, Any]:
    """One party as the relay sees it: stream ``index`` faces it."""
    rtp, rtcp = session.rtp[index], session.rtcp[index]
    last = max((s.last_rx for s in (rtp, rtcp) if s.last_rx is not None), default=None)
    analyzer = rtp.analyzer
    return {
        "address": _address(rtp.rem_addr),
        "latched": bool(rtp.latched),
        "rtcp_address": _address(rtcp.rem_addr),
        "relay_port": rtp.port,
        "relay_address": rtp.local.host if rtp.local is not None else None,
        "packets_in": rtp.npkts_in + rtcp.npkts_in,
        "packets_relayed": rtp.nrelayed + rtcp.nrelayed,
        "packets_dropped": rtp.ndropped + rtcp.ndropped,
        "lost": analyzer.rtpa_nlost if analyzer is not None else None,
        # the packet path's clock is 0.1 s coarse (Relay.now): never older than the session
        "idle": None if last is None else round(max(0.0, min(now - last, now - session.created_at)), 3),
    }


def describe(session, now: float, recorder=None, offload=None) -> Dict[str, Any]:
    """What rtpproxy-ctl shows of one session (plain JSON types only)."""
    attached = []
    if recorder is not None:
        state = recorder.sessions.get(session)
        if state is not None:
            items = state.legs[0] + state.legs[1]
            if any(a.by_record for a in items):
                attached.append("recording")
            if any(not a.by_record for a in items):
                attached.append("copy")
    if session.players:
        attached.append("playback")
    if offload is not None and session in offload.sessions:
        attached.append("offload")
    if any(s.resizer is not None for s in session.rtp):
        attached.append("resizer")
    caller, callee = _party(session, 1, now), _party(session, 0, now)
    return {
        "call_id": session.call_id,
        "from_tag": session.from_tag,
        "to_tag": session.to_tag,
        "age": round(now - session.created_at, 3),
        "idle": min((p["idle"] for p in (caller, callee) if p["idle"] is not None),
                    default=round(now - session.created_at, 3)),
        "complete": session.complete,
        "ttl": session.remaining_ttl(now),
        "caller": caller,
        "callee": callee,
        "attached": attached,
    }


def local_sessions(daemon, call_id: Optional[str], offset: int = 0,
                   limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """Sessions of this process (a worker or the single-process daemon)."""
    import time
    table = daemon.dispatcher.table
    if call_id is not None:
        sessions = list(table.by_call_id.get(call_id, ()))
    else:
        sessions = list(table)
    sessions = sessions[offset:None if limit is None else offset + limit]
    now = time.monotonic()
    relay = getattr(daemon, "relay", None)
    offload = getattr(relay, "offload", None)
    recorder = getattr(daemon, "recordings", None)
    out = []
    for session in sessions:
        if call_id is not None and relay is not None:
            relay.refresh_counters(session)
        out.append(describe(session, now, recorder, offload))
    return out


def counters(dispatcher) -> Dict[str, Any]:
    from .dispatcher import LOAD
    values, live = dispatcher.stat_values()
    out = {name: value for name, value in values.items() if name != LOAD}
    out["active_sessions"] = values["nsess_created"] - values["nsess_destroyed"]
    out["active_streams"] = 2 * live
    out["average_load"] = values.get(LOAD, 0.0)
    return out


def answer(request: Dict[str, Any], sessions, dispatcher) -> Dict[str, Any]:
    """The reply to one admin request; ``sessions(call_id)`` lists sessions."""
    cmd = request.get("cmd") if isinstance(request, dict) else None
    if cmd == "sessions":
        return {"sessions": sessions(None)}
    if cmd == "session":
        call_id = request.get("call_id")
        if not isinstance(call_id, str):
            return {"error": "session needs a call_id"}
        return {"sessions": sessions(call_id)}
    if cmd == "counters":
        return {"counters": counters(dispatcher)}
    return {"error": "unknown request; send {\"cmd\": \"sessions\" | \"session\" | \"counters\"}"}


class AdminServer:
    """The listening socket, bound at startup (before -u), served by greenlets."""

    def __init__(self, path: str, config):
        self.path = path
        self.sock = None
        self.greenlet = None
        raw = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        try:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            raw.bind(path)
            os.chmod(path, 0o660)
            if config.uid is not None:
                os.chown(path, config.uid, -1 if config.gid is None else config.gid)
            raw.listen(8)
        except OSError as exc:
            raw.close()
            raise ConfigError("--admin_socket %s: cannot open the admin socket (%s); choose a "
                              "path in a writable directory." % (path, exc.strerror)) from None
        self.raw = raw

    def start(self, sessions, dispatcher):
        import gevent
        from gevent import socket
        from gevent.pool import Pool
        self.sock = socket.socket(fileno=self.raw.detach())
        pool = Pool(MAX_CLIENTS)

        def accept():
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    gevent.sleep(0.1)
                    continue
                pool.spawn(self._serve, conn, sessions, dispatcher)
        self.greenlet = gevent.spawn(accept)

    def _serve(self, conn, sessions, dispatcher):
        import gevent
        try:
            data = b""
            with gevent.Timeout(REQUEST_TIMEOUT, False):
                while b"\n" not in data and len(data) < MAX_REQUEST:
                    chunk = conn.recv(MAX_REQUEST)
                    if not chunk:
                        break
                    data += chunk
            try:
                request = json.loads(data.decode("utf-8") or "null")
            except ValueError:
                request = None
            try:
                reply = answer(request, sessions, dispatcher)
            except Exception:           # a bug must not take the daemon down
                log.exception("admin request %r failed", data[:200])
                reply = {"error": "internal error; see the daemon's log"}
            with gevent.Timeout(REQUEST_TIMEOUT, False):
                conn.sendall(json.dumps(reply).encode("utf-8") + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
        for sock in (self.sock, self.raw):
            try:
                sock.close()
            except (OSError, AttributeError):
                pass
        try:
            os.unlink(self.path)
        except OSError:
            pass
