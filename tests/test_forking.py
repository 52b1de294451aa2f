"""The C sub-command: ``U cid2 ... f2 t2 && C cid1 f1 t1`` forks both streams
of session cid1 into cid2 (capability 20260309, control-protocol.md 6.2)."""

import os
import subprocess
import sys

from helpers import TOP, Endpoint
from recording_helpers import RTCP_REPORT, Call, HOST, endpoint_pair


def test_c_subcommand_forks_both_streams_into_the_new_session(rtpproxy):
    d = rtpproxy("-l", HOST, "--workers", "1")
    assert d.command("VF 20260309") == "1"
    call = Call(d, "cid1", "f1", "t1")
    # what the new session's parties are: its U address and its L address
    srs_u, srs_u_rtcp = endpoint_pair()
    srs_l = Endpoint()
    reply = d.command("U cid2 %s %d f2 t2 && L %s %d && C cid1 f1 t1"
                      % (HOST, srs_u.port, HOST, srs_l.port))
    to_u, to_l = (int(part.split()[0]) for part in reply.split(" && "))   # C succeeds silently
    # the plain form replies as a plain U (a failed C would add " && -1")
    assert d.command("U cid3 %s 4000 f3 t3 && C cid1 f1 t1" % HOST).endswith(" " + HOST)
    assert d.command("U cid4 %s 4000 f4 t4 && C nosuch f1 t1" % HOST).endswith(" && -1")
    d.command("D cid3 f3")
    from_caller, from_callee = call.talk(3)
    # each party of cid2 receives what the matching party of cid1 receives,
    # sent from cid2's own ports
    assert srs_l.drain(0.2) == [(p, (HOST, to_u)) for p in from_caller]
    assert srs_u.drain(0.2) == [(p, (HOST, to_l)) for p in from_callee]
    # RTCP too
    assert call.caller_says(RTCP_REPORT, rtcp=True) == RTCP_REPORT
    assert call.callee_says(RTCP_REPORT, rtcp=True) == RTCP_REPORT
    assert srs_u_rtcp.recv(1.0)[0] == RTCP_REPORT
    # the fork ends with the session it feeds; cid1 goes on
    assert d.command("D cid2 f2") == "0"
    call.talk(2)
    assert srs_l.drain(0.2) == [] and srs_u.drain(0.05) == []
    # C naming the tags the other way round swaps the sides
    reply = d.command("U cid6 %s %d f6 t6 && L %s %d && C cid1 t1 f1"
                      % (HOST, srs_u.port, HOST, srs_l.port))
    to_u, to_l = (int(part.split()[0]) for part in reply.split(" && "))
    from_caller, from_callee = call.talk(2)
    assert srs_u.drain(0.2) == [(p, (HOST, to_l)) for p in from_caller]
    assert srs_l.drain(0.05) == [(p, (HOST, to_u)) for p in from_callee]
    assert d.command("D cid6 f6") == "0"
    # and a fork from a session that ends leaves the other session alone
    assert d.command("U cid5 %s %d f5 t5 && C cid1 f1 t1" % (HOST, srs_u.port)).endswith(" " + HOST)
    assert d.command("D cid1 f1") == "0"
    assert d.command("Q cid5 f5 t5") == "60 0 0 0 0"


def test_v_lists_stream_forking():
    out = subprocess.run([sys.executable, "-m", "rtpproxy_py", "-v"], capture_output=True,
                         text=True, timeout=30, cwd=TOP, env=dict(os.environ, PYTHONPATH=TOP))
    assert "Extension 20260309:" in out.stdout


def test_c_subcommand_with_workers_joins_the_forked_calls_worker(rtpproxy):
    """With --workers the new Call-ID's session is made on the worker that
    holds the forked call, whatever its own Call-ID hashes to."""
    d = rtpproxy("-l", HOST, "--workers", "2")
    from rtpproxy_py.workers import worker_for
    # a pair of Call-IDs that hash to different workers
    other = next("fork%d" % k for k in range(100) if worker_for("fork%d" % k, 2) != worker_for("cid1", 2))
    call = Call(d, "cid1", "f1", "t1")
    srs_u, srs_l = Endpoint(), Endpoint()
    reply = d.command("U %s %s %d f2 t2 && L %s %d && C cid1 f1 t1"
                      % (other, HOST, srs_u.port, HOST, srs_l.port))
    assert " && -1" not in reply, reply
    to_u, to_l = (int(part.split()[0]) for part in reply.split(" && "))
    from_caller, from_callee = call.talk(3)
    assert srs_l.drain(0.2) == [(p, (HOST, to_u)) for p in from_caller]
    assert srs_u.drain(0.2) == [(p, (HOST, to_l)) for p in from_callee]
    # later commands on the new Call-ID reach the same worker
    assert d.command("Q %s f2 t2" % other).startswith("60 ")
    assert d.command("D %s f2" % other) == "0"
    assert d.command("Q %s f2 t2" % other) == "E50"
