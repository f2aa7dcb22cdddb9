"""Paired statistics over a study's results table (the paper's Sec. IV-C: paired t-tests over repeats,
Benjamini–Hochberg across the family of comparisons).

The results table (``STUDY_DIR/results.parquet``) has one row per cell × label plus a row with the label
``"mean"`` (mean AUC over labels).  Every column that is not one of :data:`RESULT_COLUMNS` is a *grid
field*, named by its dotted config key (``stages``, ``model.colorizer``, ``data.subset``, ``trainer.seed``,
``transfer``...).

:func:`compare` contrasts two *arms*.  An arm is ``"field=value"`` (``"stages=color-module"``), several of
them joined with ``&`` (``"model.colorizer=pixelshuffle&stages=color-module,all"``), a bare value that
occurs in exactly one grid field (``"baseline"``), or a mapping ``{field: value}``.  A cell of arm A is
paired with the cell of arm B that has the same value of every other grid field (seed, subset draw, size,
backbone...), except:

* the contrasted fields (those named in A or B);
* fields that are constant within each arm but differ between them (e.g. ``model.colorizer`` is
  ``replicate`` for every baseline cell and ``pixelshuffle`` for every colour-module cell): they are part
  of what the arms are, and the result's ``a``/``b`` columns name them;
* the ``by`` fields, which split the comparison into groups (``by=["data.subset"]``: one comparison per
  training-set size).  When one arm has a single value of a ``by`` field that the other arm never has
  (the baseline's colorizer ``replicate`` with ``by=["model.colorizer"]``), that arm's cells are the
  reference of every group.

The ``transfer`` field holds the id of the source cell, which differs between repeats; for pairing and
display it is replaced by a description of the source (its dataset and stages, and whatever else varies
among sources), so that target cells of seed 0 and 1 transferring from the seed-0 and seed-1 sources pair
as expected.  An arm may name a source by its cell id or by that description.

The difference is always **B − A** (A is the reference).  Per label and for the mean: the number of pairs,
mean ± std (ddof 1) of each arm, the mean difference, a paired t-test (``scipy.stats.ttest_rel``) or a
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; with fewer than 6 pairs it cannot reach p < 0.05),
Benjamini–Hochberg adjusted p-values over every row returned (``scipy.stats.false_discovery_control``),
and a percentile bootstrap CI of the mean difference (pairs resampled with a seeded generator; the same
resamples for every label of one comparison).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError

#: columns of the results table that are not grid fields
RESULT_COLUMNS = (
    "schema_version",
    "study",
    "cell",
    "label",
    "val_auc",
    "test_auc",
    "test_ci_low",
    "test_ci_high",
    "n_train",
    "iterations",
    "wall_s",
    "run_dir",
    "git_commit",
    "medcolor_version",
    "torch_version",
)
SCHEMA_VERSION = 1
#: the label of the row holding the mean AUC over labels
MEAN_LABEL = "mean"
#: grid fields that index repeats of one condition (the paper's three runs / three subsets per size)
REPEAT_FIELDS = ("trainer.seed", "data.subset_draw")
TRANSFER_FIELD = "transfer"
TESTS = ("t", "wilcoxon")
METRICS = ("test_auc", "val_auc")
NONE = "none"

#: columns of the DataFrames returned by :func:`compare` (after the ``by`` fields)
STAT_COLUMNS = (
    "a",
    "b",
    "label",
    "n",
    "mean_a",
    "std_a",
    "mean_b",
    "std_b",
    "diff",
    "ci_low",
    "ci_high",
    "statistic",
    "p",
    "p_adj",
    "test",
    "metric",
    "note",
)


class ArmNotFoundError(ConfigError):
    """An arm of a comparison selects no cell of the study (never run, or misspelt)."""


class PairingError(DataError):
    """The cells of two arms cannot be paired, or there are too few pairs for the test."""


# ---------------------------------------------------------------------------------------------- table


def grid_fields(table: pd.DataFrame) -> list[str]:
    """The grid-field columns of a results table, in table order."""
    return [str(c) for c in table.columns if c not in RESULT_COLUMNS]


def check_results(table: pd.DataFrame, metric: str = "test_auc") -> None:
    """Refuse a table that is not a version-1 results table or lacks ``metric``."""
    if "schema_version" in table.columns and len(table):
        versions = sorted({int(v) for v in pd.unique(table["schema_version"].dropna())})
        if versions and versions != [SCHEMA_VERSION]:
            raise DataError(
                f"the results table has schema_version {versions}; this medcolor reads version {SCHEMA_VERSION}. "
                f"Re-run `medcolor study run` with this version to rewrite it"
            )
    missing = [c for c in ("cell", "label", metric) if c not in table.columns]
    if missing:
        raise DataError(f"the results table lacks the columns {missing}; is it a medcolor results.parquet?")
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if table.empty:
        raise DataError("the results table is empty: no cell of the study has finished")


def normalize_value(v: Any) -> str:
    """A grid value as the string used for matching and display: ``None``/NaN/"" -> ``"none"``,
    ``1000.0`` -> ``"1000"``, ``0.001`` -> ``"0.001"``, ``True`` -> ``"true"``."""
    if v is None or v is pd.NA or v is pd.NaT:
        return NONE
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return NONE
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)
    s = str(v).strip()
    return NONE if s == "" or s.lower() in ("none", "null", "nan") else s


def _normalize_query(v: Any) -> str:
    """A value typed by a person (``"1e-3"``, ``"10"``, ``"None"``) normalized like :func:`normalize_value`."""
    if isinstance(v, str):
        s = v.strip()
        if s.lower() in ("", "none", "null", "nan"):
            return NONE
        try:
            return normalize_value(float(s))
        except ValueError:
            return s
    return normalize_value(v)


@dataclass
class StudyCells:
    """A results table reshaped to one row per cell: grid values (normalized strings) and the metric per label."""

    fields: pd.DataFrame  # index cell; one str column per grid field
    values: pd.DataFrame  # index cell; one float column per label, MEAN_LABEL last
    labels: list[str]
    metric: str
    #: raw transfer source cell id -> its description (see the module docstring)
    transfer_ids: dict[str, str] = field(default_factory=dict)

    @property
    def grid(self) -> list[str]:
        return list(self.fields.columns)

    def subset(self, cells: Iterable[str]) -> StudyCells:
        idx = list(cells)
        return StudyCells(self.fields.loc[idx], self.values.loc[idx], self.labels, self.metric, self.transfer_ids)


def study_cells(table: pd.DataFrame, metric: str = "test_auc") -> StudyCells:
    """Reshape a results table to :class:`StudyCells` (validating it)."""
    check_results(table, metric)
    grid = grid_fields(table)
    t = table.copy()
    t["cell"] = t["cell"].map(str)
    t["label"] = t["label"].map(str)
    dup = t.duplicated(["cell", "label"], keep=False)
    if dup.any():
        bad = sorted(set(t.loc[dup, "cell"]))[:5]
        raise DataError(f"the results table has several rows for one cell and label (cells {bad}); it is corrupt")
    first = t.drop_duplicates("cell").set_index("cell")
    fields = pd.DataFrame({f: [normalize_value(v) for v in first[f]] for f in grid}, index=first.index, dtype=object)
    fields.index.name = "cell"
    labels = [x for x in pd.unique(t["label"]) if x != MEAN_LABEL]
    if (t["label"] == MEAN_LABEL).any():
        labels.append(MEAN_LABEL)
    values = t.pivot(index="cell", columns="label", values=metric).reindex(index=fields.index, columns=labels)
    values = values.astype(float)
    transfer_ids: dict[str, str] = {}
    if TRANSFER_FIELD in fields.columns:
        fields[TRANSFER_FIELD], transfer_ids = _describe_transfers(fields)
    return StudyCells(fields, values, labels, metric, transfer_ids)


def _describe_transfers(fields: pd.DataFrame) -> tuple[pd.Series, dict[str, str]]:
    raw = fields[TRANSFER_FIELD]
    sources = sorted({s for s in raw if s != NONE})
    known = [s for s in sources if s in fields.index]
    keep = [
        f
        for f in fields.columns
        if f not in (*REPEAT_FIELDS, TRANSFER_FIELD)
        and (f in ("data.dataset", "stages") or fields.loc[known, f].nunique() > 1)
    ]
    desc = {s: (" · ".join(fields.loc[s, f] for f in keep) if s in fields.index and keep else s) for s in sources}
    return raw.map(lambda s: desc.get(s, s)), desc


# ------------------------------------------------------------------------------------------------ arms


def resolve_field(name: str, fields: Sequence[str]) -> str:
    """A grid field by its dotted key, or by a unique last part (``seed`` -> ``trainer.seed``)."""
    if name in fields:
        return name
    hits = [f for f in fields if f.endswith("." + name)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ConfigError(f"{name!r} is ambiguous: it may be {', '.join(hits)}; write the whole key")
    raise ConfigError(f"{name!r} is not a grid field of this study; its grid fields are: {', '.join(fields) or 'none'}")


def _values_of(cells: StudyCells, f: str) -> list[str]:
    return sorted(set(cells.fields[f]), key=value_sort_key)


def value_sort_key(v: str) -> tuple[int, float, str]:
    if v == NONE:
        return (2, 0.0, v)
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def parse_arm(spec: str | Mapping[str, Any], cells: StudyCells) -> dict[str, str]:
    """``"field=value"``, ``"f1=v1&f2=v2"``, a bare value or a mapping -> ``{grid field: normalized value}``."""
    grid = cells.grid
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        text = str(spec).strip()
        if not text:
            raise ConfigError("an empty arm; write field=value (e.g. stages=color-module)")
        items = []
        for part in text.split("&"):
            part = part.strip()
            if "=" in part:
                k, v = part.split("=", 1)
                items.append((k.strip(), v.strip()))
            else:
                items.append((None, part))
    out: dict[str, str] = {}
    for k, v in items:
        if k is None:
            value = _normalize_query(v)
            hits = [
                f for f in grid if value in set(cells.fields[f]) or (f == TRANSFER_FIELD and v in cells.transfer_ids)
            ]
            if not hits:
                listing = "; ".join(f"{f}: {', '.join(_values_of(cells, f))}" for f in grid)
                raise ArmNotFoundError(f"no grid field has the value {v!r}; the study has {listing}")
            if len(hits) > 1:
                raise ConfigError(
                    f"{v!r} is a value of several grid fields ({', '.join(hits)}); write "
                    + " or ".join(f"{f}={v}" for f in hits)
                )
            k = hits[0]
        else:
            k = resolve_field(k, grid)
        if k in out:
            raise ConfigError(f"the arm {spec!r} names {k} twice")
        value = cells.transfer_ids.get(str(v).strip(), None) if k == TRANSFER_FIELD else None
        out[k] = value if value is not None else _normalize_query(v)
    return out


def describe_arm(sel: Mapping[str, str]) -> str:
    return " & ".join(f"{k}={v}" for k, v in sel.items())


def _select(cells: StudyCells, sel: Mapping[str, str], spec: Any, name: str) -> pd.DataFrame:
    mask = np.ones(len(cells.fields), dtype=bool)
    for f, v in sel.items():
        mask &= (cells.fields[f] == v).to_numpy()
    rows = cells.fields[mask]
    if rows.empty:
        parts = []
        for f, v in sel.items():
            have = _values_of(cells, f)
            state = "" if v in have else f" ({v!r} never)"
            parts.append(f"{f} has {', '.join(have)}{state}")
        msg = f"arm {name} ({spec if isinstance(spec, str) else describe_arm(sel)}) selects no cell: it was never run. "
        msg += "; ".join(parts)
        if all(v in _values_of(cells, f) for f, v in sel.items()) and len(sel) > 1:
            existing = sorted(
                {describe_arm(dict(zip(sel, r, strict=True))) for r in cells.fields[list(sel)].itertuples(index=False)}
            )
            msg += f"; each value exists but not together. Combinations run: {' | '.join(existing)}"
        raise ArmNotFoundError(msg)
    return rows


# ------------------------------------------------------------------------------------------- statistics


def _test(xa: np.ndarray, xb: np.ndarray, test: str) -> tuple[float, float, str]:
    """(statistic, two-sided p, note) for pairs (xa, xb)."""
    from scipy import stats

    d = xb - xa
    if np.all(d == 0):
        return 0.0, 1.0, "all differences are 0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "t":
            if np.all(d == d[0]):
                return math.copysign(math.inf, d[0]), 0.0, "all differences are equal (t is infinite)"
            r = stats.ttest_rel(xb, xa)
        else:
            r = stats.wilcoxon(xb, xa)
    return float(r.statistic), float(r.pvalue), ""


def _bootstrap_ci(d: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    if len(d) == 0 or n_boot <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else math.nan


def adjust_bh(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values; NaN entries stay NaN and are not counted in the family."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh")
    return out


@dataclass
class _Plan:
    """Two arms of one group, their cells paired."""

    a: str
    b: str
    group: dict[str, str]
    pairs: list[tuple[str, str]]  # (cell of a, cell of b), sorted by pairing key
    note: str = ""


def _pair(
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
                    f"{_kv(pair_fields, key) or 'values'}, so neither has a unique partner; they differ in "
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
                + ", ".join(f"{c} ({_kv(shown, tuple(cells.fields.loc[c, shown]))})" for c in lone[:4])
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


def _kv(fields: Sequence[str], values: Sequence[str]) -> str:
    return ", ".join(f"{f}={v}" for f, v in zip(fields, values, strict=True))


def _plan(
    cells: StudyCells,
    spec_a: Any,
    spec_b: Any,
    by: Sequence[str],
    *,
    drop_unpaired: bool = False,
    allow_missing_groups: bool = False,
) -> list[_Plan]:
    sel_a, sel_b = parse_arm(spec_a, cells), parse_arm(spec_b, cells)
    A, B = _select(cells, sel_a, spec_a, "a"), _select(cells, sel_b, spec_b, "b")
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
    plans: list[_Plan] = []
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
            gd = f" in the group {_kv(by, [group[f] for f in by])}" if by else ""
            if Ags.empty or Bgs.empty:
                arm = "a" if Ags.empty else "b"
                missing.append(f"arm {arm} was never run{gd}")
                if allow_missing_groups:
                    plans.append(_Plan(desc_a, desc_b, group, [], f"arm {arm} was never run{gd}"))
                continue
            pairs, note = _pair(cells, Ags, Bgs, pair_fields, gd, drop_unpaired)
            plans.append(_Plan(desc_a, desc_b, group, pairs, note))
    if missing and not allow_missing_groups:
        raise PairingError("; ".join(missing) + " — nothing to pair there; run the missing cells or drop that --by")
    return plans


def _rows(
    cells: StudyCells,
    plan: _Plan,
    labels: Sequence[str],
    test: str,
    n_boot: int,
    seed: int,
    level: float,
    min_pairs: int,
    strict: bool,
) -> list[dict[str, Any]]:
    ia = [a for a, _ in plan.pairs]
    ib = [b for _, b in plan.pairs]
    if len(plan.pairs) < min_pairs and strict:
        have = ", ".join(f"({a} vs {b})" for a, b in plan.pairs) or "none"
        where = f" in the group {_kv(list(plan.group), list(plan.group.values()))}" if plan.group else ""
        raise PairingError(
            f"{len(plan.pairs)} matched pair(s){where} between a ({plan.a}) and b ({plan.b}): {have}; a paired "
            f"{'t-test' if test == 't' else 'Wilcoxon test'} needs at least {min_pairs}: run more repeats of both "
            "arms with matching seeds / subset draws"
        )
    out = []
    for label in labels:
        xa = cells.values.loc[ia, label].to_numpy(float) if ia else np.zeros(0)
        xb = cells.values.loc[ib, label].to_numpy(float) if ib else np.zeros(0)
        ok = np.isfinite(xa) & np.isfinite(xb)
        xa, xb = xa[ok], xb[ok]
        n = len(xa)
        notes = [plan.note] if plan.note else []
        if n < len(ia):
            notes.append(f"{len(ia) - n} pair(s) without a finite {cells.metric}")
        stat = p = math.nan
        if n >= min_pairs:
            stat, p, tnote = _test(xa, xb, test)
            if tnote:
                notes.append(tnote)
        elif plan.pairs or not plan.note:
            notes.append(f"{n} pair(s): too few for the test")
        d = xb - xa
        lo, hi = _bootstrap_ci(d, n_boot, seed, level)
        out.append(
            {
                **plan.group,
                "a": plan.a,
                "b": plan.b,
                "label": label,
                "n": n,
                "mean_a": float(xa.mean()) if n else math.nan,
                "std_a": _std(xa),
                "mean_b": float(xb.mean()) if n else math.nan,
                "std_b": _std(xb),
                "diff": float(d.mean()) if n else math.nan,
                "ci_low": lo,
                "ci_high": hi,
                "statistic": stat,
                "p": p,
                "test": test,
                "metric": cells.metric,
                "note": "; ".join(notes),
            }
        )
    return out


def _labels(cells: StudyCells, labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return list(cells.labels)
    bad = [x for x in labels if x not in cells.labels]
    if bad:
        raise ConfigError(f"labels {bad} are not in the results table; it has {', '.join(cells.labels)}")
    return list(labels)


def _check_args(test: str, n_boot: int, level: float) -> None:
    if test not in TESTS:
        raise ConfigError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < level < 1:
        raise ConfigError(f"the confidence level must be in (0, 1), got {level}")


def _frame(rows: list[dict[str, Any]], by: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[*by, *[c for c in STAT_COLUMNS if c != "p_adj"]])
    df.insert(df.columns.get_loc("p") + 1, "p_adj", adjust_bh(df["p"].to_numpy(float)))
    df["n"] = df["n"].astype(int)
    return df


def compare(
    table: pd.DataFrame,
    a: str | Mapping[str, Any],
    b: str | Mapping[str, Any],
    *,
    by: Sequence[str] | None = None,
    test: str = "t",
    metric: str = "test_auc",
    n_boot: int = 2000,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired comparison of arm ``b`` against arm ``a`` (difference = b − a) over matched repeats.

    One row per ``by`` group × label (every label of the table and ``"mean"``, or ``labels``), with the
    columns ``*by``, :data:`STAT_COLUMNS`; ``p_adj`` is Benjamini–Hochberg over all rows returned.
    Raises :class:`ArmNotFoundError` for an arm that was never run (listing the values that exist) and
    :class:`PairingError` when cells lack a partner (naming them) or there are fewer than 2 pairs.
    """
    _check_args(test, n_boot, level)
    cells = study_cells(table, metric)
    by = [resolve_field(f, cells.grid) for f in (by or [])]
    labels = _labels(cells, labels)
    if cells.values[labels].isna().all().all():
        raise DataError(
            f"no cell has a finite {metric}"
            + ("; the study has no test split: use metric='val_auc'" if metric == "test_auc" else "")
        )
    rows = []
    for plan in _plan(cells, a, b, by):
        rows += _rows(cells, plan, labels, test, n_boot, seed, level, 2, strict=True)
    return _frame(rows, by)


# ------------------------------------------------------------------------------------- against baselines

#: single-stage baselines (gray image copied to 3 channels); which one an arm is compared with is decided
#: by :func:`reference_baseline`
BASELINES = ("baseline", "baseline-all")
#: the grid fields that make up an arm of Table I/III (the rest are sections or repeats)
ARM_FIELDS = ("model.colorizer", "stages", TRANSFER_FIELD)


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
    not run.  It is never an error when a section lacks a baseline or an arm's cells lack a partner:
    those rows get NaN statistics (or leave the unpaired cells out) and say so in ``note``.
    ``cells`` restricts the comparisons to those cell ids (transfer sources outside it are still
    described from the whole table).  Columns: ``*by``, the arm fields, ``baseline``, then
    :data:`STAT_COLUMNS`; ``p_adj`` is Benjamini–Hochberg over all rows returned.
    """
    _check_args(test, n_boot, level)
    only = cells
    cells = study_cells(table, metric)
    if only is not None:
        unknown = sorted(set(map(str, only)) - set(cells.fields.index))
        if unknown:
            raise ConfigError(f"cells {unknown[:5]} are not in the results table")
        cells = cells.subset([c for c in cells.fields.index if c in set(map(str, only))])
    if "stages" not in cells.grid:
        raise ConfigError("comparing against a baseline needs a 'stages' grid field (baseline, baseline-all, ...)")
    labels = _labels(cells, labels)
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
    rows: list[dict[str, Any]] = []
    sections = F[by].drop_duplicates() if by else pd.DataFrame(index=[0])
    for sec in sections.itertuples(index=False, name=None) if by else [()]:
        in_sec = np.ones(len(F), dtype=bool)
        for f, v in zip(by, sec, strict=True):
            in_sec &= (F[f] == v).to_numpy()
        group = dict(zip(by, sec, strict=True))
        sec_cells = F[in_sec]
        bases = set(sec_cells.loc[is_base[in_sec], "stages"])
        arms = sec_cells.loc[~is_base[in_sec], arm_fields].drop_duplicates()
        for arm in arms.itertuples(index=False, name=None):
            sel = dict(zip(arm_fields, arm, strict=True))
            ref = baseline or reference_baseline(sel["stages"])
            if ref not in bases and baseline is None:
                ref = next((x for x in BASELINES if x in bases), ref)
            sel_a = {"stages": ref} | ({TRANSFER_FIELD: NONE} if TRANSFER_FIELD in F.columns else {})
            head = {**group, **sel, "baseline": ref}
            sub = cells.subset(sec_cells.index)
            try:
                plans = _plan(sub, sel_a, sel, [], drop_unpaired=True)
                for plan in plans:
                    for r in _rows(sub, plan, labels, test, n_boot, seed, level, min_pairs, strict=False):
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


# ---------------------------------------------------------------------------------------------- text


def format_comparison(result: pd.DataFrame, *, scale: float = 100.0, decimals: int = 1, alpha: float = 0.05) -> str:
    """A :func:`compare` (or :func:`compare_to_baseline`) result as a Markdown table for a terminal:
    AUC ×``scale``, ``*`` where the BH-adjusted p < ``alpha``; the arms and the test above it."""
    if result.empty:
        return "(no comparisons)"
    stat_cols = set(STAT_COLUMNS) | {"baseline"}
    group = [c for c in result.columns if c not in stat_cols]

    def pm(m: float, s: float) -> str:
        if not np.isfinite(m):
            return "n/a"
        return f"{m * scale:.{decimals}f}" + (f" ± {s * scale:.{decimals}f}" if np.isfinite(s) else "")

    def p_text(p: float) -> str:
        return "–" if not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")

    head = []
    if result["a"].nunique() == 1 and result["b"].nunique() == 1:
        head.append(f"a: {result['a'].iloc[0]}\nb: {result['b'].iloc[0]}")
        arms = []
    else:
        arms = ["a", "b"]
    test = "paired t-test" if result["test"].iloc[0] == "t" else "Wilcoxon signed-rank test"
    scaled = f" ×{scale:g}" if scale != 1 else ""
    head.append(
        f"{result['metric'].iloc[0]}{scaled}; diff = b − a with a bootstrap CI; {test}; "
        f"p (BH): Benjamini–Hochberg over these {int(result['p'].notna().sum())} tests; * p (BH) < {alpha:g}"
    )
    cols = [*group, *arms, "label", "n", "a", "b", "diff [CI]", "p", "p (BH)"]
    if arms:
        cols = [*group, "a", "b", "label", "n", "mean a", "mean b", "diff [CI]", "p", "p (BH)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    notes = []
    for _, r in result.iterrows():
        d = r["diff"]
        diff = "–" if not np.isfinite(d) else f"{d * scale:+.{decimals}f}"
        if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
            diff += f" [{r['ci_low'] * scale:+.{decimals}f}, {r['ci_high'] * scale:+.{decimals}f}]"
        sig = " *" if np.isfinite(r["p_adj"]) and r["p_adj"] < alpha else ""
        vals = [str(r[g]) for g in group]
        if arms:
            vals += [str(r["a"]), str(r["b"])]
        vals += [str(r["label"]), str(int(r["n"])), pm(r["mean_a"], r["std_a"]), pm(r["mean_b"], r["std_b"])]
        vals += [diff, p_text(r["p"]), p_text(r["p_adj"]) + sig]
        lines.append("| " + " | ".join(vals) + " |")
        if r["note"]:
            notes.append(f"{r['label']}: {r['note']}")
    return "\n".join([*head, "", *lines, *(["", *sorted(set(notes))] if notes else [])])


__all__ = [
    "ARM_FIELDS",
    "BASELINES",
    "MEAN_LABEL",
    "REPEAT_FIELDS",
    "RESULT_COLUMNS",
    "SCHEMA_VERSION",
    "STAT_COLUMNS",
    "TESTS",
    "ArmNotFoundError",
    "PairingError",
    "StudyCells",
    "adjust_bh",
    "check_results",
    "compare",
    "compare_to_baseline",
    "describe_arm",
    "format_comparison",
    "grid_fields",
    "normalize_value",
    "parse_arm",
    "reference_baseline",
    "resolve_field",
    "study_cells",
    "value_sort_key",
]
