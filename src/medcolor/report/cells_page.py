"""The cells page of the report (``cells.html``): every cell in reading order with its grid values, AUCs,
stages, training curves and LR range tests; and the list of cells on the main page."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from medcolor.report.names import field_title, row_order_key, slug, value_text
from medcolor.report.rundirs import experiment_logs, read_json, run_dir_of
from medcolor.report.tables import for_test_set, study_test_sets
from medcolor.study.stats import MEAN_LABEL, NONE, REPEAT_FIELDS, TRANSFER_FIELD, StudyCells, value_sort_key
from medcolor.utils import atomic_path


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
    details = []
    for c in sort_cells(cells):
        rd = run_dir_of(study_dir, meta.loc[c, "run_dir"])
        d: dict[str, Any] = {
            "id": c,
            "anchor": "cell-" + slug(c),
            "fields": [(field_title(f) + f" ({f})", value_text(f, cells.fields.loc[c, f])) for f in cells.grid],
            "run_dir": str(meta.loc[c, "run_dir"]),
            "labels": _label_rows(cells, table[table["cell"].astype(str) == c]),
            "stages": [],
            "images": [],
            "missing": "",
            "logs": [],
        }
        d["operating"], d["operating_images"] = _operating(rd, out / "cells" / slug(c), out)
        if rd is None or not rd.is_dir():
            d["missing"] = f"run directory {meta.loc[c, 'run_dir']} is not here"
        else:
            _add_training_record(d, rd, out / "cells" / slug(c), out)
        details.append(d)
    return details


def _label_rows(cells: StudyCells, mine: pd.DataFrame) -> list[dict[str, str]]:
    """A cell's AUCs per test set (the first: its own held-out split, with the validation AUC) and label."""
    sets = study_test_sets(mine)
    out = []
    for ts in sets:
        rows = for_test_set(mine, ts).set_index("label")
        for label in [x for x in cells.labels if x in rows.index]:
            r = rows.loc[label]
            ci = (
                f"{auc100(r.get('test_ci_low'))}–{auc100(r.get('test_ci_high'))}"
                if pd.notna(r.get("test_ci_low"))
                else ""
            )
            out.append(
                {
                    "set": ts if len(sets) > 1 else "",
                    "label": label,
                    "val": auc100(r.get("val_auc")) if ts == sets[0] else "",
                    "test": auc100(r.get("test_auc")),
                    "ci": ci,
                }
            )
    return out


def _stage_row(s: dict[str, Any], name: str) -> dict[str, str]:
    """One stage of ``summary.json`` as the page shows it."""
    lr, t, n = s.get("lr"), s.get("time_s"), s.get("trainable_parameters")
    return {
        "name": name,
        "lr": f"{lr:.3g}" if isinstance(lr, (int, float)) else str(lr or ""),
        "best": auc100(s.get("best_val_mean_auc")),
        "step": f"{s.get('best_step', '')} / {s.get('total_steps', '')}",
        "time": f"{t:.0f} s" if isinstance(t, (int, float)) else "",
        "params": f"{n:,}" if isinstance(n, int) else "",
    }


def _add_training_record(d: dict[str, Any], rd: Path, target: Path, out: Path) -> None:
    """The stages of a run (``summary.json``), their LR range tests and the training curves, into ``d``."""
    from medcolor.report.figures import plot_history

    summary = read_json(rd / "summary.json") or {}
    if not summary:
        d["missing"] = "no summary.json in the run directory: no training record to show"
    histories = {}
    for s in summary.get("stages") or []:
        name = f"{int(s.get('index', 0)) + 1}-{s.get('strategy')}"
        d["stages"].append(_stage_row(s, name))
        if h := read_json(rd / name / "history.json"):
            histories[name] = h
        dest = _lr_find_image(rd / name, target / f"{name}_lr_find.png", name)
        if dest is not None:
            d["images"].append({"src": dest.relative_to(out).as_posix(), "alt": f"{d['id']} {name} LR range test"})
    d["logs"] = log_links(rd, target, out)
    if histories:
        dest = target / "history.png"
        try:
            plot_history(histories, dest)
            d["images"].insert(0, {"src": dest.relative_to(out).as_posix(), "alt": f"{d['id']} training curves"})
        except (KeyError, TypeError, ValueError) as exc:
            d["missing"] = f"history.json unreadable: {exc}"


def log_links(rd: Path, target: Path, out: Path) -> list[dict[str, str]]:
    """Links from the page in ``out`` to the run's experiment logs (:func:`~medcolor.report.rundirs.experiment_logs`):
    each CSV log copied under ``target`` (the report keeps it when moved), the TensorBoard and MLflow folders
    linked where they are, relative to ``out``.  Each: {"text", "href", "title"}."""
    links = []
    for log in experiment_logs(rd):
        name = " ".join(x for x in (log["stage"], log["version"]) if x)
        if log["kind"] == "CSV":
            dest = target / f"{log['stage']}_{log['version']}_metrics.csv"
            _copy(log["path"], dest)
            href, title = dest.relative_to(out).as_posix(), "Lightning's CSV log: loss and AUCs per logged step"
        else:
            href = Path(os.path.relpath(log["path"], out)).as_posix()
            tool = "tensorboard --logdir" if log["kind"] == "TensorBoard" else "mlflow ui --backend-store-uri"
            title = f"{tool} {log['path']}"
        links.append({"text": f"{log['kind']} {name}".strip(), "href": href, "title": title})
    return links


def _lr_find_image(stage_dir: Path, dest: Path, name: str) -> Path | None:
    """The stage's LR range test figure at ``dest``: copied, or drawn from its ``lr_find.json``; None without one."""
    from medcolor.display import plot_lr_find

    png, js = stage_dir / "lr_find.png", stage_dir / "lr_find.json"
    if png.is_file():
        _copy(png, dest)
    elif js.is_file() and (lf := read_json(js)):
        plot_lr_find(lf.get("lr", []), lf.get("loss", []), lf.get("suggestion"), dest, f"LR range test: {name}")
    else:
        return None
    return dest


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def fmt(v: Any, digits: int = 4) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else f"{f:.{digits}f}"


def auc100(v: Any, decimals: int = 1) -> str:
    """An AUC on the report's one scale: ×100 (``0.8123`` -> ``"81.2"``); "" for none."""
    try:
        return fmt(100 * float(v), decimals)
    except (TypeError, ValueError):
        return ""


#: the metrics of an operating point shown on the cells page, in this order (others are left out)
OPERATING_KEYS = ("threshold", "sensitivity", "specificity", "ppv", "npv", "accuracy", "brier", "ece")


def _operating(rd: Path | None, target: Path, out: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return operating_points(rd, target, out) if rd is not None and rd.is_dir() else ([], [])


def operating_points(rd: Path, target: Path, out: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The operating points a run wrote, per test set: ``RUN/operating_points.json`` (its sets; the run's own
    test split ``test`` shown as "internal") and ``RUN/test_sets/NAME/operating_points.json`` per external set
    (what exists; missing is fine).  Returns rows {set, label, rule, one formatted value per
    :data:`OPERATING_KEYS`} and the ROC / reliability figures named in them, copied under ``target``."""
    files = [rd / "operating_points.json", *sorted((rd / "test_sets").glob("*/operating_points.json"))]
    rows: list[dict[str, Any]] = []
    images: list[dict[str, str]] = []
    for path in files:
        data = read_json(path)
        external = path.parent.name if path.parent.parent.name == "test_sets" else ""
        if isinstance(data, dict) and data.get("error"):  # training recorded why there are none
            rows.append({"set": external or "internal", "note": f"no operating points: {data['error']}"})
        if not isinstance(data, dict) or not isinstance(data.get("sets"), dict):
            continue
        for set_name, rec in data["sets"].items():
            if isinstance(rec, dict):
                name = external or ("internal" if set_name == "test" else str(set_name))
                rows += _operating_rows(rec, name, str(data.get("rule", "")))
                images += _operating_figures(rec, name, path.parent, target, out)
    return rows, images


def _operating_rows(rec: dict[str, Any], name: str, rule: str) -> list[dict[str, Any]]:
    """The rows of one set's operating points: per label, each of :data:`OPERATING_KEYS` formatted."""
    rows = []
    for label, m in (rec.get("labels") or {}).items():
        if isinstance(m, dict):
            row: dict[str, Any] = {"set": name, "label": str(label), "rule": rule, "note": ""}
            for k in OPERATING_KEYS:
                v = m.get(k)
                v = v.get("value") if isinstance(v, dict) else v  # {"value", "ci_low", "ci_high"}
                row[k] = f"{v:.3g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            rows.append(row)
    return rows


def _operating_figures(rec: dict[str, Any], name: str, folder: Path, target: Path, out: Path) -> list[dict[str, str]]:
    """The ROC / reliability figures one set's record names (in ``folder``), copied under ``target``."""
    images = []
    for kind, fname in (rec.get("figures") or {}).items():
        src = folder / str(fname)
        if src.is_file():
            dest = target / f"{slug(name)}_{src.name}"
            _copy(src, dest)
            images.append({"src": dest.relative_to(out).as_posix(), "alt": f"{kind} on {name}"})
    return images


def cell_id_parts(c: str) -> list[str]:
    """A cell id cut after its separators (``-``, ``_``, ``+``, ``.``) so that a page can wrap it there."""
    import re

    return [p for p in re.split(r"(?<=[-_+.])", c) if p]


def cells_table(cells: StudyCells, meta: pd.DataFrame, details: list[dict[str, Any]]) -> dict[str, Any]:
    vary = [f for f in cells.grid if cells.fields[f].nunique() > 1] or cells.grid
    rows = []
    for d in details:
        c = d["id"]
        m = cells.values.loc[c, MEAN_LABEL] if MEAN_LABEL in cells.values.columns else math.nan
        rows.append(
            {
                "id": c,
                "parts": cell_id_parts(c),
                "anchor": d["anchor"],
                "values": [value_text(f, cells.fields.loc[c, f]) for f in vary],
                "mean": auc100(m),
                "ci": f"{auc100(meta.loc[c, 'test_ci_low'])}, {auc100(meta.loc[c, 'test_ci_high'])}"
                if "test_ci_low" in meta.columns and pd.notna(meta.loc[c, "test_ci_low"])
                else "",
                "n_train": f"{int(meta.loc[c, 'n_train']):,}" if pd.notna(meta.loc[c].get("n_train")) else "",
                "iterations": f"{int(meta.loc[c, 'iterations']):,}" if pd.notna(meta.loc[c].get("iterations")) else "",
                "wall": f"{float(meta.loc[c, 'wall_s']):.0f} s" if pd.notna(meta.loc[c].get("wall_s")) else "",
            }
        )
    return {"columns": [field_title(f) for f in vary], "rows": rows}


__all__ = ["auc100", "cell_details", "cell_id_parts", "cells_table", "log_links", "operating_points", "sort_cells"]
