# gimtool: the two commands a newcomer needs
#   make quickstart   set up, then run the whole pipeline on the built-in synthetic cohort
#   make test         set up (with the reference tools), then run the tests  (.ci/run calls this)
#
# TORCH is the PyTorch requirement installed before gimtool. The default is the CPU build this
# project is developed and tested on. For a GPU, pick the build for your CUDA, e.g.
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
QUICKSTART_DIR ?= quickstart

.PHONY: setup tools test quickstart bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py gimtool/_speedups.c gimtool/_sumstats_format.c gimtool/_speedups_buffers.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[sim,dev]"
	touch $@

# Reference programs the tests compare with (Debian packages). Installed when missing.
tools:
	@if ! command -v plink2 >/dev/null || ! command -v plink1.9 >/dev/null || ! command -v bolt >/dev/null \
	    || [ ! -f /usr/share/doc/bolt-lmm/examples/examples.tar.xz ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq plink2 plink1.9 bolt-lmm bolt-lmm-example; \
	fi

test: setup tools
	$(PY) -m pytest -q -ra

quickstart: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/quickstart.sh $(QUICKSTART_DIR)

# everything setup, the tests and the quick start made: the venv, the compiled modules (*.so,
# build/), the package metadata (*.egg-info) and the test caches (.pytest_cache, .hypothesis)
clean:
	rm -rf $(VENV) $(QUICKSTART_DIR) .pytest_cache .hypothesis build *.egg-info
	rm -f gimtool/*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
