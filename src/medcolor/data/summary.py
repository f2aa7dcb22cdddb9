"""Label statistics, the paper's Fig. 5-style bar plot of positive / negative / uncertain counts,
:func:`check_images` (decode every image of a dataset up front) and :func:`dataset_stats`, all that
``medcolor stats`` reports of a dataset."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError
from medcolor.utils import atomic_path, write_json

__all__ = [
    "COUNT_COLUMNS",
    "LABEL_COUNTS_FILE",
    "DatasetStats",
    "check_images",
    "dataset_stats",
    "label_counts",
    "plot_label_counts",
    "read_label_counts",
    "write_label_counts",
]

log = logging.getLogger(__name__)

COUNT_COLUMNS = ("positive", "negative", "uncertain", "blank")
#: the label counts of a run's splits (the report's Fig. 5), written by training beside ``data.json``
LABEL_COUNTS_FILE = "label_counts.json"


def label_counts(dataset_or_raw_labels: Any, label_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-label counts of raw states.

    Takes a dataset (uses its ``raw_labels`` and ``label_names``) or a raw label array (N, L) with values
    1, 0, -1, NaN.  Returns a DataFrame indexed by label name with int columns ``positive``, ``negative``,
    ``uncertain``, ``blank`` and ``total``.
    """
    if hasattr(dataset_or_raw_labels, "raw_labels"):
        raw = np.asarray(dataset_or_raw_labels.raw_labels, dtype=np.float64)
        if label_names is None:
            label_names = list(dataset_or_raw_labels.label_names)
    else:
        raw = np.asarray(dataset_or_raw_labels, dtype=np.float64)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim != 2:
        raise DataError(f"label_counts needs (N, L) labels, got shape {raw.shape}")
    names = list(label_names) if label_names is not None else [f"label_{j}" for j in range(raw.shape[1])]
    if len(names) != raw.shape[1]:
        raise ConfigError(f"{len(names)} label names for {raw.shape[1]} label columns")
    counts = {
        "positive": (raw == 1).sum(axis=0),
        "negative": (raw == 0).sum(axis=0),
        "uncertain": (raw == -1).sum(axis=0),
        "blank": np.isnan(raw).sum(axis=0),
    }
    df = pd.DataFrame({k: v.astype(np.int64) for k, v in counts.items()}, index=pd.Index(names, name="label"))
    df["total"] = np.int64(raw.shape[0])
    return df


def write_label_counts(path: str | os.PathLike, splits: Mapping[str, Any]) -> Path:
    """``{split: {label: {positive, negative, uncertain, blank, total}}}`` of the datasets in ``splits``
    (``None`` ones are left out) as JSON."""
    tables = {name: label_counts(ds) for name, ds in splits.items() if ds is not None}
    return write_json(path, {name: t.to_dict(orient="index") for name, t in tables.items()})


def read_label_counts(path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The tables :func:`write_label_counts` stored, as :func:`label_counts` returns them; a DataError naming
    ``path`` when it is missing (a run of an older medcolor) or unreadable."""
    import json

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: the run was written by a medcolor without label counts; re-run it")
    try:
        stored = json.loads(path.read_text())
        out = {}
        for split, rows in stored.items():
            df = pd.DataFrame.from_dict(rows, orient="index").astype(np.int64)
            df.index.name = "label"
            out[split] = df[[*COUNT_COLUMNS, "total"]]
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path} is not a readable label-counts file ({exc}); re-run the training") from exc


def plot_label_counts(
    counts: pd.DataFrame | Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    *,
    states: Sequence[str] = ("positive", "negative", "uncertain"),
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Grouped bars of ``states`` per observation (like the paper's Fig. 5), saved atomically as PNG.

    ``counts`` is a :func:`label_counts` table, or a dict ``{panel title: table}`` for side-by-side panels
    (e.g. the full set and a 0.1% subset).  Uses the Agg canvas directly, whatever pyplot's backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = dict(counts) if isinstance(counts, Mapping) else {title or "": counts}
    if not panels:
        raise ConfigError("plot_label_counts needs at least one table")
    bad = [s for s in states if s not in COUNT_COLUMNS]
    if bad:
        raise ConfigError(f"unknown states {bad}; use some of {COUNT_COLUMNS}")
    n = len(panels)
    fig = Figure(figsize=(max(5.0, 1.2 * max(len(t) for t in panels.values()) + 1.5) * n, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, table) in zip(axes, panels.items(), strict=True):
        _plot_panel(ax, name, table, states)
        if name:
            ax.set_title(name if title is None or n == 1 else f"{name}")
        ax.legend(fontsize=8)
    if title and n > 1:
        fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


_STATE_COLORS = {"positive": "#d62728", "negative": "#1f77b4", "uncertain": "#ff7f0e", "blank": "#7f7f7f"}


def _plot_panel(ax: Any, name: Any, table: pd.DataFrame, states: Sequence[str]) -> None:
    """One panel of :func:`plot_label_counts`: a group of bars (one per state) per observation."""
    missing = [s for s in states if s not in table.columns]
    if missing:
        raise DataError(f"count table {name!r} lacks the columns {missing}; make it with label_counts()")
    width = 0.8 / len(states)
    x = np.arange(len(table))
    for k, s in enumerate(states):
        vals = table[s].to_numpy()
        bars = ax.bar(x + (k - (len(states) - 1) / 2) * width, vals, width, label=s, color=_STATE_COLORS[s])
        ax.bar_label(bars, labels=[f"{int(v):,}" for v in vals], fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, [str(i) for i in table.index], rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.margins(y=0.18)


_CHECKED: Any = None  # the dataset a check_images worker process decodes from


def _init_check(dataset: Any) -> None:
    global _CHECKED
    _CHECKED = dataset


def _check_chunk(indices: list[int], dataset: Any = None) -> list[tuple[int, str]]:
    ds = dataset if dataset is not None else _CHECKED
    failed = []
    for i in indices:
        try:
            ds.load_image(i)
        except Exception as e:  # report every failure, whatever its kind, instead of stopping at the first
            failed.append((i, str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}"))
    return failed


def check_images(dataset: Any, *, workers: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Decode every image of ``dataset`` exactly as training will (:meth:`load_image`: at its ``load_size``,
    from its cache when it has one) and return the ones that fail: a DataFrame with ``index``,
    ``source_row``, ``path`` and ``error`` (the message names the file and its row), empty when all decode.

    ``workers``: decoding processes (default ``min(cpu_count, 8)``; 0 or 1: this process)."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    if getattr(dataset, "root", None) is None:
        raise DataError(f"this {dataset.name} dataset has no root (labels only): there are no images to check")
    n = len(dataset)
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    ds = copy.copy(dataset)
    ds.transform = None  # not needed to decode, and may not pickle (a lambda)
    step = max(1, min(64, -(-n // (4 * max(workers, 1)))))
    chunks = [list(range(k, min(k + step, n))) for k in range(0, n, step)]
    failed: list[tuple[int, str]] = []
    bar = tqdm(total=n, disable=not progress, unit="img", desc="check images")
    try:
        if workers <= 1 or len(chunks) < 2:
            for c in chunks:
                failed += _check_chunk(c, ds)
                bar.update(len(c))
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_check, initargs=(ds,)) as ex:
                for c, res in zip(chunks, ex.map(_check_chunk, chunks), strict=True):
                    failed += res
                    bar.update(len(c))
    finally:
        bar.close()
    idx = [i for i, _ in failed]
    log.debug("check_images: %d of %d images failed to decode", len(idx), n)
    return pd.DataFrame(
        {
            "index": pd.Series(idx, dtype=np.int64),
            "source_row": pd.Series(dataset.meta["source_row"].to_numpy()[idx], dtype=np.int64),
            "path": pd.Series([str(dataset.paths[i]) for i in idx], dtype=object),
            "error": pd.Series([m for _, m in failed], dtype=object),
        }
    )


@dataclass
class DatasetStats:
    """What :func:`dataset_stats` found: label counts of the dataset (and of a subset: ``subset_counts`` is
    ``None`` without one), the pixel mean/std of ``sampled`` images (``None`` until measured) and the images that
    cannot be decoded (``unreadable``: ``None`` until checked)."""

    name: str
    images: int
    patients: int
    counts: pd.DataFrame
    subset_counts: pd.DataFrame | None = None
    subset_images: int = 0
    mean: float | None = None
    std: float | None = None
    sampled: int = 0
    unreadable: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """The count tables by title, as :func:`plot_label_counts` draws them."""
        out = {"full set": self.counts}
        if self.subset_counts is not None:
            out[f"subset ({self.subset_images} images)"] = self.subset_counts
        return out

    def measure_pixels(self, dataset: Any, max_images: int | None = 2000, seed: int = 0) -> None:
        """``mean`` and ``std`` of the pixels of ``dataset`` (a seeded sample of ``max_images``; None: all)."""
        from medcolor.data.transforms import compute_mean_std

        self.mean, self.std = compute_mean_std(dataset, max_images=max_images, seed=seed)
        self.sampled = len(dataset) if max_images is None else min(len(dataset), max_images)

    def check(self, dataset: Any, progress: bool = False) -> None:
        """``unreadable``: the images of ``dataset`` that cannot be decoded (:func:`check_images`)."""
        self.unreadable = check_images(dataset, progress=progress)


def dataset_stats(
    dataset: Any,
    *,
    subset: Any = None,
    seed: int = 0,
    mean_std: bool = False,
    max_images: int | None = 2000,
    check: bool = False,
    progress: bool = False,
) -> DatasetStats:
    """Label counts of ``dataset``; with ``subset`` (a config :class:`~medcolor.config.Fraction` or
    :class:`~medcolor.config.Count`) those of its label-proportional draw with ``seed`` too; with ``mean_std``
    the pixel mean/std over a seeded sample of ``max_images`` (:meth:`DatasetStats.measure_pixels`); with
    ``check`` every image decoded (:meth:`DatasetStats.check`)."""
    from medcolor.data.splits import label_subset

    stats = DatasetStats(dataset.name, len(dataset), len(set(dataset.patient_ids)), label_counts(dataset))
    if subset is not None:
        idx = label_subset(dataset.raw_labels, seed=seed, **subset.draw_kwargs())
        stats.subset_counts, stats.subset_images = label_counts(dataset.subset(idx)), len(idx)
    if mean_std:
        stats.measure_pixels(dataset, max_images, seed)
    if check:
        stats.check(dataset, progress)
    return stats
