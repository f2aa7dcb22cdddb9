"""Pictures of what the network does, for every layer that shows one: T's output as an image, the gray
input beside it, the Fig. 4-like grid of colorized images, the LR range test curve, and the colorized
samples a run writes for the report.

T's output is shown through ImageNet's normalisation (``display="imagenet"``, the default: ``x * std +
mean``, clipped to [0, 1]) — the RGB picture the pretrained backbone "believes" it sees; ``"minmax"``
stretches each image's 1st-99th percentiles to [0, 1] instead.  matplotlib is imported on first use
(with the non-interactive Agg backend).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcolor.errors import DataError
from medcolor.normalization import IMAGENET_MEAN, IMAGENET_STD
from medcolor.utils import atomic_path

#: the colorized samples of a run (the report's Fig. 4): gray inputs, T's output as RGB, image names
SAMPLES_FILE = "colorized_samples.npz"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120, also: Sequence[str] = ()) -> Path:
    """Write ``fig`` atomically (format from the suffix, default PNG; a ``.jpg`` at quality 90), also in the
    formats ``also`` (e.g. ``("svg",)``, beside it with that suffix, for papers), and close it."""
    path = Path(path)
    for target in (path, *(path.with_suffix("." + f) for f in also)):
        fmt = target.suffix.lstrip(".").lower() or "png"
        extra = {"pil_kwargs": {"quality": 90}} if fmt in ("jpg", "jpeg") else {}
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", **extra)
    pyplot().close(fig)
    return path


def plot_lr_find(
    lrs: Sequence[float], losses: Sequence[float], suggestion: float | None, path, title="", rule: str | None = None
) -> Path:
    """The LR range test curve with the suggestion (of ``rule``) marked: a dashed line and a dot on the curve."""
    fig, ax = pyplot().subplots(figsize=(5, 3.5))
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
    return save_figure(fig, path)


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


def wrap_name(name: str, width: int = 20) -> str:
    """A file name as a title of at most ``width`` characters a line: broken after its separators (``-``, ``_``,
    ``.``, space) where possible, else inside a long part."""
    import re

    lines: list[str] = []
    line = ""
    for part in [p for p in re.split(r"(?<=[-_. ])", name) if p]:
        while len(part) > width:  # a part longer than a line: cut it
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if len(line) + len(part) > width and line:
            lines.append(line)
            line = ""
        line += part
    if line:
        lines.append(line)
    return "\n".join(x.rstrip() for x in lines)


#: the width of a tile of :func:`colorization_figure` (inches) and the characters a title line may hold there
TILE_IN, TITLE_CHARS = 1.9, 20


def colorization_grid_figure(
    grays: Sequence[np.ndarray],
    colorized: dict[str, Sequence[np.ndarray]],
    titles: Sequence[str] | None = None,
    *,
    title: str = "",
) -> Any:
    """The matplotlib figure of :func:`colorization_figure` (not saved): long image names are wrapped
    (:func:`wrap_name`) so that neighbouring titles never overlap."""
    rows = 1 + len(colorized)
    cols = len(grays)
    lines = max((wrap_name(t, TITLE_CHARS).count("\n") + 1 for t in titles or []), default=0)
    fig, axes = pyplot().subplots(
        rows, cols, figsize=(TILE_IN * cols + 1.6, TILE_IN * rows + 0.4 + 0.15 * lines), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for j, g in enumerate(grays):
        axes[0, j].imshow(g, cmap="gray", vmin=0, vmax=1)
        if titles:
            axes[0, j].set_title(wrap_name(titles[j], TITLE_CHARS), fontsize=9)
    for i, (name, imgs) in enumerate(colorized.items(), start=1):
        for j, im in enumerate(imgs):
            axes[i, j].imshow(im)
        axes[i, 0].set_ylabel(name, fontsize=10, rotation=0, ha="right", va="center", labelpad=6)
    axes[0, 0].set_ylabel("input", fontsize=10, rotation=0, ha="right", va="center", labelpad=6)
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def colorization_figure(
    grays: Sequence[np.ndarray],
    colorized: dict[str, Sequence[np.ndarray]],
    path,
    titles: Sequence[str] | None = None,
    *,
    title: str = "",
    also: Sequence[str] = (),
) -> Path:
    """Fig. 4-like grid: first row the inputs, then one row per model/stage with its colorized images; the
    row names are written horizontally left of the rows, readable at the page's size.  ``also``: more
    formats written beside ``path`` (e.g. ``("svg",)``)."""
    return save_figure(colorization_grid_figure(grays, colorized, titles, title=title), path, also=also)


@torch.no_grad()
def colorize(
    t: torch.nn.Module, images: Sequence[torch.Tensor], mean: float, std: float, display: str = "imagenet"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """T's output on normalised gray images (each (1, H, W)) as pictures, one image at a time: the gray
    inputs (H, W) and T's colours (H, W, 3), in [0, 1].  T runs in eval mode on its own device."""
    was_training = t.training
    t.eval()
    device = next((v.device for v in t.state_dict().values()), torch.device("cpu"))
    grays, colors = [], []
    try:
        for image in images:
            x = image[None].to(device)
            colors.append(to_display(t(x)[0].float().cpu(), display))
            grays.append((image[0].float() * std + mean).clamp(0, 1).cpu().numpy())
    finally:
        t.train(was_training)
    return grays, colors


@dataclass
class ColorizedSamples:
    """A few images through T: ``grays`` (N, H, W) and ``colors`` (N, H, W, 3) in [0, 1], ``names`` (N,)."""

    grays: np.ndarray
    colors: np.ndarray
    names: list[str]


def write_colorized_samples(path: str | os.PathLike, samples: ColorizedSamples) -> Path:
    """Store ``samples`` as 8-bit images in a compressed ``.npz`` (no pickled objects)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            grays=np.round(np.clip(samples.grays, 0, 1) * 255).astype(np.uint8),
            colors=np.round(np.clip(samples.colors, 0, 1) * 255).astype(np.uint8),
            names=np.asarray([str(n) for n in samples.names], dtype=str),
        )
    return path


def read_colorized_samples(path: str | os.PathLike) -> ColorizedSamples:
    """The samples :func:`write_colorized_samples` stored; a DataError naming ``path`` if absent or broken."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path} is missing: the run was written by a medcolor without colorized samples (re-run its "
            "training, or draw the figure with `medcolor colorize`)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            return ColorizedSamples(z["grays"] / 255.0, z["colors"] / 255.0, [str(n) for n in z["names"]])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a readable colorized-samples file ({exc}); re-run the training") from exc


__all__ = [
    "SAMPLES_FILE",
    "ColorizedSamples",
    "colorization_figure",
    "colorization_grid_figure",
    "colorize",
    "plot_lr_find",
    "pyplot",
    "read_colorized_samples",
    "save_figure",
    "side_by_side",
    "to_display",
    "wrap_name",
    "write_colorized_samples",
]
