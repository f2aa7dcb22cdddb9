"""A study's report: a static HTML page (``index.html``: overview, Tables I–III, Figs. 4–6, every cell),
a secondary page (``cells.html``: LR range tests and training curves per cell), the tables as Markdown
and LaTeX (``tables/``), the comparisons behind the significance marks (``comparisons.csv``) and the
figures as PNG files next to the pages (``figures/``, ``cells/``).  No JavaScript; open it in a browser.

Sections appear only when the study has what they need; otherwise the page says why in one line.
The sections of the tables and figures are built in :mod:`~medcolor.report.sections`, the cells page in
:mod:`~medcolor.report.cells_page`, what comes from the run directories in :mod:`~medcolor.report.rundirs`;
progress is logged through ``logging.getLogger("medcolor.report.html")``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.report.cells_page import OPERATING_KEYS, cell_details, cells_table, sort_cells
from medcolor.report.curves import val_curves_section
from medcolor.report.names import field_title, value_text
from medcolor.report.rundirs import CONSTANT_FIELDS, add_constant_fields, run_dir_of
from medcolor.report.sections import Section, fig4_colorized, fig5_labels, fig6_sizes, table_sections
from medcolor.report.tables import TableOptions, for_test_set, split_cells, study_test_sets
from medcolor.study.results import read_results
from medcolor.study.stats import (
    BASELINES,
    MEAN_LABEL,
    StudyCells,
    check_results,
    compare_to_baseline,
    study_cells,
    value_sort_key,
)
from medcolor.utils import atomic_path, write_text_atomic

log = logging.getLogger(__name__)


def _env():
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(  # the report's own templates, sandboxed like a study document's
        loader=jinja2.PackageLoader("medcolor.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def report_comparisons(
    table: pd.DataFrame, cells: StudyCells, ids: tuple[list[str], list[str]], opt: TableOptions
) -> pd.DataFrame:
    """Every comparison of the report's tables, each in the BH family of the table that shows it (named in
    the ``family`` column): Table I (mean AUC), Table II (per label, with 2 labels or more), Table III."""
    own = [x for x in cells.labels if x != MEAN_LABEL]
    kw = {"test": opt.test, "metric": opt.metric, "n_boot": opt.n_boot, "seed": opt.seed, "level": opt.level}
    parts = [("Table I", ids[0], [MEAN_LABEL]), ("Table III", ids[1], [MEAN_LABEL])]
    if len(own) >= 2:
        parts.insert(1, ("Table II", ids[0], own))
    frames = [
        compare_to_baseline(table, cells=c, labels=labels, family=family, **kw) for family, c, labels in parts if c
    ]
    return pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)


def report_families(study_dir: str | os.PathLike, table: pd.DataFrame, metric: str, test: str) -> pd.DataFrame:
    """The comparisons of a study's report (:func:`report_comparisons`) with their families, computed from
    its results table as :func:`build_report` does (empty when the study has no baselines)."""
    table = add_constant_fields(table, Path(study_dir))
    cells = study_cells(table, metric)
    if "stages" not in cells.grid or not cells.fields["stages"].isin(BASELINES).any():
        return pd.DataFrame(columns=["label", "pairs", "test", "p_adj", "family"])
    return report_comparisons(table, cells, split_cells(cells), TableOptions(metric=metric, test=test, n_boot=0))


def with_report_families(
    result: pd.DataFrame, study_dir: str | os.PathLike, table: pd.DataFrame, metric: str, test: str
) -> pd.DataFrame:
    """``result`` (of :func:`medcolor.study.stats.compare`) with the rows that are the same test as one of the
    report's tables (same label, same pairs of cells) given that table's adjusted p and family, so that
    ``study compare`` and the report show one adjusted p per test."""
    rep = report_families(study_dir, table, metric, test)
    rep = rep[rep["pairs"] != ""].drop_duplicates(["label", "pairs", "test"])
    hit = result[["label", "pairs", "test"]].merge(rep[["label", "pairs", "test", "p_adj", "family"]], how="left")
    found = hit["family"].notna().to_numpy()
    result = result.copy()
    result.loc[found, "p_adj"] = hit.loc[found, "p_adj"].to_numpy()
    result.loc[found, "family"] = hit.loc[found, "family"].to_numpy()
    return result


def _overview(table: pd.DataFrame, cells: StudyCells, meta: pd.DataFrame, metric: str, note: str) -> dict[str, Any]:

    def uniq(col: str) -> str:
        if col not in table.columns:
            return "–"
        return ", ".join(sorted({str(v) for v in table[col].dropna().unique()})) or "–"

    wall = pd.to_numeric(meta.get("wall_s"), errors="coerce").sum() if "wall_s" in meta.columns else math.nan
    return {
        "study": uniq("study"),
        "n_cells": len(cells.fields),
        "labels": [x for x in cells.labels if x != MEAN_LABEL],
        "grid": [
            (f, field_title(f), ", ".join(value_text(f, v) for v in sorted(set(cells.fields[f]), key=value_sort_key)))
            for f in cells.grid
        ],
        "metric": "test AUC" if metric == "test_auc" else "validation AUC",
        "metric_note": note,
        "wall": f"{wall / 3600:.2f} h" if np.isfinite(wall) and wall >= 3600 else f"{wall:.0f} s",
        "git": uniq("git_commit"),
        "medcolor": uniq("medcolor_version"),
        "torch": uniq("torch_version"),
        "built": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def build_report(
    study_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    metric: str = "test_auc",
    test: str = "t",
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    n_images: int = 6,
) -> Path:
    """Write the report of the study in ``study_dir`` (its ``results.parquet`` and the cells' run
    directories) into ``out_dir``; returns the path of ``index.html``."""
    study_dir, out = Path(study_dir), Path(out_dir)
    full, metric, note = _read_study(study_dir, metric)  # every test set: the tables, Fig. 6 and the cells page
    table = for_test_set(full, study_test_sets(full)[0])  # the internal one: cells, comparisons, Figs. 4-5
    opt = TableOptions(metric=metric, test=test, alpha=alpha, n_boot=n_boot, seed=seed)
    cells = study_cells(table, metric)
    mean_rows = table[table["label"].astype(str) == MEAN_LABEL] if (table["label"] == MEAN_LABEL).any() else table
    meta = mean_rows.drop_duplicates("cell").set_index("cell").reindex(cells.fields.index)
    out.mkdir(parents=True, exist_ok=True)

    log.info("report of %d cells: tables", len(cells.fields))
    t1_ids, t3_ids = split_cells(cells)
    sections, tables = table_sections(full, opt, out, n_labels=len([x for x in cells.labels if x != MEAN_LABEL]))
    if "stages" in cells.grid and cells.fields["stages"].isin(BASELINES).any():
        comp = report_comparisons(table, cells, (t1_ids, t3_ids), opt)
        with atomic_path(out / "comparisons.csv") as tmp:
            comp.to_csv(tmp, index=False)

    log.info("report: figures")
    sections.append(fig4_colorized(cells, meta, study_dir, out, n_images))
    sections.append(fig5_labels(cells, meta, study_dir, out))
    sections.append(_fig6_with_data(full, opt, out))
    sections.append(val_curves_section(cells, meta, study_dir, out, scale=opt.scale))

    log.info("report: cells")
    details = cell_details(cells, meta, full, study_dir, out)
    overview = _overview(table, cells, meta, metric, note)
    overview["test_sets"] = study_test_sets(full)
    context = {
        "overview": overview,
        "sections": sections,
        "cells_table": cells_table(cells, meta, details),
        "table_files": [t.key for t in tables],
        "has_comparisons": (out / "comparisons.csv").is_file(),
        "split": {"table1": len(t1_ids), "table3": len(t3_ids)},
    }
    index = _write_pages(out, context, details)
    log.debug("report written to %s", index)
    return index


def _read_study(study_dir: Path, metric: str) -> tuple[pd.DataFrame, str, str]:
    """The study's results table (every test set, with the fields constant over the study from the run
    directories), checked; the metric the report shows (the validation AUC when the study has no test split) and
    the note that says so."""
    table = read_results(study_dir)
    check_results(table, metric)
    table = table.assign(cell=table["cell"].astype(str))
    note = ""
    if metric == "test_auc" and table["test_auc"].isna().all():
        metric, note = "val_auc", "the study has no test split: tables and figures use the validation AUC"
    return add_constant_fields(table, study_dir), metric, note


def _fig6_with_data(full: pd.DataFrame, opt: TableOptions, out: Path) -> Section:
    """Fig. 6's section, with the numbers behind it written beside the figure (``figures/fig6_curves.csv``,
    ``figures/fig6_differences.csv``)."""
    fig6, curves, diffs = fig6_sizes(full, opt, out)
    for name, df in (("fig6_curves.csv", curves), ("fig6_differences.csv", diffs)):
        if df is not None:
            with atomic_path(out / "figures" / name) as tmp:
                df.to_csv(tmp, index=False)
    return fig6


def _write_pages(out: Path, context: dict[str, Any], details: list[dict[str, Any]]) -> Path:
    """Render ``index.html`` (the report page, from ``context``) and ``cells.html`` (the cells' ``details``)."""
    env = _env()
    index = out / "index.html"
    write_text_atomic(index, env.get_template("index.html.j2").render(**context))
    write_text_atomic(
        out / "cells.html",
        env.get_template("cells.html.j2").render(
            overview=context["overview"], cells=details, operating_keys=OPERATING_KEYS
        ),
    )
    return index


__all__ = [
    "CONSTANT_FIELDS",
    "Section",
    "add_constant_fields",
    "build_report",
    "cell_details",
    "cells_table",
    "fig4_colorized",
    "fig5_labels",
    "fig6_sizes",
    "run_dir_of",
    "sort_cells",
    "table_sections",
    "with_report_families",
]
