"""Operating points of whole sets: thresholds per label on validation data, applied to each test set, and their
ROC and reliability figures."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcolor.errors import DataError
from medcolor.operating.calibration import (
    ECE_BINNING,
    ECE_BINS,
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from medcolor.operating.thresholds import (
    METRICS,
    Threshold,
    ThresholdRule,
    _clean,
    choose_threshold,
    operating_point_metrics,
    roc_points,
    single_class,
)
from medcolor.utils import atomic_path


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
