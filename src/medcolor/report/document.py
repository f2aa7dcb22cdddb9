"""A results document generated from studies (``medcolor study document``): a Markdown (or any text)
template, written by the researcher, whose numbers all come from the studies' results tables.

The template is Jinja2.  Each study given as ``NAME=DIR`` is a variable ``NAME`` (a :class:`StudyView`)
with:

* ``NAME.compare(a, b, label="mean", family="document", test="t", test_set="internal")`` — a paired
  comparison of arm ``b`` against arm ``a`` (difference b − a, arms written as for ``medcolor study
  compare``) on a test set (an external set: its own BH family, ``"<family> · <set>"``), a
  :class:`DocComparison`: ``{{ c }}`` renders ``-0.8 [-1.0, -0.7], p = 0.083, BH p = 0.332 (n = 2)``;
  ``c.a`` / ``c.b`` the arms' mean ± std, ``c.d`` the difference with its bootstrap CI, ``c.p``,
  ``c.p_bh``, ``c.n``, ``c.sig`` (BH p < 0.05) and the raw numbers (``c.diff``, ``c.p_value``...);
* ``NAME.arm(selector, label="mean")`` — the mean ± std of one condition over its repeats
  (:class:`DocArm`); the selector must pin every grid field that is not a repeat field.  What its run
  directories recorded: ``arm.stage("lr")`` (the max lr of each repeat's first stage),
  ``arm.val_at(20)`` (validation AUC at step 20), as :class:`Values` (``.fmt("{:.1e}")``, ``.range()``);
* ``NAME.arm(selector, label="mean", test_set="internal")`` also on an external set; per arm: ``arm.val``
  (validation AUC of each repeat, what choices are made on), ``arm.auc`` (an :class:`Estimate`: the test
  AUC with each run's bootstrap CI, ``91.8 [89.0, 94.1]`` for one repeat), ``arm.on("nih")`` (the same
  cells on another set), ``arm.drop("nih")`` (external − internal of the same runs, a :class:`Difference`),
  ``arm.operating("nih")`` (:class:`Operating`: sensitivity, specificity, PPV, NPV, accuracy with CIs,
  Brier, ECE, threshold and the set's positives / negatives, at the threshold chosen on validation),
  ``arm.plateau()`` (:class:`Plateau`: best vs last validation step), ``arm.n_train``;
* ``NAME.group("gray-ft")`` — the finished cells of a ``cells:`` group of the spec (every repeat), with
  ``.planned`` and ``.missing`` (its cells not finished: ``n == 0`` while none is); ``NAME.groups``,
  ``NAME.planned``, ``NAME.missing`` (the plan's cells without results); ``NAME.choice([groups])`` — the
  best group on validation AUC over the repeats all have finished, and the runner-up (``NAME.best``: the first);
  ``NAME.compare_groups(a, b, test_set=..., min_pairs=3)`` — :meth:`StudyView.compare` of two groups over
  the repeats both have finished (``None`` without a pair; below ``min_pairs`` pairs: no test);
* ``NAME.table("table1" | "table2" | "table3")`` — the report's Table I–III as Markdown (a column group
  per test set with each external set's drop against the internal one); ``NAME.test_sets`` the sets;
* ``NAME.cells`` (number of finished cells), ``NAME.hours`` (their summed wall time), ``NAME.commits``
  (cells per medcolor commit, short; a cell resumed under other code: ``a + b``), ``NAME.devices`` (cells per
  device and precision), ``NAME.name``, ``NAME.dir``.

Benjamini–Hochberg adjusts the p-values of every comparison of one ``family`` together (by default
every comparison of the document is one family); the template is rendered twice, first to collect the
comparisons, then with the adjusted p-values.  ``families`` in the template lists each family with its
size (the comparisons in it that have a test), for a sentence saying what was adjusted together.

Comparisons with a single pair (e.g. a training-set size that has one possible subset) show the
difference and no test: ``n = 1: no test``.
"""

from __future__ import annotations

import keyword
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError, MedcolorError
from medcolor.report.docgroups import DEFAULT_FAMILY, INTERNAL_SET, StudyGroups
from medcolor.report.docvalues import Difference, DocArm, DocComparison, Estimate, Operating, Plateau, Values
from medcolor.study.provenance import short_commits
from medcolor.study.stats import MEAN_LABEL, adjust_bh, check_labels, compare, parse_arm, select_cells, study_cells
from medcolor.utils import write_text_atomic

#: names a template already has: a study cannot take them
RESERVED_NAMES = frozenset({"studies", "families", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})


def _num(x: Any) -> float:
    return float(x) if x is not None and np.isfinite(x) else math.nan


@dataclass
class _Registry:
    """The comparisons of one document, keyed by what they compare; ``used``: the keys the current
    rendering pass asked for (the second pass must ask for the same ones); ``tests``: the test behind each
    key (the ``mean`` of a single-label study is its label's test: one member of its family, not two)."""

    items: dict[tuple, DocComparison] = field(default_factory=dict)
    tests: dict[tuple, tuple] = field(default_factory=dict)
    used: set[tuple] = field(default_factory=set)
    final: bool = False

    def families(self) -> dict[str, list[DocComparison]]:
        out: dict[str, list[DocComparison]] = {}
        for c in self.items.values():
            out.setdefault(c.family, []).append(c)
        return out

    def adjust(self) -> None:
        by_family: dict[str, dict[tuple, list[DocComparison]]] = {}
        for key, c in self.items.items():
            by_family.setdefault(c.family, {}).setdefault(self.tests[key], []).append(c)
        for tests in by_family.values():
            groups = list(tests.values())
            adj = adjust_bh([g[0].p_value for g in groups])
            size = int(np.isfinite(adj).sum())
            for g, p in zip(groups, adj, strict=True):
                for c in g:
                    c.p_adj, c.adjusted, c.family_size = float(p), True, size


class _Families:
    """``families`` in a template: ``{"name", "size"}`` per family of comparisons (size: those with a
    test), read when the template iterates it (the first pass sees those asked for so far)."""

    def __init__(self, registry: _Registry) -> None:
        self._registry = registry

    def _list(self) -> list[dict[str, Any]]:
        fams = self._registry.families().items()
        return [{"name": k, "size": sum(np.isfinite(c.p_value) for c in v)} for k, v in fams]

    def __iter__(self):
        return iter(self._list())

    def __len__(self) -> int:
        return len(self._list())

    def __getitem__(self, i: int) -> dict[str, Any]:
        fams = self._list()
        if -len(fams) <= i < len(fams) or self._registry.final:
            return fams[i]
        return {"name": "…", "size": 0}  # the first pass, before the comparisons after this point


class StudyView(StudyGroups):
    """A study's results as the template sees them (see the module docstring)."""

    def __init__(
        self,
        name: str,
        study_dir: str | os.PathLike,
        registry: _Registry,
        *,
        metric: str = "test_auc",
        n_boot: int = 2000,
        seed: int = 0,
        level: float = 0.95,
    ) -> None:
        from medcolor.study.results import INTERNAL, for_test_set, read_results, table_test_sets

        self.name = name
        self.dir = str(study_dir)
        self._table = read_results(study_dir)
        #: the study's test sets, "internal" (each cell's own held-out split) first
        self.test_sets = table_test_sets(self._table)
        self._cells = study_cells(for_test_set(self._table, INTERNAL), metric)
        self._by_set: dict[tuple[str, str], Any] = {(INTERNAL, metric): self._cells}
        self._registry = registry
        self._metric = metric
        self._n_boot, self._seed, self._level = n_boot, seed, level
        self._plan: Any = None

    @property
    def cells(self) -> int:
        return len(self._cells.fields)

    def compare(
        self,
        a: str,
        b: str,
        label: str = MEAN_LABEL,
        family: str = DEFAULT_FAMILY,
        test: str = "t",
        test_set: str = INTERNAL_SET,
    ) -> DocComparison:
        """Arm ``b`` against arm ``a`` on ``test_set`` ("internal", or an external set of :attr:`test_sets`)."""
        return self._compare(a, b, label, family, test, test_set)

    def _compare(
        self,
        a: str | Mapping[str, str],
        b: str | Mapping[str, str],
        label: str,
        family: str,
        test: str,
        test_set: str,
        keep: list[str] | None = None,
        names: tuple[str, str] | None = None,
        min_pairs: int = 2,
    ) -> DocComparison:
        family_key = str(family) if test_set == "internal" else f"{family} · {test_set}"
        key = (
            self.name,
            self._arm_key(a),
            self._arm_key(b),
            label,
            family_key,
            test,
            tuple(sorted(keep or ())),
            min_pairs,
        )
        self._registry.used.add(key)
        if key in self._registry.items:
            return self._registry.items[key]
        table = self._table if keep is None else self._table[self._table["cell"].astype(str).isin(set(keep))]
        rows = compare(
            table, a, b, labels=[label], test=test, metric=self._metric, n_boot=self._n_boot,
            seed=self._seed, level=self._level, family=family_key, allow_one_pair=True, test_set=test_set,
        )  # fmt: skip
        if len(rows) != 1:  # pragma: no cover - one group without ``by``, one label
            raise DataError(f"{self.name}: the comparison {a!r} vs {b!r} gave {len(rows)} rows")
        row = rows.iloc[0]
        if row["n"] == 0:
            raise DataError(
                f"{self.name}: no pair of cells between {a!r} and {b!r} has a finite {self._metric} for {label}"
            )
        arm_a, arm_b = names if names is not None else (str(row["a"]), str(row["b"]))
        c = DocComparison(
            study=self.name, arm_a=arm_a, arm_b=arm_b, label=label, family=family_key, n=int(row["n"]),
            mean_a=_num(row["mean_a"]), std_a=_num(row["std_a"]), mean_b=_num(row["mean_b"]),
            std_b=_num(row["std_b"]), diff=_num(row["diff"]), ci_low=_num(row["ci_low"]),
            ci_high=_num(row["ci_high"]), ci_method=str(row["ci_method"]), p_value=_num(row["p"]), test=test,
            note=str(row["note"]),
        )  # fmt: skip
        if c.n < min_pairs and np.isfinite(c.p_value):  # too few pairs for the test the document asks for
            c.p_value, c.note = math.nan, f"{c.n} pairs, fewer than {min_pairs}: no test"
            c.ci_low = c.ci_high = math.nan
            c.ci_method = ""
        own = [x for x in self._cells.labels if x != MEAN_LABEL]
        same = own[0] if label == MEAN_LABEL and len(own) == 1 else label  # a single-label study's mean
        self._registry.tests[key] = (*key[:3], same, *key[4:])
        self._registry.items[key] = c
        return c

    def _arm_key(self, spec: str | Mapping[str, str]) -> tuple:
        """An arm as what it selects (spelling and order of its parts do not matter)."""
        return tuple(sorted(parse_arm(spec, self._cells).items()))

    def arm(self, selector: str, label: str = MEAN_LABEL, test_set: str = INTERNAL_SET) -> DocArm:
        """One condition over its repeats on ``test_set`` (see the module docstring)."""
        labels = check_labels(self._cells, [label])
        sel = parse_arm(selector, self._cells)
        rows = select_cells(self._cells, sel, selector, "")
        self._check_one_condition(rows, sel, f"the arm {selector!r}")
        return self._doc_arm(selector, labels[0], [str(c) for c in rows.index], test_set)

    def _run_dir(self, cell: str) -> Path | None:
        from medcolor.report.rundirs import run_dir_of

        rows = self._table.loc[self._table["cell"].astype(str) == cell, "run_dir"]
        return run_dir_of(Path(self.dir), rows.iloc[0]) if len(rows) else None

    @property
    def commits(self) -> list[dict[str, Any]]:
        """``{"commit": short hash, "cells": count}`` per medcolor commit that ran cells, most cells first."""
        first = self._table.drop_duplicates("cell")
        counts = first["git_commit"].fillna("unknown").astype(str).value_counts()
        return [{"commit": short_commits(c), "cells": int(n)} for c, n in counts.items()]

    @property
    def devices(self) -> list[dict[str, Any]]:
        """``{"device": name, "precision": ..., "cells": count}`` per device the cells computed on (results schema
        3; "not recorded" for cells from before it), most cells first."""
        first = self._table.drop_duplicates("cell")[["device", "precision"]].fillna("").astype(str)
        keys = first.replace("", "not recorded").value_counts()
        return [{"device": d, "precision": p, "cells": int(n)} for (d, p), n in keys.items()]

    @property
    def hours(self) -> float:
        """Cell time in hours: the sum of the finished cells' wall times."""
        first = self._table.drop_duplicates("cell")
        return float(pd.to_numeric(first["wall_s"], errors="coerce").sum()) / 3600

    def table(self, key: str, title: bool = True, where: str | None = None) -> str:
        """The report's Table I/II/III as Markdown (with a column group per test set and the drop against the
        internal one when the study has external sets); ``where`` (an arm selector, e.g. ``"data=none"``)
        keeps only the cells it selects; ``title=False`` drops the ``### Table ...`` line."""
        from medcolor.report.tables import TableOptions, per_test_set, table1, table2, table3

        fns = {"table1": table1, "table2": table2, "table3": table3}
        if key not in fns:
            raise ConfigError(f"{self.name}.table({key!r}): the tables are {', '.join(fns)}")
        table = self._table
        if where is not None:
            keep = set(select_cells(self._cells, parse_arm(where, self._cells), where, "where").index)
            table = table[table["cell"].astype(str).isin(keep)]
        t = per_test_set(fns[key], table, TableOptions(metric=self._metric, n_boot=self._n_boot, seed=self._seed))
        if t is None:
            raise DataError(f"{self.name}: the study has no {key}{' where ' + where if where else ''} (see its report)")
        if where is not None:  # a label no kept cell has (another dataset's) is not a column
            t = _drop_empty_label_columns(t)
        md = t.to_markdown()
        return md if title else md.split("\n", 2)[2]

    def __repr__(self) -> str:
        return f"StudyView({self.name!r}, {self.dir!r}, {self.cells} cells)"


def _drop_empty_label_columns(t: Any) -> Any:
    """A table whose every row shows "n/a" in a column (a label of cells that were filtered out) loses it."""
    rows = [r for _, sec in t.sections for r in sec]
    empty = [j for j in range(t.text_columns, len(t.columns)) if rows and all(r[j] == "n/a" for r in rows)]
    if not empty:
        return t
    keep = [j for j in range(len(t.columns)) if j not in empty]
    t.columns = [t.columns[j] for j in keep]
    t.sections = [(h, [[r[j] for j in keep] for r in sec]) for h, sec in t.sections]
    return t


def _environment(search: Path):
    """A sandboxed environment: a template (perhaps someone else's) reads the study views' public
    attributes and methods but cannot reach Python internals (``cycler.__init__.__globals__``...)."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(search)),
        autoescape=False,  # Markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def _check_study_names(studies: Mapping[str, Any]) -> None:
    """At least one study, each named as a template variable can be."""
    if not studies:
        raise ConfigError("give at least one study: --study NAME=DIR")
    for name in studies:
        if not name.isidentifier() or keyword.iskeyword(name) or name in RESERVED_NAMES:
            raise ConfigError(
                f"the study name {name!r} cannot be a template variable: use letters, digits and _, and none of "
                f"{', '.join(sorted(RESERVED_NAMES))} or a Python keyword"
            )


def _load_template(tpath: Path) -> Any:
    """The template at ``tpath`` in a sandboxed environment that finds the templates it includes beside it."""
    import jinja2

    try:
        return _environment(tpath.parent).get_template(tpath.name)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{tpath}, line {exc.lineno}: {exc.message}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{tpath} is not UTF-8 text: {exc}") from None


def render_document(
    template: str | os.PathLike,
    studies: Mapping[str, str | os.PathLike],
    *,
    metric: str = "test_auc",
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> str:
    """Render ``template`` with one :class:`StudyView` per ``studies`` item (name -> study directory)."""
    import jinja2
    from jinja2.exceptions import SecurityError

    tpath = Path(template)
    if not tpath.is_file():
        raise ConfigError(f"no template at {tpath}")
    _check_study_names(studies)
    tmpl = _load_template(tpath)
    registry = _Registry()
    views = {
        name: StudyView(name, d, registry, metric=metric, n_boot=n_boot, seed=seed, level=level)
        for name, d in studies.items()
    }

    def render() -> str:
        registry.used = set()
        try:
            return tmpl.render(**views, studies=views, families=_Families(registry))
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"{_where(tpath, exc)}: {exc.message}; the studies are {', '.join(studies)}") from None
        except MedcolorError as exc:
            raise type(exc)(f"{_where(tpath, exc)}: {exc}") from None
        except SecurityError as exc:
            raise ConfigError(
                f"{_where(tpath, exc)}: the template tried something a study document may not do ({exc}); "
                "templates are sandboxed: they read the studies' values and call their public methods only"
            ) from None
        except Exception as exc:  # a template's own mistake (a bad format, a missing argument...)
            raise ConfigError(f"{_where(tpath, exc)}: {type(exc).__name__}: {exc}") from None

    render()  # first pass: collect the comparisons of every family
    first = set(registry.used)
    registry.adjust()
    registry.final = True
    text = render()
    if registry.used != first:
        raise ConfigError(
            f"{tpath}: the second rendering asked for other comparisons than the first (the template chooses "
            "comparisons by their own adjusted p-values?); the BH families must be the same in both passes"
        )
    return text


def _where(tpath: Path, exc: BaseException) -> str:
    """``TEMPLATE, line N`` from the traceback frame of the template, or just ``TEMPLATE``."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).name == tpath.name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{tpath}, line {line}" if line is not None else str(tpath)


def write_document(
    template: str | os.PathLike,
    studies: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    **kw: Any,
) -> Path:
    """Render ``template`` (see :func:`render_document`) and write it to ``out`` atomically."""
    text = render_document(template, studies, **kw)
    out = Path(out)
    write_text_atomic(out, text)
    return out


def parse_study_args(items: list[str] | None) -> dict[str, str]:
    """``["name=DIR", ...]`` -> ``{name: DIR}`` (the ``--study`` options)."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, d = item.partition("=")
        if not sep or not name.strip() or not d.strip():
            raise ConfigError(f"--study {item!r}: write NAME=DIR (e.g. --study ablations=studies/ablations)")
        if name.strip() in out:
            raise ConfigError(f"--study {name.strip()} is given twice")
        out[name.strip()] = d.strip()
    return out


__all__ = [
    "Difference",
    "DocArm",
    "DocComparison",
    "Estimate",
    "Operating",
    "Plateau",
    "StudyView",
    "Values",
    "parse_study_args",
    "render_document",
    "write_document",
]
