"""The run directory: its layout, preparing or resuming it, and reading results back.

::

    RUN/config.yaml                 the resolved configuration (a re-run must match it, or --resume/--overwrite)
    RUN/data.json                   split sizes, labels, normalisation (+ skipped_rows.csv)
    RUN/1-color-module/             per stage: lr_find.{json,png}, checkpoints/{last,best}.ckpt,
                                    history.json, model.safetensors (best), result.json
    RUN/model.safetensors           the final network (+ colorizer.safetensors: T alone)
    RUN/test/metrics.json           per-label / mean AUC with bootstrap 95 % CIs, predictions.csv
    RUN/summary.json                everything above in one file

The file names are part of the interface (studies and reports read them): change them only with care.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcolor.config import RunConfig, diff_configs
from medcolor.data.bundle import DataBundle
from medcolor.errors import ConfigError
from medcolor.utils import write_json, write_text_atomic

CONFIG_FILE = "config.yaml"
DATA_FILE = "data.json"
SKIPPED_ROWS_FILE = "skipped_rows.csv"
STAGE_RESULT_FILE = "result.json"
MODEL_FILE = "model.safetensors"
COLORIZER_FILE = "colorizer.safetensors"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"


@dataclass
class StageResult:
    index: int
    strategy: str
    directory: Path
    lr: float
    best_val_mean_auc: float | None
    best_val_auc: dict[str, float | None]
    best_step: int | None
    total_steps: int
    val_every: int
    time_s: float
    trainable_parameters: int

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["directory"] = str(self.directory)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageResult:
        return cls(**{**d, "directory": Path(d["directory"])})


@dataclass
class RunResult:
    directory: Path
    stages: list[StageResult]
    test: dict[str, Any] | None
    model_path: Path
    colorizer_path: Path | None
    info: dict[str, Any] = field(default_factory=dict)


def stage_dir(run_dir: Path, index: int, strategy: str) -> Path:
    """``RUN/<index + 1>-<strategy>``, e.g. ``RUN/1-color-module``."""
    return Path(run_dir) / f"{index + 1}-{strategy}"


def prepare_run_dir(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False) -> tuple[Path, RunConfig]:
    """Create the run directory or check it holds this same run.  Returns the directory and the config
    to use (with ``resume``: the stored one)."""
    out = Path(cfg.output)
    stored = out / CONFIG_FILE
    if out.exists() and overwrite:
        if stored.is_file() or not any(out.iterdir()):
            shutil.rmtree(out)
        else:
            raise ConfigError(f"{out} exists and is not a medcolor run directory; refusing to delete it")
    if stored.is_file():
        old = RunConfig.from_yaml(stored)
        if resume:
            old.output = cfg.output
            return out, old
        diffs = diff_configs(old.to_dict(), cfg.to_dict())
        diffs = [d for d in diffs if not d.startswith(("trainer.progress", "output"))]
        if diffs:
            raise ConfigError(
                f"{out} holds another run (its config differs: {'; '.join(diffs[:6])}). "
                "Use --resume to continue that run, --overwrite to replace it, or another --output."
            )
    elif out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")) and not resume:
        raise ConfigError(
            f"{out} exists and is not empty but holds no {CONFIG_FILE}; choose another --output or --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stored, cfg.to_yaml())
    return out, cfg


def model_metadata(cfg: RunConfig, bundle: DataBundle, strategy: str) -> dict[str, Any]:
    """What a model file of this run records besides its weights (labels, normalisation, size...)."""
    return {
        "label_names": bundle.label_names,
        "normalization": bundle.normalization,
        "size": bundle.size,
        "dataset": bundle.dataset_name,
        "backbone": cfg.model.backbone,
        "backbone_weights": cfg.model.weights,
        "strategy": strategy,
        "run": str(Path(cfg.output).resolve()),
    }


def read_stage_result(directory: Path) -> StageResult | None:
    """The result of a finished stage (None while the stage is not finished)."""
    path = Path(directory) / STAGE_RESULT_FILE
    if not path.is_file():
        return None
    return StageResult.from_dict(json.loads(path.read_text()))


def write_stage_result(result: StageResult) -> Path:
    return write_json(result.directory / STAGE_RESULT_FILE, result.to_dict())


def write_summary(run_dir: Path, result: RunResult, *, name: str | None, parameters: dict[str, Any]) -> Path:
    summary = {
        "name": name,
        "data": result.info,
        "stages": [r.to_dict() for r in result.stages],
        "test": result.test,
        "model": str(result.model_path),
        "colorizer": str(result.colorizer_path) if result.colorizer_path else None,
        "parameters": parameters,
    }
    return write_json(Path(run_dir) / SUMMARY_FILE, summary)


def read_run(run_dir: str | Path) -> RunResult:
    """The result of a finished run, read back from its ``summary.json``."""
    out = Path(run_dir)
    path = out / SUMMARY_FILE
    if not path.is_file():
        raise ConfigError(f"{out} holds no {SUMMARY_FILE}; is it a finished medcolor run?")
    s = json.loads(path.read_text())
    return RunResult(
        directory=out,
        stages=[StageResult.from_dict(d) for d in s["stages"]],
        test=s.get("test"),
        model_path=Path(s["model"]),
        colorizer_path=Path(s["colorizer"]) if s.get("colorizer") else None,
        info=s.get("data") or {},
    )


__all__ = [
    "COLORIZER_FILE",
    "CONFIG_FILE",
    "DATA_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "PREDICTIONS_FILE",
    "SKIPPED_ROWS_FILE",
    "STAGE_RESULT_FILE",
    "SUMMARY_FILE",
    "RunResult",
    "StageResult",
    "model_metadata",
    "prepare_run_dir",
    "read_run",
    "read_stage_result",
    "stage_dir",
    "write_stage_result",
    "write_summary",
]
