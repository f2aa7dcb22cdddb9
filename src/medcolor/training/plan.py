"""A stage resolved once: :func:`resolve_stage` turns a :class:`~medcolor.config.StageConfig` and the run
around it into one :class:`StagePlan` — the strategy, the learning rate (or that the LR range test sets
it), the iteration schedule, batch size, seed, optimiser settings and the :class:`Runtime` — which the
LR range test, the LightningModule and the data module then read.

:func:`plan_stage` is the iteration arithmetic alone: a stage of ``epochs`` or ``iterations`` becomes
``chunks`` of ``val_every`` iterations (validation + checkpoint after each chunk; the last chunk is shorter
when ``val_every`` does not divide the stage's iterations).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from medcolor.config import LRFind, LRFindConfig, RunConfig, StageConfig
from medcolor.errors import ConfigError
from medcolor.strategies import Strategy, default_colorizer, get_strategy
from medcolor.training.runtime import Runtime
from medcolor.utils import derive_seed, resolve_num_workers


@dataclass(frozen=True)
class Schedule:
    total_steps: int
    val_every: int
    chunks: int
    iterations_per_epoch: int


def iterations_per_epoch(n_train: int, batch_size: int, world_size: int) -> int:
    return max(1, math.ceil(n_train / (batch_size * world_size)))


def stage_iterations(stage: StageConfig, n_train: int | None, batch_size: int, world_size: int) -> int | None:
    """The iterations a stage trains; None when the stage is given in epochs and the training-set size
    ``n_train`` is unknown (a cost estimate without it)."""
    if n_train is None:
        return stage.length.iterations
    return plan_stage(stage, n_train, batch_size, world_size).total_steps


def plan_stage(stage: StageConfig, n_train: int, batch_size: int, world_size: int) -> Schedule:
    """The iterations of a stage in ``chunks`` of ``val_every`` iterations (the last one shorter when they do
    not divide the stage's iterations: exactly ``total`` steps, ``StopAtStageEnd`` ends the last chunk)."""
    per_epoch = iterations_per_epoch(n_train, batch_size, world_size)
    total = stage.length.total(per_epoch)
    if total < 1:
        raise ConfigError(f"stage {stage.strategy!r} has no iterations (epochs={stage.epochs})")
    val_every = min(int(stage.val_every) if stage.val_every else per_epoch, total)
    chunks = math.ceil(total / val_every)
    return Schedule(total, math.ceil(total / chunks), chunks, per_epoch)


def run_colorizer(cfg: RunConfig) -> str:
    """The run's T: ``model.colorizer``, or the default of its first stage's strategy."""
    return cfg.model.colorizer or default_colorizer(cfg.stages[0].strategy if cfg.stages else "color-module")


def stage_seed(run_seed: int, index: int) -> int:
    """The seed of stage ``index`` (all of a stage's randomness derives from it)."""
    return derive_seed(run_seed, index)


@dataclass(frozen=True)
class StagePlan:
    """Everything a stage needs to run, decided once."""

    index: int
    strategy: Strategy
    directory: Path
    seed: int
    #: the one-cycle maximum learning rate; None until the LR range test has set it (``lr: find``)
    lr: float | None
    #: the LR range test's settings (used when ``lr`` is None)
    lr_find: LRFindConfig
    schedule: Schedule
    batch_size: int
    num_workers: int
    augment: bool
    momentum: float
    weight_decay: float
    pct_start: float
    frozen_bn: str
    #: re-initialise C (None: the strategy's choice)
    reset_head: bool | None
    runtime: Runtime

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def needs_lr_find(self) -> bool:
        return self.lr is None

    def with_lr(self, lr: float) -> StagePlan:
        return dataclasses.replace(self, lr=float(lr))


def resolve_stage(
    index: int,
    stage: StageConfig,
    cfg: RunConfig,
    *,
    runtime: Runtime,
    n_train: int,
    world_size: int,
    directory: Path,
) -> StagePlan:
    """Stage ``index`` of run ``cfg`` (``n_train`` training images shared by ``world_size`` processes)."""
    return StagePlan(
        index=index,
        strategy=get_strategy(stage.strategy),
        directory=Path(directory),
        seed=stage_seed(cfg.trainer.seed, index),
        lr=None if isinstance(stage.lr, LRFind) else float(stage.lr),
        lr_find=stage.lr_find,
        schedule=plan_stage(stage, n_train, cfg.data.batch_size, world_size),
        batch_size=cfg.data.batch_size,
        num_workers=resolve_num_workers(cfg.data.num_workers, runtime.accelerator, world_size),
        augment=cfg.data.augment,
        momentum=stage.momentum,
        weight_decay=stage.weight_decay,
        pct_start=stage.pct_start,
        frozen_bn=cfg.model.frozen_bn,
        reset_head=stage.reset_head,
        runtime=runtime,
    )


__all__ = [
    "Schedule",
    "StagePlan",
    "iterations_per_epoch",
    "plan_stage",
    "resolve_stage",
    "run_colorizer",
    "stage_iterations",
    "stage_seed",
]
