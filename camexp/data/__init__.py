"""Datasets: one DataModule per family + shared transforms and box geometry. Never imports camexp.models."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from camexp.data.cub_datamodule import ClutteredMNISTDataModule, CUBDataModule, SynthLocDataModule
from camexp.data.datamodule import CAMDataModule, check_extra_options
from camexp.data.ilsvrc import ILSVRCDataModule
from camexp.data.scenes import (
    FolderSplitsDataModule,
    Places365DataModule,
    generic_splits,
    indoor67_splits,
    sun397_splits,
)
from camexp.data.wsoleval_meta import WSOLEvalDataModule
from camexp.errors import ConfigError

__all__ = [
    "CAMDataModule",
    "CUBDataModule",
    "ClutteredMNISTDataModule",
    "FolderSplitsDataModule",
    "ILSVRCDataModule",
    "Places365DataModule",
    "SynthLocDataModule",
    "WSOLEvalDataModule",
    "build",
]
DATASETS = ("synthloc", "cub", "ilsvrc", "wsoleval", "places365", "sun397", "indoor67", "scenes", "cluttered_mnist")


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
    extra = OmegaConf.to_container(data_cfg.extra, resolve=True) if data_cfg.get("extra") else {}
    if name in ("synthloc", "cluttered_mnist", "cub"):
        check_extra_options(name, extra, ())  # a typo in data.extra must not be silently ignored
    if name == "synthloc":
        return SynthLocDataModule(root, synth=OmegaConf.to_container(data_cfg.synth), **kwargs)
    if name == "cluttered_mnist":
        return ClutteredMNISTDataModule(root, digits=OmegaConf.to_container(data_cfg.digits), **kwargs)
    if name == "cub":
        return CUBDataModule(root, **kwargs)
    if name == "ilsvrc":
        return ILSVRCDataModule(root, extra, **kwargs)
    if name == "wsoleval":
        return WSOLEvalDataModule(root, extra, **kwargs)
    if name == "places365":
        return Places365DataModule(root, extra, **kwargs)
    folder_sets = {"sun397": sun397_splits, "indoor67": indoor67_splits, "scenes": generic_splits}
    if name in folder_sets:
        return FolderSplitsDataModule(folder_sets[name](root, extra), **kwargs)
    raise ConfigError(f"Unknown dataset data.name={name!r}. Available: {', '.join(DATASETS)}.")
