"""Calibration: Brier score, expected calibration error with its reliability bins, temperature scaling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medcolor.errors import DataError
from medcolor.operating.thresholds import _clean, single_class

ECE_BINS = 10
ECE_BINNING = (
    "equal-width bins on [0, 1]; bin k holds k/n < p <= (k+1)/n (the first also p = 0); "
    "ECE = sum over non-empty bins of n_bin/n * |mean p - fraction positive|"
)
_PROB_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before taking their logit (temperature scaling)


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
                "bin": [round(float(edges[b]), 12), round(float(edges[b + 1]), 12)],
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
