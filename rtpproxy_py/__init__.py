"""rtpproxy-py: a Python drop-in replacement for Sippy's rtpproxy media relay."""

__version__ = "1.0.0"
BUILD_ID = "py"


def version_string():
    """What -V prints: the package version, '.', and a build identifier."""
    return "%s.%s" % (__version__, BUILD_ID)
