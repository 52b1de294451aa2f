#!/usr/bin/env python3
"""makeann: pre-encode a prompt for the relay's P command (see rtpproxy_py/tools/makeann.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rtpproxy_py.tools.makeann import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
