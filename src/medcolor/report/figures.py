"""The report's figures: training curves, colorized images through several T (paper Fig. 4), label
distributions per training-set size (Fig. 5), AUC against training-set size (Fig. 6), AUC tables.

The pictures lower layers draw too (the LR range test, T's output as an image, the Fig. 4 grid) live in
:mod:`medcolor.display`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medcolor.display import colorization_figure, pyplot, save_figure

plt = pyplot()


def plot_history(histories: dict[str, list[dict[str, Any]]], path) -> Path:
    """Training loss and validation mean AUC per chunk, one line per stage/run."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, rows in histories.items():
        steps = [r["step"] for r in rows]
        a1.plot(
            steps,
            [np.nan if r["train_loss"] is None else r["train_loss"] for r in rows],
            marker=".",
            label=name,
        )
        a2.plot(
            steps, [np.nan if r["val_mean_auc"] is None else r["val_mean_auc"] for r in rows], marker=".", label=name
        )
    a1.set_xlabel("iteration")
    a1.set_ylabel("training loss (mean over chunk)")
    a2.set_xlabel("iteration")
    a2.set_ylabel("validation mean AUC")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return save_figure(fig, path)


def colorization_grid(
    colorizers: Mapping[str, str | os.PathLike],
    images: Sequence[str | os.PathLike],
    path,
    *,
    display: str = "imagenet",
    titles: Sequence[str] | None = None,
    wrap: int = 16,
) -> Path:
    """Paper Fig. 4: the same input images through several colorization modules.

    ``colorizers`` maps a row name to an exported colorizer, a model file or a run directory; each
    module sees the images at its own input size and normalisation.  The first row shows the inputs.
    """
    import textwrap

    from medcolor.inference import colorize_images

    if not colorizers or not images:
        raise ValueError("colorization_grid needs at least one colorizer and one image")
    files = [Path(f) for f in images]
    grays: list[np.ndarray] | None = None
    rows: dict[str, list[np.ndarray]] = {}
    for name, src in colorizers.items():
        samples = colorize_images(src, files, display=display)
        grays = grays if grays is not None else list(samples.grays)
        rows[textwrap.fill(name, wrap)] = list(samples.colors)
    titles = titles or [f.stem if len(f.stem) <= 18 else f.stem[:17] + "…" for f in files]
    return colorization_figure(grays, rows, path, titles)


def plot_label_distribution(
    panels: Mapping[str, Any],
    path,
    *,
    states: Sequence[str] = ("positive", "negative", "uncertain"),
    ncols: int = 3,
    dpi: int = 110,
    also: Sequence[str] = (),
) -> Path:
    """Paper Fig. 5 for several training sets: one panel per set (the full training set, then each
    subset size), grouped bars of positive / negative / uncertain counts per label.

    ``panels`` maps a panel title to a :func:`medcolor.data.summary.label_counts` table.
    """
    if not panels:
        raise ValueError("plot_label_distribution needs at least one table")
    colors = {"positive": "#d62728", "negative": "#1f77b4", "uncertain": "#ff7f0e", "blank": "#7f7f7f"}
    n = len(panels)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    n_labels = max(len(t) for t in panels.values())
    w = max(3.6, 0.75 * n_labels + 1.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, 3.4 * nrows), squeeze=False, layout="constrained")
    width = 0.8 / len(states)
    for ax, (name, table) in zip(axes.flat, panels.items(), strict=False):
        x = np.arange(len(table))
        for k, st in enumerate(states):
            vals = table[st].to_numpy() if st in table.columns else np.zeros(len(table))
            bars = ax.bar(x + (k - (len(states) - 1) / 2) * width, vals, width, label=st, color=colors.get(st))
            ax.bar_label(bars, labels=[f"{int(v):,}" for v in vals], fontsize=6, rotation=90, padding=2)
        ax.set_xticks(x, [str(i) for i in table.index], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("images")
        ax.margins(y=0.22)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    return save_figure(fig, path, dpi=dpi, also=also)


def plot_size_curves(
    curves: Any, diffs: Any | None, path, *, scale: float = 100.0, title: str = "", also: Sequence[str] = ()
) -> Path:
    """Paper Fig. 6: (a) mean AUC ± std over repeats against the training-set size, one line per arm;
    (b) each arm's paired difference to the reference baseline with its bootstrap CI.

    ``curves`` and ``diffs`` are the frames of :func:`medcolor.report.tables.size_curves` (columns
    ``section``, ``arm``, ``n_train``, ``mean``, ``std``; ``diff``, ``ci_low``, ``ci_high``, ``baseline``;
    optionally ``size`` for tick labels).  One row of panels per section, one legend below them.
    """
    sections = list(dict.fromkeys(curves["section"]))
    ncols = 2 if diffs is not None and len(diffs) else 1
    fig, axes = plt.subplots(
        len(sections), ncols, figsize=(6.0 * ncols, 3.6 * len(sections) + 0.7), squeeze=False, layout="constrained"
    )
    style = _ArmStyle.of(curves)
    for i, sec in enumerate(sections):
        c = curves[curves["section"] == sec]
        _plot_means(axes[i, 0], c, style, scale, sec)
        if ncols == 2:
            _plot_differences(axes[i, 1], diffs[diffs["section"] == sec], c, style, scale)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, max(1, len(labels))), fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, also=also)


@dataclass
class _ArmStyle:
    """The arms of Fig. 6 in legend order (baselines first), a colour each, and each arm's small shift along the
    size axis that sets the error bars of one size side by side."""

    arms: list[str]
    colors: dict[str, Any]
    shift: dict[str, float]

    @classmethod
    def of(cls, curves: Any) -> _ArmStyle:
        arms = list(dict.fromkeys(curves.sort_values("arm", key=lambda s: s.map(_arm_rank))["arm"]))
        colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(arms)}
        shift = {a: 1 + 0.02 * (k - (len(arms) - 1) / 2) for k, a in enumerate(arms)}
        return cls(arms, colors, shift)


def _size_axis(ax: Any, d: Any) -> None:
    """The training-set size axis: log scale, a tick at each size's number of images (with the size's own name)."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ticks = d.drop_duplicates("n_train").sort_values("n_train")
    ax.set_xticks(ticks["n_train"].to_numpy(float))
    labels = [f"{v:,.0f}" for v in ticks["n_train"]]
    if "size" in ticks.columns:
        labels = [f"{lab}\n({sz})" if sz else lab for lab, sz in zip(labels, ticks["size"], strict=True)]
    ax.set_xticklabels(labels, fontsize=7)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training images")
    ax.grid(alpha=0.3)


def _plot_means(ax: Any, c: Any, style: _ArmStyle, scale: float, sec: str) -> None:
    """Panel (a) of one section ``sec`` (its rows ``c`` of the curves): mean AUC ± std per arm and size."""
    for arm in style.arms:
        d = c[c["arm"] == arm].sort_values("n_train")
        if not d.empty:
            ax.errorbar(
                d["n_train"].to_numpy(float) * style.shift[arm], d["mean"] * scale,
                yerr=np.nan_to_num(d["std"].to_numpy(float)) * scale, marker="o", ms=4, capsize=3, label=arm,
                color=style.colors[arm],
            )  # fmt: skip
    _size_axis(ax, c)
    ax.set_ylabel(f"mean AUC ×{scale:g}" if scale != 1 else "mean AUC")
    ax.set_title("(a) mean AUC ± std over repeats" + (f"\n{sec}" if sec else ""), fontsize=9)


def _plot_differences(ax: Any, d_all: Any, c: Any, style: _ArmStyle, scale: float) -> None:
    """Panel (b) of one section (its differences ``d_all``, on the size axis of its curves ``c``): each arm's
    paired difference to the baseline with its CI."""
    ref = ", ".join(_STRATEGY_TITLES.get(b, b) for b in sorted(set(d_all["baseline"].dropna())))
    for arm in style.arms:
        d = d_all[d_all["arm"] == arm].sort_values("n_train")
        if d.empty:
            continue
        y = d["diff"].to_numpy(float) * scale
        lo = np.clip(np.nan_to_num(y - d["ci_low"].to_numpy(float) * scale), 0, None)
        hi = np.clip(np.nan_to_num(d["ci_high"].to_numpy(float) * scale - y), 0, None)
        ax.errorbar(
            d["n_train"].to_numpy(float) * style.shift[arm], y, yerr=[lo, hi], marker="o", ms=4, capsize=3,
            color=style.colors[arm],
        )  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    _size_axis(ax, c)
    ax.set_ylabel(f"Δ AUC ×{scale:g}" if scale != 1 else "Δ AUC")
    ax.set_title(f"(b) paired difference to {ref or 'the baseline'}, bootstrap CI", fontsize=9)


_STRATEGY_TITLES = {"baseline": "Baseline", "baseline-all": "Baseline All"}


def _arm_rank(arm: str) -> tuple[int, str]:
    return (0 if arm.startswith("Baseline") else 1, arm)


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".3f") -> str:
    """A Markdown table of ``rows``: floats as ``floatfmt``, integers with thousands separators (2,226,434),
    None and NaN as "n/a"."""
    columns = list(columns or (rows[0].keys() if rows else []))

    def fmt(v: Any) -> str:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return f"{v:,}"
        if isinstance(v, float):
            return "n/a" if np.isnan(v) else format(v, floatfmt)
        return "n/a" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


__all__ = [
    "colorization_grid",
    "markdown_table",
    "plot_history",
    "plot_label_distribution",
    "plot_size_curves",
]
