"""Decision thresholds chosen on validation data (:class:`ThresholdRule`) and the operating point a threshold
gives on a set: sensitivity, specificity, PPV, NPV, accuracy with percentile bootstrap CIs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from medcolor.errors import DataError, MedcolorError

METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy")


class ThresholdRuleError(MedcolorError, ValueError):
    """A threshold rule cannot be met on the validation data (or is malformed)."""


@dataclass(frozen=True)
class ThresholdRule:
    """How the threshold is chosen on validation data: ``youden``, ``sensitivity=<target>`` or
    ``specificity=<target>`` (target in (0, 1])."""

    kind: Literal["youden", "sensitivity", "specificity"] = "youden"
    target: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("youden", "sensitivity", "specificity"):
            raise ThresholdRuleError(
                f"unknown threshold rule {self.kind!r}: use youden, sensitivity=<target> or specificity=<target>"
            )
        if self.kind == "youden":
            if self.target is not None:
                raise ThresholdRuleError("the threshold rule youden takes no target (write just 'youden')")
        elif self.target is None or not (0 < float(self.target) <= 1) or math.isnan(float(self.target)):
            raise ThresholdRuleError(
                f"threshold rule {self.kind} needs a target in (0, 1], got {self.target!r} (e.g. '{self.kind}=0.9')"
            )

    @classmethod
    def parse(cls, text: str | ThresholdRule | None) -> ThresholdRule:
        """``"youden"``, ``"sensitivity=0.9"``, ``"specificity:0.95"`` (or an existing rule; ``None``: youden)."""
        if text is None:
            return cls()
        if isinstance(text, ThresholdRule):
            return text
        m = re.fullmatch(r"\s*(youden|sensitivity|specificity)\s*(?:[=:]\s*(\S+))?\s*", str(text).lower())
        if m is None:
            raise ThresholdRuleError(
                f"threshold rule {text!r} is not understood: use youden, sensitivity=<target> or "
                "specificity=<target> with a target in (0, 1]"
            )
        kind, value = m.groups()
        try:
            target = float(value) if value is not None else None
        except ValueError:
            raise ThresholdRuleError(f"threshold rule {text!r}: the target {value!r} is not a number") from None
        return cls(kind, target)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.kind if self.kind == "youden" else f"{self.kind}={self.target:g}"


@dataclass
class Threshold:
    """The threshold of one label and the operating point it gives on the validation data."""

    label: str
    threshold: float
    rule: str
    val_sensitivity: float
    val_specificity: float
    youden_j: float
    n_val: int


def _clean(probs: Any, targets: Any, label: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """1-D float probabilities and 0/1 targets without the NaN (ignored) targets; errors name the label."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    t = np.asarray(targets, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise DataError(f"{what}, label {label!r}: {p.size} probabilities but {t.size} targets")
    keep = ~np.isnan(t)
    p, t = p[keep], t[keep]
    if not np.isfinite(p).all():
        raise DataError(f"{what}, label {label!r}: {int((~np.isfinite(p)).sum())} probabilities are NaN/inf")
    if ((p < 0) | (p > 1)).any():
        raise DataError(f"{what}, label {label!r}: probabilities must lie in [0, 1] (found {p.min():g}..{p.max():g})")
    if not np.isin(t, (0.0, 1.0)).all():
        raise DataError(f"{what}, label {label!r}: targets must be 0, 1 or blank (found {sorted(set(t) - {0.0, 1.0})})")
    return p, t.astype(np.int64)


def single_class(targets: np.ndarray) -> str | None:
    """Why a label cannot be evaluated on a set (``None`` if it can): no images, or one class only."""
    n = int(targets.size)
    pos = int(targets.sum())
    if n == 0:
        return "no labelled images"
    if pos == 0:
        return f"only negative images ({n})"
    if pos == n:
        return f"only positive images ({n})"
    return None


def roc_points(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of every distinct score (scikit-learn's ``roc_curve``, no point dropped); the
    first point is ``threshold = inf`` (nothing called positive)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(targets, probs, drop_intermediate=False)
    return fpr, tpr, thr


def choose_threshold(
    probs: Any, targets: Any, rule: str | ThresholdRule | None = None, *, label: str = "label"
) -> Threshold:
    """The threshold of ``rule`` on validation ``probs``/``targets`` (1-D; NaN targets left out).

    Raises :class:`ThresholdRuleError` when the validation data hold one class only, or when only a degenerate
    classifier meets the rule (Youden's J never above 0; a sensitivity reached only by calling every image
    positive; a specificity reached only by calling none), naming the best value reachable."""
    r = ThresholdRule.parse(rule)
    p, t = _clean(probs, targets, label, "validation data")
    why = single_class(t)
    if why is not None:
        raise ThresholdRuleError(f"label {label!r}: no threshold can be chosen on validation data with {why}")
    fpr, tpr, thr = roc_points(p, t)
    j = tpr - fpr
    if r.kind == "youden":
        i = int(np.argmax(j))  # the first maximum: the highest threshold among ties
        if j[i] <= 0:
            raise ThresholdRuleError(
                f"threshold rule youden cannot be met for label {label!r} on validation data: no threshold "
                f"separates the classes better than chance (best Youden's J {j[i]:.3f}); the network is not "
                "informative on the validation set"
            )
    elif r.kind == "sensitivity":
        ok = np.flatnonzero((tpr >= r.target - 1e-12) & (fpr < 1))
        if ok.size == 0:
            reach = tpr[fpr < 1].max()
            raise ThresholdRuleError(
                f"threshold rule {r} cannot be met for label {label!r} on validation data: only calling every "
                f"image positive (specificity 0) reaches sensitivity {r.target:g}; the best sensitivity reachable "
                f"with specificity > 0 is {reach:.4f} ({int(t.sum())} positive images)"
            )
        i = int(ok[0])  # lowest fpr among those meeting the target
    else:
        ok = np.flatnonzero((1 - fpr >= r.target - 1e-12) & (tpr > 0))
        if ok.size == 0:
            reach = 1 - fpr[tpr > 0].min()
            raise ThresholdRuleError(
                f"threshold rule {r} cannot be met for label {label!r} on validation data: only calling no image "
                f"positive (sensitivity 0) reaches specificity {r.target:g}; the best specificity reachable with "
                f"sensitivity > 0 is {reach:.4f} ({int(t.size - t.sum())} negative images)"
            )
        i = int(ok[-1])  # highest tpr among those meeting the target
    return Threshold(label, float(thr[i]), str(r), float(tpr[i]), float(1 - fpr[i]), float(j[i]), int(t.size))


def _rates(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts and rates along the last axis (``y``, ``pred``: 0/1 arrays of one shape); NaN where a
    denominator is 0."""
    tp = (y & pred).sum(-1)
    fp = ((1 - y) & pred).sum(-1)
    fn = (y & (1 - pred)).sum(-1)
    tn = ((1 - y) & (1 - pred)).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "accuracy": (tp + tn) / y.shape[-1],
        }


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def operating_point_metrics(
    probs: Any,
    targets: Any,
    threshold: float,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    label: str = "label",
) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV and accuracy at ``threshold`` (positive when ``p >= threshold``) with
    percentile bootstrap CIs, and the confusion counts.  A metric whose denominator is 0 (e.g. PPV when no image
    is called positive) is ``None``; resamples where it is undefined are left out of its CI (``valid_resamples``)."""
    p, t = _clean(probs, targets, label, "test data")
    pred = (p >= threshold).astype(np.int64)
    point = _rates(t, pred)
    out: dict[str, Any] = {"threshold": float(threshold), "n": int(t.size)}
    out |= {k: int(point[k]) for k in ("tp", "fp", "tn", "fn")}
    cis: dict[str, np.ndarray] = {}
    if n_resamples:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, t.size, size=(n_resamples, t.size))
        chunks = [_rates(t[sl], pred[sl]) for sl in np.array_split(idx, max(1, n_resamples // 100))]
        cis = {m: np.concatenate([c[m] for c in chunks]) for m in METRICS}
    alpha = (1 - level) / 2
    for m in METRICS:
        entry: dict[str, Any] = {"value": _num(point[m])}
        if m in cis:
            vals = cis[m][np.isfinite(cis[m])]
            entry["ci"] = [float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha))] if vals.size else None
            entry["valid_resamples"] = int(vals.size)
        out[m] = entry
    return out
