"""Finding and loading makeann prompt files for ``P``.

A prompt is read into memory once when ``P`` starts it, so the event loop
never waits on the disk while packets are due. Sessions playing the same
file share one copy: a small cache keyed by the file's identity (device,
inode, size, modification time), so a replaced or rewritten file is read
afresh.
"""

import os
import stat
from collections import OrderedDict

from .player import BytesSource, parse_codec_list

CACHE_BYTES = 64 << 20        # prompts kept for later P commands, in total
_cache = OrderedDict()        # identity -> bytes, least recently used first
_cached_bytes = 0


class PromptFile(BytesSource):
    """A prompt's bytes, and the path they came from (for logs)."""

    def __init__(self, data, path):
        super().__init__(data)
        self.path = path


def _load(fd, info):
    global _cached_bytes
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    data = _cache.get(key)
    if data is not None:
        _cache.move_to_end(key)
        return data
    chunks, left = [], info.st_size
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) <= CACHE_BYTES:
        _cache[key] = data
        _cached_bytes += len(data)
        while _cached_bytes > CACHE_BYTES:
            _, old = _cache.popitem(last=False)
            _cached_bytes -= len(old)
    return data


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
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IsADirectoryError(path)
            return pt, PromptFile(_load(fd, info), path)
        finally:
            os.close(fd)
    return None
