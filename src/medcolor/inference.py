"""Using trained networks: evaluate a dataset, predict image files, colorize images with T.

:func:`evaluate_run` is the one evaluation path: the test step at the end of ``medcolor train`` and
``medcolor evaluate`` (through :func:`evaluate_model`) both use it — predict, compute per-label / mean
AUCs with bootstrap CIs, write ``metrics.json`` and ``predictions.csv``.

Images go through the same path as in training: decode -> reduce (short side to the input size,
quantized as the cache stores it) -> centre square crop -> resize -> normalise with the mean/std
stored in the model file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medcolor.config import DataConfig
from medcolor.data.readers import IMAGE_EXTENSIONS
from medcolor.data.transforms import EvalTransform
from medcolor.errors import ConfigError, DataError, WeightsError
from medcolor.evaluation import EvaluationResult, summarize
from medcolor.training.runtime import (
    autocast,
    resolve_accelerator,
    resolve_num_workers,
    resolve_precision,
    show_progress_bar,
)
from medcolor.utils import atomic_path, write_json

log = logging.getLogger(__name__)


#: the default precision of ``medcolor predict`` and ``medcolor evaluate`` (and of the test step of training):
#: full precision, so that both give the same probabilities for the same image
INFERENCE_PRECISION = "32-true"


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
    fast in (as in training); ``32-true`` keeps the contiguous format, so full-precision results (test metrics)
    are exactly those of earlier versions."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval().to(device)
    channels_last = precision.startswith(("bf16", "16"))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loader = DataLoader(view, batch_size=batch_size, shuffle=False, num_workers=num_workers)
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
    from medcolor.utils import nonfinite_tensors

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
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    precision: str = "32-true",
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> DatasetPredictions:
    """Predict every image of ``view`` and compute per-label/mean AUC (+ bootstrap CIs, and the
    study-level AUC for MURA)."""
    kw = {"batch_size": batch_size, "num_workers": num_workers, "device": device, "precision": precision}
    probs = predict_probs(model, view, progress=progress, **kw)
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
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    precision: str = "32-true",
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (predicting ``label_names``, default: the dataset's) on ``dataset`` as the
    network sees it (``size`` px, ``normalization``); write ``metrics.json`` (+ ``split`` and ``extra``)
    and ``predictions.csv`` to ``out_dir``; return the metrics."""
    labels = list(label_names or dataset.label_names)
    if list(dataset.label_names) != labels:
        raise ConfigError(
            f"the network predicts {labels} but the dataset has labels {list(dataset.label_names)}; "
            "choose matching labels with --option labels=[...]"
        )
    from medcolor.data.bundle import NetworkView

    view = NetworkView(dataset, EvalTransform(size, normalization["mean"], normalization["std"]))
    res = evaluate_dataset(
        model,
        view,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
        bootstrap=bootstrap,
        seed=seed,
        progress=progress,
    )
    out = Path(out_dir)
    write_predictions(out / "predictions.csv", dataset, res.probs, labels)
    metrics = res.result.to_dict() | {"split": split} | (extra or {})
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_model(
    model_path: str | os.PathLike,
    *,
    data: DataConfig | None = None,
    split: str | None = None,
    size: int | None = None,
    output: str | os.PathLike | None = None,
    device: str = "cpu",
    precision: str = "32-true",
    bootstrap: int = 1000,
    progress: bool = True,
) -> tuple[dict[str, Any], Path]:
    """``medcolor evaluate``: a saved network on ``data`` (one official ``split`` of it; images loaded at
    ``size``, default the network's), or — without ``data`` — on the held-out split of the run it comes
    from.  Writes to ``output`` (default ``RUN/evaluate-<split>``); returns the metrics and that folder."""
    from medcolor.io import load_model

    path = resolve_model_path(model_path)
    model, _ = load_model(path)
    check_finite_weights(model, path)
    labels, norm, model_size = model.usage(str(path))
    run_dir = path.parent
    if data is not None:
        from medcolor.data.bundle import make_dataset

        data.size = size or model_size
        dataset, name = make_dataset(data, split), split or "data"
    elif (run_dir / "config.yaml").is_file():
        from medcolor.config import RunConfig
        from medcolor.data.bundle import build_data

        cfg = RunConfig.from_yaml(run_dir / "config.yaml")
        dataset, name = held_out_split(build_data(cfg.data, synthetic_dir=run_dir / "synthetic-data"))
        data = cfg.data
    else:
        raise ConfigError(f"{path} is not inside a run directory: say which data to evaluate with --dataset/--root")
    out = Path(output) if output else run_dir / f"evaluate-{name}"
    metrics = evaluate_run(
        model,
        dataset,
        out,
        split=name,
        size=model_size,
        normalization=norm,
        label_names=labels,
        batch_size=data.batch_size,
        num_workers=resolve_num_workers(data.num_workers, resolve_accelerator(device)),
        device=device,
        precision=precision,
        bootstrap=bootstrap,
        progress=progress,
        extra={"model": str(path)},
    )
    return metrics, out


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A run directory (its final ``model.safetensors``) or a model file."""
    p = Path(path)
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return p / "model.safetensors"
        raise ConfigError(f"{p} is a directory without model.safetensors; is it a finished medcolor run?")
    if not p.exists():
        raise ConfigError(f"{p} does not exist; give a run directory or a model.safetensors file")
    return p


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files from files and folders (recursively, by extension); errors name missing inputs."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"folder {p} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    if not files:
        raise DataError("no input images given")
    return files


class ImageFiles(Dataset):
    """Plain image files as a dataset for prediction (no labels)."""

    def __init__(self, paths: Sequence[Path], size: int, mean: float, std: float) -> None:
        self.paths = list(paths)
        self.size = size
        self.transform = EvalTransform(size, mean, std)

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, i: int) -> np.ndarray:
        from medcolor.data.readers import load_reduced, to_float

        return to_float(load_reduced(self.paths[i], self.size))

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = torch.from_numpy(self.load_image(i))[None]
        return {"image": self.transform(img), "index": i}


def _norm(meta: dict[str, Any], source: str = "the file") -> tuple[float, float]:
    """The gray normalisation a medcolor file records; never guessed (a WeightsError when it has none)."""
    n = meta.get("normalization")
    if not isinstance(n, dict) or "mean" not in n or "std" not in n:
        raise WeightsError(f"{source} does not record its input normalisation ({{'mean', 'std'}}): re-export it")
    return float(n["mean"]), float(n["std"])


def predict_files(
    model_path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    *,
    batch_size: int = 16,
    device: str = "auto",
    precision: str = "32-true",
    size: int | None = None,
    progress: bool = False,
    num_workers: int | None = None,
) -> pd.DataFrame:
    """Probabilities for image files/folders: a DataFrame with ``path`` and one column per label.

    ``device`` ``auto``: a GPU when one is visible, else the CPU.  ``precision``: :data:`INFERENCE_PRECISION`
    (fp32: the probabilities of ``evaluate`` and of the run's ``predictions.csv``); ``bf16-mixed`` is the fast
    option (docs/inference-precision.md).  ``num_workers``: decoding processes (default 0 on the CPU)."""
    from medcolor.io import load_model

    device = resolve_accelerator(device)
    precision = resolve_precision(precision, device)
    if num_workers is None:
        num_workers = resolve_num_workers("auto", device) if device == "cuda" else 0

    path = resolve_model_path(model_path)
    model, _ = load_model(path)
    check_finite_weights(model, path)
    labels, norm, model_size = model.usage(str(path))
    files = collect_images(inputs)
    ds = ImageFiles(files, int(size or model_size), norm["mean"], norm["std"])
    probs = predict_probs(
        model, ds, batch_size=batch_size, num_workers=num_workers, device=device, precision=precision, progress=progress
    )
    df = pd.DataFrame(probs, columns=labels)
    df.insert(0, "path", [str(f) for f in files])
    return df


def load_colorizer_any(path: str | os.PathLike):
    """T from an exported colorizer file, a model file, or a run directory; with its metadata."""
    from medcolor.io import load_colorizer

    p = Path(path)
    if p.is_dir():
        p = resolve_model_path(p)
    return load_colorizer(p)


@torch.no_grad()
def colorize_files(
    source: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    size: int | None = None,
    display: str = "imagenet",
    grid: bool = True,
) -> list[Path]:
    """Write, for every input image, ``<name>_colorized.png``: the gray input beside T's colour output
    (paper Fig. 4); with ``grid`` also ``colorized_grid.png`` with all of them."""
    from PIL import Image

    from medcolor.report import colorization_figure, side_by_side, to_display

    t, meta = load_colorizer_any(source)
    check_finite_weights(t, source)
    t.eval()
    files = collect_images(inputs)
    mean, std = _norm(meta, str(source))
    if size is None and not isinstance(meta.get("size"), int):
        raise WeightsError(f"{source} does not record the input size it was trained with: give it (--size PX)")
    ds = ImageFiles(files, int(size or meta["size"]), mean, std)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, grays, colors = [], [], []
    for i, f in enumerate(files):
        x = ds[i]["image"][None]
        rgb = to_display(t(x)[0], display)
        gray = (x[0, 0] * std + mean).clamp(0, 1).numpy()
        target = out / f"{f.stem}_colorized.png"
        if target in written:  # two inputs with the same name (from different folders)
            target = out / f"{f.stem}_{i}_colorized.png"
        with atomic_path(target) as tmp:
            Image.fromarray(side_by_side(gray, rgb)).save(tmp, format="PNG")
        written.append(target)
        grays.append(gray)
        colors.append(rgb)
    if grid:
        label = f"{t.name} ({meta.get('strategy', '?')}, {meta.get('backbone', '?')})"
        written.append(
            colorization_figure(grays[:8], {label: colors[:8]}, out / "colorized_grid.png", [f.name for f in files[:8]])
        )
    return written


__all__ = [
    "INFERENCE_PRECISION",
    "DatasetPredictions",
    "ImageFiles",
    "check_finite_weights",
    "collect_images",
    "colorize_files",
    "evaluate_dataset",
    "evaluate_model",
    "evaluate_run",
    "held_out_split",
    "load_colorizer_any",
    "predict_files",
    "predict_probs",
    "resolve_model_path",
    "write_predictions",
]
