# Scale, faults and dashboards (docs/scale.md, docs/wandb.md). These variables work with EVERY train target:
#
#   make train DEVICES=2                      # 2 DDP processes (CPU: gloo; GPUs: nccl), same metrics as 1
#   make train-googlenet-gap DEVICES=8 NODES=2   # multi-node: launch from SLURM (experiments/slurm/*.sbatch)
#   make train LOGGER=wandb                   # W&B beside TensorBoard (offline unless WANDB_MODE=online)
#   make train ARGS=resume=last               # continue the newest checkpoint of the experiment after a kill
#   make validate CKPT=lightning_logs/synthloc_gap/version_0/checkpoints/last.ckpt DEVICES=2
#
# LOGGER=wandb adds logger.wandb.enabled=true; WANDB_PROJECT / WANDB_ENTITY set logger.wandb.project / .entity.
# DEVICES=N adds trainer.devices=N trainer.strategy=ddp; NODES=M adds trainer.num_nodes=M.

LOGGER ?=
DEVICES ?=
NODES ?=
CKPT ?=
SCALE_ARGS = $(if $(filter wandb,$(LOGGER)),logger.wandb.enabled=true) \
	$(if $(WANDB_PROJECT),logger.wandb.project=$(WANDB_PROJECT)) \
	$(if $(WANDB_ENTITY),logger.wandb.entity=$(WANDB_ENTITY)) \
	$(if $(DEVICES),trainer.devices=$(DEVICES) trainer.strategy=ddp) \
	$(if $(NODES),trainer.num_nodes=$(NODES))
override ARGS += $(strip $(SCALE_ARGS))

.PHONY: validate test-scale wandb-sync

# Evaluate a checkpoint on the validation split (the run's config.yaml + ARGS); metrics printed and in JSON.
validate: $(STAMP)  ## evaluate CKPT=path on the validation split (DEVICES=N for DDP)
	@test -n "$(CKPT)" || { echo "make: validate needs CKPT=path/to/checkpoint.ckpt" >&2; exit 2; }
	$(CAMEXP) validate --out $(dir $(CKPT))../validate/metrics.json $(CKPT) $(ARGS)

# The DDP, resume-after-kill and W&B/TensorBoard tests only (they are part of `make test` too).
test-scale: $(STAMP)  ## only the DDP, resume-after-kill and W&B/TensorBoard tests
	$(PY) -m pytest -q tests/test_metrics.py tests/test_ddp.py tests/test_resume.py tests/test_dashboards.py $(PYTEST_ARGS)

# Upload offline W&B runs: make wandb-sync RUN=lightning_logs/synthloc_gap/version_0 (default: every run).
RUN ?= lightning_logs
wandb-sync: $(STAMP)  ## upload offline W&B runs (RUN=run dir)
	$(VENV)/bin/wandb sync --yes $$(find $(RUN) -maxdepth 4 -type d -name 'offline-run-*')
