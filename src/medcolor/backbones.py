"""E — ImageNet-pretrained feature extractors from torchvision's classification models.

:func:`create_backbone` takes any torchvision classifier by name (``resnet18``, ``densenet121``,
``mobilenet_v2``, ``efficientnet_b0``, ``convnext_tiny``...), removes its last linear layer and
returns a :class:`Backbone` whose forward gives ``(B, num_features)`` features.

``weights`` is one of

* ``None`` — random initialisation;
* ``"imagenet"`` — torchvision's official ``DEFAULT`` weights, downloaded and cached by torchvision
  (``$TORCH_HOME/hub/checkpoints``); a file already in that cache is used without a network;
* a path to a local state-dict file (``.pth``/``.pt`` read with ``torch.load(weights_only=True)``, or
  ``.safetensors``), in torchvision's key layout.  Head-only keys may be missing (e.g. a
  features-only file); a file with unexpected keys, wrong shapes or missing feature-extractor
  tensors is refused with a message that lists them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from medcolor.errors import ConfigError, UnknownNameError, WeightsError

log = logging.getLogger(__name__)

IMAGENET = "imagenet"


def list_backbones() -> list[str]:
    """Names of the torchvision classification models usable as E."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


@dataclass
class LoadReport:
    """What loading a weights file did: keys the file lacked and keys it had that were not used."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"loaded {self.source}: {len(self.missing)} missing key(s) (classifier head, not used by E)"
            f"{': ' + ', '.join(self.missing) if self.missing else ''}; "
            f"{len(self.unexpected)} unexpected key(s)"
        )


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found: tuple[str, nn.Linear] | None = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            found = (name, m)
    if found is None:
        raise ConfigError(
            f"backbone {type(model).__name__} has no linear classification layer to remove; use a "
            "torchvision classifier with a final nn.Linear (resnet*, densenet*, mobilenet*, efficientnet*...)"
        )
    return found


def _set_submodule(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


class Backbone(nn.Module):
    """A torchvision classifier with its last linear layer replaced by ``nn.Identity``."""

    def __init__(self, name: str, net: nn.Module, head_name: str, num_features: int) -> None:
        super().__init__()
        self.name = name
        self.net = net
        self.head_name = head_name
        self.num_features = num_features
        self.load_report: LoadReport | None = None
        self.weights: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if not isinstance(y, torch.Tensor):  # GoogLeNet / Inception outputs in training mode
            y = y[0]
        return y.flatten(1)


def _build_torchvision(name: str) -> nn.Module:
    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        raise UnknownNameError(_unknown_backbone(name)) from None
    kwargs: dict[str, Any] = {"weights": None}
    if name in {"googlenet", "inception_v3"}:
        kwargs.update(aux_logits=False, init_weights=True)
    return builder(**kwargs)


def _unknown_backbone(name: str) -> str:
    import difflib

    names = list_backbones()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown backbone {name!r}.{hint} Valid backbones (torchvision classifiers): {', '.join(names)}."


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; give the path of a state-dict file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, corrupt file...
        raise WeightsError(
            f"cannot read weights file {path}: {exc}. medcolor only reads plain state dicts "
            "(torch.save(model.state_dict()) or safetensors) and never unpickles arbitrary objects"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    for prefix in ("module.", "net."):  # DataParallel / our own Backbone layout
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def load_state_dict_checked(
    net: nn.Module, sd: dict[str, torch.Tensor], head_name: str, source: str, arch: str
) -> LoadReport:
    """Load ``sd`` into ``net`` (a full torchvision classifier); refuse files that do not fit."""
    own = net.state_dict()
    unexpected = sorted(k for k in sd if k not in own)
    wrong_shape = sorted(k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape))
    missing = sorted(k for k in own if k not in sd)
    missing_body = [k for k in missing if not k.startswith(head_name + ".")]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:5])}")
    if wrong_shape:
        details = ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape[:5])
        problems.append(f"{len(wrong_shape)} tensor(s) of the wrong shape, e.g. {details}")
    if missing_body:
        problems.append(f"{len(missing_body)} feature-extractor key(s) missing, e.g. {', '.join(missing_body[:5])}")
    if problems:
        raise WeightsError(
            f"weights file {source} does not fit backbone {arch!r}: "
            + "; ".join(problems)
            + f". Check that the file holds {arch} weights in torchvision's key layout."
        )
    net.load_state_dict(sd, strict=False)
    return LoadReport(source=source, missing=missing, unexpected=unexpected)


def _imagenet_state_dict(name: str, progress: bool) -> tuple[dict[str, torch.Tensor], str]:
    enum = torchvision.models.get_model_weights(name)
    w = enum.DEFAULT
    url = w.url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    try:
        return w.get_state_dict(progress=progress, check_hash=True), str(cache)
    except Exception as exc:
        raise WeightsError(
            f"cannot get the ImageNet weights of {name} ({w}): {type(exc).__name__}: {exc}. "
            f"Without internet, download {url} on another machine and either copy it to {cache} "
            f"(torchvision's cache; set TORCH_HOME to move it) or pass its path as weights "
            f"(--weights /path/to/{os.path.basename(url)})."
        ) from exc


def create_backbone(name: str, weights: str | os.PathLike | None = None, *, progress: bool = True) -> Backbone:
    """Build backbone E by torchvision name, with ``weights`` ``None``, ``"imagenet"`` or a file path."""
    if not isinstance(name, str):
        raise ConfigError(f"backbone name must be a string, got {name!r}")
    net = _build_torchvision(name)
    head_name, head = _last_linear(net)
    report = None
    if weights is None or (isinstance(weights, str) and weights.lower() in {"none", "random", ""}):
        source = None
    elif isinstance(weights, str) and weights.lower() == IMAGENET:
        sd, source = _imagenet_state_dict(name, progress)
        report = load_state_dict_checked(net, sd, head_name, source, name)
        source = IMAGENET
    else:
        path = Path(weights).expanduser()
        sd = _read_state_dict(path)
        report = load_state_dict_checked(net, sd, head_name, str(path), name)
        source = str(path)
        log.debug("%s", report)  # the run's log shows it at INFO (medcolor.training.pipeline.build_model)
    num_features = head.in_features
    _set_submodule(net, head_name, nn.Identity())
    bb = Backbone(name, net, head_name, num_features)
    bb.load_report = report
    bb.weights = source
    return bb


def imagenet_weights_available(name: str) -> bool:
    """Whether torchvision's ImageNet weights for ``name`` are in the local cache (no download needed)."""
    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except Exception:
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


__all__ = [
    "IMAGENET",
    "Backbone",
    "LoadReport",
    "create_backbone",
    "imagenet_weights_available",
    "list_backbones",
    "load_state_dict_checked",
]
