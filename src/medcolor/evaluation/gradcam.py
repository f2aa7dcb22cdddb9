"""Grad-CAM heat maps of a network ``C(E(T(x)))`` (the computation; the figures and ``medcolor explain`` are
:mod:`medcolor.explain`), and the few maps training stores for the report's Fig. 4.

:func:`explain` computes the maps with the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``) at E's last
convolutional block, found by :func:`find_target_layer` (see :mod:`medcolor.explain` for the rule).  Each map is
Grad-CAM's ReLU of the gradient-weighted sum of that block's channels for one label's logit, upsampled to the input
size and scaled to [0, 1] per image and label.

:func:`gradcam_samples` gives the maps of a few network inputs (training: the images of ``colorized_samples.npz``),
:func:`write_gradcam_samples` / :func:`read_gradcam_samples` store them as ``gradcam_samples.npz`` (8-bit maps, no
pickled objects): the report draws them without loading a network or any data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medcolor.errors import ConfigError, DataError
from medcolor.utils import atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

#: the Grad-CAM maps a run stores beside ``colorized_samples.npz`` (the same images), for the report's Fig. 4
GRADCAM_FILE = "gradcam_samples.npz"


@dataclass
class TargetLayer:
    """The module Grad-CAM hooks: its dotted name inside E, the module, and its output's shape for the input."""

    name: str
    module: nn.Module = field(repr=False)
    shape: tuple[int, ...] = ()


def find_target_layer(backbone: nn.Module, example: torch.Tensor) -> TargetLayer:
    """E's last convolutional block for ``example`` (E's input, ``(B, 3, H, W)``): the last module to finish in
    the forward pass with a 4-D output of more than one spatial position (see :mod:`medcolor.explain`)."""
    import torch

    finished: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    handles = []

    def hook(name: str):
        def record(module: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                finished.append((name, module, tuple(out.shape)))

        return record

    for name, module in backbone.named_modules():
        if name:  # not E itself: its output is the pooled feature vector
            handles.append(module.register_forward_hook(hook(name)))
    was_training = backbone.training
    try:
        with torch.no_grad():
            backbone.eval()(example)
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    maps = [i for i, (_, _, s) in enumerate(finished) if len(s) == 4 and s[2] * s[3] > 1]
    name_of = getattr(backbone, "name", type(backbone).__name__)
    if maps and any(len(s) == 3 for _, _, s in finished[maps[-1] + 1 :]):
        raise ConfigError(
            f"backbone {name_of}: its last 4-D output ({finished[maps[-1]][0]}) is followed by token (B, N, C) "
            "layers (a vision transformer): Grad-CAM needs a convolutional E"
        )
    if not maps:
        raise ConfigError(
            f"backbone {name_of} has no (B, C, H, W) feature map larger "
            f"than 1 x 1 at input size {tuple(example.shape[-2:])}: Grad-CAM needs a convolutional E (and an input "
            "large enough to keep a spatial map before pooling)"
        )
    name, module, shape = finished[maps[-1]]
    return TargetLayer(name, module, shape)


def resolve_labels(labels: Sequence[int | str] | None, label_names: Sequence[str], num_outputs: int) -> list[int]:
    """Output indices of ``labels`` (indices or names of ``label_names``; ``None``: every output)."""
    if labels is None:
        return list(range(num_outputs))
    names = list(label_names)
    out = []
    for lab in labels:
        if isinstance(lab, (int, np.integer)) and not isinstance(lab, bool):
            if not 0 <= int(lab) < num_outputs:
                raise ConfigError(f"label index {lab} is out of range: the network has {num_outputs} outputs")
            out.append(int(lab))
        elif isinstance(lab, str) and lab in names:
            out.append(names.index(lab))
        elif isinstance(lab, str) and lab.isdigit():  # an output index given as text (the command line)
            out.extend(resolve_labels([int(lab)], names, num_outputs))
        else:
            raise ConfigError(
                f"unknown label {lab!r}: the network predicts {', '.join(names) or f'{num_outputs} unnamed outputs'} "
                "(give names from this list, or output indices)"
            )
    return out


def explain(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int | str] | None = None,
    *,
    label_names: Sequence[str] = (),
    target_layer: nn.Module | None = None,
) -> np.ndarray:
    """Grad-CAM maps ``(B, len(labels), H, W)`` in [0, 1] of ``model`` (a ``ColorTransferNet``: ``colorizer``,
    ``backbone``, ``head``) for network inputs ``images`` ``(B, 1, H, W)`` (normalised as the network expects).

    ``labels``: output indices or names (``label_names`` maps names to outputs); ``None``: every output.
    ``target_layer``: a module of E to hook instead of :func:`find_target_layer`'s choice.  The model is put in
    eval mode for the computation and left in the mode it had."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if images.ndim != 4:
        raise ConfigError(f"explain: images must be a (B, C, H, W) tensor, got shape {tuple(images.shape)}")
    device = next(model.parameters()).device
    x = images.detach().float().to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            e_input = model.colorizer(x[:1])
            num_outputs = int(model(x[:1]).shape[1])
        layer = target_layer or find_target_layer(model.backbone, e_input).module
        idx = resolve_labels(labels, label_names, num_outputs)
        out = np.zeros((len(x), len(idx), *x.shape[-2:]), dtype=np.float32)
        # the gradient must reach E's block even where T/E/C are frozen (requires_grad False): ask it of the input
        x = x.clone().requires_grad_(True)
        with GradCAM(model=model, target_layers=[layer]) as cam:
            for k, j in enumerate(idx):
                out[:, k] = cam(input_tensor=x, targets=[ClassifierOutputTarget(j)] * len(x))
    finally:
        model.train(was_training)
    return np.clip(out, 0.0, 1.0)


@dataclass
class GradCamSamples:
    """Grad-CAM maps of a few images: ``maps`` (N, L, H, W) in [0, 1], the ``labels`` (L,) they explain, the image
    ``names`` (N,) and E's ``layer`` they were taken at."""

    maps: np.ndarray
    labels: list[str]
    names: list[str]
    layer: str = ""


def gradcam_samples(
    model: nn.Module, images: torch.Tensor, label_names: Sequence[str], names: Sequence[str]
) -> GradCamSamples:
    """The maps of every label for network inputs ``images`` (B, 1, H, W) named ``names``."""
    import torch

    with torch.no_grad():
        e_input = model.colorizer(images[:1].float().to(next(model.parameters()).device))
    layer = find_target_layer(model.backbone, e_input)
    maps = explain(model, images, None, label_names=label_names, target_layer=layer.module)
    labels = [str(label_names[j]) if j < len(label_names) else f"label{j}" for j in range(maps.shape[1])]
    return GradCamSamples(maps, labels, [str(n) for n in names], f"backbone.{layer.name}")


def write_gradcam_samples(path: str | os.PathLike, samples: GradCamSamples) -> Path:
    """Store ``samples`` as 8-bit maps in a compressed ``.npz`` (no pickled objects)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            maps=np.round(np.clip(samples.maps, 0, 1) * 255).astype(np.uint8),
            labels=np.asarray(samples.labels, dtype=str),
            names=np.asarray(samples.names, dtype=str),
            layer=np.asarray(samples.layer, dtype=str),
        )
    return path


def read_gradcam_samples(path: str | os.PathLike) -> GradCamSamples:
    """The maps :func:`write_gradcam_samples` stored; a DataError naming ``path`` if absent or broken."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: the run was written by a medcolor without Grad-CAM samples (re-run it)")
    try:
        with np.load(path, allow_pickle=False) as z:
            maps = z["maps"] / 255.0
            labels, names, layer = [str(x) for x in z["labels"]], [str(x) for x in z["names"]], str(z["layer"])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a readable Grad-CAM samples file ({exc}); re-run the training") from exc
    if maps.ndim != 4 or maps.shape[:2] != (len(names), len(labels)):
        raise DataError(f"{path}: maps of shape {maps.shape} do not match {len(names)} images x {len(labels)} labels")
    return GradCamSamples(maps, labels, names, layer)


__all__ = [
    "GRADCAM_FILE",
    "GradCamSamples",
    "TargetLayer",
    "explain",
    "find_target_layer",
    "gradcam_samples",
    "read_gradcam_samples",
    "resolve_labels",
    "write_gradcam_samples",
]
