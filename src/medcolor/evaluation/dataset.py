"""Evaluating a network on a dataset: predict every image, compute per-label / mean AUCs with bootstrap
CIs, write ``metrics.json`` and ``predictions.csv``.

:func:`evaluate_run` is the one evaluation path: the test step at the end of training
(:func:`medcolor.training.train`) and ``medcolor evaluate`` (:func:`medcolor.inference.evaluate_model`)
both use it.  Nothing here imports Lightning.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medcolor.data.bundle import NetworkView
from medcolor.data.transforms import EvalTransform
from medcolor.errors import ConfigError, DataError, WeightsError
from medcolor.evaluation.metrics import EvaluationResult, summarize
from medcolor.utils import DieWithParent, atomic_path, autocast, nonfinite_tensors, show_progress_bar, write_json

if TYPE_CHECKING:  # the annotations are never evaluated (``from __future__ import annotations``)
    from typing_extensions import Unpack

log = logging.getLogger(__name__)


class PredictSettings(TypedDict, total=False):
    """How :func:`predict_probs` runs (its keyword options, defaults there), passed through by
    :func:`evaluate_dataset` and :func:`evaluate_run`."""

    batch_size: int
    num_workers: int
    device: str
    precision: str
    progress: bool


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module,
    view: Dataset,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    precision: str = "32-true",
    progress: bool = False,
) -> np.ndarray:
    """Sigmoid probabilities ``(N, L)`` of ``model`` on a :class:`~medcolor.data.bundle.NetworkView`.

    Reduced precision (``bf16-*``, ``16-*``) also runs channels_last, the memory format its convolutions are
    fast in (as in training); ``32-true`` keeps the contiguous format for full-precision results (test
    metrics)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval().to(device)
    channels_last = precision.startswith(("bf16", "16"))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loader = DataLoader(
        view,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=DieWithParent() if num_workers else None,
    )
    bar = show_progress_bar(progress)  # a bar on a terminal; else a plain line per tenth of the images
    every = math.ceil(len(loader) / 10) if progress and not bar and len(loader) else 0
    out = []
    try:
        for i, batch in enumerate(tqdm(loader, desc="predicting", disable=not bar, leave=False)):
            if every and (i + 1) % every == 0 and i + 1 < len(loader):
                log.info(f"predicting: {(i + 1) * batch_size:,} of {len(view):,} images")
            x = batch["image"].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                logits = model(x)
            if not bool(torch.isfinite(logits).all()):
                _nonfinite_outputs(view, batch, x, logits)
            out.append(torch.sigmoid(logits.float()).cpu())
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def _nonfinite_outputs(view: Dataset, batch: dict[str, Any], x: torch.Tensor, logits: torch.Tensor) -> None:
    """NaN/inf outputs are never written as probabilities: a DataError when the input was not finite,
    else a WeightsError (the network overflows: it comes from a diverged run)."""
    rows = (~torch.isfinite(logits.float())).any(1).nonzero().flatten().cpu().tolist()
    paths = getattr(getattr(view, "dataset", view), "paths", None)
    idx = [int(batch["index"][r]) for r in rows]
    names = [str(paths[i]) for i in idx[:3]] if paths is not None else [str(i) for i in idx[:3]]
    which = f"{len(rows)} images (e.g. {', '.join(names)})"
    if not bool(torch.isfinite(x[rows]).all()):
        raise DataError(f"the input of {which} holds NaN/inf values after normalisation: check these images")
    raise WeightsError(
        f"the network's outputs are NaN/inf for {which}: the network is broken (it comes from a diverged "
        "run?); retrain it with a lower learning rate"
    )


def check_finite_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """A :class:`~medcolor.errors.WeightsError` naming ``path`` when ``model`` holds NaN/inf weights."""
    bad = nonfinite_tensors(model)
    if bad:
        raise WeightsError(
            f"{path} holds NaN/inf weights ({len(bad)} tensors, e.g. {', '.join(bad[:3])}): the run that wrote it "
            "diverged; retrain it with a lower learning rate"
        )


@dataclass
class DatasetPredictions:
    probs: np.ndarray
    result: EvaluationResult


def evaluate_dataset(
    model: torch.nn.Module,
    view: Any,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    **predict: Unpack[PredictSettings],
) -> DatasetPredictions:
    """Predict every image of ``view`` (``predict``: :class:`PredictSettings`) and compute per-label/mean AUC
    (+ bootstrap CIs, and the study-level AUC for MURA)."""
    probs = predict_probs(model, view, **predict)
    ds = view.dataset
    study = getattr(ds, "study_ids", None) if getattr(ds, "name", "") == "mura" else None
    res = summarize(probs, ds.labels, list(ds.label_names), bootstrap=bootstrap, seed=seed, study_ids=study)
    return DatasetPredictions(probs, res)


def write_predictions(path: str | os.PathLike, dataset: Any, probs: np.ndarray, label_names: Sequence[str]) -> Path:
    """CSV: path, patient, study, then ``target:<label>`` (blank = ignored) and ``prob:<label>``."""
    df = pd.DataFrame(
        {
            "path": [str(p) for p in dataset.paths],
            "patient_id": list(dataset.patient_ids),
            "study_id": list(getattr(dataset, "study_ids", dataset.patient_ids)),
        }
    )
    for j, name in enumerate(label_names):
        df[f"target:{name}"] = np.asarray(dataset.labels)[:, j]
    for j, name in enumerate(label_names):
        df[f"prob:{name}"] = probs[:, j]
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def held_out_split(bundle: Any) -> tuple[Any, str]:
    """The split a run is tested on: its test split, or its validation split when it has none."""
    return (bundle.test, "test") if bundle.test is not None else (bundle.val, "val")


def evaluate_run(
    model: torch.nn.Module,
    dataset: Any,
    out_dir: str | os.PathLike,
    *,
    split: str,
    size: int,
    normalization: dict[str, float],
    label_names: Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
    **predict: Unpack[PredictSettings],
) -> dict[str, Any]:
    """Evaluate ``model`` (predicting ``label_names``, default: the dataset's) on ``dataset`` as the
    network sees it (``size`` px, ``normalization``; ``predict``: :class:`PredictSettings`); write
    ``metrics.json`` (+ ``split`` and ``extra``) and ``predictions.csv`` to ``out_dir``; return the metrics."""
    labels = list(label_names or dataset.label_names)
    if list(dataset.label_names) != labels:
        raise ConfigError(
            f"the network predicts {labels} but the dataset has labels {list(dataset.label_names)}; "
            "choose matching labels with --option labels=[...]"
        )
    view = NetworkView(dataset, EvalTransform(size, normalization["mean"], normalization["std"]))
    res = evaluate_dataset(model, view, bootstrap=bootstrap, seed=seed, **predict)
    out = Path(out_dir)
    write_predictions(out / "predictions.csv", dataset, res.probs, labels)
    metrics = res.result.to_dict() | {"split": split} | (extra or {})
    write_json(out / "metrics.json", metrics)
    return metrics


__all__ = [
    "DatasetPredictions",
    "PredictSettings",
    "check_finite_weights",
    "evaluate_dataset",
    "evaluate_run",
    "held_out_split",
    "predict_probs",
    "write_predictions",
]
