# Set-up lives here: every target creates .venv when missing and installs what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: demo test test-fast bench lint install clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch==2.13.0 first (a local CPU build); the project's `torch>=2.3` is then already met.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robot-stack demo

# The AR page tests drive a real headless Chromium (Debian package); as root, install it when missing.
CHROMIUM_SETUP = if [ "$$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then \
	export DEBIAN_FRONTEND=noninteractive; apt-get update -qq </dev/null && apt-get install -y -qq chromium </dev/null \
	|| echo "chromium could not be installed: the AR page browser tests will skip"; fi

test: $(STAMP)
	@$(CHROMIUM_SETUP)
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP)
	@$(CHROMIUM_SETUP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
