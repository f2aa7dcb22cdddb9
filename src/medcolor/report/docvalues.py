"""What a results document shows (:mod:`medcolor.report.document`): a paired comparison
(:class:`DocComparison`), one condition over its repeats (:class:`DocArm`) and numbers gathered from its
run directories (:class:`Values`), each with the text a template prints."""

from __future__ import annotations

import json
import math
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

    def __str__(self) -> str:
        return self.fmt()


@dataclass
class DocArm:
    """One condition's mean ± std over its repeats, and what its run directories recorded."""

    selector: str
    label: str
    values: list[float]
    cells: list[str]
    run_dirs: list[Path | None] = field(default_factory=list)
    scale: float = 100.0
    decimals: int = 1

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


__all__ = ["DocArm", "DocComparison", "Values"]
