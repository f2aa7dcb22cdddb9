"""What the report reads from the cells' run directories: the directory of a cell, its ``config.yaml``
(the fields a study does not vary), the input images it was evaluated on, and JSON records."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from medcolor.study.keys import get_dotted, strategies_label
from medcolor.study.stats import BASELINES

#: run-config fields read from the cells' run directories when the study does not vary them
CONSTANT_FIELDS = ("data.dataset", "model.backbone", "model.colorizer", "stages")


def run_dir_of(study_dir: Path, value: Any) -> Path | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return None
    p = Path(str(value))
    return p if p.is_absolute() else study_dir / p


def run_config(run_dir: Path | None) -> dict[str, Any] | None:
    """The ``config.yaml`` of a run directory as a dict, or None when it is missing or unreadable."""
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return None
    import yaml

    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or None
    except (OSError, yaml.YAMLError):
        return None


def config_value(cfg: dict[str, Any], key: str) -> Any:
    """The value of a dotted key (or ``stages``, as ``"color-module,all"``) in a run's configuration."""
    if key == "stages":
        return strategies_label(cfg.get("stages") or [])
    value = get_dotted(cfg, key)
    if key == "model.colorizer" and value is None:  # training's default: replicate for baselines
        first = (cfg.get("stages") or [{}])[0].get("strategy")
        return "replicate" if first in BASELINES else "pixelshuffle"
    return value


def add_constant_fields(table: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    """Add the run-config values the tables are organised by (strategy, colorizer, backbone, dataset)
    as columns when the study does not vary them, read from the cells' ``config.yaml``."""
    missing = [f for f in CONSTANT_FIELDS if f not in table.columns]
    if not missing:
        return table
    per_cell = table.drop_duplicates("cell")
    values: dict[str, dict[str, Any]] = {f: {} for f in missing}
    for cell, rd in zip(per_cell["cell"], per_cell["run_dir"], strict=True):
        cfg = run_config(run_dir_of(study_dir, rd))
        if cfg is None:
            continue
        for f in missing:
            v = config_value(cfg, f)
            if v is not None:
                values[f][cell] = v
    out = table.copy()
    for f in missing:
        if values[f] and len(values[f]) == len(per_cell):
            out[f] = out["cell"].map(values[f]).astype(str)
    return out


#: where a stage's experiment logs are (:mod:`medcolor.training.loggers`, read here without importing it)
LOG_DIR = "logs"


def _version(p: Path) -> tuple[int, str]:
    """``version_10`` after ``version_9``."""
    tail = p.name.rsplit("_", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, p.name)


def _stage_order(p: Path) -> tuple[int, str]:
    """``10-all`` after ``2-all``."""
    head = p.name.split("-", 1)[0]
    return (int(head) if head.isdigit() else -1, p.name)


def experiment_logs(run_dir: Path) -> list[dict[str, Any]]:
    """The experiment logs a run wrote, in stage order: per stage its CSV logs (``logs/csv/version_N/metrics.csv``,
    always written; a resumed stage has several versions) and TensorBoard folders (``logs/tensorboard/version_N``,
    ``trainer.logger: tensorboard``), then the run's MLflow file store (``mlruns``, ``trainer.logger: mlflow``).
    Each: {"stage", "kind" ("CSV", "TensorBoard", "MLflow"), "version", "path"}; only what exists."""
    stages = sorted((p for p in run_dir.glob("[0-9]*-*") if p.is_dir()), key=_stage_order)
    out: list[dict[str, Any]] = []
    for stage in stages:
        for v in sorted((stage / LOG_DIR / "csv").glob("version_*"), key=_version):
            if (v / "metrics.csv").is_file():
                out.append({"stage": stage.name, "kind": "CSV", "version": v.name, "path": v / "metrics.csv"})
        for v in sorted((stage / LOG_DIR / "tensorboard").glob("version_*"), key=_version):
            if v.is_dir():
                out.append({"stage": stage.name, "kind": "TensorBoard", "version": v.name, "path": v})
    if (run_dir / "mlruns").is_dir():
        out.append({"stage": "", "kind": "MLflow", "version": "", "path": run_dir / "mlruns"})
    return out


def read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


__all__ = [
    "CONSTANT_FIELDS",
    "add_constant_fields",
    "config_value",
    "experiment_logs",
    "read_json",
    "run_config",
    "run_dir_of",
]
