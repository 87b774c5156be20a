"""Config tree -> objects: the data, model, CAM callback and Trainer settings that `train` and `evaluate` share.

With the commands themselves, the only place that reads the config tree: what it builds takes plain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from camexp import config, data
from camexp.callbacks.cam_metrics import CAMCallback
from camexp.console import verbose
from camexp.errors import ConfigError
from camexp.loggers import WandbSettings
from camexp.models import CAMNet, available_networks


def build_data(cfg: DictConfig, stage: str) -> data.CAMDataModule:
    """The seeded, prepared and set-up DataModule (stage: fit | validate | test), refused before any work when
    model.num_classes is not the data's class count. prepare_data generates SynthLoc on first use (before DDP
    workers start)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = data.build(cfg.data, str(config.data_root(cfg)), seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup(stage)
    datamodule.check_num_classes(cfg.model.num_classes)
    return datamodule


def build_model(cfg: DictConfig, num_classes: int, class_names: list[str]) -> CAMNet:
    m = cfg.model
    return CAMNet(
        network=m.name,
        num_classes=num_classes,
        pool=m.pool,
        width=m.width,
        dropout=m.dropout,
        pretrained=m.pretrained,
        weights_path=m.weights_path,
        optim=OmegaConf.to_container(cfg.optim),
        class_names=class_names,
        input_size=cfg.data.input_size,
        normalize=cfg.data.normalize,
    )


def check_localization_method(cfg: DictConfig, model: CAMNet, command: str) -> None:
    """Refuse eval.method=cam for a network without a CAM (fully connected head) before any work: every
    localization metric would be missing from the results."""
    if cfg.eval.method != "cam" or model.cam_capable:
        return
    name = cfg.model.name
    gap = f"{name}_gap" if f"{name}_gap" in available_networks() else "a GAP network such as alexnet_gap"
    raise ConfigError(
        f"model.name={name} has a fully connected head: it has no class activation map, so eval.method=cam "
        f"would report no localization metric at all. Add eval.method=backprop to the `camexp {command}` "
        f"command (the paper's Backprop baseline for FC networks), or train {gap} for CAMs."
    )


def build_cam_callback(cfg: DictConfig, datamodule: data.CAMDataModule, protocol: str | None = None) -> CAMCallback:
    """CAMCallback as the config sets it up; ``protocol`` overrides ``eval.protocol``."""
    return CAMCallback(
        datamodule.class_names,
        *datamodule.mean_std,
        cam_threshold=cfg.eval.cam_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        num_overlays=cfg.eval.num_overlays,
        method=cfg.eval.method,
        heuristic_top5=cfg.eval.heuristic_top5,
        protocol=protocol or cfg.eval.protocol,
        box_thresholds=cfg.eval.box_thresholds,
        wsoleval_size=cfg.eval.wsoleval_size,
    )


def check_accelerator(accelerator: str, devices=None) -> None:
    """A GPU that is not there (trainer.accelerator=gpu|cuda|mps), or more GPUs than there are, fails here in one
    paragraph instead of deep inside Lightning."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        built = "" if torch.version.cuda else "; this torch was built without CUDA"
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is usable here (torch.cuda.is_available() is "
            f"False{built}). Use trainer.accelerator=auto (the GPU when there is one, else the CPU) or "
            f"trainer.accelerator=cpu; on a GPU machine, check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES."
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but Apple's MPS is not available here. "
            f"Use trainer.accelerator=auto or trainer.accelerator=cpu."
        )
    cuda = name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())
    if cuda and isinstance(devices, int) and devices > torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {count} visible GPU(s). Set trainer.devices to at most "
            f"{count} (-1: all of them), or spread the processes over machines with trainer.num_nodes."
        )


def trainer_arguments(cfg: DictConfig, root_dir: Path, devices: int | None = None) -> dict[str, Any]:
    """The Trainer settings that training and evaluation share. ``devices`` replaces trainer.devices with that
    many processes on one node (the default strategy)."""
    t = cfg.trainer
    return dict(
        accelerator=t.accelerator,
        devices=t.devices if devices is None else devices,
        strategy=t.strategy if devices is None else "auto",
        num_nodes=t.num_nodes if devices is None else 1,
        precision=t.precision,
        deterministic=t.deterministic,
        limit_val_batches=t.limit_val_batches,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=verbose(),  # the layer table only with CAMEXP_VERBOSE=1
        default_root_dir=str(root_dir),
        use_distributed_sampler=False,  # the DataModule shards itself (exact evaluation, data/samplers.py)
        inference_mode=cfg.eval.method != "backprop",  # gradient saliency needs autograd in validation
    )


def wandb_settings(cfg: DictConfig) -> WandbSettings | None:
    """logger.wandb as the loggers take it (None when disabled); the run config is the experiment as written:
    resolved, but ${oc.env:...} as written, so no secret reaches the W&B config."""
    w = cfg.logger.wandb
    if not w.enabled:
        return None
    return WandbSettings(w.project, w.entity, list(w.tags), w.log_model, cfg.name, config.as_written(cfg))
