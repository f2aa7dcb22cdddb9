"""Pairing the cells of two arms: the fields that must agree (seed, subset draw, size...), ``by`` groups
(one arm's single value may serve every group), and partners found or the cells that lack one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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


def _check_unique(cells: StudyCells, rows: pd.DataFrame, pair_fields: list[str], arm: str, group_desc: str) -> None:
    """Each cell of an arm needs a unique pairing key, or it has no unique partner."""
    keys = rows[pair_fields] if pair_fields else pd.DataFrame(index=rows.index, data={"_": 0})
    again = keys.duplicated(keep="first")
    if not again.any():
        return
    cell = str(rows.index[again.to_numpy()][0])
    key = tuple(keys.loc[cell])
    other = str(next(c for c in rows.index if tuple(keys.loc[c]) == key))
    differ = [f for f in cells.grid if cells.fields.loc[cell, f] != cells.fields.loc[other, f]]
    shown = kv_text(pair_fields, tuple(rows.loc[cell, pair_fields])) if pair_fields else ""
    raise PairingError(
        f"arm {arm}{group_desc}: cells {other!r} and {cell!r} have the same {shown or 'values'}, so neither has a "
        f"unique partner; they differ in {', '.join(differ) or 'no grid field'}: add that field to the arm "
        "(field=value) or to --by"
    )


def _lonely_message(
    cells: StudyCells, A: pd.DataFrame, B: pd.DataFrame, pair_fields: list[str], lone: dict[str, list[str]]
) -> tuple[str, str, str]:
    """(which cells lack a partner, a hint on the field the arms never share, counts) for the messages."""
    both = pd.concat([A, B])
    shown = [f for f in pair_fields if both[f].nunique() > 1] or pair_fields

    def listing(arm: str, cs: list[str]) -> str:
        more = f" and {len(cs) - 4} more" if len(cs) > 4 else ""
        return (
            f"arm {arm}: "
            + ", ".join(f"{c} ({kv_text(shown, tuple(cells.fields.loc[c, shown]))})" for c in cs[:4])
            + more
        )

    who = "; ".join(listing(arm, cs) for arm, cs in lone.items() if cs)
    disjoint = [f for f in pair_fields if set(A[f]).isdisjoint(set(B[f]))]
    hint = ""
    if disjoint:
        values = "; ".join(
            f"{f} (a: {', '.join(sorted(set(A[f])))}; b: {', '.join(sorted(set(B[f])))})" for f in disjoint
        )
        hint = (
            f" The arms never share a value of {values}: name it in the arms (e.g. '...&{disjoint[0]}=...') "
            "or add it to --by."
        )
    counts = " and ".join(f"{len(cs)} cell(s) of arm {arm}" for arm, cs in lone.items() if cs)
    return who, hint, counts


def pair_cells(
    cells: StudyCells,
    A: pd.DataFrame,
    B: pd.DataFrame,
    pair_fields: list[str],
    group_desc: str,
    drop_unpaired: bool,
) -> tuple[list[tuple[str, str]], str]:
    """The pairs (cell of a, cell of b) that agree on every ``pair_fields`` value — a merge of the two
    arms' cells on those repeat keys — sorted by key, and a note naming the cells left without a partner
    (``drop_unpaired``; else those are a PairingError)."""
    _check_unique(cells, A, pair_fields, "a", group_desc)
    _check_unique(cells, B, pair_fields, "b", group_desc)
    on = list(pair_fields) or ["_all"]
    left = A[pair_fields].assign(_all=0).rename_axis("cell_a").reset_index()
    right = B[pair_fields].assign(_all=0).rename_axis("cell_b").reset_index()
    merged = left.merge(right, on=on, how="inner")
    merged["_order"] = [tuple(value_sort_key(v) for v in k) for k in merged[pair_fields].itertuples(index=False)]
    merged = merged.sort_values("_order", kind="stable")
    pairs = list(zip(merged["cell_a"].map(str), merged["cell_b"].map(str), strict=True))
    lone = {
        "a": [str(c) for c in A.index if c not in set(merged["cell_a"])],
        "b": [str(c) for c in B.index if c not in set(merged["cell_b"])],
    }
    if not lone["a"] and not lone["b"]:
        return pairs, ""
    who, hint, counts = _lonely_message(cells, A, B, pair_fields, lone)
    if not drop_unpaired:
        raise PairingError(
            f"{counts} have no partner{group_desc} (a pair agrees on {', '.join(pair_fields) or 'nothing'})."
            f"{hint} Without a partner: {who}"
        )
    return pairs, f"left out, no partner: {who}"


def _select_arms(cells: StudyCells, spec_a: Any, spec_b: Any) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    sel_a, sel_b = parse_arm(spec_a, cells), parse_arm(spec_b, cells)
    A, B = select_cells(cells, sel_a, spec_a, "a"), select_cells(cells, sel_b, spec_b, "b")
    both = sorted(set(A.index) & set(B.index))
    if both:
        raise ConfigError(
            f"arms a ({describe_arm(sel_a)}) and b ({describe_arm(sel_b)}) both select the cells {both[:5]}: "
            "two arms must differ in some field"
        )
    return sel_a, sel_b, A, B


def _shared_by(A: pd.DataFrame, B: pd.DataFrame, by: list[str]) -> dict[str, str]:
    """``by`` fields whose values the arms never share: the arm with a single value (``"a"``/``"b"``)
    serves every group of the other."""
    shared: dict[str, str] = {}
    for f in by:
        va, vb = set(A[f]), set(B[f])
        if not va.isdisjoint(vb):
            continue
        if len(va) == 1 or len(vb) == 1:
            shared[f] = "a" if len(va) == 1 else "b"
        else:
            raise PairingError(
                f"the arms share no value of the --by field {f} (a: {', '.join(sorted(va))}; "
                f"b: {', '.join(sorted(vb))}), so no group has both"
            )
    return shared


def _groups(
    A: pd.DataFrame, B: pd.DataFrame, by: list[str], shared: dict[str, str]
) -> Iterator[tuple[dict[str, str], pd.DataFrame, pd.DataFrame]]:
    """(group values, cells of a, cells of b) per ``by`` group; a shared field's single value serves
    every value the other arm has."""
    group_fields = [f for f in by if f not in shared]
    keys = pd.concat([A[group_fields], B[group_fields]]).drop_duplicates() if group_fields else pd.DataFrame([{}])
    ordered = sorted(keys.itertuples(index=False, name=None), key=lambda t: tuple(value_sort_key(v) for v in t))
    for k in ordered:
        g = dict(zip(group_fields, k, strict=True))
        Ag = A[(A[group_fields] == pd.Series(g)).all(axis=1)] if g else A
        Bg = B[(B[group_fields] == pd.Series(g)).all(axis=1)] if g else B
        for sub, Ags, Bgs in _split_shared(Ag, Bg, shared):
            yield {f: (g | sub)[f] for f in by}, Ags, Bgs


def _pairing_fields(
    cells: StudyCells, sel_a: dict, sel_b: dict, A: pd.DataFrame, B: pd.DataFrame, by: list[str]
) -> tuple[list[str], str, str]:
    """The repeat keys a pair agrees on (every grid field neither arm names, no ``by`` field, and not one
    constant within each arm but different between them: that one is part of the arms) and the arms'
    descriptions."""
    contrast = set(sel_a) | set(sel_b)
    clash = [f for f in by if f in contrast]
    if clash:
        raise ConfigError(f"{', '.join(clash)} is both contrasted by the arms and a --by field; use it in one place")
    rest = [f for f in cells.grid if f not in contrast and f not in by]
    implicit = [f for f in rest if A[f].nunique() == 1 and B[f].nunique() == 1 and A[f].iloc[0] != B[f].iloc[0]]
    desc_a = describe_arm({**sel_a, **{f: A[f].iloc[0] for f in implicit}})
    desc_b = describe_arm({**sel_b, **{f: B[f].iloc[0] for f in implicit}})
    return [f for f in rest if f not in implicit], desc_a, desc_b


def _split_shared(
    Ag: pd.DataFrame, Bg: pd.DataFrame, shared: dict[str, str]
) -> Iterator[tuple[dict[str, str], pd.DataFrame, pd.DataFrame]]:
    """Within one group: per value of each shared field, the other arm's cells of that value against
    every cell of the arm that has the single value."""
    subs: list[dict[str, str]] = [{}]
    for f, arm in shared.items():
        other = Bg if arm == "a" else Ag
        subs = [{**s, f: v} for s in subs for v in sorted(set(other[f]), key=value_sort_key)]
    for sub in subs:
        Ags, Bgs = Ag, Bg
        for f, v in sub.items():
            Ags, Bgs = (Ags, Bgs[Bgs[f] == v]) if shared[f] == "a" else (Ags[Ags[f] == v], Bgs)
        yield sub, Ags, Bgs


def plan_pairs(
    cells: StudyCells,
    spec_a: Any,
    spec_b: Any,
    by: Sequence[str],
    *,
    drop_unpaired: bool = False,
    allow_missing_groups: bool = False,
) -> list[ArmPlan]:
    """The two arms' cells paired per ``by`` group: a pair agrees on every grid field that neither arm
    names, that is no ``by`` field and that is not constant within each arm but different between them."""
    sel_a, sel_b, A, B = _select_arms(cells, spec_a, spec_b)
    by = [resolve_field(f, cells.grid) for f in by]
    pair_fields, desc_a, desc_b = _pairing_fields(cells, sel_a, sel_b, A, B, by)
    plans: list[ArmPlan] = []
    missing: list[str] = []
    for group, Ag, Bg in _groups(A, B, by, _shared_by(A, B, by)):
        gd = f" in the group {kv_text(by, [group[f] for f in by])}" if by else ""
        if Ag.empty or Bg.empty:
            missing.append(f"arm {'a' if Ag.empty else 'b'} was never run{gd}")
            if allow_missing_groups:
                plans.append(ArmPlan(desc_a, desc_b, group, [], missing[-1]))
            continue
        pairs, note = pair_cells(cells, Ag, Bg, pair_fields, gd, drop_unpaired)
        plans.append(ArmPlan(desc_a, desc_b, group, pairs, note))
    if missing and not allow_missing_groups:
        raise PairingError("; ".join(missing) + " — nothing to pair there; run the missing cells or drop that --by")
    return plans


__all__ = [
    "ArmPlan",
    "pair_cells",
    "plan_pairs",
]
