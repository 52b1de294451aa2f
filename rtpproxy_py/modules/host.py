"""The module instances of one process (the daemon, or one --workers worker)
and the hooks the dispatcher calls them through."""

import logging
import time
from typing import List, Optional

from . import Module, ModuleSpec, ModuleStartError, implementation

log = logging.getLogger("rtpproxy")


class ModuleHost:
    def __init__(self, specs: List[ModuleSpec], dispatcher):
        self.dispatcher = dispatcher
        self.modules: List[Module] = [implementation(s.name)(s, self) for s in specs]
        self._by_key = {(m.spec.module_id, m.spec.instance): m for m in self.modules}
        self._watchers = [m for m in self.modules if _overrides(m, "session_created")
                          or _overrides(m, "session_ended")]

    def start(self):
        """Start every module in order; the first failure stops the daemon
        with upstream's message (modules.md 2.5)."""
        from ..config import ConfigError
        started = []
        for module in self.modules:
            try:
                module.start()
            except ModuleStartError as exc:
                for other in started:
                    other.close()
                raise ConfigError("%s: dymanic module start has failed: %s" % (module.name, exc)) from None
            started.append(module)
        if self.dispatcher is None:         # a check only (the --workers front end)
            self.close()

    def handler(self, module_id: int, instance: int) -> Optional[Module]:
        """The module answering ``M<id>:<inst>``, or None (the command is E3)."""
        module = self._by_key.get((module_id, instance))
        return module if module is not None and module.has_subcommand else None

    # --- hooks the dispatcher calls -------------------------------------------

    def session_created(self, session, now):
        for module in self._watchers:
            module.session_created(session, now)

    def session_ended(self, session, now):
        for module in self._watchers:
            try:
                module.session_ended(session, now)
            except Exception:       # accounting must not keep a session alive
                log.exception("module %s failed at the end of session %s", module.name, session.call_id)

    def close(self):
        for module in self.modules:
            module.close()

    # --- services for modules ----------------------------------------------------

    def notify(self, armed, message: bytes):
        """Send ``message`` (one line, no LF) to a session's notify target
        (``session.notify`` as it was when the module captured it)."""
        target, _, source_ip, local_ip = armed
        self.dispatcher.notifier.notify(target, message, source_ip, local_ip)

    def wall(self, t: float) -> float:
        """The dispatcher clock's time ``t`` as Unix time."""
        return time.time() - (self.dispatcher.clock() - t)

    def send_from(self, stream, data: bytes, address) -> bool:
        """Send ``data`` from ``stream``'s own socket (STUN answers, DTLS flights)."""
        return self.dispatcher.relay.send_from(stream, data, address)

    def media_changed(self, session):
        """A module put or took filters/mux on the session's streams, or moved
        a stream's remote: the relay re-installs its readers."""
        self.dispatcher.relay.session_updated(session)

    def open_port(self, session, stream):
        """Give a stream that has no port yet (the caller's leg before its L)
        its ports now; the session becomes complete, the later L returns them."""
        from ..ports import PortsExhausted
        from . import SubcommandFailed
        dispatcher = self.dispatcher
        try:
            dispatcher._open_leg(session, stream.index, None, stream.local)
        except PortsExhausted:
            raise SubcommandFailed() from None
        if not session.complete:
            session.mark_complete(dispatcher.clock())
            dispatcher.counters.nsess_complete += 1

    def wake(self, session):
        """A module timer (Session.add_waker) is due earlier than planned."""
        self.dispatcher.relay.session_changed(session)

    def route_source(self, host: str, family: int) -> Optional[str]:
        return self.dispatcher.relay.route_source(host, family)


def _overrides(module, name):
    return getattr(type(module), name) is not getattr(Module, name)
