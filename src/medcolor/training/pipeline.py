"""The multi-stage transfer procedure of the paper (Sec. III-A, IV-B): :func:`train` and :func:`run_stage`.

:func:`train` runs a :class:`~medcolor.config.RunConfig`: it builds the data, the network ``C(E(T(x)))``
(:func:`build_model`) and then each stage in turn (e.g. ``color-module`` then ``all``), where a stage is

1. the strategy applied to the network (which of T, E, C train; C re-initialised);
2. an LR range test when ``lr: find`` (:mod:`~medcolor.training.lr_find`; the rule ``lr_find.rule``
   reads the max lr off its curve);
3. SGD with momentum and the one-cycle policy, validating and checkpointing every ``val_every``
   iterations, keeping the checkpoint of best validation mean AUC and the latest one (to resume from);
   NaN/inf in the loss, weights or validation outputs stops the run with an error;
4. the best checkpoint becomes the stage's result (``model.safetensors``) and the next stage's start.

At the end the final network is tested (:func:`medcolor.evaluation.evaluate_run`, the same path as
``medcolor evaluate``).  Re-running the same command resumes a killed run from its latest checkpoint and
gives the same result as an uninterrupted run, whichever phase was killed: all randomness is derived from
the seed, the stage and the step, and a stage starts from the previous stage's result alone (C's
re-initialisation draws from the stage's seed).  The run directory's layout is in
:mod:`~medcolor.training.rundir`.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medcolor.config import RunConfig, StageConfig, check_run_config
from medcolor.data.bundle import DataBundle, build_data
from medcolor.data.summary import LABEL_COUNTS_FILE, write_label_counts
from medcolor.display import SAMPLES_FILE, ColorizedSamples, colorize, write_colorized_samples
from medcolor.errors import DataError
from medcolor.evaluation.gradcam import GRADCAM_FILE, GradCamSamples, gradcam_samples, write_gradcam_samples
from medcolor.model import ColorTransferNet
from medcolor.strategies import default_colorizer
from medcolor.training import runtime as rt
from medcolor.training.callbacks import StageCallbacks, format_auc, last_checkpoint
from medcolor.training.data import TrainValData
from medcolor.training.loggers import LOG_EVERY_N_STEPS, experiment_loggers
from medcolor.training.lr_find import find_lr
from medcolor.training.module import ColorTransferModule
from medcolor.training.plan import resolve_stage, stage_seed
from medcolor.training.rundir import (
    COLORIZER_FILE,
    DATA_FILE,
    MODEL_FILE,
    SKIPPED_ROWS_FILE,
    RunResult,
    StageResult,
    model_metadata,
    prepare_run_dir,
    read_stage_result,
    stage_dir,
    write_stage_result,
    write_summary,
)
from medcolor.utils import atomic_path, resolve_num_workers, seed_everything, show_progress_bar, write_json

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

#: validation images a run colorizes with its T for the report (Fig. 4)
SAMPLE_IMAGES = 6


def colorizer_kwargs(
    colorizer: str, start: str, data_mean: float, data_std: float, backbone: str | None = None
) -> dict[str, Any]:
    """Options of T that come from the run: how it starts, and the data's normalisation for a T that
    undoes it (``replicate-imagenet``), with E's own statistics (its pretrained data config)."""
    import inspect

    from medcolor.colorizers import COLORIZERS

    kwargs: dict[str, Any] = {"start": start} if start != "random" else {}
    params = inspect.signature(COLORIZERS.get(colorizer)).parameters
    if "data_mean" in params:
        kwargs |= {"data_mean": float(data_mean), "data_std": float(data_std)}
    if "e_mean" in params and backbone is not None:
        from medcolor.backbones import data_config

        cfg = data_config(backbone)
        kwargs |= {"e_mean": cfg["mean"], "e_std": cfg["std"]}
    return kwargs


def check_normalization(mean: float, std: float, given: object) -> None:
    """Non-finite inputs are bad data, not a diverged run: a NaN/inf mean/std stops here, before training."""
    if math.isfinite(mean) and math.isfinite(std) and std > 0:
        return
    source = (
        "computed from the training images (--mean compute): some of them hold NaN/inf pixels"
        if isinstance(given, str)
        else "given by --mean/--std"
    )
    raise DataError(f"the normalisation mean/std is {mean}/{std}, {source}; it must be finite with std > 0")


def build_model(cfg: RunConfig, bundle: DataBundle) -> ColorTransferNet:
    """The network of a run: T, E (weights), C with one output per label; transferred T/E if asked."""
    from medcolor.io import load_colorizer, load_model

    m = cfg.model
    n_classes = len(bundle.label_names)
    if m.init_from:
        path = Path(m.init_from)
        path = path / MODEL_FILE if path.is_dir() else path
        model, meta = load_model(path)  # its T counts as transferred
        model.new_head(n_classes)
        log.info(f"T and E from {path} (trained on {meta.get('dataset', '?')}); C is new with {n_classes} outputs")
        return model.set_usage(bundle.label_names, bundle.normalization, bundle.size)
    colorizer = m.colorizer or default_colorizer(cfg.stages[0].strategy if cfg.stages else "color-module")
    kwargs = colorizer_kwargs(colorizer, m.colorizer_start, bundle.mean, bundle.std, m.backbone)
    model = ColorTransferNet.create(
        colorizer, m.backbone, n_classes, m.weights, colorizer_kwargs=kwargs, dropout=m.dropout
    )
    if model.backbone.load_report is not None:
        log.info(str(model.backbone.load_report))
    if m.colorizer_from:
        t, meta = load_colorizer(m.colorizer_from)
        model.replace_colorizer(t, transferred=True)
        log.info(
            f"T ({t.name}) from {m.colorizer_from} (trained with {meta.get('backbone', '?')} on "
            f"{meta.get('dataset', '?')}, strategy {meta.get('strategy', '?')})"
        )
    return model.set_usage(bundle.label_names, bundle.normalization, bundle.size)


def run_stage(
    index: int,
    stage: StageConfig,
    model: ColorTransferNet,
    bundle: DataBundle,
    cfg: RunConfig,
    directory: Path,
    *,
    callbacks: Sequence[Callback] = (),
) -> StageResult:
    """Run, resume or reuse (when its ``result.json`` exists) stage ``index``.  Afterwards ``model``
    holds the stage's best checkpoint, also saved as ``directory/model.safetensors``.  ``callbacks``:
    extra Lightning callbacks for the stage's Trainer (e.g. a timer), after medcolor's own."""
    from medcolor.io import load_model, save_model

    done = read_stage_result(directory)
    if done is not None:
        best, _ = load_model(directory / MODEL_FILE)
        model.load_state_dict(best.state_dict())
        log.info(f"[{stage.strategy}] already done (best val mean AUC {format_auc(done.best_val_mean_auc)})")
    else:
        done = _fit_stage(index, stage, model, bundle, cfg, directory, callbacks)
        save_model(model, directory / MODEL_FILE, **model_metadata(cfg, bundle, stage.strategy))
        write_stage_result(done)
        log.info(
            f"[{stage.strategy}] best val mean AUC {format_auc(done.best_val_mean_auc)} at step {done.best_step} "
            f"({done.time_s:.0f} s)"
        )
    model.finish_stage(stage.strategy)
    return done


def _fit_stage(
    index: int,
    stage: StageConfig,
    model: ColorTransferNet,
    bundle: DataBundle,
    cfg: RunConfig,
    directory: Path,
    extra_callbacks: Sequence[Callback] = (),
) -> StageResult:
    t0 = time.time()
    runtime = rt.resolve_runtime(cfg)
    trainer, callbacks = _stage_trainer(index, cfg, runtime, directory, extra_callbacks)
    plan = resolve_stage(
        index,
        stage,
        cfg,
        runtime=runtime,
        n_train=len(bundle.train),
        world_size=trainer.world_size,
        directory=directory,
    )
    trainer.fit_loop.max_epochs = plan.schedule.chunks
    log.debug("stage plan: %s", plan)
    plan = _start_stage(plan, model, bundle, runtime, directory)
    module = ColorTransferModule.from_plan(model, bundle.label_names, plan)
    last = last_checkpoint(directory)
    resume_from = str(last) if last.is_file() else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    s = plan.schedule
    log.info(
        f"[{plan.name}] {s.total_steps} iterations ({s.chunks} x {s.val_every}), batch {plan.batch_size}, max lr "
        f"{plan.lr:.3g}, {trainable:,} trainable parameters, {runtime.precision}"
        f"{', channels_last' if runtime.channels_last else ''}{', resuming from ' + resume_from if resume_from else ''}"
    )
    with warnings.catch_warnings():
        # frozen_bn=eval keeps BN layers of frozen parts in eval mode on purpose
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
        rt.run_fit(
            trainer, module, datamodule=_stage_data(module, plan, bundle, cfg), ckpt_path=resume_from, weights_only=True
        )
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    best_path = callbacks.checkpoint.best_model_path or str(last)
    module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"])
    model.to(memory_format=torch.contiguous_format)
    return _stage_result(index, plan, directory, callbacks, trainable, t0, rt.describe_environment(runtime))


def _stage_trainer(
    index: int, cfg: RunConfig, runtime: Any, directory: Path, extra_callbacks: Sequence[Callback]
) -> tuple[Any, StageCallbacks]:
    """The stage's Lightning Trainer and medcolor's callbacks (checkpoints, history, progress lines)."""
    # without a terminal there is no progress bar: a line per chunk stands in for it
    lines = cfg.trainer.progress and not show_progress_bar(True, sys.stdout)
    callbacks = StageCallbacks.create(directory, stage_seed(cfg.trainer.seed, index), progress_lines=lines)
    trainer = rt.make_trainer(
        runtime,
        max_epochs=1,
        default_root_dir=str(directory),
        callbacks=[*callbacks.all, *extra_callbacks],
        logger=experiment_loggers(cfg.trainer.logger, directory, run_name=cfg.name),  # logs/csv/... always
        log_every_n_steps=LOG_EVERY_N_STEPS,
    )
    return trainer, callbacks


def _start_stage(plan: Any, model: ColorTransferNet, bundle: DataBundle, runtime: Any, directory: Path) -> Any:
    """The strategy applied to ``model`` and, with ``lr: find``, the plan with the LR finder's max lr."""
    # The stage starts from the previous stage's result alone: C's re-initialisation (and anything else
    # random before training) draws from the stage's own seed, not from whatever RNG state the previous
    # stage left in this process (which differs between a run that trained it and one that resumed it).
    seed_everything(plan.seed)
    model.apply_strategy(plan.strategy, plan.frozen_bn, plan.reset_head)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    if plan.needs_lr_find:
        log.info(f"[{plan.name}] LR range test ({plan.lr_find.num_training} steps)...")
        plan = plan.with_lr(find_lr(plan, model, bundle))
        log.info(f"[{plan.name}] LR finder suggests max lr {plan.lr:.3g} (plot: {directory / 'lr_find.png'})")
        seed_everything(plan.seed)
    return plan


def _stage_result(
    index: int, plan: Any, directory: Path, callbacks: StageCallbacks, trainable: int, t0: float, environment: dict
) -> StageResult:
    best = callbacks.history.best()
    s = plan.schedule
    return StageResult(
        index=index,
        strategy=plan.name,
        directory=directory,
        lr=plan.lr,
        best_val_mean_auc=best["val_mean_auc"] if best else None,
        best_val_auc=best["val_auc"] if best else {},
        best_step=best["step"] if best else None,
        total_steps=s.total_steps,
        val_every=s.val_every,
        time_s=round(time.time() - t0, 2),
        trainable_parameters=trainable,
        environment=environment,
    )


def _stage_data(module: ColorTransferModule, plan: Any, bundle: DataBundle, cfg: RunConfig) -> Any:
    """The stage's batches: images, or E's cached features (``trainer.feature_cache: auto``, where exact)."""
    if str(cfg.trainer.feature_cache).lower() == "auto":
        from medcolor.training.features import feature_datamodule

        cached = feature_datamodule(module, plan, bundle, cfg.data.cache_dir)
        if cached is not None:
            return cached
    return TrainValData(bundle, plan)


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    evaluate_test: bool = True,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Run (or resume) all stages of ``cfg``, then evaluate the final network on the test split.

    ``callbacks``: extra Lightning callbacks added to every stage's Trainer after medcolor's own (e.g. a
    step timer or a profiler); they see the run as it is and must not change what it computes."""
    from medcolor.io import save_colorizer, save_model

    cfg = RunConfig.from_dict(cfg.to_dict())  # canonical values ("none" -> None...), as stored in config.yaml
    check_run_config(cfg)
    rt.configure_determinism()
    out, cfg = prepare_run_dir(cfg, resume=resume, overwrite=overwrite)
    if resume:
        check_run_config(cfg)  # the stored configuration
    seed_everything(cfg.trainer.seed)
    bundle = _run_data(cfg, out)
    info = bundle.info
    # read, map and check every external set before training (fail fast)
    prepared = _prepare_test_sets(cfg, bundle, out) if evaluate_test and cfg.test_sets else None
    model = build_model(cfg, bundle)
    results = [
        run_stage(i, stage, model, bundle, cfg, stage_dir(out, i, stage.strategy), callbacks=callbacks)
        for i, stage in enumerate(cfg.stages)
    ]
    meta = model_metadata(cfg, bundle, cfg.stages[-1].strategy)
    model_path = save_model(model, out / MODEL_FILE, **meta)
    colorizer_path = (
        save_colorizer(model.colorizer, out / COLORIZER_FILE, **meta) if model.colorizer.learnable else None
    )
    test_metrics = _evaluate_held_out(model, bundle, cfg, out) if evaluate_test else None
    test_sets = _evaluate_test_sets(model, bundle, cfg, out, prepared) if prepared else None
    if colorizer_path is not None:
        write_colorized_samples(out / SAMPLES_FILE, colorized_samples(model, bundle))
        write_gradcam_samples(out / GRADCAM_FILE, sample_gradcams(model, bundle))
    result = RunResult(out, results, test_metrics, model_path, colorizer_path, info, test_sets)
    write_summary(out, result, name=cfg.name, parameters=model.parameter_summary())
    return result


def _run_data(cfg: RunConfig, out: Path) -> DataBundle:
    """The run's data, checked, with ``data.json``, the label counts and the skipped rows written to ``out``."""
    bundle = build_data(cfg.data, synthetic_dir=out / "synthetic-data")
    check_normalization(bundle.mean, bundle.std, cfg.data.mean)
    info = bundle.info
    log.info(
        f"data: {bundle.dataset_name} train {info['train']} / val {info['val']} / test {info['test']} images, "
        f"labels {', '.join(bundle.label_names)}; input {bundle.size} px, mean/std {bundle.mean:.4f}/{bundle.std:.4f}"
    )
    write_json(out / DATA_FILE, info | {"normalization": bundle.normalization})
    write_label_counts(out / LABEL_COUNTS_FILE, bundle.splits())
    if bundle.skipped is not None:
        with atomic_path(out / SKIPPED_ROWS_FILE) as tmp:
            bundle.skipped.to_csv(tmp, index=False)
        log.info(f"{len(bundle.skipped):,} rows without an image were left out: listed in {out / SKIPPED_ROWS_FILE}")
    return bundle


def _prepare_test_sets(cfg: RunConfig, bundle: DataBundle, out: Path) -> Any:
    """The external sets of ``cfg`` read, mapped onto the run's labels and checked for overlap with its
    training/validation data (:func:`medcolor.testsets.prepare_test_sets`)."""
    from medcolor.testsets import prepare_test_sets

    return prepare_test_sets(
        cfg.test_sets,
        bundle.label_names,
        bundle.size,
        run_sets=[bundle.train_full if bundle.train_full is not None else bundle.train, bundle.val],
        run_dataset=cfg.data.dataset,
        synthetic_dir=out / "synthetic-data",
    )


def _evaluate_held_out(model: ColorTransferNet, bundle: DataBundle, cfg: RunConfig, out: Path) -> dict[str, Any]:
    """The final network on the run's held-out split (``RUN/test/``, or ``RUN/val/`` without a test split), then
    the operating points of the test split by the run's ``operating:`` rule (thresholds chosen on validation)."""
    from medcolor.evaluation.dataset import evaluate_run, held_out_split

    dataset, split = held_out_split(bundle)
    accelerator = rt.resolve_runtime(cfg).accelerator
    metrics = evaluate_run(
        model,
        dataset,
        out / split,
        split=split,
        size=bundle.size,
        normalization=bundle.normalization,
        batch_size=cfg.data.batch_size,
        num_workers=resolve_num_workers(cfg.data.num_workers, accelerator),
        device=accelerator,
        precision="32-true",  # test metrics in full precision, whatever the training precision
        bootstrap=cfg.trainer.bootstrap,
        seed=cfg.trainer.seed,
        progress=cfg.trainer.progress,
    )
    if split == "test":  # thresholds chosen on validation, applied to the test split (medcolor.operating)
        from medcolor.operating import run_operating_points

        run_operating_points(
            model,
            bundle,
            out,
            batch_size=cfg.data.batch_size,
            device=accelerator,
            seed=cfg.trainer.seed,
            n_resamples=cfg.trainer.bootstrap,
            rule=cfg.operating.threshold,
            temperature_scaling=cfg.operating.temperature,
        )
    return metrics


def _evaluate_test_sets(
    model: ColorTransferNet, bundle: DataBundle, cfg: RunConfig, out: Path, prepared: Any
) -> dict[str, dict[str, Any]]:
    """The final network on every prepared external set (``RUN/test_sets/<name>/``), after the operating points
    of the held-out split: they read ``RUN/val/predictions.csv``."""
    from medcolor.testsets import evaluate_test_sets

    accelerator = rt.resolve_runtime(cfg).accelerator
    return evaluate_test_sets(
        model,
        out,
        prepared,
        size=bundle.size,
        normalization=bundle.normalization,
        batch_size=cfg.data.batch_size,
        num_workers=resolve_num_workers(cfg.data.num_workers, accelerator),
        device=accelerator,
        bootstrap=cfg.trainer.bootstrap,
        seed=cfg.trainer.seed,
        progress=cfg.trainer.progress,
        operating=cfg.operating,
    )


def colorized_samples(model: ColorTransferNet, bundle: DataBundle, n: int = SAMPLE_IMAGES) -> ColorizedSamples:
    """The first ``n`` validation images as the network sees them, through the trained T (the report's Fig. 4
    reads them: it needs neither the data nor torch then)."""
    view = bundle.eval_view(bundle.val)
    idx = range(min(n, len(view)))
    grays, colors = colorize(model.colorizer, [view[i]["image"] for i in idx], bundle.mean, bundle.std)
    names = [Path(str(bundle.val.paths[i])).name for i in idx]
    return ColorizedSamples(np.stack(grays), np.stack(colors), names)


def sample_gradcams(model: ColorTransferNet, bundle: DataBundle, n: int = SAMPLE_IMAGES) -> GradCamSamples:
    """Grad-CAM maps of every label for the images of :func:`colorized_samples` (the report's Fig. 4 draws them
    over the gray input)."""
    view = bundle.eval_view(bundle.val)
    idx = range(min(n, len(view)))
    images = torch.stack([view[i]["image"] for i in idx])
    names = [Path(str(bundle.val.paths[i])).name for i in idx]
    return gradcam_samples(model, images, list(bundle.label_names), names)


__all__ = ["build_model", "check_normalization", "colorized_samples", "run_stage", "sample_gradcams", "train"]
