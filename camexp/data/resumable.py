"""Training data order that survives a kill: a seeded DistributedSampler that can start an epoch
part-way, and a DataLoader whose position is saved in Lightning checkpoints.

Lightning (2.x) saves `state_dict()` of every training loader that has one and calls
`load_state_dict()` before iterating again, but it restarts a plain DataLoader from the first batch
of the epoch: a run resumed from a mid-epoch checkpoint would see those batches twice and the rest
never. `ResumableDataLoader` records (epoch, batches yielded) and skips what was already trained on.
It also draws its workers' base seed from its own generator, not the global RNG, so creating an
iterator does not shift the random augmentation stream (see camexp/runs/resume.py: random state).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch) whose next epoch can skip its first indices.

    `resume_at(epoch, samples)` makes the next `__iter__` yield epoch `epoch`'s order without its first
    `samples` indices; `set_epoch` with another epoch cancels the skip.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._skip = 0
        super().set_epoch(epoch)

    def resume_at(self, epoch: int, samples: int) -> None:
        self.epoch, self._skip = epoch, samples

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A training DataLoader with a ResumableDistributedSampler whose position is checkpointed.

    The state is (epoch, batches yielded this epoch, generator state at the epoch's start). Lightning
    asks for it when it saves a checkpoint, which happens after the training step of the last yielded
    batch (sized loaders are not prefetched), so the count is the number of batches trained on.
    """

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator().manual_seed(seed)
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableDistributedSampler):
            raise TypeError("ResumableDataLoader needs a ResumableDistributedSampler")
        self._epoch_start = 0  # batches skipped at the start of the current epoch (after a resume)
        self._yielded = 0
        self._generator_at_epoch_start = self.generator.get_state()

    def __iter__(self) -> Iterator[Any]:
        self._generator_at_epoch_start = self.generator.get_state()
        self._epoch_start, self._yielded = self.sampler._skip // max(1, self.batch_size or 1), 0
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": int(self.sampler.epoch),
            "batches_done": self._epoch_start + self._yielded,
            "batch_size": int(self.batch_size or 1),
            "generator": self._generator_at_epoch_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if int(state.get("batch_size", self.batch_size)) != self.batch_size:
            raise ValueError(
                f"The checkpoint was written with data.batch_size={state['batch_size']} (per process) and this run "
                f"uses {self.batch_size}: the data order cannot be resumed."
                f" Resume with the same batch size and devices."
            )
        if done >= len(self):  # the epoch was complete: continue with the next one from its start
            epoch, done = epoch + 1, 0
        else:  # the interrupted epoch again: same workers' base seed as before the kill
            self.generator.set_state(state["generator"])
        self.sampler.resume_at(epoch, done * int(self.batch_size or 1))
