"""Finding and reading makeann prompt files for ``P``."""

import os
import stat

from .player import parse_codec_list


class PromptFile:
    """A prompt file read with pread(): sequential reads without a file position,
    and a file truncated while it plays just ends the prompt early."""

    def __init__(self, fd, path):
        self.fd = fd
        self.path = path

    def read(self, offset, size):
        try:
            return os.pread(self.fd, size, offset)
        except OSError:
            return b""

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_prompt(name, codecs):
    """The first of ``name.<pt>`` that exists, for pt in the codec list, as
    (pt, PromptFile); None when none exists. Any failure other than a missing
    file raises OSError (upstream aborts the P command then)."""
    for pt in parse_codec_list(codecs):
        path = "%s.%d" % (name, pt)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(path)
        except OSError:
            os.close(fd)
            raise
        return pt, PromptFile(fd, path)
    return None
