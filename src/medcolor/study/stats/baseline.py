"""Every arm of a study against its baseline, section by section (:func:`compare_to_baseline`): the
significance marks of Tables I and III and the differences of Fig. 6."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError
from medcolor.study.stats.arms import describe_arm, resolve_field
from medcolor.study.stats.cells import (
    NONE,
    REPEAT_FIELDS,
    TRANSFER_FIELD,
    ArmNotFoundError,
    PairingError,
    StudyCells,
    study_cells,
)
from medcolor.study.stats.comparison import check_args, check_labels, finish_frame, stat_rows
from medcolor.study.stats.pairing import plan_pairs

#: single-stage baselines (gray image copied to 3 channels); which one an arm is compared with is decided
#: by :func:`reference_baseline`
BASELINES = ("baseline", "baseline-all")
#: the grid fields that make up an arm of Table I/III (the rest are sections or repeats)
ARM_FIELDS = ("model.colorizer", "stages", TRANSFER_FIELD)
COLORIZER_FIELD = "model.colorizer"
#: the baselines' own colorizer, the paper's gray copy: the reference when baselines of other gray inputs
#: (``replicate-imagenet``) were run too
REFERENCE_COLORIZER = "replicate"


def reference_baseline(stages: str) -> str:
    """The paper's reference for a strategy sequence: Baseline when its last stage keeps E frozen
    (color-module, last-layer), Baseline All when it trains E (all, transfer-all)."""
    from medcolor.strategies import STRATEGIES

    last = stages.split(",")[-1].strip()
    if last in STRATEGIES:
        return "baseline-all" if STRATEGIES.get(last).train_backbone else "baseline"
    return "baseline"


def compare_to_baseline(
    table: pd.DataFrame,
    *,
    baseline: str | None = None,
    arm_fields: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
    test: str = "t",
    metric: str = "test_auc",
    n_boot: int = 2000,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    level: float = 0.95,
    min_pairs: int = 2,
    cells: Sequence[str] | None = None,
    family: str = "every arm against its baseline",
) -> pd.DataFrame:
    """Every arm (a combination of ``arm_fields`` values, default colorizer × stages × transfer source)
    against its baseline, within each section (a combination of ``by`` values; default every other
    grid field except the repeat fields), as for the significance marks of Tables I and III.

    The baseline is ``baseline`` (a ``stages`` value, e.g. ``"baseline-all"``) or, by default, the
    paper's reference (:func:`reference_baseline`), falling back to the other baseline when that one was
    not run.  When a section's baselines of one strategy were run with several gray inputs
    (``model.colorizer`` ``replicate`` and ``replicate-imagenet``), the ``replicate`` ones are the reference
    and the others are arms.
    It is never an error when a section lacks a baseline or an arm's cells lack a partner:
    those rows get NaN statistics (or leave the unpaired cells out) and say so in ``note``.
    ``cells`` restricts the comparisons to those cell ids (transfer sources outside it are still
    described from the whole table).  Columns: ``*by``, the arm fields, ``baseline``, then
    :data:`STAT_COLUMNS`; ``p_adj`` is Benjamini–Hochberg over all rows returned (each test counted once:
    the ``mean`` row of a single-label study is its label's test), ``family`` names them (``family``).
    """
    check_args(test, n_boot, level)
    sc = _restrict(study_cells(table, metric), cells)
    labels = check_labels(sc, labels)
    arm_fields, by = _arm_and_section_fields(sc, arm_fields, by)
    F = sc.fields
    is_base = F["stages"].isin(BASELINES)
    if TRANSFER_FIELD in F.columns:
        is_base &= F[TRANSFER_FIELD] == NONE
    # several gray inputs for the baselines of a section (replicate and e.g. replicate-imagenet): the
    # paper's gray copy is the reference, the others are arms compared with it
    several_gray = COLORIZER_FIELD in F.columns and COLORIZER_FIELD in arm_fields
    opts = _Options(baseline, arm_fields, labels, test, metric, (n_boot, seed, level), min_pairs, several_gray)
    rows: list[dict[str, Any]] = []
    sections = F[by].drop_duplicates().itertuples(index=False, name=None) if by else [()]
    for sec in sections:
        in_sec = np.ones(len(F), dtype=bool)
        for f, v in zip(by, sec, strict=True):
            in_sec &= (F[f] == v).to_numpy()
        rows += _section_rows(sc, dict(zip(by, sec, strict=True)), in_sec, is_base[in_sec], opts)
    head = [*by, *[f for f in arm_fields if f not in by], "baseline"]
    return finish_frame(rows, head, family)


def _restrict(cells: StudyCells, only: Sequence[str] | None) -> StudyCells:
    """The cells ``only`` (all without it); unknown ids are a ConfigError."""
    if only is None:
        return cells
    keep = set(map(str, only))
    unknown = sorted(keep - set(cells.fields.index))
    if unknown:
        raise ConfigError(f"cells {unknown[:5]} are not in the results table")
    return cells.subset([c for c in cells.fields.index if c in keep])


def _arm_and_section_fields(
    cells: StudyCells, arm_fields: Sequence[str] | None, by: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The fields that make an arm (default colorizer × stages × transfer) and those that make a section
    (default: every other grid field except the repeat fields)."""
    if "stages" not in cells.grid:
        raise ConfigError("comparing against a baseline needs a 'stages' grid field (baseline, baseline-all, ...)")
    arms = [resolve_field(f, cells.grid) for f in (arm_fields or [f for f in ARM_FIELDS if f in cells.grid])]
    if "stages" not in arms:
        raise ConfigError("arm_fields must include 'stages'")
    if by is not None:
        return arms, [resolve_field(f, cells.grid) for f in by]
    return arms, [f for f in cells.grid if f not in arms and f not in REPEAT_FIELDS]


@dataclass
class _Options:
    baseline: str | None
    arm_fields: list[str]
    labels: list[str]
    test: str
    metric: str
    boot: tuple[int, int, float]
    min_pairs: int
    several_gray: bool


def _references(sec_cells: pd.DataFrame, sec_base: pd.Series, several_gray: bool) -> tuple[pd.Series, dict]:
    """The section's reference baselines: with several gray inputs for one baseline strategy, the
    ``replicate`` ones (the others become arms).  Returns the baseline mask and {stages: colorizer selector}."""
    ref_colorizer: dict[str, dict[str, str]] = {}
    for stage in BASELINES if several_gray else ():
        of_stage = sec_base & (sec_cells["stages"] == stage)
        grays = set(sec_cells.loc[of_stage, COLORIZER_FIELD])
        if len(grays) > 1 and REFERENCE_COLORIZER in grays:
            sec_base = sec_base & ~(of_stage & (sec_cells[COLORIZER_FIELD] != REFERENCE_COLORIZER))
            ref_colorizer[stage] = {COLORIZER_FIELD: REFERENCE_COLORIZER}
    return sec_base, ref_colorizer


def _section_rows(
    cells: StudyCells, group: dict[str, str], in_sec: np.ndarray, sec_base: pd.Series, o: _Options
) -> list[dict[str, Any]]:
    """Every arm of one section against its baseline (rows of NaN statistics, with the reason, where
    the baseline or partners are missing)."""
    F = cells.fields
    sec_cells = F[in_sec]
    sec_base, ref_colorizer = _references(sec_cells, sec_base, o.several_gray)
    bases = set(sec_cells.loc[sec_base, "stages"])
    sub = cells.subset(sec_cells.index)
    rows: list[dict[str, Any]] = []
    for arm in sec_cells.loc[~sec_base, o.arm_fields].drop_duplicates().itertuples(index=False, name=None):
        sel = dict(zip(o.arm_fields, arm, strict=True))
        ref = o.baseline or reference_baseline(sel["stages"])
        if ref not in bases and o.baseline is None:
            ref = next((x for x in BASELINES if x in bases), ref)
        sel_a = {"stages": ref} | ({TRANSFER_FIELD: NONE} if TRANSFER_FIELD in F.columns else {})
        sel_a |= ref_colorizer.get(ref, {})
        head = {**group, **sel, "baseline": ref}
        try:
            for plan in plan_pairs(sub, sel_a, sel, [], drop_unpaired=True):
                for r in stat_rows(sub, plan, o.labels, o.test, *o.boot, o.min_pairs, strict=False):
                    rows.append({**head, **{k: v for k, v in r.items() if k not in head}})
        except (ArmNotFoundError, PairingError) as exc:
            reason = _missing_reason(exc, ref, bases)
            a, b = describe_arm(sel_a), describe_arm(sel)
            rows += [
                {**head, "a": a, "b": b, "label": x, "n": 0, "test": o.test, "metric": o.metric, "note": reason}
                for x in o.labels
            ]
    return rows


def _missing_reason(exc: Exception, ref: str, bases: set[str]) -> str:
    if not isinstance(exc, ArmNotFoundError):
        return str(exc)
    if bases:
        return f"no {ref} run in this section"
    return f"no baseline was run in this section ({' or '.join(BASELINES)})"


__all__ = [
    "ARM_FIELDS",
    "BASELINES",
    "compare_to_baseline",
    "reference_baseline",
]
