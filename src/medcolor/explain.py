"""Grad-CAM heat maps of a network ``C(E(T(x)))``: where in the gray input E's features drive each label.
(The computation — :func:`explain`, :func:`find_target_layer` — is :mod:`medcolor.evaluation.gradcam`, below
training, which stores the maps of a few validation images for the report's Fig. 4; re-exported here.)

:func:`explain` computes the maps with the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``) at E's last
convolutional block, found by :func:`find_target_layer`: the last module of E, in the order the forward pass
finishes them, whose output is a ``(B, C, H, W)`` feature map with ``H * W > 1`` — so global pooling and what follows
it (1 x 1 maps, e.g. ConvNeXt's head norm, MobileNetV3's head conv or a squeeze-excitation gate) are never chosen.
This works alike for torchvision and timm CNNs; a backbone without such a map, or whose last map is followed by
token ``(B, N, C)`` layers (a vision transformer: its patch embedding is not a feature map to explain), is refused.
Each map is Grad-CAM's ReLU of the gradient-weighted sum of that block's channels for one label's logit, upsampled to
the input size and scaled to [0, 1] per image and label (an all-zero map stays zero: nothing there raises the logit).

:func:`explain_files` (``medcolor explain MODEL IMAGES... -o DIR``) writes, per image and label,
``<image>_<label>_gradcam.png``: the gray input, the map over it, and T's colour image — what E sees (for the
gray baseline, the gray copied to three channels).  Model files are read with :func:`medcolor.io.load_model`
(safetensors, never unpickled).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcolor.evaluation.gradcam import TargetLayer, explain, find_target_layer, resolve_labels
from medcolor.utils import atomic_path

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- files
def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "label"


def plot_explanation(
    gray: np.ndarray,
    heat: np.ndarray,
    e_input: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str,
    e_title: str,
) -> Path:
    """One figure: the gray input, the heat map over it, and E's input (T's colour image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(7.8, 2.9))
    axes[0].imshow(gray, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8)
    axes[1].imshow(gray, cmap="gray", vmin=0, vmax=1)
    im = axes[1].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.45)
    axes[1].set_title(title, fontsize=8)
    axes[2].imshow(e_input)
    axes[2].set_title(e_title, fontsize=8)
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def explain_files(
    model_path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[int | str] | None = None,
    size: int | None = None,
    display: str = "imagenet",
) -> list[Path]:
    """``medcolor explain``: for every image file (or folder of images) and label, write
    ``<image>_<label>_gradcam.png`` to ``out_dir`` (the gray input, its Grad-CAM map, E's input) and
    ``gradcam.csv`` (image, label, probability, target layer, the map's centre of mass); returns the files."""
    import pandas as pd

    from medcolor.display import to_display
    from medcolor.inference import ImageFiles, check_finite_weights, collect_images, resolve_model_path
    from medcolor.io import load_model

    path = resolve_model_path(model_path)
    model, _ = load_model(path)
    check_finite_weights(model, path)
    names, norm, model_size = model.usage(str(path))
    files = collect_images(inputs)
    ds = ImageFiles(files, int(size or model_size), norm["mean"], norm["std"])
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(x)).numpy()
        e_inputs = model.colorizer(x)
    idx = resolve_labels(labels, names, probs.shape[1])
    layer = find_target_layer(model.backbone, e_inputs[:1])
    log.info(f"Grad-CAM at E's {layer.name} (output {layer.shape[1]} x {layer.shape[2]} x {layer.shape[3]})")
    maps = explain(model, x, idx, target_layer=layer.module)
    learnable = bool(getattr(model.colorizer, "learnable", True))
    t_name = getattr(model.colorizer, "name", "T")
    e_title = f"T's colour image ({t_name}): E's input" if learnable else f"E's input (T: {t_name}, no colour)"
    grays = (x[:, 0] * norm["std"] + norm["mean"]).clamp(0, 1).numpy()
    rgbs = [to_display(e, display) for e in e_inputs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels_of = [names[j] if j < len(names) else f"label{j}" for j in idx]
    written, rows = _write_explanations(files, grays, rgbs, maps, probs[:, idx], labels_of, out, e_title)
    for row in rows:
        row["target_layer"] = f"backbone.{layer.name}"
    table = out / "gradcam.csv"
    with atomic_path(table) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, columns=_TABLE_COLUMNS)
    return [*written, table]


_TABLE_COLUMNS = ["image", "label", "probability", "target_layer", "center_x", "center_y", "figure"]


def _write_explanations(
    files: Sequence[Path],
    grays: np.ndarray,
    rgbs: Sequence[np.ndarray],
    maps: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    out: Path,
    e_title: str,
) -> tuple[list[Path], list[dict[str, Any]]]:
    """One figure per image and label (gray input, Grad-CAM map, E's input) and a table row for each."""
    written: list[Path] = []
    rows = []
    for i, f in enumerate(files):
        for k, label in enumerate(labels):
            target = out / f"{f.stem}_{_safe(label)}_gradcam.png"
            if target in written:  # two inputs with the same name (from different folders)
                target = out / f"{f.stem}_{i}_{_safe(label)}_gradcam.png"
            title = f"Grad-CAM {label} (p = {probs[i, k]:.3f})"
            written.append(plot_explanation(grays[i], maps[i, k], rgbs[i], target, title=title, e_title=e_title))
            cy, cx = center_of_mass(maps[i, k])
            rows.append(
                {
                    "image": str(f),
                    "label": label,
                    "probability": float(probs[i, k]),
                    "center_x": cx,
                    "center_y": cy,
                    "figure": target.name,
                }
            )
    return written, rows


def center_of_mass(heat: np.ndarray) -> tuple[float | None, float | None]:
    """``(row, column)`` of a map's centre of mass, as fractions of its height and width (``None`` for an all-zero
    map)."""
    total = float(heat.sum())
    if total <= 0:
        return None, None
    h, w = heat.shape
    rows = np.arange(h) + 0.5
    cols = np.arange(w) + 0.5
    return float((heat.sum(1) * rows).sum() / total / h), float((heat.sum(0) * cols).sum() / total / w)


__all__ = ["TargetLayer", "center_of_mass", "explain", "explain_files", "find_target_layer", "resolve_labels"]
