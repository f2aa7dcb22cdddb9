"""The LR range test (Smith 2017; the paper's fastai ``lr_find``): before a stage with ``lr: find``, the
learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``num_training`` steps, and a rule
(``lr_find.rule``, :func:`~medcolor.training.lr_suggest.suggest_lr`; default ``steepest``, the steepest
descent of the bias-corrected smoothed loss) picks the stage's one-cycle maximum learning rate from the curve.

It runs on Lightning's ``Tuner`` with its own data (seeded apart from the stage's) and restores the
network afterwards.  Its result, ``lr_find.json``, and plot, ``lr_find.png``, are written to the stage
directory (the rule and its suggestion, marked on the plot); a resumed stage reads the stored suggestion
instead of searching again.
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
from medcolor.training.callbacks import ProgressLog, last_checkpoint
from medcolor.training.data import TrainData
from medcolor.training.lr_suggest import LR_RULES, diverged, smooth_losses, suggest_lr
from medcolor.training.module import ColorTransferModule
from medcolor.training.plan import StagePlan
from medcolor.training.runtime import make_trainer
from medcolor.utils import derive_seed, seed_everything, show_progress_bar, write_json

log = logging.getLogger(__name__)

LR_FIND_FILE = "lr_find.json"


class RangeTestModule(ColorTransferModule):
    """The stage's module during the range test, which is expected to diverge at its end: it records
    each step's raw loss, stops the sweep once the smoothed loss diverges (:func:`diverged`), and a
    non-finite loss or weights stop the test instead of failing the run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_losses: list[float] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        loss = super().training_step(batch, batch_idx)
        self.raw_losses.append(float(loss.detach()) if loss is not None else math.nan)
        if diverged(smooth_losses(self.raw_losses)):
            self.trainer.should_stop = True
        return loss

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
    stage_dir = plan.directory
    stored = stage_dir / LR_FIND_FILE
    if stored.is_file():
        return float(json.loads(stored.read_text())["suggestion"])
    last = last_checkpoint(stage_dir)
    if last.is_file():
        raise TrainingError(f"{last} exists but the stage's {LR_FIND_FILE} is missing; use --overwrite")
    lf = plan.lr_find
    lrs, raw = _sweep(plan, model, bundle)
    losses = [float(v) for v in smooth_losses(raw)]  # Lightning's own smoothing is biased (smooth_losses)
    finite = [lo for lo in losses if math.isfinite(lo)]
    skip = {"skip_begin": min(10, len(lrs) // 5), "skip_end": 1}
    suggestions = {rule: suggest_lr(lrs, losses, rule, **skip) for rule in LR_RULES}
    suggestion = suggestions[lf.rule]
    if suggestion is None or not math.isfinite(suggestion):
        where = f" after {len(finite)} steps (last lr {lrs[len(finite) - 1]:.3g})" if finite else ""
        raise TrainingError(
            f"the LR finder of stage {plan.name!r} diverged{where} or its loss never fell in "
            f"[{lf.min_lr:g}, {lf.max_lr:g}]: no learning rate to suggest ({lf.rule} rule). Change --lr-min / "
            "--lr-max, or give a fixed learning rate with --lr."
        )
    from medcolor.display import plot_lr_find

    write_json(
        stored,
        {
            "suggestion": suggestion,
            "rule": lf.rule,
            "suggestions": suggestions,  # what every rule gives on this curve
            "lr": lrs,
            "loss": losses,  # smoothed (smooth_losses), what the rules read
            "raw_loss": raw,
            "min_lr": lf.min_lr,
            "max_lr": lf.max_lr,
            "num_training": lf.num_training,
        }
        | skip,
    )
    title = f"LR range test: {plan.name}"
    plot_lr_find(lrs, losses, suggestion, stage_dir / "lr_find.png", title=title, rule=lf.rule)
    log.debug("[%s] LR range test: %d steps, %d finite losses", plan.name, len(lrs), len(finite))
    return float(suggestion)


def _sweep(plan: StagePlan, model: ColorTransferNet, bundle: DataBundle) -> tuple[list[float], list[float]]:
    """Lightning's LR range test over ``model`` (restored afterwards): the learning
    rates tried and the raw (unsmoothed) loss at each, cut to the same length."""
    from lightning.pytorch.tuner import Tuner

    lf = plan.lr_find
    # the sweep sets the learning rates itself: the module's own max lr plays no part
    module = RangeTestModule.from_plan(model, bundle.label_names, plan, lr=lf.min_lr)
    data = TrainData(bundle, plan, iterations=lf.num_training, seed=derive_seed(plan.seed, 77))
    tmp = plan.directory / "lr_find_tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    trainer = make_trainer(plan.runtime, max_epochs=1, default_root_dir=str(tmp))
    seed_everything(derive_seed(plan.seed, 78))
    bar = show_progress_bar(plan.runtime.trainer.progress)
    if plan.runtime.trainer.progress and not bar:  # the module logs it: the LR finder replaces the callbacks
        module.progress_log = ProgressLog("LR range test", lf.num_training)
    quiet = contextlib.nullcontext() if bar else _lr_finder_without_bar()
    try:
        with quiet:
            finder = Tuner(trainer).lr_find(
                module,
                datamodule=data,
                min_lr=lf.min_lr,
                max_lr=lf.max_lr,
                num_training=lf.num_training,
                update_attr=False,
                early_stop_threshold=None,  # RangeTestModule stops on its own (unbiased) smoothed loss
            )
    except SystemExit as exc:
        raise KeyboardInterrupt("LR search interrupted") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw = module.raw_losses
    lrs = list(map(float, finder.results["lr"]))[: len(raw)] if finder is not None else []
    return lrs, raw[: len(lrs)]


__all__ = ["LR_FIND_FILE", "LR_RULES", "RangeTestModule", "find_lr", "suggest_lr"]
