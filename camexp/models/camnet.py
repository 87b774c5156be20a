"""CAMNet: the LightningModule that trains a GAP/GMP network from class labels alone.

`validation_step` / `test_step` return the logits AND the last conv feature maps they already
computed, so CAMCallback turns them into CAMs without a second forward pass.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from camexp.config import DataConfig, ModelConfig, OptimConfig
from camexp.errors import CamexpError, CheckpointError
from camexp.models.registry import build_network


class CAMNet(pl.LightningModule):
    def __init__(
        self,
        network: str,
        num_classes: int,
        pool: str = ModelConfig.pool,
        width: int = ModelConfig.width,
        dropout: float = ModelConfig.dropout,
        pretrained: bool = ModelConfig.pretrained,
        weights_path: str | None = ModelConfig.weights_path,
        optim: Mapping[str, Any] | None = None,
        class_names: list[str] | None = None,
        input_size: int | None = None,
        normalize: str = DataConfig.normalize,
    ) -> None:
        """Defaults are the config schema's (`ModelConfig`, `DataConfig.normalize`, `OptimConfig` for each
        optimizer setting that `optim` leaves out). `input_size` and `normalize` record how the data pipeline
        prepared the images (the network does not use them): with `class_names` they make a checkpoint usable
        on new images (`camexp cam --ckpt`)."""
        super().__init__()
        self.save_hyperparameters()
        self.net = build_network(
            network,
            num_classes=num_classes,
            pool=pool,
            width=width,
            dropout=dropout,
            pretrained=pretrained,
            weights_path=weights_path,
        )
        # the schema's optimizer defaults under the given settings (a checkpoint stores the dict it was given)
        self.optim = {**asdict(OptimConfig()), **(optim or {})}
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        # Evaluation loss = sum over every image of every rank / image count. Lightning's sync_dist mean is
        # wrong when shards differ in size: it averages the integer image counts (21 on 2 ranks -> 10).
        self.eval_loss = nn.ModuleDict({split: MeanMetric().set_dtype(torch.float64) for split in ("val", "test")})

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> CAMNet:
        """A `camexp train` checkpoint, read with weights_only=True whatever the torch version (no pickle payload
        runs), its network rebuilt from the hyperparameters without fetching any pretrained weights. Any file
        that does not load as one (another kind of torch file, a zip of other files) is one CheckpointError
        naming it."""
        try:
            return cls.load_from_checkpoint(
                str(path), map_location=map_location, weights_only=True, pretrained=False, weights_path=None
            )
        except CamexpError as err:  # the problem is named (e.g. an unknown network): add the file
            raise CheckpointError(f"Cannot load checkpoint {path}: {err}") from err
        except Exception as err:  # an arbitrary file can fail anywhere in torch.load or Lightning's reading
            raise CheckpointError(
                f"Cannot load checkpoint {path} (read with weights_only=True): {_load_failure(err)}. "
                f"Give a .ckpt written by `camexp train` (<run>/checkpoints/last.ckpt)."
            ) from err

    @property
    def cam_capable(self) -> bool:
        return bool(getattr(self.net, "cam_capable", False))

    @property
    def class_weights(self) -> Tensor:
        """C x K weights of the linear layer after pooling: the w_k^c of the paper."""
        return self.net.classifier.weight

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if "boxes" in batch or "mask" in batch:
            raise RuntimeError("A training batch carries boxes or masks: weak supervision forbids it.")
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        # sync_dist: every rank's batches count (training shards are equal-sized, so the mean is exact)
        log = dict(prog_bar=True, on_epoch=True, batch_size=len(logits), sync_dist=True)
        self.log("train/loss", loss, on_step=True, **log)
        self.log("train/acc_top1", acc, on_step=False, **log)
        return loss

    def _evaluation_step(self, batch: dict[str, Tensor], split: str) -> dict[str, Tensor]:
        features = self.net.forward_features(batch["image"])
        logits = self.net.forward_head(features)
        per_image = F.cross_entropy(logits.detach().double(), batch["label"], reduction="none")
        self.eval_loss[split].update(per_image)
        self.log(f"{split}/loss", self.eval_loss[split], on_step=False, on_epoch=True, batch_size=len(logits))
        return {"logits": logits.detach(), "features": features.detach()}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step(batch, "test")

    def configure_optimizers(self):
        settings = self.optim
        lr = float(settings["lr"])
        mult = float(settings["new_layers_lr_mult"])
        new_names = tuple(getattr(self.net, "new_modules", ()))
        new_params = [p for n, p in self.net.named_parameters() if n.split(".")[0] in new_names]
        new_ids = {id(p) for p in new_params}
        old_params = [p for p in self.net.parameters() if id(p) not in new_ids]
        groups = [g for g in ({"params": old_params, "lr": lr}, {"params": new_params, "lr": lr * mult}) if g["params"]]
        weight_decay = float(settings["weight_decay"])
        if settings["name"] == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        else:
            optimizer = torch.optim.SGD(
                groups,
                lr=lr,
                momentum=float(settings["momentum"]),
                weight_decay=weight_decay,
                nesterov=bool(settings["nesterov"]),
            )
        schedule = _lr_schedule(
            settings["scheduler"],
            total_steps=max(1, int(self.trainer.estimated_stepping_batches)),
            warmup_steps=int(settings["warmup_steps"]),
            step_size=int(settings["step_size"]),
            gamma=float(settings["gamma"]),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        # name: LearningRateMonitor logs it as train/lr (train/lr/pg1, /pg2 with new-layer groups)
        lr_scheduler = {"scheduler": scheduler, "interval": "step", "name": "train/lr"}
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}


def head_name(model: CAMNet) -> str:
    """GAP, GMP or FC: the network's head as the paper names it (from the built network, since
    googlenet_gmp pools by max whatever model.pool says, and an FC network has no global pooling)."""
    if not model.cam_capable:
        return "FC"
    return "GMP" if getattr(model.net, "pool", "avg") == "max" else "GAP"


def _load_failure(err: Exception) -> str:
    """One line on why a file did not load as a camexp checkpoint."""
    first = (str(err).splitlines() or [""])[0].split("  (Could this error message be improved?")[0].strip()
    if isinstance(err, KeyError):
        return f"it has no {err.args[0]!r} entry, so it is not a checkpoint that Lightning (camexp train) wrote"
    if isinstance(err, pickle.UnpicklingError):
        return f"it holds objects that a safe load refuses to unpickle ({first or type(err).__name__})"
    if isinstance(err, RuntimeError):
        return f"not a readable torch checkpoint ({first or type(err).__name__})"
    return f"its content is not a camexp checkpoint ({type(err).__name__}{': ' + first if first else ''})"


def _lr_schedule(kind: str, total_steps: int, warmup_steps: int, step_size: int, gamma: float):
    """Learning-rate factor per optimizer step: linear warmup, then cosine, step (x gamma every step_size) or flat."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "cosine":
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if kind == "step":
            return gamma ** (step // max(1, step_size))
        return 1.0

    return factor
