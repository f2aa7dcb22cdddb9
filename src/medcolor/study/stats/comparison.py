"""Paired comparison of two arms over matched repeats (:func:`compare`): one row per ``by`` group ×
label with the arms' means, the difference b − a, its bootstrap CI, the test and BH-adjusted p."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError
from medcolor.study.results import INTERNAL, for_test_set
from medcolor.study.stats.arms import kv_text, resolve_field
from medcolor.study.stats.cells import MEAN_LABEL, TESTS, PairingError, StudyCells, study_cells
from medcolor.study.stats.pairing import ArmPlan, plan_pairs
from medcolor.study.stats.significance import adjust_family, diff_interval, paired_test, sample_std

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
    "ci_method",
    "statistic",
    "p",
    "p_adj",
    "family",
    "test",
    "metric",
    "note",
    "pairs",
)
#: the BH family of :func:`compare` unless the caller names another
COMPARISON_FAMILY = "this comparison"


def _too_few(plan: ArmPlan, test: str, min_pairs: int) -> PairingError:
    have = ", ".join(f"({a} vs {b})" for a, b in plan.pairs) or "none"
    where = f" in the group {kv_text(list(plan.group), list(plan.group.values()))}" if plan.group else ""
    return PairingError(
        f"{len(plan.pairs)} matched pair(s){where} between a ({plan.a}) and b ({plan.b}): {have}; a paired "
        f"{'t-test' if test == 't' else 'Wilcoxon test'} needs at least {min_pairs}: run more repeats of both "
        "arms with matching seeds / subset draws"
    )


def _single_label(cells: StudyCells) -> str | None:
    """The one label of a single-label study (its ``mean`` row is the same test), else None."""
    own = [x for x in cells.labels if x != MEAN_LABEL]
    return own[0] if len(own) == 1 and MEAN_LABEL in cells.labels else None


def _label_row(
    cells: StudyCells, plan: ArmPlan, label: str, test: str, boot: tuple[int, int, float], min_pairs: int
) -> dict[str, Any]:
    """The statistics of one label over the pairs of ``plan``: pairs without a finite metric left out."""
    ia, ib = [a for a, _ in plan.pairs], [b for _, b in plan.pairs]
    xa = cells.values.loc[ia, label].to_numpy(float) if ia else np.zeros(0)
    xb = cells.values.loc[ib, label].to_numpy(float) if ib else np.zeros(0)
    ok = np.isfinite(xa) & np.isfinite(xb)
    xa, xb = xa[ok], xb[ok]
    pairs = ";".join(f"{a}|{b}" for (a, b), keep in zip(plan.pairs, ok, strict=True) if keep)
    n, d = len(xa), xb - xa
    notes = [plan.note] if plan.note else []
    if n < len(ia):
        notes.append(f"{len(ia) - n} pair(s) without a finite {cells.metric}")
    stat = p = math.nan
    if n >= min_pairs:
        stat, p, tnote = paired_test(xa, xb, test)
        notes += [tnote] if tnote else []
    elif plan.pairs or not plan.note:
        notes.append(f"{n} pair(s): too few for the test")
    lo, hi, method = diff_interval(d, *boot)

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if n else math.nan

    return {
        **plan.group, "a": plan.a, "b": plan.b, "label": label, "n": n,
        "mean_a": mean(xa), "std_a": sample_std(xa), "mean_b": mean(xb), "std_b": sample_std(xb),
        "diff": mean(d), "ci_low": lo, "ci_high": hi, "ci_method": method, "statistic": stat, "p": p,
        "test": test, "metric": cells.metric, "note": "; ".join(notes), "pairs": pairs,
    }  # fmt: skip


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
    """One row per label for the pairs of ``plan`` (``strict``: too few pairs is a PairingError).  In a
    single-label study the ``mean`` row is marked ``_same`` (the label's test): BH counts it once."""
    if len(plan.pairs) < min_pairs and strict:
        raise _too_few(plan, test, min_pairs)
    only = _single_label(cells)
    rows = []
    for label in labels:
        row = _label_row(cells, plan, label, test, (n_boot, seed, level), min_pairs)
        row["_same"] = only if label == MEAN_LABEL and only is not None else None
        rows.append(row)
    return rows


def finish_frame(rows: list[dict[str, Any]], head: Sequence[str], family: str) -> pd.DataFrame:
    """The rows as a DataFrame of the columns ``*head``, :data:`STAT_COLUMNS`: ``p_adj`` Benjamini–Hochberg
    over them as the family ``family`` (each test counted once), ``n`` as int, ``note`` as text."""
    cols = [*head, *[c for c in STAT_COLUMNS if c not in ("p_adj", "family")], "_same"]
    df = pd.DataFrame(rows, columns=cols).reset_index(drop=True)
    for c in ("mean_a", "std_a", "mean_b", "std_b", "diff", "ci_low", "ci_high", "statistic", "p"):
        df[c] = df[c].astype(float)
    key = [*[c for c in head if c != "label"], "a", "b"]
    same = pd.Series(np.nan, index=df.index)
    marked = df["_same"].notna()
    if marked.any():  # the row of the same group and arms whose label is ``_same``
        target = df.reset_index().rename(columns={"index": "_row", "label": "_same_label"})
        hit = (
            df.loc[marked, [*key, "_same"]]
            .reset_index()
            .merge(target[[*key, "_same_label", "_row"]], left_on=[*key, "_same"], right_on=[*key, "_same_label"])
        )
        same[hit["index"].to_numpy()] = hit["_row"].to_numpy()
    df = adjust_family(df.drop(columns="_same"), family, same)
    df["n"] = df["n"].fillna(0).astype(int)
    df["note"] = df["note"].fillna("").astype(str)
    df["ci_method"] = df["ci_method"].fillna("").astype(str)
    df["pairs"] = df["pairs"].fillna("").astype(str)
    return df


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
    family: str = COMPARISON_FAMILY,
    allow_one_pair: bool = False,
    test_set: str = INTERNAL,
) -> pd.DataFrame:
    """Paired comparison of arm ``b`` against arm ``a`` (difference = b − a) over matched repeats: the
    one public comparison, used by ``study compare``, the report's tables (through
    :func:`~medcolor.study.stats.compare_to_baseline`) and study documents.

    One row per ``by`` group × label (every label of the table and ``"mean"``, or ``labels``), with the
    columns ``*by``, :data:`STAT_COLUMNS`; ``p_adj`` is Benjamini–Hochberg over all rows returned, each
    test counted once, and ``family`` names that family and its size.  ``ci_method`` says how the interval
    of the difference was computed (``t`` below 6 pairs, else ``bootstrap``).
    Raises :class:`ArmNotFoundError` for an arm that was never run (listing the values that exist) and
    :class:`PairingError` when cells lack a partner (naming them) or no group has 2 pairs (unless
    ``allow_one_pair``: then a single pair gives its difference, no test, and a note); a ``by`` group
    with a single pair (when others have more) gets its difference, no test, and a note.
    ``test_set``: the rows of that test set of the table (``"internal"``: each run's own held-out split;
    else an external set's name); a set the table lacks is a :class:`~medcolor.study.results.StudyError`.
    """
    check_args(test, n_boot, level)
    cells = study_cells(for_test_set(table, test_set), metric)
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
    strict = not allow_one_pair and not any(len(p.pairs) >= 2 for p in plans)
    rows = []
    for plan in plans:
        rows += stat_rows(cells, plan, labels, test, n_boot, seed, level, 2, strict=strict)
    return finish_frame(rows, by, family)


__all__ = [
    "COMPARISON_FAMILY",
    "STAT_COLUMNS",
    "check_args",
    "check_labels",
    "compare",
    "finish_frame",
    "stat_rows",
]
