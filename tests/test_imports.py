"""Plain checks of the package's layering (issue 17): no import cycles, and a
core that runs without gevent and without opening sockets."""

import ast
import os
import subprocess
import sys

import rtpproxy_py

PACKAGE_DIR = os.path.dirname(os.path.abspath(rtpproxy_py.__file__))

# The sans-IO core: parsing commands, sessions and latching, port choice, media.
CORE_MODULES = (
    "rtpproxy_py.protocol.parse", "rtpproxy_py.protocol.reply", "rtpproxy_py.protocol.commands",
    "rtpproxy_py.protocol.errors", "rtpproxy_py.session", "rtpproxy_py.ports",
    "rtpproxy_py.capabilities", "rtpproxy_py.throttle", "rtpproxy_py.media_port",
    "rtpproxy_py.media.rtp", "rtpproxy_py.media.rtcp", "rtpproxy_py.media.analyzer",
    "rtpproxy_py.media.player", "rtpproxy_py.media.resizer", "rtpproxy_py.media.prompt_file",
    "rtpproxy_py.protocol.context", "rtpproxy_py.latching", "rtpproxy_py.media.feature",
    "rtpproxy_py.media.rtp_stats",
)


def _modules():
    """module name -> path, for every .py file of the package."""
    found = {}
    top = os.path.dirname(PACKAGE_DIR)
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, top)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = path
    return found


def _imports(name, path, known, deep):
    """The package modules ``name`` imports: at module level (what runs when it
    is loaded; ``if``/``try`` blocks included), or with ``deep`` anywhere, the
    imports inside functions too (a circle there still ties the modules together)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    out = set()

    def add(node):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = target + "." + alias.name
                if sub in known:           # from . import x: the module x
                    out.add(sub)
                elif target in known:
                    out.add(target)

    def visit(nodes):
        for node in nodes:
            add(node)
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", ()):
                    visit(handler.body)
                visit(getattr(node, "finalbody", ()))

    if deep:
        for node in ast.walk(tree):
            add(node)
    else:
        visit(tree.body)
    out.discard(name)
    return out


def _import_graph(deep=False):
    modules = _modules()
    return {name: _imports(name, path, modules, deep) for name, path in modules.items()}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(component)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return result


def test_the_walk_sees_relative_and_function_level_imports():
    assert "rtpproxy_py.workers" in _import_graph(deep=True)["rtpproxy_py.main"]
    graph = _import_graph()
    assert "rtpproxy_py.protocol.parse" in graph["rtpproxy_py.session"] or \
        "rtpproxy_py.media.rtp" in graph["rtpproxy_py.session"]
    assert "rtpproxy_py.protocol.errors" in graph["rtpproxy_py.protocol.parse"]
    assert "rtpproxy_py.media.codecs.frames" in graph["rtpproxy_py.media.codecs.gsm"]


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycle_at_module_level():
    cycles = [sorted(c) for c in _cycles(_import_graph())]
    assert cycles == [], "import cycles among modules: %s" % cycles


def test_no_import_cycle_even_through_function_level_imports():
    """Imports inside functions count too: main.py only picks a service
    (service.py), so main -> workers -> worker -> main is gone for good."""
    cycles = [sorted(c) for c in _cycles(_import_graph(deep=True))]
    assert cycles == [], "import cycles among modules: %s" % cycles


CORE_PROBE = r"""
import socket, sys
class NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        raise AssertionError("the core opened a socket")
socket.socket = NoSocket
import os
real_open = os.open
def no_open(*args, **kwargs):
    raise AssertionError("the core opened a file at import: %r" % (args,))
os.open = no_open
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
os.open = real_open
leaked = sorted(m for m in sys.modules if m == "gevent" or m.startswith("gevent."))
print("GEVENT" if leaked else "CLEAN", leaked[:5])
"""


def test_core_imports_pull_in_no_gevent_and_open_no_socket():
    result = subprocess.run([sys.executable, "-c", CORE_PROBE] + list(CORE_MODULES),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("CLEAN"), result.stdout


def test_the_core_probe_catches_gevent():
    result = subprocess.run([sys.executable, "-c", CORE_PROBE, "rtpproxy_py.relay"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("GEVENT"), (result.stdout, result.stderr)
