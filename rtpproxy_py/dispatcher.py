"""Runs parsed commands against the session table; one ``handle_*`` per verb.

The dispatcher owns the session table and the protocol semantics of
control-protocol.md section 5. It never touches a socket: ports, per-session
timers and TOS go through ``self.relay`` (relay.Relay, or anything with the
same methods), timeout notifications through ``self.notifier``. Commands run
one at a time and to completion, as upstream's single command thread does.
"""

import logging
import socket
import time

from . import capabilities
from .daemon_log import holding as _log_lines_held, write_held_lines
from .config import BindAddress, is_local_address
from .protocol import commands as c
from .protocol import errors as e
from .protocol import reply
from .protocol.errors import CommandError
from .protocol.context import CommandContext
from .protocol.parse import parse, remote_sockaddr
from .media.player import DEFAULT_PTIME, Player
from .media.resizer import Resizer
from .media.prompt_file import open_prompt
from .forking import Forks
from .ports import PortsExhausted
from .recording import CopyFailed
from .session import Session, SessionTable, count_bytes
from .stats import Counters, format_counter

log = logging.getLogger("rtpproxy")

MAX_REPLY = 1024
LOAD = "_average_load"   # in stat_values: I's load, not a G counter

# Result of parsing a U/L remote address.
IGNORED = object()   # implausible length: silently not applied
HOLD = object()      # the null host: put the stream on hold

QUERY_COUNTERS = (
    "ttl", "npkts_ina", "npkts_ino", "nrelayed", "ndropped", "longest_ipi",
    "rtpa_jlast", "rtpa_jmax", "rtpa_javg", "rtpa_nsent", "rtpa_nrcvd",
    "rtpa_ndups", "rtpa_nlost", "rtpa_perrs",
)
_QUERY_FLOATS = ("longest_ipi", "rtpa_jlast", "rtpa_jmax", "rtpa_javg")
_QUERY_DEFAULT = ("ttl", "npkts_ina", "npkts_ino", "nrelayed", "ndropped")


class LookupMiss(Exception):
    """L on an unknown session: reply ``0``, counted as an error."""


class Dispatcher:
    runs_modules = True      # the --workers front end leaves them to the workers

    def __init__(self, config, relay, notifier, clock):
        self.config = config
        self.relay = relay
        self.notifier = notifier
        self.clock = clock
        self.table = SessionTable()
        self.counters = Counters()
        self.deorbiting = False
        self.on_idle = None          # called when deorbiting and the last session ends
        self.metrics = None          # metrics.Metrics when --metrics is given
        self.recorder = None         # recording.Recordings (R, C, N, -a), set by service.LocalMedia
        self.forks = Forks()         # the C sub-command (stream forking)
        self.modules = None          # modules.host.ModuleHost with --dso/--config
        if getattr(config, "modules", None) and self.runs_modules:
            from .modules.host import ModuleHost
            self.modules = ModuleHost(config.modules, self)
            self.modules.start()
        self._unlisted = {}          # (family, packed address) -> BindAddress (_unlisted_local)

    # --- entry point ------------------------------------------------------

    @property
    def tally(self):
        """What the control transports count (protocol.context.CommandTally)."""
        return self.counters

    def execute(self, data, ctx=None):
        """Command bytes -> reply text (without cookie), counters updated."""
        self.counters.ncmds_rcvd += 1
        ok = False
        command = None
        started = time.perf_counter() if self.metrics is not None else 0.0
        try:
            command = parse(data)
            text = self.run(command, ctx or CommandContext())
            ok = True
        except CommandError as exc:
            text = reply.error(exc.code)
        except LookupMiss:
            text = reply.number(0)
        except Exception:   # a bug must not take the daemon down
            log.exception("internal error handling command %r", data[:200])
            text = reply.error(e.SYNTAX_ERROR)
        if ok:
            self.counters.ncmds_succd += 1
        else:
            self.counters.ncmds_errs += 1
        if self.metrics is not None:
            self.metrics.command_done(command, data, ok, text, time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("command %r -> %r", bytes(data[:300]), text)
        if _log_lines_held:
            # the command's lines are in the log before its reply leaves (a
            # SIGKILL after the reply loses none), not at the loop turn's end
            write_held_lines()
        return text

    def run(self, command, ctx):
        if getattr(command, "subcommands", None):
            self._check_module_subcommands(command.subcommands)
        handler = getattr(self, _HANDLERS[type(command)])
        return handler(command, ctx)

    # --- V, VF --------------------------------------------------------------

    def handle_version(self, cmd, ctx):
        return capabilities.BASE_VERSION + "\n"

    def handle_feature_check(self, cmd, ctx):
        ok = capabilities.supported(cmd.datestamp, bool(self.config.notify_targets),
                                    self.config.rtp_analysis)
        return reply.number(1 if ok else 0)

    # --- U, L ---------------------------------------------------------------

    def handle_update(self, cmd, ctx):
        text = self._update(cmd, ctx)
        return text + "\n"

    def _update(self, cmd, ctx, subcommands=True):
        """U or L; returns the reply text without LF."""
        mods = cmd.mods
        self._check_modifiers(mods)
        remote = self._parse_remote(cmd.addr, cmd.port, mods.ipv6)
        if cmd.notify_socket is not None and not self.config.notify_targets:
            raise CommandError(e.NOTIFY_DISABLED)
        now = self.clock()
        session, direction = self.table.find(cmd.call_id, cmd.from_tag, cmd.to_tag)
        if session is None:
            if cmd.lookup:
                raise LookupMiss()
            session, sidx = self._create(cmd, now), 0
        else:
            sidx = direction if not cmd.lookup else 1 - direction
            if session.to_tag is None and cmd.to_tag is not None:
                session.to_tag = cmd.to_tag if direction == 0 else cmd.from_tag
            stream = session.rtp[sidx]
            if stream.port is None or mods.new_port:
                newly = stream.port is None
                try:
                    self._open_leg(session, sidx, mods, wire=False)
                except PortsExhausted:
                    raise CommandError(e.PORT_ALLOC_FAILED_EXISTING) from None
                if newly and not session.complete:
                    session.mark_complete(now)
                    self.counters.nsess_complete += 1
            if mods.weak:
                session.weak[sidx] = True
            elif not cmd.lookup:
                session.strong = True
            session.touch(now)
        if not cmd.lookup:
            self._arm_notify(session, cmd, ctx)
        if mods.strict:
            session.strict = True
        self._apply_remote(session, 1 - sidx, remote, mods, now)
        self.relay.session_updated(session)
        stream = session.rtp[sidx]
        text = reply.port(stream.port, stream.local.reply_address(), stream.local.ipv6)
        if subcommands and cmd.subcommands:
            results = self._run_subcommands(cmd, session, sidx, ctx)
            return reply.with_subcommand_results(text, results).rstrip("\n")
        return text

    def _create(self, cmd, now):
        if self.deorbiting:
            raise CommandError(e.SHUTTING_DOWN)
        session = Session(cmd.call_id, cmd.from_tag, now, self.config.setup_ttl,
                          self.config.ttl, unified_ttl=not self.config.independent_ttl)
        if self.config.latching == "strict":
            session.strict = True   # (a new Session has the default rules)
        if self.config.rtp_analysis:
            for stream in session.rtp:
                stream.analyze()        # its RtpAnalyzer comes with the first packet
        if self.metrics is not None:
            for stream in session.streams():
                stream.add_tap(count_bytes)
        try:
            first, planned = self._interfaces_for(cmd.mods)
            # The caller-facing leg gets its ports later (first L, or U with swapped
            # tags); the interface this U chose for it is kept on the stream until then.
            session.rtp[1].local = session.rtcp[1].local = planned
            self._open_leg(session, 0, cmd.mods, first, wire=False)
        except PortsExhausted:
            session.release()       # never started: freed at once (E71/E72 floods)
            raise CommandError(e.SESSION_CREATE_FAILED) from None
        except Exception:
            session.release()
            raise
        if cmd.mods.weak:
            session.strong = False
            session.weak[0] = True
        self.table.add(session)
        self.counters.nsess_created += 1
        self.relay.session_started(session)
        try:
            if self.modules is not None:
                self.modules.session_created(session, now)
            if self.config.record_all and self.recorder is not None:
                self.recorder.record_all(session)
        except BaseException:
            self.relay.session_updated(session)     # the U fails, but its ports are relayed
            raise
        log.info("new session %s, tag %s, port %d", cmd.call_id, cmd.from_tag, session.rtp[0].port)
        return session

    def _open_leg(self, session, leg, mods, local=None, wire=True):
        """New ports for ``leg``. ``wire``: tell the relay now (session_updated
        installs the readers); U/L say False and tell it once they are done."""
        if local is None:
            local = self._local_for(session, leg, mods)
        self.relay.open_leg(session, leg, local)   # raises PortsExhausted
        session.rtp[leg].refresh_target()
        session.rtcp[leg].refresh_target()
        if wire:
            self.relay.session_updated(session)

    # --- modifier checks and address choice ----------------------------------

    def _check_modifiers(self, mods):
        if mods.interfaces and not self.config.bridging:
            first = mods.interfaces[0]
            raise CommandError(e.EXTERNAL_IF_INVALID if first == "e" else e.INTERNAL_IF_INVALID)
        if mods.local is not None:
            self._configured_local(mods.local)
        elif mods.route_to is not None:
            self._routed_local(mods.route_to)
        elif not mods.interfaces:
            self._default_local(mods.ipv6)

    def _interfaces_for(self, mods):
        """(where this command's new ports go, where the other party's will go).

        ``l``/``r`` pick the first; ``e``/``i`` name both in bridging mode: the
        second letter is the side this command's reply goes to (the port it
        returns), the first the side the command's address came from. A missing
        letter means the internal interface.
        """
        if mods.interfaces:
            internal, external = self.config.bridge
            pick = {"i": internal, "e": external}
            other = pick[mods.interfaces[0]]
            here = pick.get(mods.interfaces[1:2], internal)
        else:
            try:
                here = other = self._default_local(mods.ipv6)
            except CommandError:    # E36, unless l/r names a usable address
                if mods.local is None and mods.route_to is None:
                    raise
                here = other = None
        if mods.local is not None:
            here = self._configured_local(mods.local)
        elif mods.route_to is not None:
            here = self._routed_local(mods.route_to)
        return here, other or here

    def _local_for(self, session, leg, mods):
        """Where a leg of an existing session gets its (first or new) ports:
        ``l``/``r`` if given, ``e``/``i`` when ``n`` asks for new ports, else the
        interface chosen when the session was created."""
        if mods.local is not None or mods.route_to is not None or (mods.new_port and mods.interfaces):
            return self._interfaces_for(mods)[0]
        planned = session.rtp[leg].local
        return planned if planned is not None else self._default_local(mods.ipv6)

    def _configured_local(self, spec):
        kind, value = spec
        for address in self.config.all_listen():
            if kind == "label":
                if address.label == value:
                    return address
            elif _same_ip(address.host, value):
                return address
        if kind == "addr":
            address = self._unlisted_local(value)
            if address is not None:
                return address
        raise CommandError(e.LOCAL_ADDR_UNKNOWN)

    def _unlisted_local(self, host):
        """An address of this host that no -l/-6 names, bound as given, where
        the operator did not restrict its family to named addresses: that
        family's listen addresses are wildcards, or it has none and the primary
        is the wildcard default (as upstream, e.g. ``Ul127.0.0.1`` with
        ``-l 0.0.0.0 -6 /::``, ``Ul[::1]``/``Ur[::1]`` with no -l/-6 at all)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            key = (family, socket.inet_pton(family, host))
        except (OSError, UnicodeError):     # UnicodeError: bytes that are not UTF-8
            return None
        address = self._unlisted.get(key)
        if address is not None:
            return address
        same = [a for a in self.config.all_listen() if a.family == family]
        unrestricted = all(a.wildcard for a in same) if same else self.config.primary.wildcard
        if not unrestricted or not is_local_address(host, family):
            return None
        address = BindAddress(family, socket.inet_ntop(family, key[1]))
        self._unlisted[key] = address
        return address

    def _routed_local(self, remote_host):
        family = socket.AF_INET6 if ":" in remote_host else socket.AF_INET
        source = self.relay.route_source(remote_host, family)
        candidates = [a for a in self.config.all_listen() if a.family == family]
        for address in candidates:
            if source is not None and _same_ip(address.host, source):
                return address
        address = self._unlisted_local(source) if source is not None else None
        if address is None:
            raise CommandError(e.NO_ROUTE_TO_REMOTE)
        return address

    def _default_local(self, ipv6):
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        primary = self.config.primary
        if primary.family == family:
            return primary
        same = self.config.listen6 if ipv6 else self.config.listen4
        if not same:
            raise CommandError(e.FAMILY_UNAVAILABLE)
        bridge = self.config.bridge
        if bridge is not None and bridge[0].family == family:
            return bridge[0]            # bridging: no e/i letter means the internal side
        # the address given last on the command line, as upstream (its list
        # of listen addresses is last-in, first-out)
        return same[-1]

    def _parse_remote(self, addr, port, ipv6):
        """The address a U/L carries -> sockaddr, HOLD, or IGNORED (section 5.7)."""
        sockaddr = remote_sockaddr(addr, port, ipv6)
        if sockaddr is None:
            return IGNORED
        if sockaddr[0] in ("0.0.0.0", "::"):
            return HOLD
        return sockaddr

    def _apply_remote(self, session, leg, remote, mods, now):
        rtp, rtcp = session.rtp[leg], session.rtcp[leg]
        config = self.config
        session.latch_until = now + config.latch_window     # strict learning window
        asymmetric = mods.asymmetric
        if asymmetric is None:
            asymmetric = config.force_asymmetric or (config.bridging and not config.bridge_symmetric)
        # (Stream.signal_address, without its call)
        signal_address = session.latching.signal_address
        if remote is HOLD:
            signal_address(rtp, None, asymmetric, now)
            signal_address(rtcp, None, asymmetric, now)
        elif remote is not IGNORED:
            signal_address(rtp, remote, asymmetric, now)
            rtcp_remote = ((remote[0], remote[1] + 1) if len(remote) == 2
                           else (remote[0], remote[1] + 1) + tuple(remote[2:]))
            signal_address(rtcp, rtcp_remote, asymmetric, now)
        ptime = mods.ptime
        rtp.codecs = mods.codecs
        rtp.resize_ptime = ptime
        if ptime is not None or rtp.resizer is not None:
            self._set_resizer(rtp, ptime)
        session.rtp[1 - leg].prompt_ptime = ptime

    def _set_resizer(self, stream, ptime):
        """``z<N>``: re-packetize what this party sends; no ``z``: stop doing so
        (queued packets are discarded, playback-and-resizing.md B.1)."""
        resizer = stream.resizer
        if ptime is not None:
            if resizer is None:
                stream.resizer = Resizer(ptime)
            elif resizer.ptime != ptime:
                resizer.retune(ptime)
        elif resizer is not None:
            stream.resizer = None
            self.counters.resizer_done(resizer)

    # --- notification ---------------------------------------------------------

    def _arm_notify(self, session, cmd, ctx):
        session.notify = None
        if cmd.notify_socket is None:
            return
        for target in self.config.notify_targets:
            if target.matches(cmd.notify_socket):
                session.notify = (target, cmd.notify_tag, ctx.source_ip, ctx.local_ip)
                return
        log.warning("U %s: notify socket %r matches no -n target; timeout notification not armed",
                    cmd.call_id, cmd.notify_socket)

    # --- sub-commands ------------------------------------------------------------

    def _run_subcommands(self, cmd, session, sidx, ctx):
        results = []
        for sub in cmd.subcommands:
            try:
                result, sidx = self._run_subcommand(sub, cmd, session, sidx, ctx)
            except (CommandError, LookupMiss):
                results.append(-1)
                break
            results.append(result)
        return results

    def _run_subcommand(self, sub, main, session, sidx, ctx):
        now = self.clock()
        if isinstance(sub, c.SubDelete):
            self._delete(session.call_id, session.from_tag, None, sub.weak)
            return None, sidx
        if isinstance(sub, c.SubSet):
            leg = sidx if sub.reverse else 1 - sidx
            if session.closed:
                raise CommandError(e.SESSION_NOT_FOUND)
            if sub.name == "ttl":
                session.set_ttl(leg, sub.value, now)
                self.relay.session_changed(session)
            elif not self.relay.set_tos(session, leg, sub.value):
                raise CommandError(e.SESSION_NOT_FOUND)
            return None, sidx
        if isinstance(sub, c.SubLookup):
            lookup = c.Update(True, sub.mods, main.call_id, sub.addr, sub.port,
                              main.from_tag, main.to_tag)
            return self._update(lookup, ctx, subcommands=False), 1 - sidx
        if isinstance(sub, c.SubModule):
            return self._run_module_subcommand(sub, main, session, sidx, ctx), sidx
        # SubCopy: fork both streams of the named session into this one
        source, direction = self.table.find(sub.call_id, sub.from_tag, sub.to_tag)
        if source is None or source is session or session.closed:
            raise CommandError(e.SESSION_NOT_FOUND)
        self.forks.fork(source, direction, session, self.relay.send_from)
        return None, sidx

    def _check_module_subcommands(self, subcommands):
        """Before the main command runs: every ``M<id>:<inst>`` names a loaded
        module with a sub-command, else the whole command is E3 (modules.md 3)."""
        for sub in subcommands:
            if isinstance(sub, c.SubModule) and (
                    self.modules is None or self.modules.handler(sub.module_id, sub.instance) is None):
                raise CommandError(e.SUBCOMMAND_ERROR)

    def _run_module_subcommand(self, sub, main, session, sidx, ctx):
        """The addressed stream is the one whose remote address U/L carries
        (the queried leg for Q); the opposite one is the stream whose port
        the reply returns."""
        from .modules import SubcommandFailed
        if session.closed:
            raise CommandError(e.SESSION_NOT_FOUND)
        addressed = sidx if isinstance(main, c.Query) else 1 - sidx
        module = self.modules.handler(sub.module_id, sub.instance)
        try:
            return module.subcommand(sub.args, session, session.rtp[addressed],
                                     session.rtp[1 - addressed], ctx)
        except SubcommandFailed:
            raise CommandError(e.SUBCOMMAND_ERROR) from None

    # --- D, X -------------------------------------------------------------------------

    def handle_delete(self, cmd, ctx):
        if not self._delete(cmd.call_id, cmd.from_tag, cmd.to_tag, cmd.weak):
            raise CommandError(e.SESSION_NOT_FOUND)
        return reply.number(0)

    def _delete(self, call_id, from_tag, to_tag, weak):
        handled = 0
        for session, leg in self.table.find_for_delete(call_id, from_tag, to_tag):
            handled += 1
            if weak:
                session.weak[leg] = False
            else:
                session.strong = False
            if not session.strong and not any(session.weak):
                self.destroy(session)
        return handled

    def handle_delete_all(self, cmd, ctx):
        for session in list(self.table):
            self.destroy(session)
        return reply.number(0)

    def destroy(self, session, timed_out=False):
        """End a session: stop its media, release its ports, count it."""
        if session.closed:
            return
        session.closed = True
        session.end_reason = "timeout" if timed_out else "deleted"
        self.table.remove(session)
        if session.players:
            for index in (0, 1):
                session.stop_playback(index)
        if self.recorder is not None:
            self.recorder.session_ended(session)
        self.forks.session_ended(session)
        if self.modules is not None:
            self.relay.refresh_counters(session)
            self.modules.session_ended(session, self.clock())
        self.relay.session_ended(session)
        self.counters.session_destroyed(session, self.clock(), timed_out)
        if self.metrics is not None:
            self.metrics.session_ended(session)
        if log.isEnabledFor(logging.INFO):
            log.info("session %s, tag %s ended (%s)", session.call_id, session.from_tag, session.end_reason)
            for line in session.summary():
                log.info("%s", line)
        session.release()       # no reference cycle left: freed without a garbage collection
        if self.deorbiting and len(self.table) == 0 and self.on_idle is not None:
            self.on_idle()

    def expire(self, session):
        """The relay found the session idle past its TTL."""
        if session.closed:
            return
        notify = session.notify
        self.destroy(session, timed_out=True)
        if notify is not None and self.notifier is not None:
            target, tag, source_ip, local_ip = notify
            self.notifier.notify(target, tag, source_ip, local_ip)

    # --- Q ----------------------------------------------------------------------------

    def handle_query(self, cmd, ctx):
        session, direction = self.table.find(cmd.call_id, cmd.from_tag, cmd.to_tag)
        if session is None:
            raise CommandError(e.SESSION_NOT_FOUND)
        self.relay.refresh_counters(session)
        idx = 1 - direction
        names = cmd.counters or _QUERY_DEFAULT
        values = []
        for name in names:
            if name not in QUERY_COUNTERS:
                raise CommandError(e.QUERY_FAILED)
            value = self._query_value(session, idx, name)
            text = "%f" % value if name in _QUERY_FLOATS else "%d" % value
            values.append("%s=%s" % (name, text) if cmd.verbose else text)
        text = " ".join(values)
        if len(text) >= MAX_REPLY:
            raise CommandError(e.QUERY_REPLY_OVERFLOW)
        if cmd.subcommands:
            results = self._run_subcommands(cmd, session, idx, ctx)
            return reply.with_subcommand_results(text, results)
        return text + "\n"

    def _query_value(self, session, idx, name):
        rtp = session.rtp
        if name == "ttl":
            return session.remaining_ttl(self.clock())
        if name == "npkts_ina":
            return rtp[idx].npkts_in
        if name == "npkts_ino":
            return rtp[1 - idx].npkts_in
        if name == "nrelayed":
            return rtp[0].nrelayed + rtp[1].nrelayed
        if name == "ndropped":
            return rtp[0].ndropped + rtp[1].ndropped
        analyzer = getattr(rtp[idx], "analyzer", None)
        if analyzer is None:
            return 0
        return getattr(analyzer, name)

    # --- P, S, R, C, N: media features ------------------------------------------------

    def handle_play(self, cmd, ctx):
        session, direction = self.table.find(cmd.call_id, cmd.from_tag, cmd.to_tag)
        if session is None:
            raise CommandError(e.SESSION_NOT_FOUND)
        sidx = 1 - direction
        stream = session.rtp[sidx]
        session.stop_playback(sidx)          # every P first stops the current prompt
        if cmd.count == 0:
            return reply.number(0)
        if cmd.codecs == "session":
            if not stream.codecs:
                raise CommandError(e.UPDATE_BAD_MODIFIER)
            codecs, ptime = stream.codecs, stream.prompt_ptime or DEFAULT_PTIME
        else:
            codecs, ptime = cmd.codecs, DEFAULT_PTIME
        try:
            found = open_prompt(cmd.prompt, codecs)
        except OSError as exc:
            log.error("P %s: cannot open prompt %s: %s", cmd.call_id, cmd.prompt, exc)
            raise CommandError(e.PLAY_FAILED) from None
        if found is None:
            log.info("P %s: no prompt file %s.<pt> for codecs %s", cmd.call_id, cmd.prompt, codecs)
            raise CommandError(e.PLAY_FAILED)
        pt, source = found
        session.start_playback(sidx, Player(source, pt, ptime, cmd.count), self.clock())
        self.counters.nplrs_created += 1
        self.relay.session_changed(session)
        log.info("playing %s (PT %d, %d ms packets, count %d) to stream %d of session %s",
                 source.path, pt, ptime, cmd.count, sidx, cmd.call_id)
        return reply.number(0)

    def handle_stop_play(self, cmd, ctx):
        session, direction = self.table.find(cmd.call_id, cmd.from_tag, cmd.to_tag)
        if session is None:
            raise CommandError(e.SESSION_NOT_FOUND)
        session.stop_playback(1 - direction)
        return reply.number(0)

    def handle_record(self, cmd, ctx):
        started = False
        for session, leg in self.table.find_for_delete(cmd.call_id, cmd.from_tag, cmd.to_tag, every=True):
            if self.recorder is not None and self.recorder.record(session, leg, cmd.single_file):
                started = True
        if not started:
            raise CommandError(e.SESSION_NOT_FOUND)
        return reply.number(0)

    def handle_copy(self, cmd, ctx):
        session, direction = self.table.find(cmd.call_id, cmd.from_tag, cmd.to_tag)
        if session is None:
            raise CommandError(e.SESSION_NOT_FOUND)
        leg = 1 - direction
        try:
            if self.recorder is None:
                raise CopyFailed("recording is not available")
            if cmd.target.startswith("udp:"):
                return self._copy_to_udp(session, leg, cmd)
            if cmd.reply_port:
                raise CopyFailed("the p modifier needs a udp:HOST:PORT target")
            self.recorder.copy_to_file(session, leg, cmd.target, cmd.single_file)
        except CopyFailed as exc:
            log.warning("C %s %s: %s", cmd.call_id, cmd.target, exc)
            raise CommandError(e.COPY_FAILED) from None
        return reply.number(0)

    def _copy_to_udp(self, session, leg, cmd):
        host, port = _parse_udp_target(cmd.target)
        try:
            local = self._routed_local(host)
        except CommandError:
            raise CopyFailed("no local address reaches %s" % host) from None
        copy = self.recorder.copy_to_udp(session, leg, local, (host, port))
        if not cmd.reply_port:
            return reply.number(0)
        address = local.reply_address() or self.relay.route_source(host, local.family)
        return reply.port(copy.port, address, local.ipv6) + "\n"

    def handle_stop_record(self, cmd, ctx):
        stopped = False
        for session, leg in self.table.find_for_delete(cmd.call_id, cmd.from_tag, cmd.to_tag, every=True):
            for k in ((0, 1) if cmd.both_legs else (leg,)):
                if self.recorder is not None and self.recorder.stop(session, k):
                    stopped = True
        if not stopped:
            raise CommandError(e.SESSION_NOT_FOUND)
        return reply.number(0)

    # --- I, G ---------------------------------------------------------------------------

    def stat_values(self, names=None):
        """(G counters by name, packet totals included; live sessions) for I and
        G: every counter, or at least ``names`` (the media totals walk the live
        streams, the rest cost the same at any session count). The --workers
        front end (workers.py) sums them over its workers. LOAD is not a G
        counter: I's average load, which adds up too."""
        refresh = getattr(self.relay, "refresh_all_counters", None)
        if refresh is not None:
            refresh()                           # what the C fast path relayed
        values = self.counters.values(self.table, names)
        values[LOAD] = self.counters.average_load
        return values, len(self.table)

    def handle_info(self, cmd, ctx):
        values, live = self.stat_values(())
        lines = [
            "sessions created: %d" % values["nsess_created"],
            "active sessions: %d" % (values["nsess_created"] - values["nsess_destroyed"]),
            "active streams: %d" % (2 * live),
            "packets received: %d" % values["npkts_rcvd"],
            "packets transmitted: %d" % (values["npkts_relayed"] + values["npkts_played"]),
        ]
        if cmd.load:
            lines.append("average load: %f" % values[LOAD])
        return "\n".join(lines) + "\n"

    def handle_stats(self, cmd, ctx):
        values, _ = self.stat_values(cmd.names)
        out = []
        for name in cmd.names:
            if name not in values or name == LOAD:
                raise CommandError(e.STATS_FAILED)
            text = format_counter(name, values[name])
            out.append("%s=%s" % (name, text) if cmd.verbose else text)
        text = " ".join(out)
        if len(text) >= MAX_REPLY:
            raise CommandError(e.STATS_REPLY_OVERFLOW)
        return text + "\n"

    def tidy(self):
        """Once a second: let the RTP analyzers settle long runs of packets."""
        for session in self.table:
            for stream in session.rtp:
                analyzer = stream.started_analyzer
                if analyzer is not None:
                    analyzer.tidy()

    # --- shutdown -------------------------------------------------------------------------

    def start_deorbit(self):
        """Graceful shutdown: no new sessions; ``on_idle`` once the last one ends."""
        self.deorbiting = True
        if len(self.table) == 0 and self.on_idle is not None:
            self.on_idle()

    def close_all(self):
        for session in list(self.table):
            self.destroy(session)

    def close_modules(self):
        """At shutdown, after close_all: modules close their files and sockets."""
        if self.modules is not None:
            self.modules.close()
            self.modules = None


_HANDLERS = {
    c.Version: "handle_version",
    c.FeatureCheck: "handle_feature_check",
    c.Update: "handle_update",
    c.Delete: "handle_delete",
    c.Play: "handle_play",
    c.StopPlay: "handle_stop_play",
    c.Record: "handle_record",
    c.Copy: "handle_copy",
    c.StopRecord: "handle_stop_record",
    c.Query: "handle_query",
    c.Info: "handle_info",
    c.DeleteAll: "handle_delete_all",
    c.Stats: "handle_stats",
}

def _parse_udp_target(target):
    """``udp:HOST:PORT`` -> (IPv4 address, port). Raises CopyFailed."""
    host, sep, port = target[4:].rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise CopyFailed("a remote copy target must be udp:HOST:PORT")
    try:
        address = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
    except (socket.gaierror, UnicodeError):
        raise CopyFailed("cannot resolve %s as an IPv4 address" % host) from None
    return address, int(port)


def _same_ip(a, b):
    if a == b:
        return True
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, a) == socket.inet_pton(family, b)
        except (OSError, UnicodeError):     # UnicodeError: l[...] with bytes that are not UTF-8
            continue
    return False
