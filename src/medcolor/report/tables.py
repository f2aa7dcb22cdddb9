"""The paper's tables from a study's results table, as Markdown, LaTeX and HTML.

* **Table I** — mean AUC ± std over repeats per colorizer × strategy, one block per backbone (and per any
  other condition the study varies: dataset, training-set size...), with the difference to the baseline,
  its bootstrap CI, the Benjamini–Hochberg adjusted p of a paired test, and a mark where it is < alpha.
  The baseline of an arm is the paper's: Baseline for strategies that keep E frozen, Baseline All for
  those that fine-tune it (:func:`medcolor.study.stats.reference_baseline`).
* **Table II** — the same rows, one column per label (per-observation AUCs), marks per label.
* **Table III** — transfer: for each target dataset (a dataset some cell transferred T/E to), every
  cell condition of that dataset by source (``transfer``) × colorizer × strategy.

Tables only hold what the study has: no Table III without transfer cells, no Table II with one label.
Cells that are transfer targets' datasets go to Table III, all others to Tables I/II.

The names shown for fields and values are in :mod:`medcolor.report.names`, :class:`StudyTable` and its
renderings in :mod:`medcolor.report.render`, the number formats in :mod:`medcolor.study.stats.format`
(re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medcolor.report.names import (
    arm_text,
    field_text,
    field_title,
    row_order_key,
    section_text,
)
from medcolor.report.render import StudyTable
from medcolor.report.testsets import INTERNAL, TEST_SET, for_test_set, per_test_set, study_test_sets
from medcolor.study.stats import (
    BASELINES,
    MEAN_LABEL,
    MIN_BOOTSTRAP_PAIRS,
    NONE,
    REPEAT_FIELDS,
    TRANSFER_FIELD,
    StudyCells,
    compare_to_baseline,
    format_diff,
    format_p,
    format_pm,
    study_cells,
    value_sort_key,
)


@dataclass
class TableOptions:
    metric: str = "test_auc"
    test: str = "t"
    alpha: float = 0.05
    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95
    scale: float = 100.0
    decimals: int = 1


def transfer_targets(cells: StudyCells) -> list[str]:
    """Datasets (``data.dataset`` values) that some cell transferred to; ``["*"]`` without a dataset field."""
    F = cells.fields
    if TRANSFER_FIELD not in F.columns or not (F[TRANSFER_FIELD] != NONE).any():
        return []
    if "data.dataset" not in F.columns:
        return ["*"]
    return sorted(set(F.loc[F[TRANSFER_FIELD] != NONE, "data.dataset"]))


def split_cells(cells: StudyCells) -> tuple[list[str], list[str]]:
    """Cell ids for Tables I/II (every cell that takes nothing from another cell, per dataset) and for
    Table III (the cells of the datasets something was transferred to: their own arms, as the baselines
    of the transfer, and the transfer cells).  A dataset's own arms can so be in both tables."""
    targets = transfer_targets(cells)
    F = cells.fields
    if not targets:
        return list(F.index), []
    own = list(F.index[F[TRANSFER_FIELD] == NONE])
    if targets == ["*"]:
        return own, list(F.index)
    return own, list(F.index[F["data.dataset"].isin(targets)])


@dataclass
class _Layout:
    """Which grid fields make rows, sections, and the constant caption of a table over ``ids``."""

    row_fields: list[str]
    section_fields: list[str]
    constant: dict[str, str]
    cond_fields: list[str]


def _layout(cells: StudyCells, ids: Sequence[str], row_candidates: Sequence[str]) -> _Layout:
    F = cells.fields.loc[list(ids)]
    cond = [f for f in cells.grid if f not in REPEAT_FIELDS]
    rows = [f for f in row_candidates if f in cond]
    others = [f for f in cond if f not in rows]
    section = [f for f in others if F[f].nunique() > 1]
    constant = {f: F[f].iloc[0] for f in others if f not in section and f != TRANSFER_FIELD}
    return _Layout(rows, section, constant, cond)


def _aggregate(cells: StudyCells, ids: Sequence[str], cond_fields: Sequence[str]) -> pd.DataFrame:
    """One row per condition: the condition fields, then ``<label>:mean``, ``<label>:std``, ``<label>:n``."""
    F = cells.fields.loc[list(ids), list(cond_fields)]
    V = cells.values.loc[list(ids)]
    keys = [tuple(r) for r in F.itertuples(index=False, name=None)]
    out = []
    for key in dict.fromkeys(keys):
        members = [i for i, k in zip(ids, keys, strict=True) if k == key]
        row: dict[str, Any] = dict(zip(cond_fields, key, strict=True))
        for label in cells.labels:
            x = V.loc[members, label].to_numpy(float)
            x = x[np.isfinite(x)]
            row[f"{label}:mean"] = float(x.mean()) if len(x) else math.nan
            row[f"{label}:std"] = float(x.std(ddof=1)) if len(x) > 1 else math.nan
            row[f"{label}:n"] = len(x)
        row["cells"] = members
        out.append(row)
    return pd.DataFrame(out)


def _comparisons(
    table: pd.DataFrame,
    ids: Sequence[str],
    labels: Sequence[str],
    opt: TableOptions,
    cells: StudyCells,
    family: str,
) -> pd.DataFrame | None:
    if "stages" not in cells.grid:
        return None
    F = cells.fields.loc[list(ids)]
    if not F["stages"].isin(BASELINES).any() or F["stages"].isin(BASELINES).all():
        return None
    return compare_to_baseline(
        table, labels=labels, test=opt.test, metric=opt.metric, n_boot=opt.n_boot, seed=opt.seed, level=opt.level,
        cells=ids, family=family,
    )  # fmt: skip


def _lookup(comp: pd.DataFrame | None, cond: dict[str, str], label: str) -> pd.Series | None:
    if comp is None or comp.empty:
        return None
    m = comp["label"] == label
    for f, v in cond.items():
        if f in comp.columns:
            m &= comp[f] == v
    hit = comp[m]
    return hit.iloc[0] if len(hit) else None


def _sorted_conditions(agg: pd.DataFrame, layout: _Layout) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    sections: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in agg.to_dict("records"):
        sections.setdefault(tuple(row[f] for f in layout.section_fields), []).append(row)

    def rk(r: dict[str, Any]) -> tuple:
        return row_order_key(r.get("model.colorizer", NONE), r.get("stages", NONE), r.get(TRANSFER_FIELD, NONE))

    return [
        (k, sorted(sections[k], key=rk)) for k in sorted(sections, key=lambda t: tuple(value_sort_key(v) for v in t))
    ]


def _caption(layout: _Layout, metric: str, extra: str = "") -> str:
    which = "test" if metric == "test_auc" else "validation"
    parts = [f"AUC ×100 on the {which} split, mean ± std over repeats"]
    if layout.constant:
        parts.append(
            "all cells: " + ", ".join(f"{field_title(f)} {field_text(f, v)}" for f, v in layout.constant.items())
        )
    return "; ".join(parts) + (f". {extra}" if extra else "")


def _sig_note(comp: pd.DataFrame | None, opt: TableOptions, family: str) -> list[str]:
    if comp is None:
        return [
            "No significance marks: the study has no baseline cells (stages baseline / baseline-all) to compare with."
        ]
    k = int(comp["p"].notna().sum())
    test = "paired t-test" if opt.test == "t" else "Wilcoxon signed-rank test"
    return [
        f"Δ: difference to the baseline (AUC ×100) with its {opt.level:.0%} interval (a t-interval below "
        f"{MIN_BOOTSTRAP_PAIRS} pairs, a percentile bootstrap CI from {MIN_BOOTSTRAP_PAIRS}); baseline = Baseline for "
        "strategies that keep E frozen, Baseline All for those that fine-tune E (or the one that was run).",
        f"* Benjamini–Hochberg adjusted p < {opt.alpha:g} ({test} over matched repeats; "
        f"BH family: {family}, {k} tests, each counted once).",
    ]


def _comp_notes(comp: pd.DataFrame | None, row_fields: Sequence[str]) -> list[str]:
    if comp is None or comp.empty:
        return []
    notes = []
    for _, r in comp[comp["note"] != ""].drop_duplicates("note").iterrows():
        who = ", ".join(field_text(f, r[f]) for f in row_fields if f in r.index)
        notes.append(f"{who}: {r['note']}")
    return notes


#: one condition's row of a table: the texts of its columns after the row fields, and its data record
_Row = tuple[list[str], dict[str, Any]]


def _significant(c: pd.Series | None, alpha: float) -> bool:
    """Whether the comparison ``c`` (none for a baseline row) has a BH-adjusted p below ``alpha``."""
    return bool(c is not None and np.isfinite(c["p_adj"]) and c["p_adj"] < alpha)


def _table_rows(
    agg: pd.DataFrame, layout: _Layout, row: Callable[[dict[str, Any], dict[str, str]], _Row]
) -> tuple[list[tuple[str, list[list[str]]]], pd.DataFrame]:
    """A table's sections (rows in the paper's order, one section per value of the section fields) and its data:
    ``row(r, cond)`` gives the columns after the row fields and the data record of one condition."""
    sections, data = [], []
    for sec, rows in _sorted_conditions(agg, layout):
        out_rows = []
        shown = {str(v) for v in (*sec, *layout.constant.values())}  # said by the section's title or the caption
        for r in rows:
            texts, rec = row(r, {f: r[f] for f in layout.cond_fields})
            out_rows.append([field_text(f, r[f], shown) for f in layout.row_fields] + texts)
            data.append(rec)
        sections.append((section_text(layout.section_fields, sec), out_rows))
    return sections, pd.DataFrame(data)


#: the comparison columns of a Table I/III row's data; on a baseline's own row (nothing compared) NaN, or these
_COMPARED = ("baseline", "diff", "ci_low", "ci_high", "ci_method", "p", "p_adj", "family")
_NOT_COMPARED = {"baseline": None, "ci_method": "", "family": ""}


def _mean_row(r: dict[str, Any], cond: dict[str, str], comp: pd.DataFrame | None, opt: TableOptions) -> _Row:
    """One condition of Table I/III: n, mean AUC ± std (marked when significant), Δ to its baseline with the CI and
    the adjusted p (``–`` on a baseline's own row); and its data record."""
    c = _lookup(comp, cond, MEAN_LABEL)
    mean, std, n = r[f"{MEAN_LABEL}:mean"], r[f"{MEAN_LABEL}:std"], r[f"{MEAN_LABEL}:n"]
    sig = _significant(c, opt.alpha)
    texts = [
        str(n),
        format_pm(mean, std, opt.scale, opt.decimals) + (" *" if sig else ""),
        "–" if c is None else format_diff(c["diff"], c["ci_low"], c["ci_high"], opt.scale, opt.decimals),
        "–" if c is None else format_p(c["p_adj"]),
    ]
    compared = {k: _NOT_COMPARED.get(k, math.nan) if c is None else c[k] for k in _COMPARED}
    rec = {**cond, "n": n, "mean": mean, "std": std, **compared, "significant": sig, "cells": ",".join(r["cells"])}
    return texts, rec


@dataclass(frozen=True)
class _ArmTableKind:
    """Table I or III: its key, title, row fields, BH family and which part of :func:`split_cells` it shows."""

    key: str
    title: str
    row_candidates: tuple[str, ...]
    family: str
    part: int  # 0: the cells of Tables I/II, 1: those of Table III


_TABLE1 = _ArmTableKind(
    "table1",
    "Table I. Mean AUC per colorization module and learning strategy",
    ("model.colorizer", "stages"),
    "Table I",
    0,
)
_TABLE3 = _ArmTableKind(
    "table3",
    "Table III. Mean AUC across datasets: transferring T (and E) from another cell",
    (TRANSFER_FIELD, "model.colorizer", "stages"),
    "Table III",
    1,
)


def _arm_table(table: pd.DataFrame, opt: TableOptions, kind: _ArmTableKind) -> StudyTable | None:
    """Table I or III (``kind``) of the results ``table``; ``None`` when the study has no cells for it."""
    cells = study_cells(table, opt.metric)
    ids = split_cells(cells)[kind.part]
    if not ids:
        return None
    layout = _layout(cells, ids, kind.row_candidates)
    agg = _aggregate(cells, ids, layout.cond_fields)
    comp = _comparisons(table, ids, [MEAN_LABEL], opt, cells, kind.family)
    columns = [field_title(f) for f in layout.row_fields] + ["n", "Mean AUC", "Δ vs baseline [CI]", "p (BH)"]
    sections, data = _table_rows(agg, layout, lambda r, cond: _mean_row(r, cond, comp, opt))
    notes = _sig_note(comp, opt, kind.family) + _comp_notes(comp, layout.row_fields)
    return StudyTable(
        kind.key, kind.title, columns, sections, _caption(layout, opt.metric), notes, data, len(layout.row_fields)
    )


def table1(table: pd.DataFrame, opt: TableOptions | None = None) -> StudyTable | None:
    """Table I: mean AUC ± std per colorizer × strategy (blocks per backbone and other conditions)."""
    return _arm_table(table, opt or TableOptions(), _TABLE1)


def table3(table: pd.DataFrame, opt: TableOptions | None = None) -> StudyTable | None:
    """Table III: for each transfer target dataset, mean AUC per source × colorizer × strategy."""
    return _arm_table(table, opt or TableOptions(), _TABLE3)


def _label_row(
    r: dict[str, Any], cond: dict[str, str], labels: Sequence[str], comp: pd.DataFrame | None, opt: TableOptions
) -> _Row:
    """One condition of Table II: n and each label's AUC ± std, marked where it differs significantly from the
    baseline; and its data record (each label's mean, std, adjusted p and BH family)."""
    n = r[f"{MEAN_LABEL}:n"] if f"{MEAN_LABEL}:n" in r else r[f"{labels[0]}:n"]
    texts, rec = [str(n)], {**cond, "n": n}
    for label in labels:
        c = _lookup(comp, cond, label)
        mean, std = r[f"{label}:mean"], r[f"{label}:std"]
        texts.append(format_pm(mean, std, opt.scale, opt.decimals) + (" *" if _significant(c, opt.alpha) else ""))
        rec |= {f"{label}:mean": mean, f"{label}:std": std}
        rec[f"{label}:p_adj"], rec[f"{label}:family"] = (math.nan, "") if c is None else (c["p_adj"], c["family"])
    return texts, rec


def table2(table: pd.DataFrame, opt: TableOptions | None = None) -> StudyTable | None:
    """Table II: per-label AUC (mean ± std) per colorizer × strategy, marks per label vs the baseline."""
    opt = opt or TableOptions()
    cells = study_cells(table, opt.metric)
    labels = [x for x in cells.labels if x != MEAN_LABEL]
    ids, _ = split_cells(cells)
    if not ids or len(labels) < 2:
        return None
    layout = _layout(cells, ids, ("model.colorizer", "stages"))
    agg = _aggregate(cells, ids, layout.cond_fields)
    comp = _comparisons(table, ids, labels, opt, cells, "Table II")
    columns = [field_title(f) for f in layout.row_fields] + ["n", *labels]
    sections, data = _table_rows(agg, layout, lambda r, cond: _label_row(r, cond, labels, comp, opt))
    notes = _sig_note(comp, opt, "Table II")[1:] + _comp_notes(comp, layout.row_fields)
    caption = _caption(layout, opt.metric)
    return StudyTable(
        "table2", "Table II. AUC per label", columns, sections, caption, notes, data, len(layout.row_fields)
    )


# ------------------------------------------------------------------------------------------ Fig. 6 data


def size_curves(table: pd.DataFrame, opt: TableOptions | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Fig. 6 data per test set (:func:`size_curves_one`): with several test sets, each section is named
    after its set (``test set NAME · section``) and a ``test_set`` column says which, so the figure draws one
    row of panels per test set and section."""
    sets = study_test_sets(table)
    if len(sets) == 1:
        return size_curves_one(for_test_set(table, sets[0]), opt)
    curves, diffs = [], []
    for s in sets:
        c, d = size_curves_one(for_test_set(table, s), opt)
        for df, out in ((c, curves), (d, diffs)):
            if df is not None and not df.empty:
                df = df.assign(test_set=s, section=[f"test set {s}" + (f" · {x}" if x else "") for x in df["section"]])
                out.append(df)
    if not curves:
        return pd.DataFrame(), None
    return pd.concat(curves, ignore_index=True), pd.concat(diffs, ignore_index=True) if diffs else None


def size_curves_one(table: pd.DataFrame, opt: TableOptions | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Fig. 6 data of one test set: per section × arm × training-set size, mean AUC ± std over repeats and the mean
    ``n_train``; and each arm's paired difference to the fine-tuned baseline (Baseline All when run,
    else Baseline) per size, with its bootstrap CI.  Needs a ``data.subset`` grid field; sections run at a
    single size are left out when some section has several (they are in Table I)."""
    opt = opt or TableOptions()
    cells = study_cells(table, opt.metric)
    if "data.subset" not in cells.grid:
        return pd.DataFrame(), None
    ids, _ = split_cells(cells)
    layout = _layout(cells, ids, ("model.colorizer", "stages", "data.subset"))
    curves = _size_curve_points(table, cells, ids, layout)
    return curves, _size_differences(table, cells, ids, curves, opt)


def _size_curve_points(table: pd.DataFrame, cells: StudyCells, ids: Sequence[str], layout: _Layout) -> pd.DataFrame:
    """The points of Fig. 6 (a): one per section × arm × training-set size, with its mean number of training
    images, mean AUC, std and number of repeats; only the sections run at several sizes when some are."""
    agg = _aggregate(cells, ids, layout.cond_fields)
    per_cell = table.drop_duplicates("cell").set_index(table.drop_duplicates("cell")["cell"].astype(str))
    n_train = pd.to_numeric(per_cell.get("n_train", pd.Series(dtype=float)), errors="coerce")
    agg["n_train"] = [
        float(np.nanmean(n_train.reindex(c).to_numpy(float))) if len(c) else math.nan for c in agg["cells"]
    ]
    agg["section"] = [
        section_text(layout.section_fields, [r[f] for f in layout.section_fields]) for _, r in agg.iterrows()
    ]
    agg["arm"] = [arm_text(r.get("model.colorizer", NONE), r.get("stages", NONE)) for _, r in agg.iterrows()]
    agg["mean"] = agg[f"{MEAN_LABEL}:mean"]
    agg["std"] = agg[f"{MEAN_LABEL}:std"]
    agg["n"] = agg[f"{MEAN_LABEL}:n"]
    agg["size"] = ["full" if v == NONE else field_text("data.subset", v) for v in agg["data.subset"]]
    agg.loc[agg["size"].str.endswith("images"), "size"] = ""  # a count says nothing more than the tick
    curves = agg[[*layout.cond_fields, "section", "arm", "size", "n_train", "mean", "std", "n"]]
    sizes = curves.groupby("section")["data.subset"].nunique()
    if (sizes >= 2).any():  # a section run at a single size draws no curve: leave it to Table I
        curves = curves[curves["section"].isin(sizes.index[sizes >= 2])]
    return curves


def _size_differences(
    table: pd.DataFrame, cells: StudyCells, ids: Sequence[str], curves: pd.DataFrame, opt: TableOptions
) -> pd.DataFrame | None:
    """The points of Fig. 6 (b): each arm's paired difference to the fine-tuned baseline (Baseline All when run,
    else Baseline) per condition, with the section, arm and ``n_train`` of its point in ``curves`` (matched on
    the condition's grid fields); ``None`` without baseline cells."""
    if "stages" not in cells.grid or not cells.fields.loc[ids, "stages"].isin(BASELINES).any():
        return None
    have = set(cells.fields.loc[ids, "stages"])
    ref = "baseline-all" if "baseline-all" in have else "baseline"
    comp = compare_to_baseline(
        table,
        cells=ids, baseline=ref, labels=[MEAN_LABEL], test=opt.test, metric=opt.metric, n_boot=opt.n_boot,
        seed=opt.seed, level=opt.level, family="Fig. 6",
    )  # fmt: skip
    if comp.empty:
        return None
    key = [f for f in curves.columns if f in cells.grid and f in comp.columns]
    return comp.merge(curves[[*key, "section", "arm", "n_train"]], on=key, how="inner")


__all__ = [
    "INTERNAL",
    "TEST_SET",
    "StudyTable",
    "TableOptions",
    "field_title",
    "for_test_set",
    "format_diff",
    "format_p",
    "format_pm",
    "per_test_set",
    "size_curves",
    "split_cells",
    "study_test_sets",
    "table1",
    "table2",
    "table3",
    "transfer_targets",
]
