"""Paired comparison of two arms over matched repeats (:func:`compare`): one row per ``by`` group ×
label with the arms' means, the difference b − a, its bootstrap CI, the test and BH-adjusted p."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError
from medcolor.study.stats.arms import kv_text, resolve_field
from medcolor.study.stats.cells import TESTS, PairingError, StudyCells, study_cells
from medcolor.study.stats.pairing import ArmPlan, plan_pairs
from medcolor.study.stats.significance import adjust_bh, bootstrap_ci, paired_test, sample_std

#: columns of the DataFrames returned by :func:`compare` (after the ``by`` fields)
STAT_COLUMNS = (
    "a",
    "b",
    "label",
    "n",
    "mean_a",
    "std_a",
    "mean_b",
    "std_b",
    "diff",
    "ci_low",
    "ci_high",
    "statistic",
    "p",
    "p_adj",
    "test",
    "metric",
    "note",
)


def stat_rows(
    cells: StudyCells,
    plan: ArmPlan,
    labels: Sequence[str],
    test: str,
    n_boot: int,
    seed: int,
    level: float,
    min_pairs: int,
    strict: bool,
) -> list[dict[str, Any]]:
    ia = [a for a, _ in plan.pairs]
    ib = [b for _, b in plan.pairs]
    if len(plan.pairs) < min_pairs and strict:
        have = ", ".join(f"({a} vs {b})" for a, b in plan.pairs) or "none"
        where = f" in the group {kv_text(list(plan.group), list(plan.group.values()))}" if plan.group else ""
        raise PairingError(
            f"{len(plan.pairs)} matched pair(s){where} between a ({plan.a}) and b ({plan.b}): {have}; a paired "
            f"{'t-test' if test == 't' else 'Wilcoxon test'} needs at least {min_pairs}: run more repeats of both "
            "arms with matching seeds / subset draws"
        )
    out = []
    for label in labels:
        xa = cells.values.loc[ia, label].to_numpy(float) if ia else np.zeros(0)
        xb = cells.values.loc[ib, label].to_numpy(float) if ib else np.zeros(0)
        ok = np.isfinite(xa) & np.isfinite(xb)
        xa, xb = xa[ok], xb[ok]
        n = len(xa)
        notes = [plan.note] if plan.note else []
        if n < len(ia):
            notes.append(f"{len(ia) - n} pair(s) without a finite {cells.metric}")
        stat = p = math.nan
        if n >= min_pairs:
            stat, p, tnote = paired_test(xa, xb, test)
            if tnote:
                notes.append(tnote)
        elif plan.pairs or not plan.note:
            notes.append(f"{n} pair(s): too few for the test")
        d = xb - xa
        lo, hi = bootstrap_ci(d, n_boot, seed, level) if n >= 2 else (math.nan, math.nan)  # no spread from 1 pair
        out.append(
            {
                **plan.group,
                "a": plan.a,
                "b": plan.b,
                "label": label,
                "n": n,
                "mean_a": float(xa.mean()) if n else math.nan,
                "std_a": sample_std(xa),
                "mean_b": float(xb.mean()) if n else math.nan,
                "std_b": sample_std(xb),
                "diff": float(d.mean()) if n else math.nan,
                "ci_low": lo,
                "ci_high": hi,
                "statistic": stat,
                "p": p,
                "test": test,
                "metric": cells.metric,
                "note": "; ".join(notes),
            }
        )
    return out


def check_labels(cells: StudyCells, labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return list(cells.labels)
    bad = [x for x in labels if x not in cells.labels]
    if bad:
        raise ConfigError(f"labels {bad} are not in the results table; it has {', '.join(cells.labels)}")
    return list(labels)


def check_args(test: str, n_boot: int, level: float) -> None:
    if test not in TESTS:
        raise ConfigError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < level < 1:
        raise ConfigError(f"the confidence level must be in (0, 1), got {level}")


def _frame(rows: list[dict[str, Any]], by: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[*by, *[c for c in STAT_COLUMNS if c != "p_adj"]])
    df.insert(df.columns.get_loc("p") + 1, "p_adj", adjust_bh(df["p"].to_numpy(float)))
    df["n"] = df["n"].astype(int)
    return df


def compare(
    table: pd.DataFrame,
    a: str | Mapping[str, Any],
    b: str | Mapping[str, Any],
    *,
    by: Sequence[str] | None = None,
    test: str = "t",
    metric: str = "test_auc",
    n_boot: int = 2000,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired comparison of arm ``b`` against arm ``a`` (difference = b − a) over matched repeats.

    One row per ``by`` group × label (every label of the table and ``"mean"``, or ``labels``), with the
    columns ``*by``, :data:`STAT_COLUMNS`; ``p_adj`` is Benjamini–Hochberg over all rows returned.
    Raises :class:`ArmNotFoundError` for an arm that was never run (listing the values that exist) and
    :class:`PairingError` when cells lack a partner (naming them) or no group has 2 pairs; a ``by`` group
    with a single pair (when others have more) gets its difference, no test, and a note.
    """
    check_args(test, n_boot, level)
    cells = study_cells(table, metric)
    by = [resolve_field(f, cells.grid) for f in (by or [])]
    labels = check_labels(cells, labels)
    if cells.values[labels].isna().all().all():
        raise DataError(
            f"no cell has a finite {metric}"
            + ("; the study has no test split: use metric='val_auc'" if metric == "test_auc" else "")
        )
    plans = plan_pairs(cells, a, b, by)
    # with several groups, a group with a single pair (e.g. the full training set, of which every draw
    # is the same) gets its difference and no test; only when no group can be tested is it an error
    strict = not any(len(p.pairs) >= 2 for p in plans)
    rows = []
    for plan in plans:
        rows += stat_rows(cells, plan, labels, test, n_boot, seed, level, 2, strict=strict)
    return _frame(rows, by)


__all__ = [
    "STAT_COLUMNS",
    "check_args",
    "check_labels",
    "compare",
    "stat_rows",
]
