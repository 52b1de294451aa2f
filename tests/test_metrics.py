"""The Prometheus endpoint (--metrics): scraped during a live call, its
figures move; bad addresses are refused with one sentence."""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from prometheus_client.parser import text_string_to_metric_families

from helpers import TOP, Endpoint, free_port, port_range, rtp_packet, wait_for

HOST = "127.0.0.1"


def scrape(port):
    with urllib.request.urlopen("http://%s:%d/metrics" % (HOST, port), timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join("%s=%s" % kv for kv in sorted(sample.labels.items()))
            key = sample.name + ("{%s}" % labels if labels else "")
            samples[key] = sample.value
    return samples


@pytest.mark.parametrize("workers", ["1", "3"])
def test_scrape_during_a_live_call(rtpproxy, workers):
    """With --workers 3 the front end adds up what the workers hold."""
    mport = free_port(socket.SOCK_STREAM)
    d = rtpproxy("-l", HOST, "--rtp_analysis", "--metrics", "%s:%d" % (HOST, mport),
                 "--workers", workers)
    before = scrape(mport)
    assert before["rtpproxy_sessions_active"] == 0
    free_at_start = before["rtpproxy_ports_free"]
    caller, callee = Endpoint(), Endpoint()
    to_callee = int(d.command("U m %s %d ft" % (HOST, caller.port)).split()[0])
    to_caller = int(d.command("L m %s %d ft tt" % (HOST, callee.port)).split()[0])
    assert d.command("L nosuch %s 1 a b" % HOST) == "0"
    assert d.command("Q nosuch a b") == "E50"
    for k in range(50):
        if k != 20:                                          # one lost on the way
            caller.send(rtp_packet(k, 160 * k, 0x1), HOST, to_caller)
        callee.send(rtp_packet(k, 160 * k, 0x2), HOST, to_callee)
        time.sleep(0.002)
    assert len(callee.drain(0.2)) == 49 and len(caller.drain(0.2)) == 50
    live = scrape(mport)
    assert live["rtpproxy_sessions_active"] == 1
    assert live["rtpproxy_sessions_created_total"] == 1
    assert live["rtpproxy_ports_in_use"] == 2
    assert live["rtpproxy_ports_free"] == free_at_start - 2
    assert live["rtpproxy_packets_received_total"] == 99
    assert live["rtpproxy_packets_relayed_total"] == 99
    assert live["rtpproxy_bytes_relayed_total"] == 99 * 172
    assert live["rtpproxy_rtp_packets_lost_total"] == 1
    assert live["rtpproxy_commands_total{result=ok,verb=U}"] == 1
    assert live["rtpproxy_commands_total{result=ok,verb=L}"] == 1
    assert live["rtpproxy_commands_total{result=not_found,verb=L}"] == 1
    assert live["rtpproxy_commands_total{result=E50,verb=Q}"] == 1
    assert live["rtpproxy_command_duration_seconds_count{verb=U}"] == 1
    assert 0 < live["rtpproxy_command_duration_seconds_sum{verb=U}"] < 1
    # the figures move with the call
    for k in range(50, 80):
        caller.send(rtp_packet(k, 160 * k, 0x1), HOST, to_caller)
    assert len(callee.drain(0.2)) == 30
    moved = scrape(mport)
    assert moved["rtpproxy_packets_relayed_total"] == 129
    assert moved["rtpproxy_bytes_relayed_total"] == 129 * 172
    # a packet from a stranger is dropped, bytes and all
    Endpoint().send(rtp_packet(9, 0, 0x99, payload=bytes(100)), HOST, to_caller)
    assert wait_for(lambda: scrape(mport)["rtpproxy_packets_dropped_total"] == 1)
    assert scrape(mport)["rtpproxy_bytes_dropped_total"] == 112
    assert d.command("D m ft tt") == "0"
    after = scrape(mport)
    assert after["rtpproxy_sessions_active"] == 0
    assert after["rtpproxy_sessions_destroyed_total"] == 1
    assert after["rtpproxy_ports_free"] == free_at_start
    # each stream's loss and jitter went into the histograms when the session ended
    assert after["rtpproxy_stream_loss_ratio_count"] == 2
    assert after["rtpproxy_stream_loss_ratio_sum"] == 1 / 80
    assert after["rtpproxy_stream_jitter_seconds_count"] == 2
    assert after["rtpproxy_packets_relayed_total"] == 129   # destroyed sessions still count
    caller.close()
    callee.close()


def test_only_metrics_path_is_served(rtpproxy):
    mport = free_port(socket.SOCK_STREAM)
    rtpproxy("-l", HOST, "--no_rtp_analysis", "--metrics", str(mport))   # a port alone: 127.0.0.1
    try:
        urllib.request.urlopen("http://%s:%d/" % (HOST, mport), timeout=5)
        raise AssertionError("/ answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    samples = scrape(mport)
    assert "rtpproxy_sessions_active" in samples
    # with --no_rtp_analysis there are no analysis figures to show
    assert "rtpproxy_rtp_packets_lost_total" not in samples


def run_bad(*args):
    lo, hi = port_range(4)
    return subprocess.run([sys.executable, "-m", "rtpproxy_py", "-f", "-F", "-p", "/dev/null",
                           "-s", "udp:127.0.0.1:%d" % free_port(), "-m", str(lo), "-M", str(hi)]
                          + list(args), capture_output=True, text=True, timeout=30, cwd=TOP)


def test_bad_metrics_address_is_one_sentence():
    out = run_bad("--metrics", "localhost")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "rtpproxy: --metrics localhost: give the address to serve metrics on as HOST:PORT, "
        "for example --metrics 127.0.0.1:9100."]


def test_metrics_port_in_use_is_one_sentence():
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        out = run_bad("--metrics", "%s:%d" % (HOST, port))
    finally:
        busy.close()
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("rtpproxy: --metrics 127.0.0.1:%d: cannot listen there (Address "
                                  "already in use); choose another address or port." % port)
