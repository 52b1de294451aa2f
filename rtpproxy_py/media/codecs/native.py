"""Loading the codec libraries that come from Debian packages (ctypes).

A missing library makes only its own codec unavailable; the error says which
Debian package brings it.
"""

import ctypes                  # (not ctypes.util: its subprocess and tempfile slow every start)


class CodecUnavailable(RuntimeError):
    """A codec's system library cannot be loaded (or the codec is unknown)."""


_loaded = {}


def load_library(soname, codec, package):
    """ctypes.CDLL(soname), cached; CodecUnavailable naming ``package`` if absent."""
    lib = _loaded.get(soname)
    if lib is not None:
        return lib
    try:
        lib = ctypes.CDLL(soname)
    except OSError:
        raise CodecUnavailable(
            "%s is unavailable: its library %s is not installed; install the Debian package %s "
            "(apt-get install %s)" % (codec, soname, package, package)) from None
    _loaded[soname] = lib
    return lib
