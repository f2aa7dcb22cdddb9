"""Figures: LR range test, training curves, colorized images (paper Fig. 4), AUC tables.

The colorized images show what E receives.  ``display="imagenet"`` (default) maps T's output back
through ImageNet's normalisation (``x * std + mean``, clipped to [0, 1]) — the RGB picture the
pretrained backbone "believes" it sees; ``display="minmax"`` stretches each image's 1st-99th
percentiles to [0, 1] instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from medcolor.utils import atomic_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _save(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_lr_find(
    lrs: Sequence[float], losses: Sequence[float], suggestion: float | None, path, title="", rule: str | None = None
) -> Path:
    """The LR range test curve with the suggestion (of ``rule``) marked: a dashed line and a dot on the curve."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lr, lo = np.asarray(lrs, float), np.asarray(losses, float)
    ok = np.isfinite(lo)
    ax.plot(lr[ok], lo[ok])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    if suggestion is not None:
        label = f"{rule + ' rule: ' if rule else ''}suggested max lr {suggestion:.2g}"
        ax.axvline(suggestion, color="tab:red", ls="--", label=label)
        if ok.sum() >= 2:
            y = np.interp(np.log(suggestion), np.log(lr[ok]), lo[ok])
            ax.plot([suggestion], [y], "o", color="tab:red")
        ax.legend()
    ax.set_title(title or "LR range test")
    return _save(fig, path)


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
    return _save(fig, path)


def to_display(rgb: torch.Tensor | np.ndarray, display: str = "imagenet") -> np.ndarray:
    """A (3, H, W) output of T as an (H, W, 3) image in [0, 1] for viewing."""
    x = torch.as_tensor(rgb, dtype=torch.float32)
    if display == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        y = x * std + mean
    elif display == "minmax":
        lo, hi = torch.quantile(x.flatten(), torch.tensor([0.01, 0.99]))
        y = (x - lo) / (hi - lo).clamp_min(1e-8)
    else:
        raise ValueError(f"display must be 'imagenet' or 'minmax', got {display!r}")
    return y.clamp(0, 1).permute(1, 2, 0).numpy()


def side_by_side(gray: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """(H, W) gray in [0, 1] and (H, W, 3) colour -> one uint8 (H, 2W + 4, 3) image."""
    g = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2)
    gap = np.ones((g.shape[0], 4, 3))
    return np.round(np.concatenate([g, gap, rgb], axis=1) * 255).astype(np.uint8)


def colorization_figure(
    grays: Sequence[np.ndarray],
    colorized: dict[str, Sequence[np.ndarray]],
    path,
    titles: Sequence[str] | None = None,
) -> Path:
    """Fig. 4-like grid: first row the inputs, then one row per model/stage with its colorized images."""
    rows = 1 + len(colorized)
    cols = len(grays)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows + 0.3), squeeze=False)
    for j, g in enumerate(grays):
        axes[0, j].imshow(g, cmap="gray", vmin=0, vmax=1)
        if titles:
            axes[0, j].set_title(titles[j], fontsize=7)
    for i, (name, imgs) in enumerate(colorized.items(), start=1):
        for j, im in enumerate(imgs):
            axes[i, j].imshow(im)
        axes[i, 0].set_ylabel(name, fontsize=8)
    axes[0, 0].set_ylabel("input", fontsize=8)
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    return _save(fig, path)


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".3f") -> str:
    columns = list(columns or (rows[0].keys() if rows else []))

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if np.isnan(v) else format(v, floatfmt)
        return "n/a" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


__all__ = [
    "colorization_figure",
    "markdown_table",
    "plot_history",
    "plot_lr_find",
    "side_by_side",
    "to_display",
]
