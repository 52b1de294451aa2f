# rtpproxy-py: `make run` starts a daemon with a working default, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python

.PHONY: run test venv system-deps unit bench clean

# The runtime only (setup.cfg's install_requires), quietly: pip's output goes
# to $(VENV)/install.log and is shown only when the install fails.
$(VENV)/.runtime: setup.cfg setup.py pyproject.toml rtpproxy_py/_fastpath.c
	@$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
	    echo "make: creating $(VENV) failed; install Debian's python3-venv first (apt-get install python3-venv)" >&2; exit 1; }
	@echo "installing the runtime into $(VENV) (pip's output: $(VENV)/install.log)"
	@$(PY) -m pip install -e . >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log >&2; \
	    echo "make: installing the runtime failed (log above, kept in $(VENV)/install.log)" >&2; exit 1; }
	@touch $@

# The runtime and the test tools (pytest, hypothesis, atheris, sippy).
$(VENV)/.installed: $(VENV)/.runtime
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Debian packages of tests/apt-packages.txt and the .deb's Build-Depends.
system-deps:
	./tools/install-system-deps.sh

# Control on udp:127.0.0.1:22222, media relayed on 127.0.0.1, foreground, logs on stderr.
# -F: allow running as root (the usual case in a container); use -u USER in production.
run: $(VENV)/.runtime
	@$(VENV)/bin/rtpproxy -f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -p /dev/null -d INFO

test: system-deps venv
	$(PY) -m pytest -q -p no:cacheprovider

unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	bench/relay_vs_crelay.sh 200 3

clean:
	rm -rf $(VENV) build *.egg-info bench/out
