"""Samplers that keep evaluation exact under DDP.

torch's DistributedSampler pads the dataset by repeating samples so every rank gets the same count
(101 samples on 2 ranks are seen as 102): metrics would count some images twice. Evaluation uses
`ShardSampler` instead: rank r takes indices r, r + world, r + 2 * world, ... and nothing is repeated.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))
