"""The parts of the report page: :class:`Section` (present with its content, or absent with the reason),
the sections of the paper's Tables I–III (also written as Markdown and LaTeX) and of its figures:
Fig. 4 (colorized images), Fig. 5 (labels per training-set size) and Fig. 6 (AUC against the
training-set size)."""

from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import DataError, MedcolorError
from medcolor.report.names import field_text, file_stem, row_order_key, section_text, slug, unique_stem, value_text
from medcolor.report.render import StudyTable
from medcolor.report.rundirs import run_dir_of
from medcolor.report.tables import TableOptions, per_test_set, size_curves, table1, table2, table3
from medcolor.study.stats import NONE, REPEAT_FIELDS, TRANSFER_FIELD, StudyCells, value_sort_key
from medcolor.utils import write_text_atomic


@dataclass
class Section:
    """One part of the page: present (with content) or absent (with the reason)."""

    key: str
    title: str
    reason: str = ""
    tables: list[StudyTable] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)  # {"src", "alt", "caption"}
    text: str = ""
    nav: str = ""  # the name in the navigation bar when not "Table I", "Fig. 4"... from the title

    @property
    def present(self) -> bool:
        return not self.reason

    @property
    def short(self) -> str:
        """ "Table I", "Fig. 4"... for the navigation bar."""
        if self.nav:
            return self.nav
        return self.title.split(". ")[0] if self.title.startswith("Table") else ". ".join(self.title.split(". ")[:2])


def table_sections(
    table: pd.DataFrame, opt: TableOptions, out: Path, n_labels: int
) -> tuple[list[Section], list[StudyTable]]:
    """The sections of Tables I–III (absent ones with their reason); each table present is also written
    to ``out/tables/`` as Markdown and LaTeX, and all of them together as ``tables.md`` / ``tables.tex``."""
    sections: list[Section] = []
    tables: list[StudyTable] = []
    for key, title, fn, absent in (
        ("table1", "Table I. Mean AUC per colorization module and learning strategy", table1,
         "every cell takes T or E from another cell: see Table III"),
        ("table2", "Table II. AUC per label", table2,
         "the study has a single label: Table II would repeat Table I" if n_labels < 2 else "no cells for Table I"),
        ("table3", "Table III. Transfer across datasets", table3,
         "no cell transfers T or E from another cell of the study (no transfer grid field, or it is always empty)"),
    ):  # fmt: skip
        t = per_test_set(fn, table, opt)
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
    return sections, tables


#: the colormap and opacity of Grad-CAM maps drawn over the gray input (as ``medcolor explain``)
GRADCAM_CMAP, GRADCAM_ALPHA = "jet", 0.45


@dataclass
class Fig4Panel:
    """One Fig. 4 image: the gray inputs (top row), their names, and a row per condition (T's colours) each followed
    by its Grad-CAM row when the run stored the maps."""

    grays: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    rows: dict[str, list[np.ndarray]] = field(default_factory=dict)
    gradcam_label: str = ""
    other: list[str] = field(default_factory=list)


def gradcam_overlay(gray: np.ndarray, heat: np.ndarray, alpha: float = GRADCAM_ALPHA) -> np.ndarray:
    """A Grad-CAM map (H, W) in [0, 1] drawn over its gray input (H, W): an RGB picture (H, W, 3) in [0, 1]."""
    from matplotlib import colormaps

    colored = colormaps[GRADCAM_CMAP](np.clip(heat, 0, 1))[..., :3]
    return np.clip((1 - alpha) * np.repeat(gray[..., None], 3, axis=2) + alpha * colored, 0, 1)


def fig4_colorized(
    cells: StudyCells, meta: pd.DataFrame, study_dir: Path, out: Path, n_images: int, max_rows: int = 24
) -> Section:
    """Fig. 4 from the colorized samples each run wrote (the same validation images through each condition's
    T), each condition with a Grad-CAM row (its ``gradcam_samples.npz``: the maps over the gray input): read from
    the run directories, no network is loaded."""
    sec = Section("fig4", "Fig. 4. Colorized images: what E sees after each colorization module, and Grad-CAM")
    has_t = _cells_with_t(cells, meta, study_dir)
    if not has_t:
        sec.reason = (
            "no cell has a learned colorization module to show (no colorizer.safetensors in the run directories: "
            "only baselines, or the run directories are not here)"
        )
        return sec
    F = cells.fields
    reasons: list[str] = []
    for ds in sorted(set(F.loc[has_t, "data.dataset"])) if "data.dataset" in F.columns else [""]:
        ids = [c for c in has_t if not ds or F.loc[c, "data.dataset"] == ds]
        run_dir = functools.partial(_run_dir_of_cell, study_dir, meta)
        sec.images += _fig4_dataset(cells, ids, ds, run_dir, out, n_images, max_rows, reasons)
    _not_shown(sec, reasons)
    return sec


def _run_dir_of_cell(study_dir: Path, meta: pd.DataFrame, cell: str) -> Path | None:
    return run_dir_of(study_dir, meta.loc[cell, "run_dir"])


def _fig4_dataset(
    cells: StudyCells, ids: list[str], ds: str, run_dir: Any, out: Path, n_images: int, max_rows: int,
    reasons: list[str],
) -> list[dict[str, str]]:  # fmt: skip
    """The Fig. 4 images of one dataset's cells ``ids``: one per panel (a value of the fields that vary besides
    the arm)."""
    F = cells.fields
    vary, panel_fields, panels = _fig4_layout(cells, ids)
    images, used = [], set[str]()
    for pk in sorted(panels, key=lambda t: tuple(value_sort_key(v) for v in t)):
        members = panels[pk]
        shown = {str(x) for x in (ds, *pk)}  # in the panel's title: not repeated in its rows' names
        panel = _read_panel(members[:max_rows], F, vary, run_dir, n_images, reasons, shown)
        if panel.grays is None or not panel.rows:
            continue
        where = " · ".join(x for x in (ds, section_text(panel_fields, pk)) if x)
        stem = unique_stem(file_stem((ds, *pk)), used)
        # JPEG: X-ray pixels are noise to PNG's compression (1-2 MB a panel as PNG, a quarter of that as JPEG)
        image = _draw_panel(panel, out / "figures" / f"fig4_colorized{'_' + stem if stem else ''}.jpg", where)
        image["caption"] = _fig4_caption(F, members, panel, where, max_rows)
        images.append({**_srcs(Path(image.pop("path")), out), **image})
    return images


def _cells_with_t(cells: StudyCells, meta: pd.DataFrame, study_dir: Path) -> list[str]:
    """The cells whose run directory holds a learned T (or its colorized samples)."""
    from medcolor.display import SAMPLES_FILE

    out = []
    for c in cells.fields.index:
        rd = run_dir_of(study_dir, meta.loc[c, "run_dir"])
        if rd is not None and ((rd / "colorizer.safetensors").is_file() or (rd / SAMPLES_FILE).is_file()):
            out.append(c)
    return out


def _first_repeats(F: pd.DataFrame, ids: list[str], cond: list[str]) -> dict[tuple[str, ...], str]:
    """Condition (its values of ``cond``) -> its first repeat among ``ids``."""
    chosen: dict[tuple[str, ...], str] = {}
    repeats = [f for f in REPEAT_FIELDS if f in F.columns]
    for c in sorted(ids, key=lambda c: tuple(value_sort_key(F.loc[c, f]) for f in repeats)):
        chosen.setdefault(tuple(F.loc[c, f] for f in cond), c)
    return chosen


def _varying(cond: list[str], arm: list[str], conditions: list[tuple[str, ...]]) -> list[str]:
    """The fields of ``cond`` besides ``arm`` that take several values among ``conditions``."""
    return [f for f in cond if f not in arm and len({k[cond.index(f)] for k in conditions}) > 1]


def _row_key(row: pd.Series) -> tuple:
    return row_order_key(row.get("model.colorizer", NONE), row.get("stages", NONE), row.get(TRANSFER_FIELD, NONE))


def _fig4_layout(cells: StudyCells, ids: list[str]) -> tuple[list[str], list[str], dict[tuple[str, ...], list[str]]]:
    """The first repeat of each condition among ``ids``: the fields naming its row (``vary``), the fields that make
    one panel per value (``panel_fields``) and the panels' cells in row order."""
    F = cells.fields
    cond = [f for f in cells.grid if f not in REPEAT_FIELDS and f != "data.dataset"]
    chosen = _first_repeats(F, ids, cond)
    arm = [f for f in ("model.colorizer", "stages") if f in cond]  # always named, then what else varies
    varying = _varying(cond, arm, list(chosen))
    panel_fields = [f for f in varying if f != TRANSFER_FIELD]
    panels: dict[tuple[str, ...], list[str]] = {}
    for k, c in sorted(chosen.items(), key=lambda kv: _row_key(F.loc[kv[1]])):
        panels.setdefault(tuple(k[cond.index(f)] for f in panel_fields), []).append(c)
    return arm + [f for f in varying if f == TRANSFER_FIELD], panel_fields, panels


def _read_panel(
    members: list[str], F: pd.DataFrame, vary: list[str], run_dir: Any, n_images: int, reasons: list[str],
    shown: set[str],
) -> Fig4Panel:  # fmt: skip
    """The rows of one panel from the members' run directories (``run_dir(cell)``); what cannot be read is added
    to ``reasons``; a row's name leaves out what the panel's title ``shown`` says."""
    from medcolor.display import SAMPLES_FILE, read_colorized_samples

    panel = Fig4Panel()
    for c in members:
        try:
            samples = read_colorized_samples(run_dir(c) / SAMPLES_FILE)
        except MedcolorError as exc:
            reasons.append(f"cell {c}: {exc}")
            continue
        if panel.grays is None:
            panel.grays, panel.names = samples.grays[:n_images], samples.names[:n_images]
        elif samples.names[: len(panel.names)] != panel.names:
            panel.other.append(c)  # another validation split: its images are not those of the first row
            continue
        name = " · ".join(_row_part(f, F.loc[c, f], shown) for f in vary) or c
        panel.rows[name] = list(samples.colors[: len(panel.names)])
        _add_gradcam_row(panel, name, run_dir(c), c, reasons)
    if panel.other:
        reasons.append(f"{', '.join(panel.other)}: colorized other validation images than the first row's")
    return panel


def _row_part(f: str, value: Any, shown: set[str]) -> str:
    """A field of a Fig. 4 row's name; a transfer as ``from <its source>``, without what the panel's title says."""
    return ("from " if f == TRANSFER_FIELD and value != NONE else "") + field_text(f, value, shown)


def _add_gradcam_row(panel: Fig4Panel, name: str, run_dir: Path, cell: str, reasons: list[str]) -> None:
    """The Grad-CAM row of a condition (its first label's maps over the gray inputs), when its run stored them."""
    from medcolor.evaluation.gradcam import GRADCAM_FILE, read_gradcam_samples

    if not (run_dir / GRADCAM_FILE).is_file():
        return  # a run written before Grad-CAM samples existed: its colour row alone
    try:
        cams = read_gradcam_samples(run_dir / GRADCAM_FILE)
    except MedcolorError as exc:
        reasons.append(f"cell {cell}: {exc}")
        return
    if cams.names[: len(panel.names)] != panel.names or panel.grays is None:
        reasons.append(f"cell {cell}: its Grad-CAM maps are of other images than its colorized samples")
        return
    panel.gradcam_label = panel.gradcam_label or cams.labels[0]
    k = cams.labels.index(panel.gradcam_label) if panel.gradcam_label in cams.labels else 0
    heats = cams.maps[: len(panel.names), k]
    panel.rows[f"{name} · Grad-CAM"] = [gradcam_overlay(g, h) for g, h in zip(panel.grays, heats, strict=True)]


def _draw_panel(panel: Fig4Panel, path: Path, where: str) -> dict[str, str]:
    from medcolor.display import colorization_figure

    titles = [n if len(n) <= 18 else n[:17] + "…" for n in panel.names]
    rows = {textwrap.fill(k, 18): v for k, v in panel.rows.items()}
    # a raster only: the panel is a grid of pictures, which an SVG would only embed again (megabytes per panel)
    colorization_figure(list(panel.grays), rows, path, titles, title=where)  # type: ignore[arg-type]
    return {"path": str(path), "alt": f"Fig. 4 {where}"}


def _fig4_caption(F: pd.DataFrame, members: list[str], panel: Fig4Panel, where: str, max_rows: int) -> str:
    rep = "; ".join(f"{f} {F.loc[members[0], f]}" for f in REPEAT_FIELDS if f in F.columns)
    caption = (
        f"{where + ': ' if where else ''}{len(panel.names)} images of the validation split (top row) through "
        f"the colorization module T of each condition ({'first repeat: ' + rep if rep else 'one cell each'}); "
        "T's output shown through ImageNet's normalisation, i.e. the RGB picture the pretrained E receives."
    )
    if panel.gradcam_label:
        caption += (
            f" Grad-CAM rows: where E's last feature map drives the {panel.gradcam_label} logit (Grad-CAM at E's last "
            "convolutional block, scaled to [0, 1] per image, drawn over the gray input; red: strong)."
        )
    if len(members) > max_rows:
        caption += f" The first {max_rows} of {len(members)} conditions."
    return caption


def fig5_labels(cells: StudyCells, meta: pd.DataFrame, study_dir: Path, out: Path) -> Section:
    """Fig. 5 from the label counts each run wrote (``label_counts.json``): no dataset is read."""
    sec = Section("fig5", "Fig. 5. Labels of the full training set and of each subset size")
    F = cells.fields
    if "data.subset" not in F.columns or not (F["data.subset"] != NONE).any():
        sec.reason = "the study does not vary the training-set size (no data.subset grid field)"
        return sec
    from medcolor.report.figures import plot_label_distribution

    varied = F[F["data.subset"] != NONE]
    datasets = sorted(set(varied["data.dataset"])) if "data.dataset" in F.columns else [""]
    run_dir = functools.partial(_run_dir_of_cell, study_dir, meta)
    reasons = []
    for ds in datasets:
        ids = [c for c in F.index if not ds or F.loc[c, "data.dataset"] == ds]
        try:
            panels = _fig5_panels(F, _first_cell_per_size(F, ids), run_dir)
        except (MedcolorError, OSError, ValueError, KeyError) as exc:
            reasons.append(f"{ds or 'the study'}: cannot read the training labels: {exc}")
            continue
        path = out / "figures" / f"fig5_labels{'_' + slug(ds) if ds else ''}.png"
        plot_label_distribution(panels, path, also=("svg",))
        sec.images.append(
            {
                **_srcs(path, out),
                "alt": f"Fig. 5 {ds}",
                "caption": "Positive, negative and uncertain labels per observation in the training set "
                f"{'of ' + ds + ' ' if ds else ''}and in each label-proportional subset (first draw).",
            }
        )
    _not_shown(sec, reasons)
    return sec


def _first_cell_per_size(F: pd.DataFrame, ids: list[str]) -> dict[str, str]:
    """Training-set size (a ``data.subset`` value) -> its first repeat among ``ids``: the full set (no subset)
    last, the subsets from the largest down."""
    by_size: dict[str, str] = {}
    for c in sorted(ids, key=lambda c: tuple(value_sort_key(F.loc[c, f]) for f in REPEAT_FIELDS if f in F.columns)):
        by_size.setdefault(F.loc[c, "data.subset"], c)
    return {size: by_size[size] for size in sorted(by_size, key=lambda v: (v == NONE, -float(v) if v != NONE else 0))}


def _fig5_panels(F: pd.DataFrame, by_size: dict[str, str], run_dir: Any) -> dict[str, pd.DataFrame]:
    """Panel title -> label counts: the full training set (after the validation/test split) once, then each
    subset size's training set, read from the ``label_counts.json`` of its cell's run directory
    (``run_dir(cell)``); raises when one cannot be read."""
    from medcolor.data.summary import LABEL_COUNTS_FILE, read_label_counts

    panels: dict[str, pd.DataFrame] = {}
    for size, cell in by_size.items():
        rd = run_dir(cell)
        if rd is None:
            raise DataError(f"the run directory of cell {cell} is not here")
        counts = read_label_counts(rd / LABEL_COUNTS_FILE)
        if not panels:
            full = counts.get("train_full", counts["train"]) if size != NONE else counts["train"]
            panels[f"full training set ({_images(full):,} images)"] = full
        if size != NONE:
            panels[_subset_title(F, cell, size, counts["train"])] = counts["train"]
    return panels


def _subset_title(F: pd.DataFrame, cell: str, size: str, train: pd.DataFrame) -> str:
    """The panel title of a subset: its size as the grid names it, its number of images and its draw."""
    n, what = _images(train), value_text("data.subset", size)
    head = f"subset of {n:,} images" if what.endswith("images") else f"subset {what}"
    extra = [] if what.endswith("images") else [f"{n:,} images"]
    if "data.subset_draw" in F.columns:
        extra.append(f"draw {F.loc[cell, 'data.subset_draw']}")
    return head + (f" ({', '.join(extra)})" if extra else "")


def _not_shown(sec: Section, reasons: list[str]) -> None:
    """A figure's section without any image is absent for ``reasons``; with some, it lists what it leaves out."""
    if not sec.images:
        sec.reason = "; ".join(reasons)
    elif reasons:
        sec.text = "Not shown: " + "; ".join(reasons)


def _srcs(png: Path, out: Path) -> dict[str, str]:
    """The image's ``src`` (PNG or JPEG) and, when written beside it, its ``svg`` for papers, relative to ``out``."""
    svg = png.with_suffix(".svg")
    return {"src": png.relative_to(out).as_posix(), "svg": svg.relative_to(out).as_posix() if svg.is_file() else ""}


def _images(counts: pd.DataFrame) -> int:
    """The number of images a :func:`~medcolor.data.summary.label_counts` table counts."""
    return int(counts["total"].iloc[0]) if len(counts) else 0


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
    plot_size_curves(curves, diffs, path, scale=opt.scale, also=("svg",))
    which = "test" if opt.metric == "test_auc" else "validation"
    cap = (
        f"(a) mean {which} AUC ± std over repeats (seeds × subset draws) against the number of training images; "
        "one line per colorizer × strategy."
    )
    if "test_set" in curves.columns:
        cap += " One row of panels per test set (the internal held-out split first, then each external set)."
    if diffs is not None:
        ref = ", ".join(sorted(set(diffs["baseline"].dropna())))
        cap += (
            f" (b) paired difference of each arm to {ref} at each size (mean over matched repeats) with its "
            f"{opt.level:.0%} bootstrap CI."
        )
    sec.images.append({**_srcs(path, out), "alt": "Fig. 6", "caption": cap})
    return sec, curves, diffs


__all__ = ["Section", "fig4_colorized", "fig5_labels", "fig6_sizes", "table_sections"]
