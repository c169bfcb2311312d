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
APT_PACKAGES := libgdal-dev gdal-bin rtklib python3-dev build-essential nginx wrk fonts-wqy-zenhei time
STAMP := $(VENV)/.installed

.PHONY: setup apt venv demo test fuzz bench clean

setup: apt $(STAMP)

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
	rm -rf $(VENV) var build *.egg-info
