"""extractaudio: turn the recordings of a call into one audio file.

    extractaudio [-dsine] [-F FILE_FMT] [-D DATA_FMT] RDIR OUTFILE [LINK ...]
    extractaudio [-dsine] [-F FILE_FMT] [-D DATA_FMT] [-A ANSWER] [-B ORIGINATE]
                 [--alice-crypto SPEC] [--bob-crypto SPEC] OUTFILE [LINK ...]
    extractaudio -S [-A ANSWER] [-B ORIGINATE]
    extractaudio -S RDIR

Upstream's command line and output (extractaudio.md). RDIR is a path prefix:
the inputs are RDIR.a.rtp (answer side, channel A, left in stereo) and
RDIR.o.rtp (originate side, channel B, right). Both the ad hoc and the pcap
recordings the relay writes are read. Beyond upstream: when neither of those
exists but RDIR.pcap does (a single-file recording, -P with Rs or -a), its two
directions are split by the relay port that received them (the lower port is
taken as the answer side: the port a U allocates comes first with -b); a
progress line on a terminal for long recordings; one plain sentence for a
missing, truncated or foreign input.
"""

import base64
import getopt
import os
import sys
import time

from ..media import rtp

# The audio modules need NumPy: imported by load_media() when a run needs
# them, not for -h, a usage error or an unknown format.
call_audio = recording_reader = ChannelSet = RtpStreamStats = StatsInconsistent = None
SIDE_A, SIDE_B = "A", "B"       # call_audio's names for the answer and originate sides


def load_media():
    global call_audio, recording_reader, ChannelSet, RtpStreamStats, StatsInconsistent
    from ..media import call_audio, recording_reader
    from ..media.call_audio import ChannelSet
    from ..media.rtp_stats import RtpStreamStats, StatsInconsistent
    assert (call_audio.SIDE_A, call_audio.SIDE_B) == (SIDE_A, SIDE_B)

PROG = "extractaudio"
USAGE = """usage: extractaudio [-dsine] [-F file_fmt] [-D data_fmt] rdir outfile [link1] ... [linkN]
       extractaudio [-dsine] [-F file_fmt] [-D data_fmt] [-A answer_cap] [-B originate_cap]
                    [--alice-crypto CSPEC] [--bob-crypto CSPEC] outfile [link1] ... [linkN]
       extractaudio -S [-A answer_cap] [-B originate_cap]
       extractaudio -S rdir
  CSPEC is SUITE:KEY, SUITE AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32,
  KEY the 30-byte master key and salt in base64 (40 characters)
"""

# -F names with libsndfile's descriptions, in upstream's order.
FILE_FORMATS = (
    ("wav", "Microsoft WAV format (little endian default)"),
    ("aiff", "Apple/SGI AIFF format (big endian)"),
    ("au", "Sun/NeXT AU format (big endian)"),
    ("raw", "RAW PCM data"),
    ("paf", "Ensoniq PARIS file format"),
    ("svx", "Amiga IFF / SVX8 / SV16 format"),
    ("nist", "Sphere NIST format"),
    ("voc", "VOC files"),
    ("ircam", "Berkeley/IRCAM/CARL"),
    ("w64", "Sonic Foundry's 64 bit RIFF/WAV"),
    ("mat4", "Matlab (tm) V4.2 / GNU Octave 2.0"),
    ("mat5", "Matlab (tm) V5.0 / GNU Octave 2.1"),
    ("pvf", "Portable Voice Format"),
    ("xi", "Fasttracker 2 Extended Instrument"),
    ("htk", "HMM Tool Kit format"),
    ("sds", "Midi Sample Dump Standard"),
    ("avr", "Audio Visual Research"),
    ("wavex", "MS WAVE with WAVEFORMATEX"),
    ("sd2", "Sound Designer 2"),
    ("flac", "FLAC lossless file format"),
    ("caf", "Core Audio File format"),
    ("wve", "Psion WVE format"),
    ("ogg", "Xiph OGG container"),
    ("mpc2k", "Akai MPC 2k"),
    ("rf64", "RF64 WAV file"),
)
DATA_FORMATS = (
    ("pcm_s8", "Signed 8 bit data"),
    ("pcm_16", "Signed 16 bit data"),
    ("pcm_24", "Signed 24 bit data"),
    ("pcm_32", "Signed 32 bit data"),
    ("pcm_u8", "Unsigned 8 bit data (WAV and RAW only)"),
    ("float", "32 bit float data"),
    ("double", "64 bit float data"),
    ("ulaw", "U-Law encoded"),
    ("alaw", "A-Law encoded"),
    ("ima_adpcm", "IMA ADPCM"),
    ("ms_adpcm", "Microsoft ADPCM"),
    ("gsm610", "GSM 6.10 encoding"),
    ("vox_adpcm", "OKI / Dialogix ADPCM"),
    ("g721_32", "32kbs G721 ADPCM encoding"),
    ("g723_24", "24kbs G723 ADPCM encoding"),
    ("g723_40", "40kbs G723 ADPCM encoding"),
    ("dwvw_12", "12 bit Delta Width Variable Word encoding"),
    ("dwvw_16", "16 bit Delta Width Variable Word encoding"),
    ("dwvw_24", "24 bit Delta Width Variable Word encoding"),
    ("dwvw_n", "N bit Delta Width Variable Word encoding"),
    ("dpcm_8", "8 bit differential PCM (XI only)"),
    ("dpcm_16", "16 bit differential PCM (XI only)"),
    ("vorbis", "Xiph Vorbis encoding"),
    ("opus", "Opus encoding"),
)
HELP = USAGE + """
Decodes the recordings rtpproxy made of a call (rdir.a.rtp, the answering side,
and rdir.o.rtp, the originating side, or the -A and -B files), mixes them and
writes outfile; each link is made a hard link to it. RTP statistics of every
input go to standard output.

  -h, --help       show this help and exit
  -A answer_cap    the recording of the answering side (channel A)
  -B originate_cap the recording of the originating side (channel B)
  -s               stereo: A on the left, B on the right (default: mixed to mono)
  -F file_fmt      output container: wav (default), aiff, au, raw, w64, flac, ogg, ...
                   (an unknown name lists them all)
  -D data_fmt      sample encoding: gsm610 (default; ms_adpcm with -s), pcm_16, ulaw,
                   alaw, float, ... (an unknown name lists them all)
  -n               no sync: put each side's audio end to end, without silence for gaps
  -d               delete the input files after a successful run
  -i               run at the lowest priority
  -e               fail when any given input cannot be read (default: when all cannot)
  -S               only print how many records each input holds; write nothing
  --alice-crypto CSPEC  decrypt the SRTP of the A input (pcap recordings)
  --bob-crypto CSPEC    the same for the B input
"""
SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
SRTP_KEY_CHARS = 40
PROGRESS_MIN_BYTES = 4 * 1024 * 1024      # about five minutes of a two-party G.711 call
WRITE_BLOCK = 8000 * 60                   # frames per soundfile write (one minute)
DECRYPTION_FAILED = len(rtp.PARSE_REASONS)   # a reason code after the parser's own


class UsageError(Exception):
    """Bad command line: the message (if any), then the usage text, exit 1."""


class ExtractError(Exception):
    """A fatal error: one sentence after ``extractaudio: ``; ``code`` is the exit status."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class Options:
    def __init__(self):
        self.delete = self.stereo = self.idle = self.nosync = self.strict = self.scan = False
        self.file_fmt = "wav"
        self.data_fmt = None
        self.a_path = self.b_path = None
        self.a_crypto = self.b_crypto = None
        self.rdir = None
        self.outfile = None
        self.links = []


def _format_list(title, table):
    lines = [title]
    lines += ['    "%s"\t- %s' % (name, text) for name, text in table]
    return "\n".join(lines) + "\n"


def parse_crypto(spec):
    """``SUITE:BASE64`` -> (suite, 30-byte key). Raises ExtractError."""
    suite, sep, key = spec.partition(":")
    if not sep:
        raise ExtractError("crypto spec %r: expected SUITE:KEY, for example "
                           "AES_CM_128_HMAC_SHA1_80:<40 base64 characters>" % spec)
    if suite.upper() not in SRTP_SUITES:
        raise ExtractError("crypto spec %r: unknown suite %r; use %s" % (
            spec, suite, " or ".join(SRTP_SUITES)))
    if any(ch not in BASE64_CHARS for ch in key):
        raise ExtractError("error: padding in base64 unexpected (crypto key %r)" % key)
    if len(key) != SRTP_KEY_CHARS:
        raise ExtractError("invalid length of base64 key encoding, expected %d, supplied %d"
                           % (SRTP_KEY_CHARS, len(key)))
    return suite.upper(), base64.b64decode(key)


def parse_args(argv):
    try:
        opts, args = getopt.getopt(argv, "dsineF:D:A:B:Sh", ["alice-crypto=", "bob-crypto=", "help"])
    except getopt.GetoptError as exc:
        raise UsageError("%s" % exc) from None
    o = Options()
    for flag, value in opts:
        if flag in ("-h", "--help"):
            raise UsageError(None)     # main prints HELP
        if flag == "-d":
            o.delete = True
        elif flag == "-s":
            o.stereo = True
        elif flag == "-i":
            o.idle = True
        elif flag == "-n":
            o.nosync = True
        elif flag == "-e":
            o.strict = True
        elif flag == "-S":
            o.scan = True
        elif flag == "-F":
            if value.lower() not in dict(FILE_FORMATS):
                raise ExtractError('unknown output file format: "%s"\n%s' % (
                    value, _format_list("Supported file formats:", FILE_FORMATS).rstrip("\n")))
            o.file_fmt = value.lower()
        elif flag == "-D":
            if value.lower() not in dict(DATA_FORMATS):
                raise ExtractError('unknown output data format: "%s"\n%s' % (
                    value, _format_list("Supported data formats:", DATA_FORMATS).rstrip("\n")))
            o.data_fmt = value.lower()
        elif flag == "-A":
            o.a_path = value
        elif flag == "-B":
            o.b_path = value
        elif flag == "--alice-crypto":
            o.a_crypto = parse_crypto(value)
        elif flag == "--bob-crypto":
            o.b_crypto = parse_crypto(value)
    explicit = o.a_path is not None or o.b_path is not None
    if o.scan:
        if len(args) != (0 if explicit else 1):
            raise UsageError("scan mode takes %s" % (
                "no other arguments with -A/-B" if explicit else "exactly one RDIR"))
    elif len(args) < (1 if explicit else 2):
        raise UsageError("missing %s" % ("OUTFILE" if explicit else "RDIR and OUTFILE"))
    if not explicit:
        o.rdir = args.pop(0)
        o.a_path, o.b_path = o.rdir + ".a.rtp", o.rdir + ".o.rtp"
    if not o.scan:
        o.outfile = args[0]
        o.links = args[1:]
    if o.data_fmt is None:
        o.data_fmt = "ms_adpcm" if o.stereo else "gsm610"
    return o


class Progress:
    """``extractaudio: writing 42%`` on a terminal, at most ten times a second."""

    def __init__(self, stream, enabled):
        self.stream = stream
        self.enabled = enabled
        self.last = 0.0
        self.shown = False

    def update(self, phase, done, total):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        percent = 100 * done // total if total else 100
        self.stream.write("\r%s: %s %3d%%" % (PROG, phase, percent))
        self.stream.flush()
        self.shown = True

    def finish(self):
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


class _Srtp:
    """SRTP decryption of one input, keyed on the SSRC of its first datagram."""

    def __init__(self, crypto, first_datagram):
        try:
            import pylibsrtp
        except ImportError:
            raise ExtractError("SRTP keys need the Python package pylibsrtp; install it with "
                               "pip install pylibsrtp") from None
        suite, key = crypto
        profile = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80 if suite.endswith("_80")
                   else pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32)
        ssrc = int.from_bytes(first_datagram[8:12], "big")
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_SPECIFIC,
                                  ssrc_value=ssrc, srtp_profile=profile)
        policy.window_size = 128
        policy.allow_repeat_tx = False
        self.session = pylibsrtp.Session(policy)
        self.error = pylibsrtp.Error

    def unprotect(self, data):
        try:
            return self.session.unprotect(data)
        except self.error:
            return None


class Extractor:
    """One run: load the inputs, decode, mix, write. Messages go to ``err``."""

    def __init__(self, opts, out=sys.stdout, err=sys.stderr):
        load_media()
        self.opts = opts
        self.out = out
        self.err = err
        self.channels = ChannelSet()
        self.progress = Progress(err, False)
        self.codec_warnings = set()
        self.inputs = self._inputs()

    def warn(self, text):
        self.progress.finish()
        self.err.write("%s: %s\n" % (PROG, text))

    # --- loading -----------------------------------------------------------------

    def _inputs(self):
        """[(side, path or None, crypto)]; a single-file pcap split into two sides."""
        o = self.opts
        inputs = [(SIDE_A, o.a_path, o.a_crypto), (SIDE_B, o.b_path, o.b_crypto)]
        if o.rdir is not None and not os.path.exists(o.a_path) and not os.path.exists(o.b_path) \
                and os.path.exists(o.rdir + ".pcap"):
            return [("split", o.rdir + ".pcap", None)]
        return inputs

    def load(self):
        """Load every input; returns the list of paths that could not be loaded."""
        inputs = [(side, path, crypto) for side, path, crypto in self.inputs if path is not None]
        sizes = [os.path.getsize(p) for _, p, _ in inputs if os.path.isfile(p)]
        self.progress = Progress(self.err, self.err.isatty() and sum(sizes) >= PROGRESS_MIN_BYTES)
        failed = []
        for side, path, crypto in inputs:
            if path is None:
                continue
            if not self._load_file(side, path, crypto):
                failed.append(path)
        return failed

    def _load_file(self, side, path, crypto):
        try:
            table = recording_reader.read_table(path)
        except recording_reader.RecordingError as exc:
            self.warn(str(exc))
            return False
        if side == "split":
            return self._load_split(table)
        return self._load_table(table, side, crypto)

    def _load_split(self, table):
        """A single-file pcap: each relay port that received RTP is one side."""
        import numpy as np
        rtp_port = np.flatnonzero((table.dest_port >= 0) & (table.dest_port % 2 == 0))
        keys = table.dest_key[rtp_port]               # destination address and port, one number
        counts = {}
        for key in keys.tolist():
            counts[key] = counts.get(key, 0) + 1
        chosen = sorted(counts, key=lambda key: -counts[key])[:2]     # stable: first seen wins
        chosen.sort(key=lambda key: key & 0xFFFF)
        ok = True
        for side, key in zip((SIDE_A, SIDE_B), chosen):
            ok = self._load_table(table.subset(rtp_port[keys == key]), side, None) and ok
        return ok

    def _decrypt(self, table, crypto):
        """SRTP inputs: (buffer, starts, lengths, failed mask) of the decrypted datagrams."""
        import numpy as np
        srtp = None
        plain, failed = [], np.zeros(len(table), dtype=bool)
        for i in range(len(table)):
            data = table.data(i)
            if srtp is None:
                srtp = _Srtp(crypto, data)
            clear = srtp.unprotect(data)
            if clear is None:
                failed[i] = True
                clear = b""
            plain.append(clear)
        lengths = np.array([len(x) for x in plain], dtype=np.int64)
        buf = np.frombuffer(b"".join(plain), dtype=np.uint8)
        return buf, np.cumsum(lengths) - lengths, lengths, failed

    def _load_table(self, table, side, crypto):
        import numpy as np
        self.progress.update("reading", 0, 1)
        buf, starts, lengths = table.buf, table.start, table.length
        failed = np.zeros(len(table), dtype=bool)
        if crypto is not None and table.kind == "pcap" and len(table):
            buf, starts, lengths, failed = self._decrypt(table, crypto)
        headers = rtp.parse_array(buf, starts, lengths)
        reason = headers.reason.astype(np.int64)
        reason[failed] = DECRYPTION_FAILED
        good = np.flatnonzero(reason == 0)
        packets = call_audio.PacketArrays.from_headers(buf, headers, table.arrival, good)
        stats = RtpStreamStats()
        loaded = True
        considered = len(table)               # datagrams looked at (all, unless stats stop)
        try:
            stats.update_many(packets.seq, packets.ts, packets.ssrc, packets.marker, packets.pt,
                              packets.arrival)
        except StatsInconsistent as exc:
            self.warn("%s: update_rtpp_stats() failed: the sequence numbers of packet %d "
                      "cannot be placed; using the packets before it" % (
                          table.path, int(good[exc.index]) + 1))
            loaded = False
            considered = int(good[exc.index])
            packets = packets.take(np.arange(exc.index))
        stats.finish()
        self._warn_skipped(table.path, reason[:considered])
        nsamples = call_audio.sample_counts(packets)
        skipped = int((nsamples == 0).sum())
        self.channels.add_arrays(packets.take(np.flatnonzero(nsamples > 0)), side)
        if skipped:
            self.warn("%s: %d packet%s without audio to decode skipped (comfort noise, DTMF "
                      "events, RTCP or a codec without a decoder)" % (
                          table.path, skipped, "s" if skipped > 1 else ""))
        if table.truncated:
            self.warn("%s is truncated or damaged after %d records; using the audio before the "
                      "damage" % (table.path, table.records))
            loaded = False
        self.progress.finish()
        self.out.write("\n".join(stats.lines()) + "\n")
        self.out.flush()
        return loaded

    def _warn_skipped(self, path, reason):
        """One line per reason datagrams were not RTP, in the order first met."""
        import numpy as np
        counts = np.bincount(reason, minlength=DECRYPTION_FAILED + 1)   # (np.unique loads numpy.ma)
        firsts = sorted((int(np.argmax(reason == code)), code)
                        for code in range(1, len(counts)) if counts[code])
        for _, code in firsts:
            count = int(counts[code])
            text = "decryption failed" if code == DECRYPTION_FAILED else rtp.PARSE_REASONS[code]
            self.warn("%s: %d datagram%s skipped: %s" % (path, count, "s" if count > 1 else "",
                                                         text))

    # --- decoding and writing -------------------------------------------------------

    def _unavailable(self, pt, reason):
        if pt not in self.codec_warnings:
            self.codec_warnings.add(pt)
            self.warn("payload type %d decodes to silence: %s" % (pt, reason))

    def decode(self):
        channels = list(self.channels)
        total = sum(len(c) for c in channels) or 1
        done = 0
        for channel in channels:
            self.progress.update("decoding", done, total)
            channel.samples = call_audio.decode_arrays(channel.packet_arrays(), self.opts.nosync,
                                                       self._unavailable)
            done += len(channel)
        return call_audio.Mix(channels, self.opts.stereo, self.opts.nosync)

    def write(self, audio):
        import soundfile
        o = self.opts
        nchannels = 2 if o.stereo else 1
        fmt, subtype = o.file_fmt.upper(), o.data_fmt.upper()
        if not soundfile.check_format(fmt, subtype):
            raise ExtractError(container_refusal(o.outfile, o.file_fmt, o.data_fmt), code=2)
        existed = os.path.lexists(o.outfile)
        try:
            out = soundfile.SoundFile(o.outfile, "w", samplerate=call_audio.RATE,
                                      channels=nchannels, format=fmt, subtype=subtype)
        except (RuntimeError, ValueError, TypeError, OSError) as exc:
            if not existed:                # libsndfile may create the file, then refuse
                _unlink(o.outfile)
            raise ExtractError("%s: can't open output file%s" % (
                o.outfile, _library_reason(exc, o, nchannels)), code=2) from None
        try:
            with out:
                for start in range(0, audio.total, WRITE_BLOCK):
                    self.progress.update("writing", start, audio.total)
                    _write_block(out, audio.block(start, start + WRITE_BLOCK))
        except (RuntimeError, ValueError, OSError) as exc:
            self.progress.finish()
            _unlink(o.outfile)
            raise ExtractError("%s: libsndfile could not write %s data into the %s container (%s); "
                               "choose another -D or -F" % (o.outfile, o.data_fmt, o.file_fmt,
                                                            _reason(exc)), code=2) from None
        self.progress.update("writing", audio.total, audio.total)
        self.progress.finish()
        return call_audio.written_count(audio.total, nchannels)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_block(out, block):
    """One write call. libsndfile may take fewer frames than given (VOX ADPCM
    packs two samples a byte and leaves an odd last one out); upstream ignores
    sf_write_short's count, and so do we: soundfile's own check would turn it
    into an AssertionError after the bytes are written."""
    try:
        out.write(block)
    except AssertionError:
        pass


def _reason(exc):
    return (str(exc).strip() or type(exc).__name__).rstrip(".")


def _library_reason(exc, o, nchannels):
    if isinstance(exc, OSError) or "No such file" in str(exc) or "ermission" in str(exc):
        return " (%s)" % _reason(exc)
    return (" (libsndfile: %s for %s %s data, %d channel%s)"
            % (_reason(exc), o.file_fmt, o.data_fmt, nchannels, "s" if nchannels > 1 else ""))


def accepted_data_formats(file_fmt):
    """The -D names a -F container can hold, in the table's order."""
    import soundfile
    return [name for name, _ in DATA_FORMATS if soundfile.check_format(file_fmt.upper(),
                                                                       name.upper())]


def container_refusal(outfile, file_fmt, data_fmt):
    """One sentence for a -F/-D pair libsndfile cannot combine ("vorbis in WAV")."""
    fits = accepted_data_formats(file_fmt)
    hint = ("-F %s takes -D %s" % (file_fmt, ", ".join(fits)) if fits
            else "no -D works with -F %s here" % file_fmt)
    return ("%s: the %s container cannot hold %s data; choose another -D or -F (%s)"
            % (outfile, file_fmt, data_fmt, hint))


def scan(opts, out):
    load_media()
    for path in (opts.a_path, opts.b_path):
        if path is None:
            continue
        count, rec = recording_reader.scan_count(path)
        if rec is not None and rec.truncated:
            sys.stderr.write("%s: broken or truncated %s file: %s\n" % (
                PROG, "PCAP" if rec.kind == "pcap" else "adhoc", path))
        out.write("%s: %d\n" % (path, count))
    return 0


def run(opts, out=sys.stdout, err=sys.stderr):
    if opts.idle:
        try:
            os.nice(20)
        except OSError:
            pass
    if opts.scan:
        return scan(opts, out)
    ex = Extractor(opts, out, err)
    failed = ex.load()
    given = [path for _, path, _ in ex.inputs if path is not None]
    if opts.strict and failed:
        raise ExtractError("cannot load %s" % failed[0])
    all_failed = len(failed) == len(given)
    if all_failed and len(ex.channels) == 0:
        raise ExtractError("cannot load neither A nor B: nothing in them was readable, so no "
                           "output was written")
    if len(ex.channels) > 0:
        audio = ex.decode()
        consumed_a, consumed_b = audio.consumed[SIDE_A], audio.consumed[SIDE_B]
        written = ex.write(audio)
        err.write("samples decoded: O: %d, A: %d, written: %d\n" % (consumed_b, consumed_a, written))
        for link in opts.links:
            try:
                os.link(opts.outfile, link)
            except OSError:
                pass
    if all_failed:
        # Upstream fails when no input loads whole; the audio read before the
        # damage is still worth having, so it is written first and named here.
        raise ExtractError("no input could be read whole; %s holds the %.2f s of audio read "
                           "before the damage" % (opts.outfile, audio.total / call_audio.RATE))
    if opts.delete:
        for path in given:
            try:
                os.unlink(path)
            except OSError:
                pass
    return 0


def main(argv=None, debug=False):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(parse_args(argv))
    except UsageError as exc:
        if not (exc.args and exc.args[0]):      # -h / --help
            sys.stdout.write(HELP)
            return 0
        sys.stderr.write("%s: %s\n" % (PROG, exc.args[0]))
        sys.stderr.write(USAGE)
        return 1
    except ExtractError as exc:
        sys.stderr.write("%s: %s\n" % (PROG, exc))
        return exc.code
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        sys.stderr.write("%s: out of memory; split the recording or free some memory\n" % PROG)
        return 1
    except Exception as exc:     # a bug: one line here, the traceback in extractaudio_debug
        if debug:
            raise
        sys.stderr.write("%s: internal error (%s: %s); extractaudio_debug shows the details\n"
                         % (PROG, type(exc).__name__, exc))
        return 1


def main_debug():
    """extractaudio_debug: the same tool with debug logging and a profile on exit;
    internal errors show their traceback."""
    from .. import debugtools
    return debugtools.run_debug(main, "extractaudio_debug", debug=True, verdict="extractaudio")

