"""The numbers of a paired comparison: the test (paired t / Wilcoxon signed-rank), a percentile bootstrap
CI of the mean difference, and Benjamini–Hochberg adjusted p-values."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def paired_test(xa: np.ndarray, xb: np.ndarray, test: str) -> tuple[float, float, str]:
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


def bootstrap_ci(d: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    if len(d) == 0 or n_boot <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def sample_std(x: np.ndarray) -> float:
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


__all__ = [
    "adjust_bh",
    "bootstrap_ci",
    "paired_test",
    "sample_std",
]
