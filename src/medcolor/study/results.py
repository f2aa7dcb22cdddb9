"""The tidy results table of a study: one row per cell x label, plus a ``"mean"`` row per cell.

Every finished cell writes its rows once, atomically, to ``DIR/cells/<cell id>/row.json``; the table
``DIR/results.parquet`` is *derived* from those files (rebuilt, never appended to) and replaced in one
rename.  A runner killed at any moment therefore leaves either the old table or the new one, and a re-run
rebuilds it from exactly the cells that finished: no duplicate or partial rows.

Columns (schema version 1; columns may be added in later versions, never renamed):

=================== ======= ==================================================================
schema_version      int     1
study               str     the spec's ``name``
cell                str     the cell id (``<readable slug>_<8-hex hash of its configuration>``)
<grid key>          any     one column per grid key, named by its dotted key (``model.colorizer``,
                            ``data.subset``, ``trainer.seed``...); named alternatives show their name
stages              str     the cell's strategies, comma-joined: ``"color-module,all"``
transfer            str     the id of the cell T/E were transferred from, or ``""``
transfer_name       str     the name of that transfer in the spec (``transfer:``), or ``""``
label               str     a label name, or ``"mean"`` (the mean AUC over labels)
val_auc             float   best validation AUC of the last stage (the checkpoint kept)
test_auc            float   test AUC of the final network; NaN when the run has no test split
test_ci_low/high    float   its bootstrap 95 % confidence interval (NaN without a test split)
n_train             int     training images (after the subset)
iterations          int     optimisation steps, summed over stages (LR range tests not counted)
wall_s              float   wall-clock seconds of the call that finished the cell (a resumed cell:
                            its last attempt only)
run_dir             str     the cell's run directory, relative to the study directory
git_commit          str     the medcolor source commit (``+dirty`` with uncommitted changes), or ""
medcolor_version    str
torch_version       str
=================== ======= ==================================================================
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medcolor.errors import MedcolorError
from medcolor.study.plan import Cell, Plan
from medcolor.utils import atomic_path, write_json

SCHEMA_VERSION = 1
ROW_FILE = "row.json"
TABLE_FILE = "results.parquet"
LEADING = ["schema_version", "study", "cell"]
CELL_COLUMNS = ["stages", "transfer", "transfer_name"]
METRICS = [
    "label",
    "val_auc",
    "test_auc",
    "test_ci_low",
    "test_ci_high",
    "n_train",
    "iterations",
    "wall_s",
    "run_dir",
    "git_commit",
    "medcolor_version",
    "torch_version",
]
#: the columns that are not grid fields: every other column is one (its dotted key, ``stages``, ``transfer``);
#: ``transfer_name`` only names the spec entry behind ``transfer``
RESULT_COLUMNS = (*LEADING, "transfer_name", *METRICS)
INT_COLUMNS = ("schema_version", "n_train", "iterations")
FLOAT_COLUMNS = ("val_auc", "test_auc", "test_ci_low", "test_ci_high", "wall_s")
STR_COLUMNS = (
    "study",
    "cell",
    "stages",
    "transfer",
    "transfer_name",
    "label",
    "run_dir",
    "git_commit",
    "medcolor_version",
    "torch_version",
)
#: migrations of older tables/rows: {version: function(rows DataFrame) -> DataFrame of version + 1}
MIGRATIONS: dict[int, Any] = {}


class StudyError(MedcolorError):
    """A study directory or results table cannot be used (the message says why)."""


def columns(plan: Plan) -> list[str]:
    return LEADING + list(plan.columns) + CELL_COLUMNS + METRICS


# ----------------------------------------------------------------------------- provenance
@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    import torch

    from medcolor._version import __version__

    return {"git_commit": git_commit(), "medcolor_version": __version__, "torch_version": torch.__version__}


def git_commit() -> str:
    """The commit of the medcolor source tree this process runs (``+dirty`` with local changes), or ""."""
    here = Path(__file__).resolve().parents[1]  # src/medcolor/study/results.py -> src/medcolor
    try:
        top = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{top}+dirty" if dirty else top


# ----------------------------------------------------------------------------- rows of one cell
def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def cell_rows(
    cell: Cell, run_dir: str | os.PathLike, *, study: str, columns: list[str], wall_s: float
) -> list[dict[str, Any]]:
    """The rows of a finished cell, read from its run directory (``summary.json``)."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    labels = list(summary["data"]["label_names"])
    last = summary["stages"][-1]
    test = summary.get("test") or {}
    on_test = test.get("split") == "test"
    ci = test.get("ci95") or {}
    common: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "study": study, "cell": cell.id}
    common.update(_cell_fields(cell, columns))
    tail = {
        "n_train": int(summary["data"]["train"]),
        "iterations": int(sum(int(s["total_steps"]) for s in summary["stages"])),
        "wall_s": float(wall_s),
        "run_dir": f"cells/{cell.id}",
        **provenance(),
    }

    def metrics(val: Any, auc: Any, interval: Any) -> dict[str, float]:
        lo, hi = interval if isinstance(interval, list | tuple) and len(interval) == 2 else (None, None)
        return {
            "val_auc": _num(val),
            "test_auc": _num(auc) if on_test else math.nan,
            "test_ci_low": _num(lo) if on_test else math.nan,
            "test_ci_high": _num(hi) if on_test else math.nan,
        }

    rows = []
    for lab in labels:
        m = metrics((last.get("best_val_auc") or {}).get(lab), (test.get("auc") or {}).get(lab), ci.get(lab))
        rows.append({**common, "label": lab, **m, **tail})
    m = metrics(last.get("best_val_mean_auc"), test.get("mean_auc"), ci.get("mean_auc"))
    rows.append({**common, "label": "mean", **m, **tail})
    return rows


def _cell_fields(cell: Cell, columns: Sequence[str]) -> dict[str, Any]:
    """What the plan says of a cell: its value of every grid column, its stages and transfer source."""
    out: dict[str, Any] = {col: cell.values.get(col) for col in columns}
    out["stages"] = cell.values.get("stages") or ""
    out["transfer"] = cell.transfer["source"] if cell.transfer else ""
    out["transfer_name"] = cell.transfer["name"] if cell.transfer else ""
    return out


def write_rows(cell_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    return write_json(Path(cell_dir) / ROW_FILE, {"schema_version": SCHEMA_VERSION, "rows": rows})


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``row.json``, checked: a truncated file, rows that are not records with a label, or an
    AUC that is not a number is a :class:`StudyError` naming the file."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StudyError(f"{path}: the cell's result rows are damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(d, dict) or not isinstance(d.get("rows"), list):
        raise StudyError(f"{path}: the cell's result rows are damaged (expected {{schema_version, rows: [...]}})")
    version = d.get("schema_version")
    rows = d["rows"]
    if version != SCHEMA_VERSION:
        rows = _migrate(pd.DataFrame(rows), version, str(path)).to_dict("records")
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not isinstance(r.get("label"), str):
            raise StudyError(f"{path}: the cell's result rows are damaged (row {i} has no label)")
        for c in FLOAT_COLUMNS:
            v = r.get(c)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise StudyError(f"{path}: the cell's result rows are damaged (row {i}: {c} is {v!r}, not a number)")
    return list(rows)


# ----------------------------------------------------------------------------- the table
def _coerce(df: pd.DataFrame, grid_columns: list[str]) -> pd.DataFrame:
    for c in INT_COLUMNS:
        df[c] = df[c].astype("int64")
    for c in FLOAT_COLUMNS:
        df[c] = df[c].astype("float64")
    for c in STR_COLUMNS:
        df[c] = df[c].fillna("").astype(str)
    for c in grid_columns:
        df[c] = _grid_column(df[c])
    return df


def _grid_column(s: pd.Series) -> pd.Series:
    vals = [v for v in s if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if vals and all(isinstance(v, bool) for v in vals) and len(vals) == len(s):
        return s.astype(bool)
    if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals) and len(vals) == len(s):
        return s.astype("int64")
    if vals and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return s.astype("float64")
    return s.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).astype(object)


def build_table(study_dir: str | os.PathLike, plan: Plan) -> pd.DataFrame:
    """The results table from the ``row.json`` of every finished cell of ``plan`` (in plan order)."""
    study_dir = Path(study_dir)
    rows: list[dict[str, Any]] = []
    for cell in plan.cells:
        f = study_dir / "cells" / cell.id / ROW_FILE
        if f.is_file():
            # the grid values as the current spec sees the cell (the same configuration, hence the same
            # id): a field added to the spec after the cell finished gets the cell's value, not nothing
            fields = _cell_fields(cell, list(plan.columns))
            rows += [{**r, **fields} for r in read_rows(f)]
    cols = columns(plan)
    df = pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: [] for c in cols})
    if not rows:
        df = df.astype({c: "int64" for c in INT_COLUMNS} | {c: "float64" for c in FLOAT_COLUMNS})
        return df.astype({c: object for c in [*STR_COLUMNS, *plan.columns]})
    return _coerce(df, list(plan.columns))


def write_table(study_dir: str | os.PathLike, df: pd.DataFrame) -> Path:
    path = Path(study_dir) / TABLE_FILE
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")
    return path


def _migrate(df: pd.DataFrame, version: Any, where: str) -> pd.DataFrame:
    if not isinstance(version, int):
        raise StudyError(f"{where} is not a medcolor study results table (no schema_version)")
    if version > SCHEMA_VERSION:
        raise StudyError(
            f"{where} was written with results schema version {version}, newer than the version {SCHEMA_VERSION} "
            "this medcolor reads: upgrade medcolor to read it"
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StudyError(
                f"{where} was written with results schema version {version}; this medcolor reads version "
                f"{SCHEMA_VERSION} and has no migration from it. The table is derived from the cells' row.json "
                "files: re-run `medcolor study run SPEC -o DIR` with this version to rebuild it"
            )
        df = step(df)
        version += 1
    return df


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a study's results table (a study directory or the ``.parquet`` file), checking its schema."""
    p = Path(path)
    if p.is_dir():
        p = p / TABLE_FILE
    if not p.is_file():
        raise StudyError(f"no results table at {p}; run `medcolor study run SPEC -o DIR` first")
    try:
        df = pd.read_parquet(p)
    except Exception as exc:
        raise StudyError(f"{p} is not a readable Parquet file: {exc}") from None
    if "schema_version" not in df.columns:
        raise StudyError(f"{p} is not a medcolor study results table (it has no schema_version column)")
    versions = sorted(set(int(v) for v in df["schema_version"].unique()))
    if len(versions) > 1:
        raise StudyError(f"{p} mixes results schema versions {versions}; rebuild it with `medcolor study run`")
    if versions and versions[0] != SCHEMA_VERSION:
        df = _migrate(df, versions[0], str(p))
    missing = [c for c in LEADING + CELL_COLUMNS + METRICS if c not in df.columns]
    if missing:
        raise StudyError(f"{p} is not a medcolor study results table (missing columns: {', '.join(missing)})")
    return df


__all__ = [
    "MIGRATIONS",
    "RESULT_COLUMNS",
    "ROW_FILE",
    "SCHEMA_VERSION",
    "TABLE_FILE",
    "StudyError",
    "build_table",
    "cell_rows",
    "columns",
    "provenance",
    "read_results",
    "read_rows",
    "write_rows",
    "write_table",
]
