"""Training: the paper's multi-stage transfer procedure on Lightning (Sec. III-A, IV-B).

:func:`train` runs a :class:`~medcolor.config.RunConfig`: it builds the data, the network ``C(E(T(x)))``
and then each stage in turn (e.g. ``color-module`` then ``all``), where a stage is

1. the strategy applied to the network (which of T, E, C train; C re-initialised);
2. an LR range test when ``lr: find`` (its loss-vs-LR plot saved; the steepest-descent point is the
   one-cycle maximum learning rate);
3. SGD with momentum and the one-cycle policy, validating and checkpointing every ``val_every``
   iterations, keeping the checkpoint of best validation mean AUC;
4. the best checkpoint becomes the stage's result (``model.safetensors``) and the next stage's start.

A run directory holds everything::

    RUN/config.yaml                 the resolved configuration
    RUN/1-color-module/             per stage: lr_find.{json,png}, checkpoints/{last,best}.ckpt,
                                    history.json, model.safetensors (best), result.json
    RUN/model.safetensors           the final network (+ colorizer.safetensors: T alone)
    RUN/test/metrics.json           per-label / mean AUC with bootstrap 95 % CIs, predictions.csv
    RUN/summary.json

Re-running the same command resumes a killed run from its last checkpoint and gives the same result as
an uninterrupted run (all randomness is derived from the seed, the stage and the chunk).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader

from medcolor.config import RunConfig, StageConfig, diff_configs
from medcolor.data.bundle import DataBundle, build_data
from medcolor.data.samplers import ChunkSampler, ShardSampler
from medcolor.data.transforms import AugmentConfig, BatchRotateZoom
from medcolor.errors import ConfigError, TrainingError
from medcolor.evaluation import MaskedAUROC, masked_bce_with_logits, mean_auc
from medcolor.model import ColorTransferNet
from medcolor.strategies import check_stage_sequence, default_colorizer, get_strategy
from medcolor.utils import atomic_path, derive_seed, seed_everything, write_json, write_text_atomic

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the LightningModule
class ColorTransferModule(L.LightningModule):
    """Holds the network and the optimisation recipe of one stage (masked BCE, SGD + one-cycle)."""

    def __init__(
        self,
        model: ColorTransferNet,
        label_names: list[str],
        *,
        lr: float = 1e-2,
        total_steps: int = 1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        pct_start: float = 0.25,
        channels_last: bool = False,
        device_augment: AugmentConfig | None = None,
        stage_name: str = "stage",
    ) -> None:
        super().__init__()
        self.model = model
        self.label_names = list(label_names)
        self.lr = lr
        self.total_steps = total_steps
        self.momentum, self.weight_decay, self.pct_start = momentum, weight_decay, pct_start
        self.channels_last = channels_last
        self.device_augment = BatchRotateZoom(device_augment) if device_augment is not None else None
        self.stage_name = stage_name
        self.val_auc = MaskedAUROC(len(self.label_names))
        self.lr_finding = False
        self.last_good_checkpoint: str | None = None
        self._train_loss = torch.zeros(2, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _input(self, batch: dict[str, Any], train: bool) -> torch.Tensor:
        x = batch["image"]
        if train and self.device_augment is not None:
            x = self.device_augment(x, batch["seed"])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        logits = self(self._input(batch, train=True))
        loss = masked_bce_with_logits(logits, batch["target"])
        if not torch.isfinite(loss):
            if self.lr_finding:  # the LR range test is expected to diverge at its end
                self.trainer.should_stop = True
                return None
            idx = batch["index"].tolist()
            raise TrainingError(
                f"the loss became {loss.item()} at step {self.global_step} of stage {self.stage_name!r} "
                f"(batch {batch_idx} of the current chunk, sample indices {idx[:8]}"
                f"{'...' if len(idx) > 8 else ''}); training stopped. The last good checkpoint is "
                f"{self.last_good_checkpoint or 'not written yet (the failure came before the first one)'}. "
                "Lower the learning rate (--lr, or the LR finder's --lr-max), or check these images."
            )
        self._train_loss += torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_loss.zero_()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(self._input(batch, train=False))
        loss = masked_bce_with_logits(logits, batch["target"])
        self.val_auc.update(torch.sigmoid(logits.float()), batch["target"])
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))

    def on_validation_epoch_end(self) -> None:
        aucs = np.atleast_1d(self.val_auc.compute().cpu().numpy())  # torchmetrics squeezes a single label
        self.val_auc.reset()
        m = mean_auc(aucs)
        self.log("val/mean_auc", m if not math.isnan(m) else float("nan"), prog_bar=True)
        for name, a in zip(self.label_names, aucs, strict=True):
            self.log(f"val/auc/{name}", float(a))
        n = float(self._train_loss[1])
        self.log("train/loss_chunk", float(self._train_loss[0]) / n if n else float("nan"))

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"stage {self.stage_name!r} has no trainable parameters")
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        # OneCycleLR needs >= 2 steps in its warm-up phase: very short stages get a longer warm-up
        total = max(self.total_steps, 4)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=self.lr,
            total_steps=total,
            pct_start=min(0.5, max(self.pct_start, 2 / total)),
            anneal_strategy="cos",
            cycle_momentum=True,
            base_momentum=0.85,
            max_momentum=0.95,
            div_factor=25.0,
            final_div_factor=1e4,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ----------------------------------------------------------------------------- data modules
class _TrainData(L.LightningDataModule):
    def __init__(
        self,
        bundle: DataBundle,
        batch_size: int,
        iterations: int,
        seed: int,
        num_workers: int,
        rotate_zoom_in_worker: bool,
        augment: bool,
    ) -> None:
        super().__init__()
        self.bundle, self.batch_size, self.iterations, self.seed = bundle, batch_size, iterations, seed
        self.num_workers, self.rotate_zoom_in_worker, self.augment = (
            num_workers,
            rotate_zoom_in_worker,
            augment,
        )

    def _rank(self) -> tuple[int, int]:
        t = getattr(self, "trainer", None)
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _loader(self, dataset: Any, sampler: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        view = self.bundle.train_view(self.rotate_zoom_in_worker, self.augment)
        trainer = getattr(self, "trainer", None)
        steps = (lambda: trainer.global_step) if trainer is not None else None
        sampler = ChunkSampler(len(view), self.batch_size, self.iterations, self.seed, rank, world, steps)
        return self._loader(view, sampler)


class _TrainValData(_TrainData):
    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        view = self.bundle.eval_view(self.bundle.val)
        return self._loader(view, ShardSampler(len(view), rank, world))


# ----------------------------------------------------------------------------- callbacks
class _ReseedEachStep(Callback):
    """Every optimizer step starts from RNG state derived from (seed, step, rank): dropout (e.g. the
    one torchvision keeps before a classifier) draws the same numbers in a resumed run, whatever else
    (data-loader set-up, validation) consumed random numbers before it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        seed_everything(derive_seed(self.seed, trainer.global_step, trainer.global_rank))


class _History(Callback):
    """Per-chunk metrics (train loss, val loss and AUCs, lr); saved in checkpoints so a resumed run
    keeps its history; written to ``history.json`` atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.time()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the module's on_validation_epoch_end has logged this chunk's metrics, and before
        # ModelCheckpoint (which Lightning runs last) saves this history into the checkpoint
        if trainer.sanity_checking or not isinstance(pl_module, ColorTransferModule) or pl_module.lr_finding:
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

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class _RememberLastCheckpoint(Callback):
    def __init__(self, ckpt: ModelCheckpoint) -> None:
        self.ckpt = ckpt

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if isinstance(pl_module, ColorTransferModule) and self.ckpt.last_model_path:
            pl_module.last_good_checkpoint = self.ckpt.last_model_path


def _num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


# ----------------------------------------------------------------------------- hardware choices
def resolve_accelerator(name: str) -> str:
    name = (name or "auto").lower()
    if name in ("auto", "gpu", "cuda"):
        if torch.cuda.is_available():
            return "cuda"
        if name != "auto":
            raise ConfigError(f"accelerator {name!r} was asked for but no CUDA GPU is visible; use --accelerator cpu")
        return "cpu"
    if name == "cpu":
        return "cpu"
    raise ConfigError(f"unknown accelerator {name!r}; valid: auto, cpu, gpu")


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 autocast where the hardware has bf16 (measured on a 2-core Xeon with AMX: see
    benchmarks/results/train_step.md), fp16 autocast on older GPUs, else fp32."""
    valid = {"auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"}
    if precision not in valid:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(sorted(valid))}")
    if precision != "auto":
        return precision
    if accelerator == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def resolve_channels_last(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).lower()
    if v == "auto":
        return True
    if v in {"true", "yes", "1"}:
        return True
    if v in {"false", "no", "0"}:
        return False
    raise ConfigError(f"channels_last must be auto, true or false, got {value!r}")


# ----------------------------------------------------------------------------- stage plan
@dataclass
class StagePlan:
    total_steps: int
    val_every: int
    chunks: int
    iterations_per_epoch: int


def plan_stage(stage: StageConfig, n_train: int, batch_size: int, world_size: int) -> StagePlan:
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
    return StagePlan(chunks * val_every, val_every, chunks, per_epoch)


# ----------------------------------------------------------------------------- results
@dataclass
class StageResult:
    index: int
    strategy: str
    directory: Path
    lr: float
    best_val_mean_auc: float | None
    best_val_auc: dict[str, float | None]
    best_step: int | None
    total_steps: int
    val_every: int
    time_s: float
    trainable_parameters: int

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["directory"] = str(self.directory)
        return d


@dataclass
class RunResult:
    directory: Path
    stages: list[StageResult]
    test: dict[str, Any] | None
    model_path: Path
    colorizer_path: Path | None
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the pipeline
CONFIG_FILE = "config.yaml"


def prepare_run_dir(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False) -> tuple[Path, RunConfig]:
    """Create the run directory or check it holds this same run.  Returns the directory and the config
    to use (with ``resume``: the stored one)."""
    out = Path(cfg.output)
    stored = out / CONFIG_FILE
    if out.exists() and overwrite:
        if stored.is_file() or not any(out.iterdir()):
            shutil.rmtree(out)
        else:
            raise ConfigError(f"{out} exists and is not a medcolor run directory; refusing to delete it")
    if stored.is_file():
        old = RunConfig.from_yaml(stored)
        if resume:
            old.output = cfg.output
            return out, old
        diffs = diff_configs(old.to_dict(), cfg.to_dict())
        diffs = [d for d in diffs if not d.startswith(("trainer.progress", "output"))]
        if diffs:
            raise ConfigError(
                f"{out} holds another run (its config differs: {'; '.join(diffs[:6])}). "
                "Use --resume to continue that run, --overwrite to replace it, or another --output."
            )
    elif out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")) and not resume:
        raise ConfigError(
            f"{out} exists and is not empty but holds no {CONFIG_FILE}; choose another --output or --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stored, cfg.to_yaml())
    return out, cfg


def build_model(cfg: RunConfig, bundle: DataBundle, log_fn=print) -> ColorTransferNet:
    """The network of a run: T, E (weights), C with one output per label; transferred T/E if asked."""
    from medcolor.io import load_colorizer, load_model

    m = cfg.model
    first = cfg.stages[0].strategy if cfg.stages else "color-module"
    colorizer = m.colorizer or default_colorizer(first)
    n_classes = len(bundle.label_names)
    weights = m.weights
    if m.init_from:
        path = Path(m.init_from)
        path = path / "model.safetensors" if path.is_dir() else path
        src, meta = load_model(path)
        model = src  # its T counts as transferred
        model.new_head(n_classes)
        log_fn(f"T and E from {path} (trained on {meta.get('dataset', '?')}); C is new with {n_classes} outputs")
        return model
    model = ColorTransferNet.create(colorizer, m.backbone, n_classes, weights, dropout=m.dropout)
    if model.backbone.load_report is not None:
        log_fn(str(model.backbone.load_report))
    if m.colorizer_from:
        t, meta = load_colorizer(m.colorizer_from)
        model.replace_colorizer(t, transferred=True)
        log_fn(
            f"T ({t.name}) from {m.colorizer_from} (trained with {meta.get('backbone', '?')} on "
            f"{meta.get('dataset', '?')}, strategy {meta.get('strategy', '?')})"
        )
    return model


def _make_trainer(cfg: RunConfig, accelerator: str, precision: str, **kw: Any) -> L.Trainer:
    t = cfg.trainer
    strategy = t.strategy
    kwargs: dict[str, Any] = dict(
        accelerator=accelerator,
        devices=t.devices if accelerator != "cpu" or t.devices != "auto" else 1,
        num_nodes=t.num_nodes,
        precision=precision,
        strategy=strategy,
        logger=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_model_summary=False,
        deterministic=t.deterministic
        if not isinstance(t.deterministic, str) or t.deterministic == "warn"
        else t.deterministic.lower() == "true",
    )
    kwargs.update(kw)
    kwargs.setdefault("enable_progress_bar", t.progress)
    return L.Trainer(**kwargs)


def _run_fit(trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
    """trainer.fit, turning Lightning's exit on Ctrl-C back into KeyboardInterrupt and giving OOM hints."""
    try:
        trainer.fit(*args, **kwargs)
    except SystemExit as exc:  # Lightning's graceful shutdown after KeyboardInterrupt
        raise KeyboardInterrupt("training interrupted") from exc
    except torch.OutOfMemoryError as exc:
        raise TrainingError(out_of_memory_hint(exc)) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower():
            raise TrainingError(out_of_memory_hint(exc)) from exc
        raise
    finally:
        with contextlib.suppress(ValueError):  # Lightning leaves SIGINT ignored after an interrupt
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def _lr_finder_without_bar():
    """Lightning's LR finder always draws its own tqdm bar (ignoring enable_progress_bar)."""
    import functools

    from lightning.pytorch.tuner import lr_finder

    original = lr_finder.tqdm
    lr_finder.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        lr_finder.tqdm = original


def out_of_memory_hint(exc: BaseException) -> str:
    return (
        f"out of memory ({str(exc).splitlines()[0][:200]}). Try a smaller --batch-size, a smaller input "
        "--size, --precision bf16-mixed (half the activation memory), fewer --num-workers, or a lighter "
        "--backbone / --colorizer (colorU has 1/3 of pixelshuffle's parameters)."
    )


def find_lr(
    module: ColorTransferModule,
    bundle: DataBundle,
    cfg: RunConfig,
    stage: StageConfig,
    stage_dir: Path,
    accelerator: str,
    precision: str,
    seed: int,
    batch_size: int,
    rotate_zoom_in_worker: bool,
) -> float:
    """LR range test (Smith 2017, Lightning's Tuner): exponential sweep, steepest-descent suggestion."""
    from lightning.pytorch.tuner import Tuner

    stored = stage_dir / "lr_find.json"
    if stored.is_file():
        import json

        return float(json.loads(stored.read_text())["suggestion"])
    lf = stage.lr_find
    if not 0 < lf.min_lr < lf.max_lr:
        raise ConfigError(f"LR finder range must satisfy 0 < min_lr < max_lr, got {lf.min_lr}, {lf.max_lr}")
    data = _TrainData(
        bundle,
        batch_size,
        lf.num_training,
        derive_seed(seed, 77),
        cfg.data.num_workers,
        rotate_zoom_in_worker,
        cfg.data.augment,
    )
    tmp = stage_dir / "lr_find_tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    trainer = _make_trainer(cfg, accelerator, precision, max_epochs=1, default_root_dir=str(tmp))
    module.lr_finding = True
    seed_everything(derive_seed(seed, 78))
    quiet = contextlib.nullcontext() if cfg.trainer.progress else _lr_finder_without_bar()
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
        module.lr_finding = False
        shutil.rmtree(tmp, ignore_errors=True)
    lrs = list(map(float, finder.results["lr"])) if finder is not None else []
    losses = list(map(float, finder.results["loss"])) if finder is not None else []
    finite = [lo for lo in losses if math.isfinite(lo)]
    suggestion = finder.suggestion(skip_begin=min(10, len(lrs) // 5), skip_end=1) if finder else None
    if suggestion is None or len(finite) < 10 or not math.isfinite(suggestion):
        where = f" after {len(finite)} steps (last lr {lrs[len(finite) - 1]:.3g})" if finite else ""
        raise TrainingError(
            f"the LR finder of stage {stage.strategy!r} diverged{where}: the loss was not finite or rose "
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
    plot_lr_find(lrs, losses, suggestion, stage_dir / "lr_find.png", title=f"LR range test: {stage.strategy}")
    return float(suggestion)


def run_stage(
    index: int,
    stage: StageConfig,
    model: ColorTransferNet,
    bundle: DataBundle,
    cfg: RunConfig,
    stage_dir: Path,
    log_fn=print,
) -> StageResult:
    """Run (or resume) one stage; afterwards ``model`` holds the stage's best checkpoint."""
    t0 = time.time()
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    precision = resolve_precision(cfg.trainer.precision, accelerator)
    channels_last = resolve_channels_last(cfg.trainer.channels_last)
    augment_on = cfg.data.augment_on
    if augment_on not in ("auto", "worker", "device"):
        raise ConfigError(f"data.augment_on must be auto, worker or device, got {augment_on!r}")
    on_device = augment_on == "device" or (augment_on == "auto" and accelerator == "cuda")
    strategy = model.apply_strategy(stage.strategy, cfg.model.frozen_bn, stage.reset_head)
    seed = derive_seed(cfg.trainer.seed, index)
    seed_everything(seed)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    ckpt_dir = stage_dir / "checkpoints"
    ckpt = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val/mean_auc",
        mode="max",
        save_top_k=1,
        save_last=True,
        every_n_epochs=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    history = _History(stage_dir / "history.json")
    trainer = _make_trainer(
        cfg,
        accelerator,
        precision,
        max_epochs=1,
        default_root_dir=str(stage_dir),
        callbacks=[ckpt, _ReseedEachStep(seed), history, _RememberLastCheckpoint(ckpt)],
    )
    plan = plan_stage(stage, len(bundle.train), cfg.data.batch_size, trainer.world_size)
    trainer.fit_loop.max_epochs = plan.chunks
    module = ColorTransferModule(
        model,
        bundle.label_names,
        lr=0.0,
        total_steps=plan.total_steps,
        momentum=stage.momentum,
        weight_decay=stage.weight_decay,
        pct_start=stage.pct_start,
        channels_last=channels_last,
        device_augment=AugmentConfig() if (on_device and cfg.data.augment) else None,
        stage_name=strategy.name,
    )
    if isinstance(stage.lr, str):
        if stage.lr.lower() != "find":
            raise ConfigError(f"stage {stage.strategy!r}: lr must be a number or 'find', got {stage.lr!r}")
        last = ckpt_dir / "last.ckpt"
        if last.is_file() and not (stage_dir / "lr_find.json").is_file():
            raise TrainingError(f"{last} exists but the stage's lr_find.json is missing; use --overwrite")
        log_fn(f"[{strategy.name}] LR range test ({stage.lr_find.num_training} steps)...")
        module.lr = find_lr(
            module,
            bundle,
            cfg,
            stage,
            stage_dir,
            accelerator,
            precision,
            seed,
            cfg.data.batch_size,
            not on_device,
        )
        log_fn(f"[{strategy.name}] LR finder suggests max lr {module.lr:.3g} (plot: {stage_dir / 'lr_find.png'})")
        seed_everything(seed)
    else:
        module.lr = float(stage.lr)
    data = _TrainValData(
        bundle,
        cfg.data.batch_size,
        plan.val_every,
        seed,
        cfg.data.num_workers,
        not on_device,
        cfg.data.augment,
    )
    last = ckpt_dir / "last.ckpt"
    resume_from = str(last) if last.is_file() else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log_fn(
        f"[{strategy.name}] {plan.total_steps} iterations ({plan.chunks} x {plan.val_every}), batch "
        f"{cfg.data.batch_size}, max lr {module.lr:.3g}, {trainable:,} trainable parameters, {precision}"
        f"{', channels_last' if channels_last else ''}{', resuming from ' + resume_from if resume_from else ''}"
    )
    with warnings.catch_warnings():
        # frozen_bn=eval keeps BN layers of frozen parts in eval mode on purpose
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
        _run_fit(trainer, module, datamodule=data, ckpt_path=resume_from, weights_only=True)
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    best_path = ckpt.best_model_path or str(last)
    state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    model.to(memory_format=torch.contiguous_format)
    model.finish_stage(strategy)
    best_row = max(
        (r for r in history.rows if r["val_mean_auc"] is not None),
        key=lambda r: r["val_mean_auc"],
        default=None,
    )
    return StageResult(
        index=index,
        strategy=strategy.name,
        directory=stage_dir,
        lr=module.lr,
        best_val_mean_auc=best_row["val_mean_auc"] if best_row else None,
        best_val_auc=best_row["val_auc"] if best_row else {},
        best_step=best_row["step"] if best_row else None,
        total_steps=plan.total_steps,
        val_every=plan.val_every,
        time_s=round(time.time() - t0, 2),
        trainable_parameters=trainable,
    )


def model_metadata(cfg: RunConfig, bundle: DataBundle, strategy: str) -> dict[str, Any]:
    return {
        "label_names": bundle.label_names,
        "normalization": bundle.normalization,
        "size": bundle.size,
        "dataset": bundle.dataset_name,
        "backbone": cfg.model.backbone,
        "backbone_weights": cfg.model.weights,
        "strategy": strategy,
        "run": str(Path(cfg.output).resolve()),
    }


def check_run_config(cfg: RunConfig) -> None:
    """Fail fast — before any data is read or any stage runs — on names and combinations that cannot work."""
    from medcolor.backbones import list_backbones
    from medcolor.colorizers import COLORIZERS
    from medcolor.data.datasets import list_datasets
    from medcolor.strategies import check_frozen_bn

    if not cfg.stages:
        raise ConfigError("the run has no stages; give --stages (e.g. color-module,all)")
    names = [n.lower() for n in list_datasets()] + ["synthetic"]
    if cfg.data.dataset.lower() not in names:
        raise ConfigError(f"unknown dataset {cfg.data.dataset!r}; valid datasets: {', '.join(names)}")
    if cfg.model.colorizer is not None:
        COLORIZERS.get(cfg.model.colorizer)
    if not cfg.model.init_from and cfg.model.backbone not in list_backbones():
        from medcolor.backbones import _unknown_backbone

        raise ConfigError(_unknown_backbone(cfg.model.backbone))
    check_frozen_bn(cfg.model.frozen_bn)
    resolve_precision(cfg.trainer.precision, "cpu")
    resolve_channels_last(cfg.trainer.channels_last)
    strategies = [get_strategy(s.strategy) for s in cfg.stages]
    for i, (st, s) in enumerate(zip(cfg.stages, strategies, strict=True)):
        if st.iterations is not None and st.epochs is not None:
            raise ConfigError(f"stage {i + 1} ({s.name}): give epochs or iterations, not both")
    colorizer = cfg.model.colorizer or default_colorizer(strategies[0])
    check_stage_sequence(
        strategies,
        colorizer=colorizer,
        learnable=COLORIZERS.get(colorizer).learnable or bool(cfg.model.colorizer_from),
        transferred=bool(cfg.model.colorizer_from or cfg.model.init_from),
    )


def train(
    cfg: RunConfig, *, resume: bool = False, overwrite: bool = False, log_fn=print, evaluate_test: bool = True
) -> RunResult:
    """Run (or resume) all stages of ``cfg``, then evaluate the final network on the test split."""
    from medcolor.inference import evaluate_dataset, write_predictions
    from medcolor.io import load_model, save_colorizer, save_model

    cfg = RunConfig.from_dict(cfg.to_dict())  # canonical values ("none" -> None...), as stored in config.yaml
    check_run_config(cfg)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    out, cfg = prepare_run_dir(cfg, resume=resume, overwrite=overwrite)
    if resume:
        check_run_config(cfg)  # the stored configuration
    seed_everything(cfg.trainer.seed)
    bundle = build_data(cfg.data, synthetic_dir=out / "synthetic-data")
    info = bundle.info
    log_fn(
        f"data: {bundle.dataset_name} train {info['train']} / val {info['val']} / test {info['test']} images, "
        f"labels {', '.join(bundle.label_names)}; input {bundle.size} px, mean/std {bundle.mean:.4f}/{bundle.std:.4f}"
    )
    write_json(out / "data.json", info | {"normalization": bundle.normalization})
    if bundle.skipped is not None:
        with atomic_path(out / "skipped_rows.csv") as tmp:
            bundle.skipped.to_csv(tmp, index=False)
        log_fn(f"{len(bundle.skipped):,} rows without an image were left out: listed in {out / 'skipped_rows.csv'}")
    model = build_model(cfg, bundle, log_fn)
    results: list[StageResult] = []
    for i, stage in enumerate(cfg.stages):
        stage_dir = out / f"{i + 1}-{stage.strategy}"
        done = stage_dir / "result.json"
        if done.is_file():
            import json

            stored = json.loads(done.read_text())
            best, _ = load_model(stage_dir / "model.safetensors")
            model.load_state_dict(best.state_dict())
            model.finish_stage(stage.strategy)
            stored["directory"] = Path(stored["directory"])
            results.append(StageResult(**stored))
            log_fn(f"[{stage.strategy}] already done (best val mean AUC {stored['best_val_mean_auc']})")
            continue
        res = run_stage(i, stage, model, bundle, cfg, stage_dir, log_fn)
        save_model(model, stage_dir / "model.safetensors", **model_metadata(cfg, bundle, stage.strategy))
        write_json(done, res.to_dict())
        results.append(res)
        log_fn(
            f"[{stage.strategy}] best val mean AUC {res.best_val_mean_auc} at step {res.best_step} ({res.time_s:.0f} s)"
        )
    final_strategy = cfg.stages[-1].strategy
    meta = model_metadata(cfg, bundle, final_strategy)
    model_path = save_model(model, out / "model.safetensors", **meta)
    colorizer_path = None
    if model.colorizer.learnable:
        colorizer_path = save_colorizer(model.colorizer, out / "colorizer.safetensors", **meta)
    test_metrics = None
    if evaluate_test:
        eval_set, eval_name = (bundle.test, "test") if bundle.test is not None else (bundle.val, "val")
        accelerator = resolve_accelerator(cfg.trainer.accelerator)
        res = evaluate_dataset(
            model,
            bundle.eval_view(eval_set),
            batch_size=cfg.data.batch_size,
            num_workers=cfg.data.num_workers,
            device=accelerator,
            precision="32-true",  # test metrics in full precision, whatever the training precision
            bootstrap=cfg.trainer.bootstrap,
            seed=cfg.trainer.seed,
            progress=cfg.trainer.progress,
        )
        test_dir = out / eval_name
        write_predictions(test_dir / "predictions.csv", eval_set, res.probs, bundle.label_names)
        test_metrics = res.result.to_dict() | {"split": eval_name}
        write_json(test_dir / "metrics.json", test_metrics)
    summary = {
        "name": cfg.name,
        "data": info,
        "stages": [r.to_dict() for r in results],
        "test": test_metrics,
        "model": str(model_path),
        "colorizer": str(colorizer_path) if colorizer_path else None,
        "parameters": model.parameter_summary(),
    }
    write_json(out / "summary.json", summary)
    return RunResult(out, results, test_metrics, model_path, colorizer_path, info)


__all__ = [
    "ColorTransferModule",
    "RunResult",
    "StagePlan",
    "StageResult",
    "build_model",
    "find_lr",
    "plan_stage",
    "prepare_run_dir",
    "resolve_precision",
    "run_stage",
    "train",
]
