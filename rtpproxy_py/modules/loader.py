"""``--dso PATH`` and ``--config FILE`` -> the ModuleSpecs to run (modules.md 2).

A module is recognised by its file name, ``rtpp_<name>.so`` (rtpproxy) or
``rtpp_<name>_debug.so`` (rtpproxy_debug); the file must exist, its contents
are not read beyond telling a shared object from other files. Every refusal
upstream makes gives upstream's messages on stderr and exit status 1 (the
reference crashes on some; we do not).
"""

import os
import re
import sys
from typing import Callable, List, Optional

from . import REGISTRY, ModuleSpec, OptionError, implementation
from . import ucl

MODULE_DIR = "/usr/local/lib/rtpproxy"    # upstream's <libdir>/rtpproxy of a source build
_FILE_NAME = re.compile(r"rtpp_([A-Za-z0-9_]+?)(_debug)?\.so\Z")
_ELF = b"\x7fELF"


class LoadError(Exception):
    """Refused: ``lines`` go to stderr first, str() is the final message."""

    def __init__(self, message, lines=()):
        super().__init__(message)
        self.lines = list(lines)


def _incompatible(path):
    return LoadError("%s: dymanic module load has failed" % path, [
        "rtpp_mif_load: incompatible API version in the %s, consider recompiling the module" % path])


def identify(path: str, debug_build: bool, given: Optional[str] = None) -> str:
    """The built-in module a file selects; LoadError as upstream's dlopen/mif checks.
    ``given``: the path as named, when ``path`` is its realpath (a packaged
    ``rtpp_x.so`` may be a symbolic link to a versioned file name)."""
    match = _FILE_NAME.match(os.path.basename(given or path)) or _FILE_NAME.match(os.path.basename(path))
    if match is None:
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise LoadError("%s: dymanic module load has failed" % path, [
                "rtpp_modules_lookup: can't dlopen() module: %s: %s" % (path, exc.strerror)]) from None
        if magic != _ELF:
            raise LoadError("%s: dymanic module load has failed" % path, [
                "rtpp_modules_lookup: can't dlopen() module: %s: invalid ELF header" % path])
        raise LoadError("%s: dymanic module load has failed" % path, [
            "rtpp_modules_lookup: can't find 'rtpp_module' symbol in the %s: %s: undefined "
            "symbol: rtpp_module" % (path, path)])
    name, debug = match.group(1), bool(match.group(2))
    if name not in REGISTRY or debug != debug_build:
        raise _incompatible(path)
    if implementation(name) is None:
        raise LoadError("%s: the %s module is not built into rtpproxy-py yet; remove it from "
                        "the command line or the configuration file" % (path, name))
    return name


class Loader:
    """Collects the modules of one command line, in upstream's order:
    every --dso as it comes, then the --config file's sections."""

    def __init__(self, debug_build: bool, workdir: Optional[str] = None,
                 report: Callable[[str], None] = None):
        self.debug_build = debug_build
        self.workdir = workdir or os.getcwd()
        self.report = report or (lambda line: sys.stderr.write(line + "\n"))
        self.specs: List[ModuleSpec] = []

    def _fail(self, exc: LoadError):
        for line in exc.lines:
            self.report(line)
        return exc

    def _add(self, name, path, section=None, options=None):
        module_id = REGISTRY[name][0]
        instance = 1 + sum(1 for s in self.specs if s.module_id == module_id)
        self.specs.append(ModuleSpec(name, module_id, instance, path, section,
                                     options or {}, self.workdir))

    def dso(self, path: str):
        """``--dso PATH``."""
        absolute = os.path.realpath(os.path.join(self.workdir, path)) if path else ""
        if not path or not os.path.exists(absolute):
            raise LoadError("realpath: %s: No such file or directory" % path)
        try:
            name = identify(absolute, self.debug_build, path)
        except LoadError as exc:
            raise self._fail(exc) from None
        if implementation(name).needs_config:
            raise LoadError("%s: dymanic module requires configuration, cannot be loaded via "
                            "--dso option" % absolute)
        self._add(name, absolute)

    def config_file(self, file: str):
        """``--config FILE``."""
        failed = LoadError("rtpp_cfile_process() failed")
        try:
            with open(os.path.join(self.workdir, file), encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as exc:
            self.report("open failed: %s: %s" % (file, exc.strerror))
            raise failed from None
        try:
            top = ucl.parse(text)
        except ucl.UclError:
            self.report("ucl_parser_get_object() failed")
            raise failed from None
        for key, value in top:
            if key.lower() == "modules":
                break
        else:
            return
        sections = value if isinstance(value, ucl.UclObject) else [("modules", value)]
        seen = set()
        for section, body in sections:
            if section in seen:
                continue         # upstream loads only the first section of a name
            seen.add(section)
            try:
                self._section(section, body if isinstance(body, ucl.UclObject) else ucl.UclObject())
            except LoadError as exc:
                self._fail(exc)
                raise failed from None

    def _section(self, section: str, body: ucl.UclObject):
        load = body.first("load")
        if load is not None or any(k == "load" for k, _ in body):
            if not isinstance(load, str):
                raise LoadError("", ['Error: "load" parameter in %s has a wrong type, string '
                                     'is expected' % section])
            path = os.path.realpath(os.path.join(self.workdir, load))
            if not os.path.exists(path):
                raise LoadError("", ["realpath() failed: %s: No such file or directory" % load])
            name = identify(path, self.debug_build, load)
        else:
            path = os.path.join(MODULE_DIR, "rtpp_%s%s.so" % (section, "_debug" if self.debug_build else ""))
            name = section
            if section not in REGISTRY:
                raise LoadError("", [
                    "rtpp_modules_lookup: can't dlopen() module: %s: cannot open shared object "
                    "file: No such file or directory" % path,
                    "parse_modules: %s->load() method has failed: %s" % (path, path)])
            if implementation(name) is None:
                raise LoadError("", ["%s: the %s module is not built into rtpproxy-py yet; remove "
                                     "its section from the configuration file" % (path, name)])
        module = implementation(name)
        options = {}
        for key, value in body:
            lower = key.lower()
            if key == "load" or lower == "load":
                continue           # upstream: "LOAD" is a known key but not the path
            if lower not in module.config_keys:
                raise LoadError("", ["Unknown key '%s' in section '%s'" % (key, section),
                                     "Config parsing issue in section %s" % section])
            try:
                options[lower] = module.check_option(lower, value)
            except OptionError as exc:
                raise LoadError("", [str(exc), "Config parsing issue in section %s" % section,
                                     "\tparameter %s" % key]) from None
        self._add(name, path, section, options)
