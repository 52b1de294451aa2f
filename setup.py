"""Builds the optional compiled fast path (rtpproxy_py/_fastpath.c, README
"Compiled fast path"). Without a C compiler or the Python headers the build
says so once and the package installs without it: rtpproxy then relays every
packet in Python, with every feature."""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:       # no compiler: pure Python
            _skipped(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            _skipped(exc)


def _skipped(exc):
    sys.stderr.write("rtpproxy-py: the compiled fast path was not built (%s); installing the "
                     "pure-Python relay (install gcc and python3-dev to build it)\n" % exc)


fastpath = Extension(
    "rtpproxy_py._fastpath",
    sources=["rtpproxy_py/_fastpath.c"],
    # -ffp-contract=off: the jitter arithmetic must round exactly as Python's
    extra_compile_args=["-O2", "-ffp-contract=off", "-fno-strict-aliasing"],
    libraries=["m"],
    optional=True,
)

setup(ext_modules=[fastpath] if sys.platform.startswith("linux") else [],
      cmdclass={"build_ext": OptionalBuildExt})
