"""The tidy results table of a study: one row per cell x test set x label, plus a ``"mean"`` row per cell and set.

Every finished cell writes its rows once, atomically, to ``DIR/cells/<cell id>/row.json``; the table
``DIR/results.parquet`` is *derived* from those files (rebuilt, never appended to) and replaced in one
rename.  A runner killed at any moment therefore leaves either the old table or the new one, and a re-run
rebuilds it from exactly the cells that finished: no duplicate or partial rows.

Columns (schema version 3; columns may be added in later versions, never renamed):

=================== ======= ==================================================================
schema_version      int     3
study               str     the spec's ``name``
cell                str     the cell id (``<readable slug>_<8-hex hash of its configuration>``)
<grid key>          any     one column per grid key, named by its dotted key (``model.colorizer``,
                            ``data.subset``, ``trainer.seed``...); named alternatives show their name
stages              str     the cell's strategies, comma-joined: ``"color-module,all"``
transfer            str     the id of the cell T/E were transferred from, or ``""``
transfer_name       str     the name of that transfer in the spec (``transfer:``), or ``""``
test_set            str     ``"internal"`` (the run's own held-out test split) or the name of an
                            external set of the run's ``test_sets:`` (``RUN/test_sets/<name>/``);
                            version 2 (a version-1 table reads as all ``"internal"``)
label               str     a label name, or ``"mean"`` (the mean AUC over labels; of an external
                            set: over the labels it has, see its ``metrics.json`` ``left_out``)
val_auc             float   best validation AUC of the last stage (the checkpoint kept; the same
                            for every test set of the cell)
test_auc            float   test AUC of the final network on the row's test set; NaN when the run has
                            no test split, or the external set lacks the label or has one class of it
test_ci_low/high    float   its bootstrap 95 % confidence interval (NaN without a test split)
n_train             int     training images (after the subset)
iterations          int     optimisation steps, summed over stages (LR range tests not counted)
wall_s              float   wall-clock seconds of the call that finished the cell (a resumed cell:
                            its last attempt only)
run_dir             str     the cell's run directory, relative to the study directory
git_commit          str     the medcolor source commit (``+dirty`` with uncommitted changes), or ""
medcolor_version    str
torch_version       str
device              str     where the cell's stages computed: the CPU's or GPU's name (stages that ran
                            on different machines: joined by " + "); version 3, "" before
precision           str     the stages' resolved precision (``bf16-mixed``, ``32-true``...); version 3
=================== ======= ==================================================================
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medcolor.errors import MedcolorError
from medcolor.study.plan import Cell, Plan
from medcolor.study.provenance import computed_on, joined, provenance
from medcolor.utils import atomic_path, write_json

SCHEMA_VERSION = 3
ROW_FILE = "row.json"
TABLE_FILE = "results.parquet"
LEADING = ["schema_version", "study", "cell"]
CELL_COLUMNS = ["stages", "transfer", "transfer_name"]
#: the column naming a row's test set (schema version 2) and its value for the run's own held-out split
TEST_SET = "test_set"
INTERNAL = "internal"
METRICS = [
    TEST_SET,
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
    "device",
    "precision",
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
    TEST_SET,
    "label",
    "run_dir",
    "git_commit",
    "medcolor_version",
    "torch_version",
    "device",
    "precision",
)
#: migrations of older tables/rows: {version: function(rows DataFrame) -> DataFrame of version + 1}
MIGRATIONS: dict[int, Any] = {}


def _v1_to_v2(df: pd.DataFrame) -> pd.DataFrame:
    """Version 1 had no external test sets: every row is the run's own test split (``test_set`` "internal",
    inserted before ``label``)."""
    df = df.copy()
    if TEST_SET not in df.columns:
        df.insert(list(df.columns).index("label") if "label" in df.columns else len(df.columns), TEST_SET, INTERNAL)
    df[TEST_SET] = df[TEST_SET].fillna(INTERNAL)
    df["schema_version"] = 2
    return df


def _v2_to_v3(df: pd.DataFrame) -> pd.DataFrame:
    """Version 2 did not record where a cell computed: ``device`` and ``precision`` are ``""`` (unknown)."""
    return df.assign(**{c: df[c] if c in df.columns else "" for c in ("device", "precision")}, schema_version=3)


MIGRATIONS[1] = _v1_to_v2
MIGRATIONS[2] = _v2_to_v3


class StudyError(MedcolorError):
    """A study directory or results table cannot be used (the message says why)."""


def columns(plan: Plan) -> list[str]:
    return LEADING + list(plan.columns) + CELL_COLUMNS + METRICS


# ----------------------------------------------------------------------------- rows of one cell
def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _interval(x: Any) -> tuple[Any, Any]:
    return tuple(x) if isinstance(x, list | tuple) and len(x) == 2 else (None, None)  # type: ignore[return-value]


def _set_rows(
    test: dict[str, Any], labels: Sequence[str], last: dict[str, Any], *, valid: bool
) -> list[tuple[str, dict[str, float]]]:
    """(label, metrics) of one test set's ``metrics.json`` (``valid`` false: no test split, test columns NaN);
    a label without an AUC (not in the set, one class only) gets NaN, never a made-up number."""
    ci = test.get("ci95") or {}
    aucs = test.get("auc") or {}
    vals = last.get("best_val_auc") or {}
    out = []
    for lab, val, auc, interval in [
        *((lab, vals.get(lab), aucs.get(lab), ci.get(lab)) for lab in labels),
        ("mean", last.get("best_val_mean_auc"), test.get("mean_auc"), ci.get("mean_auc")),
    ]:
        lo, hi = _interval(interval)
        out.append(
            (
                lab,
                {
                    "val_auc": _num(val),
                    "test_auc": _num(auc) if valid else math.nan,
                    "test_ci_low": _num(lo) if valid else math.nan,
                    "test_ci_high": _num(hi) if valid else math.nan,
                },
            )
        )
    return out


def external_metrics(run_dir: str | os.PathLike, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The metrics of each external test set of a run, by name: ``summary.json`` ``test_sets``, else (older
    summaries, or a set evaluated later with ``medcolor evaluate --test-set``) ``RUN/test_sets/*/metrics.json``."""
    found = dict(summary.get("test_sets") or {})
    for f in sorted(Path(run_dir).glob("test_sets/*/metrics.json")):
        if f.parent.name not in found:
            try:
                found[f.parent.name] = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise StudyError(f"{f}: the test set's metrics are damaged ({type(exc).__name__}: {exc})") from None
    return {k: found[k] for k in sorted(found)}


def cell_rows(
    cell: Cell,
    run_dir: str | os.PathLike,
    *,
    study: str,
    columns: list[str],
    wall_s: float,
    commits: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The rows of a finished cell, read from its run directory: ``summary.json`` (its own test split, test set
    ``"internal"``) and each external set's metrics (:func:`external_metrics`), one row per set x label.
    ``commits``: the medcolor commit of each attempt that trained it (``wall.json``), each once, joined by " + "
    as ``git_commit``; without them, the commit of this process."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    labels = list(summary["data"]["label_names"])
    last = summary["stages"][-1]
    test = summary.get("test") or {}
    common: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "study": study, "cell": cell.id}
    common.update(_cell_fields(cell, columns))
    tail = {
        "n_train": int(summary["data"]["train"]),
        "iterations": int(sum(int(s["total_steps"]) for s in summary["stages"])),
        "wall_s": float(wall_s),
        "run_dir": f"cells/{cell.id}",
        **provenance(),
        **computed_on(summary["stages"]),
    }
    if commit := joined(commits):
        tail["git_commit"] = commit
    sets = {INTERNAL: (test, test.get("split") == "test")}
    sets |= {name: (m, True) for name, m in external_metrics(run_dir, summary).items()}
    return [
        {**common, TEST_SET: name, "label": lab, **m, **tail}
        for name, (metrics, valid) in sets.items()
        for lab, m in _set_rows(metrics, labels, last, valid=valid)
    ]


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


def _missing(v: Any) -> bool:
    """A grid value a cell does not have: None or NaN."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _value_kind(v: Any) -> str:
    """``bool``, ``int``, ``float`` or ``text``: how a grid value is stored in the table."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    return "float" if isinstance(v, float) else "text"


def _grid_column(s: pd.Series) -> pd.Series:
    """A grid field's column typed by its values: bool or int64 when every cell has one, float64 when they are
    numbers (a missing one NaN), else text (a missing one None)."""
    kinds = {_value_kind(v) for v in s if not _missing(v)}
    complete = not any(_missing(v) for v in s)
    if complete and kinds == {"bool"}:
        return s.astype(bool)
    if complete and kinds == {"int"}:
        return s.astype("int64")
    if kinds and kinds <= {"int", "float"}:
        return s.astype("float64")
    return s.map(lambda v: None if _missing(v) else str(v)).astype(object)


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
    # an empty table has no version to read: its columns tell (no test_set: 1; test_set, no device: 2)
    version = versions[0] if versions else 1 if TEST_SET not in df.columns else 2 if "device" not in df.columns else 3
    if version != SCHEMA_VERSION:
        df = _migrate(df, version, str(p))
    missing = [c for c in LEADING + CELL_COLUMNS + METRICS if c not in df.columns]
    if missing:
        raise StudyError(f"{p} is not a medcolor study results table (missing columns: {', '.join(missing)})")
    return df


def table_test_sets(table: pd.DataFrame) -> list[str]:
    """The test sets of a results table: ``"internal"`` first (when present), then the external ones by name;
    ``["internal"]`` for a table without a ``test_set`` column."""
    if TEST_SET not in table.columns:
        return [INTERNAL]
    names = {str(x) for x in table[TEST_SET].fillna(INTERNAL)}
    return [INTERNAL] * (INTERNAL in names) + sorted(names - {INTERNAL})


def for_test_set(table: pd.DataFrame, name: str = INTERNAL) -> pd.DataFrame:
    """The rows of test set ``name`` without the ``test_set`` column (what the statistics read: one row per
    cell x label).  A set the table does not have is a :class:`StudyError` listing those it has."""
    if TEST_SET not in table.columns:
        if name != INTERNAL:
            raise StudyError(f"the results table has no test set {name!r}: it has only {INTERNAL!r}")
        return table
    names = table_test_sets(table)
    if name not in names:
        raise StudyError(f"the results table has no test set {name!r}; its test sets: {', '.join(names)}")
    return table[table[TEST_SET].fillna(INTERNAL).astype(str) == name].drop(columns=TEST_SET)


__all__ = [
    "INTERNAL",
    "MIGRATIONS",
    "RESULT_COLUMNS",
    "ROW_FILE",
    "SCHEMA_VERSION",
    "TABLE_FILE",
    "TEST_SET",
    "StudyError",
    "build_table",
    "cell_rows",
    "columns",
    "external_metrics",
    "for_test_set",
    "read_results",
    "read_rows",
    "table_test_sets",
    "write_rows",
    "write_table",
]
