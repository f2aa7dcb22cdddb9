"""Callbacks of a stage: per-chunk history (``history.json``), the best and the latest checkpoints, reseeding
every optimizer step so that a resumed run draws the same random numbers as an uninterrupted one, the stop at
the stage's exact number of iterations, and :class:`ProgressLog` (a one-line progress log when no progress bar
is drawn).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint

from medcolor.training.module import ColorTransferModule
from medcolor.utils import derive_seed, seed_everything, write_json

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


class ReseedEachStep(Callback):
    """Every optimizer step starts from RNG state derived from (seed, step, rank): dropout (e.g. the
    one torchvision keeps before a classifier) draws the same numbers in a resumed run, whatever else
    (data-loader set-up, validation) consumed random numbers before it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        seed_everything(derive_seed(self.seed, trainer.global_step, trainer.global_rank))


class History(Callback):
    """Per-chunk metrics (train loss, val loss and AUCs, lr); saved in checkpoints so a resumed run
    keeps its history; written to ``history.json`` atomically."""

    def __init__(self, path: Path, log_level: int = logging.DEBUG) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.time()
        #: the level of the one line logged per chunk (INFO where it stands in for a progress bar)
        self.log_level = log_level

    @property
    def state_key(self) -> str:
        return "_History"  # the key of this state in checkpoints, as written since the first version

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the module's on_validation_epoch_end has logged this chunk's metrics, and before
        # ModelCheckpoint (which Lightning runs last) saves this history into the checkpoint
        if trainer.sanity_checking or not isinstance(pl_module, ColorTransferModule):
            return
        m = trainer.callback_metrics
        row = {
            "step": trainer.global_step,
            "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
            "train_loss": _num(m.get("train/loss_chunk")),
            "val_loss": _num(m.get("val/loss")),
            "val_mean_auc": _num(m.get("val/mean_auc")),
            "val_auc": {n: _num(m.get(f"val/auc/{n}")) for n in pl_module.label_names},
            "elapsed_s": round(time.time() - self.t0, 2),
        }
        self.rows = [r for r in self.rows if r["step"] < row["step"]] + [row]
        if trainer.is_global_zero:
            write_json(self.path, self.rows)
            log.log(
                self.log_level,
                f"[{pl_module.stage_name}] step {row['step']}/{pl_module.total_steps}: train loss "
                f"{_fmt(row['train_loss'])}, val loss {_fmt(row['val_loss'])}, "
                f"val mean AUC {_fmt(row['val_mean_auc'])}",
            )

    def best(self) -> dict[str, Any] | None:
        """The row of the best validation mean AUC (None before the first validation)."""
        return max(
            (r for r in self.rows if r["val_mean_auc"] is not None),
            key=lambda r: r["val_mean_auc"],
            default=None,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class LatestCheckpoint(Checkpoint):
    """``checkpoints/last.ckpt``: the state at the end of every chunk (after its validation, and so at the
    stage's final step), whatever its AUC — the state a killed run resumes from.  Lightning's own
    ``save_last`` is not used: with Lightning 2.6 it rewrites ``last.ckpt`` only when the monitored
    checkpoint is saved, so it holds the best state, not the latest.

    Saved at the end of the training epoch (a chunk), where the best-checkpoint callback saves too
    (``save_on_train_epoch_end=True``); being a :class:`Checkpoint` listed after it, it runs after it and
    after every other callback, so the file holds their updated state (best score, history).  Written
    atomically (a kill while writing keeps the previous one).  Tells the module its path, for the error
    message of a diverged run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.path.is_file() and isinstance(pl_module, ColorTransferModule):  # resumed from it
            pl_module.last_good_checkpoint = str(self.path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # a full checkpoint: the resume state
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("latest_checkpoint")
        if isinstance(pl_module, ColorTransferModule):
            pl_module.last_good_checkpoint = str(self.path)


#: seconds between two :class:`ProgressLog` lines (a line also every ``every_steps`` steps when given)
PROGRESS_EVERY_S = 30.0


def duration(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressLog(Callback):
    """Progress a user sees when output is not a terminal (a log file, a pipe, a batch job): every
    ``every_steps`` optimizer steps or ``every_s`` seconds (default :data:`PROGRESS_EVERY_S`), one line through
    :mod:`logging` — phase, step/total, the training loss (smoothed), images per second and the ETA::

        [color-module] training: step 120/480 (25%), loss 0.4132, 41.3 img/s, ETA 3:29

    The line starts with the module's ``stage_name`` in brackets.  ``total``: the phase's steps (default: the
    module's ``total_steps``).  The ETA counts everything since the phase started (validation included).
    Writes nothing else and changes nothing the run computes."""

    def __init__(
        self,
        phase: str,
        total: int | None = None,
        *,
        every_steps: int | None = None,
        every_s: float | None = None,
        level: int = logging.INFO,
        clock: Any = time.monotonic,
    ) -> None:
        self.phase, self.total, self.every_steps, self.level, self.clock = phase, total, every_steps, level, clock
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self._start_t = self._last_t = 0.0
        self._start_step = self._last_step = 0
        self._images = 0
        self._loss: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_t = self._last_t = self.clock()
        self._start_step = self._last_step = trainer.global_step
        self._images, self._loss = 0, None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._add_loss(outputs)
        if isinstance(batch, dict) and hasattr(batch.get("image"), "shape"):
            self._images += int(batch["image"].shape[0]) * trainer.world_size
        step, now = trainer.global_step, self.clock()
        total = self.total if self.total is not None else int(getattr(pl_module, "total_steps", 0))
        if not self._due(step, now) or step >= total or not trainer.is_global_zero:
            return
        log.log(self.level, self._line(getattr(pl_module, "stage_name", None), step, total, now))
        self._last_t, self._last_step = now, step

    def _add_loss(self, outputs: Any) -> None:
        """The batch's training loss into the smoothed loss (non-finite losses are left out)."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        v = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        if math.isfinite(v):
            self._loss = v if self._loss is None else 0.9 * self._loss + 0.1 * v

    def _due(self, step: int, now: float) -> bool:
        """A line is due: ``every_steps`` steps or ``every_s`` seconds since the last one."""
        return (
            bool(self.every_steps and step - self._last_step >= self.every_steps) or now - self._last_t >= self.every_s
        )

    def _line(self, name: str | None, step: int, total: int, now: float) -> str:
        elapsed = max(now - self._start_t, 1e-9)
        done = step - self._start_step
        eta = (total - step) * elapsed / done if done else float("nan")
        loss_text = "-" if self._loss is None else f"{self._loss:.4f}"
        prefix = f"[{name}] {self.phase}" if name else self.phase
        return (
            f"{prefix}: step {step}/{total} ({100 * step // max(total, 1)}%), loss {loss_text}, "
            f"{self._images / elapsed:.1f} img/s, ETA {duration(eta) if math.isfinite(eta) else '?'}"
        )


class StopAtStageEnd(Callback):
    """Stops a stage at exactly the module's ``total_steps``: the last chunk of a stage whose iterations are not a
    multiple of its chunk length is shorter (``--iterations 20`` in chunks of 7: 7 + 7 + 6).  Lightning validates
    when a run is asked to stop, so the short chunk is validated and checkpointed like the others; a chunk that
    ends on its own is left alone."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = getattr(pl_module, "total_steps", None)
        if total is not None and trainer.global_step >= total:  # resumed from the stage's final checkpoint
            trainer.should_stop = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        total = getattr(pl_module, "total_steps", None)
        if total is not None and trainer.global_step >= total and batch_idx + 1 < trainer.num_training_batches:
            trainer.should_stop = True


@dataclass
class StageCallbacks:
    """The callbacks of a stage in ``directory``: ``checkpoints/best.ckpt`` (highest validation mean AUC),
    ``checkpoints/last.ckpt`` (the latest validated state: :class:`LatestCheckpoint`) and ``history.json``."""

    checkpoint: ModelCheckpoint
    history: History
    all: list[Callback]

    @classmethod
    def create(cls, directory: Path, seed: int, *, progress_lines: bool = False) -> StageCallbacks:
        """``progress_lines``: log each chunk's line at INFO and a :class:`ProgressLog` line every
        :data:`PROGRESS_EVERY_S` seconds (standing in for a progress bar)."""
        ckpt = ModelCheckpoint(
            dirpath=directory / CHECKPOINT_DIR,
            filename="best",
            monitor="val/mean_auc",
            mode="max",
            save_top_k=1,
            save_last=False,  # last.ckpt is LatestCheckpoint's
            every_n_epochs=1,
            save_on_train_epoch_end=True,  # after the chunk's validation; LatestCheckpoint saves after it
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        history = History(directory / HISTORY_FILE, logging.INFO if progress_lines else logging.DEBUG)
        latest = LatestCheckpoint(last_checkpoint(directory))
        extra: list[Callback] = [ProgressLog("training")] if progress_lines else []
        return cls(ckpt, history, [ckpt, latest, ReseedEachStep(seed), history, StopAtStageEnd(), *extra])


def last_checkpoint(directory: Path) -> Path:
    return directory / CHECKPOINT_DIR / LAST_CHECKPOINT


def format_auc(x: float | None) -> str:
    """An AUC (or loss) as printed on progress and stage lines: 3 decimals, ``n/a`` when unknown."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


__all__ = [
    "PROGRESS_EVERY_S",
    "History",
    "LatestCheckpoint",
    "ProgressLog",
    "ReseedEachStep",
    "StageCallbacks",
    "StopAtStageEnd",
    "duration",
    "format_auc",
    "last_checkpoint",
]
