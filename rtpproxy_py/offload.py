"""--kernel_offload: the kernel relays the RTP of calls that need nothing done
per packet, so those packets never reach this program.

When both parties of a session's RTP are latched and no feature looks at
their packets (``blocker`` says why not otherwise), the relay puts the pair
in the maps of an nftables table of its own (``rtpproxy_<pid>``). Each party's
packets to its relay port are then translated by conntrack NAT: the
destination becomes the other party (DNAT), the source the relay port that
party expects (SNAT). Packets of offloaded pairs are tracked in conntrack
zone ZONE, so the entries that user-space relaying created (zone 0) stay as
they are: no entry is deleted when a pair is handed over, and packets already
queued in the relay's sockets are still relayed by the program without
spoiling the kernel's translation. Nothing is lost in the switch.

The compiled fast path (fastpath.py) is the tier between the program's
readers and the kernel, handed streams over by the same calls
(Relay._media_changed asks both); both ask the stream
(``Stream.user_space_reason(tier)``) rather than list features.

A feature that needs a stream's packets takes it back: every per-packet
feature (media/feature.py: RTP analysis, re-packetizing, a prompt, recording
and copying taps, module taps and filters) says for itself whether the
kernel may relay its stream (a tap marked ``kernel_counts``, --metrics' byte
count, may: the kernel's counters give the bytes too), and so do the
session's latching rules (strict latching may not); RTP analysis is on by
default (--kernel_offload alone turns it off, see config._rtp_analysis). A
reason without a feature object is ``stream.veto_offload(reason)``, later
``stream.allow_offload(reason)``. Each change tells the session
(``Session.media_changed``), and the relay re-decides at once.

The kernel counts each direction's packets; the counts are read once a
second (and before Q, and before an idle session is expired) and added to the
streams' counters, idle clock and latched sequence number, so Q, I, G,
time-outs and notifications work as when the program relays.

The table is deleted at exit; a table whose process is gone (a crashed
daemon, a killed worker) is deleted when the next one starts.
"""

import logging
import os
import re
import socket
import time

import gevent

from .media.feature import KERNEL

log = logging.getLogger("rtpproxy")

ZONE = 29296                # conntrack zone of kernel-relayed packets ("rp")
TABLE_PREFIX = "rtpproxy_"
POLL_INTERVAL = 1.0         # kernel counters are read this often...
REFRESH_AGE = 0.1           # ...and on demand when older than this
_KEY = "ipv4_addr . inet_service . ipv4_addr . inet_service"

TABLE = """\
table ip {name} {{
    comment "rtpproxy-py --kernel_offload, pid {pid}"
    set offloaded {{ type {key}; comment "party -> relay port: tracked in zone {zone}"; }}
    map to_peer {{ type {key} : ipv4_addr . inet_service; comment "party -> relay port: DNAT to the other party"; }}
    map from_relay {{ type {key} : ipv4_addr . inet_service; comment "party -> other party: SNAT to the relay port"; }}
    set flows {{ type {key}; counter; comment "packets relayed by the kernel, per direction"; }}
    chain zone_in {{ type filter hook prerouting priority raw; ip saddr . udp sport . ip daddr . udp dport @offloaded ct zone set {zone}; }}
    chain zone_out {{ type filter hook output priority raw; ip saddr . udp sport . ip daddr . udp dport @offloaded ct zone set {zone}; }}
    chain dnat_in {{ type nat hook prerouting priority dstnat; dnat ip to ip saddr . udp sport . ip daddr . udp dport map @to_peer; }}
    chain dnat_out {{ type nat hook output priority -100; dnat ip to ip saddr . udp sport . ip daddr . udp dport map @to_peer; }}
    chain snat_out {{ type nat hook postrouting priority srcnat; snat ip to ip saddr . udp sport . ip daddr . udp dport map @from_relay; }}
    chain snat_in {{ type nat hook input priority 100; snat ip to ip saddr . udp sport . ip daddr . udp dport map @from_relay; }}
    chain count_in {{ type filter hook prerouting priority -50; ct status dnat ip saddr . udp sport . ip daddr . udp dport @flows; }}
    chain count_out {{ type filter hook output priority -50; ct status dnat ip saddr . udp sport . ip daddr . udp dport @flows; }}
}}
"""


def blocker(session):
    """Why the session's RTP must stay in the program (None: the kernel may
    relay it). What the packets' addresses allow is checked here; the rest
    the streams answer (their latching rules and per-packet features)."""
    if session.closed:
        return "ended"
    reason = session.latching.user_space_reason(KERNEL)
    if reason is not None:
        return reason
    for stream in session.rtp:
        if stream.port is None or stream.rem_addr is None:     # no sockets (ports_bound) or no party
            return "not set up"
        if not stream.latched or stream.asymmetric:
            return "not latched" if not stream.latched else "asymmetric"
        if len(stream.rem_addr) != 2 or stream.local.ipv6:
            return "IPv6"
        reason = stream.user_space_reason(KERNEL)
        if reason is not None:
            return reason
    return None


class Flow(tuple):
    """(party 0, relay port of stream 0, party 1, relay port of stream 1), each
    (ip, port): party k sends to its relay port, the relay sends it the other
    party's packets from there."""

    __slots__ = ()

    def __new__(cls, a0, r0, a1, r1):
        return tuple.__new__(cls, (a0, r0, a1, r1))

    def elements(self):
        """nft element lists: offloaded, to_peer, from_relay, flows."""
        a0, r0, a1, r1 = self
        return ("%s, %s" % (_key(a0, r0), _key(a1, r1)),
                "%s : %s, %s : %s" % (_key(a0, r0), _addr(a1), _key(a1, r1), _addr(a0)),
                "%s : %s, %s : %s" % (_key(a0, a1), _addr(r1), _key(a1, a0), _addr(r0)),
                "%s, %s" % (_key(a0, a1), _key(a1, a0)))

    def counter_keys(self):
        """Kernel counter keys of party 0's packets and party 1's."""
        a0, _, a1, _ = self
        return (a0 + a1, a1 + a0)


def _addr(address):
    return "%s . %d" % address


def _key(source, destination):
    return "%s . %d . %s . %d" % (source + destination)


def flow_of(session, route_source):
    """The Flow of an offloadable session. The relay port's address is the
    bound one, or for a wildcard listen address the one the kernel sends from
    to reach the party (as the program's own sends do)."""
    ends = []
    for stream in session.rtp:
        local = stream.local.host
        if stream.local.wildcard:
            local = route_source(stream.rem_addr[0], socket.AF_INET)
            if local is None:
                return None
        ends.append((tuple(stream.rem_addr), (local, stream.port)))
    return Flow(ends[0][0], ends[0][1], ends[1][0], ends[1][1])


def credit(stream, packets, now, payload=0):
    """Packets (and ``payload`` UDP payload bytes) the kernel relayed for
    ``stream``: counted as if the program had."""
    stream.npkts_in += packets
    stream.totals.npkts_rcvd += packets
    stream.nrelayed += packets
    stream.nbytes_in += payload
    stream.last_rx = now
    if stream.ssrc is not None:
        # the latched sequence number keeps up, for a NAT re-latch later
        stream.seq = (stream.seq + packets) & 0xFFFF


_COUNTER = re.compile(r"([\d.]+) \. (\d+) \. ([\d.]+) \. (\d+) counter packets (\d+) bytes (\d+)")
_IP_UDP_HEADERS = 28        # nft counts IPv4 packet bytes; the program counts UDP payload


def parse_counters(text):
    """{(src ip, src port, dst ip, dst port): (packets, UDP payload bytes)}
    from ``list set ... flows``."""
    return {(a, int(b), c, int(d)): (int(n), int(size) - _IP_UDP_HEADERS * int(n))
            for a, b, c, d, n, size in _COUNTER.findall(text)}


class _Offloaded:
    __slots__ = ("flow", "counted")

    def __init__(self, flow):
        self.flow = flow
        self.counted = [(0, 0), (0, 0)]   # kernel (packets, bytes) already credited, per party


class KernelOffload:
    """The nftables table of this process and the sessions in it."""

    def __init__(self, nft, conntrack, clock=time.monotonic, route_source=None):
        self.nft = nft
        self.conntrack = conntrack
        self.clock = clock
        self.route_source = route_source
        self.table = "%s%d" % (TABLE_PREFIX, os.getpid())
        self.sessions = {}          # Session -> _Offloaded
        self.refused = {}           # Session -> Flow nft would not take (a clash)
        self.read_at = float("-inf")
        self.poller = None

    @classmethod
    def start(cls, config, route_source, clock=time.monotonic):
        """A working KernelOffload, or None after saying once why not."""
        from . import netfilter
        why = unusable(config)
        if why is None:
            try:
                nft, conntrack = netfilter.Nftables(), netfilter.Conntrack()
            except OSError as exc:
                why = "nftables or conntrack is not usable here (%s)" % exc
        if why is not None:
            log.warning("--kernel_offload: %s; relaying every stream in user space", why)
            return None
        offload = cls(nft, conntrack, clock, route_source)
        try:
            offload.setup()
        except (netfilter.NftError, OSError) as exc:
            log.warning("--kernel_offload: cannot set up table %s (%s); relaying every stream in "
                        "user space", offload.table, exc)
            return None
        offload.poller = gevent.spawn(offload._poll)
        log.info("--kernel_offload: the kernel relays latched streams (table ip %s)", offload.table)
        return offload

    # --- table ------------------------------------------------------------------

    def setup(self):
        for name in self._stale_tables():
            self._drop_table(name)
            log.warning("--kernel_offload: removed table %s left by a process that is gone", name)
        self.nft.run(TABLE.format(name=self.table, pid=os.getpid(), key=_KEY, zone=ZONE))

    def _stale_tables(self):
        text = self.nft.run("list tables ip")
        stale = []
        for name in re.findall(r"^table ip (%s(\d+))$" % TABLE_PREFIX, text, re.M):
            table, pid = name[0], int(name[1])
            if pid == os.getpid() or not _is_rtpproxy(pid):
                stale.append(table)
        return stale

    def _drop_table(self, name):
        """Delete a table and the kernel's translations of its pairs."""
        text = self.nft.run("list set ip %s offloaded" % name)
        for a, b, c, d in re.findall(r"([\d.]+) \. (\d+) \. ([\d.]+) \. (\d+)", text):
            self.conntrack.delete((a, int(b)), (c, int(d)), ZONE)
        self.nft.run("delete table ip %s" % name)

    def close(self):
        """At exit: no table, no translation left."""
        if self.poller is not None:
            self.poller.kill(block=False)
        for session in list(self.sessions):
            self.remove(session)
        try:
            self._drop_table(self.table)
        except Exception as exc:        # exit anyway; the next start cleans up
            log.error("--kernel_offload: cannot delete table %s: %s", self.table, exc)
        self.nft.close()
        self.conntrack.close()

    # --- sessions ---------------------------------------------------------------

    def update(self, session):
        """Hand the session's RTP to the kernel, take it back, or move it, as
        its state now asks."""
        reason = blocker(session)
        flow = None if reason is not None else flow_of(session, self.route_source)
        current = self.sessions.get(session)
        if current is not None and current.flow == flow:
            return
        if current is not None:
            self.remove(session)
        if flow is None or self.refused.get(session) == flow:
            return
        started = time.monotonic()
        commands = "".join("add element ip %s %s { %s }\n" % (self.table, name, elements)
                           for name, elements in zip(("offloaded", "to_peer", "from_relay", "flows"),
                                                     flow.elements()))
        try:
            self.nft.run(commands)
        except Exception as exc:
            self.refused[session] = flow
            log.info("session %s: the kernel cannot relay it (%s); relaying it here",
                     session.call_id, exc)
            return
        self.refused.pop(session, None)
        self.sessions[session] = _Offloaded(flow)
        log.debug("session %s: kernel relays %s:%d <-> %s:%d (set up in %.2f ms)", session.call_id,
                  flow[0][0], flow[0][1], flow[2][0], flow[2][1], (time.monotonic() - started) * 1000)

    def remove(self, session):
        """Take the session's RTP back into the program (its sockets are open)."""
        self.refused.pop(session, None)
        if session not in self.sessions:
            return
        self.read_counters(REFRESH_AGE)
        offloaded = self.sessions.pop(session)
        flow = offloaded.flow
        commands = "".join("delete element ip %s %s { %s }\n" % (self.table, name, _keys_only(elements))
                           for name, elements in zip(("offloaded", "to_peer", "from_relay", "flows"),
                                                     flow.elements()))
        try:
            self.nft.run(commands)
            # the translation lives in the conntrack entry: end it too
            self.conntrack.delete(flow[0], flow[1], ZONE)
            self.conntrack.delete(flow[2], flow[3], ZONE)
        except Exception as exc:
            log.error("session %s: cannot take it back from the kernel: %s", session.call_id, exc)
        log.debug("session %s: relayed here again", session.call_id)

    def is_offloaded(self, session):
        return session in self.sessions

    # --- counters ----------------------------------------------------------------

    def read_counters(self, max_age=0.0):
        """Credit what the kernel relayed since the last read (if that is older
        than ``max_age``); True if any offloaded stream saw packets."""
        now = self.clock()
        if not self.sessions or now - self.read_at < max_age:
            return False
        self.read_at = now
        try:
            counts = parse_counters(self.nft.run("list set ip %s flows" % self.table))
        except Exception as exc:
            log.error("--kernel_offload: cannot read counters: %s", exc)
            return False
        active = False
        for session, offloaded in self.sessions.items():
            for party, key in enumerate(offloaded.flow.counter_keys()):
                total = counts.get(key)
                counted = offloaded.counted[party]
                if total is None or total[0] <= counted[0]:
                    continue
                credit(session.rtp[party], total[0] - counted[0], now, total[1] - counted[1])
                offloaded.counted[party] = total
                active = True
        return active

    def refresh(self, session):
        """Fresh counters for an offloaded ``session``; True if it saw packets."""
        if session not in self.sessions:
            return False
        before = [s.npkts_in for s in session.rtp]
        self.read_counters(REFRESH_AGE)
        return [s.npkts_in for s in session.rtp] != before

    def _poll(self):
        while True:
            gevent.sleep(POLL_INTERVAL)
            self.read_counters()


def unusable(config):
    """Why --kernel_offload cannot work in this process (None: it can). The
    --workers front end asks first, so the reason is logged once."""
    from . import netfilter
    if config.dup_small:
        return "-2 sends small packets twice, which the kernel cannot"
    if not netfilter.has_net_admin():
        return "it needs CAP_NET_ADMIN (run as root without -u, or give the capability)"
    if _read_sysctl("net/ipv4/ip_forward") != "1":
        return "net.ipv4.ip_forward is 0, so the kernel would not forward between parties"
    try:
        netfilter.Nftables().close()
    except OSError as exc:
        return "libnftables is not usable here (%s); install nftables" % exc
    return None


def _keys_only(elements):
    """'k : v, k : v' -> 'k, k' (delete element takes keys)."""
    return ", ".join(part.split(" : ")[0] for part in elements.split(", "))


def _read_sysctl(name):
    try:
        with open("/proc/sys/" + name) as f:
            return f.read().strip()
    except OSError:
        return None


def _is_rtpproxy(pid):
    """A live rtpproxy process (the owner of a table named after it)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"rtpproxy" in f.read()
    except OSError:
        return False
