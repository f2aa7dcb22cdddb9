"""Using saved networks: evaluate one on a dataset (``medcolor evaluate``), predict image files, colorize
images with T.

:func:`evaluate_model` finds the network and the data and hands them to
:func:`medcolor.evaluation.evaluate_run`, the one evaluation path (also the test step of training).

Images go through the same path as in training: decode -> reduce (short side to the input size,
quantized as the cache stores it) -> centre square crop -> resize -> normalise with the mean/std
stored in the model file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medcolor.config import DataConfig, OperatingConfig, TestSetConfig
from medcolor.data.readers import IMAGE_EXTENSIONS
from medcolor.data.transforms import EvalTransform
from medcolor.display import ColorizedSamples, colorization_figure, colorize, side_by_side
from medcolor.errors import ConfigError, DataError, OptionError, WeightsError
from medcolor.evaluation.dataset import check_finite_weights, evaluate_run, held_out_split, predict_probs
from medcolor.operating import (
    ThresholdRuleError,
    operating_points,
    read_predictions,
    run_operating_config,
    write_set_operating_points,
)
from medcolor.training.runtime import resolve_accelerator, resolve_precision
from medcolor.utils import atomic_path, resolve_num_workers

#: the default precision of ``medcolor predict`` and ``medcolor evaluate`` (and of the test step of training):
#: full precision, so that both give the same probabilities for the same image
INFERENCE_PRECISION = "32-true"


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
    test_sets: Mapping[str, TestSetConfig | dict[str, Any] | str | os.PathLike] | None = None,
    operating: OperatingConfig | Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], Path]:
    """``medcolor evaluate``: a saved network on ``data`` (one official ``split`` of it; images loaded at
    ``size``, default the network's), or — without ``data`` — on the held-out split of the run it comes
    from.  Writes to ``output`` (default ``RUN/evaluate-<split>``); returns the metrics and that folder.

    ``test_sets``: external sets by name (a :class:`~medcolor.config.TestSetConfig`, its dict, or a YAML file
    holding one), evaluated besides as after training (:mod:`medcolor.testsets`) into ``RUN/test_sets/<name>/``
    (with ``output``: ``OUTPUT/test_sets/<name>/``), their metrics under ``"test_sets"``; they need the run
    directory (its training/validation data is checked for overlap).

    Operating points as training writes them, for the evaluated data (not the run's own validation split) and
    each test set: ``operating_points.json``, ``roc.png``, ``reliability.png`` beside their metrics; thresholds
    chosen on the run's ``val/predictions.csv`` by ``operating`` (default: the run's own section, else Youden's J;
    a mapping such as ``{"temperature": True}`` sets keys over it), checked before anything is predicted."""
    from medcolor.io import load_model

    path, operating = _model_and_operating(model_path, operating)
    model, _ = load_model(path)
    check_finite_weights(model, path)
    labels, norm, model_size = model.usage(str(path))
    run_dir = path.parent
    validation = run_dir / "val" / "predictions.csv"
    operating = _operating_rule(path, validation, labels, operating)
    prepared = _prepare_sets(run_dir, test_sets, labels, model_size) if test_sets else None
    dataset, name, data_cfg = _evaluation_data(path, data, split, size or model_size)
    out = Path(output) if output else run_dir / f"evaluate-{name}"
    common: dict[str, Any] = {  # the same for the held-out data and the external test sets
        "size": model_size,
        "normalization": norm,
        "batch_size": data_cfg.batch_size,
        "num_workers": resolve_num_workers(data_cfg.num_workers, resolve_accelerator(device)),
        "device": device,
        "bootstrap": bootstrap,
        "progress": progress,
    }
    metrics = evaluate_run(
        model, dataset, out, split=name, label_names=labels, precision=precision, extra={"model": str(path)}, **common
    )
    if data is not None or name != "val":  # never thresholds tested on the data they were chosen on
        write_set_operating_points(validation, out, name, operating, n_resamples=bootstrap)
    if prepared:
        from medcolor.testsets import evaluate_test_sets

        metrics["test_sets"] = evaluate_test_sets(
            model, Path(output) if output else run_dir, prepared, validation=validation, operating=operating, **common
        )
    return metrics, out


def _model_and_operating(
    model_path: str | os.PathLike, operating: OperatingConfig | Mapping[str, Any] | None
) -> tuple[Path, OperatingConfig | None]:
    """The network's file and the ``operating:`` section given to :func:`evaluate_model`: a mapping of keys is
    checked before anything is read (a ``None`` value is refused, as in a run configuration), then set over the
    section of the network's run."""
    from medcolor.config import RunConfig

    if not isinstance(operating, Mapping):
        return resolve_model_path(model_path), operating
    RunConfig.from_dict({"operating": dict(operating)}, where=None)
    path = resolve_model_path(model_path)
    own = run_operating_config(path.parent).to_dict()
    return path, RunConfig.from_dict({"operating": own | dict(operating)}, where=None).operating


def _operating_rule(
    path: Path, validation: Path, labels: list[str], operating: OperatingConfig | None
) -> OperatingConfig:
    """The ``operating:`` section :func:`evaluate_model` applies: ``operating`` when given — checked before anything
    is predicted: the validation predictions of the network's run exist and the rule can be met on them — else
    the run's own (Youden's J outside a run).  Errors are :class:`~medcolor.errors.OptionError` of
    ``operating.threshold``, saying how to fix them."""
    if operating is None:
        return run_operating_config(path.parent)
    if not validation.is_file():
        why = (
            f"the run {path.parent} has no val/predictions.csv (a run writes it when it has a validation and a "
            "test split)"
            if (path.parent / "config.yaml").is_file()
            else f"{path} is not inside a run directory"
        )
        raise OptionError(
            ("operating.threshold", "operating.temperature"),
            "the threshold is chosen on the validation predictions of the network's run (RUN/val/predictions.csv), "
            f"and {why}: evaluate the run directory the network was trained in, or leave the rule out",
        )
    vp, vt, val_labels = read_predictions(validation)
    if val_labels != labels:
        raise DataError(f"{validation} has labels {val_labels} but the network {path} predicts {labels}")
    try:
        operating_points(
            vp, vt, {}, labels, rule=operating.threshold, temperature_scaling=operating.temperature, n_resamples=0
        )
    except ThresholdRuleError as exc:
        raise OptionError(
            "operating.threshold", f"{exc}; choose a rule the validation data allow (a lower target, or youden)"
        ) from None
    return operating


def _evaluation_data(
    path: Path, data: DataConfig | None, split: str | None, size: int
) -> tuple[Dataset, str, DataConfig]:
    """What ``medcolor evaluate`` evaluates the network at ``path`` on: the dataset, its name (the split, or
    ``data``) and its data config — ``data`` (loaded at ``size``), else the held-out split of the network's run."""
    run_dir = path.parent
    if data is not None:
        from medcolor.data.bundle import make_dataset

        data.size = size
        return make_dataset(data, split), split or "data", data
    if (run_dir / "config.yaml").is_file():
        from medcolor.config import RunConfig
        from medcolor.data.bundle import build_data

        cfg = RunConfig.from_yaml(run_dir / "config.yaml")
        dataset, name = held_out_split(build_data(cfg.data, synthetic_dir=run_dir / "synthetic-data"))
        return dataset, name, cfg.data
    raise ConfigError(f"{path} is not inside a run directory: say which data to evaluate with --dataset/--root")


def _prepare_sets(
    run_dir: Path,
    test_sets: Mapping[str, TestSetConfig | dict[str, Any] | str | os.PathLike],
    labels: list[str],
    size: int,
) -> Any:
    """The named sets of ``medcolor evaluate --test-set``, read and checked against the run in ``run_dir``."""
    from medcolor.config import RunConfig, check_dataset_options, check_test_set_names, read_yaml
    from medcolor.data.bundle import build_data
    from medcolor.testsets import prepare_test_sets

    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(
            f"{run_dir} is not a run directory: test sets need the run (its training data is checked for overlap)"
        )
    check_test_set_names(test_sets)
    sets: dict[str, TestSetConfig] = {}
    for name, ts in test_sets.items():
        where = str(ts) if isinstance(ts, (str, os.PathLike)) else "test set"
        d = read_yaml(ts) if isinstance(ts, (str, os.PathLike)) else ts
        sets[name] = RunConfig.from_dict({"test_sets": {name: d}}, where=where).test_sets[name]
        check_dataset_options(sets[name], f"test_sets.{name}")
    cfg = RunConfig.from_yaml(run_dir / "config.yaml")
    bundle = build_data(cfg.data, synthetic_dir=run_dir / "synthetic-data")
    train = bundle.train_full if bundle.train_full is not None else bundle.train
    return prepare_test_sets(
        sets, labels, size, run_sets=[train, bundle.val], run_dataset=cfg.data.dataset, synthetic_dir=None
    )


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


#: metadata of a saved T that :func:`export_colorizer` leaves to :func:`~medcolor.io.save_colorizer` to write
_COLORIZER_FORMAT_KEYS = {"format", "format_version", "colorizer", "colorizer_kwargs", "architecture"}


def export_colorizer(source: str | os.PathLike, output: str | os.PathLike) -> tuple[Path, Any]:
    """``medcolor export-colorizer``: T of a run directory, stage directory or model file saved on its own
    (``output``, safetensors + a JSON of its metadata) for ``model.colorizer_from``; returns the file and T.
    A ConfigError when T learns nothing (the gray copy)."""
    from medcolor.io import save_colorizer

    t, meta = load_colorizer_any(source)
    if not t.learnable:
        raise ConfigError(f"{source} has no learned colorization module (its T is {t.name!r})")
    return save_colorizer(t, output, **{k: v for k, v in meta.items() if k not in _COLORIZER_FORMAT_KEYS}), t


def colorize_images(
    source: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    *,
    size: int | None = None,
    display: str = "imagenet",
) -> tuple[ColorizedSamples, torch.nn.Module, dict[str, Any]]:
    """Image files/folders through T (from an exported colorizer, a model file or a run directory) at T's
    input size (or ``size``) and normalisation: the gray inputs and T's colours as pictures, T and its
    metadata."""
    t, meta = load_colorizer_any(source)
    check_finite_weights(t, source)
    files = collect_images(inputs)
    mean, std = _norm(meta, str(source))
    if size is None and not isinstance(meta.get("size"), int):
        raise WeightsError(f"{source} does not record the input size it was trained with: give it (--size PX)")
    ds = ImageFiles(files, int(size or meta["size"]), mean, std)
    grays, colors = colorize(t, [ds[i]["image"] for i in range(len(ds))], mean, std, display)
    return ColorizedSamples(np.stack(grays), np.stack(colors), [str(f) for f in files]), t, meta


#: the grid :func:`colorize_files` writes beside the single images
GRID_FILE = "colorized_grid.png"


def colorize_message(files: Sequence[Path], out_dir: str | os.PathLike) -> str:
    """What ``medcolor colorize`` says about the files :func:`colorize_files` wrote: the colorized images and
    the grid counted apart ("6 colorized images and a grid written to DIR")."""
    n = sum(1 for f in files if Path(f).name != GRID_FILE)
    grid = " and a grid" if len(files) > n else ""
    return f"{n} colorized image{'' if n == 1 else 's'}{grid} written to {out_dir}"


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

    samples, t, meta = colorize_images(source, inputs, size=size, display=display)
    files = [Path(n) for n in samples.names]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, (f, gray, rgb) in enumerate(zip(files, samples.grays, samples.colors, strict=True)):
        target = out / f"{f.stem}_colorized.png"
        if target in written:  # two inputs with the same name (from different folders)
            target = out / f"{f.stem}_{i}_colorized.png"
        with atomic_path(target) as tmp:
            Image.fromarray(side_by_side(gray, rgb)).save(tmp, format="PNG")
        written.append(target)
    if grid:
        label = f"{t.name} ({meta.get('strategy', '?')}, {meta.get('backbone', '?')})"
        grid_path = out / GRID_FILE
        rows = {label: list(samples.colors[:8])}
        written.append(colorization_figure(list(samples.grays[:8]), rows, grid_path, [f.name for f in files[:8]]))
    return written


__all__ = [
    "GRID_FILE",
    "INFERENCE_PRECISION",
    "ImageFiles",
    "collect_images",
    "colorize_files",
    "colorize_images",
    "colorize_message",
    "evaluate_model",
    "export_colorizer",
    "load_colorizer_any",
    "predict_files",
    "resolve_model_path",
]
