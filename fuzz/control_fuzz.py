"""Coverage-guided fuzz target for the control side: parser, dispatcher, framing.

Run it (atheris, libFuzzer's options):

    .venv/bin/python fuzz/control_fuzz.py -runs=1000000 NEW_CORPUS_DIR fuzz/corpus/control

libFuzzer adds the inputs that reach new code to the first directory; the
seeds in ``fuzz/corpus/control`` are commands from the spec's worked examples
and from what Kamailio, OpenSIPS and the Sippy B2BUA send. Give a file
instead of directories to replay one input. ``bench/fuzz_control.sh`` runs
the long campaign; ``tests/test_fuzz_control.py`` a bounded one.

One input is a conversation: up to MAX_COMMANDS commands separated by LF,
executed in order by a real Dispatcher over a real Relay (real sockets on a
small loopback port range, so session creation, port exhaustion, sub-commands
and tag matching are all reachable). For every command:

* the reply is one line (``I``: its lines) ending in LF, never an internal
  error (the dispatcher turns exceptions into E5 and logs them: any such log
  line fails the input);
* every malformed command gets the error code control-protocol.md gives it:
  ``expected_error`` re-derives, from the spec alone, the codes of the
  tokenizer and of the per-command modifier checks, and the reply must match;
* U/L replies have the shape ``PORT [ADDR [6]]`` with sub-command results.

After the conversation ``X`` must leave no session, no port and no socket
behind, and every 512 inputs the process's file descriptors and greenlets are
compared with the start (no leak). The same bytes are then fed, cut into small
chunks, through the stream transports' line framing (``serve_lines``): every
complete line is answered exactly once until 8 KiB arrive without an LF, and
no line longer than the spec's 8191-byte limit is ever executed.
"""

import gc
import logging
import os
import re
import sys

MAX_COMMANDS = 16
LEAK_CHECK_EVERY = 512
PORT_PAIRS = 8

# --- the spec's rules, re-derived independently of protocol/parse.py ------------

SEPARATORS = b" \t\r\n"
MAX_TOKENS = 23
MAX_SUBCOMMANDS = 15
# letter -> (min tokens, max tokens, takes modifiers, takes && sub-commands)
GRAMMAR = {
    "u": (5, 8, True, True), "l": (5, 6, True, True), "d": (3, 4, True, False),
    "p": (5, 6, True, False), "s": (3, 4, False, False), "r": (3, 4, True, False),
    "c": (4, 5, True, False), "n": (3, 4, True, False), "q": (3, 15, True, True),
    "i": (1, 1, True, False), "v": (1, 1, False, False), "vf": (2, 2, False, False),
    "x": (1, 1, False, False), "g": (1, 30, True, False),
}
# control-protocol.md section 4: the codes a replacement may emit.
EMITTED = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 25, 26, 31, 32,
           35, 36, 37, 50, 60, 62, 65, 68, 71, 72, 75, 81, 82, 83, 85, 86, 88, 89, 98, 99}
_SIGNED_INT = re.compile(r"[+-]?[0-9]+\Z")


def split_tokens(data):
    tokens, current = [], bytearray()
    for byte in data:
        if byte in SEPARATORS:
            if current:
                tokens.append(bytes(current))
                current = bytearray()
        else:
            current.append(byte)
    if current:
        tokens.append(bytes(current))
    return tokens


def expected_error(data):
    """The error code control-protocol.md sections 2 and 5 give ``data``, as far
    as it is decided by the tokens and modifiers alone; None if the command
    passes those checks (later errors depend on sessions and configuration)."""
    tokens = split_tokens(data)
    if not tokens:
        return 5
    segments = [[]]
    for token in tokens:
        if b"\0" in token:
            return 5
        if token == b"&&":
            if not segments[-1] or len(segments) == MAX_SUBCOMMANDS + 1:
                return 5
            segments.append([])
            continue
        if len(segments[-1]) == MAX_TOKENS:
            return 5
        segments[-1].append(token.decode("utf-8", "surrogateescape"))   # any byte is ordinary
    if not segments[-1]:
        return 5
    main, subs = segments[0], segments[1:]
    word = main[0]
    letter, mods = word[0].lower(), word[1:]
    if letter == "v" and mods[:1] in ("f", "F"):
        letter, mods = "vf", mods[1:]
    if letter not in GRAMMAR:
        return 0
    lo, hi, takes_mods, takes_subs = GRAMMAR[letter]
    if not lo <= len(main) <= hi:
        return 1
    if mods and not takes_mods:
        return 2
    if subs and not takes_subs:
        return 3
    return _modifier_error(letter, mods)


def _modifier_error(letter, mods):
    """Section 4's per-command modifier codes (U/L modifiers are left to the parser tests)."""
    low = mods.lower()
    if letter == "d" and any(ch != "w" for ch in low):
        return 8
    if letter == "g" and any(ch != "v" for ch in low):
        return 9
    if letter == "q" and any(ch != "v" for ch in low):
        return 19
    if letter == "i" and any(ch not in "bl" for ch in low):
        return 18
    if letter == "p" and mods and not _SIGNED_INT.match(mods):
        return 17
    if letter == "r":
        for ch in low:
            if ch == "p":
                return 6
            if ch != "s":
                return 7
    if letter == "c" and any(ch not in "sp" for ch in low):
        return 7
    if letter == "n" and low:
        if low[0] != "a":
            return 7
        if len(low) > 1:
            return 6
    return None


# PORT [ADDR [6]], then per sub-command " && " and its result (the L
# sub-command's is PORT [ADDR [6]] too, a failure -1).
_UPDATE_REPLY = re.compile(r"(E\d+|0|\d+( [^ &]+( 6)?)?( && -?\d+( [^ &]+( 6)?)?)*)\n\Z")


def check_reply(command, reply):
    """Raise AssertionError if ``reply`` is not a valid answer to ``command``."""
    assert isinstance(reply, str) and reply.endswith("\n"), (command, reply)
    expected = expected_error(command)
    if expected is not None:
        assert reply == "E%d\n" % expected, (command, reply, expected)
        return
    if reply.startswith("E") and reply[1:-1].isdigit():
        code = int(reply[1:-1])
        assert code in EMITTED, (command, reply)
        assert code not in (0, 2, 5), (command, reply)    # decided by tokens alone: not here
        return
    letter = split_tokens(command)[0][:1].lower()
    if letter == b"i":
        assert re.fullmatch(r"(\w[\w ]*: [\d.]+\n){5,6}", reply), (command, reply)
    else:
        assert reply.count("\n") == 1, (command, reply)
    if letter in (b"u", b"l"):
        assert _UPDATE_REPLY.match(reply), (command, reply)


def expected_lines(data):
    """The lines a stream connection executes from ``data``, however it is cut
    into reads: every LF-terminated line in order, up to the first one of
    8192 bytes or more (the 8 KiB buffer fills without an LF: closed)."""
    complete = data.split(b"\n")[:-1]
    for i, line in enumerate(complete):
        if len(line) >= 8192:
            return complete[:i]
    return complete


# --- the harness ------------------------------------------------------------------

class InternalErrors(logging.Handler):
    """Collects log records that carry an exception (the dispatcher's 'internal error')."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        if record.exc_info:
            self.records.append(record)


class Harness:
    def __init__(self, port_base):
        import gevent

        from rtpproxy_py import cli
        from rtpproxy_py.config import build
        from rtpproxy_py.dispatcher import CommandContext, Dispatcher
        from rtpproxy_py.notify import Notifier
        from rtpproxy_py.relay import Relay

        self.gevent = gevent
        log = logging.getLogger("rtpproxy")
        log.setLevel(logging.WARNING)
        log.propagate = False
        self.errors = InternalErrors()
        log.handlers[:] = [self.errors]
        argv = ["-f", "-F", "-l", "127.0.0.1", "-l", "pub@127.0.0.2", "-m", str(port_base),
                "-M", str(port_base + 2 * PORT_PAIRS - 1), "-n", "tcp:%%CC_SELF%%:9",
                "-n", "unix:/nonexistent/notify.sock", "-s", "udp:127.0.0.1:22222", "-T", "60"]
        config = build(cli.parse_args(argv))
        self.relay = Relay(config)
        self.dispatcher = Dispatcher(config, self.relay, Notifier(), self.relay.clock)
        self.relay.on_expired = self.dispatcher.expire
        self.ctx = CommandContext("127.0.0.1", "127.0.0.1")
        self.runs = 0
        self.baseline = None

    def run(self, data):
        dispatcher = self.dispatcher
        for command in data.split(b"\n")[:MAX_COMMANDS]:
            reply = dispatcher.execute(command, self.ctx)
            if self.errors.records:
                record = self.errors.records.pop()
                raise AssertionError("internal error on %r: %s" % (command, record.exc_info[1]))
            check_reply(command, reply)
        assert dispatcher.execute(b"X", self.ctx) == "0\n"
        assert len(dispatcher.table) == 0, "sessions left after X"
        assert self.relay.open_sockets == 0, "%d sockets left after X" % self.relay.open_sockets
        assert not self.relay.ports.in_use, "ports left after X: %s" % self.relay.ports.in_use
        self.gevent.sleep(0)           # let the ended sessions' greenlets finish
        self.check_framing(data)
        self.runs += 1
        if self.runs % LEAK_CHECK_EVERY == 1:
            self.check_leaks()

    def check_framing(self, data):
        from rtpproxy_py.control.transports import MAX_COMMAND, serve_lines

        chunk_size = 1 + (data[0] % 97 if data else 0)     # reads of varying size
        position = [0]
        executed, replies = [], []

        def recv(size):
            start = position[0]
            position[0] = start + min(size, chunk_size)
            return data[start:position[0]]

        def execute(line, ctx):
            assert len(line) <= MAX_COMMAND, "a %d-byte line was executed" % len(line)
            executed.append(line)
            return "0\n"

        serve_lines(recv, replies.append, None, execute, lambda send, text: send(text))
        assert executed == expected_lines(data), (len(executed), len(expected_lines(data)))
        assert len(replies) == len(executed)

    def check_leaks(self):
        from greenlet import greenlet

        fds = len(os.listdir("/proc/self/fd"))
        live = sum(1 for g in gc.get_objects() if isinstance(g, greenlet) and not g.dead)
        if self.baseline is None:
            self.baseline = (fds, live)
            return
        assert fds <= self.baseline[0] + 2, "file descriptors grew: %d -> %d" % (self.baseline[0], fds)
        assert live <= self.baseline[1] + 2, "greenlets grew: %d -> %d" % (self.baseline[1], live)


def free_port_base():
    """An even base with PORT_PAIRS free pairs above it on the loopback."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(20000, 60000, 2)
        ok = True
        for port in range(base, base + 2 * PORT_PAIRS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError("no free port range")


def main(argv):
    import atheris

    with atheris.instrument_imports(include=["rtpproxy_py"]):
        import rtpproxy_py.control.transports  # noqa: F401
        import rtpproxy_py.dispatcher  # noqa: F401
        import rtpproxy_py.protocol.parse  # noqa: F401
        import rtpproxy_py.session  # noqa: F401
    harness = Harness(free_port_base())
    # libFuzzer starts argv[0] through the shell for -merge and -fork: make
    # that this interpreter with this script.
    argv = ["%s %s" % (sys.executable, os.path.abspath(__file__))] + argv[1:]
    atheris.Setup(argv, harness.run)
    atheris.Fuzz()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(sys.argv)
