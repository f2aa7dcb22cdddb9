"""The report's validation curves: per section of the study (the grid fields besides the arm and the repeats
that vary, as in Table I), every arm's validation mean AUC against the training iteration on one plot — the
mean over its repeats as a thick line, each repeat as a thin one.  The stages of a multi-stage run continue
the x axis (stage 2's step 1 is iteration ``total_steps of stage 1 + 1``; a dotted line marks where a stage
ends).  Read from the cells' run directories only (``summary.json`` and each stage's ``history.json``):
no network is loaded, no dataset built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.report.names import arm_text, file_stem, row_order_key, section_text, unique_stem, value_text
from medcolor.report.rundirs import read_json, run_dir_of
from medcolor.report.sections import Section, _srcs
from medcolor.report.tables import _layout
from medcolor.study.stats import NONE, REPEAT_FIELDS, TRANSFER_FIELD, StudyCells, value_sort_key
from medcolor.utils import atomic_path

#: the per-cell curves behind the figures, in ``figures/``
CURVES_FILE = "val_curves.csv"
ARM_FIELDS = ("model.colorizer", "stages", TRANSFER_FIELD)


def _stage_dirs(rd: Path) -> list[tuple[str, Path, int | None]]:
    """A run's stages in order: (name, directory, total steps or None), from ``summary.json`` when it lists
    them, else the stage folders present (``1-color-module``, ``2-all``...)."""
    stages = (read_json(rd / "summary.json") or {}).get("stages") or []
    out = []
    for s in stages:
        if isinstance(s, dict) and "strategy" in s:
            name = f"{int(s.get('index', len(out))) + 1}-{s['strategy']}"
            total = s.get("total_steps")
            out.append((name, rd / name, int(total) if isinstance(total, (int, float)) else None))
    if out:
        return out
    folders = [p for p in rd.glob("[0-9]*-*") if p.is_dir() and p.name.split("-", 1)[0].isdigit()]
    return [(p.name, p, None) for p in sorted(folders, key=lambda p: int(p.name.split("-", 1)[0]))]


def cell_curve(rd: Path) -> pd.DataFrame:
    """One run's validation mean AUC against the iteration: columns ``stage``, ``step`` (within the stage),
    ``iteration`` (continued across stages: a stage starts after the previous one's ``total_steps``, or its
    last validated step when the summary does not say) and ``val_mean_auc``; empty without a history."""
    rows: list[dict[str, Any]] = []
    offset = 0
    for name, folder, total in _stage_dirs(rd):
        history = read_json(folder / "history.json")
        if not isinstance(history, list):
            continue
        steps = []
        for h in history:
            if isinstance(h, dict) and isinstance(h.get("step"), (int, float)):
                auc = h.get("val_mean_auc")
                auc = float(auc) if isinstance(auc, (int, float)) else np.nan
                rows.append({"stage": name, "step": int(h["step"]), "iteration": offset + int(h["step"]),
                             "val_mean_auc": auc})  # fmt: skip
                steps.append(int(h["step"]))
        offset += total if total is not None else max(steps, default=0)
    return pd.DataFrame(rows, columns=["stage", "step", "iteration", "val_mean_auc"])


def _arm_name(row: pd.Series) -> str:
    name = arm_text(row.get("model.colorizer", NONE), row.get("stages", NONE))
    tr = row.get(TRANSFER_FIELD, NONE)
    return name + (f" · from {value_text(TRANSFER_FIELD, tr)}" if tr != NONE else "")


def study_curves(cells: StudyCells, meta: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    """Every cell's curve (:func:`cell_curve`) with its ``section`` (as Table I names it), ``stem`` (the section's
    values as a file name: :func:`~medcolor.report.names.file_stem`), ``arm``, ``cell`` and ``repeat`` (its values
    of the repeat fields); cells without a run directory or history are left out."""
    F = cells.fields
    layout = _layout(cells, list(F.index), ARM_FIELDS)
    reps = [f for f in REPEAT_FIELDS if f in F.columns]
    frames = []
    for c in F.index:
        rd = run_dir_of(study_dir, meta.loc[c, "run_dir"])
        curve = cell_curve(rd) if rd is not None and rd.is_dir() else pd.DataFrame()
        if curve.empty:
            continue
        r = F.loc[c]
        section = section_text(layout.section_fields, [r[f] for f in layout.section_fields])
        order = row_order_key(r.get("model.colorizer", NONE), r.get("stages", NONE), r.get(TRANSFER_FIELD, NONE))
        key = tuple(value_sort_key(r[f]) for f in layout.section_fields)
        repeat = " · ".join(f"{f} {r[f]}" for f in reps)
        stem = file_stem(r[f] for f in layout.section_fields)
        curve = curve.assign(section=section, stem=stem, arm=_arm_name(r), cell=c, repeat=repeat)
        frames.append(curve.assign(order=[order] * len(curve), section_key=[key] * len(curve)))
    if not frames:
        return pd.DataFrame(columns=["section", "arm", "cell", "repeat", "stage", "step", "iteration", "val_mean_auc"])
    return pd.concat(frames, ignore_index=True)


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per section, arm and iteration: the mean validation AUC over the repeats validated there (``mean``)
    and how many (``n``)."""
    g = curves.dropna(subset=["val_mean_auc"]).groupby(["section", "arm", "iteration"], sort=False)["val_mean_auc"]
    return g.agg(mean="mean", n="count").reset_index()


def plot_val_curves(curves: pd.DataFrame, path: Path, *, scale: float = 100.0, title: str = "") -> Path:
    """One section's figure: each arm's mean curve (thick, markers) over its repeats (thin), stage ends dotted.
    ``curves``: the section's rows of :func:`study_curves`.  Written as PNG and SVG."""
    from medcolor.display import pyplot, save_figure

    plt = pyplot()
    arms = list(dict.fromkeys(curves.sort_values("order", kind="stable")["arm"]))
    cmap = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    means = mean_curves(curves)
    for k, arm in enumerate(arms):
        color = cmap(k % cmap.N)
        mine = curves[curves["arm"] == arm]
        for _, rep in mine.groupby("cell", sort=False):
            ax.plot(rep["iteration"], rep["val_mean_auc"] * scale, color=color, lw=0.7, alpha=0.35)
        m = means[means["arm"] == arm].sort_values("iteration")
        n = mine["cell"].nunique()
        ax.plot(m["iteration"], m["mean"] * scale, color=color, lw=2, marker="o", ms=3,
                label=f"{arm} (n = {n})")  # fmt: skip
        ends = mine.groupby("stage", sort=False)["iteration"].max().sort_values().iloc[:-1]
        for x in ends:  # where a stage of this arm ends and the next begins
            ax.axvline(x, color=color, ls=":", lw=0.9)
    ax.set_xlabel("training iteration (the stages of a run one after the other)")
    ax.set_ylabel(f"validation mean AUC ×{scale:g}" if scale != 1 else "validation mean AUC")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.legend(loc="outside lower center", ncols=min(3, max(1, len(arms))), fontsize=8)
    return save_figure(fig, path, also=("svg",))


def val_curves_section(
    cells: StudyCells, meta: pd.DataFrame, study_dir: Path, out: Path, scale: float = 100.0
) -> Section:
    """The report's section of validation curves: one figure per section of the study, its data in
    ``figures/val_curves.csv``."""
    sec = Section(
        "curves", "Validation curves. Validation mean AUC against the training iteration, the arms of each "
        "section on one plot", nav="Validation curves",
    )  # fmt: skip
    curves = study_curves(cells, meta, study_dir)
    if curves.empty:
        sec.reason = "no cell's run directory holds a history.json (the run directories are not here)"
        return sec
    keep = ["section", "arm", "cell", "repeat", "stage", "step", "iteration", "val_mean_auc"]
    with atomic_path(out / "figures" / CURVES_FILE) as tmp:
        curves[keep].to_csv(tmp, index=False)
    sections = list(dict.fromkeys(curves.sort_values("section_key", kind="stable")["section"]))
    used: set[str] = set()
    for s in sections:
        mine = curves[curves["section"] == s]
        stem = unique_stem(mine["stem"].iloc[0], used)
        path = out / "figures" / f"val_curves{'_' + stem if stem else ''}.png"
        plot_val_curves(mine, path, scale=scale, title=s)
        n_arms, n_cells = mine["arm"].nunique(), mine["cell"].nunique()
        sec.images.append(
            {
                **_srcs(path, out),
                "alt": f"validation curves {s}".strip(),
                "caption": f"{s + ': ' if s else ''}validation mean AUC ×{scale:g} of {n_arms} arm"
                f"{'s' if n_arms != 1 else ''} ({n_cells} runs) against the training iteration: thick, the mean over "
                "an arm's repeats (n in the legend); thin, each repeat; dotted, where a stage ends and the next "
                "continues the axis.",
            }
        )
    missing = len(cells.fields) - curves["cell"].nunique()
    if missing:
        sec.text = f"{missing} of {len(cells.fields)} cells have no history.json here and are not drawn."
    sec.text = (sec.text + " " if sec.text else "") + f"Data: {CURVES_FILE} in figures/."
    return sec


__all__ = ["CURVES_FILE", "cell_curve", "mean_curves", "plot_val_curves", "study_curves", "val_curves_section"]
