# Two commands on a fresh machine: `make demo` (set up, run the main job) and `make test`.
# Everything goes into .venv at the repository root; nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
REQS := requirements/constraints.txt requirements/base.txt requirements/build.txt requirements/test.txt
SOURCES := setup.py setup.cfg package.xml $(shell find msg panoptic_ros launch config models -type f -not -path '*/__pycache__/*' 2>/dev/null)
PYTEST_ARGS ?=
, := ,# a literal comma inside $(call ...) arguments

.PHONY: venv install demo test bench data512 default-model contours-model casnet-model panonet-model oanet-model zoo clean

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

# $(call train,RECIPE,RUN): train config/models/RECIPE.yaml into RUN on data/synth512,
# continuing from RUN's last checkpoint when there is one.
train = $(BIN)/panoptic train --config config/models/$(1).yaml --data data/synth512 \
	--out $(2) $(if $(wildcard $(2)/checkpoints/last.pt),--resume)

# $(call package,RUN,MODEL,PAPER[,POSTPROCESS]): RUN's weights as MODEL.safetensors in float16
# (with post-processing parameters tuned after training, NAME=VALUE ...), evaluated on the
# held-out images, with the card.
define package
$(BIN)/panoptic card --weights $(1)/model.safetensors --fp16 --out $(2).safetensors --paper "$(3)" $(if $(4),--postprocess $(4))
$(BIN)/panoptic eval --weights $(2).safetensors --data data/synth_holdout512 --out $(2).eval.json
$(BIN)/panoptic card --weights $(2).safetensors --eval $(2).eval.json
endef

# Rebuild the bundled default model from the repository alone (about 2 h on 2 CPU cores; run it
# again after an interruption and training resumes from its last checkpoint): data, training
# in two stages (256x512 crops, then whole 512x1024 images from stage 1's weights),
# fp16 packaging, evaluation on the held-out images, model card.
DEFAULT_NAME := dense_detections_lite0_synth_512x1024
STAGE1 := dense_detections_lite0_synthcrop_512x1024
default-model: data512
	$(call train,$(STAGE1),runs/$(STAGE1))
	$(call train,$(DEFAULT_NAME),runs/$(DEFAULT_NAME))
	$(call package,runs/$(DEFAULT_NAME),models/$(DEFAULT_NAME),Hou et al.$(,) Real-Time Panoptic Segmentation from Dense Detections$(,) CVPR 2020)

# The bundled contours model (about 1 h on 2 CPU cores, resumable the same way).
CONTOURS_NAME := contours_lite0_synth_512x1024
contours-model: data512
	$(call train,$(CONTOURS_NAME),runs/$(CONTOURS_NAME))
	$(call package,runs/$(CONTOURS_NAME),models/$(CONTOURS_NAME),Chennupati et al.$(,) Panoptic segmentation from semantic segmentation and instance contours)

# The bundled CASNet model, separated training as the paper compares it (about 70 min on 2 CPU
# cores, resumable the same way): a semantic model, then the instance heads on a second trunk
# beside its frozen semantic branch.
CASNET_NAME := casnet_lite0_synth_512x1024
casnet-model: data512
	$(call train,$(CASNET_NAME).semantic,runs/$(CASNET_NAME).semantic)
	$(call train,$(CASNET_NAME).separated,runs/$(CASNET_NAME).separated)
	$(call package,runs/$(CASNET_NAME).separated,models/$(CASNET_NAME),Common Attribute Support Network for panoptic segmentation (separated training))

# The bundled PanoNet (about 75 min on 2 CPU cores, resumable the same way): stage 1 without
# the coordinate input, stage 2 with it from stage 1's weights (section III-C); the mean-shift's
# seed bins and its bandwidth per thing class (person, rider, car, truck, bus, train,
# motorcycle, bicycle: section III-D) tuned on 100 training images with
# benchmarks/tune_postprocess.py (docs/models.md, PanoNet).
PANONET_NAME := panonet_lite0_synth_512x1024
PANONET_POST := 'bandwidth=[2.5,0.625,0.625,0.75,1.25,0.75,0.75,0.75]' min_bin_freq=6
panonet-model: data512
	$(call train,$(PANONET_NAME).stage1,runs/$(PANONET_NAME).stage1)
	$(call train,$(PANONET_NAME),runs/$(PANONET_NAME))
	$(call package,runs/$(PANONET_NAME),models/$(PANONET_NAME),Chen et al.$(,) PanoNet: Real-time Panoptic Segmentation through Position-Sensitive Feature Embedding,$(PANONET_POST))

# The bundled OANet (about 150 min on 2 CPU cores, resumable the same way): stage 1, then
# stage 2 from its weights at half the learning rate; score threshold and paste order tuned on
# the val split (seed 11) with benchmarks/tune_postprocess.py.
OANET_NAME := oanet_lite0_synth_512x1024
oanet-model: data512
	$(call train,$(OANET_NAME).stage1,runs/$(OANET_NAME).stage1)
	$(call train,$(OANET_NAME),runs/$(OANET_NAME))
	$(call package,runs/$(OANET_NAME),models/$(OANET_NAME),Liu et al.$(,) An End-to-End Network for Panoptic Segmentation (OANet)$(,) CVPR 2019,score_threshold=0.4 order=score)

# The zoo table of docs/models.md: every bundled model on the same held-out images.
zoo: install
	$(SYNTH) --out data/synth_holdout512 --split val --num 200 --seed 12
	$(BIN)/panoptic zoo --data data/synth_holdout512 --out docs/models.md

clean:
	rm -rf build demo_output .pytest_cache *.egg-info
