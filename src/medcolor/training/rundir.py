"""The run directory: its layout, preparing or resuming it, and reading results back.

::

    RUN/config.yaml                 the resolved configuration (a re-run must match it, or --resume/--overwrite)
    RUN/data.json                   split sizes, labels, normalisation (+ skipped_rows.csv)
    RUN/1-color-module/             per stage: lr_find.{json,png}, checkpoints/{last,best}.ckpt,
                                    history.json, model.safetensors (best), result.json
    RUN/model.safetensors           the final network (+ colorizer.safetensors: T alone)
    RUN/test/metrics.json           per-label / mean AUC with bootstrap 95 % CIs, predictions.csv
    RUN/operating_points.json       thresholds chosen on val/predictions.csv, applied to the test split (+ PNGs)
    RUN/summary.json                everything above in one file
    RUN/.medcolor-run               marks the folder as a medcolor run (``--overwrite`` needs it)

The file names are part of the interface (studies and reports read them): change them only with care.
:data:`RUN_LAYOUT` lists every name a run writes: ``--overwrite`` removes those and nothing else (a
folder with anything else in it is refused, naming what it holds), so a new file a run writes must be
added there.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcolor.config import RunConfig, diff_configs
from medcolor.data.bundle import DataBundle
from medcolor.data.summary import LABEL_COUNTS_FILE
from medcolor.display import SAMPLES_FILE
from medcolor.errors import ConfigError, MedcolorError
from medcolor.paths import user_path
from medcolor.utils import write_json, write_text_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
DATA_FILE = "data.json"
SKIPPED_ROWS_FILE = "skipped_rows.csv"
STAGE_RESULT_FILE = "result.json"
MODEL_FILE = "model.safetensors"
COLORIZER_FILE = "colorizer.safetensors"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
RUN_MARKER = ".medcolor-run"
_MARKER_FORMAT = "medcolor-run"

_TMP = ".*.tmp"  # what utils.atomic_path leaves behind when killed mid-write
_SPLIT: dict[str, Any] = {"files": (METRICS_FILE, PREDICTIONS_FILE, _TMP)}
#: a set evaluated with its own operating points (medcolor.operating.write_set_operating_points)
_SET: dict[str, Any] = {"files": (METRICS_FILE, PREDICTIONS_FILE, "operating_points.json", "*.png", _TMP)}
#: Every file and folder a run writes, as name patterns (fnmatch): ``files`` of a folder, and ``dirs`` with
#: their own layout.  ``--overwrite`` removes what matches and refuses a folder holding anything else.
#: a tree medcolor writes through another library (MLflow's file store): every name is its own
_ANY: dict[str, Any] = {"files": ("*",)}
_ANY["dirs"] = {"*": _ANY}
#: a stage's experiment logs (medcolor.training.loggers): logs/csv/version_N, logs/tensorboard/version_N
_LOGS: dict[str, Any] = {
    "dirs": {
        "csv": {"dirs": {"version_*": {"files": ("metrics.csv", "hparams.yaml", _TMP)}}},
        "tensorboard": {"dirs": {"version_*": {"files": ("events.out.tfevents.*", "hparams.yaml", _TMP)}}},
    }
}
RUN_LAYOUT: dict[str, Any] = {
    "files": (
        *(CONFIG_FILE, RUN_MARKER, DATA_FILE, SKIPPED_ROWS_FILE, SUMMARY_FILE),
        *(MODEL_FILE, "model.json", COLORIZER_FILE, "colorizer.json", LABEL_COUNTS_FILE, SAMPLES_FILE, _TMP),
        *("operating_points.json", "roc-*.png", "reliability-*.png"),  # medcolor.operating
        "gradcam_samples.npz",  # medcolor.evaluation.gradcam: Grad-CAM maps of the colorized samples (Fig. 4)
    ),
    "dirs": {
        "[0-9]*-*": {  # the stages: 1-color-module, 2-all
            "files": ("lr_find.json", "lr_find.png", "history.json", STAGE_RESULT_FILE, MODEL_FILE, "model.json", _TMP),
            "dirs": {"checkpoints": {"files": ("*.ckpt", _TMP)}, "logs": _LOGS},
        },
        "mlruns": _ANY,  # trainer.logger: mlflow (its local file store)
        "test": _SPLIT,
        "val": _SPLIT,
        "evaluate-*": _SET,  # medcolor evaluate RUN (its default output)
        "test_sets": {"dirs": {"*": _SET}},  # medcolor.testsets: one folder per external test set
        "synthetic-data": {  # the generated dataset of data.dataset: synthetic
            "files": ("labels.csv", "synthetic.json", _TMP),
            "dirs": {"images": {"files": ("*.png", _TMP)}},
        },
    },
}


class RunConflictError(ConfigError):
    """The output directory holds a started run of another configuration (``diffs``: what differs)."""

    def __init__(self, message: str, diffs: list[str] | None = None) -> None:
        super().__init__(message)
        self.diffs = list(diffs or [])


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
    #: where the process that finished the stage computed (:func:`medcolor.training.runtime.describe_environment`;
    #: empty in results written before it was recorded)
    environment: dict[str, Any] = field(default_factory=dict)

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
    #: metrics of each external test set by name (``RUN/test_sets/<name>/metrics.json``), None without any
    test_sets: dict[str, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        """One line: ``RunResult('runs/quick', stages color-module -> all, val mean AUC 0.912, test mean AUC
        0.905)`` (the fields are all there: ``.stages``, ``.test``, ``.model_path``...)."""
        parts = [repr(str(self.directory)), "stages " + " -> ".join(s.strategy for s in self.stages)]
        best = self.stages[-1].best_val_mean_auc if self.stages else None
        if best is not None:
            parts.append(f"val mean AUC {best:.3f}")
        if self.test and self.test.get("mean_auc") is not None:
            parts.append(f"test mean AUC {self.test['mean_auc']:.3f}")
        return f"RunResult({', '.join(parts)})"


def stage_dir(run_dir: Path, index: int, strategy: str) -> Path:
    """``RUN/<index + 1>-<strategy>``, e.g. ``RUN/1-color-module``."""
    return Path(run_dir) / f"{index + 1}-{strategy}"


def _sort(folder: Path, layout: dict[str, Any], own: list[Path], other: list[Path]) -> None:
    """Files of ``folder`` that ``layout`` names go to ``own`` (folders after their contents), the rest
    (unknown names, links, special files) to ``other``."""
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            other.append(p)
        elif p.is_dir():
            sub = next((v for k, v in layout.get("dirs", {}).items() if fnmatch.fnmatchcase(p.name, k)), None)
            if sub is None:
                other.append(p)
            else:
                _sort(p, sub, own, other)
                own.append(p)
        elif p.is_file() and any(fnmatch.fnmatchcase(p.name, k) for k in layout.get("files", ())):
            own.append(p)
        else:
            other.append(p)


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a medcolor run: it holds the marker medcolor writes (:data:`RUN_MARKER`).  Nothing
    else counts: a folder with a ``config.yaml`` and a ``model.safetensors`` may be a user's own."""
    try:
        return json.loads((Path(path) / RUN_MARKER).read_text()).get("format") == _MARKER_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def removal_plan(path: str | Path, *, keep_others: bool = False) -> list[Path]:
    """What :func:`remove_run` would delete in ``path`` (folders after their contents); raises the
    :class:`ConfigError` it would raise (no marker, or files a run does not write), deleting nothing."""
    out = Path(path)
    if not is_run_dir(out):
        raise ConfigError(
            f"{out} is not a medcolor run directory (it holds no {RUN_MARKER}); refusing to delete anything in it. "
            "Choose another --output."
        )
    own: list[Path] = []
    other: list[Path] = []
    _sort(out, RUN_LAYOUT, own, other)
    if other and not keep_others:
        names = ", ".join(str(p.relative_to(out)) + ("/" if p.is_dir() else "") for p in other[:8])
        more = f" and {len(other) - 8} more" if len(other) > 8 else ""
        raise ConfigError(
            f"{out} holds files a medcolor run does not write ({names}{more}); refusing to delete anything. "
            "Move them away or choose another --output."
        )
    return own


def remove_run(path: str | Path, *, keep_others: bool = False) -> None:
    """Delete what a medcolor run wrote in ``path`` (:data:`RUN_LAYOUT`), keeping ``path`` itself.  Refused,
    with nothing deleted, when ``path`` is no medcolor run or holds anything a run does not write; with
    ``keep_others`` those other files (a study runner's log and lock beside its cell's run) stay instead."""
    own = removal_plan(path, keep_others=keep_others)
    for p in own:  # folders come after their contents
        p.rmdir() if p.is_dir() else p.unlink()
    log.info(f"removed the earlier run in {path} ({sum(1 for p in own if not p.is_dir())} files)")


def run_started(path: str | Path) -> bool:
    """Whether a run got as far as a stage (a run stopped before one holds no training work)."""
    return any(p.is_dir() for p in Path(path).glob("[0-9]*-*"))


def discard_unstarted_run(path: str | Path) -> bool:
    """Remove a run that stopped before its first stage (a failed check of its data...), and its folder
    when that is then empty, so that the corrected command starts afresh.  Returns whether it did."""
    out = Path(path)
    if not out.is_dir() or not is_run_dir(out) or run_started(out):
        return False
    try:
        remove_run(out)
        out.rmdir()
    except (MedcolorError, OSError):
        return False
    return True


def prepare_run_dir(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False) -> tuple[Path, RunConfig]:
    """Create the run directory or check it holds this same run.  Returns the directory and the config
    to use (with ``resume``: the stored one).

    Everything that can be checked is checked first (:func:`medcolor.validation.check_run_files`); only
    then is anything created or deleted.  ``overwrite`` deletes an earlier run's own files only
    (:func:`remove_run`).  A run that stopped before its first stage is replaced without ``overwrite``."""
    from medcolor.validation import check_run_files

    cfg.output = str(user_path(cfg.output, "--output"))  # `-o ~/x`: one folder for medcolor and Lightning
    check_run_files(cfg)
    out = Path(cfg.output)
    stored = out / CONFIG_FILE
    action = output_action(out, overwrite=overwrite, resume=resume)
    if action.startswith("overwrite"):
        remove_run(out)
    if stored.is_file():
        old = RunConfig.from_yaml(stored)
        if resume:
            old.output = cfg.output
            check_run_files(old)
            return out, old
        diffs = short_diffs(old.to_dict(), cfg.to_dict())
        # settings that change nothing a run computes (cached images are bit-identical to decoded ones; the
        # augmentation is drawn per sample, whatever the number of workers)
        ignored = ("trainer.progress", "output", "data.cache_dir", "data.num_workers")
        diffs = [d for d in diffs if not d.startswith(ignored)]
        if diffs and not run_started(out):
            log.info(f"{out} holds a run that stopped before its first stage: replacing it")
            remove_run(out, keep_others=True)  # nothing of it was trained; files it did not write stay
        elif diffs:
            more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
            raise RunConflictError(
                f"{out} holds another run (stored -> now: {'; '.join(diffs[:4])}{more}). "
                f"Use --resume to continue it, --overwrite to replace it, or -o DIR for a new run.",
                diffs=diffs,
            )
    mark_run_dir(out, cfg)
    return out, cfg


def _shown(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def short_diffs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two config dicts, one short item per key: ``stages[0].lr: 0.02 -> 0.01`` (lists of
    sections of the same length compared item by item; long values cut at 40 characters)."""
    out = []
    for line in diff_configs(old, new):
        key = line.split(": ", 1)[0]
        va, vb = _lookup(old, key), _lookup(new, key)
        if isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
            pairs = [(i, a, b) for i, (a, b) in enumerate(zip(va, vb, strict=True)) if a != b]
            if all(isinstance(a, dict) and isinstance(b, dict) for _, a, b in pairs):
                out += [f"{key}[{i}].{d}" for i, a, b in pairs for d in short_diffs(a, b)]
                continue
        out.append(f"{key}: {_shown(va)} -> {_shown(vb)}")
    return out


def _lookup(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def output_action(out: str | Path, *, overwrite: bool = False, resume: bool = False) -> str:
    """What training into ``out`` does to it, checked before anything is written: ``"create"`` (absent or
    empty), ``"use"`` (a medcolor run: resumed, or compared with this run's config) or ``"overwrite: N files"``
    (with ``overwrite``).  A folder that is not a medcolor run, or one holding files a run does not write, is
    refused with a :class:`ConfigError` (``--dry-run`` says so too), and so is ``resume`` without a run."""
    out = user_path(out, "--output")
    if resume and not (out / CONFIG_FILE).is_file():
        raise ConfigError(f"--resume: {out} holds no run to resume (no {CONFIG_FILE}); drop --resume to start one")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} exists and is not a folder; choose another --output")
    if not out.is_dir() or not any(not p.name.startswith(".") for p in out.iterdir()):  # hidden files alone: empty
        return "create"
    if not is_run_dir(out):
        if overwrite:
            raise ConfigError(
                f"{out} is not a medcolor run directory (it holds no {RUN_MARKER}); refusing to delete anything in "
                "it. Choose another --output."
            )
        holds = f"a {CONFIG_FILE} of no medcolor run" if (out / CONFIG_FILE).exists() else f"no {CONFIG_FILE}"
        raise ConfigError(f"{out} exists and is not empty but holds {holds}; choose another --output")
    if overwrite:
        own = removal_plan(out)
        return f"overwrite: {sum(1 for p in own if not p.is_dir())} files of the earlier run would be deleted"
    return "use"


def mark_run_dir(out: Path, cfg: RunConfig) -> None:
    """Make ``out`` the run directory of ``cfg``: the medcolor-run marker and ``config.yaml``.  Also used
    by the study runner, whose cell folders hold its own files (log, lock) before the run starts."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RUN_MARKER, {"format": _MARKER_FORMAT})
    write_text_atomic(out / CONFIG_FILE, cfg.to_yaml())


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
        "test_sets": result.test_sets or {},
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
        test_sets=s.get("test_sets") or None,
    )


__all__ = [
    "COLORIZER_FILE",
    "CONFIG_FILE",
    "DATA_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "PREDICTIONS_FILE",
    "RUN_LAYOUT",
    "RUN_MARKER",
    "SKIPPED_ROWS_FILE",
    "STAGE_RESULT_FILE",
    "SUMMARY_FILE",
    "RunConflictError",
    "RunResult",
    "StageResult",
    "discard_unstarted_run",
    "is_run_dir",
    "mark_run_dir",
    "model_metadata",
    "output_action",
    "prepare_run_dir",
    "read_run",
    "read_stage_result",
    "removal_plan",
    "remove_run",
    "run_started",
    "short_diffs",
    "stage_dir",
    "write_stage_result",
    "write_summary",
]
