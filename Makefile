# Two commands on a fresh machine: `make demo` (set up, run the main job) and `make test`.
# Everything goes into .venv at the repository root; nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
REQS := requirements/constraints.txt requirements/base.txt requirements/build.txt requirements/test.txt
SOURCES := setup.py setup.cfg package.xml $(shell find msg panoptic_ros launch config models -type f -not -path '*/__pycache__/*' 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: venv install demo test bench default-model clean

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
	$(BIN)/python benchmarks/engine_bench.py --out benchmarks/engine_bench.json

# Rebuild the bundled default model from scratch (about 45 min on 2 CPU cores): data, training,
# fp16 packaging, evaluation on 200 held-out images (a seed training never saw), model card.
DEFAULT_MODEL := models/dense_detections_r18_synth_256x512
RUN := runs/dense_detections_r18_synth_256x512
default-model: install
	$(BIN)/panoptic synth --out data/synth --split train --num 1200 --height 256 --width 512 --seed 1
	$(BIN)/panoptic synth --out data/synth --split val --num 200 --height 256 --width 512 --seed 2
	$(BIN)/panoptic synth --out data/synth_holdout --split val --num 200 --height 256 --width 512 --seed 3
	$(BIN)/panoptic train --config config/models/dense_detections_r18_synth_256x512.yaml --data data/synth --out $(RUN)
	$(BIN)/panoptic card --weights $(RUN)/model.safetensors --fp16 --out $(DEFAULT_MODEL).safetensors \
		--paper "Hou et al., Real-Time Panoptic Segmentation from Dense Detections, CVPR 2020"
	$(BIN)/panoptic eval --weights $(DEFAULT_MODEL).safetensors --data data/synth_holdout --out $(DEFAULT_MODEL).eval.json
	$(BIN)/panoptic card --weights $(DEFAULT_MODEL).safetensors --eval $(DEFAULT_MODEL).eval.json-all

clean:
	rm -rf build demo_output .pytest_cache *.egg-info
