# Two commands on a fresh machine: `make demo` (set up, run the main job) and `make test`.
# Everything goes into .venv at the repository root; nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
REQS := requirements/constraints.txt requirements/base.txt requirements/build.txt requirements/test.txt
SOURCES := setup.py setup.cfg package.xml $(shell find msg panoptic_ros launch config models -type f -not -path '*/__pycache__/*' 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: venv install demo test bench clean

venv: $(VENV)/.deps
install: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip

# Third-party packages: pinned CPU torch, ROS 2 wheels, the CMake tool chain for msg/, test tools.
$(VENV)/.deps: $(REQS) | $(BIN)/python
	$(PIP) install -c requirements/constraints.txt -r requirements/base.txt \
		-r requirements/build.txt -r requirements/test.txt
	touch $@

# This package and its messages (setup.py compiles msg/ with CMake against the ROS 2 wheels).
$(VENV)/.installed: $(VENV)/.deps $(SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps .
	touch $@

demo: install
	$(BIN)/panoptic demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/panoptic bench-all

clean:
	rm -rf build demo_output .pytest_cache *.egg-info
