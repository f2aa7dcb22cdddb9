"""E — ImageNet-pretrained feature extractors from torchvision's and timm's classification models.

:func:`create_backbone` takes a classifier by name and returns a :class:`Backbone` whose forward gives
pooled ``(B, num_features)`` features (the classifier's last linear layer removed).  Names:

* ``torchvision:NAME`` or ``timm:NAME`` name the family explicitly (``timm:tf_efficientnet_lite0``,
  ``timm:convnext_atto``...);
* a bare name is a torchvision classifier when torchvision has one of that name (``resnet18``,
  ``densenet121``, ``mobilenet_v2``: the names runs have always used), else a timm model when timm
  has one (``tf_efficientnet_lite0``); :func:`resolve_backbone` gives the canonical name
  (torchvision models bare, timm models ``timm:NAME``), which model files record.

Every backbone carries its pretrained data config (:attr:`Backbone.pretrained_cfg`, timm's name for it):
the per-channel RGB ``mean``/``std`` E was trained with, ``input_size``, ``interpolation`` and whether the
input size is fixed (ViTs).  torchvision's ImageNet classifiers use ImageNet's statistics; timm models
their own (``tf_efficientnet_lite*``: TF's ``(x - 127) / 128``, i.e. mean 0.498 / std 0.502).

``weights`` is one of

* ``None`` — random initialisation;
* ``"imagenet"`` — torchvision's official ``DEFAULT`` weights, downloaded and cached by torchvision
  (``$TORCH_HOME/hub/checkpoints``); a file already in that cache is used without a network;
* (timm models) ``"imagenet"`` — timm's default pretrained weights, downloaded by timm (Hugging Face
  hub cache); without internet the error says where to put the file or to pass its path;
* a path to a local state-dict file (``.pth``/``.pt`` read with ``torch.load(weights_only=True)``, or
  ``.safetensors``), in the family's key layout (torchvision's or timm's).  Head-only keys may be missing (e.g. a
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
from medcolor.paths import user_path

log = logging.getLogger(__name__)

IMAGENET = "imagenet"


TIMM = "timm"
TORCHVISION = "torchvision"
FAMILIES = (TORCHVISION, TIMM)

#: the statistics torchvision's ImageNet classifiers were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: TF-ported models whose exact preprocessing is ``(x * 255 - 127) / 128``, which timm's config rounds to 0.5/0.5
_TF_127_128 = {f"tf_efficientnet_lite{i}" for i in range(5)}


def list_backbones(family: str = TORCHVISION) -> list[str]:
    """Names of the classification models usable as E: torchvision's (default, bare names) or timm's."""
    if family == TORCHVISION:
        return sorted(torchvision.models.list_models(module=torchvision.models))
    if family == TIMM:
        import timm

        return sorted(timm.list_models())
    raise ConfigError(f"unknown backbone family {family!r}; valid: {', '.join(FAMILIES)}")


def _timm_has(arch: str) -> bool:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        return False
    return bool(timm.is_model(arch))


def resolve_backbone(name: str) -> tuple[str, str]:
    """``(family, architecture)`` of a backbone name (see the module doc); unknown names raise
    :class:`~medcolor.errors.UnknownNameError` with the closest names."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone name must be a non-empty string, got {name!r}")
    family, sep, arch = name.partition(":")
    if sep:
        family = family.lower()
        if family not in FAMILIES:
            raise UnknownNameError(
                f"backbone {name!r}: unknown family {family!r}; write timm:NAME or torchvision:NAME (or a bare name)"
            )
        known = arch in list_backbones(TORCHVISION) if family == TORCHVISION else _timm_has(arch)
        if not known:
            raise UnknownNameError(_unknown_backbone(name))
        return family, arch
    if name in list_backbones(TORCHVISION):
        return TORCHVISION, name
    if _timm_has(name):
        return TIMM, name
    raise UnknownNameError(_unknown_backbone(name))


def canonical_backbone_name(name: str) -> str:
    """The name model files record: torchvision models bare (as always), timm models ``timm:NAME``."""
    family, arch = resolve_backbone(name)
    return arch if family == TORCHVISION else f"{TIMM}:{arch}"


def is_backbone(name: object) -> bool:
    """Whether ``name`` resolves to a torchvision or timm classifier."""
    try:
        resolve_backbone(name)  # type: ignore[arg-type]
    except ConfigError:
        return False
    return True


def data_config(name: str) -> dict[str, Any]:
    """The pretrained data config of backbone ``name`` (without building it): ``mean``/``std`` (3 floats,
    RGB in [0, 1]), ``input_size`` ``(3, H, W)``, ``interpolation``, ``crop_pct``, ``fixed_input_size``."""
    family, arch = resolve_backbone(name)
    if family == TORCHVISION:
        return {
            "family": TORCHVISION,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "input_size": [3, 224, 224],
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "fixed_input_size": arch.startswith("vit_"),
        }
    import timm

    cfg = timm.get_pretrained_cfg(arch)
    d = cfg.to_dict() if cfg is not None else {}
    mean, std = d.get("mean", IMAGENET_MEAN), d.get("std", IMAGENET_STD)
    if arch in _TF_127_128:
        mean, std = (127 / 255,) * 3, (128 / 255,) * 3
    return {
        "family": TIMM,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "input_size": list(d.get("input_size", (3, 224, 224))),
        "interpolation": d.get("interpolation", "bicubic"),
        "crop_pct": float(d.get("crop_pct", 0.875)),
        "fixed_input_size": bool(d.get("fixed_input_size", False)),
    }


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
    """A torchvision or timm classifier without its last linear layer: ``(B, 3, H, W)`` -> ``(B, num_features)``.

    ``pretrained_cfg``: the data config E was (pre)trained with (:func:`data_config`)."""

    def __init__(
        self,
        name: str,
        net: nn.Module,
        head_name: str,
        num_features: int,
        pretrained_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.net = net
        self.head_name = head_name
        self.num_features = num_features
        self.pretrained_cfg: dict[str, Any] = pretrained_cfg or data_config(name)
        self.load_report: LoadReport | None = None
        self.weights: str | None = None

    @property
    def family(self) -> str:
        return str(self.pretrained_cfg.get("family", TORCHVISION))

    def check_input_size(self, height: int, width: int) -> None:
        """A :class:`~medcolor.errors.ConfigError` when E only takes its own input size (ViTs) and this is another."""
        if self.pretrained_cfg.get("fixed_input_size"):
            want = tuple(int(v) for v in self.pretrained_cfg["input_size"][1:])
            if (int(height), int(width)) != want:
                raise ConfigError(
                    f"backbone {self.name} takes only {want[0]}x{want[1]} inputs (a fixed input size), got "
                    f"{height}x{width}; train with --size {want[0]} or choose a backbone without a fixed size"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(x.shape[-2], x.shape[-1])
        y = self.net(x)
        if not isinstance(y, torch.Tensor):  # GoogLeNet / Inception outputs in training mode
            y = y[0]
        return y.flatten(1)


def _build_torchvision(name: str) -> nn.Module:
    try:
        builder = torchvision.models.get_model_builder(name)
    except (ValueError, KeyError):
        raise UnknownNameError(_unknown_backbone(name)) from None
    kwargs: dict[str, Any] = {"weights": None}
    if name in {"googlenet", "inception_v3"}:
        kwargs.update(aux_logits=False, init_weights=True)
    return builder(**kwargs)


def _unknown_backbone(name: str) -> str:
    import difflib

    _, sep, arch = name.partition(":")
    names = list_backbones()
    timm_names = list_backbones(TIMM) if _timm_has("resnet18") else []
    key = arch if sep else name
    shown = {n: f"timm:{n}" for n in timm_names} | {n: n for n in names}  # a name in both: torchvision's
    close = difflib.get_close_matches(key, list(shown), n=1)
    hint = f" Did you mean {shown[close[0]]!r}?" if close else ""
    return (
        f"unknown backbone {name!r}.{hint} Valid backbones: the torchvision classifiers ({', '.join(names)}) and "
        f"the {len(timm_names)} timm models as timm:NAME (`medcolor list` shows some; timm.list_models() all)."
    )


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
    net: nn.Module, sd: dict[str, torch.Tensor], head_name: str, source: str, arch: str, family: str = TORCHVISION
) -> LoadReport:
    """Load ``sd`` into ``net`` (a full torchvision or timm classifier); refuse files that do not fit."""
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
            + f". Check that the file holds {arch} weights in {family}'s key layout."
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


def _no_weights(weights: str | os.PathLike | None) -> bool:
    return weights is None or (isinstance(weights, str) and weights.lower() in {"none", "random", ""})


def _timm_head(net: nn.Module) -> str:
    head = (getattr(net, "pretrained_cfg", None) or {}).get("classifier") or "classifier"
    return head[0] if isinstance(head, (list, tuple)) else str(head)


def _timm_imagenet(arch: str, progress: bool) -> nn.Module:
    import timm

    cfg = timm.get_pretrained_cfg(arch)
    where = (cfg.hf_hub_id or cfg.url) if cfg is not None else None
    if not where:
        raise WeightsError(f"timm has no ImageNet weights for {arch}; pass a weights file (--weights FILE)")
    try:
        return timm.create_model(arch, pretrained=True)
    except Exception as exc:
        hub = os.environ.get("HF_HOME", str(user_path("~/.cache/huggingface")))
        raise WeightsError(
            f"cannot get the ImageNet weights of timm:{arch} ({where}): {type(exc).__name__}: {exc}. "
            f"Without internet, download them on another machine and either copy timm's Hugging Face cache to "
            f"{hub} (set HF_HOME to move it) or save the state dict and pass its path as weights "
            f"(--weights /path/to/{arch}.pth or .safetensors)."
        ) from exc


def _build_timm(arch: str, weights: str | os.PathLike | None, progress: bool) -> tuple[nn.Module, LoadReport | None]:
    import timm

    report = None
    if isinstance(weights, str) and weights.lower() == IMAGENET:
        net = _timm_imagenet(arch, progress)
        report = LoadReport(source=f"timm:{arch} ImageNet weights")
    else:
        net = timm.create_model(arch, pretrained=False)
        if not _no_weights(weights):
            path = user_path(weights)  # type: ignore[arg-type]
            report = load_state_dict_checked(net, _read_state_dict(path), _timm_head(net), str(path), arch, TIMM)
    return net, report


def _timm_backbone(name: str, arch: str, weights: str | os.PathLike | None, progress: bool) -> Backbone:
    net, report = _build_timm(arch, weights, progress)
    head_name = _timm_head(net)
    net.reset_classifier(0)  # pooled (pre-logits) features, e.g. tf_efficientnet_lite0: 1280
    num_features = int(getattr(net, "head_hidden_size", None) or net.num_features)
    bb = Backbone(name, net, head_name, num_features, data_config(name))
    bb.load_report = report
    return bb


def create_backbone(name: str, weights: str | os.PathLike | None = None, *, progress: bool = True) -> Backbone:
    """Build backbone E by name (torchvision or timm: :func:`resolve_backbone`), with ``weights`` ``None``,
    ``"imagenet"`` or a file path."""
    if not isinstance(name, str):
        raise ConfigError(f"backbone name must be a string, got {name!r}")
    family, arch = resolve_backbone(name)
    canonical = canonical_backbone_name(name)
    if family == TIMM:
        bb = _timm_backbone(canonical, arch, weights, progress)
        bb.weights = None if _no_weights(weights) else (IMAGENET if str(weights).lower() == IMAGENET else str(weights))
        if bb.load_report is not None:
            log.debug("%s", bb.load_report)
        return bb
    net = _build_torchvision(arch)
    head_name, head = _last_linear(net)
    report = None
    if _no_weights(weights):
        source = None
    elif isinstance(weights, str) and weights.lower() == IMAGENET:
        sd, source = _imagenet_state_dict(arch, progress)
        report = load_state_dict_checked(net, sd, head_name, source, arch)
        source = IMAGENET
    else:
        path = user_path(weights)  # type: ignore[arg-type]
        sd = _read_state_dict(path)
        report = load_state_dict_checked(net, sd, head_name, str(path), arch)
        source = str(path)
        log.debug("%s", report)  # the run's log shows it at INFO (medcolor.training.pipeline.build_model)
    num_features = head.in_features
    _set_submodule(net, head_name, nn.Identity())
    bb = Backbone(canonical, net, head_name, num_features)
    bb.load_report = report
    bb.weights = source
    return bb


def imagenet_weights_available(name: str) -> bool:
    """Whether torchvision's ImageNet weights for ``name`` are in the local cache (no download needed)."""
    try:
        family, name = resolve_backbone(name)
        if family != TORCHVISION:
            return False
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except Exception:
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


__all__ = [
    "FAMILIES",
    "IMAGENET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TIMM",
    "TORCHVISION",
    "Backbone",
    "LoadReport",
    "canonical_backbone_name",
    "create_backbone",
    "data_config",
    "imagenet_weights_available",
    "is_backbone",
    "list_backbones",
    "load_state_dict_checked",
    "resolve_backbone",
]
