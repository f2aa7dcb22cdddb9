"""The numbers of a paired comparison: the test (paired t / Wilcoxon signed-rank, zeros kept by Pratt's
method), an interval of the mean difference (a t-interval below :data:`MIN_BOOTSTRAP_PAIRS` pairs, where a
bootstrap can only return the range of the differences; a percentile bootstrap from there on), and
Benjamini–Hochberg adjusted p-values over a family that counts each test once."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: from this many pairs on the CI of the mean difference is a percentile bootstrap; below, a t-interval
#: (with 3 pairs each bootstrap resample is one of 27 and the "95 % CI" is exactly [min d, max d])
MIN_BOOTSTRAP_PAIRS = 6
#: ``ci_method`` values: how ``ci_low``/``ci_high`` were computed
CI_METHODS = {"t": "t-interval", "bootstrap": "percentile bootstrap CI", "": "no interval"}


def paired_test(xa: np.ndarray, xb: np.ndarray, test: str) -> tuple[float, float, str]:
    """(statistic, two-sided p, note) for pairs (xa, xb).  Wilcoxon keeps zero differences in the ranking
    (``zero_method="pratt"``), so the test uses all ``n`` pairs the table reports."""
    from scipy import stats

    d = xb - xa
    if np.all(d == 0):
        return 0.0, 1.0, "all differences are 0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        if test == "t":
            if np.all(d == d[0]):
                return math.copysign(math.inf, d[0]), 0.0, "all differences are equal (t is infinite)"
            r = stats.ttest_rel(xb, xa)
        else:
            r = stats.wilcoxon(xb, xa, zero_method="pratt")
    return float(r.statistic), float(r.pvalue), ""


def bootstrap_ci(d: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    if len(d) == 0 or n_boot <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """The ``level`` t-interval of the mean of ``d`` (needs 2 values)."""
    from scipy import stats

    if len(d) < 2:
        return math.nan, math.nan
    m, sem = float(d.mean()), float(stats.sem(d))
    if sem == 0:
        return m, m
    lo, hi = stats.t.interval(level, len(d) - 1, loc=m, scale=sem)
    return float(lo), float(hi)


def diff_interval(d: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float, str]:
    """(low, high, method) of the mean difference: none from one pair, a t-interval below
    :data:`MIN_BOOTSTRAP_PAIRS` pairs, else a percentile bootstrap (``n_boot`` resamples)."""
    if len(d) < 2:
        return math.nan, math.nan, ""
    if len(d) < MIN_BOOTSTRAP_PAIRS or n_boot <= 0:
        return (*t_interval(d, level), "t")
    return (*bootstrap_ci(d, n_boot, seed, level), "bootstrap")


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


def adjust_family(df: pd.DataFrame, family: str, same_test: pd.Series | None = None) -> pd.DataFrame:
    """Add ``p_adj`` (Benjamini–Hochberg over the rows of ``df``) and ``family`` (its name and size) after
    ``p``.  Rows whose ``same_test`` holds the index of another row (the mean row of a single-label study:
    the very same test as its label row) are not counted again: they get that row's adjusted p."""
    df = df.copy()
    dup = same_test.notna() if same_test is not None else pd.Series(False, index=df.index)
    p = df["p"].to_numpy(float).copy()
    p[dup.to_numpy()] = np.nan
    adj = pd.Series(adjust_bh(p), index=df.index)
    if dup.any():
        adj[dup] = adj.loc[same_test[dup].astype(int).to_numpy()].to_numpy()
    size = int(np.isfinite(p).sum())
    df.insert(df.columns.get_loc("p") + 1, "p_adj", adj.to_numpy(float))
    df.insert(df.columns.get_loc("p_adj") + 1, "family", f"{family} ({size} test{'s' if size != 1 else ''})")
    return df


__all__ = [
    "CI_METHODS",
    "MIN_BOOTSTRAP_PAIRS",
    "adjust_bh",
    "adjust_family",
    "bootstrap_ci",
    "diff_interval",
    "paired_test",
    "sample_std",
    "t_interval",
]
