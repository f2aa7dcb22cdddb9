"""A study's report: a static HTML page (``index.html``: overview, Tables I–III, Figs. 4–6, every cell),
a secondary page (``cells.html``: LR range tests and training curves per cell), the tables as Markdown
and LaTeX (``tables/``), the comparisons behind the significance marks (``comparisons.csv``) and the
figures as PNG files next to the pages (``figures/``, ``cells/``).  No JavaScript; open it in a browser.

Sections appear only when the study has what they need; otherwise the page says why in one line.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import DataError, MedcolorError
from medcolor.report.tables import (
    StudyTable,
    TableOptions,
    field_title,
    row_order_key,
    size_curves,
    split_cells,
    table1,
    table2,
    table3,
    value_text,
)
from medcolor.study.stats import (
    BASELINES,
    MEAN_LABEL,
    NONE,
    REPEAT_FIELDS,
    TRANSFER_FIELD,
    StudyCells,
    check_results,
    compare_to_baseline,
    study_cells,
    value_sort_key,
)
from medcolor.utils import atomic_path, write_text_atomic

#: run-config fields read from the cells' run directories when the study does not vary them
CONSTANT_FIELDS = ("data.dataset", "model.backbone", "model.colorizer", "stages")


@dataclass
class Section:
    """One part of the page: present (with content) or absent (with the reason)."""

    key: str
    title: str
    reason: str = ""
    tables: list[StudyTable] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)  # {"src", "alt", "caption"}
    text: str = ""

    @property
    def present(self) -> bool:
        return not self.reason

    @property
    def short(self) -> str:
        """ "Table I", "Fig. 4"... for the navigation bar."""
        return self.title.split(". ")[0] if self.title.startswith("Table") else ". ".join(self.title.split(". ")[:2])


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "cell"


def _log(log_fn: Any, msg: str) -> None:
    if log_fn is not None:
        log_fn(msg)


# ------------------------------------------------------------------------------------------ reading


def read_results(study_dir: str | os.PathLike) -> pd.DataFrame:
    path = Path(study_dir) / "results.parquet"
    if not path.is_file():
        raise DataError(f"{path} does not exist: is {study_dir} a study directory, and has a cell finished?")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"cannot read {path}: {exc}") from exc


def run_dir_of(study_dir: Path, value: Any) -> Path | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return None
    p = Path(str(value))
    return p if p.is_absolute() else study_dir / p


def _run_config(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return None
    import yaml

    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or None
    except (OSError, yaml.YAMLError):
        return None


def _config_value(cfg: dict[str, Any], key: str) -> Any:
    if key == "stages":
        return ",".join(str(s.get("strategy")) for s in cfg.get("stages") or [])
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if key == "model.colorizer" and node is None:  # training's default: replicate for baselines
        first = (cfg.get("stages") or [{}])[0].get("strategy")
        return "replicate" if first in BASELINES else "pixelshuffle"
    return node


def add_constant_fields(table: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    """Add the run-config values the tables are organised by (strategy, colorizer, backbone, dataset)
    as columns when the study does not vary them, read from the cells' ``config.yaml``."""
    missing = [f for f in CONSTANT_FIELDS if f not in table.columns]
    if not missing:
        return table
    per_cell = table.drop_duplicates("cell")
    values: dict[str, dict[str, Any]] = {f: {} for f in missing}
    for cell, rd in zip(per_cell["cell"], per_cell["run_dir"], strict=True):
        cfg = _run_config(run_dir_of(study_dir, rd))
        if cfg is None:
            continue
        for f in missing:
            v = _config_value(cfg, f)
            if v is not None:
                values[f][cell] = v
    out = table.copy()
    for f in missing:
        if values[f] and len(values[f]) == len(per_cell):
            out[f] = out["cell"].map(values[f]).astype(str)
    return out


# ------------------------------------------------------------------------------------------ figures


def _predictions_images(run_dir: Path | None, study_dir: Path, n: int) -> tuple[list[Path], str]:
    """Up to ``n`` input images (evenly spaced in path order) of the split a cell was evaluated on."""
    for split in ("test", "val"):
        f = run_dir / split / "predictions.csv" if run_dir is not None else None
        if f is not None and f.is_file():
            paths = pd.read_csv(f, usecols=["path"])["path"].astype(str).tolist()
            break
    else:
        return [], ""
    found = []
    for p in sorted(set(paths)):
        q = Path(p)
        for cand in [q] if q.is_absolute() else [q, study_dir / q, run_dir / q]:
            if cand.is_file():
                found.append(cand)
                break
    if len(found) <= n:
        return found, split
    idx = np.unique(np.linspace(0, len(found) - 1, n).round().astype(int))
    return [found[i] for i in idx], split


def fig4_colorized(
    cells: StudyCells, meta: pd.DataFrame, study_dir: Path, out: Path, n_images: int, max_rows: int = 24
) -> Section:
    from medcolor.report.figures import colorization_grid

    sec = Section("fig4", "Fig. 4. Colorized images: what E sees after each colorization module")
    has_t = [
        c
        for c in cells.fields.index
        if (rd := run_dir_of(study_dir, meta.loc[c, "run_dir"])) is not None
        and (rd / "colorizer.safetensors").is_file()
    ]
    if not has_t:
        sec.reason = (
            "no cell has a learned colorization module to show (no colorizer.safetensors in the run directories: "
            "only baselines, or the run directories are not here)"
        )
        return sec
    F = cells.fields
    datasets = sorted(set(F.loc[has_t, "data.dataset"])) if "data.dataset" in F.columns else [""]
    cond = [f for f in cells.grid if f not in REPEAT_FIELDS and f != "data.dataset"]
    reasons = []
    for ds in datasets:
        ids = [c for c in has_t if not ds or F.loc[c, "data.dataset"] == ds]
        chosen: dict[tuple[str, ...], str] = {}
        for c in sorted(ids, key=lambda c: tuple(value_sort_key(F.loc[c, f]) for f in REPEAT_FIELDS if f in F.columns)):
            chosen.setdefault(tuple(F.loc[c, f] for f in cond), c)  # the first repeat of each condition
        arm = [f for f in ("model.colorizer", "stages") if f in cond]  # always named, then what else varies
        vary = arm + [f for f in cond if f not in arm and len({k[cond.index(f)] for k in chosen}) > 1]
        order = sorted(
            chosen.items(),
            key=lambda kv: row_order_key(
                F.loc[kv[1]].get("model.colorizer", NONE), F.loc[kv[1]].get("stages", NONE),
                F.loc[kv[1]].get(TRANSFER_FIELD, NONE),
            ),
        )  # fmt: skip
        images, split = _predictions_images(
            run_dir_of(study_dir, meta.loc[order[0][1], "run_dir"]), study_dir, n_images
        )
        if not images:
            reasons.append(f"{ds or 'the study'}: the input images of the test split (predictions.csv) are not here")
            continue
        rows = {}
        for _, c in order[:max_rows]:
            rows[" · ".join(value_text(f, F.loc[c, f]) for f in vary) or c] = run_dir_of(
                study_dir, meta.loc[c, "run_dir"]
            )
        path = out / "figures" / f"fig4_colorized{'_' + _slug(ds) if ds else ''}.png"
        try:
            colorization_grid({k: v / "colorizer.safetensors" for k, v in rows.items()}, images, path)
        except (MedcolorError, OSError, RuntimeError, ValueError) as exc:
            reasons.append(f"{ds or 'the study'}: cannot colorize the images: {exc}")
            continue
        rep = "; ".join(f"{f} {F.loc[order[0][1], f]}" for f in REPEAT_FIELDS if f in F.columns)
        caption = (
            f"{len(images)} images of the {split} split{' of ' + ds if ds else ''} (top row) through "
            f"the colorization module T of each condition ({'first repeat: ' + rep if rep else 'one cell each'}); "
            "T's output shown through ImageNet's normalisation, i.e. the RGB picture the pretrained E receives."
        )
        if len(order) > max_rows:
            caption += f" The first {max_rows} of {len(order)} conditions."
        sec.images.append({"src": path.relative_to(out).as_posix(), "alt": f"Fig. 4 {ds}", "caption": caption})
    if not sec.images:
        sec.reason = "; ".join(reasons)
    elif reasons:
        sec.text = "Not shown: " + "; ".join(reasons)
    return sec


def fig5_labels(cells: StudyCells, meta: pd.DataFrame, study_dir: Path, out: Path) -> Section:
    sec = Section("fig5", "Fig. 5. Labels of the full training set and of each subset size")
    F = cells.fields
    if "data.subset" not in F.columns or not (F["data.subset"] != NONE).any():
        sec.reason = "the study does not vary the training-set size (no data.subset grid field)"
        return sec
    from medcolor.config import RunConfig
    from medcolor.data.bundle import build_data
    from medcolor.data.summary import label_counts
    from medcolor.report.figures import plot_label_distribution

    varied = F[F["data.subset"] != NONE]
    datasets = sorted(set(varied["data.dataset"])) if "data.dataset" in F.columns else [""]
    reasons = []
    for ds in datasets:
        ids = [c for c in F.index if not ds or F.loc[c, "data.dataset"] == ds]
        by_size: dict[str, str] = {}
        for c in sorted(ids, key=lambda c: tuple(value_sort_key(F.loc[c, f]) for f in REPEAT_FIELDS if f in F.columns)):
            by_size.setdefault(F.loc[c, "data.subset"], c)
        panels: dict[str, pd.DataFrame] = {}
        try:
            for size in sorted(by_size, key=lambda v: (v == NONE, -float(v) if v != NONE else 0)):
                rd = run_dir_of(study_dir, meta.loc[by_size[size], "run_dir"])
                if rd is None or not (rd / "config.yaml").is_file():
                    raise DataError(f"the run directory of cell {by_size[size]} (its config.yaml) is not here")
                cfg = RunConfig.from_yaml(rd / "config.yaml")
                cfg.data.mean, cfg.data.std, cfg.data.cache_dir = None, None, None
                if not panels:  # the full training set (after the validation/test split), once
                    full_cfg = RunConfig.from_dict(cfg.to_dict())
                    full_cfg.data.subset = None
                    train = build_data(full_cfg.data, synthetic_dir=rd / "synthetic-data").train
                    panels[f"full training set ({len(train):,} images)"] = label_counts(train)
                if size == NONE:
                    continue
                train = build_data(cfg.data, synthetic_dir=rd / "synthetic-data").train
                n, what = len(train), value_text("data.subset", size)
                head = f"subset of {n:,} images" if what.endswith("images") else f"subset {what}"
                extra = [] if what.endswith("images") else [f"{n:,} images"]
                if "data.subset_draw" in F.columns:
                    extra.append(f"draw {cfg.data.subset_draw}")
                panels[head + (f" ({', '.join(extra)})" if extra else "")] = label_counts(train)
        except (MedcolorError, OSError, ValueError) as exc:
            reasons.append(f"{ds or 'the study'}: cannot read the training labels: {exc}")
            continue
        path = out / "figures" / f"fig5_labels{'_' + _slug(ds) if ds else ''}.png"
        plot_label_distribution(panels, path)
        sec.images.append(
            {
                "src": path.relative_to(out).as_posix(),
                "alt": f"Fig. 5 {ds}",
                "caption": "Positive, negative and uncertain labels per observation in the training set "
                f"{'of ' + ds + ' ' if ds else ''}and in each label-proportional subset (first draw).",
            }
        )
    if not sec.images:
        sec.reason = "; ".join(reasons)
    elif reasons:
        sec.text = "Not shown: " + "; ".join(reasons)
    return sec


def fig6_sizes(
    table: pd.DataFrame, opt: TableOptions, out: Path
) -> tuple[Section, pd.DataFrame | None, pd.DataFrame | None]:
    """Fig. 6 and the numbers behind it (curves per arm and size; paired differences to the baseline)."""
    from medcolor.report.figures import plot_size_curves

    sec = Section("fig6", "Fig. 6. Mean AUC against the training-set size")
    curves, diffs = size_curves(table, opt)
    if curves.empty:
        sec.reason = "the study does not vary the training-set size (no data.subset grid field)"
        return sec, None, None
    if curves["data.subset"].nunique() < 2:
        sec.reason = "the study has a single training-set size"
        return sec, None, None
    path = out / "figures" / "fig6_sizes.png"
    plot_size_curves(curves, diffs, path, scale=opt.scale)
    which = "test" if opt.metric == "test_auc" else "validation"
    cap = (
        f"(a) mean {which} AUC ± std over repeats (seeds × subset draws) against the number of training images; "
        "one line per colorizer × strategy."
    )
    if diffs is not None:
        ref = ", ".join(sorted(set(diffs["baseline"].dropna())))
        cap += (
            f" (b) paired difference of each arm to {ref} at each size (mean over matched repeats) with its "
            f"{opt.level:.0%} bootstrap CI."
        )
    sec.images.append({"src": path.relative_to(out).as_posix(), "alt": "Fig. 6", "caption": cap})
    return sec, curves, diffs


# ------------------------------------------------------------------------------------------ cells page


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def sort_cells(cells: StudyCells) -> list[str]:
    """Cell ids in reading order: by condition (baselines first, as in the tables), then by repeat."""

    F = cells.fields
    arm = ("model.colorizer", "stages", TRANSFER_FIELD)
    other = [f for f in cells.grid if f not in REPEAT_FIELDS and f not in arm]
    reps = [f for f in REPEAT_FIELDS if f in cells.grid]

    def key(c: str) -> tuple:
        r = F.loc[c]
        return (
            *(value_sort_key(r[f]) for f in other),
            row_order_key(r.get("model.colorizer", NONE), r.get("stages", NONE), r.get(TRANSFER_FIELD, NONE)),
            *(value_sort_key(r[f]) for f in reps),
            c,
        )

    return sorted(F.index, key=key)


def cell_details(
    cells: StudyCells, meta: pd.DataFrame, table: pd.DataFrame, study_dir: Path, out: Path
) -> list[dict[str, Any]]:
    """Per cell: grid values, AUCs, stages, and its training-curve / LR-range-test images under ``out/cells``."""
    from medcolor.report.figures import plot_history, plot_lr_find

    order = sort_cells(cells)
    details = []
    for c in order:
        rd = run_dir_of(study_dir, meta.loc[c, "run_dir"])
        d: dict[str, Any] = {
            "id": c,
            "anchor": "cell-" + _slug(c),
            "fields": [(field_title(f) + f" ({f})", value_text(f, cells.fields.loc[c, f])) for f in cells.grid],
            "run_dir": str(meta.loc[c, "run_dir"]),
            "labels": [],
            "stages": [],
            "images": [],
            "missing": "",
        }
        rows = table[table["cell"].astype(str) == c].set_index("label")
        for label in cells.labels:
            if label not in rows.index:
                continue
            r = rows.loc[label]
            d["labels"].append(
                {
                    "label": label,
                    "val": _fmt(r.get("val_auc")),
                    "test": _fmt(r.get("test_auc")),
                    "ci": f"{_fmt(r.get('test_ci_low'))}–{_fmt(r.get('test_ci_high'))}"
                    if pd.notna(r.get("test_ci_low"))
                    else "",
                }
            )
        if rd is None or not rd.is_dir():
            d["missing"] = f"run directory {meta.loc[c, 'run_dir']} is not here"
            details.append(d)
            continue
        summary = _read_json(rd / "summary.json") or {}
        if not summary:
            d["missing"] = "no summary.json in the run directory: no training record to show"
        target = out / "cells" / _slug(c)
        histories = {}
        for s in summary.get("stages") or []:
            name = f"{int(s.get('index', 0)) + 1}-{s.get('strategy')}"
            d["stages"].append(
                {
                    "name": name,
                    "lr": f"{s['lr']:.3g}" if isinstance(s.get("lr"), (int, float)) else str(s.get("lr", "")),
                    "best": _fmt(s.get("best_val_mean_auc")),
                    "step": f"{s.get('best_step', '')} / {s.get('total_steps', '')}",
                    "time": f"{s.get('time_s', 0):.0f} s" if isinstance(s.get("time_s"), (int, float)) else "",
                    "params": f"{s['trainable_parameters']:,}"
                    if isinstance(s.get("trainable_parameters"), int)
                    else "",
                }
            )
            h = _read_json(rd / name / "history.json")
            if h:
                histories[name] = h
            png, js = rd / name / "lr_find.png", rd / name / "lr_find.json"
            dest = target / f"{name}_lr_find.png"
            if png.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dest) as tmp:
                    shutil.copyfile(png, tmp)
            elif js.is_file() and (lf := _read_json(js)):
                plot_lr_find(lf.get("lr", []), lf.get("loss", []), lf.get("suggestion"), dest, f"LR range test: {name}")
            else:
                continue
            d["images"].append({"src": dest.relative_to(out).as_posix(), "alt": f"{c} {name} LR range test"})
        if histories:
            dest = target / "history.png"
            try:
                plot_history(histories, dest)
                d["images"].insert(0, {"src": dest.relative_to(out).as_posix(), "alt": f"{c} training curves"})
            except (KeyError, TypeError, ValueError) as exc:
                d["missing"] = f"history.json unreadable: {exc}"
        details.append(d)
    return details


def _fmt(v: Any, digits: int = 4) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else f"{f:.{digits}f}"


# ------------------------------------------------------------------------------------------ page


def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("medcolor.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


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


def _cells_table(cells: StudyCells, meta: pd.DataFrame, details: list[dict[str, Any]]) -> dict[str, Any]:
    vary = [f for f in cells.grid if cells.fields[f].nunique() > 1] or cells.grid
    rows = []
    for d in details:
        c = d["id"]
        m = cells.values.loc[c, MEAN_LABEL] if MEAN_LABEL in cells.values.columns else math.nan
        rows.append(
            {
                "id": c,
                "anchor": d["anchor"],
                "values": [value_text(f, cells.fields.loc[c, f]) for f in vary],
                "mean": _fmt(m, 3),
                "ci": f"{_fmt(meta.loc[c, 'test_ci_low'], 3)}, {_fmt(meta.loc[c, 'test_ci_high'], 3)}"
                if "test_ci_low" in meta.columns and pd.notna(meta.loc[c, "test_ci_low"])
                else "",
                "n_train": f"{int(meta.loc[c, 'n_train']):,}" if pd.notna(meta.loc[c].get("n_train")) else "",
                "iterations": f"{int(meta.loc[c, 'iterations']):,}" if pd.notna(meta.loc[c].get("iterations")) else "",
                "wall": f"{float(meta.loc[c, 'wall_s']):.0f} s" if pd.notna(meta.loc[c].get("wall_s")) else "",
            }
        )
    return {"columns": [field_title(f) for f in vary], "rows": rows}


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
    log_fn: Any = None,
) -> Path:
    """Write the report of the study in ``study_dir`` (its ``results.parquet`` and the cells' run
    directories) into ``out_dir``; returns the path of ``index.html``."""
    study_dir, out = Path(study_dir), Path(out_dir)
    table = read_results(study_dir)
    check_results(table, metric)
    table = table.assign(cell=table["cell"].astype(str))
    note = ""
    if metric == "test_auc" and table["test_auc"].isna().all():
        metric, note = "val_auc", "the study has no test split: tables and figures use the validation AUC"
    table = add_constant_fields(table, study_dir)
    opt = TableOptions(metric=metric, test=test, alpha=alpha, n_boot=n_boot, seed=seed)
    cells = study_cells(table, metric)
    mean_rows = table[table["label"].astype(str) == MEAN_LABEL] if (table["label"] == MEAN_LABEL).any() else table
    meta = mean_rows.drop_duplicates("cell").set_index("cell").reindex(cells.fields.index)
    out.mkdir(parents=True, exist_ok=True)

    _log(log_fn, f"report of {len(cells.fields)} cells: tables")
    t1_ids, t3_ids = split_cells(cells)
    sections: list[Section] = []
    tables: list[StudyTable] = []
    labels = [x for x in cells.labels if x != MEAN_LABEL]
    for key, title, fn, absent in (
        ("table1", "Table I. Mean AUC per colorization module and learning strategy", table1,
         "every cell belongs to a dataset that T or E was transferred to: see Table III"),
        ("table2", "Table II. AUC per label", table2,
         "the study has a single label: Table II would repeat Table I" if len(labels) < 2 else "no cells for Table I"),
        ("table3", "Table III. Transfer across datasets", table3,
         "no cell transfers T or E from another cell of the study (no transfer grid field, or it is always empty)"),
    ):  # fmt: skip
        t = fn(table, opt)
        sec = Section(key, title, reason="" if t is not None else absent)
        if t is not None:
            sec.tables.append(t)
            tables.append(t)
            for ext, text in (("md", t.to_markdown()), ("tex", t.to_latex())):
                write_text_atomic(out / "tables" / f"{key}.{ext}", text)
        sections.append(sec)
    if tables:
        write_text_atomic(out / "tables" / "tables.md", "\n".join(t.to_markdown() for t in tables))
        write_text_atomic(out / "tables" / "tables.tex", "\n".join(t.to_latex() for t in tables))
    if "stages" in cells.grid and cells.fields["stages"].isin(BASELINES).any():
        comp = compare_to_baseline(table, test=test, metric=metric, n_boot=n_boot, seed=seed)
        with atomic_path(out / "comparisons.csv") as tmp:
            comp.to_csv(tmp, index=False)

    _log(log_fn, "figures")
    sections.append(fig4_colorized(cells, meta, study_dir, out, n_images))
    sections.append(fig5_labels(cells, meta, study_dir, out))
    fig6, curves, diffs = fig6_sizes(table, opt, out)
    for name, df in (("fig6_curves.csv", curves), ("fig6_differences.csv", diffs)):
        if df is not None:
            with atomic_path(out / "figures" / name) as tmp:
                df.to_csv(tmp, index=False)
    sections.append(fig6)

    _log(log_fn, "cells")
    details = cell_details(cells, meta, table, study_dir, out)
    env = _env()
    overview = _overview(table, cells, meta, metric, note)
    context = {
        "overview": overview,
        "sections": sections,
        "cells_table": _cells_table(cells, meta, details),
        "table_files": [t.key for t in tables],
        "has_comparisons": (out / "comparisons.csv").is_file(),
        "split": {"table1": len(t1_ids), "table3": len(t3_ids)},
    }
    index = out / "index.html"
    write_text_atomic(index, env.get_template("index.html.j2").render(**context))
    write_text_atomic(out / "cells.html", env.get_template("cells.html.j2").render(overview=overview, cells=details))
    _log(log_fn, f"report written to {index}")
    return index


__all__ = [
    "CONSTANT_FIELDS",
    "Section",
    "add_constant_fields",
    "build_report",
    "cell_details",
    "fig4_colorized",
    "fig5_labels",
    "fig6_sizes",
    "read_results",
    "run_dir_of",
    "sort_cells",
]
