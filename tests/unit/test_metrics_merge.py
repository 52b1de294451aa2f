"""metrics.merge_expositions: how the --workers front end adds up its
processes' figures."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from rtpproxy_py.metrics import merge_expositions


def process_figures(commands, latency, jitter_max, ports_free, active):
    registry = CollectorRegistry()
    counter = Counter("rtpproxy_commands", "c", ["verb"], registry=registry)
    for verb, count in commands.items():
        counter.labels(verb).inc(count)
    histogram = Histogram("rtpproxy_command_duration_seconds", "h", ["verb"],
                          buckets=(0.001, 0.01), registry=registry)
    for seconds in latency:
        histogram.labels("U").observe(seconds)
    Gauge("rtpproxy_sessions_active", "g", registry=registry).set(active)

    class Fixed:
        def collect(self):
            yield GaugeMetricFamily("rtpproxy_rtp_jitter_max_seconds", "j", value=jitter_max)
            yield GaugeMetricFamily("rtpproxy_ports_free", "p", value=ports_free)

    registry.register(Fixed())
    return generate_latest(registry)


def samples(families):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_counters_histograms_and_gauges_add_up_except_max_and_free_ports():
    merged = samples(merge_expositions([
        process_figures({"V": 2}, [], 0.0, 100, 0),                 # the front end
        process_figures({"U": 3, "D": 1}, [0.0005, 0.005], 0.004, 96, 2),
        process_figures({"U": 1}, [0.05], 0.010, 97, 1),
    ]))
    assert merged[("rtpproxy_commands_total", (("verb", "V"),))] == 2
    assert merged[("rtpproxy_commands_total", (("verb", "U"),))] == 4
    assert merged[("rtpproxy_commands_total", (("verb", "D"),))] == 1
    bucket = "rtpproxy_command_duration_seconds_bucket"
    assert merged[(bucket, (("le", "0.001"), ("verb", "U")))] == 1
    assert merged[(bucket, (("le", "0.01"), ("verb", "U")))] == 2
    assert merged[(bucket, (("le", "+Inf"), ("verb", "U")))] == 3
    assert merged[("rtpproxy_command_duration_seconds_count", (("verb", "U"),))] == 3
    assert merged[("rtpproxy_sessions_active", ())] == 3
    assert merged[("rtpproxy_rtp_jitter_max_seconds", ())] == 0.010
    assert merged[("rtpproxy_ports_free", ())] == 96


def test_merged_figures_are_valid_exposition_again():
    from prometheus_client.parser import text_string_to_metric_families

    class Merged:
        def collect(self):
            return merge_expositions([process_figures({"U": 1}, [0.002], 0, 5, 1)] * 2)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    again = samples(text_string_to_metric_families(generate_latest(registry).decode()))
    assert again[("rtpproxy_commands_total", (("verb", "U"),))] == 2
    assert again[("rtpproxy_command_duration_seconds_sum", (("verb", "U"),))] == 0.004
