"""A small synthetic, X-ray-like multi-label dataset for the demo and for tests, registered as ``"synthetic"``.

Chest-like images (body, two lungs, heart, spine, ribs) with three findings whose evidence is built so
that how gray levels are mapped to colours matters:

* ``Opacity`` — every image has one soft blob in a lung; the finding is present when the blob's
  gray level lies in a narrow band (0.47-0.53) and absent when it lies on either side of it
  (0.36-0.43 or 0.57-0.64): the evidence is an intensity *range*, not an edge or a contrast;
* ``Fine texture`` — a faint (amplitude 0.035) high-frequency pattern (period 4 px) inside the lungs,
  against a pattern of the same amplitude but lower frequency (period 12 px) when absent;
* ``Enlarged heart`` — a wider heart shadow (shape evidence, which a frozen ImageNet network already
  sees without colorization).

:func:`make_synthetic_xrays` writes the images as 8-bit PNG files with a ``labels.csv`` (columns ``path``,
``patient``, one per finding); :class:`SyntheticXrays` generates them under ``root`` (or reuses them) and
reads them back the way every real CSV dataset is read, through :class:`~medcolor.data.datasets.csv.CsvDataset`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from medcolor.data.datasets.base import DATASETS
from medcolor.data.datasets.csv import CsvDataset
from medcolor.errors import ConfigError, OptionError
from medcolor.normalization import MAX_IMAGE_SIZE
from medcolor.utils import atomic_path, write_json

__all__ = ["BOUNDS", "CSV_OPTIONS", "LABELS", "SyntheticXrays", "check_options", "make_synthetic_xrays"]

LABELS = ("Opacity", "Fine texture", "Enlarged heart")
#: how CsvDataset reads the generated labels.csv
CSV_OPTIONS = {"path_column": "path", "label_columns": list(LABELS), "patient_column": "patient"}


DEFAULT_KNOBS = {
    "texture_amp": 0.035,
    "texture_periods": (4, 12),
    "blob_sigma": 0.11,
    "band": (0.47, 0.53),
    "below": (0.36, 0.43),
    "above": (0.57, 0.64),
    "noise": 0.01,
}


def _image(rng: np.random.Generator, size: int, labels: np.ndarray, knobs: dict | None = None) -> np.ndarray:
    k = {**DEFAULT_KNOBS, **(knobs or {})}
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    img = np.full((size, size), 0.05)
    body = (x / 0.92) ** 2 + (y / 1.05) ** 2 < 1
    img[body] = 0.55
    lungs = np.zeros_like(img, dtype=bool)
    for cx in (-0.42, 0.42):
        lungs |= ((x - cx) / 0.3) ** 2 + ((y + 0.05) / 0.58) ** 2 < 1
    img[lungs] = rng.uniform(0.2, 0.3)
    ribs = 0.04 * np.sin(2 * np.pi * (y * 4.5 + 0.15 * x**2) + rng.uniform(0, 2 * np.pi))
    img += np.where(lungs, ribs, 0)
    # texture: high frequency (finding present) or low frequency (absent), same amplitude
    period = int(k["texture_periods"][0] if labels[1] else k["texture_periods"][1])
    phase = rng.integers(0, period)
    yy, xx = np.indices((size, size))
    pattern = np.where(((yy + xx + phase) // (period // 2)) % 2 == 0, 1.0, -1.0)
    img += np.where(lungs, k["texture_amp"] * pattern, 0)
    # heart shadow
    w = rng.uniform(0.34, 0.42) if labels[2] else rng.uniform(0.2, 0.28)
    heart = ((x - 0.08) / w) ** 2 + ((y - 0.38) / 0.28) ** 2 < 1
    img[heart] = 0.62
    img[(np.abs(x) < 0.07) & body] = 0.7  # spine
    # opacity: a soft blob whose gray level is the evidence
    if labels[0]:
        level = rng.uniform(*k["band"])
    else:
        level = rng.uniform(*k["below"]) if rng.random() < 0.5 else rng.uniform(*k["above"])
    cx = rng.choice([-0.42, 0.42]) + rng.uniform(-0.1, 0.1)
    cy = rng.uniform(-0.35, 0.2)
    alpha = np.exp(-((((x - cx) ** 2 + (y - cy) ** 2) / (2 * k["blob_sigma"] ** 2)) ** 2))  # flat top, soft edge
    img = img * (1 - alpha) + level * alpha
    img += rng.normal(0, k["noise"], img.shape) + rng.uniform(-0.01, 0.01)
    return np.clip(img, 0, 1)


def make_synthetic_xrays(
    directory: str | Path,
    n: int = 600,
    image_size: int = 64,
    seed: int = 0,
    prevalence: float = 0.4,
    knobs: dict | None = None,
) -> Path:
    """Write ``n`` synthetic images (``image_size`` px) and ``labels.csv`` into ``directory``; reuse
    them when the directory already holds this exact set.  Returns the CSV path."""
    directory = Path(directory)
    stamp = {
        "n": n,
        "image_size": image_size,
        "seed": seed,
        "prevalence": prevalence,
        "version": 2,
        "knobs": {**DEFAULT_KNOBS, **(knobs or {})},
    }
    stamp = json.loads(json.dumps(stamp))  # tuples -> lists, as read back
    csv = directory / "labels.csv"
    stamp_file = directory / "synthetic.json"
    if csv.is_file() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return csv
    rng = np.random.default_rng(seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    patient = 0
    remaining_for_patient = 0
    for i in range(n):
        if remaining_for_patient == 0:
            patient += 1
            remaining_for_patient = int(rng.integers(1, 4))
        remaining_for_patient -= 1
        labels = (rng.random(len(LABELS)) < prevalence).astype(int)
        img = _image(rng, image_size, labels, knobs)
        rel = f"images/{i:05d}.png"
        with atomic_path(directory / rel) as tmp:
            Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L").save(tmp, format="PNG")
        rows.append({"path": rel, "patient": f"p{patient:04d}", **dict(zip(LABELS, labels.tolist(), strict=True))})
    with atomic_path(csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_json(stamp_file, stamp)
    return csv


#: the bounds of each generator option: (integer?, lowest, highest, open interval?)
BOUNDS: dict[str, tuple[bool, float, float, bool]] = {
    "n": (True, 10, 10**6, False),
    "image_size": (True, 16, MAX_IMAGE_SIZE, False),
    "seed": (True, 0, 2**32 - 1, False),
    "prevalence": (False, 0, 1, True),
}
#: the bounds of each knob: scalars (lowest, highest) and pairs (each value in the bounds, first <= second)
KNOB_BOUNDS: dict[str, tuple[float, float]] = {
    "texture_amp": (0, 1),
    "texture_periods": (2, 64),
    "blob_sigma": (0.01, 2),
    "band": (0, 1),
    "below": (0, 1),
    "above": (0, 1),
    "noise": (0, 1),
}


def _number(key: str, value: Any, integer: bool, lo: float, hi: float, open_: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok_type or isinstance(value, bool) or not np.isfinite(value):
        raise OptionError(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    inside = lo < value < hi if open_ else lo <= value <= hi
    if not inside:
        bounds = f"between {lo:,} and {hi:,}" if integer else f"between {lo:g} and {hi:g}"
        bounds += " (both excluded)" if open_ else ""
        raise OptionError(key, f"must be {bounds}, got {value!r}")


def check_options(options: dict[str, Any], key: str = "data.options") -> None:
    """Every generator option of :func:`make_synthetic_xrays` within bounds in which it makes images (the
    command line's ``--option image_size=0`` used to end in a PIL traceback); ``knobs`` a mapping of the
    knobs of :data:`DEFAULT_KNOBS`."""
    for name, (integer, lo, hi, open_) in BOUNDS.items():
        if name in options:
            _number(f"{key}.{name}", options[name], integer, lo, hi, open_)
    knobs = options.get("knobs")
    if knobs is None:
        return
    if not isinstance(knobs, dict):
        raise OptionError(f"{key}.knobs", f"must be a mapping of knob: value, got {knobs!r}")
    for name, value in knobs.items():
        k = f"{key}.knobs.{name}"
        if name not in KNOB_BOUNDS:
            raise OptionError(k, f"is no knob; valid knobs: {', '.join(KNOB_BOUNDS)}")
        lo, hi = KNOB_BOUNDS[name]
        if isinstance(DEFAULT_KNOBS[name], tuple):
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise OptionError(k, f"must be a pair [low, high], got {value!r}")
            for v in value:
                _number(k, v, name == "texture_periods", lo, hi)
            if value[0] > value[1]:
                raise OptionError(k, f"must be [low, high] with low <= high, got {list(value)}")
        else:
            _number(k, value, False, lo, hi)


@DATASETS.register("synthetic")
class SyntheticXrays(CsvDataset):
    """The synthetic X-ray-like set, generated under ``root`` by :func:`make_synthetic_xrays` (``n``,
    ``image_size``, ``seed``, ``prevalence``, ``knobs``; reused when ``root`` already holds that exact set)
    and read as a :class:`CsvDataset` with :data:`CSV_OPTIONS` (labels :data:`LABELS`, patient ids from the
    ``patient`` column).  ``csv`` is not used (the set writes its own ``labels.csv``); further keyword
    arguments are :class:`CsvDataset` options and override :data:`CSV_OPTIONS`.
    """

    name = "synthetic"
    GENERATES_FILES = True

    @classmethod
    def check_options(cls, options: dict[str, Any], key: str = "data.options") -> None:
        check_options(options, key)

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        n: int = 600,
        image_size: int = 64,
        seed: int = 0,
        prevalence: float = 0.4,
        knobs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        if root is None:
            raise ConfigError(
                "the synthetic dataset needs a directory: set data.root (root=<folder to write its images to>)"
            )
        if csv is not None:
            raise ConfigError("the synthetic dataset writes its own labels.csv under root; csv is not used")
        check_options({"n": n, "image_size": image_size, "seed": seed, "prevalence": prevalence, "knobs": knobs})
        directory = Path(root)
        labels_csv = make_synthetic_xrays(
            directory, n=n, image_size=image_size, seed=seed, prevalence=prevalence, knobs=knobs
        )
        super().__init__(
            str(directory),
            str(labels_csv),
            **{**CSV_OPTIONS, **kwargs},
        )
