#!/usr/bin/env python3
"""extractaudio: recordings of a call -> one audio file (see rtpproxy_py/tools/extractaudio.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rtpproxy_py.tools.extractaudio import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
