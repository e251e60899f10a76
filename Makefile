# Two commands on a fresh machine: `make demo` (set up, run the main job) and `make test`.
# Everything goes into .venv at the repository root; nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
REQS := requirements/constraints.txt requirements/base.txt requirements/build.txt requirements/test.txt
SOURCES := setup.py setup.cfg package.xml $(shell find msg panoptic_ros launch config models -type f -not -path '*/__pycache__/*' 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: venv install demo test bench data512 default-model contours-model zoo clean

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

# The tests import the installed package: pytest's own script, not `python -m pytest`, which
# would put the repository root (the cwd) on sys.path (pytest.ini, test/conftest.py).
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/engine_bench.py --out benchmarks/engine_bench.json

# The synthetic data of the bundled models: train and val (tuning) of their runs, and 200
# held-out images (a seed no training run used) their cards and the zoo report.
SYNTH := $(BIN)/panoptic synth --height 512 --width 1024
data512: install
	$(SYNTH) --out data/synth512 --split train --num 2000 --seed 10
	$(SYNTH) --out data/synth512 --split val --num 200 --seed 11
	$(SYNTH) --out data/synth_holdout512 --split val --num 200 --seed 12

# Rebuild the bundled default model from the repository alone (about 2 h on 2 CPU cores; run it
# again after an interruption and training resumes from its last checkpoint): data, training
# in two stages (256x512 crops, then whole 512x1024 images from stage 1's weights),
# fp16 packaging, evaluation on the held-out images, model card.
DEFAULT_NAME := dense_detections_lite0_synth_512x1024
STAGE1 := dense_detections_lite0_synthcrop_512x1024
DEFAULT_MODEL := models/$(DEFAULT_NAME)
RUN := runs/$(DEFAULT_NAME)
default-model: data512
	$(BIN)/panoptic train --config config/models/$(STAGE1).yaml --data data/synth512 \
		--out runs/$(STAGE1) $(if $(wildcard runs/$(STAGE1)/checkpoints/last.pt),--resume)
	$(BIN)/panoptic train --config config/models/$(DEFAULT_NAME).yaml --data data/synth512 \
		--out $(RUN) $(if $(wildcard $(RUN)/checkpoints/last.pt),--resume)
	$(BIN)/panoptic card --weights $(RUN)/model.safetensors --fp16 --out $(DEFAULT_MODEL).safetensors \
		--paper "Hou et al., Real-Time Panoptic Segmentation from Dense Detections, CVPR 2020"
	$(BIN)/panoptic eval --weights $(DEFAULT_MODEL).safetensors --data data/synth_holdout512 \
		--out $(DEFAULT_MODEL).eval.json
	$(BIN)/panoptic card --weights $(DEFAULT_MODEL).safetensors --eval $(DEFAULT_MODEL).eval.json

# The bundled contours model (about 1 h on 2 CPU cores, resumable the same way).
CONTOURS_NAME := contours_lite0_synth_512x1024
CONTOURS_MODEL := models/$(CONTOURS_NAME)
CONTOURS_RUN := runs/$(CONTOURS_NAME)
contours-model: data512
	$(BIN)/panoptic train --config config/models/$(CONTOURS_NAME).yaml --data data/synth512 \
		--out $(CONTOURS_RUN) $(if $(wildcard $(CONTOURS_RUN)/checkpoints/last.pt),--resume)
	$(BIN)/panoptic card --weights $(CONTOURS_RUN)/model.safetensors --fp16 --out $(CONTOURS_MODEL).safetensors \
		--paper "Chennupati et al., Panoptic segmentation from semantic segmentation and instance contours"
	$(BIN)/panoptic eval --weights $(CONTOURS_MODEL).safetensors --data data/synth_holdout512 \
		--out $(CONTOURS_MODEL).eval.json
	$(BIN)/panoptic card --weights $(CONTOURS_MODEL).safetensors --eval $(CONTOURS_MODEL).eval.json

# The zoo table of docs/models.md: every bundled model on the same held-out images.
zoo: install
	$(SYNTH) --out data/synth_holdout512 --split val --num 200 --seed 12
	$(BIN)/panoptic zoo --data data/synth_holdout512 --out docs/models.md

clean:
	rm -rf build demo_output .pytest_cache *.egg-info
