"""Every arm of a study against its baseline, section by section (:func:`compare_to_baseline`): the
significance marks of Tables I and III and the differences of Fig. 6."""

from __future__ import annotations

from collections.abc import Sequence
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
    study_cells,
)
from medcolor.study.stats.comparison import STAT_COLUMNS, check_args, check_labels, stat_rows
from medcolor.study.stats.pairing import plan_pairs
from medcolor.study.stats.significance import adjust_bh

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
    :data:`STAT_COLUMNS`; ``p_adj`` is Benjamini–Hochberg over all rows returned.
    """
    check_args(test, n_boot, level)
    only = cells
    cells = study_cells(table, metric)
    if only is not None:
        unknown = sorted(set(map(str, only)) - set(cells.fields.index))
        if unknown:
            raise ConfigError(f"cells {unknown[:5]} are not in the results table")
        cells = cells.subset([c for c in cells.fields.index if c in set(map(str, only))])
    if "stages" not in cells.grid:
        raise ConfigError("comparing against a baseline needs a 'stages' grid field (baseline, baseline-all, ...)")
    labels = check_labels(cells, labels)
    arm_fields = [resolve_field(f, cells.grid) for f in (arm_fields or [f for f in ARM_FIELDS if f in cells.grid])]
    if "stages" not in arm_fields:
        raise ConfigError("arm_fields must include 'stages'")
    by = (
        [resolve_field(f, cells.grid) for f in by]
        if by is not None
        else [f for f in cells.grid if f not in arm_fields and f not in REPEAT_FIELDS]
    )
    F = cells.fields
    is_base = F["stages"].isin(BASELINES)
    if TRANSFER_FIELD in F.columns:
        is_base &= F[TRANSFER_FIELD] == NONE
    # several gray inputs for the baselines of a section (replicate and e.g. replicate-imagenet): the
    # paper's gray copy is the reference, the others are arms compared with it
    several_gray = COLORIZER_FIELD in F.columns and COLORIZER_FIELD in arm_fields
    rows: list[dict[str, Any]] = []
    sections = F[by].drop_duplicates() if by else pd.DataFrame(index=[0])
    for sec in sections.itertuples(index=False, name=None) if by else [()]:
        in_sec = np.ones(len(F), dtype=bool)
        for f, v in zip(by, sec, strict=True):
            in_sec &= (F[f] == v).to_numpy()
        group = dict(zip(by, sec, strict=True))
        sec_cells = F[in_sec]
        sec_base = is_base[in_sec]
        ref_colorizer: dict[str, dict[str, str]] = {}  # baseline stages -> {colorizer field: replicate}
        for stage in BASELINES if several_gray else ():
            of_stage = sec_base & (sec_cells["stages"] == stage)
            grays = set(sec_cells.loc[of_stage, COLORIZER_FIELD])
            if len(grays) > 1 and REFERENCE_COLORIZER in grays:
                sec_base = sec_base & ~(of_stage & (sec_cells[COLORIZER_FIELD] != REFERENCE_COLORIZER))
                ref_colorizer[stage] = {COLORIZER_FIELD: REFERENCE_COLORIZER}
        bases = set(sec_cells.loc[sec_base, "stages"])
        arms = sec_cells.loc[~sec_base, arm_fields].drop_duplicates()
        for arm in arms.itertuples(index=False, name=None):
            sel = dict(zip(arm_fields, arm, strict=True))
            ref = baseline or reference_baseline(sel["stages"])
            if ref not in bases and baseline is None:
                ref = next((x for x in BASELINES if x in bases), ref)
            sel_a = {"stages": ref} | ({TRANSFER_FIELD: NONE} if TRANSFER_FIELD in F.columns else {})
            sel_a |= ref_colorizer.get(ref, {})
            head = {**group, **sel, "baseline": ref}
            sub = cells.subset(sec_cells.index)
            try:
                plans = plan_pairs(sub, sel_a, sel, [], drop_unpaired=True)
                for plan in plans:
                    for r in stat_rows(sub, plan, labels, test, n_boot, seed, level, min_pairs, strict=False):
                        rows.append({**head, **{k: v for k, v in r.items() if k not in head}})
            except (ArmNotFoundError, PairingError) as exc:
                if not isinstance(exc, ArmNotFoundError):
                    reason = str(exc)
                elif bases:
                    reason = f"no {ref} run in this section"
                else:
                    reason = f"no baseline was run in this section ({' or '.join(BASELINES)})"
                for label in labels:
                    rows.append(
                        {
                            **head,
                            "a": describe_arm(sel_a),
                            "b": describe_arm(sel),
                            "label": label,
                            "n": 0,
                            "test": test,
                            "metric": metric,
                            "note": reason,
                        }
                    )
    cols = [*by, *[f for f in arm_fields if f not in by], "baseline", *[c for c in STAT_COLUMNS if c != "p_adj"]]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("mean_a", "std_a", "mean_b", "std_b", "diff", "ci_low", "ci_high", "statistic", "p"):
        df[c] = df[c].astype(float)
    df.insert(df.columns.get_loc("p") + 1, "p_adj", adjust_bh(df["p"].to_numpy(float)))
    df["n"] = df["n"].fillna(0).astype(int)
    df["note"] = df["note"].fillna("")
    return df


__all__ = [
    "ARM_FIELDS",
    "BASELINES",
    "compare_to_baseline",
    "reference_baseline",
]
