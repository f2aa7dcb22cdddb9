"""A study's results table as the statistics read it: grid fields, values normalized to strings, one
row per cell (:class:`StudyCells`), and transfer sources described instead of named by cell id."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError
from medcolor.study.results import RESULT_COLUMNS, SCHEMA_VERSION, TEST_SET, table_test_sets

#: the label of the row holding the mean AUC over labels
MEAN_LABEL = "mean"
#: grid fields that index repeats of one condition (the paper's three runs / three subsets per size)
REPEAT_FIELDS = ("trainer.seed", "data.subset_draw")
TRANSFER_FIELD = "transfer"
TESTS = ("t", "wilcoxon")
METRICS = ("test_auc", "val_auc")
NONE = "none"


class ArmNotFoundError(ConfigError):
    """An arm of a comparison selects no cell of the study (never run, or misspelt)."""


class PairingError(DataError):
    """The cells of two arms cannot be paired, or there are too few pairs for the test."""


def grid_fields(table: pd.DataFrame) -> list[str]:
    """The grid-field columns of a results table, in table order."""
    return [str(c) for c in table.columns if c not in RESULT_COLUMNS]


def check_results(table: pd.DataFrame, metric: str = "test_auc") -> None:
    """Refuse a table that is not a results table of a version this medcolor reads (1: no ``test_set``
    column, read as all internal; 2; 3: ``device``/``precision``, which comparisons do not use) or lacks
    ``metric``."""
    if "schema_version" in table.columns and len(table):
        versions = sorted({int(v) for v in pd.unique(table["schema_version"].dropna())})
        if len(versions) > 1 or not set(versions) <= set(range(1, SCHEMA_VERSION + 1)):
            raise DataError(
                f"the results table has schema_version {versions}; this medcolor reads versions 1 to "
                f"{SCHEMA_VERSION} (1 as the internal test set only), one version per table. "
                f"Re-run `medcolor study run` with this version to rewrite it"
            )
    missing = [c for c in ("cell", "label", metric) if c not in table.columns]
    if missing:
        raise DataError(f"the results table lacks the columns {missing}; is it a medcolor results.parquet?")
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if table.empty:
        raise DataError("the results table is empty: no cell of the study has finished")


def normalize_value(v: Any) -> str:
    """A grid value as the string used for matching and display: ``None``/NaN/"" -> ``"none"``,
    ``1000.0`` -> ``"1000"``, ``0.001`` -> ``"0.001"``, ``True`` -> ``"true"``."""
    if v is None or v is pd.NA or v is pd.NaT:
        return NONE
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return NONE
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)
    s = str(v).strip()
    return NONE if s == "" or s.lower() in ("none", "null", "nan") else s


def normalize_query(v: Any) -> str:
    """A value typed by a person (``"1e-3"``, ``"10"``, ``"None"``) normalized like :func:`normalize_value`."""
    if isinstance(v, str):
        s = v.strip()
        if s.lower() in ("", "none", "null", "nan"):
            return NONE
        try:
            return normalize_value(float(s))
        except ValueError:
            return s
    return normalize_value(v)


@dataclass
class StudyCells:
    """A results table reshaped to one row per cell: grid values (normalized strings) and the metric per label."""

    fields: pd.DataFrame  # index cell; one str column per grid field
    values: pd.DataFrame  # index cell; one float column per label, MEAN_LABEL last
    labels: list[str]
    metric: str
    #: raw transfer source cell id -> its description (see :mod:`medcolor.study.stats`)
    transfer_ids: dict[str, str] = field(default_factory=dict)

    @property
    def grid(self) -> list[str]:
        return list(self.fields.columns)

    def subset(self, cells: Iterable[str]) -> StudyCells:
        idx = list(cells)
        return StudyCells(self.fields.loc[idx], self.values.loc[idx], self.labels, self.metric, self.transfer_ids)


def study_cells(table: pd.DataFrame, metric: str = "test_auc") -> StudyCells:
    """Reshape a results table of one test set to :class:`StudyCells` (validating it; a table of several test
    sets is refused: pick one first with :func:`medcolor.study.results.for_test_set`)."""
    check_results(table, metric)
    sets = table_test_sets(table)
    if TEST_SET in table.columns and len(sets) > 1:
        raise DataError(
            f"the results table holds several test sets ({', '.join(sets)}); compare one at a time "
            "(compare(..., test_set=NAME), or medcolor.study.results.for_test_set(table, NAME))"
        )
    grid = grid_fields(table)
    t = table.drop(columns=TEST_SET) if TEST_SET in table.columns else table.copy()
    t["cell"] = t["cell"].map(str)
    t["label"] = t["label"].map(str)
    dup = t.duplicated(["cell", "label"], keep=False)
    if dup.any():
        bad = sorted(set(t.loc[dup, "cell"]))[:5]
        raise DataError(f"the results table has several rows for one cell and label (cells {bad}); it is corrupt")
    first = t.drop_duplicates("cell").set_index("cell")
    fields = pd.DataFrame({f: [normalize_value(v) for v in first[f]] for f in grid}, index=first.index, dtype=object)
    fields.index.name = "cell"
    labels = [x for x in pd.unique(t["label"]) if x != MEAN_LABEL]
    if (t["label"] == MEAN_LABEL).any():
        labels.append(MEAN_LABEL)
    values = t.pivot(index="cell", columns="label", values=metric).reindex(index=fields.index, columns=labels)
    values = values.astype(float)
    transfer_ids: dict[str, str] = {}
    if TRANSFER_FIELD in fields.columns:
        fields[TRANSFER_FIELD], transfer_ids = _describe_transfers(fields)
    return StudyCells(fields, values, labels, metric, transfer_ids)


def _describe_transfers(fields: pd.DataFrame) -> tuple[pd.Series, dict[str, str]]:
    raw = fields[TRANSFER_FIELD]
    sources = sorted({s for s in raw if s != NONE})
    known = [s for s in sources if s in fields.index]
    keep = [
        f
        for f in fields.columns
        if f not in (*REPEAT_FIELDS, TRANSFER_FIELD)
        and (f in ("data.dataset", "stages") or fields.loc[known, f].nunique() > 1)
    ]
    desc = {s: (" · ".join(fields.loc[s, f] for f in keep) if s in fields.index and keep else s) for s in sources}
    return raw.map(lambda s: desc.get(s, s)), desc


def value_sort_key(v: str) -> tuple[int, float, str]:
    if v == NONE:
        return (2, 0.0, v)
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


__all__ = [
    "MEAN_LABEL",
    "METRICS",
    "NONE",
    "REPEAT_FIELDS",
    "TESTS",
    "TRANSFER_FIELD",
    "ArmNotFoundError",
    "PairingError",
    "StudyCells",
    "check_results",
    "grid_fields",
    "normalize_query",
    "normalize_value",
    "study_cells",
    "value_sort_key",
]
