"""Data modules: the glue between a :class:`~medcolor.data.bundle.DataBundle` and Lightning.

Training batches come from :class:`~medcolor.data.samplers.ChunkSampler` (one "epoch" of Lightning is one
chunk of ``val_every`` iterations; the sample order and augmentation seeds derive from the stage seed and
the global step, so a resumed run sees the same batches); validation from
:class:`~medcolor.data.samplers.ShardSampler` (each sample once, split over processes).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from medcolor.data.bundle import DataBundle
from medcolor.data.samplers import ChunkSampler, ShardSampler
from medcolor.training.plan import StagePlan
from medcolor.utils import DieWithParent


class TrainData(L.LightningDataModule):
    """Training batches of a planned stage: ``iterations`` per Lightning epoch, drawn with ``seed``."""

    def __init__(self, bundle: DataBundle, plan: StagePlan, *, iterations: int, seed: int) -> None:
        super().__init__()
        self.bundle, self.iterations, self.seed = bundle, iterations, seed
        self.batch_size, self.num_workers = plan.batch_size, plan.num_workers
        self.rotate_zoom_in_worker, self.augment = plan.runtime.rotate_zoom_in_worker, plan.augment

    def _rank(self) -> tuple[int, int]:
        t = getattr(self, "trainer", None)
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    #: True: hand uint8 crops to the model side, which normalises the batch (:class:`~medcolor.data.bundle.NetworkView`;
    #: the same numbers).  Off by default: on a quiet AMD EPYC (2 cores) the loader gave 0.63x (decoded) and 0.91x
    #: (cached) the images/s of float32 batches (benchmarks/results/amd-epyc-2c-pipeline-quiet/)
    uint8 = False

    @property
    def worker_init_fn(self) -> DieWithParent | None:
        """Workers that die with this process: a SIGKILLed run leaves none behind (PyTorch's own check of the
        parent takes seconds, and none while a worker is busy)."""
        return DieWithParent() if self.num_workers > 0 else None

    def _loader(self, dataset: Any, sampler: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=getattr(dataset, "collate", None),
            worker_init_fn=self.worker_init_fn,
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        view = self.bundle.train_view(self.rotate_zoom_in_worker, self.augment, uint8=self.uint8)
        trainer = getattr(self, "trainer", None)
        steps = (lambda: trainer.global_step) if trainer is not None else None
        sampler = ChunkSampler(len(view), self.batch_size, self.iterations, self.seed, rank, world, steps)
        return self._loader(view, sampler)


class TrainValData(TrainData):
    """A stage's training chunks (``val_every`` iterations each) and its validation split."""

    def __init__(self, bundle: DataBundle, plan: StagePlan) -> None:
        super().__init__(bundle, plan, iterations=plan.schedule.val_every, seed=plan.seed)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        view = self.bundle.eval_view(self.bundle.val, uint8=self.uint8)
        return self._loader(view, ShardSampler(len(view), rank, world))


__all__ = ["TrainData", "TrainValData"]
