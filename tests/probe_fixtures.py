"""Backbones for the probe tests: CAMNet checkpoints in files, as `camexp train` writes them."""

from __future__ import annotations

from pathlib import Path

import torch


def save_checkpoint(path: Path, network: str = "synthnet", seed: int = 0, num_classes: int = 4) -> Path:
    """A CAMNet checkpoint (state dict + hyperparameters, 64 px inputs) with fresh weights drawn from `seed`:
    synthnet is a GAP network (width 8), alexnet_small the FC baseline without a CAM."""
    import pytorch_lightning as pl

    from camexp.models import CAMNet

    torch.manual_seed(seed)
    names = [f"c{i}" for i in range(num_classes)]
    model = CAMNet(network, num_classes=num_classes, width=8, class_names=names, input_size=64)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    torch.save({**checkpoint, "pytorch-lightning_version": pl.__version__}, path)
    return path
