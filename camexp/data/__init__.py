"""Datasets: one DataModule per family + shared transforms and box geometry. Never imports camexp.models."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from camexp.data.cub_datamodule import CUBDataModule, SynthLocDataModule
from camexp.data.datamodule import CAMDataModule
from camexp.errors import ConfigError

__all__ = ["CAMDataModule", "CUBDataModule", "SynthLocDataModule", "build"]


def _common_kwargs(cfg: DictConfig, seed: int) -> dict:
    d = cfg
    return dict(
        input_size=d.input_size,
        train_resize=d.train_resize,
        hflip=d.hflip,
        normalize=d.normalize,
        batch_size=d.batch_size,
        eval_batch_size=d.eval_batch_size,
        num_workers=d.num_workers,
        pin_memory=d.pin_memory,
        persistent_workers=d.persistent_workers,
        skip_corrupt=d.skip_corrupt,
        train_split=d.train_split,
        val_split=d.val_split,
        test_split=d.test_split,
        seed=seed,
    )


def build(data_cfg: DictConfig, root: str, seed: int = 0) -> CAMDataModule:
    """DataModule for `data.name` (root already defaulted by the caller)."""
    kwargs = _common_kwargs(data_cfg, seed)
    name = data_cfg.name
    if name == "synthloc":
        return SynthLocDataModule(root, synth=OmegaConf.to_container(data_cfg.synth), **kwargs)
    if name == "cub":
        return CUBDataModule(root, **kwargs)
    raise ConfigError(f"Unknown dataset data.name={name!r}. Available: synthloc, cub.")
