#!/usr/bin/env python3
"""Cost of Stream.on_latched_packet (the packet path's accounting) in the
tree given, e.g. to see what the running G totals add (BENCHMARKS.md
"Control under overload"):

    .venv/bin/python bench/latched_packet_cost.py [TREE ...]     (default: this tree)

Prints the best of 15 x 500,000 calls per tree, in ns per call.
"""
import os
import subprocess
import sys

CODE = r"""
import sys, timeit
sys.path.insert(0, sys.argv[1])
from rtpproxy_py.session import Session
s = Session("c", "f", 0.0, 60)
st = s.rtp[1]; st.rem_addr = ("127.0.0.1", 4000); st.peer.target = ("127.0.0.1", 5000)
st.recheck_at = float("inf")
data = b"\x80" + b"\x00" * 171
f = st.on_latched_packet
best = min(timeit.repeat("f(data, 1.0)", globals=globals(), number=500000, repeat=15))
print("%s %.1f ns" % (sys.argv[1], best / 500000 * 1e9))
"""

trees = sys.argv[1:] or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
for tree in trees:
    subprocess.run([sys.executable, "-c", CODE, tree], check=True)
