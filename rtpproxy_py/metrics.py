"""Prometheus metrics on ``--metrics HOST:PORT`` (beyond upstream, which has none).

Served at ``http://HOST:PORT/metrics`` by a gevent WSGI server in the event
loop (no threads), with the ``prometheus-client`` package. Sessions, ports,
packets and the RTP analysis totals are read from the dispatcher's state when
Prometheus scrapes (the same sums G makes). Per packet there is only the byte
count: with --metrics every stream gets a tap (session.count_bytes) adding the
size of each packet it accepts; without --metrics, nothing. Commands are
counted as they happen (a counter and a latency observation per command), and
each RTP stream adds its loss ratio and average jitter to two histograms when
its session ends.

With --workers N the front end serves the endpoint: at each scrape it asks
every worker for its figures (its registry as exposition text), adds its
own command counters and adds them all up sample by sample
(merge_expositions): counters, histograms and most gauges add up; the
largest jitter is the largest of all, and free ports are the shared range's.
A worker that died takes its figures along, so counters may go down once
(Prometheus reads that as a counter reset).
"""

import logging
import os
import socket

from .config import ConfigError

# No "_created" twin for every counter (prometheus-client reads this at import).
os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "True")

log = logging.getLogger("rtpproxy")

# Seconds; control commands take tens of microseconds to a few milliseconds.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                   0.05, 0.1, 0.25, 1.0)
LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
JITTER_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)

_VERBS = {
    "Version": "V", "FeatureCheck": "VF", "Delete": "D", "Play": "P", "StopPlay": "S",
    "Record": "R", "Copy": "C", "StopRecord": "N", "Query": "Q", "Info": "I",
    "DeleteAll": "X", "Stats": "G",
}
_LETTERS = set("UuLlDdPpSsRrCcNnQqIiVvXxGg")


def listen(address):
    """Bind the endpoint's socket at startup (before daemonizing and dropping
    privileges); a problem is a ConfigError naming the address."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        shown = "[%s]:%d" % (host, port) if family == socket.AF_INET6 else "%s:%d" % (host, port)
        raise ConfigError("--metrics %s: cannot listen there (%s); choose another address or port."
                          % (shown, exc.strerror)) from None
    return sock


def verb_of(command, data):
    """The command's verb as a label: U, L, D, Q, ... ("other" if unparsable)."""
    if command is not None:
        name = type(command).__name__
        if name == "Update":
            return "L" if command.lookup else "U"
        return _VERBS.get(name, name)
    text = bytes(data).lstrip()
    if text[:1].decode("latin-1") in _LETTERS:
        letter = text[:1].decode("latin-1").upper()
        if letter == "V" and text[1:2] in (b"F", b"f"):
            return "VF"
        return letter
    return "other"


# Gauges that are not added up across --workers processes.
MERGE_BY = {"rtpproxy_rtp_jitter_max_seconds": max,
            "rtpproxy_ports_free": min}      # every worker reports the shared range's


def merge_expositions(texts, merge_by=MERGE_BY):
    """Metric families of several processes' exposition texts, added up
    sample by sample (same name and labels)."""
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    families = {}
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = (
                    Metric(family.name, family.documentation, family.type, family.unit), {})
            combine = merge_by.get(family.name)
            values = merged[1]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in values:
                    values[key] = sample.value
                elif combine is not None:
                    values[key] = combine(values[key], sample.value)
                else:
                    values[key] = values[key] + sample.value
    result = []
    for metric, values in families.values():
        for (name, labels), value in values.items():
            metric.add_sample(name, dict(labels), value)
        result.append(metric)
    return result


class MergedCollector:
    """What the --workers front end serves: ``fetch()`` returns the exposition
    texts of every process (its own first)."""

    def __init__(self, fetch):
        self.fetch = fetch

    def describe(self):
        return []

    def collect(self):
        return merge_expositions(self.fetch())


class Metrics:
    """The registry, the per-command metrics and the HTTP endpoint.
    ``relay`` is None in the --workers front end, which holds no sessions."""

    def __init__(self, dispatcher, relay):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        self.registry = CollectorRegistry(auto_describe=True)
        self.commands = Counter(
            "rtpproxy_commands", "Control commands handled, by verb and result "
            "(ok, or the error code sent; not_found for L on an unknown session)",
            ["verb", "result"], registry=self.registry)
        self.latency = Histogram(
            "rtpproxy_command_duration_seconds", "Time to handle a control command, by verb",
            ["verb"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.loss = Histogram(
            "rtpproxy_stream_loss_ratio", "Per RTP stream at session end: packets lost / "
            "packets the sender sent (sequence tracking)", buckets=LOSS_BUCKETS,
            registry=self.registry)
        self.jitter = Histogram(
            "rtpproxy_stream_jitter_seconds", "Per RTP stream at session end: average RFC 3550 "
            "interarrival jitter", buckets=JITTER_BUCKETS, registry=self.registry)
        if relay is not None:
            self.registry.register(_StateCollector(dispatcher, relay))
        else:
            # the --workers front end sheds too (its UDP sockets' bounds, the
            # kernel's drops): added to what the workers shed
            self.registry.register(_ShedCollector(dispatcher))
        self.server = None

    def exposition(self):
        """This process's figures as exposition text (what a worker sends)."""
        from prometheus_client import generate_latest
        return generate_latest(self.registry)

    def command_done(self, command, data, ok, text, seconds):
        verb = verb_of(command, data)
        if ok:
            result = "ok"
        elif text.startswith("E"):
            result = text.strip()
        else:
            result = "not_found"
        self.commands.labels(verb, result).inc()
        self.latency.labels(verb).observe(seconds)

    def session_ended(self, session):
        for stream in session.rtp:
            analyzer = stream.started_analyzer      # (none yet: nothing was sent)
            if analyzer is None:
                continue
            sent, rcvd, _ = analyzer.sequence_totals()
            if sent:
                self.loss.observe(max(0, sent - rcvd) / sent)
                self.jitter.observe(analyzer.rtpa_javg / analyzer.jitter_clock())

    # --- the endpoint -------------------------------------------------------------

    def serve(self, sock, collector=None):
        """Serve on ``sock`` (from listen()) in the event loop: this registry,
        or only ``collector`` when one is given (the --workers front end)."""
        from gevent import socket as gsocket
        from gevent.pywsgi import WSGIServer
        from prometheus_client import make_wsgi_app
        # the listening socket was bound before the loop existed: make it a
        # cooperative one, or accepted connections would block the loop
        sock = gsocket.socket(sock.family, sock.type, fileno=sock.detach())
        registry = self.registry
        if collector is not None:
            from prometheus_client import CollectorRegistry
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
        metrics_app = make_wsgi_app(registry)

        def app(environ, start_response):
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"metrics are at /metrics\n"]
            return metrics_app(environ, start_response)

        self.server = WSGIServer(sock, app, log=None, error_log=log)
        self.server.start()

    def close(self):
        if self.server is not None:
            self.server.stop(timeout=1)
            self.server = None


def _shed_family(counters):
    from prometheus_client.core import CounterMetricFamily
    return CounterMetricFamily("rtpproxy_commands_shed", "Control commands dropped unanswered "
                               "because the daemon was overloaded (G ncmds_shed)",
                               value=counters.ncmds_shed)


class _ShedCollector:
    """The --workers front end's own shed commands."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher

    def describe(self):
        return []

    def collect(self):
        yield _shed_family(self.dispatcher.counters)


class _StateCollector:
    """Reads the daemon's state when Prometheus scrapes."""

    def __init__(self, dispatcher, relay):
        self.dispatcher = dispatcher
        self.relay = relay

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        d = self.dispatcher
        counters = d.counters
        refresh = getattr(self.relay, "refresh_all_counters", None)
        if refresh is not None:
            refresh()                           # what the C fast path relayed
        sessions = list(d.table)
        packets = counters.packet_totals(d.table)
        media = counters.media_totals(sessions)

        def gauge(name, text, value):
            return GaugeMetricFamily(name, text, value=value)

        def counter(name, text, value):
            return CounterMetricFamily(name, text, value=value)

        ports = self.relay.ports
        yield gauge("rtpproxy_sessions_active", "Sessions now", len(sessions))
        yield counter("rtpproxy_sessions_created", "Sessions created", counters.nsess_created)
        yield counter("rtpproxy_sessions_timed_out", "Sessions ended by idle time-out",
                      counters.nsess_timeout)
        yield counter("rtpproxy_sessions_destroyed", "Sessions ended for any reason",
                      counters.nsess_destroyed)
        yield gauge("rtpproxy_ports_in_use", "Media port pairs (RTP + RTCP) in use",
                    len(ports.in_use))
        yield gauge("rtpproxy_ports_free", "Media port pairs free in the -m/-M range", ports.free)
        yield counter("rtpproxy_packets_received", "RTP and RTCP packets received",
                      packets["npkts_rcvd"])
        yield counter("rtpproxy_packets_relayed", "RTP and RTCP packets relayed",
                      packets["npkts_relayed"])
        yield counter("rtpproxy_packets_dropped", "RTP and RTCP packets not relayed (wrong "
                      "source, no destination yet, prompt playing)", packets["npkts_dropped"])
        yield counter("rtpproxy_packets_played", "Prompt packets sent", packets["npkts_played"])
        yield counter("rtpproxy_bytes_relayed", "RTP and RTCP bytes relayed (UDP payload)",
                      media["bytes_relayed"])
        yield counter("rtpproxy_bytes_dropped", "RTP and RTCP bytes not relayed (UDP payload)",
                      media["bytes_dropped"])
        if d.config.rtp_analysis:
            yield counter("rtpproxy_rtp_packets_expected", "RTP packets senders sent, by sequence "
                          "numbers (rtpa_nsent)", media["rtpa_nsent"])
            yield counter("rtpproxy_rtp_packets_lost", "RTP packets lost on the way to the relay "
                          "(rtpa_nlost)", media["rtpa_nlost"])
            yield counter("rtpproxy_rtp_packets_duplicated", "Duplicate RTP packets received "
                          "(rtpa_ndups)", media["rtpa_ndups"])
            yield counter("rtpproxy_rtp_parse_errors", "Packets on RTP ports that are not RTP "
                          "(rtpa_perrs)", media["rtpa_perrs"])
            jitters = [s.analyzer.rtpa_jlast / s.analyzer.jitter_clock()
                       for session in sessions for s in session.rtp
                       if s.started_analyzer is not None and s.npkts_in]
            yield gauge("rtpproxy_rtp_jitter_max_seconds", "Largest current RFC 3550 jitter over "
                        "the live RTP streams", max(jitters) if jitters else 0.0)
        yield counter("rtpproxy_resizer_packets_in", "Packets taken by re-packetizers",
                      media["npkts_resizer_in"])
        yield counter("rtpproxy_resizer_packets_out", "Packets made by re-packetizers",
                      media["npkts_resizer_out"])
        yield counter("rtpproxy_resizer_packets_discarded", "Packets re-packetizers dropped "
                      "(late, or queued when z was removed)", media["npkts_resizer_discard"])
        yield _shed_family(counters)
        yield gauge("rtpproxy_average_load", "CPU used by the daemon, fraction of one core, "
                    "averaged over about 10 s (I's average load)", counters.average_load)
