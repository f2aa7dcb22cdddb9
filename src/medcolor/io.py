"""Saving and loading T (the reusable colour modules) and whole networks, without pickle.

Weights are written as safetensors; the metadata (module type and options, input normalisation, the
backbone, strategy and dataset it was trained with, label names...) is embedded in the safetensors
header under the key ``medcolor`` and also written as a JSON sidecar next to it (``FILE.json``) for
people to read.  Loading reads the embedded copy, so the ``.safetensors`` file alone is enough.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from medcolor.colorizers import Colorizer, create_colorizer
from medcolor.errors import ConfigError, WeightsError
from medcolor.normalization import MAX_IMAGE_SIZE
from medcolor.utils import atomic_path, to_jsonable, write_json

FORMAT_VERSION = 1
COLORIZER_FORMAT = "medcolor-colorizer"
MODEL_FORMAT = "medcolor-model"


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".json") if p.suffix != ".safetensors" else p.with_suffix(".json")


def _save(module: nn.Module, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"output file {path} should end in .safetensors")
    meta = to_jsonable(meta)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"medcolor": json.dumps(meta)})
    write_json(sidecar_path(path), meta)
    return path


def _header(path: Path, f: Any) -> dict[str, Any]:
    """The medcolor metadata embedded in an open safetensors file: a JSON object with a ``format``."""
    header = f.metadata() or {}
    if "medcolor" not in header:
        raise WeightsError(f"{path} is a safetensors file without medcolor metadata; it was not written by medcolor")
    try:
        meta = json.loads(header["medcolor"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: its medcolor metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: its medcolor metadata must be a JSON object, not {type(meta).__name__}")
    check_usage(path, meta)
    return meta


def check_usage(path: Path, meta: dict[str, Any]) -> None:
    """What using the network takes from the metadata, checked whenever a file's header is read (by any
    command): the input size within :data:`~medcolor.normalization.MAX_IMAGE_SIZE` (``size: 100000`` would
    allocate 40 GB per batch), one label name per output of C, the normalisation a pair of numbers."""
    _check_size(path, meta.get("size"))
    labels, norm = meta.get("label_names"), meta.get("normalization")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(v, str) for v in labels)):
        raise WeightsError(f"{path}: its metadata's label_names is not a list of names")
    if norm is not None and not (
        isinstance(norm, dict) and all(isinstance(norm.get(k), int | float) for k in ("mean", "std"))
    ):
        raise WeightsError(f"{path}: its metadata's normalization is not {{'mean': number, 'std': number}}")
    arch = meta.get("architecture")
    outputs = arch.get("num_classes") if isinstance(arch, dict) else None
    if labels is not None and isinstance(outputs, int) and len(labels) != outputs:
        raise WeightsError(
            f"{path}: its metadata names {len(labels)} label(s) ({', '.join(labels[:5])}"
            f"{', ...' if len(labels) > 5 else ''}) but the network has {outputs} outputs; the file is damaged "
            "(re-export it from its run directory)"
        )


def _check_size(path: Path, size: Any) -> None:
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise WeightsError(f"{path}: its metadata's size is not a positive number of pixels ({size!r})")
    if size > MAX_IMAGE_SIZE:
        raise WeightsError(
            f"{path}: its metadata's size {size} px is over medcolor's cap of {MAX_IMAGE_SIZE} px; the file is "
            "damaged or was not written by medcolor"
        )


def _open(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"file {path} {'is not a file' if path.exists() else 'does not exist'}")
    if path.suffix.lower() == ".onnx":  # an exported network: only the ONNX predict path reads it
        raise ConfigError(
            f"{path} is an ONNX file: predict with it by `medcolor predict FILE.onnx IMAGES` or, from Python, "
            "medcolor.export.predict_onnx(path, images); the other commands read medcolor .safetensors networks"
        )
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:
        raise WeightsError(
            f"cannot read {path} as safetensors ({exc}); medcolor colour modules and models are "
            "written by `medcolor export-colorizer` or by training (model.safetensors in a run directory)"
        ) from exc


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a medcolor safetensors file (its header only: no tensor is read)."""
    with _open(path) as f:
        return _header(Path(path), f)


def colorizer_name(path: str | os.PathLike, *, whole_model: bool = False) -> str:
    """The name of the T a medcolor file holds, from its metadata alone (``whole_model``: the file must
    be a whole network, as ``init_from`` needs)."""
    meta = read_metadata(path)
    fmt = meta.get("format")
    if fmt == MODEL_FORMAT:
        return str(_architecture(path, meta)["colorizer"])
    if whole_model:
        raise WeightsError(f"{path} holds a {fmt!r}, expected a {MODEL_FORMAT!r}")
    if fmt != COLORIZER_FORMAT:
        raise WeightsError(f"{path} holds a {fmt!r}, not a medcolor colorizer")
    if not isinstance(meta.get("colorizer"), str):
        raise WeightsError(f"{path}: its metadata names no colorizer (key 'colorizer')")
    return meta["colorizer"]


def _read(path: str | os.PathLike, expected_format: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    with _open(path) as f:
        meta = _header(path, f)
        try:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        except Exception as exc:
            raise WeightsError(f"cannot read the tensors of {path} ({exc}); the file is damaged") from exc
    if expected_format and meta.get("format") != expected_format:
        raise WeightsError(f"{path} holds a {meta.get('format')!r}, expected a {expected_format!r}")
    return meta, tensors


def _architecture(path: str | os.PathLike, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``architecture`` of a model file's metadata, with the keys needed to rebuild the network."""
    arch = meta.get("architecture")
    if not isinstance(arch, dict):
        raise WeightsError(f"{path}: its medcolor metadata has no 'architecture' object; the file is damaged")
    missing = [k for k in ("colorizer", "backbone", "num_classes") if k not in arch]
    if missing:
        raise WeightsError(f"{path}: its metadata's architecture lacks {', '.join(missing)}; the file is damaged")
    if not isinstance(arch.get("colorizer_kwargs") or {}, dict):
        raise WeightsError(f"{path}: its metadata's architecture.colorizer_kwargs is not an object")
    return arch


def _load_into(module: nn.Module, tensors: dict[str, Any], path: str | os.PathLike) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    bad = [k for k in own.keys() & tensors.keys() if tuple(own[k].shape) != tuple(tensors[k].shape)]
    if missing or unexpected or bad:
        raise WeightsError(
            f"{path} does not fit the architecture its metadata names: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {bad[:5]}"
        )
    module.load_state_dict(tensors, strict=True)


def save_colorizer(colorizer: Colorizer, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write T to ``path`` (.safetensors) with metadata such as ``normalization={'mean':..,'std':..}``,
    ``backbone``, ``strategy``, ``dataset``, ``size``."""
    meta = {
        "format": COLORIZER_FORMAT,
        "format_version": FORMAT_VERSION,
        "colorizer": colorizer.name,
        "colorizer_kwargs": colorizer.init_kwargs,
        **metadata,
    }
    return _save(colorizer, path, meta)


def load_colorizer(path: str | os.PathLike) -> tuple[Colorizer, dict[str, Any]]:
    """Read a T written by :func:`save_colorizer` (or a whole model file: its T is extracted)."""
    meta, tensors = _read(path, None)
    if meta.get("format") == MODEL_FORMAT:
        arch = _architecture(path, meta)
        tensors = {k[len("colorizer.") :]: v for k, v in tensors.items() if k.startswith("colorizer.")}
        meta = {**meta, "colorizer": arch["colorizer"], "colorizer_kwargs": arch.get("colorizer_kwargs", {})}
    elif meta.get("format") != COLORIZER_FORMAT:
        raise WeightsError(f"{path} holds a {meta.get('format')!r}, not a medcolor colorizer")
    if not isinstance(meta.get("colorizer"), str) or not isinstance(meta.get("colorizer_kwargs") or {}, dict):
        raise WeightsError(f"{path}: its metadata names no colorizer (keys 'colorizer', 'colorizer_kwargs')")
    try:
        t = create_colorizer(meta["colorizer"], **(meta.get("colorizer_kwargs") or {}))
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: its metadata's colorizer cannot be built ({exc})") from exc
    _load_into(t, tensors, path)
    return t, meta


def save_model(model: nn.Module, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write a whole :class:`~medcolor.model.ColorTransferNet` (T, E, C) with its architecture and
    metadata (``label_names``, ``normalization``, ``size``...)."""
    usage = {
        "label_names": getattr(model, "labels", None),
        "normalization": getattr(model, "normalization", None),
        "size": getattr(model, "input_size", None),
    }
    meta = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture(),
        "backbone_data_config": model.backbone.pretrained_cfg,
        **{k: v for k, v in usage.items() if v is not None},
        **metadata,
    }
    return _save(model, path, meta)


def load_model(path: str | os.PathLike):
    """Read a network written by :func:`save_model`; returns ``(ColorTransferNet, metadata)``.

    The network carries what using it needs: ``model.labels``, ``model.normalization`` (gray mean/std),
    ``model.input_size`` and ``model.pretrained_cfg`` (E's data config); ``model.usage()`` raises a
    :class:`~medcolor.errors.WeightsError` naming whatever a file lacks (it is never guessed), and
    ``model.predict(images)`` gives probabilities per label."""
    from medcolor.model import ColorTransferNet

    meta, tensors = _read(path, MODEL_FORMAT)
    arch = _architecture(path, meta)
    try:
        model = ColorTransferNet.from_architecture(arch)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: its metadata's architecture cannot be built ({exc})") from exc
    _load_into(model, tensors, path)
    model.mark_colorizer_transferred()  # T comes from a file
    _set_usage(model, meta, path)
    return model, meta


def load_network(path: str | os.PathLike):
    """The network of a model file or a run directory (its final ``model.safetensors``), carrying its labels,
    normalisation, input size and E's data config (:func:`load_model` without the metadata dict)."""
    p = Path(path)
    if p.is_dir():
        if not (p / "model.safetensors").is_file():
            raise ConfigError(f"{p} is a directory without model.safetensors; is it a finished medcolor run?")
        p = p / "model.safetensors"
    return load_model(p)[0]


def _set_usage(model: Any, meta: dict[str, Any], path: str | os.PathLike) -> None:
    """The usage metadata (checked by :func:`check_usage` when the header was read) onto the network."""
    labels, norm, size = meta.get("label_names"), meta.get("normalization"), meta.get("size")
    if labels is not None and len(labels) != model.head.num_classes:  # the architecture said otherwise
        raise WeightsError(
            f"{path}: its metadata names {len(labels)} labels but C has {model.head.num_classes} outputs"
        )
    model.set_usage(labels, norm, size)
    if isinstance(meta.get("backbone_data_config"), dict):  # E's data config as it was saved
        model.backbone.pretrained_cfg = dict(meta["backbone_data_config"])


__all__ = [
    "check_usage",
    "colorizer_name",
    "load_colorizer",
    "load_model",
    "load_network",
    "read_metadata",
    "save_colorizer",
    "save_model",
    "sidecar_path",
]
