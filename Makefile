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

.PHONY: install train test lint bench clean help reproduce

# Per-topic targets (networks, ablations, benchmarks) live in mk/*.mk.
-include mk/*.mk

help:  ## this list
	@echo "Targets (each sets up .venv by itself; ARGS=\"key=value ...\" overrides any config key):"
	@grep -hE '^[a-z0-9-]+:.*## ' Makefile mk/*.mk | sed -E 's/^([a-z0-9-]+):.*## (.*)/  make \1|\2/' | awk -F'|' '{printf "%-32s %s\n", $$1, $$2}'

install: $(STAMP)  ## set up .venv (every target does it by itself)

# Idempotent: rebuilt only when the requirements change. constraints.txt pins the known-good set.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch torchvision
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps imgaug mlxtend
	touch $@

train: $(STAMP)  ## embedded default experiment: SynthNet-GAP on SynthLoc, CPU, minutes
	$(CAMEXP) train experiments/synthloc_gap.yaml $(ARGS)

# The paper's comparisons (GAP/GMP, GAP/FC, CAM/Backprop, Table 3) on SynthLoc and cluttered digits, 3 seeds:
# report.md + reproduce.png in lightning_logs/reproduce (finished runs are reused; ARGS apply to every run).
reproduce: $(STAMP)  ## the paper's comparisons on both embedded benchmarks, 3 seeds (25 min on 2 cores)
	$(CAMEXP) reproduce $(ARGS)

test: $(STAMP)  ## the whole test suite (CPU, offline)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Speed goals live here, never in tests. Each script prints its table and the goal it checks.
# The callback is timed on the model `make train` trained last, if any (else on fresh weights).
TRAINED_CKPT = $(shell ls -t lightning_logs/synthloc_gap/version_*/checkpoints/last.ckpt 2>/dev/null | head -n 1)
bench: $(STAMP)  ## speed benchmarks (ratios measured in one run)
	$(PY) benchmarks/bench_networks.py --quick
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_wsoleval.py
	$(PY) benchmarks/bench_callback.py $(if $(TRAINED_CKPT),--ckpt $(TRAINED_CKPT))
	$(PY) benchmarks/bench_cam.py
	$(PY) benchmarks/bench_lightning.py --quick

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check camexp tests benchmarks

clean:  ## remove .venv and caches
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
