"""The plan's groups and the test sets of a study document (:mod:`medcolor.report.document`): the methods of
:class:`~medcolor.report.document.StudyView` that read a study's ``plan.json`` (every planned cell, finished or
not: ``group``, ``missing``, ``choice``, ``best``, ``compare_groups``) and build a :class:`DocArm` on any test set."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError
from medcolor.report.docvalues import DocArm, DocComparison
from medcolor.study.stats import MEAN_LABEL, REPEAT_FIELDS, check_labels, study_cells

INTERNAL_SET = "internal"
DEFAULT_FAMILY = "document"


def _num(x: Any) -> float:
    return float(x) if x is not None and np.isfinite(x) else math.nan


@dataclass
class DocChoice:
    """The configuration to ship among some groups (:meth:`StudyGroups.choice`): ``best`` and ``runner_up`` by
    ``val`` (selector -> mean validation AUC over the ``repeats`` repeats every candidate has finished)."""

    best: DocArm | None
    runner_up: DocArm | None
    val: dict[str, float]
    repeats: int


class StudyGroups:
    """Per-test-set arms and the plan's groups; mixed into :class:`~medcolor.report.document.StudyView`, whose
    ``_table``, ``_cells``, ``_metric``, ``name``, ``dir``, ``_run_dir`` and ``_compare`` they use."""

    _table: pd.DataFrame
    _cells: Any
    _metric: str
    _by_set: dict[tuple[str, str], Any]
    _plan: Any
    name: str
    dir: str

    def _run_dir(self, cell: str) -> Any:  # pragma: no cover - StudyView's
        raise NotImplementedError

    def _compare(self, *args: Any, **kw: Any) -> DocComparison:  # pragma: no cover - StudyView's
        raise NotImplementedError

    def _set_cells(self, test_set: str, metric: str | None = None) -> Any:
        """:class:`StudyCells` of ``test_set`` for ``metric`` (the document's by default), cached."""
        from medcolor.study.results import for_test_set

        key = (test_set, metric or self._metric)
        if key not in self._by_set:
            self._by_set[key] = study_cells(for_test_set(self._table, test_set), key[1])
        return self._by_set[key]

    def _plan_cells(self) -> list[Any]:
        """The cells of the study's plan (``plan.json``): finished or not."""
        from medcolor.study.layout import read_plan

        if self._plan is None:
            self._plan = read_plan(self.dir)
        return list(self._plan.cells)

    @property
    def groups(self) -> list[str]:
        """The named cell groups of the plan (the spec's ``cells:`` entries), in plan order."""
        return list(dict.fromkeys(str(c.group) for c in self._plan_cells() if c.group is not None))

    @property
    def planned(self) -> int:
        """The number of cells in the plan."""
        return len(self._plan_cells())

    @property
    def missing(self) -> list[str]:
        """The plan's cells that have no results yet (not finished, failed or not started), in plan order."""
        done = set(self._table["cell"].astype(str))
        return [c.id for c in self._plan_cells() if c.id not in done]

    def _check_one_condition(self, rows: pd.DataFrame, sel: Mapping[str, str], what: str) -> None:
        F = rows.drop(columns=[f for f in (*REPEAT_FIELDS, *sel) if f in rows.columns])
        varying = [f for f in F.columns if F[f].nunique() > 1]
        if varying:
            listing = "; ".join(f"{f}: {', '.join(sorted(set(F[f])))}" for f in varying)
            raise ConfigError(
                f"{self.name}: {what} selects cells of several conditions ({listing}); "
                f"add {' and '.join(f'{f}=...' for f in varying)} to it"
            )

    def _doc_arm(
        self,
        selector: str,
        label: str,
        cells: list[str],
        test_set: str,
        planned: int | None = None,
        missing: list[str] | None = None,
    ) -> DocArm:
        """The :class:`DocArm` of ``cells`` (those with a finite value on ``test_set``)."""
        sc = self._set_cells(test_set)
        have = [c for c in cells if c in sc.values.index]
        x = sc.values.loc[have, label].to_numpy(float) if have else np.array([])
        kept = [c for c, v in zip(have, x, strict=True) if np.isfinite(v)]
        vals = [float(v) for v in x if np.isfinite(v)]
        val = self._set_cells(INTERNAL_SET, "val_auc").values
        rows = self._set_rows(test_set, label).reindex(kept)
        return DocArm(
            selector, label, vals, kept, [self._run_dir(c) for c in kept], test_set=test_set,
            val_values=[float(val.loc[c, label]) if c in val.index else math.nan for c in kept],
            ci_low=[_num(v) for v in rows["test_ci_low"]], ci_high=[_num(v) for v in rows["test_ci_high"]],
            train_images=[_num(v) for v in rows["n_train"]],
            planned=planned, missing=list(missing or []),
            _on=lambda ts: self._doc_arm(selector, label, cells, ts, planned, missing),
        )  # fmt: skip

    def _set_rows(self, test_set: str, label: str) -> pd.DataFrame:
        """The table's rows of ``test_set`` and ``label``, one per cell (index: cell)."""
        from medcolor.study.results import for_test_set

        t = for_test_set(self._table, test_set)
        t = t[t["label"].astype(str) == label]
        return t.assign(cell=t["cell"].astype(str)).drop_duplicates("cell").set_index("cell")

    def group(self, name: str, label: str = MEAN_LABEL, test_set: str = INTERNAL_SET) -> DocArm:
        """The finished cells of the plan's group ``name`` (a ``cells:`` entry of the spec: every repeat of it)
        on ``test_set``; ``.planned`` / ``.missing`` say how many cells it has and which have not finished.
        A group with no finished cell has ``n == 0`` (its numbers read ``n/a``)."""
        plan = [c for c in self._plan_cells() if c.group == name]
        if not plan:
            raise ConfigError(f"{self.name}: the plan has no group {name!r}; its groups: {', '.join(self.groups)}")
        labels = check_labels(self._cells, [label])
        done = set(self._cells.fields.index)
        cells = [c.id for c in plan if c.id in done]
        if cells:
            rows = self._cells.fields.loc[cells]
            self._check_one_condition(rows, {}, f"the group {name!r}")
        missing = [c.id for c in plan if c.id not in done]
        return self._doc_arm(name, labels[0], cells, test_set, planned=len(plan), missing=missing)

    def _repeat(self, cell: str) -> tuple[Any, ...]:
        """The repeat a finished cell is (its seed, subset draw...: the grid's repeat fields)."""
        return tuple(self._cells.fields.loc[cell, f] for f in REPEAT_FIELDS if f in self._cells.grid)

    def choice(self, names: list[str], label: str = MEAN_LABEL, test_set: str = INTERNAL_SET) -> DocChoice | None:
        """Of the groups ``names``, the one with the highest mean validation AUC (the only number a choice is made
        on; the first of equal ones) over the repeats every group with a finished cell has finished, so that no
        group is chosen on a seed the others have not run; the arms on ``test_set`` (the choice does not depend on
        it).  ``None`` while no group has a finished cell; ``best`` is ``None`` while they share no repeat
        (``repeats == 0``) or none has a finite validation AUC on the shared ones."""
        arms = [a for a in (self.group(n, label) for n in names) if a.n]
        if not arms:
            return None
        common = set.intersection(*({self._repeat(c) for c in a.cells} for a in arms))
        val = {a.selector: self._val_on(a, common) for a in arms}
        ranked = sorted((a for a in arms if np.isfinite(val[a.selector])), key=lambda a: -val[a.selector])
        ranked = [a if test_set == INTERNAL_SET else a.on(test_set) for a in ranked[:2]]
        return DocChoice(ranked[0] if ranked else None, ranked[1] if len(ranked) > 1 else None, val, len(common))

    def _val_on(self, arm: DocArm, repeats: set[tuple[Any, ...]]) -> float:
        """The mean validation AUC of ``arm``'s cells that are one of ``repeats`` (NaN without a finite one each)."""
        shared = [v for c, v in zip(arm.cells, arm.val_values, strict=True) if self._repeat(c) in repeats]
        return float(np.mean(shared)) if shared and np.isfinite(shared).all() else math.nan

    def best(self, names: list[str], label: str = MEAN_LABEL, test_set: str = INTERNAL_SET) -> DocArm | None:
        """``choice(names).best``: the group to ship on validation AUC (``None`` while none can be chosen)."""
        c = self.choice(names, label, test_set)
        return c.best if c is not None else None

    def compare_groups(
        self,
        a: str,
        b: str,
        label: str = MEAN_LABEL,
        family: str = DEFAULT_FAMILY,
        test: str = "t",
        test_set: str = INTERNAL_SET,
        min_pairs: int = 2,
    ) -> DocComparison | None:
        """:meth:`compare` of the plan's groups ``a`` and ``b`` on the repeats both have finished (cells of one
        group without a finished partner are left out until it finishes); ``None`` while no pair exists.  With
        fewer than ``min_pairs`` pairs the mean difference is shown without an interval or a test (``n = 2: no
        test``), and the comparison is no member of its BH family."""
        ga, gb = self.group(a, label), self.group(b, label)
        key = lambda c: tuple(self._cells.fields.loc[c, f] for f in REPEAT_FIELDS if f in self._cells.grid)  # noqa: E731
        common = {key(c) for c in ga.cells} & {key(c) for c in gb.cells}
        if not common:
            return None
        lonely = {c for c in (*ga.cells, *gb.cells) if key(c) not in common}
        keep = [str(c) for c in self._cells.fields.index if c not in lonely]
        # the grid values the group's cells share (the transfer source as its description: the same for every
        # repeat of a group)
        sel_a, sel_b = ({f: self._cells.fields.loc[g.cells[0], f] for f in self._cells.grid if f not in REPEAT_FIELDS}
                        for g in (ga, gb))  # fmt: skip
        if sel_a == sel_b:
            raise ConfigError(f"{self.name}: the groups {a!r} and {b!r} are the same condition: nothing to compare")
        return self._compare(
            dict(sel_a), dict(sel_b), label, family, test, test_set, keep=keep, names=(a, b), min_pairs=min_pairs
        )
