"""Operating points and calibration: what a network's probabilities mean at a threshold, per test set.

AUC alone hides what a shift between data sets does to a classifier in use.  This module

1. chooses, per label, a decision threshold **on validation data** (:func:`choose_threshold`) by a
   :class:`ThresholdRule`: Youden's J (default; the ROC point maximising sensitivity + specificity - 1), a target
   sensitivity (``sensitivity=0.9``: the highest threshold whose sensitivity reaches the target, i.e. the best
   specificity among those that do) or a target specificity (``specificity=0.95``: the lowest threshold whose
   specificity reaches it);
2. applies that threshold to each test set (:func:`operating_point_metrics`): sensitivity, specificity, PPV, NPV and
   accuracy with percentile bootstrap CIs (images resampled with replacement, seeded; one resample set for every
   metric and label), plus the confusion counts;
3. measures calibration: the Brier score and the expected calibration error (:func:`expected_calibration_error`:
   10 equal-width bins on [0, 1], bin ``k`` holding ``k/10 < p <= (k+1)/10`` and the first bin also ``p = 0``;
   ECE = sum over non-empty bins of ``n_bin / n * |mean(p) - fraction positive|``);
4. optionally fits a temperature per label on validation data (:func:`fit_temperature`, off by default and
   recorded when on): ``p' = sigmoid(logit(p) / T)``; it changes calibration, never the ranking (AUC).

The ROC points are scikit-learn's :func:`sklearn.metrics.roc_curve` (every distinct score a threshold; an image is
called positive when ``p >= threshold``).  Targets may hold NaN (an ignored label of an image): such entries are left
out of that label.  A label with a single class in a set has no ROC: it is left out of that set and listed under
``left_out`` with the reason, never a NaN in a mean.  A rule that only a degenerate classifier meets (every image
called positive, or none) is a :class:`ThresholdRuleError` naming the rule and the best value reachable.

:func:`write_run_operating_points` writes ``operating_points.json`` and, per test set, ``roc-<set>.png`` and
``reliability-<set>.png`` into a run directory from its ``val/predictions.csv`` and ``<set>/predictions.csv``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError, MedcolorError
from medcolor.utils import atomic_path, write_json

log = logging.getLogger(__name__)

OPERATING_POINTS_FILE = "operating_points.json"
#: The figures written per test set (``{set}`` is its name, e.g. ``test``).
ROC_FIGURE = "roc-{set}.png"
RELIABILITY_FIGURE = "reliability-{set}.png"
METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy")
ECE_BINS = 10
ECE_BINNING = (
    "equal-width bins on [0, 1]; bin k holds k/n < p <= (k+1)/n (the first also p = 0); "
    "ECE = sum over non-empty bins of n_bin/n * |mean p - fraction positive|"
)
_PROB_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before taking their logit (temperature scaling)


class ThresholdRuleError(MedcolorError, ValueError):
    """A threshold rule cannot be met on the validation data (or is malformed)."""


# ---------------------------------------------------------------------------------------------------- rules
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


# ---------------------------------------------------------------------------------------------------- metrics
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


def brier_score(probs: Any, targets: Any) -> float:
    """Mean squared difference of probability and 0/1 target (NaN targets left out)."""
    p, t = _clean(probs, targets, "label", "brier_score")
    if t.size == 0:
        raise DataError("brier_score: no labelled images")
    return float(np.mean((p - t) ** 2))


def reliability_bins(probs: Any, targets: Any, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin (see :data:`ECE_BINNING`): its edges, image count, mean probability and fraction of
    positive images (``None`` for an empty bin)."""
    p, t = _clean(probs, targets, "label", "reliability_bins")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    k = np.digitize(p, edges[1:-1], right=True)  # edges[k] < p <= edges[k + 1]; p = 0 -> bin 0
    bins = []
    for b in range(n_bins):
        sel = k == b
        n = int(sel.sum())
        bins.append(
            {
                "bin": [float(edges[b]), float(edges[b + 1])],
                "n": n,
                "mean_prob": float(p[sel].mean()) if n else None,
                "fraction_positive": float(t[sel].mean()) if n else None,
            }
        )
    return bins


def expected_calibration_error(probs: Any, targets: Any, n_bins: int = ECE_BINS) -> float:
    """ECE with ``n_bins`` equal-width bins (:data:`ECE_BINNING`)."""
    bins = reliability_bins(probs, targets, n_bins)
    total = sum(b["n"] for b in bins)
    if total == 0:
        raise DataError("expected_calibration_error: no labelled images")
    return float(sum(b["n"] / total * abs(b["mean_prob"] - b["fraction_positive"]) for b in bins if b["n"]))


# ---------------------------------------------------------------------------------------------------- temperature
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _PROB_EPS, 1 - _PROB_EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probs: Any, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)`` (``p`` clipped to [1e-7, 1 - 1e-7] first)."""
    from scipy.special import expit

    return expit(_logit(probs) / float(temperature))


def fit_temperature(probs: Any, targets: Any, *, label: str = "label") -> float:
    """The temperature ``T`` in [0.05, 20] minimising the binary cross-entropy of ``sigmoid(logit(p) / T)`` on
    (validation) ``probs``/``targets`` (a bounded 1-D search over ``log T``)."""
    from scipy.optimize import minimize_scalar

    p, t = _clean(probs, targets, label, "temperature scaling")
    why = single_class(t)
    if why is not None:
        raise DataError(f"label {label!r}: no temperature can be fitted on validation data with {why}")
    z = _logit(p)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        # -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))], written stably
        return float(np.mean(np.logaddexp(0.0, s) - t * s))

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


# ---------------------------------------------------------------------------------------------------- whole sets
@dataclass
class OperatingPoints:
    """Thresholds chosen on validation data and, per test set, the operating point and calibration there."""

    rule: str
    label_names: list[str]
    thresholds: dict[str, Threshold]
    left_out: dict[str, str]  # labels without a threshold, and why
    temperature: dict[str, float] | None = None
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "threshold_chosen_on": "validation",
            "positive_when": "probability >= threshold",
            "bootstrap": self.bootstrap,
            "calibration": {"ece_bins": ECE_BINS, "ece_binning": ECE_BINNING},
            "temperature_scaling": (
                {"fitted_on": "validation", "temperature": self.temperature} if self.temperature is not None else None
            ),
            "thresholds": {k: asdict(v) for k, v in self.thresholds.items()},
            "left_out": self.left_out,
            "sets": self.sets,
        }


def _columns(probs: Any, targets: Any, label_names: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if p.ndim == 1:
        p, t = p[:, None], t.reshape(-1, 1)
    if p.shape != t.shape or p.shape[1] != len(label_names):
        raise DataError(
            f"{what}: probabilities {p.shape} and targets {t.shape} must both be (images, {len(label_names)} labels)"
        )
    return p, t


def operating_points(
    val_probs: Any,
    val_targets: Any,
    test_sets: Mapping[str, tuple[Any, Any]],
    label_names: Sequence[str],
    *,
    rule: str | ThresholdRule | None = None,
    temperature_scaling: bool = False,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> OperatingPoints:
    """Choose a threshold per label on ``val_probs``/``val_targets`` (N, L) and evaluate it on every
    ``test_sets[name] = (probs, targets)``.

    A label with one class in the validation data gets no threshold (``left_out``); a rule only a degenerate
    classifier meets raises :class:`ThresholdRuleError`.  Per set, a label with one class is left out of that set
    (its ``left_out``, with the reason) and out of the set's ``mean``, which lists the labels it averages."""
    r = ThresholdRule.parse(rule)
    labels = list(label_names)
    vp, vt = _columns(val_probs, val_targets, labels, "validation data")
    temps: dict[str, float] | None = {} if temperature_scaling else None
    thresholds: dict[str, Threshold] = {}
    left_out: dict[str, str] = {}
    for j, name in enumerate(labels):
        why = single_class(vt[~np.isnan(vt[:, j]), j])
        if why is not None:
            left_out[name] = f"validation data: {why}"
            continue
        p = vp[:, j]
        if temps is not None:
            temps[name] = fit_temperature(p, vt[:, j], label=name)
            p = apply_temperature(p, temps[name])
        thresholds[name] = choose_threshold(p, vt[:, j], r, label=name)
    out = OperatingPoints(
        str(r),
        labels,
        thresholds,
        left_out,
        temps,
        bootstrap={
            "n_resamples": n_resamples,
            "seed": seed,
            "level": level,
            "method": "percentile; images resampled with replacement, the same resamples for every metric",
        },
    )
    for set_name, (probs, targets) in test_sets.items():
        out.sets[set_name] = _evaluate_set(
            out, *_columns(probs, targets, labels, f"test set {set_name!r}"), n_resamples, seed, level
        )
    return out


def _evaluate_set(
    ops: OperatingPoints, p: np.ndarray, t: np.ndarray, n_resamples: int, seed: int, level: float
) -> dict[str, Any]:
    per_label: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    for j, name in enumerate(ops.label_names):
        if name not in ops.thresholds:
            left_out[name] = f"no threshold ({ops.left_out[name]})"
            continue
        keep = ~np.isnan(t[:, j])
        why = single_class(t[keep, j])
        if why is not None:
            left_out[name] = why
            continue
        from sklearn.metrics import auc

        probs = p[:, j]
        entry: dict[str, Any] = {}
        if ops.temperature is not None:
            entry["uncalibrated"] = {
                "brier": brier_score(probs, t[:, j]),
                "ece": expected_calibration_error(probs, t[:, j]),
            }
            probs = apply_temperature(probs, ops.temperature[name])
        th = ops.thresholds[name].threshold
        entry |= operating_point_metrics(
            probs, t[:, j], th, n_resamples=n_resamples, seed=seed + j, level=level, label=name
        )
        fpr, tpr, _ = roc_points(*_clean(probs, t[:, j], name, "test data"))
        entry["auc"] = float(auc(fpr, tpr))
        entry["brier"] = brier_score(probs, t[:, j])
        entry["ece"] = expected_calibration_error(probs, t[:, j])
        entry["reliability"] = reliability_bins(probs, t[:, j])
        per_label[name] = entry
    mean: dict[str, Any] = {"labels": list(per_label)}
    for m in (*METRICS, "brier", "ece"):
        vals = [e[m]["value"] if isinstance(e[m], dict) else e[m] for e in per_label.values()]
        vals = [v for v in vals if v is not None]
        mean[m] = float(np.mean(vals)) if vals else None
    return {"n_samples": len(p), "labels": per_label, "left_out": left_out, "mean": mean}


# ---------------------------------------------------------------------------------------------------- figures
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_roc(ops: OperatingPoints, set_name: str, probs: Any, targets: Any, path: str | os.PathLike) -> Path:
    """ROC curve of every evaluated label of ``set_name``, the operating point of its threshold marked."""
    plt = _plt()
    p, t = _columns(probs, targets, ops.label_names, f"test set {set_name!r}")
    res = ops.sets[set_name]["labels"]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for j, name in enumerate(ops.label_names):
        if name not in res:
            continue
        pj = apply_temperature(p[:, j], ops.temperature[name]) if ops.temperature is not None else p[:, j]
        fpr, tpr, _ = roc_points(*_clean(pj, t[:, j], name, "test data"))
        (line,) = ax.plot(fpr, tpr, lw=1.3, label=f"{name} (AUC {res[name]['auc']:.3f})")
        e = res[name]
        ax.plot(1 - e["specificity"]["value"], e["sensitivity"]["value"], "o", color=line.get_color(), ms=6)
    ax.plot([0, 1], [0, 1], ":", color="gray", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(f"ROC on {set_name} (dot: threshold by {ops.rule} on validation)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, Path(path))


def plot_reliability(ops: OperatingPoints, set_name: str, path: str | os.PathLike) -> Path:
    """Reliability diagram of ``set_name``: fraction positive against mean probability per bin, per label."""
    plt = _plt()
    res = ops.sets[set_name]["labels"]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], ":", color="gray", lw=0.8, label="perfect calibration")
    for name, e in res.items():
        pts = [(b["mean_prob"], b["fraction_positive"]) for b in e["reliability"] if b["n"]]
        x, y = zip(*pts, strict=True) if pts else ((), ())
        ax.plot(x, y, "o-", ms=3, lw=1.2, label=f"{name} (ECE {e['ece']:.3f}, Brier {e['brier']:.3f})")
    scaled = " after temperature scaling" if ops.temperature is not None else ""
    ax.set(xlabel="mean predicted probability (bin)", ylabel="fraction positive", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(f"Reliability on {set_name}{scaled} ({ECE_BINS} equal-width bins)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, Path(path))


# ---------------------------------------------------------------------------------------------------- run directory
def read_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(probs, targets, label_names)`` of a ``predictions.csv`` (``target:<label>``/``prob:<label>`` columns;
    a blank target is an ignored one)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: operating points need the predictions of that split")
    df = pd.read_csv(path)
    labels = [c[len("prob:") :] for c in df.columns if c.startswith("prob:")]
    missing = [f"target:{n}" for n in labels if f"target:{n}" not in df.columns]
    if not labels or missing:
        raise DataError(
            f"{path} is not a medcolor predictions.csv: it needs prob:<label> and target:<label> columns"
            + (f" (missing {', '.join(missing)})" if missing else "")
        )
    probs = df[[f"prob:{n}" for n in labels]].to_numpy(dtype=np.float64)
    targets = df[[f"target:{n}" for n in labels]].to_numpy(dtype=np.float64)
    return probs, targets, labels


def write_run_operating_points(
    run_dir: str | os.PathLike,
    *,
    test_sets: Sequence[str] = ("test",),
    validation: str = "val",
    rule: str | ThresholdRule | None = None,
    temperature_scaling: bool = False,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Path:
    """Operating points of a run from its files: the thresholds from ``RUN/<validation>/predictions.csv``, applied
    to ``RUN/<set>/predictions.csv`` of each of ``test_sets``; writes ``RUN/operating_points.json`` with
    ``roc-<set>.png`` and ``reliability-<set>.png`` beside it and returns the JSON's path."""
    run = Path(run_dir)
    vp, vt, labels = read_predictions(run / validation / "predictions.csv")
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in test_sets:
        if name == validation:
            raise ConfigError(f"test set {name!r} is the validation set the thresholds are chosen on")
        p, t, set_labels = read_predictions(run / name / "predictions.csv")
        if set_labels != labels:
            raise DataError(
                f"{run / name / 'predictions.csv'} has labels {set_labels} but the validation predictions {labels}"
            )
        sets[name] = (p, t)
    ops = operating_points(
        vp, vt, sets, labels, rule=rule, temperature_scaling=temperature_scaling, n_resamples=n_resamples, seed=seed
    )
    for name, (p, t) in sets.items():
        figures = {}
        if ops.sets[name]["labels"]:
            figures["roc"] = plot_roc(ops, name, p, t, run / ROC_FIGURE.format(set=name)).name
            figures["reliability"] = plot_reliability(ops, name, run / RELIABILITY_FIGURE.format(set=name)).name
        ops.sets[name]["figures"] = figures
    d = ops.to_dict() | {"validation": validation, "n_validation": len(vp)}
    return write_json(run / OPERATING_POINTS_FILE, d)


def run_operating_points(
    model: Any,
    bundle: Any,
    run_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    seed: int = 0,
    n_resamples: int = 1000,
) -> Path | None:
    """After a run's test evaluation: predict its validation split (``RUN/val/predictions.csv``, full precision,
    the test's input path) and write the operating points of its test split.  A run without a test split (tested
    on its validation split) or without a validation split gets none (logged).  A rule that cannot be met is
    logged and recorded in ``operating_points.json`` instead of failing the finished run."""
    from medcolor.data.bundle import NetworkView
    from medcolor.data.transforms import EvalTransform
    from medcolor.inference import predict_probs, write_predictions

    run = Path(run_dir)
    if bundle.test is None or bundle.val is None:
        log.info("no operating points: they need a validation split to choose thresholds and a test split")
        return None
    norm = bundle.normalization
    view = NetworkView(bundle.val, EvalTransform(bundle.size, norm["mean"], norm["std"]))
    probs = predict_probs(
        model, view, batch_size=batch_size, num_workers=num_workers, device=device, precision="32-true"
    )
    write_predictions(run / "val" / "predictions.csv", bundle.val, probs, list(bundle.label_names))
    try:
        path = write_run_operating_points(run, seed=seed, n_resamples=n_resamples)
    except ThresholdRuleError as exc:
        log.warning(f"no operating points: {exc}")
        return write_json(run / OPERATING_POINTS_FILE, {"error": str(exc)})
    ops = json.loads(path.read_text())
    for name, e in (ops["sets"]["test"]["labels"] or {}).items():
        log.info(
            f"test {name}: threshold {e['threshold']:.3g} ({ops['rule']} on validation): sensitivity "
            f"{_pct(e['sensitivity'])}, specificity {_pct(e['specificity'])}, ECE {e['ece']:.3f}"
        )
    return path


def _pct(m: dict[str, Any]) -> str:
    return "n/a" if m["value"] is None else f"{100 * m['value']:.1f} %"


__all__ = [
    "ECE_BINNING",
    "OPERATING_POINTS_FILE",
    "OperatingPoints",
    "Threshold",
    "ThresholdRule",
    "ThresholdRuleError",
    "apply_temperature",
    "brier_score",
    "choose_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "operating_point_metrics",
    "operating_points",
    "plot_reliability",
    "plot_roc",
    "read_predictions",
    "reliability_bins",
    "roc_points",
    "run_operating_points",
    "write_run_operating_points",
]
