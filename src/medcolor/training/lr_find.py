"""The LR range test (Smith 2017; the paper's fastai ``lr_find``): before a stage with ``lr: find``, the
learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``num_training`` steps; the point
of steepest loss descent becomes the stage's one-cycle maximum learning rate.

It runs on Lightning's ``Tuner`` with its own data (seeded apart from the stage's) and restores the
network afterwards.  Its result, ``lr_find.json``, and plot, ``lr_find.png``, are written to the stage
directory; a resumed stage reads the stored suggestion instead of searching again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import shutil
from typing import Any

import torch

from medcolor.data.bundle import DataBundle
from medcolor.errors import TrainingError
from medcolor.model import ColorTransferNet
from medcolor.training.callbacks import last_checkpoint
from medcolor.training.data import TrainData
from medcolor.training.module import ColorTransferModule
from medcolor.training.plan import StagePlan
from medcolor.training.runtime import make_trainer
from medcolor.utils import derive_seed, seed_everything, write_json

log = logging.getLogger(__name__)

LR_FIND_FILE = "lr_find.json"


class RangeTestModule(ColorTransferModule):
    """The stage's module during the range test, which is expected to diverge at its end: a
    non-finite loss or non-finite weights stop the test instead of failing the run."""

    def on_nonfinite_loss(
        self, loss: torch.Tensor, batch: dict[str, Any], batch_idx: int, x: torch.Tensor | None = None
    ) -> None:
        if x is not None:
            self._check_input(x, batch, "of the LR range test")  # bad data is an error here too
        self.trainer.should_stop = True
        return None

    def on_nonfinite_weights(self, names: list[str]) -> None:
        self.trainer.should_stop = True


@contextlib.contextmanager
def _lr_finder_without_bar():
    """Lightning's LR finder always draws its own tqdm bar (ignoring enable_progress_bar)."""
    from lightning.pytorch.tuner import lr_finder

    original = lr_finder.tqdm
    lr_finder.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        lr_finder.tqdm = original


def find_lr(plan: StagePlan, model: ColorTransferNet, bundle: DataBundle) -> float:
    """The suggested maximum learning rate of stage ``plan`` (stored, or found by the range test on
    ``model``, which is restored afterwards)."""
    from lightning.pytorch.tuner import Tuner

    stage_dir = plan.directory
    stored = stage_dir / LR_FIND_FILE
    if stored.is_file():
        return float(json.loads(stored.read_text())["suggestion"])
    last = last_checkpoint(stage_dir)
    if last.is_file():
        raise TrainingError(f"{last} exists but the stage's {LR_FIND_FILE} is missing; use --overwrite")
    lf = plan.lr_find
    # the sweep sets the learning rates itself: the module's own max lr plays no part
    module = RangeTestModule.from_plan(model, bundle.label_names, plan, lr=lf.min_lr)
    data = TrainData(bundle, plan, iterations=lf.num_training, seed=derive_seed(plan.seed, 77))
    tmp = stage_dir / "lr_find_tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    trainer = make_trainer(plan.runtime, max_epochs=1, default_root_dir=str(tmp))
    seed_everything(derive_seed(plan.seed, 78))
    quiet = contextlib.nullcontext() if plan.runtime.trainer.progress else _lr_finder_without_bar()
    try:
        with quiet:
            finder = Tuner(trainer).lr_find(
                module,
                datamodule=data,
                min_lr=lf.min_lr,
                max_lr=lf.max_lr,
                num_training=lf.num_training,
                update_attr=False,
            )
    except SystemExit as exc:
        raise KeyboardInterrupt("LR search interrupted") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lrs = list(map(float, finder.results["lr"])) if finder is not None else []
    losses = list(map(float, finder.results["loss"])) if finder is not None else []
    finite = [lo for lo in losses if math.isfinite(lo)]
    suggestion = finder.suggestion(skip_begin=min(10, len(lrs) // 5), skip_end=1) if finder else None
    if suggestion is None or len(finite) < 10 or not math.isfinite(suggestion):
        where = f" after {len(finite)} steps (last lr {lrs[len(finite) - 1]:.3g})" if finite else ""
        raise TrainingError(
            f"the LR finder of stage {plan.name!r} diverged{where}: the loss was not finite or rose "
            f"too early to suggest a learning rate in [{lf.min_lr:g}, {lf.max_lr:g}]. Lower "
            "--lr-min / --lr-max, or give a fixed learning rate with --lr."
        )
    from medcolor.report import plot_lr_find

    write_json(
        stored,
        {
            "suggestion": suggestion,
            "lr": lrs,
            "loss": losses,
            "min_lr": lf.min_lr,
            "max_lr": lf.max_lr,
            "num_training": lf.num_training,
            "method": "steepest descent",
        },
    )
    plot_lr_find(lrs, losses, suggestion, stage_dir / "lr_find.png", title=f"LR range test: {plan.name}")
    log.debug("[%s] LR range test: %d steps, %d finite losses", plan.name, len(lrs), len(finite))
    return float(suggestion)


__all__ = ["LR_FIND_FILE", "RangeTestModule", "find_lr"]
