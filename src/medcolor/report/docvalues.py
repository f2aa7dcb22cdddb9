"""What a results document shows (:mod:`medcolor.report.document`): a paired comparison
(:class:`DocComparison`), one condition over its repeats (:class:`DocArm`) and numbers gathered from its
run directories (:class:`Values`; :class:`Estimate`: values with their 95 % intervals; :class:`Operating`:
the operating points and calibration of a test set; :class:`Plateau`: the best against the last validation
step), each with the text a template prints."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcolor.errors import DataError
from medcolor.study.stats import format_diff, format_p, format_pm


@dataclass
class DocComparison:
    """One paired comparison (b − a) in a document; text properties for the template."""

    study: str
    arm_a: str
    arm_b: str
    label: str
    family: str
    n: int
    mean_a: float
    std_a: float
    mean_b: float
    std_b: float
    diff: float
    ci_low: float
    ci_high: float
    ci_method: str  # "t" (t-interval, below 6 pairs), "bootstrap" or "" (one pair)
    p_value: float
    test: str
    note: str = ""
    p_adj: float = math.nan  # NaN until the family is adjusted (the first rendering pass), or without a test
    adjusted: bool = False
    family_size: int = 0  # tests in the family (each counted once), once adjusted
    scale: float = 100.0
    decimals: int = 1

    @property
    def a(self) -> str:
        return format_pm(self.mean_a, self.std_a, self.scale, self.decimals)

    @property
    def b(self) -> str:
        return format_pm(self.mean_b, self.std_b, self.scale, self.decimals)

    @property
    def d(self) -> str:
        """The difference with its interval, ``-0.8 [-1.0, -0.7]``: a t-interval below 6 pairs, a bootstrap
        CI from there on (:attr:`interval` names it); a single pair has none."""
        return format_diff(self.diff, self.ci_low, self.ci_high, self.scale, self.decimals)

    @property
    def interval(self) -> str:
        """What the brackets of :attr:`d` are: ``95 % t-interval``, ``95 % bootstrap CI`` or ``no interval``."""
        return {"t": "95 % t-interval", "bootstrap": "95 % bootstrap CI"}.get(self.ci_method, "no interval")

    @property
    def p(self) -> str:
        return format_p(self.p_value)

    @property
    def p_bh(self) -> str:
        if not self.adjusted:
            return "…"
        return format_p(self.p_adj)

    @property
    def sig(self) -> bool:
        return bool(np.isfinite(self.p_adj) and self.p_adj < 0.05)

    def __str__(self) -> str:
        if not np.isfinite(self.p_value):
            return f"{self.d} (n = {self.n}: no test)"
        fam = f" [BH family {self.family}: {self.family_size} tests]" if self.adjusted else ""
        return f"{self.d}, p = {self.p}, BH p = {self.p_bh}{fam} (n = {self.n})"


class Values(list):
    """Numbers gathered over an arm's repeats; ``{{ v }}`` lists them, ``v.fmt("{:.1e}")`` in a format,
    ``v.range()`` as ``min–max``."""

    def fmt(self, spec: str = "{:.3g}", sep: str = ", ") -> str:
        return sep.join(spec.format(x) for x in self)

    def range(self, spec: str = "{:.2f}") -> str:
        if not self:
            return "n/a"
        lo, hi = spec.format(min(self)), spec.format(max(self))
        return lo if lo == hi else f"{lo}–{hi}"

    @property
    def mean(self) -> float:
        return sum(self) / len(self) if self else math.nan

    @property
    def std(self) -> float:
        return float(np.std(list(self), ddof=1)) if len(self) > 1 else math.nan

    def pm(self, decimals: int = 3, scale: float = 1.0) -> str:
        """``mean ± std`` (×``scale``), the value alone for one, ``n/a`` for none: ``v.pm(3)`` -> ``0.123 ± 0.010``."""
        return format_pm(self.mean, self.std, scale, decimals)

    def __str__(self) -> str:
        return self.fmt()


def _finite(x: Any) -> float:
    return float(x) if x is not None and np.isfinite(x) else math.nan


class Estimate:
    """Values of the repeats with each run's own 95 % interval (its bootstrap CI over the test images):
    ``{{ e }}`` is ``91.8 [89.0, 94.1]`` for one repeat and ``91.8 ± 0.6 [88.7, 94.9]`` for several (mean ± std
    over the repeats, then the lowest lower and the highest upper bound of their intervals: the union of the
    runs' CIs).  Repeats without a value (a sensitivity with no positive image) are left out."""

    def __init__(self, values: list[float], lows: list[float], highs: list[float], scale: float = 100.0,
                 decimals: int = 1) -> None:  # fmt: skip
        keep = [i for i, v in enumerate(values) if np.isfinite(_finite(v))]
        self.values = Values(float(values[i]) for i in keep)
        self.lows = Values(_finite(lows[i]) for i in keep)
        self.highs = Values(_finite(highs[i]) for i in keep)
        self.scale, self.decimals = scale, decimals

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return self.values.mean

    @property
    def low(self) -> float:
        lows = [x for x in self.lows if np.isfinite(x)]
        return min(lows) if lows and len(lows) == self.n else math.nan

    @property
    def high(self) -> float:
        highs = [x for x in self.highs if np.isfinite(x)]
        return max(highs) if highs and len(highs) == self.n else math.nan

    @property
    def ci(self) -> str:
        """The interval alone, ``[89.0, 94.1]`` (``[n/a]`` when a repeat has none)."""
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return "[n/a]"
        return f"[{self.low * self.scale:.{self.decimals}f}, {self.high * self.scale:.{self.decimals}f}]"

    def __str__(self) -> str:
        if not self.n:
            return "n/a"
        return f"{format_pm(self.mean, self.values.std, self.scale, self.decimals)} {self.ci}"


class Difference(Values):
    """Paired differences (one per repeat, e.g. external − internal AUC of the same run): ``{{ d }}`` is
    ``-6.9`` for one repeat, ``-6.9 ± 1.2`` (mean ± std) for several, ×100."""

    def __init__(self, values: Any = (), scale: float = 100.0, decimals: int = 1) -> None:
        super().__init__(values)
        self.scale, self.decimals = scale, decimals

    def __str__(self) -> str:
        if not self:
            return "n/a"
        s = f"{self.mean * self.scale:+.{self.decimals}f}"
        return s if len(self) < 2 else f"{s} ± {self.std * self.scale:.{self.decimals}f}"


OPERATING_METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy")


@dataclass
class Operating:
    """A condition's operating points on one test set, at the threshold each run chose on its own validation
    data (``rule``: Youden's J by default), read from ``RUN/operating_points.json`` (the internal test part) or
    ``RUN/test_sets/<set>/operating_points.json``: sensitivity, specificity, PPV, NPV and accuracy as
    :class:`Estimate` (bootstrap CIs), Brier score and ECE, the threshold, and the set's positives / negatives
    (``tp + fn`` / ``tn + fp``) as :class:`Values`; ``unavailable`` lists the runs without them and why."""

    test_set: str
    label: str
    cells: list[str]
    rule: str
    threshold: Values
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    accuracy: Estimate
    brier: Values
    ece: Values
    positives: Values
    negatives: Values
    unavailable: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.cells)


@dataclass
class Plateau:
    """Whether training stopped improving: per repeat, the best validation mean AUC (the checkpoint that was
    tested) and the one at the last validation step, from the stage's ``history.json``."""

    cells: list[str]
    best: Values
    best_step: Values
    last: Values
    last_step: Values

    @property
    def n(self) -> int:
        return len(self.cells)

    @property
    def gap(self) -> Difference:
        """last − best per repeat (≤ 0; 0 where the best step is the last)."""
        return Difference(a - b for a, b in zip(self.last, self.best, strict=True))

    @property
    def still_improving(self) -> int:
        """Repeats whose best validation step is their last one: they may not have converged."""
        return sum(b == last for b, last in zip(self.best_step, self.last_step, strict=True))

    def __str__(self) -> str:
        return "; ".join(
            f"best {b * 100:.1f} at step {bs:.0f}, last {v * 100:.1f} at step {ls:.0f}"
            for b, bs, v, ls in zip(self.best, self.best_step, self.last, self.last_step, strict=True)
        )


@dataclass
class DocArm:
    """One condition's mean ± std over its repeats on one test set (``test_set``), and what its run
    directories recorded.  ``planned`` / ``missing``: the cells of a study group in the plan and those not
    finished (``None`` / empty for an arm given by a selector)."""

    selector: str
    label: str
    values: list[float]
    cells: list[str]
    run_dirs: list[Path | None] = field(default_factory=list)
    scale: float = 100.0
    decimals: int = 1
    test_set: str = "internal"
    val_values: list[float] = field(default_factory=list)
    ci_low: list[float] = field(default_factory=list)
    ci_high: list[float] = field(default_factory=list)
    train_images: list[float] = field(default_factory=list)
    planned: int | None = None
    missing: list[str] = field(default_factory=list)
    #: the same cells on another test set (set by the study view)
    _on: Callable[[str], DocArm] | None = field(default=None, repr=False, compare=False)

    @property
    def val(self) -> Values:
        """The validation AUC of each repeat (of ``label``; the best checkpoint's): what choices are made on."""
        return Values(self.val_values)

    @property
    def n_train(self) -> Values:
        """The training images of each repeat (the results table's ``n_train``)."""
        return Values(self.train_images)

    @property
    def auc(self) -> Estimate:
        """The test AUC of each repeat on ``test_set`` with its bootstrap 95 % CI."""
        lo = self.ci_low or [math.nan] * self.n
        hi = self.ci_high or [math.nan] * self.n
        return Estimate(self.values, lo, hi, self.scale, self.decimals)

    def on(self, test_set: str) -> DocArm:
        """The same condition on another test set (its cells that were tested there)."""
        if test_set == self.test_set:
            return self
        if self._on is None:
            raise DataError(f"arm {self.selector!r}: no study to read test set {test_set!r} from")
        return self._on(test_set)

    def drop(self, test_set: str, base: str = "internal") -> Difference:
        """``test_set`` − ``base`` AUC of each run tested on both (the drop from the internal test part)."""
        ext, own = self.on(test_set), self.on(base)
        by_cell = dict(zip(own.cells, own.values, strict=True))
        return Difference(
            (v - by_cell[c] for c, v in zip(ext.cells, ext.values, strict=True) if c in by_cell),
            self.scale,
            self.decimals,
        )

    def _ops_file(self, rd: Path, test_set: str) -> tuple[Path, str]:
        if test_set == "internal":
            return rd / "operating_points.json", "test"
        return rd / "test_sets" / test_set / "operating_points.json", test_set

    def operating(self, test_set: str | None = None) -> Operating:
        """The operating points and calibration on ``test_set`` (default: this arm's), per repeat."""
        ts = self.test_set if test_set is None else test_set
        arm = self.on(ts)
        got: dict[str, list[Any]] = {k: [] for k in ("cells", "threshold", "brier", "ece", "pos", "neg")}
        est: dict[str, list[tuple[float, float, float]]] = {k: [] for k in OPERATING_METRICS}
        unavailable: list[str] = []
        rule = ""
        for cell, rd in zip(arm.cells, arm.run_dirs, strict=True):
            entry = self._ops_of(cell, rd, ts)
            if isinstance(entry, str):
                unavailable.append(entry)
                continue
            rule = rule or entry["rule"]
            got["cells"].append(cell)
            for k in ("threshold", "brier", "ece"):
                got[k].append(_finite(entry.get(k)))
            got["pos"].append(entry.get("tp", math.nan) + entry.get("fn", math.nan))
            got["neg"].append(entry.get("tn", math.nan) + entry.get("fp", math.nan))
            for k in OPERATING_METRICS:
                m = entry.get(k)
                m = m if isinstance(m, dict) else {"value": m}
                lo, hi = m.get("ci") or (None, None)
                est[k].append((_finite(m.get("value")), _finite(lo), _finite(hi)))
        return Operating(
            test_set=ts, label=self.label, cells=got["cells"], rule=rule, threshold=Values(got["threshold"]),
            brier=Values(got["brier"]), ece=Values(got["ece"]), positives=Values(got["pos"]),
            negatives=Values(got["neg"]), unavailable=unavailable,
            **{k: Estimate([x[0] for x in v], [x[1] for x in v], [x[2] for x in v], self.scale, self.decimals)
               for k, v in est.items()},
        )  # fmt: skip

    def _ops_of(self, cell: str, rd: Path | None, test_set: str) -> dict[str, Any] | str:
        """The operating-point entry of ``cell`` on ``test_set`` (with the run's ``rule``), or why it has none."""
        if rd is None:
            return f"{cell}: no run directory"
        path, key = self._ops_file(rd, test_set)
        if not path.is_file():
            return f"{cell}: no {path.relative_to(rd)}"
        ops = json.loads(path.read_text())
        if "error" in ops:
            return f"{cell}: {ops['error']}"
        entry = self._ops_entry(ops, key, cell)
        return entry if isinstance(entry, str) else {**entry, "rule": str(ops.get("rule", ""))}

    def _ops_entry(self, ops: dict[str, Any], key: str, cell: str) -> dict[str, Any] | str:
        """The entry of ``self.label`` (the only label for ``mean`` of a single-label run, else the set's mean
        without intervals or counts), or why there is none."""
        sets = ops.get("sets", {})
        if key not in sets:
            return f"{cell}: its operating points have no set {key!r}"
        s = sets[key]
        labels = s.get("labels") or {}
        if self.label == "mean":
            if len(labels) == 1:
                return next(iter(labels.values()))
            return dict(s.get("mean") or {})
        if self.label in labels:
            return labels[self.label]
        why = (s.get("left_out") or {}).get(self.label, "no such label")
        return f"{cell}: {self.label} has no operating point on {key} ({why})"

    def plateau(self, index: int = -1) -> Plateau:
        """The best against the last validation mean AUC of stage ``index`` (the last by default) per repeat."""
        best, best_step, last, last_step = Values(), Values(), Values(), Values()
        for cell, hist in zip(self.cells, self._histories(index), strict=True):
            scored = [h for h in hist if h.get("val_mean_auc") is not None]
            if not scored:
                raise DataError(f"arm {self.selector!r}: cell {cell} never validated (its history.json)")
            top = max(scored, key=lambda h: h["val_mean_auc"])  # the first of equal ones, as the checkpoint
            best.append(top["val_mean_auc"])
            best_step.append(top["step"])
            last.append(scored[-1]["val_mean_auc"])
            last_step.append(scored[-1]["step"])
        return Plateau(list(self.cells), best, best_step, last, last_step)

    def _histories(self, index: int) -> list[list[dict[str, Any]]]:
        out = []
        for cell, rd, summ in zip(self.cells, self.run_dirs, self._json("summary.json"), strict=True):
            stages = summ.get("stages", [])
            if not -len(stages) <= index < len(stages):
                raise DataError(f"arm {self.selector!r}: cell {cell} has no stage {index}")
            hp = Path(stages[index]["directory"]) / "history.json"
            if not hp.is_file() and rd is not None:  # the study directory was moved
                hp = rd / Path(stages[index]["directory"]).name / "history.json"
            if not hp.is_file():
                raise DataError(f"arm {self.selector!r}: cell {cell} has no history of stage {index}")
            out.append(json.loads(hp.read_text()))
        return out

    def _json(self, name: str) -> list[Any]:
        out = []
        for cell, rd in zip(self.cells, self.run_dirs, strict=True):
            p = rd / name if rd is not None else None
            if p is None or not p.is_file():
                raise DataError(f"arm {self.selector!r}: cell {cell} has no {name} (is its run directory here?)")
            out.append(json.loads(p.read_text()))
        return out

    def stage(self, key: str, index: int = 0) -> Values:
        """``summary.json``'s ``stages[index][key]`` of each repeat (``lr``, ``best_step``, ``time_s``...)."""
        vals = Values()
        for cell, summ in zip(self.cells, self._json("summary.json"), strict=True):
            stages = summ.get("stages", [])
            if index >= len(stages) or key not in stages[index]:
                raise DataError(f"arm {self.selector!r}: cell {cell} has no stage {index} value {key!r}")
            vals.append(stages[index][key])
        return vals

    def val_at(self, step: int, index: int = 0) -> Values:
        """The validation mean AUC at ``step`` of stage ``index`` of each repeat (its ``history.json``)."""
        vals = Values()
        for cell, rd, summ in zip(self.cells, self.run_dirs, self._json("summary.json"), strict=True):
            stages = summ.get("stages", [])
            hp = Path(stages[index]["directory"]) / "history.json" if index < len(stages) else None
            if hp is not None and not hp.is_file() and rd is not None:  # the study directory was moved
                hp = rd / Path(stages[index]["directory"]).name / "history.json"
            if hp is None or not hp.is_file():
                raise DataError(f"arm {self.selector!r}: cell {cell} has no history of stage {index}")
            hits = [h["val_mean_auc"] for h in json.loads(hp.read_text()) if h.get("step") == step]
            if not hits:
                raise DataError(f"arm {self.selector!r}: cell {cell} did not validate at step {step}")
            vals.append(hits[0])
        return vals

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan

    def __str__(self) -> str:
        return format_pm(self.mean, self.std, self.scale, self.decimals)


__all__ = ["Difference", "DocArm", "DocComparison", "Estimate", "Operating", "Plateau", "Values"]
