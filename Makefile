# rtpproxy-py: `make run` starts a daemon with a working default, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python

.PHONY: run test venv system-deps unit bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

system-deps:
	./tools/install-system-deps.sh

# Control on udp:127.0.0.1:22222, media relayed on 127.0.0.1, foreground, logs on stderr.
# -F: allow running as root (the usual case in a container); use -u USER in production.
run: venv
	$(VENV)/bin/rtpproxy -f -F -s udp:127.0.0.1:22222 -l 127.0.0.1 -p /dev/null -d INFO

test: system-deps venv
	$(PY) -m pytest -q -p no:cacheprovider

unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	bench/relay_vs_crelay.sh 200 3

clean:
	rm -rf $(VENV) build *.egg-info bench/out
