"""makeann: turn one audio file into pre-encoded prompt files for ``P``.

    makeann [-l limit [-L]] [-v] [raw options] infile [outfile_template]

Writes ``TEMPLATE.0`` (PCMU), ``.3`` (GSM), ``.18`` (G.729), ``.8`` (PCMA)
and ``.9`` (G.722): headerless codec frames, byte for byte what upstream's
makeann writes for the same input (makeann.md). A codec whose library is
missing is skipped with a warning naming the Debian package.

Input: a headerless file is upstream's format, signed 16-bit little-endian
8 kHz mono, unless the raw options say otherwise (``--rate``, ``--channels``,
``--format``, ``--endian``). A file with a sound-file header (WAV, FLAC, OGG,
AIFF, ...) is decoded. Any rate and channel count is mixed down to mono and
resampled to 8 kHz; G.722 gets 16 kHz audio when the source has more than
8 kHz, so wide-band prompts keep their upper band.
"""

import getopt
import os
import sys
from collections import namedtuple

# NumPy and the codecs: imported by load_audio_modules() when a run needs
# them, not for -h or a usage error.
np = codecs = Resampler = None


def load_audio_modules():
    global np, codecs, Resampler
    if np is None:
        import numpy as np
        from ..media import codecs
        from ..media.resample import Resampler

USAGE = "usage: makeann [-l limit [-L]] infile [outfile_template]\n"
HELP = USAGE + """
Encodes infile into outfile_template.0 (PCMU), .3 (GSM), .18 (G.729), .8 (PCMA)
and .9 (G.722), the prompt files rtpproxy's P command plays; the template
defaults to infile.

  -h, --help    show this help and exit
  -l limit      encode exactly this many 8 kHz samples of input
  -L            loop: rewind the input until the limit is reached (needs -l)
  -v            G.729 voice activity detection (debugging only)
  --rate N      a headerless input has N samples per second (default 8000)
  --channels N  ... N interleaved channels (default 1)
  --format F    ... sample format F: PCM_16 (default), PCM_S8, PCM_U8, PCM_24,
                PCM_32, FLOAT, DOUBLE, ULAW, ALAW
  --endian E    ... byte order little (default) or big
Files with a header (WAV, FLAC, OGG, AIFF, ...) are read as what they say they are.
"""

BLOCK = 160                      # samples per encoding block (20 ms at 8 kHz)
ENCODE_ORDER = (18, 3, 9, 0, 8)  # slowest first, so the two threads finish together
PARALLEL_MIN_SAMPLES = 8000 * 30  # below half a minute of input threads are not worth it
VAD_WARNING = ("VAD enable (-v) is for debugging purposes only, produced stream may not "
               "play correctly")
# Headers of sound-file containers: a file that starts with one of these and
# cannot be decoded is an error, not headerless audio.
CONTAINER_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b".snd", b"caff",
                   b"riff", b"wvpk", b"ID3")
RAW_FORMATS = ("PCM_16", "PCM_S8", "PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW",
               "ALAW")
NARROW = 8000
WIDE = 16000


class MakeannError(Exception):
    """A fatal error: the message is printed after ``makeann: ``, exit code 1."""


class UsageError(Exception):
    pass


Options = namedtuple("Options", "limit loop vad infile template raw")
RawFormat = namedtuple("RawFormat", "rate channels subtype endian")
DEFAULT_RAW = RawFormat(NARROW, 1, "PCM_16", "little")


# --- command line -------------------------------------------------------------

def _atoi(text):
    """C atoi(): optional blanks and sign, then leading digits; 0 when none."""
    s = text.lstrip(" \t\n\v\f\r")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    digits = len(s) - len(s.lstrip("0123456789"))
    return sign * int(s[:digits]) if digits else 0


def _positive(option, text):
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if value <= 0:
        raise MakeannError("%s %s: give a whole number greater than zero." % (option, text))
    return value


def parse_args(argv):
    try:
        opts, args = getopt.gnu_getopt(argv, "l:Lvh", ["rate=", "channels=", "format=", "endian=",
                                                     "help"])
    except getopt.GetoptError as exc:
        raise MakeannError("%s; makeann -h lists the options." % _getopt_reason(exc)) from None
    limit, loop, vad = None, False, False
    raw = {}
    for opt, value in opts:
        if opt == "-l":
            limit = _atoi(value)
            if limit <= 0:
                raise MakeannError("limit parameter have to be a number greater than zero")
        elif opt == "-L":
            loop = True
        elif opt == "-v":
            vad = True
        elif opt in ("-h", "--help"):
            raise UsageError(HELP)
        elif opt == "--rate":
            raw["rate"] = _positive(opt, value)
        elif opt == "--channels":
            raw["channels"] = _positive(opt, value)
        elif opt == "--format":
            if value.upper() not in RAW_FORMATS:
                raise MakeannError("--format %s: not a raw sample format; use one of %s."
                                   % (value, ", ".join(RAW_FORMATS)))
            raw["subtype"] = value.upper()
        elif opt == "--endian":
            if value not in ("little", "big"):
                raise MakeannError("--endian %s: use little or big." % value)
            raw["endian"] = value
    if loop and limit is None:
        raise MakeannError("limit have to be specified in the loop mode")
    if not 1 <= len(args) <= 2:
        raise UsageError()
    template = args[1] if len(args) == 2 else args[0]
    return Options(limit, loop, vad, args[0], template,
                   DEFAULT_RAW._replace(**raw) if raw else None)


def _getopt_reason(exc):
    """getopt's error, with the option written as it was given."""
    opt = exc.opt
    if not opt:
        return str(exc)
    name = ("--" if len(opt) > 1 else "-") + opt
    if "requires argument" in exc.msg:
        return "option %s needs a value" % name
    if "must not have an argument" in exc.msg:
        return "option %s takes no value" % name
    if "not a unique prefix" in exc.msg:
        return "option %s is ambiguous" % name
    return "unknown option %s" % name


# --- reading the input --------------------------------------------------------------

Audio = namedtuple("Audio", "narrow wide")   # int16 at 8 kHz; int16 at 16 kHz or None


def read_input(path, raw):
    """The input as 8 kHz int16 (and 16 kHz for G.722 when the source is wider)."""
    load_audio_modules()
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise MakeannError("can't open %s for reading: %s" % (path, exc.strerror)) from None
    if raw == DEFAULT_RAW or (raw is None and not _has_container(path, head)):
        # upstream's format, read exactly as upstream does (a trailing odd byte is ignored)
        with open(path, "rb") as f:
            data = f.read()
        if raw is None and looks_like_text(data):
            raise MakeannError("%s is text, not audio; give a sound file (WAV, FLAC, OGG, ...) or "
                               "headerless 16-bit 8 kHz samples." % path)
        return Audio(np.frombuffer(data[:len(data) & ~1], dtype="<i2").astype(np.int16), None)
    return _decode_sound_file(path, raw)


TEXT_BYTES = frozenset(b"\t\n\r\f" + bytes(range(0x20, 0x7F)))
TEXT_PROBE = 4096


def looks_like_text(data):
    """True when the start of a headerless input is printable text (ASCII or
    UTF-8): as 16-bit samples such bytes would never come from audio (silence
    and quiet passages have zero or 0xFF high bytes), so it is a file given by
    mistake, not a prompt."""
    probe = data[:TEXT_PROBE]
    if not probe:
        return False
    if all(b in TEXT_BYTES for b in probe):
        return True
    try:
        text = probe.decode("utf-8")
    except UnicodeDecodeError:
        if len(data) <= TEXT_PROBE:
            return False
        try:                                # the probe may cut a character in two
            text = probe[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\t\n\r\f" for ch in text) and any(
        ch.isalpha() for ch in text)


def _has_container(path, head):
    import soundfile
    try:
        info = soundfile.info(path)
    except Exception:
        if head.startswith(CONTAINER_MAGIC):
            raise MakeannError("can't read %s: it looks like a sound file but its audio cannot "
                               "be decoded; check that it is complete." % path) from None
        return False
    # libsndfile guesses headerless formats from some extensions (.gsm, .vox, .au):
    # like upstream, treat those as headerless 16-bit audio
    return info.format != "RAW"


def _decode_sound_file(path, raw):
    import soundfile
    kwargs = {}
    if raw is not None:
        kwargs = dict(format="RAW", samplerate=raw.rate, channels=raw.channels,
                      subtype=raw.subtype, endian=raw.endian.upper())
    try:
        with soundfile.SoundFile(path, **kwargs) as f:
            rate, channels = f.samplerate, f.channels
            if rate == NARROW and channels == 1 and f.subtype == "PCM_16":
                return Audio(f.read(dtype="int16"), None)     # nothing to convert
            narrow = _Converter(rate, NARROW)
            wide = _Converter(rate, WIDE) if rate > NARROW else None
            for block in f.blocks(blocksize=1 << 16, dtype="float64", always_2d=True):
                mono = block.mean(axis=1) * 32768.0
                narrow.feed(mono)
                if wide is not None:
                    wide.feed(mono)
    except MakeannError:
        raise
    except Exception as exc:
        raise MakeannError("can't read %s as audio: %s" % (path, _reason(exc))) from None
    return Audio(narrow.result(), wide.result() if wide is not None else None)


def _reason(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.rstrip(".")


class _Converter:
    """Mono float chunks at ``rate`` -> int16 at ``target`` (resampled if needed)."""

    def __init__(self, rate, target):
        self.resampler = Resampler(rate, target) if rate != target else None
        self.parts = []

    def feed(self, mono):
        self.parts.append(self.resampler.feed(mono) if self.resampler else mono)

    def result(self):
        if self.resampler is not None:
            self.parts.append(self.resampler.flush())
        signal = np.concatenate(self.parts) if self.parts else np.zeros(0)
        return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


# --- the encoding loop (makeann.md section 4) ------------------------------------------

def block_positions(total, limit, loop):
    """For each encoding block, the input sample positions it reads, as upstream does.

    Blocks of up to 160 samples; with a limit the last one is shorter; in loop
    mode a block that hits the end rewinds once and continues from the start.
    """
    load_audio_modules()
    blocks = []
    pos, remaining = 0, limit
    while True:
        want = BLOCK if remaining is None or remaining > BLOCK else remaining
        got = min(want, total - pos)
        idx = [np.arange(pos, pos + got)]
        pos += got
        if got < want and loop:
            more = min(want - got, total)
            idx.append(np.arange(0, more))
            got += more
            pos = more
        if got == 0:
            break
        blocks.append(np.concatenate(idx) if len(idx) > 1 else idx[0])
        if remaining is not None:
            remaining -= got
            if remaining <= 0:
                break
    return blocks


def read_order(total, limit, loop):
    """(positions, block lengths): the input samples in the order the blocks read
    them. Unless a loop-mode file is shorter than a block, that is simply the
    input (repeated in loop mode) up to the limit, in 160-sample blocks."""
    load_audio_modules()
    if loop and total < BLOCK:
        blocks = block_positions(total, limit, loop)
        if not blocks:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(blocks), np.array([len(b) for b in blocks])
    count = limit if loop else min(total, limit if limit is not None else total)
    lengths = np.full(-(-count // BLOCK), BLOCK)
    if count % BLOCK:
        lengths[-1] = count % BLOCK
    return np.arange(count) % max(total, 1), lengths


def encode(audio, limit, loop, vad, pts):
    """{pt: bytes} for the payload types in ``pts``."""
    load_audio_modules()
    total = len(audio.narrow)
    if not (loop and total < BLOCK):
        # blocks of 160 but the last: the input (repeated in loop mode) up to
        # the count, zero-padded to a whole block; no index arrays needed
        count = limit if loop else min(total, limit if limit is not None else total)
        lengths = np.full(-(-count // BLOCK), BLOCK)
        if count % BLOCK:
            lengths[-1] = count % BLOCK
        if count == 0:
            return {pt: b"" for pt in pts}
        sequential = np.resize(audio.narrow, count) if count > total else audio.narrow[:count]
        narrow = np.zeros(len(lengths) * BLOCK, dtype=np.int16)
        narrow[:count] = sequential
        wide = None
        if audio.wide is not None:
            wide16 = np.zeros(2 * total, dtype=np.int16)
            n = min(len(wide16), len(audio.wide))
            wide16[:n] = audio.wide[:n]
            wide = np.zeros(2 * len(narrow), dtype=np.int16)
            wide[:2 * count] = np.resize(wide16, 2 * count) if count > total else wide16[:2 * count]
        return _encode_blocks(sequential, narrow, wide, lengths, vad, pts)
    real, lengths = read_order(total, limit, loop)
    if len(real) == 0:
        return {pt: b"" for pt in pts}
    # every block zero-padded to 160 samples (-1 marks padding): what the frame
    # codecs encode
    padded = np.full(len(lengths) * BLOCK, -1, dtype=np.int64)
    block_of = np.repeat(np.arange(len(lengths)), lengths)
    first_of_block = np.cumsum(lengths) - lengths
    padded[block_of * BLOCK + np.arange(len(real)) - first_of_block[block_of]] = real
    narrow = _take(audio.narrow, padded)
    wide = None
    if audio.wide is not None:
        wide16 = np.zeros(2 * len(audio.narrow), dtype=np.int16)
        n = min(len(wide16), len(audio.wide))
        wide16[:n] = audio.wide[:n]
        pairs = np.stack([2 * padded, 2 * padded + 1], axis=1).ravel()
        pairs[np.repeat(padded < 0, 2)] = -1
        wide = _take(wide16, pairs)
    return _encode_blocks(audio.narrow[real], narrow, wide, lengths, vad, pts)


def _encode_blocks(sequential, narrow, wide, lengths, vad, pts):
    """``sequential``: the samples in read order (G.711 takes them as they are);
    ``narrow``/``wide``: every block zero-padded to 160 samples (the frame codecs)."""
    if vad and 18 in pts:
        return _encode_with_vad_quirk(narrow, wide, lengths, pts)

    def one(pt):
        if pt in (0, 8):
            return codecs.get_codec(pt).encode(sequential)
        if pt == 9 and wide is not None:
            return codecs.get_codec(9, sample_rate=WIDE).encode(wide)
        return codecs.get_codec(pt).encode(narrow)

    # The frame codecs are C libraries called through ctypes, which lets go of
    # the GIL: on two cores G.729 (the slowest by far) runs beside the others.
    order = sorted(pts, key=lambda pt: ENCODE_ORDER.index(pt) if pt in ENCODE_ORDER else 99)
    if len(order) < 2 or len(sequential) < PARALLEL_MIN_SAMPLES or (os.cpu_count() or 1) < 2:
        return {pt: one(pt) for pt in order}
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {pt: pool.submit(one, pt) for pt in order}
        return {pt: futures[pt].result() for pt in pts}


def _take(signal, positions):
    """signal[positions], with position -1 giving 0 (block padding)."""
    out = signal[np.maximum(positions, 0)]
    out[positions < 0] = 0
    return out


def _encode_with_vad_quirk(narrow, wide, lengths, pts):
    """``-v``: upstream writes G.729 frames through a 160-byte scratch buffer
    shared with the other encoders and emits its first len0+len1 bytes, so
    short (SID/empty) frames carry stale bytes (makeann.md section 4)."""
    coders = {pt: (codecs.get_codec(9, sample_rate=WIDE) if pt == 9 and wide is not None
                   else codecs.get_codec(pt, vad=(pt == 18))) for pt in pts}
    out = {pt: [] for pt in pts}
    scratch = bytearray(BLOCK)
    for i, n in enumerate(lengths):
        block = narrow[i * BLOCK:(i + 1) * BLOCK]
        for pt in codecs.ENCODABLE_PTS:
            if pt not in coders:
                continue
            if pt in (0, 8):
                data = coders[pt].encode(block[:n])
            elif pt == 9 and wide is not None:
                data = coders[pt].encode(wide[2 * i * BLOCK:2 * (i + 1) * BLOCK])
            elif pt == 18:
                f0 = coders[pt].encode_frame(block[:80])
                f1 = coders[pt].encode_frame(block[80:])
                scratch[0:len(f0)] = f0
                scratch[10:10 + len(f1)] = f1
                out[pt].append(bytes(scratch[:len(f0) + len(f1)]))
                continue
            else:
                data = coders[pt].encode(block)
            scratch[0:len(data)] = data
            out[pt].append(data)
    return {pt: b"".join(parts) for pt, parts in out.items()}


# --- main ----------------------------------------------------------------------------------

def run(argv, debug=False):
    opts = parse_args(argv)
    load_audio_modules()
    if opts.vad:
        sys.stderr.write("makeann: %s\n" % VAD_WARNING)
    pts = []
    for pt in codecs.ENCODABLE_PTS:
        reason = codecs.unavailable_reason(pt)
        if reason is None:
            pts.append(pt)
        else:
            sys.stderr.write("makeann: skipping %s.%d: %s\n" % (opts.template, pt, reason))
    audio = read_input(opts.infile, opts.raw)
    if len(audio.narrow) == 0:
        raise MakeannError("%s contains no audio samples; give a non-empty sound file."
                           % opts.infile)
    paths = {pt: "%s.%d" % (opts.template, pt) for pt in pts}
    files = {}
    try:
        for pt in pts:
            try:
                files[pt] = open(paths[pt], "wb")
            except OSError as exc:
                raise MakeannError("can't open %s for writing: %s" % (paths[pt], exc.strerror)) from None
        encoded = encode(audio, opts.limit, opts.loop, opts.vad, pts)
        for pt in pts:
            files[pt].write(encoded[pt])
            if debug:
                sys.stderr.write("makeann: %s: %d bytes\n" % (paths[pt], len(encoded[pt])))
    finally:
        for f in files.values():
            f.close()
    return 0


def main(argv=None, debug=False):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(argv, debug)
    except UsageError as exc:
        if exc.args:                       # --help
            sys.stdout.write(exc.args[0])
            return 0
        sys.stderr.write(USAGE)
        return 1
    except MakeannError as exc:
        sys.stderr.write("makeann: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        return 130


def main_debug():
    """makeann_debug: the same tool with debug logging, a report of the files it
    wrote and a profile written on exit (debugtools)."""
    from .. import debugtools
    return debugtools.run_debug(main, "makeann_debug", debug=True)


if __name__ == "__main__":
    sys.exit(main())
