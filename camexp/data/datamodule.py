"""The shared LightningDataModule: loaders, samplers and the batch contract for every dataset family.

Subclasses only say how to build a split's Dataset (`build_dataset`) and what the classes are.
Training loaders use a seeded DistributedSampler (deterministic order per epoch, so a resumed run
sees the same data order); evaluation loaders use ShardSampler (no padding: exact metrics on N ranks).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from camexp.data.collate import collate_samples
from camexp.data.resumable import ResumableDataLoader, ResumableDistributedSampler
from camexp.data.samplers import ShardSampler
from camexp.data.transforms import eval_transform, normalization, train_transform
from camexp.errors import ConfigError, DatasetError


def check_extra_options(name: str, extra: dict[str, Any] | None, known: tuple[str, ...]) -> dict[str, Any]:
    """data.extra for dataset `name`, after refusing keys it does not know (a typo would be ignored)."""
    extra = dict(extra or {})
    unknown = sorted(set(extra) - set(known))
    if unknown:
        listed = ", ".join(known) if known else f"none ({name} takes no data.extra options; remove data.extra)"
        raise ConfigError(f"Unknown data.extra option(s) for {name}: {unknown}. Known: {listed}.")
    return extra


class CAMDataModule(pl.LightningDataModule):
    has_boxes = True  # scene datasets set False: CAMs are logged, box metrics skipped

    def __init__(
        self,
        input_size: int = 224,
        train_resize: int = 256,
        hflip: bool = True,
        normalize: str = "imagenet",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        skip_corrupt: bool = False,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.input_size, self.train_resize, self.hflip, self.normalize = input_size, train_resize, hflip, normalize
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.skip_corrupt = skip_corrupt
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.seed = seed
        self.class_names: list[str] = []
        self._datasets: dict[str, Dataset] = {}

    # -- what subclasses provide -------------------------------------------------------------------
    def load_index(self) -> None:
        """Read the dataset's index files and set `self.class_names`."""
        raise NotImplementedError

    def build_dataset(self, split: str, transform, evaluation: bool) -> Dataset:
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return normalization(self.normalize)

    def setup(self, stage: str | None = None) -> None:
        if not self.class_names:
            self.load_index()
        if stage in (None, "fit") and "train" not in self._datasets:
            transform = train_transform(self.input_size, self.train_resize, self.hflip, self.normalize)
            self._datasets["train"] = self.build_dataset(self.train_split, transform, evaluation=False)
        if stage in (None, "fit", "validate") and "val" not in self._datasets:
            self._datasets["val"] = self.build_dataset(self.val_split, self._eval_transform(), evaluation=True)
        if stage in (None, "test") and "test" not in self._datasets:
            split = self.test_split or self.val_split
            self._datasets["test"] = self.build_dataset(split, self._eval_transform(), evaluation=True)

    def _eval_transform(self):
        return eval_transform(self.input_size, self.normalize)

    def dataset(self, which: str) -> Dataset:
        if which not in self._datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[which])
        return self._datasets[which]

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(
        self, dataset: Dataset, sampler, batch_size: int, drop_last: bool = False, loader_cls=DataLoader, **extra
    ) -> DataLoader:
        return loader_cls(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            collate_fn=collate_samples,
            drop_last=drop_last,
            **extra,
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        dataset = self.dataset("train")
        sampler = ResumableDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        drop_last = len(dataset) > self.batch_size * world
        # Resumable: a run resumed from a mid-epoch checkpoint continues this epoch's order (data/resumable.py).
        return self._loader(dataset, sampler, self.batch_size, drop_last, ResumableDataLoader, seed=self.seed)

    def _eval_loader(self, which: str) -> DataLoader:
        rank, world = self._rank_world()
        dataset = self.dataset(which)
        return self._loader(dataset, ShardSampler(len(dataset), rank, world), self.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def check_num_classes(self, model_classes: int | None) -> int:
        """The model's class count must match the data's; fail before training starts if not."""
        if model_classes is not None and model_classes != self.num_classes:
            raise DatasetError(
                f"model.num_classes={model_classes} but the dataset has {self.num_classes} classes. "
                f"Remove model.num_classes (it defaults to the dataset's) or point data.root at the right dataset."
            )
        return self.num_classes
