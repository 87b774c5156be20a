"""Backbones for the section-4 tests (finegrained, units): a tiny SynthNet-GAP trained for one epoch on the tiny
SynthLoc set, and an FC network's checkpoint (which those commands must refuse)."""

from __future__ import annotations

from pathlib import Path

_TRAINED: dict[str, Path] = {}


def tiny_gap_checkpoint(root: Path, save_dir: Path) -> Path:
    """last.ckpt of `camexp train` (SynthNet-GAP, width 8, 64 px, one epoch) on the tiny set, trained once."""
    from camexp import config
    from camexp.train import train
    from tests.conftest import REPO, tiny_overrides

    key = str(root)
    if key not in _TRAINED:
        cfg = config.load(REPO / "experiments" / "synthloc_gap.yaml", tiny_overrides(root, save_dir))
        train(cfg)
        _TRAINED[key] = save_dir / cfg.name / "version_0" / "checkpoints" / "last.ckpt"
    return _TRAINED[key]


def fc_checkpoint(path: Path, num_classes: int = 4) -> Path:
    """A CAMNet checkpoint of AlexNet with its FC head (the paper's classification baseline): no CAM."""
    import pytorch_lightning as pl
    import torch

    from camexp.models import CAMNet

    model = CAMNet(
        "alexnet_small",
        num_classes=num_classes,
        width=8,
        class_names=[f"c{i}" for i in range(num_classes)],
        input_size=64,
    )
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": pl.__version__,
        },
        path,
    )
    return path
