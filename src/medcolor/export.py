"""Export a trained network to take away: ONNX, TorchScript or safetensors, with a ``MODEL_CARD.md``.

:func:`export_model` writes the whole network ``C(E(T(x)))`` of a run with its preprocessing and output
made explicit, so that a user of the file needs no medcolor:

* input ``image``: float32 ``(batch, 1, size, size)``, gray values in [0, 1] — the image after medcolor's
  decode -> reduce -> centre square crop -> resize (``size``: the run's input size, fixed; ``batch``: any);
* the normalisation ``(image - mean) / std`` with the run's mean/std is part of the exported graph
  (ONNX, TorchScript) or declared in the metadata (safetensors, which holds weights only);
* output ``probabilities``: float32 ``(batch, labels)``, the sigmoid of the logits (one per label).

The metadata (labels, size, normalisation, the input contract, the run it comes from) is embedded in each
file: ONNX ``metadata_props`` key ``medcolor``, TorchScript extra file ``medcolor.json``, the safetensors
header (as :mod:`medcolor.io` writes it), and also written as ``<file>.json`` beside it.

:func:`predict_onnx` is the ``medcolor predict model.onnx IMAGES`` path: onnxruntime on the CPU, with the same
image decoding as the PyTorch path.  ONNX export needs the optional ``export`` extra
(``pip install medcolor[export]``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medcolor.errors import ConfigError, WeightsError
from medcolor.io import check_usage
from medcolor.model_card import INPUT_NAME, MODEL_CARD_FILE, OUTPUT_NAME, write_model_card
from medcolor.utils import atomic_path, to_jsonable, write_json

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")
#: the file each format writes in the output folder
EXPORT_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "safetensors": "model.safetensors"}
EXPORT_FORMAT = "medcolor-export"
METADATA_KEY = "medcolor"
TORCHSCRIPT_EXTRA = "medcolor.json"
_EXTRA_HINT = "ONNX export and prediction need the optional extra: pip install 'medcolor[export]'"


class ExportedNet(nn.Module):
    """The network as exported: normalisation in front, sigmoid behind.  ``image``: ``(B, 1, size, size)`` in
    [0, 1]; returns probabilities ``(B, labels)``."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net((image - self.mean) / self.std).float())


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote."""

    format: str
    model_path: Path
    metadata_path: Path
    card_path: Path
    metadata: dict[str, Any]


def _source(run: str | os.PathLike) -> tuple[Path, Path | None]:
    """The model file of ``run`` (a run directory or a model file) and its run directory (None: unknown)."""
    from medcolor.inference import resolve_model_path

    path = resolve_model_path(run)
    run_dir = path.parent if (path.parent / "config.yaml").is_file() else None
    return path, run_dir


def export_metadata(meta: dict[str, Any], fmt: str, source: Path) -> dict[str, Any]:
    """The metadata of an exported file: the model file's, plus the input/output contract.  ``meta`` is that
    of a network whose ``usage()`` was checked (labels, normalisation and size recorded, never guessed)."""
    mean, std = float(meta["normalization"]["mean"]), float(meta["normalization"]["std"])
    size = int(meta["size"])
    labels = list(meta["label_names"])
    baked = fmt != "safetensors"
    return {
        "format": EXPORT_FORMAT,
        "export_format": fmt,
        "source": str(source),
        "label_names": labels,
        "size": size,
        "normalization": {"mean": mean, "std": std},
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 1, size, size],
            "dtype": "float32",
            "values": "gray in [0, 1] after decode, centre square crop and resize to size x size",
            "normalization": f"(image - {mean:.6g}) / {std:.6g}, "
            + ("inside the exported graph" if baked else "to be applied by the user before the network"),
        },
        "output": {
            "name": OUTPUT_NAME if baked else "logits",
            "shape": ["batch", len(labels)],
            "meaning": "sigmoid probabilities, one per label" if baked else "logits; apply a sigmoid per label",
        },
        "model": {k: v for k, v in meta.items() if k not in ("format", "format_version")},
    }


def export_model(
    run: str | os.PathLike, fmt: str, out_dir: str | os.PathLike, *, opset: int | None = None
) -> ExportResult:
    """Export the network of ``run`` (a run directory or a ``model.safetensors``) as ``fmt`` (onnx, torchscript,
    safetensors) into ``out_dir``, with ``MODEL_CARD.md`` beside it.  The batch dimension is dynamic; the input
    size is the run's.  ``opset``: the ONNX opset (default: the exporter's)."""
    from medcolor.inference import check_finite_weights
    from medcolor.io import load_model

    fmt = str(fmt).lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(EXPORT_FORMATS)}")
    path, run_dir = _source(run)
    model, meta = load_model(path)
    check_finite_weights(model, path)
    model.usage(str(path))  # labels, normalisation and size are recorded (a WeightsError naming what is not)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = export_metadata(meta, fmt, path)
    target = out / EXPORT_FILES[fmt]
    if fmt == "safetensors":
        from medcolor.io import save_model

        extra = {k: v for k, v in meta.items() if k not in ("format", "format_version", "architecture")}
        save_model(model, target, **extra, export={k: info[k] for k in ("input", "output")})
    else:
        wrapped = ExportedNet(model, info["normalization"]["mean"], info["normalization"]["std"]).eval()
        example = torch.rand(2, 1, info["size"], info["size"], generator=torch.Generator().manual_seed(0))
        if fmt == "onnx":
            _export_onnx(wrapped, example, target, info, opset)
        else:
            _export_torchscript(wrapped, example, target, info)
    meta_path = target.with_name(target.name + ".json")
    if fmt != "safetensors":  # save_model writes its own sidecar (model.json)
        write_json(meta_path, info)
    else:
        from medcolor.io import sidecar_path

        meta_path = sidecar_path(target)
    card = write_model_card(out / MODEL_CARD_FILE, info, run_dir, target)
    log.info(f"exported {fmt}: {target} (+ {meta_path.name}, {card.name})")
    return ExportResult(fmt, target, meta_path, card, info)


def _export_onnx(net: nn.Module, example: torch.Tensor, target: Path, info: dict[str, Any], opset: int | None) -> None:
    import warnings

    try:
        import onnx
        import onnxscript  # noqa: F401 - torch's ONNX exporter needs it
    except ImportError as exc:
        raise ConfigError(f"{_EXTRA_HINT} ({exc})") from None
    kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
    with atomic_path(target) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes about its own internals
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1)}},
            external_data=False,
            verbose=False,
            **kwargs,
        )
        proto = onnx.load(str(tmp))
        proto.doc_string = "medcolor network C(E(T(x))) with normalisation and sigmoid; see the medcolor metadata"
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(to_jsonable(info))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))


def _export_torchscript(net: nn.Module, example: torch.Tensor, target: Path, info: dict[str, Any]) -> None:
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notes
        traced = torch.jit.trace(net, (example,), check_trace=False)  # the tests compare outputs per batch size
        with atomic_path(target) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(to_jsonable(info))})


# ------------------------------------------------------------------------------------------------ model card
def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The medcolor metadata embedded in an exported ONNX file."""
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError(f"{_EXTRA_HINT} ({exc})") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise WeightsError(f"cannot read {path} as an ONNX model ({exc})") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise WeightsError(f"{path} is an ONNX model without medcolor metadata; it was not written by medcolor export")
    try:
        meta = json.loads(props[METADATA_KEY])
    except ValueError as exc:
        raise WeightsError(f"{path}: its medcolor metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: its medcolor metadata is not a mapping; it was not written by medcolor export")
    check_usage(Path(path), meta)  # the size cap and one label per output, as for a .safetensors header
    return meta


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of ``path``."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(f"{_EXTRA_HINT} ({exc})") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def predict_onnx(
    model_path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    *,
    batch_size: int = 16,
    size: int | None = None,
    num_workers: int | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """``medcolor predict model.onnx IMAGES``: probabilities from an exported ONNX network with onnxruntime on
    the CPU; images decoded as in :func:`medcolor.inference.predict_files`.  Same DataFrame (``path`` + one
    column per label)."""
    from torch.utils.data import DataLoader

    from medcolor.inference import ImageFiles, collect_images

    path = Path(model_path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; give an ONNX file written by `medcolor export`")
    meta = read_onnx_metadata(path)
    want = int(meta["size"])
    if size is not None and int(size) != want:
        raise ConfigError(f"{path} takes {want} px images (fixed when it was exported); --size {size} cannot change it")
    session = onnx_session(path, threads)
    files = collect_images(inputs)
    ds = ImageFiles(files, want, 0.0, 1.0)  # [0, 1] gray: the normalisation is inside the graph
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers or 0)
    out = [session.run([OUTPUT_NAME], {INPUT_NAME: b["image"].numpy().astype(np.float32)})[0] for b in loader]
    probs = np.concatenate(out) if out else np.zeros((0, len(meta["label_names"])), dtype=np.float32)
    df = pd.DataFrame(probs, columns=list(meta["label_names"]) or [f"label{j}" for j in range(probs.shape[1])])
    df.insert(0, "path", [str(f) for f in files])
    return df


__all__ = [
    "EXPORT_FILES",
    "EXPORT_FORMATS",
    "ExportResult",
    "ExportedNet",
    "export_metadata",
    "export_model",
    "onnx_session",
    "predict_onnx",
    "read_onnx_metadata",
]
