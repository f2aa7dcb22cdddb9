"""Samplers that make training reproducible and resumable.

:class:`ChunkSampler` cuts an endless stream of seeded permutations of the training set into chunks
of ``iterations x batch_size`` samples; each chunk is one Lightning "epoch", ending with validation
and a checkpoint (the paper validated and saved every 4800 iterations).  It yields
``(index, sample_seed)`` pairs: the seed drives that sample's augmentation, so a run resumed from a
checkpoint, or run with another number of workers, sees exactly the same images.

Under DDP each process takes every ``world_size``-th sample of the chunk (no padding, no repeats).
With ``steps_done`` (the trainer's global step) the chunk is located from the number of optimizer
steps already taken, which is what a resumed run must continue from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from torch.utils.data import Sampler

from medcolor.errors import ConfigError
from medcolor.utils import derive_seed


class ChunkSampler(Sampler[tuple[int, int]]):
    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        iterations: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        steps_done: Callable[[], int] | None = None,
    ) -> None:
        if num_samples < 1:
            raise ConfigError("the training set is empty")
        if batch_size < 1 or iterations < 1:
            raise ConfigError(f"batch_size and iterations must be >= 1, got {batch_size} and {iterations}")
        self.n, self.batch_size, self.iterations = num_samples, batch_size, iterations
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.steps_done = steps_done
        self._perms: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """The chunk to read next (used when no ``steps_done`` callback is given)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations * self.batch_size

    def _perm(self, r: int) -> np.ndarray:
        if r not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[r] = np.random.default_rng(derive_seed(self.seed, r)).permutation(self.n)
        return self._perms[r]

    def positions(self) -> np.ndarray:
        """Global stream positions this process reads in the current chunk."""
        per_chunk = self.iterations * self.batch_size * self.world_size
        if self.steps_done is not None:
            # where the run is, from its optimizer steps: right even just after a resume, where
            # Lightning's epoch counter can lag behind a checkpoint written at the end of a chunk
            start = self.steps_done() * self.batch_size * self.world_size
        else:
            start = self.epoch * per_chunk
        return np.arange(start + self.rank, start + per_chunk, self.world_size, dtype=np.int64)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for p in self.positions():
            r, k = divmod(int(p), self.n)
            yield int(self._perm(r)[k]), derive_seed(self.seed, 1_000_003, int(p))


class ShardSampler(Sampler[int]):
    """Evaluation order: indices ``rank, rank + world_size, ...`` (every sample exactly once overall)."""

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.rank, self.world_size = num_samples, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))


__all__ = ["ChunkSampler", "ShardSampler"]
