# The two commands a new user runs: `make demo` and `make test`.
# Everything they need is installed by `make setup` (idempotent).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MAPSVC_HOME ?= $(CURDIR)/var
export MAPSVC_HOME
# Debian packages the project needs at run time and to build GDAL's Python bindings.
APT_PACKAGES := libgdal-dev gdal-bin rtklib python3-dev build-essential nginx wrk fonts-wqy-zenhei time \
	chromium chromium-driver
STAMP := $(VENV)/.installed
# the web console's browser assets (MapLibre GL JS), pinned by package-lock.json; npm writes this file on install
NPM_STAMP := node_modules/.package-lock.json

.PHONY: setup apt venv demo test fuzz bench clean

setup: apt $(STAMP) $(NPM_STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# GDAL's Python bindings must match the system libgdal: build them from the sdist of the same version.
$(STAMP): setup.cfg pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q "numpy>=1.26"
	$(PY) -c "from osgeo import gdal" 2>/dev/null || \
	  $(PIP) install -q --no-build-isolation "GDAL==$$(gdal-config --version)"
	$(PIP) install -q -e ".[test]"
	touch $(STAMP)

# npm comes with Debian's nodejs/npm packages (or NodeSource's nodejs, which includes it): installed only when
# there is no npm, so an existing Node.js is never replaced.
$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "installing Debian packages: nodejs npm"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NPM_STAMP)

demo: setup
	$(VENV)/bin/mapsvc demo

test: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

# The property-based fuzzers (pytest -m fuzz) with many more examples than `make test` gives them.
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/python -m pytest -q -p no:cacheprovider -m fuzz

bench: setup
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) var build *.egg-info node_modules
