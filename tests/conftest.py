"""Shared fixtures: tiny datasets written in the real on-disk layouts, offline loggers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
TINY_SYNTH = dict(seed=0, n_train=48, n_val=21, size=64, num_classes=4)


@pytest.fixture(scope="session")
def tiny_synthloc(tmp_path_factory) -> Path:
    """A 4-class, 64 px SynthLoc set (48 train / 21 val) in the CUB layout, written once per session."""
    from camexp.data.synth import generate_synthloc

    return generate_synthloc(tmp_path_factory.mktemp("synth") / "synthloc", progress=False, **TINY_SYNTH)


def tiny_overrides(root: Path, save_dir: Path, **extra) -> list[str]:
    """The default experiment shrunk for tests: the tiny set, 64 px, one short epoch, no workers."""
    overrides = {
        "data.root": str(root),
        "data.input_size": 64,
        "data.train_resize": 72,
        "data.batch_size": 16,
        "data.num_workers": 0,
        "data.synth.n_train": TINY_SYNTH["n_train"],
        "data.synth.n_val": TINY_SYNTH["n_val"],
        "data.synth.size": TINY_SYNTH["size"],
        "data.synth.num_classes": TINY_SYNTH["num_classes"],
        "model.width": 8,
        "optim.warmup_steps": 0,
        "trainer.max_epochs": 1,
        "trainer.enable_progress_bar": False,
        "eval.num_overlays": 4,
        "logger.save_dir": str(save_dir),
    }
    overrides.update(extra)
    return [f"{k}={v}" for k, v in overrides.items()]


def cub_table(root: Path, name: str) -> dict[int, list[str]]:
    """A CUB annotation file as {image_id: [fields...]}."""
    rows = [line.split() for line in (root / name).read_text().splitlines() if line.strip()]
    return {int(r[0]): r[1:] for r in rows}


def tight_box(mask) -> tuple[float, float, float, float]:
    """CUB's box of a mask: x, y of the first column and row, width = max col - min col + 1."""
    import numpy as np

    rows, cols = np.nonzero(mask)
    return (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)


def validate_with_cam_callback(root: Path, tmp_path: Path, **overrides):
    """A fresh tiny model validated once on the tiny set through the real Trainer and the CAM callback the
    config builds: (config, datamodule, model, callback)."""
    import pytorch_lightning as pl

    from camexp import config, data
    from camexp.wiring import build_cam_callback, build_model

    cfg = config.load([], tiny_overrides(root, tmp_path, **overrides))
    datamodule = data.build(cfg.data, str(root), seed=0)
    datamodule.prepare_data()
    datamodule.setup("validate")
    model = build_model(cfg, datamodule.num_classes, datamodule.class_names).eval()
    callback = build_cam_callback(cfg, datamodule)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        default_root_dir=str(tmp_path),
    )
    trainer.validate(model, datamodule=datamodule, verbose=False)
    return cfg, datamodule, model, callback
