"""Entry points: parse the command line and pick the service to run
(service.py: one process; workers.py: the --workers front end; debug_daemon.py:
rtpproxy_debug). Nothing here serves."""

import sys

from . import capabilities, cli, version_string
from .config import ConfigError


def main(argv=None, debug_build=False):
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = cli.parse_args(argv)
    except cli.UsageError as exc:
        cli.print_usage_error(str(exc))
        return 2
    if opts["--help"]:
        sys.stdout.write(cli.USAGE)
        return 0
    if opts["-V"]:
        print(version_string())
        return 0
    if opts["-v"]:
        sys.stdout.write(capabilities.listing())
        return 0
    if opts["-C"]:
        print("CLOCK_MONOTONIC")
        return 0
    try:
        from .config import build
        config = build(opts, debug_build=debug_build)
        return _service(config, debug_build).run()
    except ConfigError as exc:
        sys.stderr.write("rtpproxy: %s\n" % exc)
        return 1


def main_debug():
    """rtpproxy_debug / rtpproxy-debug: the same daemon with debug logging to
    stderr, loop-health lines, a profile and a leak report (debug_daemon.py)."""
    return main(debug_build=True)


def _service(config, debug_build):
    """The service the configuration asks for (the debug build runs one process)."""
    if debug_build:
        from .debug_daemon import debug_service
        return debug_service(config)
    from .service import LocalMedia, Service
    if config.workers > 1:
        from .workers import WorkersMedia
        return Service(config, WorkersMedia(config))
    return Service(config, LocalMedia(config))
