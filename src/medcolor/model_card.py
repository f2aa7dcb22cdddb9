"""The ``MODEL_CARD.md`` written beside an exported network: architecture, weights' origin, training data and
split, labels, metrics on every test set of the run, the operating threshold, intended use and limits.

It reads the run directory's files only (``config.yaml``, ``data.json``, ``summary.json``, ``operating_points.json``
and ``test_sets/*/metrics.json``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medcolor.utils import write_text_atomic

MODEL_CARD_FILE = "MODEL_CARD.md"
#: the exported graph's input and output names (ONNX, TorchScript), named in the card
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _f3(v: Any) -> str:
    return "n/a" if not isinstance(v, int | float) or not math.isfinite(v) else f"{v:.3f}"


def run_metrics(run_dir: Path | None) -> dict[str, dict[str, Any]]:
    """Every test set's ``metrics.json`` of a run: ``test/`` (or ``val/``) from training and each
    ``evaluate-*/`` that ``medcolor evaluate`` wrote; keyed by folder name."""
    if run_dir is None:
        return {}
    found = {}
    for p in sorted(run_dir.glob("*/metrics.json")):
        m = _read_json(p)
        if isinstance(m, dict) and "auc" in m:
            found[p.parent.name] = m
    return found


def _metrics_lines(metrics: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    if not metrics:
        return ["No test metrics were found in the run directory (`*/metrics.json`)."]
    head = ["set", "split", "images", "mean AUC (95% CI)", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in metrics.items():
        ci = (m.get("ci95") or {}).get("mean_auc")
        ci_text = f" ({_f3(ci[0])}-{_f3(ci[1])})" if isinstance(ci, list) and len(ci) == 2 else ""
        aucs = m.get("auc") or {}
        row = [name, str(m.get("split", "?")), str(m.get("n_samples", "?")), _f3(m.get("mean_auc")) + ci_text]
        lines.append("| " + " | ".join(row + [_f3(aucs.get(k)) for k in labels]) + " |")
    return lines


def _threshold_lines(run_dir: Path | None) -> list[str]:
    ops = _read_json(run_dir / "operating_points.json") if run_dir is not None else None
    thresholds = ops.get("thresholds") if isinstance(ops, dict) else None
    if not isinstance(thresholds, dict) or not thresholds:
        return [
            "No operating threshold was chosen for this run (no `operating_points.json`): the outputs are "
            "probabilities; choose a threshold on your own validation data before any yes/no use."
        ]
    lines = [f"Chosen on the validation split by the rule `{ops.get('rule', '?')}` (positive when probability >= it):"]
    for label, t in thresholds.items():
        value = t.get("threshold") if isinstance(t, dict) else t
        lines.append(f"- {label}: {_f3(value)}")
    return lines


def model_card(info: dict[str, Any], run_dir: Path | None, model_file: Path) -> str:
    """The text of ``MODEL_CARD.md`` for an exported network (reads the run directory's files)."""
    import yaml

    cfg = {}
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    data_info = (_read_json(run_dir / "data.json") if run_dir is not None else None) or {}
    summary = (_read_json(run_dir / "summary.json") if run_dir is not None else None) or {}
    labels = list(info["label_names"])
    lines = [
        f"# Model card: {summary.get('name') or (run_dir.name if run_dir else model_file.stem)}",
        "",
        f"File: `{model_file.name}` ({info['export_format']}); metadata in `{model_file.name}.json` and inside "
        "the file. Made by medcolor (`medcolor export`).",
        "",
        "## Intended use and limits",
        "",
        "- **Research only. Not a medical device**: not validated for diagnosis, triage or any clinical "
        "decision, and must not be used for them.",
        "- Trained on the data below only; performance on other hospitals, scanners, populations, views or "
        "image processing is unknown and usually lower. Small test sets give wide confidence intervals.",
        "- The outputs are per-label probabilities of the labels below, not calibrated risks unless stated.",
        "",
        *_architecture_lines(info, labels),
        "",
        *_origin_lines(info["model"], summary.get("stages") or []),
        "",
        *_data_lines(info["model"], cfg.get("data") or {}, data_info),
        "",
        "## Labels",
        "",
        *[f"{i}. {name}" for i, name in enumerate(labels)],
        "",
        "## Metrics",
        "",
        "AUC per label on each held-out set of the run (95 % bootstrap CI of the mean):",
        "",
        *_metrics_lines(run_metrics(run_dir), labels),
        "",
        "## Operating threshold",
        "",
        *_threshold_lines(run_dir),
        "",
    ]
    return "\n".join(lines)


def _architecture_lines(info: dict[str, Any], labels: list[str]) -> list[str]:
    meta, norm, size = info["model"], info["normalization"], info["size"]
    arch = meta.get("architecture") or {}
    kwargs = arch.get("colorizer_kwargs")
    return [
        "## Architecture",
        "",
        f"`C(E(T(x)))`: T (colorization module) `{arch.get('colorizer', '?')}`"
        f"{' ' + json.dumps(kwargs) if kwargs else ''}, "
        f"E (backbone) `{arch.get('backbone', meta.get('backbone', '?'))}`, C a linear head with "
        f"{arch.get('num_classes', len(labels))} outputs (dropout {arch.get('dropout', 0.0)}).",
        "",
        f"- Input `{INPUT_NAME}`: float32 `(batch, 1, {size}, {size})`, gray values in [0, 1] after decoding, "
        f"a centre square crop and resizing to {size} x {size} px (the batch size is free).",
        f"- Normalisation: `(image - {norm['mean']:.6g}) / {norm['std']:.6g}`, "
        + (
            "inside the exported graph (feed [0, 1] images)."
            if info["export_format"] != "safetensors"
            else "to apply yourself before the network (safetensors holds weights only)."
        ),
        f"- Output: {info['output']['meaning']}, `(batch, {len(labels)})`, in the order of the labels below.",
    ]


def _origin_lines(meta: dict[str, Any], stages: list[Any]) -> list[str]:
    weights = meta.get("backbone_weights")
    weights_text = {
        "imagenet": "ImageNet-pretrained weights of torchvision",
        "none": "random initialisation (no pretrained weights)",
        None: "unknown",
    }.get(weights, f"the state-dict file `{weights}`")
    lines = [
        "## Weights' origin",
        "",
        f"E started from {weights_text}. Strategy of the last stage: `{meta.get('strategy', '?')}`.",
    ]
    for s in stages:
        if isinstance(s, dict):
            lines.append(
                f"- stage {int(s.get('index', 0)) + 1} `{s.get('strategy', '?')}`: max lr {s.get('lr')}, "
                f"{s.get('total_steps', '?')} iterations, best validation mean AUC {_f3(s.get('best_val_mean_auc'))} "
                f"at step {s.get('best_step', '?')}"
            )
    return lines


def _data_lines(meta: dict[str, Any], data_cfg: dict[str, Any], data_info: dict[str, Any]) -> list[str]:
    lines = [
        "## Training data and split",
        "",
        f"Dataset `{meta.get('dataset', data_cfg.get('dataset', '?'))}`"
        + (f" from `{data_cfg.get('root')}`" if data_cfg.get("root") else "")
        + (f" (labels `{data_cfg.get('csv')}`)" if data_cfg.get("csv") else "")
        + ".",
    ]
    if data_info:
        lines.append(
            f"Images: train {data_info.get('train', '?')} / validation {data_info.get('val', '?')} / test "
            f"{data_info.get('test', '?')}."
        )
    if data_cfg:
        lines.append(
            f"Split by patient: validation {data_cfg.get('val')}, test {data_cfg.get('test')} (split seed "
            f"{data_cfg.get('split_seed', 0)}); training subset {data_cfg.get('subset') or 'all'}"
            f" (draw {data_cfg.get('subset_draw', 0)})."
        )
    return lines


def write_model_card(path: Path, info: dict[str, Any], run_dir: Path | None, model_file: Path) -> Path:
    write_text_atomic(path, model_card(info, run_dir, model_file))
    return path


# ------------------------------------------------------------------------------------------------ prediction
