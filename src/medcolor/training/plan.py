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

from medcolor.config import LRFindConfig, RunConfig, StageConfig
from medcolor.errors import ConfigError
from medcolor.strategies import Strategy, get_strategy
from medcolor.training.runtime import Runtime, resolve_num_workers
from medcolor.utils import derive_seed


@dataclass(frozen=True)
class Schedule:
    total_steps: int
    val_every: int
    chunks: int
    iterations_per_epoch: int


def plan_stage(stage: StageConfig, n_train: int, batch_size: int, world_size: int) -> Schedule:
    """The iterations of a stage in ``chunks`` of ``val_every`` iterations (the last one shorter when they do not
    divide the stage's iterations)."""
    per_epoch = max(1, math.ceil(n_train / (batch_size * world_size)))
    if stage.iterations is not None and stage.epochs is not None:
        raise ConfigError(f"stage {stage.strategy!r}: give epochs or iterations, not both")
    if stage.iterations is not None:
        total = int(stage.iterations)
    else:
        total = math.ceil((stage.epochs if stage.epochs is not None else 1.0) * per_epoch)
    if total < 1:
        raise ConfigError(f"stage {stage.strategy!r} has no iterations (epochs={stage.epochs})")
    val_every = int(stage.val_every) if stage.val_every else per_epoch
    if val_every < 1:
        raise ConfigError(f"stage {stage.strategy!r}: val_every must be >= 1")
    chunks = math.ceil(total / min(val_every, total))
    val_every = math.ceil(total / chunks)
    # exactly ``total`` steps: the last chunk may be shorter (StopAtStageEnd ends it)
    return Schedule(total, val_every, chunks, per_epoch)


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


def _resolve_lr(stage: StageConfig) -> float | None:
    if not isinstance(stage.lr, str):
        return float(stage.lr)
    if stage.lr.lower() != "find":
        raise ConfigError(f"stage {stage.strategy!r}: lr must be a number or 'find', got {stage.lr!r}")
    lf = stage.lr_find
    if not 0 < lf.min_lr < lf.max_lr:
        raise ConfigError(f"LR finder range must satisfy 0 < min_lr < max_lr, got {lf.min_lr}, {lf.max_lr}")
    return None


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
        lr=_resolve_lr(stage),
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


__all__ = ["Schedule", "StagePlan", "plan_stage", "resolve_stage", "stage_seed"]
