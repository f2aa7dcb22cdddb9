"""How a study's grid fields and values are shown to people: strategy and colorizer names, field titles,
subset sizes, and the paper's row order."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from medcolor.study.stats import BASELINES, NONE, TRANSFER_FIELD, reference_baseline

STRATEGY_NAMES = {
    "baseline": "Baseline",
    "baseline-all": "Baseline All",
    "color-module": "Color Module",
    "all": "All",
    "last-layer": "Last Layer",
    "transfer-all": "Transfer All",
}
COLORIZER_NAMES = {
    "deconv": "DECONV",
    "pixelshuffle": "PixelShuffle",
    "colorU": "ColorU",
    "lut": "LUT (pointwise)",
    "replicate": "–",
    "replicate-imagenet": "– (ImageNet mean/std)",
    NONE: "–",
}
COLORIZER_ORDER = ("replicate", NONE, "deconv", "pixelshuffle", "colorU")
#: grid fields whose values name alternatives of a whole config section (``data: {kermany: {...}}``)
SECTION_FIELDS = ("data", "model", "trainer")
FIELD_TITLES = {
    "model.backbone": "Backbone",
    "model.colorizer": "Colorization module",
    "stages": "Learning strategy",
    "transfer": "Transferred from",
    "data.dataset": "Dataset",
    "data.subset": "Training subset",
    "data.subset_draw": "Subset draw",
    "trainer.seed": "Seed",
    "model.weights": "Weights",
    "data": "Data",
    "model": "Model",
    "trainer": "Trainer",
}


def strategy_name(stages: str) -> str:
    """``"color-module,all"`` -> ``"Color Module → All"``."""
    if stages == NONE:
        return "–"
    return " → ".join(STRATEGY_NAMES.get(s.strip(), s.strip()) for s in stages.split(","))


def field_title(f: str) -> str:
    return FIELD_TITLES.get(f, f.rsplit(".", 1)[-1].replace("_", " ").capitalize())


def value_text(f: str, v: str) -> str:
    """A grid value for people: strategy and colorizer names, subset sizes as % or image counts."""
    if f == "stages":
        return strategy_name(v)
    if f == "model.colorizer":
        return COLORIZER_NAMES.get(v, v)
    if f == TRANSFER_FIELD:
        if v == NONE:
            return "–"
        return " · ".join(
            strategy_name(part)
            if all(x in STRATEGY_NAMES for x in part.split(","))
            else COLORIZER_NAMES.get(part, part)
            for part in v.split(" · ")
        )
    if f in SECTION_FIELDS and v == NONE:  # a named alternative of a whole config section, left at the base
        return "as in the spec's base"
    if f == "data.subset":
        if v == NONE:
            return "full"
        x = float(v)
        return f"{x * 100:g} %" if x <= 1 else f"{int(x):,} images"
    return v


def arm_text(colorizer: str, stages: str) -> str:
    """A colorizer × strategy as a figure's legend entry, without the tables' "–" placeholder: ``"ColorU Color
    Module → All"``, ``"Baseline"`` (replicate), ``"Baseline (ImageNet mean/std)"`` (replicate-imagenet)."""
    col, strategy = value_text("model.colorizer", colorizer), value_text("stages", stages)
    note = ""
    if col.startswith("–"):  # no learned T: the placeholder goes, what it says about the input stays
        col, note = "", col.lstrip("– ").strip()
    text = " ".join(x for x in (col, "" if strategy == "–" else strategy, note) if x)
    return text or "–"


def section_text(fields: Sequence[str], values: Sequence[str]) -> str:
    return " · ".join(f"{field_title(f)}: {value_text(f, v)}" for f, v in zip(fields, values, strict=True))


def row_order_key(colorizer: str, stages: str, transfer: str) -> tuple:
    """The paper's row order: the frozen-E group (Baseline, then its arms) before the fine-tuned-E group
    (Baseline All, then its arms); within a group non-transferred before transferred, then DECONV,
    PixelShuffle, ColorU, then by strategy."""
    ref = 0 if (stages == "baseline" or (stages not in BASELINES and reference_baseline(stages) == "baseline")) else 1
    base = 0 if stages in BASELINES and transfer == NONE else 1
    col = COLORIZER_ORDER.index(colorizer) if colorizer in COLORIZER_ORDER else len(COLORIZER_ORDER)
    order = list(STRATEGY_NAMES)
    seq = tuple(order.index(s) if s in order else len(order) for s in stages.split(","))
    return (ref, base, transfer != NONE, transfer, col, colorizer, seq, stages)


def slug(s: str) -> str:
    """A cell id or dataset name as a file name or HTML anchor."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "cell"


def transfer_text(v: str, shown: Collection[str] = ()) -> str:
    """A transfer source (the value of ``TRANSFER_FIELD``, its arm's values joined by `` · ``) for people, without
    the values ``shown`` beside it (the title of its table section or figure panel says them)."""
    if v == NONE:
        return "–"
    return value_text(TRANSFER_FIELD, " · ".join(p for p in str(v).split(" · ") if p not in shown))


def field_text(f: str, v: str, shown: Collection[str] = ()) -> str:
    """A grid value as a table row or figure row names it: :func:`value_text`, a transfer by :func:`transfer_text`."""
    return transfer_text(v, shown) if f == TRANSFER_FIELD else value_text(f, v)


def file_stem(values: Iterable[object]) -> str:
    """Grid values as one part of a figure's file name (``393_gray_mobilenet_v2_4172``): a path (weights, a
    data root) by its file's stem; empty values left out."""
    parts = [str(v) for v in values if v]
    return "_".join(slug(Path(v).stem if "/" in v or "\\" in v else v) for v in parts)


def unique_stem(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... when an earlier figure took it (two sections whose values differ only
    in what :func:`file_stem` drops, e.g. weights files of one name in two folders); added to ``used``."""
    out, k = stem, 1
    while out in used:
        k += 1
        out = f"{stem}_{k}"
    used.add(out)
    return out


__all__ = [
    "COLORIZER_NAMES",
    "COLORIZER_ORDER",
    "FIELD_TITLES",
    "STRATEGY_NAMES",
    "arm_text",
    "field_text",
    "field_title",
    "file_stem",
    "row_order_key",
    "section_text",
    "slug",
    "strategy_name",
    "transfer_text",
    "unique_stem",
    "value_text",
]
