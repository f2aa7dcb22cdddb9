"""Label statistics and the paper's Fig. 5-style bar plot of positive / negative / uncertain counts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError
from medcolor.utils import atomic_path

__all__ = ["COUNT_COLUMNS", "label_counts", "plot_label_counts"]

COUNT_COLUMNS = ("positive", "negative", "uncertain", "blank")


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
    colors = {"positive": "#d62728", "negative": "#1f77b4", "uncertain": "#ff7f0e", "blank": "#7f7f7f"}
    n = len(panels)
    fig = Figure(figsize=(max(5.0, 1.2 * max(len(t) for t in panels.values()) + 1.5) * n, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    width = 0.8 / len(states)
    for ax, (name, table) in zip(axes, panels.items(), strict=True):
        missing = [s for s in states if s not in table.columns]
        if missing:
            raise DataError(f"count table {name!r} lacks the columns {missing}; make it with label_counts()")
        x = np.arange(len(table))
        for k, s in enumerate(states):
            vals = table[s].to_numpy()
            bars = ax.bar(x + (k - (len(states) - 1) / 2) * width, vals, width, label=s, color=colors[s])
            ax.bar_label(bars, labels=[f"{int(v):,}" for v in vals], fontsize=6, rotation=90, padding=2)
        ax.set_xticks(x, [str(i) for i in table.index], rotation=30, ha="right")
        ax.set_ylabel("images")
        ax.margins(y=0.18)
        if name:
            ax.set_title(name if title is None or n == 1 else f"{name}")
        ax.legend(fontsize=8)
    if title and n > 1:
        fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
