"""Pairing the cells of two arms: the fields that must agree (seed, subset draw, size...), ``by`` groups
(one arm's single value may serve every group), and partners found or the cells that lack one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError
from medcolor.study.stats.arms import describe_arm, kv_text, parse_arm, resolve_field, select_cells
from medcolor.study.stats.cells import PairingError, StudyCells, value_sort_key


@dataclass
class ArmPlan:
    """Two arms of one group, their cells paired."""

    a: str
    b: str
    group: dict[str, str]
    pairs: list[tuple[str, str]]  # (cell of a, cell of b), sorted by pairing key
    note: str = ""


def pair_cells(
    cells: StudyCells,
    A: pd.DataFrame,
    B: pd.DataFrame,
    pair_fields: list[str],
    group_desc: str,
    drop_unpaired: bool,
) -> tuple[list[tuple[str, str]], str]:
    def keyed(rows: pd.DataFrame, arm: str) -> dict[tuple[str, ...], str]:
        out: dict[tuple[str, ...], str] = {}
        for cell, key in zip(rows.index, rows[pair_fields].itertuples(index=False, name=None), strict=True):
            if key in out:
                other = out[key]
                differ = [f for f in cells.grid if cells.fields.loc[cell, f] != cells.fields.loc[other, f]]
                raise PairingError(
                    f"arm {arm}{group_desc}: cells {other!r} and {cell!r} have the same "
                    f"{kv_text(pair_fields, key) or 'values'}, so neither has a unique partner; they differ in "
                    f"{', '.join(differ) or 'no grid field'}: add that field to the arm (field=value) or to --by"
                )
            out[key] = cell
        return out

    ka, kb = keyed(A, "a"), keyed(B, "b")
    common = sorted(set(ka) & set(kb), key=lambda k: tuple(value_sort_key(v) for v in k))
    lone_a = [ka[k] for k in ka if k not in kb]
    lone_b = [kb[k] for k in kb if k not in ka]
    note = ""
    if lone_a or lone_b:
        both = pd.concat([A, B])
        shown = [f for f in pair_fields if both[f].nunique() > 1] or pair_fields

        def listing(arm: str, lone: list[str]) -> str:
            return (
                f"arm {arm}: "
                + ", ".join(f"{c} ({kv_text(shown, tuple(cells.fields.loc[c, shown]))})" for c in lone[:4])
                + (f" and {len(lone) - 4} more" if len(lone) > 4 else "")
            )

        who = "; ".join(listing(arm, lone) for arm, lone in (("a", lone_a), ("b", lone_b)) if lone)
        disjoint = [f for f in pair_fields if set(A[f]).isdisjoint(set(B[f]))]
        hint = ""
        if disjoint:
            hint = (
                " The arms never share a value of "
                + "; ".join(
                    f"{f} (a: {', '.join(sorted(set(A[f])))}; b: {', '.join(sorted(set(B[f])))})" for f in disjoint
                )
                + f": name it in the arms (e.g. '...&{disjoint[0]}=...') or add it to --by."
            )
        counts = " and ".join(
            f"{len(lone)} cell(s) of arm {arm}" for arm, lone in (("a", lone_a), ("b", lone_b)) if lone
        )
        if not drop_unpaired:
            raise PairingError(
                f"{counts} have no partner{group_desc} (a pair agrees on {', '.join(pair_fields) or 'nothing'})."
                f"{hint} Without a partner: {who}"
            )
        note = f"left out, no partner: {who}"
    return [(ka[k], kb[k]) for k in common], note


def plan_pairs(
    cells: StudyCells,
    spec_a: Any,
    spec_b: Any,
    by: Sequence[str],
    *,
    drop_unpaired: bool = False,
    allow_missing_groups: bool = False,
) -> list[ArmPlan]:
    sel_a, sel_b = parse_arm(spec_a, cells), parse_arm(spec_b, cells)
    A, B = select_cells(cells, sel_a, spec_a, "a"), select_cells(cells, sel_b, spec_b, "b")
    both = sorted(set(A.index) & set(B.index))
    if both:
        raise ConfigError(
            f"arms a ({describe_arm(sel_a)}) and b ({describe_arm(sel_b)}) both select the cells {both[:5]}: "
            "two arms must differ in some field"
        )
    by = [resolve_field(f, cells.grid) for f in by]
    contrast = set(sel_a) | set(sel_b)
    clash = [f for f in by if f in contrast]
    if clash:
        raise ConfigError(f"{', '.join(clash)} is both contrasted by the arms and a --by field; use it in one place")
    rest = [f for f in cells.grid if f not in contrast and f not in by]
    implicit = [f for f in rest if A[f].nunique() == 1 and B[f].nunique() == 1 and A[f].iloc[0] != B[f].iloc[0]]
    pair_fields = [f for f in rest if f not in implicit]
    desc_a = describe_arm({**sel_a, **{f: A[f].iloc[0] for f in implicit}})
    desc_b = describe_arm({**sel_b, **{f: B[f].iloc[0] for f in implicit}})

    shared: dict[str, str] = {}  # by field -> the arm whose single value serves every group
    for f in by:
        va, vb = set(A[f]), set(B[f])
        if va.isdisjoint(vb):
            if len(va) == 1:
                shared[f] = "a"
            elif len(vb) == 1:
                shared[f] = "b"
            else:
                raise PairingError(
                    f"the arms share no value of the --by field {f} (a: {', '.join(sorted(va))}; "
                    f"b: {', '.join(sorted(vb))}), so no group has both"
                )

    # one group per combination of the by values that are not broadcast
    group_fields = [f for f in by if f not in shared]
    group_keys: set[tuple[str, ...]] = set()
    for rows in (A, B):
        group_keys |= set(rows[group_fields].itertuples(index=False, name=None)) if group_fields else {()}
    plans: list[ArmPlan] = []
    missing: list[str] = []
    for k in sorted(group_keys, key=lambda t: tuple(value_sort_key(v) for v in t)):
        g = dict(zip(group_fields, k, strict=True))
        ma = np.ones(len(A), dtype=bool)
        mb = np.ones(len(B), dtype=bool)
        for f, v in g.items():
            ma &= (A[f] == v).to_numpy()
            mb &= (B[f] == v).to_numpy()
        Ag, Bg = A[ma], B[mb]
        # a broadcast by field: the sharing arm keeps all its cells; the other arm's cells split by that field
        sub_groups: list[dict[str, str]] = [{}]
        for f, arm in shared.items():
            other = Bg if arm == "a" else Ag
            sub_groups = [{**s, f: v} for s in sub_groups for v in sorted(set(other[f]), key=value_sort_key)]
        for s in sub_groups:
            Ags, Bgs = Ag, Bg
            for f, v in s.items():
                if shared[f] == "a":
                    Bgs = Bgs[Bgs[f] == v]
                else:
                    Ags = Ags[Ags[f] == v]
            group = {f: (g | s)[f] for f in by}
            gd = f" in the group {kv_text(by, [group[f] for f in by])}" if by else ""
            if Ags.empty or Bgs.empty:
                arm = "a" if Ags.empty else "b"
                missing.append(f"arm {arm} was never run{gd}")
                if allow_missing_groups:
                    plans.append(ArmPlan(desc_a, desc_b, group, [], f"arm {arm} was never run{gd}"))
                continue
            pairs, note = pair_cells(cells, Ags, Bgs, pair_fields, gd, drop_unpaired)
            plans.append(ArmPlan(desc_a, desc_b, group, pairs, note))
    if missing and not allow_missing_groups:
        raise PairingError("; ".join(missing) + " — nothing to pair there; run the missing cells or drop that --by")
    return plans


__all__ = [
    "ArmPlan",
    "pair_cells",
    "plan_pairs",
]
