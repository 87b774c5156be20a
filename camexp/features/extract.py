"""Pooled GAP features of any GAP backbone, extracted once per split and cached on disk.

The paper's section 4 reuses a GAP network's features beyond its own classes: linear probes and their CAMs,
concept detectors, fine-grained crops, class-specific units all start here. A backbone is a `camexp train`
checkpoint or a registered network with packaged ImageNet weights (explain.load_explainer); a split is a
dataset of a camexp DataModule seen through the evaluation transform (whole image resized, no augmentation)
at the backbone's own input size and normalization.

The cache is keyed by the backbone's weights (a hash of its state dict, not its file name) and by the split's
images (paths, labels, file sizes and modification times), so features of another backbone or of changed
images are recomputed, never mixed in. Cache files are .npz read with allow_pickle=False.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset

from camexp import config
from camexp.data import CAMDataModule, build
from camexp.data.collate import collate_samples
from camexp.errors import CamexpError
from camexp.explainer import Explainer, load_explainer
from camexp.models.heads import global_pool

CACHE_VERSION = 1  # bump when what is stored changes
FEATURE_CACHE = "lightning_logs/feature_cache"  # the default --cache of every command built on this module


def load_backbone(spec: str | Path, device: str = "auto") -> Explainer:
    """A `camexp train` checkpoint (a path ending in .ckpt) or a registered network with packaged weights.
    Refuses networks without GAP/GMP features (the FC baselines), naming them."""
    spec = str(spec)
    if spec.endswith(".ckpt") or Path(spec).is_file():
        return load_explainer(ckpt=spec, device=device)
    return load_explainer(model=spec, device=device)


def probe_data(
    files: Sequence[str | Path], overrides: Sequence[str], backbone: Explainer
) -> tuple[DictConfig, CAMDataModule]:
    """The dataset of an experiment YAML (+ overrides), prepared and set up, its images seen at the backbone's
    input size and normalization (whatever the YAML says), so the features are the backbone's own."""
    fixed = [f"data.input_size={backbone.input_size}", f"data.normalize={backbone.normalize}"]
    cfg = config.load(list(files), [*overrides, *fixed])
    datamodule = build(cfg.data, str(config.data_root(cfg)), seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.load_index()
    return cfg, datamodule


def evaluation_split(datamodule: CAMDataModule, split: str) -> Dataset:
    """`split` ("train", "val" or "test") through the evaluation transform: whole image, boxes when it has them."""
    names = {"train": datamodule.train_split, "val": datamodule.val_split, "test": datamodule.test_split}
    name = names.get(split) or datamodule.val_split
    return datamodule.build_dataset(name, datamodule._eval_transform(), evaluation=True)


def backbone_fingerprint(net: nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes, values): equal iff the weights are."""
    digest = hashlib.sha1()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def split_fingerprint(dataset: Dataset, input_size: int, normalize: str) -> str:
    """A hash of the split's image list (paths, labels, file sizes and mtimes) and how the images are prepared."""
    images = getattr(dataset, "images", None)
    if images is None:
        raise CamexpError(f"Cannot fingerprint a {type(dataset).__name__}: feature caching needs an image-list split.")
    digest = hashlib.sha1(f"v{CACHE_VERSION}:{input_size}:{normalize}:{images.root.resolve()}".encode())
    for i in range(len(images)):
        stat = images.path(i).stat()
        digest.update(f"{images.relpath(i)}:{int(images.labels[i])}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class SplitFeatures:
    features: np.ndarray  # N x K float32: the backbone's own global pooling (GAP or GMP) of its last conv maps
    labels: np.ndarray  # N int64
    cache_path: Path | None = None
    from_cache: bool = False


@torch.no_grad()
def extract(
    backbone: Explainer, dataset: Dataset, batch_size: int = 32, num_workers: int = 0, desc: str = "features"
) -> SplitFeatures:
    """Pooled last-conv features of every image of `dataset`, in dataset order, with a progress bar."""
    from tqdm import tqdm

    net = backbone.net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples)
    features, labels = [], []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        maps = net.forward_features(batch["image"].to(backbone.device))
        features.append(global_pool(maps, getattr(net, "pool", "avg")).float().cpu().numpy())
        labels.append(batch["label"].numpy())
    return SplitFeatures(np.concatenate(features).astype(np.float32), np.concatenate(labels).astype(np.int64))


def cached_features(
    backbone: Explainer,
    dataset: Dataset,
    cache_dir: str | Path | None,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "features",
    variant: str = "",
) -> SplitFeatures:
    """`extract`, read from `cache_dir` when this backbone's features of this split are there (instant), else
    computed and written there (atomically: a killed extraction leaves no partial file). variant: what else
    decides the images beyond the split's files (e.g. the crop boxes of features.finegrained), part of the key."""
    if cache_dir is None:
        return extract(backbone, dataset, batch_size, num_workers, desc)
    key = f"{backbone_fingerprint(backbone.net)}_{split_fingerprint(dataset, backbone.input_size, backbone.normalize)}"
    key += f"_{variant}" if variant else ""
    path = Path(cache_dir) / f"features_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            return SplitFeatures(stored["features"], stored["labels"], path, from_cache=True)
    result = extract(backbone, dataset, batch_size, num_workers, desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, features=result.features, labels=result.labels)
    partial.replace(path)
    result.cache_path = path
    return result
