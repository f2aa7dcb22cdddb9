"""The report per test set: a results table (schema version 2 on) has a ``test_set`` column ("internal" for
a run's own held-out split, else the external set's name; one row per cell × test set × label); one
without it is all internal.  The tables get a column group per test set with each external set's drop
against the internal one (:func:`per_test_set`); everything else reads one set (:func:`for_test_set`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from medcolor.report.render import StudyTable
from medcolor.study.stats import MEAN_LABEL, REPEAT_FIELDS, format_pm, study_cells


class TableOptions(Protocol):
    """What this module reads of :class:`medcolor.report.tables.TableOptions`."""

    metric: str
    scale: float
    decimals: int


#: the results column (schema version 2 on) naming the test set of a row; tables without it are all internal
TEST_SET = "test_set"
INTERNAL = "internal"


def study_test_sets(table: pd.DataFrame) -> list[str]:
    """The test sets of a results table, the internal (a run's own held-out split) first, then the external
    ones by name; ``["internal"]`` for a table without a ``test_set`` column (schema version 1)."""
    if TEST_SET not in table.columns:
        return [INTERNAL]
    names = {str(x) for x in table[TEST_SET].fillna(INTERNAL)}
    return [INTERNAL] * (INTERNAL in names) + sorted(names - {INTERNAL})


def for_test_set(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one test set, without the ``test_set`` column (the stats see one row per cell × label)."""
    if TEST_SET not in table.columns:
        return table
    return table[table[TEST_SET].fillna(INTERNAL).astype(str) == name].drop(columns=TEST_SET)


def _signed(x: float, scale: float, decimals: int) -> str:
    return "–" if not np.isfinite(x) else f"{x * scale:+.{decimals}f}".replace("-", "−")


def _merged_columns(
    base: StudyTable, others: Sequence[str], values: Sequence[tuple[str, str]], first: str, combined: bool
) -> tuple[list[str], list[tuple[str, int]]]:
    """The column titles and groups of the merged table: ``base``'s (value columns tagged with ``first``), then per
    other set one column per value (``mean ± std (drop)``) when ``combined``, else its mean ± std and its drop."""
    k0 = base.text_columns + 1  # the row fields and n
    titles = {t for t, _ in values}
    columns = [c + (f" · {first}" if j >= k0 and c in titles else "") for j, c in enumerate(base.columns)]
    groups = [("", k0), (first, len(columns) - k0)]
    for s in others:
        columns += [f"{t} · {s} (Δ)" for t, _ in values] if combined else [f"{values[0][0]} · {s}", f"Δ {s} − {first}"]
        groups.append((s, len(values) if combined else 2))
    return columns, groups


def _set_cells(
    base: StudyTable, lookup: dict[tuple, pd.Series], key: Any, k: str, opt: TableOptions, combined: bool
) -> tuple[list[list[str]], list[float], list[float]]:
    """For value ``k`` of one other set (its rows by key in ``lookup``): per row of ``base`` the cell texts, the
    set's mean and its drop against ``base``'s mean (NaN where the set has no such row)."""
    std_key = k.replace(":mean", ":std") if k.endswith(":mean") else "std"
    texts, means, drops = [], [], []
    for _, r in base.data.iterrows():
        o = lookup.get(key(r))
        m = math.nan if o is None else float(o[k])
        d = m - float(r[k])
        pm = "–" if o is None else format_pm(m, float(o[std_key]), opt.scale, opt.decimals)
        drop = _signed(d, opt.scale, opt.decimals)
        texts.append([f"{pm} ({drop})"] if combined else [pm, drop])
        means.append(m)
        drops.append(d)
    return texts, means, drops


def _merge_test_sets(
    base: StudyTable, others: dict[str, StudyTable], values: Sequence[tuple[str, str]], cond: Sequence[str],
    first: str, opt: TableOptions, combined: bool,
) -> StudyTable:  # fmt: skip
    """``base`` (the table of test set ``first``) with a column group per other test set: for each value
    column (title, key of its mean in ``data``) the set's mean ± std and its drop (set − ``first``), in two
    columns, or in one (``mean ± std (drop)``) when ``combined``."""
    key_fields = [f for f in cond if f in base.data.columns]

    def key(r: pd.Series) -> tuple:
        return tuple(r[f] for f in key_fields)

    columns, groups = _merged_columns(base, list(others), values, first, combined)
    data = base.data.copy()
    extra: list[list[str]] = [[] for _ in range(len(base.data))]
    for s, t in others.items():
        lookup = {key(r): r for _, r in t.data.iterrows()}
        for _, k in values:
            texts, data[f"{s}:{k}"], data[f"{s}:{k}:drop"] = _set_cells(base, lookup, key, k, opt, combined)
            for row, x in zip(extra, texts, strict=True):
                row += x
    it = iter(extra)
    sections = [(h, [r + next(it) for r in rows]) for h, rows in base.sections]
    note = (
        f"Test sets side by side: {first} (each run's own held-out split) and "
        f"{', '.join(others)}; Δ = external − {first} ({'in parentheses, ' if combined else ''}AUC ×100, "
        "from the means over repeats; negative: the arm loses on the external set). Significance marks compare "
        f"arms within the {first} set only."
    )
    return StudyTable(
        base.key, base.title, columns, sections, base.caption, [note, *base.notes], data, base.text_columns, groups
    )


def per_test_set(fn: Any, table: pd.DataFrame, opt: TableOptions) -> StudyTable | None:
    """Table ``fn`` (:func:`~medcolor.report.tables.table1`, ``table2`` or ``table3``) with a column group
    per test set of ``table`` (internal first), each external group with its drop against the internal set;
    ``fn``'s table as is when the study has one test set."""
    sets = study_test_sets(table)
    base = fn(for_test_set(table, sets[0]), opt)
    if base is None or len(sets) == 1:
        return base
    others = {s: t for s in sets[1:] if (t := fn(for_test_set(table, s), opt)) is not None}
    if not others:
        return base
    cells = study_cells(for_test_set(table, sets[0]), opt.metric)
    cond = [f for f in cells.grid if f not in REPEAT_FIELDS]
    labels = [x for x in cells.labels if x != MEAN_LABEL]
    if labels and f"{labels[0]}:mean" in base.data.columns:  # Table II: a column per label
        values = [(lab, f"{lab}:mean") for lab in labels]
    else:
        values = [("Mean AUC", "mean")]
    return _merge_test_sets(base, others, values, cond, sets[0], opt, combined=len(values) > 1)


__all__ = ["INTERNAL", "TEST_SET", "for_test_set", "per_test_set", "study_test_sets"]
