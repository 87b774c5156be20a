"""Batching for evaluation samples, whose number of GT boxes varies per image."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate


def collate_samples(samples: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack samples; pad `boxes` to N x B x 4 with `box_count` (N,) valid rows. None samples
    (skipped corrupt images) are dropped and counted in `skipped`."""
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        return {"skipped": torch.tensor(skipped)}
    boxes = [s.pop("boxes") for s in kept] if "boxes" in kept[0] else None
    batch = default_collate(kept)
    if boxes is not None:
        most = max(1, max(len(b) for b in boxes))
        padded = torch.zeros(len(boxes), most, 4)
        for i, b in enumerate(boxes):
            padded[i, : len(b)] = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
        batch["boxes"] = padded
        batch["box_count"] = torch.tensor([len(b) for b in boxes])
    batch["skipped"] = torch.tensor(skipped)
    return batch
